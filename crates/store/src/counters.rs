//! Live counters in Redis, applied exactly once per partition offset.
//!
//! Keys are in [`crate::keys`] (with an optional prefix, empty in production so
//! dashboards read the names they already know): `votos_banda` / `votos_album`
//! (hash name → count), `leaderboard:bands` / `leaderboard:albums` (sorted
//! sets), `votes:total`, `votes:sec:<unix second>` (expires after an hour),
//! `offsets:<topic>` (hash partition → last applied offset). Nothing is kept
//! per vote: which vote ids exist is MongoDB's `_id` (see
//! [`crate::vote_log::Stored::repeats`]), so Redis memory does not grow with
//! the number of votes.

use std::collections::HashMap;

use crate::reconnecting::Reconnecting;
use redis::Script;

use crate::keys::{self, Board};
use crate::{PartitionBatch, Totals};

static APPLY_LUA: &str = include_str!("apply.lua");

/// Announce a batch about to be written (MongoDB, then the apply script),
/// unless a rebuild holds the marker. KEYS: rebuilding, applying:<applier>.
/// ARGV: ttl ms. Returns 1 when announced, 0 when a rebuild runs.
static BEGIN_APPLY_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
";

/// Replace the counters and offsets, only for the rebuild that holds the
/// marker, and drop the marker, atomically. KEYS: rebuilding, bands, albums,
/// bands board, albums board, total, legacy seen votes, offsets. ARGV: token,
/// total, n bands, (band, count) × n, n albums, (album, count) × n, n
/// offsets, (partition, offset) × n, prefix, then per contest: id, total,
/// n bands, (band, count) × n, n statuses, (status, count) × n, n voters,
/// (voter, count) × n, n choices, (voter, choice) × n.
static REPLACE_ALL_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('NOTOWNER the rebuild marker is not held by this rebuild (expired, or another rebuild took it)')
end
for k = 2, 8 do redis.call('DEL', KEYS[k]) end
redis.call('SET', KEYS[6], ARGV[2])
local i = 3
for _, board in ipairs({{KEYS[2], KEYS[4]}, {KEYS[3], KEYS[5]}}) do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('HSET', board[1], ARGV[i], ARGV[i + 1])
    redis.call('ZADD', board[2], ARGV[i + 1], ARGV[i])
    i = i + 2
  end
end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[8], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local p = ARGV[i]
i = i + 1
while i <= #ARGV do
  local c = p .. 'contest:' .. ARGV[i] .. ':'
  for _, k in ipairs({'bands', 'board', 'total', 'status', 'voters', 'choice'}) do redis.call('DEL', c .. k) end
  redis.call('SET', c .. 'total', ARGV[i + 1])
  i = i + 2
  for _, h in ipairs({'bands', 'status', 'voters', 'choice'}) do
    local m = tonumber(ARGV[i])
    i = i + 1
    for _ = 1, m do
      redis.call('HSET', c .. h, ARGV[i], ARGV[i + 1])
      if h == 'bands' then redis.call('ZADD', c .. 'board', ARGV[i + 1], ARGV[i]) end
      i = i + 2
    end
  end
end
redis.call('DEL', KEYS[1])
return 1
";

/// One contest's counters as a rebuild computes them from the vote log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContestCounts {
    pub total: u64,
    pub by_band: HashMap<String, u64>,
    pub by_status: HashMap<String, u64>,
    /// Counted votes per voter (the cap's state).
    pub by_voter: HashMap<String, u64>,
    /// Each voter's counted vote (`revote = replace` contests only).
    pub choice: HashMap<String, Choice>,
}

/// Move a partition's applied offset forward to `ARGV[2]`, never back.
/// KEYS: offsets. ARGV: partition, offset.
static SKIP_LOST_LUA: &str = "local a = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1') \
     if tonumber(ARGV[2]) > a then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end return 1";

