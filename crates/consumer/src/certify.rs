//! `contest certify`: the final result, checked three ways. It waits until
//! no vote received before the close can still reach Kafka (the settle time
//! from the configuration, and every live intake's report that it has
//! published past the close), then until every partition of the topic is
//! applied up to its end, recounts the
//! contest from Kafka (distinct vote ids) and from MongoDB (status and band
//! of each), compares both with Redis's tally, and only when all agree
//! writes the [`Certificate`] (counts per band, refusals by status, end
//! offsets, a SHA-256 over the counted `(vote_id, band)` pairs).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bandvote_contest::bulletin::{leaf_id, Line, Summary};
use bandvote_contest::{Certificate, Contest, Phase, ResultDigest, VoteStatus};
use futures::TryStreamExt as _;
use bandvote_store::published_through::still_publishing;
use bandvote_store::{ContestStore, Counters, PublishedThrough, VoteLog};
use bandvote_vote::record;

use crate::contest_admin::now_ms;
use rdkafka::message::Message as _;

/// Why a contest was not certified.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    #[error("contest {id:?} is still open until {closes_at_ms} (ms since the epoch): close it first")]
    NotClosed { id: String, closes_at_ms: i64 },
    #[error("intake(s) {intakes} still hold votes received before the close after {waited:?} (their last report: published through {through})")]
    IntakesBehind { intakes: String, through: String, waited: Duration },
    #[error("the consumer has not applied partition {partition} up to its end ({applied} < {end}) after {waited:?}")]
    NotApplied { partition: i32, applied: i64, end: i64, waited: Duration },
    #[error("{} difference(s) between Kafka, MongoDB and Redis:\n  {}", .0.len(), .0.join("\n  "))]
    Differences(Vec<String>),
    #[error("another certify of contest {id:?} still holds its lease after {waited:?} (a crashed one's lease runs out within {ttl:?}): run it again")]
    Busy { id: String, waited: Duration, ttl: Duration },
    #[error("this certify of contest {0:?} lost its lease (not renewed in time: MongoDB unreachable?); nothing certified: run it again")]
    LeaseLost(String),
    #[error("{0}")]
    Store(String),
}

fn store_err(e: impl std::fmt::Display) -> CertifyError {
    CertifyError::Store(e.to_string())
}

