//! Extension Mobility: the EM service
//! API at `/emservice/EMServiceServlet`, with Cisco's requests, queries and error codes.
//!
//! A login applies a user's device profile to a device: its lines, speed dials, services and
//! locale replace the device's own (see [`crate::cluster::Mobility`]), the configuration file
//! follows, and the phone is told to fetch it again. Logins live in the database (one
//! transaction each, so a crash leaves a device logged in or not, never half) and so do their
//! automatic logout times, which a timer task honours, also after a restart.
//!
//! Policy, in the order Cisco's service applies it: Maximum Concurrent Requests (26), the
//! caller's credentials (3) and proxy rights (10), Allow Proxy (30), Validate IP Address with the
//! Trusted List of IPs (28), then the device (11, 22), the user (23), the profile (12), the
//! duration (7), the device's current login (18) and Multiple Login Behavior (25, or logging the
//! other device out). The decisions are in [`policy`] and the automatic logouts' schedule in
//! [`timers`], both without I/O or clock; this module reads the clock, the database and the
//! registrar and carries them out. The last two are decided inside the login's transaction on
//! what the database holds (never on this node's memory, which may lag other nodes), and every
//! committed change reaches the running cluster through [`feed::EmNode::apply_login_change`],
//! on every node ([`feed`]). Its storage is [`store`].

pub mod app;
pub mod check;
pub mod feed;
pub mod model;
pub mod policy;
pub mod store;
pub mod timers;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::cluster::Login;
use crate::config::model::{NodeService, Role};
use crate::node::NodeState;
use crate::sip::registrar::unix_now;
use crate::wire::em::{
    self as api, AppInfo, Certificate, DeviceUser, Duration, EmError, Envelope, Request,
};
use feed::EmNode;
use policy::{CurrentLogins, LoginRequest};
use store::{EmChange, EmCurrent, EmLoginRow, EmLoginWrite, EmStore, EmWrite};
use timers::LogoutTimers;

/// Who is calling the API, once their credentials checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    /// Standard EM Authentication Proxy Rights: may act for any user.
    pub proxy: bool,
    pub is_end_user: bool,
}

impl Principal {
    fn may_act_for(&self, user: &str) -> bool {
        self.proxy || (self.is_end_user && self.id == user)
    }
}

/// What the HTTP layer knows of the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The source address and the proxy headers (Validate IP Address checks these, not what
    /// the body claims).
    pub source: policy::Source,
}

/// The EM service of one node.
pub struct EmService {
    pub node: Arc<NodeState>,
    inflight: AtomicUsize,
    /// Automatic logouts (unix seconds).
    timers: Mutex<LogoutTimers>,
    wake: tokio::sync::Notify,
}

