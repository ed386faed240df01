//! The HTTP intake's logic, free of any runtime: routing, admission (size,
//! content type, parsing and validation through [`bandvote_vote`]) and the
//! JSON replies. The WASI component and the native intake both wrap it, so the
//! two answer byte-for-byte the same and are benchmarked on the same code.
//!
//! Flow: [`route`] → [`admit`] (may answer early with an error [`Reply`]) →
//! publish (the caller's job) → [`reply_published`].

use bandvote_vote::{limits, parse_body, Received, Source, Submission, Vote, VoteError};
use serde_json::{json, Value};

/// Paths that accept votes: what real clients and ingresses post to today,
/// including the paths the clients of the system we replace used.
pub const VOTE_PATHS: &[&str] =
    &["/", "/votes", "/wasm", "/rust", "/grpc", "/insert", "/grpc/insert", "/rust/insert", "/wasm/insert", "/rust/send_data"];

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: the component is instantiable and answering.
    Health,
    /// `POST` to one of [`VOTE_PATHS`].
    Vote,
    /// `GET` / `HEAD` on a vote path: a small JSON status (load generators poll it).
    Status,
    /// A vote path with a method other than POST, GET or HEAD.
    MethodNotAllowed,
    NotFound,
}

/// Route by method and path (query string ignored).
pub fn route(method: &str, path_with_query: &str) -> Route {
    let path = path_with_query.split('?').next().unwrap_or("/");
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    match (method, path) {
        ("GET" | "HEAD", "/healthz") => Route::Health,
        ("POST", p) if VOTE_PATHS.contains(&p) => Route::Vote,
        ("GET" | "HEAD", p) if VOTE_PATHS.contains(&p) => Route::Status,
        (_, p) if VOTE_PATHS.contains(&p) || p == "/healthz" => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// An HTTP answer: always a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Seconds for a `Retry-After` header (503 only).
    pub retry_after: Option<u64>,
    /// An `Idempotency-Key` response header: the id of a vote that may have
    /// been published although the answer is an error; a retry with it is
    /// counted once ([`Reply::may_have_published`]).
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self { status, retry_after: None, idempotency_key: None, body: body.to_string().into_bytes() }
    }

    pub fn error(err: &VoteError) -> Self {
        Self::json(err.http_status(), err.to_json())
    }

    fn simple(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, json!({ "error": { "status": status, "code": code, "message": message } }))
    }

    pub fn health() -> Self {
        Self::json(200, json!({ "status": "ok" }))
    }

    /// What `GET` on a vote path answers: who we are and how to vote.
    pub fn status() -> Self {
        Self::json(
            200,
            json!({
                "service": "bandvote intake",
                "status": "ok",
                "post_votes_to": VOTE_PATHS,
                "content_type": "application/json",
                "accepted_shapes": [
                    { "name": "band", "album": "album", "year": "YYYY", "rank": "1-10" },
                    { "artist": "band", "album": "album", "year": "YYYY", "ranked": "1-10" }
                ],
                "batch": "a JSON array of votes",
                "idempotency": "send an Idempotency-Key header (or vote_id) and retry with the same key",
            }),
        )
    }

    pub fn not_found() -> Self {
        Self::simple(404, "not_found", "no such path; POST votes to /, /votes, /wasm, /rust or /insert")
    }

    pub fn method_not_allowed() -> Self {
        Self::simple(405, "method_not_allowed", "use POST for votes and GET for the status or /healthz")
    }

    pub fn unavailable(failure: &PublishFailure) -> Self {
        let (code, retry) = match failure {
            PublishFailure::Overloaded { retry_after_secs } => ("overloaded", *retry_after_secs),
            PublishFailure::Unavailable(_) => ("kafka_unavailable", 1),
            PublishFailure::Invalid(_) => return Self::simple(422, "invalid_vote", &failure.to_string()),
            PublishFailure::Refused(r) => {
                let mut error = json!({ "status": r.status, "code": r.code, "field": r.field, "message": r.message });
                if let (Some(e), Ok(Value::Object(d))) = (error.as_object_mut(), serde_json::from_str::<Value>(&r.details)) {
                    e.extend(d);
                }
                return Self::json(r.status, json!({ "error": error }));
            }
            PublishFailure::Conflict { key } => {
                let error = json!({ "status": 409, "code": "idempotency_key_reused", "field": "Idempotency-Key", "key": key, "message": failure.to_string() });
                return Self::json(409, json!({ "error": error }));
            }
        };
        let mut reply = Self::simple(503, code, &failure.to_string());
        reply.retry_after = Some(retry.max(1));
        reply
    }

    /// A 500 for a fault inside the intake itself (e.g. a trap), never a hang.
    pub fn internal(message: &str) -> Self {
        Self::simple(500, "internal", message)
    }

    /// A 408 when the client did not send its body within `limit`.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        Self::simple(408, "body_timeout", &format!("the request body did not arrive within {} ms; send it at once", limit.as_millis()))
    }

    /// A 400 when the request body could not be read (the client broke off).
    pub fn bad_body(message: &str) -> Self {
        Self::simple(400, "bad_body", message)
    }

    /// A 503 when the intake did not finish within its deadline. If it had
    /// started publishing, say which votes with [`Self::may_have_published`].
    pub fn timeout() -> Self {
        let mut r = Self::simple(503, "timeout", "the vote was not acknowledged within the deadline");
        r.retry_after = Some(1);
        r
    }

    /// Mark an error reply to a request whose votes may have reached Kafka
    /// (a delivery timeout, a deadline, a fault after publishing): the error
    /// names their ids (`vote_id`, or `vote_ids` for a batch), one vote's id
    /// is also the `Idempotency-Key` response header, and the message says to
    /// retry with it. A retry without it would be a new vote, counted twice
    /// if the first did reach Kafka. No ids: nothing was published, the reply
    /// is unchanged.
    pub fn may_have_published(mut self, vote_ids: &[String]) -> Self {
        let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&self.body) else {
            return self;
        };
        let Some(Value::Object(error)) = body.get_mut("error") else {
            return self;
        };
        let hint = match vote_ids {
            [] => return self,
            [one] => {
                error.insert("vote_id".into(), one.clone().into());
                self.idempotency_key = Some(one.clone());
                format!("; it may still have been published: retry with the header Idempotency-Key: {one} (a retry without it is a second vote)")
            }
            many => {
                error.insert("vote_ids".into(), many.to_vec().into());
                "; they may still have been published: retry each with its vote_id (a retry without it is a second vote)".to_owned()
            }
        };
        let message = error.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
        error.insert("message".into(), format!("{message}{hint}").into());
        self.body = Value::Object(body).to_string().into_bytes();
        self
    }
}

