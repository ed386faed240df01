//! Prometheus metrics of the consumer (names prefixed `bandvote_consumer_`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct ConsumerMetrics {
    pub registry: Registry,
    /// Records read from Kafka.
    pub consumed: IntCounter,
    /// Votes counted in Redis (first time seen).
    pub applied: IntCounter,
    /// Skipped as duplicates, by kind: `vote_id` (client retry), `replay` (offset already applied), `stored` (already in MongoDB).
    pub duplicates: IntCounterVec,
    /// Undecodable records sent to the dead-letter topic.
    pub poison: IntCounter,
    /// Sink failures by sink (`redis`, `mongo`, `dlq`); each is retried.
    pub sink_errors: IntCounterVec,
    /// Time to apply one batch to both sinks and commit.
    pub batch_seconds: Histogram,
    /// Consumer lag per partition (high watermark − committed position).
    pub lag: IntGaugeVec,
    /// 1 while the latest fetch and the latest offset commit succeeded.
    pub kafka_up: IntGauge,
    /// Offset commits that failed.
    pub commit_errors: IntCounter,
}

impl ConsumerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let consumed = IntCounter::new("bandvote_consumer_consumed_total", "Records read from Kafka").unwrap();
        let applied = IntCounter::new("bandvote_consumer_applied_total", "Votes counted in Redis").unwrap();
        let duplicates = IntCounterVec::new(Opts::new("bandvote_consumer_duplicates_total", "Duplicates skipped"), &["kind"]).unwrap();
        let poison = IntCounter::new("bandvote_consumer_poison_total", "Records sent to the dead-letter topic").unwrap();
        let sink_errors = IntCounterVec::new(Opts::new("bandvote_consumer_sink_errors_total", "Sink failures (retried)"), &["sink"]).unwrap();
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("bandvote_consumer_batch_seconds", "Batch apply + commit time")
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .unwrap();
        let lag = IntGaugeVec::new(Opts::new("bandvote_consumer_lag", "Consumer lag per partition"), &["partition"]).unwrap();
        let kafka_up = IntGauge::new("bandvote_consumer_kafka_up", "1 while the latest fetch and offset commit succeeded").unwrap();
        let commit_errors = IntCounter::new("bandvote_consumer_commit_errors_total", "Offset commits that failed").unwrap();
        for c in [
            Box::new(consumed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(applied.clone()),
            Box::new(duplicates.clone()),
            Box::new(poison.clone()),
            Box::new(sink_errors.clone()),
            Box::new(batch_seconds.clone()),
            Box::new(lag.clone()),
            Box::new(kafka_up.clone()),
            Box::new(commit_errors.clone()),
        ] {
            registry.register(c).unwrap();
        }
        Self { registry, consumed, applied, duplicates, poison, sink_errors, batch_seconds, lag, kafka_up, commit_errors }
    }
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
