//! The node's HTTP side: one accept loop for HTTP, HTTPS and TFTP-over-HTTP, and the routers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
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

/// Routes served on HTTP 8080 and HTTPS 8443.
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/emservice/EMServiceServlet",
            get(crate::services::em::handler).post(crate::services::em::handler),
        )
        .route(
            "/emapp/EMAppServlet",
            get(crate::services::em::app::handler),
        )
        .route(
            "/EMservice/EMServiceServlet",
            get(crate::services::em::handler).post(crate::services::em::handler),
        )
        .route(
            "/ccmcip/authenticate.jsp",
            get(crate::services::authenticate::handler)
                .post(crate::services::authenticate::handler),
        )
        .route(
            crate::services::webdialer::SOAP_PATH,
            get(crate::services::webdialer::soap_get)
                .post(crate::services::webdialer::soap_handler),
        )
        .route(
            crate::services::webdialer::LEGACY_SOAP_PATH,
            get(crate::services::webdialer::legacy_soap_get)
                .post(crate::services::webdialer::legacy_soap_handler),
        )
        .route(
            crate::services::webdialer::WSDL_PATH,
            get(crate::services::webdialer::wsdl_handler),
        )
        .route(
            crate::services::webdialer::SERVLET_PATH,
            get(crate::services::webdialer::html::handler)
                .post(crate::services::webdialer::html::handler),
        )
        .route(
            crate::services::webdialer::redirector::PATH,
            get(crate::services::webdialer::redirector::handler)
                .post(crate::services::webdialer::redirector::handler),
        )
        .route(
            crate::services::webdialer::redirector::PATH_ALT,
            get(crate::services::webdialer::redirector::handler)
                .post(crate::services::webdialer::redirector::handler),
        )
        .route(
            "/ccmcip/getservicesmenu.jsp",
            get(crate::services::phone_services::menu_handler),
        )
        .route(
            "/ucm/services/devices",
            get(crate::services::phone_services::devices_handler),
        )
        .route(
            "/ucm/services/device-address",
            get(crate::services::phone_services::device_address_handler),
        )
        .route(
            "/ccmcip/xmldirectory.jsp",
            get(crate::services::directory::input_handler),
        )
        .route(
            "/ccmcip/xmldirectoryinput.jsp",
            get(crate::services::directory::input_handler),
        )
        .route(
            "/ccmcip/xmldirectorylist.jsp",
            get(crate::services::directory::list_handler),
        )
        .route(
            crate::services::paging::http::GROUPS_PATH,
            get(crate::services::paging::http::groups_handler),
        )
        .route(
            crate::services::paging::http::PAGES_PATH,
            get(crate::services::paging::http::pages_handler),
        )
        .with_state(state)
}

/// Routes served on TFTP-over-HTTP 6970: phone configuration files.
pub fn tftp_router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/{file}", get(tftp_file))
        .with_state(state)
}

async fn healthz(State(s): State<Arc<NodeState>>) -> Json<serde_json::Value> {
    let c = s.cluster();
    Json(serde_json::json!({
        "status": "ok",
        "cluster": c.cluster.id,
        "node": s.node.name,
        "uptime_seconds": s.started.elapsed().as_secs(),
    }))
}

async fn metrics(State(s): State<Arc<NodeState>>) -> Response {
    let c = s.cluster();
    let body = s.metrics.render(&[
        (
            "ucm_uptime_seconds",
            "Seconds since the node started.",
            s.started.elapsed().as_secs_f64(),
        ),
        (
            "ucm_configured_devices",
            "Devices in the cluster definition.",
            c.devices.len() as f64,
        ),
        (
            "ucm_configured_end_users",
            "End users in the cluster definition.",
            c.end_users.len() as f64,
        ),
    ]);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn tftp_file(
    State(s): State<Arc<NodeState>>,
    Path(file): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let cluster = s.cluster();
    match crate::services::phone_config::file_for(&s, &cluster, &file) {
        Some(body) => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response(),
        None => {
            tracing::debug!(%peer, file, "configuration file not found");
            (StatusCode::NOT_FOUND, "File not found\n").into_response()
        }
    }
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
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .keep_alive(true);
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
