//! `bandvote-web`: config → wiring → run.

use std::net::SocketAddr;

use bandvote_web::{router, AppState, Ballot, Sources};
use clap::Parser as _;

#[derive(clap::Parser)]
#[command(name = "bandvote-web", about = "The bandvote results page and JSON API")]
struct Config {
    #[arg(long, env = "BANDVOTE_WEB_LISTEN", default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[arg(long, env = "BANDVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    redis_url: String,
    #[arg(long, env = "BANDVOTE_REDIS_PREFIX", default_value = "")]
    redis_prefix: String,
    #[arg(long, env = "BANDVOTE_MONGO_URL", default_value = "mongodb://127.0.0.1:27017/")]
    mongo_url: String,
    #[arg(long, env = "BANDVOTE_MONGO_DB", default_value = "bandvote")]
    mongo_db: String,
    #[arg(long, env = "BANDVOTE_MONGO_COLLECTION", default_value = "votes")]
    mongo_collection: String,
    /// The intake the ballot's votes are forwarded to (`POST /api/vote`);
    /// unset: no forwarding (the ballot posts to the intake's own path, `--ballot-post`).
    #[arg(long, env = "BANDVOTE_WEB_INTAKE_URL")]
    intake_url: Option<String>,
    /// Where the ballot page posts votes, same origin: `api/vote` (forwarded
    /// by this app) or the intake's own path behind the same Ingress (`/wasm`).
    #[arg(long, env = "BANDVOTE_WEB_BALLOT_POST", default_value = "api/vote")]
    ballot_post: String,
}

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let c = Config::parse();
    let state = AppState::with_ballot(Sources {
        redis_url: c.redis_url,
        redis_prefix: c.redis_prefix,
        mongo_url: c.mongo_url,
        mongo_db: c.mongo_db,
        mongo_collection: c.mongo_collection,
    }, Ballot { post_path: c.ballot_post, intake_url: c.intake_url });
    let listener = bandvote_telemetry::bind(c.listen, "the web app").await?;
    tracing::info!(url = %format!("http://{}/", listener.local_addr()?), "bandvote-web serving");
    axum::serve(listener, router(state)).with_graceful_shutdown(bandvote_telemetry::shutdown_signal()).await?;
    Ok(())
}
