//! `bandvote-sandbox`: the production wasm host runtime (`bandvote-host`'s
//! library: compile once, pooling allocator, one instance per request) serving
//! the intake component with a publisher that acknowledges at once (or after
//! `BANDVOTE_BENCH_PUBLISH_DELAY_MS`, a broker's delivery time without the
//! broker). Compared with `bandvote-native-intake --instant` it prices the
//! sandbox alone. Bench only.
//! Takes the host's own flags and environment (`bandvote-host --help`), so its
//! runtime is configured exactly like the host's; the Kafka flags are unused.
//!
//!     BANDVOTE_INTAKE_WASM=… bandvote-sandbox --listen 127.0.0.1:28086

use std::time::Duration;

use bandvote_host::metrics::HostMetrics;
use bandvote_host::publisher::PublisherHost;
use bandvote_host::runtime::IntakeRuntime;
use bandvote_host::HostConfig;
use bandvote_load::InstantPublisher;
use clap::Parser as _;

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = HostConfig::parse();
    let host = PublisherHost::new(InstantPublisher::from_env()?, HostMetrics::new());
    let runtime = IntakeRuntime::new(&config.component, host, config.runtime_config())?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    eprintln!("sandbox (wasm host, instant publisher) on http://{}/", config.listen);
    bandvote_host::server::serve_intake(listener, runtime, std::future::pending(), Duration::from_secs(1)).await;
    Ok(())
}