/// The request facts admission needs.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta<'a> {
    pub content_type: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    /// The `X-Voter` header: the voter of every vote in the body that names none.
    pub voter: Option<&'a str>,
    /// The `Content-Length` header, if sent: refused early when over the limit.
    pub content_length: Option<u64>,
}

/// Refuse a body by its declared length before reading it.
pub fn check_declared_length(meta: &RequestMeta<'_>) -> Result<(), Reply> {
    match meta.content_length {
        Some(n) if n > limits::MAX_BODY_BYTES as u64 => Err(Reply::error(&VoteError::BodyTooLarge {
            size: usize::try_from(n).unwrap_or(usize::MAX),
            limit: limits::MAX_BODY_BYTES,
        })),
        _ => Ok(()),
    }
}

/// Check and parse a vote request body. `Err` is the reply to send at once.
pub fn admit(meta: &RequestMeta<'_>, body: &[u8], source: Source, now_ms: i64) -> Result<Submission, Reply> {
    check_declared_length(meta)?;
    let received = Received::new(source, now_ms).with_idempotency_key(meta.idempotency_key.map(str::to_owned))
        .with_voter(meta.voter.map(str::to_owned));
    parse_body(meta.content_type, body, &received).map_err(|e| Reply::error(&e))
}

/// Kafka's acknowledgement of one vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
}

/// Why a vote was not acknowledged (mirrors the WIT `publish-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishFailure {
    Invalid(String),
    /// The key (vote id) stands for a different vote: 409, final.
    Conflict { key: String },
    Overloaded { retry_after_secs: u64 },
    Unavailable(String),
    /// A contest rule refused the vote: final, with its own status and error.
    Refused(Refusal),
}

/// A contest rule's refusal as the publisher reports it (the WIT `refusal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub field: String,
    pub message: String,
    /// A JSON object of extras merged into the error body.
    pub details: String,
}

