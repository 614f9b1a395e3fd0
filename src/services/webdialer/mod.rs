//! Cisco WebDialer: click-to-call that places
//! the call from the user's own phone with third-party call control (the user's phone rings
//! first; once it answers, the destination is called).
//!
//! * [`soap`]: the SOAP interface `/webdialer/services/WebdialerSoapService70` (Cisco's wd70
//!   WSDL, rpc/encoded) and the WSDL at `/webdialer/wsdl/wd70.wsdl`; the pre-7.0
//!   `/webdialer/services/WebdialerSoapService` (`urn:WebdialerSoap`) with its four operations.
//! * [`html`]: the servlet `/webdialer/Webdialer` (login, preferences, dial, end call) and
//!   `makeCallProxy`.
//! * [`crate::client::webdialer`]: what `ucm dial` speaks (works against Cisco Unified CM too).
//!
//! Response codes are Cisco's: 0 success, 1 call failure, 2 authentication, 3 no proxy rights,
//! 4 directory, 5 no device or missing parameters, 6 temporarily unavailable, 7 destination
//! unreachable, 8 service error, 9 overloaded (Maximum Concurrent Call Requests). Here 4 is a
//! proxy naming a user the directory lacks, 6 a node shutting down (or a phone answering 503),
//! 8 the database failing under a password check (or a call-control status with no closer code).

pub mod check;
pub mod html;
pub mod model;
pub mod redirector;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::cluster::Cluster;
use crate::config::model::{NodeService, Role};
use crate::node::NodeState;
use crate::wire::soap::{self, DeviceInfo, Request, UserProfile};

/// The standard paths.
pub const SOAP_PATH: &str = "/webdialer/services/WebdialerSoapService70";
/// The pre-7.0 SOAP service (namespace `urn:WebdialerSoap`), still used by old clients.
pub const LEGACY_SOAP_PATH: &str = "/webdialer/services/WebdialerSoapService";
pub const WSDL_PATH: &str = "/webdialer/wsdl/wd70.wsdl";
pub const SERVLET_PATH: &str = "/webdialer/Webdialer";

/// Cisco's description of each response code.
pub fn code_meaning(code: u32) -> &'static str {
    match code {
        0 => "Success",
        1 => "Call failure error",
        2 => "Authentication error",
        3 => "No authentication proxy rights",
        4 => "Directory error",
        5 => "No device is configured for the user or missing parameters exist in the request",
        6 => "Service temporarily unavailable",
        7 => "Destination cannot be reached",
        8 => "Service error",
        9 => "Service overloaded",
        _ => "Unknown error",
    }
}

/// A refused request: the response code and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebDialer {code} ({}): {message}", code_meaning(*.code))]
pub struct WdError {
    pub code: u32,
    pub message: String,
    /// The SIP status call control answered, when a call failed there (the HTML pages say
    /// it in words; SOAP clients get the code and the message).
    pub sip_status: Option<u16>,
}

impl WdError {
    pub fn new(code: u32, message: impl Into<String>) -> WdError {
        WdError {
            code,
            message: message.into(),
            sip_status: None,
        }
    }

    fn sip(mut self, status: u16) -> WdError {
        self.sip_status = Some(status);
        self
    }

    /// The responseDescription: Cisco's meaning, then the detail.
    pub fn description(&self) -> String {
        format!("{}: {}", code_meaning(self.code), self.message)
    }
}

/// Maps call control's SIP-status errors onto WebDialer codes.
pub fn call_error_code(status: u16) -> u32 {
    match status {
        404 => 5,
        484 | 604 => 7,
        503 => 6,
        480 | 486 | 408 | 487 | 600 | 603 => 1,
        _ => 8,
    }
}

/// Who made the request, once the password checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    /// May place and end calls for other users (Standard CTI Allow Control of All Devices or
    /// Standard EM Authentication Proxy Rights).
    pub proxy: bool,
    pub is_end_user: bool,
}

impl Principal {
    pub fn may_act_for(&self, user: &str) -> bool {
        self.proxy || (self.is_end_user && self.id == user)
    }
}

