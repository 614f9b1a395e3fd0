//! The paging service's HTTP side, for `ucm page` and operators:
//! - `GET /ucm/paging/groups`: recipient group names and their DialCast numbers. No
//!   credentials: it says no more than the dial plan lets any phone find out by dialling.
//! - `GET /ucm/paging/pages?call_id=ID[&wait_ms=MS]`: the report of the page placed with that
//!   SIP Call-ID (404 when there is none), waiting up to MS (at most 30 s) for it to be stored
//!   (see [`super::waiters`]: woken by the report, waiters capped per source (429) and in
//!   total (503)).
//!   The Call-ID is the caller's own unguessable token (phones and `ucm page` make it random),
//!   so whoever placed the page may read its report without an account.
//! - `GET /ucm/paging/pages[?limit=N]` with HTTP Basic: the newest reports, for a cluster user
//!   with `cti-control-all-devices` (the right paging pushes need too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::store::PageReports;
use super::waiters::Refused;
use crate::config::model::Role;

pub const GROUPS_PATH: &str = "/ucm/paging/groups";
pub const PAGES_PATH: &str = "/ucm/paging/pages";
/// Reports listed at most per request.
const MAX_LIST: i64 = 1000;

pub async fn groups_handler(State(svc): State<Arc<super::PagingService>>) -> Response {
    let state = &svc.node;
    let cluster = state.cluster();
    let groups: Vec<serde_json::Value> = cluster
        .section::<super::model::Paging>()
        .recipient_groups
        .iter()
        .map(|g| {
            let numbers: Vec<&str> = cluster
                .section::<super::model::Paging>()
                .dialcasts
                .iter()
                .filter(|d| d.recipient_group == g.name)
                .filter_map(|d| {
                    cluster
                        .route_points
                        .iter()
                        .find(|r| r.name == d.route_point)
                })
                .flat_map(|r| r.lines.iter().map(|l| l.dn.as_str()))
                .collect();
            serde_json::json!({
                "name": g.name,
                "description": g.description,
                "dialcast": numbers,
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "recipient_groups": groups })).into_response()
}

fn json_reports(rows: Vec<String>) -> Response {
    // Stored reports are our own JSON; a row that no longer parses is skipped, not fatal.
    let list: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(r).ok())
        .collect();
    axum::Json(serde_json::json!({ "pages": list })).into_response()
}

/// The longest `?wait_ms=` a caller may ask for.
const MAX_REPORT_WAIT: Duration = Duration::from_secs(30);

pub async fn pages_handler(
    State(svc): State<Arc<super::PagingService>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = &svc.node;
    if let Some(call_id) = q.get("call_id").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        if call_id.len() > 256 {
            return (StatusCode::BAD_REQUEST, "call_id is too long\n").into_response();
        }
        let wait = match q.get("wait_ms").map(|w| w.trim().parse::<u64>()) {
            None => Duration::ZERO,
            Some(Ok(ms)) => Duration::from_millis(ms).min(MAX_REPORT_WAIT),
            Some(Err(_)) => {
                return (
                    StatusCode::BAD_REQUEST,
                    "wait_ms must be a whole number of milliseconds\n",
                )
                    .into_response()
            }
        };
        let looked = match svc.waiters.wait(call_id, peer.ip(), wait).await {
            Ok(r) => r,
            Err(refused) => {
                let (status, why) = match refused {
                    Refused::Source => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many page report requests waiting from this address",
                    ),
                    Refused::Total => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many page report requests waiting",
                    ),
                };
                return (status, [(header::RETRY_AFTER, "5")], format!("{why}\n")).into_response();
            }
        };
        return match looked {
            Ok(rows) if rows.is_empty() => (
                StatusCode::NOT_FOUND,
                format!("no page report for Call-ID {call_id:?} (yet)\n"),
            )
                .into_response(),
            Ok(rows) => json_reports(rows),
            Err(e) => {
                tracing::error!(error = %e, "page reports: reading failed");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "page reports cannot be read now\n",
                )
                    .into_response()
            }
        };
    }
    let user = match crate::services::authenticate::basic_user(
        state,
        &headers,
        "a user with cti-control-all-devices",
    )
    .await
    {
        Ok(u) => u,
        Err(refused) => return refused,
    };
    let cluster = state.cluster();
    let allowed = cluster
        .end_user(&user)
        .map(|u| &u.roles)
        .or_else(|| cluster.application_user(&user).map(|a| &a.roles))
        .is_some_and(|r| r.contains(&Role::CtiControlAllDevices));
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            format!("{user} may not read page reports (needs cti-control-all-devices)\n"),
        )
            .into_response();
    }
    let limit = match q.get("limit").map(|l| l.parse::<i64>()) {
        None => 100,
        Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("limit must be 1 to {MAX_LIST}\n"),
            )
                .into_response()
        }
    };
    match state.store.page_reports(None, limit).await {
        Ok(rows) => json_reports(rows),
        Err(e) => {
            tracing::error!(error = %e, "page reports: reading failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "page reports cannot be read now\n",
            )
                .into_response()
        }
    }
}
