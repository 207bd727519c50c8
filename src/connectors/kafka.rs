//! What the Kafka source and sink share (feature `kafka`): the bootstrap servers, client
//! settings, and looking a topic up with bounded retries.
//!
//! rdkafka is used through its synchronous clients (`BaseConsumer`, `BaseProducer`): each
//! connector thread owns its client and polls it; librdkafka's own threads drive the sockets
//! and reconnect to brokers by themselves. Nothing here runs on a timely worker.

use super::live_source::connect_with_retry;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

/// The brokers used when a node gives no `brokers` and `EVENTFLOW_KAFKA_BROKERS` is not set.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// How long one metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The brokers to use: the node's `brokers`, else `EVENTFLOW_KAFKA_BROKERS`, else
/// [`DEFAULT_BROKERS`].
pub fn resolve_brokers(brokers: Option<&str>) -> String {
    match brokers {
        Some(b) => b.to_string(),
        None => {
            std::env::var("EVENTFLOW_KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.to_string())
        }
    }
}

/// Settings every eventflow Kafka client has.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "eventflow")
        // Brokers come back quickly after a restart; look again soon.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000");
    c
}

/// The partitions of `topic`, asked of the brokers with bounded retries. A topic the brokers
/// do not know is an error at once (topics are created explicitly, e.g. with
/// `scripts/kafka.sh create-topic`).
pub fn topic_partitions(
    client: &BaseConsumer,
    brokers: &str,
    topic: &str,
    what: &str,
    give_up: &dyn Fn() -> bool,
) -> Result<Vec<i32>, String> {
    let found = connect_with_retry(what, brokers, give_up, || {
        let md = client
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| e.to_string())?;
        Ok(match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().iter().map(|p| p.id()).collect::<Vec<i32>>())
            }
            Some(t) => Err(match t.error() {
                Some(e) => format!("{e:?}"),
                None => "it has no partitions".to_string(),
            }),
            None => Err("not found".to_string()),
        })
    })?;
    found.map(|mut p| {
        p.sort_unstable();
        p
    })
    .map_err(|why| {
        format!(
            "{what}: topic `{topic}` is not available on {brokers} ({why}); create it first, e.g. `scripts/kafka.sh create-topic {topic} 2`"
        )
    })
}

/// A consumer that reads no group offsets: for metadata and admin work.
pub fn plain_consumer(brokers: &str) -> Result<BaseConsumer, String> {
    client_config(brokers)
        .create()
        .map_err(|e| format!("cannot create a Kafka client for {brokers}: {e}"))
}

/// Creates `topic` with `partitions` partitions (replication factor 1); an existing topic is
/// left as it is. For `eventflow publish --partitions` and the tests.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .map_err(|e| format!("cannot create a Kafka admin client for {brokers}: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_lite::future::block_on(admin.create_topics([&new], &opts))
        .map_err(|e| format!("cannot create topic `{topic}` on {brokers}: {e}"))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("cannot create topic `{t}` on {brokers}: {e}")),
        }
    }
    Ok(())
}
