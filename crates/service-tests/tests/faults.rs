//! kill -9 of the HTTP host and of the gRPC producer while clients vote: every
//! vote is retried by its client with the same idempotency key until
//! acknowledged, and in the end each is counted exactly once in Redis and
//! stored once in MongoDB.

use std::time::{Duration, Instant};

use bandvote_consumer::recount;
use bandvote_grpc::proto::bandvote::vote_service_client::VoteServiceClient;
use bandvote_testkit as kit;
use bandvote_testkit::process::{bin, free_addr, wait_ready, Service};
use bandvote_vote::pb;

const N_HTTP: usize = 300;
const N_GRPC: usize = 300;

#[tokio::test]
async fn kill_9_of_host_and_grpc_loses_and_doubles_nothing() {
    let wasm = std::env::var("BANDVOTE_INTAKE_WASM").expect("BANDVOTE_INTAKE_WASM: run through scripts/test.sh");
    let topic = kit::fresh_topic("intake-kill", 3).await;
    bandvote_kafka::ensure_topic(&kit::kafka_brokers(), &format!("{topic}-dlq"), 1).await.unwrap();
    let cfg = bandvote_service_tests::isolated_consumer("faults", &topic);
    let consumer = bandvote_service_tests::run_consumer(cfg.clone()).await;
    let (counters, log) = (consumer.counters.clone(), consumer.log.clone());

    let common = vec![("BANDVOTE_KAFKA_BROKERS".to_string(), kit::kafka_brokers()), ("BANDVOTE_TOPIC".to_string(), topic.clone())];
    let (http, host_admin) = (free_addr(), free_addr());
    let mut host = Service::new(
        "faults-host",
        bin("bandvote-host"),
        vec!["--component".into(), wasm, "--listen".into(), http.to_string(), "--admin-listen".into(), host_admin.to_string()],
        common.clone(),
    );
    let (grpc, rest, grpc_admin) = (free_addr(), free_addr(), free_addr());
    let mut grpc_svc = Service::new(
        "faults-grpc",
        bin("bandvote-grpc"),
        vec!["--listen".into(), grpc.to_string(), "--rest-listen".into(), rest.to_string(), "--admin-listen".into(), grpc_admin.to_string()],
        common,
    );
    host.start();
    grpc_svc.start();
    wait_ready(host_admin, Duration::from_secs(60)).await;
    wait_ready(grpc_admin, Duration::from_secs(60)).await;

    // HTTP clients: retry each vote with the same Idempotency-Key until 201.
    let http_clients = tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let url = format!("http://{http}/");
        futures::future::join_all((0..8).map(|w| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                for i in (w..N_HTTP).step_by(8) {
                    let deadline = Instant::now() + Duration::from_secs(90);
                    loop {
                        let body = format!(r#"{{"name":"band-{}","album":"x","year":"1990","rank":"1"}}"#, i % 4);
                        let r = client.post(&url).header("idempotency-key", format!("h-{i}")).body(body).send().await;
                        if r.is_ok_and(|r| r.status().as_u16() == 201) {
                            break;
                        }
                        assert!(Instant::now() < deadline, "http vote {i} never acknowledged");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }))
        .await;
    });
    // gRPC clients: same, with vote_id as the key; reconnect after a transport error.
    let grpc_clients = tokio::spawn(async move {
        futures::future::join_all((0..8).map(|w| async move {
            let mut client: Option<VoteServiceClient<tonic::transport::Channel>> = None;
            for i in (w..N_GRPC).step_by(8) {
                let deadline = Instant::now() + Duration::from_secs(90);
                loop {
                    if client.is_none() {
                        client = VoteServiceClient::connect(format!("http://{grpc}")).await.ok();
                    }
                    let vote = pb::Vote { band: format!("band-{}", i % 4), album: "x".into(), year: "1990".into(), rank: "1".into(), vote_id: format!("g-{i}"), voter: String::new() };
                    match client.as_mut() {
                        Some(c) => match c.cast(vote).await {
                            Ok(_) => break,
                            Err(_) => client = None,
                        },
                        None => {}
                    }
                    assert!(Instant::now() < deadline, "grpc vote {i} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }))
        .await;
    });

    // kill -9 each intake twice while the clients vote, restarting it each time.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        host.kill_9();
        host.start();
        tokio::time::sleep(Duration::from_millis(700)).await;
        grpc_svc.kill_9();
        grpc_svc.start();
    }
    http_clients.await.unwrap();
    grpc_clients.await.unwrap();

    let want = (N_HTTP + N_GRPC) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while counters.totals().await.map(|t| t.total).unwrap_or(0) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let totals = counters.totals().await.unwrap();
    assert_eq!(totals.total, want, "every acknowledged vote counted exactly once");
    assert_eq!(log.collection().count_documents(mongodb::bson::doc! {}).await.unwrap(), want, "stored once");
    assert!(recount::recount(&log, &counters).await.unwrap().1.is_empty());
    consumer.stop().await;
}
