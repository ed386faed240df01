//! `bandvote-sandbox`: the production wasm host runtime (`bandvote-host`'s
//! library: compile once, pooling allocator, one instance per request) serving
//! the intake component with a publisher that acknowledges at once. Compared
//! with `bandvote-native-intake --instant` it prices the sandbox alone. Bench only.
//!
//!     BANDVOTE_INTAKE_WASM=… bandvote-sandbox 127.0.0.1:28086

use std::time::Duration;

use anyhow::Context as _;
use bandvote_host::metrics::HostMetrics;
use bandvote_host::publisher::PublisherHost;
use bandvote_host::runtime::{IntakeRuntime, RuntimeConfig};
use bandvote_load::InstantPublisher;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8086".into());
    let wasm = std::env::var("BANDVOTE_INTAKE_WASM").context("BANDVOTE_INTAKE_WASM: the intake component")?;
    // The host's defaults (host/src/config.rs).
    let limits = RuntimeConfig { max_concurrent: 512, slot_wait: Duration::from_secs(1), request_timeout: Duration::from_secs(10), instance_memory_bytes: 32 << 20, max_connections: 10_000, guest_perf_map: std::env::var_os("BANDVOTE_GUEST_PERF_MAP").is_some(), compile_cache: None };
    let runtime = IntakeRuntime::new(std::path::Path::new(&wasm), PublisherHost::new(InstantPublisher::default(), HostMetrics::new()), limits)?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("sandbox (wasm host, instant publisher) on http://{addr}/");
    bandvote_host::server::serve_intake(listener, runtime, std::future::pending(), Duration::from_secs(1)).await;
    Ok(())
}
