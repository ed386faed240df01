//! Poison records: records of a known schema that are not valid votes. They
//! go to the dead-letter topic once (not again on a retry of their batch); if
//! that topic cannot take them they go to MongoDB (`<collection>_dead_letters`)
//! instead, so a broken dead-letter path never blocks the votes behind them.
//! `bandvote-consumer dlq replay` republishes those that decode now (after a
//! fix to the decoder), with their vote id, so a replay counts nothing twice.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use bandvote_kafka::VotePublisher;
use bandvote_vote::record::{self, Decoded};
use futures::TryStreamExt as _;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, DateTime};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::batch::Poison;
use crate::metrics::ConsumerMetrics;
use bandvote_store::VoteLog;
use crate::SinkError;

/// Where poison records go.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    source_topic: String,
    log: VoteLog,
    metrics: ConsumerMetrics,
    /// (partition, offset) already dead-lettered by this process and not yet
    /// past a successful batch: a retried batch does not send them again.
    sent: Mutex<HashSet<(i32, i64)>>,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: &str, source_topic: &str, log: VoteLog, metrics: ConsumerMetrics) -> Self {
        Self { producer, topic: topic.to_owned(), source_topic: source_topic.to_owned(), log, metrics, sent: Mutex::new(HashSet::new()) }
    }

    /// Dead-letter every poison record not sent yet: to the topic, all of the
    /// batch's at once (each bounded by the producer's `message.timeout.ms`,
    /// `--dlq-timeout-ms`), and those the topic did not take to MongoDB.
    pub async fn send(&self, poison: &[Poison]) -> Result<(), SinkError> {
        let pending: Vec<&Poison> =
            poison.iter().filter(|p| !self.sent.lock().map(|s| s.contains(&(p.partition, p.offset))).unwrap_or(false)).collect();
        let sends = pending.iter().map(|p| async move {
            tracing::warn!(partition = p.partition, offset = p.offset, reason = %p.reason, "poison record to the dead-letter topic");
            let (partition, offset) = (p.partition.to_string(), p.offset.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header { key: "reason", value: Some(p.reason.as_bytes()) })
                .insert(Header { key: "source-topic", value: Some(self.source_topic.as_bytes()) })
                .insert(Header { key: "source-partition", value: Some(partition.as_bytes()) })
                .insert(Header { key: "source-offset", value: Some(offset.as_bytes()) });
            let rec = FutureRecord::to(&self.topic).key(&p.key).payload(&p.value).headers(headers);
            self.producer.send(rec, Duration::from_secs(0)).await.map(drop).map_err(|(e, _)| e)
        });
        let results = futures::future::join_all(sends).await;
        for (p, r) in pending.iter().zip(results) {
            if let Err(e) = r {
                self.metrics.sink_errors.with_label_values(&["dlq"]).inc();
                tracing::warn!(error = %e, partition = p.partition, offset = p.offset, "dead-letter topic did not take the record in time: keeping it in MongoDB instead");
                self.to_mongo(p).await?;
            }
            if let Ok(mut s) = self.sent.lock() {
                s.insert((p.partition, p.offset));
            }
        }
        Ok(())
    }

    /// The batch holding `poison` is applied: forget them.
    pub fn done(&self, poison: &[Poison]) {
        if let Ok(mut s) = self.sent.lock() {
            for p in poison {
                s.remove(&(p.partition, p.offset));
            }
        }
    }

    async fn to_mongo(&self, p: &Poison) -> Result<(), SinkError> {
        let id = format!("{}/{}/{}", self.source_topic, p.partition, p.offset);
        let bin = |b: &[u8]| Binary { subtype: BinarySubtype::Generic, bytes: b.to_vec() };
        let d = doc! {
            "$set": {
                "key": bin(&p.key), "value": bin(&p.value), "reason": &p.reason,
                "source": { "topic": &self.source_topic, "partition": p.partition, "offset": p.offset },
                "at": DateTime::now(),
            }
        };
        self.log.dead_letters().update_one(doc! { "_id": id }, d).upsert(true).await?;
        Ok(())
    }
}

/// What `dlq replay` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Dead letters that decode as votes now and were published again.
    pub republished: u64,
    /// Still not votes: left where they are.
    pub still_poison: u64,
}

/// Republish every dead letter (topic `dlq_topic`, then MongoDB's fallback)
/// that decodes as a vote now. Votes keep their id: replaying twice counts
/// nothing twice. Fallback documents are removed once republished.
pub async fn replay(brokers: &str, dlq_topic: &str, log: &VoteLog, publisher: &VotePublisher) -> Result<Replayed, SinkError> {
    let mut out = Replayed::default();
    let (b, t) = (brokers.to_owned(), dlq_topic.to_owned());
    let values = tokio::task::spawn_blocking(move || read_all(&b, &t))
        .await
        .map_err(|e| SinkError::Kafka(e.to_string()))?
        .map_err(|e| SinkError::Kafka(e.to_string()))?;
    for value in values {
        match record::decode_record(None, &value) {
            Decoded::Vote(v) => {
                publisher.publish(&v).await.map_err(|e| SinkError::Kafka(e.to_string()))?;
                out.republished += 1;
            }
            _ => out.still_poison += 1,
        }
    }
    let mut cur = log.dead_letters().find(doc! {}).await?;
    while let Some(d) = cur.try_next().await? {
        let value = d.get_binary_generic("value").map(|v| v.to_vec()).unwrap_or_default();
        match record::decode_record(None, &value) {
            Decoded::Vote(v) => {
                publisher.publish(&v).await.map_err(|e| SinkError::Kafka(e.to_string()))?;
                log.dead_letters().delete_one(doc! { "_id": d.get("_id").cloned() }).await?;
                out.republished += 1;
            }
            _ => out.still_poison += 1,
        }
    }
    Ok(out)
}

/// Every record value of `topic`, from the beginning to the high watermarks now.
fn read_all(brokers: &str, topic: &str) -> Result<Vec<Vec<u8>>, rdkafka::error::KafkaError> {
    let mut out = Vec::new();
    bandvote_kafka::scan_topic(brokers, topic, Duration::from_secs(10), Duration::from_secs(300), |m| {
        out.push(m.payload().unwrap_or_default().to_vec());
    })?;
    Ok(out)
}
