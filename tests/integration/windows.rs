//! Window oracle tests: tumbling, hopping and session windows against plain Rust reference
//! implementations (sort by event time, bucket, fold) on generated clickstream data at 1, 2 and
//! 4 workers; records beyond `max_lateness`; `emit = "updates"` consolidated against
//! `emit = "final"`; a late record that joins two sessions; and the sample pipeline
//! `pipelines/clickstream_windows.toml` on `data/clickstream.csv`.
//!
//! The contract under test:
//! - tumbling and hopping windows are `[s, s + size)` for every multiple `s` of `slide` (the size
//!   for tumbling) since the Unix epoch with `s <= t < s + size`;
//! - a session is a run of one key's records each less than `gap` after the previous one, the
//!   window `[first, last + gap)` (a record exactly `gap` after the last one is outside it);
//! - output columns are `window_start, window_end`, the `group_by` fields, then the aggregates;
//! - `emit = "final"` writes each window's row once (diff 1) at `time` = `window_end` rounded up
//!   to a multiple of the tick; `emit = "updates"` writes -old/+new at the tick of each change,
//!   and summing `diff` per row gives the final rows;
//! - a record below the watermark (the largest event time of the earlier records in file order,
//!   minus `max_lateness`) is dead-lettered as `late` and reaches no window; one exactly at the
//!   watermark is accepted;
//! - the same input gives byte-identical files at any worker count and in any file order within
//!   `max_lateness` (changes are applied in event-time order).

