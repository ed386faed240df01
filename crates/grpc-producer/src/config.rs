//! gRPC producer configuration: flags with env vars and defaults.

use std::net::SocketAddr;
use std::time::Duration;

use bandvote_kafka::PublisherConfig;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bandvote-grpc", about = "gRPC vote intake and Kafka REST bridge, publishing to Kafka")]
pub struct GrpcConfig {
    /// gRPC listen address (bandvote.v1.VoteService, confproto.getInfo, health, reflection).
    #[arg(long, env = "BANDVOTE_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Kafka REST Proxy v2 bridge listen address (for the Spin adapter).
    #[arg(long, env = "BANDVOTE_REST_LISTEN", default_value = "127.0.0.1:8082")]
    pub rest_listen: SocketAddr,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "BANDVOTE_GRPC_ADMIN_LISTEN", default_value = "127.0.0.1:9182")]
    pub admin_listen: SocketAddr,
    #[arg(long, env = "BANDVOTE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[arg(long, env = "BANDVOTE_TOPIC", default_value = "votes")]
    pub topic: String,
    /// Votes awaiting Kafka's acknowledgement at once; past it RESOURCE_EXHAUSTED.
    #[arg(long, env = "BANDVOTE_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,
    #[arg(long, env = "BANDVOTE_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,
    #[arg(long, env = "BANDVOTE_DELIVERY_TIMEOUT_MS", default_value_t = 5_000)]
    pub delivery_timeout_ms: u64,
}

impl GrpcConfig {
    pub fn publisher(&self) -> PublisherConfig {
        PublisherConfig {
            brokers: self.kafka_brokers.clone(),
            topic: self.topic.clone(),
            max_in_flight: self.max_in_flight,
            linger_ms: self.linger_ms,
            delivery_timeout: Duration::from_millis(self.delivery_timeout_ms),
            ..PublisherConfig::default()
        }
    }
}
