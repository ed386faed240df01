//! Redis key names (before the prefix). `apply.lua` spells the same names;
//! a unit test keeps the two in step.

/// Hash band → votes (the name the original system's dashboards read).
pub const BANDS: &str = "votos_banda";
/// Hash album → votes.
pub const ALBUMS: &str = "votos_album";
/// Sorted set band → votes (leaderboards).
pub const BANDS_BOARD: &str = "leaderboard:bands";
/// Sorted set album → votes.
pub const ALBUMS_BOARD: &str = "leaderboard:albums";
/// Every vote counted.
pub const TOTAL: &str = "votes:total";
/// Votes counted in one unix second (`votes:sec:<second>`), expiring after an hour.
pub const PER_SECOND: &str = "votes:sec:";
/// Hash partition → last applied offset (`offsets:<topic>`).
pub const OFFSETS: &str = "offsets:";
/// Marker held while a rebuild replaces the counters.
pub const REBUILDING: &str = "rebuilding";
/// An applier's announcement of a batch being written (`applying:<applier>`).
pub const APPLYING: &str = "applying:";
/// What an idempotency key (vote id) stands for, for a window (`idem:<vote id>`
/// → fingerprint; [`crate::key_claims`]).
pub const CLAIMED_KEY: &str = "idem:";
/// Set of the band names admitted so far, at most the deployment's cap
/// ([`crate::band_names`]).
pub const KNOWN_BANDS: &str = "bands:known";
/// Set of the album names admitted so far, at most the deployment's cap
/// (every album is a hash field and a leaderboard member too).
pub const KNOWN_ALBUMS: &str = "albums:known";
/// Hash intake → `"<through_ms> <reported_ms>"`: every vote the intake
/// received up to `through_ms` (its clock) is in Kafka or was refused
/// ([`crate::published_through`]).
pub const PUBLISHED_THROUGH: &str = "intakes:published-through";
/// The id of the contest every intake applies; the empty string: no contest
/// (every vote counts as before); absent: not known (Redis lost it: the
/// intakes answer 503 until the consumer restores it from MongoDB).
pub const CONTEST_CURRENT: &str = "contest:current";
/// A contest's definition as JSON (`contest-def:<id>`). Its own prefix: no
/// contest id can make it equal to a counter key `contest:<id>:<name>`.
pub const CONTEST_DEF: &str = "contest-def:";
/// Per-contest keys (`contest:<id>:<name>`, [`contest`]): hash band → counted votes.
pub const CONTEST_BANDS: &str = "bands";
/// Sorted set band → counted votes (the contest's leaderboard).
pub const CONTEST_BOARD: &str = "board";
/// Counted votes.
pub const CONTEST_TOTAL: &str = "total";
/// Hash status (`counted`, `over_limit`, `late`, …) → votes.
pub const CONTEST_STATUS: &str = "status";
/// Hash voter → counted votes (the per-voter cap; bounded by voters, not votes).
pub const CONTEST_VOTERS: &str = "voters";
/// Hash voter → their counted vote as `vote_id \t band \t album`
/// (`revote = replace`: what a later vote takes back).
pub const CONTEST_CHOICE: &str = "choice";
/// The per-vote set of early versions; deleted by a rebuild, never written.
pub const LEGACY_SEEN_VOTES: &str = "seen_votes";

/// The applied-offsets hash of `topic` (before the prefix).
pub fn offsets(topic: &str) -> String {
    format!("{OFFSETS}{topic}")
}

/// A contest's key `name` (before the prefix): `contest:<id>:<name>`.
pub fn contest(id: &str, name: &str) -> String {
    format!("contest:{id}:{name}")
}

/// A leaderboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    Bands,
    Albums,
}

impl Board {
    /// Its sorted set.
    pub fn key(self) -> &'static str {
        match self {
            Board::Bands => BANDS_BOARD,
            Board::Albums => ALBUMS_BOARD,
        }
    }
}

#[cfg(test)]
mod tests {
    /// No contest id (any of the charset `Contest::validated` allows) makes a
    /// definition, the current marker or one contest's counter key equal to
    /// another's.
    #[test]
    fn contest_keys_never_collide() {
        let names = [super::CONTEST_BANDS, super::CONTEST_BOARD, super::CONTEST_TOTAL, super::CONTEST_STATUS, super::CONTEST_VOTERS, super::CONTEST_CHOICE];
        let ids = ["def", "total", "current", "a", "a.b", "a-b", "bands", "def.total", "x_y", "contest", "1"];
        let mut seen = std::collections::HashMap::new();
        let mut put = |key: String, owner: String| {
            if let Some(prev) = seen.insert(key.clone(), owner.clone()) {
                panic!("{key:?} is both {prev} and {owner}");
            }
        };
        put(super::CONTEST_CURRENT.to_owned(), "current".into());
        for id in ids {
            put(format!("{}{id}", super::CONTEST_DEF), format!("def {id}"));
            for name in names {
                put(super::contest(id, name), format!("{name} of {id}"));
            }
        }
    }

    #[test]
    fn the_apply_script_spells_the_same_keys() {
        let lua = include_str!("apply.lua");
        for key in [super::BANDS, super::ALBUMS, super::BANDS_BOARD, super::ALBUMS_BOARD, super::TOTAL, super::PER_SECOND, super::OFFSETS, super::REBUILDING, super::CONTEST_BANDS, super::CONTEST_BOARD, super::CONTEST_TOTAL, super::CONTEST_STATUS, super::CONTEST_VOTERS, super::CONTEST_CHOICE] {
            assert!(lua.contains(&format!("'{key}'")), "apply.lua does not use {key:?}");
        }
    }
}
