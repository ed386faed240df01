//! The intake component on our wasmtime host, against real nisshi (Kafka).
//! Needs `BANDVOTE_INTAKE_WASM` (scripts/test.sh sets it) and the services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bandvote_host::metrics::HostMetrics;
use bandvote_host::publisher::PublisherHost;
use bandvote_host::runtime::{IntakeRuntime, RuntimeConfig};
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_testkit as kit;
use serde_json::Value;

fn component() -> PathBuf {
    let path = std::env::var("BANDVOTE_INTAKE_WASM").expect("BANDVOTE_INTAKE_WASM: run through scripts/test.sh (builds the component)");
    PathBuf::from(path)
}

struct Running {
    addr: SocketAddr,
    runtime: Arc<IntakeRuntime>,
}

async fn start(publisher: PublisherConfig, limits: RuntimeConfig) -> Running {
    serve(VotePublisher::new(publisher).unwrap(), limits).await
}

/// The intake component on `publisher`, served on a loopback port.
async fn serve(publisher: impl bandvote_admission::Publish, limits: RuntimeConfig) -> Running {
    let runtime = IntakeRuntime::new(&component(), PublisherHost::new(publisher, HostMetrics::new()), limits).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(bandvote_host::server::serve_intake(listener, runtime.clone(), std::future::pending(), Duration::from_secs(1)));
    Running { addr, runtime }
}

fn limits() -> RuntimeConfig {
    RuntimeConfig { max_concurrent: 16, slot_wait: Duration::from_millis(200), request_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(5), instance_memory_bytes: 32 << 20, max_connections: 10_000, guest_perf_map: false, compile_cache: None, instance_reuse: 64, instance_idle: Duration::from_secs(10), host_replies: true }
}

async fn start_on(topic: &str) -> Running {
    start(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.into(), ..Default::default() }, limits()).await
}

async fn post(addr: SocketAddr, path: &str, ctype: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().post(format!("http://{addr}{path}")).body(body);
    if let Some(c) = ctype {
        req = req.header("content-type", c);
    }
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let json = resp.json().await.expect("a JSON body");
    (status, retry, json)
}

#[tokio::test]
async fn acked_vote_is_in_kafka_with_key_value_headers() {
    let topic = kit::fresh_topic("intake", 3).await;
    let host = start_on(&topic).await;
    let body = r#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#;
    // curl -d sends application/x-www-form-urlencoded: accepted.
    let (status, _, json) = post(host.addr, "/", Some("application/x-www-form-urlencoded"), body).await;
    assert_eq!(status, 201, "{json}");
    let vote_id = json["vote_id"].as_str().unwrap().to_owned();
    let (status, _, json2) = post(host.addr, "/wasm", Some("application/json"), r#"{"album":"Fiebre","year":"2001","artist":"Bohemia Suburbana","ranked":"09"}"#).await;
    assert_eq!(status, 201, "{json2}");

    let records = kit::read_topic(&topic, 2, Duration::from_secs(30)).await;
    assert_eq!(records.len(), 2);
    let rec = records.iter().find(|r| r.key == vote_id.as_bytes()).expect("the first vote's record");
    let vote = bandvote_vote::record::decode(&rec.value).unwrap();
    assert_eq!((vote.band.as_str(), vote.year, vote.rank), ("Alux Nahual", 1983, 1.0));
    assert_eq!(bandvote_vote::record::encode(&vote).value, rec.value, "canonical encoding");
    let header = |k: &str| rec.headers.iter().find(|(hk, _)| hk == k).map(|(_, v)| v.clone());
    assert_eq!(header("source").as_deref(), Some(&b"http"[..]));
    assert_eq!(header("schema").as_deref(), Some(bandvote_vote::record::SCHEMA.as_bytes()));
    assert_eq!(header("vote-id").as_deref(), Some(vote_id.as_bytes()));
    assert_eq!((rec.partition, rec.offset), (json["partition"].as_i64().unwrap() as i32, json["offset"].as_i64().unwrap()));
}

#[tokio::test]
async fn batch_and_idempotency_key() {
    let topic = kit::fresh_topic("intake-batch", 2).await;
    let host = start_on(&topic).await;
    let body = r#"[{"name":"A","album":"x","year":"2001","rank":"1"},{"artist":"B","album":"y","year":"2002","ranked":"2"}]"#;
    let resp = reqwest::Client::new()
        .post(format!("http://{}/votes", host.addr))
        .header("idempotency-key", "batch-7")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["accepted"], 2);
    let id = json["receipts"][1]["vote_id"].as_str().unwrap();
    assert!(id.starts_with("batch-7#") && id.len() == "batch-7#".len() + 32, "{id}");
    assert_eq!(kit::read_topic(&topic, 2, Duration::from_secs(30)).await.len(), 2);
}

