//! The Spin adapter: `bandvote:publisher` over outbound HTTP.
//!
//! Each publish becomes `POST {kafka_rest_url}/topics/{topic}` with
//! `application/vnd.kafka.json.v2+json` and the canonical vote as the record
//! value (the REST bridge re-checks it and publishes the same record the native
//! publisher would). Its settings are runtime configuration: the keys
//! `kafka_rest_url` (required) and `kafka_topic` of `wasi:config/store`, i.e.
//! Spin variables under Spin (`[component.intake.variables]` in spin.toml,
//! `spin up --variable`, `SPIN_VARIABLE_KAFKA_REST_URL`) and SpinKube (a
//! SpinApp's `spec.variables`); where the store has no value, the environment
//! variables `KAFKA_REST_URL` / `KAFKA_TOPIC` (`wasmtime serve --env`).
//!
//! wasi:http resources are dropped children first (body stream before body,
//! body before response, response before its future): wasmtime 42, which
//! SpinKube's shim runs, traps on a parent dropped before its child.

use std::io::{Read as _, Write as _};

use bandvote_vote::{Source, Vote};
use serde_json::{json, Value};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

wit_bindgen::generate!({
    path: "../../wit",
    world: "publisher-adapter",
    generate_all,
});

use exports::bandvote::publisher::publisher::{Ack, Guest, PublishError, Refusal, Vote as WitVote};
use exports::bandvote::publisher::publisher::Source as WitSource;

const MEDIA_TYPE: &str = "application/vnd.kafka.json.v2+json";

struct Adapter;

export!(Adapter);

/// A setting: the runtime's configuration store (`key`), else the
/// environment (`KEY`). Empty counts as unset.
fn config(key: &str) -> Option<String> {
    let from_store = wasi::config::store::get(key).ok().flatten();
    from_store.or_else(|| std::env::var(key.to_ascii_uppercase()).ok()).filter(|v| !v.is_empty())
}

fn to_vote(v: WitVote) -> Vote {
    Vote {
        vote_id: v.vote_id,
        band: v.band,
        album: v.album,
        year: v.year,
        rank: v.rank,
        source: match v.source {
            WitSource::Http => Source::Http,
            WitSource::Grpc => Source::Grpc,
        },
        received_at_ms: v.received_at_ms,
        voter: v.voter,
        contest: None,
    }
}

/// POST the votes as one produce request; one result per vote.
fn produce(votes: Vec<WitVote>) -> Result<Vec<Result<Ack, PublishError>>, PublishError> {
    let n = votes.len();
    let ids: Vec<String> = votes.iter().map(|v| v.vote_id.clone()).collect();
    let records: Vec<Value> = votes.into_iter().map(to_vote).map(|v| json!({ "key": v.vote_id, "value": v })).collect();
    let body = json!({ "records": records }).to_string();
    let base = config("kafka_rest_url")
        .ok_or_else(|| PublishError::Unavailable("the REST proxy URL is not set (Spin variable kafka_rest_url, or KAFKA_REST_URL)".into()))?;
    let topic = config("kafka_topic").unwrap_or_else(|| bandvote_vote::record::TOPIC.into());
    let (status, retry_after, response) = post(&base, &format!("/topics/{topic}"), body.as_bytes())?;
    let parsed: Value = serde_json::from_slice(&response).unwrap_or(Value::Null);
    let message = parsed["message"].as_str().unwrap_or("").to_owned();
    match status {
        200 => {
            let offsets = parsed["offsets"].as_array().cloned().unwrap_or_default();
            if offsets.len() != n {
                return Err(PublishError::Unavailable(format!("REST proxy answered {} offsets for {n} records", offsets.len())));
            }
            Ok(offsets
                .iter()
                .zip(ids)
                .map(|(o, id)| match (o["partition"].as_i64(), o["offset"].as_i64()) {
                    (Some(p), Some(off)) if o["error_code"].is_null() => Ok(Ack { partition: p as i32, offset: off }),
                    _ if o["error_code"].as_i64() == Some(40901) => Err(PublishError::Conflict(id)),
                    // <status>10: a contest rule refused it; `error` is the intake's JSON error.
                    _ if o["error_code"].as_i64().is_some_and(|c| c % 100 == 10 && (40000..50000).contains(&c)) => Err(refusal(o)),
                    // 422xx: refused for good (a new band name past the cap).
                    _ if o["error_code"].as_i64().is_some_and(|c| (42200..42300).contains(&c)) => {
                        Err(PublishError::Invalid(o["error"].as_str().unwrap_or("vote refused").to_owned()))
                    }
                    _ => Err(PublishError::Unavailable(o["error"].as_str().unwrap_or("record not acknowledged").to_owned())),
                })
                .collect())
        }
        429 => Err(PublishError::Overloaded(retry_after.unwrap_or(1).saturating_mul(1000))),
        400 | 422 => Err(PublishError::Invalid(message)),
        s => Err(PublishError::Unavailable(format!("REST proxy answered {s}: {message}"))),
    }
}

