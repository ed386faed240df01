//! The pure steps of admission, each small and tested alone. The order is
//! [`crate::Admission`]'s: the contest snapshot, voter identity, the contest
//! gate (together: the verdict), then idempotency and name bounds (which
//! need Redis, in `lib.rs`), then [`stamped`] for the publisher.

use bandvote_contest::token::{self, SecretError};
use bandvote_contest::{Contest, Refusal, Voters};
use bandvote_store::{Current, Stamp};
use bandvote_vote::Vote;

use crate::PublishError;

/// Step 1: the rules that apply now. A contest that is not known refuses
/// every vote (503): "not known" never means "no contest".
pub fn known_contest(current: &Current) -> Result<Option<&Contest>, PublishError> {
    match current {
        Current::Unknown => Err(PublishError::Unavailable(
            "the current contest is not known yet (Redis unreachable, or it lost the contest record until the consumer restores it): retry".into(),
        )),
        Current::NoContest => Ok(None),
        Current::Contest(c) => Ok(Some(c)),
    }
}

/// Step 2: the voter a vote is admitted for. In a `voters = token` contest
/// the token is verified with the intake's secret (none, or a short one:
/// 503 for every vote, never a token taken on trust) at `now_ms`, and its
/// voter id replaces it; otherwise the voter is what the client sent.
pub fn identify(contest: Option<&Contest>, secret: Result<&[u8], &SecretError>, vote: &Vote, now_ms: i64) -> Result<Option<String>, PublishError> {
    let Some(c) = contest.filter(|c| c.voters == Voters::Token) else { return Ok(vote.voter.clone()) };
    let secret = secret.map_err(|problem| {
        PublishError::Unavailable(format!("contest {:?} takes voter tokens and this intake cannot verify them: {problem}", c.id))
    })?;
    let Some(token) = &vote.voter else { return Ok(None) };
    token::verify(secret, &c.id, token, now_ms.div_euclid(1000))
        .map(|voter| Some(voter.to_owned()))
        .map_err(|e| PublishError::Refused(Refusal::InvalidToken(e.to_string())))
}

/// Step 3: the contest gate at `now_ms` (window, roster, voter required),
/// and the stamp an admitted vote is published with: the intake's clock,
/// the contest, the voter. Nothing of it comes from the client's body.
pub fn gate(contest: Option<&Contest>, vote: &Vote, voter: Option<String>, now_ms: i64) -> Result<Stamp, PublishError> {
    let stamp = Stamp { received_at_ms: now_ms, contest: contest.map(|c| c.id.clone()), voter };
    if let Some(c) = contest {
        c.admit(&stamped(vote, &stamp), now_ms).map_err(PublishError::Refused)?;
    }
    Ok(stamp)
}

/// Steps 2 and 3 together: what the rules say of `vote` now.
pub fn verdict(contest: Option<&Contest>, secret: Result<&[u8], &SecretError>, vote: &Vote, now_ms: i64) -> Result<Stamp, PublishError> {
    let voter = identify(contest, secret, vote, now_ms)?;
    gate(contest, vote, voter, now_ms)
}

/// The vote as it is published: the client's fields, the intake's stamp.
pub fn stamped(vote: &Vote, stamp: &Stamp) -> Vote {
    Vote { received_at_ms: stamp.received_at_ms, contest: stamp.contest.clone(), voter: stamp.voter.clone(), ..vote.clone() }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use bandvote_vote::{RawVote, Source};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn vote(band: &str, voter: Option<&str>) -> Vote {
        RawVote { band: Some(band.into()), album: Some("A".into()), year: Some("2000".into()), rank: Some("1".into()), vote_id: None, voter: voter.map(Into::into) }
            .validate(Source::Http, 0, None)
            .unwrap()
    }

    fn contest(voters: Voters) -> Contest {
        Contest {
            id: "final".into(),
            title: "Final".into(),
            roster: vec![bandvote_contest::Entry { band: "Maná".into(), albums: vec![] }],
            opens_at_ms: 1_000,
            closes_at_ms: 2_000,
            votes_per_voter: 1,
            revote: Default::default(),
            voters,
        }
    }

    #[test]
    fn an_unknown_contest_refuses_every_vote_with_503() {
        assert!(matches!(known_contest(&Current::Unknown), Err(PublishError::Unavailable(_))));
        assert!(matches!(known_contest(&Current::NoContest), Ok(None)));
        let c = Current::Contest(Arc::new(contest(Voters::Id)));
        assert_eq!(known_contest(&c).unwrap().unwrap().id, "final");
    }

    #[test]
    fn without_a_usable_secret_no_token_passes() {
        let c = contest(Voters::Token);
        let good = token::issue(SECRET, "final", "v1", 10).unwrap();
        for problem in [SecretError::Missing, SecretError::TooShort(6)] {
            let r = identify(Some(&c), Err(&problem), &vote("Maná", Some(&good)), 1_500);
            assert!(matches!(r, Err(PublishError::Unavailable(ref m)) if m.contains("cannot verify")), "{r:?}");
        }
        assert_eq!(identify(Some(&c), Ok(SECRET), &vote("Maná", Some(&good)), 1_500).unwrap().as_deref(), Some("v1"));
        // Expired by the intake's clock.
        assert!(matches!(identify(Some(&c), Ok(SECRET), &vote("Maná", Some(&good)), 10_000), Err(PublishError::Refused(Refusal::InvalidToken(_)))));
    }

    #[test]
    fn the_gate_judges_by_the_intake_clock_and_stamps_the_intake_fields() {
        let c = contest(Voters::Id);
        // The client's body says it was received in the window and belongs to another contest.
        let mut v = vote("Maná", Some("v1"));
        v.received_at_ms = 1_500;
        v.contest = Some("other".into());
        assert!(matches!(gate(Some(&c), &v, Some("v1".into()), 2_000), Err(PublishError::Refused(Refusal::Closed { .. }))));
        let stamp = gate(Some(&c), &v, Some("v1".into()), 1_200).unwrap();
        assert_eq!(stamp, Stamp { received_at_ms: 1_200, contest: Some("final".into()), voter: Some("v1".into()) });
        let published = stamped(&v, &stamp);
        assert_eq!((published.received_at_ms, published.contest.as_deref()), (1_200, Some("final")));
        // No contest: the client's contest field is dropped all the same.
        let free = stamped(&v, &gate(None, &v, v.voter.clone(), 7).unwrap());
        assert_eq!((free.received_at_ms, free.contest), (7, None));
    }

    #[test]
    fn the_verdict_needs_a_voter_and_a_roster_band() {
        let c = contest(Voters::Id);
        assert!(matches!(verdict(Some(&c), Ok(SECRET), &vote("Maná", None), 1_500), Err(PublishError::Refused(Refusal::VoterRequired))));
        assert!(matches!(verdict(Some(&c), Ok(SECRET), &vote("Nope", Some("v")), 1_500), Err(PublishError::Refused(Refusal::UnknownBand { .. }))));
        assert!(verdict(Some(&c), Ok(SECRET), &vote("Maná", Some("v")), 1_500).is_ok());
    }
}