use super::support::{read, root, run_pipeline};
use eventflow::generate::clickstream::{write_clickstream_csv, ClickstreamConfig};
use eventflow::record::time::{iso8601, parse_timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

const MINUTE: i64 = 60_000;
/// The session gap of every session window here.
const GAP: i64 = 30 * MINUTE;
/// The `max_lateness` of the generated-data pipelines.
const LATENESS: i64 = 15_000;
const SCHEMA: &str =
    "{ event_id = \"int\", ts = \"timestamp\", user_id = \"int\", page = \"string\", \
                      event_type = \"string\", referrer = \"string\" }";

/// Generated inputs: (events, seed, max disorder in ms, tick). The second spans about 70 minutes,
/// so users have several 30-minute sessions, and is disordered right up to `max_lateness`; the
/// third has ticks that do not divide a minute, so window ends round up to the next tick.
const CASES: [(u64, u64, i64, &str); 3] = [
    (5_000, 1, 10_000, "1s"),
    (100_000, 7, 15_000, "1s"),
    (30_000, 3, 15_000, "7s"),
];

// ---------------------------------------------------------------------------------------------
// Pipelines

/// Keeps page views only.
const VIEWS: &str = "
[transforms.views]
type = \"filter\"
input = \"clicks\"
where = \"event_type = 'view'\"
";

/// Views per page per 1-minute tumbling window (reads the `views` filter).
fn page_views(name: &str, emit: &str) -> String {
    format!(
        "
[transforms.{name}]
type = \"aggregate\"
input = \"views\"
group_by = [\"page\"]
window = {{ type = \"tumbling\", size = \"1m\" }}
aggregates = {{ views = \"count(*)\" }}
emit = \"{emit}\"
"
    )
}

/// Distinct users per 5-minute window, one starting every minute.
fn active_users(name: &str, emit: &str) -> String {
    format!(
        "
[transforms.{name}]
type = \"aggregate\"
input = \"clicks\"
window = {{ type = \"hopping\", size = \"5m\", slide = \"1m\" }}
aggregates = {{ active_users = \"count(DISTINCT user_id)\" }}
emit = \"{emit}\"
"
    )
}

/// Per user, sessions with a 30-minute gap: events, first and last event time.
fn user_sessions(name: &str, emit: &str) -> String {
    format!(
        "
[transforms.{name}]
type = \"aggregate\"
input = \"clicks\"
group_by = [\"user_id\"]
window = {{ type = \"session\", gap = \"30m\" }}
aggregates = {{ pages = \"count(*)\", first_event = \"min(ts)\", last_event = \"max(ts)\" }}
emit = \"{emit}\"
"
    )
}

/// `user_sessions` with its duration (as in the sample pipeline).
const SESSIONS_WITH_DURATION: &str = "
[transforms.sessions]
type = \"select\"
input = \"user_sessions\"
fields = { window_start = \"window_start\", window_end = \"window_end\", user_id = \"user_id\", \
pages = \"pages\", first_event = \"first_event\", last_event = \"last_event\", \
duration_ms = \"window_end - window_start\" }
";

const PAGE_VIEW_COLUMNS: [&str; 4] = ["window_start", "window_end", "page", "views"];
const ACTIVE_USER_COLUMNS: [&str; 3] = ["window_start", "window_end", "active_users"];
const USER_SESSION_COLUMNS: [&str; 6] = [
    "window_start",
    "window_end",
    "user_id",
    "pages",
    "first_event",
    "last_event",
];
const SESSION_COLUMNS: [&str; 7] = [
    "window_start",
    "window_end",
    "user_id",
    "pages",
    "first_event",
    "last_event",
    "duration_ms",
];

/// Writes a pipeline over the clickstream CSV `data` to `dir/windows.toml`: the source `clicks`,
/// then `transforms`, then for each name in `outputs` a CSV sink (updates mode) of that node
/// writing `<name>.csv`.
fn write_pipeline(
    dir: &Path,
    data: &Path,
    tick: &str,
    max_lateness: &str,
    transforms: &str,
    outputs: &[&str],
) -> PathBuf {
    let mut text = format!(
        "[pipeline]\nname = \"windows\"\ntick = \"{tick}\"\n\n\
         [sources.clicks]\ntype = \"csv\"\npath = {path:?}\nschema = {SCHEMA}\n\
         event_time = \"ts\"\nmax_lateness = \"{max_lateness}\"\n{transforms}\n",
        path = data.display().to_string()
    );
    for out in outputs {
        text.push_str(&format!(
            "[sinks.{out}_csv]\ntype = \"csv\"\ninput = \"{out}\"\npath = \"{out}.csv\"\n\n"
        ));
    }
    let path = dir.join("windows.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `events` generated clicks to `dir/clickstream.csv`.
fn generate_clicks(dir: &Path, events: u64, seed: u64, max_disorder_ms: i64) -> PathBuf {
    let path = dir.join("clickstream.csv");
    let cfg = ClickstreamConfig {
        events,
        seed,
        max_disorder_ms,
        ..ClickstreamConfig::default()
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    write_clickstream_csv(&cfg, &mut file).unwrap();
    std::io::Write::flush(&mut file).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Reference implementations

/// One input record, as the references see it.
#[derive(Clone, Debug)]
struct Click {
    /// 1-based line in the input file.
    line: u64,
    ts: i64,
    user: i64,
    page: String,
    view: bool,
}

fn read_clicks(path: &Path) -> Vec<Click> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (ts, user, page, kind) = (col("ts"), col("user_id"), col("page"), col("event_type"));
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Click {
                line: r.position().unwrap().line(),
                ts: parse_ts(&r[ts]),
                user: r[user].parse().unwrap(),
                page: r[page].to_string(),
                view: &r[kind] == "view",
            }
        })
        .collect()
}

/// Splits records (in file order) into accepted and late: a record is late when its event time
/// is below the largest event time of all earlier records minus `max_lateness`.
fn split_late(clicks: &[Click], max_lateness: i64) -> (Vec<Click>, Vec<Click>) {
    let mut max_seen: Option<i64> = None;
    let (mut accepted, mut late) = (Vec::new(), Vec::new());
    for c in clicks {
        match max_seen {
            Some(m) if c.ts < m - max_lateness => late.push(c.clone()),
            _ => accepted.push(c.clone()),
        }
        max_seen = Some(max_seen.map_or(c.ts, |m| m.max(c.ts)));
    }
    (accepted, late)
}

/// Views per (window start, page) of 1-minute tumbling windows.
fn reference_page_views(clicks: &[Click]) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for c in clicks.iter().filter(|c| c.view) {
        let start = c.ts.div_euclid(MINUTE) * MINUTE;
        *out.entry((iso8601(start), c.page.clone())).or_insert(0) += 1;
    }
    out
}

/// Distinct users per window start of hopping windows `[s, s + size)`, `s` a multiple of `slide`.
fn reference_active_users(clicks: &[Click], size: i64, slide: i64) -> BTreeMap<String, i64> {
    let mut users: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for c in clicks {
        // Every window start s with s <= ts < s + size.
        let mut s = c.ts.div_euclid(slide) * slide;
        while s > c.ts - size {
            users.entry(s).or_default().insert(c.user);
            s -= slide;
        }
    }
    users
        .into_iter()
        .map(|(s, u)| (iso8601(s), u.len() as i64))
        .collect()
}

/// A session as the references compute it: window end, events, first and last event time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SessionRow {
    end: String,
    pages: i64,
    first: String,
    last: String,
}

/// Sessions per (user, window start): each user's records sorted by event time, a new session
/// whenever the next record is `gap` or more after the previous one.
fn reference_sessions(clicks: &[Click], gap: i64) -> BTreeMap<(i64, String), SessionRow> {
    let mut by_user: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for c in clicks {
        by_user.entry(c.user).or_default().push(c.ts);
    }
    let mut out = BTreeMap::new();
    for (user, mut times) in by_user {
        times.sort_unstable();
        let mut runs: Vec<Vec<i64>> = Vec::new();
        for t in times {
            match runs.last_mut() {
                Some(run) if t - run.last().unwrap() < gap => run.push(t),
                _ => runs.push(vec![t]),
            }
        }
        for run in runs {
            let (first, last) = (run[0], *run.last().unwrap());
            out.insert(
                (user, iso8601(first)),
                SessionRow {
                    end: iso8601(last + gap),
                    pages: run.len() as i64,
                    first: iso8601(first),
                    last: iso8601(last),
                },
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading and checking outputs

fn parse_ts(text: &str) -> i64 {
    parse_timestamp(text).unwrap_or_else(|| panic!("not a timestamp: {text:?}"))
}

/// A timestamp's text in the one canonical form, for comparing with the references.
fn iso(text: &str) -> String {
    iso8601(parse_ts(text))
}

fn parse_int(text: &str) -> i64 {
    text.parse()
        .unwrap_or_else(|_| panic!("not an integer: {text:?}"))
}

fn tick_ms(tick: &str) -> i64 {
    eventflow::record::time::parse_duration_ms(tick).unwrap() as i64
}

/// `t` rounded up to a multiple of `tick`.
fn round_up(t: i64, tick: i64) -> i64 {
    (t + tick - 1).div_euclid(tick) * tick
}

/// A CSV output: header and rows.
fn read_output(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn expect_header(path: &Path, header: &[String], columns: &[&str]) {
    let expected: Vec<&str> = columns.iter().copied().chain(["time", "diff"]).collect();
    assert_eq!(header, expected, "columns of {}", path.display());
}

/// Reads an `emit = "final"` output (written by an updates-mode sink) and checks that every row
/// is written once, with diff 1, at `time` = its `window_end` rounded up to a tick. Returns the
/// rows without `time` and `diff`.
fn final_rows(path: &Path, columns: &[&str], tick: i64) -> Vec<Vec<String>> {
    let (header, rows) = read_output(path);
    expect_header(path, &header, columns);
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let diff = row.pop().unwrap();
        let time = row.pop().unwrap();
        assert_eq!(
            diff,
            "1",
            "{}: final row {row:?} has diff {diff}",
            path.display()
        );
        let end = parse_ts(&row[1]);
        assert_eq!(
            parse_ts(&time),
            round_up(end, tick),
            "{}: final row {row:?} is written at {time}, not at its window end rounded up to a tick",
            path.display()
        );
        assert!(
            seen.insert(row.clone()),
            "{}: {row:?} written twice",
            path.display()
        );
        out.push(row);
    }
    out
}

/// Reads an `emit = "updates"` output and sums `diff` per row (all columns but `time` and
/// `diff`). Checks along the way that every change is at a tick before its row's window end
/// (a window only changes through records inside it), that a row is only retracted after it was
/// added, and that no row is left with a count other than 0 or 1. Returns the rows left, sorted.
fn consolidate_updates(path: &Path, columns: &[&str], tick: i64) -> Vec<Vec<String>> {
    let (header, rows) = read_output(path);
    expect_header(path, &header, columns);
    let mut counts: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    let mut last_time = i64::MIN;
    for mut row in rows {
        let diff = parse_int(&row.pop().unwrap());
        let time = parse_ts(&row.pop().unwrap());
        assert!(diff == 1 || diff == -1, "{}: diff {diff}", path.display());
        assert_eq!(time % tick, 0, "{}: time not on a tick", path.display());
        assert!(
            time >= last_time,
            "{}: rows not in time order",
            path.display()
        );
        last_time = time;
        assert!(
            time < parse_ts(&row[1]),
            "{}: {row:?} changes at {} but its window ends at {}",
            path.display(),
            iso8601(time),
            row[1]
        );
        let count = counts.entry(row.clone()).or_insert(0);
        *count += diff;
        assert!(
            *count >= 0,
            "{}: {row:?} retracted before it was added",
            path.display()
        );
    }
    counts
        .into_iter()
        .filter(|(row, count)| {
            assert!(
                *count <= 1,
                "{}: {row:?} left {count} times",
                path.display()
            );
            *count == 1
        })
        .map(|(row, _)| row)
        .collect()
}

/// Panics with the first differences if `actual` and `expected` differ.
fn assert_same<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    actual: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
) {
    if actual == expected {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            Some(a) if a == v => {}
            other => diffs.push(format!("  {k:?}: expected {v:?}, got {other:?}")),
        }
    }
    for (k, a) in actual {
        if !expected.contains_key(k) {
            diffs.push(format!("  {k:?}: not expected, got {a:?}"));
        }
    }
    panic!(
        "{what}: {} of {} windows differ from the reference, e.g.\n{}",
        diffs.len(),
        expected.len(),
        diffs[..diffs.len().min(10)].join("\n")
    );
}

fn check_page_views(rows: &[Vec<String>], accepted: &[Click], what: &str) {
    let mut actual = BTreeMap::new();
    for row in rows {
        assert_eq!(
            parse_ts(&row[1]) - parse_ts(&row[0]),
            MINUTE,
            "{what}: {row:?}"
        );
        assert_eq!(parse_ts(&row[0]) % MINUTE, 0, "{what}: {row:?}");
        actual.insert((iso(&row[0]), row[2].clone()), parse_int(&row[3]));
    }
    assert_same(what, &actual, &reference_page_views(accepted));
}

fn check_active_users(rows: &[Vec<String>], accepted: &[Click], what: &str) {
    let mut actual = BTreeMap::new();
    for row in rows {
        assert_eq!(
            parse_ts(&row[1]) - parse_ts(&row[0]),
            5 * MINUTE,
            "{what}: {row:?}"
        );
        assert_eq!(parse_ts(&row[0]) % MINUTE, 0, "{what}: {row:?}");
        actual.insert(iso(&row[0]), parse_int(&row[2]));
    }
    assert_same(
        what,
        &actual,
        &reference_active_users(accepted, 5 * MINUTE, MINUTE),
    );
}

/// Checks session rows (`USER_SESSION_COLUMNS`, or `SESSION_COLUMNS` with the duration).
fn check_sessions(rows: &[Vec<String>], accepted: &[Click], what: &str) {
    let mut actual = BTreeMap::new();
    for row in rows {
        if row.len() == SESSION_COLUMNS.len() {
            assert_eq!(
                parse_int(&row[6]),
                parse_ts(&row[1]) - parse_ts(&row[0]),
                "{what}: duration_ms of {row:?}"
            );
        }
        let key = (parse_int(&row[2]), iso(&row[0]));
        let session = SessionRow {
            end: iso(&row[1]),
            pages: parse_int(&row[3]),
            first: iso(&row[4]),
            last: iso(&row[5]),
        };
        assert!(
            actual.insert(key, session).is_none(),
            "{what}: two sessions of one user start together: {row:?}"
        );
    }
    assert_same(what, &actual, &reference_sessions(accepted, GAP));
}

/// For each generated case, runs `transforms` at 1, 2 and 4 workers, checks that nothing is
/// dead-lettered and that every file in `outputs` is byte-identical across worker counts, and
/// calls `check(out_dir, accepted records, tick in ms)` on each run.
fn for_each_case(transforms: &str, outputs: &[&str], check: impl Fn(&Path, &[Click], i64, &str)) {
    for (events, seed, max_disorder_ms, tick) in CASES {
        let dir = tempfile::tempdir().unwrap();
        let data = generate_clicks(dir.path(), events, seed, max_disorder_ms);
        let clicks = read_clicks(&data);
        let (accepted, late) = split_late(&clicks, LATENESS);
        assert!(
            late.is_empty(),
            "generated disorder stays within max_lateness"
        );
        let pipeline = write_pipeline(dir.path(), &data, tick, "15s", transforms, outputs);
        let mut first: Option<Vec<String>> = None;
        for workers in [1, 2, 4] {
            let what = format!("{events} events, seed {seed}, tick {tick}, {workers} workers");
            let out = dir.path().join(format!("out{workers}"));
            let summary = run_pipeline(&pipeline, workers, &out);
            assert_eq!(summary.records_read, events, "{what}");
            assert_eq!(summary.records_dead_lettered, 0, "{what}");
            check(&out, &accepted, tick_ms(tick), &what);
            let files: Vec<String> = outputs
                .iter()
                .map(|o| read(&out.join(format!("{o}.csv"))))
                .collect();
            match &first {
                None => first = Some(files),
                Some(expected) => {
                    for (i, o) in outputs.iter().enumerate() {
                        assert!(
                            files[i] == expected[i],
                            "{o}.csv differs between 1 and {workers} workers ({what})"
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn tumbling_page_views_equal_a_plain_fold_at_1_2_4_workers() {
    let transforms = format!("{VIEWS}{}", page_views("page_views", "final"));
    for_each_case(&transforms, &["page_views"], |out, accepted, tick, what| {
        let rows = final_rows(&out.join("page_views.csv"), &PAGE_VIEW_COLUMNS, tick);
        assert!(!rows.is_empty());
        check_page_views(&rows, accepted, &format!("page views, {what}"));
    });
}

#[test]
fn hopping_distinct_users_equal_a_plain_fold_at_1_2_4_workers() {
    let transforms = active_users("active_users", "final");
    for_each_case(
        &transforms,
        &["active_users"],
        |out, accepted, tick, what| {
            let rows = final_rows(&out.join("active_users.csv"), &ACTIVE_USER_COLUMNS, tick);
            check_active_users(&rows, accepted, &format!("active users, {what}"));
        },
    );
}

#[test]
fn session_windows_equal_a_plain_fold_at_1_2_4_workers() {
    let transforms = format!(
        "{}{SESSIONS_WITH_DURATION}",
        user_sessions("user_sessions", "final")
    );
    for_each_case(&transforms, &["sessions"], |out, accepted, tick, what| {
        let rows = final_rows(&out.join("sessions.csv"), &SESSION_COLUMNS, tick);
        check_sessions(&rows, accepted, &format!("sessions, {what}"));
    });
    // The long case really has users with several sessions.
    let dir = tempfile::tempdir().unwrap();
    let (events, seed, max_disorder_ms, _) = CASES[1];
    let clicks = read_clicks(&generate_clicks(dir.path(), events, seed, max_disorder_ms));
    let sessions = reference_sessions(&clicks, GAP);
    let users: BTreeSet<i64> = sessions.keys().map(|k| k.0).collect();
    assert!(
        sessions.len() > users.len() + 300,
        "{} sessions of {} users",
        sessions.len(),
        users.len()
    );
}

#[test]
fn updates_consolidate_to_final_for_every_window_kind() {
    let transforms = [
        VIEWS.to_string(),
        page_views("page_views", "final"),
        page_views("page_views_updates", "updates"),
        active_users("active_users", "final"),
        active_users("active_users_updates", "updates"),
        user_sessions("user_sessions", "final"),
        user_sessions("user_sessions_updates", "updates"),
    ]
    .concat();
    let outputs = [
        "page_views",
        "page_views_updates",
        "active_users",
        "active_users_updates",
        "user_sessions",
        "user_sessions_updates",
    ];
    for_each_case(&transforms, &outputs, |out, accepted, tick, what| {
        for (name, columns) in [
            ("page_views", &PAGE_VIEW_COLUMNS[..]),
            ("active_users", &ACTIVE_USER_COLUMNS[..]),
            ("user_sessions", &USER_SESSION_COLUMNS[..]),
        ] {
            let mut final_ = final_rows(&out.join(format!("{name}.csv")), columns, tick);
            final_.sort();
            let updates = out.join(format!("{name}_updates.csv"));
            let consolidated = consolidate_updates(&updates, columns, tick);
            assert!(
                consolidated == final_,
                "{name}: the updates consolidate to {} rows, the final output has {} ({what})",
                consolidated.len(),
                final_.len()
            );
            // Both are right, not just equal.
            let what = format!("{name} updates, {what}");
            match name {
                "page_views" => check_page_views(&consolidated, accepted, &what),
                "active_users" => check_active_users(&consolidated, accepted, &what),
                _ => check_sessions(&consolidated, accepted, &what),
            }
        }
    });
}

#[test]
fn records_beyond_max_lateness_are_dead_lettered_and_in_no_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate_clicks(dir.path(), 30_000, 4, 10_000);
    // Move every 997th record 5 minutes back and every 1499th 2 hours back: far beyond the 15 s
    // max_lateness. Record 5000 is put exactly at its watermark: accepted.
    let text = read(&data);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let ts_col = header.split(',').position(|h| h == "ts").unwrap();
    let mut out = format!("{header}\n");
    let mut moved = Vec::new();
    let mut max_seen = i64::MIN;
    let mut boundary_line = 0;
    for (i, line) in lines.enumerate() {
        let index = i as u64 + 1; // 1-based data record
        let mut fields: Vec<String> = line.split(',').map(String::from).collect();
        let ts = parse_ts(&fields[ts_col]);
        let new_ts = if index.is_multiple_of(997) {
            ts - 5 * MINUTE
        } else if index.is_multiple_of(1499) {
            ts - 120 * MINUTE
        } else if index == 5000 {
            boundary_line = index + 1;
            max_seen - LATENESS
        } else {
            ts
        };
        if new_ts != ts && index != 5000 {
            moved.push(index + 1); // its line: the header is line 1
        }
        fields[ts_col] = iso8601(new_ts);
        max_seen = max_seen.max(new_ts);
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    std::fs::write(&data, out).unwrap();
    let clicks = read_clicks(&data);
    let (accepted, late) = split_late(&clicks, LATENESS);
    let late_lines: Vec<u64> = late.iter().map(|c| c.line).collect();
    assert_eq!(
        late_lines, moved,
        "the crafted input: exactly the moved records are late"
    );
    assert!(accepted.iter().any(|c| c.line == boundary_line));

    let transforms = [
        VIEWS,
        page_views("page_views", "final").as_str(),
        active_users("active_users", "final").as_str(),
        user_sessions("user_sessions", "final").as_str(),
        SESSIONS_WITH_DURATION,
    ]
    .concat();
    let pipeline = write_pipeline(
        dir.path(),
        &data,
        "1s",
        "15s",
        &transforms,
        &["page_views", "active_users", "sessions"],
    );
    let mut dead_files = Vec::new();
    for workers in [1, 2, 4] {
        let what = format!("{workers} workers");
        let out = dir.path().join(format!("out{workers}"));
        let summary = run_pipeline(&pipeline, workers, &out);
        assert_eq!(summary.records_read, 30_000);
        assert_eq!(
            summary.dead_letters_by_reason.get("late").copied(),
            Some(moved.len() as u64),
            "{what}"
        );
        assert_eq!(summary.records_dead_lettered, moved.len() as u64, "{what}");
        let dead = read(&out.join("dead_letters.jsonl"));
        let mut dead_lines = Vec::new();
        for l in dead.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["source"], "clicks", "{l}");
            assert_eq!(v["reason"], "late", "{l}");
            dead_lines.push(v["line"].as_u64().unwrap());
        }
        assert_eq!(
            dead_lines, moved,
            "exactly the moved records are late ({what})"
        );
        dead_files.push(dead);
        // And they are in no window: every window equals the reference over the other records.
        let rows = final_rows(&out.join("page_views.csv"), &PAGE_VIEW_COLUMNS, 1000);
        check_page_views(&rows, &accepted, &format!("page views, {what}"));
        let rows = final_rows(&out.join("active_users.csv"), &ACTIVE_USER_COLUMNS, 1000);
        check_active_users(&rows, &accepted, &format!("active users, {what}"));
        let rows = final_rows(&out.join("sessions.csv"), &SESSION_COLUMNS, 1000);
        check_sessions(&rows, &accepted, &format!("sessions, {what}"));
    }
    assert!(dead_files.windows(2).all(|w| w[0] == w[1]));
}

/// One user (1) has events at 00:00 and 00:50: two sessions with a 30-minute gap. A record at
/// 00:25 then arrives last in the file (within the 1 h max_lateness) and joins them into one
/// session [00:00, 01:20). User 2 has two sessions of its own, untouched.
///
/// Changes are applied in event-time order (the tick of each record), whatever the file order —
/// that is what makes outputs independent of reordering within `max_lateness`. So by the time
/// tick 00:50 is written, the 00:25 record is already part of user 1's session: the updates
/// file shows the session growing, [00:00, 00:30) → [00:00, 00:55) → [00:00, 01:20), each step
/// retracting the earlier session row, and the stand-alone session [00:50, 01:20) never appears
/// in it (it only exists while the bridging record is still unseen, before any of these ticks
/// is complete). Without the bridging record the final output has both sessions.
#[test]
fn a_late_record_joins_two_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let header = "event_id,ts,user_id,page,event_type,referrer\n";
    let rows = [
        "1,2024-01-01T00:00:00.000Z,1,/home,view,direct",
        "2,2024-01-01T00:10:00.000Z,2,/home,view,google.com",
        "3,2024-01-01T00:50:00.000Z,1,/product/123,view,direct",
        "4,2024-01-01T00:55:00.000Z,2,/search,view,direct",
        "5,2024-01-01T00:25:00.000Z,1,/cart,view,/home",
    ];
    let write = |name: &str, order: &[usize]| {
        let path = dir.path().join(name);
        let text: String = order.iter().map(|&i| format!("{}\n", rows[i])).collect();
        std::fs::write(&path, format!("{header}{text}")).unwrap();
        path
    };
    let bridged_last = write("bridged_last.csv", &[0, 1, 2, 3, 4]);
    let in_order = write("in_order.csv", &[0, 1, 4, 2, 3]);
    let no_bridge = write("no_bridge.csv", &[0, 1, 2, 3]);
    let transforms = format!(
        "{}{}",
        user_sessions("sessions_final", "final"),
        user_sessions("sessions_updates", "updates")
    );
    let outputs = ["sessions_final", "sessions_updates"];
    let run = |data: &Path, workers: usize, name: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let pipeline = write_pipeline(&sub, data, "1s", "1h", &transforms, &outputs);
        let out = sub.join("out");
        let summary = run_pipeline(&pipeline, workers, &out);
        assert_eq!(summary.records_dead_lettered, 0, "{name}: nothing is late");
        out
    };
    // (window_start, window_end, user_id, pages) of a session row, times as hh:mm.
    let session = |row: &[String]| {
        (
            row[0][11..16].to_string(),
            row[1][11..16].to_string(),
            parse_int(&row[2]),
            parse_int(&row[3]),
        )
    };
    let s = |a: &str, b: &str, user: i64, pages: i64| (a.to_string(), b.to_string(), user, pages);

    let out = run(&bridged_last, 1, "bridged_last_1");
    // Final: one merged session for user 1.
    let finals: Vec<_> = final_rows(&out.join("sessions_final.csv"), &USER_SESSION_COLUMNS, 1000)
        .iter()
        .map(|r| session(r))
        .collect();
    assert_eq!(
        finals,
        [
            s("00:10", "00:40", 2, 1),
            s("00:00", "01:20", 1, 3),
            s("00:55", "01:25", 2, 1),
        ],
        "final sessions, in the order they close"
    );
    // Updates: (time, session, diff) in file order.
    let (header_row, update_rows) = read_output(&out.join("sessions_updates.csv"));
    expect_header(
        &out.join("sessions_updates.csv"),
        &header_row,
        &USER_SESSION_COLUMNS,
    );
    let updates: Vec<_> = update_rows
        .iter()
        .map(|r| {
            (
                r[6][11..16].to_string(),
                session(r),
                parse_int(&r[r.len() - 1]),
            )
        })
        .collect();
    let u = |t: &str, session, diff: i64| (t.to_string(), session, diff);
    assert_eq!(
        updates,
        [
            u("00:00", s("00:00", "00:30", 1, 1), 1),
            u("00:10", s("00:10", "00:40", 2, 1), 1),
            // The bridging record's tick: the first session grows to reach the second one's
            // records (not yet applied: they are at a later tick).
            u("00:25", s("00:00", "00:30", 1, 1), -1),
            u("00:25", s("00:00", "00:55", 1, 2), 1),
            // The 00:50 record joins it: the earlier session row is retracted, the merged
            // session [00:00, 01:20) added.
            u("00:50", s("00:00", "00:55", 1, 2), -1),
            u("00:50", s("00:00", "01:20", 1, 3), 1),
            u("00:55", s("00:55", "01:25", 2, 1), 1),
        ],
        "session updates"
    );
    assert!(
        !updates
            .iter()
            .any(|(_, (a, _, user, _), _)| a == "00:50" && *user == 1),
        "the stand-alone session [00:50, 01:20) is never written"
    );
    assert_eq!(
        consolidate_updates(
            &out.join("sessions_updates.csv"),
            &USER_SESSION_COLUMNS,
            1000
        )
        .iter()
        .map(|r| session(r))
        .collect::<BTreeSet<_>>(),
        finals.iter().cloned().collect::<BTreeSet<_>>()
    );

    // The same files at 2 and 4 workers, and with the records in event-time order.
    let expected: Vec<String> = outputs
        .iter()
        .map(|o| read(&out.join(format!("{o}.csv"))))
        .collect();
    for (data, workers, name) in [
        (&bridged_last, 2, "bridged_last_2"),
        (&bridged_last, 4, "bridged_last_4"),
        (&in_order, 1, "in_order_1"),
        (&in_order, 4, "in_order_4"),
    ] {
        let other = run(data, workers, name);
        for (o, text) in outputs.iter().zip(&expected) {
            assert!(
                read(&other.join(format!("{o}.csv"))) == *text,
                "{o}.csv of {name} differs from the bridged file at 1 worker"
            );
        }
    }

    // Without the bridging record, user 1 has two sessions.
    let out = run(&no_bridge, 2, "no_bridge_2");
    let finals: Vec<_> = final_rows(&out.join("sessions_final.csv"), &USER_SESSION_COLUMNS, 1000)
        .iter()
        .map(|r| session(r))
        .collect();
    assert_eq!(
        finals,
        [
            s("00:00", "00:30", 1, 1),
            s("00:10", "00:40", 2, 1),
            s("00:50", "01:20", 1, 1),
            s("00:55", "01:25", 2, 1),
        ]
    );
}

#[test]
fn sample_pipeline_matches_the_references_at_1_2_4_workers() {
    let data = root().join("data/clickstream.csv");
    let clicks = read_clicks(&data);
    let (accepted, late) = split_late(&clicks, LATENESS);
    assert!(late.is_empty());
    let pipeline = root().join("pipelines/clickstream_windows.toml");
    let files = [
        "page_views.csv",
        "page_views_updates.csv",
        "active_users.csv",
        "sessions.csv",
        "dead_letters.jsonl",
    ];
    let mut first: Option<Vec<String>> = None;
    for workers in [1, 2, 4] {
        let what = format!("sample, {workers} workers");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let summary = run_pipeline(&pipeline, workers, out);
        assert_eq!(summary.records_read, clicks.len() as u64);
        assert_eq!(summary.records_dead_lettered, 0);
        let page_views = final_rows(&out.join("page_views.csv"), &PAGE_VIEW_COLUMNS, 1000);
        check_page_views(&page_views, &accepted, &what);
        let mut sorted = page_views.clone();
        sorted.sort();
        assert_eq!(
            consolidate_updates(
                &out.join("page_views_updates.csv"),
                &PAGE_VIEW_COLUMNS,
                1000
            ),
            sorted,
            "page view updates consolidate to page_views.csv ({what})"
        );
        let rows = final_rows(&out.join("active_users.csv"), &ACTIVE_USER_COLUMNS, 1000);
        check_active_users(&rows, &accepted, &what);
        let rows = final_rows(&out.join("sessions.csv"), &SESSION_COLUMNS, 1000);
        check_sessions(&rows, &accepted, &what);
        let texts: Vec<String> = files.iter().map(|f| read(&out.join(f))).collect();
        match &first {
            None => first = Some(texts),
            Some(expected) => {
                for (f, (a, b)) in files.iter().zip(texts.iter().zip(expected)) {
                    assert!(a == b, "{f} differs between 1 and {workers} workers");
                }
            }
        }
    }
}
