//! The vote: the one owner of bandvote's vote schema.
//!
//! Every intake (the WASI component, the gRPC producer, the Kafka REST bridge)
//! and every reader (the consumer, the recount tool) go through this crate, so a
//! vote is validated, normalised and encoded in exactly one place.
//!
//! * [`parse_body`] turns an HTTP request body (either client shape, or a JSON
//!   array of them) into canonical [`Vote`]s or a typed [`VoteError`].
//! * [`RawVote`] is what a client sent, as strings; [`RawVote::validate`]
//!   normalises it into a [`Vote`].
//! * [`record`] is the Kafka wire format (key, value, headers) and its decoder.
//! * [`pb`] holds the protobuf messages of `proto/bandvote/v1/vote.proto`.
//!
//! The crate has no I/O and no async runtime: it compiles to `wasm32-wasip2`.

mod error;
mod parse;
pub mod pb;
pub mod record;
mod vote;

pub use error::{FieldProblem, VoteError};
pub use parse::{check_content_type, parse_body, Submission};
pub use vote::{assemble_batch, generated_id, is_generated_id, normalise_name, resolve_single_id, Received, RawVote, Source, Vote, BLANK_RENDERING};

/// Size and count limits every intake enforces.
pub mod limits {
    /// Largest request body accepted, in bytes (HTTP 413 past it).
    pub const MAX_BODY_BYTES: usize = 256 * 1024;
    /// Most votes in one batch (HTTP 413 past it).
    pub const MAX_BATCH: usize = 500;
    /// Longest band or album name, in characters, after normalisation.
    pub const MAX_TEXT_CHARS: usize = 200;
    /// Longest client-supplied vote id / idempotency key.
    pub const MAX_VOTE_ID_LEN: usize = 128;
    /// Longest stored vote id: a key, `#` and a 32-hex-digit fingerprint (batch items).
    pub const MAX_STORED_ID_LEN: usize = MAX_VOTE_ID_LEN + 1 + 32;
    /// Earliest and latest accepted album year.
    pub const YEAR_RANGE: std::ops::RangeInclusive<u16> = 1000..=2100;
    /// Longest voter id or voter token, in characters.
    pub const MAX_VOTER_CHARS: usize = 512;
    /// Largest accepted rank.
    pub const MAX_RANK: f64 = 100_000.0;
}
