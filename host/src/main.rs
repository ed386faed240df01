//! `bandvote-host`: config → wiring → run. See the library for the logic.

use std::time::Duration;

use anyhow::Context as _;
use bandvote_host::metrics::HostMetrics;
use bandvote_host::publisher::PublisherHost;
use bandvote_host::runtime::IntakeRuntime;
use bandvote_host::{server, HostConfig};
use clap::Parser as _;

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let config = HostConfig::parse();
    let publisher = config.kafka.connect().context("creating the Kafka producer")?;
    let admission = config.admission.connect(publisher.clone()).context("wiring admission")?;
    let host = PublisherHost::new(admission.clone(), HostMetrics::new());
    let runtime = IntakeRuntime::new(&config.component, host, config.runtime_config())?;
    let listener = bandvote_telemetry::bind(config.listen, "the intake").await?;
    let admin = bandvote_telemetry::bind(config.admin_listen, "the admin endpoint").await?;
    tracing::info!(listen = %listener.local_addr()?, admin = %admin.local_addr()?, brokers = %config.kafka.kafka_brokers, topic = %config.kafka.topic, "bandvote-host serving");
    publisher.register_metrics(&runtime.host().metrics.registry, "bandvote_host").context("registering the publisher's metrics")?;
    admission.register_metrics(&runtime.host().metrics.registry, "bandvote_host").context("registering admission's metrics")?;
    let ready: bandvote_telemetry::ReadyCheck = std::sync::Arc::new(move || {
        let a = admission.clone();
        Box::pin(async move {
            let contest = a.readiness()?;
            Ok(format!("{}; {contest}", a.inner().readiness(Duration::from_secs(2)).await?))
        })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, runtime.host().metrics.registry.clone(), ready));
    server::serve_intake(listener, runtime, bandvote_telemetry::shutdown_signal(), Duration::from_secs(10)).await;
    tracing::info!("flushing the Kafka producer");
    publisher.flush(Duration::from_secs(10)).context("flushing the producer")?;
    tracing::info!("bye");
    Ok(())
}
