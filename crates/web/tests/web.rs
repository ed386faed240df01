//! The web app against real Redis and MongoDB.

use bandvote_store::{Located, PartitionBatch};
use bandvote_store::VoteLog;
use bandvote_store::Counters;
use bandvote_testkit as kit;
use bandvote_web::{router, AppState, Sources};
use common::{serve, sources};
use serde_json::Value;

mod common;

#[tokio::test]
async fn results_and_log_pages() {
    let (prefix, coll) = (format!("{}:", kit::unique("web")), kit::unique("weblog"));
    let counters = Counters::connect(&kit::redis_url(), &prefix).await.unwrap();
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &coll).await.unwrap();
    let votes: Vec<Located> = (0..25)
        .map(|i| Located {
            partition: 0,
            offset: i,
            vote: kit::vote(if i < 15 { "Alux Nahual" } else { "Caifanes" }, Some(&format!("w-{i}"))),
        })
        .collect();
    let stored = log.store("votes", &votes.iter().collect::<Vec<_>>()).await.unwrap();
    let batch = PartitionBatch { first_offset: 0, last_offset: 24, votes };
    counters.apply("votes", 0, &batch, &stored.repeats, 1_700_000_000, false).await.unwrap();

    let base = serve(sources(&prefix, &coll)).await;
    let http = reqwest::Client::new();

    // Receipts: counted once applied, pending while only stored, unknown otherwise.
    let r: Value = http.get(format!("{base}/api/receipt/w-3")).send().await.unwrap().json().await.unwrap();
    assert_eq!((r["status"].as_str(), r["band"].as_str()), (Some("counted"), Some("Alux Nahual")), "{r}");
    let r: Value = http.get(format!("{base}/api/receipt/no-such-vote")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "unknown", "{r}");

    // The contest: none, then the current one with its roster, phase and tally.
    let c: Value = http.get(format!("{base}/api/contest")).send().await.unwrap().json().await.unwrap();
    assert!(c["contest"].is_null(), "{c}");
    let store = bandvote_store::ContestStore::new(&kit::redis_url(), &prefix).unwrap();
    let now = 1_700_000_000_000_i64.max(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
    let def = bandvote_contest::Contest {
        id: "final".into(),
        title: "Final".into(),
        roster: vec![bandvote_contest::Entry { band: "Alux Nahual".into(), albums: vec![] }, bandvote_contest::Entry { band: "Caifanes".into(), albums: vec![] }],
        opens_at_ms: now - 1_000,
        closes_at_ms: now + 60_000,
        votes_per_voter: 1,
        revote: bandvote_contest::Revote::Refuse,
        voters: bandvote_contest::Voters::Id,
    };
    store.put(&def).await.unwrap();
    store.set_current(Some("final")).await.unwrap();
    let c: Value = http.get(format!("{base}/api/contest")).send().await.unwrap().json().await.unwrap();
    assert_eq!((c["contest"]["phase"].as_str(), c["contest"]["roster"].as_array().map(Vec::len)), (Some("open"), Some(2)), "{c}");
    assert_eq!(c["tally"]["bands"].as_array().map(Vec::len), Some(2), "every roster band listed, with 0 votes: {c}");
    assert!(c["certificate"].is_null());
    let r: Value = http.get(format!("{base}/api/results")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["total"], 25);
    assert_eq!(r["bands"][0]["name"], "Alux Nahual");
    assert_eq!(r["bands"][0]["votes"], 15);
    assert_eq!(r["per_second"].as_array().unwrap().len(), 60);

    let p1: Value = http.get(format!("{base}/api/log?size=10")).send().await.unwrap().json().await.unwrap();
    assert_eq!((p1["total"].as_u64(), p1["votes"].as_array().unwrap().len()), (Some(25), 10));
    assert!(p1["votes"][0].get("vote_id").is_none(), "vote ids (idempotency keys) stay off public pages");
    assert!(p1["votes"][0]["offset"].is_i64());
    let mut cursor = p1["next"].as_str().expect("a next page").to_owned();
    let p2: Value = http.get(format!("{base}/api/log?size=10&before={cursor}")).send().await.unwrap().json().await.unwrap();
    cursor = p2["next"].as_str().expect("a third page").to_owned();
    let p3: Value = http.get(format!("{base}/api/log?size=10&before={cursor}")).send().await.unwrap().json().await.unwrap();
    assert_eq!((p3["votes"].as_array().unwrap().len(), p3["next"].is_null()), (5, true));
    let f: Value = http.get(format!("{base}/api/log?band=Caifanes")).send().await.unwrap().json().await.unwrap();
    assert_eq!((f["total"].as_u64(), f["votes"].as_array().unwrap().len()), (Some(10), 10));
    let bad = http.get(format!("{base}/api/log?before=yesterday")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "before");

    let page = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("bandvote · live results"));
    let sse = http.get(format!("{base}/api/stream")).send().await.unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    log.collection().drop().await.unwrap();
    // Stored, not yet counted: pending.
    let later = Located { partition: 0, offset: 30, vote: kit::vote("Caifanes", Some("w-later")) };
    log.store("votes", &[&later]).await.unwrap();
    let r: Value = http.get(format!("{base}/api/receipt/w-later")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "pending", "{r}");
}

