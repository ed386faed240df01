//! A contest certified by the real pipeline (Kafka → consumer → Redis and
//! MongoDB → certify → the web app), its bulletin downloaded as anyone
//! would and checked by both verifiers: ours (`bandvote-consumer contest
//! verify`) and the one written from `docs/bulletin.md` alone
//! (`tests/python/bulletin_verifier.py`). Counted, over-the-cap and late
//! votes are in it, 370 lines (two runs of the index). Tampered copies (a
//! band swapped, a line dropped, a changed root) fail both, naming the lines
//! or what differs (issue 33). Two certify runs at once leave one
//! certificate and the bulletin intact (the certify lease).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bandvote_consumer::certify::{self, Settle};
use bandvote_consumer::contest_admin::now_ms;
use bandvote_contest::Voters;
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_store::{ContestStore, Counters, VoteLog};
use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, wait_ready};
use common::{admin_for, consumer_process, contest, flush, redis_db, reports, wait_applied, web_process, BANDS};

const VOTERS: usize = 300;
const AGAIN: usize = 50;
const LATE: usize = 20;

/// Run a verifier; (exit 0?, what it printed).
fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

/// Both verifiers on `bulletin` against `certificate` and `index`: they agree, and say it.
fn both(bulletin: &Path, certificate: &Path, index: Option<&Path>) -> [(bool, String); 2] {
    let python = kit::repo_root().join("tests/python/bulletin_verifier.py");
    let (b, c) = (bulletin.to_str().unwrap(), certificate.to_str().unwrap());
    let mut ours = vec!["contest", "verify", "--bulletin", b, "--certificate", c];
    let mut theirs = vec![python.to_str().unwrap(), b, "--certificate", c];
    if let Some(i) = index.and_then(Path::to_str) {
        ours.extend(["--index", i]);
        theirs.extend(["--index", i]);
    }
    let results = [run(bin("bandvote-consumer").to_str().unwrap(), &ours), run("python3", &theirs)];
    assert_eq!(results[0].0, results[1].0, "the verifiers disagree: {results:?}");
    results
}

