//! Fuzz tests, bounded so that they run in CI (`cargo test --release`):
//! - the CSV and JSON Lines readers over random and mutated files never panic, and every record
//!   the splitter counts comes out as a row or a dead record, whatever the chunk size and the
//!   number of parser threads;
//! - the same kind of files end to end through `eventflow run`: exit status 0 and a summary
//!   whose counts balance;
//! - the pipeline loader (spec + plan) over mutated and random pipeline files: an `Ok` or
//!   diagnostics, never a panic, and the diagnostics render.
//!
//! Case counts are fixed rather than time-boxed so that a failure reproduces; proptest shrinks it
//! and prints the input as a byte string, ready to paste into a regression test. For a longer
//! hunt, multiply every count with `EVENTFLOW_FUZZ_SCALE=50 cargo test --release fuzz`.

use super::support::{bin, root};
use eventflow::connectors::csv_parse::{self, CsvLayout};
use eventflow::connectors::jsonl_parse::{self, JsonLayout};
use eventflow::connectors::parsed::{DeadReason, DeadRecord, ParsedBatch, MAX_RAW_BYTES};
use eventflow::connectors::split::{self, Chunk, Splitter};
use eventflow::diag::{render, SourceFile};
use eventflow::record::{Schema, Type, Value};
use eventflow::spec::PipelineSpec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::Config;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A proptest configuration for `cases` cases (times `EVENTFLOW_FUZZ_SCALE`, default 1). Nothing
/// is written into the source tree: a failure prints its shrunk input instead.
fn config(cases: u32, max_shrink_iters: u32) -> Config {
    let scale = std::env::var("EVENTFLOW_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    Config {
        cases: cases.saturating_mul(scale.max(1)),
        max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// Bytes that print as a byte string, so a shrunk failure can be pasted into a test.
#[derive(Clone, PartialEq)]
struct Bytes(Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

const HEADER: &str = "order_id,ts,customer_id,category,product,quantity,unit_price,amount,status";

fn orders_schema() -> Schema {
    Schema::new([
        ("order_id", Type::Int),
        ("ts", Type::Timestamp),
        ("customer_id", Type::Int),
        ("category", Type::String),
        ("product", Type::String),
        ("quantity", Type::Int),
        ("unit_price", Type::Float),
        ("amount", Type::Float),
        ("status", Type::String),
    ])
}

/// The first rows of data/orders.csv, as fields: valid records to mutate.
fn sample_rows() -> &'static [Vec<String>] {
    static ROWS: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let mut reader = csv::Reader::from_path(root().join("data/orders.csv")).unwrap();
        reader
            .records()
            .take(300)
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    })
}

/// Field texts that sit on the edges of what the types accept.
const ODD_FIELDS: &[&str] = &[
    "",
    " ",
    "-",
    "+",
    "-0",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "99999999999999999999999",
    "1e308",
    "-1e309",
    "NaN",
    "inf",
    "-inf",
    "0x1F",
    "1_000",
    "true",
    "\"\"",
    "\"a\"\"b\"",
    "\"unterminated",
    "x\"y",
    "\"a\nb\"",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "9999-12-31T23:59:59.999Z",
    "0000-01-01T00:00:00.000Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:00+14:00",
    "2024-01-01",
    "8640000000000000",
    "\0",
    "é",
    "\u{feff}",
    "\t",
];

/// Event times on the edges of the range the runtime accepts (the `ts` column).
const ODD_TIMES: &[&str] = &[
    "9223372036854775807",
    "9223372036854775000",
    "253402300799999",
    "253402300800000",
    "9999-12-31T23:59:59.999Z",
    "0",
    "1",
    "-1",
    "-9223372036854775808",
    "1969-12-31T23:59:59.999Z",
    "2024-01-01T00:00:00+14:00",
    "2023-12-31T23:59:59.999Z",
    "",
];

/// JSON values on the edges of what the JSON Lines reader accepts.
const ODD_JSON: &[&str] = &[
    "null",
    "true",
    "1.5",
    "1.0",
    "-0",
    "1e400",
    "-1e400",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "\"\"",
    "\"2024-13-01\"",
    "\"9223372036854775807\"",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "\"é\"",
    "[]",
    "{}",
    "[1, {\"a\": [null]}]",
    "NaN",
    "'x'",
    "01",
];

/// Bytes that matter to the readers, plus any byte.
fn odd_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'"'),
        Just(b','),
        Just(b'\n'),
        Just(b'\r'),
        Just(0u8),
        Just(b' '),
        Just(b'1'),
        Just(b'-'),
        Just(b'{'),
        Just(b'}'),
        Just(b'\\'),
        Just(0xff),
        Just(0xc3),
        Just(0xef),
        any::<u8>(),
    ]
}

/// One edit of a file's bytes; positions are taken modulo the length when applied.
#[derive(Clone, Debug)]
enum ByteEdit {
    Set(usize, u8),
    Delete(usize, usize),
    Insert(usize, u8),
    /// Invalid UTF-8 (a lone continuation byte, a truncated sequence, an overlong encoding).
    InsertInvalidUtf8(usize, usize),
    /// A run of one byte: a long field, a run of quotes or of newlines.
    Repeat(usize, u8, usize),
    /// Copies a slice elsewhere.
    Duplicate(usize, usize, usize),
    Truncate(usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), odd_byte()).prop_map(|(a, b)| ByteEdit::Set(a, b)),
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| ByteEdit::Delete(a, n)),
        (any::<usize>(), odd_byte()).prop_map(|(a, b)| ByteEdit::Insert(a, b)),
        (any::<usize>(), 0usize..4).prop_map(|(a, k)| ByteEdit::InsertInvalidUtf8(a, k)),
        (any::<usize>(), odd_byte(), 1usize..3000).prop_map(|(a, b, n)| ByteEdit::Repeat(a, b, n)),
        (any::<usize>(), any::<usize>(), 1usize..200)
            .prop_map(|(a, b, n)| ByteEdit::Duplicate(a, b, n)),
        any::<usize>().prop_map(ByteEdit::Truncate),
    ]
}