/// The phone and line a call is placed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub device: String,
    pub line: String,
}

/// Decrements the in-flight count when a request ends, however it ends.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A makeCall waiting for the user's phone, findable by endCall while it waits.
struct PendingCall<'a> {
    wd: &'a WebDialerService,
    device: String,
    ended: Arc<tokio::sync::Notify>,
}

impl<'a> PendingCall<'a> {
    fn new(wd: &'a WebDialerService, device: &str, ended: Arc<tokio::sync::Notify>) -> Self {
        wd.pending().insert(device.to_string(), ended.clone());
        PendingCall {
            wd,
            device: device.to_string(),
            ended,
        }
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        let mut g = self.wd.pending();
        if g.get(&self.device)
            .is_some_and(|n| Arc::ptr_eq(n, &self.ended))
        {
            g.remove(&self.device);
        }
    }
}

/// The WebDialer service of one node.
pub struct WebDialerService {
    pub node: Arc<NodeState>,
    inflight: AtomicUsize,
    /// The calls WebDialer placed from each device, oldest first: endCall ends the most
    /// recent one still up, so a second endCall reaches the call before it.
    calls: Mutex<HashMap<String, Vec<u64>>>,
    /// makeCall requests still waiting for the user's phone, by device: endCall ends them too.
    pending: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// HTML sessions by cookie.
    pub(crate) sessions: html::Sessions,
    /// The Redirector's own sessions (its cookie spares a user the login on later requests).
    pub(crate) redirector_sessions: html::Sessions,
    /// The Redirector's HTTP client and the settings it was built with.
    #[allow(clippy::type_complexity)]
    redirector_http: Mutex<Option<((Option<String>, u32, String), reqwest::Client)>>,
}

/// Calls remembered per device for endCall (a phone has a handful of line appearances).
const MAX_CALLS_PER_DEVICE: usize = 16;

/// `dn ; partition`, as Cisco lists lines.
fn line_label(dn: &str, partition: Option<&str>) -> String {
    format!("{dn} ; {}", partition.unwrap_or("no partition"))
}

