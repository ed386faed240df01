//! Contests in Redis: their definitions, which one is current, and their
//! live tallies. Written by the operator's `bandvote-consumer contest …`,
//! read by every intake (through [`ContestWatch`]), the consumer and the web
//! app. Keys: [`keys::CONTEST_CURRENT`], [`keys::CONTEST_DEF`]`<id>` (JSON),
//! and the per-contest counters `contest:<id>:…` that `apply.lua` writes.
//! Redis is a cache of these: MongoDB holds the durable record (the
//! consumer's vote log database), and the consumer restores what Redis lost
//! ([`ContestStore::reconcile`]: what it lost, and what is older than the
//! record); until then the intakes see
//! [`Current::Unknown`] and refuse with 503, never "no contest".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bandvote_contest::{Contest, VoteStatus};
use crate::reconnecting::Reconnecting;

use crate::intake_redis::fail_fast_connection;
use crate::keys;

/// Why a contest could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ContestStoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored contest {id:?} is not a valid definition: {error}")]
    Corrupt { id: String, error: String },
}

/// A contest's live tally (what `apply.lua` counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContestTally {
    /// Counted votes.
    pub total: u64,
    pub by_band: HashMap<String, u64>,
    /// Votes by status (counted included).
    pub by_status: HashMap<String, u64>,
    /// Voters with at least one counted vote.
    pub voters: u64,
}

/// The contests, over one auto-reconnecting connection.
#[derive(Clone)]
pub struct ContestStore {
    con: Reconnecting,
    prefix: String,
}

