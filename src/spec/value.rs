//! An owned, spanned TOML tree (keys and values keep their byte ranges in the file).

use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A value with the byte range it came from in the pipeline file.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    /// The value.
    pub value: T,
    /// Byte range in the file.
    pub span: Range<usize>,
}

impl<T> Sp<T> {
    /// Wraps a value with its span.
    pub fn new(value: T, span: Range<usize>) -> Sp<T> {
        Sp { value, span }
    }
}

/// A TOML value.
#[derive(Clone, Debug, PartialEq)]
pub enum TomlValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A TOML date-time literal, as text.
    Datetime(String),
    /// An array.
    Array(Vec<Sp<TomlValue>>),
    /// A table.
    Table(Table),
}

impl TomlValue {
    /// The TOML type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            TomlValue::Str(_) => "a string",
            TomlValue::Int(_) => "an integer",
            TomlValue::Float(_) => "a float",
            TomlValue::Bool(_) => "a boolean",
            TomlValue::Datetime(_) => "a date-time",
            TomlValue::Array(_) => "an array",
            TomlValue::Table(_) => "a table",
        }
    }
}

/// A TOML table with its entries in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Key/value pairs in file order.
    pub entries: Vec<(Sp<String>, Sp<TomlValue>)>,
}

impl Table {
    /// Converts the toml crate's spanned tree.
    pub fn from_de(table: &DeTable<'_>) -> Table {
        Table {
            entries: table
                .iter()
                .map(|(k, v)| {
                    (
                        Sp::new(k.get_ref().to_string(), k.span()),
                        convert(v.get_ref(), v.span()),
                    )
                })
                .collect(),
        }
    }

    /// The entry for `key`.
    pub fn get(&self, key: &str) -> Option<&(Sp<String>, Sp<TomlValue>)> {
        self.entries.iter().find(|(k, _)| k.value == key)
    }

    /// Removes and returns the entry for `key`.
    pub fn remove(&mut self, key: &str) -> Option<(Sp<String>, Sp<TomlValue>)> {
        let i = self.entries.iter().position(|(k, _)| k.value == key)?;
        Some(self.entries.remove(i))
    }
}

fn convert(v: &DeValue<'_>, span: Range<usize>) -> Sp<TomlValue> {
    let value = match v {
        DeValue::String(s) => TomlValue::Str(s.to_string()),
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map(TomlValue::Int)
            .unwrap_or(TomlValue::Float(f64::NAN)),
        DeValue::Float(f) => {
            TomlValue::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
        }
        DeValue::Boolean(b) => TomlValue::Bool(*b),
        DeValue::Datetime(d) => TomlValue::Datetime(d.to_string()),
        DeValue::Array(a) => {
            TomlValue::Array(a.iter().map(|x| convert(x.get_ref(), x.span())).collect())
        }
        DeValue::Table(t) => TomlValue::Table(Table::from_de(t)),
    };
    Sp::new(value, span)
}
