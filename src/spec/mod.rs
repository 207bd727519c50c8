//! The pipeline file format: TOML → a spanned syntax tree, with structural checks.
//!
//! This layer knows the shape of a pipeline file (`[pipeline]`, `[sources.NAME]`,
//! `[transforms.NAME]`, `[sinks.NAME]`, `type`, `input`/`inputs`) but nothing about what any
//! node type means: node settings stay as a spanned [`Table`] that the node's factory reads
//! through [`Params`], which records unknown keys and wrong value types as diagnostics.

pub mod params;
mod value;

pub use params::Params;
pub use value::{Sp, Table, TomlValue};

use crate::diag::{Diagnostic, SourceFile};
use std::path::{Path, PathBuf};

/// Which of the three node tables a node is declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `[sources.NAME]`: reads data, has no inputs.
    Source,
    /// `[transforms.NAME]`: one or more inputs, one output.
    Transform,
    /// `[sinks.NAME]`: one input, writes data.
    Sink,
}

impl Role {
    /// The table name in the file.
    pub fn table(self) -> &'static str {
        match self {
            Role::Source => "sources",
            Role::Transform => "transforms",
            Role::Sink => "sinks",
        }
    }
    /// Singular noun for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Transform => "transform",
            Role::Sink => "sink",
        }
    }
}

/// One declared node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Which table it is in.
    pub role: Role,
    /// Its name (the key in the table), with the key's span.
    pub name: Sp<String>,
    /// Its `type`.
    pub kind: Sp<String>,
    /// Names of its inputs, from `input` or `inputs`.
    pub inputs: Vec<Sp<String>>,
    /// Every other key, for the node's factory to read.
    pub params: Table,
}

/// A parsed pipeline file.
#[derive(Clone, Debug)]
pub struct PipelineSpec {
    /// The file's name and text, for diagnostics.
    pub file: SourceFile,
    /// The directory relative paths in the file are resolved against.
    pub dir: PathBuf,
    /// The `[pipeline]` table (empty if absent), with the span of its header.
    pub settings: Sp<Table>,
    /// Nodes in file order: sources, then transforms, then sinks.
    pub nodes: Vec<NodeSpec>,
}

impl PipelineSpec {
    /// Reads and parses a pipeline file. An unreadable file is an error without a span.
    pub fn load(path: &Path) -> Result<PipelineSpec, (SourceFile, Vec<Diagnostic>)> {
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                PipelineSpec::parse(SourceFile { name, text }, dir)
            }
            Err(e) => Err((
                SourceFile {
                    name: name.clone(),
                    text: String::new(),
                },
                vec![Diagnostic::error(
                    "E0401",
                    format!("cannot read pipeline file `{name}`: {e}"),
                )],
            )),
        }
    }

    /// Parses pipeline text. Reports every syntax error, or else every structural error.
    pub fn parse(
        file: SourceFile,
        dir: PathBuf,
    ) -> Result<PipelineSpec, (SourceFile, Vec<Diagnostic>)> {
        let (doc, errors) = toml::de::DeTable::parse_recoverable(&file.text);
        if !errors.is_empty() {
            let diags = errors
                .iter()
                .map(|e| {
                    let span = e.span().unwrap_or(0..0);
                    Diagnostic::error(
                        "E0101",
                        format!("invalid TOML: {}", e.message().trim_end_matches('\n')),
                    )
                    .at(span, "here")
                })
                .collect();
            return Err((file, diags));
        }
        let root = Table::from_de(doc.get_ref());
        let mut diags = Vec::new();
        let mut settings = Sp::new(Table::default(), 0..0);
        let mut nodes = Vec::new();
        for (key, value) in &root.entries {
            let role = match key.value.as_str() {
                "pipeline" => {
                    match &value.value {
                        TomlValue::Table(t) => settings = Sp::new(t.clone(), key.span.clone()),
                        other => {
                            diags.push(expected(&key.value, "a table", other, value.span.clone()))
                        }
                    }
                    continue;
                }
                "sources" => Role::Source,
                "transforms" => Role::Transform,
                "sinks" => Role::Sink,
                other => {
                    diags.push(
                        Diagnostic::error("E0102", format!("unknown top-level table `{other}`"))
                            .at(key.span.clone(), "not a pipeline section")
                            .suggest(other, ["pipeline", "sources", "transforms", "sinks"])
                            .note("a pipeline file has `[pipeline]`, `[sources.NAME]`, `[transforms.NAME]` and `[sinks.NAME]`"),
                    );
                    continue;
                }
            };
            let TomlValue::Table(members) = &value.value else {
                diags.push(expected(
                    &key.value,
                    "a table of named nodes",
                    &value.value,
                    value.span.clone(),
                ));
                continue;
            };
            for (name, node) in &members.entries {
                if let Some(n) = parse_node(role, name, node, &mut diags) {
                    nodes.push(n);
                }
            }
        }
        nodes.sort_by_key(|n| n.role);
        if diags.is_empty() {
            Ok(PipelineSpec {
                file,
                dir,
                settings,
                nodes,
            })
        } else {
            Err((file, diags))
        }
    }

    /// Resolves a path written in the pipeline file against the file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn expected(key: &str, what: &str, found: &TomlValue, span: std::ops::Range<usize>) -> Diagnostic {
    Diagnostic::error(
        "E0103",
        format!("`{key}` must be {what}, found {}", found.type_name()),
    )
    .at(span, format!("expected {what}"))
}

