//! The gRPC intake and REST bridge against real nisshi (Kafka).

use std::time::Duration;

use bandvote_grpc::metrics::GrpcMetrics;
use bandvote_grpc::proto::bandvote::vote_service_client::VoteServiceClient;
use bandvote_grpc::proto::bandvote::vote_service_server::VoteServiceServer;
use bandvote_grpc::proto::confproto::get_info_client::GetInfoClient;
use bandvote_grpc::proto::confproto::get_info_server::GetInfoServer;
use bandvote_grpc::rest::{self, RestBridge, KAFKA_JSON_V2};
use bandvote_grpc::service::GrpcIntake;
use bandvote_admission::Admission;
use bandvote_kafka::{PublisherConfig, VotePublisher};
use bandvote_testkit as kit;
use bandvote_vote::{pb, record};

/// Serve gRPC and the REST bridge on ephemeral ports; returns (grpc url, rest base).
async fn start(topic: &str) -> (String, String) {
    start_with(Admission::new(VotePublisher::new(PublisherConfig { brokers: kit::kafka_brokers(), topic: topic.into(), ..Default::default() }).unwrap())).await
}

async fn start_with(publisher: Admission<VotePublisher>) -> (String, String) {
    let metrics = GrpcMetrics::new();
    let intake = GrpcIntake::new(publisher.clone(), metrics.clone());
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(VoteServiceServer::new(intake.clone()))
            .add_service(GetInfoServer::new(intake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc)),
    );
    let rest_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest_addr = rest_l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rest_l, rest::router(RestBridge { publisher, metrics })).await });
    (format!("http://{grpc_addr}"), format!("http://{rest_addr}"))
}

fn vote(band: &str, id: &str) -> pb::Vote {
    pb::Vote { band: band.into(), album: "Fiebre".into(), year: "2001".into(), rank: "09".into(), vote_id: id.into(), voter: String::new() }
}

#[tokio::test]
async fn unary_streaming_and_legacy_land_in_kafka() {
    let topic = kit::fresh_topic("grpc", 2).await;
    let (url, _) = start(&topic).await;
    let mut client = VoteServiceClient::connect(url.clone()).await.unwrap();
    let r = client.cast(vote("Bohemia Suburbana", "g-1")).await.unwrap().into_inner();
    assert_eq!(r.vote_id, "g-1");
    let batch = futures::stream::iter(vec![vote("A", "g-2"), vote("B", "g-3")]);
    let br = client.cast_batch(batch).await.unwrap().into_inner();
    assert_eq!(br.receipts.iter().map(|r| r.vote_id.as_str()).collect::<Vec<_>>(), ["g-2", "g-3"]);
    let mut legacy = GetInfoClient::connect(url).await.unwrap();
    let info = legacy
        .return_info(pb::RequestId { album: "Fiebre".into(), year: "2001".into(), artist: "Legacy Band".into(), ranked: "3".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(info.info.contains("stored"), "{}", info.info);

    let recs = kit::read_topic(&topic, 4, Duration::from_secs(30)).await;
    assert_eq!(recs.len(), 4);
    for rec in &recs {
        let v = record::decode(&rec.value).unwrap();
        assert_eq!(v.source, bandvote_vote::Source::Grpc);
        assert_eq!(record::encode(&v).value, rec.value, "same canonical record format as the HTTP path");
        assert_eq!(rec.key, v.vote_id.as_bytes());
    }
    assert!(recs.iter().any(|r| record::decode(&r.value).unwrap().band == "Legacy Band"));
}

#[tokio::test]
async fn invalid_votes_are_invalid_argument_and_never_reach_kafka() {
    let topic = kit::fresh_topic("grpc-bad", 1).await;
    let (url, _) = start(&topic).await;
    let mut client = VoteServiceClient::connect(url).await.unwrap();
    let mut bad = vote("A", "");
    bad.year = "83".into();
    let s = client.cast(bad.clone()).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("year"), "{}", s.message());
    let s = client.cast(pb::Vote::default()).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let s = client.cast_batch(futures::stream::iter(vec![vote("A", "ok-1"), bad])).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("[1].year"), "{}", s.message());
    assert!(kit::read_topic(&topic, 1, Duration::from_secs(3)).await.is_empty());
}

