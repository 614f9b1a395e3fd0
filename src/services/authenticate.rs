//! The authentication URL (`/ccmcip/authenticate.jsp`): phones call it to check the HTTP Basic
//! credentials of every push to `/CGI/Execute` before running anything.
//!
//! Answers exactly `AUTHORIZED` (no newline) when the user's password is right and the device is
//! associated with the user (or the user may control every device), `UN-AUTHORIZED` otherwise,
//! and `ERROR` for a malformed request. Wrong passwords count towards a cluster-wide lockout
//! (service parameters `auth_lockout_threshold`, `auth_lockout_minutes`). Parameters `UserID`, `Password`, `devicename` come as
//! query parameters or a form body: Cisco's documents disagree, so both are accepted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::config::model::Role;
use crate::node::NodeState;
use crate::services::phone_services::store::Lockouts;
use crate::wire::codec::form_pairs;

/// The three answers a phone understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Authorized,
    Unauthorized,
    Error,
    /// Refused unchecked: every verification slot is taken (503, Retry-After seconds).
    Busy(u64),
    /// Refused unchecked: this source failed too often lately for this user (answered as
    /// UN-AUTHORIZED; the seconds to wait are logged).
    Throttled(u64),
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Authorized => "AUTHORIZED",
            Verdict::Unauthorized | Verdict::Busy(_) | Verdict::Throttled(_) => "UN-AUTHORIZED",
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
    /// Refused without a check: every verification slot is taken; try again after
    /// `retry_after` seconds (the protocol's busy answer).
    Busy {
        retry_after: u64,
    },
    /// Refused without a check: this source failed too often lately and must wait
    /// `retry_after` seconds (per-source throttle with backoff).
    Throttled {
        retry_after: u64,
    },
    /// The lockout state could not be read: refuse (fail closed).
    Unavailable(String),
}

/// How a credential is locked out: `threshold` failed checks in a row (0: never) lock it for
/// `lock_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub threshold: u32,
    pub lock_secs: i64,
}

/// Longest user ID kept in a lockout record's key (Cisco's user IDs are at most 128
/// characters); a longer name cannot be a user and is counted under its first 128.
pub const MAX_COUNTED_USERID: usize = 128;

/// How often one node forgets stale failure records (unlocked and older than the lockout
/// window).
const PRUNE_INTERVAL_SECS: i64 = 60;

tokio::task_local! {
    /// The source address of the HTTP request being served (set by [`scope_source`]).
    static REQUEST_SOURCE: IpAddr;
}

