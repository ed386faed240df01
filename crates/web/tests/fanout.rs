//! The results page's live stream costs Redis the same with 200 viewers as
//! with one (one poller per process fans out). It counts every command the
//! Redis server runs, so it has a test binary of its own: cargo runs test
//! binaries one after another, and no other test's commands land in its
//! window (in web.rs they did, whenever another test applied votes meanwhile).

mod common;

use bandvote_testkit as kit;
use common::{serve, sources};

/// Redis commands the server has processed so far.
async fn redis_commands() -> u64 {
    let client = redis::Client::open(kit::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut con).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("total_commands_processed:")).unwrap().trim().parse().unwrap()
}

/// Hold `n` SSE streams open for `secs` seconds, reading their events; the Redis commands run meanwhile.
async fn redis_commands_with_streams(base: &str, n: usize, secs: u64) -> u64 {
    use futures::StreamExt as _;
    let http = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(http.get(format!("{base}/api/stream")).send().await.unwrap().bytes_stream());
    }
    let before = redis_commands().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut events = 0usize;
    while tokio::time::Instant::now() < deadline {
        for s in streams.iter_mut() {
            if let Ok(Some(Ok(_))) = tokio::time::timeout(std::time::Duration::from_millis(5), s.next()).await {
                events += 1;
            }
        }
    }
    assert!(events >= n, "every stream got events ({events})");
    redis_commands().await - before
}

/// 200 open streams cost Redis what one does: one poller per process fans out.
#[tokio::test]
async fn redis_load_does_not_grow_with_viewers() {
    let prefix = format!("{}:", kit::unique("webfan"));
    let base = serve(sources(&prefix, "none")).await;
    let one = redis_commands_with_streams(&base, 1, 3).await;
    let many = redis_commands_with_streams(&base, 200, 3).await;
    eprintln!("redis commands in 3 s: {one} with 1 stream, {many} with 200");
    assert!(many <= one * 2 + 20, "redis commands grew with viewers: {one} -> {many}");
}
