//! A contest's rules against the real services: the intake's refusals
//! (roster, window, voter, tokens), the per-voter cap decided by the
//! consumer exactly once across kill -9 of the consumer and the host with
//! client retries, closing the window during load, and `certify` (which
//! refuses a tampered Redis). Each test uses a Redis database of its own,
//! since the intakes read the one current contest (`contest:current`).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{admin_for, consumer_process, contest, flush, host, post, redis_db, vote, wait_applied, BANDS, SECRET, SETTLE, reports};

use bandvote_consumer::{certify, contest_admin as admin};
use bandvote_contest::{Revote, Voters};
use bandvote_store::{Counters, VoteLog};
use bandvote_testkit as kit;
use bandvote_testkit::process::wait_ready;
use mongodb::bson::doc;

/// `voters` voters (`fan-<n>`) each send 3 votes, the band rotating, over
/// `workers` clients; each vote is retried with its key (`fan-<n>-vote-<k>`)
/// until 201, and every `resend_every`-th voter sends each vote again after
/// its 201 with the same key. A 4xx fails the test.
fn three_votes_per_voter(http: std::net::SocketAddr, voters: usize, workers: usize, resend_every: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        futures::future::join_all((0..workers).map(|w| {
            let client = client.clone();
            async move {
                for v in (w..voters).step_by(workers) {
                    for k in 0..3 {
                        let (voter, key) = (format!("fan-{v}"), format!("fan-{v}-vote-{k}"));
                        let body = vote(BANDS[(v + k) % 3]);
                        let deadline = Instant::now() + Duration::from_secs(90);
                        for _ in 0..(if v % resend_every == 0 { 2 } else { 1 }) {
                            loop {
                                match post(&client, http, &body, &[("x-voter", &voter), ("idempotency-key", &key)]).await {
                                    Some((201, _)) => break,
                                    Some((s @ 400..=499, b)) => panic!("vote {key}: {s} {b}"),
                                    _ => {}
                                }
                                assert!(Instant::now() < deadline, "vote {key} never acknowledged");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                }
            }
        }))
        .await;
    })
}


#[tokio::test]
async fn the_intake_refuses_by_the_rules_with_clear_errors() {
    let redis = redis_db(11);
    flush(&redis).await;
    let topic = kit::fresh_topic("contest-rules", 1).await;
    let contests = admin_for(&redis, &kit::unique("contest-rules")).await;
    contests.create(contest("rules", 1, Voters::Id), None).await.unwrap();
    let (mut h, http, admin_addr) = host("contest-rules-host", &topic, &redis, &[("BANDVOTE_CONTEST_SECRET", SECRET)]);
    h.start();
    wait_ready(admin_addr, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();

    let (s, b) = post(&client, http, &vote("Bohemia Suburbano"), &[("x-voter", "fan-1")]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str(), b["error"]["field"].as_str()), (422, Some("unknown_band"), Some("band")), "{b}");
    assert_eq!(b["error"]["closest"][0], "Bohemia Suburbana", "{b}");
    let (s, b) = post(&client, http, &vote("Alux Nahual"), &[]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("voter_required")), "{b}");
    // Case and spacing fold onto the roster's spelling; the voter may come in the body.
    let (s, b) = post(&client, http, r#"{"name":"alux  NAHUAL","album":"x","year":"1990","rank":"1","voter":"fan-2"}"#, &[]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    // A batch is refused whole at its first refused vote.
    let batch = format!("[{},{}]", vote("Viernes Verde"), vote("Maná"));
    let (s, b) = post(&client, http, &batch, &[("x-voter", "fan-3")]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("unknown_band")), "{b}");

    // Closed: 403 with the closing time.
    contests.close_in(None, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote("Alux Nahual"), &[("x-voter", "fan-4")]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("voting_closed")), "{b}");
    assert!(b["error"]["closes_at_ms"].as_i64().is_some(), "{b}");

    // Not open yet.
    let mut later = contest("later", 0, Voters::Anonymous);
    later.opens_at_ms = admin::now_ms() + 3_600_000;
    later.closes_at_ms = later.opens_at_ms + 1_000;
    contests.create(later, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote("Alux Nahual"), &[]).await.unwrap();
    assert_eq!((s, b["error"]["code"].as_str(), b["error"]["opens_at_ms"].is_i64()), (403, Some("voting_not_open"), true), "{b}");

    // Tokens: signed with the deployment's secret for this contest only.
    let tokened = contest("tokened", 1, Voters::Token);
    contests.create(tokened.clone(), Some(SECRET.as_bytes())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let good = admin::tokens(&tokened, Some(SECRET), "ticket", 1, 600).unwrap().remove(0);
    let other_contest = admin::tokens(&contest("other", 1, Voters::Token), Some(SECRET), "ticket", 1, 600).unwrap().remove(0);
    let wrong_secret = admin::tokens(&tokened, Some("a-guessed-secret-of-thirty-two-bytes"), "ticket", 1, 600).unwrap().remove(0);
    let expired = admin::tokens(&tokened, Some(SECRET), "ticket", 1, -10).unwrap().remove(0);
    for bad in [other_contest.as_str(), wrong_secret.as_str(), expired.as_str(), "ticket-0001"] {
        let (s, b) = post(&client, http, &vote("Viernes Verde"), &[("x-voter", bad)]).await.unwrap();
        assert_eq!((s, b["error"]["code"].as_str()), (401, Some("invalid_voter_token")), "{bad}: {b}");
    }
    let (s, b) = post(&client, http, &vote("Viernes Verde"), &[("x-voter", good.as_str())]).await.unwrap();
    assert_eq!(s, 201, "{b}");
    // The record carries the token's voter id, never the token.
    let records = kit::read_topic(&topic, 2, Duration::from_secs(20)).await;
    let last = bandvote_vote::record::decode(&records.last().unwrap().value).unwrap();
    assert_eq!((last.voter.as_deref(), last.contest.as_deref()), (Some("ticket-0001"), Some("tokened")));
    assert_eq!(records.last().unwrap().key, b"ticket-0001", "keyed by voter: one voter, one partition");

    // No contest: today's behaviour.
    contests.archive().await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, b) = post(&client, http, &vote("Any Band At All"), &[]).await.unwrap();
    assert_eq!(s, 201, "{b}");
}

