//! The contest read as an attacker and as an operator on a bad day (issue
//! 30), against the real pipeline: two hosts (one with the contest secret,
//! one without), the gRPC producer's REST bridge, the consumer, Redis,
//! MongoDB and Kafka. Forged tokens with and without a secret, backdated
//! bodies on the bridge, Redis flushed during an open token contest,
//! colliding contest ids, look-alike names, retries across a close and
//! across a new contest, a certified contest that cannot change. It ends by
//! certifying and checking, per vote id, acknowledged = stored with a status
//! and counted as certified.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bandvote_consumer::{certify, contest_admin as admin};
use bandvote_contest::Voters;
use bandvote_store::{ContestStore, Counters, VoteLog};
use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, free_addr, http_status, wait_ready, Service};
use common::{admin_for, consumer_process, contest, flush, host, post, post_status, redis_db, vote, wait_applied, BANDS, SECRET, SETTLE, reports};
use serde_json::{json, Value};

/// Post a vote every 50 ms for `during` (`vote(i)`: body and headers of
/// the i-th): when each was answered (since the first), its status and vote id.
async fn answers_for(
    client: &reqwest::Client,
    http: std::net::SocketAddr,
    during: Duration,
    vote: impl Fn(usize) -> (String, Vec<(String, String)>),
) -> Vec<(Duration, u16, String)> {
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < during {
        let (body, headers) = vote(answers.len());
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some((s, b)) = post(client, http, &body, &headers).await {
            answers.push((started.elapsed(), s, b["vote_id"].as_str().unwrap_or_default().to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answers
}

/// The gRPC producer (its REST bridge is what the Spin adapter posts to).
fn bridge(name: &str, topic: &str, redis: &str) -> (Service, std::net::SocketAddr, std::net::SocketAddr) {
    let (grpc, rest, admin_addr) = (free_addr(), free_addr(), free_addr());
    let svc = Service::new(
        name,
        bin("bandvote-grpc"),
        vec!["--listen".into(), grpc.to_string(), "--rest-listen".into(), rest.to_string(), "--admin-listen".into(), admin_addr.to_string()],
        vec![
            ("BANDVOTE_KAFKA_BROKERS".into(), kit::kafka_brokers()),
            ("BANDVOTE_TOPIC".into(), topic.to_owned()),
            ("BANDVOTE_IDEMPOTENCY_REDIS_URL".into(), redis.to_owned()),
            ("BANDVOTE_CONTEST_POLL_MS".into(), "200".into()),
            ("BANDVOTE_CONTEST_SECRET".into(), SECRET.into()),
        ],
    );
    (svc, rest, admin_addr)
}

/// Post `body` to the bridge as one REST Proxy record; the record's `error_code` (None: acknowledged).
async fn post_record(client: &reqwest::Client, rest: std::net::SocketAddr, topic: &str, value: &Value) -> Option<i64> {
    let r = client
        .post(format!("http://{rest}/topics/{topic}"))
        .header("content-type", "application/vnd.kafka.json.v2+json")
        .body(json!({ "records": [{ "value": value }] }).to_string())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["offsets"][0]["error_code"].as_i64().or_else(|| body["error_code"].as_i64())
}

/// A canonical vote as JSON (what the Spin adapter sends), with `received_at_ms`, `contest` and `voter` set by the caller.
fn record_value(id: &str, band: &str, voter: &str, received_at_ms: i64, contest: &str) -> Value {
    let v = bandvote_vote::RawVote {
        band: Some(band.into()),
        album: Some("En Vivo".into()),
        year: Some("1990".into()),
        rank: Some("1".into()),
        vote_id: Some(id.into()),
        voter: Some(voter.into()),
    }
    .validate(bandvote_vote::Source::Http, received_at_ms, None)
    .unwrap();
    let mut value = serde_json::to_value(&v).unwrap();
    value["contest"] = json!(contest);
    value
}

/// Every record of `topic` for vote `id` (up to the end offsets now), decoded.
async fn records_of(topic: &str, id: &str) -> Vec<bandvote_vote::Vote> {
    use rdkafka::Message as _;
    let (topic, id) = (topic.to_owned(), id.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        bandvote_kafka::scan_topic(&kit::kafka_brokers(), &topic, Duration::from_secs(10), Duration::from_secs(30), |m| {
            if let Some(v) = m.payload().and_then(|p| bandvote_vote::record::decode(p).ok()).filter(|v| v.vote_id == id) {
                out.push(v);
            }
        })
        .expect("scan the topic");
        out
    })
    .await
    .unwrap()
}

/// The first answer of a host that is starting (a vote posted until it answers at all, at most 60 s).
async fn first_answer(client: &reqwest::Client, http: std::net::SocketAddr) -> (u16, Option<String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = post_status(client, http, &vote("Anything"), &[]).await {
            return answer;
        }
        assert!(Instant::now() < deadline, "host never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_contest_holds_against_an_attacker_and_a_bad_day() {
    let redis = redis_db(14);
    flush(&redis).await;
    let topic = kit::fresh_topic("adversary", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("adversary");
    let contests = admin_for(&redis, &collection).await;
    let store = ContestStore::new(&redis, "").unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut acked: HashMap<String, Vec<String>> = HashMap::new(); // contest → acknowledged vote ids

    // Item 4: an empty Redis (a flush, a new deployment) is "not known", never "no contest".
    let (mut h, http, host_admin) = host("adv-host", &topic, &redis, &[("BANDVOTE_CONTEST_SECRET", SECRET), ("BANDVOTE_MAX_ALBUMS", "50"), ("BANDVOTE_MAX_BANDS", "60")]);
    let (mut weak, weak_http, weak_admin) = host("adv-host-nosecret", &topic, &redis, &[]);
    h.start();
    weak.start();
    let (s, retry, b) = first_answer(&client, http).await;
    assert_eq!((s, retry.is_some()), (503, true), "before the contest is known: {b}");
    assert_eq!(http_status(host_admin, "/readyz").await, Some(503), "not ready while the contest is not known");
    let (mut consumer, consumer_admin) = consumer_process("adv-consumer", &topic, &redis, &collection);
    consumer.start();
    wait_ready(consumer_admin, Duration::from_secs(60)).await;
    wait_ready(host_admin, Duration::from_secs(10)).await; // the consumer recorded "no contest"
    let (s, b) = post(&client, http, &vote("Any Band"), &[]).await.unwrap();
    assert_eq!(s, 201, "no contest, known: {b}");

    // Item 1: a token contest needs the operator's secret, and an intake without one refuses every vote.
    let mut a = contest("adv-a", 1, Voters::Token);
    assert!(matches!(contests.create(a.clone(), None).await, Err(admin::AdminError::NoSecret(_))));
    assert!(matches!(contests.create(a.clone(), Some(b"s3cret")).await, Err(admin::AdminError::NoSecret(_))));
    a = contests.create(a, Some(SECRET.as_bytes())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let token = |voter: &str, valid: i64| admin::tokens(&a, Some(SECRET), voter, 1, valid).unwrap().remove(0);
    let forged = format!("fan-0001.{}.{}", admin::now_ms() / 1000 + 600, "0".repeat(64));
    let good = token("fan", 600);
    for t in [forged.as_str(), good.as_str()] {
        let (s, retry, b) = post_status(&client, weak_http, &vote(BANDS[0]), &[("x-voter", t)]).await.unwrap();
        assert_eq!((s, retry.is_some()), (503, true), "an intake without a secret took a token: {b}");
    }
    assert_eq!(http_status(weak_admin, "/readyz").await, Some(503), "readiness says a token contest cannot be verified");
    let (s, b) = post(&client, http, &vote(BANDS[0]), &[("x-voter", &forged)]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("invalid_voter_token")), "{b}");
    let (s, b) = post(&client, http, &vote(BANDS[0]), &[]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("voter_required")), "{b}");
    let (s, b) = post(&client, http, &vote(BANDS[0]), &[("x-voter", &good)]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    acked.entry("adv-a".into()).or_default().push(b["vote_id"].as_str().unwrap().to_owned());

    // Item 3: the bridge takes no intake field from the body.
    let (mut br, rest, bridge_admin) = bridge("adv-bridge", &topic, &redis);
    br.start();
    wait_ready(bridge_admin, Duration::from_secs(60)).await;
    let now = admin::now_ms();
    let expired = token("late", -60);
    // An expired token backdated to when it was valid: still expired.
    let backdated = record_value("adv-bridge-expired", BANDS[1], &expired, now - 3_600_000, "adv-a");
    assert_eq!(post_record(&client, rest, &topic, &backdated).await, Some(40110), "an expired token passed with a backdated body");
    // A valid token, another contest and a past time in the body: stamped by the intake.
    let stamped = record_value("adv-bridge-stamped", BANDS[1], &token("bridge", 600), 1, "some-other-contest");
    assert_eq!(post_record(&client, rest, &topic, &stamped).await, None);
    acked.entry("adv-a".into()).or_default().push("adv-bridge-stamped".into());
    let recs = records_of(&topic, "adv-bridge-stamped").await;
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].contest.as_deref(), recs[0].voter.as_deref()), (Some("adv-a"), Some("bridge-0001")));
    assert!(recs[0].received_at_ms >= now - 5_000, "received_at_ms from the body: {}", recs[0].received_at_ms);
    assert!(records_of(&topic, "adv-bridge-expired").await.is_empty());

    // Item 4: Redis flushed during the open token contest: no vote passes without a token meanwhile.
    flush(&redis).await;
    let until = Instant::now() + Duration::from_secs(3);
    let mut answers = HashMap::new();
    while Instant::now() < until {
        if let Some((s, _)) = post(&client, http, &vote(BANDS[2]), &[]).await {
            *answers.entry(s).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!answers.contains_key(&201), "a vote without a token passed after the flush: {answers:?}");
    assert!(answers.contains_key(&422), "the consumer restored the contest within 3 s: {answers:?}");
    let (s, b) = post(&client, http, &vote(BANDS[2]), &[("x-voter", &token("flush", 600))]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    acked.entry("adv-a".into()).or_default().push(b["vote_id"].as_str().unwrap().to_owned());

    // Item 4, an older restore: Redis brought back to a snapshot from before
    // the contest (no contest current, no definition). The consumer puts
    // MongoDB's record back within a second; a vote without a token taken
    // meanwhile is stamped with no contest, so it never counts in A.
    let mut con = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe().set("contest:current", "").del("contest-def:adv-a").query_async(&mut con).await.unwrap();
    let answers = answers_for(&client, http, Duration::from_secs(4), |_| (vote(BANDS[2]), vec![])).await;
    // Refused again (as before the restore) from the answer after the last 201 on.
    let put_back = answers.iter().rposition(|(_, s, _)| *s == 201).map_or(0, |i| i + 1);
    assert!(put_back < answers.len() && answers[put_back].0 < Duration::from_millis(2_500), "the older snapshot was believed too long: {answers:?}");
    assert!(answers[put_back..].iter().all(|(_, s, _)| *s == 422), "{answers:?}");
    for (_, _, id) in answers[..put_back].iter().filter(|(_, s, _)| *s == 201) {
        let recs = records_of(&topic, id).await;
        assert!(recs.iter().all(|v| v.contest.is_none()), "a vote without a token taken in contest A: {recs:?}");
    }
    println!("older snapshot: {} votes taken with no contest before the record was put back ({:?})", answers[..put_back].iter().filter(|a| a.1 == 201).count(), answers[put_back].0);
    let a_open = a.clone();

    // Item 5: retries across a close and across a new contest get the first answer.
    let (k1, k2, t1, t2) = ("adv-retry-close", "adv-retry-contest", token("r1", 600), token("r2", 600));
    for (k, t) in [(k1, &t1), (k2, &t2)] {
        let (s, b) = post(&client, http, &vote(BANDS[1]), &[("x-voter", t), ("idempotency-key", k)]).await.unwrap();
        assert_eq!(s, 201, "{b}");
        acked.entry("adv-a".into()).or_default().push(k.into());
    }
    // A keyless vote: its id is the intake's; a client retrying a 503 that named it uses it as the key.
    let t3 = token("r3", 600);
    let (s, b) = post(&client, http, &vote(BANDS[2]), &[("x-voter", &t3)]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    let k3 = b["vote_id"].as_str().unwrap().to_owned();
    acked.entry("adv-a".into()).or_default().push(k3.clone());
    let a = contests.close_in(Some("adv-a"), 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote(BANDS[2]), &[("x-voter", &t3), ("idempotency-key", &k3)]).await.unwrap();
    assert_eq!((s, b["vote_id"].as_str()), (201, Some(k3.as_str())), "a retry of a keyless vote after the close: {b}");
    let (s, b) = post(&client, http, &vote(BANDS[1]), &[("x-voter", &t1), ("idempotency-key", k1)]).await.unwrap();
    assert_eq!((s, b["vote_id"].as_str()), (201, Some(k1)), "a retry after the close gets its first answer: {b}");
    let (s, b) = post(&client, http, &vote(BANDS[1]), &[("x-voter", &t1), ("idempotency-key", "adv-after-close")]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("voting_closed")), "{b}");
    // An older snapshot of A's definition (open, from before the close): put
    // right from the record within a second; a vote an intake takes meanwhile
    // is `late` to the consumer, which judges by the record.
    let _: () = redis::cmd("SET").arg("contest-def:adv-a").arg(serde_json::to_string(&a_open).unwrap()).query_async(&mut con).await.unwrap();
    let answers = answers_for(&client, http, Duration::from_secs(4), |i| (vote(BANDS[0]), vec![("x-voter".into(), token(&format!("stale{i}"), 600))])).await;
    // Refused again (as before the restore) from the answer after the last 201 on.
    let put_back = answers.iter().rposition(|(_, s, _)| *s == 201).map_or(0, |i| i + 1);
    assert!(put_back < answers.len() && answers[put_back].0 < Duration::from_millis(2_500), "the older definition was believed too long: {answers:?}");
    assert!(answers[put_back..].iter().all(|(_, s, _)| *s == 403), "{answers:?}");
    let late_ids: HashSet<String> = answers[..put_back].iter().filter(|(_, s, _)| *s == 201).map(|(_, _, id)| id.clone()).collect();
    acked.entry("adv-a".into()).or_default().extend(late_ids.iter().cloned());
    println!("older definition: {} votes taken before the record was put back after {:?}", late_ids.len(), answers[put_back].0);

    // A body backdated into the window, on the bridge: closed all the same.
    let inside = record_value("adv-bridge-backdated", BANDS[0], &token("bd", 600), a.closes_at_ms - 60_000, "adv-a");
    assert_eq!(post_record(&client, rest, &topic, &inside).await, Some(40310));
    contests.create(contest("adv-b", 0, Voters::Anonymous), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote(BANDS[1]), &[("x-voter", &t2), ("idempotency-key", k2)]).await.unwrap();
    assert_eq!((s, b["vote_id"].as_str()), (201, Some(k2)), "a retry after a new contest: {b}");
    let recs = records_of(&topic, k2).await;
    assert!(!recs.is_empty() && recs.iter().all(|v| v.contest.as_deref() == Some("adv-a")), "the retry is stamped with its first contest: {recs:?}");

    // Certify A: every acknowledged vote of A is in it, nothing changes it afterwards.
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    let counters = Counters::connect(&redis, "").await.unwrap();
    let (cert, new) = certify::certify(&kit::kafka_brokers(), &topic, &a, &store, &counters, &log, &reports(&redis), Duration::from_secs(60), SETTLE).await.expect("certified");
    assert!(new);
    let ids: HashSet<&String> = acked["adv-a"].iter().collect();
    assert_eq!(cert.votes_in_kafka as usize, ids.len(), "{cert:?}");
    assert_eq!(cert.by_status.values().sum::<i64>() as usize, ids.len(), "{cert:?}");
    for id in &ids {
        let stored = log.collection().find_one(mongodb::bson::doc! { "_id": id.as_str() }).await.unwrap().unwrap_or_else(|| panic!("{id} not stored"));
        assert_eq!(stored.get_str("contest").ok(), Some("adv-a"), "{id}");
        if late_ids.contains(*id) {
            assert_eq!(stored.get_str("status").ok(), Some("late"), "taken on an older definition after the close: {stored}");
        } else {
            assert!(matches!(stored.get_str("status"), Ok("counted" | "over_limit")), "{id}: {stored}");
        }
    }

    // Item 8: a certified contest is immutable; an id is never reused.
    assert!(matches!(contests.open_now(Some("adv-a")).await, Err(admin::AdminError::Certified(_))));
    assert!(matches!(contests.close_in(Some("adv-a"), 0).await, Err(admin::AdminError::Certified(_))));
    assert!(matches!(contests.create(contest("adv-a", 1, Voters::Id), None).await, Err(admin::AdminError::Exists(_))));
    assert!(matches!(contests.create(contest("adv-b", 1, Voters::Id), None).await, Err(admin::AdminError::Exists(_))));

    // Item 9: ids that once named other keys; ids with a separator are refused.
    assert!(matches!(contests.create(contest("a:total", 0, Voters::Anonymous), None).await, Err(admin::AdminError::Definition(_))));
    for id in ["def", "total"] {
        contests.create(contest(id, 0, Voters::Anonymous), None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (s, b) = post(&client, http, &vote(BANDS[0]), &[]).await.unwrap();
        assert_eq!(s, 201, "{id}: {b}");
    }
    for id in ["def", "total"] {
        let t = wait_applied(&store, id, 1, Duration::from_secs(30)).await;
        assert_eq!(t.total, 1, "contest {id} counted: {t:?}");
    }

    // Item 10: voter ids at volume in a `voters = id` contest: made-up ids
    // that are too long or carry other characters are refused (422
    // invalid_voter_id) and cost nothing; valid ones cost one field each.
    contests.create(contest("adv-ids", 0, Voters::Id), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut refused_ids = 0;
    for i in 0..60 {
        let junk = match i % 4 {
            0 => format!("{}{i}", "x".repeat(64)),
            1 => format!("fan:{i}"),
            2 => format!("fan {i}"),
            _ => format!("fañ-{i}"),
        };
        let (s, b) = post(&client, http, &vote(BANDS[0]), &[("x-voter", &junk)]).await.unwrap();
        let named = b["error"]["code"].as_str() == Some("invalid_voter_id") || b["error"]["field"].as_str() == Some("voter");
        assert!(s == 422 && named, "{junk:?}: {s} {b}");
        refused_ids += 1;
        let valid = kit::unique("fan").replace('-', "_");
        assert_eq!(post(&client, http, &vote(BANDS[0]), &[("x-voter", &valid)]).await.unwrap().0, 201, "{valid}");
    }
    let t = wait_applied(&store, "adv-ids", 60, Duration::from_secs(30)).await;
    assert_eq!((refused_ids, t.voters), (60, 60), "one counter per valid voter, none for the refused: {t:?}");

    // Item 12: a look-alike name with a blank-rendering character.
    contests.archive().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote("Maná\u{2800}"), &[]).await.unwrap();
    assert_eq!((s, b["error"]["problem"].as_str(), b["error"]["field"].as_str()), (422, Some("blank_character"), Some("band")), "{b}");

    // Item 10: albums are bounded like bands: made-up names at volume meet a
    // 422 naming the album at the cap, and Redis's set stops growing.
    let twice = format!(r#"{{"name":"{}","album":"Dos Veces","year":"1990","rank":"1"}}"#, BANDS[0]);
    for _ in 0..2 {
        assert_eq!(post(&client, http, &twice, &[]).await.unwrap().0, 201);
    }
    let mut refused = 0;
    for i in 0..100 {
        let body = format!(r#"{{"name":"{}","album":"{}-{i}","year":"1990","rank":"1"}}"#, BANDS[0], kit::unique("junk"));
        match post(&client, http, &body, &[]).await.unwrap() {
            (201, _) => {}
            (422, b) if b.to_string().contains("album") => refused += 1,
            (s, b) => panic!("album {i}: {s} {b}"),
        }
    }
    let mut con = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let albums: i64 = redis::cmd("SCARD").arg("albums:known").query_async(&mut con).await.unwrap();
    assert!(refused >= 40 && albums <= 50, "{refused} refused, {albums} albums known");
    // ... and band names (this host's cap: 60) the same way, with no roster.
    let mut refused_bands = 0;
    for i in 0..100 {
        let body = format!(r#"{{"name":"{}-{i}","album":"Dos Veces","year":"1990","rank":"1"}}"#, kit::unique("junk"));
        match post(&client, http, &body, &[]).await.unwrap() {
            (201, _) => {}
            (422, b) if b["error"]["field"].as_str() == Some("band") => refused_bands += 1,
            (s, b) => panic!("band {i}: {s} {b}"),
        }
    }
    let bands: i64 = redis::cmd("SCARD").arg("bands:known").query_async(&mut con).await.unwrap();
    assert!(refused_bands >= 40 && bands <= 60, "{refused_bands} refused, {bands} bands known");
    // Item 11: the cap is not a lockout: the operator forgets the names with
    // at most one counted vote (the junk); a new album is admitted again, the
    // album voted many times stays known.
    let new_album = format!(r#"{{"name":"{}","album":"Otra Cosa","year":"1990","rank":"1"}}"#, BANDS[0]);
    assert_eq!(post(&client, http, &new_album, &[]).await.unwrap().0, 422, "the cap is full");
    let started = Instant::now();
    while redis::cmd("HGET").arg("votos_album").arg("Dos Veces").query_async::<Option<u64>>(&mut con).await.unwrap().unwrap_or(0) < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "the votes for album Dos Veces were not counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = std::process::Command::new(bin("bandvote-consumer"))
        .args(["names", "forget", "--albums", "--max-votes", "1", "--max-albums", "50"])
        .env("BANDVOTE_REDIS_URL", &redis)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("forgotten"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    println!("names forget: {}", said.lines().next().unwrap_or_default());
    let (s, b) = post(&client, http, &new_album, &[]).await.unwrap();
    assert_eq!(s, 201, "a new album after the operator freed the cap: {b}");
    let kept: bool = redis::cmd("SISMEMBER").arg("albums:known").arg("Dos Veces").query_async(&mut con).await.unwrap();
    assert!(kept, "an album counted twice stays known");

    // Nothing changed the certificate.
    assert_eq!(log.certificate("adv-a").await.unwrap().as_ref(), Some(&cert));
    drop((h, weak, br, consumer));
}

/// Item 4: an intake that starts while Redis is unreachable answers 503
/// (never "no contest") until it can read the contest, then applies it.
#[tokio::test]
async fn an_intake_started_with_redis_down_answers_503_until_it_knows() {
    let topic = kit::fresh_topic("adversary-down", 1).await;
    let port = free_addr().port();
    let redis = format!("redis://127.0.0.1:{port}/");
    let (mut h, http, host_admin) = host("adv-down-host", &topic, &redis, &[]);
    h.start();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let (s, retry, b) = first_answer(&client, http).await;
    assert_eq!((s, retry.is_some()), (503, true), "{b}");
    assert_eq!(http_status(host_admin, "/readyz").await, Some(503));
    // Redis comes up, and the record says "no contest": votes go through.
    let dir = kit::process::log_dir().join(kit::unique("adv-redis"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Service::new(
        "adv-redis",
        "redis-server".into(),
        vec!["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into(), "--save".into(), "".into(), "--dir".into(), dir.display().to_string()],
        vec![],
    );
    server.start();
    let store = ContestStore::new(&redis, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.set_current(None).await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_ready(host_admin, Duration::from_secs(10)).await;
    let (s, b) = post(&client, http, &vote("Any Band"), &[]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    drop((h, server));
}