impl WebDialerService {
    pub fn new(node: Arc<NodeState>) -> WebDialerService {
        WebDialerService {
            node,
            inflight: AtomicUsize::new(0),
            calls: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            sessions: html::Sessions::default(),
            redirector_sessions: html::Sessions::default(),
            redirector_http: Mutex::new(None),
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u64>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Notify>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a user ID and password (end users and application users) with the cluster's
    /// lockout policy. Refusals are code 2.
    pub async fn authenticate(
        &self,
        state: &Arc<NodeState>,
        user: &str,
        password: &str,
    ) -> Result<Principal, WdError> {
        let refused = || WdError::new(2, format!("could not authenticate {user:?}"));
        if user.is_empty() || password.is_empty() {
            return Err(WdError::new(2, "the user ID or password is missing"));
        }
        let cluster = state.cluster();
        let has = |roles: &[Role]| {
            roles.contains(&Role::CtiControlAllDevices) || roles.contains(&Role::EmProxy)
        };
        let principal = if let Some(u) = cluster.end_user(user) {
            Principal {
                id: u.userid.clone(),
                proxy: has(&u.roles),
                is_end_user: true,
            }
        } else if let Some(a) = cluster.application_user(user) {
            Principal {
                id: a.userid.clone(),
                proxy: has(&a.roles),
                is_end_user: false,
            }
        } else {
            // Checked all the same (a dummy hash): the time does not tell who exists.
            let _ = crate::services::authenticate::check_password(state, user, password).await;
            return Err(refused());
        };
        use crate::services::authenticate::{check_password, SecretCheck};
        match check_password(state, &principal.id, password).await {
            SecretCheck::Ok => Ok(principal),
            SecretCheck::Locked => Err(WdError::new(2, format!("{user:?} is locked out"))),
            SecretCheck::Wrong { .. } => Err(refused()),
            SecretCheck::Busy { retry_after } | SecretCheck::Throttled { retry_after } => {
                Err(WdError::new(
                    8,
                    format!("busy checking credentials; retry in {retry_after} s"),
                ))
            }
            SecretCheck::Unavailable(e) => Err(WdError::new(8, format!("database: {e}"))),
        }
    }

    /// Works out the user the request is for and checks the principal may act for them.
    fn user_for<'a>(principal: &'a Principal, profile_user: &'a str) -> Result<&'a str, WdError> {
        let user = if profile_user.is_empty() {
            if !principal.is_end_user {
                return Err(WdError::new(5, "the UserProfile names no user"));
            }
            principal.id.as_str()
        } else {
            profile_user
        };
        if !principal.may_act_for(user) {
            return Err(WdError::new(
                3,
                format!("{} lacks proxy rights to act for {user}", principal.id),
            ));
        }
        Ok(user)
    }

    /// The device and line a call for `profile` is placed from: the named (or first
    /// associated) device and line, or with `supportEM` the device the user is logged in on.
    pub fn origin(
        cluster: &Cluster,
        user: &str,
        profile: &UserProfile,
        destination: &str,
    ) -> Result<Origin, WdError> {
        let eu = cluster
            .end_user(user)
            .ok_or_else(|| WdError::new(4, format!("user {user} is not in the directory")))?;
        let em_devices = cluster.mobility.devices_of(user);
        let device = if profile.support_em {
            let pick = if profile.device_name.is_empty() {
                em_devices.first()
            } else {
                em_devices.iter().find(|d| **d == profile.device_name)
            };
            pick.cloned().ok_or_else(|| {
                WdError::new(
                    5,
                    format!("Call to {destination} failed: User not logged in on any device"),
                )
            })?
        } else if profile.device_name.is_empty() {
            eu.associated_devices
                .iter()
                .find(|d| cluster.device(d).is_some())
                .cloned()
                .ok_or_else(|| WdError::new(5, "No supported device configured for user"))?
        } else {
            let allowed = eu.associated_devices.contains(&profile.device_name)
                || em_devices.contains(&profile.device_name);
            if !allowed {
                return Err(WdError::new(
                    5,
                    format!(
                        "{} is not a device of {user} (associated devices: {})",
                        profile.device_name,
                        if eu.associated_devices.is_empty() {
                            "none".to_string()
                        } else {
                            eu.associated_devices.join(", ")
                        }
                    ),
                ));
            }
            profile.device_name.clone()
        };
        let dev = cluster
            .device(&device)
            .ok_or_else(|| WdError::new(5, format!("device {device} is not configured")))?;
        let lines = cluster.lines_of(dev);
        let line = if profile.line_number.is_empty() {
            let primary = eu.primary_extension.as_ref().map(|p| p.dn.as_str());
            lines
                .iter()
                .find(|l| Some(l.dn.as_str()) == primary)
                .or_else(|| lines.first())
                .map(|l| l.dn.clone())
                .ok_or_else(|| WdError::new(5, format!("{device} has no line")))?
        } else {
            // Cisco's profile lists lines as "dn ; partition"; accept either form.
            let want = profile
                .line_number
                .split(';')
                .next()
                .unwrap_or_default()
                .trim();
            lines
                .iter()
                .find(|l| l.dn == want)
                .map(|l| l.dn.clone())
                .ok_or_else(|| WdError::new(5, format!("{device} has no line {want}")))?
        };
        Ok(Origin { device, line })
    }

    /// Places a call for `profile.user` to `destination` (third-party call control): resolves
    /// when the user's phone answered and the destination is being called.
    pub async fn make_call(
        &self,
        state: &Arc<NodeState>,
        principal: &Principal,
        profile: &UserProfile,
        destination: &str,
    ) -> Result<(Origin, u64), WdError> {
        let destination = destination.trim();
        let user = Self::user_for(principal, &profile.user)?;
        if destination.is_empty() {
            return Err(WdError::new(5, "no destination to dial"));
        }
        let cluster = state.cluster();
        let origin = Self::origin(&cluster, user, profile, destination)?;
        let max = cluster
            .section::<model::WebDialerParameters>()
            .max_concurrent_call_requests as usize;
        let n = self.inflight.fetch_add(1, Ordering::AcqRel);
        let _slot = Slot(&self.inflight);
        if max > 0 && n >= max {
            return Err(WdError::new(
                9,
                format!("{max} call requests are already in progress (Maximum Concurrent Call Requests)"),
            ));
        }
        // A node shutting down takes no new calls and gives up on ringing ones: 6, try again
        // (on another node of the cluster).
        let mut stopping = state.stopping();
        if *stopping.borrow() {
            return Err(WdError::new(6, "the node is shutting down"));
        }
        // Call control gives up on the user's phone after the answer timeout (cancelling its
        // ringing); leaving this select any other way drops the request, which call control
        // then abandons, releasing every leg it started.
        let answer_within = Duration::from_secs(u64::from(
            cluster
                .section::<model::WebDialerParameters>()
                .answer_timeout_seconds,
        ));
        let ended = Arc::new(tokio::sync::Notify::new());
        let _pending = PendingCall::new(self, &origin.device, ended.clone());
        let placed = tokio::select! {
            r = state
                .call_control
                .make_call(&origin.device, &origin.line, destination, answer_within) => r,
            _ = stopping.wait_for(|s| *s) => {
                return Err(WdError::new(
                    6,
                    format!("the node is shutting down; the call from {} was abandoned", origin.device),
                ))
            }
            _ = ended.notified() => {
                return Err(WdError::new(
                    1,
                    format!("endCall ended the call from {} before the phone answered", origin.device),
                ))
            }
        };
        match placed {
            Err(e) if e.status == 408 => Err(WdError::new(
                1,
                format!("{} did not answer within {answer_within:?}", origin.device),
            )
            .sip(408)),
            // Call control stops with the node: say why, whichever noticed first.
            Err(_) if *stopping.borrow() => Err(WdError::new(
                6,
                format!(
                    "the node is shutting down; the call from {} was abandoned",
                    origin.device
                ),
            )),
            Err(e) => Err(WdError::new(call_error_code(e.status), e.to_string()).sip(e.status)),
            Ok(call) => {
                tracing::info!(user, device = %origin.device, line = %origin.line, destination, call, by = %principal.id, "WebDialer call placed");
                let mut calls = self.calls();
                let placed = calls.entry(origin.device.clone()).or_default();
                // Calls hung up on the phone are not reported here; the oldest go first so
                // a device's list stays bounded.
                if placed.len() >= MAX_CALLS_PER_DEVICE {
                    placed.remove(0);
                }
                placed.push(call);
                Ok((origin, call))
            }
        }
    }

    /// Ends the call WebDialer placed from the profile's device.
    pub async fn end_call(
        &self,
        state: &Arc<NodeState>,
        principal: &Principal,
        profile: &UserProfile,
    ) -> Result<Origin, WdError> {
        let user = Self::user_for(principal, &profile.user)?;
        let origin = Self::origin(&state.cluster(), user, profile, "")?;
        // A makeCall still ringing the user's phone ends here: its request gives up and the
        // ringing is cancelled.
        let waiting = self.pending().remove(&origin.device);
        if let Some(n) = waiting {
            n.notify_one();
            tracing::info!(user, device = %origin.device, "WebDialer call request ended before the phone answered");
            return Ok(origin);
        }
        // The most recent call still up ends; calls already hung up on a phone are dropped on
        // the way, so after two makeCalls a second endCall ends the first.
        loop {
            let call = {
                let mut calls = self.calls();
                let placed = calls.get_mut(&origin.device);
                let call = placed.and_then(|p| p.pop());
                if calls.get(&origin.device).is_some_and(|p| p.is_empty()) {
                    calls.remove(&origin.device);
                }
                call
            };
            let Some(call) = call else {
                return Err(WdError::new(
                    1,
                    format!("no WebDialer call in progress on {}", origin.device),
                ));
            };
            match state.call_control.end_call(call).await {
                Ok(()) => {
                    tracing::info!(user, device = %origin.device, call, "WebDialer call ended");
                    return Ok(origin);
                }
                Err(e) if e.status == 481 => continue,
                Err(e) => {
                    return Err(WdError::new(call_error_code(e.status), e.to_string()).sip(e.status))
                }
            }
        }
    }

    /// The user's devices and lines (associated devices, then EM logins).
    pub fn devices(cluster: &Cluster, user: &str) -> Vec<DeviceInfo> {
        let Some(eu) = cluster.end_user(user) else {
            return Vec::new();
        };
        let mut names: Vec<String> = eu.associated_devices.clone();
        for d in cluster.mobility.devices_of(user) {
            if !names.contains(&d) {
                names.push(d);
            }
        }
        names
            .iter()
            .filter_map(|n| cluster.device(n))
            .map(|d| DeviceInfo {
                device_name: d.name.clone(),
                lines: cluster
                    .lines_of(d)
                    .iter()
                    .map(|l| line_label(&l.dn, l.partition.as_deref()))
                    .collect(),
                phone_desc: d.description.clone().unwrap_or_default(),
                phone_type: d.model.clone(),
            })
            .collect()
    }

    /// Answers one SOAP request: (HTTP status, body). Faults are 500 as SOAP 1.1 asks.
    pub async fn handle_soap(
        &self,
        state: &Arc<NodeState>,
        service: soap::Service,
        xml: &str,
    ) -> (StatusCode, String) {
        let ns = service.ns();
        let req = match soap::parse_for(xml, service) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(reason = %e, "WebDialer: malformed SOAP request");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    soap::fault("Client", &e.0),
                );
            }
        };
        let op = req.operation();
        let ok = |body: String| (StatusCode::OK, body);
        match req {
            Request::MakeCall {
                cred,
                destination,
                profile,
            } => {
                let r = async {
                    let p = self
                        .authenticate(state, &cred.user_id, &cred.password)
                        .await?;
                    self.make_call(state, &p, &profile, &destination).await
                }
                .await;
                ok(call_reply(ns, op, r.map(|_| ())))
            }
            Request::EndCall { cred, profile } => {
                let r = async {
                    let p = self
                        .authenticate(state, &cred.user_id, &cred.password)
                        .await?;
                    self.end_call(state, &p, &profile).await
                }
                .await;
                ok(call_reply(ns, op, r.map(|_| ())))
            }
            Request::GetProfile { cred, user } => {
                let r = async {
                    let p = self
                        .authenticate(state, &cred.user_id, &cred.password)
                        .await?;
                    let u = Self::user_for(&p, &user)?.to_string();
                    let cluster = state.cluster();
                    // A proxy may name anyone: one the directory lacks is a directory error.
                    if cluster.end_user(&u).is_none() {
                        return Err(WdError::new(4, format!("user {u} is not in the directory")));
                    }
                    Ok::<_, WdError>(Self::devices(&cluster, &u))
                }
                .await;
                ok(match r {
                    Ok(d) if d.is_empty() => {
                        soap::profile_response(ns, 5, "No supported device configured for user", &d)
                    }
                    Ok(d) => soap::profile_response(ns, 0, "Success", &d),
                    Err(e) => soap::profile_response(ns, e.code, &e.description(), &[]),
                })
            }
            Request::GetProfileDetail { cred } => {
                let r = self
                    .authenticate(state, &cred.user_id, &cred.password)
                    .await;
                ok(match r {
                    Ok(p) if !p.is_end_user => {
                        let e = WdError::new(5, "getProfileDetailSoap is for end users");
                        soap::profile_detail_response(e.code, &e.description(), &[])
                    }
                    Ok(p) => {
                        let d = Self::devices(&state.cluster(), &p.id);
                        if d.is_empty() {
                            soap::profile_detail_response(
                                5,
                                "No supported device configured for user",
                                &d,
                            )
                        } else {
                            soap::profile_detail_response(0, "Success", &d)
                        }
                    }
                    Err(e) => soap::profile_detail_response(e.code, &e.description(), &[]),
                })
            }
            Request::IsClusterUser { user } => {
                let yes = state
                    .cluster()
                    .end_user(&user)
                    .is_some_and(|u| u.home_cluster);
                ok(soap::is_cluster_user_response(ns, yes))
            }
            Request::GetPrimaryLine { cred } => {
                match self
                    .authenticate(state, &cred.user_id, &cred.password)
                    .await
                {
                    Ok(p) => {
                        let dn = state
                            .cluster()
                            .end_user(&p.id)
                            .and_then(|u| u.primary_extension.as_ref().map(|x| x.dn.clone()))
                            .unwrap_or_default();
                        ok(soap::primary_line_response(&dn))
                    }
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        soap::fault("Client", &e.description()),
                    ),
                }
            }
        }
    }
}

