//! Is Kafka acknowledging? A lock-free record of the publisher's progress, and
//! the Prometheus collector that reports it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntGauge, Opts};

use crate::VotePublisher;

/// When Kafka last acknowledged a vote and when votes started waiting, as
/// milliseconds since the publisher was created.
#[derive(Debug)]
pub struct Progress {
    epoch: Instant,
    last_ack_ms: AtomicU64,
    busy_since_ms: AtomicU64,
    /// Votes refused because their key stood for another vote.
    claim_conflicts: AtomicU64,
    /// Votes published without a key check (Redis unreachable).
    claims_unchecked: AtomicU64,
    /// Votes refused: a new band name past the cap.
    bands_refused: AtomicU64,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ack_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            claim_conflicts: AtomicU64::new(0),
            claims_unchecked: AtomicU64::new(0),
            bands_refused: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `n` votes were refused: their keys stood for other votes.
    pub fn claim_conflicts(&self, n: usize) {
        self.claim_conflicts.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` votes were refused: new band names past the cap.
    pub fn bands_refused(&self, n: usize) {
        self.bands_refused.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` votes went out without a key check.
    pub fn claims_unchecked(&self, n: usize) {
        self.claims_unchecked.fetch_add(n as u64, Ordering::Relaxed);
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
    conflicts: IntCounter,
    unchecked: IntCounter,
    bands_refused: IntCounter,
    descs: Vec<Desc>,
}

impl PublisherCollector {
    pub(crate) fn new(publisher: VotePublisher, prefix: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(format!("{prefix}_{name}"), help);
        let in_flight = IntGauge::with_opts(opts("kafka_in_flight", "Votes sent to Kafka and not yet acknowledged"))?;
        let last_ack_age = Gauge::with_opts(opts("kafka_last_ack_age_seconds", "Seconds since Kafka last acknowledged a vote"))?;
        let stalled = IntGauge::with_opts(opts("kafka_stalled", "1 while votes wait and Kafka has acknowledged nothing for stall_after"))?;
        let conflicts = IntCounter::with_opts(opts(
            "idempotency_conflicts_total",
            "Votes refused (409 / ALREADY_EXISTS): their idempotency key stood for a different vote",
        ))?;
        let unchecked =
            IntCounter::with_opts(opts("idempotency_unchecked_total", "Votes published without an idempotency key check (Redis unreachable)"))?;
        let bands_refused = IntCounter::with_opts(opts(
            "bands_refused_total",
            "Votes refused (422 / INVALID_ARGUMENT): a new band name past the cap of distinct names",
        ))?;
        let descs = [in_flight.desc(), last_ack_age.desc(), stalled.desc(), conflicts.desc(), unchecked.desc(), bands_refused.desc()]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        Ok(Self { publisher, in_flight, last_ack_age, stalled, conflicts, unchecked, bands_refused, descs })
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
        let progress = &self.publisher.progress;
        self.conflicts.inc_by(progress.claim_conflicts.load(Ordering::Relaxed).saturating_sub(self.conflicts.get()));
        self.unchecked.inc_by(progress.claims_unchecked.load(Ordering::Relaxed).saturating_sub(self.unchecked.get()));
        self.bands_refused.inc_by(progress.bands_refused.load(Ordering::Relaxed).saturating_sub(self.bands_refused.get()));
        [
            self.in_flight.collect(),
            self.last_ack_age.collect(),
            self.stalled.collect(),
            self.conflicts.collect(),
            self.unchecked.collect(),
            self.bands_refused.collect(),
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