/// Drop the rebuild marker if this rebuild holds it. KEYS: rebuilding. ARGV: token.
static END_REBUILD_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Why the apply script refused a batch (its error replies `NOSTATE` / `GAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Redis has no applied offsets while the vote log has votes: rebuild.
    CountersLost,
    /// The batch starts past the partition's applied offset + 1: read again from `applied + 1`.
    Gap { applied: i64 },
    /// The per-voter caps were judged against an applied offset that is no
    /// longer the partition's: judge the batch again.
    Stale,
}

impl Refusal {
    /// The refusal an apply error stands for, if it is one.
    pub fn of(e: &redis::RedisError) -> Option<Self> {
        match e.code() {
            Some("NOSTATE") => Some(Self::CountersLost),
            Some("STALE") => Some(Self::Stale),
            Some("GAP") => e.detail().and_then(|d| d.split_whitespace().next()?.parse().ok()).map(|applied| Self::Gap { applied }),
            _ => None,
        }
    }
}

/// One vote as the apply script counts it: what the consumer decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally<'a> {
    pub offset: i64,
    /// The band as counted (a contest's roster spelling).
    pub band: &'a str,
    pub album: &'a str,
    pub contest: Option<&'a str>,
    pub voter: Option<&'a str>,
    /// `None`: no contest (counted as always).
    pub status: Option<bandvote_contest::VoteStatus>,
    pub vote_id: &'a str,
    /// In a `revote = replace` contest: the voter's counted vote this one replaces.
    pub replaces: Replaces<'a>,
}

/// What a counted vote of a `revote = replace` contest does to the voter's earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaces<'a> {
    /// Not a replace contest (or not counted).
    No,
    /// The voter's first counted vote.
    First,
    /// Takes back this counted vote (its counts move to the new one).
    Previous(&'a Choice),
}

/// A voter's counted vote in a `revote = replace` contest (`contest:<id>:choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub vote_id: String,
    pub band: String,
    pub album: String,
}

impl Choice {
    fn encode(&self) -> String {
        format!("{}\t{}\t{}", self.vote_id, self.band, self.album)
    }

    fn decode(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '\t');
        Some(Self { vote_id: parts.next()?.to_owned(), band: parts.next()?.to_owned(), album: parts.next()?.to_owned() })
    }
}

/// What [`Counters::voter_state`] read for one (contest, voter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoterState {
    /// Counted votes.
    pub counted: u64,
    /// The counted vote, in a `revote = replace` contest.
    pub choice: Option<Choice>,
}

