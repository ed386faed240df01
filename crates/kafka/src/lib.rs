//! Kafka for bandvote.
//!
//! [`VotePublisher`] is the one way votes enter Kafka: an rdkafka idempotent
//! producer with `acks=all`, a bounded number of votes in flight (past it a
//! caller gets [`PublishError::Overloaded`] at once, never a queue), and a
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

use bandvote_store::{BandNames, Claim, ContestWatch, KeyClaims};
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

/// Why a vote was not acknowledged. None of these means "stored".
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Too many votes in flight: retry after the given delay (HTTP 503, gRPC RESOURCE_EXHAUSTED).
    #[error("overloaded: retry after {}ms", retry_after.as_millis())]
    Overloaded { retry_after: Duration },
    /// Kafka did not acknowledge in time or refused the record (HTTP 503, gRPC UNAVAILABLE).
    #[error("kafka unavailable: {0}")]
    Unavailable(String),
    /// The vote's id (the client's idempotency key) stands for a different
    /// vote within the claim window (HTTP 409, gRPC ALREADY_EXISTS). Final: a retry will not help.
    #[error("idempotency key {vote_id:?} was already used for a different vote")]
    Conflict { vote_id: String },
    /// The band is a new name and the deployment already counts its cap of
    /// distinct names (HTTP 422, gRPC INVALID_ARGUMENT). Final.
    #[error("band {band:?} is a new name and {cap} distinct bands are counted already (the cap): vote for one of them")]
    TooManyBands { band: String, cap: usize },
    /// A rule of the current contest refused the vote (HTTP 401/403/409/422
    /// by [`bandvote_contest::Refusal::http_status`]). Final.
    #[error("{0}")]
    Refused(bandvote_contest::Refusal),
    /// The publisher's configuration is wrong (fatal at start-up).
    #[error("kafka client configuration: {0}")]
    Config(String),
}

impl PublishError {
    /// Seconds a client should wait before retrying (`Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Self::Overloaded { retry_after } => retry_after.as_secs().max(1),
            _ => 1,
        }
    }
}

/// What an intake needs from a publisher: one small interface. `VotePublisher`
/// is the implementation; benchmarks use one that acknowledges at once to price
/// the sandbox alone.
pub trait Publish: Send + Sync + 'static {
    /// Publish one vote; `Ok` only once it is durable.
    fn publish<'a>(&'a self, vote: &'a Vote) -> futures::future::BoxFuture<'a, Result<Ack, PublishError>>;
    /// Publish a batch: an outer `Err` refuses all of it; otherwise one result per vote, in order.
    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>>;
}

impl Publish for VotePublisher {
    fn publish<'a>(&'a self, vote: &'a Vote) -> futures::future::BoxFuture<'a, Result<Ack, PublishError>> {
        Box::pin(VotePublisher::publish(self, vote))
    }

    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        Box::pin(VotePublisher::publish_batch(self, votes))
    }
}

/// The band-name cap and the names this process saw admitted.
#[derive(Clone)]
struct BandCap {
    names: BandNames,
    known: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Why a send failed, and whether the record may still be in Kafka.
enum SendError {
    /// Never handed to librdkafka: certainly not in Kafka.
    Unsent(PublishError),
    /// Handed over, then no acknowledgement: it may be in Kafka.
    MaybeSent(PublishError),
}
use SendError::{MaybeSent, Unsent};

impl SendError {
    fn into_publish_error(self) -> PublishError {
        match self {
            Unsent(e) | MaybeSent(e) => e,
        }
    }
}

/// Publishes votes to one topic; cheap to clone and share.
#[derive(Clone)]
pub struct VotePublisher {
    producer: FutureProducer,
    topic: Arc<str>,
    in_flight: Arc<Semaphore>,
    progress: Arc<Progress>,
    config: Arc<PublisherConfig>,
    claims: Option<KeyClaims>,
    band_names: Option<BandCap>,
    contest: Option<ContestRules>,
}

/// The current contest and the secret its voter tokens are signed with.
#[derive(Clone)]
struct ContestRules {
    watch: ContestWatch,
    token_secret: Option<Arc<[u8]>>,
}

impl VotePublisher {
    /// Create the producer. Does not contact the broker yet (see [`Self::ready`]).
    pub fn new(config: PublisherConfig) -> Result<Self, PublishError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
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
            .map_err(|e| PublishError::Config(e.to_string()))?;
        Ok(Self {
            producer,
            topic: config.topic.as_str().into(),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            progress: Arc::new(Progress::new()),
            config: Arc::new(config),
            claims: None,
            band_names: None,
            contest: None,
        })
    }