fn call_reply(ns: &str, op: &str, r: Result<(), WdError>) -> String {
    crate::net::counters::webdialer_answered(op, r.as_ref().err().map_or(0, |e| e.code as i64));
    match r {
        Ok(()) => soap::call_response(ns, op, 0, "Success"),
        Err(e) => {
            tracing::info!(op, code = e.code, reason = %e.message, "WebDialer request refused");
            soap::call_response(ns, op, e.code, &e.description())
        }
    }
}

/// The service URL as this client reached the node (HTTP or HTTPS), for the WSDL.
fn service_url(state: &NodeState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let base = if !host.is_empty() && state.http_base.ends_with(&format!("//{host}")) {
        &state.http_base
    } else {
        &state.https_base
    };
    format!("{base}{SOAP_PATH}")
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `POST /webdialer/services/WebdialerSoapService70`.
pub async fn soap_handler(
    State(wd): State<Arc<WebDialerService>>,
    body: axum::body::Bytes,
) -> Response {
    soap_post(&wd, soap::Service::Wd70, &body).await
}

/// `POST /webdialer/services/WebdialerSoapService`: the pre-7.0 service.
pub async fn legacy_soap_handler(
    State(wd): State<Arc<WebDialerService>>,
    body: axum::body::Bytes,
) -> Response {
    soap_post(&wd, soap::Service::Legacy, &body).await
}

/// `GET /webdialer/services/WebdialerSoapService`: what it is (no WSDL of its own is served:
/// old clients were generated from it long ago).
pub async fn legacy_soap_get() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "WebdialerSoapService (urn:WebdialerSoap): POST SOAP 1.1 requests here (makeCallSoap, \
endCallSoap, getProfileSoap, isClusterUserSoap); new clients use WebdialerSoapService70 and \
/webdialer/wsdl/wd70.wsdl\n",
    )
        .into_response()
}

