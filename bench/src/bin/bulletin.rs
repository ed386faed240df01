//! `bandvote-bulletin-bench`: a certified contest's bulletin at scale
//! (benchmarks only). Stores `--votes` synthetic votes of one contest in a
//! MongoDB collection of its own, then times what `contest certify` and the
//! web app do with them, with the same code: the pass that writes the
//! bulletin and reads it back for its root and index
//! (`bandvote_consumer::certify::write_bulletin`), the download's read of
//! every line in order, and receipts' inclusion proofs (each verified
//! against the root). Prints one JSON object; peak RSS after each step
//! shows what the process held.

use std::time::Instant;

use bandvote_consumer::certify::{fingerprint, write_bulletin, KafkaVotes};
use bandvote_contest::bulletin::{leaf_hash, leaf_id, unhex, verify_inclusion};
use bandvote_store::VoteLog;
use clap::Parser;
use futures::TryStreamExt as _;
use mongodb::bson::doc;

#[derive(Parser)]
struct Args {
    /// Votes in the contest.
    #[arg(long, default_value_t = 1_000_000)]
    votes: u64,
    /// Receipts whose proofs are timed.
    #[arg(long, default_value_t = 1_000)]
    proofs: u64,
    #[arg(long, env = "BANDVOTE_MONGO_URL", default_value = "mongodb://127.0.0.1:27017/")]
    mongo_url: String,
    #[arg(long, default_value = "bandvote_bench")]
    database: String,
    /// A collection of its own (dropped first).
    #[arg(long, default_value = "bulletin_bench")]
    collection: String,
}

/// Peak resident memory of this process so far (kB), from /proc.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

const BANDS: [&str; 5] = ["Alux Nahual", "Bohemia Suburbana", "Viernes Verde", "Malacates Trébol Shop", "Radio Viejo"];

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let contest = "bench-bulletin";
    let log = VoteLog::open(&a.mongo_url, &a.database, &a.collection).await?;
    log.collection().drop().await?;
    log.clear_bulletin(contest).await?;
    let vote_id = |i: u64| format!("bench-{i:08}");

    // The votes, as the consumer would have stored them (one in 20 over the
    // voter's cap), and what the Kafka scan would have found.
    let t = Instant::now();
    let mut in_kafka = KafkaVotes::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..a.votes {
        let id = vote_id(i);
        in_kafka.insert(fingerprint(&leaf_id(contest, &id)), (0, i as i64));
        let status = if i % 20 == 19 { "over_limit" } else { "counted" };
        batch.push(doc! { "_id": id, "contest": contest, "band": BANDS[(i % 5) as usize], "status": status });
        if batch.len() == 10_000 || i + 1 == a.votes {
            log.collection().insert_many(std::mem::take(&mut batch)).await?;
        }
        if (i + 1) % 200_000 == 0 {
            eprintln!("bulletin bench: {} of {} votes stored", i + 1, a.votes);
        }
    }
    let store_s = t.elapsed().as_secs_f64();
    let rss_after_store = peak_rss_kb();

    // certify's pass: the bulletin written, read back, indexed.
    eprintln!("bulletin bench: writing the bulletin (certify's pass)");
    let t = Instant::now();
    let pass = write_bulletin(&log, contest, &mut in_kafka).await?;
    let build_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(in_kafka.is_empty() && pass.not_in_kafka.is_empty() && pass.bulletin.lines == a.votes, "the pass lost votes: {pass:?}");
    let rss_after_build = peak_rss_kb();

    // The download: every line in order, as the web app streams it.
    let t = Instant::now();
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut all = std::pin::pin!(log.bulletin(contest).await?);
    while let Some(line) = all.try_next().await? {
        bytes += line.text().len() as u64 + 1;
        lines += 1;
    }
    let download_s = t.elapsed().as_secs_f64();

    // Receipts: proofs of votes spread over the contest, each verified.
    let root = unhex(&pass.bulletin.root).expect("hex root");
    let mut ms = Vec::new();
    let mut longest_path = 0;
    for k in 0..a.proofs.min(a.votes) {
        let id = vote_id(k * a.votes / a.proofs.min(a.votes).max(1));
        let t = Instant::now();
        let p = log.bulletin_inclusion(contest, &id).await?.ok_or_else(|| anyhow::anyhow!("no proof for {id}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(verify_inclusion(&leaf_hash(p.line.as_bytes()), p.index, p.size, &p.path, &root), "proof of {id} does not verify");
        longest_path = longest_path.max(p.path.len());
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms.get(((ms.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let out = serde_json::json!({
        "votes": a.votes,
        "store_seconds": (store_s * 10.0).round() / 10.0,
        "build_seconds": (build_s * 10.0).round() / 10.0,
        "build_lines_per_sec": (a.votes as f64 / build_s).round(),
        "download_seconds": (download_s * 10.0).round() / 10.0,
        "download_bytes": bytes,
        "download_lines": lines,
        "proofs": ms.len(),
        "proof_ms_p50": (q(0.5) * 100.0).round() / 100.0,
        "proof_ms_p99": (q(0.99) * 100.0).round() / 100.0,
        "proof_path_hashes_max": longest_path,
        "peak_rss_kb_after_store": rss_after_store,
        "peak_rss_kb_after_build": rss_after_build,
        "peak_rss_kb_end": peak_rss_kb(),
        "root": pass.bulletin.root,
    });
    println!("{out}");
    log.collection().drop().await?;
    log.clear_bulletin(contest).await?;
    Ok(())
}
