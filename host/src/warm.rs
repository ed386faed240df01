//! Serial reuse of intake instances (`--instance-reuse N`).
//!
//! A `wasi:http` 0.2 instance may serve one request after another. An
//! instance that answered cleanly goes back to an idle stack (most recently
//! used on top, so the hot ones stay hot); the next request takes it instead
//! of instantiating. What one request leaves behind is bounded by
//! [`ReusePolicy`]: an instance is retired — never served again — when its
//! request trapped, missed its deadline or was aborted, when it left a host
//! resource in its table, when its memory grew past the ceiling, after
//! `max_uses` requests, and after `idle_timeout` unused. Its per-request host
//! state (publisher state, deadline) is set anew for every request
//! (`runtime`). What stays is the guest's own memory: see ARCHITECTURE.md
//! ("Instance reuse") for what isolation that costs.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::state::RequestState;

/// When an instance may serve again.
#[derive(Debug, Clone)]
pub struct ReusePolicy {
    /// Requests one instance serves at most (1: a fresh instance per request).
    pub max_uses: u32,
    /// An idle instance unused this long is dropped.
    pub idle_timeout: Duration,
    /// An instance whose linear memory grew past this many bytes is retired
    /// (a heap grown by one large request is not carried into the next).
    pub memory_ceiling: usize,
}

impl ReusePolicy {
    /// Whether instances are reused at all.
    pub fn enabled(&self) -> bool {
        self.max_uses > 1
    }

    /// After a request the instance answered without a trap: `None` if it may
    /// serve again, else why it is retired.
    pub fn after_request(&self, served: u32, holds_resources: bool, memory_peak: usize) -> Option<Retire> {
        if holds_resources {
            Some(Retire::Resources)
        } else if memory_peak > self.memory_ceiling {
            Some(Retire::Memory)
        } else if served >= self.max_uses {
            Some(Retire::Uses)
        } else {
            None
        }
    }
}

/// Why an instance was dropped (the `reason` label of
/// `bandvote_host_instances_retired_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// The guest trapped or the request failed inside the instance.
    Trap,
    /// The request missed its deadline or its task was aborted.
    Deadline,
    /// The request left a host resource (stream, body, request) in the table.
    Resources,
    /// Its memory grew past the policy's ceiling.
    Memory,
    /// It served `max_uses` requests.
    Uses,
    /// Unused for `idle_timeout`.
    Idle,
    /// The idle stack was full.
    Full,
}

impl Retire {
    pub fn label(self) -> &'static str {
        match self {
            Retire::Trap => "trap",
            Retire::Deadline => "deadline",
            Retire::Resources => "resources",
            Retire::Memory => "memory",
            Retire::Uses => "uses",
            Retire::Idle => "idle",
            Retire::Full => "full",
        }
    }
}

/// An instantiated intake: its store and its exports, and how many requests
/// it has served.
pub struct Warm {
    pub(crate) store: Store<RequestState>,
    pub(crate) proxy: Proxy,
    pub(crate) served: u32,
}

/// Idle items, most recently parked on top, each with when it was parked.
#[derive(Debug)]
pub struct IdleStack<T> {
    items: Vec<(T, Instant)>,
    capacity: usize,
}

impl<T> IdleStack<T> {
    pub fn new(capacity: usize) -> Self {
        Self { items: Vec::new(), capacity }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most recently parked item, if it was parked within `timeout`.
    /// Items past it are removed into `expired` (all of them: those below are
    /// older still).
    pub fn take(&mut self, now: Instant, timeout: Duration, expired: &mut Vec<T>) -> Option<T> {
        let (item, parked) = self.items.pop()?;
        if now.saturating_duration_since(parked) <= timeout {
            return Some(item);
        }
        expired.push(item);
        expired.extend(self.items.drain(..).map(|(t, _)| t));
        None
    }

    /// Park `item`; if the stack is full it is handed back.
    pub fn park(&mut self, item: T, now: Instant) -> Result<(), T> {
        if self.items.len() >= self.capacity {
            return Err(item);
        }
        self.items.push((item, now));
        Ok(())
    }

    /// Remove the items parked more than `timeout` ago (the bottom of the stack).
    pub fn reap(&mut self, now: Instant, timeout: Duration) -> Vec<T> {
        let stale = self.items.iter().take_while(|(_, parked)| now.saturating_duration_since(*parked) > timeout).count();
        self.items.drain(..stale).map(|(t, _)| t).collect()
    }
}

/// The idle instances of one runtime, with the policy that decides which
/// come back, and the retirement counter.
pub struct WarmPool {
    policy: ReusePolicy,
    idle: Mutex<IdleStack<Warm>>,
    retired: IntCounterVec,
}

impl WarmPool {
    /// At most `capacity` instances idle at once.
    pub fn new(policy: ReusePolicy, capacity: usize, retired: IntCounterVec) -> Self {
        Self { policy, idle: Mutex::new(IdleStack::new(capacity)), retired }
    }

