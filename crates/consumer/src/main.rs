//! `bandvote-consumer`: config → wiring → run.
//!
//! `bandvote-consumer run` consumes; `bandvote-consumer recount [--rebuild]`
//! recomputes the counters from MongoDB and exits non-zero on a difference.

use std::sync::Arc;

use anyhow::Context as _;
use bandvote_consumer::config::ConsumerConfig;
use bandvote_consumer::metrics::ConsumerMetrics;
use bandvote_store::VoteLog;
use bandvote_consumer::pipeline::Pipeline;
use bandvote_consumer::contest_admin::{now_ms, tokens, ContestAdmin};
use bandvote_consumer::recount;
use bandvote_store::{BandNames, ContestStore, Counters, PublishedThrough};
use clap::Parser as _;

#[derive(clap::Parser)]
#[command(name = "bandvote-consumer", about = "Count votes from Kafka into Redis and log them in MongoDB, exactly once")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConsumerConfig,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Consume the votes topic (the default).
    Run,
    /// Recompute all counters from MongoDB (or the Kafka topic) and diff them
    /// against Redis's hashes and leaderboards; exit 1 on any difference.
    Recount {
        /// Overwrite Redis with the counts from MongoDB instead of only comparing.
        #[arg(long, conflicts_with = "from")]
        rebuild: bool,
        /// What to count from: `mongo` (the vote log) or `kafka` (the whole
        /// topic read from the beginning, compared with Redis and MongoDB).
        #[arg(long, value_parser = ["mongo", "kafka"], default_value = "mongo")]
        from: String,
    },
    /// Run a contest: roster, voting window, votes per voter, certified result.
    Contest {
        #[command(subcommand)]
        command: ContestCommand,
    },
    /// The dead letters (poison records).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The capped sets of band and album names the intakes admit.
    Names {
        #[command(subcommand)]
        command: NamesCommand,
    },
}

#[derive(clap::Subcommand)]
enum NamesCommand {
    /// How many names are admitted of the cap, and those with few counted votes.
    Show(NamesArgs),
    /// Take the names with at most `--max-votes` counted votes out of the set,
    /// so new names are admitted again once junk filled the cap (their counters stay).
    Forget(NamesArgs),
}

#[derive(clap::Args)]
struct NamesArgs {
    /// Albums (`albums:known`) instead of bands (`bands:known`).
    #[arg(long)]
    albums: bool,
    /// The names with at most this many counted votes.
    #[arg(long, default_value_t = 1)]
    max_votes: u64,
    /// The intakes' band cap (shown beside the count).
    #[arg(long, env = "BANDVOTE_MAX_BANDS", default_value_t = 1_000)]
    max_bands: usize,
    /// The intakes' album cap.
    #[arg(long, env = "BANDVOTE_MAX_ALBUMS", default_value_t = 10_000)]
    max_albums: usize,
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// Republish the dead letters (topic and MongoDB fallback) that decode as
    /// votes now; they keep their vote ids, so nothing is counted twice.
    Replay,
}

