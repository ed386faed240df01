//! Can the consumer reach Kafka? Fetches, broker round trips and offset
//! commits report here; `/readyz` and the `bandvote_consumer_kafka_up` gauge
//! read it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::ConsumerMetrics;

/// The latest success and failure of fetching and of committing, in ms since start.
pub struct KafkaHealth {
    epoch: Instant,
    fetch_ok_ms: AtomicU64,
    fetch_err_ms: AtomicU64,
    commit_ok_ms: AtomicU64,
    commit_err_ms: AtomicU64,
    last_error: Mutex<String>,
    metrics: ConsumerMetrics,
}

impl KafkaHealth {
    pub fn new(metrics: ConsumerMetrics) -> Self {
        metrics.kafka_up.set(1);
        Self {
            epoch: Instant::now(),
            // Time 1 so that a start without any traffic counts as healthy.
            fetch_ok_ms: AtomicU64::new(1),
            fetch_err_ms: AtomicU64::new(0),
            commit_ok_ms: AtomicU64::new(1),
            commit_err_ms: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
            metrics,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(2)
    }

    fn note_error(&self, what: &str, error: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = format!("{what}: {error}");
        }
    }

    fn update_gauge(&self) {
        self.metrics.kafka_up.set(i64::from(self.readiness().is_ok()));
    }

    /// A record arrived, or a broker round trip (watermarks, committed offsets) succeeded.
    pub fn fetch_ok(&self) {
        self.fetch_ok_ms.store(self.now_ms(), Ordering::Relaxed);
        self.update_gauge();
    }

    /// Receiving or a broker round trip failed.
    pub fn fetch_failed(&self, error: &str) {
        self.fetch_err_ms.store(self.now_ms(), Ordering::Relaxed);
        self.note_error("fetch", error);
        self.update_gauge();
    }

    pub fn commit_ok(&self) {
        self.commit_ok_ms.store(self.now_ms(), Ordering::Relaxed);
        self.update_gauge();
    }

    pub fn commit_failed(&self, error: &str) {
        self.commit_err_ms.store(self.now_ms(), Ordering::Relaxed);
        self.metrics.commit_errors.inc();
        self.note_error("commit", error);
        self.update_gauge();
    }

    /// Not ready while the latest fetch or the latest commit failed.
    pub fn readiness(&self) -> Result<(), String> {
        let failing = |ok: &AtomicU64, err: &AtomicU64| err.load(Ordering::Relaxed) > ok.load(Ordering::Relaxed);
        if failing(&self.fetch_ok_ms, &self.fetch_err_ms) || failing(&self.commit_ok_ms, &self.commit_err_ms) {
            let e = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
            return Err(format!("kafka: {e}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_outcome_decides() {
        let metrics = ConsumerMetrics::new();
        let h = KafkaHealth::new(metrics.clone());
        assert!(h.readiness().is_ok());
        std::thread::sleep(std::time::Duration::from_millis(3));
        h.fetch_failed("all brokers down");
        assert!(h.readiness().unwrap_err().contains("all brokers down"));
        assert_eq!(metrics.kafka_up.get(), 0);
        std::thread::sleep(std::time::Duration::from_millis(3));
        h.fetch_ok();
        assert!(h.readiness().is_ok());
        std::thread::sleep(std::time::Duration::from_millis(3));
        h.commit_failed("coordinator not available");
        assert!(h.readiness().is_err());
        assert_eq!(metrics.commit_errors.get(), 1);
        std::thread::sleep(std::time::Duration::from_millis(3));
        h.commit_ok();
        assert!(h.readiness().is_ok());
        assert_eq!(metrics.kafka_up.get(), 1);
    }
}
