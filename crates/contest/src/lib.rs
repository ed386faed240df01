//! The contest: the one owner of its rules, read by every intake (through
//! the publisher) and by the consumer.
//!
//! * [`Contest`]: the definition an operator writes (roster, window,
//!   per-voter cap, how voters are known).
//! * [`Contest::admit`]: what an intake decides when a vote arrives (early
//!   refusals with clear errors: [`Refusal`]).
//! * [`Contest::status`]: what the consumer decides from the record alone
//!   (window by the time the intake *received* the vote, roster); the
//!   per-voter cap is decided by the consumer against its counters
//!   ([`VoteStatus::OverLimit`]).
//! * [`token`]: signed voter tokens, verified without a lookup.
//!
//! No I/O: the definition is stored by `bandvote-store`.

mod refusal;
pub mod bulletin;
pub mod token;

use serde::{Deserialize, Serialize};

use bandvote_vote::Vote;

pub use refusal::Refusal;

/// How a voter's votes past the cap are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Revote {
    /// Past `votes_per_voter`, a vote is stored as `over_limit` and not counted.
    #[default]
    Refuse,
    /// A voter's latest vote replaces their earlier one (`votes_per_voter` 1).
    Replace,
}

/// How voters are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Voters {
    /// No voter needed (unless the contest caps votes per voter).
    #[default]
    Anonymous,
    /// Any voter id the client sends (`voter` field, `X-Voter` header, the ballot's cookie).
    Id,
    /// Signed voter tokens only ([`token`]).
    Token,
}

/// One band on the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The spelling that is counted and shown.
    pub band: String,
    /// Albums, if the contest cares (informational; not enforced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub albums: Vec<String>,
}

/// A contest definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contest {
    /// `[A-Za-z0-9._-]`, at most 64 characters (it names Redis keys
    /// `contest:<id>:<name>`: no `:`, so a key names one contest).
    pub id: String,
    pub title: String,
    /// The bands that can be voted for; empty = any band.
    #[serde(default)]
    pub roster: Vec<Entry>,
    /// Voting opens (ms since the Unix epoch).
    pub opens_at_ms: i64,
    /// Voting closes (ms since the Unix epoch); a vote received at or after it is late.
    pub closes_at_ms: i64,
    /// Most counted votes per voter; 0 = unlimited.
    #[serde(default)]
    pub votes_per_voter: u32,
    #[serde(default)]
    pub revote: Revote,
    #[serde(default)]
    pub voters: Voters,
}

/// Where a vote stands in a contest (stored in the vote log, answered by receipts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteStatus {
    Counted,
    /// Past the voter's cap: stored, not counted.
    OverLimit,
    /// Counted, then replaced by the voter's later vote (`revote = replace`).
    Replaced,
    /// Received at or after the close.
    Late,
    /// Received before the opening.
    Early,
    /// Not on the roster (the roster changed after the intake admitted it).
    UnknownBand,
}

impl VoteStatus {
    pub const ALL: [VoteStatus; 6] = [Self::Counted, Self::OverLimit, Self::Replaced, Self::Late, Self::Early, Self::UnknownBand];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::OverLimit => "over_limit",
            Self::Replaced => "replaced",
            Self::Late => "late",
            Self::Early => "early",
            Self::UnknownBand => "unknown_band",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a contest is at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    NotOpen,
    Open,
    Closed,
}

/// A definition an operator cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    #[error("id {0:?}: use 1 to 64 of A-Z a-z 0-9 . _ -")]
    BadId(String),
    #[error("closes_at ({closes}) is not after opens_at ({opens})")]
    Window { opens: i64, closes: i64 },
    #[error("roster: {0:?} and {1:?} are the same band once case and spacing are folded")]
    DuplicateBand(String, String),
    #[error("roster: band {0:?}: {1}")]
    BadBand(String, String),
    #[error("revote = replace counts one vote per voter: set votes_per_voter to 1")]
    ReplaceNeedsOne,
}

