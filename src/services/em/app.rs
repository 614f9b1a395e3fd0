//! The phone-facing EM application (`/emapp/EMAppServlet?device=#DEVICENAME#`):
//! a phone with nobody logged in gets a CiscoIPPhoneInput asking for the
//! user ID (or primary extension, `loginType=DN`) and PIN; the submit comes back here, the PIN
//! is checked (with the PIN lockout), and the login goes through the EM service, which resets
//! the phone. A logged-in phone gets the "log out?" prompt instead. Errors are shown the way
//! Cisco phones show them: "Login is unavailable(N)".
//!
//! Security: Allow Proxy and Validate IP Address apply to the phone's request as to the EM
//! API (the request's source address, see [`super::policy::source_allowed`]), checked before
//! the PIN. Logging a phone out without credentials, and being told who is logged in, is for
//! the phone itself only (its registered address, or a trusted one, whatever Validate IP
//! Address says); any other source gets a form asking for the logged-in user's ID and PIN.
//!
//! The exact page XML and parameter names of Cisco's EMApp are UNCONFIRMED (not in Cisco's public documents); the
//! parameters here are `device`, `loginType`, `userid`, `dn`, `pin` and `logout`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::policy::{self, Source};
use super::{EmService, Principal};
use crate::node::NodeState;
use crate::wire::em::EmError;
use crate::wire::xml::{CiscoIPPhoneObject, Input, InputItem, Menu, Text};

const TITLE: &str = "Extension Mobility";

fn page(obj: impl Into<CiscoIPPhoneObject>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        obj.into().to_xml(),
    )
        .into_response()
}

fn text(msg: &str) -> Response {
    page(Text::new(TITLE, msg))
}

/// How the phone shows an EM service error at login or logout.
fn unavailable(e: &EmError, login: bool) -> String {
    match (e.code, login) {
        (25, _) => "Multi-Login Not Allowed (25)".to_string(),
        (c, true) => format!("Login is unavailable({c})"),
        (c, false) => format!("Logout is unavailable({c})"),
    }
}

/// EMApp acts for any user once the PIN checked out: it is the cluster's own application.
fn emapp_principal() -> Principal {
    Principal {
        id: "EMApp".into(),
        proxy: true,
        is_end_user: false,
    }
}

/// The EM application of one node: it hands logins to this node's EM service.
pub struct EmApp {
    pub node: Arc<NodeState>,
    /// `None` on a node that does not run the EM service.
    pub em: Option<Arc<EmService>>,
}