/// Every voter sends 3 votes (cap 2), each retried with its key until 201,
/// some sent again after their 201; the consumer is killed -9 twice and the
/// host once meanwhile. Exactly 2 per voter are counted, the third of each
/// is stored as `over_limit`; `certify` then agrees, after refusing a
/// tampered Redis.
#[tokio::test]
async fn a_capped_contest_counts_n_per_voter_across_kill_9_and_certifies() {
    const VOTERS: usize = 40;
    const CAP: u64 = 2;
    let redis = redis_db(12);
    flush(&redis).await;
    let topic = kit::fresh_topic("contest-cap", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("contest-cap");
    let contests = admin_for(&redis, &collection).await;
    let store = contests.store.clone();
    contests.create(contest("cap", CAP as u32, Voters::Id), None).await.unwrap();
    let (mut h, http, host_admin) = host("contest-cap-host", &topic, &redis, &[]);
    let (mut c, consumer_admin) = consumer_process("contest-cap-consumer", &topic, &redis, &collection);
    h.start();
    c.start();
    wait_ready(host_admin, Duration::from_secs(60)).await;
    wait_ready(consumer_admin, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A retried vote (and, every 5th voter's, one sent again after its 201) keeps its key.
    let clients = three_votes_per_voter(http, VOTERS, 8, 5);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.kill_9();
        c.start();
        tokio::time::sleep(Duration::from_millis(400)).await;
        h.kill_9();
        h.start();
    }
    clients.await.unwrap();

    let want = (VOTERS * 3) as u64;
    let tally = wait_applied(&store, "cap", want, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally2 = store.tally("cap").await.unwrap();
    assert_eq!(tally, tally2, "nothing applied twice after the end");
    assert_eq!(tally.total, VOTERS as u64 * CAP, "exactly {CAP} counted per voter: {tally:?}");
    assert_eq!(tally.by_status.get("over_limit").copied(), Some(VOTERS as u64), "{tally:?}");
    assert_eq!(tally.voters, VOTERS as u64);
    let mut con = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let per_voter: HashMap<String, u64> = redis::cmd("HGETALL").arg("contest:cap:voters").query_async(&mut con).await.unwrap();
    assert!(per_voter.values().all(|n| *n == CAP), "{per_voter:?}");

    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    assert_eq!(log.collection().count_documents(doc! { "contest": "cap" }).await.unwrap(), want, "stored once each");
    assert_eq!(log.collection().count_documents(doc! { "status": "over_limit" }).await.unwrap(), VOTERS as u64);
    // The third vote of each voter (in Kafka's order) is the one over the limit.
    for v in 0..VOTERS {
        let counted = log.collection().count_documents(doc! { "voter": format!("fan-{v}"), "status": "counted" }).await.unwrap();
        assert_eq!(counted, CAP, "fan-{v}");
    }

    // Redis loses everything: the rebuild (what the consumer runs when it
    // finds Redis empty) restores every contest counter and voter from the log.
    let counters = Counters::connect(&redis, "").await.unwrap();
    flush(&redis).await;
    bandvote_consumer::recount::rebuild(&log, &counters, &topic).await.unwrap().expect("no other rebuild");
    assert_eq!(store.tally("cap").await.unwrap(), tally, "rebuilt from MongoDB");
    let rebuilt: HashMap<String, u64> = redis::cmd("HGETALL").arg("contest:cap:voters").query_async(&mut con).await.unwrap();
    assert_eq!(rebuilt, per_voter);

    // certify: refuses while open, refuses a tampered Redis, then certifies
    // (the definition comes back from MongoDB's copy).
    let open = contests.find(Some("cap")).await.unwrap();
    let brokers = kit::kafka_brokers();
    let intake_reports = reports(&redis);
    assert!(matches!(
        certify::certify(&brokers, &topic, &open, &store, &counters, &log, &intake_reports, Duration::from_secs(60), SETTLE).await,
        Err(certify::CertifyError::NotClosed { .. })
    ));
    let closed = contests.close_in(Some("cap"), 0).await.unwrap();
    let certify = || certify::certify(&brokers, &topic, &closed, &store, &counters, &log, &intake_reports, Duration::from_secs(60), SETTLE);
    let _: () = redis::cmd("HINCRBY").arg("contest:cap:bands").arg("Alux Nahual").arg(1).query_async(&mut con).await.unwrap();
    match certify().await {
        Err(certify::CertifyError::Differences(d)) => assert!(d.iter().any(|d| d.contains("Alux Nahual")), "{d:?}"),
        other => panic!("a tampered counter was certified: {other:?}"),
    }
    assert!(log.certificate("cap").await.unwrap().is_none(), "no certificate on a difference");
    let _: () = redis::cmd("HINCRBY").arg("contest:cap:bands").arg("Alux Nahual").arg(-1).query_async(&mut con).await.unwrap();
    let (cert, new) = certify().await.unwrap();
    assert!(new);
    assert_eq!((cert.total, cert.votes_in_kafka, cert.by_status.get("over_limit").copied()), (VOTERS as i64 * 2, want as i64, Some(VOTERS as i64)));
    assert_eq!(cert.by_band.values().sum::<i64>(), cert.total);
    assert_eq!(cert.digest.len(), 64);
    let (again, new) = certify().await.unwrap();
    assert!(!new, "certified once");
    assert_eq!(again, cert);
    // The public bulletin (issue 33): every vote of the contest, recounted
    // from its lines alone, gives the certificate's root and tallies; a
    // voter finds their vote by the leaf of its id.
    use futures::TryStreamExt as _;
    let lines: Vec<bandvote_contest::bulletin::Line> = log.bulletin("cap").await.unwrap().try_collect().await.unwrap();
    let summary = bandvote_contest::bulletin::recount(lines.iter().map(|l| Ok(l.text()))).unwrap();
    assert_eq!((summary.root.as_str(), summary.lines as i64), (cert.bulletin_root.as_str(), cert.votes_in_kafka), "{cert:?}");
    assert_eq!((&summary.by_band, &summary.by_status), (&cert.by_band, &cert.by_status));
    let some_vote = std::pin::pin!(log.contest_votes("cap").await.unwrap()).try_next().await.unwrap().unwrap();
    let leaf = bandvote_contest::bulletin::leaf_id("cap", &some_vote.0);
    assert!(lines.iter().any(|l| l.leaf == leaf && l.status == some_vote.2), "a receipt's vote is in the bulletin");
    assert!(lines.iter().all(|l| !l.leaf.contains(&some_vote.0)), "no vote id published");
    drop(c);
    drop(h);
}

/// Closing during load: every vote the intake acknowledged was received
/// before the close and is counted; every vote after it is refused (403)
/// and never stored.
#[tokio::test]
async fn closing_the_window_during_load_counts_every_vote_before_it_and_none_after() {
    let redis = redis_db(13);
    flush(&redis).await;
    let topic = kit::fresh_topic("contest-close", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let mut cfg = bandvote_service_tests::isolated_consumer("contest-close", &topic);
    let contests = admin_for(&redis, &cfg.mongo_collection).await;
    let store = contests.store.clone();
    contests.create(contest("close", 0, Voters::Anonymous), None).await.unwrap();
    cfg.redis_url = redis.clone();
    cfg.redis_prefix = String::new();
    let consumer = bandvote_service_tests::run_consumer(cfg).await;
    let (mut h, http, host_admin) = host("contest-close-host", &topic, &redis, &[]);
    h.start();
    wait_ready(host_admin, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let results = futures::future::join_all((0..8).map(|w| {
                let (client, stop) = (client.clone(), stop.clone());
                async move {
                    let (mut acked, mut refused) = (0u64, 0u64);
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        i += 1;
                        let key = format!("close-{w}-{i}");
                        match post(&client, http, &vote("Viernes Verde"), &[("idempotency-key", &key)]).await {
                            Some((201, _)) => acked += 1,
                            Some((403, b)) => {
                                assert_eq!(b["error"]["code"], "voting_closed", "{b}");
                                refused += 1;
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                    (acked, refused)
                }
            }))
            .await;
            results.into_iter().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1))
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let closed = contests.close_in(None, 1_000).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, refused) = load.await.unwrap();
    assert!(acked > 0 && refused > 0, "the close fell inside the load: {acked} acked, {refused} refused");

    let tally = wait_applied(&store, "close", acked, Duration::from_secs(60)).await;
    assert_eq!(tally.total, acked, "every acknowledged vote counted: {tally:?}");
    assert_eq!(tally.by_status.get("late"), None, "no acknowledged vote was late: {tally:?}");
    let stored = consumer.log.collection().count_documents(doc! { "contest": "close" }).await.unwrap();
    assert_eq!(stored, acked, "refused votes never stored");
    let late = consumer.log.collection().count_documents(doc! { "received_at": { "$gte": mongodb::bson::DateTime::from_millis(closed.closes_at_ms) } }).await.unwrap();
    assert_eq!(late, 0);
    consumer.stop().await;
}

/// `revote = replace` under replay: every voter sends 3 votes for different
/// bands (each retried with its key until 201, some sent again after it)
/// while the consumer is killed -9 twice; each voter's latest vote is the
/// one counted, the two before it `replaced`, and the counters equal a
/// rebuild from the log and the certificate.
#[tokio::test]
async fn replace_counts_each_voters_latest_vote_across_kill_9() {
    const VOTERS: usize = 30;
    let redis = redis_db(14);
    flush(&redis).await;
    let topic = kit::fresh_topic("contest-replace", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("contest-replace");
    let contests = admin_for(&redis, &collection).await;
    let store = contests.store.clone();
    let mut def = contest("replace", 1, Voters::Id);
    def.revote = Revote::Replace;
    contests.create(def, None).await.unwrap();
    let (mut h, http, host_admin) = host("contest-replace-host", &topic, &redis, &[]);
    let (mut c, consumer_admin) = consumer_process("contest-replace-consumer", &topic, &redis, &collection);
    h.start();
    c.start();
    wait_ready(host_admin, Duration::from_secs(60)).await;
    wait_ready(consumer_admin, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let clients = three_votes_per_voter(http, VOTERS, 6, 4);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.kill_9();
        c.start();
    }
    clients.await.unwrap();

    let want = (VOTERS * 3) as u64;
    let tally = wait_applied(&store, "replace", want, Duration::from_secs(120)).await;
    assert_eq!(tally.total, VOTERS as u64, "one counted vote per voter: {tally:?}");
    assert_eq!(tally.by_status.get("replaced").copied(), Some(2 * VOTERS as u64), "{tally:?}");
    let mut latest: HashMap<String, u64> = HashMap::new();
    for v in 0..VOTERS {
        *latest.entry(BANDS[(v + 2) % 3].to_owned()).or_default() += 1;
    }
    let counted: HashMap<String, u64> = tally.by_band.iter().filter(|(_, n)| **n > 0).map(|(b, n)| (b.clone(), *n)).collect();
    assert_eq!(counted, latest, "each voter's latest vote counts");

    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    for v in 0..VOTERS {
        let d = log.find(&format!("fan-{v}-vote-2")).await.unwrap().expect("stored");
        assert_eq!(d.get_str("status").unwrap(), "counted", "fan-{v}");
        for k in 0..2 {
            let d = log.find(&format!("fan-{v}-vote-{k}")).await.unwrap().expect("stored");
            assert_eq!(d.get_str("status").unwrap(), "replaced", "fan-{v} vote {k}");
        }
    }
    // The global counters move with the contest's.
    let counters = Counters::connect(&redis, "").await.unwrap();
    assert_eq!(counters.totals().await.unwrap().total, VOTERS as u64);
    assert!(bandvote_consumer::recount::recount(&log, &counters).await.unwrap().1.is_empty());

    // A rebuild from the log gives the same counters and choices.
    let mut con = redis::Client::open(redis.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let choices: HashMap<String, String> = redis::cmd("HGETALL").arg("contest:replace:choice").query_async(&mut con).await.unwrap();
    assert_eq!(choices.len(), VOTERS);
    drop(c);
    flush(&redis).await;
    bandvote_consumer::recount::rebuild(&log, &counters, &topic).await.unwrap().expect("no other rebuild");
    let rebuilt = store.tally("replace").await.unwrap();
    assert_eq!((rebuilt.total, rebuilt.by_status.get("replaced")), (tally.total, tally.by_status.get("replaced")));
    let rebuilt_choices: HashMap<String, String> = redis::cmd("HGETALL").arg("contest:replace:choice").query_async(&mut con).await.unwrap();
    assert_eq!(rebuilt_choices, choices);

    let closed = contests.close_in(Some("replace"), 0).await.unwrap();
    let (cert, _) = certify::certify(&kit::kafka_brokers(), &topic, &closed, &store, &counters, &log, &reports(&redis), Duration::from_secs(60), SETTLE).await.unwrap();
    assert_eq!((cert.total, cert.by_status.get("replaced").copied()), (VOTERS as i64, Some(2 * VOTERS as i64)));
    drop(h);
}
