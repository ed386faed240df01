//! A Redis connection that never keeps a stalled socket.
//!
//! redis-rs's `ConnectionManager` reconnects when the connection *drops*,
//! but a command that times out leaves it on the same socket: after a
//! network cut that lost packets without a reset (a blackhole, a partition),
//! every later command waits on that socket until TCP's retransmissions give
//! up (minutes), although a new connection would work at once. Measured on
//! the consumer before this (issue 31): counting resumed 16 s after a 15 s
//! cut healed, 54.5 s after a 60 s one. [`Reconnecting`] wraps the manager:
//! a command that times out replaces it with a fresh one (connected on first
//! use), so the next command goes over a new socket. Only a connection that
//! has answered nothing for [`STALLED_AFTER`] is replaced: a command that
//! timed out because its own process was too busy to read the reply (the
//! others still get theirs) keeps the connection, so a loaded process does
//! not churn connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// A `ConnectionManager` replaced whenever one of its commands times out.
/// Cheap to clone; clones share the current connection.
#[derive(Clone)]
pub struct Reconnecting {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// The connection and its generation (bumped at each replacement, so
    /// several commands timing out at once replace it once).
    current: Arc<Mutex<(u64, ConnectionManager)>>,
    /// When a command last got an answer (ms since `epoch`).
    last_answer_ms: Arc<AtomicU64>,
    epoch: Instant,
    db: i64,
}

/// A connection that has answered nothing for this long while a command
/// timed out is taken as stalled and replaced.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

impl Reconnecting {
    /// Connected now (an error if Redis cannot be reached).
    pub async fn connect(client: redis::Client, config: ConnectionManagerConfig) -> Result<Self, RedisError> {
        let con = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        Ok(Self::with(client, config, con))
    }

    /// Connected on first use.
    pub fn lazy(client: redis::Client, config: ConnectionManagerConfig) -> Result<Self, RedisError> {
        let con = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Self::with(client, config, con))
    }

    fn with(client: redis::Client, config: ConnectionManagerConfig, con: ConnectionManager) -> Self {
        let db = client.get_connection_info().redis_settings().db();
        Self { client, config, current: Arc::new(Mutex::new((0, con))), last_answer_ms: Arc::default(), epoch: Instant::now(), db }
    }

    fn current(&self) -> (u64, ConnectionManager) {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How many times the connection was replaced.
    pub fn replacements(&self) -> u64 {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// After a command on generation `generation` failed with `e`: a timeout
    /// replaces that connection (unless another command already did).
    fn answered(&self) {
        self.last_answer_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn after_error(&self, generation: u64, e: &RedisError) {
        // A server error (NOSCRIPT, WRONGTYPE…) is an answer too.
        if !e.is_timeout() {
            if e.kind() != redis::ErrorKind::Io {
                self.answered();
            }
            return;
        }
        let silent_ms = (self.epoch.elapsed().as_millis() as u64).saturating_sub(self.last_answer_ms.load(Ordering::Relaxed));
        if silent_ms < STALLED_AFTER.as_millis() as u64 {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.0 != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => {
                *current = (generation + 1, fresh);
                tracing::warn!(error = %e, "redis: a command timed out: the connection is dropped and the next command reconnects");
            }
            Err(e) => tracing::warn!(error = %e, "redis: a command timed out and no new connection could be made"),
        }
    }
}

impl ConnectionLike for Reconnecting {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (generation, mut con) = self.current();
        Box::pin(async move {
            let r = con.req_packed_command(cmd).await;
            match &r {
                Ok(_) => self.answered(),
                Err(e) => self.after_error(generation, e),
            }
            r
        })
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        let (generation, mut con) = self.current();
        Box::pin(async move {
            let r = con.req_packed_commands(pipeline, offset, count).await;
            match &r {
                Ok(_) => self.answered(),
                Err(e) => self.after_error(generation, e),
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
