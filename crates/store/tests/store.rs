//! The stores' writers and readers against the real redis-server and
//! secantusd-rs (`scripts/services.sh start`): what the consumer writes is
//! what the web app and `recount` read.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bandvote_store::keys::Board;
use bandvote_store::{Counters, Located, PartitionBatch, VoteLog};
use bandvote_testkit as kit;

fn located(partition: i32, offset: i64, band: &str, id: &str) -> Located {
    Located { partition, offset, vote: kit::vote(band, Some(id)) }
}

#[tokio::test]
async fn counters_apply_once_per_offset_and_read_back() {
    let prefix = format!("{}:", kit::unique("store"));
    let c = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    assert!(c.is_empty("votes").await.unwrap());
    let votes = vec![located(0, 5, "Caifanes", "a"), located(0, 6, "Caifanes", "b"), located(0, 7, "Maná", "c")];
    let batch = PartitionBatch { first_offset: 5, last_offset: 8, votes };
    let now = 1_700_000_000;

    let first = c.apply("votes", 0, &batch, &HashSet::new(), now, false).await.unwrap();
    assert_eq!((first.counted, first.replayed), (3, 0));
    let again = c.apply("votes", 0, &batch, &HashSet::new(), now, false).await.unwrap();
    assert_eq!((again.counted, again.replayed), (0, 3), "a replayed batch changes nothing");

    let more = PartitionBatch { first_offset: 9, last_offset: 10, votes: vec![located(0, 9, "Maná", "d"), located(0, 10, "Maná", "a")] };
    let repeat = c.apply("votes", 0, &more, &HashSet::from([(0, 10)]), now, false).await.unwrap();
    assert_eq!((repeat.counted, repeat.duplicates), (1, 1), "a repeat MongoDB found is not counted");

    let t = c.totals().await.unwrap();
    assert_eq!(t.total, 4);
    assert_eq!(t.by_band, HashMap::from([("Caifanes".into(), 2), ("Maná".into(), 2)]));
    assert_eq!(c.leaderboard_totals().await.unwrap().by_band, t.by_band);
    assert_eq!(c.total().await.unwrap(), 4);
    assert_eq!(c.applied_offsets("votes").await.unwrap(), HashMap::from([(0, 10)]));
    assert_eq!(c.top(Board::Bands, 1).await.unwrap().len(), 1);
    let secs = c.per_second(now, 3).await.unwrap();
    assert_eq!(secs.last(), Some(&(now, 4)));

    // A rebuild holds the marker: applies are refused until it replaces everything.
    assert!(c.begin_rebuild("me", Duration::from_secs(30)).await.unwrap());
    assert!(!c.begin_apply("applier", Duration::from_secs(30)).await.unwrap());
    let late = PartitionBatch { first_offset: 11, last_offset: 11, votes: vec![located(0, 11, "Maná", "e")] };
    assert!(c.apply("votes", 0, &late, &HashSet::new(), now, false).await.is_err(), "the apply script refuses while a rebuild runs");
    c.replace_all("me", "votes", &t, &HashMap::from([(0, 10)]), &HashMap::new()).await.unwrap();
    assert!(c.begin_apply("applier", Duration::from_secs(30)).await.unwrap());
    assert_eq!(c.appliers_writing().await.unwrap(), 1);
    c.end_apply("applier").await.unwrap();
    assert_eq!(c.totals().await.unwrap(), t);
}

/// Issue 30 item 6: a voter read from a Redis that holds no state at all (a
/// flush between the consumer's "empty?" and its read) is not "0 votes": the
/// read says there is no state, and the consumer refuses to judge caps on it.
#[tokio::test]
async fn voter_state_tells_an_empty_redis_from_a_voter_with_no_votes() {
    let prefix = format!("{}:", kit::unique("store-voters"));
    let c = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    assert_eq!(c.voter_state("votes", 0, &[("final", "fan-1")]).await.unwrap(), None, "no applied offsets: no state");
    let batch = PartitionBatch { first_offset: 0, last_offset: 0, votes: vec![located(0, 0, "Maná", "a")] };
    c.apply("votes", 0, &batch, &HashSet::new(), 1_700_000_000, false).await.unwrap();
    let (applied, state) = c.voter_state("votes", 1, &[("final", "fan-1")]).await.unwrap().expect("the topic has state");
    assert_eq!((applied, state.len(), state[0].counted), (-1, 1, 0), "another partition's voter with no votes yet");
}

