//! The results web app: one page (`static/index.html`) and a JSON API.
//!
//! * `GET /api/results`: totals, leaderboards by band and album, votes per second (last 60 s).
//! * `GET /api/stream`: the same as Server-Sent Events, every 500 ms (`results` or `error` events).
//!   One poller per process reads Redis and fans the result out to every
//!   open stream (`tokio::sync::watch`): Redis load does not grow with viewers.
//! * `GET /api/log?size=20&band=…&before=<cursor>`: the vote log from MongoDB, newest
//!   first, keyset-paginated (`next` is the following page's cursor); estimated totals.
//! * `GET /api/contest`: the current contest (roster, window, phase, live
//!   tally by band and status) and, once certified, its final result and digest.
//! * `GET /api/receipt/{vote_id}`: where one vote stands (`counted`,
//!   `over_limit`, `late`, `early`, `unknown_band`, `pending` while stored and
//!   not yet counted, `unknown`: not stored yet or no such vote). Only the
//!   holder of the id can ask: ids are random and never on a public page.
//! * `GET /vote`: the ballot (`static/vote.html`): the current contest's
//!   roster as tap targets (without a contest, a free-text form), the
//!   state and countdown, Spanish and English, a receipt that turns
//!   "counted". `POST /api/vote` forwards its votes to the intake.
//! * `GET /healthz`, `GET /readyz`.
//!
//! Redis and MongoDB are connected lazily and reconnected on failure, so the
//! page shows a banner (not a blank page) while either is down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bandvote_store::VoteLog;
use bandvote_store::keys::Board;
use bandvote_store::{ContestStore, Counters, LogCursor};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};

static INDEX_HTML: &str = include_str!("../static/index.html");
static VOTE_HTML: &str = include_str!("../static/vote.html");

/// The ballot page's settings.
#[derive(Debug, Clone)]
pub struct Ballot {
    /// Where the ballot posts votes (relative to the page, same origin):
    /// `api/vote` (this app forwards to `intake_url`), or an Ingress path of
    /// the intake such as `/wasm`.
    pub post_path: String,
    /// The intake `POST /api/vote` forwards to (body, `Idempotency-Key`,
    /// `X-Voter`, and the intake's answer back as it is); `None`: no forwarding.
    pub intake_url: Option<String>,
}

