//! Recount: recompute every counter from the MongoDB vote log and diff it
//! against Redis; optionally rebuild Redis from the log.

use std::collections::{BTreeSet, HashMap};

use crate::mongo::VoteLog;
use crate::redis::{Counters, Totals};
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

/// Compare the log with the counters.
pub async fn recount(log: &VoteLog, counters: &Counters) -> Result<(Totals, Vec<Difference>), SinkError> {
    let from_log = log.totals().await?;
    let live = counters.totals().await?;
    let d = diff(&from_log, &live);
    Ok((from_log, d))
}

/// Rebuild the counters, seen-set and applied offsets from the log.
pub async fn rebuild(log: &VoteLog, counters: &Counters, topic: &str) -> Result<Totals, SinkError> {
    let totals = log.totals().await?;
    let (ids, offsets): (Vec<String>, HashMap<i32, i64>) = log.ids_and_offsets(topic).await?;
    counters.replace_all(topic, &totals, &ids, &offsets).await?;
    Ok(totals)
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