#[derive(clap::Subcommand)]
enum ContestCommand {
    /// Create a contest (from --file, a JSON definition, or flags) and make it current.
    Create {
        /// A JSON definition (fields of `bandvote_contest::Contest`).
        #[arg(long, conflicts_with_all = ["id", "title", "roster"])]
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        title: Option<String>,
        /// Bands, comma-separated (empty: any band).
        #[arg(long, value_delimiter = ',')]
        roster: Vec<String>,
        /// Opens this many seconds from now (0: now).
        #[arg(long, default_value_t = 0)]
        opens_in_secs: i64,
        /// Stays open this many seconds.
        #[arg(long, default_value_t = 3_600)]
        open_for_secs: i64,
        /// Most counted votes per voter (0: unlimited).
        #[arg(long, default_value_t = 0)]
        votes_per_voter: u32,
        /// `anonymous`, `id` or `token`.
        #[arg(long, default_value = "anonymous")]
        voters: String,
        /// Past the cap: `refuse` (stored as over_limit) or `replace` (the
        /// voter's latest vote counts; needs --votes-per-voter 1).
        #[arg(long, default_value = "refuse")]
        revote: String,
        /// The secret voter tokens are signed with (at least 32 bytes): a
        /// `voters = token` contest is refused without it.
        #[arg(long, env = "BANDVOTE_CONTEST_SECRET", hide_env_values = true)]
        contest_secret: Option<String>,
    },
    /// Open voting now.
    Open { #[arg(long)] id: Option<String> },
    /// Close voting: votes received from the closing time on are refused (403) and never counted.
    Close {
        #[arg(long)]
        id: Option<String>,
        /// Close this many ms from now (default 2 s: longer than the intakes'
        /// contest poll, so all of them refuse from the same instant).
        #[arg(long, default_value_t = 2_000)]
        in_ms: i64,
    },
    /// Print a contest (default: the current one), its live tally and its certificate.
    Show { #[arg(long)] id: Option<String> },
    /// Leave the current contest (votes count as without one; its results stay).
    Archive,
    /// Certify a closed contest: wait until every vote is applied, recount from
    /// Kafka and MongoDB, compare with Redis; exit 1 and no certificate on any difference.
    Certify {
        #[arg(long)]
        id: Option<String>,
        /// Longest wait for the consumer to apply the topic up to its end.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
        /// The intakes' Kafka delivery timeout (their BANDVOTE_DELIVERY_TIMEOUT_MS):
        /// a vote received before the close may reach Kafka this long after it.
        #[arg(long, env = "BANDVOTE_DELIVERY_TIMEOUT_MS", default_value_t = 5_000)]
        delivery_timeout_ms: u64,
        /// How far an intake's clock may be behind this machine's.
        #[arg(long, env = "BANDVOTE_CLOCK_SKEW_MS", default_value_t = 2_000)]
        clock_skew_ms: u64,
        /// The intakes' idempotency window (their BANDVOTE_IDEMPOTENCY_WINDOW_SECS):
        /// a retry of a vote admitted before the close is published that long after it.
        #[arg(long, env = "BANDVOTE_IDEMPOTENCY_WINDOW_SECS", default_value_t = 300)]
        idempotency_window_secs: u64,
    },
    /// Check a downloaded bulletin (docs/bulletin.md) against what its
    /// certificate states (--root, or --certificate for the tallies too):
    /// recount it line by line, print the tally; with --index, name the run
    /// of lines that departs from the certified one; with --receipt, that
    /// vote's line. Needs nothing of this deployment. Exit 1 on any
    /// difference, naming it.
    Verify {
        #[arg(long)]
        bulletin: std::path::PathBuf,
        /// The root the certificate states (64 hex digits).
        #[arg(long, required_unless_present = "certificate", conflicts_with = "certificate")]
        root: Option<String>,
        /// The certificate (JSON, as `contest certify` prints it or the web
        /// app's `/api/contest` serves it for the current contest): root, line count and tallies.
        #[arg(long)]
        certificate: Option<std::path::PathBuf>,
        /// The bulletin's index (`/api/contest/{id}/bulletin/index`, NDJSON).
        #[arg(long)]
        index: Option<std::path::PathBuf>,
        /// The contest's id (with --receipt).
        #[arg(long)]
        contest: Option<String>,
        /// A vote id from a receipt.
        #[arg(long, requires = "contest")]
        receipt: Option<String>,
    },
    /// Print voter tokens for a `voters = token` contest, one per line.
    Tokens {
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value_t = 10)]
        count: u32,
        #[arg(long, default_value = "voter")]
        prefix: String,
        #[arg(long, default_value_t = 86_400)]
        valid_secs: i64,
        #[arg(long, env = "BANDVOTE_CONTEST_SECRET", hide_env_values = true)]
        contest_secret: Option<String>,
    },
}

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await,
        Command::Contest { command: ContestCommand::Verify { bulletin, root, certificate, index, contest, receipt } } => {
            use bandvote_contest::bulletin::{verify_file, Expected};
            let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
            let mut expected = match (&root, &certificate) {
                (Some(root), _) => Expected { root: root.clone(), ..Default::default() },
                (None, Some(c)) => Expected::from_certificate_json(&read(c)?)?,
                (None, None) => anyhow::bail!("--root or --certificate"),
            };
            if let Some(index) = &index {
                expected = expected.with_index_ndjson(&read(index)?)?;
            }
            let receipt = contest.as_deref().zip(receipt.as_deref());
            let (s, found) = verify_file(&bulletin, &expected, receipt)?;
            let what = [Some("root"), certificate.as_ref().map(|_| "line count and tallies"), index.as_ref().map(|_| "index")].into_iter().flatten().collect::<Vec<_>>().join(", ");
            println!("bulletin {}: {} lines, root {} (the certificate's {what} agree)", bulletin.display(), s.lines, s.root);
            println!("counted by band: {:?}", s.by_band);
            println!("by status: {:?}", s.by_status);
            if let Some((_, vote_id)) = receipt {
                match found {
                    Some(line) => println!("vote {vote_id}: in the bulletin, band {:?}, status {}", line.band, line.status),
                    None => anyhow::bail!("vote {vote_id} is not in the bulletin"),
                }
            }
            Ok(())
        }
        Command::Contest { command } => contest_command(&config, command).await,
        Command::Dlq { command: DlqCommand::Replay } => {
            let log = VoteLog::open(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.context("connecting to MongoDB")?;
            let publisher = bandvote_kafka::VotePublisher::new(bandvote_kafka::PublisherConfig {
                brokers: config.kafka_brokers.clone(),
                topic: config.topic.clone(),
                ..Default::default()
            })
            .context("creating the Kafka producer")?;
            let r = bandvote_consumer::dead_letter::replay(&config.kafka_brokers, &config.dlq_topic, &log, &publisher).await?;
            publisher.flush(std::time::Duration::from_secs(10)).context("flushing the producer")?;
            println!("dlq replay: {} republished to {}, {} still not votes (left in place)", r.republished, config.topic, r.still_poison);
            Ok(())
        }
        Command::Names { command } => {
            let (args, dry_run) = match command {
                NamesCommand::Show(args) => (args, true),
                NamesCommand::Forget(args) => (args, false),
            };
            let NamesArgs { albums, max_votes, max_bands, max_albums } = args;
            let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.context("connecting to Redis")?;
            let totals = counters.totals().await.context("reading the counters")?;
            let (what, names, counts) = if albums {
                ("albums", BandNames::albums(&config.redis_url, &config.redis_prefix, max_albums)?, totals.by_album)
            } else {
                ("bands", BandNames::new(&config.redis_url, &config.redis_prefix, max_bands)?, totals.by_band)
            };
            let r = bandvote_consumer::names::forget(&names, &counts, max_votes, dry_run).await.context("reading the names")?;
            let verb = if dry_run { "with" } else { "forgotten, each with" };
            println!("{what}: {} admitted (cap {}); {} {verb} at most {max_votes} counted vote(s)", r.admitted, r.cap, r.rare.len());
            for n in r.rare.iter().take(50) {
                println!("  {n} ({})", counts.get(n).copied().unwrap_or(0));
            }
            Ok(())
        }
        Command::Recount { rebuild, from } => {
            let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.context("connecting to Redis")?;
            let log = VoteLog::connect(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.context("connecting to MongoDB")?;
            let result = recount_command(&config, &log, &counters, rebuild, &from).await;
            // Close the driver's pool before the runtime goes (it panics when dropped mid-shutdown).
            log.close().await;
            result
        }
    }
}

