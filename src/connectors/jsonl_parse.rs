//! Parsing JSON Lines chunks (one JSON object per line) into typed rows.
//!
//! Why a hand-written `serde` visitor: each line is deserialized by `serde_json` straight into
//! the row's slots in the batch — no intermediate `serde_json::Value`, no map of owned keys.
//! Keys are looked up as borrowed `&str` (escaped keys go through `serde_json`'s scratch buffer),
//! unknown keys are skipped with `IgnoredAny`, and strings of up to 24 bytes become inline
//! `CompactString`s, so a typical row allocates nothing.
//!
//! Rules, per schema field:
//! - A missing key or a JSON `null` is `Null`. Unknown keys are ignored. If a key appears twice,
//!   the last value wins.
//! - int: a JSON integer in `i64` range, or a float with no fractional part.
//! - float: any JSON number.
//! - bool: `true` or `false`.
//! - timestamp: a number (epoch milliseconds, integral) or a string read like a CSV field
//!   (ISO-8601 or epoch milliseconds; an empty string is `Null`).
//! - string: a JSON string.
//!
//! A value of the wrong kind makes the record dead with reason `bad_value` (naming the field). A
//! line that is not valid JSON, not an object or has trailing characters is dead with reason
//! `malformed` and `serde_json`'s message, including the column. Blank lines are skipped (see
//! `split`), line endings may be `\n` or `\r\n`, and a UTF-8 byte order mark at the start of a
//! line (of the file) is dropped.

use crate::connectors::parsed::{
    field_error_detail, quote_field, DeadReason, FieldError, FieldParser, ParsedBatch,
};
use crate::connectors::split::{is_blank, scan_record, Chunk};
use crate::record::{Schema, Type, Value};
use compact_str::CompactString;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;

/// Schemas with at most this many fields look keys up by a linear scan, which beats hashing for
/// short lists.
const LINEAR_LOOKUP_MAX: usize = 12;

/// Field name → schema position lookup for JSON objects. Built once per source.
#[derive(Clone, Debug)]
pub struct JsonLayout {
    names: Vec<String>,
    types: Vec<Type>,
    /// Only for schemas with more than [`LINEAR_LOOKUP_MAX`] fields.
    index: Option<HashMap<String, usize>>,
}

impl JsonLayout {
    /// The lookup for `schema`'s field names.
    pub fn new(schema: &Schema) -> JsonLayout {
        let names: Vec<String> = schema.names().map(str::to_string).collect();
        let index = (names.len() > LINEAR_LOOKUP_MAX).then(|| {
            let mut index = HashMap::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                // The first field of a name wins, as in `Schema::index_of`.
                index.entry(name.clone()).or_insert(i);
            }
            index
        });
        JsonLayout {
            names,
            types: schema.fields.iter().map(|f| f.ty).collect(),
            index,
        }
    }

    /// The schema position of the field called `key`.
    #[inline]
    pub fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.names.iter().position(|n| n == key),
        }
    }
}

/// Parses one chunk of JSON Lines into `out` (appending; `out` is not cleared).
///
/// `data` is exactly the chunk's bytes and `chunk` gives the line and position of its first
/// record (use a non-quote-aware `split::Splitter`). Every non-blank line becomes a row or a
/// dead record.
///
/// # Panics
/// If `layout` was built for a schema of a different length, or `out` holds rows of another
/// arity.
pub fn parse_chunk(
    data: &[u8],
    chunk: &Chunk,
    layout: &JsonLayout,
    schema: &Schema,
    out: &mut ParsedBatch,
) {
    assert_eq!(
        layout.types.len(),
        schema.len(),
        "JSON layout built for another schema"
    );
    if out.records() == 0 {
        out.arity = schema.len();
    }
    assert_eq!(out.arity, schema.len(), "batch holds rows of another arity");
    let mut fields = FieldParser::new();
    let mut pos = 0;
    let mut line = chunk.first_line;
    let mut position = chunk.first_position;
    while pos < data.len() {
        let span = scan_record(data, pos, false);
        let record = span.content(data);
        let record_line = line;
        line += span.newlines;
        pos = span.next;
        if is_blank(record) {
            continue;
        }
        let record_position = position;
        position += 1;

        let base = out.begin_row();
        let mut bad = None;
        // A byte order mark (at the start of a file) is not JSON; drop it as CSV does.
        let json = record.strip_prefix(b"\xef\xbb\xbf").unwrap_or(record);
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = RowSeed {
            layout,
            slots: &mut out.values[base..],
            bad: &mut bad,
            fields: &mut fields,
        };
        let result = seed.deserialize(&mut de).and_then(|()| de.end());
        match (result, bad) {
            (Ok(()), None) => out.commit_row(record_line, record_position),
            (Ok(()), Some(bad)) => {
                out.abandon_row(base);
                let detail = bad.detail(&schema.fields[bad.slot].name, layout.types[bad.slot]);
                out.push_dead(
                    record_line,
                    record_position,
                    record,
                    DeadReason::BadValue,
                    detail,
                );
            }
            (Err(err), _) => {
                out.abandon_row(base);
                out.push_dead(
                    record_line,
                    record_position,
                    record,
                    DeadReason::Malformed,
                    json_error_detail(&err),
                );
            }
        }
    }
}