async fn soap_post(wd: &WebDialerService, service: soap::Service, body: &[u8]) -> Response {
    if body.len() > soap::MAX_REQUEST {
        return xml_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault(
                "Client",
                &format!(
                    "request of {} bytes is over the {}-byte limit",
                    body.len(),
                    soap::MAX_REQUEST
                ),
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return xml_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            soap::fault("Client", "the request is not UTF-8"),
        );
    };
    let (status, out) = wd.handle_soap(&wd.node, service, text).await;
    xml_response(status, out)
}

/// `GET /webdialer/services/WebdialerSoapService70[?wsdl]`.
pub async fn soap_get(
    State(wd): State<Arc<WebDialerService>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.keys().any(|k| k.eq_ignore_ascii_case("wsdl")) {
        return xml_response(StatusCode::OK, soap::wsdl(&service_url(&wd.node, &headers)));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "WebdialerSoapService70: POST SOAP 1.1 requests here; the WSDL is at ?wsdl or /webdialer/wsdl/wd70.wsdl\n",
    )
        .into_response()
}

/// `GET /webdialer/wsdl/wd70.wsdl`: Cisco's WSDL with this node's address.
pub async fn wsdl_handler(State(wd): State<Arc<WebDialerService>>, headers: HeaderMap) -> Response {
    xml_response(StatusCode::OK, soap::wsdl(&service_url(&wd.node, &headers)))
}

