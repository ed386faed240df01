//! Live counters in Redis, applied exactly once per partition offset and per vote id.
//!
//! Keys (with an optional prefix, empty in production so dashboards read the
//! names they already know):
//! `votos_banda` / `votos_album` (hash name → count), `leaderboard:bands` /
//! `leaderboard:albums` (sorted sets), `votes:total`, `votes:sec:<unix second>`
//! (expires after an hour), `offsets:<topic>` (hash partition → last applied
//! offset), `seen_votes` (set of counted vote ids).

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::batch::PartitionBatch;

static APPLY_LUA: &str = include_str!("apply.lua");

/// What one partition batch did to the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub counted: u64,
    /// Vote ids already counted (client retries).
    pub duplicates: u64,
    /// Offsets already applied (replay after a crash or rebalance).
    pub replayed: u64,
}

/// The counters, over one multiplexed, auto-reconnecting connection.
#[derive(Clone)]
pub struct Counters {
    con: ConnectionManager,
    prefix: String,
    script: Script,
}

/// A snapshot of the totals (for the recount and the demo summary).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub total: u64,
    pub by_band: HashMap<String, u64>,
    pub by_album: HashMap<String, u64>,
}

impl Counters {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let con = ConnectionManager::new(client).await?;
        Ok(Self { con, prefix: prefix.to_owned(), script: Script::new(APPLY_LUA) })
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Apply one partition's batch atomically (one Lua script).
    pub async fn apply(&self, topic: &str, partition: i32, batch: &PartitionBatch, now_secs: i64) -> Result<Applied, redis::RedisError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(&self.prefix).arg(topic).arg(partition).arg(batch.last_offset).arg(now_secs);
        for v in &batch.votes {
            inv.arg(v.offset).arg(&v.vote.vote_id).arg(&v.vote.band).arg(&v.vote.album);
        }
        let mut con = self.con.clone();
        let (counted, duplicates, replayed): (u64, u64, u64) = inv.invoke_async(&mut con).await?;
        Ok(Applied { counted, duplicates, replayed })
    }

    /// Last applied offset per partition for `topic`.
    pub async fn applied_offsets(&self, topic: &str) -> Result<HashMap<i32, i64>, redis::RedisError> {
        let mut con = self.con.clone();
        redis::cmd("HGETALL").arg(self.key(&format!("offsets:{topic}"))).query_async(&mut con).await
    }

    pub async fn totals(&self) -> Result<Totals, redis::RedisError> {
        let mut con = self.con.clone();
        let (total, by_band, by_album): (Option<u64>, HashMap<String, u64>, HashMap<String, u64>) = redis::pipe()
            .get(self.key("votes:total"))
            .hgetall(self.key("votos_banda"))
            .hgetall(self.key("votos_album"))
            .query_async(&mut con)
            .await?;
        Ok(Totals { total: total.unwrap_or(0), by_band, by_album })
    }

    /// Replace every counter with `totals`, the seen-set with `seen` and the
    /// offsets with `offsets` (rebuild after Redis lost its data), in one MULTI.
    pub async fn replace_all(
        &self,
        topic: &str,
        totals: &Totals,
        seen: &[String],
        offsets: &HashMap<i32, i64>,
    ) -> Result<(), redis::RedisError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for k in ["votos_banda", "votos_album", "leaderboard:bands", "leaderboard:albums", "votes:total", "seen_votes"] {
            pipe.del(self.key(k)).ignore();
        }
        pipe.del(self.key(&format!("offsets:{topic}"))).ignore();
        pipe.set(self.key("votes:total"), totals.total).ignore();
        for (band, n) in &totals.by_band {
            pipe.hset(self.key("votos_banda"), band, n).ignore();
            pipe.zadd(self.key("leaderboard:bands"), band, n).ignore();
        }
        for (album, n) in &totals.by_album {
            pipe.hset(self.key("votos_album"), album, n).ignore();
            pipe.zadd(self.key("leaderboard:albums"), album, n).ignore();
        }
        for chunk in seen.chunks(1000) {
            pipe.sadd(self.key("seen_votes"), chunk).ignore();
        }
        for (p, o) in offsets {
            pipe.hset(self.key(&format!("offsets:{topic}")), p, o).ignore();
        }
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con).await
    }

    /// True when Redis holds no counters at all (fresh or lost its data).
    pub async fn is_empty(&self) -> Result<bool, redis::RedisError> {
        let mut con = self.con.clone();
        let exists: u64 = redis::cmd("EXISTS").arg(self.key("votes:total")).arg(self.key("seen_votes")).query_async(&mut con).await?;
        Ok(exists == 0)
    }

    /// The `n` highest entries of a leaderboard (`bands` or `albums`), highest first.
    pub async fn top(&self, board: &str, n: isize) -> Result<Vec<(String, u64)>, redis::RedisError> {
        let mut con = self.con.clone();
        let rows: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
            .arg(self.key(&format!("leaderboard:{board}")))
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
        let keys: Vec<String> = secs.iter().map(|s| self.key(&format!("votes:sec:{s}"))).collect();
        let mut con = self.con.clone();
        let vals: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut con).await?;
        Ok(secs.into_iter().zip(vals).map(|(s, v)| (s, v.unwrap_or(0))).collect())
    }

    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut con = self.con.clone();
        redis::cmd("PING").query_async::<()>(&mut con).await
    }
}