/// Wait (up to `wait`) until no intake that could still publish a vote
/// received before the close holds one: each has reported past the close,
/// or has been silent longer than [`Settle::intake_gone_after`].
async fn wait_for_intakes(contest: &Contest, reports: &PublishedThrough, wait: Duration, settle: Settle) -> Result<(), CertifyError> {
    let gone_after = i64::try_from(settle.intake_gone_after().as_millis()).unwrap_or(i64::MAX);
    let started = Instant::now();
    loop {
        let all = reports.all().await.map_err(store_err)?;
        let pending = still_publishing(&all, contest.closes_at_ms, now_ms(), gone_after);
        if pending.is_empty() {
            return Ok(());
        }
        let intakes = pending.iter().map(|r| r.intake.as_str()).collect::<Vec<_>>().join(", ");
        let through = pending.iter().map(|r| r.through_ms.to_string()).collect::<Vec<_>>().join(", ");
        if started.elapsed() > wait {
            return Err(CertifyError::IntakesBehind { intakes, through, waited: wait });
        }
        eprintln!("certify: waiting for intake(s) {intakes} to publish what they received before the close ({}; published through {through})", contest.closes_at_ms);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The end offset of every partition of `topic` (its high watermark).
fn end_offsets(brokers: &str, topic: &str) -> Result<BTreeMap<i32, i64>, CertifyError> {
    bandvote_kafka::watermarks_of(brokers, topic, Duration::from_secs(10)).map(|w| w.into_iter().map(|(p, _, high)| (p, high)).collect()).map_err(store_err)
}

/// How long votes of a closed contest may still reach Kafka, from the
/// deployment's configuration (the intakes' and certify's flags agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// The intakes' delivery timeout (a producer's longest try).
    pub delivery_timeout: Duration,
    /// How far an intake's clock may be behind the operator's.
    pub clock_skew: Duration,
    /// How long an idempotency key keeps standing for its vote (a retry is
    /// answered and published as its first attempt for that long).
    pub claim_window: Duration,
}

/// An intake's reports come about every second ([`bandvote_store::published_through`]);
/// one missed, plus the Redis call's time, is within this.
const REPORT_SLACK: Duration = Duration::from_secs(3);

impl Settle {
    /// The longest time after the close at which a vote of the contest may
    /// still reach Kafka: a retry of a vote admitted before the close is
    /// answered and published as the first attempt for as long as its key's
    /// claim lasts (`claim_window` from the first attempt, so at most that
    /// long after the close); its producer may then take up to the delivery
    /// timeout (+ the 1 s guard on a lost report) to deliver it; the intake's
    /// clock may be `clock_skew` behind the operator's.
    pub fn after_close(&self) -> Duration {
        self.claim_window + self.delivery_timeout + Duration::from_secs(1) + self.clock_skew
    }

    /// An intake silent this long has stopped, or lost Redis (and admits no
    /// contest vote without it): what it had in flight was delivered or
    /// failed within its delivery timeout. Certify stops waiting for it.
    pub fn intake_gone_after(&self) -> Duration {
        self.delivery_timeout + Duration::from_secs(1) + self.clock_skew + REPORT_SLACK
    }
}

/// Certify contest `id` (or print the certificate it already has). The
/// topic is read only once [`Settle::after_close`] has passed since the
/// close and every intake in `reports` that could still publish has
/// reported past the close (waiting up to `wait`), so no vote received
/// before the close can still arrive after it.
#[allow(clippy::too_many_arguments)]
pub async fn certify(
    brokers: &str,
    topic: &str,
    contest: &Contest,
    contests: &ContestStore,
    counters: &Counters,
    log: &VoteLog,
    reports: &PublishedThrough,
    wait: Duration,
    settle: Settle,
) -> Result<(Certificate, bool), CertifyError> {
    let id = contest.id.as_str();
    if contest.phase(now_ms()) != Phase::Closed {
        return Err(CertifyError::NotClosed { id: id.to_owned(), closes_at_ms: contest.closes_at_ms });
    }
    if let Some(c) = log.certificate(id).await.map_err(store_err)? {
        return Ok((c, false));
    }
    // One certify of a contest at a time: a second waits for the first's
    // lease, then finds its certificate.
    let lease = match Lease::take(log, id, wait).await? {
        Taken::Lease(lease) => lease,
        Taken::Certified(c) => return Ok((c, false)),
    };
    // Everything below runs holding the lease; it is given back whatever the outcome.
    let result: Result<(Certificate, bool), CertifyError> = async {
        let settled_at = contest.closes_at_ms.saturating_add(i64::try_from(settle.after_close().as_millis()).unwrap_or(i64::MAX));
        let left = settled_at - now_ms();
        if left > 0 {
            eprintln!("certify: waiting {left} ms after the close for votes received before it, and their retries, to reach Kafka (claim window + delivery timeout + 1 s + clock skew)");
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
        wait_for_intakes(contest, reports, wait, settle).await?;
        // 1. Kafka: the contest's distinct vote ids, up to the ends taken now
        // (after the close), and the last offset per partition that holds the
        // first record of one of them (what must be applied).
        let (b, t, cid) = (brokers.to_owned(), topic.to_owned(), id.to_owned());
        let ends = tokio::task::spawn_blocking(move || end_offsets(&b, &t)).await.map_err(store_err)??;
        let (b, t) = (brokers.to_owned(), topic.to_owned());
        let (mut in_kafka, needed) = tokio::task::spawn_blocking(move || {
            let mut ids = KafkaVotes::new();
            let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
            bandvote_kafka::scan_topic(&b, &t, Duration::from_secs(10), Duration::from_secs(600), |m| {
                if let Ok(v) = record::decode(m.payload().unwrap_or_default())
                    && v.contest.as_deref() == Some(cid.as_str())
                    && let std::collections::hash_map::Entry::Vacant(e) = ids.entry(fingerprint(&leaf_id(&cid, &v.vote_id)))
                {
                    e.insert((m.partition(), m.offset()));
                    let last = needed.entry(m.partition()).or_insert(-1);
                    *last = (*last).max(m.offset());
                }
            })
            .map(|()| (ids, needed))
        })
        .await
        .map_err(store_err)?
        .map_err(store_err)?;
        // 2. The consumer has applied all of them (repeats and other records
        // after them need not be: they count nothing in this contest).
        let started = Instant::now();
        loop {
            let applied = counters.applied_offsets(topic).await.map_err(store_err)?;
            let behind = needed.iter().find(|(p, last)| applied.get(p).copied().unwrap_or(-1) < **last);
            let Some((p, last)) = behind else { break };
            if started.elapsed() > wait {
                return Err(CertifyError::NotApplied { partition: *p, applied: applied.get(p).copied().unwrap_or(-1), end: *last + 1, waited: wait });
            }
            eprintln!("certify: waiting for the consumer: partition {p} applied up to {} of {last}", applied.get(p).copied().unwrap_or(-1));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // 3. MongoDB, read once, the bulletin written as it goes (cleared
        // first: only while this certify still holds the lease).
        let votes_in_kafka = in_kafka.len();
        lease.still_held().await?;
        if let Some(c) = log.certificate(id).await.map_err(store_err)? {
            // Certified by another certify while this one's lease had run out:
            // its bulletin is the certified one, never cleared.
            return Ok((c, false));
        }
        let pass = write_bulletin(log, id, &mut in_kafka).await?;
        let mut diffs = Vec::new();
        if !in_kafka.is_empty() || !pass.not_in_kafka.is_empty() {
            let kafka_only: Vec<String> = in_kafka.values().take(5).map(|(p, o)| format!("partition {p} offset {o}")).collect();
            diffs.push(format!(
                "votes: {votes_in_kafka} in Kafka, {} in MongoDB (in Kafka only: {}, first few: {kafka_only:?}; in MongoDB only, first few: {:?})",
                pass.bulletin.lines,
                in_kafka.len(),
                pass.not_in_kafka
            ));
        }
        let LogPass { bulletin: Summary { lines, root, by_band, by_status }, digest, .. } = pass;
        // 4. Redis's live tally against the log.
        let tally = contests.tally(id).await.map_err(store_err)?;
        let total: i64 = by_band.values().sum();
        if tally.total as i64 != total {
            diffs.push(format!("counted: MongoDB {total}, Redis {}", tally.total));
        }
        compare("band", &by_band, &tally.by_band, &mut diffs);
        compare("status", &by_status, &tally.by_status, &mut diffs);
        if !diffs.is_empty() {
            return Err(CertifyError::Differences(diffs));
        }
        let certificate = Certificate {
            contest: id.to_owned(),
            title: contest.title.clone(),
            certified_at_ms: now_ms(),
            total,
            by_band,
            by_status,
            end_offsets: ends.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
            votes_in_kafka: votes_in_kafka as i64,
            digest,
            bulletin_root: root,
            bulletin_lines: lines as i64,
        };
        lease.still_held().await?;
        let written = log.save_certificate(&certificate).await.map_err(store_err)?;
        if !written {
            // Another certify won the race: show the one stored.
            return log.certificate(id).await.map_err(store_err)?.map(|c| (c, false)).ok_or_else(|| store_err("certificate vanished"));
        }
        Ok((certificate, true))
    }
    .await;
    lease.release().await;
    result
}

/// How long a certify's lease on its contest lasts unless renewed (it is,
/// every [`LEASE_RENEW`], while certify runs): how long a crashed certify
/// keeps the next one waiting.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a running certify renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);

/// A certify's hold on its contest (`VoteLog::take_certify_lease`), renewed
/// in the background until released.
struct Lease {
    log: VoteLog,
    contest: String,
    holder: String,
    renewing: tokio::task::JoinHandle<()>,
}

enum Taken {
    Lease(Lease),
    /// Certified by the certify that held the lease.
    Certified(Certificate),
}

impl Lease {
    /// The lease, once free (checked every second, up to `wait`), or the
    /// certificate the certify that held it wrote.
    async fn take(log: &VoteLog, contest: &str, wait: Duration) -> Result<Taken, CertifyError> {
        let holder = uuid::Uuid::now_v7().to_string();
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let started = Instant::now();
        loop {
            if log.take_certify_lease(contest, &holder, now_ms(), ttl).await.map_err(store_err)? {
                // Certified while this one waited: nothing to do.
                if let Some(c) = log.certificate(contest).await.map_err(store_err)? {
                    log.release_certify_lease(contest, &holder).await.map_err(store_err)?;
                    return Ok(Taken::Certified(c));
                }
                let renewing = tokio::spawn({
                    let (log, contest, holder) = (log.clone(), contest.to_owned(), holder.clone());
                    async move {
                        loop {
                            tokio::time::sleep(LEASE_RENEW).await;
                            if let Err(e) = log.take_certify_lease(&contest, &holder, now_ms(), ttl).await {
                                eprintln!("certify: renewing the lease failed ({e}); trying again in {LEASE_RENEW:?}");
                            }
                        }
                    }
                });
                return Ok(Taken::Lease(Self { log: log.clone(), contest: contest.to_owned(), holder, renewing }));
            }
            if let Some(c) = log.certificate(contest).await.map_err(store_err)? {
                return Ok(Taken::Certified(c));
            }
            if started.elapsed() > wait {
                return Err(CertifyError::Busy { id: contest.to_owned(), waited: wait, ttl: LEASE_TTL });
            }
            eprintln!("certify: another certify of {contest:?} holds its lease: waiting for it");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Renew now: `Err` if another certify has taken the lease (this one's ran out).
    async fn still_held(&self) -> Result<(), CertifyError> {
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        match self.log.take_certify_lease(&self.contest, &self.holder, now_ms(), ttl).await.map_err(store_err)? {
            true => Ok(()),
            false => Err(CertifyError::LeaseLost(self.contest.clone())),
        }
    }

    async fn release(self) {
        self.renewing.abort();
        if let Err(e) = self.log.release_certify_lease(&self.contest, &self.holder).await {
            eprintln!("certify: giving the lease back failed ({e}); it runs out within {LEASE_TTL:?}");
        }
    }
}

/// A vote's leaf id (hex) cut to 16 bytes: what certify keeps per vote of
/// Kafka to find it in MongoDB (a collision would need 2^64 votes).
pub fn fingerprint(leaf: &str) -> u128 {
    leaf.get(..32).and_then(|h| u128::from_str_radix(h, 16).ok()).unwrap_or_default()
}

/// A contest's votes in Kafka: each one's [`fingerprint`] (16 bytes, not
/// its id) and the record that first held it (partition, offset): a contest
/// of millions of votes fits in memory.
pub type KafkaVotes = HashMap<u128, (i32, i64)>;

/// What one pass over a contest's votes in MongoDB found.
#[derive(Debug)]
pub struct LogPass {
    /// The bulletin as written and read back: its lines, root and tally
    /// (which are MongoDB's: one line per vote).
    pub bulletin: Summary,
    /// The certificate's digest over the counted votes.
    pub digest: String,
    /// Up to 5 vote ids MongoDB holds and `in_kafka` did not.
    pub not_in_kafka: Vec<String>,
}

/// Read contest `id`'s votes from MongoDB once, in vote-id order, and write
/// its public bulletin (`docs/bulletin.md`: each vote's line by its leaf id,
/// never the vote id) as it goes: the tally and the digest, and which votes
/// `in_kafka` holds (removed from it: what is left is in Kafka only). Then
/// the stored bulletin is read back in its order for its root and index,
/// and must be what was written. Memory: one batch of lines, whatever the
/// contest's size (certify's `in_kafka` aside).
pub async fn write_bulletin(log: &VoteLog, id: &str, in_kafka: &mut KafkaVotes) -> Result<LogPass, CertifyError> {
    log.clear_bulletin(id).await.map_err(store_err)?;
    let (mut written, mut digest, mut not_in_kafka) = (Summary::default(), ResultDigest::default(), Vec::new());
    let mut lines = Vec::with_capacity(1_000);
    let mut votes = std::pin::pin!(log.contest_votes(id).await.map_err(store_err)?);
    while let Some((vote_id, band, status)) = votes.try_next().await.map_err(store_err)? {
        if status == VoteStatus::Counted.as_str() {
            digest.push(&vote_id, &band);
        }
        let leaf = leaf_id(id, &vote_id);
        if in_kafka.remove(&fingerprint(&leaf)).is_none() && not_in_kafka.len() < 5 {
            not_in_kafka.push(vote_id);
        }
        let line = Line { leaf, band, status };
        written.add(&line);
        lines.push(line);
        if lines.len() == 1_000 {
            log.save_bulletin(id, &std::mem::take(&mut lines)).await.map_err(store_err)?;
        }
    }
    log.save_bulletin(id, &lines).await.map_err(store_err)?;
    let Some(digest) = digest.finish() else {
        return Err(CertifyError::Store("MongoDB did not return the contest's votes in vote-id order: no digest".into()));
    };
    // Another certify of the same contest running at once (which clears
    // the bulletin) shows here.
    let bulletin = log.index_bulletin(id).await.map_err(store_err)?;
    written.root.clone_from(&bulletin.root);
    if bulletin != written {
        return Err(CertifyError::Store(format!(
            "the bulletin read back ({} lines) is not the {} lines written: another certify of {id:?} running at once? Run it again",
            bulletin.lines, written.lines
        )));
    }
    Ok(LogPass { bulletin, digest, not_in_kafka })
}

fn compare(what: &str, log: &BTreeMap<String, i64>, redis: &HashMap<String, u64>, diffs: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = log.keys().chain(redis.keys()).collect();
    for k in keys {
        let (a, b) = (log.get(k).copied().unwrap_or(0), redis.get(k).copied().unwrap_or(0) as i64);
        if a != b {
            diffs.push(format!("{what} {k:?}: MongoDB {a}, Redis {b}"));
        }
    }
}
