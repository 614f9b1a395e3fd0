//! The EMCC login across clusters, both sides (the seed's EMCC section: "the EM services of
//! both clusters exchange information that essentially brings the device information into the
//! home cluster database and allows the home cluster to build a configuration file for this
//! visiting phone ... a reset issued by the visiting cluster forces the visiting phone to
//! download a small configuration from the visiting cluster, which further instructs it to
//! download certificates and a full configuration from the home cluster. Ultimately, the
//! visiting phone cross-registers with the home cluster").
//!
//! **Visiting side** ([`visiting_login`], called by the EM service once the home lookup found
//! the user's home): takes one of its own EMCC device slots (`emcc.max_emcc_devices`; the
//! database decides, see [`super::store::EmccDevices::take_emcc_slot`]), hands the login to
//! the home (`POST /ucm/emcc/v1/login`), and from then on serves the phone the small
//! configuration ([`visiting_config`]) that points it to the home's TFTP. The EM service then
//! records the login as any other (so `deviceUserQuery`, logout and the automatic logout work
//! as for a local login) and resets the phone. [`visiting_logout`] reverses it: frees the slot,
//! stops the redirection and tells the home (`POST /ucm/emcc/v1/logout`), which resets the
//! phone it holds; the phone fetches its visiting configuration again and registers back.
//!
//! **Home side** ([`login_handler`], [`logout_handler`]): checks the user (home-cluster flag),
//! the profile, the phone's security mode (Table 18-2), takes one of its EMCC device slots
//! (error 33 when none is free), and adds the phone as a run-time device of the cluster
//! ([`crate::cluster::ClusterHandle::set_extra_devices`]): in the EMCC roaming device pool,
//! with the visiting device's model and locale and the profile's lines, speed dials and
//! services. The registrar, the configuration files and call routing see it as a device, so the
//! phone registers with the home's call control and calls to the user's DN ring it.
//!
//! UNCONFIRMED (Cisco documents neither): the exchange's messages (ucm's own,
//! [`crate::wire::emcc`]) and the small configuration's element (`emccLogin`, below).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};

use super::model::Emcc;
use super::store::{EmccDeviceRow, EmccDevices, PendingLogouts, RemoteClusters, Role, SlotRefused};
use super::{read_bounded, read_query, remote_peer, text, EmccService, MAX_ANSWER_BYTES};
use crate::config::model::{DeviceSecurityMode, NodeService, SecurityMode, SipTransport};
use crate::net::tls::PeerCertificates;
use crate::node::http::Listener;
use crate::node::NodeState;
use crate::sip::registrar::unix_now;
use crate::wire::em::EmError;
use crate::wire::emcc::{
    self as api, LoginAnswer, LoginQuery, LogoutAnswer, LogoutQuery, PinAnswer, PinQuery,
    VisitingDevice,
};
use crate::wire::xml::escape as esc;

/// Where a phone of this (visiting) cluster logged in through EMCC finds its home
/// configuration: what the visiting row's `settings` hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub home: String,
    /// The home's TFTP-over-HTTP servers (`host:port`), default first.
    pub tftp_servers: Vec<String>,
    /// The EMCC device slot the phone holds at the home.
    pub home_slot: i64,
    pub profile: String,
    /// Where the phone was registered here when it left for its home: told to come back
    /// there when the home cannot be reached at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneContact>,
}

/// A phone's SIP contact as this cluster last registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneContact {
    pub contact: String,
    /// `ip:port` the phone registered from.
    pub source: String,
    pub transport: String,
}

/// How often the visiting side tries again to tell homes of logouts they have not
/// acknowledged.
pub const PENDING_LOGOUT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// What EMCC's parts share on one node ([`NodeState::shared`]).
#[derive(Default)]
pub struct EmccShared {
    /// Visiting side: this cluster's phones logged in at their users' homes.
    redirects: std::sync::RwLock<HashMap<String, Redirect>>,
    /// Home side: the run-time devices are rebuilt from the database one at a time.
    rebuild: tokio::sync::Mutex<()>,
    /// Visiting side: a device's login hand-over and the telling of its pending logout, one
    /// at a time on this node (a pending logout of a device is dropped when it logs in again).
    /// One lock per EMCC phone that logged in since start (bounded by `emcc.phones`).
    handover: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the pending-logout task.
    pending: tokio::sync::Notify,
}

impl EmccShared {
    /// The device's hand-over lock.
    fn device_lock(&self, device: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.handover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(device.to_string())
            .or_default()
            .clone()
    }

    fn redirect(&self, device: &str) -> Option<Redirect> {
        self.redirects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(device)
            .cloned()
    }

    fn set_redirect(&self, device: &str, r: Option<Redirect>) {
        let mut g = self.redirects.write().unwrap_or_else(|p| p.into_inner());
        match r {
            Some(r) => g.insert(device.to_string(), r),
            None => g.remove(device),
        };
    }
}

