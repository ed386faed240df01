//! Certify waits for the votes still on their way (issue 30, item 7): a vote
//! the host took 300 ms before the close reaches Kafka only after it (the
//! host's producer holds every vote 3 s before sending it: `linger.ms`, a slow
//! way to Kafka while the broker still answers certify's reads), and `contest
//! certify`, started right after the close with no settle time at all, waits
//! for the host's report that it has published past the close: the vote is
//! in the certificate, and nothing changes the certified tally afterwards.
//! Without that wait (certify before this change) the certificate has 5
//! votes of the 6 acknowledged.

mod common;

use std::time::Duration;

use bandvote_consumer::certify::{self, Settle};
use bandvote_consumer::contest_admin::now_ms;
use bandvote_contest::Voters;
use bandvote_store::published_through::still_publishing;
use bandvote_store::{ContestStore, Counters, VoteLog};
use bandvote_testkit as kit;
use bandvote_testkit::process::wait_ready;
use common::{admin_for, consumer_process, contest, flush, host, post, redis_db, reports, vote, BANDS};

async fn sleep_until_ms(at_ms: i64) {
    let left = at_ms - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

#[tokio::test]
async fn a_vote_a_slow_broker_delivers_after_the_close_is_in_the_certificate() {
    let redis = redis_db(10);
    flush(&redis).await;
    let topic = kit::fresh_topic("certify-slow", 1).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("certify_slow");
    let contests = admin_for(&redis, &collection).await;
    let (mut consumer, consumer_admin) = consumer_process("certify-consumer", &topic, &redis, &collection);
    consumer.start();
    let slow = [("BANDVOTE_LINGER_MS", "3000"), ("BANDVOTE_DELIVERY_TIMEOUT_MS", "10000"), ("BANDVOTE_KAFKA_STALL_MS", "10000")];
    let (mut h, http, host_admin) = host("certify-host", &topic, &redis, &slow);
    h.start();
    wait_ready(consumer_admin, Duration::from_secs(60)).await;
    wait_ready(host_admin, Duration::from_secs(60)).await;

    let mut c = contest("slow-broker", 0, Voters::Anonymous);
    c.closes_at_ms = now_ms() + 8_000;
    let c = contests.create(c, None).await.unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    // Votes before the stall, once the host applies the contest (it reads it every 200 ms).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let body = vote(BANDS[0]);
    let answers = futures::future::join_all((0..5).map(|_| post(&client, http, &body, &[]))).await;
    let mut acked = answers.iter().filter(|a| matches!(a, Some((201, _)))).count() as i64;
    assert_eq!(acked, 5, "{answers:?}");

    // 300 ms before the close the host takes one more vote; it reaches Kafka 3 s later.
    sleep_until_ms(c.closes_at_ms - 300).await;
    let late = tokio::spawn({
        let client = client.clone();
        async move {
            let answer = post(&client, http, &vote(BANDS[1]), &[("idempotency-key", "slow-broker-vote")]).await;
            (answer, now_ms())
        }
    });
    sleep_until_ms(c.closes_at_ms + 500).await;
    assert!(!late.is_finished(), "the vote is not in Kafka yet");
    let behind = reports(&redis).all().await.unwrap();
    assert_eq!(
        still_publishing(&behind, c.closes_at_ms, now_ms(), 10_000).len(),
        1,
        "the host reports a vote from before the close in flight: {behind:?}"
    );

    // Certify now, with no settle time: it must wait for the host's report.
    let settle = Settle { delivery_timeout: Duration::ZERO, clock_skew: Duration::ZERO, claim_window: Duration::ZERO };
    let certifying = tokio::spawn({
        let (redis, topic, collection, c) = (redis.clone(), topic.clone(), collection.clone(), c.clone());
        async move {
            let store = ContestStore::new(&redis, "").unwrap();
            let counters = Counters::connect(&redis, "").await.unwrap();
            let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
            certify::certify(&kit::kafka_brokers(), &topic, &c, &store, &counters, &log, &reports(&redis), Duration::from_secs(60), settle).await
        }
    });
    let (answer, answered_ms) = late.await.unwrap();
    let (status, body) = answer.expect("the vote taken before the close is answered");
    assert_eq!(status, 201, "the delayed vote: {body}");
    assert!(answered_ms > c.closes_at_ms, "answered after the close");
    acked += 1;
    let (cert, new) = certifying.await.unwrap().expect("certified");
    assert!(new);
    println!("closed at {}, the delayed vote acknowledged at {answered_ms}, certified at {}: {cert:?}", c.closes_at_ms, cert.certified_at_ms);
    assert_eq!(cert.total, acked, "every acknowledged vote, the delayed one included: {cert:?}");
    assert_eq!(cert.by_band.get(BANDS[1]), Some(&1), "{cert:?}");

    // Nothing changes it afterwards: a vote now is late, the certificate stays.
    let (s, b) = post(&client, http, &vote(BANDS[2]), &[]).await.unwrap();
    assert_eq!(s, 403, "after the close: {b}");
    let store = ContestStore::new(&redis, "").unwrap();
    let counters = Counters::connect(&redis, "").await.unwrap();
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    let (again, new) = certify::certify(&kit::kafka_brokers(), &topic, &c, &store, &counters, &log, &reports(&redis), Duration::from_secs(60), settle).await.unwrap();
    assert!(!new);
    assert_eq!(again, cert);
}

/// A certify that started before the contest was certified never clears
/// the certified bulletin (the review of issue 33): B starts first and
/// waits out a 3 s settle time; A starts 0.5 s later with none. Without a
/// lease A certified at once and B, waking up, cleared and rewrote the
/// certified bulletin under its readers (a B killed mid-write would have
/// left it broken for good). With the lease B holds the contest from its
/// start, A waits for it and shows B's certificate, and a line added to the
/// bulletin after the first certify returned (a reader's view of the
/// published bulletin) is still there when both are done.
#[tokio::test]
async fn a_certify_that_started_before_the_certificate_never_clears_the_certified_bulletin() {
    let redis = redis_db(5);
    flush(&redis).await;
    let topic = kit::fresh_topic("certify-race", 1).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("certify_race");
    let contests = admin_for(&redis, &collection).await;
    let (mut consumer, consumer_admin) = consumer_process("certify-race-consumer", &topic, &redis, &collection);
    consumer.start();
    wait_ready(consumer_admin, Duration::from_secs(60)).await;
    let mut c = contest("race-final", 1, Voters::Id);
    c.closes_at_ms = now_ms() + 3_000;
    let c = contests.create(c, None).await.unwrap();
    let publisher = bandvote_kafka::VotePublisher::new(bandvote_kafka::PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    for i in 0..30 {
        let mut v = kit::vote(BANDS[i % 3], Some(&format!("race-vote-{i}")));
        (v.contest, v.voter, v.received_at_ms) = (Some(c.id.clone()), Some(format!("fan-{i}")), now_ms());
        publisher.publish(&v).await.unwrap();
    }
    let store = ContestStore::new(&redis, "").unwrap();
    common::wait_applied(&store, &c.id, 30, Duration::from_secs(60)).await;
    sleep_until_ms(c.closes_at_ms + 100).await;

    let counters = Counters::connect(&redis, "").await.unwrap();
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    let (brokers, intakes) = (kit::kafka_brokers(), reports(&redis));
    let none = Settle { delivery_timeout: Duration::ZERO, clock_skew: Duration::ZERO, claim_window: Duration::ZERO };
    // 0 + 2 s + 1 s + 0: B reads the topic 3 s after the close.
    let slow = Settle { delivery_timeout: Duration::from_secs(2), ..none };
    let sentinel = bandvote_contest::bulletin::Line { leaf: "f".repeat(64), band: "a reader's copy".into(), status: "counted".into() };
    let b = certify::certify(&brokers, &topic, &c, &store, &counters, &log, &intakes, Duration::from_secs(60), slow);
    let a = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let a = certify::certify(&brokers, &topic, &c, &store, &counters, &log, &intakes, Duration::from_secs(60), none).await;
        log.save_bulletin(&c.id, std::slice::from_ref(&sentinel)).await.unwrap();
        (a, now_ms())
    };
    let (b, (a, a_done_ms)) = tokio::join!(b, a);
    let b_done_ms = now_ms();
    let ((b_cert, b_new), (a_cert, a_new)) = (b.expect("B certified or showed"), a.expect("A certified or showed"));
    let lines: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(log.bulletin(&c.id).await.unwrap()).await.unwrap();
    let kept = lines.iter().any(|l| l.leaf == sentinel.leaf);
    println!(
        "B (3 s settle) certified: {b_new}, done at +{} ms; A (started 0.5 s later, no settle) certified: {a_new}, done at +{} ms; \
         the line added after A returned still in the bulletin: {kept} ({} lines)",
        b_done_ms - c.closes_at_ms,
        a_done_ms - c.closes_at_ms,
        lines.len()
    );
    assert_eq!(a_cert, b_cert, "one certificate");
    assert!(a_new ^ b_new, "written once");
    assert!(b_new, "B, which held the lease, certified; A waited for it");
    assert!(kept, "the certified bulletin was cleared by a certify that started before the certificate");
}