/// `recount`: compare (or, with `rebuild`, replace) Redis's counters with the vote log or the topic.
async fn recount_command(config: &ConsumerConfig, log: &VoteLog, counters: &Counters, rebuild: bool, from: &str) -> anyhow::Result<()> {
    if rebuild {
        let Some(t) = recount::rebuild(log, counters, &config.topic).await? else {
            anyhow::bail!("another rebuild is running (Redis key `rebuilding`); try again when it is done")
        };
        println!("rebuilt Redis from MongoDB: {} votes, {} bands, {} albums", t.total, t.by_band.len(), t.by_album.len());
        return Ok(());
    }
    let diffs = if from == "kafka" {
        let (scan, diffs) = recount::recount_from_kafka(&config.kafka_brokers, &config.topic, log, counters).await?;
        let t = &scan.totals;
        println!(
            "topic {}: {} records, {} distinct votes, {} repeats, {} undecodable; {} bands, {} albums",
            config.topic, scan.records, t.total, scan.repeats, scan.undecodable, t.by_band.len(), t.by_album.len()
        );
        diffs
    } else {
        let (t, diffs) = recount::recount(log, counters).await?;
        println!("vote log: {} votes, {} bands, {} albums", t.total, t.by_band.len(), t.by_album.len());
        diffs
    };
    for d in &diffs {
        println!("DIFF {}: log {} vs counters {}", d.what, d.log, d.counters);
    }
    if diffs.is_empty() {
        println!("recount: counters match the {}", if from == "kafka" { "topic, and so does the vote log" } else { "vote log" });
        Ok(())
    } else {
        anyhow::bail!("recount: {} differences", diffs.len())
    }
}

