//! The soak: the demo's load (16 HTTP + 8 gRPC clients, both retrying every
//! vote with the same key until acknowledged) for `BANDVOTE_SOAK_SECONDS`
//! (default 32 s) against a broker of its own, while the broker, the wasm host,
//! the consumer and the gRPC producer are each killed with SIGKILL and
//! restarted. In the end every acknowledged vote is counted once in Redis and
//! stored once in MongoDB.
//!
//! The broker is a `nisshi` process (from `PATH`, installed by
//! `scripts/setup.sh`) on its own port: sqlite in a fresh directory, or the
//! PostgreSQL of `scripts/services.sh` when `BANDVOTE_KAFKA_STORAGE=postgres`
//! (own cluster id). Killing it does not disturb the other tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bandvote_store::VoteLog;
use bandvote_consumer::recount;
use bandvote_store::Counters;
use bandvote_grpc::proto::bandvote::vote_service_client::VoteServiceClient;
use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, free_addr, http_status, log_dir, wait_ready, Service};
use bandvote_vote::pb;

const HTTP_CLIENTS: usize = 16;
const GRPC_CLIENTS: usize = 8;
/// A single vote that is still not acknowledged after this fails the test.
const VOTE_DEADLINE: Duration = Duration::from_secs(120);

fn soak_seconds() -> u64 {
    std::env::var("BANDVOTE_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(32).max(30)
}

/// A nisshi broker of this test's own, restartable on the same data.
fn broker(port: u16) -> Service {
    let id = kit::unique("soak");
    let storage = match std::env::var("BANDVOTE_KAFKA_STORAGE").as_deref() {
        Ok("postgres") => {
            let pg_port = std::env::var("BANDVOTE_PG_PORT").expect("BANDVOTE_PG_PORT (scripts/test.sh sets it)");
            format!("postgres://postgres@127.0.0.1:{pg_port}/postgres")
        }
        _ => "sqlite://nisshi.db".to_string(),
    };
    let dir = log_dir().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut b = Service::new(
        "soak-broker",
        PathBuf::from("nisshi"),
        vec![
            "broker".into(),
            "--cluster-id".into(),
            id.replace('-', "_"),
            "--listener-url".into(),
            url.clone(),
            "--advertised-listener-url".into(),
            url,
            "--group-initial-rebalance-delay".into(),
            "500ms".into(),
            "--storage-engine".into(),
            storage,
        ],
        vec![("RUST_LOG".into(), "warn".into())],
    );
    b.cwd = Some(dir);
    b
}

async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "broker did not open port {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http_body(i: u64) -> String {
    // Both shapes the original clients send.
    if i % 2 == 0 {
        format!(r#"{{"name":"band-{}","album":"album-{}","year":"1990","rank":"1"}}"#, i % 7, i % 3)
    } else {
        format!(r#"{{"album":"album-{}","year":"1991","artist":"band-{}","ranked":"2"}}"#, i % 3, i % 7)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_with_kill_9_of_broker_host_consumer_and_grpc() {
    let wasm = std::env::var("BANDVOTE_INTAKE_WASM").expect("BANDVOTE_INTAKE_WASM: run through scripts/test.sh");
    let port = free_addr().port();
    let brokers = format!("127.0.0.1:{port}");
    let mut kafka = broker(port);
    kafka.start();
    wait_port(port).await;
    let topic = kit::unique("soak");
    bandvote_kafka::ensure_topic(&brokers, &topic, 6).await.expect("create topic");
    bandvote_kafka::ensure_topic(&brokers, &format!("{topic}-dlq"), 1).await.expect("create dlq topic");

    let prefix = format!("{}:", kit::unique("soak"));
    let collection = kit::unique("soak");
    let common = vec![
        ("BANDVOTE_KAFKA_BROKERS".to_string(), brokers.clone()),
        ("BANDVOTE_TOPIC".to_string(), topic.clone()),
        ("BANDVOTE_DLQ_TOPIC".to_string(), format!("{topic}-dlq")),
        ("BANDVOTE_REDIS_URL".to_string(), kit::redis_url()),
        ("BANDVOTE_REDIS_PREFIX".to_string(), prefix.clone()),
        ("BANDVOTE_MONGO_URL".to_string(), kit::mongo_url()),
        ("BANDVOTE_MONGO_DB".to_string(), "bandvote_test".to_string()),
        ("BANDVOTE_MONGO_COLLECTION".to_string(), collection.clone()),
        ("BANDVOTE_CONSUMER_GROUP".to_string(), kit::unique("grp")),
        ("BANDVOTE_CONSUMER_INSTANCE_ID".to_string(), kit::unique("consumer")),
    ];
    let (http, host_admin) = (free_addr(), free_addr());
    let mut host = Service::new(
        "soak-host",
        bin("bandvote-host"),
        vec!["--component".into(), wasm, "--listen".into(), http.to_string(), "--admin-listen".into(), host_admin.to_string()],
        common.clone(),
    );
    let (grpc, rest, grpc_admin) = (free_addr(), free_addr(), free_addr());
    let mut grpc_svc = Service::new(
        "soak-grpc",
        bin("bandvote-grpc"),
        vec!["--listen".into(), grpc.to_string(), "--rest-listen".into(), rest.to_string(), "--admin-listen".into(), grpc_admin.to_string()],
        common.clone(),
    );
    let consumer_admin = free_addr();
    let mut consumer = Service::new("soak-consumer", bin("bandvote-consumer"), vec!["--admin-listen".into(), consumer_admin.to_string()], common);
    host.start();
    grpc_svc.start();
    consumer.start();
    wait_ready(host_admin, Duration::from_secs(60)).await;
    wait_ready(grpc_admin, Duration::from_secs(60)).await;
    wait_ready(consumer_admin, Duration::from_secs(60)).await;

    let soak = Duration::from_secs(soak_seconds());
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));

    // HTTP clients: one vote at a time, retried with the same Idempotency-Key until 201.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut clients = Vec::new();
    for w in 0..HTTP_CLIENTS as u64 {
        let (client, url, stop, acked, retries) = (client.clone(), format!("http://{http}/"), stop.clone(), acked.clone(), retries.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let deadline = Instant::now() + VOTE_DEADLINE;
                loop {
                    let r = client.post(&url).header("idempotency-key", format!("h-{w}-{i}")).body(http_body(i)).send().await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(201) => break,
                        Ok(s) if s != 503 && s != 500 => panic!("http vote h-{w}-{i}: unexpected status {s}"),
                        _ => {}
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    assert!(Instant::now() < deadline, "http vote h-{w}-{i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                acked.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    // gRPC clients: same, with vote_id as the key; reconnect after a transport error.
    for w in 0..GRPC_CLIENTS as u64 {
        let (stop, acked, retries) = (stop.clone(), acked.clone(), retries.clone());
        clients.push(tokio::spawn(async move {
            let mut client: Option<VoteServiceClient<tonic::transport::Channel>> = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let deadline = Instant::now() + VOTE_DEADLINE;
                loop {
                    if client.is_none() {
                        client = VoteServiceClient::connect(format!("http://{grpc}")).await.ok();
                    }
                    let vote = pb::Vote {
                        band: format!("band-{}", i % 7),
                        album: format!("album-{}", i % 3),
                        year: "1992".into(),
                        rank: "3".into(),
                        vote_id: format!("g-{w}-{i}"),
                        voter: String::new(),
                    };
                    if let Some(c) = client.as_mut() {
                        match tokio::time::timeout(Duration::from_secs(15), c.cast(vote)).await {
                            Ok(Ok(_)) => break,
                            Ok(Err(s)) if s.code() == tonic::Code::InvalidArgument => panic!("grpc vote g-{w}-{i}: {s}"),
                            _ => client = None,
                        }
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    assert!(Instant::now() < deadline, "grpc vote g-{w}-{i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                acked.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }

    // The faults, spread over the soak.
    let at = |frac: f64| started + soak.mul_f64(frac);
    let progress = |what: &str| eprintln!("[soak {:>5.1}s] {what}; acknowledged so far {}", started.elapsed().as_secs_f64(), acked.load(Ordering::Relaxed));
    tokio::time::sleep_until(at(0.15).into()).await;
    progress("kill -9 broker");
    kafka.kill_9();
    // A broker that stopped acknowledging is visible at once: every service's
    // /readyz turns 503 while it is down (votes wait: stall, fetch errors).
    let down = Instant::now();
    let admins = [("host", host_admin), ("grpc", grpc_admin), ("consumer", consumer_admin)];
    let mut not_ready = std::collections::BTreeMap::new();
    while not_ready.len() < admins.len() && down.elapsed() < Duration::from_secs(15) {
        for (name, addr) in admins {
            if !not_ready.contains_key(name) && http_status(addr, "/readyz").await.is_some_and(|s| s == 503) {
                not_ready.insert(name, down.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress(&format!("not ready while the broker is down: {not_ready:?}"));
    assert_eq!(not_ready.len(), admins.len(), "every service reports the dead broker on /readyz: {not_ready:?}");
    kafka.start();
    wait_port(port).await;
    progress("broker restarted on the same data");
    for (name, addr) in admins {
        wait_ready(addr, Duration::from_secs(60)).await;
        progress(&format!("{name} ready again"));
    }
    tokio::time::sleep_until(at(0.45).into()).await;
    progress("kill -9 wasm host");
    host.kill_9();
    host.start();
    tokio::time::sleep_until(at(0.6).into()).await;
    progress("kill -9 consumer");
    consumer.kill_9();
    consumer.start();
    tokio::time::sleep_until(at(0.75).into()).await;
    progress("kill -9 grpc producer");
    grpc_svc.kill_9();
    grpc_svc.start();
    tokio::time::sleep_until(at(1.0).into()).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let acked = acked.load(Ordering::Relaxed);
    progress(&format!("traffic stopped ({} retries)", retries.load(Ordering::Relaxed)));
    assert!(acked > 1000, "the soak acknowledged only {acked} votes");

    let counters = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut counted = 0;
    while Instant::now() < deadline {
        counted = counters.totals().await.map(|t| t.total).unwrap_or(0);
        if counted >= acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Anything still in flight inside the consumer would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let totals = counters.totals().await.unwrap();
    let stored = log.collection().count_documents(mongodb::bson::doc! {}).await.unwrap();
    eprintln!(
        "[soak] acknowledged {acked}, counted {}, stored {stored} in {:.1}s ({:.0} acknowledged/s)",
        totals.total,
        soak.as_secs_f64(),
        acked as f64 / soak.as_secs_f64()
    );
    assert_eq!(totals.total, acked, "every acknowledged vote counted exactly once (counted {counted} at the deadline)");
    assert_eq!(stored, acked, "every acknowledged vote stored exactly once");
    let diffs = recount::recount(&log, &counters).await.unwrap().1;
    assert!(diffs.is_empty(), "recount differences: {diffs:?}");
    let (scan, diffs) = recount::recount_from_kafka(&brokers, &topic, &log, &counters).await.unwrap();
    assert!(diffs.is_empty(), "recount from Kafka: {diffs:?}");
    eprintln!("[soak] the topic holds {} records: {} distinct votes, {} repeats (client retries)", scan.records, scan.totals.total, scan.repeats);
}
