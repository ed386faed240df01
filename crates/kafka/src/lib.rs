//! Kafka for bandvote.
//!
//! [`VotePublisher`] is the one way votes enter Kafka: an rdkafka idempotent
//! producer with `acks=all`, a bounded number of votes in flight (past it a
//! caller gets [`ProduceError::Overloaded`] at once, never a queue), and a
//! result only after the broker's delivery report. Every intake (the wasm host,
//! the gRPC producer, the REST bridge) uses it, so records are byte-identical
//! whichever path a vote took: they all come from [`bandvote_vote::record::encode`].
//!
//! The publisher also watches its broker ([`VotePublisher::readiness`]): when
//! votes are waiting and Kafka has acknowledged nothing for `stall_after`, the
//! service is reported not ready and the `*_kafka_stalled` gauge says so
//! ([`VotePublisher::register_metrics`]).
//!
//! [`ensure_topic`] creates the topic with its partition count up front.

mod args;
mod progress;

pub use args::PublisherArgs;
pub use progress::Progress;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bandvote_vote::{record, Vote};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;

/// A client configuration for `brokers` with the connection bounds every
/// bandvote Kafka client shares, so a broker back after a network cut is
/// used again within about 2 s (issue 31; ARCHITECTURE.md, "Network
/// faults"): a connection whose request goes unanswered for 5 s is closed
/// (a blackholed link sends no reset; librdkafka waits 60 s by default); a
/// connection attempt is given up after 1 s, librdkafka's minimum (an attempt
/// whose SYN vanished in the cut otherwise waits for the kernel's next SYN
/// retransmit, up to 16 s after the heal, the default bound being 30 s);
/// reconnects are at most 500 ms apart (default up to 10 s).
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "5000")
        .set("socket.connection.setup.timeout.ms", "1000")
        .set("reconnect.backoff.max.ms", "500");
    client
}

/// How to reach Kafka and how hard to push it.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    pub topic: String,
    /// Most votes awaiting a delivery report at once; past it, `Overloaded`.
    pub max_in_flight: usize,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger_ms: u32,
    /// `message.timeout.ms`: after this a vote that Kafka has not acknowledged
    /// fails with `Unavailable` (Kafka down answers within this bound).
    pub delivery_timeout: Duration,
    /// `compression.type`: none, gzip, lz4 or zstd (the broker has no snappy).
    pub compression: String,
    /// Votes waiting and no acknowledgement for this long: the publisher is stalled (not ready).
    pub stall_after: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic: record::TOPIC.into(),
            max_in_flight: 10_000,
            linger_ms: 5,
            delivery_timeout: Duration::from_secs(5),
            compression: "lz4".into(),
            stall_after: Duration::from_secs(3),
        }
    }
}

/// Kafka's acknowledgement of one vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Why Kafka did not acknowledge a vote. None of these means "stored".
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// Too many votes in flight (or librdkafka's queue is full): never handed
    /// to Kafka; retry after the given delay.
    #[error("overloaded: retry after {}ms", retry_after.as_millis())]
    Overloaded { retry_after: Duration },
    /// Kafka did not acknowledge in time or refused the record. `maybe_sent`:
    /// the record was handed to librdkafka, so it may be in Kafka after all.
    #[error("kafka unavailable: {reason}")]
    Unavailable { reason: String, maybe_sent: bool },
    /// The producer's configuration is wrong (fatal at start-up).
    #[error("kafka client configuration: {0}")]
    Config(String),
}

impl ProduceError {
    /// Whether the vote may be in Kafka despite the error (it was handed over).
    pub fn maybe_sent(&self) -> bool {
        matches!(self, Self::Unavailable { maybe_sent: true, .. })
    }
}

fn unsent(reason: impl Into<String>) -> ProduceError {
    ProduceError::Unavailable { reason: reason.into(), maybe_sent: false }
}

fn maybe_sent(reason: impl Into<String>) -> ProduceError {
    ProduceError::Unavailable { reason: reason.into(), maybe_sent: true }
}

/// Publishes votes to one topic; cheap to clone and share. It decides
/// nothing about a vote: admission (contest rules, idempotency keys, name
/// bounds) is `bandvote-admission`'s, before a vote gets here.
#[derive(Clone)]
pub struct VotePublisher {
    producer: FutureProducer,
    topic: Arc<str>,
    in_flight: Arc<Semaphore>,
    progress: Arc<Progress>,
    config: Arc<PublisherConfig>,
}

