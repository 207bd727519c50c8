//! The Kafka side of a live source (feature `kafka`): a [`Consumer`] over every partition of a
//! topic. The reader thread and what it shares with RabbitMQ are in [`super::live_source`].
//!
//! Design:
//! - **Partitions in order.** The consumer is *assigned* every partition of the topic (no group
//!   rebalancing: one eventflow process reads the whole topic), and librdkafka delivers each
//!   partition in offset order. Each message's id is `PARTITION:OFFSET`. The reader decides
//!   lateness per partition and the source's watermark is the smallest partition watermark
//!   (see [`super::live_source`]), so the interleaving of partitions never makes a record late.
//! - **Offsets committed after output commit.** Auto-commit is off. A chunk's mark is the offset
//!   after its last message, per partition; the reader commits it to the consumer group (`group`,
//!   default `eventflow-PIPELINE-SOURCE`) only once every committing sink committed the chunk's
//!   ticks, so a committed offset means its messages' results are durable.
//! - **Reproducible after a crash.** The journal (`.eventflow/journal-SOURCE.jsonl`) holds every
//!   message in the order the workers got them, and every idle advance. A resumed run replays it —
//!   the same chunks' records with the same per-partition lateness decisions, so the same state —
//!   and then reads each partition from the offset after its last journaled message (not from the
//!   group's committed offset, which lags behind the journal); anything delivered again below
//!   that is dropped as a duplicate. Nothing is lost (the journal is synced before an offset is
//!   committed) and nothing counted twice. A fresh run starts at the group's committed offsets
//!   (the earliest offset for a new group).
//! - **Broker trouble.** librdkafka reconnects by itself; while the brokers are unreachable the
//!   consumer checks every second, and after [`OUTAGE`] without them it reports the connection
//!   broken: the reader connects again with bounded retries, and fails the run with a message
//!   naming the brokers once they are exhausted.

use super::kafka::{client_config, resolve_brokers, topic_partitions};
use super::live_source::{Consumer, Delivery};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long the brokers may stay unreachable before the connection counts as lost.
pub const OUTAGE: Duration = Duration::from_secs(30);

/// A consumer of every partition of one topic.
pub(crate) struct KafkaConsumer {
    name: String,
    brokers: String,
    topic: String,
    group: String,
    consumer: Option<BaseConsumer>,
    partitions: Vec<i32>,
    /// Since when the brokers are unreachable.
    down_since: Option<Instant>,
    last_check: Instant,
    broken: bool,
    /// Offsets to commit that a failed commit left behind.
    uncommitted: BTreeMap<i32, i64>,
    /// The offset after the last message received, per partition.
    position: BTreeMap<i32, i64>,
}

impl KafkaConsumer {
    /// A consumer of `topic` for source `name` in consumer group `group` (not connected yet).
    pub(crate) fn new(
        name: &str,
        brokers: Option<&str>,
        topic: &str,
        group: &str,
    ) -> KafkaConsumer {
        KafkaConsumer {
            name: name.to_string(),
            brokers: resolve_brokers(brokers),
            topic: topic.to_string(),
            group: group.to_string(),
            consumer: None,
            partitions: Vec::new(),
            down_since: None,
            last_check: Instant::now(),
            broken: false,
            uncommitted: BTreeMap::new(),
            position: BTreeMap::new(),
        }
    }

    fn create(&self) -> Result<BaseConsumer, String> {
        client_config(&self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Fetch ahead a few MB, not librdkafka's default 64 MB: the worker channels hold
            // the rest of what the source has in hand.
            .set("queued.min.messages", "10000")
            .set("queued.max.messages.kbytes", "4096")
            // A fetch waits at most this long for new messages (librdkafka's default is 500 ms,
            // which shows in the publish-to-output latency).
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(|e| format!("{}: cannot create a Kafka consumer: {e}", self.what()))
    }

    /// While the brokers report errors: asks for the topic once a second. The brokers are
    /// back when they answer; a topic that vanished, or whose partitions now end before what
    /// this run has read, means the brokers lost messages (a broker on memory storage that
    /// restarted): that fails the run. Unreachable for [`OUTAGE`], the connection counts as
    /// lost.
    fn check_outage(&mut self) -> Result<(), String> {
        let Some(since) = self.down_since else {
            return Ok(());
        };
        if self.last_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_check = Instant::now();
        let Some(c) = self.consumer.as_ref() else {
            return Ok(());
        };
        let answer = c.fetch_metadata(Some(&self.topic), Duration::from_millis(500));
        let Ok(md) = answer else {
            if since.elapsed() >= OUTAGE {
                self.broken = true;
            }
            return Ok(());
        };
        let lost = |why: String| {
            format!(
                "{}: the brokers at {} lost messages of topic `{}`: {why}; did the broker restart without persistent storage? The outputs are incomplete",
                self.what(),
                self.brokers,
                self.topic
            )
        };
        let found = md
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len());
        match found {
            Some(n) if n >= self.partitions.len() => {}
            Some(n) => return Err(lost(format!("it has {n} partitions now"))),
            None => return Err(lost("it does not exist any more".into())),
        }
        for (p, read) in &self.position {
            match c.fetch_watermarks(&self.topic, *p, Duration::from_millis(500)) {
                Ok((_, high)) if high < *read => {
                    return Err(lost(format!(
                        "partition {p} ends at offset {high}, but this run read up to {read}"
                    )))
                }
                Ok(_) => {}
                Err(_) => return Ok(()), // not answering yet: ask again
            }
        }
        eprintln!(
            "{}: the brokers at {} answer again",
            self.what(),
            self.brokers
        );
        self.down_since = None;
        Ok(())
    }
}