#[tokio::test]
async fn rest_bridge_produces_the_same_record() {
    let topic = kit::fresh_topic("rest", 1).await;
    let (_, base) = start(&topic).await;
    let vote = kit::vote("Alux Nahual", Some("rest-1"));
    let http = reqwest::Client::new();
    let body = serde_json::json!({ "records": [{ "key": vote.vote_id, "value": vote }] });
    let resp = http.post(format!("{base}/topics/{topic}")).header("content-type", KAFKA_JSON_V2).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["offsets"][0]["error_code"], serde_json::Value::Null);
    let recs = kit::read_topic(&topic, 1, Duration::from_secs(30)).await;
    // The received time is the bridge's (admission's stamp), never the body's.
    let stored = record::decode(&recs[0].value).unwrap();
    assert_ne!(stored.received_at_ms, vote.received_at_ms, "received_at_ms came from the body");
    let stamped = bandvote_vote::Vote { received_at_ms: stored.received_at_ms, ..vote.clone() };
    assert_eq!(recs[0].value, record::encode(&stamped).value, "byte-identical to the native publisher");

    let other = http.post(format!("{base}/topics/elsewhere")).header("content-type", KAFKA_JSON_V2).json(&body).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let wrong_type = http.post(format!("{base}/topics/{topic}")).json(&body).send().await.unwrap();
    assert_eq!(wrong_type.status().as_u16(), 415);
    let mut bad = serde_json::to_value(&vote).unwrap();
    bad["year"] = 83.into();
    let invalid = http
        .post(format!("{base}/topics/{topic}"))
        .header("content-type", KAFKA_JSON_V2)
        .json(&serde_json::json!({ "records": [{ "value": bad }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 422);
}

/// The gRPC client hop serving on an ephemeral port, calling `target`.
async fn start_hop(target: &str, deadline: Duration) -> String {
    use bandvote_grpc::hop::{self, GrpcHop, HopConfig};
    let hop = GrpcHop::new(HopConfig { target: target.into(), deadline, backoff: Duration::from_millis(50) }).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, hop::router(hop)).await });
    format!("http://{addr}")
}

