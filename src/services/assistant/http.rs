//! The Assistant service's HTTP API, for the manager, the manager's assistants and
//! administrators (HTTP Basic; the console and the phone service are to use it too):
//! - `GET /ucm/assistant/managers/{user}`: the manager's mode, line, assistants and state.
//! - `PUT /ucm/assistant/managers/{user}` with a JSON change (`dnd`, `divert_all`,
//!   `divert_target`, `filter_on`, `filter_mode`, `inclusive_filters`, `exclusive_filters`,
//!   `selected_assistant`, and optionally `if_version`): 200 with the new state; 409 with the state as it is when
//!   `if_version` is not the stored version (of racing writers from one version exactly one
//!   wins: the database decides); 503 while the database cannot be written (calls go on).
//! - `POST /ucm/assistant/managers/{user}/intercept`: the oldest call ringing at one of the
//!   manager's assistants goes to the manager's line (proxy line mode); 404 when none rings.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::model::{Manager, Mode};
use super::store::{Changed, ManagerChange, ManagerState, ManagerStates};
use super::AssistantService;
use crate::config::model::Role;

pub const MANAGER_PATH: &str = "/ucm/assistant/managers/{user}";
pub const INTERCEPT_PATH: &str = "/ucm/assistant/managers/{user}/intercept";
/// Entries a filter list may hold.
const MAX_FILTERS: usize = 100;

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut b = body.into();
    b.push('\n');
    (status, b).into_response()
}

/// The authenticated user and the manager, when the user may act for the manager (the manager,
/// one of their assistants, or an application user with the administrator role).
async fn authorise(
    svc: &Arc<AssistantService>,
    headers: &HeaderMap,
    manager: &str,
) -> Result<Manager, Response> {
    let user = crate::services::authenticate::basic_user(
        &svc.node,
        headers,
        "the manager, one of the manager's assistants or an administrator",
    )
    .await?;
    let m = svc.manager(manager);
    let admin = svc
        .node
        .cluster()
        .application_users
        .iter()
        .any(|a| a.userid == user && a.roles.contains(&Role::Administrator));
    let allowed = admin
        || m.as_ref()
            .is_some_and(|m| m.user == user || m.assistants.iter().any(|a| a.user == user));
    match m {
        Some(m) if allowed => Ok(m),
        // Whether a manager exists is told only to those who may see it.
        None if admin => Err(text(
            StatusCode::NOT_FOUND,
            format!("{manager:?} is not an Assistant manager"),
        )),
        _ => Err(text(
            StatusCode::FORBIDDEN,
            format!("{user:?} may not act for manager {manager:?}"),
        )),
    }
}

fn view(m: &Manager, state: &ManagerState) -> serde_json::Value {
    json!({
        "manager": m.user,
        "line": m.line,
        "mode": m.mode,
        "assistants": m.assistants,
        "state": state,
    })
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "assistant: database unavailable");
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable: Assistant settings cannot be read or changed now (calls are still handled)",
    )
}

pub async fn get_manager(
    State(svc): State<Arc<AssistantService>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = match authorise(&svc, &headers, &user).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    match svc.node.store.manager_state(&m.user).await {
        Ok(s) => axum::Json(view(&m, &s)).into_response(),
        Err(e) => unavailable(e),
    }
}

/// What is wrong with a change, for the 400.
pub(super) fn validate(m: &Manager, c: &ManagerChange) -> Result<(), String> {
    if c.is_empty() {
        return Err("the change sets nothing (fields: dnd, divert_all, divert_target, filter_on, filter_mode, inclusive_filters, exclusive_filters, selected_assistant)".into());
    }
    let filtering = c.filter_on.is_some()
        || c.filter_mode.is_some()
        || c.inclusive_filters.is_some()
        || c.exclusive_filters.is_some();
    if m.mode == Mode::Shared && filtering {
        return Err("call filtering is not available in shared line mode".into());
    }
    if let Some(sel) = c.selected_assistant.as_deref().map(str::trim) {
        if m.mode == Mode::Shared {
            return Err("assistant selection is not available in shared line mode".into());
        }
        if !sel.is_empty() && !m.assistants.iter().any(|a| a.user == sel) {
            return Err(format!(
                "selected_assistant {sel:?} is not an assistant of {:?}",
                m.user
            ));
        }
    }
    for (what, l) in [
        ("inclusive_filters", &c.inclusive_filters),
        ("exclusive_filters", &c.exclusive_filters),
    ] {
        let Some(l) = l else { continue };
        if l.len() > MAX_FILTERS {
            return Err(format!("{what}: at most {MAX_FILTERS} entries"));
        }
        for f in l {
            super::routing::valid_filter(f).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    if let Some(t) = c
        .divert_target
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        crate::dialplan::pattern::validate_digits(t)
            .map_err(|_| format!("divert_target {t:?} is not a number to dial"))?;
    }
    Ok(())
}

pub async fn put_manager(
    State(svc): State<Arc<AssistantService>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match authorise(&svc, &headers, &user).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let change: ManagerChange = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("the change does not parse: {e}"),
            )
        }
    };
    if let Err(e) = validate(&m, &change) {
        return text(StatusCode::BAD_REQUEST, e);
    }
    match svc
        .node
        .store
        .change_manager_state(&m.user, &change, super::unix_now())
        .await
    {
        Ok(Changed::Applied(s)) => {
            tracing::info!(manager = %m.user, version = s.version, "assistant: manager state changed");
            svc.state_changed(&m, &s);
            axum::Json(view(&m, &s)).into_response()
        }
        Ok(Changed::Conflict(s)) => {
            (StatusCode::CONFLICT, axum::Json(view(&m, &s))).into_response()
        }
        Err(e) => unavailable(e),
    }
}

pub async fn intercept(
    State(svc): State<Arc<AssistantService>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let m = match authorise(&svc, &headers, &user).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    if m.mode == Mode::Shared {
        return text(
            StatusCode::BAD_REQUEST,
            "intercept is not available in shared line mode",
        );
    }
    match svc.intercept(&m).await {
        Some(call) => axum::Json(json!({ "call": call, "to": m.line })).into_response(),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no call is ringing at an assistant of {:?}", m.user),
        ),
    }
}
