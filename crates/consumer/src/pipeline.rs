//! The consume → apply → commit loop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::Offset;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::batch::Batch;
use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetters;
use crate::health::KafkaHealth;
use crate::metrics::ConsumerMetrics;
use bandvote_store::VoteLog;
use bandvote_store::counters::Refusal;
use bandvote_store::{ContestStore, Counters, Replaces, StoredVote, Tally};
use crate::judge::{self, ContestBook, Decided, Verdict};
use bandvote_contest::VoteStatus;
use crate::{recount, SinkError};

/// Hears librdkafka's events: logs rebalances (and drops the lag gauges of
/// revoked partitions), reports commit and client errors to [`KafkaHealth`].
/// Offsets are *stored* only after a batch is applied to both sinks;
/// librdkafka commits stored offsets every second and on revoke/close, and a
/// batch the new owner replays is skipped by the Redis offset guard and
/// MongoDB's `_id`.
pub struct ConsumerEvents {
    health: Arc<KafkaHealth>,
    metrics: ConsumerMetrics,
    resume: ResumeFromSinks,
}

/// Where to start each newly assigned partition: the sinks, not only Kafka's
/// committed offset, decide. Redis holds the last offset applied to both sinks
/// (MongoDB is written first); if Redis came back older than the commit
/// (restore, failover, truncated AOF), the records in between are read again.
pub struct ResumeFromSinks {
    redis: ::redis::Client,
    offsets_key: String,
    topic: String,
}

impl ResumeFromSinks {
    /// `min(applied + 1, committed)` per partition, where both are known.
    pub fn start_offset(applied: Option<i64>, committed: Option<i64>) -> Option<i64> {
        match (applied.map(|a| a + 1), committed) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    fn seek(&self, consumer: &BaseConsumer<ConsumerEvents>, tpl: &mut TopicPartitionList) {
        let applied = match redis_applied(&self.redis, &self.offsets_key) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable at assignment: starting from the committed offsets");
                return;
            }
        };
        let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)).ok();
        for e in tpl.clone().elements_for_topic(&self.topic) {
            let p = e.partition();
            let c = committed
                .as_ref()
                .and_then(|c| c.find_partition(&self.topic, p))
                .and_then(|c| c.offset().to_raw())
                .filter(|o| *o >= 0);
            if let Some(start) = Self::start_offset(applied.get(&p).copied(), c) {
                if Some(start) != c {
                    tracing::warn!(partition = p, start, committed = ?c, applied = ?applied.get(&p), "resuming from the sinks, not the commit");
                }
                let _ = tpl.set_partition_offset(&self.topic, p, Offset::Offset(start));
            }
        }
    }
}

fn redis_applied(client: &::redis::Client, key: &str) -> Result<std::collections::HashMap<i32, i64>, ::redis::RedisError> {
    bandvote_store::counters::applied_offsets_blocking(client, key, Duration::from_secs(5))
}

impl ClientContext for ConsumerEvents {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error");
        self.health.fetch_failed(reason);
    }
}