/// WebDialer (`webdialer`: the SOAP interfaces, the WSDL and the HTML servlet) and the
/// Redirector (`redirector`), which share one service object (sessions, HTTP client).
pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[
        super::Flag {
            flag: NodeService::Webdialer,
            name: "WebDialer",
            paths: &[
                "/webdialer/services/",
                "/webdialer/wsdl/",
                "/webdialer/Webdialer",
            ],
        },
        super::Flag {
            flag: NodeService::Redirector,
            name: "the WebDialer Redirector",
            paths: &[redirector::PATH, redirector::PATH_ALT],
        },
    ],
    listeners: &[],
    sections: &[crate::config::SectionSpec::of::<model::WebDialerParameters>()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: None,
    status: &[],
    start: start_service,
};

fn start_service(s: super::Start) -> super::StartFuture {
    use axum::routing::get;
    Box::pin(async move {
        let wd = Arc::new(WebDialerService::new(s.node.clone()));
        let mut routes = axum::Router::new();
        if s.runs(NodeService::Webdialer) {
            routes = routes
                .route(SOAP_PATH, get(soap_get).post(soap_handler))
                .route(
                    LEGACY_SOAP_PATH,
                    get(legacy_soap_get).post(legacy_soap_handler),
                )
                .route(WSDL_PATH, get(wsdl_handler))
                .route(SERVLET_PATH, get(html::handler).post(html::handler));
        }
        if s.runs(NodeService::Redirector) {
            routes = routes
                .route(
                    redirector::PATH,
                    get(redirector::handler).post(redirector::handler),
                )
                .route(
                    redirector::PATH_ALT,
                    get(redirector::handler).post(redirector::handler),
                );
        }
        Ok(super::Parts {
            routes: routes.with_state(wd),
            tasks: Vec::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdialer_maps_call_control_statuses_to_codes() {
        assert_eq!(call_error_code(404), 5);
        assert_eq!(call_error_code(484), 7);
        assert_eq!(call_error_code(480), 1);
        assert_eq!(call_error_code(503), 6);
        assert_eq!(call_error_code(500), 8);
        assert_eq!(code_meaning(9), "Service overloaded");
        let e = WdError::new(2, "x");
        assert_eq!(e.description(), "Authentication error: x");
    }

    #[test]
    fn webdialer_picks_the_device_and_line() {
        let cluster = Cluster::new(crate::services::demo().unwrap());
        let p = UserProfile {
            user: "jsmith".into(),
            ..Default::default()
        };
        let o = WebDialerService::origin(&cluster, "jsmith", &p, "10002").unwrap();
        assert_eq!(o.device, "SEP00036BC7B973");
        assert_eq!(o.line, "10001");
        let mut q = p.clone();
        q.device_name = "SEP00036BC7B974".into();
        assert_eq!(
            WebDialerService::origin(&cluster, "jsmith", &q, "1")
                .unwrap_err()
                .code,
            5
        );
        q.device_name = "SEP00036BC7B973".into();
        q.line_number = "10001 ; Internal_PT".into();
        assert!(WebDialerService::origin(&cluster, "jsmith", &q, "1").is_ok());
        q.line_number = "99".into();
        assert_eq!(
            WebDialerService::origin(&cluster, "jsmith", &q, "1")
                .unwrap_err()
                .code,
            5
        );
        let em = UserProfile {
            user: "jsmith".into(),
            support_em: true,
            ..Default::default()
        };
        let e = WebDialerService::origin(&cluster, "jsmith", &em, "10002").unwrap_err();
        assert_eq!(e.code, 5);
        assert_eq!(
            e.message,
            "Call to 10002 failed: User not logged in on any device"
        );
        assert_eq!(
            WebDialerService::origin(&cluster, "nobody", &p, "1")
                .unwrap_err()
                .code,
            4
        );
    }

    #[test]
    fn webdialer_proxy_rights() {
        let app = Principal {
            id: "app".into(),
            proxy: false,
            is_end_user: false,
        };
        assert_eq!(
            WebDialerService::user_for(&app, "jsmith").unwrap_err().code,
            3
        );
        assert_eq!(WebDialerService::user_for(&app, "").unwrap_err().code, 5);
        let me = Principal {
            id: "jsmith".into(),
            proxy: false,
            is_end_user: true,
        };
        assert_eq!(WebDialerService::user_for(&me, "").unwrap(), "jsmith");
        assert_eq!(
            WebDialerService::user_for(&me, "sadams").unwrap_err().code,
            3
        );
    }
}
