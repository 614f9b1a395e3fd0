//! The WebDialer servlet (`/webdialer/Webdialer`): plain HTML forms that need no JavaScript.
//!
//! Login (user ID and password) → preferences (a permanent device and line from the user's
//! associated devices, or Use Extension Mobility) → the dial page with the number filled in →
//! the call (third-party call control) → the end-call page. A cookie (`WDSESSION`, HttpOnly,
//! SameSite=Lax) names a server-side session; User Session Expiry (hours, 0 = never) ends it.
//!
//! Every form after login carries the session's CSRF token (`csrf`); a request that acts
//! (`action` other than `login`) without the session's token gets a 403 page and does nothing.
//! Requests that act are POST only, action and token in the body (a GET with `action` gets
//! 405); the cookie is `Secure` over HTTPS. The plain entry request (`destination` alone, GET
//! or POST, as Cisco documents it for other pages to link to) only shows a page, so it needs
//! no token.
//!
//! The end-call page closes itself after Duration of End Call Dialog seconds, as Cisco's popup
//! does (one inline `setTimeout`); without JavaScript it simply stays open.
//!
//! `makeCallProxy`: the same URL with `uid` (the user), `appid` and `pwd` (an application or
//! user with proxy rights) places the call at once, without a session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{WdError, WebDialerService, SERVLET_PATH};
use crate::node::NodeState;
use crate::sip::registrar::unix_now;
use crate::wire::soap::UserProfile;
use crate::wire::xml::escape as esc;

pub const COOKIE: &str = "WDSESSION";
/// Sessions kept at most (bounds memory under a flood of logins).
const MAX_SESSIONS: usize = 50_000;

/// Where the user's calls come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preference {
    Device { device: String, line: String },
    ExtensionMobility,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub created: i64,
    pub preference: Option<Preference>,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

/// The servlet's sessions by token.
#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

fn expired(s: &Session, now: i64, expiry_secs: i64) -> bool {
    expiry_secs > 0 && now - s.created >= expiry_secs
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session; returns its token.
    pub fn create(&self, user: &str, now: i64, expiry_secs: i64) -> String {
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut g = self.lock();
        if g.len() >= MAX_SESSIONS {
            g.retain(|_, s| !expired(s, now, expiry_secs));
            if g.len() >= MAX_SESSIONS {
                if let Some(oldest) = g
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone())
                {
                    g.remove(&oldest);
                }
            }
        }
        g.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                created: now,
                preference: None,
                csrf: hex::encode(rand::random::<[u8; 16]>()),
            },
        );
        token
    }

    /// The live session for `token`: `Err(true)` when it existed but has expired (it is
    /// removed), `Err(false)` when there is none.
    pub fn get(&self, token: &str, now: i64, expiry_secs: i64) -> Result<Session, bool> {
        let mut g = self.lock();
        match g.get(token) {
            None => Err(false),
            Some(s) if expired(s, now, expiry_secs) => {
                g.remove(token);
                Err(true)
            }
            Some(s) => Ok(s.clone()),
        }
    }

    pub fn set_preference(&self, token: &str, p: Preference) {
        if let Some(s) = self.lock().get_mut(token) {
            s.preference = Some(p);
        }
    }

    pub fn remove(&self, token: &str) {
        self.lock().remove(token);
    }
}

/// Compares tokens in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    named_cookie_token(headers, COOKIE)
}