impl ConsumerContext for ConsumerEvents {
    /// As rdkafka's default (eager protocol), but assigned partitions start
    /// where [`ResumeFromSinks`] says.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.resume.seek(consumer, tpl);
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assign");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign");
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                tracing::warn!(error = %code, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }

    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = ?partitions(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
                for p in partitions(tpl) {
                    let _ = self.metrics.lag.remove_label_values(&[&p.to_string()]);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => self.health.commit_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed (the batch will be replayed and skipped if we crash)");
                self.health.commit_failed(&e.to_string());
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Applies decoded batches to the dead-letter topic, MongoDB and Redis.
/// Idempotent: applying a batch again changes nothing.
pub struct BatchApplier {
    /// This applier's name in the rebuild fence (`applying:<id>`).
    id: String,
    dead_letters: DeadLetters,
    counters: Counters,
    log: VoteLog,
    contests: ContestBook,
    metrics: ConsumerMetrics,
    topic: String,
    /// The vote log held votes before the batch being applied (known once,
    /// true for good: the log never shrinks); the apply script then refuses
    /// to count from an empty Redis.
    log_nonempty: std::sync::atomic::AtomicBool,
}

/// A partition whose batch the apply script refused because it starts past
/// Redis's applied offset + 1 (Redis went back in time): it is read again
/// from `from`, and its part of the batch is not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAgain {
    pub partition: i32,
    pub from: i64,
}

/// The running consumer: Kafka in, both sinks out.
pub struct Pipeline {
    consumer: Arc<StreamConsumer<ConsumerEvents>>,
    applier: BatchApplier,
    metrics: ConsumerMetrics,
    health: Arc<KafkaHealth>,
    config: ConsumerConfig,
    /// librdkafka reported a fatal error: this client can never consume
    /// again (e.g. its static member was fenced after a broker restart).
    fatal: std::sync::atomic::AtomicBool,
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
        let dlq_brokers = if config.dlq_brokers.is_empty() { &config.kafka_brokers } else { &config.dlq_brokers };
        let dlq: FutureProducer = bandvote_kafka::client_config(dlq_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Bounded: librdkafka's default (300 s) per record stalled the consumer.
            .set("message.timeout.ms", config.dlq_timeout_ms.max(1).to_string())
            .create()?;
        let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.map_err(SinkError::from)?;
        let log = VoteLog::connect(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.map_err(SinkError::from)?;
        let dead_letters = DeadLetters::new(dlq, &config.dlq_topic, &config.topic, log.clone(), metrics.clone());
        let id = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7().simple());
        let contests = ContestBook::new(ContestStore::new(&config.redis_url, &config.redis_prefix).map_err(SinkError::from)?, log.clone());
        Ok(Self {
            id,
            dead_letters,
            counters,
            log,
            contests,
            metrics,
            topic: config.topic.clone(),
            log_nonempty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn log(&self) -> &VoteLog {
        &self.log
    }

    /// Whether the vote log holds votes (asked until it does, then remembered).
    async fn log_nonempty(&self) -> Result<bool, SinkError> {
        use std::sync::atomic::Ordering;
        if self.log_nonempty.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let nonempty = self.log.collection().estimated_document_count().await? > 0;
        if nonempty {
            self.log_nonempty.store(true, Ordering::Relaxed);
        }
        Ok(nonempty)
    }

    /// Apply a batch to both sinks. Idempotent: safe to call again after any
    /// failure. Returns the partitions to read again (a gap: Redis went back
    /// in time); their part of the batch is in MongoDB but not counted, and
    /// must not be committed.
    pub async fn apply(&self, batch: &Batch) -> Result<Vec<ReadAgain>, SinkError> {
        let topic = &self.topic;
        if let Some(u) = batch.unknown_schema.first() {
            // A newer producer's schema: stop here (no dead letter, no commit) until upgraded.
            self.metrics.sink_errors.with_label_values(&["unknown_schema"]).inc();
            return Err(SinkError::UnknownSchema { schema: u.schema.clone(), partition: u.partition, offset: u.offset });
        }
        self.dead_letters.send(&batch.poison).await?;
        // Redis lost its data (restart without AOF, flush): rebuild it from the log first.
        // Should it happen after this check, the apply script refuses (CountersLost) and the retry rebuilds.
        let log_nonempty = self.log_nonempty().await?;
        let empty = self.counters.is_empty(topic).await.inspect_err(|_| self.metrics.sink_errors.with_label_values(&["redis"]).inc())?;
        if empty && log_nonempty {
            tracing::warn!("redis has no counters but the vote log is not empty: rebuilding from MongoDB");
            if recount::rebuild(&self.log, &self.counters, topic).await?.is_none() {
                return Err(SinkError::Rebuilding);
            }
        }
        // The rebuild fence: no MongoDB write while a rebuild reads the log.
        if !self.counters.begin_apply(&self.id, recount::APPLY_TTL).await? {
            return Err(SinkError::Rebuilding);
        }
        let written = self.write(batch, log_nonempty).await;
        let ended = self.counters.end_apply(&self.id).await;
        let read_again = written?;
        ended?;
        self.metrics.poison.inc_by(batch.poison.len() as u64);
        self.dead_letters.done(&batch.poison);
        Ok(read_again)
    }

    /// MongoDB first, then the counters: the part of a batch inside the rebuild fence.
    ///
    /// A contest's per-voter caps are judged *before* the insert (against
    /// Redis as of each partition's applied offset), so the documents are
    /// stored with their final status in the same insert. Only when the
    /// insert finds repeats (a retry that reached Kafka twice) or documents
    /// already stored (a replay), or the apply script says the partition
    /// moved (`STALE`), is the partition judged again and its statuses
    /// rewritten before the counters move.
    async fn write(&self, batch: &Batch, log_nonempty: bool) -> Result<Vec<ReadAgain>, SinkError> {
        let topic = &self.topic;
        let contests = self.contests.load(batch.votes()).await.map_err(|e| SinkError::Contest(e.to_string()))?;
        let mut judged: std::collections::BTreeMap<i32, Judged> = std::collections::BTreeMap::new();
        // A vote id twice in one batch: the later record is a repeat (a client
        // retry that reached Kafka twice; the insert keeps the first, in this
        // order). Judged so before the insert, so the statuses stored are
        // final even if the consumer dies before it could rewrite them (a
        // rebuild would take them as truth).
        let mut seen = std::collections::HashSet::new();
        let in_batch_repeats: std::collections::HashSet<(i32, i64)> = batch
            .partitions
            .values()
            .flat_map(|pb| pb.votes.iter())
            .filter(|v| !seen.insert(v.vote.vote_id.as_str()))
            .map(|v| (v.partition, v.offset))
            .collect();
        let in_batch_repeat = |v: &bandvote_store::Located| in_batch_repeats.contains(&(v.partition, v.offset));
        for (p, pb) in &batch.partitions {
            let mut verdicts: Vec<Verdict> = pb.votes.iter().map(|v| judge::by_rules(&v.vote, &contests)).collect();
            let decided = self.judge_caps(*p, pb, &mut verdicts, &contests, &in_batch_repeat, log_nonempty).await?;
            judged.insert(*p, Judged { verdicts, decided });
        }
        let docs: Vec<StoredVote<'_>> = batch
            .partitions
            .iter()
            .flat_map(|(p, pb)| {
                let j = &judged[p];
                pb.votes.iter().zip(&j.verdicts).map(move |(v, verdict)| StoredVote { located: v, band: &verdict.band, status: j.stored_status(v, verdict) })
            })
            .collect();
        let stored = self.log.store_judged(topic, &docs).await.inspect_err(|_| self.metrics.sink_errors.with_label_values(&["mongo"]).inc())?;
        drop(docs);
        self.metrics.duplicates.with_label_values(&["stored"]).inc_by(stored.already_stored);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut read_again = Vec::new();
        for (partition, pb) in &batch.partitions {
            let is_repeat = |v: &bandvote_store::Located| stored.repeats.contains(&(v.partition, v.offset));
            let duplicates = pb.votes.iter().filter(|v| is_repeat(v)).count() as u64;
            let mut j = judged.remove(partition).unwrap_or_default();
            // The insert wrote what was judged, unless a repeat or a replay is among them.
            let mut again = j.decided.is_some() && (duplicates > 0 || stored.already_stored > 0);
            if let Some(d) = j.decided.as_ref().filter(|_| !again) {
                // Votes of earlier batches this one replaced.
                let mine: std::collections::HashSet<&str> = pb.votes.iter().map(|v| v.vote.vote_id.as_str()).collect();
                let earlier: Vec<&str> = d.replaced.iter().map(String::as_str).filter(|id| !mine.contains(id)).collect();
                self.log.set_status(&earlier, VoteStatus::Replaced).await?;
            }
            let mut attempt = 0;
            let applied = loop {
                attempt += 1;
                if again {
                    let mut verdicts: Vec<Verdict> = pb.votes.iter().map(|v| judge::by_rules(&v.vote, &contests)).collect();
                    let decided = self.judge_caps(*partition, pb, &mut verdicts, &contests, &is_repeat, log_nonempty).await?;
                    if let Some(d) = &decided {
                        self.store_statuses(pb, &verdicts, d).await?;
                    }
                    j = Judged { verdicts, decided };
                }
                let tallies: Vec<Tally<'_>> = pb
                    .votes
                    .iter()
                    .zip(&j.verdicts)
                    .filter(|(v, _)| !is_repeat(v))
                    .map(|(v, verdict)| Tally {
                        offset: v.offset,
                        band: &verdict.band,
                        album: &v.vote.album,
                        contest: v.vote.contest.as_deref(),
                        voter: v.vote.voter.as_deref(),
                        status: verdict.status,
                        vote_id: &v.vote.vote_id,
                        replaces: match &verdict.replaces {
                            None => Replaces::No,
                            Some(None) => Replaces::First,
                            Some(Some(c)) => Replaces::Previous(c),
                        },
                    })
                    .collect();
                let judged_at = j.decided.as_ref().map(|d| d.applied);
                match self.counters.apply_judged(topic, *partition, pb, &tallies, duplicates, now, log_nonempty, judged_at).await {
                    Ok(a) => break Some(a),
                    Err(e) => {
                        self.metrics.sink_errors.with_label_values(&["redis"]).inc();
                        match Refusal::of(&e) {
                            Some(Refusal::Stale) if attempt < 10 => {
                                tracing::info!(partition, "the partition moved while its caps were judged: judging again");
                                again = true;
                                continue;
                            }
                            Some(Refusal::Gap { applied }) => {
                                tracing::warn!(partition, applied, first = pb.first_offset, "redis is behind this batch (restored older?): reading the partition again from its applied offset");
                                read_again.push(ReadAgain { partition: *partition, from: applied + 1 });
                                break None;
                            }
                            Some(Refusal::CountersLost) => {
                                tracing::warn!("redis lost its counters during the batch: rebuilding before the retry");
                                return Err(SinkError::CountersLost);
                            }
                            _ => return Err(e.into()),
                        }
                    }
                }
            };
            let Some(applied) = applied else { continue };
            self.metrics.applied.inc_by(applied.counted);
            self.metrics.duplicates.with_label_values(&["vote_id"]).inc_by(applied.duplicates);
            self.metrics.duplicates.with_label_values(&["replay"]).inc_by(applied.replayed);
        }
        Ok(read_again)
    }

    /// Decide the per-voter caps of one partition's votes (if any vote is
    /// capped) against Redis (`None`: none is).
    async fn judge_caps(
        &self,
        partition: i32,
        pb: &bandvote_store::PartitionBatch,
        verdicts: &mut [Verdict],
        contests: &judge::Contests,
        is_repeat: &(dyn Fn(&bandvote_store::Located) -> bool + Sync),
        log_nonempty: bool,
    ) -> Result<Option<Decided>, SinkError> {
        let mut voters: Vec<(&str, &str)> = pb
            .votes
            .iter()
            .zip(verdicts.iter())
            .filter(|(v, _)| !is_repeat(v))
            .filter_map(|(v, j)| judge::cap_of(&v.vote, j, contests).map(|(c, voter, _)| (c, voter)))
            .collect();
        if voters.is_empty() {
            return Ok(None);
        }
        voters.sort_unstable();
        voters.dedup();
        // A voter read as absent from a Redis that holds no state at all (just
        // flushed) would count every voter from 0: never judged so, when the
        // log has votes (the rebuild restores the voters first).
        let Some((applied, state)) = self.counters.voter_state(&self.topic, partition, &voters).await? else {
            if log_nonempty {
                tracing::warn!(partition, "redis holds no counters while the vote log has votes: not judging caps against it (rebuilding first)");
                return Err(SinkError::CountersLost);
            }
            let fresh = voters.iter().map(|(c, v)| (((*c).to_owned(), (*v).to_owned()), bandvote_store::VoterState::default())).collect();
            return Ok(Some(judge::apply_caps(&pb.votes, verdicts, contests, -1, fresh, is_repeat)));
        };
        let state = voters.iter().zip(state).map(|((c, v), s)| (((*c).to_owned(), (*v).to_owned()), s)).collect();
        Ok(Some(judge::apply_caps(&pb.votes, verdicts, contests, applied, state, is_repeat)))
    }

    /// Rewrite the statuses a judgement decided (the slow path: repeats,
    /// replays, a partition that moved), before the counters move.
    async fn store_statuses(&self, pb: &bandvote_store::PartitionBatch, verdicts: &[Verdict], d: &Decided) -> Result<(), SinkError> {
        for status in [VoteStatus::Counted, VoteStatus::OverLimit] {
            let ids: Vec<&str> = d.indices.iter().filter(|i| verdicts[**i].status == Some(status)).map(|i| pb.votes[*i].vote.vote_id.as_str()).collect();
            self.log.set_status(&ids, status).await?;
        }
        // Last: a vote of this batch replaced later in it was set `counted` just above.
        let replaced: Vec<&str> = d.replaced.iter().map(String::as_str).collect();
        self.log.set_status(&replaced, VoteStatus::Replaced).await?;
        Ok(())
    }
}

/// One partition's verdicts, and what its caps decided (if any vote was capped).
#[derive(Default)]
struct Judged {
    verdicts: Vec<Verdict>,
    decided: Option<Decided>,
}

impl Judged {
    /// The status a vote's document is stored with: its verdict, except a
    /// counted vote a later vote of this batch replaced.
    fn stored_status(&self, v: &bandvote_store::Located, verdict: &Verdict) -> Option<VoteStatus> {
        match &self.decided {
            Some(d) if d.replaced.contains(&v.vote.vote_id) => Some(VoteStatus::Replaced),
            _ => verdict.status,
        }
    }
}

impl Pipeline {
    pub async fn connect(config: ConsumerConfig, metrics: ConsumerMetrics) -> Result<Self, StartError> {
        let health = Arc::new(KafkaHealth::new(metrics.clone()));
        let applier = BatchApplier::connect(&config, metrics.clone()).await?;
        let consumer = Self::new_consumer(&config, &applier, &health, &metrics)?;
        Ok(Self { consumer: Arc::new(consumer), applier, metrics, health, config, fatal: Default::default() })
    }

    /// A consumer client of the group, subscribed to the topic.
    fn new_consumer(config: &ConsumerConfig, applier: &BatchApplier, health: &Arc<KafkaHealth>, metrics: &ConsumerMetrics) -> Result<StreamConsumer<ConsumerEvents>, StartError> {
        let mut client = bandvote_kafka::client_config(&config.kafka_brokers);
        if !config.instance_id.is_empty() {
            client.set("group.instance.id", &config.instance_id);
        }
        if !config.kafka_debug.is_empty() {
            client.set("debug", &config.kafka_debug);
        }
        client
            .set("group.id", &config.group)
            // Only offsets we store (after both sinks succeeded) are committed:
            // every second, and on revoke and close. Fewer commits keep the
            // group coordinator responsive (the broker serialises group requests).
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // A killed member is noticed within 15 s. Shorter sessions fail
            // under load: the broker answers heartbeats behind produce requests.
            .set("session.timeout.ms", "15000")
            .set("heartbeat.interval.ms", "3000")
            .set("max.poll.interval.ms", "60000")
            .set("max.partition.fetch.bytes", config.fetch_partition_bytes.to_string());
        let resume = ResumeFromSinks {
            redis: ::redis::Client::open(config.redis_url.as_str()).map_err(SinkError::from)?,
            offsets_key: applier.counters().offsets_key(&config.topic),
            topic: config.topic.clone(),
        };
        let consumer: StreamConsumer<ConsumerEvents> = client
            .create_with_context(ConsumerEvents { health: health.clone(), metrics: metrics.clone(), resume })?;
        consumer.subscribe(&[&config.topic])?;
        Ok(consumer)
    }

    /// Replace a client librdkafka declared dead (fatal error) with a new
    /// one, which rejoins the group (with a static id it takes the old
    /// member's place). Nothing is lost: offsets are only stored after both
    /// sinks, and the new client resumes from the sinks.
    fn replace_dead_client(&mut self) {
        match Self::new_consumer(&self.config, &self.applier, &self.health, &self.metrics) {
            Ok(c) => {
                tracing::warn!("kafka client had a fatal error: replaced by a new one (rejoining the group)");
                self.consumer = Arc::new(c);
                self.spawn_lag_reporter();
            }
            Err(e) => tracing::error!(error = %e, "kafka client had a fatal error and a new one could not be made (retrying)"),
        }
    }

    pub fn applier(&self) -> &BatchApplier {
        &self.applier
    }

    /// Whether the consumer can fetch from and commit to Kafka (for `/readyz`).
    pub fn health(&self) -> Arc<KafkaHealth> {
        self.health.clone()
    }

    /// Consume until `shutdown` resolves. A batch in progress is finished
    /// (applied and committed) before returning, unless its sinks are down.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        self.spawn_lag_reporter();
        loop {
            let batch = tokio::select! {
                () = &mut shutdown => break,
                b = self.next_batch() => b,
            };
            if self.fatal.swap(false, std::sync::atomic::Ordering::Relaxed) {
                // The batch's records are read again by the new client (nothing was stored for them).
                self.replace_dead_client();
                continue;
            }
            if batch.is_empty() {
                continue;
            }
            let started = Instant::now();
            let mut attempt = 0u32;
            let read_again = loop {
                match self.applier.apply(&batch).await {
                    Ok(read_again) => break read_again,
                    Err(e) => {
                        attempt += 1;
                        // At most 1 s: a store back after a cut is used within a second.
                        let backoff = Duration::from_millis(100 * 2u64.pow(attempt.min(6))).min(Duration::from_secs(1));
                        tracing::warn!(error = %e, attempt, backoff_ms = backoff.as_millis() as u64, "sink failed; retrying the batch (no commit)");
                        tokio::select! {
                            () = &mut shutdown => { tracing::info!("shutdown while sinks are failing: batch left uncommitted"); return; }
                            () = tokio::time::sleep(backoff) => {}
                        }
                    }
                }
            };
            self.store_offsets(&batch, &read_again);
            for r in &read_again {
                self.read_again(*r).await;
            }
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
                    self.health.fetch_ok();
                    self.metrics.consumed.inc();
                    let schema = m.headers().and_then(|h| h.iter().find(|h| h.key == "schema").and_then(|h| h.value));
                    batch.push_record(m.partition(), m.offset(), m.key().unwrap_or_default(), m.payload().unwrap_or_default(), schema);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.config.batch_wait());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive error");
                    self.health.fetch_failed(&e.to_string());
                    if matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_)) {
                        self.fatal.store(true, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    if batch.is_empty() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    } else {
                        break;
                    }
                }
            }
        }
        if batch.refetched > 0 {
            tracing::info!(refetched = batch.refetched, "records fetched again after a seek back were dropped from the batch (held once)");
        }
        batch
    }

    /// Read a partition again from `from` (Redis is behind the batch). If
    /// Kafka no longer has those records (retention), they can never be
    /// counted here: say so loudly and let the counters go on after them.
    async fn read_again(&self, r: ReadAgain) {
        let (consumer, topic) = (self.consumer.clone(), self.config.topic.clone());
        let low = tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, r.partition, Duration::from_secs(5)).map(|(low, _)| low)).await;
        let mut from = r.from;
        if let Ok(Ok(low)) = low
            && low > r.from
        {
            tracing::error!(partition = r.partition, from = r.from, log_start = low, "records the counters never saw are gone from Kafka (retention): they cannot be counted; run `recount --rebuild` to count what MongoDB has");
            if let Err(e) = self.applier.counters().skip_lost(&self.config.topic, r.partition, low - 1).await {
                tracing::warn!(error = %e, "could not move the counters past the lost records; will retry on the next batch");
            }
            from = low;
        }
        if let Err(e) = self.consumer.seek(&self.config.topic, r.partition, Offset::Offset(from), Duration::from_secs(5)) {
            tracing::warn!(partition = r.partition, from, error = %e, "seek back failed; the next batch of this partition is refused again (a gap) and the seek retried");
        }
    }

    /// Mark the batch as done: its offsets are committed with the next auto-commit.
    /// A lost commit only means a harmless replay. Partitions to be read again are not marked.
    fn store_offsets(&self, batch: &Batch, read_again: &[ReadAgain]) {
        for (p, pb) in batch.partitions.iter().filter(|(p, _)| !read_again.iter().any(|r| r.partition == **p)) {
            // rd_kafka_offset_store commits offset + 1: the next record to read.
            if let Err(e) = self.consumer.store_offset(&self.config.topic, *p, pb.last_offset) {
                tracing::debug!(partition = p, error = %e, "offset not stored (partition revoked?); the batch will be replayed and skipped");
            }
        }
    }

    /// Every 5 s, set the lag gauge for each assigned partition. The broker
    /// round trips double as the health probe of an idle consumer.
    fn spawn_lag_reporter(&self) {
        let consumer = Arc::downgrade(&self.consumer);
        let lag = self.metrics.lag.clone();
        let health = self.health.clone();
        let topic = self.config.topic.clone();
        tokio::task::spawn_blocking(move || {
            while let Some(c) = consumer.upgrade() {
                match report_lag(&c, &topic, &lag) {
                    Ok(()) => health.fetch_ok(),
                    Err(e) => health.fetch_failed(&e.to_string()),
                }
                drop(c);
                std::thread::sleep(Duration::from_secs(5));
            }
        });
    }
}

