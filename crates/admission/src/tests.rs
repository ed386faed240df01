//! The pipeline without Redis: a recording publisher behind it.

use std::sync::{Arc, Mutex};

use bandvote_contest::{Contest, Entry, Refusal, Voters};
use bandvote_store::{ContestWatch, Current};
use bandvote_vote::{RawVote, Source, Vote};
use futures::future::BoxFuture;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Acknowledges everything and keeps what it was given.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vote>>>);

impl Publish for Recorder {
    fn publish<'a>(&'a self, vote: &'a Vote) -> BoxFuture<'a, Result<Ack, PublishError>> {
        self.0.lock().unwrap().push(vote.clone());
        Box::pin(async { Ok(Ack { partition: 0, offset: 0 }) })
    }
    fn publish_batch<'a>(&'a self, votes: &'a [Vote]) -> BoxFuture<'a, Result<Vec<Result<Ack, PublishError>>, PublishError>> {
        self.0.lock().unwrap().extend(votes.iter().cloned());
        Box::pin(async move { Ok(votes.iter().map(|_| Ok(Ack { partition: 0, offset: 0 })).collect()) })
    }
}

fn vote(band: &str, voter: Option<&str>) -> Vote {
    RawVote { band: Some(band.into()), album: Some("A".into()), year: Some("2000".into()), rank: Some("1".into()), vote_id: None, voter: voter.map(Into::into) }
        .validate(Source::Http, 0, None)
        .unwrap()
}

fn contest(voters: Voters, opens: i64, closes: i64) -> Contest {
    Contest {
        id: "final".into(),
        title: "Final".into(),
        roster: vec![Entry { band: "Maná".into(), albums: vec![] }],
        opens_at_ms: opens,
        closes_at_ms: closes,
        votes_per_voter: 1,
        revote: Default::default(),
        voters,
    }
}

fn admission(current: Current, secret: Option<&[u8]>) -> (Admission<Recorder>, Recorder) {
    let rec = Recorder::default();
    (Admission::new(rec.clone()).with_contest(ContestWatch::fixed(current), secret), rec)
}

#[tokio::test]
async fn an_unknown_contest_publishes_nothing_and_answers_503() {
    let (a, rec) = admission(Current::Unknown, Some(SECRET));
    assert!(matches!(a.publish(&vote("Maná", None)).await, Err(PublishError::Unavailable(_))));
    assert!(matches!(a.publish_batch(&[vote("Maná", None)]).await, Err(PublishError::Unavailable(_))));
    assert!(rec.0.lock().unwrap().is_empty());
    assert!(a.readiness().is_err());
}

#[tokio::test]
async fn a_token_contest_without_a_usable_secret_refuses_every_vote() {
    let c = contest(Voters::Token, 0, i64::MAX);
    // Signed with the empty key: what anyone could compute when the secret was "".
    for secret in [None, Some(&b""[..]), Some(&b"short"[..])] {
        let (a, rec) = admission(Current::Contest(Arc::new(c.clone())), secret);
        let forged = format!("v1.{}.{}", i64::MAX / 1000, "0".repeat(64));
        let r = a.publish(&vote("Maná", Some(&forged))).await;
        assert!(matches!(r, Err(PublishError::Unavailable(ref m)) if m.contains("cannot verify")), "{r:?}");
        assert!(rec.0.lock().unwrap().is_empty());
        let why = a.readiness().unwrap_err();
        assert!(why.contains("voter tokens"), "{why}");
    }
    let (a, rec) = admission(Current::Contest(Arc::new(c)), Some(SECRET));
    let token = bandvote_contest::token::issue(SECRET, "final", "v1", now_ms() / 1000 + 60).unwrap();
    a.publish(&vote("Maná", Some(&token))).await.unwrap();
    assert_eq!(rec.0.lock().unwrap()[0].voter.as_deref(), Some("v1"), "the token's voter, never the token");
}

#[tokio::test]
async fn fields_the_intake_decides_never_come_from_the_body() {
    let closes = now_ms() - 1_000;
    let (a, rec) = admission(Current::Contest(Arc::new(contest(Voters::Id, 0, closes))), None);
    // Backdated into the window, stamped with another contest: still closed.
    let mut v = vote("Maná", Some("v1"));
    v.received_at_ms = closes - 10_000;
    v.contest = Some("other".into());
    assert!(matches!(a.publish(&v).await, Err(PublishError::Refused(Refusal::Closed { .. }))));
    // No contest: the body's contest and time are replaced all the same.
    let (a, rec2) = admission(Current::NoContest, None);
    a.publish(&v).await.unwrap();
    let published = rec2.0.lock().unwrap()[0].clone();
    assert_eq!(published.contest, None);
    assert!(published.received_at_ms >= now_ms() - 5_000, "{}", published.received_at_ms);
    assert!(rec.0.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_with_a_refused_vote_is_refused_whole() {
    let (a, rec) = admission(Current::Contest(Arc::new(contest(Voters::Id, 0, i64::MAX))), None);
    let r = a.publish_batch(&[vote("Maná", Some("v1")), vote("Nope", Some("v2"))]).await;
    assert!(matches!(r, Err(PublishError::Refused(Refusal::UnknownBand { .. }))), "{r:?}");
    assert!(rec.0.lock().unwrap().is_empty());
    let ok = a.publish_batch(&[vote("Maná", Some("v1")), vote("maná", Some("v2"))]).await.unwrap();
    assert!(ok.iter().all(Result::is_ok));
    assert!(rec.0.lock().unwrap().iter().all(|v| v.contest.as_deref() == Some("final")));
}

#[tokio::test]
async fn without_contest_rules_votes_pass_stamped() {
    let rec = Recorder::default();
    let a = Admission::new(rec.clone()).with_clock(|| 42);
    a.publish(&vote("Anything", None)).await.unwrap();
    assert_eq!(rec.0.lock().unwrap()[0].received_at_ms, 42);
    assert_eq!(a.readiness(), Ok("no contest".into()));
}