/// Read a partition's applied offset and voters' counted votes and choices
/// in one script (one moment). ARGV: offsets key, partition, then (voters
/// key, choice key, voter) triples. Returns strings: the offset, '1' if the
/// topic has applied offsets at all ('0': Redis holds no state, e.g. just
/// flushed), then count and choice ('' for none) per voter.
static VOTER_STATE_LUA: &str = r"
local r = {redis.call('HGET', ARGV[1], ARGV[2]) or '-1', tostring(redis.call('EXISTS', ARGV[1]))}
for i = 3, #ARGV, 3 do
  r[#r + 1] = redis.call('HGET', ARGV[i], ARGV[i + 2]) or '0'
  r[#r + 1] = redis.call('HGET', ARGV[i + 1], ARGV[i + 2]) or ''
end
return r
";

/// What one partition batch did to the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub counted: u64,
    /// Votes skipped as repeats of a vote id stored from another record (client retries).
    pub duplicates: u64,
    /// Offsets already applied (replay after a crash or rebalance).
    pub replayed: u64,
}

/// The counters, over one multiplexed connection, replaced when it drops or
/// a command times out ([`Reconnecting`]).
#[derive(Clone)]
pub struct Counters {
    con: Reconnecting,
    prefix: String,
    script: Script,
    begin: Script,
    replace: Script,
    end_rebuild: Script,
    voter_state: Script,
    skip_lost: Script,
}

impl Counters {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        // A command that times out (the default response timeout, 500 ms)
        // drops the connection: the next one reconnects ([`Reconnecting`]).
        // Reconnection attempts back off to 500 ms at most (redis-rs's default
        // doubles up to 6.4 s: a command after a cut healed could wait that long).
        let config = redis::aio::ConnectionManagerConfig::new().set_max_delay(std::time::Duration::from_millis(500));
        let con = Reconnecting::connect(client, config).await?;
        Ok(Self {
            con,
            prefix: prefix.to_owned(),
            script: Script::new(APPLY_LUA),
            begin: Script::new(BEGIN_APPLY_LUA),
            replace: Script::new(REPLACE_ALL_LUA),
            end_rebuild: Script::new(END_REBUILD_LUA),
            voter_state: Script::new(VOTER_STATE_LUA),
            skip_lost: Script::new(SKIP_LOST_LUA),
        })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Apply one partition's batch of votes outside any contest (see
    /// [`Self::apply_judged`]): `repeats` (partition, offset) are not counted,
    /// but the offset still advances past them.
    pub async fn apply(
        &self,
        topic: &str,
        partition: i32,
        batch: &PartitionBatch,
        repeats: &std::collections::HashSet<(i32, i64)>,
        now_secs: i64,
        log_nonempty: bool,
    ) -> Result<Applied, redis::RedisError> {
        let tallies: Vec<Tally<'_>> = batch
            .votes
            .iter()
            .filter(|v| !repeats.contains(&(v.partition, v.offset)))
            .map(|v| Tally {
                offset: v.offset,
                band: &v.vote.band,
                album: &v.vote.album,
                contest: None,
                voter: None,
                status: None,
                vote_id: &v.vote.vote_id,
                replaces: Replaces::No,
            })
            .collect();
        let duplicates = (batch.votes.len() - tallies.len()) as u64;
        self.apply_judged(topic, partition, batch, &tallies, duplicates, now_secs, log_nonempty, None).await
    }

    /// Apply one partition's batch atomically (one Lua script): `tallies`
    /// are its votes minus the repeats (whose offsets still advance), as the
    /// consumer decided them; `duplicates` is how many repeats were left out.
    ///
    /// The script refuses (see [`Refusal::of`]) a batch it cannot count
    /// without losing votes: Redis has no applied offsets while
    /// `log_nonempty` (the vote log held votes before this batch), or the
    /// batch starts past the partition's applied offset + 1; and, with
    /// `judged_at` (the applied offset the per-voter caps were judged
    /// against, [`Self::voter_state`]), a partition that moved since.
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_judged(
        &self,
        topic: &str,
        partition: i32,
        batch: &PartitionBatch,
        tallies: &[Tally<'_>],
        duplicates: u64,
        now_secs: i64,
        log_nonempty: bool,
        judged_at: Option<i64>,
    ) -> Result<Applied, redis::RedisError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(&self.prefix).arg(topic).arg(partition).arg(batch.last_offset).arg(now_secs);
        inv.arg(batch.first_offset).arg(if log_nonempty { "1" } else { "0" });
        inv.arg(judged_at.map(|a| a.to_string()).unwrap_or_default());
        for t in tallies {
            inv.arg(t.offset).arg(t.band).arg(t.album).arg(t.contest.unwrap_or("")).arg(t.voter.unwrap_or(""));
            inv.arg(t.status.map(|s| s.as_str()).unwrap_or("")).arg(t.vote_id);
            match t.replaces {
                Replaces::No => inv.arg(""),
                Replaces::First => inv.arg("-"),
                Replaces::Previous(c) => inv.arg(c.encode()),
            };
        }
        let mut con = self.con.clone();
        let (counted, replayed): (u64, u64) = inv.invoke_async(&mut con).await?;
        Ok(Applied { counted, duplicates, replayed })
    }

    /// The partition's applied offset (-1: none) and, at the same moment,
    /// each `(contest, voter)`'s counted votes and choice: what a batch's
    /// per-voter caps are judged against (pass the offset to
    /// [`Self::apply_judged`] as `judged_at`). `None` when the topic has no
    /// applied offsets at all (a Redis that holds no state: every voter would
    /// read as 0; the caller refuses the batch if the log is not empty).
    pub async fn voter_state(&self, topic: &str, partition: i32, voters: &[(&str, &str)]) -> Result<Option<(i64, Vec<VoterState>)>, redis::RedisError> {
        let mut inv = self.voter_state.prepare_invoke();
        inv.arg(self.offsets_key(topic)).arg(partition);
        for (contest, voter) in voters {
            inv.arg(self.key(&keys::contest(contest, keys::CONTEST_VOTERS)));
            inv.arg(self.key(&keys::contest(contest, keys::CONTEST_CHOICE))).arg(*voter);
        }
        let mut con = self.con.clone();
        let r: Vec<String> = inv.invoke_async(&mut con).await?;
        let applied = r.first().and_then(|s| s.parse().ok()).unwrap_or(-1);
        if r.get(1).map(String::as_str) != Some("1") {
            return Ok(None);
        }
        let state = r[2.min(r.len())..]
            .chunks(2)
            .map(|c| VoterState {
                counted: c.first().and_then(|n| n.parse::<i64>().ok()).unwrap_or(0).max(0) as u64,
                choice: c.get(1).and_then(|s| Choice::decode(s)),
            })
            .collect();
        Ok(Some((applied, state)))
    }

    /// Records up to `offset` of `partition` are gone from Kafka (retention)
    /// and were never counted here: let the apply script go on after them.
    /// Never moves the applied offset back.
    pub async fn skip_lost(&self, topic: &str, partition: i32, offset: i64) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        self.skip_lost.key(self.offsets_key(topic)).arg(partition).arg(offset).invoke_async::<i64>(&mut con).await.map(drop)
    }

    /// The hash of last applied offsets per partition for `topic`.
    pub fn offsets_key(&self, topic: &str) -> String {
        self.key(&keys::offsets(topic))
    }

    /// Last applied offset per partition for `topic`.
    pub async fn applied_offsets(&self, topic: &str) -> Result<HashMap<i32, i64>, redis::RedisError> {
        let mut con = self.con.clone();
        redis::cmd("HGETALL").arg(self.offsets_key(topic)).query_async(&mut con).await
    }

    /// The running total only (what the live page shows; no hash read).
    pub async fn total(&self) -> Result<u64, redis::RedisError> {
        let mut con = self.con.clone();
        let total: Option<u64> = redis::cmd("GET").arg(self.key(keys::TOTAL)).query_async(&mut con).await?;
        Ok(total.unwrap_or(0))
    }

    pub async fn totals(&self) -> Result<Totals, redis::RedisError> {
        let mut con = self.con.clone();
        let (total, by_band, by_album): (Option<u64>, HashMap<String, u64>, HashMap<String, u64>) = redis::pipe()
            .get(self.key(keys::TOTAL))
            .hgetall(self.key(keys::BANDS))
            .hgetall(self.key(keys::ALBUMS))
            .query_async(&mut con)
            .await?;
        Ok(Totals { total: total.unwrap_or(0), by_band, by_album })
    }

    /// Announce that `applier` is about to write a batch (the fence a rebuild
    /// waits on); `false` while a rebuild runs. The announcement expires after
    /// `ttl` if the applier dies. Pair with [`Self::end_apply`].
    pub async fn begin_apply(&self, applier: &str, ttl: std::time::Duration) -> Result<bool, redis::RedisError> {
        let mut con = self.con.clone();
        let ok: i64 = self
            .begin
            .key(self.key(keys::REBUILDING))
            .key(self.key(&format!("{}{applier}", keys::APPLYING)))
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut con)
            .await?;
        Ok(ok == 1)
    }

    /// The batch announced by [`Self::begin_apply`] is written (or failed).
    pub async fn end_apply(&self, applier: &str) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        redis::cmd("DEL").arg(self.key(&format!("{}{applier}", keys::APPLYING))).query_async(&mut con).await
    }

    /// Appliers that announced a batch and have not finished it.
    pub async fn appliers_writing(&self) -> Result<usize, redis::RedisError> {
        let mut con = self.con.clone();
        // SCAN, not KEYS: KEYS blocks the server and is outside the consumer's ACL (@dangerous).
        let pattern = self.key(&format!("{}*", keys::APPLYING));
        let (mut cursor, mut found) = (0u64, 0usize);
        loop {
            let (next, batch): (u64, Vec<String>) =
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(&mut con).await?;
            found += batch.len();
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Take the rebuild marker (`rebuilding`, expiring after `ttl`): while it
    /// exists the apply script refuses every batch, so no consumer writes
    /// between the rebuild's reads of MongoDB and its MULTI. `false` when
    /// another rebuild holds it.
    pub async fn begin_rebuild(&self, token: &str, ttl: std::time::Duration) -> Result<bool, redis::RedisError> {
        let mut con = self.con.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(keys::REBUILDING))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut con)
            .await?;
        Ok(set.is_some())
    }

    /// Drop the rebuild marker if `token` holds it (after a failed rebuild;
    /// [`Self::replace_all`] drops it itself). Never drops another rebuild's.
    pub async fn end_rebuild(&self, token: &str) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        self.end_rebuild.key(self.key(keys::REBUILDING)).arg(token).invoke_async::<i64>(&mut con).await.map(drop)
    }

    /// Replace every counter with `totals` and the offsets with `offsets`
    /// (rebuild after Redis lost its data) and drop the rebuild marker, in one
    /// script, only while `token` holds the marker ([`Self::begin_rebuild`]):
    /// a rebuild whose marker expired and was taken by another is refused
    /// (`NOTOWNER`) instead of overwriting that one's work and dropping its marker.
    pub async fn replace_all(
        &self,
        token: &str,
        topic: &str,
        totals: &Totals,
        offsets: &HashMap<i32, i64>,
        contests: &HashMap<String, ContestCounts>,
    ) -> Result<(), redis::RedisError> {
        let mut inv = self.replace.prepare_invoke();
        inv.key(self.key(keys::REBUILDING));
        for k in [keys::BANDS, keys::ALBUMS, keys::BANDS_BOARD, keys::ALBUMS_BOARD, keys::TOTAL, keys::LEGACY_SEEN_VOTES] {
            inv.key(self.key(k));
        }
        inv.key(self.offsets_key(topic));
        inv.arg(token).arg(totals.total);
        for counts in [&totals.by_band, &totals.by_album] {
            inv.arg(counts.len());
            for (name, n) in counts {
                inv.arg(name).arg(n);
            }
        }
        inv.arg(offsets.len());
        for (p, o) in offsets {
            inv.arg(p).arg(o);
        }
        inv.arg(&self.prefix);
        for (id, c) in contests {
            inv.arg(id).arg(c.total);
            for counts in [&c.by_band, &c.by_status, &c.by_voter] {
                inv.arg(counts.len());
                for (name, n) in counts {
                    inv.arg(name).arg(n);
                }
            }
            inv.arg(c.choice.len());
            for (voter, choice) in &c.choice {
                inv.arg(voter).arg(choice.encode());
            }
        }
        let mut con = self.con.clone();
        inv.invoke_async::<i64>(&mut con).await.map(drop)
    }

    /// True when Redis holds no counters and no applied offsets for `topic` (fresh or lost its data).
    pub async fn is_empty(&self, topic: &str) -> Result<bool, redis::RedisError> {
        let mut con = self.con.clone();
        let exists: u64 =
            redis::cmd("EXISTS").arg(self.key(keys::TOTAL)).arg(self.offsets_key(topic)).query_async(&mut con).await?;
        Ok(exists == 0)
    }

    /// The leaderboards (sorted sets) as totals: what the dashboards show, to
    /// be compared with the hashes and the log.
    pub async fn leaderboard_totals(&self) -> Result<Totals, redis::RedisError> {
        let mut con = self.con.clone();
        let (bands, albums): (Vec<(String, f64)>, Vec<(String, f64)>) = redis::pipe()
            .cmd("ZRANGE")
            .arg(self.key(keys::BANDS_BOARD))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .cmd("ZRANGE")
            .arg(self.key(keys::ALBUMS_BOARD))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await?;
        let as_map = |rows: Vec<(String, f64)>| rows.into_iter().map(|(k, v)| (k, v as u64)).collect::<HashMap<_, _>>();
        let by_band = as_map(bands);
        Ok(Totals { total: by_band.values().sum(), by_band, by_album: as_map(albums) })
    }

    /// Votes counted for one band (0 when none).
    pub async fn band_total(&self, band: &str) -> Result<u64, redis::RedisError> {
        let mut con = self.con.clone();
        let n: Option<u64> = redis::cmd("HGET").arg(self.key(keys::BANDS)).arg(band).query_async(&mut con).await?;
        Ok(n.unwrap_or(0))
    }

    /// The `n` highest entries of a leaderboard, highest first.
    pub async fn top(&self, board: Board, n: isize) -> Result<Vec<(String, u64)>, redis::RedisError> {
        let mut con = self.con.clone();
        let rows: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
            .arg(self.key(board.key()))
            .arg(0)
            .arg(n - 1)
            .arg("WITHSCORES")
            .query_async(&mut con)
            .await?;
        Ok(rows.into_iter().map(|(k, v)| (k, v as u64)).collect())
    }

    /// Votes counted in each of the last `seconds` seconds before `now_secs`, oldest first.
    pub async fn per_second(&self, now_secs: i64, seconds: i64) -> Result<Vec<(i64, u64)>, redis::RedisError> {
        let secs: Vec<i64> = (now_secs - seconds + 1..=now_secs).collect();
        let names: Vec<String> = secs.iter().map(|s| self.key(&format!("{}{s}", keys::PER_SECOND))).collect();
        let mut con = self.con.clone();
        let vals: Vec<Option<u64>> = redis::cmd("MGET").arg(&names).query_async(&mut con).await?;
        Ok(secs.into_iter().zip(vals).map(|(s, v)| (s, v.unwrap_or(0))).collect())
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        redis::cmd("PING").query_async::<()>(&mut con).await
    }
}

/// Last applied offsets (`key` = [`Counters::offsets_key`]) read without an
/// async runtime: for librdkafka's rebalance callback.
pub fn applied_offsets_blocking(client: &redis::Client, key: &str, timeout: std::time::Duration) -> Result<HashMap<i32, i64>, redis::RedisError> {
    let mut con = client.get_connection_with_timeout(timeout)?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    redis::cmd("HGETALL").arg(key).query(&mut con)
}
