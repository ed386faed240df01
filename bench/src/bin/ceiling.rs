//! `bandvote-ceiling`: a bare hyper server answering 204 to everything: the
//! ceiling an HTTP intake can reach on this machine (benchmarks only).

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

// Every bandvote binary runs on mimalloc (ARCHITECTURE.md, "The bottleneck").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8085".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("ceiling: 204 on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::builder().status(204).body(Empty::<Bytes>::new()).unwrap())
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
