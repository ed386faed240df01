//! Bench-only pieces shared by the benchmark binaries.

use std::sync::atomic::{AtomicI64, Ordering};

use bandvote_admission::{Ack, Publish, PublishError};
use bandvote_vote::Vote;
use futures::future::BoxFuture;

/// A publisher that acknowledges every vote at once and stores nothing: with
/// it, the wasm host and the native intake differ only by the sandbox. Bench
/// binaries only (`bandvote-sandbox`, `bandvote-native-intake --instant`); the
/// production host has no such mode.
#[derive(Default)]
pub struct InstantPublisher {
    next: AtomicI64,
}

impl Publish for InstantPublisher {
    fn publish<'a>(&'a self, _vote: &'a Vote) -> BoxFuture<'a, Result<Ack, PublishError>> {
        let offset = self.next.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(Ack { partition: 0, offset }) })
    }

    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        let first = self.next.fetch_add(votes.len() as i64, Ordering::Relaxed);
        Box::pin(async move { Ok((0..votes.len() as i64).map(|i| Ok(Ack { partition: 0, offset: first + i })).collect()) })
    }
}
