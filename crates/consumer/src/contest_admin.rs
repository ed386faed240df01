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
    #[error("voter tokens need a usable secret (--contest-secret / BANDVOTE_CONTEST_SECRET): {0}")]
    NoSecret(bandvote_contest::token::SecretError),
    #[error("contest {0:?} exists already: a re-run is a new contest with a new id")]
    Exists(String),
    #[error("contest {0:?} is certified: its result is final and it cannot change (a re-run is a new contest)")]
    Certified(String),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Where contests live: the vote log's database (the durable record: every
/// definition and which one is current) and Redis (the cache every intake
/// and the consumer read; [`restore`] puts back what it lost). Each change
/// is written to MongoDB first.
pub struct ContestAdmin {
    pub store: ContestStore,
    pub log: VoteLog,
}

fn log_err(e: impl std::fmt::Display) -> AdminError {
    AdminError::Log(e.to_string())
}

impl ContestAdmin {
    async fn put(&self, c: &Contest) -> Result<(), AdminError> {
        self.log.save_contest(c).await.map_err(log_err)?;
        self.store.put(c).await?;
        Ok(())
    }

    /// Validate `contest`, store it and make it the current contest. An id
    /// used before is refused (its counters, votes and certificate belong to
    /// that contest), and so is a `voters = token` contest when `secret` (the
    /// operator's, the one tokens are issued with) is missing or short.
    pub async fn create(&self, contest: Contest, secret: Option<&[u8]>) -> Result<Contest, AdminError> {
        let contest = contest.validated()?;
        if contest.voters == bandvote_contest::Voters::Token {
            bandvote_contest::token::usable_secret(secret).map_err(AdminError::NoSecret)?;
        }
        if self.store.get(&contest.id).await?.is_some() || self.log.contest(&contest.id).await.map_err(log_err)?.is_some() {
            return Err(AdminError::Exists(contest.id));
        }
        self.put(&contest).await?;
        self.log.save_current_contest(Some(&contest.id)).await.map_err(log_err)?;
        self.store.set_current(Some(&contest.id)).await?;
        Ok(contest)
    }

    /// Refuse to change a certified contest.
    async fn not_certified(&self, c: &Contest) -> Result<(), AdminError> {
        match self.log.certificate(&c.id).await.map_err(log_err)? {
            Some(_) => Err(AdminError::Certified(c.id.clone())),
            None => Ok(()),
        }
    }

    /// Contest `id`, or the current one, from the durable record (MongoDB;
    /// Redis, which may hold an older copy, only for a deployment from
    /// before the record).
    pub async fn find(&self, id: Option<&str>) -> Result<Contest, AdminError> {
        let id = match id {
            Some(id) => id.to_owned(),
            None => match self.log.current_contest().await.map_err(log_err)? {
                Some(recorded) => recorded.ok_or(AdminError::NoCurrent)?,
                None => self.store.current_id().await?.ok_or(AdminError::NoCurrent)?,
            },
        };
        match self.log.contest(&id).await.map_err(log_err)? {
            Some(c) => Ok(c),
            None => self.store.get(&id).await?.ok_or(AdminError::NoContest(id)),
        }
    }

    /// Open voting now (if it opens later) and keep the close after it.
    pub async fn open_now(&self, id: Option<&str>) -> Result<Contest, AdminError> {
        let mut c = self.find(id).await?;
        self.not_certified(&c).await?;
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
        self.not_certified(&c).await?;
        let at = now_ms() + in_ms.max(0);
        c.closes_at_ms = c.closes_at_ms.min(at);
        c.opens_at_ms = c.opens_at_ms.min(c.closes_at_ms - 1);
        self.put(&c).await?;
        Ok(c)
    }

    /// No current contest: votes count as without one (its results stay).
    pub async fn archive(&self) -> Result<(), AdminError> {
        self.log.save_current_contest(None).await.map_err(log_err)?;
        self.store.set_current(None).await?;
        Ok(())
    }
}

/// Make Redis say what MongoDB's record says is current (the marker and the
/// current definition): put back what it lost (a flush) and replace what is
/// older (a restore from an older snapshot, a failover to a lagging
/// replica), never undoing an operator's change made meanwhile (Redis is
/// read before the record; [`ContestStore::reconcile`]). With no record at
/// all (a deployment that never ran a contest), what Redis names is
/// recorded, else "no contest". `true` if Redis was changed. The consumer
/// runs this every second; until Redis knows, the intakes refuse votes with
/// 503 (the contest is not known), never "no contest".
pub async fn restore(store: &ContestStore, log: &VoteLog) -> Result<bool, AdminError> {
    let seen = store.snapshot().await?;
    let recorded = match log.current_contest().await.map_err(log_err)? {
        Some(id) => id,
        // Never recorded: an id Redis still names (a deployment from before
        // the record), else "no contest" (a deployment that never ran one).
        None => log.init_current_contest(seen.marker.as_deref().filter(|id| !id.is_empty())).await.map_err(log_err)?,
    };
    let current = match recorded {
        Some(id) => Some(log.contest(&id).await.map_err(log_err)?.ok_or(AdminError::NoContest(id))?),
        None => None,
    };
    let wrote = store.reconcile(&seen, current.as_ref()).await?;
    if wrote {
        tracing::warn!(
            contest = current.as_ref().map_or("(none)", |c| c.id.as_str()),
            redis_had = seen.marker.as_deref().unwrap_or("(nothing)"),
            "redis had lost the current contest or held an older one: restored from MongoDB's record"
        );
    }
    Ok(wrote)
}

/// `count` voter tokens for contest `c` (voters `<prefix>-0001`, …), valid for `valid_secs`.
pub fn tokens(c: &Contest, secret: Option<&str>, prefix: &str, count: u32, valid_secs: i64) -> Result<Vec<String>, AdminError> {
    let secret = bandvote_contest::token::usable_secret(secret.map(str::as_bytes)).map_err(AdminError::NoSecret)?;
    let expires = now_ms() / 1000 + valid_secs;
    Ok((1..=count).filter_map(|i| bandvote_contest::token::issue(secret, &c.id, &format!("{prefix}-{i:04}"), expires)).collect())
}
