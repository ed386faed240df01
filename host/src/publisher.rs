//! The `bandvote:publisher` import, implemented natively over a [`Publish`]
//! (in production `bandvote-admission` in front of the rdkafka `VotePublisher`).

use std::sync::Arc;
use std::time::Instant;

use bandvote_admission::{Publish, PublishError};
use bandvote_intake_core::{reply_published, Ack, PublishFailure, Published, Refusal, Reply};
use bandvote_vote::{Source, Submission, Vote};

use crate::metrics::HostMetrics;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "intake-imports",
    imports: { default: async },
});

pub use bandvote::publisher::publisher as wit;

/// What the publisher import needs from the host, per request (cloned into
/// every request's store: two reference counts, the request's [`RequestLog`]
/// and whether the host answers for the component, `hand-off`).
#[derive(Clone)]
pub struct PublisherHost {
    pub publisher: Arc<dyn Publish>,
    pub metrics: Arc<HostMetrics>,
    log: RequestLog,
    /// `Some(deadline)`: `hand-off` is taken and its publish bounded by the
    /// request's deadline; `None`: refused, the component publishes and
    /// answers itself.
    hand_off_by: Option<tokio::time::Instant>,
}

/// What one request did with the publisher, read by the runtime once the
/// component is done: the ids of the votes it handed over (if the request
/// then ends in an error — deadline, fault — its reply names them, since they
/// may have reached Kafka: `Reply::may_have_published`), and the reply of a
/// `hand-off`, which the host answers with.
#[derive(Clone, Default)]
pub struct RequestLog(Arc<std::sync::Mutex<Logged>>);

#[derive(Default)]
struct Logged {
    ids: Vec<String>,
    /// Publishing is over for this request: a `hand-off` was taken (at most
    /// one; no `publish` after it), or the component answered itself.
    closed: bool,
    /// Its task, until the runtime takes it.
    publishing: Option<tokio::task::JoinHandle<Reply>>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Logged> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ids handed to the publisher so far.
    pub fn ids(&self) -> Vec<String> {
        self.lock().ids.clone()
    }

    /// The task publishing a `hand-off`, which ends with the request's reply
    /// (taken once).
    pub fn take_handed_off(&self) -> Option<tokio::task::JoinHandle<Reply>> {
        self.lock().publishing.take()
    }

    /// Once the component has answered: the hand-off's task if it handed off
    /// first, else nothing, and nothing is published for this request any
    /// more (a vote published after the answer would be one no reply covers).
    pub fn settle(&self) -> Option<tokio::task::JoinHandle<Reply>> {
        let mut log = self.lock();
        log.closed = true;
        log.publishing.take()
    }
}

impl PublisherHost {
    pub fn new(publisher: impl Publish, metrics: HostMetrics) -> Self {
        Self { publisher: Arc::new(publisher), metrics: Arc::new(metrics), log: RequestLog::default(), hand_off_by: None }
    }

    /// The host state for one request, and the record of what it publishes.
    /// `hand_off_by`: the request's deadline if the host answers for the
    /// component (`hand-off`), `None` if the component answers itself.
    pub fn for_request(&self, hand_off_by: Option<tokio::time::Instant>) -> (Self, RequestLog) {
        let log = RequestLog::default();
        (Self { log: log.clone(), hand_off_by, ..self.clone() }, log)
    }

    /// Note the ids about to be published; refused after a hand-off (the
    /// host's reply would not cover them).
    fn log_attempt(&self, votes: &[Vote]) -> Result<(), PublishFailure> {
        let mut log = self.log.lock();
        if log.closed {
            return Err(PublishFailure::Invalid("this request's votes were handed off or answered: nothing more is published".into()));
        }
        log.ids.extend(votes.iter().map(|v| v.vote_id.clone()));
        Ok(())
    }
}

/// A vote from the guest, re-checked: the guest is not trusted to have validated.
fn from_wit(v: wit::Vote) -> Result<Vote, PublishFailure> {
    let vote = Vote {
        vote_id: v.vote_id,
        band: v.band,
        album: v.album,
        year: v.year,
        rank: v.rank,
        source: match v.source {
            wit::Source::Http => Source::Http,
            wit::Source::Grpc => Source::Grpc,
        },
        received_at_ms: v.received_at_ms,
        voter: v.voter,
        contest: None,
    };
    vote.check().map_err(|e| PublishFailure::Invalid(e.to_string()))?;
    Ok(vote)
}

