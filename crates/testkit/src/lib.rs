//! Helpers for integration tests against the real services that
//! `scripts/services.sh start` runs (addresses from the same env vars).
//! The Kafka helpers are behind the default `kafka` feature, so crates that
//! never touch Kafka (the store, the web app) test without librdkafka.

pub mod netns;
pub mod process;
pub mod relay;

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
pub use kafka::{fresh_topic, publisher_with_key_claims, read_topic, ReadRecord};

/// Kafka bootstrap servers (`BANDVOTE_KAFKA_BROKERS`, default `127.0.0.1:9092`).
pub fn kafka_brokers() -> String {
    std::env::var("BANDVOTE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Redis URL (`BANDVOTE_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("BANDVOTE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// MongoDB URL (`BANDVOTE_MONGO_URL`).
pub fn mongo_url() -> String {
    std::env::var("BANDVOTE_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".into())
}

/// The checkout the tests run from, read when they run (`CARGO_MANIFEST_DIR`,
/// which `cargo test` sets, is two levels below it): a target dir shared by
/// checkouts at different paths keeps test binaries built in another one,
/// whose compile-time `env!("CARGO_MANIFEST_DIR")` names a path that may be gone.
pub fn repo_root() -> std::path::PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from);
    crate_dir.join("../..")
}

/// A name no other test run uses: `prefix-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

/// A valid vote for tests.
pub fn vote(band: &str, vote_id: Option<&str>) -> bandvote_vote::Vote {
    bandvote_vote::RawVote {
        band: Some(band.into()),
        album: Some("Test Album".into()),
        year: Some("1983".into()),
        rank: Some("1".into()),
        vote_id: vote_id.map(str::to_owned),
voter: None,
    }
    .validate(bandvote_vote::Source::Http, 1_700_000_000_000, None)
    .expect("valid test vote")
}
