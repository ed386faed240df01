//! Integration tests live in `tests/`; this library holds what several of them share.

use bandvote_consumer::config::ConsumerConfig;
use bandvote_testkit as kit;

/// A consumer of `topic` (dead letters in `<topic>-dlq`) in a group of its
/// own, counting into Redis keys under a fresh prefix and a fresh MongoDB
/// collection named after `name`: tests never see each other's votes.
pub fn isolated_consumer(name: &str, topic: &str) -> ConsumerConfig {
    ConsumerConfig {
        kafka_brokers: kit::kafka_brokers(),
        topic: topic.to_owned(),
        dlq_topic: format!("{topic}-dlq"),
        dlq_brokers: String::new(),
        dlq_timeout_ms: 5_000,
        group: kit::unique("grp"),
        instance_id: kit::unique("consumer"),
        redis_url: kit::redis_url(),
        redis_prefix: format!("{}:", kit::unique(name)),
        mongo_url: kit::mongo_url(),
        mongo_db: "bandvote_test".into(),
        mongo_collection: kit::unique(name),
        batch_max: 200,
        batch_wait_ms: 20,
        admin_listen: "127.0.0.1:0".parse().expect("an address"),
    }
}
