//! The authentication URL (`/ccmcip/authenticate.jsp`): phones call it to check the HTTP Basic
//! credentials of every push to `/CGI/Execute` before running anything.
//!
//! Answers exactly `AUTHORIZED` (no newline) when the user's password is right and the device is
//! associated with the user (or the user may control every device), `UN-AUTHORIZED` otherwise,
//! and `ERROR` for a malformed request. Wrong passwords count towards a cluster-wide lockout
//! (service parameters `auth_lockout_threshold`, `auth_lockout_minutes`). Parameters `UserID`, `Password`, `devicename` come as
//! query parameters or a form body: Cisco's documents disagree, so both are accepted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::config::model::Role;
use crate::node::NodeState;
use crate::wire::codec::form_pairs;

/// The three answers a phone understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Authorized,
    Unauthorized,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Authorized => "AUTHORIZED",
            Verdict::Unauthorized => "UN-AUTHORIZED",
            Verdict::Error => "ERROR",
        }
    }
}

/// What checking a secret under the lockout policy found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCheck {
    Ok,
    /// Wrong; `locked_now` when this failure reached the threshold.
    Wrong {
        locked_now: bool,
    },
    /// Refused without a check: the credential is locked out.
    Locked,
    /// The lockout state could not be read: refuse (fail closed).
    Unavailable(String),
}

/// Checks `secret` against `hash`, counted under `credential` (`password:<user>`,
/// `pin:<user>`): refused unchecked while locked out; a wrong secret counts, and the
/// `threshold`-th in a row locks it for the cluster's `auth_lockout_minutes` on every node; a
/// right one clears the count. Successful checks are cached (argon2 is slow by design and runs
/// off the async workers). The one place the authentication URL, EM and WebDialer check
/// passwords and PINs.
pub async fn check_secret(
    state: &Arc<NodeState>,
    credential: &str,
    secret: &str,
    hash: &str,
    threshold: u32,
) -> SecretCheck {
    let now = crate::sip::registrar::unix_now();
    let prior = match state.store.credential_failures(credential).await {
        Ok(p) => p,
        Err(e) => return SecretCheck::Unavailable(e.to_string()),
    };
    if prior.is_some_and(|p| p.locked_until > now) {
        return SecretCheck::Locked;
    }
    let (st, c, s, h) = (
        state.clone(),
        credential.to_string(),
        secret.to_string(),
        hash.to_string(),
    );
    let ok = tokio::task::spawn_blocking(move || st.password_cache.verify(&c, &s, &h))
        .await
        .unwrap_or(false);
    if ok {
        if prior.is_some() {
            if let Err(e) = state.store.clear_credential_failures(credential).await {
                tracing::warn!(error = %e, credential, "clearing failed checks failed");
            }
        }
        return SecretCheck::Ok;
    }
    state.password_cache.forget(credential);
    let minutes = state
        .cluster()
        .service_parameters
        .phone_services
        .auth_lockout_minutes;
    match state
        .store
        .record_credential_failure(credential, now, threshold, i64::from(minutes) * 60)
        .await
    {
        Ok(f) => SecretCheck::Wrong {
            locked_now: f.locked_until > now,
        },
        Err(e) => {
            tracing::error!(error = %e, credential, "counting a failed check failed");
            SecretCheck::Wrong { locked_now: false }
        }
    }
}

/// A user's (end user's or application user's) password hash; `None`: no such user.
fn password_of(cluster: &crate::cluster::Cluster, user: &str) -> Option<Option<String>> {
    if let Some(u) = cluster.end_user(user) {
        Some(u.password_hash.clone())
    } else {
        cluster
            .application_user(user)
            .map(|a| a.password_hash.clone())
    }
}

/// Checks a user's password with the cluster's lockout policy.
pub async fn check_password(state: &Arc<NodeState>, user: &str, password: &str) -> SecretCheck {
    let cluster = state.cluster();
    let Some(Some(hash)) = password_of(&cluster, user) else {
        // Unknown users are not counted: no row per name an attacker tries.
        return SecretCheck::Wrong { locked_now: false };
    };
    let threshold = cluster
        .service_parameters
        .phone_services
        .auth_lockout_threshold;
    check_secret(
        state,
        &password_credential(user),
        password,
        &hash,
        threshold,
    )
    .await
}