/// The source address of the request being served; the unspecified address outside one.
pub fn request_source() -> IpAddr {
    REQUEST_SOURCE
        .try_with(|ip| *ip)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Runs `f` (a secret check outside HTTP: the Assistant and Attendant consoles' logins) with `source` as
/// [`request_source`], so it is throttled and remembered per source like a request.
pub async fn with_source<F: std::future::Future>(source: IpAddr, f: F) -> F::Output {
    REQUEST_SOURCE.scope(source, f).await
}

/// Middleware: runs the request with its TCP peer's address as [`request_source`], so that
/// every secret check (authentication URL, EM, WebDialer, HTTP Basic) is throttled and its
/// failures remembered per source.
pub async fn scope_source(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match peer {
        Some(ip) => REQUEST_SOURCE.scope(ip, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// Checks `secret` against `hash` (`None`: no such user, or one without a secret: checked
/// against a dummy hash so the answer takes as long, and never right), counted under
/// `credential` (`password:<user>`, `pin:<user>`). In order, cheapest first:
/// - a recent success with this secret (cache) is right without argon2, unless locked out;
/// - the throttle of this source for this account (backoff after
///   [`crate::auth::SOURCE_FREE_FAILURES`] failures);
/// - the same wrong secret again from the same source is wrong without argon2 (still
///   counted);
/// - a verification slot ([`crate::auth::VerifyGate`]: one per core, a short queue);
/// - the check is reserved in the database before it runs (counted as a failure until it
///   succeeds; the `threshold`-th locks the credential cluster-wide), so parallel guesses
///   get at most `threshold` checks per window;
/// - argon2, off the async workers.
///
/// The one place the authentication URL, EM, the EM application and WebDialer check
/// passwords and PINs.
pub async fn check_secret(
    state: &Arc<NodeState>,
    credential: &str,
    secret: &str,
    hash: Option<&str>,
    lockout: Lockout,
) -> SecretCheck {
    let credential: String = credential
        .chars()
        .take(MAX_COUNTED_USERID + "password:".len())
        .collect();
    let credential = credential.as_str();
    let source = request_source();
    let guards = &state.secret_guards;
    let known = hash.is_some();
    let hash = hash.unwrap_or(crate::auth::dummy_hash());
    let now = crate::sip::registrar::unix_now();
    let locking = lockout.threshold > 0;

    if known && state.password_cache.hit(credential, secret, hash) {
        if locking {
            match state.store.credential_failures(credential).await {
                Ok(Some(f)) if f.locked_until > now => return SecretCheck::Locked,
                Ok(_) => {}
                Err(e) => return SecretCheck::Unavailable(e.to_string()),
            }
        }
        return SecretCheck::Ok;
    }
    // Outside an HTTP request (no source) nothing is throttled: one shared bucket would let
    // anyone slow down everyone.
    let throttled = if source.is_unspecified() {
        Ok(())
    } else {
        guards.sources.reserve(source, credential, Instant::now())
    };
    if let Err(wait) = throttled {
        return SecretCheck::Throttled {
            retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        };
    }
    // The same wrong secret again from the same source: counted like any other failure, but
    // answered without another argon2 verification (and without a slot).
    let repeated = guards
        .failures
        .seen(source, credential, secret, hash, Instant::now());
    let slot = if repeated {
        None
    } else {
        match guards.gate.acquire().await {
            Some(slot) => Some(slot),
            None => {
                guards.sources.release(source, credential);
                return SecretCheck::Busy {
                    retry_after: crate::auth::VERIFY_QUEUE_WAIT.as_secs().max(1),
                };
            }
        }
    };
    let mut locked_now = false;
    if locking {
        prune_now_and_then(state, now, lockout.lock_secs).await;
        match state
            .store
            .reserve_credential_check(credential, now, lockout.threshold, lockout.lock_secs)
            .await
        {
            Ok(Some(f)) => locked_now = f.locked_until > now,
            Ok(None) => return SecretCheck::Locked,
            Err(e) => {
                guards.sources.release(source, credential);
                return SecretCheck::Unavailable(e.to_string());
            }
        }
    }
    let Some(slot) = slot else {
        // A repeated wrong secret: counted above, no verification.
        return SecretCheck::Wrong { locked_now };
    };
    let right = slot.verify(secret, hash).await && known;
    drop(slot);
    if right {
        if locking {
            if let Err(e) = state.store.clear_credential_failures(credential).await {
                tracing::warn!(error = %e, credential, "clearing failed checks failed");
            }
        }
        guards.sources.succeeded(source, credential);
        state.password_cache.insert(credential, secret, hash);
        return SecretCheck::Ok;
    }
    state.password_cache.forget(credential);
    guards
        .failures
        .remember(source, credential, secret, hash, Instant::now());
    SecretCheck::Wrong { locked_now }
}

/// Forgets stale failure records at most once a minute per node: unlocked ones older than the
/// lockout window, so failures count within a window and tried names leave no lasting rows.
async fn prune_now_and_then(state: &Arc<NodeState>, now: i64, lock_secs: i64) {
    use std::sync::atomic::Ordering;
    let last = &state.secret_guards.last_prune;
    let prev = last.load(Ordering::Acquire);
    if now - prev < PRUNE_INTERVAL_SECS
        || last
            .compare_exchange(prev, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return;
    }
    if let Err(e) = state
        .store
        .prune_credential_failures(now, now - lock_secs.max(PRUNE_INTERVAL_SECS))
        .await
    {
        tracing::warn!(error = %e, "forgetting stale failed checks failed");
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

/// The lockout that applies to `user`'s password: the cluster's policy, except for
/// application users when `lockout_exempt_application_users` is on (they are then guarded by
/// the per-source throttle alone, so strangers cannot lock out the cluster's own
/// applications, such as the EM proxy user).
pub fn password_lockout(cluster: &crate::cluster::Cluster, user: &str) -> Lockout {
    let p = &cluster.section::<super::phone_services::model::PhoneServicesParameters>();
    let app_user = cluster.end_user(user).is_none() && cluster.application_user(user).is_some();
    Lockout {
        threshold: if app_user && p.lockout_exempt_application_users {
            0
        } else {
            p.auth_lockout_threshold
        },
        lock_secs: i64::from(p.auth_lockout_minutes) * 60,
    }
}

/// Checks a user's password with the cluster's lockout policy. Unknown users take the same
/// path (a dummy hash, counted like a user) so neither the time nor the lockout behaviour of
/// the answer tells whether the user exists.
pub async fn check_password(state: &Arc<NodeState>, user: &str, password: &str) -> SecretCheck {
    let cluster = state.cluster();
    let hash = password_of(&cluster, user).flatten();
    let lockout = password_lockout(&cluster, user);
    drop(cluster);
    check_secret(
        state,
        &password_credential(user),
        password,
        hash.as_deref(),
        lockout,
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
    match check_password(state, &user, &password).await {
        SecretCheck::Ok => Ok(user),
        SecretCheck::Busy { retry_after } => Err(busy_response(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            "busy checking credentials; try again later\n",
        )),
        SecretCheck::Throttled { retry_after } => Err(busy_response(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            "too many failed checks from this address; try again later\n",
        )),
        _ => {
            tracing::info!(user, "HTTP Basic credentials refused");
            Err(unauthorized())
        }
    }
}

/// A refusal that says when to come back (`Retry-After`, RFC 9110 section 10.2.3): 503 when
/// the node is busy, 429 (RFC 6585 section 4) when this source must slow down.
pub fn busy_response(status: axum::http::StatusCode, retry_after: u64, body: &str) -> Response {
    (
        status,
        [
            (header::RETRY_AFTER, retry_after.to_string()),
            (header::CONTENT_TYPE, "text/plain".to_string()),
        ],
        body.to_string(),
    )
        .into_response()
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
    if state
        .cluster()
        .section::<super::paging::model::Paging>()
        .user
        .as_deref()
        == Some(user)
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
        SecretCheck::Busy { retry_after } => {
            tracing::info!(user, device, "authentication URL: busy; refused unchecked");
            Verdict::Busy(retry_after)
        }
        SecretCheck::Throttled { retry_after } => {
            tracing::info!(
                user,
                device,
                retry_after,
                "authentication URL: source throttled"
            );
            Verdict::Throttled(retry_after)
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
    // A phone reads only the body, so a busy refusal still says UN-AUTHORIZED, with 503 and
    // Retry-After (RFC 9110 section 15.6.4) for clients that read the status. A throttled
    // source gets the plain refusal a phone expects (to a guesser it looks like any failure).
    match verdict {
        Verdict::Busy(s) => busy_response(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            s,
            verdict.as_str(),
        ),
        _ => ([(header::CONTENT_TYPE, "text/html")], verdict.as_str()).into_response(),
    }
}
