//! The distinct band names a deployment counts, bounded: every new name is a
//! new hash field and leaderboard member in Redis (and a row a rebuild loads),
//! so a client sending made-up names must not grow them without end. One
//! Redis set (`bands:known`) holds the names admitted so far; a new name is
//! admitted while the set has fewer than `cap`, refused past it (HTTP 422,
//! gRPC INVALID_ARGUMENT). A contest roster, when there is one, replaces this
//! cap with its own list. The set never shrinks by itself: an operator frees
//! it with `bandvote-consumer names forget` (the names with few counted
//! votes; their counters stay), or sets a roster.

use crate::reconnecting::Reconnecting;
use redis::Script;

use crate::intake_redis::{fail_fast_connection, run_script_pipeline};
use crate::keys;

/// Admit `ARGV[1]` into the set `KEYS[1]` of at most `ARGV[2]` names.
/// 1: known or admitted now; 0: new, and the set is full.
static ADMIT_LUA: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// The bounded set of band names, over one auto-reconnecting connection.
#[derive(Clone)]
pub struct BandNames {
    con: Reconnecting,
    key: String,
    cap: usize,
    script: Script,
}

impl BandNames {
    /// The set at `url` (keys under `prefix`), connected on first use; an
    /// admission gives up after 500 ms (the caller then publishes unchecked).
    pub fn new(url: &str, prefix: &str, cap: usize) -> Result<Self, redis::RedisError> {
        Self::with_key(url, &format!("{prefix}{}", keys::KNOWN_BANDS), cap)
    }

    /// The same bound for album names (`albums:known`): a roster does not bound them.
    pub fn albums(url: &str, prefix: &str, cap: usize) -> Result<Self, redis::RedisError> {
        Self::with_key(url, &format!("{prefix}{}", keys::KNOWN_ALBUMS), cap)
    }

    fn with_key(url: &str, key: &str, cap: usize) -> Result<Self, redis::RedisError> {
        let con = fail_fast_connection(url)?;
        Ok(Self { con, key: key.to_owned(), cap, script: Script::new(ADMIT_LUA) })
    }

    /// How many distinct names are admitted at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Admit each name (one round trip); `true` per name that is known or
    /// admitted now, `false` when it is new and the cap is reached.
    pub async fn admit(&self, names: &[&str]) -> Result<Vec<bool>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("EVALSHA").arg(self.script.get_hash()).arg(1).arg(&self.key).arg(*name).arg(self.cap);
        }
        let codes: Vec<i64> = run_script_pipeline(&self.con, &self.script, &pipe).await?;
        Ok(codes.into_iter().map(|c| c == 1).collect())
    }

    /// Every name admitted so far (at most the cap).
    pub async fn names(&self) -> Result<Vec<String>, redis::RedisError> {
        let mut con = self.con.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS").arg(&self.key).query_async(&mut con).await?;
        names.sort_unstable();
        Ok(names)
    }

    /// Take `names` out of the set (their counters stay): as many new names
    /// can be admitted. How many were in it.
    pub async fn forget(&self, names: &[String]) -> Result<usize, redis::RedisError> {
        if names.is_empty() {
            return Ok(0);
        }
        let mut con = self.con.clone();
        redis::cmd("SREM").arg(&self.key).arg(names).query_async(&mut con).await
    }
}
