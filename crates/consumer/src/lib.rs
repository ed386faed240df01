//! The bandvote consumer: the votes topic → Redis counters + MongoDB vote log,
//! exactly once.
//!
//! Kafka transactions are not used (the broker's are young), so exactly-once comes from
//! idempotent sinks and commits only after both succeeded:
//!
//! 1. [`pipeline`] reads a batch, decodes it ([`batch`]); undecodable records go
//!    to the dead-letter topic.
//! 2. [`bandvote_store::VoteLog::store`] inserts one document per vote with `_id` =
//!    vote_id (unordered; E11000 = already stored).
//! 3. [`bandvote_store::Counters::apply`] runs one Lua script per partition that skips
//!    offsets at or below the partition's last applied offset (stored in the
//!    same script) and repeats MongoDB found, then bumps the counters.
//! 4. Only then are the Kafka offsets committed. A crash anywhere replays
//!    the batch, and replays change nothing.

pub mod batch;
pub mod certify;
pub mod contest_admin;
pub mod config;
pub mod dead_letter;
pub mod health;
pub mod judge;
pub mod metrics;
pub mod names;
pub mod pipeline;
pub mod recount;

/// A sink failed; the batch is retried with backoff and no offset is committed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("dead-letter topic: {0}")]
    DeadLetter(String),
    #[error("kafka: {0}")]
    Kafka(String),
    /// A record of a schema this consumer does not read: it stops (retries,
    /// never commits) until upgraded, instead of dead-lettering acknowledged votes.
    #[error("record at partition {partition} offset {offset} has schema {schema:?}, unknown to this consumer: upgrade it")]
    UnknownSchema { schema: String, partition: i32, offset: i64 },
    /// A contest definition could not be read.
    #[error("contest: {0}")]
    Contest(String),
    /// Another process is rebuilding the counters; retry the batch after it.
    #[error("counters are being rebuilt from MongoDB")]
    Rebuilding,
    /// Redis lost its counters (flushed, restarted empty) between the check
    /// and the apply script: the retry rebuilds them from MongoDB first.
    #[error("redis lost its counters while the vote log has votes: rebuilding before the retry")]
    CountersLost,
}
