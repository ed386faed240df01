//! Is Kafka acknowledging? A lock-free record of the publisher's progress, and
//! the Prometheus collector that reports it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntGauge, Opts};

use crate::VotePublisher;

/// When Kafka last acknowledged a vote and when votes started waiting, as
/// milliseconds since the publisher was created.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    last_ack_ms: AtomicU64,
    busy_since_ms: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ack_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A vote entered the in-flight set; `was_idle` when nothing else was waiting.
    pub fn started(&self, was_idle: bool) {
        if was_idle {
            self.busy_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Kafka acknowledged a vote.
    pub fn acked(&self) {
        self.last_ack_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Time since the last acknowledgement.
    pub fn since_last_ack(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_ack_ms.load(Ordering::Relaxed)))
    }

    /// With `in_flight` votes waiting: how long nothing was acknowledged, when
    /// that is longer than `after`.
    pub fn stalled_for(&self, in_flight: usize, after: Duration) -> Option<Duration> {
        if in_flight == 0 {
            return None;
        }
        let since = self.last_ack_ms.load(Ordering::Relaxed).max(self.busy_since_ms.load(Ordering::Relaxed));
        let waited = Duration::from_millis(self.now_ms().saturating_sub(since));
        (waited > after).then_some(waited)
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads the publisher's state at scrape time.
pub(crate) struct PublisherCollector {
    publisher: VotePublisher,
    in_flight: IntGauge,
    last_ack_age: Gauge,
    stalled: IntGauge,
    descs: Vec<Desc>,
}

impl PublisherCollector {
    pub(crate) fn new(publisher: VotePublisher, prefix: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(format!("{prefix}_{name}"), help);
        let in_flight = IntGauge::with_opts(opts("kafka_in_flight", "Votes sent to Kafka and not yet acknowledged"))?;
        let last_ack_age = Gauge::with_opts(opts("kafka_last_ack_age_seconds", "Seconds since Kafka last acknowledged a vote"))?;
        let stalled = IntGauge::with_opts(opts("kafka_stalled", "1 while votes wait and Kafka has acknowledged nothing for stall_after"))?;
        let descs = [in_flight.desc(), last_ack_age.desc(), stalled.desc()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Ok(Self { publisher, in_flight, last_ack_age, stalled, descs })
    }
}

impl Collector for PublisherCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.in_flight.set(i64::try_from(self.publisher.in_flight()).unwrap_or(i64::MAX));
        self.last_ack_age.set(self.publisher.progress.since_last_ack().as_secs_f64());
        self.stalled.set(i64::from(self.publisher.stalled_for().is_some()));
        [
            self.in_flight.collect(),
            self.last_ack_age.collect(),
            self.stalled.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_never_stalled() {
        let p = Progress::new();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(p.stalled_for(0, Duration::from_millis(1)), None);
    }

    #[test]
    fn waiting_without_acks_is_stalled_after_the_bound() {
        let p = Progress::new();
        p.started(true);
        assert_eq!(p.stalled_for(3, Duration::from_millis(50)), None);
        std::thread::sleep(Duration::from_millis(80));
        assert!(p.stalled_for(3, Duration::from_millis(50)).is_some());
        p.acked();
        assert_eq!(p.stalled_for(3, Duration::from_millis(50)), None);
    }
}