#[tokio::test]
async fn redis_and_mongo_down_is_503_json_not_a_blank_page() {
    let base = serve(Sources {
        redis_url: "redis://127.0.0.1:1/".into(),
        mongo_url: "mongodb://127.0.0.1:1/?connectTimeoutMS=500".into(),
        ..sources("x:", "none")
    })
    .await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/api/results")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().starts_with("redis"));
    let l = http.get(format!("{base}/api/log")).send().await.unwrap();
    assert_eq!(l.status().as_u16(), 503);
    // Ready means the process serves: the page stays up and shows its banner.
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!((ready["redis"].as_str(), ready["mongodb"].as_str()), (Some("unavailable"), Some("unavailable")), "no internal strings: {ready}");
    assert_eq!(http.get(format!("{base}/")).send().await.unwrap().status().as_u16(), 200);
}

/// The ballot's votes reach the intake as they came (key, voter, body) and the
/// intake's answer comes back as it is (status, Retry-After, body).
#[tokio::test]
async fn the_ballot_forwards_votes_to_the_intake_and_its_answer_back() {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let intake = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    seen.lock().unwrap().push((get("idempotency-key"), get("x-voter"), body));
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "2")], r#"{"error":{"code":"overloaded"}}"#)
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intake_url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, intake).await });
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", web.local_addr().unwrap());
    let ballot = bandvote_web::Ballot { post_path: "api/vote".into(), intake_url: Some(intake_url) };
    let state = AppState::with_ballot(sources("unused:", "unused"), ballot);
    tokio::spawn(async move { axum::serve(web, router(state)).await });

    let http = reqwest::Client::new();
    let r = http.post(format!("{base}/api/vote")).header("idempotency-key", "k-1").header("x-voter", "fan-1").body("{}").send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned())), (503, Some("2".into())));
    assert_eq!(seen.lock().unwrap().as_slice(), &[("k-1".to_owned(), "fan-1".to_owned(), "{}".to_owned())]);
    let page = http.get(format!("{base}/vote")).header("accept-language", "en-US").send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<html lang="en">"#) && page.contains(r#"data-post="api/vote""#));
}

