//! The votes an intake has taken and not answered yet, by the time it took
//! them (its stamp): what lets it report how far it has published
//! ([`bandvote_store::published_through`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Votes taken and not answered yet, counted by the time they were taken.
#[derive(Debug, Default)]
pub struct InFlight {
    taken: Mutex<BTreeMap<i64, usize>>,
}

/// One call's votes, in flight until this is dropped (answered: published,
/// refused or failed).
#[derive(Debug)]
pub struct Taken {
    set: Arc<InFlight>,
    /// The time they were taken (the stamp of a first attempt).
    pub at: i64,
}

impl InFlight {
    /// Take votes now: the time is read under the lock, so no report sees a
    /// time past `at` while they are in flight.
    pub fn take(self: &Arc<Self>, clock: fn() -> i64) -> Taken {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let at = clock();
        *taken.entry(at).or_default() += 1;
        Taken { set: self.clone(), at }
    }

    /// Every vote taken at or before this time has been answered: just before
    /// the oldest in flight, or now when none is.
    pub fn through(&self, clock: fn() -> i64) -> i64 {
        let taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        match taken.keys().next() {
            Some(oldest) => oldest - 1,
            None => clock(),
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        let mut taken = self.set.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = taken.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                taken.remove(&self.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    static NOW: AtomicI64 = AtomicI64::new(1_000);
    fn clock() -> i64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn through_stays_before_the_oldest_vote_in_flight_until_it_is_answered() {
        let set = Arc::new(InFlight::default());
        assert_eq!(set.through(clock), 1_000, "nothing in flight: now");
        let first = set.take(clock);
        NOW.store(2_000, Ordering::SeqCst);
        let second = set.take(clock);
        let again = set.take(clock);
        NOW.store(3_000, Ordering::SeqCst);
        assert_eq!(set.through(clock), 999);
        drop(first);
        assert_eq!(set.through(clock), 1_999);
        drop(second);
        assert_eq!(set.through(clock), 1_999, "one taken at 2,000 still in flight");
        drop(again);
        assert_eq!(set.through(clock), 3_000);
    }
}
