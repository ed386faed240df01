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
