//! The RabbitMQ side of a live source: a [`Consumer`] over one AMQP channel. The reader thread
//! and everything it shares with Kafka (chunks, journal, acknowledgements after commit, idle
//! advances) are in [`super::live_source`].
//!
//! The broker sends at most `prefetch` unacknowledged messages. Delivery tags belong to one
//! channel: after a lost connection the broker redelivers what was not acknowledged, and the
//! reader recognises the messages it already has by message id (or, for a redelivery without
//! one, by a hash of the body).

use super::amqp::{block, resolve_url, Link, Role};
use super::live_source::{Consumer, Delivery};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use lapin::message::DeliveryResult;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A RabbitMQ queue consumer.
pub(crate) struct AmqpConsumer {
    name: String,
    url: String,
    queue: String,
    prefetch: u16,
    conn: Option<Consuming>,
    /// Increases with every new connection: delivery tags belong to one channel.
    generation: u64,
}

/// A connection with its consumer's deliveries.
struct Consuming {
    link: Link,
    deliveries: Receiver<DeliveryResult>,
    broken: Arc<AtomicBool>,
}

impl AmqpConsumer {
    /// A consumer of `queue` for source `name` (not connected yet).
    pub(crate) fn new(name: &str, url: Option<&str>, queue: &str, prefetch: u16) -> AmqpConsumer {
        AmqpConsumer {
            name: name.to_string(),
            url: resolve_url(url),
            queue: queue.to_string(),
            prefetch,
            conn: None,
            generation: 0,
        }
    }
}

impl Consumer for AmqpConsumer {
    /// The channel generation and the delivery tag.
    type Mark = (u64, u64);
    const MARKS_SURVIVE: bool = false;

    fn what(&self) -> String {
        format!("rabbitmq source `{}`", self.name)
    }

    fn partitions(&mut self, _: &dyn Fn() -> bool) -> Result<Option<Vec<i32>>, String> {
        Ok(None)
    }

    fn connect(
        &mut self,
        _: &BTreeMap<i32, i64>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), String> {
        let what = self.what();
        let link = Link::open_with_retry(
            &self.url,
            &self.queue,
            Role::Consumer {
                prefetch: self.prefetch,
            },
            &what,
            give_up,
        )?;
        self.generation += 1;
        let (tx, rx) = unbounded();
        let broken = Arc::new(AtomicBool::new(false));
        {
            let broken = broken.clone();
            link.connection
                .on_error(move |_| broken.store(true, Ordering::Relaxed));
        }
        let consumer = block(link.channel.basic_consume(
            &self.queue,
            &format!("eventflow-{}", self.name),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .map_err(|e| format!("{what}: cannot consume queue `{}`: {e}", self.queue))?;
        // A thread pulls the consumer's stream in order (lapin runs a consumer delegate as one
        // task per delivery, which may reorder them) and ends when the consumer does.
        std::thread::Builder::new()
            .name(format!("rabbitmq-recv:{}", self.name))
            .spawn(move || {
                use futures_lite::StreamExt;
                let mut consumer = consumer;
                loop {
                    let d: DeliveryResult = match block(consumer.next()) {
                        Some(Ok(d)) => Ok(Some(d)),
                        Some(Err(e)) => Err(e),
                        None => Ok(None),
                    };
                    let end = !matches!(d, Ok(Some(_)));
                    if tx.send(d).is_err() || end {
                        return;
                    }
                }
            })
            .map_err(|e| format!("{what}: cannot start a thread: {e}"))?;
        self.conn = Some(Consuming {
            link,
            deliveries: rx,
            broken,
        });
        Ok(())
    }

    fn is_broken(&self) -> bool {
        self.conn
            .as_ref()
            .is_none_or(|c| c.broken.load(Ordering::Relaxed))
    }

    fn receive(
        &mut self,
        wait: Duration,
        max: usize,
        out: &mut Vec<Delivery<(u64, u64)>>,
    ) -> Result<(), String> {
        let Some(c) = self.conn.as_ref() else {
            return Ok(());
        };
        // Wait for a first message, then take what else has arrived.
        let mut next = match c.deliveries.recv_timeout(wait) {
            Ok(d) => Some(d),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                c.broken.store(true, Ordering::Relaxed);
                None
            }
        };
        while let Some(d) = next.take() {
            match d {
                Ok(Some(d)) => {
                    // A message id names one message: seen again, it is a redelivery or a
                    // publisher's retry. Without an id, only a redelivered body is compared
                    // (equal records may be distinct).
                    let named = d.properties.message_id().is_some();
                    out.push(Delivery {
                        id: message_id(&d.properties, &d.data),
                        named: d.redelivered || named,
                        body: d.data,
                        mark: (self.generation, d.delivery_tag),
                    });
                }
                Ok(None) | Err(_) => c.broken.store(true, Ordering::Relaxed),
            }
            if out.len() < max {
                next = c.deliveries.try_recv().ok();
            }
        }
        Ok(())
    }

    fn merge(into: &mut (u64, u64), later: (u64, u64)) {
        *into = later;
    }

    fn mark_of(_: &str) -> Option<(u64, u64)> {
        None
    }

    fn ack(&mut self, (generation, tag): (u64, u64)) -> bool {
        let Some(c) = self.conn.as_ref().filter(|_| generation == self.generation) else {
            return false; // an old channel: the broker redelivers, and the duplicates are recognised
        };
        match block(
            c.link
                .channel
                .basic_ack(tag, BasicAckOptions { multiple: true }),
        ) {
            Ok(()) => true,
            Err(_) => {
                c.broken.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.conn.take() {
            c.link.close();
        }
    }

    fn window(&self) -> u64 {
        self.prefetch as u64
    }
}

/// A message's identity for recognising redeliveries: its `message_id` property, or else a
/// hash of its body.
fn message_id(props: &lapin::BasicProperties, body: &[u8]) -> String {
    match props.message_id() {
        Some(id) => id.to_string(),
        None => format!("xxh3:{:016x}", xxhash_rust::xxh3::xxh3_64(body)),
    }
}