impl ContestStore {
    /// Connected on first use; a call gives up after 500 ms.
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self { con: fail_fast_connection(url)?, prefix: prefix.to_owned() })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The definition of contest `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Contest>, ContestStoreError> {
        let mut con = self.con.clone();
        let json: Option<String> = redis::cmd("GET").arg(self.key(&format!("{}{id}", keys::CONTEST_DEF))).query_async(&mut con).await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| ContestStoreError::Corrupt { id: id.to_owned(), error: e.to_string() })).transpose()
    }

    /// Write (create or change) a definition.
    pub async fn put(&self, contest: &Contest) -> Result<(), ContestStoreError> {
        let mut con = self.con.clone();
        let json = serde_json::to_string(contest).expect("a contest serialises");
        redis::cmd("SET").arg(self.key(&format!("{}{}", keys::CONTEST_DEF, contest.id))).arg(json).query_async::<()>(&mut con).await?;
        Ok(())
    }

    /// The current contest's id (`None`: no contest, or not known).
    pub async fn current_id(&self) -> Result<Option<String>, ContestStoreError> {
        let mut con = self.con.clone();
        let id: Option<String> = redis::cmd("GET").arg(self.key(keys::CONTEST_CURRENT)).query_async(&mut con).await?;
        Ok(id.filter(|id| !id.is_empty()))
    }

    /// The current contest as the intakes must take it: no contest, a
    /// contest, or [`Current::Unknown`] when Redis has no record of it (the
    /// marker or the definition is missing: a flush, a restore, a failover).
    pub async fn current_state(&self) -> Result<Current, ContestStoreError> {
        let mut con = self.con.clone();
        let id: Option<String> = redis::cmd("GET").arg(self.key(keys::CONTEST_CURRENT)).query_async(&mut con).await?;
        Ok(match id.as_deref() {
            None => Current::Unknown,
            Some("") => Current::NoContest,
            Some(id) => match self.get(id).await? {
                Some(c) => Current::Contest(Arc::new(c)),
                None => Current::Unknown,
            },
        })
    }

    /// The current contest (`None`: no contest, or not known).
    pub async fn current(&self) -> Result<Option<Contest>, ContestStoreError> {
        Ok(match self.current_state().await? {
            Current::Contest(c) => Some(Arc::unwrap_or_clone(c)),
            Current::NoContest | Current::Unknown => None,
        })
    }

    /// Make `id` the current contest (`None`: no contest, votes count as
    /// without one; stored as the empty string, so "no contest" is a record,
    /// not the absence of one).
    pub async fn set_current(&self, id: Option<&str>) -> Result<(), ContestStoreError> {
        let mut con = self.con.clone();
        redis::cmd("SET").arg(self.key(keys::CONTEST_CURRENT)).arg(id.unwrap_or("")).query_async::<()>(&mut con).await?;
        Ok(())
    }

    /// What Redis says the current contest is, as stored: read *before* the
    /// durable record, so [`ContestStore::reconcile`] can tell a value an
    /// operator wrote since (leave it) from a stale one (replace it).
    pub async fn snapshot(&self) -> Result<Snapshot, ContestStoreError> {
        let mut con = self.con.clone();
        let marker: Option<String> = redis::cmd("GET").arg(self.key(keys::CONTEST_CURRENT)).query_async(&mut con).await?;
        let def = match marker.as_deref() {
            Some(id) if !id.is_empty() => redis::cmd("GET").arg(self.def_key(id)).query_async(&mut con).await?,
            _ => None,
        };
        Ok(Snapshot { marker, def })
    }

    fn def_key(&self, id: &str) -> String {
        self.key(&format!("{}{id}", keys::CONTEST_DEF))
    }

    /// Make Redis say what the durable record (MongoDB) says is current:
    /// `recorded`'s marker and definition, or "no contest". Redis may have
    /// lost them (a flush) or hold older ones (a restore from an older
    /// snapshot, a failover to a lagging replica): both are replaced. Each
    /// value is only replaced if it is still what `seen` read (taken before
    /// the record was read), so an operator's write made meanwhile (record
    /// first, then Redis) is never undone. `true` if anything was written.
    pub async fn reconcile(&self, seen: &Snapshot, recorded: Option<&Contest>) -> Result<bool, ContestStoreError> {
        let want_marker = recorded.map_or("", |c| c.id.as_str());
        let marker_ok = seen.marker.as_deref() == Some(want_marker);
        let def_ok = match recorded {
            None => true,
            // The definition Redis holds for the recorded id, compared as a
            // value (JSON field order may differ between versions).
            Some(c) if marker_ok => seen.def.as_deref().and_then(|j| serde_json::from_str::<Contest>(j).ok()).as_ref() == Some(c),
            Some(_) => false,
        };
        if marker_ok && def_ok {
            return Ok(false);
        }
        let mut con = self.con.clone();
        let mut invocation = RECONCILE.key(self.key(keys::CONTEST_CURRENT));
        invocation.arg(u8::from(seen.marker.is_none())).arg(seen.marker.as_deref().unwrap_or("")).arg(want_marker);
        if let Some(c) = recorded {
            // The definition as read before the record when the marker named
            // this id; otherwise it was not read then, so it is read now (an
            // operator changing this very definition in between is undone
            // until the next round, which reads the record again).
            let seen_def = if marker_ok { seen.def.clone() } else { redis::cmd("GET").arg(self.def_key(&c.id)).query_async(&mut con).await? };
            invocation
                .key(self.def_key(&c.id))
                .arg(u8::from(seen_def.is_none()))
                .arg(seen_def.unwrap_or_default())
                .arg(serde_json::to_string(c).expect("a contest serialises"));
        }
        let wrote: i64 = invocation.invoke_async(&mut con).await?;
        Ok(wrote == 1)
    }

    /// What `apply.lua` counted for contest `id`.
    pub async fn tally(&self, id: &str) -> Result<ContestTally, ContestStoreError> {
        let mut con = self.con.clone();
        let k = |name| self.key(&keys::contest(id, name));
        let (total, by_band, by_status, voters): (Option<u64>, HashMap<String, u64>, HashMap<String, u64>, u64) = redis::pipe()
            .get(k(keys::CONTEST_TOTAL))
            .hgetall(k(keys::CONTEST_BANDS))
            .hgetall(k(keys::CONTEST_STATUS))
            .hlen(k(keys::CONTEST_VOTERS))
            .query_async(&mut con)
            .await?;
        Ok(ContestTally { total: total.unwrap_or(0), by_band, by_status, voters })
    }

    /// A watch on the current contest, polled every `every` by a task of its
    /// own (a change is seen within that). It starts [`Current::Unknown`]; an
    /// unreachable Redis keeps the last state seen for `stale_after`, then
    /// turns it `Unknown` too. Call inside a Tokio runtime.
    pub fn watch(self, every: Duration, stale_after: Duration) -> ContestWatch {
        let (tx, rx) = tokio::sync::watch::channel(Current::Unknown);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_read = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let next = match self.current_state().await {
                    Ok(c) => {
                        last_read = tokio::time::Instant::now();
                        Some(c)
                    }
                    Err(e) if last_read.elapsed() >= stale_after => {
                        tracing::warn!(error = %e, "current contest not read for {} ms: not known", stale_after.as_millis());
                        Some(Current::Unknown)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "current contest not read (keeping the last one seen)");
                        None
                    }
                };
                if let Some(next) = next {
                    tx.send_if_modified(|old| {
                        let changed = *old != next;
                        if changed {
                            tracing::info!(contest = %next, "current contest changed");
                            *old = next;
                        }
                        changed
                    });
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        ContestWatch(rx)
    }
}

/// Replace each of the current contest's keys with the recorded value
/// unless it changed since it was read: `KEYS[1]` the marker (`ARGV[1]` 1 if
/// it was absent, `ARGV[2]` its value as read, `ARGV[3]` the recorded one),
/// `KEYS[2]` if given the definition (`ARGV[4..6]` the same). 1 if written,
/// 0 if nothing needed it, -1 if a value changed since it was read (the
/// next round reads again).
static RECONCILE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local function unchanged(key, absent, value)
  local now = redis.call('GET', key)
  if now == false then return absent == '1' end
  return absent == '0' and now == value
end
if not unchanged(KEYS[1], ARGV[1], ARGV[2]) then return -1 end
if KEYS[2] and not unchanged(KEYS[2], ARGV[4], ARGV[5]) then return -1 end
local wrote = 0
if KEYS[2] and (ARGV[4] == '1' or ARGV[5] ~= ARGV[6]) then
  redis.call('SET', KEYS[2], ARGV[6])
  wrote = 1
end
if ARGV[1] == '1' or ARGV[2] ~= ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[3])
  wrote = 1
end
return wrote
",
    )
});

/// Redis's current contest as stored ([`ContestStore::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `contest:current` (`None`: absent).
    pub marker: Option<String>,
    /// The definition of the contest it names, as stored (JSON).
    pub def: Option<String>,
}

/// The current contest as an intake must take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Current {
    /// Not known (never read, Redis unreachable too long, or Redis lost the
    /// record): intakes refuse every vote with 503 until it is known.
    Unknown,
    /// No contest: votes count as without one.
    NoContest,
    /// This contest's rules apply.
    Contest(Arc<Contest>),
}

impl std::fmt::Display for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Current::Unknown => f.write_str("(not known)"),
            Current::NoContest => f.write_str("(none)"),
            Current::Contest(c) => f.write_str(&c.id),
        }
    }
}

/// The current contest as last read ([`ContestStore::watch`]); cheap to clone and read.
#[derive(Clone)]
pub struct ContestWatch(tokio::sync::watch::Receiver<Current>);

impl ContestWatch {
    /// A watch that always says `current` (tests, fixed deployments).
    pub fn fixed(current: Current) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(current);
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn current(&self) -> Current {
        self.0.borrow().clone()
    }
}

/// Parse a stored status (`None` for a vote outside any contest).
pub fn status_of(s: Option<&str>) -> Option<VoteStatus> {
    s.and_then(VoteStatus::parse)
}