/// Decrements the in-flight count when a request ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EmService {
    pub fn new(node: Arc<NodeState>) -> EmService {
        EmService {
            node,
            inflight: AtomicUsize::new(0),
            timers: Mutex::new(LogoutTimers::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn timers(&self) -> std::sync::MutexGuard<'_, LogoutTimers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms the device's automatic logout (`None`: its login has none).
    fn schedule(&self, at: Option<i64>, device: &str) {
        let changed = match at {
            Some(at) => self.timers().schedule(at, device),
            None => self.timers().cancel(device),
        };
        if changed {
            self.wake.notify_one();
        }
    }

    /// Arms the automatic logouts of every login the node knows (its own and, through the
    /// node's login sync, other nodes'); scheduling one twice is harmless.
    fn arm_known_logouts(&self) {
        let logins = self.node.cluster().mobility.all();
        let mut t = self.timers();
        let mut changed = false;
        for l in logins {
            if let Some(at) = l.logout_at {
                changed |= t.schedule(at, &l.device);
            }
        }
        if changed {
            self.wake.notify_one();
        }
    }

    /// Answers one API call: the response document (HTTP 200 in every case, as Cisco's).
    pub async fn handle(&self, state: &Arc<NodeState>, xml: &str, caller: Caller) -> String {
        let max = state
            .cluster()
            .section::<model::ExtensionMobilityParameters>()
            .max_concurrent_requests as usize;
        let n = self.inflight.fetch_add(1, Ordering::AcqRel);
        let _slot = Slot(&self.inflight);
        if max > 0 && n >= max {
            return api::failure(&EmError::new(
                26,
                format!("Busy, please try again ({max} requests already in progress)"),
            ));
        }
        let outcome = match api::parse(xml) {
            Ok(env) => self.execute(state, env, caller).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(body) => body,
            Err(e) => {
                tracing::info!(code = e.code, reason = %e.message, "EM request refused");
                api::failure(&e)
            }
        }
    }

    async fn execute(
        &self,
        state: &Arc<NodeState>,
        env: Envelope,
        caller: Caller,
    ) -> Result<String, EmError> {
        let principal = self.authenticate(state, &env.app).await?;
        let params = state
            .cluster()
            .section::<model::ExtensionMobilityParameters>()
            .clone();
        let origin = env.request.origin().clone();
        policy::check_proxy(
            &params,
            caller.source.via_hops > 0 || origin.via_header_set,
            env.request.kind(),
        )?;
        // `remoteIPAddr` is believed only from a trusted proxy (see `policy::source_allowed`).
        let remote = policy::Source {
            claimed: origin
                .remote_ip
                .as_deref()
                .and_then(|s| s.trim().parse::<IpAddr>().ok()),
            ..caller.source
        };
        match env.request {
            Request::Login {
                device,
                user,
                profile,
                duration,
                ..
            } => {
                self.check_ip(state, &device, &remote)?;
                self.login(
                    state,
                    &principal,
                    &device,
                    &user,
                    profile.as_deref(),
                    duration,
                )
                .await
                .inspect_err(|e| crate::net::counters::em_login_failed(e.code))?;
                Ok(api::success())
            }
            Request::Logout { device, .. } => {
                self.check_ip(state, &device, &remote)?;
                self.logout(state, &principal, &device).await?;
                Ok(api::success())
            }
            Request::LogoutAll { .. } => {
                if !principal.proxy {
                    return Err(EmError::new(
                        10,
                        format!("{} lacks EM proxy rights for logoutAll", principal.id),
                    ));
                }
                // Every login the database holds, whichever node made it.
                let logins = state
                    .store
                    .em_logins()
                    .await
                    .map_err(|e| EmError::new(6, format!("database: {e}")))?;
                for l in logins {
                    self.end_login(state, &l.device, None).await?;
                }
                Ok(api::success())
            }
            Request::DeviceUserQuery { devices, .. } => {
                let cluster = state.cluster();
                let mut out = Vec::with_capacity(devices.len());
                for d in devices {
                    let entry = if cluster.device(&d).is_none() {
                        DeviceUser::DoesNotExist
                    } else if let Some(l) = cluster.mobility.login(&d) {
                        if !principal.may_act_for(&l.user) {
                            return Err(EmError::new(
                                10,
                                format!("{} may not query other users' logins", principal.id),
                            ));
                        }
                        DeviceUser::LoggedIn(l.user)
                    } else {
                        let last = state
                            .store
                            .em_last_user(&d)
                            .await
                            .map_err(|e| EmError::new(6, format!("database: {e}")))?;
                        DeviceUser::None { last }
                    };
                    out.push((d, entry));
                }
                Ok(api::device_user_results(&out))
            }
            Request::UserDevicesQuery { users, .. } => {
                let cluster = state.cluster();
                let mut out = Vec::with_capacity(users.len());
                for u in users {
                    self.may_query(&principal, &u)?;
                    let devices = cluster.end_user(&u).map(|_| {
                        let mut d = cluster.mobility.devices_of(&u);
                        d.sort();
                        d
                    });
                    out.push((u, devices));
                }
                Ok(api::user_devices_results(&out))
            }
            Request::CheckUser { users, .. } => {
                let cluster = state.cluster();
                let mut out = Vec::with_capacity(users.len());
                for u in users {
                    self.may_query(&principal, &u)?;
                    out.push((u.clone(), cluster.end_user(&u).is_some()));
                }
                Ok(api::check_user_results(&out))
            }
            Request::DeviceProfileQuery { users, .. } => {
                let cluster = state.cluster();
                let mut out = Vec::with_capacity(users.len());
                for u in users {
                    self.may_query(&principal, &u)?;
                    let profiles = cluster.end_user(&u).map(|eu| {
                        let default = eu
                            .default_profile
                            .clone()
                            .or_else(|| eu.device_profiles.first().cloned());
                        eu.device_profiles
                            .iter()
                            .map(|p| (p.clone(), Some(p) == default.as_ref()))
                            .collect()
                    });
                    out.push((u, profiles));
                }
                Ok(api::device_profile_results(&out))
            }
        }
    }

    fn may_query(&self, principal: &Principal, user: &str) -> Result<(), EmError> {
        if principal.may_act_for(user) {
            Ok(())
        } else {
            Err(EmError::new(
                10,
                format!("{} lacks EM proxy rights to ask about {user}", principal.id),
            ))
        }
    }

    /// Checks `appInfo`: an end user or application user with the right password (3), not
    /// locked out by the credential policy.
    pub async fn authenticate(
        &self,
        state: &Arc<NodeState>,
        app: &AppInfo,
    ) -> Result<Principal, EmError> {
        let refused = || EmError::new(3, format!("Could not authenticate '{}'", app.app_id));
        let Certificate::Plain(password) = &app.certificate else {
            // Cisco's encrypted certificate is for its internal EMApp user only.
            return Err(refused());
        };
        let cluster = state.cluster();
        let principal = if let Some(u) = cluster.end_user(&app.app_id) {
            Principal {
                id: u.userid.clone(),
                proxy: u.roles.contains(&Role::EmProxy),
                is_end_user: true,
            }
        } else if let Some(a) = cluster.application_user(&app.app_id) {
            Principal {
                id: a.userid.clone(),
                proxy: a.roles.contains(&Role::EmProxy),
                is_end_user: false,
            }
        } else {
            // Checked all the same (a dummy hash, counted like a user): the answer's time and
            // lockout do not tell which user IDs exist.
            use crate::services::authenticate::{check_password, SecretCheck};
            return Err(match check_password(state, &app.app_id, password).await {
                SecretCheck::Busy { retry_after } | SecretCheck::Throttled { retry_after } => {
                    EmError::new(26, format!("Busy, please try again in {retry_after} s"))
                }
                _ => refused(),
            });
        };
        use crate::services::authenticate::{check_password, SecretCheck};
        match check_password(state, &principal.id, password).await {
            SecretCheck::Ok => Ok(principal),
            SecretCheck::Locked => Err(EmError::new(3, format!("'{}' is locked out", app.app_id))),
            SecretCheck::Wrong { .. } => Err(refused()),
            SecretCheck::Busy { retry_after } | SecretCheck::Throttled { retry_after } => Err(
                EmError::new(26, format!("Busy, please try again in {retry_after} s")),
            ),
            SecretCheck::Unavailable(e) => Err(EmError::new(6, format!("database: {e}"))),
        }
    }

    /// Validate IP Address: the request must come from the device itself or a trusted address.
    fn check_ip(
        &self,
        state: &NodeState,
        device: &str,
        source: &policy::Source,
    ) -> Result<(), EmError> {
        let cluster = state.cluster();
        policy::check_ip(
            &cluster.section::<model::ExtensionMobilityParameters>(),
            device,
            source,
            || device_addresses(state, device),
        )
    }

    /// Logs `user` in on `device`. The refusals that need no database come first; the
    /// device's current login (18) and Multiple Login Behavior (25, or logging the user's
    /// other devices out) are decided inside the login's transaction, on what is stored.
    pub async fn login(
        &self,
        state: &Arc<NodeState>,
        principal: &Principal,
        device: &str,
        user: &str,
        profile: Option<&str>,
        duration: Option<Duration>,
    ) -> Result<(), EmError> {
        self.login_with_pin(state, principal, device, user, profile, duration, None)
            .await
    }

    /// [`EmService::login`] with the PIN the user typed at the phone, for a user who is not
    /// at home here: handed to the user's home through EMCC, which checks it. (A user at home
    /// here had the PIN checked by the EM application already.)
    #[allow(clippy::too_many_arguments)]
    pub async fn login_with_pin(
        &self,
        state: &Arc<NodeState>,
        principal: &Principal,
        device: &str,
        user: &str,
        profile: Option<&str>,
        duration: Option<Duration>,
        pin: Option<&str>,
    ) -> Result<(), EmError> {
        database_reachable(state)?;
        let cluster = state.cluster();
        let req = LoginRequest {
            device,
            user,
            profile,
            duration,
        };
        let now = unix_now();
        let planned = policy::plan_login(&cluster, &NoLogins, principal, &req, now);
        // A user who is not at home here (unknown, or a local copy without the home-cluster
        // flag) at an EMCC phone: Extension Mobility Cross Cluster looks for the user's home.
        let away = cluster.end_user(user).is_none_or(|u| !u.home_cluster);
        if away && matches!(&planned, Ok(_) | Err(EmError { code: 12 | 23, .. })) {
            let params = cluster.section::<model::ExtensionMobilityParameters>();
            let logout_in = policy::login_seconds(&params, duration)?;
            // The device's own login first (cheap; the transaction below decides).
            if let Some(l) = cluster.mobility.login(device) {
                return Err(EmError::new(
                    18,
                    format!("{} is logged in on {device}", l.user),
                ));
            }
            match super::emcc::visiting_login(state, device, user, profile, pin).await {
                None => {}
                Some(Err(e)) => return Err(e),
                Some(Ok(granted)) => {
                    return self
                        .emcc_logged_in(state, device, user, granted, logout_in.map(|s| now + s))
                        .await
                }
            }
        }
        planned?;
        let node = &state.node.name;
        let written = state
            .store
            .em_login(device, user, |current| {
                let plan =
                    policy::plan_login(&cluster, &Stored::new(current), principal, &req, now)?;
                Ok(EmLoginWrite {
                    row: plan.row(node),
                    also_logout: plan.also_logout,
                })
            })
            .await;
        let changes = match written {
            Ok(changes) => changes,
            Err(EmWrite::Refused(e)) => return Err(e),
            Err(EmWrite::Store(e)) => return Err(EmError::new(6, format!("database: {e}"))),
        };
        for c in &changes {
            // Whoever applies a change first on this node resets the phone: this request, or
            // the change feed's hook when it heard the commit first (so the phone is told once).
            let applied = state.apply_login_change(c);
            match &c.login {
                None => {
                    self.schedule(None, &c.device);
                    tracing::info!(
                        device = c.device,
                        user,
                        "EM: logged out automatically (multiple login)"
                    );
                }
                Some(row) => {
                    self.schedule(row.logout_at, &c.device);
                    tracing::info!(device, user, profile = %row.profile, logout_at = ?row.logout_at, "EM login");
                    crate::net::counters::count(crate::net::counters::EM_LOGINS, &[]);
                }
            }
            if applied {
                reset_phone(state, &c.device);
            }
        }
        Ok(())
    }

    /// Records an EMCC login the user's home took (see [`super::emcc::cross`]) as the
    /// device's EM login here (so queries, logout and the automatic logout treat it as any
    /// other), then resets the phone: it fetches the small configuration that sends it to the
    /// home. The profile is recorded as `<home>:<profile>`, which names no profile here, so
    /// the device's own lines stay in this cluster's routing.
    async fn emcc_logged_in(
        &self,
        state: &Arc<NodeState>,
        device: &str,
        user: &str,
        granted: super::emcc::cross::Granted,
        logout_at: Option<i64>,
    ) -> Result<(), EmError> {
        let row = EmLoginRow {
            device: device.to_string(),
            userid: user.to_string(),
            profile: format!("{}:{}", granted.home, granted.redirect.profile),
            logged_in_at: unix_now(),
            logout_at,
            node: state.node.name.clone(),
        };
        let written = state
            .store
            .em_login(device, user, |current| match &current.on_device {
                Some(on) => Err(EmError::new(
                    18,
                    format!("{} is logged in on {device}", on.userid),
                )),
                // UNCONFIRMED: Multiple Login Behavior is not applied across clusters.
                None => Ok(EmLoginWrite {
                    row,
                    also_logout: Vec::new(),
                }),
            })
            .await;
        let changes = match written {
            Ok(c) => c,
            Err(e) => {
                super::emcc::visiting_logout(state, device).await;
                return Err(match e {
                    EmWrite::Refused(e) => e,
                    EmWrite::Store(e) => EmError::new(6, format!("database: {e}")),
                });
            }
        };
        for c in &changes {
            state.apply_login_change(c);
            if let Some(row) = &c.login {
                self.schedule(row.logout_at, &c.device);
                tracing::info!(device, user, home = granted.home, slot = granted.slot, logout_at = ?row.logout_at, "EMCC login");
                crate::net::counters::count(crate::net::counters::EM_LOGINS, &[]);
            }
            reset_phone(state, &c.device);
        }
        Ok(())
    }

    /// Logs the device out on behalf of `principal`: the device (11, 5) is checked first, the
    /// login (19) and the caller's right to end it (10) on what is stored.
    pub async fn logout(
        &self,
        state: &Arc<NodeState>,
        principal: &Principal,
        device: &str,
    ) -> Result<(), EmError> {
        database_reachable(state)?;
        let cluster = state.cluster();
        match policy::plan_logout(&cluster, &NoLogins, principal, device) {
            // Against no logins every existing EM device answers 19; the stored login decides.
            Err(e) if e.code != 19 => return Err(e),
            _ => {}
        }
        let ended = state
            .store
            .em_logout(device, |row| {
                policy::plan_logout(&cluster, &Stored::device(row), principal, device).map(|_| true)
            })
            .await;
        match ended {
            Ok(Some((change, login))) => {
                super::emcc::visiting_logout(state, device).await;
                self.logged_out(state, &change, &login, false);
                Ok(())
            }
            // A stored login the decision accepted always ends; none means it was not there.
            Ok(None) => Err(EmError::new(19, format!("nobody is logged in on {device}"))),
            Err(EmWrite::Refused(e)) => Err(e),
            Err(EmWrite::Store(e)) => Err(EmError::new(6, format!("database: {e}"))),
        }
    }

    /// Ends a device's login in the database, then in the running cluster, and resets the
    /// phone. `only_if_logout_at`: for timers, only the login they were set for.
    async fn end_login(
        &self,
        state: &Arc<NodeState>,
        device: &str,
        only_if_logout_at: Option<i64>,
    ) -> Result<Option<String>, EmError> {
        let ended = state
            .store
            .em_logout(device, |row| {
                Ok::<_, std::convert::Infallible>(
                    row.is_some_and(|r| only_if_logout_at.is_none_or(|at| r.logout_at == Some(at))),
                )
            })
            .await;
        match ended {
            Ok(Some((change, login))) => {
                super::emcc::visiting_logout(state, device).await;
                self.logged_out(state, &change, &login, only_if_logout_at.is_some());
                Ok(Some(login.userid))
            }
            Ok(None) => Ok(None),
            Err(EmWrite::Refused(never)) => match never {},
            Err(EmWrite::Store(e)) => Err(EmError::new(6, format!("database: {e}"))),
        }
    }

    /// Carries out a committed logout on this node: the running cluster, the timer, the phone.
    fn logged_out(
        &self,
        state: &Arc<NodeState>,
        change: &EmChange,
        login: &EmLoginRow,
        auto: bool,
    ) {
        // As for a login: the first to apply it here (this or the feed's hook) resets the phone.
        let applied = state.apply_login_change(change);
        if !auto {
            self.schedule(None, &change.device);
        }
        tracing::info!(
            device = change.device,
            user = login.userid,
            auto,
            "EM logout"
        );
        if applied {
            reset_phone(state, &change.device);
        }
    }

    /// Fires automatic logouts when they are due, until `stop`. Logins other nodes made reach
    /// this node through the change feed, which wakes this loop to arm their logouts: every
    /// EM node arms every login's logout, and when it is due each tries to end it in the
    /// database. The device's row lock orders them and only the first finds the login to
    /// end (the others find none and write nothing), so it fires exactly once cluster-wide,
    /// whichever node made the login and whether or not that node is still alive.
    pub async fn run_timers(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let state = self.node.clone();
        let shared = state.shared::<feed::EmShared>();
        self.arm_known_logouts();
        loop {
            let due = self.timers().due(unix_now());
            for d in due {
                if let Err(e) = self.end_login(&state, &d.device, Some(d.logout_at)).await {
                    tracing::warn!(device = d.device, error = %e, "EM: automatic logout failed; retrying");
                    self.timers().retry(d, unix_now() + LOGOUT_RETRY_SECS);
                }
            }
            let next = self.timers().next_deadline();
            let wait = match next {
                Some(at) => std::time::Duration::from_secs((at - unix_now()).clamp(0, 3600) as u64),
                None => std::time::Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Another node's login came through the change feed: arm its logout too.
                _ = shared.logins_changed.notified() => self.arm_known_logouts(),
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// EM's database error (code 6, "Database Error") while the node's change feed has lost the
/// database: the node's view may be stale, so nothing is decided until it is back.
fn database_reachable(state: &NodeState) -> Result<(), EmError> {
    if state.database_ok() {
        Ok(())
    } else {
        Err(EmError::new(
            6,
            "database unreachable; this node resynchronises when it returns",
        ))
    }
}

/// No logins at all: what the checks that need no database are made against.
struct NoLogins;

impl CurrentLogins for NoLogins {
    fn on_device(&self, _: &str) -> Option<Login> {
        None
    }
    fn devices_of(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The logins stored, as read inside a login's or logout's transaction (under its locks).
struct Stored<'a> {
    on_device: Option<&'a EmLoginRow>,
    of_user: &'a [EmLoginRow],
}

impl<'a> Stored<'a> {
    fn new(current: &'a EmCurrent) -> Stored<'a> {
        Stored {
            on_device: current.on_device.as_ref(),
            of_user: &current.of_user,
        }
    }

    /// Only the device's login (a logout needs no more).
    fn device(row: Option<&'a EmLoginRow>) -> Stored<'a> {
        Stored {
            on_device: row,
            of_user: &[],
        }
    }
}

impl CurrentLogins for Stored<'_> {
    fn on_device(&self, device: &str) -> Option<Login> {
        self.on_device
            .filter(|r| r.device == device)
            .map(|r| Login {
                device: r.device.clone(),
                user: r.userid.clone(),
                profile: r.profile.clone(),
                logged_in_at: r.logged_in_at,
                logout_at: r.logout_at,
            })
    }
    fn devices_of(&self, user: &str) -> Vec<String> {
        self.of_user
            .iter()
            .filter(|r| r.userid == user)
            .map(|r| r.device.clone())
            .collect()
    }
}

/// How long after a failed automatic logout (a database error) it is tried again.
const LOGOUT_RETRY_SECS: i64 = 5;

/// The addresses `device` registered from: what Validate IP Address compares with.
fn device_addresses(state: &NodeState, device: &str) -> Vec<IpAddr> {
    state
        .registrar
        .device_bindings(device)
        .iter()
        .map(|b| b.source.ip())
        .collect()
}

/// Tells the phone to fetch its configuration again (SIP NOTIFY check-sync), as Unified CM
/// does after a login or logout.
fn reset_phone(state: &Arc<NodeState>, device: &str) {
    state.call_control.notify_device(device, "check-sync");
}

/// `POST /emservice/EMServiceServlet` with the form field `xml=` (GET with `?xml=` too).
pub async fn handler(
    State(em): State<Arc<EmService>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut xml = query.get("xml").cloned();
    if xml.is_none() {
        xml = crate::wire::codec::form_pairs(&body)
            .into_iter()
            .find(|(k, _)| k == "xml")
            .map(|(_, v)| v);
    }
    let caller = Caller {
        source: policy::Source::from_http(peer.ip(), &headers, None),
    };
    let out = match xml {
        Some(x) => em.handle(&em.node, &x, caller).await,
        None => api::failure(&EmError::new(1, "no xml= field in the request")),
    };
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
}

/// Extension Mobility: the EM service API (`extension-mobility`, with its automatic logouts)
/// and the phone-facing EM application (`em-application`), which hands logins to the EM
/// service of its node.
pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[
        super::Flag {
            flag: NodeService::ExtensionMobility,
            name: "Extension Mobility",
            paths: &["/emservice/", "/EMservice/"],
        },
        super::Flag {
            flag: NodeService::EmApplication,
            name: "the Extension Mobility application",
            paths: &["/emapp/"],
        },
    ],
    listeners: &[],
    sections: &[crate::config::SectionSpec::of::<
        model::ExtensionMobilityParameters,
    >()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: Some(feed::FEED),
    status: &[super::StatusSection {
        key: "em_logins",
        title: "Extension Mobility logins",
        columns: &["device", "user", "profile", "since", "logout_at"],
        read: status_logins,
    }],
    start: start_service,
};

/// Every login the database holds, whichever node made it (the cluster status).
fn status_logins(state: &NodeState, _now: i64) -> super::StatusFuture<'_> {
    Box::pin(async move {
        let rows = state.store.em_logins().await?;
        Ok(rows
            .into_iter()
            .map(|l| {
                serde_json::json!({
                    "device": l.device, "user": l.userid, "profile": l.profile,
                    "since": l.logged_in_at, "logout_at": l.logout_at, "node": l.node,
                })
            })
            .collect())
    })
}

fn start_service(s: super::Start) -> super::StartFuture {
    use axum::routing::get;
    Box::pin(async move {
        let mut parts = super::Parts::default();
        let em = s
            .runs(NodeService::ExtensionMobility)
            .then(|| Arc::new(EmService::new(s.node.clone())));
        if let Some(em) = &em {
            parts.routes = parts.routes.merge(
                axum::Router::new()
                    .route("/emservice/EMServiceServlet", get(handler).post(handler))
                    .route("/EMservice/EMServiceServlet", get(handler).post(handler))
                    .with_state(em.clone()),
            );
            parts
                .tasks
                .push(Box::pin(em.clone().run_timers(s.stop.clone())));
        }
        if s.runs(NodeService::EmApplication) {
            let emapp = Arc::new(app::EmApp {
                node: s.node.clone(),
                em,
            });
            parts.routes = parts.routes.merge(
                axum::Router::new()
                    .route("/emapp/EMAppServlet", get(app::handler))
                    .with_state(emapp),
            );
        }
        Ok(parts)
    })
}