/// A batch under an Idempotency-Key through the hop: its items get the ids
/// the wasm intake gives them (`KEY#<fingerprint>`), and the producer takes
/// them by the same rule (it refused them all with 422 before).
#[tokio::test]
async fn a_batch_with_an_idempotency_key_passes_the_hop_with_its_derived_ids() {
    let topic = kit::fresh_topic("hop-batch", 1).await;
    let (url, _) = start(&topic).await;
    let base = start_hop(&url, Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    let batch = r#"[{"name":"Caifanes","album":"El Silencio","year":"1992","rank":"1"},{"album":"Fiebre","year":"1999","artist":"Bohemia Suburbana","ranked":"09"}]"#;
    let r = http.post(format!("{base}/grpc")).header("idempotency-key", "hop-batch-1").body(batch).send().await.unwrap();
    let status = r.status().as_u16();
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{json}");
    let expected: Vec<String> = bandvote_vote::parse_body(None, batch.as_bytes(), &bandvote_vote::Received::new(bandvote_vote::Source::Http, 0).with_idempotency_key(Some("hop-batch-1".into())))
        .unwrap()
        .votes
        .into_iter()
        .map(|v| v.vote_id)
        .collect();
    let recs = kit::read_topic(&topic, 2, Duration::from_secs(30)).await;
    let keys: Vec<String> = recs.iter().map(|r| String::from_utf8(r.key.clone()).unwrap()).collect();
    assert_eq!(keys, expected, "the same ids as the wasm intake derives");
    // A forged derived id (another vote's fingerprint) is refused, naming the field.
    let forged = format!(r#"{{"name":"Maná","album":"x","year":"1992","rank":"1","vote_id":"{}"}}"#, expected[0]);
    let r = http.post(format!("{base}/grpc")).body(forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"]["field"], "vote_id");
}

/// Locust's JSON on `/grpc` travels HTTP → hop → gRPC → Kafka, and answers like the wasm intake.
#[tokio::test]
async fn grpc_client_hop_carries_locust_json_to_kafka() {
    let topic = kit::fresh_topic("hop", 1).await;
    let (url, _) = start(&topic).await;
    let base = start_hop(&url, Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/grpc"))
        .header("idempotency-key", "hop-1")
        .body(r#"{"name":"Caifanes","album":"El Silencio","year":"1992","rank":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let receipt: serde_json::Value = r.json().await.unwrap();
    assert_eq!(receipt["vote_id"], "hop-1");
    let r = http.post(format!("{base}/grpc/insert")).body(r#"{"album":"Fiebre","year":"1999","artist":"Bohemia Suburbana","ranked":"09"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let bad = http.post(format!("{base}/grpc")).body(r#"{"name":"x","album":"y","year":"83","rank":"1"}"#).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    assert_eq!(bad.json::<serde_json::Value>().await.unwrap()["error"]["field"], "year");
    assert_eq!(http.get(format!("{base}/grpc")).send().await.unwrap().status().as_u16(), 200);
    let recs = kit::read_topic(&topic, 2, Duration::from_secs(30)).await;
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].key, b"hop-1");
    let v = record::decode(&recs[0].value).unwrap();
    assert_eq!((v.band.as_str(), v.source), ("Caifanes", bandvote_vote::Source::Grpc));

    // No producer behind the hop: 503 + Retry-After within the deadline, never a hang.
    let dead = start_hop("http://127.0.0.1:1", Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    let r = http.post(format!("{dead}/grpc")).body(r#"{"name":"A","album":"B","year":"2000","rank":"1"}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A vote id (idempotency key) reused for a different vote is refused on every
/// gRPC path: ALREADY_EXISTS on gRPC, 409 naming the key through the /grpc hop,
/// error 40901 from the REST bridge; a retry of the same vote goes through.
#[tokio::test]
async fn a_key_reused_for_a_different_vote_is_refused() {
    let topic = kit::fresh_topic("grpc-claims", 1).await;
    let publisher = kit::publisher_with_key_claims(&topic);
    let (url, rest) = start_with(publisher).await;
    let mut client = VoteServiceClient::connect(url.clone()).await.unwrap();
    client.cast(vote("Caifanes", "dup-1")).await.expect("first use");
    client.cast(vote("Caifanes", "dup-1")).await.expect("a retry of the same vote");
    let refused = client.cast(vote("Maná", "dup-1")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    assert!(refused.message().contains("dup-1"));

    let hop = start_hop(&url, Duration::from_secs(5)).await;
    let r = reqwest::Client::new()
        .post(format!("{hop}/grpc"))
        .header("idempotency-key", "dup-1")
        .body(r#"{"name":"Maná","album":"Fiebre","year":"2001","rank":"9"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["error"]["field"].as_str(), body["error"]["key"].as_str()), (Some("Idempotency-Key"), Some("dup-1")));

    let mut other = bandvote_vote::RawVote { band: Some("Maná".into()), album: Some("x".into()), year: Some("2001".into()), rank: Some("1".into()), vote_id: Some("dup-1".into()), voter: None }
        .validate(bandvote_vote::Source::Http, 1_700_000_000_000, None)
        .unwrap();
    other.vote_id = "dup-1".into();
    let r = reqwest::Client::new()
        .post(format!("{rest}/topics/{topic}"))
        .header("content-type", KAFKA_JSON_V2)
        .body(serde_json::json!({ "records": [{ "key": "dup-1", "value": other }] }).to_string())
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["offsets"][0]["error_code"], 40901, "{body}");
    assert_eq!(kit::read_topic(&topic, 3, Duration::from_secs(10)).await.len(), 2, "only the vote and its retry reached Kafka");
}
