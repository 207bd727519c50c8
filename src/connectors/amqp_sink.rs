//! The publishing side of a RabbitMQ sink: every output update becomes one persistent JSON
//! message, published with publisher confirms.
//!
//! Each line of the sink's JSON Lines becomes one message whose id is `PIPELINE:SINK:TICK:SEQ`
//! ([`super::outbox`]), so a consumer can drop a row published again. A flush publishes what is queued
//! and waits for every confirm; a commit (see `file_sink`) flushes first, so a commit line
//! names only messages the broker has taken responsibility for. A resumed run does not publish
//! the ticks its commit covers.

use super::amqp::{block, resolve_url, Link, Role};
use super::outbox::{SendError, Transport};
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

/// Messages queued before they are published without waiting for a flush.
const QUEUED: usize = 4096;

/// A RabbitMQ publisher behind a sink's encoder.
pub type Publisher = super::outbox::Publisher<AmqpTransport>;

/// A channel with publisher confirms to one queue, reopened after a failure.
pub struct AmqpTransport {
    url: String,
    queue: String,
    what: String,
    link: Option<Link>,
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
        let transport = AmqpTransport {
            url,
            queue: queue.to_string(),
            what,
            link: Some(link),
        };
        Ok(Publisher::new(transport, prefix, QUEUED))
    }
}

impl Transport for AmqpTransport {
    fn what(&self) -> &str {
        &self.what
    }

    fn target(&self) -> String {
        format!("queue `{}`", self.queue)
    }

    /// A lost connection is reopened (with bounded retries) first.
    fn send(&mut self, messages: &[(String, Vec<u8>)]) -> Result<(), SendError> {
        if self.link.is_none() {
            let link =
                Link::open_with_retry(&self.url, &self.queue, Role::Publisher, &self.what, &|| {
                    false
                })
                .map_err(SendError::Fatal)?;
            self.link = Some(link);
        }
        let link = self.link.as_ref().expect("connected above");
        let sent = block(async {
            let mut confirms = Vec::with_capacity(messages.len());
            for (id, body) in messages {
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
                    return Err("the broker refused a message (nack)".to_string());
                }
            }
            Ok(())
        });
        sent.map_err(|e| {
            if let Some(l) = self.link.take() {
                l.close();
            }
            SendError::Again(e)
        })
    }
}

impl Drop for AmqpTransport {
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
    super::outbox::publish_file(&mut publisher, path)
}
