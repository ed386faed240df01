//! `contest certify`: the final result, checked three ways. It waits until
//! no vote received before the close can still reach Kafka (the settle time
//! from the configuration, and every live intake's report that it has
//! published past the close), then until every partition of the topic is
//! applied up to its end, recounts the
//! contest from Kafka (distinct vote ids) and from MongoDB (status and band
//! of each), compares both with Redis's tally, and only when all agree
//! writes the [`Certificate`] (counts per band, refusals by status, end
//! offsets, a SHA-256 over the counted `(vote_id, band)` pairs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bandvote_contest::{Certificate, Contest, Phase, VoteStatus};
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
    let (in_kafka, needed) = tokio::task::spawn_blocking(move || {
        let mut ids: HashSet<String> = HashSet::new();
        let mut needed: BTreeMap<i32, i64> = BTreeMap::new();
        bandvote_kafka::scan_topic(&b, &t, Duration::from_secs(10), Duration::from_secs(600), |m| {
            if let Ok(v) = record::decode(m.payload().unwrap_or_default())
                && v.contest.as_deref() == Some(cid.as_str())
                && ids.insert(v.vote_id)
            {
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
    // 3. MongoDB: each vote's status and band.
    let votes = log.contest_votes(id).await.map_err(store_err)?;
    let mut diffs = Vec::new();
    let in_log: HashSet<&str> = votes.iter().map(|(v, _, _)| v.as_str()).collect();
    let missing: Vec<&String> = in_kafka.iter().filter(|v| !in_log.contains(v.as_str())).take(5).collect();
    if in_kafka.len() != in_log.len() || !missing.is_empty() {
        diffs.push(format!("votes: {} in Kafka, {} in MongoDB (in Kafka only, first few: {missing:?})", in_kafka.len(), in_log.len()));
    }
    let mut by_band: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
    let mut counted = Vec::new();
    for (vote_id, band, status) in &votes {
        *by_status.entry(status.clone()).or_default() += 1;
        if status == VoteStatus::Counted.as_str() {
            *by_band.entry(band.clone()).or_default() += 1;
            counted.push((vote_id.clone(), band.clone()));
        }
    }
    // 4. Redis's live tally against the log.
    let tally = contests.tally(id).await.map_err(store_err)?;
    let total = counted.len() as i64;
    if tally.total as i64 != total {
        diffs.push(format!("counted: MongoDB {total}, Redis {}", tally.total));
    }
    compare("band", &by_band, &tally.by_band, &mut diffs);
    compare("status", &by_status, &tally.by_status, &mut diffs);
    if !diffs.is_empty() {
        return Err(CertifyError::Differences(diffs));
    }
    // The public bulletin: every vote of the contest, by its leaf id (never
    // the vote id), with its band and status; its root goes into the
    // certificate (`docs/bulletin.md`).
    let mut lines: Vec<bandvote_contest::bulletin::Line> = votes
        .iter()
        .map(|(vote_id, band, status)| bandvote_contest::bulletin::Line { leaf: bandvote_contest::bulletin::leaf_id(id, vote_id), band: band.clone(), status: status.clone() })
        .collect();
    lines.sort_unstable_by(|a, b| a.leaf.cmp(&b.leaf));
    let mut root = bandvote_contest::bulletin::RootBuilder::default();
    for l in &lines {
        root.push(bandvote_contest::bulletin::leaf_hash(l.text().as_bytes()));
    }
    log.save_bulletin(id, &lines).await.map_err(store_err)?;
    let certificate = Certificate {
        contest: id.to_owned(),
        title: contest.title.clone(),
        certified_at_ms: now_ms(),
        total,
        by_band,
        by_status,
        end_offsets: ends.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
        votes_in_kafka: in_kafka.len() as i64,
        digest: bandvote_contest::result_digest(counted),
        bulletin_root: bandvote_contest::bulletin::hex(&root.root()),
        bulletin_lines: root.size() as i64,
    };
    let written = log.save_certificate(&certificate).await.map_err(store_err)?;
    if !written {
        // Another certify won the race: show the one stored.
        return log.certificate(id).await.map_err(store_err)?.map(|c| (c, false)).ok_or_else(|| store_err("certificate vanished"));
    }
    Ok((certificate, true))
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
