//! Bench-only pieces shared by the benchmark binaries.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bandvote_admission::{Ack, Publish, PublishError};
use bandvote_vote::Vote;
use futures::future::BoxFuture;

/// A publisher that acknowledges every vote at once (or after a fixed delay:
/// [`InstantPublisher::after`]) and stores nothing: with
/// it, the wasm host and the native intake differ only by the sandbox. Bench
/// binaries only (`bandvote-sandbox`, `bandvote-native-intake --instant`); the
/// production host has no such mode.
#[derive(Default)]
pub struct InstantPublisher {
    next: AtomicI64,
    delay: Duration,
}

impl InstantPublisher {
    /// Acknowledges after `delay` instead of at once (a broker's delivery
    /// time without the broker): with it, the sandbox holds as many
    /// instances waiting in their publish call as a host with Kafka does.
    pub fn after(delay: Duration) -> Self {
        Self { next: AtomicI64::new(0), delay }
    }

    /// The delay from `BANDVOTE_BENCH_PUBLISH_DELAY_MS` (unset: at once); a
    /// value that is not a whole number of milliseconds is an error, not "at
    /// once" (a typo would otherwise measure the wrong thing).
    pub fn from_env() -> anyhow::Result<Self> {
        let ms = match std::env::var("BANDVOTE_BENCH_PUBLISH_DELAY_MS") {
            Ok(v) => v.trim().parse().map_err(|e| anyhow::anyhow!("BANDVOTE_BENCH_PUBLISH_DELAY_MS={v:?}: {e}"))?,
            Err(_) => 0,
        };
        Ok(Self::after(Duration::from_millis(ms)))
    }

    async fn wait(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Publish for InstantPublisher {
    fn publish<'a>(&'a self, _vote: &'a Vote) -> BoxFuture<'a, Result<Ack, PublishError>> {
        let offset = self.next.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            self.wait().await;
            Ok(Ack { partition: 0, offset })
        })
    }

    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        let first = self.next.fetch_add(votes.len() as i64, Ordering::Relaxed);
        Box::pin(async move {
            self.wait().await;
            Ok((0..votes.len() as i64).map(|i| Ok(Ack { partition: 0, offset: first + i })).collect())
        })
    }
}