/// The session token in cookie `name`, when it is one this servlet could have made.
pub(crate) fn named_cookie_token(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} - Cisco WebDialer</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;background:#f3f5f7;color:#1d2329;margin:0}}\
header{{background:#0d274d;color:#fff;padding:.8rem 1.5rem;font-size:1.1rem}}\
main{{max-width:32rem;margin:2rem auto;background:#fff;padding:1.5rem 2rem;border-radius:6px;box-shadow:0 1px 4px rgba(0,0,0,.15)}}\
h1{{font-size:1.4rem;margin-top:0}}label{{display:block;margin:.8rem 0 .3rem;font-weight:600}}\
input[type=text],input[type=password],input[type=tel],select{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
fieldset{{border:1px solid #ccd;border-radius:4px;margin:.8rem 0}}\
button{{margin-top:1rem;padding:.55rem 1.4rem;font-size:1rem;background:#005073;color:#fff;border:0;border-radius:4px;cursor:pointer}}\
button.secondary{{background:#6b7785}}\
.error{{background:#fde8e8;border-left:4px solid #c62828;padding:.6rem .8rem}}\
.note{{color:#4a5561;font-size:.9rem}}.ok{{background:#e6f4ea;border-left:4px solid #2e7d32;padding:.6rem .8rem}}\
:focus{{outline:3px solid #f0a000}}\
</style></head><body><header>Cisco WebDialer</header><main><h1>{t}</h1>{body}</main></body></html>\n",
        t = esc(title)
    )
}

pub(crate) fn error_box(msg: &str) -> String {
    if msg.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(msg))
    }
}

pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        esc(value)
    )
}

/// The login page. `uid` is what the user typed before (kept after a failed login; never the
/// password); `destination`, when another page asked to dial a number, is shown.
fn login_page(destination: &str, uid: &str, msg: &str) -> String {
    let number = if destination.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Log in to call <strong id=\"number\">{}</strong>.</p>",
            esc(destination)
        )
    };
    // The cursor goes where the user has something to type.
    let (uid_focus, pwd_focus) = if uid.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    page(
        "Log in",
        &format!(
            "{}{number}<form method=\"post\" action=\"{SERVLET_PATH}\">{}{}\
<label for=\"uid\">User ID</label><input type=\"text\" id=\"uid\" name=\"uid\" value=\"{}\" autocomplete=\"username\" required{uid_focus}>\
<label for=\"pwd\">Password</label><input type=\"password\" id=\"pwd\" name=\"pwd\" autocomplete=\"current-password\" required{pwd_focus}>\
<button type=\"submit\">Log in</button></form>",
            error_box(msg),
            hidden("action", "login"),
            hidden("destination", destination),
            esc(uid)
        ),
    )
}

/// How the device list names a line: `SEP… (John Smith's phone) · line 10001`.
fn line_choice(device: &str, description: &str, dn: &str) -> String {
    if description.is_empty() {
        format!("{device} · line {dn}")
    } else {
        format!("{device} ({description}) · line {dn}")
    }
}

fn preferences_page(
    state: &NodeState,
    user: &str,
    destination: &str,
    msg: &str,
    csrf: &str,
) -> String {
    let cluster = state.cluster();
    let devices = WebDialerService::devices(&cluster, user);
    let mut options = String::new();
    for d in &devices {
        for l in &d.lines {
            let dn = l.split(';').next().unwrap_or_default().trim();
            let label = line_choice(&d.device_name, &d.phone_desc, dn);
            options.push_str(&format!(
                "<option value=\"{}|{}\">{}</option>",
                esc(&d.device_name),
                esc(dn),
                esc(&label)
            ));
        }
    }
    let note = if devices.is_empty() {
        "<p class=\"error\" role=\"alert\">No supported device configured for user</p>".to_string()
    } else {
        String::new()
    };
    let device_choice = if devices.is_empty() {
        String::new()
    } else {
        format!(
            "<p><input type=\"radio\" id=\"use-device\" name=\"use\" value=\"device\" checked>\
<label for=\"use-device\" style=\"display:inline\">Use permanent device</label></p>\
<label for=\"device\">Device and line</label><select id=\"device\" name=\"device\">{options}</select>"
        )
    };
    page(
        "Preferences",
        &format!(
            "<p>Logged in as <strong>{}</strong>.</p>{note}{}<form method=\"post\" action=\"{SERVLET_PATH}\">{}{}{}\
<fieldset><legend>Place calls from</legend>{device_choice}\
<p><input type=\"radio\" id=\"use-em\" name=\"use\" value=\"em\"{}>\
<label for=\"use-em\" style=\"display:inline\">Use Extension Mobility</label></p></fieldset>\
<button type=\"submit\">Save</button></form>{}",
            esc(user),
            error_box(msg),
            hidden("action", "prefs"),
            hidden("destination", destination),
            hidden("csrf", csrf),
            if devices.is_empty() { " checked" } else { "" },
            logout_form(csrf)
        ),
    )
}

fn logout_form(csrf: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{SERVLET_PATH}\">{}{}<button type=\"submit\" class=\"secondary\">Log out</button></form>",
        hidden("action", "logout"),
        hidden("csrf", csrf)
    )
}

fn describe(p: &Preference) -> String {
    match p {
        Preference::Device { device, line } => format!("{device}, line {line}"),
        Preference::ExtensionMobility => {
            "the phone you are logged in on (Extension Mobility)".into()
        }
    }
}

fn dial_page(p: &Preference, destination: &str, msg: &str, csrf: &str) -> String {
    page(
        "Dial",
        &format!(
            "{}<p>Calls are placed from {}.</p><form method=\"post\" action=\"{SERVLET_PATH}\">{}{}\
<label for=\"destination\">Number to dial</label>\
<input type=\"tel\" id=\"destination\" name=\"destination\" value=\"{}\" required autofocus>\
<button type=\"submit\">Dial</button></form>\
<form method=\"post\" action=\"{SERVLET_PATH}\">{}{}<button type=\"submit\" class=\"secondary\">Preferences</button></form>{}",
            error_box(msg),
            esc(&describe(p)),
            hidden("action", "dial"),
            hidden("csrf", csrf),
            esc(destination),
            hidden("action", "preferences"),
            hidden("csrf", csrf),
            logout_form(csrf)
        ),
    )
}

/// The end-call dialog. `csrf` is the session's token (none for makeCallProxy, whose End call
/// then asks for a login); `close_after` is Duration of End Call Dialog in seconds.
fn end_call_page(
    destination: &str,
    device: &str,
    line: &str,
    csrf: Option<&str>,
    close_after: u32,
) -> String {
    let token = csrf.map(|t| hidden("csrf", t)).unwrap_or_default();
    // Cisco's dialog is a popup that closes itself. A browser lets a script close only a
    // window a script opened, so the note and the timer exist only in such a window
    // (`window.opener`); a tab the user opened stays, and without JavaScript nothing is promised.
    let timer = if close_after > 0 {
        format!(
            "<p class=\"note\" id=\"autoclose\" hidden>This window closes by itself after \
{close_after} seconds.</p><script>if(window.opener){{document.getElementById(\"autoclose\").hidden=false;\
setTimeout(window.close, {});}}</script>",
            u64::from(close_after) * 1000
        )
    } else {
        String::new()
    };
    page(
        "Calling",
        &format!(
            "<p class=\"ok\" role=\"status\">Calling {} from {} (line {}). Your phone has answered; the \
destination is being called.</p><form method=\"post\" action=\"{SERVLET_PATH}\">{}{}{token}\
<button type=\"submit\">End call</button></form><form method=\"post\" action=\"{SERVLET_PATH}\">{}{token}\
<button type=\"submit\" class=\"secondary\">Close</button></form>{timer}",
            esc(destination),
            esc(device),
            esc(line),
            hidden("action", "end"),
            hidden("destination", destination),
            hidden("action", "close"),
        ),
    )
}

/// The answer to a request that acts without the session's CSRF token.
fn forbidden_page(destination: &str) -> Response {
    let again = if destination.is_empty() {
        SERVLET_PATH.to_string()
    } else {
        format!(
            "{SERVLET_PATH}?destination={}",
            crate::wire::codec::percent_encode(destination)
        )
    };
    html(
        StatusCode::FORBIDDEN,
        page(
            "Request refused",
            &format!(
                "{}<p>The form did not carry this session's security token: it may be from \
an old page, another window or another site. Nothing was done.</p>\
<p><a href=\"{}\">Open WebDialer again</a></p>",
                error_box("Forbidden: missing or wrong security token (CSRF)."),
                esc(&again)
            ),
        ),
        None,
    )
}

pub(crate) fn html(status: StatusCode, body: String, set_cookie: Option<String>) -> Response {
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response();
    if let Some(c) = set_cookie.and_then(|c| c.parse().ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn profile_for(user: &str, p: &Preference) -> UserProfile {
    match p {
        Preference::Device { device, line } => UserProfile {
            user: user.to_string(),
            device_name: device.clone(),
            line_number: line.clone(),
            support_em: false,
        },
        Preference::ExtensionMobility => UserProfile {
            user: user.to_string(),
            support_em: true,
            ..Default::default()
        },
    }
}

/// The message shown for a refused call, in words a user reads: the seed's wording where it
/// has one, what the failure means for the call otherwise (never a SIP status).
fn call_failed(destination: &str, e: &WdError) -> String {
    if e.message.starts_with("Call to ") || e.message.starts_with("No supported device") {
        return e.message.clone();
    }
    let why = match e.sip_status {
        Some(408) => "your phone did not answer in time".to_string(),
        Some(404 | 604) => format!("there is no number {destination}"),
        Some(484) => format!("{destination} is not a complete number"),
        Some(486 | 600) => format!("{destination} is busy"),
        Some(480) => format!("{destination} is not available right now"),
        Some(603) => format!("{destination} declined the call"),
        Some(487) => "the call was cancelled".to_string(),
        Some(403) => format!("you are not allowed to call {destination}"),
        Some(488 | 415 | 606) => {
            format!("your phone and {destination} have no audio format in common")
        }
        Some(503) => "the phone system is busy or restarting; please try again".to_string(),
        Some(s) if s >= 500 => {
            "the phone system could not place the call; please try again".to_string()
        }
        Some(_) => format!("{destination} could not be reached"),
        None => match e.code {
            6 => "WebDialer is not available right now; please try again".to_string(),
            9 => "WebDialer is busy with other calls; please try again in a moment".to_string(),
            _ => e.message.clone(),
        },
    };
    format!("Call to {destination} failed: {why}.")
}

/// Whether the request reached the node's HTTPS listener (see [`crate::node::http::over_https`]).
pub(crate) fn over_https(state: &NodeState, headers: &HeaderMap) -> bool {
    crate::node::http::over_https(state, headers)
}

/// The session cookie: `Secure` when the page came over HTTPS (a browser then never sends it
/// in clear), never readable by scripts, and not sent with other sites' requests that act.
fn session_cookie(value: &str, secure: bool, max_age: Option<i64>) -> String {
    named_session_cookie(COOKIE, value, secure, max_age)
}

pub(crate) fn named_session_cookie(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<i64>,
) -> String {
    let secure = if secure { "; Secure" } else { "" };
    let age = max_age
        .map(|a| format!("; Max-Age={a}"))
        .unwrap_or_default();
    format!("{name}={value}; Path=/webdialer; HttpOnly; SameSite=Lax{secure}{age}")
}

/// `GET`/`POST /webdialer/Webdialer`.
///
/// Requests that act (`action=…`: log in, save preferences, dial, end a call, log out) are
/// POST only, with the action and the CSRF token in the form body: a link cannot act, and no
/// token travels in a URL (browser history, logs, Referer). A GET shows a page. makeCallProxy
/// (`appid`, `pwd`) stays GET or POST as Cisco documents it: it carries its own credentials
/// and no session. With `redirect_http_to_https`, a page asked for over plain HTTP is sent to
/// the same URL on the node's HTTPS port.
pub async fn handler(
    State(wd): State<Arc<super::WebDialerService>>,
    method: axum::http::Method,
    uri: axum::extract::OriginalUri,
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
    let secure = over_https(&wd.node, &headers);
    if !secure
        && wd
            .node
            .cluster()
            .section::<super::model::WebDialerParameters>()
            .redirect_http_to_https
    {
        let target = format!(
            "{}{}",
            wd.node.https_base,
            uri.0.path_and_query().map_or(SERVLET_PATH, |p| p.as_str())
        );
        // 308 keeps a POST a POST; a page asked for with GET moves for good.
        let status = if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::PERMANENT_REDIRECT
        };
        let mut r = html(
            status,
            page(
                "Moved to HTTPS",
                &format!(
                    "<p><a href=\"{}\">Continue over HTTPS</a></p>",
                    esc(&target)
                ),
            ),
            None,
        );
        if let Ok(v) = target.parse() {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    let is_post = method == axum::http::Method::POST;
    if !is_post && query.get("action").is_some_and(|a| !a.trim().is_empty()) {
        let mut r = html(
            StatusCode::METHOD_NOT_ALLOWED,
            page(
                "Request refused",
                &format!(
                    "{}<p>Nothing was done: WebDialer acts only on forms sent with POST.</p>\
<p><a href=\"{SERVLET_PATH}\">Open WebDialer again</a></p>",
                    error_box("Method Not Allowed: actions must be sent with POST.")
                ),
            ),
            None,
        );
        r.headers_mut().insert(
            header::ALLOW,
            axum::http::HeaderValue::from_static("GET, POST"),
        );
        return r;
    }
    // What acts comes from the form only, never from the URL.
    if query.get("action").is_some_and(|a| !a.trim().is_empty()) {
        tracing::info!("WebDialer: action in the URL refused");
        return forbidden_page(query.get("destination").map_or("", |d| d.trim()));
    }
    let mut params = query;
    params.remove("action");
    params.remove("csrf");
    if is_post {
        for (k, v) in crate::wire::codec::form_pairs(&body) {
            params.insert(k, v);
        }
    }
    let get = |k: &str| {
        params
            .get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let destination = get("destination");
    let state = wd.node.clone();
    let params_wd = state
        .cluster()
        .section::<super::model::WebDialerParameters>()
        .clone();
    let expiry = i64::from(params_wd.user_session_expiry_hours) * 3600;
    let close_after = params_wd.end_call_dialog_seconds;
    let now = unix_now();

    // makeCallProxy: uid (for whom), appid and pwd (who asks).
    if params.contains_key("appid") {
        let r = async {
            let p = wd.authenticate(&state, &get("appid"), &get("pwd")).await?;
            if !p.proxy {
                return Err(WdError::new(3, format!("{} has no proxy rights", p.id)));
            }
            let profile = UserProfile {
                user: get("uid"),
                ..Default::default()
            };
            if profile.user.is_empty() {
                return Err(WdError::new(5, "no uid (the user to call for)"));
            }
            wd.make_call(&state, &p, &profile, &destination).await
        }
        .await;
        return match r {
            Ok((o, _)) => html(
                StatusCode::OK,
                end_call_page(&destination, &o.device, &o.line, None, close_after),
                None,
            ),
            Err(e) => html(
                if e.code == 2 || e.code == 3 {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::OK
                },
                page("Call failed", &error_box(&call_failed(&destination, &e))),
                None,
            ),
        };
    }

    let action = get("action");
    if action == "login" {
        let uid = get("uid");
        return match wd.authenticate(&state, &uid, &get("pwd")).await {
            Ok(p) if p.is_end_user => {
                let token = wd.sessions.create(&p.id, now, expiry);
                let cookie = session_cookie(&token, secure, (expiry > 0).then_some(expiry));
                tracing::info!(user = %p.id, "WebDialer: logged in");
                let csrf = wd
                    .sessions
                    .get(&token, now, expiry)
                    .map(|s| s.csrf)
                    .unwrap_or_default();
                html(
                    StatusCode::OK,
                    preferences_page(&state, &p.id, &destination, "", &csrf),
                    Some(cookie),
                )
            }
            Ok(_) | Err(_) => html(
                StatusCode::UNAUTHORIZED,
                login_page(
                    &destination,
                    &uid,
                    "Login failed: the user ID or password is not correct.",
                ),
                None,
            ),
        };
    }

    let token = cookie_token(&headers);
    let session = match token.as_deref().map(|t| wd.sessions.get(t, now, expiry)) {
        Some(Ok(s)) => s,
        Some(Err(true)) => {
            return html(
                StatusCode::OK,
                login_page(
                    &destination,
                    "",
                    "Your session has expired; please log in again.",
                ),
                None,
            )
        }
        _ => return html(StatusCode::OK, login_page(&destination, "", ""), None),
    };
    let token = token.unwrap_or_default();
    let user = session.user.clone();
    let csrf = session.csrf.clone();
    // Every request that acts carries the session's token: a page elsewhere cannot make the
    // user's browser dial, end calls or log out.
    if !action.is_empty() && !same_token(&get("csrf"), &csrf) {
        tracing::info!(user = %user, action = %action, "WebDialer: request without the session's CSRF token refused");
        return forbidden_page(&destination);
    }

    match action.as_str() {
        "logout" => {
            wd.sessions.remove(&token);
            html(
                StatusCode::OK,
                login_page("", "", "You have logged out."),
                Some(session_cookie("", secure, Some(0))),
            )
        }
        "preferences" => html(
            StatusCode::OK,
            preferences_page(&state, &user, &destination, "", &csrf),
            None,
        ),
        "prefs" => {
            let pref = if get("use") == "em" {
                Preference::ExtensionMobility
            } else {
                let sel = get("device");
                let (device, line) = sel.split_once('|').unwrap_or((sel.as_str(), ""));
                Preference::Device {
                    device: device.to_string(),
                    line: line.to_string(),
                }
            };
            // A permanent device must be one of the user's; EM is checked when dialling.
            if let Preference::Device { .. } = &pref {
                if let Err(e) = WebDialerService::origin(
                    &state.cluster(),
                    &user,
                    &profile_for(&user, &pref),
                    &destination,
                ) {
                    return html(
                        StatusCode::OK,
                        preferences_page(&state, &user, &destination, &e.message, &csrf),
                        None,
                    );
                }
            }
            wd.sessions.set_preference(&token, pref.clone());
            html(
                StatusCode::OK,
                dial_page(&pref, &destination, "", &csrf),
                None,
            )
        }
        "dial" => {
            let Some(pref) = session.preference else {
                return html(
                    StatusCode::OK,
                    preferences_page(&state, &user, &destination, "", &csrf),
                    None,
                );
            };
            let principal = super::Principal {
                id: user.clone(),
                proxy: false,
                is_end_user: true,
            };
            let profile = profile_for(&user, &pref);
            let placing = wd.make_call(&state, &principal, &profile, &destination);
            // The request lives no longer than its session: when User Session Expiry comes
            // first, the call request is dropped, and call control releases its legs.
            let placed = if expiry > 0 {
                let left = (session.created + expiry - now).max(0) as u64;
                match tokio::time::timeout(std::time::Duration::from_secs(left), placing).await {
                    Ok(r) => r,
                    Err(_) => {
                        wd.sessions.remove(&token);
                        tracing::info!(user = %user, "WebDialer: the session expired while the phone rang; call abandoned");
                        return html(
                            StatusCode::OK,
                            login_page(
                                &destination,
                                &user,
                                "Your session expired before your phone answered; the call was abandoned. Please log in again.",
                            ),
                            None,
                        );
                    }
                }
            } else {
                placing.await
            };
            match placed {
                Ok((o, _)) => html(
                    StatusCode::OK,
                    end_call_page(&destination, &o.device, &o.line, Some(&csrf), close_after),
                    None,
                ),
                Err(e) => html(
                    StatusCode::OK,
                    dial_page(&pref, &destination, &call_failed(&destination, &e), &csrf),
                    None,
                ),
            }
        }
        "end" => {
            let Some(pref) = session.preference else {
                return html(
                    StatusCode::OK,
                    preferences_page(&state, &user, &destination, "", &csrf),
                    None,
                );
            };
            let principal = super::Principal {
                id: user.clone(),
                proxy: false,
                is_end_user: true,
            };
            let msg = match wd
                .end_call(&state, &principal, &profile_for(&user, &pref))
                .await
            {
                Ok(_) => String::new(),
                Err(e) => e.message,
            };
            let body = if msg.is_empty() {
                page(
                    "Call ended",
                    &format!(
                        "<p class=\"ok\" role=\"status\">The call has ended.</p>\
<form method=\"post\" action=\"{SERVLET_PATH}\">{}{}{}<button type=\"submit\">Dial again</button></form>{}",
                        hidden("action", "redial"),
                        hidden("destination", &destination),
                        hidden("csrf", &csrf),
                        logout_form(&csrf)
                    ),
                )
            } else {
                dial_page(&pref, &destination, &msg, &csrf)
            };
            html(StatusCode::OK, body, None)
        }
        _ => match session.preference {
            Some(pref) => html(
                StatusCode::OK,
                dial_page(&pref, &destination, "", &csrf),
                None,
            ),
            None => html(
                StatusCode::OK,
                preferences_page(&state, &user, &destination, "", &csrf),
                None,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdialer_sessions_expire() {
        let s = Sessions::default();
        let t = s.create("jsmith", 1000, 3600);
        assert_eq!(s.get(&t, 1000 + 3599, 3600).unwrap().user, "jsmith");
        assert!(s.get(&t, 1000 + 3600, 3600).unwrap_err(), "expired");
        assert!(!s.get(&t, 1000, 3600).unwrap_err(), "removed once expired");
        let t = s.create("jsmith", 0, 0);
        assert!(s.get(&t, i64::MAX / 2, 0).is_ok(), "0 hours: never");
        s.set_preference(&t, Preference::ExtensionMobility);
        assert_eq!(
            s.get(&t, 1, 0).unwrap().preference,
            Some(Preference::ExtensionMobility)
        );
        s.remove(&t);
        assert!(s.get(&t, 1, 0).is_err());
    }

    #[test]
    fn webdialer_reads_only_well_formed_cookies() {
        let mut h = HeaderMap::new();
        let tok = "0123456789abcdef0123456789abcdef";
        h.insert(
            header::COOKIE,
            format!("a=b; {COOKIE}={tok}").parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some(tok));
        h.insert(header::COOKIE, format!("{COOKIE}=../x").parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn webdialer_end_call_dialog_closes_itself_and_works_without_script() {
        let p = end_call_page("10002", "SEP1", "10001", Some("tok"), 15);
        // Only a window a script opened is closed, and only there is it promised.
        assert!(p.contains(
            "<script>if(window.opener){document.getElementById(\"autoclose\").hidden=false;setTimeout(window.close, 15000);}</script>"
        ));
        // Without JavaScript: the note stays hidden and both forms still post.
        assert!(p.contains("id=\"autoclose\" hidden>"));
        assert_eq!(p.matches("<form method=\"post\"").count(), 2);
        assert_eq!(p.matches("name=\"csrf\" value=\"tok\"").count(), 2);
        let p = end_call_page("10002", "SEP1", "10001", None, 0);
        assert!(
            !p.contains("<script"),
            "no timer when the dialog is not to close"
        );
        assert!(!p.contains("csrf"));
    }

    #[test]
    fn webdialer_csrf_tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", "a"));
        let s = Sessions::default();
        let (a, b) = (s.create("x", 0, 0), s.create("x", 0, 0));
        let (ta, tb) = (s.get(&a, 0, 0).unwrap().csrf, s.get(&b, 0, 0).unwrap().csrf);
        assert_eq!(ta.len(), 32);
        assert_ne!(ta, tb, "one token per session");
    }

    #[test]
    fn r21_webdialer_login_shows_the_number_and_keeps_the_user_id() {
        let p = login_page("10002", "jsmith", "Login failed");
        assert!(p.contains("Log in to call <strong id=\"number\">10002</strong>"));
        assert!(p.contains("name=\"uid\" value=\"jsmith\""));
        // The cursor waits in the password field.
        assert!(p.contains("current-password\" required autofocus>"));
        let p = login_page("", "", "");
        assert!(!p.contains("Log in to call"));
        assert!(p.contains("autocomplete=\"username\" required autofocus>"));
    }

    #[test]
    fn r21_webdialer_device_list_and_errors_read_as_words() {
        assert_eq!(
            line_choice("SEP00036BC7B973", "John Smith's phone", "10001"),
            "SEP00036BC7B973 (John Smith's phone) · line 10001"
        );
        assert_eq!(line_choice("SEP1", "", "10001"), "SEP1 · line 10001");
        let sip = |status: u16| {
            WdError::new(
                super::super::call_error_code(status),
                format!("{status} Busy Here"),
            )
            .sip(status)
        };
        assert_eq!(
            call_failed("10002", &sip(486)),
            "Call to 10002 failed: 10002 is busy."
        );
        assert_eq!(
            call_failed("99999", &sip(404)),
            "Call to 99999 failed: there is no number 99999."
        );
        assert_eq!(
            call_failed("10002", &sip(408)),
            "Call to 10002 failed: your phone did not answer in time."
        );
        for status in [
            400u16, 403, 404, 408, 415, 480, 481, 484, 486, 487, 488, 500, 503, 600, 603, 604, 606,
        ] {
            let m = call_failed("10002", &sip(status));
            assert!(!m.contains(&status.to_string()), "{status}: {m}");
            assert!(!m.contains("SIP"), "{status}: {m}");
        }
        assert_eq!(
            call_failed("10002", &WdError::new(9, "3 call requests are already in progress")),
            "Call to 10002 failed: WebDialer is busy with other calls; please try again in a moment."
        );
    }

    #[test]
    fn webdialer_pages_escape_and_need_no_script() {
        let p = login_page("<b>\"", "", "");
        assert!(p.contains("&lt;b&gt;&quot;"));
        assert!(!p.contains("<script"));
        assert!(p.contains("<label for=\"uid\">"));
    }
}