/// Reads what the database holds (at start): the visiting side's redirections and the home's
/// run-time devices.
pub async fn load(node: &NodeState) -> Result<(), crate::store::StoreError> {
    let shared = node.shared::<EmccShared>();
    let rows = node.store.emcc_devices(Role::Visiting).await?;
    let redirects: HashMap<String, Redirect> = rows
        .iter()
        .filter_map(|row| {
            let r = serde_json::from_str::<Redirect>(&row.settings).ok()?;
            Some((row.device.clone(), r))
        })
        .collect();
    *shared.redirects.write().unwrap_or_else(|p| p.into_inner()) = redirects;
    sync_home_devices(node).await
}

/// Another node changed the device's visiting row: serve what the database holds now.
pub(crate) async fn reload_redirect(
    node: &NodeState,
    device: &str,
) -> Result<bool, crate::store::StoreError> {
    let shared = node.shared::<EmccShared>();
    let now = node
        .store
        .emcc_devices(Role::Visiting)
        .await?
        .into_iter()
        .find(|r| r.device == device)
        .and_then(|row| serde_json::from_str::<Redirect>(&row.settings).ok());
    let changed = shared.redirect(device) != now;
    shared.set_redirect(device, now);
    Ok(changed)
}

/// Makes the cluster's run-time devices those of the home rows the database holds now.
pub(crate) async fn sync_home_devices(node: &NodeState) -> Result<(), crate::store::StoreError> {
    let shared = node.shared::<EmccShared>();
    let _one = shared.rebuild.lock().await;
    let rows = node.store.emcc_devices(Role::Home).await?;
    let cluster = node.cluster();
    let devices: Vec<_> = rows
        .iter()
        .filter_map(|r| home_device(&cluster, r))
        .collect();
    let remotes = node.store.remote_clusters().await?;
    let routing = emcc_routing(&cluster, &rows, &remotes);
    node.set_extra_devices(devices, routing);
    Ok(())
}

/// What call control must know of EMCC (see [`crate::cluster::EmccRouting`]): for each
/// visiting phone logged in here, the EMCC SIP trunk with PSTN Access and the nodes its
/// cluster named for it; this cluster's own PSTN Access trunks and EMCC phones.
pub(crate) fn emcc_routing(
    cluster: &crate::cluster::Cluster,
    home_rows: &[EmccDeviceRow],
    remotes: &[super::store::RemoteClusterRow],
) -> crate::cluster::EmccRouting {
    use super::model::{PstnAccessCss, TrunkService};
    let emcc = cluster.section::<Emcc>();
    let pstn = emcc
        .trunks
        .iter()
        .find(|t| t.services.contains(&TrunkService::PstnAccess))
        .map(|t| t.sip_trunk.clone());
    let mut r = crate::cluster::EmccRouting::default();
    if let Some(trunk) = &pstn {
        for row in home_rows {
            r.visiting_phones.insert(row.device.clone(), trunk.clone());
            let nodes = remotes
                .iter()
                .find(|x| x.cluster_id == row.remote_cluster)
                .and_then(|x| x.trunk_services.get(TrunkService::PstnAccess.as_str()))
                .cloned()
                .unwrap_or_default();
            r.phone_destinations.insert(row.device.clone(), nodes);
        }
        r.pstn_trunks
            .insert(trunk.clone(), emcc.pstn_access_css == PstnAccessCss::Phone);
    }
    r.phones = emcc.phones.iter().cloned().collect();
    r
}

/// The EMCC device the home builds for a visiting phone: the visiting device's model and
/// locale, the EMCC roaming device pool, the profile's lines, speed dials and services.
/// UNCONFIRMED: Cisco picks the roaming device pool by the phone's geolocation (EMCC
/// Geolocation Filter); ucm has no geolocations and takes the first roaming pool.
fn home_device(
    cluster: &crate::cluster::Cluster,
    row: &EmccDeviceRow,
) -> Option<crate::config::model::Device> {
    let v: VisitingDevice = serde_json::from_str(&row.settings).ok()?;
    let profile = cluster.device_profile(&row.profile)?;
    let emcc = cluster.section::<Emcc>();
    let pool = emcc.roaming_device_pools.first()?.clone();
    let emcc_css = emcc
        .device_profiles
        .iter()
        .find(|p| p.device_profile == row.profile)
        .map(|p| p.emcc_css.clone());
    Some(crate::config::model::Device {
        name: row.device.clone(),
        model: v.model,
        description: Some(format!(
            "EMCC{} for {} at cluster {}",
            row.slot, row.userid, row.remote_cluster
        )),
        device_pool: pool,
        // Figure 18-6: the EMCC CSS is the device's; with the roaming pool's Adjunct CSS first
        // and the line CSS (see `crate::dialplan::analysis`, `CallingContext::emcc_trunk`).
        css: emcc_css,
        location: None,
        owner: Some(row.userid.clone()),
        em_enabled: false,
        logout_profile: None,
        security_profile: None,
        digest_user: None,
        subscribed_services: profile.subscribed_services.clone(),
        services_provisioning: None,
        lines: profile.lines.clone(),
        speed_dials: profile.speed_dials.clone(),
        // Device profiles carry no service URL buttons yet.
        service_url_buttons: Vec::new(),
        do_not_disturb: false,
        // The physical phone's (its speaker is the visiting phone's), unknown here: enabled.
        disable_speakerphone: false,
        // The seed: the home's locale when it has one, else the phone keeps the visiting one.
        user_locale: profile.user_locale.clone().or(v.user_locale),
    })
}

