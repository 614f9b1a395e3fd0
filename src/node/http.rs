//! The node's HTTP accept loop, shared by its HTTP, HTTPS and TFTP-over-HTTP listeners.
//!
//! Every connection is bounded: a listener holds at most [`MAX_HTTP_CONNECTIONS`], one source
//! address (an IPv6 /64) at most [`MAX_HTTP_CONNECTIONS_PER_SOURCE`] of them, so a single
//! host cannot take the slots everyone else needs; a connection that does not send a complete
//! request head within [`HTTP_HEADER_READ_TIMEOUT`] (also between keep-alive requests) is
//! closed, and a TLS handshake gets [`HTTP_TLS_HANDSHAKE_TIMEOUT`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use axum::Router;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use super::metrics::{inc, Metrics};
use super::NodeState;
use crate::net::lograte::{LogRate, LOG_RATE_WINDOW};
use crate::net::per_source::PerSource;

#[derive(Debug, Clone, Copy)]
pub enum Listener {
    Http,
    Https,
    TftpHttp,
}

/// Connections one listener holds at once (kept below the descriptor limit).
pub const MAX_HTTP_CONNECTIONS: usize = 8192;
/// Connections one source address (IPv6: one /64) holds on one listener at once.
pub const MAX_HTTP_CONNECTIONS_PER_SOURCE: usize = 64;
/// Time a client has to send a complete request head, counted from the connection (or the
/// previous response) on: an idle keep-alive connection is closed after it too.
pub const HTTP_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to complete the TLS handshake on HTTPS.
pub const HTTP_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of one listener; [`HttpLimits::default`] is the constants above.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: MAX_HTTP_CONNECTIONS,
            max_per_source: MAX_HTTP_CONNECTIONS_PER_SOURCE,
            header_read_timeout: HTTP_HEADER_READ_TIMEOUT,
            tls_handshake_timeout: HTTP_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// What the accept loop counts into: the node's metrics (or a bare [`Metrics`] in tests).
pub trait Counters: Send + Sync + 'static {
    fn metrics(&self) -> &Metrics;
}

impl Counters for NodeState {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Counters for Metrics {
    fn metrics(&self) -> &Metrics {
        self
    }
}

/// The answer a refused plain-HTTP connection gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nConnection: close\r\n\
Content-Type: text/plain\r\nContent-Length: 35\r\n\r\ntoo many connections; retry later\r\n";

static REFUSED_LOG: LogRate = LogRate::new(LOG_RATE_WINDOW);
static ACCEPT_FAILED_LOG: LogRate = LogRate::new(LOG_RATE_WINDOW);

/// How every listener reads HTTP/1.1 requests (the fuzz target `http_head` reads with it too).
pub fn http1_reader(header_read_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
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
    stop: watch::Receiver<bool>,
) {
    serve_with(
        listener,
        app,
        tls,
        which,
        HttpLimits::default(),
        state,
        stop,
    )
    .await
}

/// [`serve`] with the limits given.
pub async fn serve_with<C: Counters>(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    which: Listener,
    limits: HttpLimits,
    state: Arc<C>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_source = Arc::new(PerSource::default());
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                if let Some(suppressed) = ACCEPT_FAILED_LOG.allow(Instant::now()) {
                    tracing::warn!(error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let source = per_source.take(peer.ip(), limits.max_per_source);
        let permit = slots.clone().try_acquire_owned().ok();
        let (Some(source), Some(permit)) = (source, permit) else {
            inc(&state.metrics().http_connections_refused);
            if tls.is_none() {
                // Best effort, never waiting: the refusal must cost us nothing.
                let _ = stream.try_write(BUSY);
            }
            if let Some(suppressed) = REFUSED_LOG.allow(Instant::now()) {
                tracing::warn!(
                    %peer,
                    suppressed,
                    listener = ?which,
                    "HTTP connection limit reached (listener or this source); closing"
                );
            }
            continue;
        };
        inc(&state.metrics().http_connections);
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let state = state.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _held = (permit, source);
            let counters = state.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let m = counters.metrics();
                    match which {
                        Listener::Http => inc(&m.http_requests),
                        Listener::Https => inc(&m.https_requests),
                        Listener::TftpHttp => inc(&m.tftp_http_requests),
                    }
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.oneshot(req).await.into_response()) }
                },
            );
            let builder = http1_reader(limits.header_read_timeout);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let hs =
                        tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                            .await;
                    let tls_stream = match hs {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            inc(&state.metrics().tls_handshake_failures);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            inc(&state.metrics().tls_handshake_failures);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    // The client's certificates (if any) go with each of its requests.
                    let certs = crate::net::tls::PeerCertificates::of(tls_stream.get_ref().1);
                    let svc = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(certs.clone());
                            svc.call(req)
                        },
                    );
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

