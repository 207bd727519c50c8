//! The publishing side of a RabbitMQ sink: every output update becomes one persistent JSON
//! message, published with publisher confirms.
//!
//! Each line of the sink's JSON Lines becomes one message whose id is `PIPELINE:SINK:TICK:SEQ`
//! ([`super::outbox`]), so a consumer can drop a row published again. A flush publishes what is queued
//! and waits for every confirm; a commit (see `file_sink`) flushes first, so a commit line
//! names only messages the broker has taken responsibility for. A resumed run does not publish
//! the ticks its commit covers.

use super::amqp::{block, resolve_url, Link, Role};
use super::outbox::Outbox;
use crate::record::Tick;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

/// Messages queued before they are published without waiting for a flush.
const QUEUED: usize = 4096;

/// A RabbitMQ publisher behind a sink's encoder.
pub struct Publisher {
    url: String,
    queue: String,
    what: String,
    link: Option<Link>,
    outbox: Outbox,
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
            what,
            link: Some(link),
            outbox: Outbox::new(prefix),
        })
    }

    /// The rows that follow are at `tick`.
    pub fn begin_tick(&mut self, tick: Tick) {
        self.outbox.begin_tick(tick);
    }

    /// Takes encoded JSON Lines; returns how many messages (complete lines) they finished.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<u64> {
        let n = self.outbox.write(buf);
        if self.outbox.queued.len() >= QUEUED {
            self.flush()?;
        }
        Ok(n)
    }

    /// Publishes every queued message and waits for the broker's confirms. A lost connection
    /// is reopened (with bounded retries) and the unconfirmed messages are published again,
    /// with the same ids.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.outbox.queued.is_empty() {
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
                    self.outbox.queued.clear();
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
            let mut confirms = Vec::with_capacity(self.outbox.queued.len());
            for (id, body) in &self.outbox.queued {
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
    let mut publisher = Publisher::connect(url, queue, "", "publish")?;
    let n = super::outbox::for_each_record(path, |id, body| {
        publisher.outbox.queued.push((id, body.to_vec()));
        if publisher.outbox.queued.len() >= 1000 {
            publisher.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    publisher.flush().map_err(|e| e.to_string())?;
    Ok(n)
}
