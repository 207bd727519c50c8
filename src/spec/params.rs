//! [`Params`]: typed, spanned reads of a node's settings, collecting every problem.

use super::{Sp, Table, TomlValue};
use crate::diag::Diagnostic;
use crate::record::time::{parse_duration_ms, MAX_DURATION_MS};
use std::ops::Range;

/// Reads a node's settings. Every key asked for counts as known (present or not), so
/// [`Params::finish`] can report the rest as unknown, with the closest known key as a suggestion.
/// Problems accumulate in [`Params::diags`] instead of stopping at the first.
pub struct Params<'a> {
    table: &'a Table,
    owner: String,
    owner_span: Range<usize>,
    known: Vec<&'static str>,
    /// Problems found so far.
    pub diags: Vec<Diagnostic>,
}

impl<'a> Params<'a> {
    /// A reader over `table`, the settings of the node `owner` declared at `owner_span`.
    pub fn new(table: &'a Table, owner: impl Into<String>, owner_span: Range<usize>) -> Params<'a> {
        Params {
            table,
            owner: owner.into(),
            owner_span,
            known: Vec::new(),
            diags: Vec::new(),
        }
    }

    /// The span of the node's name, for errors about the node as a whole.
    pub fn owner_span(&self) -> Range<usize> {
        self.owner_span.clone()
    }

    /// Records an error.
    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn lookup(&mut self, key: &'static str) -> Option<&'a Sp<TomlValue>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table.get(key).map(|(_, v)| v)
    }

    fn wrong_type(&mut self, key: &str, want: &str, v: &Sp<TomlValue>) {
        self.diags.push(
            Diagnostic::error(
                "E0103",
                format!("`{key}` must be {want}, found {}", v.value.type_name()),
            )
            .at(v.span.clone(), format!("expected {want}")),
        );
    }

    /// A required key is missing.
    pub fn missing(&mut self, key: &str, example: &str) {
        let d = Diagnostic::error("E0104", format!("`{}` is missing `{key}`", self.owner))
            .at(self.owner_span.clone(), format!("`{key}` is required here"))
            .help(format!("add `{key} = {example}`"));
        self.diags.push(d);
    }

    /// An optional string.
    pub fn str(&mut self, key: &'static str) -> Option<Sp<String>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Str(s) => Some(Sp::new(s.clone(), v.span.clone())),
            _ => {
                self.wrong_type(key, "a string", v);
                None
            }
        }
    }

    /// A required string; `example` shows a valid value in the help line.
    pub fn req_str(&mut self, key: &'static str, example: &str) -> Option<Sp<String>> {
        let present = self.table.get(key).is_some();
        let v = self.str(key);
        if !present {
            self.missing(key, example);
        }
        v
    }

    /// An optional string that must be one of `choices`.
    pub fn choice(
        &mut self,
        key: &'static str,
        choices: &[&'static str],
    ) -> Option<Sp<&'static str>> {
        let s = self.str(key)?;
        match choices.iter().find(|c| **c == s.value) {
            Some(c) => Some(Sp::new(*c, s.span)),
            None => {
                let list = choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.diags.push(
                    Diagnostic::error("E0105", format!("invalid `{key}` `{}`", s.value))
                        .at(s.span.clone(), format!("expected one of {list}"))
                        .suggest(&s.value, choices.iter().copied()),
                );
                None
            }
        }
    }

