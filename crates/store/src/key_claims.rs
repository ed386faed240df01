//! Which vote each idempotency key (vote id) stands for, for a while: so an
//! intake can answer 409 when a client reuses a key for a different vote,
//! while a retry of the same vote goes through (the consumer counts it once).
//!
//! One Redis string per key, `idem:<vote id>` → the vote's fingerprint
//! ([`bandvote_vote::Vote::fingerprint`]), expiring after the window: memory is
//! bounded by (votes per second) × (window) × ~120 bytes, never per vote forever.

use std::time::Duration;

use bandvote_vote::Vote;
use redis::aio::ConnectionManager;
use redis::Script;

use crate::intake_redis::{fail_fast_connection, run_script_pipeline};
use crate::keys;

/// Claim `KEYS[1]` for fingerprint `ARGV[1]` for `ARGV[2]` seconds.
/// 1: first use; 2: the same vote again (a retry); 0: another vote holds it.
static CLAIM_LUA: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 2 end
return 0
";

/// Give `KEYS[1]` up if it still stands for fingerprint `ARGV[1]`.
static RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What a key stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: it now stands for this vote.
    First,
    /// The key already stands for this very vote (a client retry).
    Retry,
    /// The key stands for a different vote (within the window): refuse it.
    Conflict,
}

/// The key registry, over one auto-reconnecting connection.
#[derive(Clone)]
pub struct KeyClaims {
    con: ConnectionManager,
    prefix: String,
    window: Duration,
    script: Script,
    release: Script,
}

impl KeyClaims {
    /// A registry at `url`, connected on first use: an intake starts while
    /// Redis is down, and a claim gives up after 500 ms (the caller then
    /// publishes unchecked) instead of holding the vote.
    pub fn new(url: &str, prefix: &str, window: Duration) -> Result<Self, redis::RedisError> {
        let con = fail_fast_connection(url)?;
        Ok(Self { con, prefix: prefix.to_owned(), window, script: Script::new(CLAIM_LUA), release: Script::new(RELEASE_LUA) })
    }

    /// Claim each vote's id for it, in one round trip; one [`Claim`] per vote, in order.
    pub async fn claim<'a>(&self, votes: impl IntoIterator<Item = &'a Vote>) -> Result<Vec<Claim>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for v in votes {
            // EVALSHA with the script's hash; loaded below when the server does not know it.
            pipe.cmd("EVALSHA").arg(self.script.get_hash()).arg(1).arg(format!("{}{}{}", self.prefix, keys::CLAIMED_KEY, v.vote_id))
                .arg(v.fingerprint().simple().to_string()).arg(self.window.as_secs().max(1));
        }
        let codes = run_script_pipeline(&self.con, &self.script, &pipe).await?;
        Ok(codes
            .into_iter()
            .map(|c| match c {
                1 => Claim::First,
                2 => Claim::Retry,
                _ => Claim::Conflict,
            })
            .collect())
    }

    /// Give up `vote`'s claim on its id (if it still stands for this vote):
    /// its publish failed before the record was handed to Kafka, so the key
    /// is free for a corrected vote at once instead of 409 for the window.
    pub async fn release(&self, vote: &Vote) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        self.release
            .key(format!("{}{}{}", self.prefix, keys::CLAIMED_KEY, vote.vote_id))
            .arg(vote.fingerprint().simple().to_string())
            .invoke_async::<i64>(&mut con)
            .await
            .map(drop)
    }
}