/// Why the publisher did not acknowledge, as the intake answers it.
fn failure(e: PublishError) -> PublishFailure {
    match e {
        PublishError::Overloaded { retry_after } => PublishFailure::Overloaded { retry_after_secs: retry_after.as_secs_f64().ceil() as u64 },
        e @ PublishError::NotSent(_) => PublishFailure::Unavailable(e.to_string()),
        PublishError::Unavailable(m) | PublishError::Config(m) => PublishFailure::Unavailable(m),
        PublishError::Conflict { vote_id } => PublishFailure::Conflict { key: vote_id },
        e @ (PublishError::TooManyBands { .. } | PublishError::TooManyAlbums { .. }) => {
            let r = e.name_refusal().expect("a name cap's error");
            PublishFailure::Refused(Refusal {
                status: bandvote_admission::NameRefusal::STATUS,
                code: r.code.into(),
                field: r.field.into(),
                message: r.message,
                details: serde_json::json!({ "cap": r.cap }).to_string(),
            })
        }
        PublishError::Refused(r) => PublishFailure::Refused(Refusal {
            status: r.http_status(),
            code: r.code().into(),
            field: r.field().into(),
            message: r.to_string(),
            details: r.details().to_string(),
        }),
    }
}

/// The same failure across the component boundary (`publish`'s answer).
fn to_wit_error(f: PublishFailure) -> wit::PublishError {
    match f {
        PublishFailure::Invalid(m) => wit::PublishError::Invalid(m),
        PublishFailure::Overloaded { retry_after_secs } => {
            wit::PublishError::Overloaded(u32::try_from(retry_after_secs.saturating_mul(1000)).unwrap_or(u32::MAX))
        }
        PublishFailure::Unavailable(m) => wit::PublishError::Unavailable(m),
        PublishFailure::Conflict { key } => wit::PublishError::Conflict(key),
        PublishFailure::Refused(r) => wit::PublishError::Refused(wit::Refusal {
            status: r.status,
            code: r.code,
            field: r.field,
            message: r.message,
            details: r.details,
        }),
    }
}

fn to_wit_ack(a: Ack) -> wit::Ack {
    wit::Ack { partition: a.partition, offset: a.offset }
}

impl PublisherHost {
    fn record(&self, r: &Result<Ack, PublishFailure>) {
        let outcome = match r {
            Ok(_) => "acked",
            Err(PublishFailure::Overloaded { .. }) => "overloaded",
            Err(PublishFailure::Unavailable(_)) => "unavailable",
            Err(PublishFailure::Invalid(_)) => "invalid",
            Err(PublishFailure::Conflict { .. }) => "conflict",
            // A name past its cap is bad input, as before it was answered as a refusal.
            Err(PublishFailure::Refused(r)) if r.code.starts_with("too_many_") => "invalid",
            Err(PublishFailure::Refused(_)) => "refused",
        };
        self.metrics.votes.with_label_values(&[outcome]).inc();
    }

    /// Publish checked votes (their ids logged), timed and counted.
    async fn publish_votes(&self, votes: &[Vote], batch: bool) -> Published {
        let started = Instant::now();
        let results = publish_submission(self.publisher.as_ref(), votes, batch).await?;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        results.iter().for_each(|r| self.record(r));
        Ok(results)
    }
}

/// Publish a submission's votes and say each outcome as the intake answers it
/// (`reply_published` takes it): one result per vote, or a refusal of all of
/// them (`batch` only; otherwise `votes` is one vote, published alone). The
/// host's import and the bench's native intake both publish through it.
pub async fn publish_submission(publisher: &dyn Publish, votes: &[Vote], batch: bool) -> Published {
    let ack = |a: bandvote_admission::Ack| Ack { partition: a.partition, offset: a.offset };
    if batch {
        Ok(publisher.publish_batch(votes).await.map_err(failure)?.into_iter().map(|r| r.map(ack).map_err(failure)).collect())
    } else {
        Ok(vec![publisher.publish(&votes[0]).await.map(ack).map_err(failure)])
    }
}

impl wit::Host for PublisherHost {
    async fn publish(&mut self, v: wit::Vote) -> Result<wit::Ack, wit::PublishError> {
        let vote = from_wit(v).inspect_err(|f| self.record(&Err(f.clone()))).map_err(to_wit_error)?;
        self.log_attempt(std::slice::from_ref(&vote)).map_err(to_wit_error)?;
        let published = self.publish_votes(std::slice::from_ref(&vote), false).await;
        match published.map(|mut r| r.pop()) {
            Ok(Some(r)) => r.map(to_wit_ack).map_err(to_wit_error),
            Ok(None) => Err(wit::PublishError::Unavailable("the publisher returned no result".into())),
            Err(f) => Err(to_wit_error(f)),
        }
    }

    async fn publish_batch(
        &mut self,
        votes: Vec<wit::Vote>,
    ) -> Result<Vec<Result<wit::Ack, wit::PublishError>>, wit::PublishError> {
        let votes = votes.into_iter().map(from_wit).collect::<Result<Vec<_>, _>>().inspect_err(|f| self.record(&Err(f.clone()))).map_err(to_wit_error)?;
        self.log_attempt(&votes).map_err(to_wit_error)?;
        let results = self.publish_votes(&votes, true).await.map_err(to_wit_error)?;
        Ok(results.into_iter().map(|r| r.map(to_wit_ack).map_err(to_wit_error)).collect())
    }

