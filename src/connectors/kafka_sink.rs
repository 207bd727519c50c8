//! The publishing side of a Kafka sink (feature `kafka`): every output update becomes one JSON
//! message, published by an idempotent producer with `acks=all`.
//!
//! Each line of the sink's JSON Lines becomes one message whose key is the stable id
//! `PIPELINE:SINK:TICK:SEQ` ([`super::outbox`]), so a consumer can drop a row published again.
//! A flush sends what is queued and waits for every delivery report; a commit (see
//! `file_sink`) flushes first, so a commit line names only messages the brokers acknowledged.
//! A resumed run does not publish the ticks its commit covers. A delivery that fails (the
//! producer already retried it within `message.timeout.ms`) is sent again with the same key,
//! twice at most, before the run fails naming the brokers.

use super::kafka::{client_config, plain_consumer, resolve_brokers, topic_partitions};
use super::outbox::{SendError, Transport};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Messages queued before they are sent without waiting for a flush.
const QUEUED: usize = 8192;

/// How long a flush waits for delivery reports.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts failed deliveries (librdkafka reports them on the thread that polls the producer).
#[derive(Default)]
struct Reports {
    failed: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first.lock().expect("report lock is never poisoned");
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A Kafka producer behind a sink's encoder.
pub type Publisher = super::outbox::Publisher<KafkaTransport>;

/// An idempotent producer to one topic.
pub struct KafkaTransport {
    brokers: String,
    topic: String,
    what: String,
    producer: BaseProducer<Reports>,
}

impl Publisher {
    /// Creates the producer and checks (with bounded retries) that the topic exists.
    pub fn connect(
        brokers: Option<&str>,
        topic: &str,
        prefix: &str,
        sink: &str,
    ) -> Result<Publisher, String> {
        let brokers = resolve_brokers(brokers);
        let what = format!("kafka sink `{sink}`");
        let probe = plain_consumer(&brokers)?;
        topic_partitions(&probe, &brokers, topic, &what, &|| false)?;
        let producer = client_config(&brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create_with_context(Reports::default())
            .map_err(|e| format!("{what}: cannot create a Kafka producer: {e}"))?;
        let transport = KafkaTransport {
            brokers,
            topic: topic.to_string(),
            what,
            producer,
        };
        Ok(Publisher::new(transport, prefix, QUEUED))
    }
}

impl Transport for KafkaTransport {
    fn what(&self) -> &str {
        &self.what
    }

    fn target(&self) -> String {
        format!("topic `{}` on {}", self.topic, self.brokers)
    }

    /// Sends every message (key = its id) and waits for every delivery report.
    fn send(&mut self, messages: &[(String, Vec<u8>)]) -> Result<(), SendError> {
        let reports = self.producer.context();
        reports.failed.store(0, Ordering::Relaxed);
        reports
            .first
            .lock()
            .expect("report lock is never poisoned")
            .take();
        for (key, body) in messages {
            let mut record = BaseRecord::to(&self.topic).key(key).payload(body);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // The producer's queue is full: let deliveries complete, then retry.
                        record = r;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => return Err(SendError::Again(e.to_string())),
                }
            }
        }
        self.producer
            .flush(DELIVERY_TIMEOUT)
            .map_err(|e| SendError::Again(format!("waiting for delivery reports: {e}")))?;
        match reports.failed.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => {
                let first = reports
                    .first
                    .lock()
                    .expect("report lock is never poisoned")
                    .clone()
                    .unwrap_or_default();
                Err(SendError::Again(format!(
                    "{n} messages were not delivered ({first})"
                )))
            }
        }
    }
}

/// Publishes every record of a CSV (header skipped) or JSON Lines file to `topic`, one message
/// per record keyed `FILE_NAME:POSITION` (the record's 0-based position), in file order; the
/// key picks the partition. Returns the number of messages published.
pub fn publish_file(
    path: &std::path::Path,
    brokers: Option<&str>,
    topic: &str,
) -> Result<u64, String> {
    let mut publisher = Publisher::connect(brokers, topic, "", "publish")?;
    super::outbox::publish_file(&mut publisher, path)
}
