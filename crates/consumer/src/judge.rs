//! What the consumer decides for each vote of a contest, before it is stored
//! and counted: the contest's rules on the record alone (window by the time
//! the intake received it, roster with its spelling), then the per-voter cap
//! against the counters. The cap is decided here, with the voter's records
//! in one partition (keyed by voter) in Kafka's order, against the counted
//! votes Redis holds as of the partition's applied offset; the apply script
//! refuses (STALE) if that offset moved before it runs, and the batch is
//! judged again. So replays and retries decide the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bandvote_contest::{Contest, Revote, VoteStatus};
use bandvote_store::contests::ContestStoreError;
use bandvote_store::{Choice, ContestStore, Located, VoteLog, VoterState};
use bandvote_vote::Vote;

use crate::contest_admin::now_ms;

/// Contest definitions by id, as the batch's votes name them.
pub type Contests = HashMap<String, Arc<Contest>>;

/// One vote's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The band as counted (the roster's spelling when it has one).
    pub band: String,
    /// `None`: the vote is in no contest (counted as always). The status
    /// it is applied with: a counted vote a later one replaces stays
    /// `Counted` here (the later one takes its counts back).
    pub status: Option<VoteStatus>,
    /// In a `revote = replace` contest, for a counted vote: the voter's
    /// counted vote it replaces (`Some(None)`: their first).
    pub replaces: Option<Option<Choice>>,
}

/// What judging a partition's caps decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decided {
    /// The partition's applied offset the caps were judged against (the
    /// apply script's `judged_at`).
    pub applied: i64,
    /// Indices whose status the caps decided (`Counted` or `OverLimit`).
    pub indices: Vec<usize>,
    /// Vote ids (in this batch or earlier) a later vote of their voter replaced.
    pub replaced: Vec<String>,
}

/// The rules that need nothing but the record and the contest. A vote that
/// names a contest this consumer cannot find is counted as it came (logged).
pub fn by_rules(vote: &Vote, contests: &Contests) -> Verdict {
    let Some(id) = &vote.contest else { return Verdict { band: vote.band.clone(), status: None, replaces: None } };
    let Some(contest) = contests.get(id) else {
        tracing::warn!(contest = %id, vote_id = %vote.vote_id, "vote names an unknown contest: counted without its rules");
        return Verdict { band: vote.band.clone(), status: Some(VoteStatus::Counted), replaces: None };
    };
    let status = contest.status(vote);
    let band = contest.roster_band(&vote.band).unwrap_or(&vote.band).to_owned();
    Verdict { band, status: Some(status), replaces: None }
}

/// The (contest, voter, cap) a still-counted vote is capped by, if any.
pub fn cap_of<'a>(vote: &'a Vote, verdict: &Verdict, contests: &Contests) -> Option<(&'a str, &'a str, u32)> {
    if verdict.status != Some(VoteStatus::Counted) {
        return None;
    }
    let id = vote.contest.as_deref()?;
    let cap = contests.get(id)?.votes_per_voter;
    (cap > 0).then_some((id, vote.voter.as_deref()?, cap))
}

