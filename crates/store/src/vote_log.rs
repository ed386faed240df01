//! The vote log in MongoDB: one document per vote, `_id` = vote_id.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt as _, TryStreamExt as _};
use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use bandvote_contest::{Certificate, VoteStatus};

use crate::{Located, Totals};

/// MongoDB's duplicate-key error code.
const DUPLICATE_KEY: i32 = 11000;

/// An `insert_many` that failed only because some documents were there already.
/// A single write refused for its duplicate `_id`.
fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(*e.kind, mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref w)) if w.code == DUPLICATE_KEY)
}

fn is_only_duplicates(e: &mongodb::error::Error) -> bool {
    matches!(*e.kind, mongodb::error::ErrorKind::InsertMany(ref ime)
        if ime.write_concern_error.is_none() && ime.write_errors.as_ref().is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)))
}

/// A bulletin index document as its public entry (`docs/bulletin.md`).
fn index_entry(d: &Document) -> bandvote_contest::bulletin::IndexEntry {
    use bandvote_contest::bulletin::CHUNK_LINES;
    let index = int(d, "index").unwrap_or(0).max(0) as u64;
    bandvote_contest::bulletin::IndexEntry { first_line: index * CHUNK_LINES as u64 + 1, lines: int(d, "lines").unwrap_or(0).max(0) as u64, root: d.get_str("root").unwrap_or_default().to_owned() }
}

/// An integer field, whichever BSON width the server chose (int32 or int64).
fn int(d: &Document, key: &str) -> Option<i64> {
    d.get_i64(key).ok().or_else(|| d.get_i32(key).ok().map(i64::from))
}

/// What storing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub inserted: u64,
    /// Documents that were already there (replay or client retry).
    pub already_stored: u64,
    /// `(partition, offset)` of records whose vote id was first stored from
    /// *another* record (a client retry that reached Kafka twice): repeats,
    /// never counted. A replay of the very record stored (same partition and
    /// offset) is not a repeat; the Redis offset guard decides whether it was
    /// counted already.
    pub repeats: HashSet<(i32, i64)>,
}

#[derive(Clone)]
pub struct VoteLog {
    votes: Collection<Document>,
    dead_letters: Collection<Document>,
    certificates: Collection<Document>,
    contests: Collection<Document>,
    bulletins: Collection<Document>,
    bulletin_chunks: Collection<Document>,
    certify_leases: Collection<Document>,
}

/// Where a page of the log starts: strictly older than this vote in the
/// log's order (received_at, partition, offset; all descending). Written
/// `<received_at_ms>.<partition>.<offset>`: nothing a public page does not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCursor {
    pub received_at_ms: i64,
    pub partition: i32,
    pub offset: i64,
}

impl LogCursor {
    /// The cursor of a stored document (only its cursor fields are read).
    pub fn of(d: &Document) -> Option<Self> {
        let kafka = d.get_document("kafka").ok()?;
        Some(Self {
            received_at_ms: d.get_datetime("received_at").ok()?.timestamp_millis(),
            partition: kafka.get_i32("partition").ok()?,
            offset: int(kafka, "offset")?,
        })
    }
}

/// One vote as the log page shows it. The vote id is left out on purpose:
/// ids are the clients' idempotency keys, never shown on a public page.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub band: String,
    pub album: String,
    pub year: i32,
    pub rank: f64,
    /// `http` or `grpc`.
    pub source: String,
    /// When it was received and where it sits in Kafka: also the cursor of the
    /// page that starts right after this entry.
    pub at: LogCursor,
}

impl LogEntry {
    /// Read a stored document ([`document`] wrote it); `None` if it is not one.
    pub fn of(d: &Document) -> Option<Self> {
        Some(Self {
            at: LogCursor::of(d)?,
            band: d.get_str("band").ok()?.to_owned(),
            album: d.get_str("album").ok()?.to_owned(),
            year: d.get_i32("year").ok()?,
            rank: d.get_f64("rank").ok()?,
            source: d.get_str("source").ok()?.to_owned(),
        })
    }
}

/// One page of the log, newest first, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    /// `None` on the last page.
    pub next: Option<LogCursor>,
    /// Documents on this page that are not votes as [`document`] writes them
    /// (left out of `entries`, counted so they are never silently lost).
    pub unreadable: usize,
}