/// Whether `user` may push to `device`: associated with it, or allowed to control every device.
pub fn may_push(cluster: &crate::cluster::Cluster, user: &str, device: &str) -> bool {
    if let Some(u) = cluster.end_user(user) {
        u.associated_devices.iter().any(|d| d == device)
            || u.roles.contains(&Role::CtiControlAllDevices)
    } else if let Some(a) = cluster.application_user(user) {
        a.associated_devices.iter().any(|d| d == device)
            || a.roles.contains(&Role::CtiControlAllDevices)
    } else {
        false
    }
}

/// Checks a user's password alone, with the lockout policy (a wrong one counts once).
pub async fn verify_user(state: &Arc<NodeState>, user: &str, password: &str) -> bool {
    check_password(state, user, password).await == SecretCheck::Ok
}

/// The cluster user named by a request's HTTP Basic credentials, checked under the lockout
/// policy; otherwise the 401 to answer, saying `needed` (who may ask).
pub async fn basic_user(
    state: &Arc<NodeState>,
    headers: &axum::http::HeaderMap,
    needed: &str,
) -> Result<String, Response> {
    let unauthorized = || {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"ucm\"")],
            format!("credentials of {needed} are needed\n"),
        )
            .into_response()
    };
    let Some((user, password)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::wire::codec::parse_basic_auth)
    else {
        return Err(unauthorized());
    };
    if !verify_user(state, &user, &password).await {
        tracing::info!(user, "HTTP Basic credentials refused");
        return Err(unauthorized());
    }
    Ok(user)
}

/// The key under which a user's password failures are counted.
pub fn password_credential(user: &str) -> String {
    format!("password:{user}")
}

/// The authentication URL's answer: the password under the lockout policy (a locked-out
/// user is refused without a check), then whether the user may push to the device.
pub async fn check_with_lockout(
    state: &Arc<NodeState>,
    user: &str,
    password: &str,
    device: &str,
) -> Verdict {
    if state.cluster().device(device).is_none() {
        return Verdict::Unauthorized;
    }
    // The paging service's own secret for its user (validation makes sure that user may
    // control every device); anything else goes through the password and its lockout.
    if state.cluster().paging.user.as_deref() == Some(user)
        && state.is_service_secret(user, password).await
    {
        return Verdict::Authorized;
    }
    match check_password(state, user, password).await {
        SecretCheck::Ok if may_push(&state.cluster(), user, device) => Verdict::Authorized,
        SecretCheck::Ok => Verdict::Unauthorized,
        SecretCheck::Locked => {
            tracing::info!(user, device, "authentication URL: user is locked out");
            Verdict::Unauthorized
        }
        SecretCheck::Wrong { locked_now: true } => {
            tracing::warn!(
                user,
                device,
                "authentication URL: wrong password; user locked out"
            );
            Verdict::Unauthorized
        }
        SecretCheck::Wrong { locked_now: false } => {
            tracing::info!(
                user,
                device,
                "authentication URL: wrong password or unknown user"
            );
            Verdict::Unauthorized
        }
        SecretCheck::Unavailable(e) => {
            tracing::error!(error = %e, "authentication URL: reading lockout state failed");
            Verdict::Error
        }
    }
}

fn param<'a>(m: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    // Phones and applications differ in case (`devicename`, `DeviceName`).
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub async fn handler(
    State(state): State<Arc<NodeState>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut params = query;
    for (k, v) in form_pairs(&body) {
        params.entry(k).or_insert(v);
    }
    let verdict = match (
        param(&params, "UserID"),
        param(&params, "Password"),
        param(&params, "devicename"),
    ) {
        (Some(u), Some(p), Some(d)) if !u.is_empty() && !d.is_empty() => {
            check_with_lockout(&state, u, p, d).await
        }
        _ => Verdict::Error,
    };
    tracing::debug!(verdict = verdict.as_str(), "authentication URL");
    ([(header::CONTENT_TYPE, "text/html")], verdict.as_str()).into_response()
}