/// Decide the per-voter cap for one partition's votes in offset order:
/// `state` is each (contest, voter)'s counted votes and choice as of
/// `applied`; votes at or below `applied` (already counted) and `skip`ped
/// ones (repeats) are left alone. With `revote = refuse` a vote past the
/// cap is `OverLimit`; with `replace` every vote counts and takes the
/// voter's earlier counted vote back (that one becomes `Replaced`).
pub fn apply_caps(
    votes: &[Located],
    verdicts: &mut [Verdict],
    contests: &Contests,
    applied: i64,
    mut state: HashMap<(String, String), VoterState>,
    skip: impl Fn(&Located) -> bool,
) -> Decided {
    let mut decided = Decided { applied, ..Decided::default() };
    for (i, v) in votes.iter().enumerate() {
        if v.offset <= applied || skip(v) {
            continue;
        }
        let Some((contest, voter, cap)) = cap_of(&v.vote, &verdicts[i], contests) else { continue };
        let s = state.entry((contest.to_owned(), voter.to_owned())).or_default();
        if contests.get(contest).is_some_and(|c| c.revote == Revote::Replace) {
            let mine = Choice { vote_id: v.vote.vote_id.clone(), band: verdicts[i].band.clone(), album: v.vote.album.clone() };
            let previous = s.choice.replace(mine);
            if let Some(p) = &previous {
                decided.replaced.push(p.vote_id.clone());
            }
            verdicts[i].replaces = Some(previous);
        } else if s.counted >= u64::from(cap) {
            verdicts[i].status = Some(VoteStatus::OverLimit);
        } else {
            s.counted += 1;
        }
        decided.indices.push(i);
    }
    decided
}

/// Contest definitions, read when a batch names them (MongoDB's record
/// first, Redis when the record has none) and kept for a second, but only
/// for votes received before the definition was read (less
/// [`RECEIVED_MARGIN_MS`] for the intakes' clocks): a vote received after
/// it may fall under a change made since (a close), so its batch reads the
/// record again. Without that a vote an intake took after the close (on a
/// definition it had not yet refreshed, or an older one restored into
/// Redis) was judged by a definition read before the close and counted.
pub struct ContestBook {
    store: ContestStore,
    log: VoteLog,
    cache: Mutex<HashMap<String, Cached>>,
}

/// How far an intake's clock may be ahead of this consumer's when a cached
/// definition is judged fresh enough for a vote.
pub const RECEIVED_MARGIN_MS: i64 = 1_000;

/// A definition (or its absence), when it was read, and the wall clock then (ms).
type Cached = (Option<Arc<Contest>>, Instant, i64);

impl ContestBook {
    pub fn new(store: ContestStore, log: VoteLog) -> Self {
        Self { store, log, cache: Mutex::new(HashMap::new()) }
    }

