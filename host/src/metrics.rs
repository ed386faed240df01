//! Prometheus metrics of the host (names prefixed `bandvote_host_`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the host exports; registered in its own registry.
#[derive(Clone)]
pub struct HostMetrics {
    pub registry: Registry,
    /// Responses by HTTP status.
    pub requests: IntCounterVec,
    /// Votes published by outcome (`acked`, `overloaded`, `unavailable`, `invalid`).
    pub votes: IntCounterVec,
    /// Time from publish to Kafka's delivery report.
    pub publish_seconds: Histogram,
    /// Whole request time.
    pub request_seconds: Histogram,
    /// Time to instantiate the component for one request.
    pub instantiate_seconds: Histogram,
    /// Requests being served now.
    pub in_flight: IntGauge,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: IntCounter,
    /// Instances that served a request, by `start`: `fresh` (instantiated for
    /// it) or `reused` (served earlier requests).
    pub instances: IntCounterVec,
    /// Instances dropped, by `reason` (`warm::Retire`).
    pub instances_retired: IntCounterVec,
}

impl HostMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let fast = vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
        let slow = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let requests = IntCounterVec::new(Opts::new("bandvote_host_requests_total", "HTTP responses by status"), &["status"]).unwrap();
        let votes = IntCounterVec::new(Opts::new("bandvote_host_votes_total", "Votes by publish outcome"), &["outcome"]).unwrap();
        let publish_seconds = Histogram::with_opts(HistogramOpts::new("bandvote_host_publish_seconds", "Publish to Kafka ack").buckets(slow.clone())).unwrap();
        let request_seconds = Histogram::with_opts(HistogramOpts::new("bandvote_host_request_seconds", "Request latency").buckets(slow)).unwrap();
        let instantiate_seconds = Histogram::with_opts(HistogramOpts::new("bandvote_host_instantiate_seconds", "Component instantiation time").buckets(fast)).unwrap();
        let in_flight = IntGauge::new("bandvote_host_in_flight_requests", "Requests being served").unwrap();
        let connections_refused =
            IntCounter::new("bandvote_host_connections_refused_total", "Connections closed at once: max_connections were open").unwrap();
        let instances = IntCounterVec::new(
            Opts::new("bandvote_host_instances_total", "Instances that served a request: fresh (instantiated for it) or reused"),
            &["start"],
        )
        .unwrap();
        let instances_retired =
            IntCounterVec::new(Opts::new("bandvote_host_instances_retired_total", "Reusable instances dropped, by reason"), &["reason"]).unwrap();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(votes.clone()),
            Box::new(publish_seconds.clone()),
            Box::new(request_seconds.clone()),
            Box::new(instantiate_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(connections_refused.clone()),
            Box::new(instances.clone()),
            Box::new(instances_retired.clone()),
        ] {
            registry.register(c).unwrap();
        }
        Self {
            registry,
            requests,
            votes,
            publish_seconds,
            request_seconds,
            instantiate_seconds,
            in_flight,
            connections_refused,
            instances,
            instances_retired,
        }
    }
}

impl Default for HostMetrics {
    fn default() -> Self {
        Self::new()
    }
}