impl Default for Ballot {
    fn default() -> Self {
        Self { post_path: "api/vote".into(), intake_url: None }
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub struct Sources {
    pub redis_url: String,
    pub redis_prefix: String,
    pub mongo_url: String,
    pub mongo_db: String,
    pub mongo_collection: String,
}

/// How often the poller reads Redis for the live stream.
const STREAM_EVERY: Duration = Duration::from_millis(500);

/// One SSE message: its event name (`results` or `error`) and JSON data.
type Snapshot = Option<Arc<(&'static str, String)>>;

/// Lazily connected readers, and the live snapshot every stream shares.
pub struct AppState {
    sources: Sources,
    counters: Mutex<Option<Counters>>,
    log: Mutex<Option<VoteLog>>,
    live: watch::Sender<Snapshot>,
    poller: std::sync::Once,
    contests: std::sync::OnceLock<ContestStore>,
    ballot: Ballot,
    http: reqwest::Client,
}

impl AppState {
    pub fn new(sources: Sources) -> Arc<Self> {
        Self::with_ballot(sources, Ballot::default())
    }

    pub fn with_ballot(sources: Sources, ballot: Ballot) -> Arc<Self> {
        Arc::new(Self {
            sources,
            counters: Mutex::new(None),
            log: Mutex::new(None),
            live: watch::Sender::new(None),
            poller: std::sync::Once::new(),
            contests: std::sync::OnceLock::new(),
            ballot,
            http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("an HTTP client without TLS builds"),
        })
    }

    /// Subscribe to the live snapshot; the first subscriber starts the poller,
    /// which reads Redis every [`STREAM_EVERY`] while anyone is subscribed.
    fn subscribe(self: &Arc<Self>) -> watch::Receiver<Snapshot> {
        let rx = self.live.subscribe();
        self.poller.call_once(|| {
            let state = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(s) = state.upgrade() {
                    if s.live.receiver_count() > 0 {
                        let snapshot = match s.results().await {
                            Ok(v) => ("results", v.to_string()),
                            Err(e) => {
                                s.counters.lock().await.take();
                                ("error", json!({ "message": e }).to_string())
                            }
                        };
                        s.live.send_replace(Some(Arc::new(snapshot)));
                    }
                    drop(s);
                    tokio::time::sleep(STREAM_EVERY).await;
                }
            });
        });
        rx
    }

    /// The Redis reader, connecting if there is none. The lock is never held
    /// across the (up to 2 s) connect: no request waits behind another's.
    async fn counters(&self) -> Result<Counters, String> {
        if let Some(c) = self.counters.lock().await.as_ref() {
            return Ok(c.clone());
        }
        let connect = Counters::connect(&self.sources.redis_url, &self.sources.redis_prefix);
        let c = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .map_err(|_| "redis: connection timed out".to_string())?
            .map_err(|e| format!("redis: {e}"))?;
        Ok(self.counters.lock().await.get_or_insert(c).clone())
    }

    /// The MongoDB reader (opening it does not touch the server).
    async fn log(&self) -> Result<VoteLog, String> {
        if let Some(l) = self.log.lock().await.as_ref() {
            return Ok(l.clone());
        }
        let l = VoteLog::open(&self.sources.mongo_url, &self.sources.mongo_db, &self.sources.mongo_collection)
            .await
            .map_err(|e| format!("mongodb: {e}"))?;
        Ok(self.log.lock().await.get_or_insert(l).clone())
    }

    /// The results document, or why it cannot be read.
    pub async fn results(&self) -> Result<Value, String> {
        let c = self.counters().await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let read = async {
            let total = c.total().await?;
            let bands = c.top(Board::Bands, 20).await?;
            let albums = c.top(Board::Albums, 20).await?;
            // The current second is still filling: show the 60 before it.
            let per_second = c.per_second(now - 1, 60).await?;
            Ok::<_, redis::RedisError>((total, bands, albums, per_second))
        };
        let (total, bands, albums, per_second) =
            tokio::time::timeout(Duration::from_secs(2), read).await.map_err(|_| "redis: timed out".to_string())?.map_err(|e| format!("redis: {e}"))?;
        let rate = per_second.iter().rev().take(5).map(|(_, n)| *n).sum::<u64>() as f64 / 5.0;
        let entries = |v: Vec<(String, u64)>| v.into_iter().map(|(name, votes)| json!({ "name": name, "votes": votes })).collect::<Vec<_>>();
        Ok(json!({
            "total": total,
            "votes_per_second": rate,
            "bands": entries(bands),
            "albums": entries(albums),
            "per_second": per_second.into_iter().map(|(s, n)| json!([s, n])).collect::<Vec<_>>(),
            "updated_at_ms": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        }))
    }
}

/// The app's routes.
pub fn router(state: Arc<AppState>) -> Router {
    // The routes that read a store answer within STORE_DEADLINE, whatever
    // the network does (the stream and the vote forward have their own bounds).
    let reads = Router::new()
        .route("/api/results", get(results))
        .route("/api/log", get(log_page))
        .route("/api/contest", get(contest))
        .route("/api/receipt/{vote_id}", get(receipt))
        .route("/api/contest/{id}/bulletin", get(bulletin))
        .route("/api/contest/{id}/bulletin/index", get(bulletin_index))
        .route_layer(axum::middleware::from_fn(within_store_deadline));
    Router::new()
        .route("/", get(|| async { Html(INDEX_HTML) }))
        .route("/vote", get(ballot))
        .route("/api/vote", axum::routing::post(forward_vote))
        .route("/api/stream", get(stream))
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(readyz))
        .merge(reads)
        .with_state(state)
}

/// Longest a request that reads Redis or MongoDB waits: a store cut off
/// without a reset (a blackhole, a partition) gets a 503 the page shows as
/// its banner, never a request that hangs.
pub const STORE_DEADLINE: Duration = Duration::from_secs(3);

async fn within_store_deadline(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(STORE_DEADLINE, next.run(req)).await {
        Ok(r) => r,
        Err(_) => unavailable(format!("a store did not answer within {} ms", STORE_DEADLINE.as_millis())),
    }
}

fn unavailable(message: String) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], Json(json!({ "error": { "status": 503, "code": "unavailable", "message": message } })))
        .into_response()
}

async fn results(State(s): State<Arc<AppState>>) -> Response {
    match s.results().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            s.counters.lock().await.take();
            unavailable(e)
        }
    }
}