/// The small configuration file of a phone of this (visiting) cluster logged in at its
/// user's home: it names the home's TFTP servers and nothing else. `None` when the phone is
/// not logged in through EMCC. UNCONFIRMED: the element names (`emccLogin`, `homeCluster`,
/// `tftpServer`); Cisco's file for this step is not documented.
pub fn visiting_config(state: &NodeState, device: &str) -> Option<String> {
    let r = state.shared::<EmccShared>().redirect(device)?;
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<device xsi:type=\"axl:XIPPhone\" ctiid=\"1\">\n<fullConfig>false</fullConfig>\n");
    x.push_str("<deviceProtocol>SIP</deviceProtocol>\n<emccLogin>");
    x.push_str(&format!("<homeCluster>{}</homeCluster>", esc(&r.home)));
    for t in &r.tftp_servers {
        x.push_str(&format!("<tftpServer>{}</tftpServer>", esc(t)));
    }
    x.push_str("</emccLogin>\n</device>\n");
    Some(x)
}

/// What the visiting side's login at the home granted.
#[derive(Debug, Clone)]
pub struct Granted {
    pub home: String,
    pub redirect: Redirect,
    /// The visiting slot (`EMCC<n>`).
    pub slot: i64,
}

fn version_major(v: &str) -> u32 {
    v.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0)
}

/// The visiting side of an EMCC login at `device` for `user`, who is not at home here. `None`
/// when `device` is not an EMCC phone (the local answer stands); otherwise the login handed to
/// the user's home (the phone is not reset yet: the EM service records the login, then resets
/// it), or the EM error the login ends with. A refusal after the slot was taken frees it.
pub async fn visiting_login(
    node: &Arc<NodeState>,
    device: &str,
    user: &str,
    profile: Option<&str>,
    pin: Option<&str>,
) -> Option<Result<Granted, EmError>> {
    let cluster = node.cluster();
    let emcc = cluster.section::<Emcc>();
    if !emcc.phones.iter().any(|p| p == device) {
        return None;
    }
    let svc = EmccService::new(node.clone());
    let refused = match svc.find_home(user).await {
        super::HomeLookup::Home(home) => {
            let out = hand_over(node, &svc, device, user, profile, pin, &home).await;
            match &out {
                Ok(g) => tracing::info!(
                    device,
                    user,
                    home,
                    slot = g.slot,
                    home_slot = g.redirect.home_slot,
                    "EMCC: visiting login handed to the home"
                ),
                Err(e) => tracing::info!(device, user, home, code = e.code, "EMCC: visiting login refused: {}", e.message),
            }
            return Some(out);
        }
        super::HomeLookup::Nowhere => EmError::new(
            23,
            format!("user {user} not found here nor at any EMCC remote cluster"),
        ),
        super::HomeLookup::NoRemoteCluster => EmError::new(
            36,
            format!("user {user} is not at home here and this cluster has no EMCC remote cluster"),
        ),
        super::HomeLookup::Unanswered(which) => EmError::new(
            40,
            format!(
                "user {user} is not at home here and no remote cluster said it is its home; no answer from {}",
                which.join(", ")
            ),
        ),
    };
    tracing::info!(
        device,
        user,
        code = refused.code,
        "EMCC: visiting login: {}",
        refused.message
    );
    Some(Err(refused))
}