async fn contest_command(config: &ConsumerConfig, command: ContestCommand) -> anyhow::Result<()> {
    let store = ContestStore::new(&config.redis_url, &config.redis_prefix).context("connecting to Redis")?;
    let log = VoteLog::connect(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.context("connecting to MongoDB")?;
    let admin = ContestAdmin { store, log };
    let result = contest_subcommand(config, &admin, command).await;
    // Close the driver's pool before the runtime goes (it panics when dropped mid-shutdown).
    admin.log.close().await;
    result
}

async fn contest_subcommand(config: &ConsumerConfig, admin: &ContestAdmin, command: ContestCommand) -> anyhow::Result<()> {
    let print = |c: &bandvote_contest::Contest| println!("{}", serde_json::to_string_pretty(c).unwrap_or_default());
    match command {
        ContestCommand::Create { file, id, title, roster, opens_in_secs, open_for_secs, votes_per_voter, voters, revote, contest_secret } => {
            let contest = match file {
                Some(f) => serde_json::from_slice(&std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?)
                    .with_context(|| format!("{} is not a contest definition", f.display()))?,
                None => {
                    let opens = now_ms() + opens_in_secs * 1000;
                    bandvote_contest::Contest {
                        id: id.context("--id (or --file) is required")?,
                        title: title.unwrap_or_default(),
                        roster: roster.into_iter().filter(|b| !b.trim().is_empty()).map(|band| bandvote_contest::Entry { band, albums: vec![] }).collect(),
                        opens_at_ms: opens,
                        closes_at_ms: opens + open_for_secs * 1000,
                        votes_per_voter,
                        revote: serde_json::from_value(serde_json::Value::String(revote.clone())).with_context(|| format!("--revote {revote:?}: refuse or replace"))?,
                        voters: serde_json::from_value(serde_json::Value::String(voters.clone())).with_context(|| format!("--voters {voters:?}: anonymous, id or token"))?,
                    }
                }
            };
            print(&admin.create(contest, contest_secret.as_deref().map(str::as_bytes)).await?);
        }
        ContestCommand::Open { id } => print(&admin.open_now(id.as_deref()).await?),
        ContestCommand::Close { id, in_ms } => {
            let c = admin.close_in(id.as_deref(), in_ms).await?;
            print(&c);
            let wait = c.closes_at_ms - now_ms();
            if wait > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
            }
            println!("closed at {} ms", c.closes_at_ms);
        }
        ContestCommand::Archive => {
            admin.archive().await?;
            println!("no current contest: votes count as without one");
        }
        ContestCommand::Show { id } => {
            let c = admin.find(id.as_deref()).await?;
            print(&c);
            let tally = admin.store.tally(&c.id).await?;
            println!("phase: {:?}; counted {} ({} voters); by status {:?}", c.phase(now_ms()), tally.total, tally.voters, tally.by_status);
            if let Some(cert) = admin.log.certificate(&c.id).await? {
                println!("final, certified at {} ms, digest {}", cert.certified_at_ms, cert.digest);
            }
        }
        // Needs nothing of the deployment: run in `main` before connecting.
        ContestCommand::Verify { .. } => anyhow::bail!("contest verify runs without the stores"),
        ContestCommand::Tokens { id, count, prefix, valid_secs, contest_secret } => {
            let c = admin.find(id.as_deref()).await?;
            for t in tokens(&c, contest_secret.as_deref(), &prefix, count, valid_secs)? {
                println!("{t}");
            }
        }
        ContestCommand::Certify { id, wait_secs, delivery_timeout_ms, clock_skew_ms, idempotency_window_secs } => {
            let c = admin.find(id.as_deref()).await?;
            let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.context("connecting to Redis")?;
            let wait = std::time::Duration::from_secs(wait_secs);
            let settle = bandvote_consumer::certify::Settle {
                delivery_timeout: std::time::Duration::from_millis(delivery_timeout_ms),
                clock_skew: std::time::Duration::from_millis(clock_skew_ms),
                claim_window: std::time::Duration::from_secs(idempotency_window_secs),
            };
            let reports = PublishedThrough::new(&config.redis_url, &config.redis_prefix).context("connecting to Redis")?;
            let (cert, new) = bandvote_consumer::certify::certify(&config.kafka_brokers, &config.topic, &c, &admin.store, &counters, &admin.log, &reports, wait, settle).await?;
            println!("{}", serde_json::to_string_pretty(&cert).unwrap_or_default());
            println!("{} {}: final, certified at {} ms, digest {}", if new { "certified" } else { "already certified" }, cert.contest, cert.certified_at_ms, cert.digest);
        }
    }
    Ok(())
}

