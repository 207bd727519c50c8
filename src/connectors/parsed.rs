//! What the file parsers hand to the runtime: flat batches of typed rows plus dead records.
//!
//! The CSV and JSON Lines parsers (`csv_parse`, `jsonl_parse`) both fill a [`ParsedBatch`] per
//! chunk, and both convert field text to values through [`parse_field`] (via [`FieldParser`],
//! which adds a cache for runs of timestamps on one day), so the rules for what an `int` or a
//! `timestamp` looks like live in one place.
//!
//! Why flat: a batch stores all its values in one `Vec<Value>` (row `i` is
//! `values[i * arity..(i + 1) * arity]`), so parsing a chunk of a few thousand rows costs a
//! handful of allocations in total, not one per row. Strings of up to 24 bytes are stored inline
//! in the [`Value`] ([`CompactString`]), so a typical row allocates nothing at all.
//!
//! Why dead records: the design promises that nothing is silently lost. Every data record of a
//! chunk ends up either as a good row or as a [`DeadRecord`] with its line, its position, its raw
//! text and a message that names the field. Blank lines (empty, or only spaces, tabs and carriage
//! returns) are not records at all: they are skipped and do not count as positions.

use crate::record::{time, Type, Value};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The most bytes of a dead record's raw text that are kept.
pub const MAX_RAW_BYTES: usize = 4096;

/// The most bytes of a field's text quoted in a dead record's detail message.
const MAX_QUOTED_FIELD: usize = 64;

/// A batch of parsed records from one chunk, stored flat.
///
/// Record `i`'s fields are `values[i * arity..(i + 1) * arity]`, in schema order. `lines[i]` and
/// `positions[i]` describe the same record. Dead records are kept separately, in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedBatch {
    /// Number of fields per record (the schema's length).
    pub arity: usize,
    /// The values of every good record, flat, in schema order.
    pub values: Vec<Value>,
    /// 1-based line number where each good record starts.
    pub lines: Vec<u64>,
    /// 0-based index of each good record among the file's data records (header and blank lines
    /// excluded).
    pub positions: Vec<u64>,
    /// Records that could not be parsed, in file order.
    pub dead: Vec<DeadRecord>,
}

impl ParsedBatch {
    /// An empty batch for rows of `arity` fields.
    pub fn new(arity: usize) -> ParsedBatch {
        ParsedBatch {
            arity,
            ..ParsedBatch::default()
        }
    }

    /// Number of good records.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are no good records (there may still be dead ones).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Number of records accounted for: good plus dead.
    pub fn records(&self) -> usize {
        self.lines.len() + self.dead.len()
    }

    /// The fields of good record `i`, in schema order.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn row(&self, i: usize) -> &[Value] {
        assert!(i < self.len(), "row {i} of a batch of {}", self.len());
        &self.values[i * self.arity..(i + 1) * self.arity]
    }

    /// The good records in order, as field slices.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[Value]> + '_ {
        (0..self.len()).map(move |i| self.row(i))
    }

    /// Empties the batch, keeping its allocations (and its arity) for the next chunk.
    pub fn clear(&mut self) {
        self.values.clear();
        self.lines.clear();
        self.positions.clear();
        self.dead.clear();
    }

    /// Appends a good record's metadata and returns the index in `values` where its fields start,
    /// after filling its `arity` slots with `Null`. Callers either fill the slots or undo with
    /// [`ParsedBatch::abandon_row`].
    #[inline]
    pub(crate) fn begin_row(&mut self) -> usize {
        let base = self.values.len();
        // Constructing `Null`s (rather than `resize`, which clones one) compiles to plain stores.
        self.values.extend((0..self.arity).map(|_| Value::Null));
        base
    }

    /// Drops the slots opened by [`ParsedBatch::begin_row`] (the record turned out to be dead).
    pub(crate) fn abandon_row(&mut self, base: usize) {
        self.values.truncate(base);
    }

    /// Records the line and position of the row whose slots were just filled.
    pub(crate) fn commit_row(&mut self, line: u64, position: u64) {
        self.lines.push(line);
        self.positions.push(position);
    }

    /// Appends a dead record.
    pub fn push_dead(
        &mut self,
        line: u64,
        position: u64,
        raw: &[u8],
        reason: DeadReason,
        detail: String,
    ) {
        self.dead
            .push(DeadRecord::new(line, position, raw, reason, detail));
    }
}