    /// Before publishing, claim each vote's id for it ([`KeyClaims`]): a key
    /// reused for a different vote within the window is refused with
    /// [`PublishError::Conflict`]; a retry of the same vote goes through. If
    /// Redis cannot be reached the vote is published unchecked (the consumer
    /// still counts an id once) and `claims_unchecked` is counted.
    pub fn with_key_claims(mut self, claims: KeyClaims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// Bound the distinct band names ([`BandNames`]): a vote for a new name past
    /// the cap is refused with [`PublishError::TooManyBands`]. Names admitted
    /// once are remembered here, so known bands cost no Redis round trip; if
    /// Redis cannot be reached the vote is published unchecked.
    pub fn with_band_cap(mut self, names: BandNames) -> Self {
        self.band_names = Some(BandCap { names, known: Arc::new(std::sync::Mutex::new(std::collections::HashSet::new())) });
        self
    }

    /// Apply the current contest's rules ([`bandvote_contest::Contest::admit`])
    /// to every vote: a refused vote gets [`PublishError::Refused`]; an
    /// admitted one is stamped with the contest's id (and, in a contest of
    /// voter tokens, the token's voter id replaces the token). Tokens are
    /// verified here, natively, with `token_secret`: the wasm guest never
    /// holds a secret. Without a current contest votes go through unchanged.
    pub fn with_contest(mut self, watch: ContestWatch, token_secret: Option<Vec<u8>>) -> Self {
        self.contest = Some(ContestRules { watch, token_secret: token_secret.map(Into::into) });
        self
    }

    /// The current contest, if any (read once per publish: a batch is
    /// admitted, and its band names bounded, under one contest).
    fn current_contest(&self) -> Option<Arc<bandvote_contest::Contest>> {
        self.contest.as_ref().and_then(|r| r.watch.current())
    }

    /// The vote as `contest` admits it (stamped with its id).
    fn admit(&self, contest: &bandvote_contest::Contest, vote: &Vote) -> Result<Vote, PublishError> {
        let now_ms = vote.received_at_ms;
        let mut admitted = vote.clone();
        if contest.voters == bandvote_contest::Voters::Token
            && let Some(token) = &vote.voter
        {
            let secret = self.contest.as_ref().and_then(|r| r.token_secret.as_deref()).unwrap_or_default();
            let voter = bandvote_contest::token::verify(secret, &contest.id, token, now_ms / 1000)
                .map_err(|e| PublishError::Refused(bandvote_contest::Refusal::InvalidToken(e.to_string())))?;
            admitted.voter = Some(voter.to_owned());
        }
        contest.admit(&admitted, now_ms).map_err(PublishError::Refused)?;
        admitted.contest = Some(contest.id.clone());
        Ok(admitted)
    }

    /// For each vote: `Err(TooManyBands)` when its band is new past the cap.
    /// Under a contest with a roster, the roster bounds the names instead
    /// (and admitted votes are on it).
    async fn check_bands(&self, votes: &[Vote], contest: Option<&bandvote_contest::Contest>) -> Vec<Result<(), PublishError>> {
        let Some(cap) = &self.band_names else { return votes.iter().map(|_| Ok(())).collect() };
        if contest.is_some_and(|c| !c.roster.is_empty()) {
            return votes.iter().map(|_| Ok(())).collect();
        }
        let unknown: Vec<&str> = {
            let known = cap.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut unknown: Vec<&str> = votes.iter().map(|v| v.band.as_str()).filter(|b| !known.contains(*b)).collect();
            unknown.sort_unstable();
            unknown.dedup();
            unknown
        };
        let mut refused = std::collections::HashSet::new();
        if !unknown.is_empty() {
            match cap.names.admit(&unknown).await {
                Ok(admitted) => {
                    let mut known = cap.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (name, ok) in unknown.iter().zip(admitted) {
                        if ok {
                            known.insert((*name).to_owned());
                        } else {
                            refused.insert(*name);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "band names not checked: redis unavailable"),
            }
        }
        votes
            .iter()
            .map(|v| {
                if refused.contains(v.band.as_str()) {
                    self.progress.bands_refused(1);
                    Err(PublishError::TooManyBands { band: v.band.clone(), cap: cap.names.cap() })
                } else {
                    Ok(())
                }
            })
            .collect()
    }

    /// For each vote: may it be published (`Ok(true)` when this call took its
    /// key, `Ok(false)` for a retry, unchecked, or an id the intake generated),
    /// or is its key taken (`Err(Conflict)`)? Only ids that can collide are
    /// claimed: a generated id ([`bandvote_vote::is_generated_id`]) belongs to
    /// no other vote, so keyless traffic makes no Redis round trip.
    async fn check_claims(&self, votes: &[Vote]) -> Vec<Result<bool, PublishError>> {
        let Some(claims) = &self.claims else { return votes.iter().map(|_| Ok(false)).collect() };
        let collidable: Vec<bool> = votes.iter().map(|v| !bandvote_vote::is_generated_id(&v.vote_id)).collect();
        let n = collidable.iter().filter(|c| **c).count();
        if n == 0 {
            return votes.iter().map(|_| Ok(false)).collect();
        }
        let mut verdicts = match claims.claim(votes.iter().zip(&collidable).filter(|(_, c)| **c).map(|(v, _)| v)).await {
            Ok(verdicts) => verdicts.into_iter(),
            Err(e) => {
                tracing::warn!(error = %e, "idempotency keys not checked: redis unavailable");
                self.progress.claims_unchecked(n);
                return votes.iter().map(|_| Ok(false)).collect();
            }
        };
        votes
            .iter()
            .zip(collidable)
            .map(|(v, collidable)| {
                if !collidable {
                    return Ok(false);
                }
                match verdicts.next().unwrap_or(Claim::Retry) {
                    Claim::Conflict => {
                        self.progress.claim_conflicts(1);
                        Err(PublishError::Conflict { vote_id: v.vote_id.clone() })
                    }
                    Claim::First => Ok(true),
                    Claim::Retry => Ok(false),
                }
            })
            .collect()
    }

    /// Send `vote`; if this call took its key and the record never reached
    /// librdkafka's queue (so it cannot be in Kafka), give the key back.
    async fn send_claimed(&self, vote: &Vote, took_key: bool) -> Result<Ack, PublishError> {
        let r = self.send(vote).await;
        if let (Err(Unsent(_)), true, Some(claims)) = (&r, took_key, &self.claims)
            && let Err(e) = claims.release(vote).await
        {
            tracing::debug!(error = %e, vote_id = %vote.vote_id, "claim not released (it expires with the window)");
        }
        r.map_err(SendError::into_publish_error)
    }

    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    /// Votes sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.config.max_in_flight.max(1) - self.in_flight.available_permits()
    }

    /// Publish one vote; returns once Kafka acknowledged it with acks=all.
    pub async fn publish(&self, vote: &Vote) -> Result<Ack, PublishError> {
        let _permit = self.in_flight.clone().try_acquire_owned().map_err(|_| overloaded())?;
        let contest = self.current_contest();
        let admitted = contest.as_deref().map(|c| self.admit(c, vote)).transpose()?;
        let vote = admitted.as_ref().unwrap_or(vote);
        // Without key claims nothing to check (and no allocation per vote).
        if self.band_names.is_some()
            && let Some(Err(refused)) = self.check_bands(std::slice::from_ref(vote), contest.as_deref()).await.pop()
        {
            return Err(refused);
        }
        let mut took_key = false;
        if self.claims.is_some() {
            match self.check_claims(std::slice::from_ref(vote)).await.pop() {
                Some(Err(conflict)) => return Err(conflict),
                Some(Ok(took)) => took_key = took,
                None => {}
            }
        }
        self.progress.started(self.in_flight() <= 1);
        self.send_claimed(vote, took_key).await
    }

    /// Publish a batch: all or nothing for admission (the batch takes
    /// `votes.len()` in-flight slots at once), one result per vote, in order.
    pub async fn publish_batch(&self, votes: &[Vote]) -> Result<Vec<Result<Ack, PublishError>>, PublishError> {
        let n = u32::try_from(votes.len()).map_err(|_| overloaded())?;
        let _permits = self.in_flight.clone().try_acquire_many_owned(n).map_err(|_| overloaded())?;
        // A contest's rules refuse the whole batch at the first vote they refuse (all or nothing).
        let contest = self.current_contest();
        let admitted: Option<Vec<Vote>> = contest.as_deref().map(|c| votes.iter().map(|v| self.admit(c, v)).collect()).transpose()?;
        let votes = admitted.as_deref().unwrap_or(votes);
        let bands = self.check_bands(votes, contest.as_deref()).await;
        let claimed = self.check_claims(votes).await;
        self.progress.started(self.in_flight() <= votes.len());
        Ok(futures::future::join_all(votes.iter().zip(bands).zip(claimed).map(|((v, band), claim)| async move {
            band?;
            let took_key = claim?;
            self.send_claimed(v, took_key).await
        }))
        .await)
    }

    async fn send(&self, vote: &Vote) -> Result<Ack, SendError> {
        let rec = record::encode(vote);
        let mut headers = OwnedHeaders::new_with_capacity(rec.headers.len());
        for (key, value) in &rec.headers {
            headers = headers.insert(Header { key, value: Some(value) });
        }
        let fr = FutureRecord::to(&self.topic).key(&rec.key).payload(&rec.value).headers(headers);
        let delivery = match self.producer.send_result(fr) {
            Ok(d) => d,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => return Err(Unsent(overloaded())),
            Err((e, _)) => return Err(Unsent(PublishError::Unavailable(e.to_string()))),
        };
        // librdkafka fails the message after message.timeout.ms; the extra
        // second only guards against a lost report.
        let bound = self.config.delivery_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, delivery).await {
            Ok(Ok(Ok(d))) => {
                self.progress.acked();
                Ok(Ack { partition: d.partition, offset: d.offset })
            }
            Ok(Ok(Err((e, _)))) => Err(MaybeSent(PublishError::Unavailable(e.to_string()))),
            Ok(Err(_canceled)) => Err(MaybeSent(PublishError::Unavailable("producer shut down".into()))),
            Err(_) => Err(MaybeSent(PublishError::Unavailable("no delivery report in time".into()))),
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
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer.flush(timeout).map_err(|e| PublishError::Unavailable(e.to_string()))
    }
}

fn overloaded() -> PublishError {
    PublishError::Overloaded { retry_after: Duration::from_secs(1) }
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
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
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
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
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
        assert!(matches!(p.publish(&vote()).await, Err(PublishError::Unavailable(_))));
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
        assert!(matches!(c.1, Err(PublishError::Overloaded { .. })));
        assert!(matches!(p.publish_batch(&[v.clone(), v.clone(), v]).await, Err(PublishError::Overloaded { .. })));
    }
}