async fn run(config: ConsumerConfig) -> anyhow::Result<()> {
    let metrics = ConsumerMetrics::new();
    let admin = bandvote_telemetry::bind(config.admin_listen, "the admin endpoint").await?;
    let pipeline = Pipeline::connect(config.clone(), metrics.clone()).await.context("starting the consumer")?;
    let (counters, log, kafka) = (pipeline.applier().counters().clone(), pipeline.applier().log().clone(), pipeline.health());
    let ready: bandvote_telemetry::ReadyCheck = Arc::new(move || {
        let (counters, log, kafka) = (counters.clone(), log.clone(), kafka.clone());
        // Each store answers within 400 ms or is not ready: a probe (1 s in
        // k8s) never waits on a socket a network cut left silent.
        let within = std::time::Duration::from_millis(400);
        Box::pin(async move {
            kafka.readiness()?;
            match tokio::time::timeout(within, counters.ping()).await {
                Ok(r) => r.map_err(|e| format!("redis: {e}"))?,
                Err(_) => return Err(format!("redis: no answer within {} ms", within.as_millis())),
            }
            match tokio::time::timeout(within, log.ping()).await {
                Ok(r) => r.map_err(|e| format!("mongodb: {e}"))?,
                Err(_) => return Err(format!("mongodb: no answer within {} ms", within.as_millis())),
            }
            Ok("kafka ok, redis ok, mongodb ok".to_string())
        })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, metrics.registry.clone(), ready));
    // Redis is a cache of the current contest: put back what it loses, so
    // the intakes' 503 ("not known") lasts at most about a second.
    let contests = ContestStore::new(&config.redis_url, &config.redis_prefix).context("connecting to Redis")?;
    let durable = pipeline.applier().log().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = bandvote_consumer::contest_admin::restore(&contests, &durable).await {
                tracing::warn!(error = %e, "current contest not checked/restored");
            }
        }
    });
    tracing::info!(topic = %config.topic, group = %config.group, admin = %config.admin_listen, "bandvote-consumer running");
    pipeline.run(bandvote_telemetry::shutdown_signal()).await;
    Ok(())
}
