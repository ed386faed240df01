//! The `bandvote:publisher` import, implemented natively over a [`Publish`]
//! (in production `bandvote-admission` in front of the rdkafka `VotePublisher`).

use std::sync::Arc;
use std::time::Instant;

use bandvote_admission::{Publish, PublishError};
use bandvote_vote::{Source, Vote};

use crate::metrics::HostMetrics;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "intake-imports",
    imports: { default: async },
});

pub use bandvote::publisher::publisher as wit;

/// What the publisher import needs from the host, per request (cloned into
/// every request's store: two reference counts, and the request's
/// [`Attempted`] ids).
#[derive(Clone)]
pub struct PublisherHost {
    pub publisher: Arc<dyn Publish>,
    pub metrics: Arc<HostMetrics>,
    attempted: Attempted,
}

/// The ids of the votes one request handed to the publisher: if the request
/// then ends in an error (deadline, fault), its reply names them, since they
/// may have reached Kafka (`Reply::may_have_published`).
#[derive(Clone, Default)]
pub struct Attempted(Arc<std::sync::Mutex<Vec<String>>>);

impl Attempted {
    fn add(&self, ids: impl IntoIterator<Item = String>) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(ids);
    }

    /// The ids handed to the publisher so far.
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl PublisherHost {
    pub fn new(publisher: impl Publish, metrics: HostMetrics) -> Self {
        Self { publisher: Arc::new(publisher), metrics: Arc::new(metrics), attempted: Attempted::default() }
    }

    /// The host state for one request, and the record of what it publishes.
    pub fn for_request(&self) -> (Self, Attempted) {
        let attempted = Attempted::default();
        (Self { publisher: self.publisher.clone(), metrics: self.metrics.clone(), attempted: attempted.clone() }, attempted)
    }
}

fn from_wit(v: wit::Vote) -> Result<Vote, wit::PublishError> {
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
    // The guest is not trusted to have validated: re-check cheaply.
    vote.check().map_err(|e| wit::PublishError::Invalid(e.to_string()))?;
    Ok(vote)
}

fn to_wit_error(e: PublishError) -> wit::PublishError {
    match e {
        PublishError::Overloaded { retry_after } => {
            wit::PublishError::Overloaded(u32::try_from(retry_after.as_millis()).unwrap_or(u32::MAX))
        }
        e @ PublishError::NotSent(_) => wit::PublishError::Unavailable(e.to_string()),
        PublishError::Unavailable(m) | PublishError::Config(m) => wit::PublishError::Unavailable(m),
        PublishError::Conflict { vote_id } => wit::PublishError::Conflict(vote_id),
        e @ (PublishError::TooManyBands { .. } | PublishError::TooManyAlbums { .. }) => {
            let r = e.name_refusal().expect("a name cap's error");
            wit::PublishError::Refused(wit::Refusal {
                status: bandvote_admission::NameRefusal::STATUS,
                code: r.code.into(),
                field: r.field.into(),
                message: r.message,
                details: serde_json::json!({ "cap": r.cap }).to_string(),
            })
        }
        PublishError::Refused(r) => wit::PublishError::Refused(wit::Refusal {
            status: r.http_status(),
            code: r.code().into(),
            field: r.field().into(),
            message: r.to_string(),
            details: r.details().to_string(),
        }),
    }
}

impl PublisherHost {
    fn record(&self, r: &Result<wit::Ack, wit::PublishError>) {
        let outcome = match r {
            Ok(_) => "acked",
            Err(wit::PublishError::Overloaded(_)) => "overloaded",
            Err(wit::PublishError::Unavailable(_)) => "unavailable",
            Err(wit::PublishError::Invalid(_)) => "invalid",
            Err(wit::PublishError::Conflict(_)) => "conflict",
            // A name past its cap is bad input, as before it was answered as a refusal.
            Err(wit::PublishError::Refused(r)) if r.code.starts_with("too_many_") => "invalid",
            Err(wit::PublishError::Refused(_)) => "refused",
        };
        self.metrics.votes.with_label_values(&[outcome]).inc();
    }
}

impl wit::Host for PublisherHost {
    async fn publish(&mut self, v: wit::Vote) -> Result<wit::Ack, wit::PublishError> {
        let host = self.clone();
        let result = match from_wit(v) {
            Ok(vote) => {
                host.attempted.add([vote.vote_id.clone()]);
                let started = Instant::now();
                let r = host.publisher.publish(&vote).await;
                host.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
                r.map(|a| wit::Ack { partition: a.partition, offset: a.offset }).map_err(to_wit_error)
            }
            Err(e) => Err(e),
        };
        host.record(&result);
        result
    }

    async fn publish_batch(
        &mut self,
        votes: Vec<wit::Vote>,
    ) -> Result<Vec<Result<wit::Ack, wit::PublishError>>, wit::PublishError> {
        let host = self.clone();
        let votes = votes.into_iter().map(from_wit).collect::<Result<Vec<_>, _>>()?;
        host.attempted.add(votes.iter().map(|v| v.vote_id.clone()));
        let started = Instant::now();
        let results = host.publisher.publish_batch(&votes).await.map_err(to_wit_error)?;
        host.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.map(|a| wit::Ack { partition: a.partition, offset: a.offset }).map_err(to_wit_error))
            .collect();
        results.iter().for_each(|r| host.record(r));
        Ok(results)
    }
}
