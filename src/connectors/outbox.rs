//! What the queue sinks (RabbitMQ, Kafka) share: output lines turned into messages with stable
//! ids, and the records of a file as `eventflow publish` sends them.
//!
//! A sink's writer thread encodes rows as JSON Lines, as for a `jsonl` file; each line becomes
//! one message whose id is `PIPELINE:SINK:TICK:SEQ` (SEQ counts the rows of the tick from 0).
//! Since a tick's rows are deterministic, a row published again after a crash carries the same
//! id, so a consumer can drop the duplicate.

use crate::record::Tick;

/// Messages waiting to be published, with their ids.
pub struct Outbox {
    prefix: String,
    tick: Tick,
    seq: u64,
    partial: Vec<u8>,
    /// `(id, body)` in output order.
    pub queued: Vec<(String, Vec<u8>)>,
}

impl Outbox {
    /// An empty outbox whose ids start with `prefix` (`PIPELINE:SINK`).
    pub fn new(prefix: &str) -> Outbox {
        Outbox {
            prefix: prefix.to_string(),
            tick: 0,
            seq: 0,
            partial: Vec::new(),
            queued: Vec::new(),
        }
    }

    /// The rows that follow are at `tick`.
    pub fn begin_tick(&mut self, tick: Tick) {
        if tick != self.tick {
            self.tick = tick;
            self.seq = 0;
        }
    }

    /// Takes encoded JSON Lines; returns how many messages (complete lines) they finished.
    pub fn write(&mut self, buf: &[u8]) -> u64 {
        let mut n = 0;
        let mut rest = buf;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            self.partial.extend_from_slice(&rest[..i]);
            let body = std::mem::take(&mut self.partial);
            let id = format!("{}:{}:{}", self.prefix, self.tick, self.seq);
            self.seq += 1;
            self.queued.push((id, body));
            n += 1;
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
        n
    }
}

/// Hands every record of a CSV (header skipped) or JSON Lines file to `each`, in file order,
/// with the id `FILE_NAME:POSITION` (the record's 0-based position), so a repeated load is
/// recognisable. Returns the number of records.
pub fn for_each_record(
    path: &std::path::Path,
    mut each: impl FnMut(String, &[u8]) -> Result<(), String>,
) -> Result<u64, String> {
    use super::split::{is_blank, read_header, scan_record};
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut at = if csv { read_header(&data).1 } else { 0 };
    let mut position = 0u64;
    while at < data.len() {
        let span = scan_record(&data, at, csv);
        at = span.next;
        let content = span.content(&data);
        if is_blank(content) {
            continue;
        }
        each(format!("{name}:{position}"), content)?;
        position += 1;
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_messages_numbered_per_tick() {
        let mut o = Outbox::new("p:s");
        o.begin_tick(5);
        assert_eq!(o.write(b"{\"a\":1}\n{\"a\""), 1);
        assert_eq!(o.write(b":2}\n"), 1);
        o.begin_tick(6);
        assert_eq!(o.write(b"{\"a\":3}\n"), 1);
        let ids: Vec<&str> = o.queued.iter().map(|q| q.0.as_str()).collect();
        assert_eq!(ids, ["p:s:5:0", "p:s:5:1", "p:s:6:0"]);
        assert_eq!(o.queued[1].1, b"{\"a\":2}");
    }
}
