//! The Attendant Console's HTTP API for attendants (HTTP Basic with the attendant's end-user
//! password; anyone else is refused):
//! - `GET /ucm/attendant/queues`: the attendant's queues, each with its waiting calls in queue
//!   order (`position` from 1), the caller's number and the seconds waited.
//! - `POST /ucm/attendant/calls/{call}/answer`: the call moves to the attendant's line, which
//!   connects by itself. 200 with the line and `connected` (seen connected within 5 s); 409 when another attendant's answer took it (of
//!   attendants answering one call at once exactly one gets it: the database decides); 404
//!   when no such call waits; 403 when it waits in a queue the attendant does not serve; 410
//!   when the caller was gone; 503 while the database cannot be written.

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
