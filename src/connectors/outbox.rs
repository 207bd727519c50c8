//! What the queue sinks (RabbitMQ, Kafka) share: output lines turned into messages with stable
//! ids, a [`Publisher`] that sends them over a broker's [`Transport`] with retries, and the
//! records of a file as `eventflow publish` sends them.
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

/// How a publish attempt failed.
pub enum SendError {
    /// Worth another attempt (the messages are sent again, with the same ids).
    Again(String),
    /// Not: the broker cannot be reached after bounded retries.
    Fatal(String),
}

/// A broker connection that publishes batches of messages.
pub trait Transport {
    /// `KIND sink `NAME``, for messages.
    fn what(&self) -> &str;
    /// Where the messages go, for messages: ``queue `Q` ``, ``topic `T` on BROKERS``.
    fn target(&self) -> String;
    /// Publishes every message and waits until the broker has taken all of them (confirms,
    /// delivery reports). After [`SendError::Again`] the next call starts over, connecting
    /// again if needed.
    fn send(&mut self, messages: &[(String, Vec<u8>)]) -> Result<(), SendError>;
}

/// Publishing attempts per flush before the sink fails.
const ATTEMPTS: u32 = 3;

/// A queue sink's publisher: output lines in, messages out over `T`.
pub struct Publisher<T: Transport> {
    transport: T,
    outbox: Outbox,
    /// Messages queued before they are sent without waiting for a flush.
    batch: usize,
}

impl<T: Transport> Publisher<T> {
    /// A publisher whose message ids start with `prefix` (`PIPELINE:SINK`), sending once
    /// `batch` messages are queued.
    pub fn new(transport: T, prefix: &str, batch: usize) -> Publisher<T> {
        Publisher {
            transport,
            outbox: Outbox::new(prefix),
            batch,
        }
    }

    /// The rows that follow are at `tick`.
    pub fn begin_tick(&mut self, tick: Tick) {
        self.outbox.begin_tick(tick);
    }

    /// Takes encoded JSON Lines; returns how many messages (complete lines) they finished.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<u64> {
        let n = self.outbox.write(buf);
        if self.outbox.queued.len() >= self.batch {
            self.flush()?;
        }
        Ok(n)
    }

    /// Queues one message with its own id.
    pub fn push(&mut self, id: String, body: &[u8]) -> std::io::Result<()> {
        self.outbox.queued.push((id, body.to_vec()));
        if self.outbox.queued.len() >= self.batch {
            self.flush()?;
        }
        Ok(())
    }

    /// Publishes every queued message and waits until the broker took them; a failed attempt
    /// is repeated (same ids), [`ATTEMPTS`] in all.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.outbox.queued.is_empty() {
            return Ok(());
        }
        let mut attempts = 0;
        loop {
            let e = match self.transport.send(&self.outbox.queued) {
                Ok(()) => {
                    self.outbox.queued.clear();
                    return Ok(());
                }
                Err(SendError::Fatal(e)) => return Err(std::io::Error::other(e)),
                Err(SendError::Again(e)) => e,
            };
            attempts += 1;
            let what = self.transport.what();
            if attempts >= ATTEMPTS {
                return Err(std::io::Error::other(format!(
                    "{what}: publishing to {} failed: {e}",
                    self.transport.target()
                )));
            }
            eprintln!("{what}: publishing failed ({e}); publishing the unconfirmed messages again");
        }
    }
}

/// Publishes every record of a file (see [`for_each_record`]) and waits for the broker;
/// returns the number of messages.
pub fn publish_file<T: Transport>(
    publisher: &mut Publisher<T>,
    path: &std::path::Path,
) -> Result<u64, String> {
    let n = for_each_record(path, |id, body| {
        publisher.push(id, body).map_err(|e| e.to_string())
    })?;
    publisher.flush().map_err(|e| e.to_string())?;
    Ok(n)
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