/// A plain-text answer (`text/plain; charset=utf-8`), for the node's small HTTP APIs.
pub fn text_response(status: axum::http::StatusCode, body: String) -> axum::response::Response {
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The port a `Host` header names, if it names one.
fn host_port(host: &str) -> Option<u16> {
    let (_, port) = host.rsplit_once(':')?;
    // `[::1]` alone has colons but no port.
    if port.ends_with(']') {
        return None;
    }
    port.parse().ok()
}

/// Whether the request reached the node's HTTPS listener. The listener is not visible to
/// services, so the `Host` header decides: a browser names the port it connected to, and a
/// client that lies about it only gets a `Secure` cookie it cannot send back over HTTP (or a
/// redirect to where it claimed to be).
pub fn over_https(state: &NodeState, headers: &axum::http::HeaderMap) -> bool {
    let https_port = state
        .https_base
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    https_port.is_some() && host_port(host) == https_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};

    async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(format!("{src}:0").parse().unwrap()).unwrap();
        s.connect(to).await.unwrap()
    }

    /// Sends one GET and reads until the server closes: the status code, or `None` when the
    /// connection was closed (or reset) without an answer.
    async fn get(s: &mut TcpStream) -> Option<u16> {
        let _ = s
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len()))
                || head.ends_with(&format!("Content-Length: {}", body.len()))
        );
    }

    #[tokio::test]
    async fn r15_one_source_cannot_take_the_connections_others_need() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = HttpLimits {
            max_connections: 16,
            max_per_source: 4,
            // Long: the idle connections below must stay open for the whole test.
            header_read_timeout: Duration::from_secs(600),
            tls_handshake_timeout: Duration::from_secs(600),
        };
        let metrics = Arc::new(Metrics::default());
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve_with(
            listener,
            app,
            None,
            Listener::Http,
            limits,
            metrics.clone(),
            stop,
        ));
        // One host opens its share of idle connections, then more (a bounded flood).
        let mut idle = Vec::new();
        for _ in 0..limits.max_per_source {
            idle.push(connect_from("127.0.0.2", addr).await);
        }
        let mut refused = 0;
        for _ in 0..8 {
            let mut s = connect_from("127.0.0.2", addr).await;
            match get(&mut s).await {
                None | Some(503) => refused += 1,
                Some(other) => panic!("connection past the per-source cap answered {other}"),
            }
        }
        assert_eq!(refused, 8, "every connection past the cap is refused");
        // Everyone else is still served.
        for _ in 0..6 {
            let mut s = connect_from("127.0.0.1", addr).await;
            assert_eq!(get(&mut s).await, Some(200));
        }
        // The flood's own connections were held all along: it got no more than its share.
        assert_eq!(
            metrics
                .http_connections
                .load(std::sync::atomic::Ordering::Relaxed),
            (limits.max_per_source + 6) as u64
        );
        assert_eq!(
            metrics
                .http_connections_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            8
        );
        drop(idle);
        let _ = stop_tx.send(true);
        let _ = server.await;
    }
}
