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
    /// `Some(deadline)`: `hand-off` is taken, and its publish bounded by the
    /// deadline (the request's); `None`: refused, the component publishes
    /// and answers itself.
    pub(crate) hand_off: Option<std::time::Duration>,
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
    handed_off: Option<tokio::task::JoinHandle<Reply>>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Logged> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, ids: impl IntoIterator<Item = String>) {
        self.lock().ids.extend(ids);
    }

    /// The ids handed to the publisher so far.
    pub fn ids(&self) -> Vec<String> {
        self.lock().ids.clone()
    }

    /// The task publishing a `hand-off`, which ends with the request's reply
    /// (taken once).
    pub fn take_handed_off(&self) -> Option<tokio::task::JoinHandle<Reply>> {
        self.lock().handed_off.take()
    }
}

impl PublisherHost {
    pub fn new(publisher: impl Publish, metrics: HostMetrics) -> Self {
        Self { publisher: Arc::new(publisher), metrics: Arc::new(metrics), log: RequestLog::default(), hand_off: None }
    }

    /// The host state for one request, and the record of what it publishes.
    pub fn for_request(&self) -> (Self, RequestLog) {
        let log = RequestLog::default();
        (Self { log: log.clone(), ..self.clone() }, log)
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

    /// Publish checked votes: one result per vote, or a refusal of all of
    /// them (`batch` only; one vote is published alone).
    async fn publish_votes(&self, votes: &[Vote], batch: bool) -> Published {
        self.log.add(votes.iter().map(|v| v.vote_id.clone()));
        let started = Instant::now();
        let results = if batch {
            self.publisher.publish_batch(votes).await.map_err(failure)?.into_iter().map(|r| r.map(ack).map_err(failure)).collect()
        } else {
            vec![self.publisher.publish(&votes[0]).await.map(ack).map_err(failure)]
        };
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        results.iter().for_each(|r| self.record(r));
        Ok(results)
    }
}

fn ack(a: bandvote_admission::Ack) -> Ack {
    Ack { partition: a.partition, offset: a.offset }
}

impl wit::Host for PublisherHost {
    async fn publish(&mut self, v: wit::Vote) -> Result<wit::Ack, wit::PublishError> {
        let vote = from_wit(v).inspect_err(|f| self.record(&Err(f.clone()))).map_err(to_wit_error)?;
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
        let votes = votes.into_iter().map(from_wit).collect::<Result<Vec<_>, _>>().map_err(to_wit_error)?;
        let results = self.publish_votes(&votes, true).await.map_err(to_wit_error)?;
        Ok(results.into_iter().map(|r| r.map(to_wit_ack).map_err(to_wit_error)).collect())
    }

    /// Publish in a task of its own and answer for the component: the task
    /// ends with the reply intake-core renders, which the runtime sends. The
    /// task runs to its end (or the request's deadline) even if the client
    /// goes away, as an instance waiting in `publish` would.
    async fn hand_off(&mut self, votes: Vec<wit::Vote>, batch: bool) -> bool {
        let Some(deadline) = self.hand_off else { return false };
        // One hand-off per request, of one vote or a non-empty batch.
        if votes.is_empty() || (!batch && votes.len() != 1) || self.log.lock().handed_off.is_some() {
            return false;
        }
        let votes = match votes.into_iter().map(from_wit).collect::<Result<Vec<_>, _>>() {
            Ok(votes) => votes,
            Err(f) => {
                self.record(&Err(f.clone()));
                let reply = Reply::unavailable(&f);
                self.log.lock().handed_off = Some(tokio::spawn(std::future::ready(reply)));
                return true;
            }
        };
        let host = self.clone();
        let task = tokio::spawn(async move {
            let submission = Submission { votes, batch };
            match tokio::time::timeout(deadline, host.publish_votes(&submission.votes, batch)).await {
                Ok(published) => reply_published(&submission, published),
                Err(_) => Reply::timeout().may_have_published(&host.log.ids()),
            }
        });
        self.log.lock().handed_off = Some(task);
        true
    }
}
