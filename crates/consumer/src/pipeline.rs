//! The consume → apply → commit loop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::batch::Batch;
use crate::config::ConsumerConfig;
use crate::metrics::ConsumerMetrics;
use crate::mongo::VoteLog;
use crate::redis::Counters;
use crate::{recount, SinkError};

/// Logs rebalances. Offsets are *stored* only after a batch is applied to both
/// sinks; librdkafka commits stored offsets every second and on revoke/close,
/// and a batch the new owner replays is skipped by the Redis offset guard and
/// MongoDB's `_id`.
pub struct RebalanceLogger;

impl ClientContext for RebalanceLogger {}

impl ConsumerContext for RebalanceLogger {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = ?partitions(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = ?partitions(tpl), "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Applies decoded batches to the dead-letter topic, MongoDB and Redis.
/// Idempotent: applying a batch again changes nothing.
pub struct BatchApplier {
    dlq: FutureProducer,
    counters: Counters,
    log: VoteLog,
    metrics: ConsumerMetrics,
    topic: String,
    dlq_topic: String,
}

/// The running consumer: Kafka in, both sinks out.
pub struct Pipeline {
    consumer: Arc<StreamConsumer<RebalanceLogger>>,
    applier: BatchApplier,
    metrics: ConsumerMetrics,
    config: ConsumerConfig,
}

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl BatchApplier {
    /// Connect to Redis and MongoDB (creating the log's indexes) and create the DLQ producer.
    pub async fn connect(config: &ConsumerConfig, metrics: ConsumerMetrics) -> Result<Self, StartError> {
        let dlq: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?;
        let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.map_err(SinkError::from)?;
        let log = VoteLog::connect(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.map_err(SinkError::from)?;
        Ok(Self { dlq, counters, log, metrics, topic: config.topic.clone(), dlq_topic: config.dlq_topic.clone() })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn log(&self) -> &VoteLog {
        &self.log
    }

    /// Apply a batch to both sinks. Idempotent: safe to call again after any failure.
    pub async fn apply(&self, batch: &Batch) -> Result<(), SinkError> {
        let topic = &self.topic;
        for p in &batch.poison {
            tracing::warn!(partition = p.partition, offset = p.offset, reason = %p.reason, "poison record to the dead-letter topic");
            let headers = OwnedHeaders::new()
                .insert(Header { key: "reason", value: Some(p.reason.as_bytes()) })
                .insert(Header { key: "source-partition", value: Some(p.partition.to_string().as_bytes()) })
                .insert(Header { key: "source-offset", value: Some(p.offset.to_string().as_bytes()) });
            let rec = FutureRecord::to(&self.dlq_topic).key(&p.key).payload(&p.value).headers(headers);
            if let Err((e, _)) = self.dlq.send(rec, Duration::from_secs(5)).await {
                self.metrics.sink_errors.with_label_values(&["dlq"]).inc();
                return Err(SinkError::DeadLetter(e.to_string()));
            }
        }
        // Redis lost its data (restart without AOF, flush): rebuild it from the log first.
        let empty = self.counters.is_empty().await.inspect_err(|_| self.metrics.sink_errors.with_label_values(&["redis"]).inc())?;
        if empty && self.log.collection().estimated_document_count().await? > 0 {
            tracing::warn!("redis has no counters but the vote log is not empty: rebuilding from MongoDB");
            recount::rebuild(&self.log, &self.counters, topic).await?;
        }
        let stored = self.log.store(topic, batch.votes()).await.inspect_err(|_| self.metrics.sink_errors.with_label_values(&["mongo"]).inc())?;
        self.metrics.duplicates.with_label_values(&["stored"]).inc_by(stored.already_stored);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        for (partition, pb) in &batch.partitions {
            let applied = self
                .counters
                .apply(topic, *partition, pb, now)
                .await
                .inspect_err(|_| self.metrics.sink_errors.with_label_values(&["redis"]).inc())?;
            self.metrics.applied.inc_by(applied.counted);
            self.metrics.duplicates.with_label_values(&["vote_id"]).inc_by(applied.duplicates);
            self.metrics.duplicates.with_label_values(&["replay"]).inc_by(applied.replayed);
        }
        self.metrics.poison.inc_by(batch.poison.len() as u64);
        Ok(())
    }

}

impl Pipeline {
    pub async fn connect(config: ConsumerConfig, metrics: ConsumerMetrics) -> Result<Self, StartError> {
        let mut client = ClientConfig::new();
        if !config.instance_id.is_empty() {
            client.set("group.instance.id", &config.instance_id);
        }
        let consumer: StreamConsumer<RebalanceLogger> = client
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("group.id", &config.group)
            // Only offsets we store (after both sinks succeeded) are committed:
            // every second, and on revoke and close. Fewer commits keep the
            // group coordinator responsive (tansu serialises group requests).
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A killed member is noticed within 15 s. Shorter sessions fail
            // under load: tansu answers heartbeats behind produce requests.
            .set("session.timeout.ms", "15000")
            .set("heartbeat.interval.ms", "3000")
            .set("max.poll.interval.ms", "60000")
            .create_with_context(RebalanceLogger)?;
        let applier = BatchApplier::connect(&config, metrics.clone()).await?;
        consumer.subscribe(&[&config.topic])?;
        Ok(Self { consumer: Arc::new(consumer), applier, metrics, config })
    }

    pub fn applier(&self) -> &BatchApplier {
        &self.applier
    }

    /// Consume until `shutdown` resolves. A batch in progress is finished
    /// (applied and committed) before returning, unless its sinks are down.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.spawn_lag_reporter();
        loop {
            let batch = tokio::select! {
                () = &mut shutdown => break,
                b = self.next_batch() => b,
            };
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            let mut attempt = 0u32;
            loop {
                match self.applier.apply(&batch).await {
                    Ok(()) => break,
                    Err(e) => {
                        attempt += 1;
                        let backoff = Duration::from_millis(100 * 2u64.pow(attempt.min(6))).min(Duration::from_secs(5));
                        tracing::warn!(error = %e, attempt, backoff_ms = backoff.as_millis() as u64, "sink failed; retrying the batch (no commit)");
                        tokio::select! {
                            () = &mut shutdown => { tracing::info!("shutdown while sinks are failing: batch left uncommitted"); return; }
                            () = tokio::time::sleep(backoff) => {}
                        }
                    }
                }
            }
            self.store_offsets(&batch);
            self.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %e, "final offset commit");
        }
        tracing::info!("consumer stopped");
    }

    /// Wait for one record, then take what arrives within `batch_wait`, up to `batch_max`.
    async fn next_batch(&self) -> Batch {
        let mut batch = Batch::default();
        let mut deadline = None;
        while batch.len() < self.config.batch_max {
            let msg = match deadline {
                None => self.consumer.recv().await,
                Some(d) => match tokio::time::timeout_at(d, self.consumer.recv()).await {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            match msg {
                Ok(m) => {
                    self.metrics.consumed.inc();
                    batch.push(m.partition(), m.offset(), m.key().unwrap_or_default(), m.payload().unwrap_or_default());
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.config.batch_wait());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive error");
                    if batch.is_empty() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    } else {
                        break;
                    }
                }
            }
        }
        batch
    }

    /// Mark the batch as done: its offsets are committed with the next auto-commit.
    /// A lost commit only means a harmless replay.
    fn store_offsets(&self, batch: &Batch) {
        for (p, pb) in &batch.partitions {
            // rd_kafka_offset_store commits offset + 1: the next record to read.
            if let Err(e) = self.consumer.store_offset(&self.config.topic, *p, pb.last_offset) {
                tracing::debug!(partition = p, error = %e, "offset not stored (partition revoked?); the batch will be replayed and skipped");
            }
        }
    }

    /// Every 5 s, set the lag gauge for each assigned partition.
    fn spawn_lag_reporter(&self) {
        let consumer = Arc::downgrade(&self.consumer);
        let lag = self.metrics.lag.clone();
        let topic = self.config.topic.clone();
        tokio::task::spawn_blocking(move || {
            while let Some(c) = consumer.upgrade() {
                if let Ok(assigned) = c.assignment() {
                    if let Ok(committed) = c.committed_offsets(assigned.clone(), Duration::from_secs(2)) {
                        for e in committed.elements_for_topic(&topic) {
                            if let Ok((_, high)) = c.fetch_watermarks(&topic, e.partition(), Duration::from_secs(2)) {
                                let pos = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
                                lag.with_label_values(&[&e.partition().to_string()]).set((high - pos).max(0));
                            }
                        }
                    }
                }
                drop(c);
                std::thread::sleep(Duration::from_secs(5));
            }
        });
    }
}
