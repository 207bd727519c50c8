//! Timestamps (ISO-8601 ⇄ epoch milliseconds) and durations ("1s", "5m").
//!
//! The ISO-8601 reader has a fast path for the fixed layout `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`
//! because timestamp parsing sits on the ingestion hot path; anything else falls back to chrono.

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// The latest event time a record may carry: 9999-12-31T23:59:59.999Z, in epoch milliseconds.
///
/// Why a bound: windows, watermarks and ticks add durations to event times in `i64`. With event
/// times in `0..=MAX_EVENT_TIME_MS` and durations at most [`MAX_DURATION_MS`], every such sum
/// stays far below `i64::MAX`, so a record stamped `9223372036854775807` cannot overflow them.
pub const MAX_EVENT_TIME_MS: i64 = 253_402_300_799_999;

/// The longest duration a pipeline may set (`tick`, `max_lateness`, window sizes): the span of
/// event time itself, about 8,000 years. Longer ones could overflow event-time arithmetic.
pub const MAX_DURATION_MS: u64 = MAX_EVENT_TIME_MS as u64;

/// Whether `ms` can be a record's event time: from 1970-01-01 to [`MAX_EVENT_TIME_MS`].
pub fn is_event_time(ms: i64) -> bool {
    (0..=MAX_EVENT_TIME_MS).contains(&ms)
}

/// How the pipeline's logical time is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// Event time from each source's `event_time` field, grouped into ticks of `tick_ms`.
    Event {
        /// Tick length in milliseconds.
        tick_ms: u64,
    },
    /// Record position in each source's file, grouped into ticks of `tick_records` records.
    Position {
        /// Records per tick.
        tick_records: u64,
    },
}

impl TimeDomain {
    /// The length of a tick: milliseconds of event time, or records.
    pub fn tick_len(&self) -> u64 {
        match *self {
            TimeDomain::Event { tick_ms } => tick_ms,
            TimeDomain::Position { tick_records } => tick_records,
        }
    }

    /// Writes a tick as the `time` column shows it: ISO-8601 for event time, the position otherwise.
    pub fn write_tick(&self, tick: u64, out: &mut String) {
        match self {
            TimeDomain::Event { .. } => write_iso8601(tick as i64, out),
            TimeDomain::Position { .. } => out.push_str(itoa::Buffer::new().format(tick)),
        }
    }

    /// Whether ticks are event time (rather than record positions).
    pub fn is_event(&self) -> bool {
        matches!(self, TimeDomain::Event { .. })
    }

    /// The tick that time `t` (event time in ms, or a record position) falls in.
    pub fn tick_of(&self, t: u64) -> u64 {
        match *self {
            TimeDomain::Event { tick_ms } => t - t % tick_ms,
            TimeDomain::Position { tick_records } => t - t % tick_records,
        }
    }
}

/// Parses a timestamp as ISO-8601 / RFC 3339 text (a missing offset means UTC), a date
/// `YYYY-MM-DD`, or integer epoch milliseconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if let Some(ms) = parse_iso_fast(bytes) {
        return Some(ms);
    }
    if !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'-') {
        if let Ok(ms) = text.parse::<i64>() {
            return Some(ms);
        }
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp_millis());
    }
    for layout in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, layout) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the "days from civil" calculation).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn parse_iso_fast(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, s) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut scaled = digits(&frac[..n.min(3)])?;
        for _ in n..3 {
            scaled *= 10;
        }
        millis = scaled;
        rest = &frac[n..];
    }
    let offset_minutes = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), hh @ ..] if hh.len() == 5 && hh[2] == b':' => {
            let mins = digits(&hh[0..2])? * 60 + digits(&hh[3..5])?;
            if *sign == b'+' {
                mins
            } else {
                -mins
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

/// Appends `ms` (epoch milliseconds) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// Output files write one timestamp per row, so years 0000–9999 take a direct path (chrono's
/// `format` parses its pattern on every call); other years go through chrono.
pub fn write_iso8601(ms: i64, out: &mut String) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let (h, mi, s, milli) = (
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000,
        );
        let mut buf = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, h);
        put(14, 2, mi);
        put(17, 2, s);
        put(20, 3, milli);
        out.push_str(std::str::from_utf8(&buf).expect("ASCII digits and separators"));
        return;
    }
    match DateTime::from_timestamp_millis(ms) {
        Some(dt) => {
            use std::fmt::Write;
            let _ = write!(out, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        None => out.push_str(itoa::Buffer::new().format(ms)),
    }
}

/// (year, month, day) of a day count since 1970-01-01 (the inverse of `days_from_civil`).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats epoch milliseconds as ISO-8601.
pub fn iso8601(ms: i64) -> String {
    let mut s = String::new();
    write_iso8601(ms, &mut s);
    s
}

/// Parses a duration such as `250ms`, `1s`, `5m`, `2h`, `1d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" | "sec" | "secs" => 1_000,
        "m" | "min" | "mins" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_range() {
        assert!(is_event_time(0));
        assert!(is_event_time(MAX_EVENT_TIME_MS));
        assert!(!is_event_time(-1));
        assert!(!is_event_time(MAX_EVENT_TIME_MS + 1));
        assert!(!is_event_time(i64::MAX));
        assert_eq!(iso8601(MAX_EVENT_TIME_MS), "9999-12-31T23:59:59.999Z");
        // Window and watermark sums of a valid time and a valid duration cannot overflow.
        assert!(MAX_EVENT_TIME_MS
            .checked_add(3 * MAX_DURATION_MS as i64)
            .is_some());
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for text in [
            "2024-02-29T23:59:59.123Z",
            "1970-01-01T00:00:00Z",
            "2023-07-04T12:30:00+02:00",
            "2023-07-04T12:30:00.5-05:30",
            "2023-07-04 12:30:00",
        ] {
            let fast = parse_iso_fast(text.as_bytes()).unwrap();
            let slow = DateTime::parse_from_rfc3339(&text.replace(' ', "T"))
                .map(|d| d.timestamp_millis())
                .unwrap_or_else(|_| {
                    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                        .unwrap()
                        .and_utc()
                        .timestamp_millis()
                });
            assert_eq!(fast, slow, "{text}");
        }
    }

    #[test]
    fn rejects_impossible_dates() {
        assert_eq!(parse_timestamp("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_timestamp("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn round_trips_iso() {
        let ms = parse_timestamp("2024-03-01T08:09:10.011Z").unwrap();
        assert_eq!(iso8601(ms), "2024-03-01T08:09:10.011Z");
        assert_eq!(parse_timestamp("1700000000000"), Some(1_700_000_000_000));
    }

    #[test]
    fn fast_formatting_agrees_with_chrono() {
        for ms in [
            0,
            1,
            -1,
            951_782_400_000,
            1_709_251_200_123,
            253_402_300_799_999,
            -62_135_596_800_000,
            4_102_444_800_000,
        ] {
            let mut fast = String::new();
            write_iso8601(ms, &mut fast);
            let slow = DateTime::from_timestamp_millis(ms)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            assert_eq!(fast, slow, "{ms}");
        }
        for day in (-719_000i64..2_900_000).step_by(997) {
            let ms = day * 86_400_000 + 12_345_678;
            let mut fast = String::new();
            write_iso8601(ms, &mut fast);
            assert_eq!(parse_timestamp(&fast), Some(ms), "{fast}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1s"), Some(1000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("1 h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("fast"), None);
        assert_eq!(parse_duration_ms("3w"), None);
    }
}
