//! The Spin artifact (the intake composed with the REST adapter) on the
//! runtimes users run it on: `wasmtime serve` of the wasmtime that SpinKube's
//! shim embeds (42.0.2: containerd-shim-spin v0.24 / Spin 3.6.3) and of the one
//! the newest Spin embeds (44.0.0: Spin 4.0.2). Through the real REST bridge (`bandvote-grpc --rest-listen`) to
//! nisshi, then the real consumer: every 201 is counted once in Redis and
//! stored once in MongoDB; bad input gets its 400 / 413 / 422; a bridge that
//! stops answering costs a vote a 503 within 10 s.
//!
//! Plain wasmtime has no Spin variables, so what runs is the Spin artifact with
//! the configuration-from-environment component plugged in (the intake and
//! the REST adapter are the same bytes as in the Spin artifact).
//!
//! Needs `BANDVOTE_WASMTIME_SERVE_WASM` (scripts/build-spin.sh) and
//! `BANDVOTE_SPIN_RUNTIMES` ("42.0.2=/path/to/wasmtime 44.0.0=/path/…",
//! set by scripts/test.sh from scripts/setup.sh's installs).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, free_addr, log_dir, wait_ready, Service};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(version, wasmtime binary)` pairs from `BANDVOTE_SPIN_RUNTIMES`.
fn runtimes() -> Vec<(String, String)> {
    let list = std::env::var("BANDVOTE_SPIN_RUNTIMES").expect("BANDVOTE_SPIN_RUNTIMES: run through scripts/test.sh");
    let runtimes: Vec<(String, String)> = list
        .split_whitespace()
        .map(|pair| {
            let (version, path) = pair.split_once('=').expect("VERSION=PATH");
            (version.to_owned(), path.to_owned())
        })
        .collect();
    assert!(runtimes.iter().any(|(v, _)| v.starts_with("42.")), "the wasmtime SpinKube's shim embeds is among {list:?}");
    runtimes
}

fn serve(wasmtime: &str, version: &str, wasm: &str, listen: SocketAddr, rest: SocketAddr, topic: &str) -> KillOnDrop {
    let log = std::fs::File::create(log_dir().join(format!("wasmtime-serve-{version}.log"))).expect("log file");
    KillOnDrop(
        Command::new(wasmtime)
            // The pooling allocator is not compiled into our minimal 44 CLI; off on both.
            .args(["serve", "--addr", &listen.to_string(), "-O", "pooling-allocator=n", "-S", "cli=y"])
            .arg("--env")
            .arg(format!("KAFKA_REST_URL=http://{rest}"))
            .arg("--env")
            .arg(format!("KAFKA_TOPIC={topic}"))
            .arg(wasm)
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("wasmtime serve {version} ({wasmtime}): {e}")),
    )
}

async fn post(http: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = http.post(url).body(body).send().await.expect("a response");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A client that declares a body, sends part of it and goes away.
async fn client_gone(addr: SocketAddr) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"name\":\"Ca").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
}