/// A rebuild whose marker expired and was taken by another rebuild can neither
/// overwrite that one's counters nor drop its marker.
#[tokio::test]
async fn a_rebuild_never_drops_another_rebuilds_marker() {
    let prefix = format!("{}:", kit::unique("store-rebuild"));
    let c = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let totals = bandvote_store::Totals { total: 3, by_band: HashMap::from([("Caifanes".into(), 3)]), by_album: HashMap::from([("x".into(), 3)]) };
    assert!(c.begin_rebuild("slow", Duration::from_millis(100)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await; // the slow rebuild's marker expires
    assert!(c.begin_rebuild("next", Duration::from_secs(30)).await.unwrap());
    let refused = c.replace_all("slow", "votes", &totals, &HashMap::from([(0, 2)]), &HashMap::new()).await.expect_err("not the holder");
    assert!(refused.to_string().contains("NOTOWNER"), "{refused}");
    c.end_rebuild("slow").await.unwrap();
    assert!(!c.begin_apply("applier", Duration::from_secs(30)).await.unwrap(), "the other rebuild still holds the marker");
    assert!(c.is_empty("votes").await.unwrap(), "nothing written by the refused rebuild");
    c.replace_all("next", "votes", &totals, &HashMap::from([(0, 2), (1, 7)]), &HashMap::new()).await.unwrap();
    assert_eq!(c.totals().await.unwrap(), totals);
    assert_eq!(c.leaderboard_totals().await.unwrap().by_band, totals.by_band);
    assert_eq!(c.applied_offsets("votes").await.unwrap(), HashMap::from([(0, 2), (1, 7)]));
    assert!(c.begin_apply("applier", Duration::from_secs(30)).await.unwrap(), "marker dropped by its holder");
    c.end_apply("applier").await.unwrap();
}

/// The script refuses what it cannot count without losing votes: no applied
/// offsets while the log has votes (Redis flushed between the consumer's
/// check and the script), and a batch past the applied offset + 1 (Redis
/// restored older while the consumer kept its partitions).
#[tokio::test]
async fn the_apply_script_refuses_lost_counters_and_gaps() {
    use bandvote_store::counters::Refusal;
    let prefix = format!("{}:", kit::unique("store-refuse"));
    let c = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let batch = |first: i64, last: i64| PartitionBatch {
        first_offset: first,
        last_offset: last,
        votes: (first..=last).map(|o| located(0, o, "Caifanes", &format!("r-{o}"))).collect(),
    };
    let lost = c.apply("votes", 0, &batch(10, 12), &HashSet::new(), 1, true).await.expect_err("the log has votes, Redis none");
    assert_eq!(Refusal::of(&lost), Some(Refusal::CountersLost), "{lost}");
    assert_eq!(c.totals().await.unwrap().total, 0, "nothing counted");
    c.apply("votes", 0, &batch(0, 4), &HashSet::new(), 1, false).await.unwrap();
    let gap = c.apply("votes", 0, &batch(7, 9), &HashSet::new(), 1, true).await.expect_err("5 and 6 were never counted");
    assert_eq!(Refusal::of(&gap), Some(Refusal::Gap { applied: 4 }), "{gap}");
    assert_eq!(c.apply("votes", 0, &batch(5, 9), &HashSet::new(), 1, true).await.unwrap().counted, 5);
    // A partition not seen yet starts anywhere once the topic has applied offsets.
    let other = PartitionBatch { first_offset: 3, last_offset: 3, votes: vec![located(1, 3, "Maná", "p1")] };
    assert_eq!(c.apply("votes", 1, &other, &HashSet::new(), 1, true).await.unwrap().counted, 1);
    assert_eq!(c.totals().await.unwrap().total, 11);
    // Records lost to retention: the counters go on after them, never back.
    c.skip_lost("votes", 0, 20).await.unwrap();
    c.skip_lost("votes", 0, 15).await.unwrap();
    assert_eq!(c.applied_offsets("votes").await.unwrap()[&0], 20);
}

/// One offset twice in one batch (a seek back refetched it) counts once: the
/// script advances the applied offset with every vote it counts.
#[tokio::test]
async fn an_offset_twice_in_one_batch_counts_once() {
    let prefix = format!("{}:", kit::unique("store-dup"));
    let c = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let votes = vec![
        located(0, 5, "Caifanes", "a"),
        located(0, 6, "Caifanes", "b"),
        located(0, 5, "Caifanes", "a"),
        located(0, 6, "Caifanes", "b"),
        located(0, 7, "Maná", "c"),
    ];
    let applied = c.apply("votes", 0, &PartitionBatch { first_offset: 5, last_offset: 7, votes }, &HashSet::new(), 1_700_000_000, false).await.unwrap();
    assert_eq!((applied.counted, applied.replayed), (3, 2));
    assert_eq!(c.totals().await.unwrap().by_band, HashMap::from([("Caifanes".into(), 2), ("Maná".into(), 1)]));
    assert_eq!(c.applied_offsets("votes").await.unwrap(), HashMap::from([(0, 7)]));
}

#[tokio::test]
async fn vote_log_stores_each_vote_once_and_finds_repeats() {
    let coll = kit::unique("storelog");
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &coll).await.unwrap();
    let first = [located(0, 1, "Caifanes", "x"), located(1, 1, "Maná", "y")];
    let s = log.store("votes", &first.iter().collect::<Vec<_>>()).await.unwrap();
    assert_eq!((s.inserted, s.already_stored), (2, 0));

    // The same record again (a replay) is stored already but no repeat; the
    // same vote id from another record (a client retry) is a repeat.
    let retry = located(1, 7, "Maná", "y");
    let s = log.store("votes", &[&first[0], &retry]).await.unwrap();
    assert_eq!((s.inserted, s.already_stored), (0, 2));
    assert_eq!(s.repeats, HashSet::from([(1, 7)]));

    let t = log.totals().await.unwrap();
    assert_eq!(t.total, 2);
    assert_eq!(t.by_band.get("Maná"), Some(&1));
    assert_eq!(log.stored_offsets("votes").await.unwrap(), HashMap::from([(0, 1), (1, 1)]));
    let page = log.page(Some("Caifanes"), None, 10).await.unwrap();
    assert_eq!((page.entries.len(), page.next, page.unreadable), (1, None, 0));
    let e = &page.entries[0];
    assert_eq!((e.band.as_str(), e.source.as_str(), e.at.partition, e.at.offset), ("Caifanes", "http", 0, 1));
    assert_eq!(log.estimated_count().await.unwrap(), 2);
    log.collection().drop().await.unwrap();
}

#[tokio::test]
async fn log_pages_follow_their_cursors_newest_first() {
    let coll = kit::unique("storepages");
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &coll).await.unwrap();
    // 25 votes, several sharing a received_at (the cursor breaks ties by partition and offset).
    let votes: Vec<Located> = (0..25)
        .map(|i| {
            let mut v = located(i % 3, i64::from(i), if i % 2 == 0 { "Even" } else { "Odd" }, &format!("p-{i}"));
            v.vote.received_at_ms = 1_700_000_000_000 + i64::from(i / 4);
            v
        })
        .collect();
    log.store("votes", &votes.iter().collect::<Vec<_>>()).await.unwrap();
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = log.page(None, cursor.as_ref(), 10).await.unwrap();
        pages += 1;
        seen.extend(page.entries.iter().map(|e| e.at));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 25));
    let mut sorted = seen.clone();
    sorted.sort_by_key(|c| std::cmp::Reverse((c.received_at_ms, c.partition, c.offset)));
    assert_eq!(seen, sorted, "newest first, no vote twice, none skipped");
    let odd = log.page(Some("Odd"), None, 100).await.unwrap();
    assert_eq!((odd.entries.len(), odd.next), (12, None));

    // A document that is not a vote is counted, not shown, and paging goes on past it.
    use mongodb::bson::{doc, DateTime};
    let junk = doc! { "_id": "junk", "received_at": DateTime::from_millis(1_800_000_000_000), "kafka": { "partition": 0, "offset": 999_i64 } };
    log.collection().insert_one(junk).await.unwrap();
    let first = log.page(None, None, 1).await.unwrap();
    assert_eq!((first.entries.len(), first.unreadable), (0, 1));
    let second = log.page(None, first.next.as_ref(), 1).await.unwrap();
    assert_eq!((second.entries.len(), second.unreadable), (1, 0));
    log.collection().drop().await.unwrap();
}