/// `GET /emapp/EMAppServlet`.
pub async fn handler(
    State(app): State<Arc<EmApp>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
) -> Response {
    // The form is read by the wire layer (fuzzed there): names in any case, first one wins.
    let form = crate::wire::codec::Form::parse(raw_query.as_deref().unwrap_or("").as_bytes());
    let get = |k: &str| form.get(k).map(str::to_string);
    let Some(device) = get("device") else {
        return text("Login is unavailable(207)");
    };
    let login_type = get("loginType")
        .unwrap_or_else(|| "UID".into())
        .to_ascii_uppercase();
    if !matches!(login_type.as_str(), "UID" | "DN" | "SP") {
        return text("Login is unavailable(215)");
    }
    let state = &app.node;
    let cluster = state.cluster();
    if cluster.device(&device).is_none() {
        return text("Login is unavailable(11)");
    }
    let Some(em) = &app.em else {
        // The EM application runs on every node but only some run the EM service: hand the phone
        // to one that does. A redirect (not a proxied request) keeps the phone's own address as
        // the source the EM node validates. UNCONFIRMED how Cisco's EMApp hands over; Cisco's
        // provisioning guides document phones retrying a 302 at its Location at once.
        return match em_node_url(&cluster, raw_query.as_deref()) {
            Some(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
            // UNCONFIRMED how Cisco's EMApp words this; the phone shows why it cannot log in.
            None => text(&format!(
                "Login is unavailable: Extension Mobility is not active on node {} nor on any \
                 other node of the cluster",
                state.node.name
            )),
        };
    };
    let base = format!(
        "{}/emapp/EMAppServlet?device={}&loginType={login_type}",
        state.http_base,
        crate::wire::codec::percent_encode(&device)
    );
    let current = cluster.mobility.login(&device);
    let (uid, dn, pin) = (get("userid"), get("dn"), get("pin"));
    let params = &cluster.section::<super::model::ExtensionMobilityParameters>();
    let source = Source::from_http(peer.ip(), &headers, None);
    let proxied = policy::check_proxy(params, source.via_hops > 0, "a request");
    // The phone itself (its registered address, under the same source rules as Validate IP
    // Address, whatever that parameter says) may log out without credentials and be told
    // who is logged in; anyone else must give the logged-in user's ID and PIN.
    let from_phone = proxied.is_ok()
        && policy::source_allowed(&params.trusted_ips, &device, &source, || {
            super::device_addresses(state, &device)
        })
        .is_ok();
    let logout_form = |prompt: &str| {
        let mut form = Input::new(TITLE, &format!("{base}&logout=true"))
            .item(InputItem::new("User ID", "userid", "A"))
            .item(InputItem::new("PIN", "pin", "NP"));
        form.base.prompt = Some(prompt.into());
        page(form)
    };

    // Logout asked for (the Yes softkey of the prompt, or the logout form).
    if get("logout").is_some() {
        if let Err(e) = &proxied {
            return text(&unavailable(e, false));
        }
        let principal = if from_phone {
            emapp_principal()
        } else {
            let (Some(user), Some(pin)) = (uid, pin) else {
                return logout_form("Enter the logged-in user's ID and PIN to log out");
            };
            // The same answer whether the PIN or the user is wrong: strangers learn nothing
            // of who is logged in. An EMCC login's PIN is the user's home's: checked there,
            // as at login.
            let checked =
                match crate::services::emcc::cross::check_logout_pin(state, &device, &user, &pin)
                    .await
                {
                    Some(r) => r,
                    None => check_pin(state, &user, &pin).await,
                };
            if let Err(code) = checked {
                return text(&pin_refusal(code, false));
            }
            if current.as_ref().map(|l| l.user.as_str()) != Some(user.as_str()) {
                tracing::info!(
                    device,
                    user,
                    "EMApp: logout refused: not the logged-in user"
                );
                return text("Please try to log out again (201)");
            }
            Principal {
                id: user,
                proxy: false,
                is_end_user: true,
            }
        };
        let outcome = em.logout(state, &principal, &device).await;
        return match outcome {
            Ok(()) => text("Logged out. The phone restarts with its own profile."),
            Err(e) => {
                tracing::info!(device, code = e.code, reason = %e.message, "EMApp logout refused");
                text(&unavailable(&e, false))
            }
        };
    }
    // A logged-in phone is asked whether to log out; others are not told who.
    if let Some(l) = current {
        if !from_phone {
            return logout_form("Somebody is logged in. Enter the user's ID and PIN to log out");
        }
        return page(
            Menu::new(TITLE)
                .prompt(&format!("{} is logged in. Log out?", l.user))
                .soft_key("Yes", &format!("{base}&logout=true"), 1)
                .soft_key("Exit", "SoftKey:Exit", 3),
        );
    }
    // The submitted form.
    if uid.is_none() && dn.is_none() && pin.is_none() {
        let id_item = if login_type == "DN" {
            InputItem::new("Primary Extension", "dn", "N")
        } else {
            InputItem::new("User ID", "userid", "A")
        };
        let mut form = Input::new(TITLE, &base)
            .item(id_item)
            .item(InputItem::new("PIN", "pin", "NP"));
        form.base.prompt = Some("Enter your credentials".into());
        return page(form);
    }
    let user = match (login_type.as_str(), uid, dn) {
        ("DN", _, Some(dn)) => {
            let owners: Vec<&str> = cluster
                .end_users
                .iter()
                .filter(|u| u.primary_extension.as_ref().is_some_and(|p| p.dn == dn))
                .map(|u| u.userid.as_str())
                .collect();
            match owners.as_slice() {
                [one] => one.to_string(),
                [] => return text("Please try to login again (201)"),
                _ => return text("Login is unavailable(216)"),
            }
        }
        (_, Some(u), _) => u,
        _ => return text("Login is unavailable(202)"),
    };
    let Some(pin) = pin else {
        return text("Login is unavailable(202)");
    };
    // Allow Proxy, then Validate IP Address on the request's source, before any PIN check.
    if let Err(e) = proxied.and_then(|()| em.check_ip(state, &device, &source)) {
        return text(&unavailable(&e, true));
    }
    // A user who is not at home here, at an EMCC phone: the PIN goes to the user's home
    // (found by EMCC), which checks it; a local copy of the user without the home-cluster flag
    // is not the user's home and its PIN is not asked.
    let away = cluster.end_user(&user).is_none_or(|u| !u.home_cluster)
        && cluster
            .section::<crate::services::emcc::model::Emcc>()
            .phones
            .contains(&device);
    if !away {
        if let Err(code) = check_pin(state, &user, &pin).await {
            return text(&pin_refusal(code, true));
        }
    }
    let pin_for_home = away.then_some(pin.as_str());
    match em
        .login_with_pin(
            state,
            &emapp_principal(),
            &device,
            &user,
            None,
            None,
            pin_for_home,
        )
        .await
    {
        Ok(()) => text(&format!(
            "Welcome, {user}. The phone restarts with your profile."
        )),
        Err(e) => {
            tracing::info!(device, user, code = e.code, reason = %e.message, "EMApp login refused");
            crate::net::counters::em_login_failed(e.code);
            if e.code == 201 {
                // The home refused the PIN: shown as a local wrong PIN is.
                return text(&pin_refusal(201, true));
            }
            text(&unavailable(&e, true))
        }
    }
}

/// This same page on the first node of the definition whose EM service is active (definition
/// order is the administrator's order of preference), with the phone's query unchanged.
fn em_node_url(cluster: &crate::cluster::Cluster, raw_query: Option<&str>) -> Option<String> {
    use crate::config::model::NodeService;
    let node = cluster
        .nodes
        .iter()
        .find(|n| n.runs(NodeService::ExtensionMobility))?;
    let port = node.ports.http.unwrap_or(crate::node::HTTP_PORT);
    let host = match node.address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => node.address.clone(),
    };
    let query = raw_query.map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("http://{host}:{port}/emapp/EMAppServlet{query}"))
}

