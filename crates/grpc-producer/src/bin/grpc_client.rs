//! `bandvote-grpc-client`: the gRPC client hop (HTTP JSON votes → gRPC
//! producer). Config → wiring → run; the logic is `bandvote_grpc::hop`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bandvote_grpc::hop::{self, GrpcHop, HopConfig};
use clap::Parser as _;

#[derive(Debug, clap::Parser)]
#[command(name = "bandvote-grpc-client", about = "HTTP JSON votes in, gRPC calls to bandvote-grpc out (the ingress's /grpc path)")]
struct Config {
    /// HTTP listen address (the same paths and replies as the wasm intake, plus /grpc).
    #[arg(long, env = "BANDVOTE_HOP_LISTEN", default_value = "127.0.0.1:8083")]
    listen: SocketAddr,
    /// The gRPC producer.
    #[arg(long, env = "BANDVOTE_GRPC_TARGET", default_value = "http://127.0.0.1:50051")]
    target: String,
    /// Whole time one request may take, retries included, in milliseconds.
    #[arg(long, env = "BANDVOTE_HOP_DEADLINE_MS", default_value_t = 8_000)]
    deadline_ms: u64,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "BANDVOTE_HOP_ADMIN_LISTEN", default_value = "127.0.0.1:9183")]
    admin_listen: SocketAddr,
}

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let c = Config::parse();
    let hop = GrpcHop::new(HopConfig { target: c.target.clone(), deadline: Duration::from_millis(c.deadline_ms), backoff: Duration::from_millis(50) })
        .context("the gRPC target URL")?;
    let admin = bandvote_telemetry::bind(c.admin_listen, "the admin endpoint").await?;
    let ready_hop = hop.clone();
    let ready: bandvote_telemetry::ReadyCheck = Arc::new(move || {
        let h = ready_hop.clone();
        Box::pin(async move { h.ready().await.map(|()| "grpc producer serving".to_string()) })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, prometheus::Registry::new(), ready));
    let listener = bandvote_telemetry::bind(c.listen, "the HTTP side").await?;
    tracing::info!(listen = %c.listen, target = %c.target, "bandvote-grpc-client serving");
    axum::serve(listener, hop::router(hop)).with_graceful_shutdown(bandvote_telemetry::shutdown_signal()).await?;
    Ok(())
}
