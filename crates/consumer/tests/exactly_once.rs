//! Exactly-once counting against real nisshi (Kafka), Redis and MongoDB, including a
//! kill -9 of the consumer process mid-stream.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bandvote_consumer::batch::Batch;
use bandvote_consumer::config::ConsumerConfig;
use bandvote_consumer::metrics::ConsumerMetrics;
use bandvote_consumer::pipeline::{BatchApplier, Pipeline};
use bandvote_consumer::recount;
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_testkit as kit;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A configuration isolated from every other test: own topic, group, Redis prefix, collection.
async fn isolated(name: &str, partitions: i32) -> ConsumerConfig {
    let topic = kit::fresh_topic(name, partitions).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    ConsumerConfig {
        kafka_brokers: kit::kafka_brokers(),
        dlq_topic: format!("{topic}-dlq"),
        dlq_brokers: String::new(),
        dlq_timeout_ms: 5_000,
        group: kit::unique("grp"),
        redis_url: kit::redis_url(),
        redis_prefix: format!("{}:", kit::unique("t")),
        mongo_url: kit::mongo_url(),
        mongo_db: "bandvote_test".into(),
        mongo_collection: kit::unique("votes"),
        batch_max: 200,
        batch_wait_ms: 20,
        fetch_partition_bytes: 8 << 20,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        instance_id: String::new(),
        kafka_debug: String::new(),
        topic,
    }
}

/// The tests in this file run one at a time: a consumer-group rebalance on
/// the broker (after a kill -9) can stall the group for seconds, which would starve
/// the other tests' consumers.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Publish like a well-behaved client: on an error, retry the same vote (same
/// vote_id) until Kafka acknowledges it, for at most a minute.
async fn publish_retrying(p: &VotePublisher, vote: &bandvote_vote::Vote) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = p.publish(vote).await {
        assert!(Instant::now() < deadline, "vote {} never acknowledged: {e}", vote.vote_id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn publisher(cfg: &ConsumerConfig) -> VotePublisher {
    VotePublisher::new(PublisherConfig { brokers: cfg.kafka_brokers.clone(), topic: cfg.topic.clone(), ..Default::default() }).unwrap()
}

/// The sinks of a configuration, without joining its consumer group (an idle
/// group member would slow the group coordinator).
async fn sinks(cfg: &ConsumerConfig) -> BatchApplier {
    BatchApplier::connect(cfg, ConsumerMetrics::new()).await.unwrap()
}

async fn wait_for_total(p: &BatchApplier, want: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        // Tolerate a Redis restart under way: the connection manager reconnects.
        let total = p.counters().totals().await.map(|t| t.total).unwrap_or(0);
        if total >= want || Instant::now() > deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn counts_once_despite_duplicates_replays_and_poison() {
    let _serial = SERIAL.lock().await;
    let cfg = isolated("eo", 3).await;
    let p = publisher(&cfg);
    let bands = ["Alux Nahual", "Bohemia Suburbana", "Viernes Verde"];
    for i in 0..60 {
        publish_retrying(&p, &kit::vote(bands[i % 3], Some(&format!("v-{i}")))).await;
    }
    // Client retries: the same vote ids again.
    for i in 0..10 {
        publish_retrying(&p, &kit::vote(bands[i % 3], Some(&format!("v-{i}")))).await;
    }
    // A poison record.
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kit::kafka_brokers()).create().unwrap();
    raw.send(FutureRecord::to(&cfg.topic).key("poison").payload("not a vote"), Duration::from_secs(5)).await.unwrap();

    let pipeline = Pipeline::connect(cfg.clone(), ConsumerMetrics::new()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let check = sinks(&cfg).await;
    let run = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));
    assert_eq!(wait_for_total(&check, 60, Duration::from_secs(60)).await, 60);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let totals = check.counters().totals().await.unwrap();
    assert_eq!(totals.total, 60, "duplicates not counted");
    assert_eq!(totals.by_band["Alux Nahual"], 20);
    assert_eq!(check.log().collection().count_documents(mongodb::bson::doc! {}).await.unwrap(), 60);
    let (_, diffs) = recount::recount(check.log(), check.counters()).await.unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    // The topic itself agrees: 60 distinct votes, 10 repeats, 1 undecodable.
    let (scan, diffs) = recount::recount_from_kafka(&cfg.kafka_brokers, &cfg.topic, check.log(), check.counters()).await.unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
    assert_eq!((scan.totals.total, scan.repeats, scan.undecodable), (60, 10, 1));
    // Nothing is kept per vote in Redis: only the fixed set of counter keys.
    let mut con = redis_for_checks().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", cfg.redis_prefix)).query_async(&mut con).await.unwrap();
    assert!(keys.iter().all(|k| !k.contains("seen")), "per-vote keys in Redis: {keys:?}");
    let dlq = kit::read_topic(&cfg.dlq_topic, 1, Duration::from_secs(20)).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].value, b"not a vote");
    let _ = stop_tx.send(());
    run.await.unwrap();

    // Replaying an already applied batch changes nothing.
    let mut again = Batch::default();
    for rec in kit::read_topic(&cfg.topic, 70, Duration::from_secs(30)).await {
        again.push(rec.partition, rec.offset, &rec.key, &rec.value);
    }
    // Another test restarts the shared Redis meanwhile: retry like the consumer does.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let replayed = loop {
        match async { check.apply(&again).await?; Ok::<_, bandvote_consumer::SinkError>(check.counters().totals().await?) }.await {
            Ok(t) => break t,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("replay check: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("replay check: {e}"),
        }
    };
    assert_eq!(replayed, totals);
}

