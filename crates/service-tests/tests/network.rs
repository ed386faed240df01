//! Network faults (issue 31), with real processes and the kernel's network
//! stack ([`Netns`]): a store (Redis, then MongoDB, each in a namespace of
//! its own) is cut off by a blackhole (packets vanish, no
//! reset, no error) while the consumer counts a steady stream of votes, then
//! healed. Every vote acknowledged by Kafka is counted once and stored once,
//! the consumer's `/readyz` answers within a second during the cut, and
//! counting resumes within 2 s of the heal. `BANDVOTE_NET_CUT_SECS` makes
//! the cut longer by hand (15 s by default).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_store::VoteLog;
use bandvote_testkit as kit;
use bandvote_testkit::netns::Netns;
use bandvote_testkit::process::{http_status, log_dir, wait_ready, Service};
use common::{consumer_process, BANDS};

/// redis-server inside `ns` (port 6379, no persistence) and its URL.
fn redis_in(ns: &Netns, name: &str) -> (Service, String) {
    let dir = log_dir().join(kit::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let bind = ns.ns_ip.to_string();
    let dir = dir.to_string_lossy().into_owned();
    let (program, args) = ns.command_line("redis-server", &["--bind", &bind, "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", &dir]);
    (Service::new(name, program, args, vec![]), format!("redis://{bind}:6379/"))
}

/// `votes:total` over a new connection, or `None` if Redis does not answer within 500 ms.
async fn total(url: &str) -> Option<u64> {
    tokio::time::timeout(Duration::from_millis(500), async {
        let mut con = redis::Client::open(url).ok()?.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("GET").arg("votes:total").query_async::<Option<u64>>(&mut con).await.ok().map(Option::unwrap_or_default)
    })
    .await
    .ok()
    .flatten()
}

async fn wait_total(url: &str, at_least: u64, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if total(url).await.is_some_and(|t| t >= at_least) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The store a scenario cuts off.
#[derive(Clone, Copy, Debug)]
enum Cut {
    Redis,
    Mongo,
}

/// secantusd-rs inside `ns` (port 27017) and its URL.
fn mongo_in(ns: &Netns, name: &str) -> (Service, String) {
    let dir = log_dir().join(kit::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let host = ns.ns_ip.to_string();
    let dir = dir.to_string_lossy().into_owned();
    let (program, args) = ns.command_line("secantusd-rs", &["--host", &host, "--port", "27017", "--storage-path", &dir, "--sync-on-commit"]);
    (Service::new(name, program, args, vec![]), format!("mongodb://{host}:27017/"))
}

#[tokio::test]
async fn a_redis_blackhole_loses_and_doubles_nothing_and_counting_resumes_within_2_s() {
    blackhole(Cut::Redis, 1).await;
}

#[tokio::test]
async fn a_mongodb_blackhole_loses_and_doubles_nothing_and_counting_resumes_within_2_s() {
    blackhole(Cut::Mongo, 2).await;
}

/// One store in namespace `index`, blackholed under a steady stream of votes, then healed.
async fn blackhole(cut: Cut, index: u8) {
    let cut_for = Duration::from_secs(std::env::var("BANDVOTE_NET_CUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15));
    let mut ns = Netns::create(index);
    let name = format!("net-{cut:?}").to_lowercase();
    let (mut server, url, mongo) = match cut {
        Cut::Redis => {
            let (svc, url) = redis_in(&ns, &format!("{name}-redis"));
            (svc, url, kit::mongo_url())
        }
        Cut::Mongo => {
            let (svc, mongo) = mongo_in(&ns, &format!("{name}-mongo"));
            let url = common::redis_db(9);
            common::flush(&url).await;
            (svc, url, mongo)
        }
    };
    server.start();
    assert!(wait_total(&url, 0, Duration::from_secs(10)).await.is_some(), "redis did not answer");
    let topic = kit::fresh_topic(&name, 2).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("net");
    let (mut consumer, consumer_admin) = consumer_process(&format!("{name}-consumer"), &topic, &url, &collection);
    consumer.envs.retain(|(k, _)| k != "BANDVOTE_MONGO_URL");
    consumer.envs.push(("BANDVOTE_MONGO_URL".into(), mongo.clone()));
    consumer.start();
    wait_ready(consumer_admin, Duration::from_secs(60)).await;

    // A steady stream of votes, each acknowledged by Kafka (40 per second).
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let (sent, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let producer = tokio::spawn({
        let (sent, stop) = (sent.clone(), stop.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                publisher.publish(&kit::vote(BANDS[(i % 3) as usize], Some(&format!("net-{i}")))).await.expect("kafka acknowledges");
                i += 1;
                sent.store(i, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            i
        }
    });
    assert!(wait_total(&url, 20, Duration::from_secs(15)).await.is_some(), "counting before the cut");

    let before_cut = total(&url).await.expect("redis answers before the cut");
    ns.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let ready = http_status(consumer_admin, "/readyz").await;
    let readyz_took = asked.elapsed();
    tokio::time::sleep(cut_for.saturating_sub(Duration::from_secs(2) + readyz_took)).await;
    let sent_before_heal = sent.load(Ordering::SeqCst);
    ns.heal();
    let healed = Instant::now();
    let first = wait_total(&url, before_cut + 1, Duration::from_secs(120)).await.expect("counting resumes after the heal");
    wait_total(&url, sent_before_heal, Duration::from_secs(120)).await.expect("the backlog is counted after the heal");
    let caught_up = healed.elapsed();

    stop.store(true, Ordering::SeqCst);
    let n = producer.await.unwrap();
    assert!(wait_total(&url, n, Duration::from_secs(30)).await.is_some(), "every acknowledged vote counted");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counted = total(&url).await.unwrap();
    let log = VoteLog::connect(&mongo, "bandvote_test", &collection).await.unwrap();
    let stored = log.collection().count_documents(mongodb::bson::doc! {}).await.unwrap();
    println!(
        "{cut:?} blackholed {cut_for:?}: {n} acknowledged, {counted} counted, {stored} stored; /readyz during the cut: {ready:?} in {readyz_took:?}; \
         the first vote counted {first:?} after the heal, the backlog by {caught_up:?}"
    );
    assert_eq!((counted, stored), (n, n), "lost or doubled");
    assert_eq!(ready, Some(503), "not ready while {cut:?} is cut off");
    assert!(readyz_took < Duration::from_secs(1), "/readyz took {readyz_took:?}");
    assert!(first <= Duration::from_secs(2), "counting resumed {first:?} after the heal");
    drop((consumer, server, ns));
}