    /// The definitions of the contests `votes` name.
    pub async fn load<'a>(&self, votes: impl Iterator<Item = &'a Located>) -> Result<Contests, ContestStoreError> {
        // Each named contest and the newest vote's receipt time for it.
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for v in votes {
            if let Some(id) = v.vote.contest.as_deref() {
                let at = newest.entry(id).or_insert(i64::MIN);
                *at = (*at).max(v.vote.received_at_ms);
            }
        }
        let mut out = Contests::new();
        for (id, newest_ms) in newest {
            let cached = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned();
            let def = match cached {
                Some((def, at, read_ms)) if at.elapsed() < Duration::from_secs(1) && newest_ms.saturating_add(RECEIVED_MARGIN_MS) < read_ms => def,
                _ => {
                    let read_ms = now_ms();
                    // MongoDB's record first: Redis may hold an older
                    // definition (restored from an older snapshot).
                    let def = match self.log.contest(id).await.map_err(|e| ContestStoreError::Corrupt { id: id.to_owned(), error: e.to_string() })? {
                        Some(def) => Some(def),
                        None => self.store.get(id).await?,
                    };
                    let def = def.map(Arc::new);
                    self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned(), (def.clone(), Instant::now(), read_ms));
                    def
                }
            };
            if let Some(def) = def {
                out.insert(id.to_owned(), def);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bandvote_contest::{Entry, Revote, Voters};

    #[test]
    fn replace_takes_the_earlier_vote_back_in_offset_order() {
        let mut c = contests(1);
        Arc::make_mut(c.get_mut("c1").unwrap()).revote = Revote::Replace;
        let votes = vec![located(6, "Maná", "a", 10), located(7, "Alux Nahual", "a", 10), located(8, "Maná", "b", 10)];
        let mut verdicts: Vec<Verdict> = votes.iter().map(|v| by_rules(&v.vote, &c)).collect();
        let earlier = Choice { vote_id: "old".into(), band: "Alux Nahual".into(), album: "x".into() };
        let state = HashMap::from([(("c1".to_owned(), "a".to_owned()), VoterState { counted: 1, choice: Some(earlier.clone()) })]);
        let decided = apply_caps(&votes, &mut verdicts, &c, 5, state, |_| false);
        assert_eq!(decided.replaced, vec!["old".to_owned(), "id-6".to_owned()], "a's earlier vote, then a's vote 6 by vote 7");
        assert_eq!(verdicts[0].replaces, Some(Some(earlier)));
        assert_eq!(verdicts[1].replaces.as_ref().unwrap().as_ref().unwrap().vote_id, "id-6");
        assert_eq!(verdicts[2].replaces, Some(None), "b's first");
        assert!(verdicts.iter().all(|v| v.status == Some(VoteStatus::Counted)));
    }

    fn contests(cap: u32) -> Contests {
        let c = Contest {
            id: "c1".into(),
            title: "t".into(),
            roster: vec![Entry { band: "Alux Nahual".into(), albums: vec![] }, Entry { band: "Maná".into(), albums: vec![] }],
            opens_at_ms: 0,
            closes_at_ms: 1_000,
            votes_per_voter: cap,
            revote: Revote::Refuse,
            voters: Voters::Id,
        };
        HashMap::from([("c1".to_owned(), Arc::new(c))])
    }

    fn located(offset: i64, band: &str, voter: &str, at: i64) -> Located {
        let mut vote = bandvote_vote::RawVote {
            band: Some(band.into()),
            album: Some("x".into()),
            year: Some("1990".into()),
            rank: Some("1".into()),
            vote_id: Some(format!("id-{offset}")),
            voter: Some(voter.into()),
        }
        .validate(bandvote_vote::Source::Http, at, None)
        .unwrap();
        vote.contest = Some("c1".into());
        Located { partition: 0, offset, vote }
    }

    #[test]
    fn rules_use_the_roster_spelling_and_the_received_time() {
        let c = contests(0);
        assert_eq!(by_rules(&located(1, "alux  nahual", "a", 10).vote, &c), Verdict { band: "Alux Nahual".into(), status: Some(VoteStatus::Counted), replaces: None });
        assert_eq!(by_rules(&located(1, "Maná", "a", 1_000).vote, &c).status, Some(VoteStatus::Late));
        assert_eq!(by_rules(&located(1, "Soda", "a", 10).vote, &c).status, Some(VoteStatus::UnknownBand));
        let mut plain = located(1, "Soda", "a", 10).vote;
        plain.contest = None;
        assert_eq!(by_rules(&plain, &c).status, None);
    }

    #[test]
    fn the_cap_counts_from_the_applied_state_in_offset_order() {
        let c = contests(2);
        let votes = vec![
            located(5, "Maná", "a", 10),   // already applied: left alone
            located(6, "Maná", "a", 10),   // a's second vote (1 counted before)
            located(7, "Maná", "a", 10),   // a's third: over
            located(8, "Maná", "b", 10),   // a repeat: skipped
            located(9, "Maná", "b", 10),   // b's first
            located(10, "Maná", "a", 2_000), // late: not capped
        ];
        let mut verdicts: Vec<Verdict> = votes.iter().map(|v| by_rules(&v.vote, &c)).collect();
        let state = HashMap::from([(("c1".to_owned(), "a".to_owned()), VoterState { counted: 1, choice: None })]);
        let decided = apply_caps(&votes, &mut verdicts, &c, 5, state, |v| v.offset == 8);
        assert_eq!(decided.indices, vec![1, 2, 4]);
        let s: Vec<_> = verdicts.iter().map(|v| v.status.unwrap().as_str()).collect();
        assert_eq!(s, ["counted", "counted", "over_limit", "counted", "counted", "late"]);
    }
}
