//! Each real service answers the way the pipeline relies on.

use std::time::Duration;

use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_testkit as kit;
use mongodb::bson::doc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;

/// Idempotent acks=all producer → topic → consumer group with a manual commit;
/// a second consumer in the same group resumes after the committed offset.
#[tokio::test]
async fn kafka_produce_consume_commit() {
    let topic = kit::fresh_topic("svc", 1).await;
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    assert!(publisher.ready(Duration::from_secs(5)).await, "broker ready");
    let first = kit::vote("Alux Nahual", Some("svc-1"));
    let second = kit::vote("Bohemia Suburbana", Some("svc-2"));
    let a1 = publisher.publish(&first).await.expect("ack 1");
    let a2 = publisher.publish(&second).await.expect("ack 2");
    assert_eq!((a1.partition, a2.offset), (0, a1.offset + 1));

    let group = kit::unique("grp");
    let consumer = |group: &str| -> StreamConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", kit::kafka_brokers())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    };
    let c = consumer(&group);
    c.subscribe(&[&topic]).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), c.recv()).await.expect("a record in time").unwrap();
    assert_eq!(m.key(), Some(&b"svc-1"[..]));
    assert_eq!(bandvote_vote::record::decode(m.payload().unwrap()).unwrap(), first);
    c.commit_message(&m, CommitMode::Sync).unwrap();
    drop(m);
    drop(c);

    let c2 = consumer(&group);
    c2.subscribe(&[&topic]).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(30), c2.recv()).await.expect("resume in time").unwrap();
    assert_eq!(m.key(), Some(&b"svc-2"[..]), "resumes after the committed offset");
}

#[tokio::test]
async fn redis_hincrby() {
    let client = redis::Client::open(kit::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.expect("redis reachable");
    let key = kit::unique("test:votos_banda");
    let n: i64 = redis::cmd("HINCRBY").arg(&key).arg("Alux Nahual").arg(1).query_async(&mut con).await.unwrap();
    let n2: i64 = redis::cmd("HINCRBY").arg(&key).arg("Alux Nahual").arg(2).query_async(&mut con).await.unwrap();
    assert_eq!((n, n2), (1, 3));
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut con).await.unwrap();
}

#[tokio::test]
async fn mongo_duplicate_id_is_e11000() {
    let client = mongodb::Client::with_uri_str(kit::mongo_url()).await.unwrap();
    let coll = client.database("bandvote_test").collection::<mongodb::bson::Document>(&kit::unique("dup"));
    coll.insert_one(doc! { "_id": "v-1", "band": "Alux Nahual" }).await.expect("first insert");
    let err = coll.insert_one(doc! { "_id": "v-1", "band": "Alux Nahual" }).await.expect_err("duplicate _id");
    let code = match *err.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref e)) => e.code,
        ref other => panic!("unexpected error {other:?}"),
    };
    assert_eq!(code, 11000);
    assert_eq!(coll.count_documents(doc! {}).await.unwrap(), 1);
    coll.drop().await.unwrap();
}