/// A certified contest's bulletin downloads as NDJSON with the certificate's
/// root, and recounts to it; another contest's lines (even one whose id
/// starts the same) are not in it; an uncertified contest has none (issue 33).
#[tokio::test]
async fn a_certified_contests_bulletin_downloads_with_its_root() {
    use bandvote_contest::bulletin::{leaf_id, recount, Line};
    let coll = kit::unique("webbulletin");
    let log = VoteLog::connect(&kit::mongo_url(), "bandvote_test", &coll).await.unwrap();
    let bulletin = |contest: &str, n: usize| {
        let mut lines: Vec<Line> =
            (0..n).map(|i| Line { leaf: leaf_id(contest, &format!("v{i}")), band: ["Maná", "Caifanes"][i % 2].into(), status: ["counted", "over_limit"][i % 3 / 2].into() }).collect();
        lines.sort_by(|a, b| a.leaf.cmp(&b.leaf));
        lines
    };
    let lines = bulletin("b-1", 2_500);
    log.save_bulletin("b-1", &lines).await.unwrap();
    log.save_bulletin("b-1", &lines[..10]).await.unwrap();
    log.save_bulletin("b-10", &bulletin("b-10", 7)).await.unwrap();
    let expected = recount(lines.iter().map(|l| Ok(l.text()))).unwrap();
    assert_eq!(log.index_bulletin("b-1").await.unwrap(), expected, "read back and indexed: the same root and tally");
    let cert = bandvote_contest::Certificate {
        contest: "b-1".into(),
        title: "t".into(),
        certified_at_ms: 1,
        total: expected.by_band.values().sum(),
        by_band: expected.by_band.clone(),
        by_status: expected.by_status.clone(),
        end_offsets: Default::default(),
        votes_in_kafka: 2_500,
        digest: String::new(),
        bulletin_root: expected.root.clone(),
        bulletin_lines: 2_500,
    };
    log.save_certificate(&cert).await.unwrap();
    let base = serve(sources("bulletin:", &coll)).await;
    let r = reqwest::get(format!("{base}/api/contest/b-1/bulletin")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers().get("x-bulletin-root").and_then(|v| v.to_str().ok()), Some(expected.root.as_str()));
    let text = r.text().await.unwrap();
    assert_eq!(recount(text.lines().map(|l| Ok(l.to_owned()))).unwrap(), expected);
    assert_eq!(reqwest::get(format!("{base}/api/contest/b-10/bulletin")).await.unwrap().status().as_u16(), 404, "not certified");

    // A receipt of the certified contest carries its inclusion proof, which
    // verifies against the certificate's root and not against another root.
    log.collection().insert_one(mongodb::bson::doc! { "_id": "v5", "contest": "b-1", "band": "Caifanes", "status": "over_limit" }).await.unwrap();
    let receipt: Value = reqwest::get(format!("{base}/api/receipt/v5")).await.unwrap().json().await.unwrap();
    let b = &receipt["bulletin"];
    let line: Line = serde_json::from_str(b["line"].as_str().unwrap()).unwrap();
    assert_eq!((line.leaf.as_str(), line.band.as_str(), line.status.as_str()), (leaf_id("b-1", "v5").as_str(), "Caifanes", "over_limit"), "{receipt}");
    let path: Vec<[u8; 32]> = b["path"].as_array().unwrap().iter().map(|h| bandvote_contest::bulletin::unhex(h.as_str().unwrap()).unwrap()).collect();
    let (index, size) = (b["index"].as_u64().unwrap(), b["size"].as_u64().unwrap());
    let leaf = bandvote_contest::bulletin::leaf_hash(b["line"].as_str().unwrap().as_bytes());
    let root = bandvote_contest::bulletin::unhex(b["root"].as_str().unwrap()).unwrap();
    assert_eq!((b["root"].as_str(), size), (Some(expected.root.as_str()), 2_500));
    assert!(path.len() <= 12, "O(log n): {} hashes", path.len());
    assert!(bandvote_contest::bulletin::verify_inclusion(&leaf, index, size, &path, &root), "{receipt}");
    let other = bandvote_contest::bulletin::root(&bulletin("b-10", 7).iter().map(|l| bandvote_contest::bulletin::leaf_hash(l.text().as_bytes())).collect::<Vec<_>>());
    assert!(!bandvote_contest::bulletin::verify_inclusion(&leaf, index, size, &path, &other), "a proof against another contest's root");

    // Proofs come from one chunk of 256 lines and the chunks' roots: every
    // tenth vote's (chunks 0-9, the short last one too) verifies at its place.
    let position: std::collections::HashMap<&str, u64> = lines.iter().enumerate().map(|(i, l)| (l.leaf.as_str(), i as u64)).collect();
    for i in (0..2_500).step_by(10) {
        let p = log.bulletin_inclusion("b-1", &format!("v{i}")).await.unwrap().expect("in the bulletin");
        let line: Line = serde_json::from_str(&p.line).unwrap();
        assert_eq!((p.index, p.size), (position[line.leaf.as_str()], 2_500), "vote v{i}");
        assert!(bandvote_contest::bulletin::verify_inclusion(&bandvote_contest::bulletin::leaf_hash(p.line.as_bytes()), p.index, p.size, &p.path, &root), "vote v{i}");
    }
    assert_eq!(log.bulletin_inclusion("b-1", "not-a-vote").await.unwrap(), None);
}
