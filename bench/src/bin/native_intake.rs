//! `bandvote-native-intake`: the same intake logic as the WASI component
//! (`bandvote-intake-core`), compiled natively behind hyper and publishing with
//! the same `VotePublisher`. Benchmarks compare it with the wasm host to price
//! the sandbox. Not a production service.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use bandvote_admission::{AdmissionArgs, Publish};
use bandvote_host::publisher::publish_submission;
use bandvote_host::runtime::reply;
use bandvote_intake_core::{self as core, Reply, RequestMeta, Route};
use bandvote_kafka::PublisherArgs;
use bandvote_load::InstantPublisher;
use std::sync::Arc;
use bandvote_vote::{limits, Source, VoteError};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

async fn handle(publisher: &dyn Publish, req: hyper::Request<Incoming>) -> Reply {
    let (method, path) = (req.method().as_str().to_owned(), req.uri().path().to_owned());
    match core::route(&method, &path) {
        Route::Health => return Reply::health(),
        Route::Status => return Reply::status(),
        Route::NotFound => return Reply::not_found(),
        Route::MethodNotAllowed => return Reply::method_not_allowed(),
        Route::Vote => {}
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (ctype, key) = (header("content-type"), header("idempotency-key"));
    let meta = RequestMeta {
        content_type: ctype.as_deref(),
        idempotency_key: key.as_deref(),
        voter: None,
        content_length: header("content-length").and_then(|v| v.parse().ok()),
    };
    if let Err(r) = core::check_declared_length(&meta) {
        return r;
    }
    let body = match Limited::new(req.into_body(), limits::MAX_BODY_BYTES + 1).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Reply::error(&VoteError::BodyTooLarge { size: limits::MAX_BODY_BYTES + 1, limit: limits::MAX_BODY_BYTES }),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let submission = match core::admit(&meta, &body, Source::Http, now) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Published and answered exactly as the host answers a handed-off vote.
    let published = publish_submission(publisher, &submission.votes, submission.batch).await;
    core::reply_published(&submission, published)
}

/// The native intake: listen address, then the same producer flags as the host.
#[derive(clap::Parser)]
struct Cli {
    #[arg(default_value = "127.0.0.1:8084")]
    listen: String,
    /// Acknowledge every vote at once, storing nothing (prices the intake code
    /// alone); after `BANDVOTE_BENCH_PUBLISH_DELAY_MS` if that is set.
    #[arg(long)]
    instant: bool,
    #[command(flatten)]
    kafka: PublisherArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
}

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let addr = cli.listen;
    // The host's producer and admission flags and environment, key claims included: like with like.
    let publisher: Arc<dyn Publish> = if cli.instant { Arc::new(InstantPublisher::from_env()?) } else { Arc::new(cli.admission.connect(cli.kafka.connect()?)?) };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("native intake on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let publisher = publisher.clone();
                async move { Ok::<_, Infallible>(reply(handle(publisher.as_ref(), req).await)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
