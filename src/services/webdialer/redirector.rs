//! The WebDialer Redirector (`/webdialer/Redirector`, also `/webdialer/WebdialerRedirector`):
//! finds a user's home cluster in a multi-cluster deployment.
//!
//! The user gives their user ID and password; the Redirector asks every WebDialer in the
//! List of WebDialers at once whether the user is theirs (`isClusterUserSoap`, with a timeout;
//! an unreachable one is skipped and logged), and this cluster itself when the user's home is
//! here. The password is checked by the user's home cluster (here, or with an authenticated
//! `getPrimaryLine` there). One yes: a redirect (303) to that WebDialer with the destination;
//! several: a page where the user picks; none: an error page.
//!
//! The list may also name several WebDialers of this cluster (its nodes, known by the
//! definition's address and port): for a user of this cluster they are one home, served by
//! the first of them in list order that answers (this node counts as answering), so a dead
//! node's WebDialer is skipped and the next one takes the user. WebDialer sessions are kept
//! by the node that made them: a user sent to another node after a death logs in again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::html::{error_box, hidden, html, named_cookie_token, named_session_cookie, page};
use super::SERVLET_PATH;
use crate::client::webdialer::{WdCallError, WdClient};
use crate::client::{http_client_trusting, ClientOptions};
use crate::node::NodeState;
use crate::wire::codec::{form_pairs, percent_encode};
use crate::wire::soap::{Credential, Request};
use crate::wire::xml::escape as esc;

pub const PATH: &str = "/webdialer/Redirector";
pub const PATH_ALT: &str = "/webdialer/WebdialerRedirector";

/// What one WebDialer said about the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    Unreachable(String),
}

/// The servlet URL at `base` for `destination`.
pub fn servlet_url(base: &str, destination: &str) -> String {
    let base = base.trim_end_matches('/');
    if destination.is_empty() {
        format!("{base}{SERVLET_PATH}")
    } else {
        format!(
            "{base}{SERVLET_PATH}?destination={}",
            percent_encode(destination)
        )
    }
}

/// Whether `base` (a WebDialer's base URL) is a node of this cluster: its host is the node's
/// address or bind address and its port the node's HTTP or HTTPS port as the definition
/// gives it (the standard one when left out; a node on any free port cannot be recognised).
pub fn is_cluster_node(def: &crate::config::ClusterDefinition, base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    def.nodes.iter().any(|n| {
        let named = n.address == host || n.bind.is_some_and(|b| b.to_string() == host);
        let defined = match url.scheme() {
            "http" => n.ports.http.unwrap_or(crate::node::HTTP_PORT),
            "https" => n.ports.https.unwrap_or(crate::node::HTTPS_PORT),
            _ => 0,
        };
        named && defined != 0 && defined == port
    })
}

/// This node's base URL as the client reached it.
fn own_base(state: &NodeState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host.is_empty() && state.http_base.ends_with(&format!("//{host}")) {
        state.http_base.clone()
    } else {
        state.https_base.clone()
    }
}

impl super::WebDialerService {
    /// The Redirector's HTTP client (rebuilt when its settings change).
    /// The other clusters' WebDialers are trusted by `redirector_ca_file` (else the system's
    /// roots) and by the HTTPS certificates in the cluster's Tomcat-trust store, which
    /// `ucm emcc sync-certs` fills: after the exchange no CA file is needed.
    async fn redirector_http(&self, state: &NodeState) -> Result<reqwest::Client, String> {
        let p = state
            .cluster()
            .section::<super::model::WebDialerParameters>()
            .clone();
        let trust = match state.store.trust_store_ders("tomcat-trust").await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "Redirector: the Tomcat-trust store cannot be read; asking with the CA file alone");
                Vec::new()
            }
        };
        let trusted: String = trust
            .iter()
            .map(|c| crate::wire::certs::fingerprint(c))
            .collect::<Vec<_>>()
            .join(",");
        let key = (
            p.redirector_ca_file.clone(),
            p.redirector_timeout_ms,
            trusted,
        );
        let mut g = self
            .redirector_http
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((k, c)) = g.as_ref() {
            if *k == key {
                return Ok(c.clone());
            }
        }
        let c = http_client_trusting(
            &ClientOptions {
                ca: p.redirector_ca_file.clone().map(Into::into),
                insecure: false,
                timeout: Some(Duration::from_millis(u64::from(
                    p.redirector_timeout_ms.max(1),
                ))),
            },
            &trust,
        )
        .map_err(|e| e.to_string())?;
        *g = Some((key, c.clone()));
        Ok(c)
    }
}

/// Asks every WebDialer in the list at once; answers in list order.
pub async fn ask_all(http: &reqwest::Client, list: &[String], user: &str) -> Vec<(String, Answer)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, base) in list.iter().enumerate() {
        let c = WdClient::with_http(http.clone(), base);
        let user = user.to_string();
        set.spawn(async move {
            let r = c
                .call(&Request::IsClusterUser { user })
                .await
                .map_err(|e| e.to_string())
                .and_then(|reply| match reply.value.as_deref() {
                    Some("true") => Ok(Answer::Yes),
                    Some("false") => Ok(Answer::No),
                    other => Err(format!("isClusterUserSoap returned {other:?}")),
                });
            (i, r.unwrap_or_else(Answer::Unreachable))
        });
    }
    let mut out: Vec<(usize, Answer)> = Vec::with_capacity(list.len());
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter()
        .map(|(i, a)| (list[i].trim_end_matches('/').to_string(), a))
        .collect()
}