#[tokio::test]
async fn rebuild_restores_counters_lost_by_redis() {
    let _serial = SERIAL.lock().await;
    let cfg = isolated("rebuild", 2).await;
    let p = publisher(&cfg);
    for i in 0..30 {
        publish_retrying(&p, &kit::vote(if i % 2 == 0 { "A" } else { "B" }, Some(&format!("r-{i}")))).await;
    }
    let pipeline = Pipeline::connect(cfg.clone(), ConsumerMetrics::new()).await.unwrap();
    let counters = pipeline.applier().counters().clone();
    let log = pipeline.applier().log().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.totals().await.unwrap().total < 30 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = counters.totals().await.unwrap();
    assert_eq!(before.total, 30);
    // Redis loses everything (as after a restart without its AOF).
    let mut con = redis_for_checks().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", cfg.redis_prefix)).query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut con).await.unwrap();
    // New votes arrive: the consumer notices the empty counters, rebuilds, then applies.
    for i in 30..40 {
        publish_retrying(&p, &kit::vote("C", Some(&format!("r-{i}")))).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.totals().await.unwrap().total < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = counters.totals().await.unwrap();
    assert_eq!(after.total, 40);
    assert_eq!((after.by_band["A"], after.by_band["B"], after.by_band["C"]), (15, 15, 10));
    assert!(recount::recount(&log, &counters).await.unwrap().1.is_empty());
    let _ = stop_tx.send(());
    run.await.unwrap();
}

fn spawn_consumer(cfg: &ConsumerConfig) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bandvote-consumer"))
        .env("BANDVOTE_KAFKA_BROKERS", &cfg.kafka_brokers)
        .env("BANDVOTE_TOPIC", &cfg.topic)
        .env("BANDVOTE_DLQ_TOPIC", &cfg.dlq_topic)
        .env("BANDVOTE_CONSUMER_GROUP", &cfg.group)
        .env("BANDVOTE_REDIS_URL", &cfg.redis_url)
        .env("BANDVOTE_REDIS_PREFIX", &cfg.redis_prefix)
        .env("BANDVOTE_MONGO_URL", &cfg.mongo_url)
        .env("BANDVOTE_MONGO_DB", &cfg.mongo_db)
        .env("BANDVOTE_MONGO_COLLECTION", &cfg.mongo_collection)
        .env("BANDVOTE_BATCH_MAX", "50")
        .env("BANDVOTE_CONSUMER_INSTANCE_ID", &cfg.instance_id)
        .env("BANDVOTE_CONSUMER_ADMIN_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(std::env::temp_dir().join("bandvote-kill9-consumer.log")).unwrap())
        .spawn()
        .expect("spawn bandvote-consumer")
}

/// Publish votes 0..n (ids `PREFIX-i`, `bands` bands) in chunks, retrying each like a client.
fn spawn_producer(p: VotePublisher, n: usize, chunk: usize, bands: usize, prefix: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for ids in (0..n).collect::<Vec<_>>().chunks(chunk) {
            let votes: Vec<_> = ids.iter().map(|i| kit::vote(&format!("band-{}", i % bands), Some(&format!("{prefix}-{i}")))).collect();
            futures::future::join_all(votes.iter().map(|v| publish_retrying(&p, v))).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// After the stream: every one of the `n` votes counted once, stored once, and the recount agrees.
async fn assert_exactly_once(check: &BatchApplier, n: usize) {
    let total = wait_for_total(check, n as u64, Duration::from_secs(240)).await;
    assert_eq!(total, n as u64, "every acknowledged vote counted");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(check.counters().totals().await.unwrap().total, n as u64, "nothing counted twice");
    assert_eq!(check.log().collection().count_documents(mongodb::bson::doc! {}).await.unwrap(), n as u64);
    let (_, diffs) = recount::recount(check.log(), check.counters()).await.unwrap();
    assert!(diffs.is_empty(), "{diffs:?}");
}

#[tokio::test]
async fn kill_9_mid_stream_loses_and_doubles_nothing() {
    let _serial = SERIAL.lock().await;
    // The restarted process is the same static member (as a StatefulSet pod would be).
    let cfg = ConsumerConfig { instance_id: kit::unique("consumer"), ..isolated("kill9", 3).await };
    let check = sinks(&cfg).await;
    let p = publisher(&cfg);
    const N: usize = 3000;
    let producer = spawn_producer(p, N, 100, 7, "k");
    let mut child = spawn_consumer(&cfg);
    // Kill -9 twice at different points mid-stream, restarting each time.
    for wait_for in [300u64, 1500] {
        wait_for_total(&check, wait_for, Duration::from_secs(60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        child = spawn_consumer(&cfg);
    }
    producer.await.unwrap();
    assert_exactly_once(&check, N).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Restart a real service through the project's own script.
fn restart_service(name: &str) {
    let script = bandvote_testkit::repo_root().join("scripts/services.sh");
    let status = Command::new("bash").arg(script).args(["restart", name]).status().expect("services.sh");
    assert!(status.success(), "restarting {name}");
}

#[tokio::test]
async fn restarts_of_broker_and_redis_lose_and_double_nothing() {
    let _serial = SERIAL.lock().await;
    let cfg = ConsumerConfig { instance_id: kit::unique("consumer"), ..isolated("restarts", 3).await };
    let check = sinks(&cfg).await;
    let p = publisher(&cfg);
    const N: usize = 1500;
    let producer = spawn_producer(p, N, 30, 5, "rs");
    let mut child = spawn_consumer(&cfg);
    for (after, service) in [(300u64, "kafka"), (800, "redis")] {
        wait_for_total(&check, after, Duration::from_secs(120)).await;
        restart_service(service);
    }
    producer.await.unwrap();
    assert_exactly_once(&check, N).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every key of a test's Redis prefix, dumped (to restore an older Redis).
/// A connection for the tests' own checks, with a generous response timeout:
/// the client's default (500 ms) was exceeded once on this loaded 2-core machine.
async fn redis_for_checks() -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    redis::Client::open(kit::redis_url()).unwrap().get_multiplexed_async_connection_with_config(&config).await.unwrap()
}

async fn snapshot(con: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(con).await.unwrap();
    let mut out = Vec::new();
    for k in keys {
        let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query_async(con).await.unwrap();
        out.push((k, dump));
    }
    out
}

/// Redis comes back older than Kafka's committed offsets (a restore, a
/// failover to a lagging replica): the consumer re-reads from the sinks'
/// offset, so the votes in between are counted, once.
#[tokio::test]
async fn redis_restored_older_than_the_commit_is_caught_up() {
    let _serial = SERIAL.lock().await;
    let cfg = ConsumerConfig { instance_id: kit::unique("consumer"), ..isolated("restore", 2).await };
    let check = sinks(&cfg).await;
    let p = publisher(&cfg);
    let mut con = redis_for_checks().await;
    for i in 0..40 {
        publish_retrying(&p, &kit::vote(if i % 2 == 0 { "A" } else { "B" }, Some(&format!("o-{i}")))).await;
    }
    let mut child = spawn_consumer(&cfg);
    assert_eq!(wait_for_total(&check, 40, Duration::from_secs(90)).await, 40);
    let old = snapshot(&mut con, &cfg.redis_prefix).await;
    for i in 40..100 {
        publish_retrying(&p, &kit::vote("C", Some(&format!("o-{i}")))).await;
    }
    assert_eq!(wait_for_total(&check, 100, Duration::from_secs(90)).await, 100);
    // Let the consumer commit, then stop it and put the old Redis back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let now: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", cfg.redis_prefix)).query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("DEL").arg(&now).query_async(&mut con).await.unwrap();
    for (k, dump) in &old {
        let _: () = redis::cmd("RESTORE").arg(k).arg(0).arg(dump).arg("REPLACE").query_async(&mut con).await.unwrap();
    }
    assert_eq!(check.counters().totals().await.unwrap().total, 40, "Redis is back at the older state");
    let mut child = spawn_consumer(&cfg);
    assert_eq!(wait_for_total(&check, 100, Duration::from_secs(90)).await, 100, "the gap was re-read");
    assert_exactly_once(&check, 100).await;
    child.kill().unwrap();
    child.wait().unwrap();
}


/// Two consumers of one group apply batches while `recount --rebuild` runs
/// by hand three times: no batch slips between a rebuild's reads and its
/// replacement of the counters, so the counts stay exact.
#[tokio::test]
async fn two_consumers_and_rebuilds_during_load_count_exactly_once() {
    let _serial = SERIAL.lock().await;
    let cfg = isolated("rebuildrace", 4).await;
    let check = sinks(&cfg).await;
    let p = publisher(&cfg);
    const N: usize = 1500;
    let producer = spawn_producer(p, N, 30, 6, "rr");
    let mut a = spawn_consumer(&ConsumerConfig { instance_id: kit::unique("a"), ..cfg.clone() });
    let mut b = spawn_consumer(&ConsumerConfig { instance_id: kit::unique("b"), ..cfg.clone() });
    for after in [200u64, 600, 1000] {
        wait_for_total(&check, after, Duration::from_secs(120)).await;
        let rebuilt = recount::rebuild(check.log(), check.counters(), &cfg.topic).await.unwrap();
        assert!(rebuilt.is_some(), "no other rebuild was running");
    }
    producer.await.unwrap();
    assert_exactly_once(&check, N).await;
    for c in [&mut a, &mut b] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

/// A raw record with an optional `schema` header, as another producer might write it.
async fn send_raw(cfg: &ConsumerConfig, key: &str, value: &[u8], schema: Option<&str>) {
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &cfg.kafka_brokers).create().unwrap();
    let mut headers = rdkafka::message::OwnedHeaders::new();
    if let Some(s) = schema {
        headers = headers.insert(rdkafka::message::Header { key: "schema", value: Some(s) });
    }
    raw.send(FutureRecord::to(&cfg.topic).key(key).payload(value).headers(headers), Duration::from_secs(5)).await.unwrap();
}

/// The dead-letter topic refuses everything: poison goes to MongoDB and the
/// votes behind it are counted. A field added within v1 is read, not
/// dead-lettered. A record of an unknown schema version (v2) stops the
/// consumer there: nothing after it is counted, nothing is dead-lettered.
#[tokio::test]
async fn schema_versions_and_a_broken_dead_letter_topic() {
    let _serial = SERIAL.lock().await;
    let mut cfg = isolated("schema", 1).await;
    cfg.dlq_topic = "no such topic: invalid name!".into();
    let p = publisher(&cfg);
    for i in 0..5 {
        publish_retrying(&p, &kit::vote("A", Some(&format!("s-{i}")))).await;
    }
    send_raw(&cfg, "poison", b"not a vote", Some(bandvote_vote::record::SCHEMA)).await;
    for i in 5..10 {
        publish_retrying(&p, &kit::vote("A", Some(&format!("s-{i}")))).await;
    }
    let added = br#"{"vote_id":"s-added","band":"B","album":"x","year":1990,"rank":1.0,"source":"http","received_at_ms":0,"country":"GT"}"#;
    send_raw(&cfg, "s-added", added, Some(bandvote_vote::record::SCHEMA)).await;

    let pipeline = Pipeline::connect(cfg.clone(), ConsumerMetrics::new()).await.unwrap();
    let check = sinks(&cfg).await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));
    assert_eq!(wait_for_total(&check, 11, Duration::from_secs(60)).await, 11, "votes behind the poison are counted");
    assert_eq!(check.log().dead_letters().count_documents(mongodb::bson::doc! {}).await.unwrap(), 1, "poison kept in MongoDB");

    send_raw(&cfg, "s-v2", br#"{"whatever":"v2 looks like"}"#, Some("bandvote.vote.v2")).await;
    for i in 10..13 {
        publish_retrying(&p, &kit::vote("A", Some(&format!("s-{i}")))).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(check.counters().totals().await.unwrap().total, 11, "stopped at the unknown schema");
    assert_eq!(check.log().dead_letters().count_documents(mongodb::bson::doc! {}).await.unwrap(), 1, "v2 is not poison");
    let _ = stop_tx.send(());
    run.await.unwrap();

    // Nothing in the dead letters decodes as a vote: replay republishes nothing.
    let r = bandvote_consumer::dead_letter::replay(&cfg.kafka_brokers, &cfg.dlq_topic, check.log(), &p).await;
    assert!(r.is_err() || r.unwrap().republished == 0);
}

/// Redis is flushed, and later put back to an older state, while the consumer
/// keeps running and votes keep arriving: no assignment happens, so only the
/// apply script's refusals (no applied offsets while the log has votes; a
/// batch past the applied offset + 1) make the consumer rebuild or read
/// again. In the end every acknowledged vote is counted once.
#[tokio::test]
async fn redis_flushed_or_restored_older_during_load_counts_exactly_once() {
    let _serial = SERIAL.lock().await;
    let cfg = isolated("flush", 2).await;
    let check = sinks(&cfg).await;
    let p = publisher(&cfg);
    let mut con = redis_for_checks().await;
    let pipeline = Pipeline::connect(cfg.clone(), ConsumerMetrics::new()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));
    const N: usize = 300;
    let load = tokio::spawn(async move {
        for i in 0..N {
            publish_retrying(&p, &kit::vote(["A", "B", "C"][i % 3], Some(&format!("f-{i}")))).await;
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
    assert!(wait_for_total(&check, 60, Duration::from_secs(60)).await >= 60);
    let old = snapshot(&mut con, &cfg.redis_prefix).await;
    wait_for_total(&check, 120, Duration::from_secs(60)).await;
    // Everything gone at once, under the running consumer.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    wait_for_total(&check, 200, Duration::from_secs(60)).await;
    // And back to the older state, at once (one MULTI), under the running consumer.
    let now: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", cfg.redis_prefix)).query_async(&mut con).await.unwrap();
    let mut back = redis::pipe();
    back.atomic();
    if !now.is_empty() {
        back.cmd("DEL").arg(&now).ignore();
    }
    // (Not the fences of the moment: restored without their TTL they would stay.)
    for (k, dump) in old.iter().filter(|(k, _)| !k.contains("applying:") && !k.ends_with("rebuilding")) {
        back.cmd("RESTORE").arg(k).arg(0).arg(dump).arg("REPLACE").ignore();
    }
    let _: () = back.query_async(&mut con).await.unwrap();
    load.await.unwrap();
    assert_exactly_once(&check, N).await;
    let _ = stop_tx.send(());
    consumer.await.unwrap();
}

/// A dead-letter topic that never answers (its brokers accept connections and
/// say nothing, so the producer waits for a leader): a batch's poison records
/// are sent together and given up after `--dlq-timeout-ms`, kept in MongoDB's
/// dead-letter collection instead, and the votes behind them are counted in
/// seconds (librdkafka's default was 5 minutes per record, one at a time).
#[tokio::test]
async fn a_dead_letter_topic_without_a_leader_does_not_stall_the_votes() {
    let _serial = SERIAL.lock().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hold = held.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = silent.accept().await {
            hold.lock().unwrap().push(conn); // read nothing, answer nothing
        }
    });
    let cfg = ConsumerConfig { dlq_brokers: silent_addr.to_string(), dlq_timeout_ms: 1_500, ..isolated("dlq-stuck", 1).await };
    let p = publisher(&cfg);
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", kit::kafka_brokers()).create().unwrap();
    for i in 0..3 {
        raw.send(FutureRecord::to(&cfg.topic).key("poison").payload(format!("not a vote {i}").as_str()), Duration::from_secs(5)).await.unwrap();
    }
    for i in 0..20 {
        publish_retrying(&p, &kit::vote("Caifanes", Some(&format!("d-{i}")))).await;
    }
    let check = sinks(&cfg).await;
    let pipeline = Pipeline::connect(cfg.clone(), ConsumerMetrics::new()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(pipeline.run(async move {
        let _ = stop_rx.await;
    }));
    assert_eq!(wait_for_total(&check, 20, Duration::from_secs(30)).await, 20, "the votes behind the poison are counted");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert_eq!(check.log().dead_letters().count_documents(mongodb::bson::doc! {}).await.unwrap(), 3, "the poison kept in MongoDB");
    let _ = stop_tx.send(());
    run.await.unwrap();
}