/// The distinct band names are capped: known names always pass, a new one
/// only while the set has room.
#[tokio::test]
async fn band_names_are_admitted_up_to_the_cap() {
    let names = bandvote_store::BandNames::new(&kit::redis_url(), &format!("{}:", kit::unique("bands")), 2).unwrap();
    assert_eq!(names.admit(&["Caifanes", "Maná"]).await.unwrap(), [true, true]);
    assert_eq!(names.admit(&["Café Tacvba", "Caifanes"]).await.unwrap(), [false, true], "full: a new name is refused, a known one passes");
    assert_eq!(names.names().await.unwrap(), ["Caifanes", "Maná"]);
    assert_eq!(names.forget(&["Maná".into(), "never-admitted".into()]).await.unwrap(), 1);
    assert_eq!(names.admit(&["Café Tacvba"]).await.unwrap(), [true], "a forgotten name frees its place");
    let down = bandvote_store::BandNames::new("redis://127.0.0.1:1/", "", 2).unwrap();
    assert!(down.admit(&["x"]).await.is_err(), "an error fast (the publisher then publishes unchecked)");
}

#[tokio::test]
async fn key_claims_tell_first_use_retry_and_conflict_and_expire() {
    use bandvote_store::{Claim, KeyClaims, Stamp};
    let claims = KeyClaims::new(&kit::redis_url(), &format!("{}:", kit::unique("claims")), Duration::from_secs(1)).unwrap();
    let a = kit::vote("Caifanes", Some("k1"));
    let b = kit::vote("Maná", Some("k1"));
    let c = kit::vote("Maná", Some("k2"));
    let d = kit::vote("Maná", Some("k3"));
    let stamp = Stamp { received_at_ms: 1_700_000_000_000, contest: Some("final".into()), voter: Some("fan|1".into()) };
    let s = Some(&stamp);
    assert_eq!(claims.claim([(&a, s), (&c, s)]).await.unwrap(), [Claim::First, Claim::First]);
    // A retry gets the stamp it was admitted with; another vote under the key is a conflict.
    assert_eq!(claims.claim([(&a, None), (&b, s)]).await.unwrap(), [Claim::Retry(Some(stamp.clone())), Claim::Conflict]);
    // A vote the intake refused (no stamp) claims nothing.
    assert_eq!(claims.claim([(&d, None)]).await.unwrap(), [Claim::Unclaimed]);
    assert_eq!(claims.claim([(&d, s)]).await.unwrap(), [Claim::First]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(claims.claim([(&b, s)]).await.unwrap(), [Claim::First], "after the window the key is free again");
    // A claim given back (its publish never reached Kafka) frees the key for a corrected vote at once;
    // releasing for another vote than the holder changes nothing.
    claims.release(&a).await.unwrap();
    assert_eq!(claims.claim([(&a, s)]).await.unwrap(), [Claim::Conflict], "only the holder's release counts");
    claims.release(&b).await.unwrap();
    assert_eq!(claims.claim([(&a, s)]).await.unwrap(), [Claim::First]);
    // Redis unreachable: an error fast, never a hang (the publisher then publishes unchecked).
    let down = KeyClaims::new("redis://127.0.0.1:1/", "", Duration::from_secs(1)).unwrap();
    let started = std::time::Instant::now();
    assert!(down.claim([(&a, s)]).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn contest(id: &str, closes_at_ms: i64) -> bandvote_contest::Contest {
    bandvote_contest::Contest {
        id: id.into(),
        title: "t".into(),
        roster: vec![],
        opens_at_ms: 0,
        closes_at_ms,
        votes_per_voter: 0,
        revote: Default::default(),
        voters: Default::default(),
    }
}

/// The consumer makes Redis say what MongoDB's record says (a flush, an
/// older snapshot), but a value an operator wrote after Redis was read is
/// never undone.
#[tokio::test]
async fn reconcile_replaces_an_older_current_contest_never_a_newer_write() {
    let store = bandvote_store::ContestStore::new(&kit::redis_url(), &format!("{}:", kit::unique("reconcile"))).unwrap();
    let (a, b) = (contest("a", 1_000), contest("b", 2_000));
    // Lost: nothing in Redis → the record.
    let seen = store.snapshot().await.unwrap();
    assert!(store.reconcile(&seen, Some(&b)).await.unwrap());
    assert_eq!(store.current().await.unwrap(), Some(b.clone()));
    assert!(!store.reconcile(&store.snapshot().await.unwrap(), Some(&b)).await.unwrap(), "nothing to do");
    // Older: an older contest current, or an older definition of the current one.
    store.put(&a).await.unwrap();
    store.set_current(Some("a")).await.unwrap();
    assert!(store.reconcile(&store.snapshot().await.unwrap(), Some(&b)).await.unwrap());
    assert_eq!(store.current().await.unwrap(), Some(b.clone()));
    store.put(&contest("b", 9_000)).await.unwrap();
    assert!(store.reconcile(&store.snapshot().await.unwrap(), Some(&b)).await.unwrap());
    assert_eq!(store.current().await.unwrap(), Some(b.clone()));
    // "No contest" recorded.
    assert!(store.reconcile(&store.snapshot().await.unwrap(), None).await.unwrap());
    assert_eq!(store.current_state().await.unwrap(), bandvote_store::Current::NoContest);
    // An operator's writes after the snapshot (record first, then Redis) stay.
    let seen = store.snapshot().await.unwrap();
    store.put(&a).await.unwrap();
    store.set_current(Some("a")).await.unwrap();
    assert!(!store.reconcile(&seen, None).await.unwrap());
    assert_eq!(store.current().await.unwrap(), Some(a.clone()), "a newer marker is kept");
    let seen = store.snapshot().await.unwrap();
    let closed = contest("a", 500);
    store.put(&closed).await.unwrap();
    assert!(!store.reconcile(&seen, Some(&a)).await.unwrap());
    assert_eq!(store.current().await.unwrap(), Some(closed), "a newer definition is kept");
}

#[tokio::test]
async fn a_certify_lease_has_one_holder_until_released_or_run_out() {
    let coll = kit::unique("lease");
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &coll).await.unwrap();
    let (now, ttl) = (1_000_000, 60_000);
    assert!(log.take_certify_lease("final", "a", now, ttl).await.unwrap(), "free: taken");
    assert!(!log.take_certify_lease("final", "b", now + 1_000, ttl).await.unwrap(), "a's runs: b waits");
    assert!(log.take_certify_lease("final", "a", now + 1_000, ttl).await.unwrap(), "a renews its own");
    assert!(log.take_certify_lease("other", "b", now + 1_000, ttl).await.unwrap(), "one lease per contest");
    assert!(!log.take_certify_lease("final", "b", now + 60_000, ttl).await.unwrap(), "renewed at +1 s: runs to +61 s");
    assert!(log.take_certify_lease("final", "b", now + 61_001, ttl).await.unwrap(), "run out (a crashed): b takes it");
    assert!(!log.take_certify_lease("final", "a", now + 61_002, ttl).await.unwrap(), "a, back late, does not get it back");
    log.release_certify_lease("final", "a").await.unwrap();
    assert!(!log.take_certify_lease("final", "c", now + 61_003, ttl).await.unwrap(), "a cannot give back b's lease");
    log.release_certify_lease("final", "b").await.unwrap();
    assert!(log.take_certify_lease("final", "c", now + 61_004, ttl).await.unwrap(), "given back: free");
}