fn login_page(destination: &str, msg: &str) -> String {
    page(
        "Find your WebDialer",
        &format!(
            "{}<p>Log in; you are sent to the WebDialer of your home cluster.</p>\
<form method=\"post\" action=\"{PATH}\">{}\
<label for=\"uid\">User ID</label><input type=\"text\" id=\"uid\" name=\"uid\" autocomplete=\"username\" required autofocus>\
<label for=\"pwd\">Password</label><input type=\"password\" id=\"pwd\" name=\"pwd\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Continue</button></form>",
            error_box(msg),
            hidden("destination", destination)
        ),
    )
}

/// The Redirector's session cookie (its own: the WebDialer servlet it sends users to may be
/// another node's or another cluster's, with sessions of its own).
pub const COOKIE: &str = "WDREDIRECTOR";

/// `GET`/`POST /webdialer/Redirector`.
///
/// A user who logged in here before and whose cookie is still live is not asked again (the
/// seed's note on the Redirector): the homes are looked up afresh, so a dead WebDialer is still
/// skipped. The session lasts User Session Expiry hours (0: until the browser or this node
/// forgets it); `login=1` shows the login form to log in as someone else.
pub async fn handler(
    State(wd): State<Arc<super::WebDialerService>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if body.len() > 16 * 1024 {
        return html(
            StatusCode::PAYLOAD_TOO_LARGE,
            page("Request too large", "<p>The form is too large.</p>"),
            None,
        );
    }
    let mut params = query;
    for (k, v) in form_pairs(&body) {
        params.insert(k, v);
    }
    let get = |k: &str| {
        params
            .get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (destination, uid, pwd) = (get("destination"), get("uid"), get("pwd"));
    let state = wd.node.clone();
    let expiry = i64::from(
        state
            .cluster()
            .section::<super::model::WebDialerParameters>()
            .user_session_expiry_hours,
    ) * 3600;
    let now = crate::sip::registrar::unix_now();
    let secure = super::html::over_https(&state, &headers);
    if uid.is_empty() || pwd.is_empty() {
        let token = named_cookie_token(&headers, COOKIE);
        let session = match token.as_deref() {
            Some(t) if get("login") != "1" => wd.redirector_sessions.get(t, now, expiry),
            _ => Err(false),
        };
        return match session {
            Ok(s) => match find_homes(&wd, &headers, &s.user).await {
                Ok(homes) if !homes.is_empty() => {
                    tracing::info!(user = %s.user, "Redirector: known by its session cookie");
                    send_to(&s.user, &homes, &destination, None)
                }
                // The user is gone from every WebDialer since: log in again.
                Ok(_) => {
                    if let Some(t) = &token {
                        wd.redirector_sessions.remove(t);
                    }
                    html(
                        StatusCode::OK,
                        login_page(&destination, ""),
                        Some(named_session_cookie(COOKIE, "", secure, Some(0))),
                    )
                }
                Err(r) => r,
            },
            Err(true) => html(
                StatusCode::OK,
                login_page(
                    &destination,
                    "Your session has expired; please log in again.",
                ),
                None,
            ),
            Err(false) => html(StatusCode::OK, login_page(&destination, ""), None),
        };
    }
    let homes = match find_homes(&wd, &headers, &uid).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    if homes.is_empty() {
        return html(
            StatusCode::NOT_FOUND,
            page(
                "User not found",
                &format!(
                    "{}<p><a href=\"{PATH}?destination={}\">Try again</a></p>",
                    error_box(&format!(
                        "{uid} is not a user of any WebDialer this Redirector knows."
                    )),
                    esc(&percent_encode(&destination))
                ),
            ),
            None,
        );
    }
    let cluster = state.cluster();
    let local_home = cluster.end_user(&uid).is_some_and(|u| u.home_cluster);
    // The home cluster checks the password: this one, or the first remote home.
    let authenticated = if local_home {
        wd.authenticate(&state, &uid, &pwd).await.is_ok()
    } else {
        let http = match wd.redirector_http(&state).await {
            Ok(c) => c,
            Err(e) => return misconfigured(&e),
        };
        let c = WdClient::with_http(http, &homes[0]);
        let cred = Credential {
            user_id: uid.clone(),
            password: pwd,
            token: None,
        };
        match c.call(&Request::GetPrimaryLine { cred }).await {
            Ok(_) => true,
            Err(WdCallError::Fault(_)) => false,
            Err(WdCallError::Transport(e)) => {
                tracing::warn!(webdialer = %homes[0], error = %e, "Redirector: password check failed");
                false
            }
        }
    };
    if !authenticated {
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(
                &destination,
                "Login failed: the user ID or password is not correct.",
            ),
            None,
        );
    }
    if let Some(old) = named_cookie_token(&headers, COOKIE) {
        wd.redirector_sessions.remove(&old);
    }
    let token = wd.redirector_sessions.create(&uid, now, expiry);
    let cookie = named_session_cookie(COOKIE, &token, secure, (expiry > 0).then_some(expiry));
    send_to(&uid, &homes, &destination, Some(cookie))
}