#[tokio::test]
async fn spin_artifact_on_spinkube_and_the_newest_spin_answers_and_counts_once() {
    let wasm = std::env::var("BANDVOTE_WASMTIME_SERVE_WASM").expect("BANDVOTE_WASMTIME_SERVE_WASM: run through scripts/test.sh (scripts/build-spin.sh)");
    let topic = kit::fresh_topic("spin", 2).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();

    // The REST bridge, as deployed: the bandvote-grpc binary.
    let (grpc, rest, admin) = (free_addr(), free_addr(), free_addr());
    let mut bridge = Service::new(
        "spin-bridge",
        bin("bandvote-grpc"),
        vec!["--listen".into(), grpc.to_string(), "--rest-listen".into(), rest.to_string(), "--admin-listen".into(), admin.to_string()],
        vec![("BANDVOTE_KAFKA_BROKERS".into(), kit::kafka_brokers()), ("BANDVOTE_TOPIC".into(), topic.clone())],
    );
    bridge.start();
    wait_ready(admin, Duration::from_secs(60)).await;

    let http = reqwest::Client::new();
    let mut acked: Vec<String> = Vec::new();
    for (version, wasmtime) in runtimes() {
        let listen = free_addr();
        let mut server = serve(&wasmtime, &version, &wasm, listen, rest, &topic);
        let url = format!("http://{listen}/");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match http.get(format!("{url}healthz")).send().await {
                Ok(r) if r.status().is_success() => break,
                _ if Instant::now() > deadline => panic!("wasmtime serve {version} did not come up"),
                _ if server.0.try_wait().unwrap().is_some() => panic!("wasmtime serve {version} exited: {:?}", server.0.try_wait()),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        let on = |what: &str| format!("wasmtime {version}: {what}");

        // Both client shapes, on `/` and on an old ingress path.
        for (path, body) in [
            ("", r#"{"name":"Alux Nahual","album":"Alux Nahual","year":"1983","rank":"1"}"#),
            ("insert", r#"{"album":"Fiebre","year":"1999","artist":"Bohemia Suburbana","ranked":"09"}"#),
        ] {
            let (status, json) = post(&http, &format!("{url}{path}"), body).await;
            assert_eq!(status, 201, "{}", on(&format!("valid vote on /{path}: {json}")));
            acked.push(json["vote_id"].as_str().expect("a vote id").to_owned());
        }
        // A batch under an Idempotency-Key: its items' derived ids pass the REST bridge.
        let batch = r#"[{"name":"Caifanes","album":"Volumen 1","year":"1988","rank":"2"},{"name":"Alux Nahual","album":"Conquista","year":"1985","rank":"3"}]"#;
        let resp = http.post(&url).header("idempotency-key", format!("spin-batch-{}", version.replace('.', "-"))).body(batch).send().await.unwrap();
        let status = resp.status().as_u16();
        let json: Value = resp.json().await.unwrap();
        assert_eq!((status, json["accepted"].as_u64()), (201, Some(2)), "{}", on(&format!("batch with a key: {json}")));
        for r in json["receipts"].as_array().unwrap() {
            acked.push(r["vote_id"].as_str().expect("a vote id").to_owned());
        }
        let (status, json) = post(&http, &url, "not json").await;
        assert_eq!(status, 400, "{}", on(&format!("bad JSON: {json}")));
        let (status, json) = post(&http, &url, r#"{"name":"Caifanes","album":"El Silencio","rank":"1"}"#).await;
        assert_eq!((status, json["error"]["field"].as_str()), (422, Some("year")), "{}", on(&format!("missing year: {json}")));
        let (status, json) = post(&http, &url, r#"{"name":"Caifanes","album":"El Silencio","year":"83","rank":"1"}"#).await;
        assert_eq!((status, json["error"]["field"].as_str()), (422, Some("year")), "{}", on(&format!("bad year: {json}")));
        // Oversized, streamed (no content-length: the body is read up to the cap) and declared.
        let big = format!(r#"{{"name":"{}","album":"x","year":"1990","rank":"1"}}"#, "a".repeat(bandvote_vote::limits::MAX_BODY_BYTES));
        let stream = futures::stream::iter(big.clone().into_bytes().chunks(8192).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
        let (status, json) = post(&http, &url, reqwest::Body::wrap_stream(stream)).await;
        assert_eq!(status, 413, "{}", on(&format!("oversized, streamed: {json}")));
        let (status, json) = post(&http, &url, big).await;
        assert_eq!(status, 413, "{}", on(&format!("oversized, declared: {json}")));
        // A client that goes away mid-body takes nothing down.
        client_gone(listen).await;
        let (status, json) = post(&http, &url, r#"{"name":"Caifanes","album":"El Silencio","year":"1992","rank":"1"}"#).await;
        assert_eq!(status, 201, "{}", on(&format!("a vote after a client went away: {json}")));
        acked.push(json["vote_id"].as_str().expect("a vote id").to_owned());
        assert!(server.0.try_wait().unwrap().is_none(), "{}", on("still running"));
        drop(server);
        let log = std::fs::read_to_string(log_dir().join(format!("wasmtime-serve-{version}.log"))).unwrap_or_default();
        assert!(!log.contains("resource has children"), "{}", on(&format!("no trap in its log:\n{log}")));
    }

    // The consumer counts what the runtimes acknowledged: once each.
    let cfg = bandvote_service_tests::isolated_consumer("spin", &topic);
    let consumer = bandvote_service_tests::run_consumer(cfg).await;
    let (counters, log) = (consumer.counters.clone(), consumer.log.clone());
    let want = acked.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.totals().await.map(|t| t.total).unwrap_or(0) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // anything extra would show now
    assert_eq!(counters.totals().await.unwrap().total, want, "every 201 counted once in Redis");
    assert_eq!(log.collection().count_documents(mongodb::bson::doc! {}).await.unwrap(), want, "stored once in MongoDB");
    for id in &acked {
        assert_eq!(log.collection().count_documents(mongodb::bson::doc! { "_id": id }).await.unwrap(), 1, "vote {id} stored");
    }
    assert_eq!(counters.band_total("Bohemia Suburbana").await.unwrap(), want / 5);
    consumer.stop().await;
    bridge.kill_9();
}

/// A contest's refusals reach a client of the Spin artifact as they reach
/// one of our host: the REST bridge refuses by the rules, the adapter carries
/// the refusal back through the WIT `refused` variant, and the guest answers
/// it (status and JSON error) — on both runtimes.
#[tokio::test]
async fn the_spin_artifact_answers_a_contests_refusals_on_both_runtimes() {
    let wasm = std::env::var("BANDVOTE_WASMTIME_SERVE_WASM").expect("BANDVOTE_WASMTIME_SERVE_WASM: run through scripts/test.sh (scripts/build-spin.sh)");
    let topic = kit::fresh_topic("spin-contest", 1).await;
    let redis = format!("{}/10", kit::redis_url().trim_end_matches('/'));
    let mut con = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut con).await.unwrap();
    let store = bandvote_store::ContestStore::new(&redis, "").unwrap();
    // An empty Redis is "not known" (503) until the record says "no contest".
    store.set_current(None).await.unwrap();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let open = |closes_at_ms| bandvote_contest::Contest {
        id: "spin-final".into(),
        title: "Final".into(),
        roster: ["Alux Nahual", "Bohemia Suburbana"].into_iter().map(|b| bandvote_contest::Entry { band: b.into(), albums: vec![] }).collect(),
        opens_at_ms: 0,
        closes_at_ms,
        votes_per_voter: 1,
        revote: bandvote_contest::Revote::Refuse,
        voters: bandvote_contest::Voters::Id,
    };
    let (grpc, rest, admin) = (free_addr(), free_addr(), free_addr());
    let mut bridge = Service::new(
        "spin-contest-bridge",
        bin("bandvote-grpc"),
        vec!["--listen".into(), grpc.to_string(), "--rest-listen".into(), rest.to_string(), "--admin-listen".into(), admin.to_string()],
        vec![
            ("BANDVOTE_KAFKA_BROKERS".into(), kit::kafka_brokers()),
            ("BANDVOTE_TOPIC".into(), topic.clone()),
            ("BANDVOTE_IDEMPOTENCY_REDIS_URL".into(), redis.clone()),
            ("BANDVOTE_CONTEST_POLL_MS".into(), "200".into()),
        ],
    );
    bridge.start();
    wait_ready(admin, Duration::from_secs(60)).await;
    let http = reqwest::Client::new();
    let vote = |band: &str| format!(r#"{{"name":"{band}","album":"x","year":"1990","rank":"1"}}"#);
    for (version, wasmtime) in runtimes() {
        store.put(&open(now() + 3_600_000)).await.unwrap();
        store.set_current(Some("spin-final")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let listen = free_addr();
        let mut server = serve(&wasmtime, &version, &wasm, listen, rest, &topic);
        let url = format!("http://{listen}/");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !http.get(format!("{url}healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline && server.0.try_wait().unwrap().is_none(), "wasmtime serve {version} did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let on = |what: &str| format!("wasmtime {version}: {what}");
        let send = |body: String, voter: Option<&'static str>| {
            let mut r = http.post(&url).body(body);
            if let Some(v) = voter {
                r = r.header("x-voter", v);
            }
            async move {
                let r = r.send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
            }
        };
        let (s, b) = send(vote("Bohemia Suburbano"), Some("fan-1")).await;
        assert_eq!((s, b["error"]["code"].as_str()), (422, Some("unknown_band")), "{}", on(&b.to_string()));
        assert_eq!(b["error"]["closest"][0], "Bohemia Suburbana", "{}", on(&b.to_string()));
        let (s, b) = send(vote("Alux Nahual"), None).await;
        assert_eq!((s, b["error"]["code"].as_str()), (422, Some("voter_required")), "{}", on(&b.to_string()));
        let (s, b) = send(vote("alux nahual"), Some("fan-1")).await;
        assert_eq!(s, 201, "{}", on(&b.to_string()));
        store.put(&open(now())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (s, b) = send(vote("Alux Nahual"), Some("fan-2")).await;
        assert_eq!((s, b["error"]["code"].as_str(), b["error"]["closes_at_ms"].is_i64()), (403, Some("voting_closed"), true), "{}", on(&b.to_string()));
        drop(server);
    }
    // The acknowledged votes carry the contest and the voter, keyed by voter.
    let records = kit::read_topic(&topic, 2, Duration::from_secs(20)).await;
    for r in &records {
        let v = bandvote_vote::record::decode(&r.value).unwrap();
        assert_eq!((v.contest.as_deref(), v.voter.as_deref(), r.key.as_slice()), (Some("spin-final"), Some("fan-1"), b"fan-1".as_slice()));
    }
    bridge.kill_9();
}

/// A REST bridge that stops answering (issue 31: the Spin route's one
/// remote call): a bridge that takes the request and never answers, then
/// one whose packets vanish (a blackholed namespace: no reset). On both
/// runtimes each vote gets 503 + Retry-After within the client's 10 s, not
/// a hang: the adapter bounds its request (first byte 8 s, connect 2 s).
#[tokio::test]
async fn a_rest_bridge_that_stops_answering_costs_a_503_within_10_s_on_both_runtimes() {
    let wasm = std::env::var("BANDVOTE_WASMTIME_SERVE_WASM").expect("BANDVOTE_WASMTIME_SERVE_WASM: run through scripts/test.sh (scripts/build-spin.sh)");
    // Takes every connection and every byte, answers nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = silent.accept().await {
            tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut s, &mut sink).await;
            });
        }
    });
    let mut cut = bandvote_testkit::netns::Netns::create(16);
    cut.cut();
    let blackholed = SocketAddr::from((cut.ns_ip, 8082));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let vote = r#"{"name":"Alux Nahual","album":"x","year":"1990","rank":"1"}"#;
    for (version, wasmtime) in runtimes() {
        for (what, rest, within) in [("silent", silent_addr, Duration::from_secs(10)), ("blackholed", blackholed, Duration::from_secs(5))] {
            let listen = free_addr();
            let mut server = serve(&wasmtime, &version, &wasm, listen, rest, "spin-unanswered");
            let url = format!("http://{listen}/");
            let deadline = Instant::now() + Duration::from_secs(120);
            while !http.get(format!("{url}healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
                assert!(Instant::now() < deadline && server.0.try_wait().unwrap().is_none(), "wasmtime serve {version} did not come up");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let asked = Instant::now();
            let r = http.post(&url).body(vote).send().await;
            let took = asked.elapsed();
            let (status, retry_after) = r.map(|r| (r.status().as_u16(), r.headers().contains_key("retry-after"))).unwrap_or((0, false));
            println!("wasmtime {version}, a {what} REST bridge: {status} (Retry-After: {retry_after}) in {took:?}");
            assert_eq!((status, retry_after), (503, true), "wasmtime {version}, {what} bridge: answered in {took:?}");
            assert!(took <= within, "wasmtime {version}, {what} bridge: took {took:?}");
            assert!(server.0.try_wait().unwrap().is_none(), "wasmtime serve {version} still runs");
            drop(server);
        }
    }
    cut.heal();
}
