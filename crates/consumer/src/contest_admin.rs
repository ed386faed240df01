//! The operator's contest commands (`bandvote-consumer contest …`): create
//! a contest and make it current, open or close it now, show it, archive it,
//! issue voter tokens. Every intake and the consumer read the change from
//! Redis within a second (`--contest-poll-ms`); nothing restarts.

use bandvote_contest::{Contest, DefinitionError};
use bandvote_store::contests::ContestStoreError;
use bandvote_store::{ContestStore, VoteLog};

/// Why a contest command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Store(#[from] ContestStoreError),
    #[error("no contest {0:?}")]
    NoContest(String),
    #[error("no current contest: name one with --id")]
    NoCurrent,
    #[error("mongodb: {0}")]
    Log(String),
    #[error("voter tokens need a secret (--contest-secret / BANDVOTE_CONTEST_SECRET)")]
    NoSecret,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Where contests live: Redis (what the intakes and the consumer read) and
/// the vote log's database (the durable copy the consumer falls back on
/// when Redis lost it).
pub struct ContestAdmin {
    pub store: ContestStore,
    pub log: VoteLog,
}

impl ContestAdmin {
    async fn put(&self, c: &Contest) -> Result<(), AdminError> {
        self.log.save_contest(c).await.map_err(|e| AdminError::Log(e.to_string()))?;
        self.store.put(c).await?;
        Ok(())
    }

    /// Validate `contest`, store it and make it the current contest.
    pub async fn create(&self, contest: Contest) -> Result<Contest, AdminError> {
        let contest = contest.validated()?;
        self.put(&contest).await?;
        self.store.set_current(Some(&contest.id)).await?;
        Ok(contest)
    }

    /// Contest `id` (from Redis, else the durable copy), or the current one.
    pub async fn find(&self, id: Option<&str>) -> Result<Contest, AdminError> {
        let id = match id {
            Some(id) => id.to_owned(),
            None => self.store.current_id().await?.ok_or(AdminError::NoCurrent)?,
        };
        match self.store.get(&id).await? {
            Some(c) => Ok(c),
            None => self.log.contest(&id).await.map_err(|e| AdminError::Log(e.to_string()))?.ok_or(AdminError::NoContest(id)),
        }
    }

    /// Open voting now (if it opens later) and keep the close after it.
    pub async fn open_now(&self, id: Option<&str>) -> Result<Contest, AdminError> {
        let mut c = self.find(id).await?;
        let now = now_ms();
        c.opens_at_ms = c.opens_at_ms.min(now);
        if c.closes_at_ms <= now {
            c.closes_at_ms = now + 3_600_000;
        }
        self.put(&c).await?;
        Ok(c)
    }

    /// Close voting `in_ms` from now: a vote received from then on is late
    /// (the intakes answer 403, the consumer stores it as `late`); votes
    /// received before count however late they are applied. Give `in_ms` at
    /// least the intakes' poll interval, so every intake knows the closing
    /// time before it comes and none acknowledges a vote the consumer will
    /// find late.
    pub async fn close_in(&self, id: Option<&str>, in_ms: i64) -> Result<Contest, AdminError> {
        let mut c = self.find(id).await?;
        let at = now_ms() + in_ms.max(0);
        c.closes_at_ms = c.closes_at_ms.min(at);
        c.opens_at_ms = c.opens_at_ms.min(c.closes_at_ms - 1);
        self.put(&c).await?;
        Ok(c)
    }

    /// No current contest: votes count as without one (its results stay).
    pub async fn archive(&self) -> Result<(), AdminError> {
        self.store.set_current(None).await?;
        Ok(())
    }
}

/// `count` voter tokens for contest `c` (voters `<prefix>-0001`, …), valid for `valid_secs`.
pub fn tokens(c: &Contest, secret: Option<&str>, prefix: &str, count: u32, valid_secs: i64) -> Result<Vec<String>, AdminError> {
    let secret = secret.filter(|s| !s.is_empty()).ok_or(AdminError::NoSecret)?;
    let expires = now_ms() / 1000 + valid_secs;
    Ok((1..=count).filter_map(|i| bandvote_contest::token::issue(secret.as_bytes(), &c.id, &format!("{prefix}-{i:04}"), expires)).collect())
}