async fn hand_over(
    node: &Arc<NodeState>,
    svc: &EmccService,
    device: &str,
    user: &str,
    profile: Option<&str>,
    pin: Option<&str>,
    home: &str,
) -> Result<Granted, EmError> {
    let cluster = node.cluster();
    let emcc = cluster.section::<Emcc>();
    let dev = cluster
        .device(device)
        .ok_or_else(|| EmError::new(11, format!("device {device} does not exist")))?;
    let sec = cluster
        .phone_security_profiles
        .iter()
        .find(|p| Some(&p.name) == dev.security_profile.as_ref());
    let mode = sec.map(|p| p.device_security_mode).unwrap_or_default();
    // Table 18-2: a phone in secure mode at a visiting cluster before 9.x cannot log in.
    if mode != DeviceSecurityMode::NonSecure && version_major(&cluster.cluster.version) < 9 {
        return Err(EmError::new(
            46,
            format!(
                "{device} is in secure mode and this cluster runs Unified CM {} (secure phones need 9.x or later at both clusters)",
                cluster.cluster.version
            ),
        ));
    }
    let visiting = VisitingDevice {
        name: device.to_string(),
        model: dev.model.clone(),
        security_mode: match mode {
            DeviceSecurityMode::NonSecure => "non-secure",
            DeviceSecurityMode::Authenticated => "authenticated",
            DeviceSecurityMode::Encrypted => "encrypted",
        }
        .into(),
        transport: match sec.map(|p| p.transport).unwrap_or_default() {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        }
        .into(),
        user_locale: dev.user_locale.clone(),
    };
    let now = unix_now();
    let row = EmccDeviceRow {
        role: Role::Visiting,
        device: device.to_string(),
        slot: 0,
        userid: user.to_string(),
        remote_cluster: home.to_string(),
        profile: String::new(),
        settings: "{}".into(),
        logged_in_at: now,
        node: node.node.name.clone(),
    };
    let taken = match node.store.take_emcc_slot(&row, emcc.max_emcc_devices).await {
        Ok(r) => r,
        Err(SlotRefused::Full { cap }) => {
            return Err(EmError::new(
                33,
                format!("no free EMCC device slot at this cluster: all {cap} are taken"),
            ))
        }
        Err(SlotRefused::DeviceTaken(r)) => {
            return Err(EmError::new(
                18,
                format!(
                    "{} of cluster {} is logged in on {device} through EMCC",
                    r.userid, r.remote_cluster
                ),
            ))
        }
        Err(SlotRefused::Store(e)) => return Err(EmError::new(6, format!("database: {e}"))),
    };
    // A logout of this device its home has not acknowledged yet is not told any more: the
    // home replaces the login it still holds from this cluster (see `login_handler`).
    let lock = node.shared::<EmccShared>().device_lock(device);
    let _one = lock.lock().await;
    if let Err(e) = node.store.drop_pending_logout(device).await {
        let _ = node.store.free_emcc_slot(Role::Visiting, device).await;
        return Err(EmError::new(6, format!("database: {e}")));
    }
    let phone = {
        use crate::sip::registrar::Registrations;
        node.registrar
            .device_bindings_at(device, now)
            .into_iter()
            .next()
            .map(|b| PhoneContact {
                contact: b.contact,
                source: b.source.to_string(),
                transport: b.transport.as_str().to_string(),
            })
    };
    let query = LoginQuery {
        api: api::API.into(),
        cluster: cluster.cluster.id.clone(),
        version: cluster.cluster.version.clone(),
        userid: user.to_string(),
        profile: profile.map(str::to_string),
        device: visiting,
        pin: pin.map(str::to_string),
    };
    let answer: Result<LoginAnswer, String> =
        call_home(node, svc, home, api::LOGIN_PATH, &query).await;
    let refused = match answer {
        Ok(a) if a.error.is_none() => {
            let redirect = Redirect {
                home: home.to_string(),
                tftp_servers: a.tftp_servers,
                home_slot: a.slot,
                profile: a.profile,
                phone,
            };
            let settings = serde_json::to_string(&redirect).unwrap_or_default();
            match node
                .store
                .set_emcc_settings(Role::Visiting, device, &settings)
                .await
            {
                Ok(()) => {
                    node.shared::<EmccShared>()
                        .set_redirect(device, Some(redirect.clone()));
                    return Ok(Granted {
                        home: home.to_string(),
                        redirect,
                        slot: taken.slot,
                    });
                }
                Err(e) => {
                    // The home holds it: tell it the login did not happen.
                    let _ = logout_at_home(node, svc, home, device).await;
                    EmError::new(6, format!("database: {e}"))
                }
            }
        }
        Ok(a) => EmError::new(
            a.error.unwrap_or(0),
            format!("the home cluster {home} refused: {}", a.message),
        ),
        Err(why) => EmError::new(
            40,
            format!("the home cluster {home} did not take the login: {why}"),
        ),
    };
    if let Err(e) = node.store.free_emcc_slot(Role::Visiting, device).await {
        tracing::error!(device, error = %e, "EMCC: the visiting slot of a refused login is not freed");
    }
    Err(refused)
}

