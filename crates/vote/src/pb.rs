//! Protobuf messages of `proto/bandvote/v1/vote.proto` (package `bandvote.v1`)
//! and of the legacy `getInfo` schema course clients use. The gRPC crate maps
//! these paths with `extern_path`, so the messages are defined once, here.

use crate::RawVote;

/// `bandvote.v1.Vote`: a vote as a gRPC client sends it. All strings, like JSON.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Vote {
    #[prost(string, tag = "1")]
    pub band: String,
    #[prost(string, tag = "2")]
    pub album: String,
    #[prost(string, tag = "3")]
    pub year: String,
    #[prost(string, tag = "4")]
    pub rank: String,
    /// Optional client idempotency key; empty means "generate one".
    #[prost(string, tag = "5")]
    pub vote_id: String,
}

/// `bandvote.v1.Receipt`: the answer for one acknowledged vote.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Receipt {
    #[prost(string, tag = "1")]
    pub vote_id: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    #[prost(int64, tag = "3")]
    pub offset: i64,
}

/// `bandvote.v1.BatchReceipt`: answer to a streamed batch, in input order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchReceipt {
    #[prost(message, repeated, tag = "1")]
    pub receipts: Vec<Receipt>,
}

/// Legacy `requestId { album, year, artist, ranked }` of the `getInfo` service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestId {
    #[prost(string, tag = "1")]
    pub album: String,
    #[prost(string, tag = "2")]
    pub year: String,
    #[prost(string, tag = "3")]
    pub artist: String,
    #[prost(string, tag = "4")]
    pub ranked: String,
}

/// Legacy `replyInfo { info }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReplyInfo {
    #[prost(string, tag = "1")]
    pub info: String,
}

/// proto3 cannot tell an empty string from an absent one: both are "missing".
fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<Vote> for RawVote {
    fn from(v: Vote) -> Self {
        RawVote { band: opt(v.band), album: opt(v.album), year: opt(v.year), rank: opt(v.rank), vote_id: opt(v.vote_id) }
    }
}

impl From<RequestId> for RawVote {
    fn from(v: RequestId) -> Self {
        RawVote { band: opt(v.artist), album: opt(v.album), year: opt(v.year), rank: opt(v.ranked), vote_id: None }
    }
}
