//! `bandvote-grpc`: config → wiring → run (gRPC, REST bridge, admin).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bandvote_grpc::config::GrpcConfig;
use bandvote_grpc::metrics::GrpcMetrics;
use bandvote_grpc::proto::bandvote::vote_service_server::VoteServiceServer;
use bandvote_grpc::proto::confproto::get_info_server::GetInfoServer;
use bandvote_grpc::rest::{self, RestBridge};
use bandvote_grpc::service::GrpcIntake;
use clap::Parser as _;

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bandvote_telemetry::init_tracing();
    let config = GrpcConfig::parse();
    let publisher = config.kafka.connect().context("creating the Kafka producer")?;
    let admission = config.admission.connect(publisher.clone()).context("wiring admission")?;
    let metrics = GrpcMetrics::new();
    let intake = GrpcIntake::new(admission.clone(), metrics.clone()).with_getinfo_layout(config.getinfo_layout);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<VoteServiceServer<GrpcIntake>>().await;
    health_reporter.set_serving::<GetInfoServer<GrpcIntake>>().await;
    // Both reflection versions: grpcurl speaks v1, many clients still v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(bandvote_grpc::proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(bandvote_grpc::proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service")?;

    let admin = bandvote_telemetry::bind(config.admin_listen, "the admin endpoint").await?;
    let rest_listener = bandvote_telemetry::bind(config.rest_listen, "the REST bridge").await?;
    publisher.register_metrics(&metrics.registry, "bandvote_grpc").context("registering the publisher's metrics")?;
    admission.register_metrics(&metrics.registry, "bandvote_grpc").context("registering admission's metrics")?;
    let ready_admission = admission.clone();
    let ready: bandvote_telemetry::ReadyCheck = Arc::new(move || {
        let a = ready_admission.clone();
        Box::pin(async move {
            let contest = a.readiness()?;
            Ok(format!("{}; {contest}", a.inner().readiness(Duration::from_secs(2)).await?))
        })
    });
    tokio::spawn(bandvote_telemetry::serve_admin(admin, metrics.registry.clone(), ready));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let rest_app = rest::router(RestBridge { publisher: admission.clone(), metrics: metrics.clone() });
    let mut rest_stop = stop_rx.clone();
    let rest_task = tokio::spawn(async move {
        axum::serve(rest_listener, rest_app)
            .with_graceful_shutdown(async move {
                let _ = rest_stop.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(grpc = %config.listen, rest = %config.rest_listen, admin = %config.admin_listen, topic = %config.kafka.topic, "bandvote-grpc serving");
    let mut grpc_stop = stop_rx.clone();
    let grpc = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(VoteServiceServer::new(intake.clone()))
        .add_service(GetInfoServer::new(intake))
        .serve_with_shutdown(config.listen, async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        });
    tokio::pin!(grpc);
    tokio::select! {
        r = &mut grpc => r.context("gRPC server")?,
        () = bandvote_telemetry::shutdown_signal() => {
            tracing::info!("shutting down: draining calls");
            let _ = stop_tx.send(true);
            grpc.await.context("gRPC server")?;
        }
    }
    let _ = stop_tx.send(true);
    let _ = rest_task.await;
    tracing::info!("flushing the Kafka producer");
    publisher.flush(Duration::from_secs(10)).context("flushing the producer")?;
    Ok(())
}
