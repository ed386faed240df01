//! `bandvote.v1.VoteService` and the legacy `confproto.getInfo`, one code path.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bandvote_admission::{Ack, Admission, Publish as _, PublishError};
use bandvote_kafka::VotePublisher;
use bandvote_vote::{limits, pb, RawVote, Source, Vote, VoteError};
use futures::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use crate::metrics::GrpcMetrics;
use crate::proto::bandvote::vote_service_server::VoteService;
use crate::proto::confproto::get_info_server::GetInfo;

/// The gRPC intake: validates with the vote crate, publishes with the VotePublisher.
#[derive(Clone)]
pub struct GrpcIntake {
    publisher: Admission<VotePublisher>,
    metrics: GrpcMetrics,
    getinfo_layout: pb::GetInfoLayout,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// INVALID_ARGUMENT naming the field and the problem.
pub fn invalid(e: &VoteError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// RESOURCE_EXHAUSTED / UNAVAILABLE with a `retry-after-ms` hint.
pub fn unavailable(e: &PublishError) -> Status {
    let mut status = match e {
        PublishError::Overloaded { .. } => Status::resource_exhausted(e.to_string()),
        // Final: the key stands for another vote; retrying will not help.
        PublishError::Conflict { .. } => return Status::already_exists(e.to_string()),
        // Final: a new band name past the cap.
        PublishError::TooManyBands { .. } | PublishError::TooManyAlbums { .. } => return Status::invalid_argument(e.to_string()),
        // Final: a contest rule; the code says which (the JSON error in the message).
        PublishError::Refused(r) => {
            let message = r.to_json().to_string();
            return match r.http_status() {
                401 => Status::unauthenticated(message),
                403 | 409 => Status::failed_precondition(message),
                _ => Status::invalid_argument(message),
            };
        }
        _ => Status::unavailable(e.to_string()),
    };
    let ms = (e.retry_after_secs() * 1000).to_string();
    if let Ok(v) = ms.parse() {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}

fn idempotency_key<T>(req: &Request<T>) -> Option<String> {
    req.metadata().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl GrpcIntake {
    pub fn new(publisher: Admission<VotePublisher>, metrics: GrpcMetrics) -> Self {
        Self { publisher, metrics, getinfo_layout: pb::GetInfoLayout::Course }
    }

    /// Read `confproto.getInfo` votes with `layout`'s field numbers.
    pub fn with_getinfo_layout(mut self, layout: pb::GetInfoLayout) -> Self {
        self.getinfo_layout = layout;
        self
    }

    fn count(&self, method: &str, result: &Result<impl Sized, Status>) {
        let code = match result {
            Ok(_) => "OK".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        self.metrics.calls.with_label_values(&[method, &code]).inc();
    }

    /// Validate one raw vote; `fallback_id` is the request's idempotency key.
    pub fn validate(&self, raw: RawVote, fallback_id: Option<String>) -> Result<Vote, Status> {
        raw.validate(Source::Grpc, now_ms(), fallback_id).map_err(|e| self.refuse(&e))
    }

    /// Count an invalid vote and answer INVALID_ARGUMENT.
    fn refuse(&self, e: &VoteError) -> Status {
        self.metrics.votes.with_label_values(&["invalid"]).inc();
        invalid(e)
    }

    /// Publish one validated vote; OK only after Kafka's acknowledgement.
    pub async fn publish(&self, vote: &Vote) -> Result<Ack, Status> {
        let started = Instant::now();
        let r = self.publisher.publish(vote).await;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        self.outcome(&r);
        r.map_err(|e| unavailable(&e))
    }

    fn outcome(&self, r: &Result<Ack, PublishError>) {
        let outcome = match r {
            Ok(_) => "acked",
            Err(PublishError::Overloaded { .. }) => "overloaded",
            Err(PublishError::Conflict { .. }) => "conflict",
            Err(PublishError::TooManyBands { .. } | PublishError::TooManyAlbums { .. }) => "invalid",
            Err(PublishError::Refused(_)) => "refused",
            Err(_) => "unavailable",
        };
        self.metrics.votes.with_label_values(&[outcome]).inc();
    }

    async fn cast_one(&self, raw: RawVote, key: Option<String>) -> Result<pb::Receipt, Status> {
        let id = bandvote_vote::resolve_single_id(&raw, key.as_deref()).map_err(|e| self.refuse(&e))?;
        let vote = self.validate(raw, id)?;
        let ack = self.publish(&vote).await?;
        Ok(pb::Receipt { vote_id: vote.vote_id, partition: ack.partition, offset: ack.offset })
    }
}

#[tonic::async_trait]
impl VoteService for GrpcIntake {
    async fn cast(&self, request: Request<pb::Vote>) -> Result<Response<pb::Receipt>, Status> {
        let key = idempotency_key(&request);
        let r = self.cast_one(request.into_inner().into(), key).await.map(Response::new);
        self.count("Cast", &r);
        r
    }

    async fn cast_batch(&self, request: Request<Streaming<pb::Vote>>) -> Result<Response<pb::BatchReceipt>, Status> {
        let key = idempotency_key(&request);
        let r = async {
            let mut stream = request.into_inner();
            let mut raws: Vec<RawVote> = Vec::new();
            while let Some(item) = stream.next().await {
                if raws.len() >= limits::MAX_BATCH {
                    return Err(Status::invalid_argument(format!("batch has more than {} votes", limits::MAX_BATCH)));
                }
                raws.push(item?.into());
            }
            if raws.is_empty() {
                return Err(Status::invalid_argument("batch is empty"));
            }
            let votes = bandvote_vote::assemble_batch(raws, key.as_deref(), Source::Grpc, now_ms()).map_err(|e| self.refuse(&e))?;
            let started = Instant::now();
            let results = self.publisher.publish_batch(&votes).await.map_err(|e| unavailable(&e))?;
            self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
            let mut receipts = Vec::with_capacity(votes.len());
            for (vote, r) in votes.iter().zip(results) {
                self.outcome(&r);
                let ack = r.map_err(|e| unavailable(&e))?;
                receipts.push(pb::Receipt { vote_id: vote.vote_id.clone(), partition: ack.partition, offset: ack.offset });
            }
            Ok(Response::new(pb::BatchReceipt { receipts }))
        }
        .await;
        self.count("CastBatch", &r);
        r
    }
}

#[tonic::async_trait]
impl GetInfo for GrpcIntake {
    async fn return_info(&self, request: Request<pb::RequestId>) -> Result<Response<pb::ReplyInfo>, Status> {
        let key = idempotency_key(&request);
        let r = self
            .cast_one(request.into_inner().into_raw(self.getinfo_layout), key)
            .await
            .map(|receipt| Response::new(pb::ReplyInfo { info: format!("vote {} stored", receipt.vote_id) }));
        self.count("returnInfo", &r);
        r
    }
}