/// Applies `edits` to `data[from..]`, leaving the first `from` bytes alone.
fn apply_byte_edits(data: &mut Vec<u8>, from: usize, edits: &[ByteEdit]) {
    for edit in edits {
        let room = data.len() - from;
        let at = |p: usize| from + if room == 0 { 0 } else { p % (room + 1) };
        match *edit {
            ByteEdit::Set(p, b) if room > 0 => {
                let i = from + p % room;
                data[i] = b;
            }
            ByteEdit::Set(..) => {}
            ByteEdit::Delete(p, n) => {
                let i = at(p);
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
            ByteEdit::Insert(p, b) => data.insert(at(p), b),
            ByteEdit::InsertInvalidUtf8(p, k) => {
                let bad: &[u8] = [&b"\x80"[..], b"\xc3", b"\xe2\x82", b"\xc0\xaf"][k];
                let i = at(p);
                data.splice(i..i, bad.iter().copied());
            }
            ByteEdit::Repeat(p, b, n) => {
                let i = at(p);
                data.splice(i..i, std::iter::repeat_n(b, n));
            }
            ByteEdit::Duplicate(p, q, n) if room > 0 => {
                let src = from + p % room;
                let piece = data[src..(src + n).min(data.len())].to_vec();
                let i = at(q);
                data.splice(i..i, piece);
            }
            ByteEdit::Duplicate(..) => {}
            ByteEdit::Truncate(p) => {
                let i = at(p);
                data.truncate(i);
            }
        }
    }
}

/// One edit of a record before it is encoded.
#[derive(Clone, Debug)]
enum RowEdit {
    Field(usize, usize, usize),
    Drop(usize, usize),
    Extra(usize),
    Ending(usize, usize),
    /// An odd event time in the `ts` column.
    Time(usize, usize),
}

const ENDINGS: &[&str] = &["\n", "\r\n", "\r", "\n\n", " \t\r\n", "\r\r\n"];

fn row_edit() -> impl Strategy<Value = RowEdit> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(r, f, v)| RowEdit::Field(r, f, v)),
        (any::<usize>(), any::<usize>()).prop_map(|(r, f)| RowEdit::Drop(r, f)),
        any::<usize>().prop_map(RowEdit::Extra),
        (any::<usize>(), any::<usize>()).prop_map(|(r, e)| RowEdit::Ending(r, e)),
        (any::<usize>(), any::<usize>()).prop_map(|(r, t)| RowEdit::Time(r, t)),
    ]
}

/// Sample rows with field-level edits applied: (fields, line ending) per row.
fn edited_rows(
    picks: &[usize],
    edits: &[RowEdit],
    odd: &[&'static str],
) -> Vec<(Vec<String>, &'static str)> {
    let sample = sample_rows();
    let mut rows: Vec<(Vec<String>, &'static str)> = picks
        .iter()
        .map(|&i| (sample[i % sample.len()].clone(), "\n"))
        .collect();
    if rows.is_empty() {
        return rows;
    }
    let n = rows.len();
    for edit in edits {
        match *edit {
            RowEdit::Field(r, f, v) => {
                let fields = &mut rows[r % n].0;
                if !fields.is_empty() {
                    let k = f % fields.len();
                    fields[k] = odd[v % odd.len()].to_string();
                }
            }
            RowEdit::Drop(r, f) => {
                let fields = &mut rows[r % n].0;
                if !fields.is_empty() {
                    let k = f % fields.len();
                    fields.remove(k);
                }
            }
            RowEdit::Extra(r) => rows[r % n].0.push("extra".into()),
            RowEdit::Ending(r, e) => rows[r % n].1 = ENDINGS[e % ENDINGS.len()],
            RowEdit::Time(r, t) => {
                if let Some(ts) = rows[r % n].0.get_mut(1) {
                    *ts = ODD_TIMES[t % ODD_TIMES.len()].to_string();
                }
            }
        }
    }
    rows
}

/// Encodes a CSV field the way a CSV writer would; odd fields are written as they are so that
/// their quotes stay unbalanced.
fn csv_field(text: &str) -> String {
    if ODD_FIELDS.contains(&text) || !text.contains([',', '"', '\n']) {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('"', "\"\""))
    }
}

/// A CSV file with a valid header (kept intact, so that the file always passes the plan's
/// header check) and a mutated, random or degenerate body.
fn csv_body_file() -> impl Strategy<Value = Bytes> {
    let n = sample_rows().len();
    let mutated = (
        prop::collection::vec(0..n, 0..40),
        prop::collection::vec(row_edit(), 0..8),
        prop::collection::vec(byte_edit(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(picks, row_edits, byte_edits, final_newline)| {
            let mut file = format!("{HEADER}\n").into_bytes();
            let from = file.len();
            for (fields, ending) in edited_rows(&picks, &row_edits, ODD_FIELDS) {
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                file.extend_from_slice(line.join(",").as_bytes());
                file.extend_from_slice(ending.as_bytes());
            }
            if !final_newline && file.len() > from && file.ends_with(b"\n") {
                file.pop();
            }
            apply_byte_edits(&mut file, from, &byte_edits);
            Bytes(file)
        });
    let random = prop::collection::vec(odd_byte(), 0..2000).prop_map(|body| {
        let mut file = format!("{HEADER}\n").into_bytes();
        file.extend(body);
        Bytes(file)
    });
    let degenerate = prop::sample::select(vec![
        HEADER.to_string(),
        format!("{HEADER}\n"),
        format!("{HEADER}\r\n"),
        format!("\u{feff}{HEADER}\n1,2024-01-01T00:00:00Z,1,a,b,1,1,1,paid\n"),
        format!("{HEADER}\n\n \n\t\r\n\r\n"),
        format!("{HEADER}\n1,2024-01-01T00:00:00Z,1,a,b,1,1,1,paid"),
        format!("{HEADER}\n\""),
        format!("{HEADER}\n\"\"\"\n"),
        format!("{HEADER}\n\r\r\r"),
        format!("{HEADER}\n{}", "\0".repeat(100)),
        format!("{HEADER}\n1,2024-01-01T00:00:00Z,1,a,b,1,1,1,paid\r2,x\r"),
        format!("\n\n{HEADER}\n,,,,,,,,\n"),
    ])
    .prop_map(|s| Bytes(s.into_bytes()));
    prop_oneof![6 => mutated, 3 => random, 1 => degenerate]
}

/// Any CSV file: mostly a valid header with a bad body, sometimes a damaged header too.
fn csv_file() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => csv_body_file(),
        2 => (csv_body_file(), prop::collection::vec(byte_edit(), 1..4)).prop_map(|(f, e)| {
            let mut file = f.0;
            apply_byte_edits(&mut file, 0, &e);
            Bytes(file)
        }),
        1 => prop::collection::vec(any::<u8>(), 0..500).prop_map(Bytes),
        1 => Just(Bytes(Vec::new())),
    ]
}

/// A JSON Lines file: sample orders as objects with mutated values and bytes, or random bytes.
fn jsonl_file() -> impl Strategy<Value = Bytes> {
    let n = sample_rows().len();
    let mutated = (
        prop::collection::vec(0..n, 0..40),
        prop::collection::vec(row_edit(), 0..8),
        prop::collection::vec(byte_edit(), 0..6),
    )
        .prop_map(|(picks, row_edits, byte_edits)| {
            let names: Vec<&str> = HEADER.split(',').collect();
            let mut file = Vec::new();
            for (fields, ending) in edited_rows(&picks, &row_edits, ODD_JSON) {
                let members: Vec<String> = fields
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let key = names.get(i).copied().unwrap_or("extra");
                        // Numbers stay numbers; in `ts` only integers (epoch milliseconds) do.
                        let number = if key == "ts" {
                            v.parse::<i64>().is_ok()
                        } else {
                            v.parse::<f64>().is_ok()
                        };
                        let value = if number || ODD_JSON.contains(&v.as_str()) {
                            v.clone()
                        } else {
                            serde_json::to_string(v).unwrap()
                        };
                        format!("{key:?}: {value}")
                    })
                    .collect();
                file.extend_from_slice(format!("{{{}}}", members.join(", ")).as_bytes());
                file.extend_from_slice(ending.as_bytes());
            }
            apply_byte_edits(&mut file, 0, &byte_edits);
            Bytes(file)
        });
    let random = prop::collection::vec(odd_byte(), 0..2000).prop_map(Bytes);
    let degenerate = prop::sample::select(vec![
        String::new(),
        "\n\n  \r\n".to_string(),
        "{}".to_string(),
        "\u{feff}{\"order_id\": 1}\n".to_string(),
        "[1]\n\"x\"\nnull\n{\"order_id\": 1} trailing\n".to_string(),
        format!("{}\n", "[".repeat(10_000)),
        format!("{{\"product\": \"{}\"}}\n", "\\\\".repeat(3000)),
        "{\"order_id\": 1, \"order_id\": \"x\"}\n".to_string(),
    ])
    .prop_map(|s| Bytes(s.into_bytes()));
    prop_oneof![6 => mutated, 3 => random, 1 => degenerate]
}