impl VotePublisher {
    /// Create the producer. Does not contact the broker yet (see [`Self::ready`]).
    pub fn new(config: PublisherConfig) -> Result<Self, ProduceError> {
        let producer: FutureProducer = client_config(&config.brokers)
            // A produce request is bounded by its first vote's delivery
            // timeout and by this: never cut shorter than the delivery timeout.
            .set("socket.timeout.ms", config.delivery_timeout.max(Duration::from_secs(5)).as_millis().to_string())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", config.linger_ms.to_string())
            .set("batch.num.messages", "10000")
            .set("compression.type", &config.compression)
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", (config.max_in_flight.max(1) * 2).to_string())
            .set("socket.keepalive.enable", "true")
            .create()
            .map_err(|e| ProduceError::Config(e.to_string()))?;
        Ok(Self {
            producer,
            topic: config.topic.as_str().into(),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            progress: Arc::new(Progress::new()),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    /// Votes sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight.max(1) - self.in_flight.available_permits()
    }

    /// Publish one vote as it is; returns once Kafka acknowledged it with acks=all.
    pub async fn publish(&self, vote: &Vote) -> Result<Ack, ProduceError> {
        let _permit = self.in_flight.clone().try_acquire_owned().map_err(|_| overloaded())?;
        self.progress.started(self.in_flight() <= 1);
        self.send(vote).await
    }

    /// Publish a batch: all or nothing for the in-flight bound (the batch
    /// takes `votes.len()` slots at once), one result per vote, in order.
    pub async fn publish_batch(&self, votes: &[Vote]) -> Result<Vec<Result<Ack, ProduceError>>, ProduceError> {
        let n = u32::try_from(votes.len()).map_err(|_| overloaded())?;
        let _permits = self.in_flight.clone().try_acquire_many_owned(n).map_err(|_| overloaded())?;
        self.progress.started(self.in_flight() <= votes.len());
        Ok(futures::future::join_all(votes.iter().map(|v| self.send(v))).await)
    }

    async fn send(&self, vote: &Vote) -> Result<Ack, ProduceError> {
        let rec = record::encode(vote);
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
        for (key, value) in &rec.headers {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let fr = FutureRecord::to(&self.topic).key(&rec.key).payload(&rec.value).headers(headers);
        let delivery = match self.producer.send_result(fr) {
            Ok(d) => d,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => return Err(overloaded()),
            Err((e, _)) => return Err(unsent(e.to_string())),
        };
        // librdkafka fails the message after message.timeout.ms; the extra
        // second only guards against a lost report.
        let bound = self.config.delivery_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, delivery).await {
            Ok(Ok(Ok(d))) => {
                self.progress.acked();
                Ok(Ack { partition: d.partition, offset: d.offset })
            }
            Ok(Ok(Err((e, _)))) => Err(maybe_sent(e.to_string())),
            Ok(Err(_canceled)) => Err(maybe_sent("producer shut down")),
            Err(_) => Err(maybe_sent("no delivery report in time")),
        }
    }

    /// True when the broker answers a metadata request for our topic.
    pub async fn ready(&self, timeout: Duration) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map(|m| m.topics().iter().any(|t| t.name() == &*topic && t.error().is_none() && !t.partitions().is_empty()))
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }

    /// How long votes have been waiting with no acknowledgement from Kafka
    /// (`None` when nothing waits or Kafka acknowledged something recently).
    pub fn stalled_for(&self) -> Option<Duration> {
        self.progress.stalled_for(self.in_flight(), self.config.stall_after)
    }

    /// The readiness of a service that publishes: the broker answers metadata
    /// for our topic and, if votes are waiting, acknowledged one within
    /// `stall_after`. `Err` carries the reason for `/readyz`.
    pub async fn readiness(&self, timeout: Duration) -> Result<String, String> {
        if let Some(d) = self.stalled_for() {
            return Err(format!("kafka stalled: {} votes waiting, no acknowledgement for {} ms", self.in_flight(), d.as_millis()));
        }
        if self.ready(timeout).await {
            Ok("kafka ok".into())
        } else {
            Err("kafka unreachable or topic missing".into())
        }
    }

    /// Export `<prefix>_kafka_in_flight`, `<prefix>_kafka_last_ack_age_seconds`
    /// and `<prefix>_kafka_stalled` (1 while [`Self::stalled_for`] is `Some`).
    pub fn register_metrics(&self, registry: &prometheus::Registry, prefix: &str) -> Result<(), prometheus::Error> {
        registry.register(Box::new(progress::PublisherCollector::new(self.clone(), prefix)?))
    }

    /// Wait for every queued vote's delivery report (graceful shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer.flush(timeout).map_err(|e| unsent(e.to_string()))
    }
}