async fn stream(State(s): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = s.subscribe();
    // The current snapshot at once (if any), then every new one.
    rx.mark_changed();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            let snapshot = rx.borrow_and_update().clone();
            if let Some(snap) = snapshot {
                let (kind, data) = &*snap;
                return Some((Ok(Event::default().event(*kind).data(data.as_str())), rx));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[derive(Deserialize)]
struct LogQuery {
    size: Option<i64>,
    band: Option<String>,
    /// Cursor of the page: votes strictly older than it (from the previous page's `next`).
    before: Option<String>,
}

async fn log_page(State(s): State<Arc<AppState>>, Query(q): Query<LogQuery>) -> Response {
    let size = q.size.unwrap_or(20).clamp(1, 200);
    let band = q.band.filter(|b| !b.trim().is_empty());
    let before = match q.before.as_deref().filter(|c| !c.is_empty()).map(str::parse::<LogCursor>).transpose() {
        Ok(c) => c,
        Err(problem) => {
            let body = json!({ "error": { "code": "invalid_cursor", "field": "before", "message": problem } });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let log = match s.log().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let page = match log.page(band.as_deref(), before.as_ref(), size).await {
        Ok(page) => page,
        Err(e) => return unavailable(format!("mongodb: {e}")),
    };
    // Totals are estimates: the collection's metadata, or the band's live
    // counter in Redis; counting documents would scan.
    let total = match &band {
        None => log.estimated_count().await.ok(),
        Some(b) => match s.counters().await {
            Ok(c) => c.band_total(b).await.ok(),
            Err(_) => None,
        },
    };
    let votes: Vec<Value> = page
        .entries
        .iter()
        .map(|e| {
            json!({
                "band": e.band, "album": e.album, "year": e.year, "rank": e.rank, "source": e.source,
                "received_at_ms": e.at.received_at_ms, "partition": e.at.partition, "offset": e.at.offset,
            })
        })
        .collect();
    if page.unreadable > 0 {
        tracing::warn!(unreadable = page.unreadable, "log page: documents that are not votes left out");
    }
    let next = page.next.map(|c| c.to_string());
    let body = json!({
        "size": size, "band": band, "total": total, "total_is_estimate": true, "next": next, "votes": votes,
        "unreadable": page.unreadable,
    });
    Json(body).into_response()
}

/// The ballot in the reader's language (`Accept-Language`: Spanish or English; a switch on the page).
async fn ballot(State(s): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    let lang = preferred_language(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or(""));
    let post = s.ballot.post_path.replace(['"', '<', '>', '&'], "");
    Html(VOTE_HTML.replace("__LANG__", lang).replace("__POST_PATH__", &post)).into_response()
}

/// `es` or `en`, whichever `Accept-Language` ranks first (default `es`: the contest is Guatemalan).
pub fn preferred_language(accept: &str) -> &'static str {
    let mut best: Option<(f32, &'static str)> = None;
    for part in accept.split(',') {
        let mut it = part.trim().split(';');
        let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
        let lang = if tag.starts_with("es") { "es" } else if tag.starts_with("en") { "en" } else { continue };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map_or("es", |(_, l)| l)
}

/// The ballot's votes go to the real intake (same validation, same errors):
/// forwarded as they came, with `Idempotency-Key` and `X-Voter`, and the
/// intake's status, body and `Retry-After` / `Idempotency-Key` answered back.
/// An intake that cannot be reached is a 503 with `Retry-After` (the ballot retries).
async fn forward_vote(State(s): State<Arc<AppState>>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    if body.len() > 262_144 {
        let e = json!({ "error": { "status": 413, "code": "body_too_large", "message": "the body is larger than 262144 bytes" } });
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(e)).into_response();
    }
    let Some(intake) = &s.ballot.intake_url else {
        let e = json!({ "error": { "status": 404, "code": "not_found", "message": "this web app forwards no votes (no --intake-url): post to the intake" } });
        return (StatusCode::NOT_FOUND, Json(e)).into_response();
    };
    let mut req = s.http.post(intake).body(body);
    for name in ["content-type", "idempotency-key", "x-voter"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %intake, "ballot: intake unreachable");
            return unavailable("the intake cannot be reached; retry".into());
        }
    };
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = axum::http::HeaderMap::new();
    out.insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    for name in ["retry-after", "idempotency-key"] {
        if let Some(v) = res.headers().get(name).and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok()) {
            out.insert(axum::http::HeaderName::from_static(name), v);
        }
    }
    match res.bytes().await {
        Ok(b) => (status, out, b).into_response(),
        Err(_) => unavailable("the intake's answer was cut off; retry with the same Idempotency-Key".into()),
    }
}

async fn contest(State(s): State<Arc<AppState>>) -> Response {
    let store = match s.contests.get() {
        Some(st) => st.clone(),
        None => match ContestStore::new(&s.sources.redis_url, &s.sources.redis_prefix) {
            Ok(st) => s.contests.get_or_init(|| st).clone(),
            Err(e) => return unavailable(format!("redis: {e}")),
        },
    };
    let c = match store.current().await {
        Ok(Some(c)) => c,
        Ok(None) => return Json(json!({ "contest": null })).into_response(),
        Err(e) => return unavailable(e.to_string()),
    };
    let tally = match store.tally(&c.id).await {
        Ok(t) => t,
        Err(e) => return unavailable(e.to_string()),
    };
    let certificate = match s.log().await {
        Ok(log) => log.certificate(&c.id).await.ok().flatten(),
        Err(_) => None,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let mut bands: Vec<(String, u64)> = c.roster.iter().map(|e| (e.band.clone(), tally.by_band.get(&e.band).copied().unwrap_or(0))).collect();
    if bands.is_empty() {
        bands = tally.by_band.clone().into_iter().collect();
    }
    bands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Json(json!({
        "contest": {
            "id": c.id, "title": c.title, "roster": c.roster, "opens_at_ms": c.opens_at_ms, "closes_at_ms": c.closes_at_ms,
            "votes_per_voter": c.votes_per_voter, "voters": c.voters, "phase": if certificate.is_some() { json!("final") } else { json!(c.phase(now)) },
        },
        "now_ms": now,
        "tally": {
            "counted": tally.total, "voters": tally.voters, "by_status": tally.by_status,
            "bands": bands.into_iter().map(|(name, votes)| json!({ "name": name, "votes": votes })).collect::<Vec<_>>(),
        },
        "certificate": certificate,
    }))
    .into_response()
}

/// A certified contest's bulletin (`docs/bulletin.md`), streamed as NDJSON
/// from MongoDB, its root (the certificate's) in `X-Bulletin-Root`.
async fn bulletin(state: State<Arc<AppState>>, id: axum::extract::Path<String>) -> Response {
    certified_ndjson(state, id, |log, id| async move { Ok(log.bulletin(&id).await?.map_ok(|l| l.text()).map_err(std::io::Error::other).boxed()) }).await
}

/// A certified contest's bulletin index (`docs/bulletin.md`: each run of
/// 256 lines' root), NDJSON, with the certificate's root in `X-Bulletin-Root`.
async fn bulletin_index(state: State<Arc<AppState>>, id: axum::extract::Path<String>) -> Response {
    certified_ndjson(state, id, |log, id| async move {
        Ok(log.bulletin_index(&id).await?.map_ok(|e| serde_json::to_string(&e).expect("an index entry serialises")).map_err(std::io::Error::other).boxed())
    })
    .await
}

type Lines = futures::stream::BoxStream<'static, std::io::Result<String>>;

/// Contest `id`'s certified NDJSON from `lines` (404 before certification),
/// streamed, the certificate's root in `X-Bulletin-Root`.
async fn certified_ndjson<F, Fut>(State(s): State<Arc<AppState>>, axum::extract::Path(id): axum::extract::Path<String>, lines: F) -> Response
where
    F: FnOnce(VoteLog, String) -> Fut,
    Fut: std::future::Future<Output = Result<Lines, Box<dyn std::error::Error + Send + Sync>>>,
{
    let log = match s.log().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let cert = match log.certificate(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let body = json!({ "error": { "status": 404, "code": "not_found", "field": "id", "message": format!("contest {id:?} is not certified: no bulletin") } });
            return (StatusCode::NOT_FOUND, Json(body)).into_response();
        }
        Err(e) => return unavailable(format!("mongodb: {e}")),
    };
    let lines = match lines(log, id).await {
        Ok(l) => l,
        Err(e) => return unavailable(format!("mongodb: {e}")),
    };
    let body = axum::body::Body::from_stream(lines.map_ok(|l| l + "\n"));
    ([(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8".to_owned()), (header::HeaderName::from_static("x-bulletin-root"), cert.bulletin_root)], body).into_response()
}

async fn receipt(State(s): State<Arc<AppState>>, axum::extract::Path(vote_id): axum::extract::Path<String>) -> Response {
    if vote_id.is_empty() || vote_id.len() > 200 {
        let body = json!({ "error": { "status": 400, "code": "invalid_field", "field": "vote_id", "message": "not a vote id" } });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let log = match s.log().await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let doc = match log.find(&vote_id).await {
        Ok(d) => d,
        Err(e) => return unavailable(format!("mongodb: {e}")),
    };
    let Some(d) = doc else {
        return Json(json!({ "vote_id": vote_id, "status": "unknown", "message": "not stored yet (the consumer may still be on its way) or no such vote" })).into_response();
    };
    let entry = bandvote_store::LogEntry::of(&d);
    // Stored is not yet counted: the partition's applied offset says whether the counters have it.
    let applied = match (s.counters().await, d.get_document("kafka").ok().and_then(|k| k.get_str("topic").ok())) {
        (Ok(c), Some(topic)) => c.applied_offsets(topic).await.ok(),
        _ => None,
    };
    let counted_yet = match (&entry, applied) {
        (Some(e), Some(a)) => a.get(&e.at.partition).is_some_and(|o| *o >= e.at.offset),
        _ => false,
    };
    let status = match d.get_str("status").ok() {
        _ if !counted_yet => "pending",
        Some(s) => s,
        None => "counted",
    };
    // In a certified contest: the vote's line in the bulletin and the audit
    // path to the certificate's root, which the ballot checks itself.
    let bulletin = match d.get_str("contest").ok() {
        Some(contest) => inclusion(&log, contest, &vote_id).await,
        None => None,
    };
    Json(json!({
        "vote_id": vote_id, "status": status, "band": entry.as_ref().map(|e| e.band.clone()), "contest": d.get_str("contest").ok(),
        "received_at_ms": entry.as_ref().map(|e| e.at.received_at_ms), "bulletin": bulletin,
    }))
    .into_response()
}

/// Vote `vote_id`'s inclusion proof in certified contest `contest`'s
/// bulletin (`docs/bulletin.md`): its line, its index, the tree's size, the
/// audit path (RFC 9162 §2.1.3) and the certificate's root. `None` before
/// certification or when the vote is not in it. Reads one chunk of the
/// bulletin and its index ([`VoteLog::bulletin_inclusion`]).
async fn inclusion(log: &VoteLog, contest: &str, vote_id: &str) -> Option<Value> {
    use bandvote_contest::bulletin::hex;
    let cert = log.certificate(contest).await.ok()??;
    if cert.bulletin_root.is_empty() {
        return None;
    }
    let p = log.bulletin_inclusion(contest, vote_id).await.ok()??;
    let path: Vec<String> = p.path.iter().map(hex).collect();
    Some(json!({ "root": cert.bulletin_root, "size": p.size, "index": p.index, "line": p.line, "path": path }))
}

/// Ready = the process serves (its page, and the page's banner when a store
/// is down): always 200, so a store outage never takes the page away behind
/// a load balancer. The stores' state is in the body, as `ok` / `unavailable`
/// (details in the log, not on a public endpoint).
async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    // Each store answers within 400 ms or is reported unavailable (a probe waits 1 s).
    let within = Duration::from_millis(400);
    let redis = tokio::time::timeout(within, async {
        match s.counters().await {
            Ok(c) => c.ping().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    });
    let mongo = tokio::time::timeout(within, async {
        match s.log().await {
            Ok(l) => l.ping().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    });
    let (redis, mongo) = tokio::join!(redis, mongo);
    let late = |what: &str| format!("{what}: no answer within {} ms", within.as_millis());
    let redis = redis.unwrap_or_else(|_| Err(late("redis")));
    let mongo = mongo.unwrap_or_else(|_| Err(late("mongodb")));
    let state = |r: &Result<(), String>, store: &str| match r {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(store, error = %e, "store unavailable");
            "unavailable"
        }
    };
    let body = json!({ "status": "ok", "redis": state(&redis, "redis"), "mongodb": state(&mongo, "mongodb") });
    (StatusCode::OK, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::preferred_language;

    #[test]
    fn the_ballot_speaks_the_readers_language() {
        assert_eq!(preferred_language("es-GT,es;q=0.9,en;q=0.8"), "es");
        assert_eq!(preferred_language("en-US,en;q=0.9,es;q=0.5"), "en");
        assert_eq!(preferred_language("de-DE,en;q=0.3,es;q=0.7"), "es");
        assert_eq!(preferred_language("fr"), "es", "neither: the contest's own language");
        assert_eq!(preferred_language(""), "es");
    }
}