// ---------------------------------------------------------------------------------------------
// The readers, as a file source drives them
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
}

/// What reading a file gave, in file order: the part that chunking must not change.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Records the splitter counted (the source's `read`).
    records: u64,
    /// Good rows: (position, line, values).
    rows: Vec<(u64, u64, Vec<Value>)>,
    /// Dead records, by position.
    dead: Vec<DeadRecord>,
}

/// Reads `file` as `file_source` does: header, splitter with chunks of `target` bytes, chunk `k`
/// parsed by parser thread `k % parsers`. Checks the accounting of every chunk and of the file.
/// `Err` is a header that does not match the schema (the plan reports it before a run).
fn read_file(
    file: &[u8],
    format: Format,
    needed: &[bool],
    target: usize,
    parsers: usize,
) -> Result<Outcome, String> {
    let schema = orders_schema();
    let (body, first_line, csv_layout) = match format {
        Format::Csv => {
            let (header, body) = split::read_header(file);
            let mut layout = CsvLayout::from_header(header.unwrap_or(b""), &schema, b',')?;
            layout.project(needed);
            (body, split::line_at(file, body), Some(layout))
        }
        Format::Jsonl => (0, 1, None),
    };
    let json_layout = JsonLayout::new(&schema);
    let mut splitter = Splitter::new(file, body, first_line, target, format == Format::Csv);
    let chunks: Vec<Chunk> = splitter.by_ref().collect();
    let records = splitter.records_seen();
    let chunk_records = |k: usize| {
        let end = chunks.get(k + 1).map_or(records, |c| c.first_position);
        end - chunks[k].first_position
    };
    let parse = |chunk: &Chunk| {
        let mut batch = ParsedBatch::new(schema.len());
        match &csv_layout {
            Some(layout) => {
                csv_parse::parse_chunk(chunk.bytes(file), chunk, layout, &schema, &mut batch)
            }
            None => jsonl_parse::parse_chunk(
                chunk.bytes(file),
                chunk,
                &json_layout,
                &schema,
                &mut batch,
            ),
        }
        batch
    };
    let batches: Vec<(usize, ParsedBatch)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..parsers)
            .map(|p| {
                let (chunks, parse) = (&chunks, &parse);
                s.spawn(move || {
                    (p..chunks.len())
                        .step_by(parsers)
                        .map(|k| (k, parse(&chunks[k])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut rows = Vec::new();
    let mut dead = Vec::new();
    for (k, batch) in batches {
        // Each chunk accounts for exactly the records the splitter put in it: the source's
        // positions and watermarks rely on it.
        assert_eq!(batch.records() as u64, chunk_records(k), "chunk {k}");
        assert_eq!(batch.values.len(), batch.len() * schema.len());
        for (i, row) in batch.rows().enumerate() {
            for (f, v) in row.iter().enumerate() {
                if format == Format::Csv && !needed[f] {
                    assert_eq!(v, &Value::Null, "a field nobody reads is not parsed");
                }
            }
            rows.push((batch.positions[i], batch.lines[i], row.to_vec()));
        }
        dead.extend(batch.dead);
    }
    rows.sort_by_key(|r| r.0);
    dead.sort_by_key(|d| d.position);
    // Every record read is a row or a dead record (malformed or bad value), at one position.
    let mut by_reason: BTreeMap<DeadReason, u64> = BTreeMap::new();
    for d in &dead {
        *by_reason.entry(d.reason).or_default() += 1;
    }
    assert!(by_reason
        .keys()
        .all(|r| matches!(r, DeadReason::Malformed | DeadReason::BadValue)));
    assert_eq!(rows.len() as u64 + by_reason.values().sum::<u64>(), records);
    let mut positions: Vec<u64> = rows.iter().map(|r| r.0).collect();
    positions.extend(dead.iter().map(|d| d.position));
    positions.sort_unstable();
    assert!(positions.iter().copied().eq(0..records), "positions");
    for d in &dead {
        assert!(!d.detail.is_empty(), "{d:?}");
        assert!(d.raw.len() <= MAX_RAW_BYTES);
        assert!(d.line >= first_line);
    }
    Ok(Outcome {
        records,
        rows,
        dead,
    })
}

/// Chunk sizes and parser counts that put chunk boundaries everywhere.
const SPLITS: &[(usize, usize)] = &[(1, 1), (1, 3), (7, 2), (64, 4), (4096, 3), (1 << 20, 2)];

/// Reads `file` with every split in [`SPLITS`]; all must agree with one parser on 1 MiB chunks.
fn check_reader(file: &[u8], format: Format, needed: &[bool]) -> Result<Outcome, String> {
    let reference = read_file(file, format, needed, 1 << 20, 1);
    for &(target, parsers) in SPLITS {
        let other = read_file(file, format, needed, target, parsers);
        assert_eq!(other, reference, "target {target}, {parsers} parsers");
    }
    reference
}

fn needed_mask() -> impl Strategy<Value = Vec<bool>> {
    prop_oneof![Just(vec![true; 9]), prop::collection::vec(any::<bool>(), 9),]
}

/// Cases per reader fuzz test (each case reads the file in seven ways).
const READER_CASES: u32 = 1000;

proptest! {
    #![proptest_config(config(READER_CASES, 2000))]

    #[test]
    fn csv_reader_accounts_for_every_record(file in csv_file(), needed in needed_mask()) {
        let _ = check_reader(&file.0, Format::Csv, &needed);
    }

    #[test]
    fn jsonl_reader_accounts_for_every_record(file in jsonl_file()) {
        check_reader(&file.0, Format::Jsonl, &[true; 9]).expect("JSON Lines has no header");
    }
}

/// Lines of 1–5 MB: one record each, read the same with any chunking, raw text capped.
#[test]
fn huge_lines_are_single_records() {
    let mb = 1 << 20;
    let row = "1,2024-01-01T00:00:00Z,1,books,p,1,1.5,1.5,paid\n";
    let csv_cases: Vec<(&str, Vec<u8>, u64, u64)> = vec![
        // (name, file, records, dead)
        (
            "1 MB unquoted field",
            format!(
                "{HEADER}\n1,2024-01-01T00:00:00Z,1,{},p,1,1,1,paid\n{row}",
                "x".repeat(mb)
            )
            .into_bytes(),
            2,
            0,
        ),
        (
            "3 MB after an unclosed quote",
            format!("{HEADER}\n{row}1,\"{}\n{row}", "y,\n".repeat(mb)).into_bytes(),
            2,
            1,
        ),
        (
            "5 MB quoted field with newlines",
            format!(
                "{HEADER}\n1,2024-01-01T00:00:00Z,1,\"{}\",p,1,1,1,paid\n{row}",
                "z\n".repeat(5 * mb / 2)
            )
            .into_bytes(),
            2,
            0,
        ),
        (
            "2 MB without a newline",
            format!("{HEADER}\n{}", ",".repeat(2 * mb)).into_bytes(),
            1,
            1,
        ),
        (
            "1 MB of NUL bytes",
            [
                format!("{HEADER}\n").as_bytes(),
                &vec![0u8; mb],
                b"\n",
                row.as_bytes(),
            ]
            .concat(),
            2,
            1,
        ),
        (
            "1 MB of quotes",
            [
                format!("{HEADER}\n").as_bytes(),
                &vec![b'"'; mb],
                b"\n",
                row.as_bytes(),
            ]
            .concat(),
            2,
            1,
        ),
    ];
    for (name, file, records, dead) in csv_cases {
        let out = check_reader(&file, Format::Csv, &[true; 9]).unwrap();
        assert_eq!(
            (out.records, out.dead.len() as u64),
            (records, dead),
            "{name}"
        );
    }
    let json_row = "{\"order_id\": 1}\n";
    let jsonl_cases: Vec<(&str, Vec<u8>, u64, u64)> = vec![
        (
            "1 MB string",
            format!("{{\"product\": \"{}\"}}\n{json_row}", "s".repeat(mb)).into_bytes(),
            2,
            0,
        ),
        (
            "5 MB of nesting",
            format!("{{\"x\": {}}}\n{json_row}", "[".repeat(5 * mb)).into_bytes(),
            2,
            1,
        ),
        (
            "2 MB of invalid UTF-8",
            [
                &b"{\"product\": \""[..],
                &vec![0xffu8; 2 * mb],
                b"\"}\n",
                json_row.as_bytes(),
            ]
            .concat(),
            2,
            1,
        ),
        (
            "3 MB without a newline",
            format!("{json_row}{{\"product\": \"{}", "t".repeat(3 * mb)).into_bytes(),
            2,
            1,
        ),
    ];
    for (name, file, records, dead) in jsonl_cases {
        let out = check_reader(&file, Format::Jsonl, &[true; 9]).unwrap();
        assert_eq!(
            (out.records, out.dead.len() as u64),
            (records, dead),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// End to end through `eventflow run`
// ---------------------------------------------------------------------------------------------

const SCHEMA: &str = "{ order_id = \"int\", ts = \"timestamp\", customer_id = \"int\", category = \"string\", product = \"string\", quantity = \"int\", unit_price = \"float\", amount = \"float\", status = \"string\" }";

/// Pipelines over the fuzzed files, covering event and position time, fused and unfused
/// sources, windows, arithmetic on fuzzed values and every error policy that keeps running.
fn e2e_pipelines(dir: &Path) -> Vec<(&'static str, PathBuf, Format)> {
    let event_csv = format!(
        "[pipeline]\ntick = \"1s\"\n\
         [sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
         event_time = \"ts\"\nmax_lateness = \"5s\"\n\
         [transforms.paid]\ntype = \"filter\"\ninput = \"orders\"\nwhere = \"status = 'paid' AND amount > 0\"\n\
         [transforms.revenue]\ntype = \"aggregate\"\ninput = \"paid\"\ngroup_by = [\"category\"]\n\
         aggregates = {{ revenue = \"sum(amount)\", orders = \"count(*)\", avg_order = \"avg(amount)\", largest = \"max(amount)\", customers = \"count(DISTINCT customer_id)\" }}\n\
         [transforms.per_minute]\ntype = \"aggregate\"\ninput = \"orders\"\ngroup_by = [\"status\"]\n\
         window = {{ type = \"hopping\", size = \"2m\", slide = \"1m\" }}\n\
         aggregates = {{ n = \"count(*)\", qty = \"sum(quantity)\", first = \"min(ts)\" }}\n\
         [sinks.snapshot]\ntype = \"csv\"\ninput = \"revenue\"\nmode = \"snapshot\"\n\
         [sinks.updates]\ntype = \"jsonl\"\ninput = \"revenue\"\n\
         [sinks.minutes]\ntype = \"csv\"\ninput = \"per_minute\"\n"
    );
    let position_csv = format!(
        "[pipeline]\ntick_records = 7\n\
         [sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
         on_error = \"skip\"\n\
         [transforms.some]\ntype = \"filter\"\ninput = \"orders\"\nwhere = \"quantity <> 2 OR product LIKE '%a%'\"\n\
         [transforms.math]\ntype = \"select\"\ninput = \"some\"\n\
         fields = {{ id = \"order_id\", ratio = \"order_id / quantity\", rem = \"customer_id % quantity\", \
         big = \"quantity * 4611686018427387904\", neg = \"-order_id\", later = \"ts + 9223372036854775807\", \
         cents = \"CAST(amount * 100 AS INT)\", r = \"round(unit_price, 3)\", a = \"abs(order_id)\", \
         up = \"upper(concat(category, product))\" }}\n\
         [sinks.math_out]\ntype = \"csv\"\ninput = \"math\"\n"
    );
    let sessions_jsonl = format!(
        "[pipeline]\ntick = \"1s\"\n\
         [sources.orders]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\nschema = {SCHEMA}\n\
         event_time = \"ts\"\nmax_lateness = \"1m\"\n\
         [transforms.sessions]\ntype = \"aggregate\"\ninput = \"orders\"\ngroup_by = [\"customer_id\"]\n\
         window = {{ type = \"session\", gap = \"30s\" }}\n\
         aggregates = {{ n = \"count(*)\", spent = \"sum(amount)\", last = \"max(ts)\" }}\n\
         [sinks.sessions_out]\ntype = \"jsonl\"\ninput = \"sessions\"\n\
         [transforms.by_minute]\ntype = \"aggregate\"\ninput = \"orders\"\n\
         window = {{ type = \"tumbling\", size = \"1m\" }}\nemit = \"updates\"\n\
         aggregates = {{ n = \"count(*)\" }}\n\
         [sinks.minutes]\ntype = \"csv\"\ninput = \"by_minute\"\n"
    );
    [
        ("event_csv", event_csv, Format::Csv),
        ("position_csv", position_csv, Format::Csv),
        ("sessions_jsonl", sessions_jsonl, Format::Jsonl),
    ]
    .into_iter()
    .map(|(name, text, format)| {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        (name, path, format)
    })
    .collect()
}

/// Runs `pipeline` with the binary; checks exit status 0 and that summary.json balances and
/// read every record the reader counts.
fn run_and_check(pipeline: &Path, out: &Path, workers: usize, records: u64) {
    let run = std::process::Command::new(bin())
        .args(["run", "--quiet", "--workers", &workers.to_string(), "--out"])
        .arg(out)
        .arg(pipeline)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let name = pipeline.file_name().unwrap().to_string_lossy();
    assert_ne!(run.status.code(), Some(101), "{name}: panic\n{stderr}");
    assert_eq!(run.status.code(), Some(0), "{name}\n{stderr}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let source = &summary["sources"][0];
    let count = |v: &serde_json::Value| v.as_u64().unwrap();
    let dead: u64 = source["dead_lettered"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    let read = count(&source["read"]);
    assert_eq!(read, records, "{name}: records read");
    assert_eq!(
        read,
        count(&source["emitted"]) + count(&source["filtered"]) + dead + count(&source["skipped"]),
        "{name}: balance\n{summary:#}"
    );
    let letters = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
    assert_eq!(letters.lines().count() as u64, dead, "{name}: dead letters");
}

/// Cases of the end-to-end fuzz test; each runs three pipelines.
const E2E_CASES: u32 = 16;

proptest! {
    #![proptest_config(config(E2E_CASES, 200))]

    #[test]
    fn runs_on_bad_files_exit_0_and_balance(
        csv in csv_body_file(),
        jsonl in jsonl_file(),
        workers in 1usize..=3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("orders.csv"), &csv.0).unwrap();
        std::fs::write(dir.path().join("orders.jsonl"), &jsonl.0).unwrap();
        for (name, pipeline, format) in e2e_pipelines(dir.path()) {
            let file = if format == Format::Csv { &csv.0 } else { &jsonl.0 };
            let records = read_file(file, format, &[true; 9], 1 << 20, 1)
                .expect("the header is intact")
                .records;
            run_and_check(&pipeline, &dir.path().join(name), workers, records);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline loader
// ---------------------------------------------------------------------------------------------

/// The sample pipelines and the error corpus, with data paths made absolute so that a copy
/// anywhere still finds its inputs.
fn seed_pipelines() -> &'static [String] {
    static SEEDS: OnceLock<Vec<String>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let data = format!("\"{}/", root().join("data").display());
        let mut seeds = Vec::new();
        for dir in ["pipelines", "tests/errors"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(f).unwrap();
                seeds.push(
                    text.replace("\"../../data/", &data)
                        .replace("\"../data/", &data),
                );
            }
        }
        seeds
    })
}

/// Values that stress settings, durations, paths and expressions.
const ODD_VALUES: &[&str] = &[
    "\"\"",
    "\"x\"",
    "0",
    "-1",
    "1.5",
    "nan",
    "-inf",
    "true",
    "[]",
    "[\"orders\", \"orders\"]",
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "{ x = \"int\" }",
    "{ x = \"nope\" }",
    "1979-05-27T07:32:00Z",
    "\"0ms\"",
    "\"1ms\"",
    "\"18446744073709551615ms\"",
    "\"9223372036854775807ms\"",
    "\"9223372036854775808ms\"",
    "\"106751991167d\"",
    "\"-5s\"",
    "\"5 s\"",
    "\"é\"",
    "\"\\u00e9 > 1\"",
    "\"amount\\t> 'é'\"",
    "\"\"\"\namount >\n 1\"\"\"",
    "'amount > \"x\"'",
    "\"count(*)\"",
    "\"count(DISTINCT status)\"",
    "\"sum(amount) / 0\"",
    "\"-9223372036854775808 / -1\"",
    "\"9223372036854775807 + 1\"",
    "\"TIMESTAMP '9999-12-31' + 9223372036854775807\"",
    "\"((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))\"",
    "\"amount > 'lots'\"",
    "\"status = 'paid' AND\"",
    "\"window_end - window_start\"",
    "\"upper(category)\"",
    "\"round(amount * 1.2, 99)\"",
    "\"CAST(amount AS INT)\"",
    "\"amount IN (1, 2, NULL)\"",
    "\"ts BETWEEN '2024-01-01' AND 'x'\"",
    "\"status LIKE 'a%' ESCAPE 'ab'\"",
    "\"min(ts)\"",
    "\"max(max(amount))\"",
    "{ type = \"tumbling\", size = \"0ms\" }",
    "{ type = \"hopping\", size = \"1m\", slide = \"7s\" }",
    "{ type = \"hopping\", size = \"1s\", slide = \"1m\" }",
    "{ type = \"session\", gap = \"1ms\" }",
    "{ type = \"session\", gap = \"18446744073709551615ms\" }",
    "{ type = \"tumbling\", size = \"18446744073709551615ms\" }",
    "{ type = \"tumbling\", size = \"1m\", time_field = \"category\" }",
    "{ revenue = \"sum(amount)\", n = \"count(*)\" }",
    "{ t = \"max(ts)\", time = \"count(*)\" }",
    "{ window_start = \"order_id\" }",
    "\"snapshot\"",
    "\"final\"",
    "\"jsonl\"",
    "\"stdout\"",
    "\"dead_letters.jsonl\"",
    "\"summary.json\"",
    "\"../x.csv\"",
    "\"/tmp/x.csv\"",
    "\"a/./b.csv\"",
    "\".\"",
    "\";\"",
    "\"\\\"\"",
    "\"\\n\"",
    "\"ab\"",
    "\"fail\"",
    "\"skip\"",
    "2",
    "1.0000001",
    "-0.0",
];

/// Keys a pipeline file may hold, to swap in.
const KEYS: &[&str] = &[
    "type",
    "input",
    "inputs",
    "path",
    "schema",
    "event_time",
    "max_lateness",
    "where",
    "fields",
    "group_by",
    "aggregates",
    "window",
    "emit",
    "mode",
    "format",
    "delimiter",
    "on_error",
    "max_error_rate",
    "tick",
    "tick_records",
    "name",
    "description",
    "time_field",
    "wher",
    "\"quoted key\"",
    "a.b",
];

/// Table headers to swap in.
const HEADERS: &[&str] = &[
    "[pipeline]",
    "[sources.orders]",
    "[transforms.paid]",
    "[transforms.orders]",
    "[sinks.out]",
    "[sinks.paid]",
    "[sources]",
    "[[sinks.x]]",
    "[sinks.\"bad name\"]",
    "[transforms.a.b]",
    "[extra]",
    "[pipeline.x]",
];

/// One edit of a pipeline file's lines.
#[derive(Clone, Debug)]
enum TomlEdit {
    Bytes(ByteEdit),
    DeleteLine(usize),
    DuplicateLine(usize, usize),
    SwapLines(usize, usize),
    Value(usize, usize),
    Key(usize, usize),
    Header(usize, usize),
    /// A line `key = value` inserted anywhere.
    Insert(usize, usize, usize),
}

/// Edits that keep a file valid TOML most of the time, so that cases reach the planner.
fn structural_edit() -> impl Strategy<Value = TomlEdit> {
    let u = any::<usize>;
    prop_oneof![
        1 => u().prop_map(TomlEdit::DeleteLine),
        4 => (u(), u()).prop_map(|(a, b)| TomlEdit::Value(a, b)),
        2 => (u(), u()).prop_map(|(a, b)| TomlEdit::Key(a, b)),
        1 => (u(), u()).prop_map(|(a, b)| TomlEdit::Header(a, b)),
        2 => (u(), u(), u()).prop_map(|(a, b, c)| TomlEdit::Insert(a, b, c)),
    ]
}

/// Any edit, including ones that break the TOML syntax.
fn toml_edit() -> impl Strategy<Value = TomlEdit> {
    let u = any::<usize>;
    prop_oneof![
        5 => structural_edit(),
        2 => byte_edit().prop_map(TomlEdit::Bytes),
        1 => (u(), u()).prop_map(|(a, b)| TomlEdit::DuplicateLine(a, b)),
        1 => (u(), u()).prop_map(|(a, b)| TomlEdit::SwapLines(a, b)),
    ]
}

/// The lines of the table that line `at` belongs to (from its header to the next).
fn table_of(lines: &[String], at: usize) -> std::ops::Range<usize> {
    let is_header = |l: &String| l.trim_start().starts_with('[');
    let start = (0..at.min(lines.len()))
        .rev()
        .find(|&i| is_header(&lines[i]))
        .map_or(0, |i| i + 1);
    let end = (at.min(lines.len())..lines.len())
        .find(|&i| is_header(&lines[i]) && i > start)
        .unwrap_or(lines.len());
    start..end
}

/// The line in line `at`'s table that sets `key`.
fn key_line(lines: &[String], at: usize, key: &str) -> Option<usize> {
    table_of(lines, at).find(|&i| {
        lines[i]
            .split_once('=')
            .is_some_and(|(k, _)| k.trim() == key)
    })
}

fn table_has_key(lines: &[String], at: usize, key: &str) -> bool {
    key_line(lines, at, key).is_some()
}

fn apply_toml_edits(text: &str, edits: &[TomlEdit]) -> Vec<u8> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut bytes = Vec::new();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            TomlEdit::Bytes(e) => bytes.push(e.clone()),
            TomlEdit::DeleteLine(a) if !lines.is_empty() => {
                lines.remove(a % n);
            }
            TomlEdit::DuplicateLine(a, b) if !lines.is_empty() => {
                let line = lines[a % n].clone();
                lines.insert(b % (n + 1), line);
            }
            TomlEdit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            TomlEdit::Value(a, v) if !lines.is_empty() => {
                let line = &mut lines[a % n];
                if let Some((key, _)) = line.split_once(" = ") {
                    *line = format!("{key} = {}", ODD_VALUES[v % ODD_VALUES.len()]);
                }
            }
            TomlEdit::Key(a, k) if !lines.is_empty() => {
                let (at, key) = (a % n, KEYS[k % KEYS.len()]);
                if table_has_key(&lines, at, key) {
                    continue; // a duplicate key only tests the TOML parser
                }
                if let Some((_, value)) = lines[at].split_once(" = ") {
                    lines[at] = format!("{key} = {value}");
                }
            }
            TomlEdit::Header(a, h) if !lines.is_empty() => {
                let at = a % n;
                let header = (at..lines.len())
                    .chain(0..at)
                    .find(|&i| lines[i].starts_with('['));
                if let Some(i) = header {
                    lines[i] = HEADERS[h % HEADERS.len()].to_string();
                }
            }
            TomlEdit::Insert(a, k, v) => {
                let (at, key) = (a % (lines.len() + 1), KEYS[k % KEYS.len()]);
                let line = format!("{key} = {}", ODD_VALUES[v % ODD_VALUES.len()]);
                match key_line(&lines, at, key) {
                    // The key is there already: change its value instead.
                    Some(i) => lines[i] = line,
                    None => lines.insert(at, line),
                }
            }
            _ => {}
        }
    }
    let mut data = lines.join("\n").into_bytes();
    data.push(b'\n');
    apply_byte_edits(&mut data, 0, &bytes);
    data
}

/// A random TOML document built from pipeline-ish pieces (distinct tables, distinct keys).
fn random_toml() -> impl Strategy<Value = Vec<u8>> {
    let table = (
        prop::sample::subsequence(KEYS, 0..6),
        prop::collection::vec(prop::sample::select(ODD_VALUES), 6),
    )
        .prop_map(|(keys, values)| {
            keys.iter()
                .zip(values)
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect::<String>()
        });
    (
        prop::sample::subsequence(HEADERS, 0..6),
        prop::collection::vec(table, 6),
    )
        .prop_map(|(headers, tables)| {
            headers
                .iter()
                .zip(tables)
                .map(|(h, t)| format!("{h}\n{t}"))
                .collect::<String>()
                .into_bytes()
        })
}

/// A pipeline file: a mutated seed, random TOML or random bytes.
fn pipeline_file() -> impl Strategy<Value = Bytes> {
    let seeds = seed_pipelines().len();
    prop_oneof![
        6 => (0..seeds, prop::collection::vec(structural_edit(), 1..5))
            .prop_map(|(s, edits)| Bytes(apply_toml_edits(&seed_pipelines()[s], &edits))),
        3 => (0..seeds, prop::collection::vec(toml_edit(), 1..8))
            .prop_map(|(s, edits)| Bytes(apply_toml_edits(&seed_pipelines()[s], &edits))),
        2 => random_toml().prop_map(Bytes),
        1 => prop::collection::vec(odd_byte(), 0..400).prop_map(Bytes),
    ]
}

/// Loads `bytes` as a pipeline file, plans it and checks its outputs; everything either works or
/// gives diagnostics that render.
fn load_and_plan(bytes: &[u8], dir: &Path) {
    let path = dir.join("fuzz.toml");
    std::fs::write(&path, bytes).unwrap();
    let check = |file: &SourceFile, diags: &[eventflow::diag::Diagnostic]| {
        assert!(!diags.is_empty(), "a failure comes with diagnostics");
        for color in [false, true] {
            let text = render(file, diags, color);
            assert!(text.contains("error["), "{text}");
        }
        for d in diags {
            if let Some((span, _)) = &d.primary {
                let _ = file.location(span.start);
            }
        }
    };
    let spec = match PipelineSpec::load(&path) {
        Ok(spec) => spec,
        Err((file, diags)) => {
            check(&file, &diags);
            return;
        }
    };
    match eventflow::plan::build(&spec) {
        Ok(plan) => {
            let _ = plan.explain();
            let _ = plan.to_dot();
            // The checks a run makes first, against an output folder that does not exist yet.
            if let Err(diags) = eventflow::plan::check_outputs(&plan, &dir.join("out")) {
                check(&plan.file, &diags);
            }
            assert!(!dir.join("out").exists(), "checking creates nothing");
        }
        Err(diags) => check(&spec.file, &diags),
    }
}

/// Cases of the loader fuzz test.
const LOADER_CASES: u32 = 3000;

proptest! {
    #![proptest_config(config(LOADER_CASES, 4000))]

    #[test]
    fn pipeline_loader_never_panics(file in pipeline_file()) {
        let dir = tempfile::tempdir().unwrap();
        load_and_plan(&file.0, dir.path());
    }
}

/// A few mutated pipeline files, with invalid UTF-8, through the binary's `check` and `graph`:
/// exit status 0 or 1, never a panic.
#[test]
fn cli_check_survives_mutated_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = (pipeline_file(), 0usize..4);
    for i in 0..16 {
        let (file, k) = strategy.new_tree(&mut runner).unwrap().current();
        let mut bytes = file.0;
        let bad: &[u8] = [&b"\x80"[..], b"\xc3", b"\xe2\x82", b"\xff\xfe"][k];
        let at = if bytes.is_empty() {
            0
        } else {
            i * 37 % bytes.len()
        };
        bytes.splice(at..at, bad.iter().copied());
        let path = dir.path().join(format!("p{i}.toml"));
        std::fs::write(&path, &bytes).unwrap();
        for command in ["check", "graph"] {
            let out = std::process::Command::new(bin())
                .arg(command)
                .arg(&path)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{command} {:?}: {:?}\n{stderr}",
                Bytes(bytes.clone()),
                out.status
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimized inputs the fuzz tests found
// ---------------------------------------------------------------------------------------------

/// Found by `runs_on_bad_files_exit_0_and_balance`: the event time `9223372036854775807`
/// (epoch milliseconds, the largest `i64`) overflowed window arithmetic (`start + size`): a
/// panic, exit status 101, in a debug build, wrapped windows in a release build. It also
/// pushed the watermark to the end of time, so every later record was late. Event times after
/// 9999-12-31 are now bad values, like times before 1970.
#[test]
fn event_time_at_the_end_of_i64_is_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let row = |id: u32, ts: &str| format!("{id},{ts},1,a,b,1,1,1,paid\n");
    let data = [
        format!("{HEADER}\n"),
        row(1, "2024-01-01T00:00:00Z"),
        row(2, "9223372036854775807"),
        row(3, "253402300800000"),
        row(4, "2024-01-01T00:00:01Z"),
        row(5, "9999-12-31T23:59:59.999Z"),
        row(6, "2024-01-01T00:00:02Z"),
    ]
    .concat();
    std::fs::write(dir.path().join("orders.csv"), data).unwrap();
    let windows = [
        "type = \"tumbling\", size = \"1m\"",
        "type = \"hopping\", size = \"2m\", slide = \"1m\"",
        "type = \"session\", gap = \"30s\"",
    ];
    for (i, window) in windows.iter().enumerate() {
        for emit in ["final", "updates"] {
            let pipeline = dir.path().join(format!("w{i}_{emit}.toml"));
            std::fs::write(
                &pipeline,
                format!(
                    "[pipeline]\ntick = \"1s\"\n\
                     [sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
                     event_time = \"ts\"\nmax_lateness = \"5s\"\n\
                     [transforms.w]\ntype = \"aggregate\"\ninput = \"orders\"\n\
                     window = {{ {window} }}\nemit = \"{emit}\"\n\
                     aggregates = {{ n = \"count(*)\", last = \"max(ts)\" }}\n\
                     [sinks.out]\ntype = \"csv\"\ninput = \"w\"\n"
                ),
            )
            .unwrap();
            for workers in [1, 3] {
                let out = dir.path().join(format!("out_w{i}_{emit}_{workers}"));
                run_and_check(&pipeline, &out, workers, 6);
                let letters = std::fs::read_to_string(out.join("dead_letters.jsonl")).unwrap();
                let reasons: Vec<(u64, String, String)> = letters
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        let text = |k: &str| v[k].as_str().unwrap().to_string();
                        (v["line"].as_u64().unwrap(), text("reason"), text("detail"))
                    })
                    .collect();
                let after = "event time is after 9999-12-31".to_string();
                assert_eq!(
                    reasons[..2],
                    [
                        (3, "bad_value".to_string(), after.clone()),
                        (4, "bad_value".to_string(), after)
                    ],
                    "{letters}"
                );
                // Only the record behind the (valid) year-9999 record is late.
                assert_eq!(reasons.len(), 3, "{letters}");
                assert_eq!((reasons[2].0, reasons[2].1.as_str()), (7, "late"));
            }
        }
    }
}

/// Found while fixing the above: a duration beyond `i64` milliseconds, such as
/// `max_lateness = "18446744073709551615ms"`, was accepted and then wrapped to a negative
/// number (a watermark ahead of every record, windows of negative size). Durations are now at
/// most the span of event time.
#[test]
fn durations_beyond_event_time_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("orders.csv"), format!("{HEADER}\n")).unwrap();
    let cases = [
        ("max_lateness = \"18446744073709551615ms\"", ""),
        ("max_lateness = 253402300800000", ""),
        (
            "",
            "window = { type = \"tumbling\", size = \"9223372036854775808ms\" }",
        ),
        (
            "",
            "window = { type = \"session\", gap = \"106751991167d\" }",
        ),
    ];
    for (source, transform) in cases {
        let pipeline = dir.path().join("p.toml");
        std::fs::write(
            &pipeline,
            format!(
                "[sources.orders]\ntype = \"csv\"\npath = \"orders.csv\"\nschema = {SCHEMA}\n\
                 event_time = \"ts\"\n{source}\n\
                 [transforms.w]\ntype = \"aggregate\"\ninput = \"orders\"\n{transform}\n\
                 aggregates = {{ n = \"count(*)\" }}\n\
                 [sinks.out]\ntype = \"csv\"\ninput = \"w\"\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(bin())
            .arg("check")
            .arg(&pipeline)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{source}{transform}\n{stderr}");
        assert!(
            stderr.contains("error[E0105]")
                && stderr.contains("longer than eventflow's event-time range"),
            "{source}{transform}\n{stderr}"
        );
    }
}