impl std::fmt::Display for LogCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.received_at_ms, self.partition, self.offset)
    }
}

impl std::str::FromStr for LogCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a log cursor (<received_at_ms>.<partition>.<offset>)");
        let mut parts = s.split('.');
        let (Some(t), Some(p), Some(o), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        Ok(Self { received_at_ms: t.parse().map_err(|_| bad())?, partition: p.parse().map_err(|_| bad())?, offset: o.parse().map_err(|_| bad())? })
    }
}

/// A vote as the consumer decided it, ready to store.
#[derive(Debug, Clone, Copy)]
pub struct StoredVote<'a> {
    pub located: &'a Located,
    /// The band as counted (a contest's roster spelling).
    pub band: &'a str,
    /// Its status in its contest (`None`: no contest).
    pub status: Option<VoteStatus>,
}

impl<'a> StoredVote<'a> {
    /// A vote outside any contest, stored as it came.
    pub fn plain(located: &'a Located) -> Self {
        Self { located, band: &located.vote.band, status: None }
    }
}

/// Votes that count: outside any contest, or `counted` in theirs.
fn counts_filter() -> Document {
    doc! { "$or": [ { "status": { "$exists": false } }, { "status": VoteStatus::Counted.as_str() } ] }
}

/// The `_id` of the durable current-contest record in the contests collection.
const CURRENT_CONTEST_DOC: &str = "#current";

/// The document stored for one vote (a contest's votes also carry
/// `contest`, `voter` and `status`).
pub fn document(topic: &str, s: &StoredVote<'_>) -> Document {
    let v = s.located;
    let mut d = doc! {
        "_id": &v.vote.vote_id,
        "band": s.band,
        "album": &v.vote.album,
        "year": i32::from(v.vote.year),
        "rank": v.vote.rank,
        "source": v.vote.source.as_str(),
        "received_at": DateTime::from_millis(v.vote.received_at_ms),
        "kafka": { "topic": topic, "partition": v.partition, "offset": v.offset },
    };
    if let Some(c) = &v.vote.contest {
        d.insert("contest", c);
    }
    if let Some(voter) = &v.vote.voter {
        d.insert("voter", voter);
    }
    if let Some(status) = s.status {
        d.insert("status", status.as_str());
    }
    d
}

impl VoteLog {
    /// Connect and make sure the log page's indexes exist: one per page
    /// order, all votes and per band ([`Self::page`] sorts and filters on
    /// exactly these keys, so no page sorts in memory or skips documents).
    pub async fn connect(url: &str, database: &str, collection: &str) -> Result<Self, mongodb::error::Error> {
        let log = Self::open(url, database, collection).await?;
        let votes = &log.votes;
        for keys in [
            doc! { "received_at": -1, "kafka.partition": -1, "kafka.offset": -1 },
            doc! { "band": 1, "received_at": -1, "kafka.partition": -1, "kafka.offset": -1 },
        ] {
            let model = IndexModel::builder().keys(keys).options(IndexOptions::builder().build()).build();
            votes.create_index(model).await?;
        }
        Ok(log)
    }

    /// A handle without touching the server (readers: the web app). Operations
    /// give up after 2 s of server selection instead of MongoDB's default 30 s.
    /// Writes are journaled (`j: true`) so Redis never counts a vote MongoDB
    /// could still lose; `w` comes from the URL (default 1: the MongoDB of
    /// the demo and of `k8s/` is one standalone server; a replica set of your
    /// own should be given `?w=majority`).
    pub async fn open(url: &str, database: &str, collection: &str) -> Result<Self, mongodb::error::Error> {
        let mut options = mongodb::options::ClientOptions::parse(url).await?;
        let mut concern = options.write_concern.take().unwrap_or_default();
        concern.journal.get_or_insert(true);
        options.write_concern = Some(concern);
        options.server_selection_timeout = Some(std::time::Duration::from_secs(2));
        // A server cut off without a reset (a blackhole, a partition) is
        // noticed within about 2 s: its monitor checks every second and gives
        // up connecting after 1 s, which clears the pool and interrupts the
        // operations waiting on it (a retried insert then finds its
        // documents stored: E11000, nothing doubled).
        options.heartbeat_freq = Some(std::time::Duration::from_secs(1));
        options.connect_timeout = Some(std::time::Duration::from_secs(1));
        options.app_name = Some("bandvote".into());
        let client = mongodb::Client::with_options(options)?;
        let db = client.database(database);
        Ok(Self { votes: db.collection::<Document>(collection), dead_letters: db.collection(&format!("{collection}_dead_letters")),
            certificates: db.collection(&format!("{collection}_contest_results")),
            contests: db.collection(&format!("{collection}_contests")),
            bulletins: db.collection(&format!("{collection}_bulletins")),
            bulletin_chunks: db.collection(&format!("{collection}_bulletin_chunks")),
            certify_leases: db.collection(&format!("{collection}_certify_leases")),
        })
    }