fn report_lag<C: ConsumerContext>(c: &StreamConsumer<C>, topic: &str, lag: &prometheus::IntGaugeVec) -> KafkaResult<()> {
    let assigned = c.assignment()?;
    if assigned.count() == 0 {
        // Nothing assigned: still check that the broker answers.
        c.fetch_metadata(Some(topic), Duration::from_secs(2))?;
        return Ok(());
    }
    let committed = c.committed_offsets(assigned, Duration::from_secs(2))?;
    for e in committed.elements_for_topic(topic) {
        let (_, high) = c.fetch_watermarks(topic, e.partition(), Duration::from_secs(2))?;
        let pos = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(0);
        lag.with_label_values(&[&e.partition().to_string()]).set((high - pos).max(0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ResumeFromSinks;

    #[test]
    fn resume_from_the_older_of_sinks_and_commit() {
        // Redis restored older than the commit: re-read the gap.
        assert_eq!(ResumeFromSinks::start_offset(Some(9), Some(20)), Some(10));
        // Commit lost (older than Redis): start at the commit; the offset guard skips the replay.
        assert_eq!(ResumeFromSinks::start_offset(Some(30), Some(20)), Some(20));
        assert_eq!(ResumeFromSinks::start_offset(Some(4), None), Some(5));
        assert_eq!(ResumeFromSinks::start_offset(None, Some(7)), Some(7));
        assert_eq!(ResumeFromSinks::start_offset(None, None), None);
    }
}