#[tokio::test]
async fn a_certified_bulletin_downloads_and_both_verifiers_check_it_and_name_tampering() {
    let redis = redis_db(15);
    flush(&redis).await;
    let topic = kit::fresh_topic("bulletin", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let collection = kit::unique("bulletin");
    let contests = admin_for(&redis, &collection).await;
    let (mut consumer, consumer_admin) = consumer_process("bulletin-consumer", &topic, &redis, &collection);
    consumer.start();
    wait_ready(consumer_admin, Duration::from_secs(60)).await;

    // One vote per voter; the votes of the voters who vote again are over
    // the cap; the last ones were received after the close (late).
    let mut c = contest("bulletin-final", 1, Voters::Id);
    c.closes_at_ms = now_ms() + 4_000;
    let c = contests.create(c, None).await.unwrap();
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let stamped = |i: usize, voter: usize, received_at_ms: i64| {
        let mut v = kit::vote(BANDS[i % 3], Some(&format!("bulletin-vote-{i}")));
        (v.contest, v.voter, v.received_at_ms) = (Some(c.id.clone()), Some(format!("fan-{voter}")), received_at_ms);
        v
    };
    let mut votes: Vec<_> = (0..VOTERS).map(|i| stamped(i, i, now_ms())).collect();
    votes.extend((0..AGAIN).map(|i| stamped(VOTERS + i, i, now_ms())));
    votes.extend((0..LATE).map(|i| stamped(VOTERS + AGAIN + i, 1_000 + i, c.closes_at_ms + 1_000)));
    for v in &votes {
        publisher.publish(v).await.unwrap();
    }
    let store = ContestStore::new(&redis, "").unwrap();
    let tally = wait_applied(&store, &c.id, votes.len() as u64, Duration::from_secs(60)).await;
    assert_eq!(
        (tally.total, tally.by_status.get("over_limit").copied(), tally.by_status.get("late").copied()),
        (VOTERS as u64, Some(AGAIN as u64), Some(LATE as u64)),
        "{tally:?}"
    );

    let left = c.closes_at_ms - now_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64 + 100)).await;
    }
    let counters = Counters::connect(&redis, "").await.unwrap();
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &collection).await.unwrap();
    let settle = Settle { delivery_timeout: Duration::ZERO, clock_skew: Duration::ZERO, claim_window: Duration::ZERO };
    // Two operators certify at once: one writes the bulletin and certifies
    // (holding the contest's certify lease), the other waits for it and
    // shows the same certificate (the downloads below verify the bulletin).
    let (brokers, intake_reports) = (kit::kafka_brokers(), reports(&redis));
    let certify_once = || certify::certify(&brokers, &topic, &c, &store, &counters, &log, &intake_reports, Duration::from_secs(60), settle);
    let (first, second) = tokio::join!(certify_once(), certify_once());
    let ((cert, first_new), (other, second_new)) = (first.unwrap(), second.unwrap());
    assert_eq!((cert.clone(), first_new ^ second_new), (other, true), "one certificate, written once");
    assert_eq!(cert.bulletin_lines, votes.len() as i64, "{cert:?}");

    // Downloaded from the web app as anyone would: bulletin, index, certificate.
    let (mut web, listen) = web_process("bulletin-web", &redis, &kit::mongo_url(), &collection);
    web.start();
    wait_ready(listen, Duration::from_secs(30)).await;
    let dir = std::env::temp_dir().join(kit::unique("bulletin"));
    std::fs::create_dir_all(&dir).unwrap();
    let download = |path: String, file: &str| {
        let to = dir.join(file);
        async move {
            let r = reqwest::get(format!("http://{listen}{path}")).await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{path}");
            std::fs::write(&to, r.bytes().await.unwrap()).unwrap();
            to
        }
    };
    let bulletin = download(format!("/api/contest/{}/bulletin", c.id), "bulletin.ndjson").await;
    let index = download(format!("/api/contest/{}/bulletin/index", c.id), "index.ndjson").await;
    let certificate = download("/api/contest".into(), "contest.json").await;
    assert_eq!(std::fs::read_to_string(&index).unwrap().lines().count(), 2, "runs of 256 lines: 1-256, 257-370");

    for (ok, said) in both(&bulletin, &certificate, Some(&index)) {
        assert!(ok, "the certified bulletin verifies: {said}");
        assert!(said.contains(&cert.bulletin_root), "{said}");
    }
    let vote_id = "bulletin-vote-7";
    let (ok, said) = run(bin("bandvote-consumer").to_str().unwrap(), &["contest", "verify", "--bulletin", bulletin.to_str().unwrap(), "--root", &cert.bulletin_root, "--contest", &c.id, "--receipt", vote_id]);
    assert!(ok && said.contains("in the bulletin") && said.contains("counted"), "{said}");

    // Tampered copies fail both, naming where.
    let lines: Vec<String> = std::fs::read_to_string(&bulletin).unwrap().lines().map(str::to_owned).collect();
    let tampered = |name: &str, lines: &[String]| -> PathBuf {
        let to = dir.join(name);
        std::fs::write(&to, lines.join("\n") + "\n").unwrap();
        to
    };
    let mut swapped = lines.clone();
    let mut line: bandvote_contest::bulletin::Line = serde_json::from_str(&swapped[299]).unwrap();
    line.band = if line.band == BANDS[0] { BANDS[1].into() } else { BANDS[0].into() };
    swapped[299] = line.text();
    let swapped = tampered("swapped.ndjson", &swapped);
    for (ok, said) in both(&swapped, &certificate, Some(&index)) {
        assert!(!ok && said.contains("lines 257-370"), "a swapped band is named by its run of lines: {said}");
    }
    for (ok, said) in both(&swapped, &certificate, None) {
        assert!(!ok && said.contains("root"), "without the index, the root differs: {said}");
    }
    let mut dropped = lines.clone();
    dropped.remove(4);
    let dropped = tampered("dropped.ndjson", &dropped);
    for (ok, said) in both(&dropped, &certificate, Some(&index)) {
        assert!(!ok && said.contains("lines 1-256"), "a dropped line is named by its run of lines: {said}");
    }
    let other_root = dir.join("other-root.json");
    std::fs::write(&other_root, std::fs::read_to_string(&certificate).unwrap().replace(&cert.bulletin_root, &"0".repeat(64))).unwrap();
    for (ok, said) in both(&bulletin, &other_root, Some(&index)) {
        assert!(!ok && said.contains("not the certified one"), "a changed root: {said}");
    }
    let mut retallied: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&certificate).unwrap()).unwrap();
    retallied["certificate"]["by_band"][BANDS[0]] = (cert.by_band[BANDS[0]] + 1).into();
    let retallied_path = dir.join("retallied.json");
    std::fs::write(&retallied_path, retallied.to_string()).unwrap();
    for (ok, said) in both(&bulletin, &retallied_path, Some(&index)) {
        assert!(!ok && said.contains(BANDS[0]), "a certificate whose tally is not the bulletin's names the band: {said}");
    }
    std::fs::remove_dir_all(&dir).ok();
    drop(web);
    drop(consumer);
}
