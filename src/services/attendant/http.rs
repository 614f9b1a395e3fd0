//! The Attendant Console's HTTP API for attendants (HTTP Basic with the attendant's end-user
//! password; anyone else is refused):
//! - `GET /ucm/attendant/queues`: the attendant's queues, each with its waiting calls in queue
//!   order (`position` from 1), the caller's number and the seconds waited.
//! - `POST /ucm/attendant/calls/{call}/answer`: the call moves to the attendant's line, which
//!   connects by itself. 200 with the line and `connected` (seen connected within 5 s); 409 when another attendant's answer took it (of
//!   attendants answering one call at once exactly one gets it: the database decides); 404
//!   when no such call waits; 403 when it waits in a queue the attendant does not serve; 410
//!   when the caller was gone; 503 while the database cannot be written.
//! - `POST /ucm/attendant/calls/{call}/transfer/{to}`, `POST .../calls/{call}/park` and
//!   `POST /ucm/attendant/parked/{park}/retrieve`: steps 7-9 and park (see [`super::hold`]);
//!   404 for a call not on the attendant's phone (or nothing parked), 409 when another
//!   attendant took it first, 503 when every device of the kind holds a call.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::model::AttendantUser;
use super::{AnswerError, AttendantService};

pub const QUEUES_PATH: &str = "/ucm/attendant/queues";
pub const ANSWER_PATH: &str = "/ucm/attendant/calls/{call}/answer";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut b = body.into();
    b.push('\n');
    (status, b).into_response()
}

/// The authenticated attendant.
async fn authorise(
    svc: &Arc<AttendantService>,
    headers: &HeaderMap,
) -> Result<AttendantUser, Response> {
    let user =
        crate::services::authenticate::basic_user(&svc.node, headers, "an attendant").await?;
    svc.attendant(&user).ok_or_else(|| {
        text(
            StatusCode::FORBIDDEN,
            format!("{user:?} is not an attendant"),
        )
    })
}

pub async fn get_queues(State(svc): State<Arc<AttendantService>>, headers: HeaderMap) -> Response {
    let a = match authorise(&svc, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let queues = svc.queues_of(&a.user);
    let out = match svc.queue_view(&queues).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "attendant: database unavailable");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable: the queues cannot be read now",
            );
        }
    };
    axum::Json(json!({ "attendant": a.user, "line": a.line, "queues": out })).into_response()
}

pub async fn answer(
    State(svc): State<Arc<AttendantService>>,
    Path(call): Path<String>,
    headers: HeaderMap,
) -> Response {
    let a = match authorise(&svc, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(call) = call.parse::<u64>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{call:?} is not a call id (a number)"),
        );
    };
    match svc.answer(&a, call).await {
        Ok((line, connected)) => axum::Json(
            json!({ "call": call, "attendant": a.user, "line": line, "connected": connected }),
        )
        .into_response(),
        Err(AnswerError::NotWaiting) => {
            text(StatusCode::NOT_FOUND, format!("no call {call} is waiting"))
        }
        Err(AnswerError::NotYourQueue) => text(
            StatusCode::FORBIDDEN,
            format!("call {call} waits in a queue {:?} does not serve", a.user),
        ),
        Err(AnswerError::Taken) => text(
            StatusCode::CONFLICT,
            format!("call {call} was answered by another attendant"),
        ),
        Err(AnswerError::Gone(e)) => text(
            StatusCode::GONE,
            format!("call {call} could not move to the attendant's phone: {e}"),
        ),
        Err(AnswerError::Database(e)) => {
            tracing::warn!(error = %e, "attendant: database unavailable");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable: calls cannot be answered now",
            )
        }
    }
}

pub const TRANSFER_PATH: &str = "/ucm/attendant/calls/{call}/transfer/{to}";
pub const PARK_PATH: &str = "/ucm/attendant/calls/{call}/park";
pub const RETRIEVE_PATH: &str = "/ucm/attendant/parked/{park}/retrieve";

/// The call id in a path, or the 400 naming what is wrong.
fn call_id(call: &str) -> Result<u64, Box<Response>> {
    call.parse::<u64>().map_err(|_| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("{call:?} is not a call id (a number)"),
        ))
    })
}

fn hold_error(e: super::hold::HoldError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, e.error)
}

/// `POST /ucm/attendant/calls/{call}/transfer/{to}`: blind transfer of the call on the
/// attendant's phone through a service queue (200 once the caller hears music on hold).
pub async fn transfer(
    State(svc): State<Arc<AttendantService>>,
    Path((call, to)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let a = match authorise(&svc, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let call = match call_id(&call) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match svc.transfer(&a, call, &to).await {
        Ok(device) => {
            axum::Json(json!({ "call": call, "to": to, "device": device })).into_response()
        }
        Err(e) => hold_error(e),
    }
}

/// `POST /ucm/attendant/calls/{call}/park`: parks the call on the attendant's phone on a
/// free park device of the server (its number in `park`).
pub async fn park(
    State(svc): State<Arc<AttendantService>>,
    Path(call): Path<String>,
    headers: HeaderMap,
) -> Response {
    let a = match authorise(&svc, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let call = match call_id(&call) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match svc.park(&a, call).await {
        Ok(park) => axum::Json(json!({ "call": call, "park": park })).into_response(),
        Err(e) => hold_error(e),
    }
}

/// `POST /ucm/attendant/parked/{park}/retrieve`: the call parked on that park device moves to
/// the attendant's line (409 when another attendant retrieved it first).
pub async fn retrieve(
    State(svc): State<Arc<AttendantService>>,
    Path(park): Path<String>,
    headers: HeaderMap,
) -> Response {
    let a = match authorise(&svc, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    match svc.retrieve(&a, &park).await {
        Ok(call) => {
            axum::Json(json!({ "call": call, "park": park, "attendant": a.user, "line": a.line }))
                .into_response()
        }
        Err(e) => hold_error(e),
    }
}