/// How the phone shows a refused PIN: Cisco's 201 for a wrong PIN (or user), else the code.
fn pin_refusal(code: u32, login: bool) -> String {
    match (code, login) {
        (201, true) => "Please try to login again (201)".to_string(),
        (201, false) => "Please try to log out again (201)".to_string(),
        (c, true) => format!("Login is unavailable({c})"),
        (c, false) => format!("Logout is unavailable({c})"),
    }
}

/// Checks a user's PIN with the PIN lockout (`pin_lockout_threshold` failures in a row lock
/// the user out of EM for `auth_lockout_minutes`). Every failure reads as Cisco's 201; a busy
/// node (or a throttled source) is 26, a database failure 6.
pub(crate) async fn check_pin(state: &Arc<NodeState>, user: &str, pin: &str) -> Result<(), u32> {
    use crate::services::authenticate::{check_secret, Lockout, SecretCheck};
    let again = || 201;
    let cluster = state.cluster();
    // An unknown user (or one without a PIN) is checked against a dummy hash: the same time
    // and the same counting, so the answer does not tell which user IDs exist.
    let hash = cluster.end_user(user).and_then(|u| u.pin_hash.clone());
    let lockout = Lockout {
        threshold: cluster
            .section::<super::model::ExtensionMobilityParameters>()
            .pin_lockout_threshold,
        lock_secs: i64::from(
            cluster
                .section::<crate::services::phone_services::model::PhoneServicesParameters>()
                .auth_lockout_minutes,
        ) * 60,
    };
    drop(cluster);
    match check_secret(state, &format!("pin:{user}"), pin, hash.as_deref(), lockout).await {
        SecretCheck::Ok => Ok(()),
        SecretCheck::Locked => {
            tracing::info!(user, "EMApp: PIN locked out");
            Err(again())
        }
        SecretCheck::Wrong { locked_now: true } => {
            tracing::warn!(user, "EMApp: wrong PIN; locked out");
            Err(again())
        }
        SecretCheck::Wrong { locked_now: false } => {
            tracing::info!(user, "EMApp: wrong PIN");
            Err(again())
        }
        SecretCheck::Busy { .. } | SecretCheck::Throttled { .. } => Err(26),
        SecretCheck::Unavailable(_) => Err(6),
    }
}
