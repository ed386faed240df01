//! The hyper front end (votes) and the admin endpoints, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::runtime::IntakeRuntime;

/// Longest wait for a request's head, idle keep-alive waits included.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve votes on `listener` until `shutdown` resolves, then drain open
/// connections (at most `drain` long).
pub async fn serve_intake(
    listener: TcpListener,
    runtime: Arc<IntakeRuntime>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    // HTTP/1.1 only, and no protocol sniffing: hyper-util's auto builder
    // reads the HTTP/2 preface with no timer, so a silent socket would hold a
    // connection permit forever. hyper's HTTP/1 header read timeout runs from
    // the moment the connection waits for a request head (the first one and
    // every idle keep-alive wait), so a socket that sends nothing is closed
    // after 5 s.
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(true);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(tokio::sync::Semaphore::new(runtime.config().max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { tracing::warn!(error = %e, "accept"); tokio::time::sleep(Duration::from_millis(50)).await; continue; }
            },
            () = &mut shutdown => break,
        };
        // Past the cap: close at once (the client sees a reset, not a hang) and count it.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            runtime.host().metrics.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let svc = service_fn(move |req| {
            let runtime = runtime.clone();
            async move { Ok::<_, Infallible>(runtime.handle(req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with error");
            }
            drop(permit);
        });
    }
    tracing::info!("intake: draining connections");
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("intake: connections still open after the drain period");
    }
}