fn overloaded() -> ProduceError {
    ProduceError::Overloaded { retry_after: Duration::from_secs(1) }
}

/// Low and high watermark of each partition of `topic`.
fn watermarks(c: &BaseConsumer, topic: &str, timeout: Duration) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    let meta = c.fetch_metadata(Some(topic), timeout)?;
    let mut out = Vec::new();
    for p in meta.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
        let (low, high) = c.fetch_watermarks(topic, p.id(), timeout)?;
        out.push((p.id(), low, high));
    }
    Ok(out)
}

fn plain_consumer(brokers: &str) -> Result<BaseConsumer, KafkaError> {
    client_config(brokers)
        .set("group.id", "bandvote-scan")
        .set("enable.auto.commit", "false")
        .create()
}

/// `(partition, low, high)` watermarks of every partition of `topic`.
pub fn watermarks_of(brokers: &str, topic: &str, timeout: Duration) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    watermarks(&plain_consumer(brokers)?, topic, timeout)
}

/// Records held by `topic` now: the sum over its partitions of high − low watermark.
pub fn topic_record_count(brokers: &str, topic: &str, timeout: Duration) -> Result<i64, KafkaError> {
    let c = plain_consumer(brokers)?;
    Ok(watermarks(&c, topic, timeout)?.into_iter().map(|(_, low, high)| (high - low).max(0)).sum())
}

/// Read every record of `topic` from the beginning up to the high watermarks
/// taken at the start, handing each to `f` (assigned partitions, no consumer
/// group joined, nothing committed). Blocking. Fails with `RequestTimedOut`
/// if the end is not reached `within`.
pub fn scan_topic(
    brokers: &str,
    topic: &str,
    timeout: Duration,
    within: Duration,
    mut f: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), KafkaError> {
    let c = plain_consumer(brokers)?;
    let mut tpl = TopicPartitionList::new();
    let mut end: HashMap<i32, i64> = HashMap::new();
    for (p, low, high) in watermarks(&c, topic, timeout)? {
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            end.insert(p, high);
        }
    }
    if end.is_empty() {
        return Ok(());
    }
    c.assign(&tpl)?;
    let deadline = std::time::Instant::now() + within;
    while !end.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut));
        }
        let Some(m) = c.poll(Duration::from_millis(500)) else { continue };
        let m = m?;
        let (p, o) = (m.partition(), m.offset());
        let Some(&high) = end.get(&p) else { continue };
        if o < high {
            f(&m);
        }
        if o + 1 >= high {
            end.remove(&p);
        }
    }
    Ok(())
}

/// Create `topic` with `partitions` partitions unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    // The whole request (lookup, send, the broker's 10 s operation, reply)
    // defaults to `socket.timeout.ms` (5 s, `client_config`): longer here.
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))).request_timeout(Some(Duration::from_secs(15)));
    for result in admin.create_topics([&new], &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::error!(%name, ?code, "create topic")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote() -> Vote {
        bandvote_vote::RawVote {
            band: Some("a".into()),
            album: Some("b".into()),
            year: Some("2000".into()),
            rank: Some("1".into()),
            vote_id: None,
            voter: None,
        }
        .validate(bandvote_vote::Source::Http, 0, None)
        .unwrap()
    }

    /// With no broker at all the publisher answers within its delivery bound.
    #[tokio::test]
    async fn unreachable_broker_is_unavailable_in_time() {
        let p = VotePublisher::new(PublisherConfig {
            brokers: "127.0.0.1:1".into(),
            delivery_timeout: Duration::from_millis(500),
            ..Default::default()
        })
        .unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(p.publish(&vote()).await, Err(ProduceError::Unavailable { .. })));
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!p.ready(Duration::from_millis(200)).await);
    }

    /// Past max_in_flight, callers are refused at once instead of queued.
    #[tokio::test]
    async fn in_flight_limit_refuses_instead_of_queueing() {
        let p = VotePublisher::new(PublisherConfig {
            brokers: "127.0.0.1:1".into(),
            max_in_flight: 2,
            delivery_timeout: Duration::from_millis(800),
            ..Default::default()
        })
        .unwrap();
        let v = vote();
        let (a, b, c) = tokio::join!(p.publish(&v), p.publish(&v), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (p.in_flight(), p.publish(&v).await)
        });
        assert!(a.is_err() && b.is_err());
        assert_eq!(c.0, 2);
        assert!(matches!(c.1, Err(ProduceError::Overloaded { .. })));
        assert!(matches!(p.publish_batch(&[v.clone(), v.clone(), v]).await, Err(ProduceError::Overloaded { .. })));
    }
}
