//! AXL (Cisco's Administrative XML Web Service) on `/axl/`: SOAP 1.1 document/literal as Cisco's
//! AXL schema defines it, for scripts and the applications that learn the cluster through it
//! (the seed's Paging Server and Attendant Console). HTTPS only, HTTP Basic with an
//! application or end user holding the role "Standard AXL API Access" (`axl-api-access`).
//!
//! The read operations of [`ops::OPERATIONS`] are served from the node's cluster definition.
//! The writes of [`write::WRITES`] are edits of the stored definition
//! (`Store::edit_definition`): one transaction under the definition lock, so the database orders
//! concurrent writes from any node; committed, the node serves the result at once and the
//! change feed carries it to every other node. `executeSQLQuery` runs on a read-only view of
//! the definition under Cisco's data-dictionary names ([`sql`]).

pub mod ops;
pub mod sql;
pub mod write;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{Flag, Parts, ServiceSpec, Start, StartFuture};
use crate::config::model::{NodeService, Role};
use crate::node::NodeState;

/// The largest request body read (Cisco documents none; a list request is a few KiB).
pub const MAX_AXL_REQUEST: usize = crate::wire::soap::MAX_REQUEST;

/// AXL.
pub const SERVICE: ServiceSpec = ServiceSpec {
    flags: &[Flag {
        flag: NodeService::Axl,
        name: "AXL",
        paths: &["/axl"],
    }],
    listeners: &[],
    sections: &[],
    check: None,
    model_source: "",
    feed: None,
    status: &[],
    start,
};

fn start(s: Start) -> StartFuture {
    Box::pin(async move {
        let state = Arc::new(Axl {
            node: s.node.clone(),
            sql: sql::SqlView::default(),
        });
        let routes = Router::new()
            .route("/axl/", get(probe).post(request))
            .route("/axl", get(probe).post(request))
            .with_state(state);
        Ok(Parts {
            routes,
            tasks: Vec::new(),
        })
    })
}

/// The service's state: the node, and its SQL view (built on the first query).
struct Axl {
    node: Arc<NodeState>,
    sql: sql::SqlView,
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Whether the user holds "Standard AXL API Access".
fn may_use_axl(state: &NodeState, user: &str) -> bool {
    let c = state.cluster();
    c.application_user(user)
        .is_some_and(|a| a.roles.contains(&Role::AxlApiAccess))
        || c.end_user(user)
            .is_some_and(|u| u.roles.contains(&Role::AxlApiAccess))
}

/// Checks transport and credentials; `Err` is the answer to send.
async fn admit(state: &Arc<NodeState>, headers: &HeaderMap) -> Result<String, Response> {
    // Credentials travel in HTTP Basic: over HTTPS only, as Cisco serves AXL on 8443.
    if !crate::services::webdialer::html::over_https(state, headers) {
        return Err((
            StatusCode::FORBIDDEN,
            format!("AXL is served over HTTPS only: {}/axl/\n", state.https_base),
        )
            .into_response());
    }
    let user = crate::services::authenticate::basic_user(
        state,
        headers,
        "a user with Standard AXL API Access",
    )
    .await?;
    if !may_use_axl(state, &user) {
        tracing::info!(user, "AXL refused: the user lacks Standard AXL API Access");
        return Err((
            StatusCode::FORBIDDEN,
            "the user lacks the role Standard AXL API Access (axl-api-access)\n",
        )
            .into_response());
    }
    Ok(user)
}

/// `GET /axl/`: clients (ciscoaxl) check their credentials with it before any request.
async fn probe(State(axl): State<Arc<Axl>>, headers: HeaderMap) -> Response {
    match admit(&axl.node, &headers).await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>Cisco AXL Web Service</h1><p>The AXL Web Service is working and accepting requests. Use HTTP POST to send a request.</p></body></html>\n",
        )
            .into_response(),
        Err(r) => r,
    }
}

