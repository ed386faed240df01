//! The producer's command-line flags, shared by every binary that publishes votes.

use std::time::Duration;

use bandvote_store::{BandNames, ContestStore, KeyClaims};

use crate::{PublishError, PublisherConfig, VotePublisher};

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
    /// Redis where idempotency keys are claimed (409 when a key is reused for a
    /// different vote); unset: no check (the consumer still counts an id once).
    #[arg(long, env = "BANDVOTE_IDEMPOTENCY_REDIS_URL")]
    pub idempotency_redis_url: Option<String>,
    /// Seconds an idempotency key keeps standing for its vote.
    #[arg(long, env = "BANDVOTE_IDEMPOTENCY_WINDOW_SECS", default_value_t = 300)]
    pub idempotency_window_secs: u64,
    /// Most distinct band names counted (kept in the same Redis as the keys);
    /// a vote for a new name past it is refused (422 / INVALID_ARGUMENT). 0: no cap.
    #[arg(long, env = "BANDVOTE_MAX_BANDS", default_value_t = 1_000)]
    pub max_bands: usize,
    /// How often the current contest (in the same Redis) is read, in ms: a
    /// contest an operator creates, opens or closes applies within this.
    #[arg(long, env = "BANDVOTE_CONTEST_POLL_MS", default_value_t = 1_000)]
    pub contest_poll_ms: u64,
    /// Secret voter tokens are signed with (contests with `voters = token`);
    /// unset: every token is refused (401).
    #[arg(long, env = "BANDVOTE_CONTEST_SECRET", hide_env_values = true)]
    pub contest_secret: Option<String>,
}

impl PublisherArgs {
    /// The publisher these flags describe, with key claims, the band-name
    /// cap and the current contest's rules when a Redis URL is set. Call
    /// inside a Tokio runtime (the contest is watched by a task).
    pub fn connect(&self) -> Result<VotePublisher, PublishError> {
        let publisher = VotePublisher::new(self.publisher())?;
        let Some(url) = &self.idempotency_redis_url else { return Ok(publisher) };
        let window = Duration::from_secs(self.idempotency_window_secs.max(1));
        let claims = KeyClaims::new(url, "", window).map_err(|e| PublishError::Config(format!("idempotency redis {url}: {e}")))?;
        let contests = ContestStore::new(url, "").map_err(|e| PublishError::Config(format!("contest redis {url}: {e}")))?;
        let watch = contests.watch(Duration::from_millis(self.contest_poll_ms.max(50)));
        let secret = self.contest_secret.as_ref().map(|s| s.as_bytes().to_vec());
        let publisher = publisher.with_key_claims(claims).with_contest(watch, secret);
        if self.max_bands == 0 {
            return Ok(publisher);
        }
        let names = BandNames::new(url, "", self.max_bands).map_err(|e| PublishError::Config(format!("band names redis {url}: {e}")))?;
        Ok(publisher.with_band_cap(names))
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
