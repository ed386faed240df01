//! Recount: recompute every counter from the MongoDB vote log (or from the
//! Kafka topic itself) and diff it against Redis's hashes and leaderboards;
//! optionally rebuild Redis from the log.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use bandvote_vote::record;
use rdkafka::message::Message;

use bandvote_store::VoteLog;
use bandvote_store::{Counters, Totals};
use crate::SinkError;

/// One difference between the log and the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub what: String,
    pub log: u64,
    pub counters: u64,
}

/// Differences between two sets of totals (empty when they agree).
pub fn diff(log: &Totals, counters: &Totals) -> Vec<Difference> {
    let mut out = Vec::new();
    if log.total != counters.total {
        out.push(Difference { what: "total".into(), log: log.total, counters: counters.total });
    }
    for (kind, a, b) in [("band", &log.by_band, &counters.by_band), ("album", &log.by_album, &counters.by_album)] {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (x, y) = (a.get(k).copied().unwrap_or(0), b.get(k).copied().unwrap_or(0));
            if x != y {
                out.push(Difference { what: format!("{kind} {k:?}"), log: x, counters: y });
            }
        }
    }
    out
}

/// `diff`, with each difference's name prefixed by `what`.
fn diff_labelled(what: &str, a: &Totals, b: &Totals) -> Vec<Difference> {
    diff(a, b).into_iter().map(|d| Difference { what: format!("{what}: {}", d.what), ..d }).collect()
}

/// Compare the log with the counters: the hashes and the leaderboards.
pub async fn recount(log: &VoteLog, counters: &Counters) -> Result<(Totals, Vec<Difference>), SinkError> {
    let from_log = log.totals().await?;
    let mut d = diff(&from_log, &counters.totals().await?);
    d.extend(diff_labelled("leaderboard", &from_log, &counters.leaderboard_totals().await?));
    Ok((from_log, d))
}

/// What reading the whole topic found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicScan {
    /// Distinct vote ids per band and album (the first record of each id counts).
    pub totals: Totals,
    pub records: u64,
    /// Records whose vote id appeared before (client retries that reached Kafka twice).
    pub repeats: u64,
    /// Records that do not decode as votes (they went to the dead-letter topic).
    pub undecodable: u64,
}

/// Read `topic` from the beginning to the high watermarks taken at the start
/// (assigned partitions, no consumer group, nothing committed) and count
/// distinct vote ids. Blocking; holds every vote id in memory (an audit tool).
pub fn totals_from_kafka(brokers: &str, topic: &str, timeout: Duration) -> Result<TopicScan, rdkafka::error::KafkaError> {
    let mut scan = TopicScan::default();
    let mut seen: HashSet<String> = HashSet::new();
    bandvote_kafka::scan_topic(brokers, topic, timeout, timeout * 30, |m| {
        scan.records += 1;
        match record::decode(m.payload().unwrap_or_default()) {
            Ok(v) if seen.insert(v.vote_id.clone()) => {
                scan.totals.total += 1;
                *scan.totals.by_band.entry(v.band).or_default() += 1;
                *scan.totals.by_album.entry(v.album).or_default() += 1;
            }
            Ok(_) => scan.repeats += 1,
            Err(_) => scan.undecodable += 1,
        }
    })?;
    Ok(scan)
}

/// Compare what the topic holds with Redis (hashes and leaderboards) and MongoDB.
pub async fn recount_from_kafka(
    brokers: &str,
    topic: &str,
    log: &VoteLog,
    counters: &Counters,
) -> Result<(TopicScan, Vec<Difference>), SinkError> {
    let (brokers, t) = (brokers.to_owned(), topic.to_owned());
    let scan = tokio::task::spawn_blocking(move || totals_from_kafka(&brokers, &t, Duration::from_secs(10)))
        .await
        .map_err(|e| SinkError::Kafka(e.to_string()))?
        .map_err(|e| SinkError::Kafka(e.to_string()))?;
    let mut d = diff_labelled("redis", &scan.totals, &counters.totals().await?);
    d.extend(diff_labelled("leaderboard", &scan.totals, &counters.leaderboard_totals().await?));
    d.extend(diff_labelled("mongodb", &scan.totals, &log.totals().await?));
    Ok((scan, d))
}

/// How long a rebuild may hold the marker before it expires by itself (a crashed rebuild).
const REBUILD_TTL: Duration = Duration::from_secs(300);
/// How long an applier's announcement of a batch lives if it dies mid-batch;
/// a rebuild waits at most this long for appliers to finish.
pub const APPLY_TTL: Duration = Duration::from_secs(60);

/// Rebuild the counters and applied offsets from the log, safe with any
/// number of live consumers. The `rebuilding` marker stops new batches (an
/// applier announces each batch with `begin_apply`, which fails under the
/// marker, and the apply script refuses under it too); the rebuild then waits
/// until no applier is between its announcement and its end, so MongoDB is
/// not written while it is read: totals and offsets come from the same state.
/// A batch refused meanwhile is retried after the rebuild: if MongoDB had it,
/// its offsets are at or below the rebuilt ones (skipped), else above (counted).
/// `Ok(None)` when another rebuild is running.
pub async fn rebuild(log: &VoteLog, counters: &Counters, topic: &str) -> Result<Option<Totals>, SinkError> {
    let token = format!("{}-{}", std::process::id(), uuid::Uuid::now_v7());
    if !counters.begin_rebuild(&token, REBUILD_TTL).await? {
        return Ok(None);
    }
    let result = async {
        let deadline = std::time::Instant::now() + APPLY_TTL + Duration::from_secs(5);
        while counters.appliers_writing().await? > 0 {
            if std::time::Instant::now() > deadline {
                return Err(SinkError::Rebuilding);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let totals = log.totals().await?;
        let offsets: HashMap<i32, i64> = log.stored_offsets(topic).await?;
        let mut contests = log.contest_counts_all().await?;
        for (id, c) in &mut contests {
            // A voter's choice is kept only where a later vote replaces it.
            if log.contest(id).await?.is_none_or(|def| def.revote != bandvote_contest::Revote::Replace) {
                c.choice.clear();
            }
        }
        counters.replace_all(&token, topic, &totals, &offsets, &contests).await?;
        Ok::<_, SinkError>(totals)
    }
    .await;
    if result.is_err() {
        let _ = counters.end_rebuild(&token).await;
    }
    result.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_difference() {
        let mut a = Totals { total: 3, ..Default::default() };
        a.by_band.insert("x".into(), 2);
        a.by_band.insert("y".into(), 1);
        let mut b = a.clone();
        assert!(diff(&a, &b).is_empty());
        b.by_band.insert("y".into(), 2);
        b.by_album.insert("z".into(), 1);
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], Difference { what: "band \"y\"".into(), log: 1, counters: 2 });
    }
}