    pub fn policy(&self) -> &ReusePolicy {
        &self.policy
    }

    /// An idle instance to serve the next request, if one is warm.
    pub fn take(&self) -> Option<Warm> {
        if !self.policy.enabled() {
            return None;
        }
        let mut expired = Vec::new();
        let warm = self.lock().take(Instant::now(), self.policy.idle_timeout, &mut expired);
        self.retire_all(expired, Retire::Idle);
        warm
    }

    /// After a request its instance answered without a trap: park it for the
    /// next one, or retire it.
    pub fn give_back(&self, warm: Warm) {
        let data = warm.store.data();
        let verdict = self.policy.after_request(warm.served, data.holds_resources(), data.limits.memory_peak());
        if let Some(why) = verdict {
            return self.retire(warm, why);
        }
        if let Err(warm) = self.lock().park(warm, Instant::now()) {
            self.retire(warm, Retire::Full);
        }
    }

    /// Count an instance dropped for `why` (dropping it frees its pool slot).
    pub fn retire(&self, warm: Warm, why: Retire) {
        drop(warm);
        self.count(why);
    }

    /// Count an instance that was dropped elsewhere (with its task) for `why`.
    pub fn count(&self, why: Retire) {
        self.retired.with_label_values(&[why.label()]).inc();
    }

    /// Drop the instances idle past the timeout.
    pub fn reap(&self) {
        let stale = self.lock().reap(Instant::now(), self.policy.idle_timeout);
        self.retire_all(stale, Retire::Idle);
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn retire_all(&self, warm: Vec<Warm>, why: Retire) {
        for w in warm {
            self.retire(w, why);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleStack<Warm>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_uses: u32) -> ReusePolicy {
        ReusePolicy { max_uses, idle_timeout: Duration::from_secs(10), memory_ceiling: 16 << 20 }
    }

    #[test]
    fn an_instance_that_answered_cleanly_serves_again_until_its_uses_run_out() {
        let p = policy(3);
        assert!(p.enabled());
        assert_eq!(p.after_request(1, false, 2 << 20), None);
        assert_eq!(p.after_request(2, false, 2 << 20), None);
        assert_eq!(p.after_request(3, false, 2 << 20), Some(Retire::Uses));
        assert!(!policy(1).enabled());
        assert_eq!(policy(1).after_request(1, false, 0), Some(Retire::Uses));
    }

    #[test]
    fn leftover_resources_or_a_grown_heap_retire_it_at_once() {
        let p = policy(100);
        assert_eq!(p.after_request(1, true, 0), Some(Retire::Resources));
        assert_eq!(p.after_request(1, false, (16 << 20) + 1), Some(Retire::Memory));
        assert_eq!(p.after_request(1, false, 16 << 20), None);
    }

    #[test]
    fn the_most_recent_is_taken_first_and_stale_ones_are_dropped() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut stack = IdleStack::new(3);
        stack.park(1, t0).unwrap();
        stack.park(2, t0 + Duration::from_secs(5)).unwrap();
        stack.park(3, t0 + Duration::from_secs(6)).unwrap();
        assert_eq!(stack.park(4, t0), Err(4), "full: handed back");
        let mut expired = Vec::new();
        assert_eq!(stack.take(t0 + Duration::from_secs(7), timeout, &mut expired), Some(3));
        assert_eq!(stack.reap(t0 + Duration::from_secs(11), timeout), vec![1], "only the one parked 11 s ago");
        assert_eq!(stack.take(t0 + Duration::from_secs(16), timeout, &mut expired), None, "parked 11 s ago");
        assert_eq!(expired, vec![2]);
        assert!(stack.is_empty());
    }
}