    pub fn collection(&self) -> &Collection<Document> {
        &self.votes
    }

    /// Poison records the dead-letter topic could not take (`<collection>_dead_letters`).
    pub fn dead_letters(&self) -> &Collection<Document> {
        &self.dead_letters
    }

    /// Insert every vote (unordered); duplicate `_id`s count as already
    /// stored, and those first stored from another record are [`Stored::repeats`].
    /// MongoDB's `_id` is thus the one place that knows which vote ids exist:
    /// no per-vote state in Redis, for any length of time.
    pub async fn store(&self, topic: &str, votes: &[&Located]) -> Result<Stored, mongodb::error::Error> {
        let judged: Vec<StoredVote<'_>> = votes.iter().map(|v| StoredVote::plain(v)).collect();
        self.store_judged(topic, &judged).await
    }

    /// [`Self::store`] for votes the consumer decided (band as counted, status).
    pub async fn store_judged(&self, topic: &str, judged: &[StoredVote<'_>]) -> Result<Stored, mongodb::error::Error> {
        let votes: Vec<&Located> = judged.iter().map(|s| s.located).collect();
        let docs: Vec<Document> = judged.iter().map(|s| document(topic, s)).collect();
        let n = docs.len() as u64;
        if n == 0 {
            return Ok(Stored::default());
        }
        let failed: Vec<usize> = match self.votes.insert_many(docs).ordered(false).await {
            Ok(r) => return Ok(Stored { inserted: r.inserted_ids.len() as u64, ..Default::default() }),
            Err(e) => match *e.kind {
                mongodb::error::ErrorKind::InsertMany(ref ime)
                    if ime.write_concern_error.is_none()
                        && ime.write_errors.as_ref().is_some_and(|w| w.iter().all(|w| w.code == DUPLICATE_KEY)) =>
                {
                    ime.write_errors.as_ref().map(|w| w.iter().map(|w| w.index).collect()).unwrap_or_default()
                }
                _ => return Err(e),
            },
        };
        let repeats = self.repeats(topic, failed.iter().filter_map(|&i| votes.get(i).copied())).await?;
        Ok(Stored { inserted: n - failed.len() as u64, already_stored: failed.len() as u64, repeats })
    }

    /// Of votes whose `_id` exists already: those stored from a different record.
    async fn repeats<'a>(&self, topic: &str, dups: impl Iterator<Item = &'a Located>) -> Result<HashSet<(i32, i64)>, mongodb::error::Error> {
        let dups: Vec<&Located> = dups.collect();
        if dups.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = dups.iter().map(|v| v.vote.vote_id.as_str()).collect();
        let mut first: HashMap<String, (String, i32, i64)> = HashMap::new();
        let mut cur = self.votes.find(doc! { "_id": { "$in": ids } }).projection(doc! { "kafka": 1 }).await?;
        while let Some(d) = cur.try_next().await? {
            let (Ok(id), Ok(k)) = (d.get_str("_id"), d.get_document("kafka")) else { continue };
            let offset = int(k, "offset").unwrap_or(-1);
            first.insert(id.to_owned(), (k.get_str("topic").unwrap_or_default().to_owned(), k.get_i32("partition").unwrap_or(-1), offset));
        }
        Ok(dups
            .into_iter()
            .filter(|v| first.get(&v.vote.vote_id) != Some(&(topic.to_owned(), v.partition, v.offset)))
            .map(|v| (v.partition, v.offset))
            .collect())
    }