/// A record that did not become a row, with enough context for a person to find and fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadRecord {
    /// 1-based line number where the record starts.
    pub line: u64,
    /// 0-based index of the record among the file's data records.
    pub position: u64,
    /// The record's raw text (without its line terminator), lossy UTF-8, at most
    /// [`MAX_RAW_BYTES`] bytes.
    pub raw: String,
    /// Why it is dead.
    pub reason: DeadReason,
    /// A message for people naming the field, e.g.
    /// ``field `amount`: cannot parse `12x` as float``.
    pub detail: String,
}

impl DeadRecord {
    /// A dead record; `raw` is converted with [`raw_text`].
    pub fn new(
        line: u64,
        position: u64,
        raw: &[u8],
        reason: DeadReason,
        detail: String,
    ) -> DeadRecord {
        DeadRecord {
            line,
            position,
            raw: raw_text(raw),
            reason,
            detail,
        }
    }
}

/// Why a record is dead. Written as the `reason` column of the dead-letter output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeadReason {
    /// The record's structure is broken: wrong column count, bad JSON, invalid UTF-8 in a
    /// string field, unbalanced quote.
    Malformed,
    /// A field's text does not parse as the field's type.
    BadValue,
    /// A required field is missing. Reserved: today missing fields become `Null`.
    Missing,
    /// The record's event time is behind its source's watermark (assigned by the runtime).
    Late,
}

