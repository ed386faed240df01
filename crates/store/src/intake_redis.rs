//! What the intakes' Redis helpers ([`crate::KeyClaims`], [`crate::BandNames`])
//! share: a connection that fails fast, and a pipeline of one script's calls.

use std::time::Duration;

use crate::reconnecting::Reconnecting;
use redis::Script;

/// A connection to `url`, made on first use (and again after a command
/// timed out: [`Reconnecting`]): an intake starts while Redis is
/// down, and a call gives up after 500 ms (the caller then goes on
/// unchecked) instead of holding the vote.
pub(crate) fn fail_fast_connection(url: &str) -> Result<Reconnecting, redis::RedisError> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Reconnecting::lazy(redis::Client::open(url)?, config)
}

/// Run `pipe` (`EVALSHA` calls of `script`) in one round trip; if the server
/// does not know the script yet, load it and run the pipeline again.
pub(crate) async fn run_script_pipeline<T: redis::FromRedisValue>(con: &Reconnecting, script: &Script, pipe: &redis::Pipeline) -> Result<Vec<T>, redis::RedisError> {
    let mut con = con.clone();
    match pipe.query_async(&mut con).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(&mut con).await?;
            pipe.query_async(&mut con).await
        }
        r => r,
    }
}
