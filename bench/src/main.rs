//! `bandvote-load`: send votes to an intake for a bounded time at a fixed
//! concurrency, print a progress line every second, and write a JSON report
//! (sent, acked, rejected, errors, rate, latency percentiles).
//!
//! Targets are loopback addresses only; the run stops by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bandvote_grpc::proto::bandvote::vote_service_client::VoteServiceClient;
use bandvote_vote::pb;
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for the bandvote intakes")]
struct Args {
    /// `http`, `grpc` (unary), `grpc-stream` (client-streamed batches) or
    /// `kafka` (the broker's own ceiling: the intakes' `VotePublisher`, no intake);
    /// `count` prints the records held by `--topic` and exits.
    #[arg(long, default_value = "http")]
    mode: String,
    /// Target: `http://127.0.0.1:8080/` for http, `http://127.0.0.1:50051` for
    /// gRPC, bootstrap servers `127.0.0.1:9092` for kafka.
    #[arg(long)]
    target: String,
    /// Topic for `--mode kafka`.
    #[arg(long, default_value = "votes")]
    topic: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many votes (0 = no limit).
    #[arg(long, default_value_t = 0)]
    max_votes: u64,
    /// Target rate in votes/s across all workers (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Every Nth request is deliberately invalid (0 = never), to show rejections.
    #[arg(long, default_value_t = 0)]
    invalid_every: u64,
    /// Votes per gRPC stream (grpc-stream mode).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Prefix for vote ids (makes retries idempotent and runs distinguishable).
    #[arg(long, default_value = "load")]
    id_prefix: String,
    /// Write the JSON report here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Label for progress lines.
    #[arg(long, default_value = "")]
    label: String,
    /// Print no progress lines.
    #[arg(long)]
    quiet: bool,
    /// Measure ack → counted: poll this Redis until the consumer's applied
    /// offset (`<prefix>offsets:<topic>`) reaches each sampled vote's offset.
    #[arg(long)]
    e2e_redis: Option<String>,
    #[arg(long, default_value = "")]
    e2e_prefix: String,
    /// The topic whose applied offsets the e2e poller reads.
    #[arg(long, default_value = "votes")]
    e2e_topic: String,
    /// Sample one vote in this many for the end-to-end latency.
    #[arg(long, default_value_t = 10)]
    e2e_every: u64,
    /// `--mode kafka`: stamp every vote with this contest id (what a
    /// publisher does for the current contest), to measure the consumer's rules.
    #[arg(long)]
    contest: Option<String>,
    /// `--mode kafka` with `--contest`: spread the votes over this many voters
    /// (`voter-<n>`; the record is keyed by voter, as the intakes do).
    #[arg(long, default_value_t = 0)]
    voters: u64,
}

const BANDS: &[(&str, &str, &str)] = &[
    ("Alux Nahual", "Alux Nahual", "1983"),
    ("Bohemia Suburbana", "Fiebre", "1999"),
    ("Viernes Verde", "Viernes Verde", "2002"),
    ("Malacates Trebol Shop", "Niño Bonito", "2007"),
    ("Radio Viejo", "Antología", "1996"),
    ("Soda Stereo", "Canción Animal", "1990"),
    ("Caifanes", "El Silencio", "1992"),
    ("Café Tacvba", "Re", "1994"),
];

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    overloaded: AtomicU64,
    errors: AtomicU64,
}

#[derive(Serialize)]
struct Report {
    mode: String,
    target: String,
    concurrency: usize,
    seconds: f64,
    sent: u64,
    acked: u64,
    rejected: u64,
    overloaded: u64,
    errors: u64,
    acked_per_sec: f64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    e2e_samples: u64,
    e2e_ms_p50: Option<f64>,
    e2e_ms_p99: Option<f64>,
}

/// Acked votes waiting to be seen counted: (partition, offset, ack time).
type Pending = Arc<Mutex<Vec<(i32, i64, Instant)>>>;

