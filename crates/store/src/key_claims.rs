//! Which vote each idempotency key (vote id) stands for, for a while, and
//! how the intake admitted it: so an intake answers 409 when a client reuses
//! a key for a different vote, and answers a retry of an admitted vote as it
//! answered the first attempt — published with the same contest, voter and
//! received time — whatever changed since (a close, an expired token, a new
//! contest). The consumer counts it once.
//!
//! One Redis string per key, `idem:<vote id>` → `<fingerprint>|<stamp>`
//! ([`bandvote_vote::Vote::fingerprint`] of the vote as the client sent it,
//! then the [`Stamp`]), expiring after the window: memory is bounded by
//! (votes per second) × (window) × ~150 bytes, never per vote forever.

use std::time::Duration;

use bandvote_vote::Vote;
use crate::reconnecting::Reconnecting;
use redis::Script;

use crate::intake_redis::{fail_fast_connection, run_script_pipeline};
use crate::keys;

/// `KEYS[1]`: the key; `ARGV[1]`: the vote's fingerprint; `ARGV[2]`: its
/// stamp (empty: the intake refused the vote, so it claims nothing);
/// `ARGV[3]`: the window in seconds.
/// `{1}`: claimed now; `{2, stamp}`: the same vote again (a retry) with the
/// stamp it was admitted with; `{0}`: another vote holds it; `{3}`: free,
/// and nothing claimed.
static CLAIM_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v then
  local bar = string.find(v, '|', 1, true)
  local fp, stamp = v, ''
  if bar then fp = string.sub(v, 1, bar - 1); stamp = string.sub(v, bar + 1) end
  if fp == ARGV[1] then return {2, stamp} end
  return {0, ''}
end
if ARGV[2] == '' then return {3, ''} end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return {1, ''}
";

/// Give `KEYS[1]` up if it still stands for fingerprint `ARGV[1]`.
static RELEASE_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if v and (v == ARGV[1] or string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '|') then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What the intake decided for a vote it admitted: the fields it sets, never
/// the client (kept with the key, so a retry is published the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// When the intake received the first attempt (ms since the Unix epoch).
    pub received_at_ms: i64,
    /// The contest it was admitted under.
    pub contest: Option<String>,
    /// The voter id it was admitted for (a token's voter, not the token).
    pub voter: Option<String>,
}

impl Stamp {
    /// `received|contest|voter` (contest ids have no `|`; the voter is last, so it may).
    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.received_at_ms, self.contest.as_deref().unwrap_or(""), self.voter.as_deref().unwrap_or(""))
    }

    /// The stamp [`Self::encode`] wrote; `None` for anything else.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '|');
        let received_at_ms = parts.next()?.parse().ok()?;
        let contest = parts.next()?;
        let voter = parts.next()?;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(Self { received_at_ms, contest: some(contest), voter: some(voter) })
    }
}

/// What a key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free: it now stands for this vote, as stamped.
    First,
    /// The key already stands for this very vote (a client retry), admitted
    /// as the stamp says (`None`: a claim without a readable stamp).
    Retry(Option<Stamp>),
    /// The key stands for a different vote (within the window): refuse it.
    Conflict,
    /// The key was free and the caller claimed nothing (it refused the vote).
    Unclaimed,
}

/// The key registry, over one auto-reconnecting connection.
#[derive(Clone)]
pub struct KeyClaims {
    con: Reconnecting,
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

    /// For each vote as its client sent it, with the stamp the intake would
    /// admit it with (`None`: the intake refuses it): look its id up and, if
    /// free and stamped, claim it. One round trip; one [`Claim`] per vote, in order.
    pub async fn claim<'a>(&self, votes: impl IntoIterator<Item = (&'a Vote, Option<&'a Stamp>)>) -> Result<Vec<Claim>, redis::RedisError> {
        let mut pipe = redis::pipe();
        for (v, stamp) in votes {
            // EVALSHA with the script's hash; loaded below when the server does not know it.
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(1)
                .arg(format!("{}{}{}", self.prefix, keys::CLAIMED_KEY, v.vote_id))
                .arg(v.fingerprint().simple().to_string())
                .arg(stamp.map(Stamp::encode).unwrap_or_default())
                .arg(self.window.as_secs().max(1));
        }
        let answers: Vec<(i64, String)> = run_script_pipeline(&self.con, &self.script, &pipe).await?;
        Ok(answers
            .into_iter()
            .map(|(code, stamp)| match code {
                1 => Claim::First,
                2 => Claim::Retry(Stamp::decode(&stamp)),
                3 => Claim::Unclaimed,
                _ => Claim::Conflict,
            })
            .collect())
    }

    /// Give up `vote`'s claim on its id (if it still stands for this vote):
    /// its publish failed before the record was handed to Kafka, so the key
    /// is free for a corrected vote at once instead of 409 for the window.
    /// `vote` is the vote as its client sent it (what was claimed).
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

#[cfg(test)]
mod tests {
    use super::Stamp;

    #[test]
    fn stamps_round_trip() {
        for s in [
            Stamp { received_at_ms: 1_700_000_000_123, contest: Some("final-2026".into()), voter: Some("a|b|c".into()) },
            Stamp { received_at_ms: 5, contest: None, voter: None },
            Stamp { received_at_ms: -1, contest: Some("x".into()), voter: None },
        ] {
            assert_eq!(Stamp::decode(&s.encode()), Some(s));
        }
        assert_eq!(Stamp::decode("nonsense"), None);
    }
}