    /// An optional non-negative integer.
    pub fn u64(&mut self, key: &'static str) -> Option<Sp<u64>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Int(i) if *i >= 0 => Some(Sp::new(*i as u64, v.span.clone())),
            _ => {
                self.wrong_type(key, "a non-negative integer", v);
                None
            }
        }
    }

    /// An optional boolean.
    pub fn bool(&mut self, key: &'static str) -> Option<Sp<bool>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Bool(b) => Some(Sp::new(*b, v.span.clone())),
            _ => {
                self.wrong_type(key, "true or false", v);
                None
            }
        }
    }

    /// An optional number (integer or float) within `range`.
    pub fn f64_in(
        &mut self,
        key: &'static str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Option<Sp<f64>> {
        let v = self.lookup(key)?;
        let x = match &v.value {
            TomlValue::Int(i) => *i as f64,
            TomlValue::Float(f) => *f,
            _ => {
                self.wrong_type(key, "a number", v);
                return None;
            }
        };
        if !range.contains(&x) {
            self.diags.push(
                Diagnostic::error(
                    "E0105",
                    format!(
                        "`{key}` must be between {} and {}",
                        range.start(),
                        range.end()
                    ),
                )
                .at(v.span.clone(), "out of range"),
            );
            return None;
        }
        Some(Sp::new(x, v.span.clone()))
    }

    /// An optional duration written as text (`"5s"`, `"250ms"`) or integer milliseconds.
    pub fn duration_ms(&mut self, key: &'static str) -> Option<Sp<u64>> {
        let v = self.lookup(key)?;
        let ms = match &v.value {
            TomlValue::Int(i) if *i >= 0 => *i as u64,
            TomlValue::Str(s) => match parse_duration_ms(s) {
                Some(ms) => ms,
                None => {
                    self.diags.push(
                        Diagnostic::error("E0105", format!("invalid duration `{s}` for `{key}`"))
                            .at(v.span.clone(), "not a duration")
                            .help("write a number and a unit: `250ms`, `5s`, `1m`, `2h`, `1d`"),
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(key, "a duration such as \"5s\"", v);
                return None;
            }
        };
        if ms > MAX_DURATION_MS {
            // Event-time arithmetic stays in range only for durations within event time's span.
            self.diags.push(
                Diagnostic::error(
                    "E0105",
                    format!("`{key}` of {ms} ms is longer than eventflow's event-time range"),
                )
                .at(v.span.clone(), "too long")
                .help(format!(
                    "durations may be at most {MAX_DURATION_MS} ms (about 8,000 years)"
                )),
            );
            return None;
        }
        Some(Sp::new(ms, v.span.clone()))
    }

    /// An optional list of strings; a single string is a list of one.
    pub fn str_list(&mut self, key: &'static str) -> Option<Vec<Sp<String>>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Str(s) => Some(vec![Sp::new(s.clone(), v.span.clone())]),
            TomlValue::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match &item.value {
                        TomlValue::Str(s) => out.push(Sp::new(s.clone(), item.span.clone())),
                        _ => self.wrong_type(key, "a list of strings", item),
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(key, "a list of strings", v);
                None
            }
        }
    }

    /// An optional table of `name = "string"` entries, in file order.
    pub fn str_table(&mut self, key: &'static str) -> Option<Vec<(Sp<String>, Sp<String>)>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Table(t) => {
                let mut out = Vec::new();
                for (k, item) in &t.entries {
                    match &item.value {
                        TomlValue::Str(s) => {
                            out.push((k.clone(), Sp::new(s.clone(), item.span.clone())))
                        }
                        _ => self.wrong_type(&k.value, "a string", item),
                    }
                }
                Some(out)
            }
            _ => {
                self.wrong_type(key, "a table of `name = \"...\"` entries", v);
                None
            }
        }
    }

    /// A nested table, read with its own [`Params`] (merge its problems back with
    /// [`Params::absorb`]). Anything but a table is reported here.
    pub fn table(&mut self, key: &'static str) -> Option<Params<'a>> {
        let v = self.lookup(key)?;
        match &v.value {
            TomlValue::Table(t) => Some(Params::new(
                t,
                format!("{}.{key}", self.owner),
                v.span.clone(),
            )),
            _ => {
                self.wrong_type(key, "a table such as { type = \"...\" }", v);
                None
            }
        }
    }

    /// Takes over the problems a nested reader found (call its [`Params::finish`] first).
    pub fn absorb(&mut self, diags: Vec<Diagnostic>) {
        self.diags.extend(diags);
    }

    /// The raw value of a key, for settings with several accepted shapes.
    pub fn raw(&mut self, key: &'static str) -> Option<&'a Sp<TomlValue>> {
        self.lookup(key)
    }

    /// Reports every key that was never asked for, and returns the collected problems.
    ///
    /// An unknown key that looks like a typo of a missing required key replaces the "missing"
    /// error: `wher = ...` gets one error saying "did you mean `where`?", not two.
    pub fn finish(mut self) -> Vec<Diagnostic> {
        for (k, _) in &self.table.entries {
            if !self.known.contains(&k.value.as_str()) {
                if let Some(intended) =
                    crate::diag::did_you_mean(&k.value, self.known.iter().copied())
                {
                    let missing = format!("`{}` is missing `{intended}`", self.owner);
                    self.diags
                        .retain(|d| !(d.code == "E0104" && d.message == missing));
                }
                let mut known: Vec<&str> = self.known.clone();
                known.sort_unstable();
                let d = Diagnostic::error(
                    "E0102",
                    format!("unknown key `{}` in `{}`", k.value, self.owner),
                )
                .at(k.span.clone(), "not a setting of this node")
                .suggest(&k.value, self.known.iter().copied())
                .note(format!("valid keys: type, input(s), {}", known.join(", ")));
                self.diags.push(d);
            }
        }
        self.diags
    }
}

/// Maps a byte range inside an expression string back into the pipeline file. Exact when the
/// TOML string has no escapes (the common case); otherwise the whole string is blamed.
pub fn span_within(file_text: &str, string: &Sp<String>, inner: Range<usize>) -> Range<usize> {
    let raw = file_text.get(string.span.clone()).unwrap_or("");
    let quote_len = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
        3
    } else {
        1
    };
    let body = raw
        .get(quote_len..raw.len().saturating_sub(quote_len))
        .unwrap_or("");
    if body == string.value && inner.end <= body.len() {
        let base = string.span.start + quote_len;
        base + inner.start..base + inner.end.max(inner.start + 1).min(body.len())
    } else {
        string.span.clone()
    }
}