fn misconfigured(e: &str) -> Response {
    tracing::error!(error = %e, "Redirector: HTTP client");
    html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Redirector unavailable",
            &error_box("The Redirector is misconfigured; see the node's log."),
        ),
        None,
    )
}

/// The WebDialers that are `uid`'s home, in list order: this cluster's first live one when the
/// user's home is here, then every other WebDialer that says yes.
async fn find_homes(
    wd: &super::WebDialerService,
    headers: &HeaderMap,
    uid: &str,
) -> Result<Vec<String>, Response> {
    let state = wd.node.clone();
    let cluster = state.cluster();
    let own = own_base(&state, headers);
    let is_own = |u: &str| u == state.http_base || u == state.https_base;
    let full: Vec<String> = cluster
        .section::<super::model::WebDialerParameters>()
        .webdialers
        .iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let list: Vec<String> = full.iter().filter(|u| !is_own(u)).cloned().collect();
    let http = wd
        .redirector_http(&state)
        .await
        .map_err(|e| misconfigured(&e))?;
    let local_home = cluster.end_user(uid).is_some_and(|u| u.home_cluster);
    let answers = ask_all(&http, &list, uid).await;
    for (base, answer) in &answers {
        if let Answer::Unreachable(e) = answer {
            tracing::warn!(webdialer = %base, error = %e, "Redirector: WebDialer skipped");
        }
    }
    let def = cluster.definition();
    let ours = |u: &str| is_own(u) || is_cluster_node(def, u);
    let answered = |u: &str| answers.iter().any(|(b, a)| b == u && *a == Answer::Yes);
    let mut homes: Vec<String> = Vec::new();
    if local_home {
        // This cluster is one home: its first WebDialer in the list that answers (this node
        // answers by being here), or this node when the list names none of them.
        let first_live = full
            .iter()
            .filter(|u| ours(u))
            .find(|u| is_own(u) || answered(u))
            .map(|u| if is_own(u) { own.clone() } else { u.clone() });
        homes.push(first_live.unwrap_or_else(|| own.clone()));
    }
    for (base, answer) in answers {
        if answer == Answer::Yes && !(local_home && ours(&base)) {
            homes.push(base);
        }
    }
    Ok(homes)
}

/// One home: a redirect there; several: a page where the user picks.
fn send_to(uid: &str, homes: &[String], destination: &str, cookie: Option<String>) -> Response {
    if homes.len() == 1 {
        let to = servlet_url(&homes[0], destination);
        tracing::info!(user = %uid, to = %to, "Redirector: redirecting");
        let mut r = (StatusCode::SEE_OTHER, [(header::CACHE_CONTROL, "no-store")]).into_response();
        if let Ok(v) = to.parse() {
            r.headers_mut().insert(header::LOCATION, v);
        }
        if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
        return r;
    }
    let items: String = homes
        .iter()
        .map(|b| {
            let u = servlet_url(b, destination);
            format!("<li><a href=\"{}\">{}</a></li>", esc(&u), esc(b))
        })
        .collect();
    html(
        StatusCode::OK,
        page(
            "Choose your WebDialer",
            &format!(
                "<p>{} is a user of more than one cluster. Pick one:</p><ul>{items}</ul>\
<p><a href=\"{PATH}?login=1&amp;destination={}\">Not {}? Log in as someone else</a></p>",
                esc(uid),
                esc(&percent_encode(destination)),
                esc(uid)
            ),
        ),
        cookie,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdialer_redirector_builds_servlet_urls() {
        assert_eq!(
            servlet_url("https://b:8443/", "9 555#"),
            "https://b:8443/webdialer/Webdialer?destination=9%20555%23"
        );
        assert_eq!(servlet_url("http://a", ""), "http://a/webdialer/Webdialer");
    }

    #[test]
    fn r16_webdialers_of_this_cluster_are_known_by_address_and_port() {
        let def: crate::config::ClusterDefinition = serde_json::from_value(serde_json::json!({
            "cluster": {"id": "c", "name": "C"},
            "nodes": [
                {"name": "a", "address": "10.0.0.1"},
                {"name": "b", "address": "b.example", "bind": "127.0.0.2", "ports": {"http": 8081}},
                {"name": "c", "address": "10.0.0.3", "ports": {"https": 0}},
            ],
        }))
        .unwrap();
        for (url, ours) in [
            ("https://10.0.0.1:8443", true),
            ("http://10.0.0.1:8080/", true),
            ("https://10.0.0.1", false),
            ("http://b.example:8081", true),
            ("http://127.0.0.2:8081", true),
            ("http://127.0.0.2:8080", false),
            ("https://10.0.0.3:8443", false),
            ("https://10.0.0.9:8443", false),
            ("not a url", false),
        ] {
            assert_eq!(is_cluster_node(&def, url), ours, "{url}");
        }
    }
}