/// `serde_json`'s message with the column but without the (always 1) line number, e.g.
/// ``invalid JSON: expected `,` or `}` at column 17``.
fn json_error_detail(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let location = format!(" at line {} column {}", err.line(), err.column());
    let message = full.strip_suffix(&location).unwrap_or(&full);
    let prefix = match err.classify() {
        serde_json::error::Category::Data => "",
        _ => "invalid JSON: ",
    };
    // serde_json reports column 0 for a type error on the first byte; people count from 1.
    format!("{prefix}{message} at column {}", err.column().max(1))
}

/// The first field of a record that had a value of the wrong kind.
struct BadField {
    slot: usize,
    problem: Problem,
}

enum Problem {
    /// The value's text does not parse as the type (a fractional int, a bad timestamp string).
    Text(String),
    /// The JSON value is of another kind, described like `string "abc"` or `an object`.
    Kind(String),
}

impl BadField {
    fn detail(&self, name: &str, ty: Type) -> String {
        match &self.problem {
            Problem::Text(text) => {
                field_error_detail(name, ty, text.as_bytes(), FieldError::Invalid)
            }
            Problem::Kind(found) => format!("field `{name}`: expected {ty}, found {found}"),
        }
    }
}

/// Deserializes one JSON object into a row's slots.
struct RowSeed<'a> {
    layout: &'a JsonLayout,
    slots: &'a mut [Value],
    bad: &'a mut Option<BadField>,
    fields: &'a mut FieldParser,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed(self.layout))? {
            match key {
                Some(slot) => {
                    let seed = ValueSeed {
                        ty: self.layout.types[slot],
                        slot: &mut self.slots[slot],
                        fields: &mut *self.fields,
                    };
                    if let Err(problem) = map.next_value_seed(seed)? {
                        if self.bad.is_none() {
                            *self.bad = Some(BadField { slot, problem });
                        }
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads an object key and resolves it to a schema position (`None`: unknown key).
struct KeySeed<'a>(&'a JsonLayout);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.position(key))
    }
}

/// Reads one field's value into its slot. The outer `Result` is a JSON syntax error (the record
/// is malformed); the inner one is a value of the wrong kind (the record has a bad value), which
/// does not stop parsing so that a later syntax error still wins.
struct ValueSeed<'a> {
    ty: Type,
    slot: &'a mut Value,
    fields: &'a mut FieldParser,
}

type Typed = Result<(), Problem>;

