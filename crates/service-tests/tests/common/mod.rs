//! What the contest and adversary tests share: a Redis database of their
//! own, the contest admin, the host and consumer processes, posting votes.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bandvote_consumer::contest_admin as admin;
use bandvote_contest::{Contest, Entry, Revote, Voters};
use bandvote_consumer::certify::Settle;
use bandvote_store::{ContestStore, PublishedThrough, VoteLog};
use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, free_addr, Service};

/// Redis database `db` of the test Redis.
pub fn redis_db(db: u8) -> String {
    format!("{}/{db}", kit::redis_url().trim_end_matches('/'))
}

pub async fn flush(url: &str) {
    let mut con = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut con).await.unwrap();
}

/// How long after a close `certify` waits here: the test intakes' delivery
/// timeout (5 s, the default) + 1 s, on one machine (no clock skew); these
/// tests send no retry after their contest is certified, so the claim window
/// is left out.
pub const SETTLE: Settle = Settle { delivery_timeout: Duration::from_secs(5), clock_skew: Duration::ZERO, claim_window: Duration::ZERO };

/// The intakes' published-through reports in Redis `redis` (what certify waits for).
pub fn reports(redis: &str) -> PublishedThrough {
    PublishedThrough::new(redis, "").unwrap()
}

/// The deployment's voter-token secret in these tests (32 bytes or more).
pub const SECRET: &str = "contest-test-secret-0123456789abcdef";

/// Contests in Redis `redis` and the vote log `collection` (the durable copy).
pub async fn admin_for(redis: &str, collection: &str) -> admin::ContestAdmin {
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", collection).await.unwrap();
    admin::ContestAdmin { store: ContestStore::new(redis, "").unwrap(), log }
}

pub fn contest(id: &str, cap: u32, voters: Voters) -> Contest {
    let now = admin::now_ms();
    Contest {
        id: id.into(),
        title: "Festival de Bandas".into(),
        roster: BANDS.into_iter().map(|b| Entry { band: b.into(), albums: vec![] }).collect(),
        opens_at_ms: now - 1_000,
        closes_at_ms: now + 3_600_000,
        votes_per_voter: cap,
        revote: Revote::Refuse,
        voters,
    }
}

/// A host (and its admin address) publishing to `topic`, reading contests from `redis`.
pub fn host(name: &str, topic: &str, redis: &str, extra: &[(&str, &str)]) -> (Service, std::net::SocketAddr, std::net::SocketAddr) {
    let wasm = std::env::var("BANDVOTE_INTAKE_WASM").expect("BANDVOTE_INTAKE_WASM: run through scripts/test.sh");
    let (http, admin_addr) = (free_addr(), free_addr());
    let mut envs = vec![
        ("BANDVOTE_KAFKA_BROKERS".to_string(), kit::kafka_brokers()),
        ("BANDVOTE_TOPIC".to_string(), topic.to_owned()),
        ("BANDVOTE_IDEMPOTENCY_REDIS_URL".to_string(), redis.to_owned()),
        ("BANDVOTE_CONTEST_POLL_MS".to_string(), "200".to_string()),
    ];
    envs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let svc = Service::new(
        name,
        bin("bandvote-host"),
        vec!["--component".into(), wasm, "--listen".into(), http.to_string(), "--admin-listen".into(), admin_addr.to_string()],
        envs,
    );
    (svc, http, admin_addr)
}

/// The consumer binary for `topic`, counting into `redis` (no prefix) and collection `collection`.
pub fn consumer_process(name: &str, topic: &str, redis: &str, collection: &str) -> (Service, std::net::SocketAddr) {
    let admin_addr = free_addr();
    let envs = vec![
        ("BANDVOTE_KAFKA_BROKERS".to_string(), kit::kafka_brokers()),
        ("BANDVOTE_TOPIC".to_string(), topic.to_owned()),
        ("BANDVOTE_DLQ_TOPIC".to_string(), format!("{topic}-dlq")),
        ("BANDVOTE_CONSUMER_GROUP".to_string(), kit::unique("grp")),
        ("BANDVOTE_CONSUMER_INSTANCE_ID".to_string(), kit::unique("c")),
        ("BANDVOTE_REDIS_URL".to_string(), redis.to_owned()),
        ("BANDVOTE_MONGO_URL".to_string(), kit::mongo_url()),
        ("BANDVOTE_MONGO_DB".to_string(), "bandvote_test".to_string()),
        ("BANDVOTE_MONGO_COLLECTION".to_string(), collection.to_owned()),
        ("BANDVOTE_BATCH_MAX".to_string(), "50".to_string()),
        ("BANDVOTE_CONSUMER_ADMIN_LISTEN".to_string(), admin_addr.to_string()),
    ];
    (Service::new(name, bin("bandvote-consumer"), vec!["run".into()], envs), admin_addr)
}

/// The web app binary reading `redis` and MongoDB `mongo_url` (collection `collection`), and its address.
pub fn web_process(name: &str, redis: &str, mongo_url: &str, collection: &str) -> (Service, std::net::SocketAddr) {
    let listen = free_addr();
    let envs = vec![
        ("BANDVOTE_WEB_LISTEN".to_string(), listen.to_string()),
        ("BANDVOTE_REDIS_URL".to_string(), redis.to_owned()),
        ("BANDVOTE_MONGO_URL".to_string(), mongo_url.to_owned()),
        ("BANDVOTE_MONGO_DB".to_string(), "bandvote_test".to_string()),
        ("BANDVOTE_MONGO_COLLECTION".to_string(), collection.to_owned()),
    ];
    (Service::new(name, bin("bandvote-web"), vec![], envs), listen)
}

pub async fn post(client: &reqwest::Client, http: std::net::SocketAddr, body: &str, headers: &[(&str, &str)]) -> Option<(u16, serde_json::Value)> {
    post_status(client, http, body, headers).await.map(|(status, _, body)| (status, body))
}

/// The status of a POST with its `Retry-After`.
pub async fn post_status(client: &reqwest::Client, http: std::net::SocketAddr, body: &str, headers: &[(&str, &str)]) -> Option<(u16, Option<String>, serde_json::Value)> {
    let mut req = client.post(format!("http://{http}/")).body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.ok()?;
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some((r.status().as_u16(), retry, r.json().await.unwrap_or_default()))
}


pub fn vote(band: &str) -> String {
    format!(r#"{{"name":"{band}","album":"En Vivo","year":"1990","rank":"1"}}"#)
}

/// The roster of the contests below.
pub const BANDS: [&str; 3] = ["Alux Nahual", "Bohemia Suburbana", "Viernes Verde"];

/// Contest `id`'s tally once it has applied `want` votes (every status), or after `within`.
pub async fn wait_applied(store: &ContestStore, id: &str, want: u64, within: Duration) -> bandvote_store::ContestTally {
    let deadline = Instant::now() + within;
    loop {
        let t = store.tally(id).await.unwrap();
        if t.by_status.values().sum::<u64>() >= want || Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