/// Posts `query` to the home's EM service nodes in order, then its configured address: the
/// first answer (a 200 with the expected JSON, or an EM refusal as JSON with 409).
async fn call_home<Q: Serialize, A: serde::de::DeserializeOwned>(
    node: &Arc<NodeState>,
    svc: &EmccService,
    home: &str,
    path: &str,
    query: &Q,
) -> Result<A, String> {
    let cluster = node.cluster();
    let emcc = cluster.section::<Emcc>();
    let Some(r) = emcc.remote_clusters.iter().find(|r| r.cluster_id == home) else {
        return Err(format!("{home} is not an EMCC remote cluster"));
    };
    let http = svc.client().await?;
    let rows = node.store.remote_clusters().await.unwrap_or_default();
    let mut bases: Vec<String> = rows
        .iter()
        .find(|x| x.cluster_id == home)
        .map(|x| x.em_service_nodes.clone())
        .unwrap_or_default();
    bases.push(format!("https://{}", r.authority()));
    let body = serde_json::to_vec(query).unwrap_or_default();
    let mut last = String::from("no EM service node");
    for base in bases.iter().take(api::MAX_NODES + 1) {
        let sent = http
            .post(format!("{base}{path}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                last = super::describe(&e, &format!("{home} at {base}"));
                continue;
            }
        };
        let status = resp.status();
        let bytes = match read_bounded(resp, MAX_ANSWER_BYTES).await {
            Ok(b) => b,
            Err(why) => {
                last = format!("{home} at {base}: {why}");
                continue;
            }
        };
        if status.is_success() || status == StatusCode::CONFLICT {
            return serde_json::from_slice(&bytes)
                .map_err(|e| format!("{home} at {base} answered something else: {e}"));
        }
        last = format!(
            "{home} at {base} answered {status}: {}",
            String::from_utf8_lossy(&bytes).trim()
        );
    }
    Err(last)
}

async fn logout_at_home(
    node: &Arc<NodeState>,
    svc: &EmccService,
    home: &str,
    device: &str,
) -> Result<LogoutAnswer, String> {
    let q = LogoutQuery {
        api: api::API.into(),
        cluster: node.cluster().cluster.id.clone(),
        device: device.to_string(),
    };
    call_home(node, svc, home, api::LOGOUT_PATH, &q).await
}

/// The visiting side of the end of an EMCC login (logout, automatic logout, logoutAll), after
/// the EM service removed its login: frees this cluster's slot and queues the logout for the
/// home in one transaction, stops serving the small configuration and tells the home, which
/// resets the phone it holds (the phone then fetches its own configuration here and registers
/// back). When the home cannot be reached the phone is told here, at the address it
/// registered from before it left, and the home is told later ([`run_pending_logouts`]):
/// the logout is never lost. Nothing when the device had no EMCC login. Returns whether it
/// had one.
pub async fn visiting_logout(node: &Arc<NodeState>, device: &str) -> bool {
    // Only EMCC phones log in across clusters: other logouts cost nothing here.
    if !node
        .cluster()
        .section::<Emcc>()
        .phones
        .iter()
        .any(|p| p == device)
    {
        return false;
    }
    let shared = node.shared::<EmccShared>();
    shared.set_redirect(device, None);
    let now = unix_now();
    let row = match node.store.end_visiting_login(device, now).await {
        Ok(Some(r)) => r,
        Ok(None) => return false,
        Err(e) => {
            tracing::error!(device, error = %e, "EMCC: the visiting slot is not freed");
            return true;
        }
    };
    let svc = EmccService::new(node.clone());
    let lock = shared.device_lock(device);
    let _one = lock.lock().await;
    match tell_home(node, &svc, &row.remote_cluster, device, now).await {
        Ok(a) => tracing::info!(
            device,
            user = row.userid,
            home = row.remote_cluster,
            ended_at_home = a.ended,
            "EMCC: visiting logout"
        ),
        Err(why) => {
            tracing::warn!(
                device,
                home = row.remote_cluster,
                "EMCC: logout not told to the home (told later): {why}"
            );
            // The home cannot reset the phone: it is told here to fetch its configuration,
            // which is its own again.
            let contact = serde_json::from_str::<Redirect>(&row.settings)
                .ok()
                .and_then(|r| r.phone);
            match contact.as_ref().and_then(|c| {
                Some((
                    c,
                    c.source.parse::<std::net::SocketAddr>().ok()?,
                    crate::sip::transport::Transport::parse(&c.transport)?,
                ))
            }) {
                Some((c, source, transport)) => node.call_control.notify_contact(
                    device,
                    &c.contact,
                    source,
                    transport,
                    "check-sync",
                ),
                None => tracing::warn!(
                    device,
                    "EMCC: the phone's address here is not known; it comes back when it next fetches its configuration"
                ),
            }
            shared.pending.notify_one();
        }
    }
    true
}