    /// Set the status of votes whose documents exist (the consumer's
    /// per-voter cap, decided after the insert and before the counters).
    pub async fn set_status(&self, ids: &[&str], status: VoteStatus) -> Result<(), mongodb::error::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        self.votes.update_many(doc! { "_id": { "$in": ids } }, doc! { "$set": { "status": status.as_str() } }).await.map(drop)
    }

    /// One stored vote: its contest, band, status and Kafka position (receipts).
    pub async fn find(&self, vote_id: &str) -> Result<Option<Document>, mongodb::error::Error> {
        self.votes.find_one(doc! { "_id": vote_id }).await
    }

    /// Every contest's counters as the apply script would have them, from
    /// the log (a rebuild): counted per band, votes per status, counted per voter.
    pub async fn contest_counts_all(&self) -> Result<HashMap<String, crate::counters::ContestCounts>, mongodb::error::Error> {
        let mut out: HashMap<String, crate::counters::ContestCounts> = HashMap::new();
        let by_status_band = [
            doc! { "$match": { "contest": { "$exists": true } } },
            doc! { "$group": { "_id": { "c": "$contest", "s": "$status", "b": "$band" }, "n": { "$sum": 1 } } },
        ];
        let mut cur = self.votes.aggregate(by_status_band).await?;
        while let Some(d) = cur.try_next().await? {
            let (Ok(k), n) = (d.get_document("_id"), int(&d, "n").unwrap_or(0) as u64) else { continue };
            let c = out.entry(k.get_str("c").unwrap_or_default().to_owned()).or_default();
            let status = k.get_str("s").unwrap_or_default();
            *c.by_status.entry(status.to_owned()).or_default() += n;
            if status == VoteStatus::Counted.as_str() {
                *c.by_band.entry(k.get_str("b").unwrap_or_default().to_owned()).or_default() += n;
                c.total += n;
            }
        }
        let by_voter = [
            doc! { "$match": { "contest": { "$exists": true }, "voter": { "$exists": true }, "status": VoteStatus::Counted.as_str() } },
            doc! { "$group": { "_id": { "c": "$contest", "v": "$voter" }, "n": { "$sum": 1 },
                "id": { "$first": "$_id" }, "band": { "$first": "$band" }, "album": { "$first": "$album" } } },
        ];
        let mut cur = self.votes.aggregate(by_voter).await?;
        while let Some(d) = cur.try_next().await? {
            let (Ok(k), n) = (d.get_document("_id"), int(&d, "n").unwrap_or(0) as u64) else { continue };
            let c = out.entry(k.get_str("c").unwrap_or_default().to_owned()).or_default();
            let voter = k.get_str("v").unwrap_or_default().to_owned();
            // One counted vote: the voter's choice (kept by the rebuild for `revote = replace` contests).
            if n == 1 {
                let text = |f| d.get_str(f).unwrap_or_default().to_owned();
                c.choice.insert(voter.clone(), crate::counters::Choice { vote_id: text("id"), band: text("band"), album: text("album") });
            }
            c.by_voter.insert(voter, n);
        }
        Ok(out)
    }

    /// Keep contest `c`'s definition in the log's database too
    /// (`<collection>_contests`): the durable copy, read when Redis lost it.
    pub async fn save_contest(&self, c: &bandvote_contest::Contest) -> Result<(), mongodb::error::Error> {
        let mut d = mongodb::bson::to_document(c).map_err(mongodb::error::Error::custom)?;
        d.insert("_id", &c.id);
        self.contests.replace_one(doc! { "_id": &c.id }, d).upsert(true).await.map(drop)
    }

    /// Record which contest is current (`None`: no contest), durably: the
    /// record Redis's `contest:current` is a cache of (a document `_id` =
    /// `#current` in `<collection>_contests`; no contest id has a `#`).
    pub async fn save_current_contest(&self, id: Option<&str>) -> Result<(), mongodb::error::Error> {
        let d = doc! { "_id": CURRENT_CONTEST_DOC, "contest": id.unwrap_or("") };
        self.contests.replace_one(doc! { "_id": CURRENT_CONTEST_DOC }, d).upsert(true).await.map(drop)
    }

    /// Record `id` as current only if nothing was ever recorded (a
    /// concurrent `contest create` wins); what is recorded afterwards.
    pub async fn init_current_contest(&self, id: Option<&str>) -> Result<Option<String>, mongodb::error::Error> {
        self.contests
            .update_one(doc! { "_id": CURRENT_CONTEST_DOC }, doc! { "$setOnInsert": { "contest": id.unwrap_or("") } })
            .upsert(true)
            .await?;
        Ok(self.current_contest().await?.flatten())
    }

    /// The durable record of the current contest: `None` if none was ever
    /// recorded, `Some(None)` for "no contest", `Some(Some(id))`.
    pub async fn current_contest(&self) -> Result<Option<Option<String>>, mongodb::error::Error> {
        Ok(self.contests.find_one(doc! { "_id": CURRENT_CONTEST_DOC }).await?.map(|d| {
            let id = d.get_str("contest").unwrap_or_default();
            (!id.is_empty()).then(|| id.to_owned())
        }))
    }

    /// Contest `id`'s durable definition.
    pub async fn contest(&self, id: &str) -> Result<Option<bandvote_contest::Contest>, mongodb::error::Error> {
        match self.contests.find_one(doc! { "_id": id }).await? {
            Some(d) => mongodb::bson::from_document(d).map(Some).map_err(mongodb::error::Error::custom),
            None => Ok(None),
        }
    }

    /// Contest `id`'s votes by (status, band), from the log.
    pub async fn contest_counts(&self, id: &str) -> Result<HashMap<(String, String), u64>, mongodb::error::Error> {
        let pipeline = [
            doc! { "$match": { "contest": id } },
            doc! { "$group": { "_id": { "s": "$status", "b": "$band" }, "n": { "$sum": 1 } } },
        ];
        let mut out = HashMap::new();
        let mut cur = self.votes.aggregate(pipeline).await?;
        while let Some(d) = cur.try_next().await? {
            let Ok(k) = d.get_document("_id") else { continue };
            let key = (k.get_str("s").unwrap_or_default().to_owned(), k.get_str("b").unwrap_or_default().to_owned());
            *out.entry(key).or_default() += int(&d, "n").unwrap_or(0) as u64;
        }
        Ok(out)
    }

    /// Contest `id`'s votes, `(vote_id, band, status)` of each, in vote-id
    /// order, as a stream (certify reads a contest of any size in bounded memory).
    pub async fn contest_votes(&self, id: &str) -> Result<impl futures::Stream<Item = Result<(String, String, String), mongodb::error::Error>> + use<>, mongodb::error::Error> {
        let cur = self.votes.find(doc! { "contest": id }).projection(doc! { "band": 1, "status": 1 }).sort(doc! { "_id": 1 }).await?;
        Ok(cur.map(|d| {
            let d = d?;
            let text = |k| d.get_str(k).unwrap_or_default().to_owned();
            Ok((text("_id"), text("band"), text("status")))
        }))
    }

    /// `_id` range of contest `contest`'s bulletin lines and chunks: contest
    /// ids hold no ':' and ';' follows ':', so the range is exactly this contest's.
    fn bulletin_range(contest: &str) -> Document {
        doc! { "$gt": format!("{contest}:"), "$lt": format!("{contest};") }
    }

    /// Remove contest `contest`'s bulletin (lines and chunks): what an
    /// interrupted certify left is written again from the votes, never kept.
    pub async fn clear_bulletin(&self, contest: &str) -> Result<(), mongodb::error::Error> {
        let range = doc! { "_id": Self::bulletin_range(contest) };
        self.bulletin_chunks.delete_many(range.clone()).await?;
        self.bulletins.delete_many(range).await.map(drop)
    }

    /// Store contest `contest`'s bulletin lines (`<collection>_bulletins`, `_id`
    /// = `<contest>:<leaf>`, so the `_id` index serves them in the
    /// bulletin's order); written again after a crash, nothing doubles.
    pub async fn save_bulletin(&self, contest: &str, lines: &[bandvote_contest::bulletin::Line]) -> Result<(), mongodb::error::Error> {
        for chunk in lines.chunks(1_000) {
            let docs = chunk.iter().map(|l| doc! { "_id": format!("{contest}:{}", l.leaf), "contest": contest, "band": &l.band, "status": &l.status });
            match self.bulletins.insert_many(docs).ordered(false).await {
                Ok(_) => {}
                Err(e) if is_only_duplicates(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read contest `contest`'s stored bulletin back in order, once: its
    /// root and tally, and its index (`<collection>_bulletin_chunks`: per
    /// run of [`CHUNK_LINES`](bandvote_contest::bulletin::CHUNK_LINES)
    /// lines, `_id` = `<contest>:<first leaf>`, its position, line count and
    /// subtree root), which [`Self::bulletin_inclusion`] proves from.
    /// Memory: one chunk.
    pub async fn index_bulletin(&self, contest: &str) -> Result<bandvote_contest::bulletin::Summary, mongodb::error::Error> {
        use bandvote_contest::bulletin::{hex, leaf_hash, IndexBuilder, IndexEntry, Summary, CHUNK_LINES};
        let mut lines = std::pin::pin!(self.bulletin(contest).await?);
        let (mut builder, mut summary, mut first, mut last, mut docs) = (IndexBuilder::default(), Summary::default(), None, String::new(), Vec::new());
        // A run's entry, `_id` by its first leaf; its last leaf bounds the read of its lines.
        let entry = |first: &str, last: &str, e: IndexEntry| {
            let index = (e.first_line - 1) / CHUNK_LINES as u64;
            doc! { "_id": format!("{contest}:{first}"), "contest": contest, "index": index as i64, "lines": e.lines as i64, "root": e.root, "last": last }
        };
        while let Some(line) = lines.try_next().await? {
            if summary.lines % CHUNK_LINES as u64 == 0 {
                first = Some(line.leaf.clone());
            }
            summary.add(&line);
            if let Some(e) = builder.push(leaf_hash(line.text().as_bytes())) {
                docs.push(entry(&first.take().unwrap_or_default(), &line.leaf, e));
            }
            last = line.leaf;
            if docs.len() == 1_000 {
                self.save_bulletin_index(std::mem::take(&mut docs)).await?;
            }
        }
        let (tail, root) = builder.finish();
        docs.extend(tail.map(|e| entry(&first.take().unwrap_or_default(), &last, e)));
        self.save_bulletin_index(docs).await?;
        summary.root = hex(&root);
        Ok(summary)
    }

    async fn save_bulletin_index(&self, docs: Vec<Document>) -> Result<(), mongodb::error::Error> {
        if docs.is_empty() {
            return Ok(());
        }
        match self.bulletin_chunks.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(()),
            Err(e) if is_only_duplicates(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Contest `contest`'s bulletin lines in order (`docs/bulletin.md`), as a
    /// stream: the download never holds the whole bulletin.
    pub async fn bulletin(&self, contest: &str) -> Result<impl futures::Stream<Item = Result<bandvote_contest::bulletin::Line, mongodb::error::Error>> + use<>, mongodb::error::Error> {
        self.bulletin_lines(contest, Self::bulletin_range(contest)).await
    }

    /// Contest `contest`'s bulletin lines whose `_id` is in `range`, in order.
    async fn bulletin_lines(
        &self,
        contest: &str,
        range: Document,
    ) -> Result<impl futures::Stream<Item = Result<bandvote_contest::bulletin::Line, mongodb::error::Error>> + use<>, mongodb::error::Error> {
        let cur = self.bulletins.find(doc! { "_id": range }).sort(doc! { "_id": 1 }).await?;
        let prefix = contest.len() + 1;
        Ok(cur.map(move |d| {
            let d = d?;
            let text = |k| d.get_str(k).unwrap_or_default().to_owned();
            Ok(bandvote_contest::bulletin::Line { leaf: text("_id").get(prefix..).unwrap_or_default().to_owned(), band: text("band"), status: text("status") })
        }))
    }

    /// Contest `contest`'s bulletin index ([`Self::index_bulletin`];
    /// `docs/bulletin.md`), in order, as a stream.
    pub async fn bulletin_index(&self, contest: &str) -> Result<impl futures::Stream<Item = Result<bandvote_contest::bulletin::IndexEntry, mongodb::error::Error>> + use<>, mongodb::error::Error> {
        let cur = self.bulletin_chunks.find(doc! { "_id": Self::bulletin_range(contest) }).sort(doc! { "_id": 1 }).await?;
        Ok(cur.map(|d| d.map(|d| index_entry(&d))))
    }

    /// Vote `vote_id`'s place in contest `contest`'s indexed bulletin
    /// ([`Self::index_bulletin`]): its line and the audit path, from the
    /// index (n / 256 entries) and the one run of at most 256 lines that
    /// holds it, never the whole bulletin. `None` when it is not in it, or
    /// the bulletin has no index.
    pub async fn bulletin_inclusion(&self, contest: &str, vote_id: &str) -> Result<Option<bandvote_contest::bulletin::Inclusion>, mongodb::error::Error> {
        use bandvote_contest::bulletin::{chunked_proof, leaf_hash, leaf_id, unhex, Inclusion, CHUNK_LINES};
        let leaf = leaf_id(contest, vote_id);
        let prefix = contest.len() + 1;
        // The index, with each run's first and last leaf.
        let (mut roots, mut runs, mut size) = (Vec::new(), Vec::new(), 0u64);
        let mut cur = self.bulletin_chunks.find(doc! { "_id": Self::bulletin_range(contest) }).sort(doc! { "_id": 1 }).await?;
        while let Some(d) = cur.try_next().await? {
            let e = index_entry(&d);
            let Some(root) = unhex(&e.root) else { return Ok(None) };
            roots.push(root);
            size += e.lines;
            runs.push((d.get_str("_id").unwrap_or_default().get(prefix..).unwrap_or_default().to_owned(), d.get_str("last").unwrap_or_default().to_owned()));
        }
        // The run that would hold it: the last whose first leaf is not after it.
        let Some(run) = runs.partition_point(|(first, _)| *first <= leaf).checked_sub(1) else { return Ok(None) };
        let (first, last) = &runs[run];
        let range = doc! { "$gte": format!("{contest}:{first}"), "$lte": format!("{contest}:{last}") };
        let lines: Vec<bandvote_contest::bulletin::Line> = self.bulletin_lines(contest, range).await?.try_collect().await?;
        let Some(at) = lines.iter().position(|l| l.leaf == leaf) else { return Ok(None) };
        let leaves: Vec<_> = lines.iter().map(|l| leaf_hash(l.text().as_bytes())).collect();
        Ok(Some(Inclusion { index: (run * CHUNK_LINES + at) as u64, size, line: lines[at].text(), path: chunked_proof(&leaves, at, &roots, run) }))
    }

    /// The certified results (`<collection>_contest_results`, `_id` = contest id).
    pub fn certificates(&self) -> Collection<Document> {
        self.certificates.clone()
    }

    /// Write contest `c.contest`'s certificate; `false` if it was certified already (kept as it was).
    pub async fn save_certificate(&self, c: &Certificate) -> Result<bool, mongodb::error::Error> {
        let d = mongodb::bson::to_document(c).map_err(mongodb::error::Error::custom)?;
        match self.certificates().insert_one(d).await {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Take contest `contest`'s certify lease (`<collection>_certify_leases`,
    /// `_id` = contest) for `holder` until `now_ms + ttl_ms`: `true` if it
    /// was free, had run out, or was `holder`'s already (then renewed);
    /// `false` while another holder's runs. Only a lease's holder clears and
    /// writes a contest's bulletin, so a second certify never takes apart
    /// the bulletin the first one is certifying.
    pub async fn take_certify_lease(&self, contest: &str, holder: &str, now_ms: i64, ttl_ms: i64) -> Result<bool, mongodb::error::Error> {
        let until = now_ms.saturating_add(ttl_ms);
        match self.certify_leases.insert_one(doc! { "_id": contest, "holder": holder, "until_ms": until }).await {
            Ok(_) => return Ok(true),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e),
        }
        let set = doc! { "$set": { "holder": holder, "until_ms": until } };
        for taken_if in [doc! { "_id": contest, "holder": holder }, doc! { "_id": contest, "until_ms": { "$lt": now_ms } }] {
            if self.certify_leases.update_one(taken_if, set.clone()).await?.matched_count == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Give contest `contest`'s certify lease back (if `holder` has it).
    pub async fn release_certify_lease(&self, contest: &str, holder: &str) -> Result<(), mongodb::error::Error> {
        self.certify_leases.delete_one(doc! { "_id": contest, "holder": holder }).await.map(drop)
    }

    /// Contest `id`'s certificate, if it was certified.
    pub async fn certificate(&self, id: &str) -> Result<Option<Certificate>, mongodb::error::Error> {
        match self.certificates().find_one(doc! { "_id": id }).await? {
            Some(d) => mongodb::bson::from_document(d).map(Some).map_err(mongodb::error::Error::custom),
            None => Ok(None),
        }
    }

    /// Recompute the counters from the log (votes that count: outside any
    /// contest, or `counted` in theirs).
    pub async fn totals(&self) -> Result<Totals, mongodb::error::Error> {
        let mut t = Totals { total: self.votes.count_documents(counts_filter()).await?, ..Default::default() };
        for (field, out) in [("$band", &mut t.by_band), ("$album", &mut t.by_album)] {
            let mut cur = self.votes.aggregate([doc! { "$match": counts_filter() }, doc! { "$group": { "_id": field, "n": { "$sum": 1 } } }]).await?;
            while let Some(d) = cur.try_next().await? {
                let key = d.get_str("_id").unwrap_or_default().to_owned();
                let n = int(&d, "n").unwrap_or(0);
                out.insert(key, n as u64);
            }
        }
        Ok(t)
    }

    /// The highest stored offset per partition of `topic` (rebuild): one
    /// aggregation, no per-vote data leaves MongoDB.
    pub async fn stored_offsets(&self, topic: &str) -> Result<HashMap<i32, i64>, mongodb::error::Error> {
        let mut offsets = HashMap::new();
        let pipeline = [
            doc! { "$match": { "kafka.topic": topic } },
            doc! { "$group": { "_id": "$kafka.partition", "last": { "$max": "$kafka.offset" } } },
        ];
        let mut cur = self.votes.aggregate(pipeline).await?;
        while let Some(d) = cur.try_next().await? {
            let p = d.get_i32("_id").unwrap_or(0);
            let o = int(&d, "last").unwrap_or(-1);
            offsets.insert(p, o);
        }
        Ok(offsets)
    }

    /// One page of the log, newest first, optionally for one band, starting
    /// after `before` (keyset pagination: the cost of a page does not grow
    /// with its depth). Returns the votes and, when more follow, the cursor of
    /// the next page.
    pub async fn page(&self, band: Option<&str>, before: Option<&LogCursor>, limit: i64) -> Result<LogPage, mongodb::error::Error> {
        let mut filter = match band {
            Some(b) => doc! { "band": b },
            None => doc! {},
        };
        if let Some(c) = before {
            let t = DateTime::from_millis(c.received_at_ms);
            filter.insert(
                "$or",
                vec![
                    doc! { "received_at": { "$lt": t } },
                    doc! { "received_at": t, "kafka.partition": { "$lt": c.partition } },
                    doc! { "received_at": t, "kafka.partition": c.partition, "kafka.offset": { "$lt": c.offset } },
                ],
            );
        }
        let mut docs: Vec<Document> = self
            .votes
            .find(filter)
            .sort(doc! { "received_at": -1, "kafka.partition": -1, "kafka.offset": -1 })
            .limit(limit + 1)
            .await?
            .try_collect()
            .await?;
        let more = docs.len() as i64 > limit;
        docs.truncate(limit.max(0) as usize);
        let entries: Vec<LogEntry> = docs.iter().filter_map(LogEntry::of).collect();
        let unreadable = docs.len() - entries.len();
        // From the last document read, readable or not: a malformed document
        // never stops the paging.
        let next = if more { docs.last().and_then(LogCursor::of) } else { None };
        Ok(LogPage { entries, next, unreadable })
    }

    /// Votes in the log, from the collection's metadata (no scan).
    pub async fn estimated_count(&self) -> Result<u64, mongodb::error::Error> {
        self.votes.estimated_document_count().await
    }

    /// Close the client's connections (call before the async runtime ends).
    pub async fn close(&self) {
        self.votes.client().clone().shutdown().await;
    }

    pub async fn ping(&self) -> Result<(), mongodb::error::Error> {
        self.votes.estimated_document_count().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::LogCursor;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = LogCursor { received_at_ms: 1_700_000_000_123, partition: 4, offset: 99 };
        assert_eq!(c.to_string().parse::<LogCursor>(), Ok(c));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1.2.x"] {
            assert!(bad.parse::<LogCursor>().is_err(), "{bad}");
        }
    }
}
