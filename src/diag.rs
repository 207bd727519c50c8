//! Diagnostics for people: a stable code, a message, a primary span in the pipeline file,
//! secondary labels, help and notes, rendered rustc-style by `codespan-reporting`.
//!
//! Codes: `E01xx` syntax and structure, `E02xx` graph, `E03xx` parameters, schemas and
//! expressions, `E04xx` environment (files), `W…` warnings.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label, Severity as CsSeverity};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use std::ops::Range;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Stops the pipeline from running.
    Error,
    /// Worth reading; the pipeline still runs.
    Warning,
}

/// One problem found in a pipeline file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code such as `E0203`.
    pub code: &'static str,
    /// Lowercase message without a final period.
    pub message: String,
    /// Where in the file, with a short label.
    pub primary: Option<(Range<usize>, String)>,
    /// Other related places ("first defined here").
    pub secondary: Vec<(Range<usize>, String)>,
    /// Concrete fixes ("did you mean `filter`?").
    pub help: Vec<String>,
    /// Pointers to docs or commands.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// A new error with a code and message.
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: Vec::new(),
            notes: Vec::new(),
        }
    }
    /// Sets the primary span and its label.
    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.primary = Some((span, label.into()));
        self
    }
    /// Adds a secondary label.
    pub fn also(mut self, span: Range<usize>, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }
    /// Adds a help line.
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help.push(help.into());
        self
    }
    /// Adds a help line suggesting the closest of `candidates` to `name`, if one is close.
    pub fn suggest<'a>(
        self,
        name: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Diagnostic {
        match did_you_mean(name, candidates) {
            Some(best) => self.help(format!("did you mean `{best}`?")),
            None => self,
        }
    }
    /// Adds a note line.
    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest candidate to `name` by normalised edit distance, if it is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(name, c), c))
        .filter(|(score, c)| *score >= 0.6 || (c.starts_with(name) && name.len() >= 2))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A pipeline file's name and text, to resolve spans into line:column and snippets.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path as the user gave it.
    pub name: String,
    /// Full text.
    pub text: String,
}

impl SourceFile {
    /// 1-based (line, column) of a byte offset; columns count characters.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (line, before[line_start..].chars().count() + 1)
    }

    /// `file:line:column` of a byte offset.
    pub fn location(&self, offset: usize) -> String {
        let (l, c) = self.line_col(offset);
        format!("{}:{}:{}", self.name, l, c)
    }
}

/// Renders diagnostics rustc-style. Colour only when `color` is set (a terminal); tests render plain.
pub fn render(file: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let files = SimpleFile::new(file.name.as_str(), file.text.as_str());
    let config = term::Config::default();
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => CsSeverity::Error,
            Severity::Warning => CsSeverity::Warning,
        };
        let clamp = |r: &Range<usize>| r.start.min(file.text.len())..r.end.min(file.text.len());
        let mut labels = Vec::new();
        if let Some((span, msg)) = &d.primary {
            labels.push(Label::primary((), clamp(span)).with_message(msg));
        }
        for (span, msg) in &d.secondary {
            labels.push(Label::secondary((), clamp(span)).with_message(msg));
        }
        let mut notes: Vec<String> = d.help.iter().map(|h| format!("help: {h}")).collect();
        notes.extend(d.notes.iter().map(|n| format!("note: {n}")));
        let cs = CsDiagnostic::new(severity)
            .with_code(d.code)
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes);
        let _ = term::emit_to_write_style(&mut buffer, &config, &files, &cs);
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let ops = ["filter", "select", "union", "aggregate"];
        assert_eq!(did_you_mean("fitler", ops), Some("filter"));
        assert_eq!(did_you_mean("aggregat", ops), Some("aggregate"));
        assert_eq!(did_you_mean("banana", ops), None);
    }

    #[test]
    fn renders_location_and_help() {
        let file = SourceFile {
            name: "p.toml".into(),
            text: "[transforms.a]\ntype = \"fitler\"\n".into(),
        };
        let d = Diagnostic::error("E0203", "unknown transform type `fitler`")
            .at(22..30, "no transform with this name")
            .suggest("fitler", ["filter", "select"]);
        let out = render(&file, &[d], false);
        assert!(
            out.contains("error[E0203]: unknown transform type `fitler`"),
            "{out}"
        );
        assert!(out.contains("p.toml:2:8"), "{out}");
        assert!(out.contains("help: did you mean `filter`?"), "{out}");
        assert_eq!(file.location(22), "p.toml:2:8");
    }
}