fn parse_node(
    role: Role,
    name: &Sp<String>,
    node: &Sp<TomlValue>,
    diags: &mut Vec<Diagnostic>,
) -> Option<NodeSpec> {
    let TomlValue::Table(table) = &node.value else {
        diags.push(expected(
            &name.value,
            "a table",
            &node.value,
            node.span.clone(),
        ));
        return None;
    };
    if name.value.is_empty()
        || !name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        diags.push(
            Diagnostic::error("E0106", format!("invalid node name `{}`", name.value))
                .at(name.span.clone(), "names use letters, digits, `_` and `-`"),
        );
    }
    let mut params = table.clone();
    let kind = match params.remove("type") {
        Some((
            _,
            Sp {
                value: TomlValue::Str(s),
                span,
            },
        )) => Sp::new(s, span),
        Some((key, other)) => {
            diags.push(expected(&key.value, "a string", &other.value, other.span));
            return None;
        }
        None => {
            diags.push(
                Diagnostic::error(
                    "E0104",
                    format!("{} `{}` has no `type`", role.noun(), name.value),
                )
                .at(name.span.clone(), "declared here")
                .help(format!(
                    "add `type = \"...\"`; `eventflow operators` lists the {} types",
                    role.noun()
                )),
            );
            return None;
        }
    };
    let mut inputs = Vec::new();
    let single = params.remove("input");
    let many = params.remove("inputs");
    if let (Some((k1, _)), Some((k2, _))) = (&single, &many) {
        diags.push(
            Diagnostic::error("E0107", "both `input` and `inputs` are set")
                .at(k2.span.clone(), "second list of inputs")
                .also(k1.span.clone(), "first one here")
                .help("use `inputs = [...]` alone"),
        );
    }
    if let Some((key, v)) = single {
        match v.value {
            TomlValue::Str(s) => inputs.push(Sp::new(s, v.span)),
            other => diags.push(expected(&key.value, "a node name (string)", &other, v.span)),
        }
    }
    if let Some((key, v)) = many {
        match v.value {
            TomlValue::Array(items) => {
                for item in items {
                    match item.value {
                        TomlValue::Str(s) => inputs.push(Sp::new(s, item.span)),
                        other => diags.push(expected(
                            &key.value,
                            "a list of node names",
                            &other,
                            item.span,
                        )),
                    }
                }
            }
            TomlValue::Str(s) => inputs.push(Sp::new(s, v.span)),
            other => diags.push(expected(&key.value, "a list of node names", &other, v.span)),
        }
    }
    if role == Role::Source {
        if let Some(first) = inputs.first() {
            diags.push(
                Diagnostic::error(
                    "E0205",
                    format!("source `{}` cannot have inputs", name.value),
                )
                .at(first.span.clone(), "sources read data; they take no input"),
            );
        }
    } else if inputs.is_empty() {
        diags.push(
            Diagnostic::error(
                "E0104",
                format!("{} `{}` has no input", role.noun(), name.value),
            )
            .at(name.span.clone(), "declared here")
            .help("add `input = \"NAME\"` naming a source or transform"),
        );
    }
    Some(NodeSpec {
        role,
        name: name.clone(),
        kind,
        inputs,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineSpec, Vec<Diagnostic>> {
        PipelineSpec::parse(
            SourceFile {
                name: "t.toml".into(),
                text: text.into(),
            },
            ".".into(),
        )
        .map_err(|e| e.1)
    }

    #[test]
    fn reads_nodes_in_order_with_inputs() {
        let spec = parse(
            "[pipeline]\nname = \"x\"\n[sources.a]\ntype = \"csv\"\n[transforms.f]\ntype = \"filter\"\ninput = \"a\"\n[sinks.s]\ntype = \"stdout\"\ninputs = [\"f\"]\n",
        )
        .unwrap();
        let names: Vec<_> = spec.nodes.iter().map(|n| n.name.value.as_str()).collect();
        assert_eq!(names, ["a", "f", "s"]);
        assert_eq!(spec.nodes[2].inputs[0].value, "f");
        assert_eq!(
            &spec.file.text[spec.nodes[1].kind.span.clone()],
            "\"filter\""
        );
    }

    #[test]
    fn reports_all_structural_errors() {
        let errs = parse("[sourcs.a]\ntype = \"csv\"\n[transforms.f]\ninput = \"a\"\n[sinks.s]\ntype = \"stdout\"\n").unwrap_err();
        let codes: Vec<_> = errs.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["E0102", "E0104", "E0104"], "{errs:?}");
        assert_eq!(errs[0].help, ["did you mean `sources`?"]);
    }

    #[test]
    fn syntax_errors_have_spans() {
        let errs = parse("[sources.a]\ntype = \"csv\nx = 1\n").unwrap_err();
        assert_eq!(errs[0].code, "E0101");
        assert!(errs[0].primary.is_some());
    }
}
