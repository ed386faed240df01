//! The producer's command-line flags, shared by every binary that publishes votes.

use std::time::Duration;

use crate::{ProduceError, PublisherConfig, VotePublisher};

/// Kafka producer flags (each with an environment variable); flatten into a binary's config.
#[derive(Debug, Clone, clap::Args)]
pub struct PublisherArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "BANDVOTE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic votes are published to.
    #[arg(long, env = "BANDVOTE_TOPIC", default_value = "votes")]
    pub topic: String,
    /// Votes awaiting Kafka's acknowledgement at once; past it clients get 503 / RESOURCE_EXHAUSTED.
    #[arg(long, env = "BANDVOTE_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Kafka producer linger.ms.
    #[arg(long, env = "BANDVOTE_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u32,
    /// Kafka delivery timeout (message.timeout.ms), in milliseconds.
    #[arg(long, env = "BANDVOTE_DELIVERY_TIMEOUT_MS", default_value_t = 5_000)]
    pub delivery_timeout_ms: u64,
    /// Votes waiting and no acknowledgement from Kafka for this long (ms): /readyz turns 503.
    #[arg(long, env = "BANDVOTE_KAFKA_STALL_MS", default_value_t = 3_000)]
    pub kafka_stall_ms: u64,
}

impl PublisherArgs {
    /// The producer these flags describe (admission is `bandvote-admission`'s flags).
    pub fn connect(&self) -> Result<VotePublisher, ProduceError> {
        VotePublisher::new(self.publisher())
    }

    pub fn publisher(&self) -> PublisherConfig {
        PublisherConfig {
            brokers: self.kafka_brokers.clone(),
            topic: self.topic.clone(),
            max_in_flight: self.max_in_flight,
            linger_ms: self.linger_ms,
            delivery_timeout: Duration::from_millis(self.delivery_timeout_ms),
            stall_after: Duration::from_millis(self.kafka_stall_ms),
            ..PublisherConfig::default()
        }
    }
}
