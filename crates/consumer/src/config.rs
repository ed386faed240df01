//! Consumer configuration: flags with env vars and defaults.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerConfig {
    #[arg(long, env = "BANDVOTE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[arg(long, env = "BANDVOTE_TOPIC", default_value = "votes")]
    pub topic: String,
    /// Dead-letter topic for undecodable records.
    #[arg(long, env = "BANDVOTE_DLQ_TOPIC", default_value = "votes-dlq")]
    pub dlq_topic: String,
    /// Brokers of the dead-letter topic (empty: the votes' brokers).
    #[arg(long, env = "BANDVOTE_DLQ_BROKERS", default_value = "")]
    pub dlq_brokers: String,
    /// Longest wait for the dead-letter topic to take a batch's poison
    /// records, in milliseconds; past it they go to MongoDB's dead-letter
    /// collection instead, so a broken DLQ never stalls the votes behind them.
    #[arg(long, env = "BANDVOTE_DLQ_TIMEOUT_MS", default_value_t = 5_000)]
    pub dlq_timeout_ms: u64,
    #[arg(long, env = "BANDVOTE_CONSUMER_GROUP", default_value = "bandvote-counter")]
    pub group: String,
    /// Static group membership (`group.instance.id`): a restarted consumer with
    /// the same id takes its partitions back at once instead of waiting for
    /// the dead member's session to expire. Use a stable name (a StatefulSet
    /// pod name); empty = dynamic membership.
    #[arg(long, env = "BANDVOTE_CONSUMER_INSTANCE_ID", default_value = "")]
    pub instance_id: String,
    /// librdkafka debug contexts for the group consumer (e.g. `cgrp,broker`;
    /// empty: none), logged at debug level to trace a rebalance or a reconnect.
    #[arg(long, env = "BANDVOTE_KAFKA_DEBUG", default_value = "")]
    pub kafka_debug: String,
    #[arg(long, env = "BANDVOTE_REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Prefix for every Redis key (empty in production; tests use their own).
    #[arg(long, env = "BANDVOTE_REDIS_PREFIX", default_value = "")]
    pub redis_prefix: String,
    #[arg(long, env = "BANDVOTE_MONGO_URL", default_value = "mongodb://127.0.0.1:27017/")]
    pub mongo_url: String,
    #[arg(long, env = "BANDVOTE_MONGO_DB", default_value = "bandvote")]
    pub mongo_db: String,
    #[arg(long, env = "BANDVOTE_MONGO_COLLECTION", default_value = "votes")]
    pub mongo_collection: String,
    /// Most records applied in one batch.
    #[arg(long, env = "BANDVOTE_BATCH_MAX", default_value_t = 1000)]
    pub batch_max: usize,
    /// Longest wait to fill a batch, in milliseconds.
    #[arg(long, env = "BANDVOTE_BATCH_WAIT_MS", default_value_t = 20)]
    pub batch_wait_ms: u64,
    /// Most bytes one fetch reads from a partition (librdkafka
    /// `max.partition.fetch.bytes`; its default is 1 MiB). nisshi's sqlite
    /// engine ends a partition read that reaches this cap only after scanning
    /// the partition's remaining records, so with a backlog a small cap costs
    /// a scan per MiB of votes (ARCHITECTURE.md, "Known limits": the consumer).
    /// librdkafka's range: 1 byte to 10^9 (anything else is refused at start,
    /// not clamped).
    #[arg(long, env = "BANDVOTE_FETCH_PARTITION_BYTES", default_value_t = 8 << 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
    pub fetch_partition_bytes: u32,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "BANDVOTE_CONSUMER_ADMIN_LISTEN", default_value = "127.0.0.1:9181")]
    pub admin_listen: SocketAddr,
}

impl ConsumerConfig {
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConsumerConfig,
    }

    /// A fetch size librdkafka cannot take is refused with a message naming
    /// the flag, never turned into another size.
    #[test]
    fn a_fetch_size_out_of_range_is_refused() {
        let parse = |v: &str| Cli::try_parse_from(["consumer".to_string(), format!("--fetch-partition-bytes={v}")]).map(|c| c.config.fetch_partition_bytes);
        assert_eq!(Cli::try_parse_from(["consumer"]).unwrap().config.fetch_partition_bytes, 8 << 20);
        assert_eq!(parse("1").unwrap(), 1);
        assert_eq!(parse("1000000000").unwrap(), 1_000_000_000);
        for bad in ["0", "1000000001", "-1", "8MiB"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("--fetch-partition-bytes"), "{bad}: {e}");
        }
    }
}