/// Visiting side of a logout typed at the EM application by user ID and PIN: when `device`
/// holds an EMCC login here, the PIN is the user's home's and the home checks it (its PIN
/// lockout, its users), as at login; `None` when the device has no EMCC login (the PIN is
/// checked here). A home that cannot be reached cannot vouch for the PIN: EMApp's 208
/// ("EMService Connection Error"); the phone itself can still log out without a PIN.
pub async fn check_logout_pin(
    node: &Arc<NodeState>,
    device: &str,
    user: &str,
    pin: &str,
) -> Option<Result<(), u32>> {
    let rows = match node.store.emcc_devices(Role::Visiting).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(device, error = %e, "EMCC: EMCC logins cannot be read");
            return Some(Err(6));
        }
    };
    let row = rows.into_iter().find(|r| r.device == device)?;
    let q = PinQuery {
        api: api::API.into(),
        cluster: node.cluster().cluster.id.clone(),
        device: device.to_string(),
        userid: user.to_string(),
        pin: pin.to_string(),
    };
    let svc = EmccService::new(node.clone());
    match call_home::<_, PinAnswer>(node, &svc, &row.remote_cluster, api::PIN_PATH, &q).await {
        Ok(PinAnswer { error: None, .. }) => Some(Ok(())),
        Ok(PinAnswer { error: Some(c), .. }) => {
            tracing::info!(
                device,
                user,
                home = row.remote_cluster,
                code = c,
                "EMCC: logout PIN refused by the home"
            );
            Some(Err(c))
        }
        Err(why) => {
            tracing::warn!(
                device,
                home = row.remote_cluster,
                "EMCC: the logout PIN cannot be checked at the home: {why}"
            );
            Some(Err(208))
        }
    }
}

/// `POST /ucm/emcc/v1/logout-pin`: a visiting cluster asks whether `userid` and `pin` may end
/// the EMCC login of `device` it handed over: the PIN must be the user's here (this cluster's
/// PIN lockout counts it) and the user the one logged in at the device through that cluster.
/// One answer (201) for every refusal.
pub async fn logout_pin_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let peer = match remote_peer(&svc, listener, certs).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q: PinQuery = match read_query(&headers, body).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = super::other_peer(&q.api, &q.cluster, &peer) {
        return r;
    }
    let node = &svc.node;
    let me = node.cluster().cluster.id.clone();
    // The PIN first, always: an unknown user costs the same (dummy hash) and counts the same.
    let mut error = crate::services::em::app::check_pin(node, &q.userid, &q.pin)
        .await
        .err();
    if error.is_none() {
        let rows = match node.store.emcc_devices(Role::Home).await {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database cannot be read now: {e}\n"),
                )
            }
        };
        let held = rows
            .iter()
            .any(|r| r.device == q.device && r.remote_cluster == peer && r.userid == q.userid);
        if !held {
            error = Some(201);
        }
    }
    tracing::info!(
        device = q.device,
        visiting = peer,
        refused = ?error,
        "EMCC: logout PIN checked at the home"
    );
    axum::Json(PinAnswer {
        api: api::API.into(),
        cluster: me,
        device: q.device,
        error,
    })
    .into_response()
}

/// Tells the home of the logout queued at `queued_at`; acknowledged, the queued row goes.
async fn tell_home(
    node: &Arc<NodeState>,
    svc: &EmccService,
    home: &str,
    device: &str,
    queued_at: i64,
) -> Result<LogoutAnswer, String> {
    match logout_at_home(node, svc, home, device).await {
        Ok(a) => {
            if let Err(e) = node.store.logout_acknowledged(device, queued_at).await {
                tracing::error!(device, error = %e, "EMCC: an acknowledged logout stays queued (told again later)");
            }
            Ok(a)
        }
        Err(why) => {
            if let Err(e) = node
                .store
                .logout_attempt_failed(device, queued_at, &why)
                .await
            {
                tracing::error!(device, error = %e, "EMCC: a failed logout attempt is not recorded");
            }
            Err(why)
        }
    }
}

/// Visiting side: tells homes of the logouts they have not acknowledged, every
/// [`PENDING_LOGOUT_RETRY`] (sooner when a logout just failed to reach its home), until the
/// node stops. Every node of the cluster runs it; a home answers a repeated logout with
/// `ended: false`, so two nodes telling the same one do no harm.
pub async fn run_pending_logouts(
    node: Arc<NodeState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let shared = node.shared::<EmccShared>();
    let svc = EmccService::new(node.clone());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PENDING_LOGOUT_RETRY) => {}
            _ = shared.pending.notified() => {
                // Give the home a moment before trying again.
                tokio::select! {
                    _ = tokio::time::sleep(PENDING_LOGOUT_RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
            _ = stop.changed() => return,
        }
        let pending = match node.store.pending_logouts().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "EMCC: pending logouts not read");
                continue;
            }
        };
        for p in pending {
            let lock = shared.device_lock(&p.device);
            let _one = lock.lock().await;
            // Read again under the lock: a new login of the device may have dropped it.
            let still = node
                .store
                .pending_logouts()
                .await
                .map(|all| {
                    all.iter()
                        .any(|x| x.device == p.device && x.queued_at == p.queued_at)
                })
                .unwrap_or(false);
            if !still {
                continue;
            }
            match tell_home(&node, &svc, &p.home, &p.device, p.queued_at).await {
                Ok(a) => tracing::info!(
                    device = p.device,
                    home = p.home,
                    ended_at_home = a.ended,
                    attempts = p.attempts + 1,
                    "EMCC: a pending logout told to the home"
                ),
                Err(why) => tracing::info!(
                    device = p.device,
                    home = p.home,
                    "EMCC: a pending logout still not told: {why}"
                ),
            }
        }
    }
}

