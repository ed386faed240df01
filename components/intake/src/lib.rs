//! The HTTP vote intake as a WASI component, written in Spin's idiom.
//!
//! `#[http_component]` (spin-sdk) exports `wasi:http/incoming-handler@0.2`;
//! `bandvote:publisher/publisher` is imported through wit-bindgen
//! (`wit/publisher.wit`). Nothing else from Spin is used, so the component
//! runs on our wasmtime host, on `wasmtime serve` and, composed with the REST
//! adapter, on Spin / SpinKube, importing only standard WASI and our publisher.
//!
//! All request logic lives in `bandvote-intake-core`; this file only moves
//! bytes between the request and that logic, and votes to the publisher import.

use std::time::{SystemTime, UNIX_EPOCH};

use bandvote_intake_core::{self as core, Ack, PublishFailure, Published, Reply, RequestMeta, Route};
use bandvote_vote::{limits, Source, Vote};
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wasi::io::streams::{InputStream, StreamError};
use spin_sdk::http_component;

wit_bindgen::generate!({
    path: "../../wit",
    world: "intake-imports",
    generate_all,
});

use bandvote::publisher::publisher as wit;

/// The entry point: one request in, one response out.
///
/// wasi:http resources form a tree (request → headers, request → body →
/// stream, stream → pollable), and a runtime may refuse to drop a parent while
/// a child is alive: wasmtime 42 (Spin 3.6 / containerd-shim-spin 0.24) traps
/// with "resource has children", wasmtime 48 does not check. So the request is
/// only ever borrowed below and dropped here, after every child has been
/// dropped on every path (reply, early error, client gone); see `read_body`.
#[http_component]
fn handle_intake(request: IncomingRequest, response_out: ResponseOutparam) {
    let answer = route(&request);
    drop(request);
    match answer {
        Answer::Reply(reply) => respond(reply, response_out),
        // The runtime answers from the publish (`hand-off`): no response here.
        Answer::HandedOff => drop(response_out),
    }
}

/// What the component does with a request.
enum Answer {
    /// Send this reply.
    Reply(Reply),
    /// The votes went to the runtime's `hand-off`: it replies.
    HandedOff,
}

fn route(request: &IncomingRequest) -> Answer {
    let method = match request.method() {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        _ => "OTHER",
    };
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    match core::route(method, &path) {
        Route::Health => Answer::Reply(Reply::health()),
        Route::Status => Answer::Reply(Reply::status()),
        Route::NotFound => Answer::Reply(Reply::not_found()),
        Route::MethodNotAllowed => Answer::Reply(Reply::method_not_allowed()),
        Route::Vote => handle_vote(request).map_or(Answer::HandedOff, Answer::Reply),
    }
}

fn header(headers: &Fields, name: &str) -> Option<String> {
    headers.get(name).into_iter().next().and_then(|v| String::from_utf8(v).ok())
}

/// The reply to a vote request, or `None` when the runtime took the votes
/// with `hand-off` and replies itself.
fn handle_vote(request: &IncomingRequest) -> Option<Reply> {
    // The headers are a child of the request: read what we need and drop them.
    let (content_type, idempotency_key, voter, content_length) = {
        let headers = request.headers();
        (
            header(&headers, "content-type"),
            header(&headers, "idempotency-key"),
            header(&headers, "x-voter"),
            header(&headers, "content-length").and_then(|v| v.trim().parse().ok()),
        )
    };
    let meta = RequestMeta {
        content_type: content_type.as_deref(),
        idempotency_key: idempotency_key.as_deref(),
        voter: voter.as_deref(),
        content_length,
    };
    if let Err(reply) = core::check_declared_length(&meta) {
        return Some(reply);
    }
    let body = match read_body(request) {
        Ok(b) => b,
        Err(reply) => return Some(reply),
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let submission = match core::admit(&meta, &body, Source::Http, now_ms) {
        Ok(s) => s,
        Err(reply) => return Some(reply),
    };
    let votes: Vec<wit::Vote> = submission.votes.iter().map(to_wit).collect();
    if wit::hand_off(&votes, submission.batch) {
        return None;
    }
    let published: Published = if submission.batch {
        wit::publish_batch(&votes)
            .map(|rs| rs.into_iter().map(|r| r.map(ack).map_err(failure)).collect())
            .map_err(failure)
    } else {
        Ok(vec![wit::publish(&votes[0]).map(ack).map_err(failure)])
    };
    Some(core::reply_published(&submission, published))
}

/// Read at most MAX_BODY_BYTES + 1 bytes: one more than allowed is enough to answer 413.
///
/// Children before parents: the stream is dropped before the body, and the
/// body before the caller drops the request (spin-sdk's `into_body_stream`
/// drops the request while its body lives, which wasmtime 42 refuses).
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, Reply> {
    let incoming = request.consume().map_err(|()| Reply::internal("the request body was already taken"))?;
    let result = match incoming.stream() {
        Ok(stream) => {
            let result = read_stream(&stream);
            drop(stream);
            result
        }
        Err(()) => Err(Reply::internal("the request body stream was already taken")),
    };
    drop(incoming);
    result
}

fn read_stream(stream: &InputStream) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Reply::internal(&format!("reading the request body: {}", e.to_debug_string())));
            }
        }
        if body.len() > limits::MAX_BODY_BYTES {
            body.truncate(limits::MAX_BODY_BYTES + 1);
            return Ok(body);
        }
    }
}

/// Bytes asked for per read of the request body (a vote is a few hundred).
const READ_CHUNK: u64 = 16 * 1024;

/// Send the reply with as few host calls as wasi:http allows (every call
/// crosses into the host: measured ~37 per request with spin-sdk's buffered
/// `Response`, whose body sink polls check-write/write/flush): the headers as
/// one list with the body's length, the body as one blocking write-and-flush
/// per 4 KiB (replies are a few hundred bytes).
fn respond(reply: Reply, out: ResponseOutparam) {
    let mut headers = vec![
        ("content-type".to_owned(), b"application/json".to_vec()),
        // Known length: no chunked encoding, and the host checks the body matches.
        ("content-length".to_owned(), reply.body.len().to_string().into_bytes()),
    ];
    if let Some(secs) = reply.retry_after {
        headers.push(("retry-after".to_owned(), secs.to_string().into_bytes()));
    }
    if let Some(key) = &reply.idempotency_key {
        headers.push(("idempotency-key".to_owned(), key.clone().into_bytes()));
    }
    let headers = Fields::from_list(&headers).expect("static header names and values are valid");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(reply.status).expect("intake-core only builds valid statuses");
    let body = response.body().expect("a new response's body is taken once");
    out.set(response);
    if let Ok(stream) = body.write() {
        for chunk in reply.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break; // the client went away: nothing left to tell it
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
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
        voter: v.voter.clone(),
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
        wit::PublishError::Conflict(key) => PublishFailure::Conflict { key },
        wit::PublishError::Refused(r) => PublishFailure::Refused(core::Refusal {
            status: r.status,
            code: r.code,
            field: r.field,
            message: r.message,
            details: r.details,
        }),
    }
}
