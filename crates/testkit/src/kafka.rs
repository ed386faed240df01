//! Kafka helpers: a fresh topic per test, reading a topic back.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};

use crate::{kafka_brokers, unique};

/// Create a fresh topic for one test.
pub async fn fresh_topic(prefix: &str, partitions: i32) -> String {
    let topic = unique(prefix);
    bandvote_kafka::ensure_topic(&kafka_brokers(), &topic, partitions).await.expect("create topic");
    topic
}

/// One record read back from Kafka.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Read every record of `topic` from the beginning until `want` records are
/// seen or `within` passes (then return what was read).
pub async fn read_topic(topic: &str, want: usize, within: Duration) -> Vec<ReadRecord> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().unwrap_or_default().to_vec(),
                value: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
            }),
            Ok(Err(e)) => eprintln!("read_topic: {e}"),
            Err(_) => break,
        }
    }
    out
}

/// A publisher to `topic` behind admission that claims idempotency keys in
/// the test Redis (under a fresh prefix, 60 s window), as the deployed intakes do.
pub fn publisher_with_key_claims(topic: &str) -> bandvote_admission::Admission<bandvote_kafka::VotePublisher> {
    let claims = bandvote_store::KeyClaims::new(&crate::redis_url(), &format!("{}:", unique("claims")), Duration::from_secs(60)).expect("claims");
    let publisher = bandvote_kafka::VotePublisher::new(bandvote_kafka::PublisherConfig { brokers: kafka_brokers(), topic: topic.into(), ..Default::default() })
        .expect("publisher");
    bandvote_admission::Admission::new(publisher).with_key_claims(claims)
}
