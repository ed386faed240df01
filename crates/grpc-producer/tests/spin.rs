//! The Spin artifact (intake composed with the REST adapter) imports nothing
//! custom: it runs under plain `wasmtime serve` and publishes through our REST
//! bridge to real nisshi (Kafka), writing the same record as every other path.
//! Needs `BANDVOTE_SPIN_WASM` (scripts/build-spin.sh) and `wasmtime` on PATH.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bandvote_grpc::metrics::GrpcMetrics;
use bandvote_grpc::rest::{self, RestBridge};
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_testkit as kit;
use bandvote_vote::record;

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn composed_spin_artifact_runs_on_plain_wasmtime_and_publishes() {
    let wasm = std::env::var("BANDVOTE_SPIN_WASM").expect("BANDVOTE_SPIN_WASM: run through scripts/test.sh (builds the Spin artifact)");
    let topic = kit::fresh_topic("spin", 1).await;
    let publisher = VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.clone(), ..Default::default() }).unwrap();
    let rest_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_addr = rest_l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rest_l, rest::router(RestBridge { publisher, metrics: GrpcMetrics::new() })).await });

    let port = free_port();
    let mut serve = KillOnDrop(
        Command::new("wasmtime")
            // The pooling allocator is not compiled into our minimal wasmtime-cli.
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "-O", "pooling-allocator=n", "-S", "cli=y"])
            .arg("--env")
            .arg(format!("KAFKA_REST_URL=http://{rest_addr}"))
            .arg("--env")
            .arg(format!("KAFKA_TOPIC={topic}"))
            .arg(&wasm)
            .stdout(Stdio::null())
            .spawn()
            .expect("wasmtime serve (installed by scripts/setup.sh)"),
    );
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match http.get(format!("{url}healthz")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() > deadline => panic!("wasmtime serve did not come up"),
            _ if serve.0.try_wait().unwrap().is_some() => panic!("wasmtime serve exited: {:?}", serve.0.try_wait()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let resp = http.post(&url).body(r#"{"album":"Fiebre","year":"1999","artist":"Bohemia Suburbana","ranked":"09"}"#).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let receipt: serde_json::Value = resp.json().await.unwrap();
    let bad = http.post(&url).body(r#"{"name":"a","album":"b","year":"83","rank":"1"}"#).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 422);

    let recs = kit::read_topic(&topic, 2, Duration::from_secs(20)).await;
    assert_eq!(recs.len(), 1, "only the valid vote reached Kafka");
    let vote = record::decode(&recs[0].value).unwrap();
    assert_eq!(vote.vote_id, receipt["vote_id"].as_str().unwrap());
    assert_eq!((vote.band.as_str(), vote.rank, vote.source), ("Bohemia Suburbana", 9.0, bandvote_vote::Source::Http));
    assert_eq!(record::encode(&vote).value, recs[0].value, "same record format as the native path");
}
