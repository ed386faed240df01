//! The Redis ACL users of `k8s/base/redis/users.acl`, loaded into the real
//! redis-server: the consumer counts votes (Lua, MULTI, fences) as `consumer`,
//! the web app reads as `web`, and every Redis panel of the Grafana dashboards
//! runs, with the exact command the redis-datasource plugin sends, as
//! `grafana` and returns what the panel shows; the intakes claim idempotency
//! keys as `intake`. The readers cannot write.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bandvote_consumer::config::ConsumerConfig;
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_store::{Counters, Totals};
use bandvote_testkit as kit;
use serde_json::Value;

/// Commands the redis-datasource plugin offers (its query editor's list).
const PLUGIN_COMMANDS: &[&str] = &[
    "clientList", "clusterInfo", "clusterNodes", "get", "hget", "hgetall", "hkeys", "hlen", "hmget", "info", "llen", "tmscan",
    "scard", "slowlogGet", "smembers", "ttl", "type", "zrange", "xinfoStream", "xlen", "xrange", "xrevrange",
];

fn root() -> PathBuf {
    bandvote_testkit::repo_root()
}

/// `user <name> <rules…>` lines of the ACL file, passwords filled in.
fn acl_users(password: &str) -> HashMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("k8s/base/redis/users.acl")).unwrap();
    text.lines()
        .filter(|l| l.starts_with("user "))
        .map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let name = words.next().unwrap().to_owned();
            let rules = words.map(|w| if w.starts_with(">__") { format!(">{password}") } else { w.to_owned() }).collect();
            (name, rules)
        })
        .collect()
}

/// Create `user` under a name of its own (the test server's default user is left alone); its URL.
async fn create_user(admin: &mut redis::aio::MultiplexedConnection, rules: &[String], name: &str, password: &str) -> String {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(name).arg("reset");
    for r in rules {
        cmd.arg(r);
    }
    cmd.query_async::<()>(admin).await.unwrap_or_else(|e| panic!("ACL SETUSER {name} {rules:?}: {e}"));
    let base = kit::redis_url();
    base.replacen("redis://", &format!("redis://{name}:{password}@"), 1)
}

/// The command a panel target makes the plugin send.
fn panel_command(t: &Value, prefix: &str) -> (String, redis::Cmd) {
    let command = t["command"].as_str().expect("a command").to_owned();
    assert!(PLUGIN_COMMANDS.contains(&command.as_str()), "the redis-datasource plugin has no command {command}");
    let key = format!("{prefix}{}", t["keyName"].as_str().expect("a keyName"));
    let mut cmd = redis::cmd(&command.to_uppercase());
    cmd.arg(&key);
    match command.as_str() {
        "get" | "hgetall" => {}
        "zrange" => {
            cmd.arg(t["min"].as_str().unwrap()).arg(t["max"].as_str().unwrap());
            if let Some(q) = t["zrangeQuery"].as_str().filter(|q| !q.is_empty()) {
                cmd.arg(q);
            }
            cmd.arg("WITHSCORES");
        }
        other => panic!("add {other} to this test before using it in a panel"),
    }
    (t["keyName"].as_str().unwrap().to_owned(), cmd)
}