/// An EM refusal of the inter-cluster API: 409 with the answer naming the code.
fn refusal(cluster: &str, code: u32, message: String) -> Response {
    tracing::info!(code, "EMCC: login at the home refused: {message}");
    (
        StatusCode::CONFLICT,
        axum::Json(LoginAnswer {
            api: api::API.into(),
            cluster: cluster.to_string(),
            error: Some(code),
            message,
            slot: 0,
            profile: String::new(),
            tftp_servers: Vec::new(),
        }),
    )
        .into_response()
}

/// The home's TFTP servers for EMCC login devices: the configured default and backup, else
/// this node's own TFTP-over-HTTP listener (UNCONFIRMED fallback: Cisco answers error 39 when
/// neither is set; ucm's single-machine clusters bind their TFTP ports at run time).
fn home_tftp_servers(node: &NodeState) -> Vec<String> {
    let emcc = node.cluster().section::<Emcc>();
    let mut out: Vec<String> = [&emcc.default_tftp_server, &emcc.backup_tftp_server]
        .into_iter()
        .flatten()
        .map(|t| {
            if t.contains(':') {
                t.clone()
            } else {
                format!("{t}:{}", crate::node::TFTP_HTTP_PORT)
            }
        })
        .collect();
    if out.is_empty() && node.runs(NodeService::Tftp) {
        if let Some(a) = node.shared::<crate::services::tftp::TftpHttpAddr>().0.get() {
            let host = if a.ip().is_unspecified() {
                node.node.address.clone()
            } else {
                a.ip().to_string()
            };
            out.push(format!("{host}:{}", a.port()));
        }
    }
    out
}