impl DeadReason {
    /// The name written in outputs and summaries: `malformed`, `bad_value`, `missing`, `late`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeadReason::Malformed => "malformed",
            DeadReason::BadValue => "bad_value",
            DeadReason::Missing => "missing",
            DeadReason::Late => "late",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed row as a JSON object in schema order: the raw text of a record that was dead only
/// after parsing (late, or a bad event time).
pub fn row_json(schema: &crate::record::Schema, row: &[crate::record::Value]) -> String {
    let mut raw = String::from("{");
    for (i, (f, v)) in schema.fields.iter().zip(row).enumerate() {
        if i > 0 {
            raw.push(',');
        }
        crate::record::write_json_string(&f.name, &mut raw);
        raw.push(':');
        v.write_json(&mut raw);
    }
    raw.push('}');
    raw
}

/// Raw record bytes as text for a dead record: lossy UTF-8, cut to at most [`MAX_RAW_BYTES`]
/// bytes on a character boundary.
pub fn raw_text(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(MAX_RAW_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if text.len() > MAX_RAW_BYTES {
        // Replacement characters (3 bytes) can make the text longer than the bytes it came from.
        let mut end = MAX_RAW_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Why a field's text did not become a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// The text is not a valid value of the type (dead reason `bad_value`).
    Invalid,
    /// A string field is not valid UTF-8 (dead reason `malformed`).
    InvalidUtf8,
}

impl FieldError {
    /// The dead-record reason for this error.
    pub fn reason(self) -> DeadReason {
        match self {
            FieldError::Invalid => DeadReason::BadValue,
            FieldError::InvalidUtf8 => DeadReason::Malformed,
        }
    }
}

/// Converts one field's text to a value of type `ty`. The single place where text becomes
/// values, shared by the CSV parser and by JSON string values.
///
/// Rules:
/// - An empty field is `Null` for int, float, bool and timestamp, and the empty string for
///   string. For those non-string types, a field of only ASCII whitespace is empty too.
/// - int: an `i64` with an optional leading `+`/`-`; surrounding ASCII whitespace is ignored.
/// - float: decimal or scientific notation (integers too, and `inf`/`NaN`), whitespace ignored.
/// - bool: `true`/`false`, `1`/`0`, `t`/`f`, `yes`/`no`, in any case, whitespace ignored.
/// - timestamp: ISO-8601 / RFC 3339 or integer epoch milliseconds
///   ([`time::parse_timestamp`]), whitespace ignored.
/// - string: the bytes as they are, which must be valid UTF-8 ([`FieldError::InvalidUtf8`]
///   otherwise). Strings of up to 24 bytes are stored inline, without allocating.
#[inline]
pub fn parse_field(text: &[u8], ty: Type) -> Result<Value, FieldError> {
    if ty == Type::String {
        return match as_str(text) {
            Some(s) => Ok(Value::Str(CompactString::new(s))),
            None => Err(FieldError::InvalidUtf8),
        };
    }
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(Value::Null);
    }
    let value = match ty {
        Type::Int => parse_int(t).map(Value::Int),
        Type::Float => fast_float2::parse::<f64, _>(t).ok().map(Value::float),
        Type::Bool => parse_bool(t).map(Value::Bool),
        Type::Timestamp => as_str(t).and_then(time::parse_timestamp).map(Value::Time),
        Type::String => unreachable!("handled above"),
    };
    value.ok_or(FieldError::Invalid)
}

/// `bytes` as text if they are valid UTF-8.
///
/// Field text is nearly always short ASCII, for which a word-at-a-time ASCII check is much
/// cheaper than a call into the general UTF-8 validator.
#[inline]
fn as_str(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Parses an `i64` with an optional sign and no surrounding whitespace.
#[inline]
pub fn parse_int(t: &[u8]) -> Option<i64> {
    let (negative, digits) = match t.first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() {
        return None;
    }
    if digits.len() <= 18 {
        // Up to 18 digits cannot overflow an i64: no checked arithmetic needed.
        let mut v: i64 = 0;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + i64::from(d);
        }
        return Some(if negative { -v } else { v });
    }
    let mut magnitude: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    if negative {
        if magnitude <= i64::MAX as u64 {
            Some(-(magnitude as i64))
        } else if magnitude == i64::MAX as u64 + 1 {
            Some(i64::MIN)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Converts field text exactly like [`parse_field`], faster for runs of timestamps on one day.
///
/// It remembers the date of the last timestamp in the common layout
/// `YYYY-MM-DDTHH:MM:SS.mmmZ`; a later timestamp in that layout with the same date only has
/// its time of day read. Event files are mostly in time order, so nearly every timestamp hits.
/// One per parsing thread (or chunk); it is a few bytes.
#[derive(Clone, Debug, Default)]
pub struct FieldParser {
    /// The `YYYY-MM-DD` of the cached day.
    date: [u8; 10],
    /// Epoch milliseconds of that day's midnight (UTC), if a day is cached.
    day_ms: Option<i64>,
}

impl FieldParser {
    /// A parser with nothing cached.
    pub fn new() -> FieldParser {
        FieldParser::default()
    }

    /// [`parse_field`], with the timestamp cache.
    #[inline]
    pub fn parse(&mut self, text: &[u8], ty: Type) -> Result<Value, FieldError> {
        if ty == Type::Timestamp {
            if let Some(ms) = self.cached_timestamp(text) {
                return Ok(Value::Time(ms));
            }
        }
        parse_field(text, ty)
    }

    /// The timestamp if `text` is in the cached layout; `None` means "use the general parser"
    /// (not "invalid").
    #[inline]
    fn cached_timestamp(&mut self, text: &[u8]) -> Option<i64> {
        if text.len() != 24 || text[10] != b'T' || text[19] != b'.' || text[23] != b'Z' {
            return None;
        }
        let time_of_day = time_of_day_ms(text)?;
        match self.day_ms {
            Some(day_ms) if text[..10] == self.date => Some(day_ms + time_of_day),
            _ => {
                // A new day: the general parser validates the date. A valid date with a valid
                // time of day gives exactly midnight + time of day, which the check confirms.
                let full = as_str(text).and_then(time::parse_timestamp)?;
                let day_ms = full - time_of_day;
                if day_ms.rem_euclid(86_400_000) == 0 {
                    self.date.copy_from_slice(&text[..10]);
                    self.day_ms = Some(day_ms);
                }
                Some(full)
            }
        }
    }
}

/// Milliseconds since midnight of `…THH:MM:SS.mmm…` at offsets 11..23, if well formed.
#[inline]
fn time_of_day_ms(t: &[u8]) -> Option<i64> {
    if t[13] != b':' || t[16] != b':' {
        return None;
    }
    let digit = |i: usize| {
        let d = t[i].wrapping_sub(b'0');
        (d <= 9).then_some(i64::from(d))
    };
    let hours = digit(11)? * 10 + digit(12)?;
    let minutes = digit(14)? * 10 + digit(15)?;
    let seconds = digit(17)? * 10 + digit(18)?;
    let millis = digit(20)? * 100 + digit(21)? * 10 + digit(22)?;
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + millis)
}

/// Parses the boolean spellings accepted by [`parse_field`].
fn parse_bool(t: &[u8]) -> Option<bool> {
    if t.len() > 5 {
        return None;
    }
    let mut lower = [0u8; 5];
    for (l, b) in lower.iter_mut().zip(t) {
        *l = b.to_ascii_lowercase();
    }
    match &lower[..t.len()] {
        b"true" | b"t" | b"1" | b"yes" => Some(true),
        b"false" | b"f" | b"0" | b"no" => Some(false),
        _ => None,
    }
}

/// The detail message of a dead record whose field `name` (of type `ty`) failed to parse, e.g.
/// ``field `amount`: cannot parse `12x` as float``.
pub fn field_error_detail(name: &str, ty: Type, text: &[u8], err: FieldError) -> String {
    match err {
        FieldError::InvalidUtf8 => format!("field `{name}`: invalid UTF-8 in a string field"),
        FieldError::Invalid => {
            let shown = quote_field(text);
            let hint = match ty {
                Type::Int if looks_like_integer(text) => " (out of range for a 64-bit integer)",
                Type::Bool => " (expected true/false, 1/0, t/f or yes/no)",
                Type::Timestamp => {
                    " (expected ISO-8601 such as 2024-01-01T00:00:00Z, or epoch milliseconds)"
                }
                _ => "",
            };
            format!("field `{name}`: cannot parse `{shown}` as {ty}{hint}")
        }
    }
}

fn looks_like_integer(text: &[u8]) -> bool {
    let t = text.trim_ascii();
    let digits = t.strip_prefix(b"-").or(t.strip_prefix(b"+")).unwrap_or(t);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// A field's text for a message: lossy UTF-8, cut to [`MAX_QUOTED_FIELD`] bytes with an
/// ellipsis.
pub(crate) fn quote_field(text: &[u8]) -> String {
    if text.len() <= MAX_QUOTED_FIELD {
        return String::from_utf8_lossy(text).into_owned();
    }
    let mut s = String::from_utf8_lossy(&text[..MAX_QUOTED_FIELD]).into_owned();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields() {
        assert_eq!(parse_field(b"", Type::Int), Ok(Value::Null));
        assert_eq!(parse_field(b"  ", Type::Float), Ok(Value::Null));
        assert_eq!(parse_field(b"", Type::Bool), Ok(Value::Null));
        assert_eq!(parse_field(b"", Type::Timestamp), Ok(Value::Null));
        assert_eq!(parse_field(b"", Type::String), Ok(Value::str("")));
        assert_eq!(parse_field(b" ", Type::String), Ok(Value::str(" ")));
    }

    #[test]
    fn ints() {
        assert_eq!(parse_field(b"42", Type::Int), Ok(Value::Int(42)));
        assert_eq!(parse_field(b" -7 ", Type::Int), Ok(Value::Int(-7)));
        assert_eq!(parse_field(b"+7", Type::Int), Ok(Value::Int(7)));
        assert_eq!(
            parse_field(b"9223372036854775807", Type::Int),
            Ok(Value::Int(i64::MAX))
        );
        assert_eq!(
            parse_field(b"-9223372036854775808", Type::Int),
            Ok(Value::Int(i64::MIN))
        );
        for bad in [
            &b"9223372036854775808"[..],
            b"-9223372036854775809",
            b"99999999999999999999999",
            b"1.5",
            b"12x",
            b"-",
            b"+",
            b"1 2",
            b"0x10",
        ] {
            assert_eq!(
                parse_field(bad, Type::Int),
                Err(FieldError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_field(b"1.5", Type::Float), Ok(Value::float(1.5)));
        assert_eq!(parse_field(b"3", Type::Float), Ok(Value::float(3.0)));
        assert_eq!(
            parse_field(b" -2e3", Type::Float),
            Ok(Value::float(-2000.0))
        );
        assert_eq!(parse_field(b"12x", Type::Float), Err(FieldError::Invalid));
        assert_eq!(parse_field(b"1.2.3", Type::Float), Err(FieldError::Invalid));
    }

    #[test]
    fn bools() {
        for t in ["true", "TRUE", "t", "1", "Yes", " y e s "] {
            let want = if t == " y e s " {
                Err(FieldError::Invalid)
            } else {
                Ok(Value::Bool(true))
            };
            assert_eq!(parse_field(t.as_bytes(), Type::Bool), want, "{t}");
        }
        for t in ["false", "False", "F", "0", "no", "NO"] {
            assert_eq!(
                parse_field(t.as_bytes(), Type::Bool),
                Ok(Value::Bool(false))
            );
        }
        assert_eq!(parse_field(b"maybe", Type::Bool), Err(FieldError::Invalid));
        assert_eq!(parse_field(b"truest", Type::Bool), Err(FieldError::Invalid));
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            parse_field(b"2024-01-01T00:00:00Z", Type::Timestamp),
            Ok(Value::Time(1_704_067_200_000))
        );
        assert_eq!(
            parse_field(b"1704067200000", Type::Timestamp),
            Ok(Value::Time(1_704_067_200_000))
        );
        assert_eq!(
            parse_field(b"2024-13-01T00:00:00Z", Type::Timestamp),
            Err(FieldError::Invalid)
        );
        assert_eq!(
            parse_field(b"\xff\xfe", Type::Timestamp),
            Err(FieldError::Invalid)
        );
    }

    #[test]
    fn cached_timestamps_agree_with_parse_timestamp() {
        let mut p = FieldParser::new();
        for text in [
            "2024-01-01T00:00:00.000Z",
            "2024-01-01T23:59:59.999Z",
            "2024-01-01T24:00:00.000Z",
            "2024-01-01T12:60:00.000Z",
            "2024-01-01T12:00:60.000Z",
            "2024-01-01T1a:00:00.000Z",
            "2024-01-02T00:00:00.001Z",
            "2024-02-30T00:00:00.000Z",
            "2024-02-29T10:00:00.000Z",
            "2023-02-29T10:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "2024-01-02 00:00:00.001Z",
            "2024-01-02T00:00:00,001Z",
            "2024-01-02T00:00:00.001z",
            "0000-01-01T00:00:00.000Z",
        ] {
            let want = parse_field(text.as_bytes(), Type::Timestamp);
            assert_eq!(p.parse(text.as_bytes(), Type::Timestamp), want, "{text}");
            // Twice: the second may hit the cache.
            assert_eq!(p.parse(text.as_bytes(), Type::Timestamp), want, "{text}");
        }
        assert_eq!(p.parse(b"12", Type::Int), Ok(Value::Int(12)));
    }

    proptest::proptest! {
        #[test]
        fn field_parser_matches_parse_field(
            texts in proptest::collection::vec(
                "(19[6-9][0-9]|20[0-3][0-9])-(0[1-9]|1[0-3])-([0-3][0-9])[T ]([0-2][0-9]):([0-6][0-9]):([0-6][0-9])[.,][0-9]{3}[Zz]",
                1..20,
            )
        ) {
            let mut p = FieldParser::new();
            for text in &texts {
                proptest::prop_assert_eq!(
                    p.parse(text.as_bytes(), Type::Timestamp),
                    parse_field(text.as_bytes(), Type::Timestamp),
                    "{}", text
                );
            }
        }

        #[test]
        fn ints_match_std(i in proptest::num::i64::ANY, pad in 0usize..3) {
            let zeros = "0".repeat(pad);
            let text = if i < 0 {
                format!("-{zeros}{}", i.unsigned_abs())
            } else {
                format!("{zeros}{i}")
            };
            proptest::prop_assert_eq!(parse_int(text.as_bytes()), text.parse::<i64>().ok());
        }
    }

    #[test]
    fn strings() {
        assert_eq!(
            parse_field("héllo".as_bytes(), Type::String),
            Ok(Value::str("héllo"))
        );
        assert_eq!(
            parse_field(b"ab\xffcd", Type::String),
            Err(FieldError::InvalidUtf8)
        );
        let long = "x".repeat(100);
        assert_eq!(
            parse_field(long.as_bytes(), Type::String),
            Ok(Value::str(&long))
        );
    }

    #[test]
    fn details_name_the_field() {
        assert_eq!(
            field_error_detail("amount", Type::Float, b"12x", FieldError::Invalid),
            "field `amount`: cannot parse `12x` as float"
        );
        assert!(field_error_detail(
            "id",
            Type::Int,
            b"99999999999999999999",
            FieldError::Invalid
        )
        .contains("out of range"));
        assert!(
            field_error_detail("name", Type::String, b"\xff", FieldError::InvalidUtf8)
                .contains("invalid UTF-8")
        );
        let long = vec![b'9'; 1000];
        assert!(field_error_detail("x", Type::Float, &long, FieldError::Invalid).len() < 200);
        assert_eq!(DeadReason::BadValue.as_str(), "bad_value");
        assert_eq!(DeadReason::Late.to_string(), "late");
    }

    #[test]
    fn raw_text_is_bounded() {
        let raw = vec![0xffu8; 10_000];
        let text = raw_text(&raw);
        assert!(text.len() <= MAX_RAW_BYTES);
        assert_eq!(raw_text(b"a,b"), "a,b");
    }

    #[test]
    fn batch_rows() {
        let mut b = ParsedBatch::new(2);
        let base = b.begin_row();
        b.values[base] = Value::Int(1);
        b.commit_row(2, 0);
        let base = b.begin_row();
        b.abandon_row(base);
        b.push_dead(3, 1, b"x", DeadReason::Malformed, "bad".into());
        assert_eq!(b.len(), 1);
        assert_eq!(b.records(), 2);
        assert_eq!(b.row(0), &[Value::Int(1), Value::Null]);
        assert_eq!(b.rows().count(), 1);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.arity, 2);
    }
}