impl Refusal {
    /// Read a refusal back from the JSON error an intake answers with
    /// (`{"error":{"status","code","field","message",…}}`, as the gRPC
    /// producer puts it in a status message): the `/grpc` hop answers it as is.
    pub fn from_json_error(text: &str) -> Option<Self> {
        let Value::Object(mut e) = serde_json::from_str::<Value>(text).ok()?.get_mut("error")?.take() else { return None };
        let mut text = |k: &str| match e.remove(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let (code, field, message) = (text("code")?, text("field")?, text("message")?);
        let status = u16::try_from(e.remove("status")?.as_u64()?).ok()?;
        Some(Self { status, code, field, message, details: Value::Object(e).to_string() })
    }
}

impl std::fmt::Display for PublishFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(m) => write!(f, "vote refused by the publisher: {m}"),
            Self::Conflict { key } => write!(f, "idempotency key {key:?} was already used for a different vote; use a new key for a new vote"),
            Self::Overloaded { retry_after_secs } => write!(f, "intake overloaded; retry after {retry_after_secs}s"),
            Self::Unavailable(m) => write!(f, "kafka unavailable: {m}"),
            Self::Refused(r) => write!(f, "{}", r.message),
        }
    }
}

/// Result of publishing a submission: one result per vote, or a refusal of the whole batch.
pub type Published = Result<Vec<Result<Ack, PublishFailure>>, PublishFailure>;

