//! The Kafka record format of a vote, shared by every producer and the consumer.
//!
//! * key: the `voter` bytes when the vote names one (so one voter's votes
//!   are in one partition, in Kafka's order: the per-voter cap depends on
//!   it), else the `vote_id` bytes (a retried vote lands on the same partition),
//! * value: the [`Vote`] as compact JSON, fields in declaration order,
//! * headers: `content-type`, `schema`, `source`, `vote-id`.
//!
//! Two intakes given the same vote produce byte-identical records.

use crate::Vote;

/// Default topic name.
pub const TOPIC: &str = "votes";
/// Schema id carried in the `schema` header.
pub const SCHEMA: &str = "bandvote.vote.v1";
/// MIME type of the record value.
pub const CONTENT_TYPE: &str = "application/json";

/// An encoded record, ready for any Kafka client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// Encode a validated vote.
pub fn encode(vote: &Vote) -> KafkaRecord {
    // A Vote is plain data with finite numbers: serialisation cannot fail.
    let value = serde_json::to_vec(vote).expect("a Vote always serialises");
    KafkaRecord {
        key: vote.voter.as_deref().unwrap_or(&vote.vote_id).as_bytes().to_vec(),
        value,
        headers: vec![
            ("content-type", CONTENT_TYPE.as_bytes().to_vec()),
            ("schema", SCHEMA.as_bytes().to_vec()),
            ("source", vote.source.as_str().as_bytes().to_vec()),
            ("vote-id", vote.vote_id.as_bytes().to_vec()),
        ],
    }
}

/// Why a record value could not be read back as a vote (a poison record).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record value is not a vote: {0}")]
    Json(#[from] serde_json::Error),
    #[error("record value is an invalid vote: {0}")]
    Invalid(#[from] crate::VoteError),
}

/// Decode and re-check a record value of schema [`SCHEMA`]. Fields this
/// build does not know are ignored (a compatible addition within v1); the
/// known ones must make a valid vote.
pub fn decode(value: &[u8]) -> Result<Vote, DecodeError> {
    let vote: Vote = serde_json::from_slice(value)?;
    vote.check()?;
    Ok(vote)
}

/// What a record is, judged by its `schema` header first.
#[derive(Debug)]
pub enum Decoded {
    /// A vote of a schema this build reads.
    Vote(Vote),
    /// A schema this build does not know (a newer producer): not poison, so
    /// never dead-lettered; the consumer stops until it is upgraded.
    UnknownSchema(String),
    /// Of a known schema (or none), and not a vote: poison.
    Poison(DecodeError),
}

/// Decode a record by its `schema` header (`None`: records from before the
/// header existed, read as [`SCHEMA`]).
pub fn decode_record(schema: Option<&[u8]>, value: &[u8]) -> Decoded {
    match schema {
        None => {}
        Some(s) if s == SCHEMA.as_bytes() => {}
        Some(other) => return Decoded::UnknownSchema(String::from_utf8_lossy(other).chars().take(64).collect()),
    }
    match decode(value) {
        Ok(v) => Decoded::Vote(v),
        Err(e) => Decoded::Poison(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RawVote, Source};

    #[test]
    fn format_is_stable() {
        let vote = RawVote {
            band: Some("Alux Nahual".into()),
            album: Some("Alux Nahual".into()),
            year: Some("1983".into()),
            rank: Some("09".into()),
            vote_id: Some("v-1".into()),
            voter: None,
        }
        .validate(Source::Http, 1_700_000_000_000, None)
        .unwrap();
        let rec = encode(&vote);
        assert_eq!(rec.key, b"v-1");
        assert_eq!(
            std::str::from_utf8(&rec.value).unwrap(),
            r#"{"vote_id":"v-1","band":"Alux Nahual","album":"Alux Nahual","year":1983,"rank":9.0,"source":"http","received_at_ms":1700000000000}"#
        );
        assert_eq!(rec.headers[2], ("source", b"http".to_vec()));
        assert_eq!(decode(&rec.value).unwrap(), vote);
        assert!(decode(b"not json").is_err());
        assert!(decode(br#"{"vote_id":"v","band":" x","album":"a","year":1983,"rank":1.0,"source":"http","received_at_ms":0}"#).is_err());
    }

    #[test]
    fn decodes_by_schema_version() {
        let v = br#"{"vote_id":"v","band":"x","album":"a","year":1983,"rank":1.0,"source":"http","received_at_ms":0,"added":"later"}"#;
        assert!(matches!(decode_record(Some(SCHEMA.as_bytes()), v), Decoded::Vote(_)), "an added field is not poison");
        assert!(matches!(decode_record(None, v), Decoded::Vote(_)));
        assert!(matches!(decode_record(Some(b"bandvote.vote.v2"), b"{}"), Decoded::UnknownSchema(s) if s == "bandvote.vote.v2"));
        assert!(matches!(decode_record(Some(SCHEMA.as_bytes()), b"nope"), Decoded::Poison(_)));
    }
}
