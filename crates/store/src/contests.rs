//! Contests in Redis: their definitions, which one is current, and their
//! live tallies. Written by the operator's `bandvote-consumer contest …`,
//! read by every intake (through [`ContestWatch`]), the consumer and the web
//! app. Keys: [`keys::CONTEST_CURRENT`], [`keys::CONTEST_DEF`]`<id>` (JSON),
//! and the per-contest counters `contest:<id>:…` that `apply.lua` writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bandvote_contest::{Contest, VoteStatus};
use redis::aio::ConnectionManager;

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
    con: ConnectionManager,
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

    /// The current contest's id.
    pub async fn current_id(&self) -> Result<Option<String>, ContestStoreError> {
        let mut con = self.con.clone();
        Ok(redis::cmd("GET").arg(self.key(keys::CONTEST_CURRENT)).query_async(&mut con).await?)
    }

    /// The current contest.
    pub async fn current(&self) -> Result<Option<Contest>, ContestStoreError> {
        match self.current_id().await? {
            Some(id) => self.get(&id).await,
            None => Ok(None),
        }
    }

    /// Make `id` the current contest (`None`: no contest, votes count as without one).
    pub async fn set_current(&self, id: Option<&str>) -> Result<(), ContestStoreError> {
        let mut con = self.con.clone();
        match id {
            Some(id) => redis::cmd("SET").arg(self.key(keys::CONTEST_CURRENT)).arg(id).query_async::<()>(&mut con).await?,
            None => redis::cmd("DEL").arg(self.key(keys::CONTEST_CURRENT)).query_async::<()>(&mut con).await?,
        }
        Ok(())
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
    /// own (a change is seen within that; an unreachable Redis keeps the last
    /// contest seen). Call inside a Tokio runtime.
    pub fn watch(self, every: Duration) -> ContestWatch {
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match self.current().await {
                    Ok(c) => {
                        tx.send_if_modified(|old| {
                            let changed = old.as_deref() != c.as_ref();
                            if changed {
                                tracing::info!(contest = ?c.as_ref().map(|c| &c.id), "current contest changed");
                                *old = c.map(Arc::new);
                            }
                            changed
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "current contest not read (keeping the last one seen)"),
                }
                if tx.is_closed() {
                    return;
                }
            }
        });
        ContestWatch(rx)
    }
}

/// The current contest as last read ([`ContestStore::watch`]); cheap to clone and read.
#[derive(Clone)]
pub struct ContestWatch(tokio::sync::watch::Receiver<Option<Arc<Contest>>>);

impl ContestWatch {
    /// A watch that always says `contest` (tests, fixed deployments).
    pub fn fixed(contest: Option<Contest>) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(contest.map(Arc::new));
        std::mem::forget(tx);
        Self(rx)
    }

    pub fn current(&self) -> Option<Arc<Contest>> {
        self.0.borrow().clone()
    }
}

/// Parse a stored status (`None` for a vote outside any contest).
pub fn status_of(s: Option<&str>) -> Option<VoteStatus> {
    s.and_then(VoteStatus::parse)
}
