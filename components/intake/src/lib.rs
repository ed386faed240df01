//! The HTTP vote intake as a WASI component.
//!
//! Exports `wasi:http/incoming-handler` (through the `wasip2` crate) and imports
//! `bandvote:publisher/publisher` (wit-bindgen, `wit/publisher.wit`). All
//! request logic lives in `bandvote-intake-core`; this file only moves bytes
//! between wasi:http and that logic, and votes to the publisher import.

use std::io::{Read as _, Write as _};

use bandvote_intake_core::{self as core, Ack, PublishFailure, Published, Reply, RequestMeta, Route};
use bandvote_vote::{limits, Source, Vote};
use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

wit_bindgen::generate!({
    path: "../../wit",
    world: "intake-imports",
    generate_all,
});

use bandvote::publisher::publisher as wit;

wasip2::http::proxy::export!(Intake);

struct Intake;

impl wasip2::exports::http::incoming_handler::Guest for Intake {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let reply = handle(&request);
        send(response_out, reply);
    }
}

fn handle(request: &IncomingRequest) -> Reply {
    let method = match request.method() {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        _ => "OTHER",
    };
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    match core::route(method, &path) {
        Route::Health => Reply::health(),
        Route::Status => Reply::status(),
        Route::NotFound => Reply::not_found(),
        Route::MethodNotAllowed => Reply::method_not_allowed(),
        Route::Vote => handle_vote(request),
    }
}

fn header(headers: &Fields, name: &str) -> Option<String> {
    headers.get(name).into_iter().next().and_then(|v| String::from_utf8(v).ok())
}

fn handle_vote(request: &IncomingRequest) -> Reply {
    let headers = request.headers();
    let content_type = header(&headers, "content-type");
    let idempotency_key = header(&headers, "idempotency-key");
    let meta = RequestMeta {
        content_type: content_type.as_deref(),
        idempotency_key: idempotency_key.as_deref(),
        content_length: header(&headers, "content-length").and_then(|v| v.trim().parse().ok()),
    };
    if let Err(reply) = core::check_declared_length(&meta) {
        return reply;
    }
    let body = match read_body(request) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let now = wasip2::clocks::wall_clock::now();
    let now_ms = now.seconds as i64 * 1000 + i64::from(now.nanoseconds / 1_000_000);
    let submission = match core::admit(&meta, &body, Source::Http, now_ms) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let published: Published = if submission.batch {
        let votes: Vec<wit::Vote> = submission.votes.iter().map(to_wit).collect();
        wit::publish_batch(&votes)
            .map(|rs| rs.into_iter().map(|r| r.map(ack).map_err(failure)).collect())
            .map_err(failure)
    } else {
        Ok(vec![wit::publish(&to_wit(&submission.votes[0])).map(ack).map_err(failure)])
    };
    core::reply_published(&submission, published)
}

/// Read at most MAX_BODY_BYTES + 1 bytes: one more than allowed is enough to answer 413.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Reply> {
    let internal = |what: &str| Reply::internal(&format!("reading the request body: {what}"));
    let incoming = request.consume().map_err(|()| internal("body already taken"))?;
    let mut stream = incoming.stream().map_err(|()| internal("no body stream"))?;
    let mut body = Vec::new();
    let mut limited = stream.by_ref().take(limits::MAX_BODY_BYTES as u64 + 1);
    limited.read_to_end(&mut body).map_err(|e| internal(&e.to_string()))?;
    Ok(body)
}

fn to_wit(v: &Vote) -> wit::Vote {
    wit::Vote {
        vote_id: v.vote_id.clone(),
        band: v.band.clone(),
        album: v.album.clone(),
        year: v.year,
        rank: v.rank,
        source: match v.source {
            Source::Http => wit::Source::Http,
            Source::Grpc => wit::Source::Grpc,
        },
        received_at_ms: v.received_at_ms,
    }
}

fn ack(a: wit::Ack) -> Ack {
    Ack { partition: a.partition, offset: a.offset }
}

fn failure(e: wit::PublishError) -> PublishFailure {
    match e {
        wit::PublishError::Invalid(m) => PublishFailure::Invalid(m),
        wit::PublishError::Overloaded(ms) => PublishFailure::Overloaded { retry_after_secs: u64::from(ms).div_ceil(1000) },
        wit::PublishError::Unavailable(m) => PublishFailure::Unavailable(m),
    }
}

fn send(out: ResponseOutparam, reply: Reply) {
    let headers = Fields::new();
    let _ = headers.append("content-type", b"application/json");
    if let Some(secs) = reply.retry_after {
        let _ = headers.append("retry-after", secs.to_string().as_bytes());
    }
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(reply.status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = body.write() {
        // blocking_write_and_flush takes at most 4096 bytes per call.
        for chunk in reply.body.chunks(4096) {
            if stream.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(body, None);
}
