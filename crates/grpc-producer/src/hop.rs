//! The gRPC client hop: HTTP JSON votes in (what Locust and the original
//! clients post to the ingress's `/grpc` path), gRPC calls out to the gRPC
//! producer. The system bandvote replaces ran this as its own pod; so do we
//! (`bandvote-grpc-client`).
//!
//! Admission is the intake's own ([`bandvote_intake_core`], so the same
//! paths, validation and JSON replies as the wasm intake). Each vote gets its
//! id here, before the first call, so the hop's retries (UNAVAILABLE or a lost
//! connection, within the deadline) are idempotent. Back-pressure from the
//! producer (RESOURCE_EXHAUSTED) passes through as 503 + `Retry-After`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bandvote_intake_core::{self as core, Ack, PublishFailure, Published, Reply, RequestMeta, Route};
use bandvote_vote::{limits, pb, Source, Submission, Vote};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use crate::proto::bandvote::vote_service_client::VoteServiceClient;

/// How the hop calls the gRPC producer.
#[derive(Debug, Clone)]
pub struct HopConfig {
    /// `http://host:port` of the gRPC producer.
    pub target: String,
    /// Whole time a vote may take, retries included.
    pub deadline: Duration,
    /// First retry delay (doubles per attempt).
    pub backoff: Duration,
}

/// A lazily connected, shared (HTTP/2 multiplexed) channel to the producer.
#[derive(Clone)]
pub struct GrpcHop {
    client: VoteServiceClient<Channel>,
    config: HopConfig,
}

impl GrpcHop {
    /// Does not connect yet: the first call does, and reconnects after failures.
    pub fn new(config: HopConfig) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(config.target.clone())?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .connect_lazy();
        Ok(Self { client: VoteServiceClient::new(channel), config })
    }

    /// The producer answers its health check (SERVING).
    pub async fn ready(&self) -> Result<(), String> {
        let channel = Endpoint::from_shared(self.config.target.clone()).map_err(|e| e.to_string())?.connect_timeout(Duration::from_secs(2));
        let channel = tokio::time::timeout(Duration::from_secs(3), channel.connect())
            .await
            .map_err(|_| "gRPC producer: connect timed out".to_string())?
            .map_err(|e| format!("gRPC producer: {e}"))?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let r = health
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .map_err(|s| format!("gRPC producer health: {}", s.message()))?;
        if r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err("gRPC producer is not serving".into())
        }
    }

    /// Publish a submission over gRPC, retrying transient failures with the same ids.
    pub async fn publish(&self, submission: &Submission) -> Published {
        let deadline = Instant::now() + self.config.deadline;
        let mut delay = self.config.backoff;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, self.call(submission)).await;
            let status = match attempt {
                Ok(Ok(acks)) => return Ok(acks.into_iter().map(Ok).collect()),
                Ok(Err(status)) => status,
                Err(_) => return Err(PublishFailure::Unavailable("the gRPC producer did not answer within the deadline".into())),
            };
            if let (Code::InvalidArgument | Code::FailedPrecondition | Code::Unauthenticated, Some(r)) =
                (status.code(), core::Refusal::from_json_error(status.message()))
            {
                return Err(PublishFailure::Refused(r));
            }
            match status.code() {
                Code::ResourceExhausted => return Err(PublishFailure::Overloaded { retry_after_secs: retry_after_secs(&status) }),
                Code::InvalidArgument => return Err(PublishFailure::Invalid(status.message().to_owned())),
                Code::AlreadyExists => {
                    let key = match &submission.votes[..] {
                        [one] => one.vote_id.clone(),
                        _ => status.message().to_owned(),
                    };
                    return Err(PublishFailure::Conflict { key });
                }
                Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled | Code::DeadlineExceeded
                    if Instant::now() + delay < deadline =>
                {
                    tracing::debug!(code = ?status.code(), message = status.message(), "retrying with the same vote ids");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                _ => return Err(PublishFailure::Unavailable(format!("gRPC producer: {}", status.message()))),
            }
        }
    }

    async fn call(&self, submission: &Submission) -> Result<Vec<Ack>, tonic::Status> {
        let mut client = self.client.clone();
        if submission.batch {
            let votes: Vec<pb::Vote> = submission.votes.iter().map(to_pb).collect();
            let r = client.cast_batch(futures::stream::iter(votes)).await?.into_inner();
            Ok(r.receipts.into_iter().map(|r| Ack { partition: r.partition, offset: r.offset }).collect())
        } else {
            let r = client.cast(to_pb(&submission.votes[0])).await?.into_inner();
            Ok(vec![Ack { partition: r.partition, offset: r.offset }])
        }
    }
}

/// The validated vote as the producer's message; its id travels with it.
fn to_pb(v: &Vote) -> pb::Vote {
    pb::Vote { band: v.band.clone(), album: v.album.clone(), year: v.year.to_string(), rank: v.rank.to_string(), vote_id: v.vote_id.clone(), voter: v.voter.clone().unwrap_or_default() }
}

fn retry_after_secs(status: &tonic::Status) -> u64 {
    let ms: u64 = status.metadata().get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(1000);
    ms.div_ceil(1000).max(1)
}

/// The hop's HTTP side: every path of the intake, and `/grpc`.
pub fn router(hop: GrpcHop) -> Router {
    // Bodies up to 4x the vote limit reach admission, which answers the JSON 413.
    Router::new().fallback(handle).layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES * 4)).with_state(hop)
}

async fn handle(State(hop): State<GrpcHop>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let reply = match core::route(method.as_str(), uri.path()) {
        Route::Health => Reply::health(),
        Route::Status => Reply::status(),
        Route::NotFound => Reply::not_found(),
        Route::MethodNotAllowed => Reply::method_not_allowed(),
        Route::Vote => {
            let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
            let meta = RequestMeta {
                content_type: header("content-type"),
                idempotency_key: header("idempotency-key"),
                voter: header("x-voter"),
                content_length: header("content-length").and_then(|v| v.parse().ok()),
            };
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
            match core::admit(&meta, &body, Source::Grpc, now) {
                Ok(submission) => {
                    let published = hop.publish(&submission).await;
                    core::reply_published(&submission, published)
                }
                Err(r) => r,
            }
        }
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), reply.body).into_response();
    let h = response.headers_mut();
    h.insert("content-type", "application/json".parse().expect("static header"));
    if let Some(s) = reply.retry_after {
        if let Ok(v) = s.to_string().parse() {
            h.insert("retry-after", v);
        }
    }
    if let Some(v) = reply.idempotency_key.as_deref().and_then(|k| k.parse().ok()) {
        h.insert("idempotency-key", v);
    }
    response
}
