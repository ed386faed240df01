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
    /// Optional voter id or voter token; empty means "none".
    #[prost(string, tag = "6")]
    pub voter: String,
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
        RawVote { band: opt(v.band), album: opt(v.album), year: opt(v.year), rank: opt(v.rank), vote_id: opt(v.vote_id), voter: opt(v.voter) }
    }
}

impl From<RequestId> for RawVote {
    /// The course's layout ([`GetInfoLayout::Course`]).
    fn from(v: RequestId) -> Self {
        v.into_raw(GetInfoLayout::Course)
    }
}

/// Which field numbers a `getInfo` client gives the vote's parts. Both send
/// four strings under `/confproto.getInfo/returnInfo`, so one layout cannot be
/// told from the other on the wire (a year in the second field is a valid
/// year, and an album in it is an invalid one, but not always): a deployment
/// says which its clients use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GetInfoLayout {
    /// The course's proto: `requestId { album = 1; year = 2; artist = 3; ranked = 4 }`.
    #[default]
    Course,
    /// The layout most student projects of the course use:
    /// `requestId { name = 1; album = 2; year = 3; rank = 4 }`.
    Student,
}

impl std::str::FromStr for GetInfoLayout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "course" => Ok(Self::Course),
            "student" => Ok(Self::Student),
            other => Err(format!("unknown getInfo layout {other:?}: course (album, year, artist, ranked) or student (name, album, year, rank)")),
        }
    }
}

impl RequestId {
    /// The vote in this message, read with `layout`'s field numbers (the
    /// struct's field names are the course's).
    pub fn into_raw(self, layout: GetInfoLayout) -> RawVote {
        let (band, album, year, rank) = match layout {
            GetInfoLayout::Course => (self.artist, self.album, self.year, self.ranked),
            // field 1 = name, 2 = album, 3 = year, 4 = rank
            GetInfoLayout::Student => (self.album, self.year, self.artist, self.ranked),
        };
        RawVote { band: opt(band), album: opt(album), year: opt(year), rank: opt(rank), vote_id: None, voter: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// `requestId { name = 1; album = 2; year = 3; rank = 4 }` as a student
    /// client encodes it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct StudentRequestId {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        album: String,
        #[prost(string, tag = "3")]
        year: String,
        #[prost(string, tag = "4")]
        rank: String,
    }

    #[test]
    fn both_get_info_layouts_read_the_same_vote() {
        let student = StudentRequestId { name: "Caifanes".into(), album: "El Silencio".into(), year: "1992".into(), rank: "1".into() };
        let wire = student.encode_to_vec();
        let read = RequestId::decode(&wire[..]).unwrap().into_raw("student".parse().unwrap());
        assert_eq!((read.band.as_deref(), read.album.as_deref(), read.year.as_deref(), read.rank.as_deref()), (Some("Caifanes"), Some("El Silencio"), Some("1992"), Some("1")));
        let course = RequestId { album: "El Silencio".into(), year: "1992".into(), artist: "Caifanes".into(), ranked: "1".into() };
        assert_eq!(RawVote::from(course), read);
        assert!("other".parse::<GetInfoLayout>().is_err());
    }
}
