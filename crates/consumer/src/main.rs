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
use bandvote_consumer::recount;
use bandvote_store::Counters;
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
    /// The dead letters (poison records).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// Republish the dead letters (topic and MongoDB fallback) that decode as
    /// votes now; they keep their vote ids, so nothing is counted twice.
    Replay,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await,
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

async fn run(config: ConsumerConfig) -> anyhow::Result<()> {
    let metrics = ConsumerMetrics::new();
    let admin = bandvote_telemetry::bind(config.admin_listen, "the admin endpoint").await?;
    let pipeline = Pipeline::connect(config.clone(), metrics.clone()).await.context("starting the consumer")?;
    let (counters, log, kafka) = (pipeline.applier().counters().clone(), pipeline.applier().log().clone(), pipeline.health());
    let ready: bandvote_telemetry::ReadyCheck = Arc::new(move || {
        let (counters, log, kafka) = (counters.clone(), log.clone(), kafka.clone());
        Box::pin(async move {
            kafka.readiness()?;
            counters.ping().await.map_err(|e| format!("redis: {e}"))?;
            log.ping().await.map_err(|e| format!("mongodb: {e}"))?;
            Ok("kafka ok, redis ok, mongodb ok".to_string())
        })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, metrics.registry.clone(), ready));
    tracing::info!(topic = %config.topic, group = %config.group, admin = %config.admin_listen, "bandvote-consumer running");
    pipeline.run(bandvote_telemetry::shutdown_signal()).await;
    Ok(())
}
