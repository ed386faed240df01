//! `bandvote-consumer`: config → wiring → run.
//!
//! `bandvote-consumer run` consumes; `bandvote-consumer recount [--rebuild]`
//! recomputes the counters from MongoDB and exits non-zero on a difference.

use std::sync::Arc;

use anyhow::Context as _;
use bandvote_consumer::config::ConsumerConfig;
use bandvote_consumer::metrics::ConsumerMetrics;
use bandvote_consumer::mongo::VoteLog;
use bandvote_consumer::pipeline::Pipeline;
use bandvote_consumer::recount;
use bandvote_consumer::redis::Counters;
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
    /// Recompute all counters from MongoDB and diff them against Redis.
    Recount {
        /// Overwrite Redis with the counts from MongoDB instead of only comparing.
        #[arg(long)]
        rebuild: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let cli = Cli::parse();
    let config = cli.config;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config).await,
        Command::Recount { rebuild } => {
            let counters = Counters::connect(&config.redis_url, &config.redis_prefix).await.context("connecting to Redis")?;
            let log = VoteLog::connect(&config.mongo_url, &config.mongo_db, &config.mongo_collection).await.context("connecting to MongoDB")?;
            if rebuild {
                let t = recount::rebuild(&log, &counters, &config.topic).await?;
                println!("rebuilt Redis from MongoDB: {} votes, {} bands, {} albums", t.total, t.by_band.len(), t.by_album.len());
                return Ok(());
            }
            let (t, diffs) = recount::recount(&log, &counters).await?;
            println!("vote log: {} votes, {} bands, {} albums", t.total, t.by_band.len(), t.by_album.len());
            for d in &diffs {
                println!("DIFF {}: log {} vs counters {}", d.what, d.log, d.counters);
            }
            if diffs.is_empty() {
                println!("recount: counters match the vote log");
                Ok(())
            } else {
                anyhow::bail!("recount: {} differences", diffs.len())
            }
        }
    }
}

async fn run(config: ConsumerConfig) -> anyhow::Result<()> {
    let metrics = ConsumerMetrics::new();
    let admin = bandvote_telemetry::bind(config.admin_listen, "the admin endpoint").await?;
    let pipeline = Pipeline::connect(config.clone(), metrics.clone()).await.context("starting the consumer")?;
    let (counters, log) = (pipeline.applier().counters().clone(), pipeline.applier().log().clone());
    let ready: bandvote_telemetry::ReadyCheck = Arc::new(move || {
        let (counters, log) = (counters.clone(), log.clone());
        Box::pin(async move {
            counters.ping().await.map_err(|e| format!("redis: {e}"))?;
            log.ping().await.map_err(|e| format!("mongodb: {e}"))?;
            Ok("redis ok, mongodb ok".to_string())
        })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, metrics.registry.clone(), ready));
    tracing::info!(topic = %config.topic, group = %config.group, admin = %config.admin_listen, "bandvote-consumer running");
    pipeline.run(bandvote_telemetry::shutdown_signal()).await;
    Ok(())
}
