//! Prometheus metrics of the gRPC producer and REST bridge (`bandvote_grpc_`).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct GrpcMetrics {
    pub registry: Registry,
    /// Calls by method and gRPC code (or HTTP status for the REST bridge).
    pub calls: IntCounterVec,
    /// Votes by outcome: `acked`, `invalid`, `overloaded`, `unavailable`.
    pub votes: IntCounterVec,
    pub publish_seconds: Histogram,
}

impl GrpcMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let calls = IntCounterVec::new(Opts::new("bandvote_grpc_calls_total", "Calls by method and code"), &["method", "code"]).unwrap();
        let votes = IntCounterVec::new(Opts::new("bandvote_grpc_votes_total", "Votes by outcome"), &["outcome"]).unwrap();
        let publish_seconds = Histogram::with_opts(
            HistogramOpts::new("bandvote_grpc_publish_seconds", "Publish to Kafka ack")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .unwrap();
        registry.register(Box::new(calls.clone())).unwrap();
        registry.register(Box::new(votes.clone())).unwrap();
        registry.register(Box::new(publish_seconds.clone())).unwrap();
        Self { registry, calls, votes, publish_seconds }
    }
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}