/// A contest rule's refusal from the REST bridge's per-record error.
fn refusal(o: &Value) -> PublishError {
    let body: Value = o["error"].as_str().and_then(|s| serde_json::from_str(s).ok()).unwrap_or(Value::Null);
    let e = &body["error"];
    let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let mut details = e.as_object().cloned().unwrap_or_default();
    for k in ["status", "code", "field", "message"] {
        details.remove(k);
    }
    PublishError::Refused(Refusal {
        status: e["status"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(422),
        code: text("code"),
        field: text("field"),
        message: text("message"),
        details: Value::Object(details).to_string(),
    })
}

/// Split `http://host:port/prefix` into scheme, authority and path prefix.
fn split_url(url: &str) -> Result<(Scheme, String, String), PublishError> {
    let bad = || PublishError::Unavailable(format!("bad KAFKA_REST_URL {url:?}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority.to_owned(), format!("/{}", prefix.trim_end_matches('/')).trim_end_matches('/').to_owned()))
}

/// Nanoseconds in a second (wasi:http's durations).
const SECOND: u64 = 1_000_000_000;

/// Bounds on one REST request, so a bridge that stops answering (a cut
/// link, a hung process) costs the vote a 503 within the client's 10 s, not
/// a hang: connect 2 s, first byte 8 s (the bridge itself answers within
/// its 5 s delivery timeout), 2 s between bytes. A runtime that does not
/// take an option keeps its own bound for it.
fn request_options() -> RequestOptions {
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(2 * SECOND));
    let _ = options.set_first_byte_timeout(Some(8 * SECOND));
    let _ = options.set_between_bytes_timeout(Some(2 * SECOND));
    options
}

fn post(base: &str, path: &str, body: &[u8]) -> Result<(u16, Option<u32>, Vec<u8>), PublishError> {
    let unavailable = |what: &str| PublishError::Unavailable(format!("REST proxy request: {what}"));
    let (scheme, authority, prefix) = split_url(base)?;
    let headers = Fields::new();
    headers.append("content-type", MEDIA_TYPE.as_bytes()).map_err(|_| unavailable("header"))?;
    headers.append("accept", b"application/vnd.kafka.v2+json").map_err(|_| unavailable("header"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|()| unavailable("method"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| unavailable("scheme"))?;
    request.set_authority(Some(&authority)).map_err(|()| unavailable("authority"))?;
    request.set_path_with_query(Some(&format!("{prefix}{path}"))).map_err(|()| unavailable("path"))?;
    let outgoing = request.body().map_err(|()| unavailable("body"))?;
    let future = outgoing_handler::handle(request, Some(request_options())).map_err(|e| unavailable(&format!("{e:?}")))?;
    {
        let mut stream = outgoing.write().map_err(|()| unavailable("body stream"))?;
        for chunk in body.chunks(4096) {
            stream.write_all(chunk).map_err(|e| unavailable(&e.to_string()))?;
        }
        stream.flush().map_err(|e| unavailable(&e.to_string()))?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| unavailable(&format!("{e:?}")))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(code))) => return Err(unavailable(&format!("{code:?}"))),
        _ => return Err(unavailable("no response")),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
    let incoming = response.consume().map_err(|()| unavailable("response body"))?;
    let mut bytes = Vec::new();
    {
        let mut stream = incoming.stream().map_err(|()| unavailable("response stream"))?;
        stream.by_ref().take(1 << 20).read_to_end(&mut bytes).map_err(|e| unavailable(&e.to_string()))?;
    }
    Ok((status, retry_after, bytes))
}

impl Guest for Adapter {
    fn publish(v: WitVote) -> Result<Ack, PublishError> {
        produce(vec![v])?.pop().unwrap_or_else(|| Err(PublishError::Unavailable("empty answer".into())))
    }

    fn publish_batch(votes: Vec<WitVote>) -> Result<Vec<Result<Ack, PublishError>>, PublishError> {
        produce(votes)
    }

    /// Spin cannot answer for the component: the intake publishes and answers.
    fn hand_off(_votes: Vec<WitVote>, _batch: bool) -> bool {
        false
    }
}