/// `POST /axl/`: one SOAP request.
async fn request(State(axl): State<Arc<Axl>>, headers: HeaderMap, body: Bytes) -> Response {
    let state = &axl.node;
    let user = match admit(state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let client_fault = |msg: String| {
        xml(
            StatusCode::INTERNAL_SERVER_ERROR,
            crate::wire::soap::fault("Client", &msg),
        )
    };
    if body.len() > MAX_AXL_REQUEST {
        return xml(
            StatusCode::PAYLOAD_TOO_LARGE,
            crate::wire::soap::fault(
                "Client",
                &format!(
                    "request of {} bytes is over the {MAX_AXL_REQUEST}-byte limit",
                    body.len()
                ),
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return client_fault("the request is not UTF-8".into());
    };
    let root = match crate::wire::soap::read_tree(text) {
        Ok(r) => r,
        Err(e) => return client_fault(e.0),
    };
    if root.name != "Envelope" {
        return client_fault(format!(
            "the root element is <{}>, not a SOAP <Envelope>",
            root.name
        ));
    }
    let Some(op) = root.child("Body").and_then(|b| b.children.first()) else {
        return client_fault("the SOAP envelope has no operation in its <Body>".into());
    };
    let action = headers.get("soapaction").and_then(|v| v.to_str().ok());
    let Some(version) = ops::version_of(action, op) else {
        return client_fault(
            "no AXL version: send SOAPAction \"CUCM:DB ver=12.5 <operation>\" or the operation in http://www.cisco.com/AXL/API/<version>".into(),
        );
    };
    if write::is_write(&op.name) {
        return edit(state, &user, &version, op).await;
    }
    if op.name == "executeSQLQuery" {
        let sql = op.child("sql").map(|e| e.value()).unwrap_or_default();
        return match axl.sql.query(state.cluster(), &sql).await {
            Ok(rows) => {
                let mut inner = String::new();
                for r in rows {
                    inner.push_str("<row>");
                    for (c, v) in r {
                        inner.push_str(&format!("<{c}>{}</{c}>", crate::wire::xml::escape(&v)));
                    }
                    inner.push_str("</row>");
                }
                xml(StatusCode::OK, ops::envelope(&version, &op.name, &inner))
            }
            Err(e) => xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                ops::AxlFault {
                    soap_code: "Client",
                    // UNCONFIRMED: Cisco passes Informix's own codes through; -1 here.
                    axlcode: -1,
                    message: e.0,
                    request: op.name.clone(),
                }
                .envelope(),
            ),
        };
    }
    match ops::answer(&state.cluster(), &version, op) {
        Ok(body) => xml(StatusCode::OK, body),
        // SOAP 1.1: a fault travels with 500.
        Err(f) => xml(StatusCode::INTERNAL_SERVER_ERROR, f.envelope()),
    }
}

/// One write: an edit of the stored definition, served here at once when committed.
async fn edit(
    state: &Arc<NodeState>,
    user: &str,
    version: &str,
    op: &crate::wire::soap::Node,
) -> Response {
    let name = op.name.clone();
    let result = state
        .store
        .edit_definition(&format!("axl:{user}"), |def| {
            let uuid = write::apply(def, op)?;
            // Passwords and PINs are hashed before the write commits: never stored in clear.
            crate::config::hash_secrets(def);
            Ok::<_, ops::AxlFault>(uuid)
        })
        .await;
    match result {
        Ok(Ok(edited)) => {
            tracing::info!(user, operation = %name, uuid = %edited.value, "AXL: definition edited");
            let uuid = edited.value.clone();
            if let Err(e) = state
                .adopt_definition(edited.definition, &edited.digest)
                .await
            {
                // Committed: the feed (or the next start) brings it here.
                tracing::warn!(error = %e, "AXL: the edit committed but this node could not reload it");
            }
            xml(
                StatusCode::OK,
                ops::envelope(version, &name, &crate::wire::xml::escape(&uuid)),
            )
        }
        Ok(Err(fault)) => xml(StatusCode::INTERNAL_SERVER_ERROR, fault.envelope()),
        Err(e) => {
            tracing::warn!(error = %e, operation = %name, "AXL: the database refused the edit");
            xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                ops::AxlFault {
                    soap_code: "Server",
                    axlcode: -1,
                    message: format!("the cluster database could not take the change: {e}"),
                    request: name.clone(),
                }
                .envelope(),
            )
        }
    }
}