    /// Publish in a task of its own and answer for the component: the task
    /// ends with the reply intake-core renders, which the runtime sends. The
    /// task runs to its end (or the request's deadline) even if the client
    /// goes away, as an instance waiting in `publish` would.
    async fn hand_off(&mut self, votes: Vec<wit::Vote>, batch: bool) -> bool {
        // One hand-off per request, of one vote or a non-empty batch.
        let Some(deadline) = self.hand_off_by else { return false };
        if votes.is_empty() || (!batch && votes.len() != 1) {
            return false;
        }
        let checked = votes.into_iter().map(from_wit).collect::<Result<Vec<_>, _>>();
        let mut log = self.log.lock();
        if log.closed {
            return false;
        }
        log.closed = true;
        let task = match checked {
            Err(f) => {
                self.record(&Err(f.clone()));
                tokio::spawn(std::future::ready(Reply::unavailable(&f)))
            }
            Ok(votes) => {
                // Logged before the task runs: a fault or deadline reply names them.
                log.ids.extend(votes.iter().map(|v| v.vote_id.clone()));
                let host = self.clone();
                tokio::spawn(async move {
                    let submission = Submission { votes, batch };
                    match tokio::time::timeout_at(deadline, host.publish_votes(&submission.votes, batch)).await {
                        Ok(published) => reply_published(&submission, published),
                        Err(_) => Reply::timeout().may_have_published(&host.log.ids()),
                    }
                })
            }
        };
        log.publishing = Some(task);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::wit::Host as _;
    use super::*;

    /// Acknowledges every vote at once.
    struct AtOnce;

    impl Publish for AtOnce {
        fn publish<'a>(&'a self, _: &'a Vote) -> futures::future::BoxFuture<'a, Result<bandvote_admission::Ack, PublishError>> {
            Box::pin(async { Ok(bandvote_admission::Ack { partition: 0, offset: 7 }) })
        }

        fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<bandvote_admission::Ack, PublishError>>, PublishError>> {
            Box::pin(async move { Ok(votes.iter().map(|_| Ok(bandvote_admission::Ack { partition: 0, offset: 7 })).collect()) })
        }
    }

    fn vote(key: &str) -> wit::Vote {
        let meta = bandvote_intake_core::RequestMeta { idempotency_key: Some(key), ..Default::default() };
        let v = bandvote_intake_core::admit(&meta, br#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#, Source::Http, 5)
            .unwrap()
            .votes
            .remove(0);
        wit::Vote { vote_id: v.vote_id, band: v.band, album: v.album, year: v.year, rank: v.rank, source: wit::Source::Http, received_at_ms: 5, voter: None }
    }

    fn request(host_replies: bool) -> (PublisherHost, RequestLog) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        PublisherHost::new(AtOnce, HostMetrics::new()).for_request(host_replies.then_some(deadline))
    }

    /// One hand-off per request; its ids are logged before its task runs;
    /// nothing is published after it; the reply is intake-core's.
    #[tokio::test]
    async fn one_hand_off_per_request_and_nothing_published_after_it() {
        let (mut host, log) = request(true);
        assert!(host.hand_off(vec![vote("k-1")], false).await);
        assert_eq!(log.ids(), ["k-1"], "named at once, for a fault or deadline reply");
        assert!(!host.hand_off(vec![vote("k-2")], false).await, "a second hand-off");
        assert!(matches!(host.publish(vote("k-3")).await, Err(wit::PublishError::Invalid(_))), "a publish after it");
        let reply = log.take_handed_off().expect("its task").await.unwrap();
        assert_eq!(reply.status, 201);
        assert_eq!(log.ids(), ["k-1"]);
    }

    /// A component that answered itself publishes nothing more, handed off or not.
    #[tokio::test]
    async fn nothing_is_published_after_the_component_answered() {
        let (mut host, log) = request(true);
        assert!(host.publish(vote("k-1")).await.is_ok());
        assert!(log.settle().is_none());
        assert!(!host.hand_off(vec![vote("k-2")], false).await);
        assert!(host.publish_batch(vec![vote("k-3")]).await.is_err());
        assert_eq!(log.ids(), ["k-1"]);
    }

    /// Refused where the host does not answer for the component, and for a
    /// list that is not one vote or a non-empty batch.
    #[tokio::test]
    async fn hand_off_is_refused_when_off_or_malformed() {
        let (mut off, _) = request(false);
        assert!(!off.hand_off(vec![vote("k-1")], false).await);
        assert!(off.publish(vote("k-1")).await.is_ok(), "the component publishes itself");
        let (mut on, log) = request(true);
        assert!(!on.hand_off(vec![], true).await);
        assert!(!on.hand_off(vec![vote("a"), vote("b")], false).await);
        assert!(log.ids().is_empty());
    }
}
