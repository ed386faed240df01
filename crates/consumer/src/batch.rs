//! Turning Kafka messages into per-partition batches of decoded votes.

use std::collections::BTreeMap;

use bandvote_store::{Located, PartitionBatch};
use bandvote_vote::record::{self, Decoded};

/// A record that could not be decoded (a poison record): it goes to the DLQ.
#[derive(Debug, Clone, PartialEq)]
pub struct Poison {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub reason: String,
}

/// A record of a schema this build does not read: the consumer stops on it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownSchema {
    pub partition: i32,
    pub offset: i64,
    pub schema: String,
}

/// A decoded batch.
#[derive(Debug, Default)]
pub struct Batch {
    pub partitions: BTreeMap<i32, PartitionBatch>,
    pub poison: Vec<Poison>,
    pub unknown_schema: Vec<UnknownSchema>,
    /// Records dropped because the batch held their offset already.
    pub refetched: u64,
}

impl Batch {
    /// Add one raw record without a `schema` header (read as the current schema).
    pub fn push(&mut self, partition: i32, offset: i64, key: &[u8], value: &[u8]) {
        self.push_record(partition, offset, key, value, None);
    }

    /// Add one raw record, decoded by its `schema` header. A record at or
    /// below an offset the batch already holds for its partition is dropped:
    /// Kafka hands out a partition's records in order, so it is one the
    /// consumer fetched again after a seek back (revoke + re-assign while the
    /// batch was filling), and counting it would count it twice.
    pub fn push_record(&mut self, partition: i32, offset: i64, key: &[u8], value: &[u8], schema: Option<&[u8]>) {
        if let Some(held) = self.partitions.get(&partition)
            && offset <= held.last_offset
        {
            self.refetched += 1;
            return;
        }
        let entry = self.partitions.entry(partition).or_insert_with(|| PartitionBatch { votes: Vec::new(), first_offset: offset, last_offset: offset });
        entry.last_offset = offset;
        match record::decode_record(schema, value) {
            Decoded::Vote(vote) => entry.votes.push(Located { partition, offset, vote }),
            Decoded::Poison(e) => {
                self.poison.push(Poison { partition, offset, key: key.to_vec(), value: value.to_vec(), reason: e.to_string() })
            }
            Decoded::UnknownSchema(schema) => self.unknown_schema.push(UnknownSchema { partition, offset, schema }),
        }
    }

    pub fn len(&self) -> usize {
        self.partitions.values().map(|p| p.votes.len()).sum::<usize>() + self.poison.len() + self.unknown_schema.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every decoded vote, for the vote log.
    pub fn votes(&self) -> impl Iterator<Item = &Located> {
        self.partitions.values().flat_map(|p| p.votes.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One valid vote as the record an intake writes.
    fn a_vote_record() -> record::KafkaRecord {
        let v = bandvote_vote::RawVote {
            band: Some("a".into()),
            album: Some("b".into()),
            year: Some("2000".into()),
            rank: Some("1".into()),
            vote_id: Some("id-1".into()),
voter: None,
        }
        .validate(bandvote_vote::Source::Http, 0, None)
        .unwrap();
        record::encode(&v)
    }

    #[test]
    fn groups_by_partition_and_sets_aside_poison() {
        let rec = a_vote_record();
        let mut b = Batch::default();
        b.push(1, 10, &rec.key, &rec.value);
        b.push(0, 3, &rec.key, &rec.value);
        b.push(1, 11, b"k", b"garbage");
        assert_eq!(b.len(), 3);
        assert_eq!(b.partitions[&1].last_offset, 11);
        assert_eq!(b.partitions[&1].votes.len(), 1);
        assert_eq!(b.poison[0].offset, 11);
        assert_eq!(b.votes().count(), 2);
        b.push_record(0, 4, b"k", b"{}", Some(b"bandvote.vote.v9"));
        assert_eq!(b.unknown_schema[0].schema, "bandvote.vote.v9");
        assert!(b.poison.len() == 1, "an unknown schema is not poison");
    }

    /// A seek back inside `next_batch` refetches records the batch holds:
    /// each offset is kept once (the first time), whatever its kind.
    #[test]
    fn an_offset_fetched_twice_is_held_once() {
        let rec = a_vote_record();
        let mut b = Batch::default();
        for offset in [5, 6, 7] {
            b.push(0, offset, &rec.key, &rec.value);
        }
        b.push(0, 8, b"k", b"garbage");
        // revoke + re-assign: the consumer seeks back to 6 and fetches again
        for offset in [6, 7] {
            b.push(0, offset, &rec.key, &rec.value);
        }
        b.push(0, 8, b"k", b"garbage");
        b.push(0, 9, &rec.key, &rec.value);
        let offsets: Vec<i64> = b.partitions[&0].votes.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, vec![5, 6, 7, 9]);
        assert_eq!((b.poison.len(), b.refetched, b.partitions[&0].last_offset), (1, 3, 9));
    }
}
