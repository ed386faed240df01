//! The stores' schema, owned in one place and used by the writer (the
//! consumer) and every reader (the web app, `recount`, the tests).
//!
//! * [`counters`]: the live counters in Redis. Key names are in [`keys`]
//!   (optionally prefixed; empty prefix in production so dashboards read the
//!   names they already know), the apply script in `apply.lua`.
//! * [`contests`]: contest definitions, the current contest, their tallies.
//! * [`published_through`]: how far each intake has published (what
//!   `contest certify` waits for).
//! * [`key_claims`]: which vote each idempotency key stands for, for a
//!   window (the intakes' 409 on a key reused for a different vote).
//! * [`vote_log`] (feature `mongo`, default): the vote log in MongoDB, one
//!   document per vote with `_id` = vote id; its indexes and the dead-letter
//!   fallback collection.
//!
//! Nothing here knows Kafka beyond a vote's position ([`Located`]), so readers
//! build without librdkafka.

pub mod band_names;
pub mod contests;
pub mod counters;
mod intake_redis;
pub mod reconnecting;
pub mod key_claims;
pub mod keys;
pub mod published_through;
#[cfg(feature = "mongo")]
pub mod vote_log;

use std::collections::HashMap;

use bandvote_vote::Vote;

pub use band_names::BandNames;
pub use contests::{ContestStore, ContestTally, ContestWatch, Current};
pub use counters::{Applied, Choice, ContestCounts, Counters, Replaces, Tally, VoterState};
pub use key_claims::{Claim, KeyClaims, Stamp};
pub use published_through::{IntakeReport, PublishedThrough};
#[cfg(feature = "mongo")]
pub use vote_log::{LogCursor, LogEntry, LogPage, Stored, StoredVote, VoteLog};

/// A vote with where it sits in Kafka.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub partition: i32,
    pub offset: i64,
    pub vote: Vote,
}

/// One partition's share of a batch, in offset order: what the sinks apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartitionBatch {
    pub votes: Vec<Located>,
    /// Lowest offset in the batch, records that are not votes included: the
    /// apply script refuses a batch that starts past the applied offset + 1
    /// (a gap: Redis went back in time).
    pub first_offset: i64,
    /// Highest offset in the batch, records that are not votes included: the
    /// batch is applied up to here.
    pub last_offset: i64,
}

/// A snapshot of the totals (counters, the log's recount, the leaderboards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub total: u64,
    pub by_band: HashMap<String, u64>,
    pub by_album: HashMap<String, u64>,
}