impl Consumer for KafkaConsumer {
    /// The offset after the last message to acknowledge, per partition.
    type Mark = BTreeMap<i32, i64>;
    const MARKS_SURVIVE: bool = true;

    fn what(&self) -> String {
        format!("kafka source `{}`", self.name)
    }

    fn partitions(&mut self, give_up: &dyn Fn() -> bool) -> Result<Option<Vec<i32>>, String> {
        let client = self.create()?;
        let parts = topic_partitions(&client, &self.brokers, &self.topic, &self.what(), give_up)?;
        self.partitions.clone_from(&parts);
        Ok(Some(parts))
    }

    fn connect(
        &mut self,
        next: &BTreeMap<i32, i64>,
        give_up: &dyn Fn() -> bool,
    ) -> Result<(), String> {
        let consumer = self.create()?;
        // Reachable first, so that a broker that is down fails the run after bounded retries.
        topic_partitions(&consumer, &self.brokers, &self.topic, &self.what(), give_up)?;
        let mut tpl = TopicPartitionList::new();
        for p in &self.partitions {
            let at = match next.get(p) {
                Some(&o) => Offset::Offset(o),
                None => Offset::Stored,
            };
            tpl.add_partition_offset(&self.topic, *p, at)
                .map_err(|e| format!("{}: {e}", self.what()))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| format!("{}: cannot read topic `{}`: {e}", self.what(), self.topic))?;
        self.consumer = Some(consumer);
        self.position.clone_from(next);
        self.broken = false;
        self.down_since = None;
        Ok(())
    }

    fn is_broken(&self) -> bool {
        self.broken || self.consumer.is_none()
    }

    fn receive(
        &mut self,
        wait: Duration,
        max: usize,
        out: &mut Vec<Delivery<Self::Mark>>,
    ) -> Result<(), String> {
        let mut error = None;
        if let Some(c) = self.consumer.as_ref() {
            let mut timeout = wait;
            while out.len() < max {
                match c.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => {
                        let (p, o) = (m.partition(), m.offset());
                        self.position.insert(p, o + 1);
                        out.push(Delivery {
                            id: format!("{p}:{o}"),
                            body: m.payload().unwrap_or_default().to_vec(),
                            named: true,
                            mark: BTreeMap::from([(p, o + 1)]),
                        });
                    }
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                }
                timeout = Duration::ZERO;
            }
        }
        if !out.is_empty() {
            self.down_since = None;
        } else if let Some(e) = error {
            if self.down_since.is_none() {
                eprintln!(
                    "{}: trouble with the brokers at {} ({e}); waiting for them",
                    self.what(),
                    self.brokers
                );
                self.down_since = Some(Instant::now());
                // Look at once: a lost topic should fail the run without delay.
                self.last_check = Instant::now() - Duration::from_secs(1);
            }
        }
        self.check_outage()
    }

    fn merge(into: &mut Self::Mark, later: Self::Mark) {
        for (p, o) in later {
            let e = into.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
    }

    fn mark_of(id: &str) -> Option<Self::Mark> {
        let (p, o) = id.split_once(':')?;
        Some(BTreeMap::from([(
            p.parse().ok()?,
            o.parse::<i64>().ok()? + 1,
        )]))
    }

    fn ack(&mut self, mark: Self::Mark) -> bool {
        Self::merge(&mut self.uncommitted, mark);
        let Some(c) = self.consumer.as_ref() else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &self.uncommitted {
            if tpl
                .add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return false;
            }
        }
        match c.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.uncommitted.clear();
                true
            }
            // Kept: the next commit carries these offsets too.
            Err(_) => false,
        }
    }

    fn disconnect(&mut self) {
        self.consumer = None;
    }

    fn window(&self) -> u64 {
        u64::MAX
    }
}
