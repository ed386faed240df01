//! What an intake answers when a vote is not acknowledged, and the one
//! small interface every intake publishes through.

use std::time::Duration;

use bandvote_kafka::{Ack, ProduceError, VotePublisher};
use bandvote_vote::Vote;

/// Why a vote was not acknowledged. None of these means "stored".
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Too many votes in flight: retry after the given delay (HTTP 503, gRPC
    /// RESOURCE_EXHAUSTED). Never handed to Kafka.
    #[error("overloaded: retry after {}ms", retry_after.as_millis())]
    Overloaded { retry_after: Duration },
    /// Kafka did not acknowledge in time or refused the record, or admission
    /// cannot decide now (the current contest is not known, a token contest
    /// and no usable secret): HTTP 503, gRPC UNAVAILABLE. It may be in Kafka.
    #[error("{0}")]
    Unavailable(String),
    /// Kafka refused the record before taking it: certainly not in Kafka (HTTP 503).
    #[error("kafka unavailable: {0}")]
    NotSent(String),
    /// The vote's id (the client's idempotency key) stands for a different
    /// vote within the claim window (HTTP 409, gRPC ALREADY_EXISTS). Final: a retry will not help.
    #[error("idempotency key {vote_id:?} was already used for a different vote")]
    Conflict { vote_id: String },
    /// The band is a new name and the deployment already counts its cap of
    /// distinct names (HTTP 422, gRPC INVALID_ARGUMENT). Final.
    #[error("band {band:?} is a new name and {cap} distinct bands are counted already (the cap): vote for one of them")]
    TooManyBands { band: String, cap: usize },
    /// The album is a new name and the deployment already counts its cap of
    /// distinct albums (HTTP 422, gRPC INVALID_ARGUMENT). Final.
    #[error("album {album:?} is a new name and {cap} distinct albums are counted already (the cap): vote with one of them")]
    TooManyAlbums { album: String, cap: usize },
    /// A rule of the current contest refused the vote (HTTP 401/403/409/422
    /// by [`bandvote_contest::Refusal::http_status`]). Final.
    #[error("{0}")]
    Refused(bandvote_contest::Refusal),
    /// The publisher's configuration is wrong (fatal at start-up).
    #[error("configuration: {0}")]
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

    /// Certainly not in Kafka: a claim taken for it may be given back.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, Self::Overloaded { .. } | Self::NotSent(_))
    }
}

impl From<ProduceError> for PublishError {
    fn from(e: ProduceError) -> Self {
        match e {
            ProduceError::Overloaded { retry_after } => Self::Overloaded { retry_after },
            e @ ProduceError::Unavailable { maybe_sent: true, .. } => Self::Unavailable(e.to_string()),
            ProduceError::Unavailable { reason, .. } => Self::NotSent(reason),
            ProduceError::Config(m) => Self::Config(m),
        }
    }
}

/// What an intake needs from a publisher: one small interface.
/// [`crate::Admission`] over the rdkafka [`VotePublisher`] is the
/// implementation every intake runs; benchmarks use one that acknowledges at
/// once to price the sandbox alone.
pub trait Publish: Send + Sync + 'static {
    /// Publish one vote; `Ok` only once it is durable.
    fn publish<'a>(&'a self, vote: &'a Vote) -> futures::future::BoxFuture<'a, Result<Ack, PublishError>>;
    /// Publish a batch: an outer `Err` refuses all of it; otherwise one result per vote, in order.
    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>>;
}

/// The bare producer: votes go to Kafka exactly as given, nothing admitted
/// (tests and benchmarks that price the producer alone).
impl Publish for VotePublisher {
    fn publish<'a>(&'a self, vote: &'a Vote) -> futures::future::BoxFuture<'a, Result<Ack, PublishError>> {
        Box::pin(async move { VotePublisher::publish(self, vote).await.map_err(Into::into) })
    }

    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> futures::future::BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        Box::pin(async move {
            let results = VotePublisher::publish_batch(self, votes).await?;
            Ok(results.into_iter().map(|r| r.map_err(Into::into)).collect())
        })
    }
}

/// A name cap's refusal as every intake answers it: HTTP 422 naming the
/// field (`band` / `album`), code `too_many_bands` / `too_many_albums`,
/// the cap in the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRefusal {
    pub code: &'static str,
    pub field: &'static str,
    pub message: String,
    pub cap: usize,
}

impl NameRefusal {
    /// HTTP status: 422.
    pub const STATUS: u16 = 422;

    /// `{"error": {status, code, field, message, cap}}`, the shape of a contest refusal.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "status": Self::STATUS, "code": self.code, "field": self.field, "message": self.message, "cap": self.cap } })
    }
}

impl PublishError {
    /// The refusal of a name past its cap (`None` for any other error).
    pub fn name_refusal(&self) -> Option<NameRefusal> {
        let (code, field, cap) = match self {
            PublishError::TooManyBands { cap, .. } => ("too_many_bands", "band", *cap),
            PublishError::TooManyAlbums { cap, .. } => ("too_many_albums", "album", *cap),
            _ => return None,
        };
        Some(NameRefusal { code, field, message: self.to_string(), cap })
    }
}
