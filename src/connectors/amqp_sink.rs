//! The publishing side of a RabbitMQ sink: every output update becomes one persistent JSON
//! message, published with publisher confirms.
//!
//! The sink's writer thread encodes rows as JSON Lines, as for a `jsonl` file; this publisher
//! turns each line into a message whose id is `PIPELINE:SINK:TICK:SEQ` (SEQ counts the rows of
//! the tick from 0). Since a tick's rows are deterministic, a row published again after a crash
//! carries the same id, so a consumer can drop the duplicate. A flush publishes what is queued
//! and waits for every confirm; a commit (see `file_sink`) flushes first, so a commit line
//! names only messages the broker has taken responsibility for. A resumed run does not publish
//! the ticks its commit covers.

use super::amqp::{block, resolve_url, Link, Role};
use crate::record::Tick;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

/// Messages queued before they are published without waiting for a flush.
const QUEUED: usize = 4096;

/// A RabbitMQ publisher behind a sink's encoder.
pub struct Publisher {
    url: String,
    queue: String,
    prefix: String,
    what: String,
    link: Option<Link>,
    tick: Tick,
    seq: u64,
    partial: Vec<u8>,
    queued: Vec<(String, Vec<u8>)>,
}

impl Publisher {
    /// Connects (with bounded retries) and declares the queue.
    pub fn connect(
        url: Option<&str>,
        queue: &str,
        prefix: &str,
        sink: &str,
    ) -> Result<Publisher, String> {
        let url = resolve_url(url);
        let what = format!("rabbitmq sink `{sink}`");
        let link = Link::open_with_retry(&url, queue, Role::Publisher, &what, &|| false)?;
        Ok(Publisher {
            url,
            queue: queue.to_string(),
            prefix: prefix.to_string(),
            what,
            link: Some(link),
            tick: 0,
            seq: 0,
            partial: Vec::new(),
            queued: Vec::new(),
        })
    }

    /// The rows that follow are at `tick`.
    pub fn begin_tick(&mut self, tick: Tick) {
        if tick != self.tick {
            self.tick = tick;
            self.seq = 0;
        }
    }

    /// Takes encoded JSON Lines; returns how many messages (complete lines) they finished.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<u64> {
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
        if self.queued.len() >= QUEUED {
            self.flush()?;
        }
        Ok(n)
    }

    /// Publishes every queued message and waits for the broker's confirms. A lost connection
    /// is reopened (with bounded retries) and the unconfirmed messages are published again,
    /// with the same ids.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let mut attempts = 0;
        loop {
            if self.link.is_none() {
                let link = Link::open_with_retry(
                    &self.url,
                    &self.queue,
                    Role::Publisher,
                    &self.what,
                    &|| false,
                )
                .map_err(std::io::Error::other)?;
                self.link = Some(link);
            }
            match self.publish_all() {
                Ok(()) => {
                    self.queued.clear();
                    return Ok(());
                }
                Err(e) => {
                    attempts += 1;
                    if let Some(l) = self.link.take() {
                        l.close();
                    }
                    if attempts >= 3 {
                        return Err(std::io::Error::other(format!(
                            "{}: publishing to queue `{}` failed: {e}",
                            self.what, self.queue
                        )));
                    }
                    eprintln!(
                        "{}: publishing failed ({e}); reconnecting and publishing the unconfirmed messages again",
                        self.what
                    );
                }
            }
        }
    }

    fn publish_all(&self) -> Result<(), String> {
        let link = self.link.as_ref().expect("connected before publishing");
        block(async {
            let mut confirms = Vec::with_capacity(self.queued.len());
            for (id, body) in &self.queued {
                let props = BasicProperties::default()
                    .with_message_id(id.as_str().into())
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                let c = link
                    .channel
                    .basic_publish("", &self.queue, BasicPublishOptions::default(), body, props)
                    .await
                    .map_err(|e| e.to_string())?;
                confirms.push(c);
            }
            for c in confirms {
                let confirmation = c.await.map_err(|e| e.to_string())?;
                if confirmation.is_nack() {
                    return Err("the broker refused a message (nack)".into());
                }
            }
            Ok(())
        })
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(l) = self.link.take() {
            l.close();
        }
    }
}

/// Publishes every record of a CSV (header skipped) or JSON Lines file to `queue`, one
/// persistent message per record, in file order, with publisher confirms; message ids are
/// `FILE_NAME:POSITION` (the record's 0-based position), so a repeated load is recognisable.
/// Returns the number of messages published.
pub fn publish_file(path: &std::path::Path, url: Option<&str>, queue: &str) -> Result<u64, String> {
    use super::split::{is_blank, read_header, scan_record};
    let data = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut publisher = Publisher::connect(url, queue, &name, "publish")?;
    let mut at = if csv { read_header(&data).1 } else { 0 };
    let mut position = 0u64;
    while at < data.len() {
        let span = scan_record(&data, at, csv);
        at = span.next;
        let content = span.content(&data);
        if is_blank(content) {
            continue;
        }
        publisher
            .queued
            .push((format!("{name}:{position}"), content.to_vec()));
        position += 1;
        if publisher.queued.len() >= 1000 {
            publisher.flush().map_err(|e| e.to_string())?;
        }
    }
    publisher.flush().map_err(|e| e.to_string())?;
    Ok(position)
}