#[tokio::test]
async fn consumer_web_and_grafana_work_as_their_acl_users_and_readers_cannot_write() {
    let password = kit::unique("pw");
    let users = acl_users(&password);
    assert_eq!(users["default"], ["on", "nopass", "resetkeys", "resetchannels", "-@all", "+ping"], "unauthenticated clients may only PING");
    let admin_client = redis::Client::open(kit::redis_url()).unwrap();
    let mut admin = admin_client.get_multiplexed_async_connection().await.unwrap();
    let suffix = kit::unique("acl");
    let mut url = HashMap::new();
    for name in ["consumer", "web", "grafana", "intake"] {
        url.insert(name, create_user(&mut admin, &users[name], &format!("{name}-{suffix}"), &password).await);
    }

    // The consumer counts 40 votes as `consumer`.
    let topic = kit::fresh_topic("acl", 2).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let cfg = ConsumerConfig { redis_url: url["consumer"].clone(), batch_max: 50, ..bandvote_service_tests::isolated_consumer("acl", &topic) };
    let prefix = cfg.redis_prefix.clone();
    let consumer = bandvote_service_tests::run_consumer(cfg).await;
    let as_consumer = consumer.counters.clone();
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let bands = ["Caifanes", "Maná", "Café Tacvba", "Aterciopelados"];
    for i in 0..40 {
        publisher.publish(&kit::vote(bands[[0, 0, 0, 1, 1, 2, 3][i % 7]], Some(&format!("acl-{i}")))).await.unwrap();
    }
    let counters = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counters.total().await.unwrap() < 40 {
        assert!(Instant::now() < deadline, "the consumer (as its ACL user) did not count the votes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rebuild's fence works under the consumer's rules too (SET NX, SCAN, DEL).
    assert!(as_consumer.begin_rebuild("acl-test", Duration::from_secs(5)).await.unwrap());
    assert_eq!(as_consumer.appliers_writing().await.unwrap(), 0);
    as_consumer.end_rebuild("acl-test").await.unwrap();
    consumer.stop().await;
    let totals: Totals = counters.totals().await.unwrap();
    assert_eq!(totals.total, 40);

    // The web app reads as `web`.
    let web = bandvote_web::AppState::new(bandvote_web::Sources {
        redis_url: url["web"].clone(),
        redis_prefix: prefix.clone(),
        mongo_url: kit::mongo_url(),
        mongo_db: "bandvote_test".into(),
        mongo_collection: kit::unique("unused"),
    });
    let results = web.results().await.expect("the web app reads as its ACL user");
    assert_eq!(results["total"], 40);

    // Every Redis panel, as `grafana`, returns what its panel shows.
    let mut grafana = redis::Client::open(url["grafana"].as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut checked = 0;
    for f in std::fs::read_dir(root().join("k8s/base/grafana/dashboards")).unwrap() {
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                if t["datasource"]["type"] != "redis-datasource" {
                    continue;
                }
                let (key, cmd) = panel_command(t, &prefix);
                let title = panel["title"].as_str().unwrap_or_default();
                match (t["command"].as_str().unwrap(), key.as_str()) {
                    ("get", "votes:total") => {
                        let v: u64 = cmd.query_async(&mut grafana).await.unwrap();
                        assert_eq!(v, totals.total, "{title}");
                    }
                    ("hgetall", "votos_banda") => {
                        let v: HashMap<String, u64> = cmd.query_async(&mut grafana).await.unwrap();
                        assert_eq!(v, totals.by_band, "{title}");
                    }
                    ("hgetall", "votos_album") => {
                        let v: HashMap<String, u64> = cmd.query_async(&mut grafana).await.unwrap();
                        assert_eq!(v, totals.by_album, "{title}");
                    }
                    ("zrange", "leaderboard:bands") => {
                        let v: Vec<(String, f64)> = cmd.query_async(&mut grafana).await.unwrap();
                        assert!(v.windows(2).all(|w| w[0].1 <= w[1].1), "{title}: ascending scores (the panel sorts)");
                        let board: HashMap<String, u64> = v.into_iter().map(|(k, s)| (k, s as u64)).collect();
                        assert_eq!(board, totals.by_band, "{title}");
                    }
                    (c, k) => panic!("{title}: no expectation for {c} {k}; add one"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "every Redis panel checked ({checked})");

    // Readers cannot write, nor run arbitrary commands.
    let mut web_con = redis::Client::open(url["web"].as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    for con in [&mut grafana, &mut web_con] {
        let write: Result<(), _> = redis::cmd("HSET").arg(format!("{prefix}votos_banda")).arg("x").arg(1).query_async(con).await;
        let err = write.expect_err("a reader wrote").to_string();
        assert!(err.to_lowercase().contains("permission") || err.contains("NOPERM"), "{err}");
        let flush: Result<(), _> = redis::cmd("FLUSHALL").query_async(con).await;
        assert!(flush.is_err());
    }
    // The intakes claim idempotency keys as `intake`, and can touch nothing else.
    let claims = bandvote_store::KeyClaims::new(&url["intake"], "", Duration::from_secs(5)).unwrap();
    let stamp = bandvote_store::Stamp { received_at_ms: 1, contest: None, voter: None };
    let first = kit::vote("Caifanes", Some(&kit::unique("acl-key")));
    let claimed = claims.claim([(&first, Some(&stamp))]).await.expect("the intake claims keys as its ACL user");
    assert_eq!(claimed, [bandvote_store::Claim::First]);
    let given_back = kit::vote("Caifanes", Some(&kit::unique("acl-key")));
    claims.claim([(&given_back, Some(&stamp))]).await.unwrap();
    claims.release(&given_back).await.expect("the intake gives a claim back as its ACL user");
    // ... and admits band names into the capped set.
    let names = bandvote_store::BandNames::new(&url["intake"], "", 1_000).unwrap();
    assert_eq!(names.admit(&["Caifanes"]).await.expect("the intake admits band names as its ACL user"), [true]);
    // ... and reports how far it has published (what certify waits for), which the consumer reads.
    let reports = bandvote_store::PublishedThrough::new(&url["intake"], "").unwrap();
    reports.report("acl-intake:1", 10, 11).await.expect("the intake reports as its ACL user");
    let read_back = bandvote_store::PublishedThrough::new(&url["consumer"], "").unwrap().all().await.unwrap();
    assert!(read_back.iter().any(|r| r.intake == "acl-intake:1" && r.through_ms == 10), "{read_back:?}");
    let mut intake = redis::Client::open(url["intake"].as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let read: Result<Option<String>, _> = redis::cmd("GET").arg(format!("{prefix}votes:total")).query_async(&mut intake).await;
    assert!(read.is_err(), "the intake user reads no counters");

    for name in ["consumer", "web", "grafana", "intake"] {
        redis::cmd("ACL").arg("DELUSER").arg(format!("{name}-{suffix}")).query_async::<()>(&mut admin).await.unwrap();
    }
}