#[tokio::test]
async fn bad_input_gets_its_status_and_never_reaches_kafka() {
    let topic = kit::fresh_topic("intake-bad", 1).await;
    let host = start_on(&topic).await;
    let ok = r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#;
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16, Option<&str>)> = vec![
        ("/", Some("application/json"), b"{not json".to_vec(), 400, None),
        ("/", None, b"\xff\xfe\xfd".to_vec(), 400, None),
        ("/", Some("application/json"), "[".repeat(5000).into_bytes(), 400, None),
        ("/", Some("application/xml"), ok.as_bytes().to_vec(), 415, None),
        ("/", None, vec![b' '; 10 << 20], 413, None),
        ("/", None, br#"{"name":"a","album":"b","year":"83","rank":"1"}"#.to_vec(), 422, Some("year")),
        ("/", None, br#"{"name":"","album":"b","year":"1983","rank":"1"}"#.to_vec(), 422, Some("band")),
        ("/", None, br#"{"album":"b","year":"1983","rank":"1"}"#.to_vec(), 422, Some("band")),
        ("/", None, br#"{"name":"a","album":"b","year":"1983","rank":"x"}"#.to_vec(), 422, Some("rank")),
        ("/", None, br#"{"name":"a","album":"b","year":"1983","rank":"1","extra":"1"}"#.to_vec(), 422, Some("extra")),
        ("/", None, b"[]".to_vec(), 422, None),
        ("/", None, b"\"just a string\"".to_vec(), 422, None),
    ];
    for (path, ctype, body, want, field) in cases {
        let (status, _, json) = post(host.addr, path, ctype, body).await;
        assert_eq!(status, want, "{json}");
        assert_eq!(json["error"]["status"], want);
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(f) = field {
            assert_eq!(json["error"]["field"], f, "{json}");
        }
    }
    let client = reqwest::Client::new();
    let status = client.get(format!("http://{}/", host.addr)).send().await.unwrap();
    assert_eq!(status.status().as_u16(), 200, "GET / answers a status for load generators");
    assert_eq!(status.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert_eq!(client.delete(format!("http://{}/", host.addr)).send().await.unwrap().status().as_u16(), 405);
    assert_eq!(client.post(format!("http://{}/rust/send_data", host.addr)).body("{").send().await.unwrap().status().as_u16(), 400);
    assert_eq!(client.post(format!("http://{}/nope", host.addr)).body(ok).send().await.unwrap().status().as_u16(), 404);
    assert_eq!(client.get(format!("http://{}/healthz", host.addr)).send().await.unwrap().status().as_u16(), 200);
    assert!(kit::read_topic(&topic, 1, Duration::from_secs(3)).await.is_empty(), "nothing reached Kafka");
    let metrics = prometheus::TextEncoder::new().encode_to_string(&host.runtime.host().metrics.registry.gather()).unwrap();
    assert!(metrics.contains("bandvote_host_requests_total{status=\"422\"}"), "{metrics}");
}

#[tokio::test]
async fn kafka_down_is_503_with_retry_after_within_the_deadline() {
    let publisher = PublisherConfig { brokers: "127.0.0.1:1".into(), delivery_timeout: Duration::from_secs(1), ..Default::default() };
    let host = start(publisher, limits()).await;
    let started = Instant::now();
    let (status, retry, json) = post(host.addr, "/", None, r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(json["error"]["code"], "kafka_unavailable");
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
}

#[tokio::test]
async fn guest_trap_is_a_500_and_the_host_keeps_serving() {
    // Just above the component's initial memory (17 pages): a large batch
    // makes the guest run out of memory and trap; small votes still fit.
    let topic = kit::fresh_topic("intake-trap", 1).await;
    let tight = RuntimeConfig { instance_memory_bytes: 20 * 65536, ..limits() };
    let host = start(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }, tight).await;
    let one = r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#;
    let batch = format!("[{}]", vec![one; 450].join(","));
    for _ in 0..2 {
        let (status, _, json) = post(host.addr, "/", None, batch.clone()).await;
        assert_eq!(status, 500, "{json}");
        assert_eq!(json["error"]["code"], "internal");
    }
    let (status, _, json) = post(host.addr, "/", None, one).await;
    assert_eq!(status, 201, "the host still serves after traps: {json}");
    assert_eq!(kit::read_topic(&topic, 2, Duration::from_secs(10)).await.len(), 1, "only the small vote reached Kafka");
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_the_host_keeps_serving() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let topic = kit::fresh_topic("intake-slow", 1).await;
    let host = start_on(&topic).await;
    let mut slow = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finishes its headers
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the slow connection");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, _, _) = post(host.addr, "/", None, r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#).await;
    assert_eq!(status, 201);
}

/// Past max_connections a new connection is closed at once and counted; the open ones keep working.
#[tokio::test]
async fn connections_past_the_cap_are_refused_fast() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let topic = kit::fresh_topic("intake-conns", 1).await;
    let host = start(
        PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() },
        RuntimeConfig { max_connections: 2, ..limits() },
    )
    .await;
    let a = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let b = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await.expect("refused at once, not a hang").unwrap_or(0);
    assert_eq!(n, 0, "the third connection is closed");
    assert_eq!(host.runtime.host().metrics.connections_refused.get(), 1);
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = reqwest::get(format!("http://{}/healthz", host.addr)).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200, "room again once connections close");
}


/// The instance names a component imports.
fn imports(path: &std::path::Path) -> Vec<String> {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::from_file(&engine, path).expect("a component");
    component.component_type().imports(&engine).map(|(name, _)| name.to_owned()).collect()
}

#[test]
fn the_intake_imports_only_wasi_and_the_publisher() {
    let names = imports(&component());
    eprintln!("intake imports: {names:?}");
    assert!(names.iter().any(|n| n.starts_with("bandvote:publisher/publisher")), "{names:?}");
    for n in &names {
        assert!(n.starts_with("wasi:") || n.starts_with("bandvote:publisher/"), "unexpected import {n}");
        assert!(!n.starts_with("wasi:http/outgoing-handler"), "the intake makes no outbound calls: {n}");
    }
    // The composed Spin artifact (scripts/build-spin.sh) imports standard WASI
    // only, its settings through Spin's wasi:config version; the one for plain
    // wasmtime carries its configuration store inside.
    if let Ok(spin) = std::env::var("BANDVOTE_SPIN_WASM") {
        let names = imports(std::path::Path::new(&spin));
        eprintln!("spin artifact imports: {names:?}");
        assert!(names.iter().all(|n| n.starts_with("wasi:")), "{names:?}");
        assert!(names.iter().any(|n| n == "wasi:config/store@0.2.0-draft-2024-09-27"), "Spin variables: {names:?}");
    }
    if let Ok(serve) = std::env::var("BANDVOTE_WASMTIME_SERVE_WASM") {
        let names = imports(std::path::Path::new(&serve));
        assert!(names.iter().all(|n| n.starts_with("wasi:") && !n.starts_with("wasi:config/")), "{names:?}");
    }
}

/// A client that gives up does not free the instance's slot: the slot is held
/// until the instance ends (here: the publish fails after the delivery
/// timeout). The instance waits in `publish` as under Spin (no hand-off).
#[tokio::test]
async fn a_slot_is_held_until_the_instance_ends() {
    let publisher = PublisherConfig { brokers: "127.0.0.1:1".into(), delivery_timeout: Duration::from_secs(2), ..Default::default() };
    let host = start(publisher, RuntimeConfig { max_concurrent: 2, host_replies: false, ..limits() }).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = impatient.post(format!("http://{}/", host.addr)).body(r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#).send().await;
    assert!(gone.is_err(), "the client gave up first");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(host.runtime.instances_running(), 1, "the instance still runs, and holds its slot");
    assert_eq!(host.runtime.host().metrics.in_flight.get(), 0, "the request is no longer in flight once its client left");
    let deadline = Instant::now() + Duration::from_secs(8);
    while host.runtime.instances_running() > 0 {
        assert!(Instant::now() < deadline, "the instance never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole pool runs at once, past wasmtime's default pool limits (1000
/// fibers): every request gets an instance and its real answer, never a 500.
#[tokio::test]
async fn the_whole_pool_runs_at_once_past_wasmtime_defaults() {
    const N: usize = 1010;
    // An unreachable broker: each instance waits in publish, then answers 503.
    // Each waits 6 s: long enough for all N to start on a loaded machine (other tests run beside this one).
    let publisher = PublisherConfig { brokers: "127.0.0.1:1".into(), delivery_timeout: Duration::from_secs(6), ..Default::default() };
    let config = RuntimeConfig { max_concurrent: N as u32, slot_wait: Duration::from_secs(5), host_replies: false, ..limits() };
    let host = start(publisher, config).await;
    let client = reqwest::Client::new();
    let sends: Vec<_> = (0..N)
        .map(|i| {
            let req = client.post(format!("http://{}/", host.addr)).body(format!(r#"{{"name":"b{i}","album":"a","year":"1983","rank":"1"}}"#));
            tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let (deadline, mut peak) = (Instant::now() + Duration::from_secs(6), 0);
    while Instant::now() < deadline && peak < N {
        peak = peak.max(host.runtime.instances_running());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = std::collections::BTreeMap::new();
    for s in sends {
        *statuses.entry(s.await.unwrap().expect("an answer")).or_insert(0) += 1;
    }
    assert_eq!(peak, N, "all {N} instances alive at once");
    assert_eq!(statuses.get(&500), None, "no request failed for want of a pool resource: {statuses:?}");
}

/// With a compile cache the machine code is written once and a second start
/// loads it (and serves from it).
#[tokio::test]
async fn the_compiled_component_is_kept_in_the_compile_cache() {
    let dir = std::env::temp_dir().join(kit::unique("compile-cache"));
    let publisher = || PublisherConfig { brokers: kit::kafka_brokers(), ..Default::default() };
    let cached = RuntimeConfig { compile_cache: Some(dir.clone()), ..limits() };
    drop(start(publisher(), cached.clone()).await);
    let files = |d: &std::path::Path| -> usize {
        fn walk(d: &std::path::Path) -> usize {
            std::fs::read_dir(d).map_or(0, |rd| rd.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
        }
        walk(d)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while files(&dir) == 0 {
        assert!(Instant::now() < deadline, "nothing written to the compile cache {}", dir.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = start(publisher(), cached).await;
    let ok = reqwest::get(format!("http://{}/healthz", again.addr)).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host links only the WASI an intake needs: a component importing more
/// fails at startup (the composed Spin artifact wants wasi:config/store and
/// wasi:http/outgoing-handler; the one for plain wasmtime, outgoing-handler).
#[tokio::test]
async fn a_component_asking_for_more_fails_to_link() {
    for (var, import) in [("BANDVOTE_SPIN_WASM", "wasi:config/store"), ("BANDVOTE_WASMTIME_SERVE_WASM", "outgoing-handler")] {
        let wasm = std::env::var(var).unwrap_or_else(|_| panic!("{var}: run through scripts/test.sh (scripts/build-spin.sh)"));
        let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), ..Default::default() }).unwrap();
        let linked = IntakeRuntime::new(std::path::Path::new(&wasm), PublisherHost::new(publisher, HostMetrics::new()), limits());
        let err = format!("{:#}", linked.err().expect("linking must fail"));
        assert!(err.contains(import), "{var}: {err}");
    }
}

/// A key reused for a different vote: 409 naming the key; a retry of the same vote: 201.
#[tokio::test]
async fn a_key_reused_for_a_different_vote_is_409() {
    let topic = kit::fresh_topic("intake-claims", 1).await;
    let publisher = kit::publisher_with_key_claims(&topic);
    let Running { addr, .. } = serve(publisher, limits()).await;
    let send = |band: &'static str| async move {
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/"))
            .header("idempotency-key", "k-dup")
            .body(format!(r#"{{"name":"{band}","album":"b","year":"1983","rank":"1"}}"#))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(send("Caifanes").await.0, 201);
    assert_eq!(send("Caifanes").await.0, 201, "a retry of the same vote");
    let (status, body) = send("Maná").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    assert_eq!((body["error"]["field"].as_str(), body["error"]["key"].as_str()), (Some("Idempotency-Key"), Some("k-dup")));
    assert_eq!(kit::read_topic(&topic, 3, Duration::from_secs(10)).await.len(), 2);
}

/// Publishes through the real VotePublisher, then (first call only) holds the
/// answer past the host's deadline: the vote is in Kafka, the client gets 503.
struct AckedTooLate {
    inner: VotePublisher,
    late: std::sync::atomic::AtomicBool,
}

impl bandvote_admission::Publish for AckedTooLate {
    fn publish<'a>(&'a self, vote: &'a bandvote_vote::Vote) -> futures::future::BoxFuture<'a, Result<bandvote_admission::Ack, bandvote_admission::PublishError>> {
        Box::pin(async move {
            let r = bandvote_admission::Publish::publish(&self.inner, vote).await;
            if self.late.swap(false, std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            r
        })
    }

    fn publish_batch<'a>(
        &'a self,
        votes: &'a [bandvote_vote::Vote],
    ) -> futures::future::BoxFuture<'a, Result<Vec<Result<bandvote_admission::Ack, bandvote_admission::PublishError>>, bandvote_admission::PublishError>> {
        bandvote_admission::Publish::publish_batch(&self.inner, votes)
    }
}

/// A vote sent without a key whose publish reached Kafka but whose answer
/// missed the deadline: the 503 names its id (body and Idempotency-Key
/// header); the client's retry with it is stored and counted once.
#[tokio::test]
async fn a_timed_out_publish_names_the_vote_and_its_retry_counts_once() {
    let topic = kit::fresh_topic("intake-late", 1).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let inner = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let publisher = AckedTooLate { inner, late: std::sync::atomic::AtomicBool::new(true) };
    let config = RuntimeConfig { request_timeout: Duration::from_secs(1), ..limits() };
    let Running { addr, .. } = serve(publisher, config).await;

    let body = r#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#;
    let http = reqwest::Client::new();
    let first = http.post(format!("http://{addr}/")).body(body).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 503);
    let key = first.headers().get("idempotency-key").expect("the vote's id to retry with").to_str().unwrap().to_owned();
    let json: Value = first.json().await.unwrap();
    assert_eq!(json["error"]["vote_id"].as_str(), Some(key.as_str()), "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains(&key), "{json}");

    let retry = http.post(format!("http://{addr}/")).header("idempotency-key", &key).body(body).send().await.unwrap();
    assert_eq!(retry.status().as_u16(), 201);
    let recs = kit::read_topic(&topic, 2, Duration::from_secs(20)).await;
    assert_eq!(recs.len(), 2, "the first publish did reach Kafka, and so did the retry");
    assert!(recs.iter().all(|r| r.key == key.as_bytes()));

    let cfg = bandvote_service_tests::isolated_consumer("late", &topic);
    let consumer = bandvote_service_tests::run_consumer(cfg).await;
    let (counters, log) = (consumer.counters.clone(), consumer.log.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while counters.applied_offsets(&topic).await.unwrap().get(&0).copied() != Some(recs[1].offset) {
        assert!(Instant::now() < deadline, "the consumer did not apply both records");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counters.totals().await.unwrap().total, 1, "counted once");
    assert_eq!(log.collection().count_documents(mongodb::bson::doc! {}).await.unwrap(), 1, "stored once");
    consumer.stop().await;
}

/// Slowloris: 600 connections trickle their bodies (one byte a second) at a
/// pool of 16 instance slots. Bodies are read before a slot is taken, so the
/// trickling requests hold connections, not instances: normal votes still get
/// 201 within their deadline, and the tricklers get 408 at the body timeout.
/// Issue 30 item 14: sockets that connect and send nothing (not even an
/// HTTP/2 preface) are closed after the header read timeout, so 2,000 of
/// them, as many as the connection cap, leave no permit held: votes sent
/// afterwards are answered 201 within their deadline.
#[tokio::test]
async fn silent_connections_hold_no_slot_forever() {
    use tokio::io::AsyncReadExt as _;
    let topic = kit::fresh_topic("intake-silent", 1).await;
    let host = start(
        PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() },
        RuntimeConfig { max_connections: 2_000, ..limits() },
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..2_000 {
        if let Ok(s) = tokio::net::TcpStream::connect(host.addr).await {
            silent.push(s);
        }
    }
    assert!(silent.len() >= 1_900, "opened {} silent connections", silent.len());
    // Wait past the header read timeout: the host must have closed them (EOF).
    tokio::time::sleep(bandvote_host::server::HEADER_READ_TIMEOUT + Duration::from_secs(2)).await;
    let mut closed = 0;
    for s in &mut silent {
        let mut buf = [0u8; 64];
        if matches!(tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert!(closed >= silent.len() - 10, "{closed} of {} silent connections closed by the host", silent.len());
    let http = reqwest::Client::new();
    for i in 0..10 {
        let started = Instant::now();
        let r = http
            .post(format!("http://{}/", host.addr))
            .body(format!(r#"{{"name":"silent-{i}","album":"x","year":"1990","rank":"1"}}"#))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("answered");
        assert_eq!(r.status().as_u16(), 201);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    drop(silent);
}

#[tokio::test]
async fn trickling_bodies_do_not_starve_the_instance_pool() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let topic = kit::fresh_topic("intake-slowloris", 1).await;
    let host = start(
        PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() },
        RuntimeConfig { body_timeout: Duration::from_secs(4), ..limits() },
    )
    .await;
    let mut tricklers = Vec::new();
    for _ in 0..600 {
        let addr = host.addr;
        tricklers.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{").await.ok()?;
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if s.write_all(b" ").await.is_err() {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
            Some(String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap_or("").to_owned())
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // every trickler is mid-body now
    let http = reqwest::Client::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = http
            .post(format!("http://{}/", host.addr))
            .body(format!(r#"{{"name":"band-{i}","album":"x","year":"1990","rank":"1"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "vote {i} among 600 trickling bodies");
        assert!(started.elapsed() < Duration::from_secs(5), "vote {i} took {:?}", started.elapsed());
    }
    let mut statuses = std::collections::BTreeMap::new();
    for t in tricklers {
        *statuses.entry(t.await.unwrap().unwrap_or_default()).or_insert(0) += 1;
    }
    // Each trickler is cut off at the body timeout: a 408, or a reset when the
    // close overtook its next byte; never an instance, never a vote.
    assert!(statuses.keys().all(|s| s == "408" || s.is_empty()), "{statuses:?}");
    assert!(statuses.get("408").copied().unwrap_or(0) > 0, "{statuses:?}");
    assert_eq!(kit::read_topic(&topic, 20, Duration::from_secs(20)).await.len(), 20);
}

/// Past the cap of distinct band names a vote for a new name is a 422 naming
/// it; known names keep passing (issue 21, item 12).
#[tokio::test]
async fn a_new_band_past_the_cap_is_422_naming_it() {
    let topic = kit::fresh_topic("intake-bandcap", 1).await;
    let names = bandvote_store::BandNames::new(&kit::redis_url(), &format!("{}:", kit::unique("bandcap")), 2).unwrap();
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let publisher = bandvote_admission::Admission::new(publisher).with_band_cap(names);
    let Running { addr, runtime } = serve(publisher, limits()).await;
    let vote = |band: &str| format!(r#"{{"name":"{band}","album":"x","year":"1990","rank":"1"}}"#);
    for band in ["Caifanes", "Maná"] {
        assert_eq!(post(addr, "/", None, vote(band)).await.0, 201);
    }
    let (status, _, json) = post(addr, "/", None, vote("Made Up Band")).await;
    assert_eq!(status, 422, "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("Made Up Band"), "{json}");
    assert_eq!((json["error"]["code"].as_str(), json["error"]["field"].as_str(), json["error"]["cap"].as_u64()), (Some("too_many_bands"), Some("band"), Some(2)), "{json}");
    assert_eq!(post(addr, "/", None, vote("Caifanes")).await.0, 201, "known names keep passing");
    assert_eq!(kit::read_topic(&topic, 3, Duration::from_secs(20)).await.len(), 3, "the refused vote never reached Kafka");
    assert_eq!(runtime.host().metrics.votes.with_label_values(&["invalid"]).get(), 1);
}

/// Only ids that can collide are claimed: a vote without a key (its id
/// generated by the intake) makes no Redis round trip; a keyed one is claimed
/// (issue 24, item 1).
#[tokio::test]
async fn only_client_supplied_ids_are_claimed() {
    let topic = kit::fresh_topic("intake-claim-only", 1).await;
    let prefix = format!("{}:", kit::unique("claim-only"));
    let claims = bandvote_store::KeyClaims::new(&kit::redis_url(), &prefix, Duration::from_secs(60)).unwrap();
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let publisher = bandvote_admission::Admission::new(publisher).with_key_claims(claims);
    let Running { addr, .. } = serve(publisher, limits()).await;
    let body = r#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#;
    let claimed = || async {
        let mut con = redis::Client::open(kit::redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}idem:*")).query_async(&mut con).await.unwrap();
        keys
    };
    for _ in 0..5 {
        let (status, _, json) = post(addr, "/", None, body).await;
        assert_eq!(status, 201);
        assert!(bandvote_vote::is_generated_id(json["vote_id"].as_str().unwrap()), "{json}");
    }
    assert!(claimed().await.is_empty(), "keyless votes claim nothing");
    let keyed = reqwest::Client::new().post(format!("http://{addr}/")).header("idempotency-key", "only-keyed-1").body(body).send().await.unwrap();
    assert_eq!(keyed.status().as_u16(), 201);
    assert_eq!(claimed().await, vec![format!("{prefix}idem:only-keyed-1")]);
}

/// A publisher for the reuse tests that needs no broker and answers the same
/// vote the same way every time: the offset is a hash of the vote's id and
/// band; band "unavailable" is a 503, band "slow" answers after 3 s.
struct Deterministic;

impl bandvote_admission::Publish for Deterministic {
    fn publish<'a>(&'a self, vote: &'a bandvote_vote::Vote) -> futures::future::BoxFuture<'a, Result<bandvote_admission::Ack, bandvote_admission::PublishError>> {
        Box::pin(async move {
            use std::hash::{Hash as _, Hasher as _};
            match vote.band.as_str() {
                "unavailable" => return Err(bandvote_admission::PublishError::Unavailable("the test says so".into())),
                "slow" => tokio::time::sleep(Duration::from_secs(3)).await,
                _ => {}
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&vote.vote_id, &vote.band).hash(&mut h);
            Ok(bandvote_admission::Ack { partition: 0, offset: (h.finish() >> 1) as i64 })
        })
    }

    fn publish_batch<'a>(
        &'a self,
        votes: &'a [bandvote_vote::Vote],
    ) -> futures::future::BoxFuture<'a, Result<Vec<Result<bandvote_admission::Ack, bandvote_admission::PublishError>>, bandvote_admission::PublishError>> {
        Box::pin(async move {
            let mut acks = Vec::new();
            for v in votes {
                acks.push(self.publish(v).await);
            }
            Ok(acks)
        })
    }
}

/// A host on a [`Deterministic`] publisher; `reuse` requests per instance.
async fn start_deterministic(reuse: u32, config: RuntimeConfig) -> Running {
    serve(Deterministic, RuntimeConfig { instance_reuse: reuse, ..config }).await
}

/// A request of the reuse tests: path, headers, body.
type Case = (&'static str, Vec<(&'static str, &'static str)>, String);

/// Status, the headers a client acts on, and the body.
async fn answer(addr: SocketAddr, (path, headers, body): &Case) -> (u16, Option<String>, Option<String>, String) {
    let mut req = reqwest::Client::new().post(format!("http://{addr}{path}")).body(body.clone());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("response");
    let header = |k: &str| resp.headers().get(k).map(|v| v.to_str().unwrap().to_owned());
    let (status, retry, key) = (resp.status().as_u16(), header("retry-after"), header("idempotency-key"));
    (status, retry, key, resp.text().await.unwrap())
}

fn counter(runtime: &IntakeRuntime, name: &str, label: &str) -> u64 {
    let m = &runtime.host().metrics;
    match name {
        "instances" => m.instances.with_label_values(&[label]).get(),
        _ => m.instances_retired.with_label_values(&[label]).get(),
    }
}

/// Issue 24, item 2: one instance serving request after request answers each
/// exactly as a fresh instance does, whatever ran in it before (valid votes,
/// batches, every kind of refusal, publisher errors), in any order.
#[tokio::test]
async fn a_reused_instance_answers_as_a_fresh_one_would() {
    let vote = |band: &str, key: &'static str| -> Case {
        ("/", vec![("idempotency-key", key)], format!(r#"{{"name":"{band}","album":"Fiebre","year":"2001","rank":"3"}}"#))
    };
    let batch: String = format!("[{}]", (0..40).map(|i| format!(r#"{{"artist":"B{i}","album":"a","year":"1999","ranked":"{}"}}"#, i % 10 + 1)).collect::<Vec<_>>().join(","));
    let cases: Vec<Case> = vec![
        vote("Alux Nahual", "k-1"),
        ("/wasm", vec![("idempotency-key", "k-2"), ("content-type", "application/json")], r#"{"album":"Fiebre","year":"2001","artist":"Bohemia Suburbana","ranked":"09"}"#.into()),
        ("/votes", vec![("idempotency-key", "k-3")], batch),
        ("/", vec![("idempotency-key", "k-4"), ("x-voter", "ana")], r#"{"name":"Viernes Verde","album":"x","year":"1990","rank":"2"}"#.into()),
        ("/", vec![], "{not json".into()),
        ("/", vec![("content-type", "application/xml")], r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#.into()),
        ("/", vec![], r#"{"name":"a","album":"b","year":"83","rank":"1"}"#.into()),
        ("/", vec![], r#"{"name":"a","album":"b","year":"1983","rank":"1","extra":"1"}"#.into()),
        ("/", vec![], "[".repeat(5000)),
        ("/", vec![], "[]".into()),
        vote("unavailable", "k-5"),
        ("/", vec![], " ".repeat(300 << 10)),
    ];
    // Keyless votes get generated ids: they run between the cases, never compared.
    let noise: Vec<Case> = (0..3).map(|i| ("/", vec![], format!(r#"{{"name":"noise {i}","album":"n","year":"2010","rank":"{}"}}"#, i + 1))).collect();

    let fresh = start_deterministic(1, limits()).await;
    let mut want = Vec::new();
    for c in &cases {
        want.push(answer(fresh.addr, c).await);
    }
    assert_eq!(counter(&fresh.runtime, "instances", "reused"), 0);

    // The host answers for the component (hand-off) exactly as the component
    // answers itself when it waits in `publish` (as under Spin).
    let waiting = start_deterministic(1, RuntimeConfig { host_replies: false, ..limits() }).await;
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(answer(waiting.addr, c).await, want[i], "case {i}: the component's own answer");
    }

    // One instance slot: every request runs in the same instance while it lasts.
    let reused = start_deterministic(1_000, RuntimeConfig { max_concurrent: 1, ..limits() }).await;
    let orders: [Vec<usize>; 3] = [(0..cases.len()).collect(), (0..cases.len()).rev().collect(), vec![2, 0, 11, 4, 10, 3, 8, 1, 6, 9, 7, 5]];
    for order in &orders {
        for &i in order {
            answer(reused.addr, &noise[i % noise.len()]).await;
            assert_eq!(answer(reused.addr, &cases[i]).await, want[i], "case {i} after {order:?}");
        }
    }
    let (fresh_n, reused_n) = (counter(&reused.runtime, "instances", "fresh"), counter(&reused.runtime, "instances", "reused"));
    eprintln!("instances: {fresh_n} fresh, {reused_n} reused");
    assert_eq!(fresh_n, 1, "one instance served every request the component saw");
    assert!(reused_n > 50, "{reused_n}");
    assert_eq!(reused.runtime.instances_idle(), 1);
}

/// Hand-off: an instance hands its votes to the host and ends before the
/// publisher answers, so a pool of 2 instance slots carries 24 votes waiting
/// on a slow publisher at once (each answered 201 after it), where instances
/// waiting in `publish` answer all but 2 with 503 once the slot wait is over.
#[tokio::test]
async fn instances_end_before_the_publisher_answers() {
    let slow: Case = ("/", vec![], r#"{"name":"slow","album":"b","year":"1983","rank":"1"}"#.into());
    let statuses = |host: &Running| {
        let (addr, slow) = (host.addr, slow.clone());
        async move {
            let sends: Vec<_> = (0..24).map(|_| {
                let slow = slow.clone();
                tokio::spawn(async move { answer(addr, &slow).await.0 })
            }).collect();
            let mut statuses = std::collections::BTreeMap::new();
            for s in sends {
                *statuses.entry(s.await.unwrap()).or_insert(0) += 1;
            }
            statuses
        }
    };
    let handing_off = start_deterministic(64, RuntimeConfig { max_concurrent: 2, ..limits() }).await;
    let answered = tokio::spawn(statuses(&handing_off));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let m = &handing_off.runtime.host().metrics;
    assert_eq!((m.in_flight.get(), handing_off.runtime.instances_running()), (24, 0), "all wait on the publisher, none in an instance");
    assert_eq!(answered.await.unwrap(), [(201, 24)].into(), "every vote answered from its publish");

    let waiting = start_deterministic(64, RuntimeConfig { max_concurrent: 2, host_replies: false, ..limits() }).await;
    assert_eq!(statuses(&waiting).await, [(201, 2), (503, 22)].into(), "two slots, each held through the publish");
}

/// A handed-off vote whose client gives up is still published (its task runs
/// to the end, as an instance waiting in `publish` would).
#[tokio::test]
async fn a_handed_off_vote_is_published_though_its_client_left() {
    let host = start_deterministic(64, limits()).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let gone = impatient.post(format!("http://{}/", host.addr)).body(r#"{"name":"slow","album":"b","year":"1983","rank":"1"}"#).send().await;
    assert!(gone.is_err(), "the client gave up first");
    let acked = || host.runtime.host().metrics.votes.with_label_values(&["acked"]).get();
    assert_eq!(acked(), 0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while acked() == 0 {
        assert!(Instant::now() < deadline, "the vote was never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(host.runtime.instances_running(), 0);
}

/// An instance is never served again after its guest trapped, after its
/// request missed the deadline, or past its idle time.
#[tokio::test]
async fn an_instance_is_dropped_after_a_trap_a_deadline_or_idling() {
    let one: Case = ("/", vec![], r#"{"name":"a","album":"b","year":"1983","rank":"1"}"#.into());
    let slow: Case = ("/", vec![], r#"{"name":"slow","album":"b","year":"1983","rank":"1"}"#.into());

    // Memory just above the component's initial 17 pages (as in
    // guest_trap_is_a_500_and_the_host_keeps_serving): a large batch traps.
    let tight = start_deterministic(1_000, RuntimeConfig { instance_memory_bytes: 20 * 65536, max_concurrent: 1, ..limits() }).await;
    let batch: Case = ("/", vec![], format!("[{}]", vec![one.2.as_str(); 450].join(",")));
    assert_eq!(answer(tight.addr, &batch).await.0, 500);
    assert_eq!(counter(&tight.runtime, "retired", "trap"), 1);
    assert_eq!(answer(tight.addr, &one).await.0, 201);
    assert_eq!(counter(&tight.runtime, "instances", "fresh"), 2, "the trapped instance was not served again");
    // Its heap (≥ 17 pages) is past half the 20-page limit: retired, not kept.
    assert_eq!(counter(&tight.runtime, "retired", "memory"), 1);
    assert_eq!(tight.runtime.instances_idle(), 0);

    // The instance waits in `publish` (no hand-off), so the slow vote holds it past the deadline.
    let config = RuntimeConfig { max_concurrent: 1, request_timeout: Duration::from_secs(1), instance_idle: Duration::from_millis(300), host_replies: false, ..limits() };
    let host = start_deterministic(1_000, config).await;
    assert_eq!(answer(host.addr, &one).await.0, 201);
    assert_eq!(answer(host.addr, &one).await.0, 201);
    assert_eq!((counter(&host.runtime, "instances", "fresh"), counter(&host.runtime, "instances", "reused")), (1, 1));
    let (status, _, _, body) = answer(host.addr, &slow).await;
    assert_eq!(status, 503, "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counter(&host.runtime, "retired", "deadline"), 1, "the timed-out instance is dropped");
    assert_eq!(host.runtime.instances_idle(), 0);
    assert_eq!(answer(host.addr, &one).await.0, 201);
    assert_eq!(counter(&host.runtime, "instances", "fresh"), 2, "and never served again");
    let deadline = Instant::now() + Duration::from_secs(5);
    while host.runtime.instances_idle() > 0 {
        assert!(Instant::now() < deadline, "the idle instance was never dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counter(&host.runtime, "retired", "idle"), 1);
    assert_eq!(host.runtime.instances_running(), 0);
}