/// The answer after publishing: 201 with receipts when every vote was acknowledged;
/// otherwise 503 + Retry-After (or 422) with per-vote results, so a client can
/// retry with the same `Idempotency-Key` and nothing is counted twice.
pub fn reply_published(submission: &Submission, published: Published) -> Reply {
    let results = match published {
        Ok(r) => r,
        Err(f) => return Reply::unavailable(&f),
    };
    let receipt = |v: &Vote, r: &Result<Ack, PublishFailure>| match r {
        Ok(a) => json!({ "vote_id": v.vote_id, "status": "accepted", "partition": a.partition, "offset": a.offset }),
        Err(f) => json!({ "vote_id": v.vote_id, "status": "failed", "message": f.to_string() }),
    };
    let first_failure = results.iter().find_map(|r| r.as_ref().err());
    if !submission.batch {
        return match (&results[..], first_failure) {
            ([r], None) => Reply::json(201, receipt(&submission.votes[0], r)),
            (_, Some(f @ (PublishFailure::Unavailable(_) | PublishFailure::Overloaded { .. }))) => {
                Reply::unavailable(f).may_have_published(std::slice::from_ref(&submission.votes[0].vote_id))
            }
            (_, Some(f)) => Reply::unavailable(f),
            _ => Reply::internal("publisher returned the wrong number of results"),
        };
    }
    if results.len() != submission.votes.len() {
        return Reply::internal("publisher returned the wrong number of results");
    }
    let receipts: Vec<Value> = submission.votes.iter().zip(&results).map(|(v, r)| receipt(v, r)).collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let body = json!({ "accepted": accepted, "failed": results.len() - accepted, "receipts": receipts });
    match first_failure {
        None => Reply::json(201, body),
        Some(f) => {
            let mut reply = Reply::unavailable(f);
            reply.body = body.to_string().into_bytes();
            reply
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTE: &[u8] = br#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#;

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn a_reused_key_is_409_naming_it() {
        let r = Reply::unavailable(&PublishFailure::Conflict { key: "k-1".into() });
        assert_eq!((r.status, r.retry_after), (409, None));
        let b = body(&r);
        assert_eq!((b["error"]["code"].as_str(), b["error"]["field"].as_str(), b["error"]["key"].as_str()), (Some("idempotency_key_reused"), Some("Idempotency-Key"), Some("k-1")));
    }

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/"), Route::Vote);
        assert_eq!(route("POST", "/wasm/?x=1"), Route::Vote);
        assert_eq!(route("POST", "/rust"), Route::Vote);
        assert_eq!(route("GET", "/healthz"), Route::Health);
        assert_eq!(route("GET", "/"), Route::Status);
        assert_eq!(route("HEAD", "/wasm"), Route::Status);
        assert_eq!(route("DELETE", "/"), Route::MethodNotAllowed);
        for legacy in ["/insert", "/grpc/insert", "/rust/insert", "/wasm/insert", "/rust/send_data"] {
            assert_eq!(route("POST", legacy), Route::Vote, "{legacy}");
        }
        assert_eq!(Reply::status().status, 200);
        assert_eq!(route("POST", "/nope"), Route::NotFound);
    }

    #[test]
    fn admits_and_replies() {
        let meta = RequestMeta { idempotency_key: Some("k1"), ..Default::default() };
        let s = admit(&meta, VOTE, Source::Http, 5).unwrap();
        let r = reply_published(&s, Ok(vec![Ok(Ack { partition: 2, offset: 7 })]));
        assert_eq!(r.status, 201);
        assert_eq!(body(&r)["vote_id"], "k1");
        assert_eq!(body(&r)["offset"], 7);
    }

    #[test]
    fn refusals() {
        let meta = RequestMeta { content_length: Some(10 << 20), ..Default::default() };
        assert_eq!(admit(&meta, b"", Source::Http, 0).unwrap_err().status, 413);
        let meta = RequestMeta { content_type: Some("text/xml"), ..Default::default() };
        assert_eq!(admit(&meta, VOTE, Source::Http, 0).unwrap_err().status, 415);
        let r = admit(&RequestMeta::default(), br#"{"name":"a"}"#, Source::Http, 0).unwrap_err();
        assert_eq!((r.status, body(&r)["error"]["field"].as_str()), (422, Some("album")));
        let s = admit(&RequestMeta::default(), VOTE, Source::Http, 0).unwrap();
        let r = reply_published(&s, Err(PublishFailure::Overloaded { retry_after_secs: 2 }));
        assert_eq!((r.status, r.retry_after), (503, Some(2)));
        let r = reply_published(&s, Ok(vec![Err(PublishFailure::Unavailable("down".into()))]));
        assert_eq!((r.status, r.retry_after), (503, Some(1)));
    }

    /// A 503 after a publish that may have reached Kafka names the vote's id
    /// (body and Idempotency-Key header), so a client that sent no key can
    /// retry without counting twice; the same for a deadline after publishing.
    #[test]
    fn an_error_that_may_have_published_carries_the_vote_id() {
        let s = admit(&RequestMeta::default(), VOTE, Source::Http, 0).unwrap();
        let id = s.votes[0].vote_id.clone();
        let r = reply_published(&s, Ok(vec![Err(PublishFailure::Unavailable("delivery timed out".into()))]));
        assert_eq!((r.status, r.idempotency_key.as_deref()), (503, Some(id.as_str())));
        let b = body(&r);
        assert_eq!(b["error"]["vote_id"].as_str(), Some(id.as_str()));
        assert!(b["error"]["message"].as_str().unwrap().contains(&format!("Idempotency-Key: {id}")), "{b}");
        let t = Reply::timeout().may_have_published(std::slice::from_ref(&id));
        assert_eq!((t.status, t.idempotency_key.as_deref(), body(&t)["error"]["vote_id"].as_str()), (503, Some(id.as_str()), Some(id.as_str())));
        let none = Reply::timeout().may_have_published(&[]);
        assert_eq!((none.idempotency_key.as_deref(), body(&none)["error"].get("vote_id")), (None, None), "nothing published: nothing to name");
        let final_ = reply_published(&s, Ok(vec![Err(PublishFailure::Conflict { key: id.clone() })]));
        assert_eq!((final_.status, final_.idempotency_key.as_deref()), (409, None));
    }

    #[test]
    fn batch_partial_failure_is_503_with_receipts() {
        let two = format!("[{},{}]", std::str::from_utf8(VOTE).unwrap(), std::str::from_utf8(VOTE).unwrap());
        let s = admit(&RequestMeta::default(), two.as_bytes(), Source::Http, 0).unwrap();
        let ok = reply_published(&s, Ok(vec![Ok(Ack { partition: 0, offset: 1 }), Ok(Ack { partition: 1, offset: 1 })]));
        assert_eq!((ok.status, body(&ok)["accepted"].as_u64()), (201, Some(2)));
        let part = reply_published(&s, Ok(vec![Ok(Ack { partition: 0, offset: 1 }), Err(PublishFailure::Unavailable("x".into()))]));
        assert_eq!((part.status, body(&part)["failed"].as_u64()), (503, Some(1)));
    }
}
