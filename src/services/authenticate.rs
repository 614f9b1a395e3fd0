//! The authentication URL (`/ccmcip/authenticate.jsp`): phones call it to check the HTTP Basic
//! credentials of every push to `/CGI/Execute` before running anything.
//!
//! Answers exactly `AUTHORIZED` (no newline) when the user's password is right and the device is
//! associated with the user (or the user may control every device), `UN-AUTHORIZED` otherwise,
//! and `ERROR` for a malformed request. Wrong passwords count towards a cluster-wide lockout
//! (service parameters `auth_lockout_threshold`, `auth_lockout_minutes`). Parameters `UserID`, `Password`, `devicename` come as
//! query parameters or a form body: sources disagree, so both are accepted (spec section 2.2).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::config::model::Role;
use crate::server::NodeState;

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

/// What checking a user's credentials for a device found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Authorized,
    /// The user exists but the password is wrong: counts towards lockout.
    BadPassword,
    /// Unknown user or device, or the device is not the user's.
    NotAllowed,
}

/// Checks `user`'s `password` and whether the user may push to `device`. Slow (argon2): call
/// it off the async workers.
pub fn check(state: &NodeState, user: &str, password: &str, device: &str) -> Outcome {
    let cluster = state.cluster();
    if cluster.device(device).is_none() {
        return Outcome::NotAllowed;
    }
    let (hash, allowed) = if let Some(u) = cluster.end_user(user) {
        (
            u.password_hash.clone(),
            u.associated_devices.iter().any(|d| d == device)
                || u.roles.contains(&Role::CtiControlAllDevices),
        )
    } else if let Some(a) = cluster.application_user(user) {
        (
            a.password_hash.clone(),
            a.associated_devices.iter().any(|d| d == device)
                || a.roles.contains(&Role::CtiControlAllDevices),
        )
    } else {
        return Outcome::NotAllowed;
    };
    match hash {
        Some(h) if state.password_cache.verify(user, password, &h) => {
            if allowed {
                Outcome::Authorized
            } else {
                Outcome::NotAllowed
            }
        }
        Some(_) => Outcome::BadPassword,
        None => Outcome::NotAllowed,
    }
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
    let cluster = state.cluster();
    let hash = cluster
        .end_user(user)
        .and_then(|u| u.password_hash.clone())
        .or_else(|| {
            cluster
                .application_user(user)
                .and_then(|a| a.password_hash.clone())
        });
    let Some(hash) = hash else {
        return false;
    };
    let credential = password_credential(user);
    let now = crate::sip::registrar::unix_now();
    let prior = match state.store.credential_failures(&credential).await {
        Ok(p) => p,
        Err(_) => return false,
    };
    if prior.is_some_and(|p| p.locked_until > now) {
        return false;
    }
    let (st, u, p) = (state.clone(), user.to_string(), password.to_string());
    let ok = tokio::task::spawn_blocking(move || st.password_cache.verify(&u, &p, &hash))
        .await
        .unwrap_or(false);
    if ok {
        if prior.is_some() {
            let _ = state.store.clear_credential_failures(&credential).await;
        }
        return true;
    }
    state.password_cache.forget(user);
    let policy = cluster.service_parameters.phone_services.clone();
    let _ = state
        .store
        .record_credential_failure(
            &credential,
            now,
            policy.auth_lockout_threshold,
            i64::from(policy.auth_lockout_minutes) * 60,
        )
        .await;
    false
}

/// The key under which a user's password failures are counted.
pub fn password_credential(user: &str) -> String {
    format!("password:{user}")
}

/// Checks credentials with the cluster's lockout policy: a locked-out user is refused without
/// a password check; a wrong password counts, and the threshold-th in a row locks the user out
/// for the configured minutes on every node (the count lives in the database).
pub async fn check_with_lockout(
    state: &Arc<NodeState>,
    user: &str,
    password: &str,
    device: &str,
) -> Verdict {
    let credential = password_credential(user);
    let now = crate::sip::registrar::unix_now();
    let prior = match state.store.credential_failures(&credential).await {
        Ok(p) => p,
        Err(e) => {
            // Fail closed: without the lockout state we cannot tell a locked user.
            tracing::error!(error = %e, "authentication URL: reading lockout state failed");
            return Verdict::Error;
        }
    };
    if prior.is_some_and(|p| p.locked_until > now) {
        tracing::info!(user, device, "authentication URL: user is locked out");
        return Verdict::Unauthorized;
    }
    let (st, u, p, d) = (
        state.clone(),
        user.to_string(),
        password.to_string(),
        device.to_string(),
    );
    // argon2 is deliberately slow: keep it off the async workers.
    let outcome = match tokio::task::spawn_blocking(move || check(&st, &u, &p, &d)).await {
        Ok(o) => o,
        Err(_) => return Verdict::Error,
    };
    match outcome {
        Outcome::Authorized => {
            if prior.is_some() {
                if let Err(e) = state.store.clear_credential_failures(&credential).await {
                    tracing::warn!(error = %e, "authentication URL: clearing failures failed");
                }
            }
            Verdict::Authorized
        }
        Outcome::NotAllowed => Verdict::Unauthorized,
        Outcome::BadPassword => {
            state.password_cache.forget(user);
            let policy = state.cluster().service_parameters.phone_services.clone();
            let lock_secs = i64::from(policy.auth_lockout_minutes) * 60;
            match state
                .store
                .record_credential_failure(
                    &credential,
                    now,
                    policy.auth_lockout_threshold,
                    lock_secs,
                )
                .await
            {
                Ok(f) if f.locked_until > now => {
                    tracing::warn!(
                        user,
                        device,
                        "authentication URL: wrong password; user locked out"
                    );
                }
                Ok(f) => {
                    tracing::info!(
                        user,
                        device,
                        failures = f.failures,
                        "authentication URL: wrong password"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "authentication URL: counting a failure failed")
                }
            }
            Verdict::Unauthorized
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
    for (k, v) in url_decode_pairs(&body) {
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

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn url_decode_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |&b| b == b'=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Percent-decoding with `+` as space; invalid escapes are kept as they are.
pub fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let p =
            url_decode_pairs(b"UserID=jsmith&Password=a%26b+c&devicename=SEP00036BC7B973&x=%zz");
        assert_eq!(p[0], ("UserID".into(), "jsmith".into()));
        assert_eq!(p[1], ("Password".into(), "a&b c".into()));
        assert_eq!(p[3], ("x".into(), "%zz".into()));
        assert_eq!(percent_decode(b"%4"), "%4");
        assert_eq!(percent_decode(b"%41"), "A");
    }
}
