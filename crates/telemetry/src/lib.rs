//! Plumbing every bandvote service shares, so each binary stays thin:
//! [`init_tracing`], [`serve_admin`] (`/metrics`, `/healthz`, `/readyz`),
//! [`shutdown_signal`] and [`bind`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Structured logs to stderr. `RUST_LOG` filters (default `info`);
/// `BANDVOTE_LOG_FORMAT=json` switches to one JSON object per line.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if std::env::var("BANDVOTE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A readiness check: `Ok(detail)` when the service can do its job.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Serve the admin endpoints until the process ends:
/// `/metrics` (Prometheus text), `/healthz` (process up), `/readyz` (`ready` passes).
pub async fn serve_admin(listener: TcpListener, registry: prometheus::Registry, ready: ReadyCheck) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (registry, ready) = (registry.clone(), ready.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let (registry, ready) = (registry.clone(), ready.clone());
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/metrics" => {
                            let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap_or_default();
                            (200, "text/plain; version=0.0.4", text)
                        }
                        "/healthz" => (200, "application/json", r#"{"status":"ok"}"#.to_string()),
                        "/readyz" => match ready().await {
                            Ok(d) => (200, "application/json", format!(r#"{{"status":"ready","detail":{d:?}}}"#)),
                            Err(d) => (503, "application/json", format!(r#"{{"status":"not_ready","detail":{d:?}}}"#)),
                        },
                        _ => (404, "application/json", r#"{"error":"not found"}"#.to_string()),
                    };
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .header("content-type", ctype)
                            .body(Full::new(Bytes::from(body)))
                            .expect("static response parts are valid"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

/// Bind with an error that says what and where.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {what} on {addr}: {e}"))
}
