//! The vote log in MongoDB: one document per vote, `_id` = vote_id.

use std::collections::HashMap;

use futures::TryStreamExt as _;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use crate::batch::Located;
use crate::redis::Totals;

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub inserted: u64,
    /// Documents that were already there (replay or client retry).
    pub already_stored: u64,
}

#[derive(Clone)]
pub struct VoteLog {
    votes: Collection<Document>,
}

/// The document stored for one vote.
pub fn document(topic: &str, v: &Located) -> Document {
    doc! {
        "_id": &v.vote.vote_id,
        "band": &v.vote.band,
        "album": &v.vote.album,
        "year": i32::from(v.vote.year),
        "rank": v.vote.rank,
        "source": v.vote.source.as_str(),
        "received_at": DateTime::from_millis(v.vote.received_at_ms),
        "kafka": { "topic": topic, "partition": v.partition, "offset": v.offset },
    }
}

impl VoteLog {
    /// Connect and make sure the log page's indexes exist (by time, by band).
    pub async fn connect(url: &str, database: &str, collection: &str) -> Result<Self, mongodb::error::Error> {
        let log = Self::open(url, database, collection).await?;
        let votes = &log.votes;
        for keys in [doc! { "received_at": -1 }, doc! { "band": 1, "received_at": -1 }] {
            let model = IndexModel::builder().keys(keys).options(IndexOptions::builder().build()).build();
            votes.create_index(model).await?;
        }
        Ok(log)
    }

    /// A handle without touching the server (readers: the web app). Operations
    /// give up after 2 s of server selection instead of MongoDB's default 30 s.
    pub async fn open(url: &str, database: &str, collection: &str) -> Result<Self, mongodb::error::Error> {
        let mut options = mongodb::options::ClientOptions::parse(url).await?;
        options.server_selection_timeout = Some(std::time::Duration::from_secs(2));
        options.app_name = Some("bandvote".into());
        let client = mongodb::Client::with_options(options)?;
        Ok(Self { votes: client.database(database).collection::<Document>(collection) })
    }

    pub fn collection(&self) -> &Collection<Document> {
        &self.votes
    }

    /// Insert every vote (unordered); duplicate `_id`s count as already stored.
    pub async fn store<'a>(&self, topic: &str, votes: impl IntoIterator<Item = &'a Located>) -> Result<Stored, mongodb::error::Error> {
        let docs: Vec<Document> = votes.into_iter().map(|v| document(topic, v)).collect();
        let n = docs.len() as u64;
        if n == 0 {
            return Ok(Stored::default());
        }
        match self.votes.insert_many(docs).ordered(false).await {
            Ok(r) => Ok(Stored { inserted: r.inserted_ids.len() as u64, already_stored: 0 }),
            Err(e) => match *e.kind {
                mongodb::error::ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none()
                        && ime.write_errors.as_ref().is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    let dups = ime.write_errors.as_ref().map_or(0, |w| w.len() as u64);
                    Ok(Stored { inserted: n - dups, already_stored: dups })
                }
                _ => Err(e),
            },
        }
    }

    /// Recompute the counters from the log.
    pub async fn totals(&self) -> Result<Totals, mongodb::error::Error> {
        let mut t = Totals { total: self.votes.count_documents(doc! {}).await?, ..Default::default() };
        for (field, out) in [("$band", &mut t.by_band), ("$album", &mut t.by_album)] {
            let mut cur = self.votes.aggregate([doc! { "$group": { "_id": field, "n": { "$sum": 1 } } }]).await?;
            while let Some(d) = cur.try_next().await? {
                let key = d.get_str("_id").unwrap_or_default().to_owned();
                let n = d.get_i32("n").map(i64::from).or_else(|_| d.get_i64("n")).unwrap_or(0);
                out.insert(key, n as u64);
            }
        }
        Ok(t)
    }

    /// Every stored vote id and the highest stored offset per partition (rebuild).
    pub async fn ids_and_offsets(&self, topic: &str) -> Result<(Vec<String>, HashMap<i32, i64>), mongodb::error::Error> {
        let mut ids = Vec::new();
        let mut offsets = HashMap::new();
        let mut cur = self.votes.find(doc! { "kafka.topic": topic }).projection(doc! { "_id": 1, "kafka": 1 }).await?;
        while let Some(d) = cur.try_next().await? {
            if let Ok(id) = d.get_str("_id") {
                ids.push(id.to_owned());
            }
            if let Ok(k) = d.get_document("kafka") {
                let p = k.get_i32("partition").unwrap_or(0);
                let o = k.get_i64("offset").unwrap_or(-1);
                let e = offsets.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
        Ok((ids, offsets))
    }

    /// One page of the log, newest first, optionally for one band.
    pub async fn page(&self, band: Option<&str>, skip: u64, limit: i64) -> Result<(Vec<Document>, u64), mongodb::error::Error> {
        let filter = match band {
            Some(b) => doc! { "band": b },
            None => doc! {},
        };
        let total = self.votes.count_documents(filter.clone()).await?;
        let docs = self
            .votes
            .find(filter)
            .sort(doc! { "received_at": -1, "_id": -1 })
            .skip(skip)
            .limit(limit)
            .await?
            .try_collect()
            .await?;
        Ok((docs, total))
    }

    pub async fn ping(&self) -> Result<(), mongodb::error::Error> {
        self.votes.estimated_document_count().await.map(|_| ())
    }
}