/// `POST /ucm/emcc/v1/login`: a visiting cluster hands over a login of one of this cluster's
/// users at one of its phones.
pub async fn login_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let peer = match remote_peer(&svc, listener, certs).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q: LoginQuery = match read_query(&headers, body).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = super::other_peer(&q.api, &q.cluster, &peer) {
        return r;
    }
    let node = &svc.node;
    let cluster = node.cluster();
    let me = cluster.cluster.id.clone();
    let device = q.device.name.clone();
    if !crate::config::validate::is_device_name(&device) {
        return refusal(&me, 32, format!("{device:?} is not a phone's device name"));
    }
    // A login typed at the phone's EM application: the PIN is checked here, at the user's
    // home, under this cluster's PIN lockout (an unknown user is checked against a dummy hash
    // all the same, so the answer does not tell which users live here).
    if let Some(pin) = &q.pin {
        if let Err(code) = crate::services::em::app::check_pin(node, &q.userid, pin).await {
            let why = if code == 201 {
                "wrong user ID or PIN (or the PIN is locked out)".to_string()
            } else {
                format!("the PIN cannot be checked now (EM error {code})")
            };
            return refusal(&me, code, why);
        }
    }
    let Some(user) = cluster.end_user(&q.userid).filter(|u| u.home_cluster) else {
        return refusal(
            &me,
            23,
            format!("{} is not a user whose home is cluster {me}", q.userid),
        );
    };
    let profile = match q
        .profile
        .clone()
        .or_else(|| user.default_profile.clone())
        .or_else(|| user.device_profiles.first().cloned())
    {
        Some(p) if user.device_profiles.contains(&p) && cluster.device_profile(&p).is_some() => p,
        Some(p) => return refusal(&me, 12, format!("{} has no device profile {p}", q.userid)),
        None => return refusal(&me, 12, format!("{} has no device profile", q.userid)),
    };
    // A device of this cluster by the same name: Cisco's error 37 (duplicate device name;
    // the seed's advice is to disable auto-registration). The run-time devices are EMCC's own.
    let held = match node.store.emcc_devices(Role::Home).await {
        Ok(rows) => rows.into_iter().any(|r| r.device == device),
        Err(e) => return refusal(&me, 6, format!("database: {e}")),
    };
    if !held && cluster.device(&device).is_some() {
        return refusal(
            &me,
            37,
            format!("{device} is also a device of cluster {me}"),
        );
    }
    // Table 18-2: a phone in secure mode keeps its mode at a 9.x-or-later home in mixed mode;
    // anywhere else its login fails.
    if q.device.security_mode != "non-secure" {
        let mixed = cluster.cluster.security_mode == SecurityMode::Mixed;
        if version_major(&cluster.cluster.version) < 9 || version_major(&q.version) < 9 || !mixed {
            return refusal(
                &me,
                46,
                format!(
                    "{device} is in {} mode: a secure phone logs in only at a home running 9.x or later in mixed mode (cluster {me} runs {} in {} mode)",
                    q.device.security_mode,
                    cluster.cluster.version,
                    if mixed { "mixed" } else { "non-secure" }
                ),
            );
        }
    }
    let emcc = cluster.section::<Emcc>();
    if emcc.roaming_device_pools.is_empty() {
        return refusal(
            &me,
            35,
            format!("cluster {me} has no EMCC roaming device pool for visiting phones"),
        );
    }
    let tftp_servers = home_tftp_servers(node);
    if tftp_servers.is_empty() {
        return refusal(
            &me,
            39,
            format!("cluster {me} has no Default TFTP Server for EMCC Login Device and no TFTP service on this node"),
        );
    }
    let row = EmccDeviceRow {
        role: Role::Home,
        device: device.clone(),
        slot: 0,
        userid: q.userid.clone(),
        remote_cluster: peer.clone(),
        profile: profile.clone(),
        settings: serde_json::to_string(&q.device).unwrap_or_default(),
        logged_in_at: unix_now(),
        node: node.node.name.clone(),
    };
    let mut taken = node.store.take_emcc_slot(&row, emcc.max_emcc_devices).await;
    if let Err(SlotRefused::DeviceTaken(old)) = &taken {
        // The same visiting cluster again (its side lost the login, or a retry): the new
        // login replaces the old one.
        if old.remote_cluster == peer {
            let _ = node.store.free_emcc_slot(Role::Home, &device).await;
            taken = node.store.take_emcc_slot(&row, emcc.max_emcc_devices).await;
        }
    }
    let taken = match taken {
        Ok(t) => t,
        Err(SlotRefused::Full { cap }) => {
            return refusal(
                &me,
                33,
                format!("no free EMCC device at cluster {me}: all {cap} are taken"),
            )
        }
        Err(SlotRefused::DeviceTaken(old)) => {
            return refusal(
                &me,
                37,
                format!(
                    "{device} is already logged in here from cluster {}",
                    old.remote_cluster
                ),
            )
        }
        Err(SlotRefused::Store(e)) => return refusal(&me, 6, format!("database: {e}")),
    };
    if let Err(e) = sync_home_devices(node).await {
        let _ = node.store.free_emcc_slot(Role::Home, &device).await;
        return refusal(&me, 6, format!("database: {e}"));
    }
    tracing::info!(
        device,
        user = q.userid,
        visiting = peer,
        profile,
        slot = taken.slot,
        "EMCC: login at the home: EMCC{} is {device}",
        taken.slot
    );
    axum::Json(LoginAnswer {
        api: api::API.into(),
        cluster: me,
        error: None,
        message: String::new(),
        slot: taken.slot,
        profile,
        tftp_servers,
    })
    .into_response()
}

/// `POST /ucm/emcc/v1/logout`: the visiting cluster ended a login it handed over. The slot is
/// freed, the device leaves the cluster and the phone is told to fetch its configuration
/// again (SIP NOTIFY check-sync through this cluster, where it is registered).
pub async fn logout_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let peer = match remote_peer(&svc, listener, certs).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q: LogoutQuery = match read_query(&headers, body).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = super::other_peer(&q.api, &q.cluster, &peer) {
        return r;
    }
    let node = &svc.node;
    let me = node.cluster().cluster.id.clone();
    let rows = match node.store.emcc_devices(Role::Home).await {
        Ok(r) => r,
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the database cannot be read now: {e}\n"),
            )
        }
    };
    // Only the visiting cluster that handed the device over may end its login.
    let mine = rows
        .iter()
        .any(|r| r.device == q.device && r.remote_cluster == peer);
    let mut ended = false;
    if mine {
        match node.store.free_emcc_slot(Role::Home, &q.device).await {
            Ok(r) => ended = r.is_some(),
            Err(e) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the database cannot be written now: {e}\n"),
                )
            }
        }
        if let Err(e) = sync_home_devices(node).await {
            tracing::error!(error = %e, "EMCC: run-time devices not rebuilt");
        }
        node.call_control.notify_device(&q.device, "check-sync");
        tracing::info!(
            device = q.device,
            visiting = peer,
            "EMCC: logout at the home"
        );
    }
    axum::Json(LogoutAnswer {
        api: api::API.into(),
        cluster: me,
        device: q.device,
        ended,
    })
    .into_response()
}
