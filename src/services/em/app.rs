//! The phone-facing EM application (`/emapp/EMAppServlet?device=#DEVICENAME#`):
//! a phone with nobody logged in gets a CiscoIPPhoneInput asking for the
//! user ID (or primary extension, `loginType=DN`) and PIN; the submit comes back here, the PIN
//! is checked (with the PIN lockout), and the login goes through the EM service, which resets
//! the phone. A logged-in phone gets the "log out?" prompt instead. Errors are shown the way
//! Cisco phones show them: "Login is unavailable(N)".
//!
//! The exact page XML and parameter names of Cisco's EMApp are UNCONFIRMED (not in Cisco's public documents); the
//! parameters here are `device`, `loginType`, `userid`, `dn`, `pin` and `logout`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

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
    RawQuery(q): RawQuery,
) -> Response {
    // The form is read by the wire layer (fuzzed there): names in any case, first one wins.
    let form = crate::wire::codec::Form::parse(q.as_deref().unwrap_or("").as_bytes());
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
        // UNCONFIRMED how Cisco's EMApp words this; the phone shows why it cannot log in.
        return text(&format!(
            "Login is unavailable: Extension Mobility is not active on node {}",
            state.node.name
        ));
    };
    let base = format!(
        "{}/emapp/EMAppServlet?device={}&loginType={login_type}",
        state.http_base,
        crate::wire::codec::percent_encode(&device)
    );
    let current = cluster.mobility.login(&device);

    // Logout asked for (the Yes softkey of the prompt).
    if get("logout").is_some() {
        let outcome = em.logout(state, &emapp_principal(), &device).await;
        return match outcome {
            Ok(()) => text("Logged out. The phone restarts with its own profile."),
            Err(e) => {
                tracing::info!(device, code = e.code, reason = %e.message, "EMApp logout refused");
                text(&unavailable(&e, false))
            }
        };
    }
    // A logged-in phone is asked whether to log out.
    if let Some(l) = current {
        return page(
            Menu::new(TITLE)
                .prompt(&format!("{} is logged in. Log out?", l.user))
                .soft_key("Yes", &format!("{base}&logout=true"), 1)
                .soft_key("Exit", "SoftKey:Exit", 3),
        );
    }
    // The submitted form.
    let (uid, dn, pin) = (get("userid"), get("dn"), get("pin"));
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
    match check_pin(state, &user, &pin).await {
        Ok(()) => {}
        Err(msg) => return text(&msg),
    }
    // The phone's own address: Validate IP Address compares it with the device's.
    if let Err(e) = em.check_ip(state, &device, peer.ip()) {
        return text(&unavailable(&e, true));
    }
    match em
        .login(state, &emapp_principal(), &device, &user, None, None)
        .await
    {
        Ok(()) => text(&format!(
            "Welcome, {user}. The phone restarts with your profile."
        )),
        Err(e) => {
            tracing::info!(device, user, code = e.code, reason = %e.message, "EMApp login refused");
            text(&unavailable(&e, true))
        }
    }
}

/// Checks a user's PIN with the PIN lockout (`pin_lockout_threshold` failures in a row lock
/// the user out of EM for `auth_lockout_minutes`). Every failure reads as Cisco's 201.
async fn check_pin(state: &Arc<NodeState>, user: &str, pin: &str) -> Result<(), String> {
    use crate::services::authenticate::{check_secret, SecretCheck};
    let again = || "Please try to login again (201)".to_string();
    let cluster = state.cluster();
    let Some(hash) = cluster.end_user(user).and_then(|u| u.pin_hash.clone()) else {
        return Err(again());
    };
    let threshold = cluster
        .service_parameters
        .extension_mobility
        .pin_lockout_threshold;
    match check_secret(state, &format!("pin:{user}"), pin, &hash, threshold).await {
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
        SecretCheck::Unavailable(_) => Err("Login is unavailable(6)".to_string()),
    }
}
