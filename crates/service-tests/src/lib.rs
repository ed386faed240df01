//! Integration tests live in `tests/`; this library holds what several of them share.

use bandvote_consumer::config::ConsumerConfig;
use bandvote_consumer::metrics::ConsumerMetrics;
use bandvote_consumer::pipeline::Pipeline;
use bandvote_store::{Counters, VoteLog};
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
        kafka_debug: String::new(),
        redis_url: kit::redis_url(),
        redis_prefix: format!("{}:", kit::unique(name)),
        mongo_url: kit::mongo_url(),
        mongo_db: "bandvote_test".into(),
        mongo_collection: kit::unique(name),
        batch_max: 200,
        batch_wait_ms: 20,
        fetch_partition_bytes: 8 << 20,
        admin_listen: "127.0.0.1:0".parse().expect("an address"),
    }
}

/// A consumer pipeline running in this process, and the sinks it writes.
pub struct RunningConsumer {
    pub counters: Counters,
    pub log: VoteLog,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Start the consumer of `cfg` in this process (until [`RunningConsumer::stop`]).
pub async fn run_consumer(cfg: ConsumerConfig) -> RunningConsumer {
    let pipeline = Pipeline::connect(cfg, ConsumerMetrics::new()).await.expect("the consumer connects to its services");
    let (counters, log) = (pipeline.applier().counters().clone(), pipeline.applier().log().clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pipeline.run(async move {
        let _ = stopped.await;
    }));
    RunningConsumer { counters, log, stop, task }
}

impl RunningConsumer {
    /// Stop it (the batch in progress is finished) and wait until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("the consumer task ends cleanly");
    }
}
