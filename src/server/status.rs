//! A read-only view of the live cluster for operators: `GET /ucm/status` (JSON) and `GET /`
//! (the same as an HTML page). Behind HTTP Basic for an **application user** of the cluster
//! (the accounts given to services and administrators; end users see nothing of others).
//!
//! Registrations and the services' sections (Extension Mobility logins, lockouts, ...: each
//! service declares its own, [`crate::services::StatusSection`]) come from the database, so
//! every node shows the whole cluster; active calls and running pages are this node's.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::node::NodeState;

/// Path of the JSON view.
pub const STATUS_PATH: &str = "/ucm/status";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks the caller is an application user; the refusal otherwise.
async fn application_user(state: &Arc<NodeState>, headers: &HeaderMap) -> Result<String, Response> {
    let user =
        crate::services::authenticate::basic_user(state, headers, "an application user").await?;
    if state.cluster().application_user(&user).is_none() {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{user} is not an application user: the cluster status is for application users\n"
            ),
        )
            .into_response());
    }
    Ok(user)
}

/// The status document.
async fn collect(state: &Arc<NodeState>) -> Result<serde_json::Value, crate::store::StoreError> {
    let now = unix_now();
    let rows = state.store.live_registrations(now).await?;
    // One entry a device, its lines together.
    let mut phones: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for r in rows {
        let e = phones.entry(r.device.clone()).or_insert_with(|| {
            serde_json::json!({
                "device": r.device, "lines": [], "address": r.source, "transport": r.transport,
                "node": r.node, "since": r.updated_at, "expires_at": r.expires_at,
            })
        });
        if let Some(lines) = e["lines"].as_array_mut() {
            lines.push(r.line.clone().into());
        }
    }
    // This node's calls: call control answers at once, or the view says it could not ask.
    let calls = match state.call_control.list_calls().await {
        Ok(c) => serde_json::to_value(c).unwrap_or_default(),
        Err(e) => serde_json::json!({"error": e.reason}),
    };
    let cluster = state.cluster();
    let mut doc = serde_json::json!({
        "cluster": cluster.cluster.id,
        "node": state.node.name,
        "time": now,
        "registered_phones": phones.into_values().collect::<Vec<_>>(),
        "active_calls": calls,
    });
    for section in crate::services::status_sections() {
        let rows = (section.read)(state, now).await?;
        doc[section.key] = rows;
    }
    Ok(doc)
}

pub async fn json_handler(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    if let Err(refused) = application_user(&state, &headers).await {
        return refused;
    }
    match collect(&state).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status: reading the database failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the status cannot be read now\n",
            )
                .into_response()
        }
    }
}

pub async fn html_handler(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    if let Err(refused) = application_user(&state, &headers).await {
        return refused;
    }
    match collect(&state).await {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], Html(page(&v))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status: reading the database failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the status cannot be read now\n",
            )
                .into_response()
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn table(rows: &serde_json::Value, cols: &[&str]) -> String {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return "<p>none</p>\n".into();
    }
    let mut h = String::from("<table><tr>");
    for c in cols {
        h.push_str(&format!("<th>{}</th>", esc(c)));
    }
    h.push_str("</tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for c in cols {
            h.push_str(&format!("<td>{}</td>", esc(&text(&r[*c]))));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}

/// The status as a page a person reads (times are Unix seconds, UTC).
fn page(v: &serde_json::Value) -> String {
    let mut sections = String::new();
    for s in crate::services::status_sections() {
        sections.push_str(&format!(
            "<h2>{}</h2>\n{}",
            esc(s.title),
            table(&v[s.key], s.columns)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ucm {cluster} · {node}</title></head><body>\n\
         <h1>Cluster {cluster}, node {node}</h1>\n\
         <h2>Registered phones</h2>\n{phones}<h2>Active calls on this node</h2>\n{calls}{sections}\
         <p>JSON: <a href=\"{STATUS_PATH}\">{STATUS_PATH}</a>; times are Unix seconds (UTC).</p>\n</body></html>\n",
        cluster = esc(&text(&v["cluster"])),
        node = esc(&text(&v["node"])),
        calls = table(&v["active_calls"], &["id", "state", "calling", "dialled", "devices", "held", "started"]),
        phones = table(&v["registered_phones"], &["device", "lines", "address", "node", "since"]),
    )
}