/// Poll Redis until the consumer's applied offset of each pending vote's
/// partition reaches its offset, recording ack → counted.
async fn e2e_poller(url: String, key: String, pending: Pending, hist: Arc<Mutex<Histogram<u64>>>, done: Arc<AtomicU64>) {
    let client = redis::Client::open(url).expect("redis url");
    let mut con = client.get_multiplexed_async_connection().await.expect("redis for e2e");
    loop {
        let empty = pending.lock().unwrap().is_empty();
        if empty && done.load(Ordering::Relaxed) == 1 {
            return;
        }
        if !empty {
            if let Ok(applied) = redis::cmd("HGETALL").arg(&key).query_async::<std::collections::HashMap<i32, i64>>(&mut con).await {
                let now = Instant::now();
                pending.lock().unwrap().retain(|(p, o, acked)| {
                    let counted = applied.get(p).is_some_and(|a| a >= o);
                    if counted {
                        let _ = hist.lock().unwrap().record(now.duration_since(*acked).as_micros().max(1) as u64);
                    }
                    !counted
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn vote_json(seq: u64, prefix: &str, invalid: bool) -> serde_json::Value {
    let (band, album, year) = BANDS[(seq as usize * 7 + seq as usize / 3) % BANDS.len()];
    let year = if invalid { "83" } else { year };
    let rank = format!("{:02}", seq % 10 + 1);
    // Alternate the two client shapes real clients send.
    if seq % 2 == 0 {
        serde_json::json!({ "name": band, "album": album, "year": year, "rank": rank, "vote_id": format!("{prefix}-{seq}") })
    } else {
        serde_json::json!({ "album": album, "year": year, "artist": band, "ranked": rank, "vote_id": format!("{prefix}-{seq}") })
    }
}

/// `vote` as a contest's publisher stamps it (`--contest`, `--voters`).
fn contest_vote(mut vote: bandvote_vote::Vote, seq: u64, args: &Args) -> bandvote_vote::Vote {
    if let Some(c) = &args.contest {
        vote.contest = Some(c.clone());
        if args.voters > 0 {
            vote.voter = Some(format!("voter-{}", seq % args.voters));
        }
    }
    vote
}

fn vote_raw(seq: u64, prefix: &str) -> bandvote_vote::Vote {
    let (band, album, year) = BANDS[(seq as usize * 7 + seq as usize / 3) % BANDS.len()];
    bandvote_vote::RawVote {
        band: Some(band.into()),
        album: Some(album.into()),
        year: Some(year.into()),
        rank: Some(format!("{}", seq % 10 + 1)),
        vote_id: Some(format!("{prefix}-{seq}")),
voter: None,
    }
    .validate(bandvote_vote::Source::Http, 0, None)
    .expect("bench votes are valid")
}

fn vote_pb(seq: u64, prefix: &str, invalid: bool) -> pb::Vote {
    let (band, album, year) = BANDS[(seq as usize * 7 + seq as usize / 3) % BANDS.len()];
    pb::Vote {
        band: band.into(),
        album: album.into(),
        year: if invalid { "83".into() } else { year.into() },
        rank: format!("{}", seq % 10 + 1),
        vote_id: format!("{prefix}-{seq}"),
        voter: String::new(),
    }
}

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.mode == "count" {
        // Not load: print how many records --topic holds (the bench checks acked votes survived).
        let n = bandvote_kafka::topic_record_count(&args.target, &args.topic, Duration::from_secs(10))?;
        println!("{}", serde_json::json!({ "topic": args.topic, "records": n }));
        return Ok(());
    }
    let counters = Arc::new(Counters::default());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let per_worker_interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.concurrency as f64 / args.rate));

    let pending: Pending = Arc::new(Mutex::new(Vec::new()));
    let e2e_hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?));
    let e2e_done = Arc::new(AtomicU64::new(0));
    let poller = args.e2e_redis.clone().map(|url| {
        let key = format!("{}{}", args.e2e_prefix, bandvote_store::keys::offsets(&args.e2e_topic));
        tokio::spawn(e2e_poller(url, key, pending.clone(), e2e_hist.clone(), e2e_done.clone()))
    });

    let kafka = (args.mode == "kafka")
        .then(|| {
            bandvote_kafka::VotePublisher::new(bandvote_kafka::PublisherConfig {
                brokers: args.target.clone(),
                topic: args.topic.clone(),
                max_in_flight: args.concurrency.max(1) * 2,
                ..Default::default()
            })
        })
        .transpose()?;
    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (args, counters, hist, seq, pending) = (args.clone(), counters.clone(), hist.clone(), seq.clone(), pending.clone());
        let kafka = kafka.clone();
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
            let mut grpc = match args.mode.as_str() {
                "grpc" | "grpc-stream" => Some(VoteServiceClient::connect(args.target.clone()).await.expect("gRPC connect")),
                _ => None,
            };
            // Open loop: workers start spread over one interval, so the offered
            // rate is smooth instead of `concurrency` requests at the same instant.
            let mut next = Instant::now() + per_worker_interval.map_or(Duration::ZERO, |iv| iv * worker as u32 / args.concurrency.max(1) as u32);
            while Instant::now() < deadline {
                if let Some(iv) = per_worker_interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let n = if args.mode == "grpc-stream" { args.batch as u64 } else { 1 };
                let first = seq.fetch_add(n, Ordering::Relaxed);
                if args.max_votes > 0 && first >= args.max_votes {
                    break;
                }
                let invalid = args.invalid_every > 0 && first % args.invalid_every == args.invalid_every - 1;
                counters.sent.fetch_add(n, Ordering::Relaxed);
                let t = Instant::now();
                let sample = args.e2e_redis.is_some() && first % args.e2e_every == 0;
                let mut located: Option<(i32, i64)> = None;
                let outcome: (u64, u64, u64, u64) = match args.mode.as_str() {
                    "http" => match http.post(&args.target).json(&vote_json(first, &args.id_prefix, invalid)).send().await {
                        Ok(r) if r.status().is_success() => {
                            if sample {
                                if let Ok(v) = r.json::<serde_json::Value>().await {
                                    located = v["partition"].as_i64().zip(v["offset"].as_i64()).map(|(p, o)| (p as i32, o));
                                }
                            }
                            (1, 0, 0, 0)
                        }
                        Ok(r) if r.status().as_u16() == 503 => (0, 0, 1, 0),
                        Ok(r) if r.status().is_client_error() => (0, 1, 0, 0),
                        _ => (0, 0, 0, 1),
                    },
                    "kafka" => match kafka.as_ref().unwrap().publish(&contest_vote(vote_raw(first, &args.id_prefix), first, &args)).await {
                        Ok(_) => (1, 0, 0, 0),
                        Err(bandvote_kafka::ProduceError::Overloaded { .. }) => (0, 0, 1, 0),
                        Err(_) => (0, 0, 0, 1),
                    },
                    "grpc" => match grpc.as_mut().unwrap().cast(vote_pb(first, &args.id_prefix, invalid)).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            located = Some((r.partition, r.offset));
                            (1, 0, 0, 0)
                        }
                        Err(s) if s.code() == tonic::Code::InvalidArgument => (0, 1, 0, 0),
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => (0, 0, 1, 0),
                        Err(_) => (0, 0, 0, 1),
                    },
                    _ => {
                        let votes: Vec<_> = (first..first + n).map(|s| vote_pb(s, &args.id_prefix, false)).collect();
                        match grpc.as_mut().unwrap().cast_batch(futures::stream::iter(votes)).await {
                            Ok(r) => (r.into_inner().receipts.len() as u64, 0, 0, 0),
                            Err(s) if s.code() == tonic::Code::ResourceExhausted => (0, 0, n, 0),
                            Err(_) => (0, 0, 0, n),
                        }
                    }
                };
                if let (true, Some((p, o))) = (sample, located) {
                    pending.lock().unwrap().push((p, o, Instant::now()));
                }
                let micros = t.elapsed().as_micros().max(1) as u64;
                let _ = hist.lock().unwrap().record(micros);
                counters.acked.fetch_add(outcome.0, Ordering::Relaxed);
                counters.rejected.fetch_add(outcome.1, Ordering::Relaxed);
                counters.overloaded.fetch_add(outcome.2, Ordering::Relaxed);
                counters.errors.fetch_add(outcome.3, Ordering::Relaxed);
            }
        }));
    }
    if !args.quiet {
        let counters = counters.clone();
        let label = if args.label.is_empty() { args.mode.clone() } else { args.label.clone() };
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = started.elapsed().as_secs_f64();
                let acked = counters.acked.load(Ordering::Relaxed);
                eprintln!(
                    "[load {label}] {s:5.1}s sent {} acked {} rejected {} overloaded {} errors {} ({:.0}/s)",
                    counters.sent.load(Ordering::Relaxed),
                    acked,
                    counters.rejected.load(Ordering::Relaxed),
                    counters.overloaded.load(Ordering::Relaxed),
                    counters.errors.load(Ordering::Relaxed),
                    acked as f64 / s
                );
            }
        });
    }
    for w in workers {
        w.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(p) = poller {
        e2e_done.store(1, Ordering::Relaxed);
        if tokio::time::timeout(Duration::from_secs(60), p).await.is_err() {
            eprintln!("[load] e2e: some sampled votes were not counted within 60 s");
        }
    }
    let e = e2e_hist.lock().unwrap();
    let e2e = |q: f64| (e.len() > 0).then(|| e.value_at_quantile(q) as f64 / 1000.0);
    let h = hist.lock().unwrap();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let report = Report {
        mode: args.mode.clone(),
        target: args.target.clone(),
        concurrency: args.concurrency,
        seconds,
        sent: counters.sent.load(Ordering::Relaxed).min(if args.max_votes > 0 { args.max_votes } else { u64::MAX }),
        acked: counters.acked.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        overloaded: counters.overloaded.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        acked_per_sec: counters.acked.load(Ordering::Relaxed) as f64 / seconds,
        latency_ms_p50: ms(0.5),
        latency_ms_p90: ms(0.9),
        latency_ms_p99: ms(0.99),
        latency_ms_max: h.max() as f64 / 1000.0,
        e2e_samples: e.len(),
        e2e_ms_p50: e2e(0.5),
        e2e_ms_p99: e2e(0.99),
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &json)?;
    }
    println!("{json}");
    Ok(())
}
