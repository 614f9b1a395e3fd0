//! The cluster's certificates and trust stores over HTTPS, for the certificate exchange between
//! clusters that Extension Mobility Cross Cluster needs (`ucm emcc sync-certs` drives it):
//!
//! - `GET /ucm/certificates`: every node's certificates as a bundle (`crate::wire::certs`),
//!   what Cisco's Bulk Certificate Management exports;
//! - `GET /ucm/trust`: the trust stores (JSON);
//! - `POST /ucm/trust`: imports a consolidated bundle: other clusters' certificates go to the
//!   trust stores Cisco maps them to; this cluster's own are skipped; for each cluster in the
//!   bundle, what it had before and no longer has is removed.
//!
//! HTTPS only (an administrator's password and the trust of the cluster travel here), behind
//! HTTP Basic for an application user with the `administrator` role.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::config::model::Role;
use crate::node::http::Listener;
use crate::node::NodeState;
use crate::store::TrustedCertificate;
use crate::wire::certs::{self, CertEntry, Purpose};

pub use crate::wire::certs::{CERTIFICATES_PATH, TRUST_PATH};
/// The largest bundle an import takes.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

use crate::node::http::text_response as text;

/// HTTPS and an administrator, or the refusal.
async fn administrator(
    state: &Arc<NodeState>,
    listener: Option<Extension<Listener>>,
    headers: &HeaderMap,
) -> Result<String, Response> {
    if !matches!(listener, Some(Extension(Listener::Https))) {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "the cluster's certificates are served over HTTPS only: {}{CERTIFICATES_PATH}\n",
                state.https_base
            ),
        ));
    }
    let user =
        crate::services::authenticate::basic_user(state, headers, "an administrator").await?;
    let cluster = state.cluster();
    let admin = cluster
        .application_user(&user)
        .is_some_and(|a| a.roles.contains(&Role::Administrator));
    if !admin {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("{user} is not an application user with the administrator role\n"),
        ));
    }
    Ok(user)
}

fn unavailable(e: crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "certificates: the database failed");
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database cannot be read now; try again\n".into(),
    )
}

/// This cluster's export: every node's certificates.
pub async fn export(
    State(state): State<Arc<NodeState>>,
    listener: Option<Extension<Listener>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = administrator(&state, listener, &headers).await {
        return r;
    }
    let rows = match state.store.node_certificates().await {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let cluster = state.cluster().cluster.id.clone();
    let mut entries = Vec::new();
    for r in rows {
        let Some(purpose) = Purpose::parse(&r.purpose) else {
            continue;
        };
        // Stored by the nodes themselves; read back through the same parser clients use.
        let block = format!(
            "# cluster: {cluster}\n# node: {}\n# purpose: {}\n{}",
            r.node, r.purpose, r.pem
        );
        match certs::parse_bundle(&block) {
            Ok(mut e) if e.len() == 1 => {
                let mut e = e.remove(0);
                e.purpose = purpose;
                entries.push(e);
            }
            _ => {
                tracing::warn!(node = %r.node, purpose = %r.purpose, "certificates: a stored node certificate does not parse; left out")
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        certs::write_bundle(&entries),
    )
        .into_response()
}

/// The trust stores.
pub async fn trust(
    State(state): State<Arc<NodeState>>,
    listener: Option<Extension<Listener>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = administrator(&state, listener, &headers).await {
        return r;
    }
    match state.store.trusted_certificates().await {
        Ok(rows) => axum::Json(serde_json::json!({
            "cluster": state.cluster().cluster.id,
            "certificates": rows.iter().map(|r| serde_json::json!({
                "trust_store": r.trust_store, "sha256": r.sha256, "cluster": r.cluster,
                "node": r.node, "purpose": r.purpose, "imported_at": r.imported_at,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => unavailable(e),
    }
}

/// Imports a consolidated bundle.
pub async fn import(
    State(state): State<Arc<NodeState>>,
    listener: Option<Extension<Listener>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match administrator(&state, listener, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if body.len() > MAX_BUNDLE_BYTES {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes\n"),
        );
    }
    let Ok(body) = std::str::from_utf8(&body) else {
        return text(
            StatusCode::BAD_REQUEST,
            "the bundle is not UTF-8 text\n".into(),
        );
    };
    let entries = match certs::parse_bundle(body) {
        Ok(e) => e,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bundle {e}\n")),
    };
    let own = state.cluster().cluster.id.clone();
    let rows: Vec<TrustedCertificate> = entries
        .iter()
        .filter(|e| e.cluster != own)
        .flat_map(|e: &CertEntry| {
            e.purpose
                .trust_stores()
                .iter()
                .map(move |store| TrustedCertificate {
                    trust_store: store.to_string(),
                    sha256: e.sha256(),
                    cluster: e.cluster.clone(),
                    node: e.node.clone(),
                    purpose: e.purpose.as_str().to_string(),
                    pem: e.pem(),
                    imported_at: 0,
                })
        })
        .collect();
    let skipped_own = entries.iter().filter(|e| e.cluster == own).count();
    match state.store.import_trust(&rows, unix_now()).await {
        Ok(done) => {
            tracing::info!(
                user,
                added = done.added,
                unchanged = done.unchanged,
                removed = done.removed,
                "certificates: bundle imported into the trust stores"
            );
            axum::Json(serde_json::json!({
                "cluster": own,
                "added": done.added,
                "unchanged": done.unchanged,
                "removed": done.removed,
                "skipped_own": skipped_own,
            }))
            .into_response()
        }
        Err(e) => unavailable(e),
    }
}
