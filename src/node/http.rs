//! The node's HTTP accept loop, shared by its HTTP, HTTPS and TFTP-over-HTTP listeners.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::metrics::inc;
use super::NodeState;

#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Http,
    Https,
    TftpHttp,
}

/// How every listener reads HTTP/1.1 requests (the fuzz target `http_head` reads with it too).
pub fn http1_reader() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder
}

/// Accepts connections until shutdown; each is served on its own task, and shutdown waits for
/// the requests in flight (connections are told to close after them).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    which: Listener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Bounds the connections one listener holds so a flood cannot exhaust file descriptors.
    let slots = Arc::new(tokio::sync::Semaphore::new(8192));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        inc(&state.metrics.http_connections);
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let counters = state.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    match which {
                        Listener::Http => inc(&counters.metrics.http_requests),
                        Listener::Https => inc(&counters.metrics.https_requests),
                        Listener::TftpHttp => inc(&counters.metrics.tftp_http_requests),
                    }
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.oneshot(req).await.into_response()) }
                },
            );
            let builder = http1_reader();
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await;
                    let tls_stream = match hs {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            inc(&state.metrics.tls_handshake_failures);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            inc(&state.metrics.tls_handshake_failures);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