/// The key a band is matched by: case folded, whitespace removed.
pub fn band_key(band: &str) -> String {
    band.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

impl Contest {
    /// Check the definition (and normalise the roster's spellings like votes are).
    pub fn validated(mut self) -> Result<Self, DefinitionError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !id_ok {
            return Err(DefinitionError::BadId(self.id));
        }
        if self.closes_at_ms <= self.opens_at_ms {
            return Err(DefinitionError::Window { opens: self.opens_at_ms, closes: self.closes_at_ms });
        }
        if self.revote == Revote::Replace && self.votes_per_voter != 1 {
            return Err(DefinitionError::ReplaceNeedsOne);
        }
        let mut seen = std::collections::HashMap::new();
        for entry in &mut self.roster {
            entry.band = bandvote_vote::normalise_name("band", &entry.band)
                .map_err(|e| DefinitionError::BadBand(entry.band.clone(), e.to_string()))?;
            if let Some(prev) = seen.insert(band_key(&entry.band), entry.band.clone()) {
                return Err(DefinitionError::DuplicateBand(prev, entry.band.clone()));
            }
        }
        Ok(self)
    }

    /// Whether a vote needs a voter.
    pub fn needs_voter(&self) -> bool {
        self.votes_per_voter > 0 || self.voters != Voters::Anonymous
    }

    /// The contest's phase at `now_ms`.
    pub fn phase(&self, now_ms: i64) -> Phase {
        if now_ms < self.opens_at_ms {
            Phase::NotOpen
        } else if now_ms < self.closes_at_ms {
            Phase::Open
        } else {
            Phase::Closed
        }
    }

    /// The roster's spelling of `band` (matched by [`band_key`]); with an
    /// empty roster, `band` itself.
    pub fn roster_band<'a>(&'a self, band: &'a str) -> Option<&'a str> {
        if self.roster.is_empty() {
            return Some(band);
        }
        let key = band_key(band);
        self.roster.iter().find(|e| band_key(&e.band) == key).map(|e| e.band.as_str())
    }

    /// Up to three roster names closest to `band` (for the 422).
    pub fn closest(&self, band: &str) -> Vec<String> {
        let key = band_key(band);
        let mut scored: Vec<(f64, &str)> =
            self.roster.iter().map(|e| (strsim::normalized_levenshtein(&key, &band_key(&e.band)), e.band.as_str())).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().filter(|(s, _)| *s >= 0.4).take(3).map(|(_, b)| b.to_owned()).collect()
    }

    /// What an intake decides at `now_ms` (the early refusals). The voter is
    /// the vote's (a token already verified into an id by the caller).
    pub fn admit(&self, vote: &Vote, now_ms: i64) -> Result<(), Refusal> {
        match self.phase(now_ms) {
            Phase::NotOpen => return Err(Refusal::NotOpen { opens_at_ms: self.opens_at_ms }),
            Phase::Closed => return Err(Refusal::Closed { closes_at_ms: self.closes_at_ms }),
            Phase::Open => {}
        }
        if self.roster_band(&vote.band).is_none() {
            return Err(Refusal::UnknownBand { band: vote.band.clone(), closest: self.closest(&vote.band) });
        }
        if self.needs_voter() {
            // Every voter is a counter in Redis: bounded like a token's voter.
            match &vote.voter {
                None => return Err(Refusal::VoterRequired),
                Some(v) if !token::voter_ok(v) => return Err(Refusal::InvalidVoterId),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// What the consumer decides from the record alone: the window by the
    /// time the intake received the vote (a replay decides the same way; a
    /// vote received before the close counts however late it is applied),
    /// then the roster. `Counted` here is subject to the per-voter cap.
    pub fn status(&self, vote: &Vote) -> VoteStatus {
        match self.phase(vote.received_at_ms) {
            Phase::NotOpen => VoteStatus::Early,
            Phase::Closed => VoteStatus::Late,
            Phase::Open if self.roster_band(&vote.band).is_none() => VoteStatus::UnknownBand,
            Phase::Open => VoteStatus::Counted,
        }
    }
}

#[cfg(test)]
mod tests;

/// A contest's certified final result (`bandvote-consumer contest certify`),
/// written once to the vote log's database and shown by the results page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The contest's id (the document's `_id`).
    #[serde(rename = "_id")]
    pub contest: String,
    pub title: String,
    pub certified_at_ms: i64,
    /// Counted votes, all bands.
    pub total: i64,
    /// Counted votes per band (the roster's spelling).
    pub by_band: std::collections::BTreeMap<String, i64>,
    /// Votes per status (`counted`, `over_limit`, `late`, …): what was refused by which rule.
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// The topic's end offset per partition the recount read up to.
    pub end_offsets: std::collections::BTreeMap<String, i64>,
    /// Distinct vote ids of the contest found in Kafka.
    pub votes_in_kafka: i64,
    /// SHA-256 (hex) over the sorted `vote_id \t band \n` lines of the counted votes.
    pub digest: String,
    /// The root of the contest's public bulletin ([`bulletin`], `docs/bulletin.md`;
    /// empty for a certificate from before bulletins).
    #[serde(default)]
    pub bulletin_root: String,
    /// Its lines: every vote of the contest that reached Kafka.
    #[serde(default)]
    pub bulletin_lines: i64,
}

/// The certificate's digest: SHA-256 over the counted votes' sorted
/// `(vote_id, band)` pairs, one `vote_id \t band \n` line each.
pub fn result_digest(mut counted: Vec<(String, String)>) -> String {
    counted.sort_unstable();
    let mut d = ResultDigest::default();
    for (id, band) in &counted {
        d.push(id, band);
    }
    d.finish().expect("sorted")
}

/// [`result_digest`] over pairs that arrive in vote-id order, in O(1) memory.
#[derive(Default)]
pub struct ResultDigest {
    hash: sha2::Sha256,
    last: Option<String>,
    out_of_order: bool,
}

impl ResultDigest {
    pub fn push(&mut self, vote_id: &str, band: &str) {
        use sha2::Digest as _;
        if self.last.as_deref().is_some_and(|last| last >= vote_id) {
            self.out_of_order = true;
        }
        self.last = Some(vote_id.to_owned());
        self.hash.update(vote_id.as_bytes());
        self.hash.update(b"\t");
        self.hash.update(band.as_bytes());
        self.hash.update(b"\n");
    }

    /// The digest (hex); `None` if the pairs did not come in strictly
    /// increasing vote-id order (the digest would not be [`result_digest`]'s).
    pub fn finish(self) -> Option<String> {
        use sha2::Digest as _;
        (!self.out_of_order).then(|| bulletin::hex(&self.hash.finalize().into()))
    }
}