impl ValueSeed<'_> {
    fn set(self, value: Value) -> Typed {
        *self.slot = value;
        Ok(())
    }

    fn integral(self, x: f64) -> Typed {
        // 2^63 is exact in f64; every integral float in [-2^63, 2^63) fits an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if x.fract() == 0.0 && (-LIMIT..LIMIT).contains(&x) {
            let i = x as i64;
            match self.ty {
                Type::Timestamp => self.set(Value::Time(i)),
                _ => self.set(Value::Int(i)),
            }
        } else {
            Err(Problem::Text(ryu::Buffer::new().format(x).to_string()))
        }
    }

    fn kind(&self, found: String) -> Typed {
        Err(Problem::Kind(found))
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Typed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Typed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Typed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value", self.ty)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Typed, E> {
        Ok(self.set(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Typed, E> {
        Ok(self.set(Value::Null))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Typed, E> {
        Ok(match self.ty {
            Type::Bool => self.set(Value::Bool(b)),
            _ => self.kind(format!("boolean `{b}`")),
        })
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Typed, E> {
        Ok(match self.ty {
            Type::Int => self.set(Value::Int(i)),
            Type::Timestamp => self.set(Value::Time(i)),
            Type::Float => self.set(Value::float(i as f64)),
            _ => self.kind(format!("number `{i}`")),
        })
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Typed, E> {
        Ok(match (self.ty, i64::try_from(u)) {
            (Type::Float, _) => self.set(Value::float(u as f64)),
            (Type::Int | Type::Timestamp, Ok(i)) => self.visit_i64::<E>(i)?,
            (Type::Int | Type::Timestamp, Err(_)) => Err(Problem::Text(u.to_string())),
            _ => self.kind(format!("number `{u}`")),
        })
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<Typed, E> {
        Ok(match self.ty {
            Type::Float => self.set(Value::float(x)),
            Type::Int | Type::Timestamp => self.integral(x),
            _ => self.kind(format!("number `{}`", ryu::Buffer::new().format(x))),
        })
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Typed, E> {
        Ok(match self.ty {
            Type::String => self.set(Value::Str(CompactString::new(s))),
            Type::Timestamp => match self.fields.parse(s.as_bytes(), Type::Timestamp) {
                Ok(v) => self.set(v),
                Err(_) => Err(Problem::Text(s.to_string())),
            },
            _ => self.kind(format!("string `{}`", quote_field(s.as_bytes()))),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Typed, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.kind("an object".to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Typed, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.kind("an array".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::split::Splitter;
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::new([
            ("id", Type::Int),
            ("name", Type::String),
            ("amount", Type::Float),
            ("ok", Type::Bool),
            ("ts", Type::Timestamp),
        ])
    }

    fn parse(data: &[u8], target: usize) -> ParsedBatch {
        let s = schema();
        let layout = JsonLayout::new(&s);
        let mut out = ParsedBatch::new(s.len());
        for chunk in Splitter::new(data, 0, 1, target, false) {
            parse_chunk(chunk.bytes(data), &chunk, &layout, &s, &mut out);
        }
        out
    }

    #[test]
    fn types_nulls_and_missing_keys() {
        let data =
            br#"{"id": 1, "name": "a\"b", "amount": 2, "ok": true, "ts": "2024-01-01T00:00:00Z"}
{"id": 2.0, "amount": 1.5e1, "ts": 1704067200000, "extra": {"deep": [1, {"x": null}]}}
{"name": null, "id": null, "ok": false, "ts": 5.0}

{}
{"\u0069d": -3, "id": 4, "ts": ""}
"#;
        let b = parse(data, 1 << 20);
        assert!(b.dead.is_empty(), "{:?}", b.dead);
        assert_eq!(b.len(), 5);
        assert_eq!(
            b.row(0),
            &[
                Value::Int(1),
                Value::str("a\"b"),
                Value::float(2.0),
                Value::Bool(true),
                Value::Time(1_704_067_200_000)
            ]
        );
        assert_eq!(
            b.row(1),
            &[
                Value::Int(2),
                Value::Null,
                Value::float(15.0),
                Value::Null,
                Value::Time(1_704_067_200_000)
            ]
        );
        assert_eq!(
            b.row(2),
            &[
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Bool(false),
                Value::Time(5)
            ]
        );
        assert_eq!(
            b.row(3),
            &[
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );
        // A byte order mark is dropped.
        let b2 = parse(b"\xef\xbb\xbf{\"id\": 5}\n", 1);
        assert!(b2.dead.is_empty());
        assert_eq!(b2.row(0)[0], Value::Int(5));
        // An escaped key resolves; the last duplicate wins.
        assert_eq!(b.row(4)[0], Value::Int(4));
        assert_eq!(b.lines, vec![1, 2, 3, 5, 6]);
        assert_eq!(b.positions, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_values_and_malformed_lines() {
        let data = b"{\"id\": 1.5}\r\n\
            {\"id\": \"7\"}\n\
            {\"ok\": 1}\n\
            {\"name\": 12}\n\
            {\"ts\": \"yesterday\"}\n\
            {\"amount\": [1]}\n\
            {\"id\": 18446744073709551615}\n\
            {\"id\": 1,}\n\
            [1, 2]\n\
            42\n\
            {\"id\": 1} x\n\
            {\"id\": 1\n\
            {\"name\": \"\xff\"}\n\
            \n\
            {\"id\": 8}\n";
        for target in [1, 7, 64, 4096] {
            let b = parse(data, target);
            let dead: Vec<_> = b
                .dead
                .iter()
                .map(|d| (d.line, d.position, d.reason))
                .collect();
            use DeadReason::{BadValue as B, Malformed as M};
            assert_eq!(
                dead,
                vec![
                    (1, 0, B),
                    (2, 1, B),
                    (3, 2, B),
                    (4, 3, B),
                    (5, 4, B),
                    (6, 5, B),
                    (7, 6, B),
                    (8, 7, M),
                    (9, 8, M),
                    (10, 9, M),
                    (11, 10, M),
                    (12, 11, M),
                    (13, 12, M)
                ]
            );
            assert_eq!(b.lines, vec![15]);
            assert_eq!(b.positions, vec![13]);
            let details: Vec<&str> = b.dead.iter().map(|d| d.detail.as_str()).collect();
            assert_eq!(details[0], "field `id`: cannot parse `1.5` as int");
            assert_eq!(details[1], "field `id`: expected int, found string `7`");
            assert_eq!(details[2], "field `ok`: expected bool, found number `1`");
            assert_eq!(
                details[3],
                "field `name`: expected string, found number `12`"
            );
            assert!(details[4].starts_with("field `ts`: cannot parse `yesterday` as timestamp"));
            assert_eq!(details[5], "field `amount`: expected float, found an array");
            assert_eq!(
                details[6],
                "field `id`: cannot parse `18446744073709551615` as int \
                 (out of range for a 64-bit integer)"
            );
            assert_eq!(details[7], "invalid JSON: trailing comma at column 10");
            assert_eq!(
                details[8],
                "invalid type: sequence, expected a JSON object at column 1"
            );
            assert_eq!(
                details[9],
                "invalid type: integer `42`, expected a JSON object at column 2"
            );
            assert_eq!(
                details[10],
                "invalid JSON: trailing characters at column 11"
            );
            assert_eq!(
                details[11],
                "invalid JSON: EOF while parsing an object at column 8"
            );
            assert!(
                details[12].starts_with("invalid JSON: invalid unicode"),
                "{}",
                details[12]
            );
            assert_eq!(b.dead[0].raw, "{\"id\": 1.5}");
        }
    }

    #[test]
    fn wide_schemas_use_a_hash_index() {
        let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
        let s = Schema::new(names.iter().map(|n| (n.as_str(), Type::Int)));
        let layout = JsonLayout::new(&s);
        assert_eq!(layout.position("f39"), Some(39));
        assert_eq!(layout.position("nope"), None);
        let data = b"{\"f39\": 3, \"f0\": 1}\n";
        let chunk = Splitter::new(data, 0, 1, 100, false).next().unwrap();
        let mut out = ParsedBatch::new(40);
        parse_chunk(data, &chunk, &layout, &s, &mut out);
        assert_eq!(out.row(0)[39], Value::Int(3));
        assert_eq!(out.row(0)[0], Value::Int(1));
    }

    /// Good positions, dead (line, position, reason), and values: what chunking must not change.
    type Outcome = (Vec<u64>, Vec<(u64, u64, DeadReason)>, Vec<Value>);

    fn outcome(data: &[u8], target: usize) -> Outcome {
        let b = parse(data, target);
        let dead = b
            .dead
            .iter()
            .map(|d| (d.line, d.position, d.reason))
            .collect();
        assert_eq!(b.values.len(), b.len() * 5);
        (b.positions, dead, b.values)
    }

    fn valid_jsonl() -> impl Strategy<Value = Vec<u8>> {
        let value = prop_oneof![
            Just("1".to_string()),
            Just("-2.5".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("\"x\\\"y\"".to_string()),
            Just("\"2024-01-01T00:00:00Z\"".to_string()),
            Just("[1, {\"a\": 2}]".to_string()),
        ];
        let key = prop_oneof![
            Just("id"),
            Just("name"),
            Just("amount"),
            Just("ok"),
            Just("ts"),
            Just("zz")
        ];
        let object = prop::collection::vec((key, value), 0..6).prop_map(|kv| {
            let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", fields.join(", "))
        });
        prop::collection::vec(object, 0..15).prop_map(|lines| {
            let mut s = lines.join("\n");
            s.push('\n');
            s.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'"'), Just(b':'), Just(b'\n'), Just(b'1'), any::<u8>()
        ], 0..300)) {
            let reference = outcome(&data, 1 << 20);
            for target in [1, 7, 64] {
                prop_assert_eq!(&outcome(&data, target), &reference);
            }
        }

        #[test]
        fn mutated_jsonl_never_panics(
            data in valid_jsonl(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..5)
        ) {
            let mut data = data;
            for (at, byte) in edits {
                if data.is_empty() { break; }
                let i = at % data.len();
                if byte % 2 == 0 { data[i] = byte } else { data.remove(i); }
            }
            let reference = outcome(&data, 1 << 20);
            let total = reference.0.len() + reference.1.len();
            let lines = data.split(|&b| b == b'\n').filter(|l| !is_blank(l)).count();
            prop_assert_eq!(total, lines);
            for target in [1, 7, 64] {
                prop_assert_eq!(&outcome(&data, target), &reference);
            }
        }
    }
}
