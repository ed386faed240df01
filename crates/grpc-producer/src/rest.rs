//! The subset of the Kafka REST Proxy v2 API the Spin adapter uses:
//! `POST /topics/{topic}` with `application/vnd.kafka.json.v2+json`.
//!
//! Each record's `value` must be a canonical vote (what `bandvote-vote`
//! produces); it is re-checked and goes through the same admission and
//! `VotePublisher` as every intake, so the Kafka record is byte-identical to
//! the other paths. The fields the intake decides (`received_at_ms`,
//! `contest`, the voter a token stands for) are set by admission, never
//! taken from the body.
//! Responses follow the proxy: 200 with one `offsets` entry per record
//! (`error_code`/`error` set for a record Kafka did not acknowledge), or an
//! error object `{"error_code":…, "message":…}`.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bandvote_admission::{Admission, Publish as _, PublishError};
use bandvote_kafka::VotePublisher;
use bandvote_vote::{limits, Vote};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::metrics::GrpcMetrics;

/// The media type of JSON-embedded records in the v2 API.
pub const KAFKA_JSON_V2: &str = "application/vnd.kafka.json.v2+json";

#[derive(Clone)]
pub struct RestBridge {
    pub publisher: Admission<VotePublisher>,
    pub metrics: GrpcMetrics,
}

#[derive(Deserialize)]
struct ProduceRequest {
    records: Vec<ProduceRecord>,
}

#[derive(Deserialize)]
struct ProduceRecord {
    value: Value,
    #[serde(default)]
    #[allow(dead_code)]
    key: Option<Value>,
}

/// The bridge's routes: `POST /topics/{topic}` and `GET /topics` (the one topic).
pub fn router(bridge: RestBridge) -> Router {
    Router::new()
        .route("/topics/{topic}", post(produce))
        .route("/topics", get(list_topics))
        .with_state(bridge)
}

fn error(status: StatusCode, error_code: u32, message: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, KAFKA_JSON_V2)], Json(json!({ "error_code": error_code, "message": message.into() }))).into_response()
}

async fn list_topics(State(b): State<RestBridge>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, KAFKA_JSON_V2)], Json(json!([b.publisher.inner().config().topic]))).into_response()
}

async fn produce(State(b): State<RestBridge>, Path(topic): Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let r = produce_inner(&b, &topic, &headers, &body).await;
    b.metrics.calls.with_label_values(&["rest_produce", r.status().as_str()]).inc();
    r
}

async fn produce_inner(b: &RestBridge, topic: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if topic != b.publisher.inner().config().topic {
        return error(StatusCode::NOT_FOUND, 40401, format!("Topic {topic} not found"));
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.starts_with(KAFKA_JSON_V2) {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, 415, format!("content type must be {KAFKA_JSON_V2}"));
    }
    if body.len() > limits::MAX_BODY_BYTES * 2 {
        return error(StatusCode::PAYLOAD_TOO_LARGE, 413, "request body too large");
    }
    let req: ProduceRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, 400, format!("body is not a produce request: {e}")),
    };
    if req.records.is_empty() || req.records.len() > limits::MAX_BATCH {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("records must hold 1..={} votes", limits::MAX_BATCH));
    }
    let mut votes = Vec::with_capacity(req.records.len());
    for (i, rec) in req.records.into_iter().enumerate() {
        let vote: Vote = match serde_json::from_value(rec.value) {
            Ok(v) => v,
            Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, 42203, format!("records[{i}].value is not a vote: {e}")),
        };
        if let Err(e) = vote.check() {
            b.metrics.votes.with_label_values(&["invalid"]).inc();
            return error(StatusCode::UNPROCESSABLE_ENTITY, 42203, format!("records[{i}].value: {e}"));
        }
        votes.push(vote);
    }
    let started = Instant::now();
    let results = match b.publisher.publish_batch(&votes).await {
        Ok(r) => r,
        Err(e @ PublishError::Overloaded { .. }) => {
            b.metrics.votes.with_label_values(&["overloaded"]).inc_by(votes.len() as u64);
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, 42901, e.to_string());
            r.headers_mut().insert(header::RETRY_AFTER, e.retry_after_secs().into());
            return r;
        }
        // A contest rule refused the batch: every record carries the refusal
        // (error_code <status>10, error = its JSON body), so an adapter can answer as our intakes do.
        Err(PublishError::Refused(r)) => {
            b.metrics.votes.with_label_values(&["refused"]).inc_by(votes.len() as u64);
            let code = u32::from(r.http_status()) * 100 + 10;
            let offsets: Vec<Value> =
                votes.iter().map(|_| json!({ "partition": null, "offset": null, "error_code": code, "error": r.to_json().to_string() })).collect();
            let body = json!({ "key_schema_id": null, "value_schema_id": null, "offsets": offsets });
            return (StatusCode::OK, [(header::CONTENT_TYPE, KAFKA_JSON_V2)], Json(body)).into_response();
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, 50301, e.to_string()),
    };
    b.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
    let offsets: Vec<Value> = results
        .iter()
        .map(|r| match r {
            Ok(a) => {
                b.metrics.votes.with_label_values(&["acked"]).inc();
                json!({ "partition": a.partition, "offset": a.offset, "error_code": null, "error": null })
            }
            Err(e @ PublishError::Conflict { .. }) => {
                b.metrics.votes.with_label_values(&["conflict"]).inc();
                json!({ "partition": null, "offset": null, "error_code": 40901, "error": e.to_string() })
            }
            Err(e @ (PublishError::TooManyBands { .. } | PublishError::TooManyAlbums { .. })) => {
                // Answered like a contest refusal (status × 100 + 10, the
                // error as JSON): the Spin adapter passes it to the guest,
                // which answers 422 naming the field.
                b.metrics.votes.with_label_values(&["invalid"]).inc();
                let r = e.name_refusal().expect("a name cap's error");
                json!({ "partition": null, "offset": null, "error_code": u32::from(bandvote_admission::NameRefusal::STATUS) * 100 + 10, "error": r.to_json().to_string() })
            }
            Err(e) => {
                b.metrics.votes.with_label_values(&["unavailable"]).inc();
                json!({ "partition": null, "offset": null, "error_code": 50002, "error": e.to_string() })
            }
        })
        .collect();
    let body = json!({ "key_schema_id": null, "value_schema_id": null, "offsets": offsets });
    (StatusCode::OK, [(header::CONTENT_TYPE, KAFKA_JSON_V2)], Json(body)).into_response()
}
