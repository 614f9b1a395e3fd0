//! ucm's inter-cluster API for Extension Mobility Cross Cluster: what the EM services of two
//! clusters say to each other. Cisco's own exchange is not public (UNCONFIRMED: its URL and
//! schema are not documented; see the interfaces spec, section 7), so ucm defines this one.
//!
//! It runs over HTTPS on a node running the EM service (8443 by default) with **mutual**
//! verification against the certificates the clusters exchanged (`ucm emcc sync-certs`): the
//! asking node presents its own HTTPS (Tomcat) certificate as its client certificate and the
//! answering node accepts it only when it is in its Tomcat-trust store and belongs to one of
//! its EMCC remote clusters; the asking node verifies the answering node's certificate
//! against its own Tomcat-trust store. Nothing else authenticates it.
//!
//! Remote cluster update: `POST /ucm/emcc/v1/cluster` with a [`ClusterQuery`] (JSON, at most
//! [`MAX_BODY_BYTES`]) answers a [`ClusterInfo`]: the cluster's id and Unified CM version,
//! its first three EM service nodes in order, and the EMCC trunk services it enabled
//! (`pstn-access`, `rsvp-agent`) with up to three nodes each (the Unified CM group of the
//! trunk's device pool). Refusals are plain text with 400 (not a query), 403 (no client
//! certificate, one not in Tomcat-trust, or a cluster that is not a remote cluster here), 413
//! (too big).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The remote cluster update.
pub const CLUSTER_PATH: &str = "/ucm/emcc/v1/cluster";
/// An administrator's "Update Remote Cluster Now" (HTTPS, HTTP Basic, administrator role):
/// answers the outcome per remote cluster as JSON.
pub const UPDATE_PATH: &str = "/ucm/emcc/update";
/// The API's name and version, in every message.
pub const API: &str = "ucm-emcc/1";
/// The largest request body the inter-cluster API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// At most this many EM service nodes and trunk nodes are told (Cisco's three).
pub const MAX_NODES: usize = 3;

/// What the asking cluster says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterQuery {
    pub api: String,
    /// Its Cluster ID.
    pub cluster: String,
    pub version: String,
}

/// The answer: the answering cluster's version and services.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub api: String,
    pub cluster: String,
    pub version: String,
    /// HTTPS base URLs of its first three EM service nodes, in order.
    pub em_service_nodes: Vec<String>,
    /// Enabled EMCC trunk services (`pstn-access`, `rsvp-agent`), each with up to three nodes
    /// (`host:port` of their SIP service), in order.
    pub trunk_services: BTreeMap<String, Vec<String>>,
}

/// The home lookup: is `userid` a user whose home is the answering cluster?
pub const USER_PATH: &str = "/ucm/emcc/v1/user";

/// What the visiting cluster asks each remote cluster when a user who is not at home here
/// logs in at one of its EMCC phones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    pub api: String,
    /// The asking (visiting) cluster's id.
    pub cluster: String,
    pub userid: String,
}

/// The answer: `home` when the user exists at the answering cluster with its home-cluster
/// flag set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub api: String,
    pub cluster: String,
    pub userid: String,
    pub home: bool,
}

/// The login at the home: the visiting cluster hands it a login of one of the home's users
/// at one of its EMCC phones. UNCONFIRMED: Cisco's exchange (what the visiting EM service
/// sends so that the home "brings the device information into the home cluster database")
/// is not public; this is ucm's.
pub const LOGIN_PATH: &str = "/ucm/emcc/v1/login";
/// The logout at the home: the visiting cluster ends a login it handed over.
pub const LOGOUT_PATH: &str = "/ucm/emcc/v1/logout";

/// The visiting phone's settings the home's configuration takes over (the seed: "some device
/// configuration from the visiting cluster").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitingDevice {
    /// `SEP<MAC>`.
    pub name: String,
    pub model: String,
    /// The device security mode of its security profile: `non-secure`, `authenticated` or
    /// `encrypted`.
    pub security_mode: String,
    /// The SIP transport of its security profile (`udp`, `tcp`, `tls`).
    pub transport: String,
    /// Its user locale at the visiting cluster (kept when the profile has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_locale: Option<String>,
}

/// `POST /ucm/emcc/v1/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    pub api: String,
    /// The visiting cluster's id and Unified CM version.
    pub cluster: String,
    pub version: String,
    pub userid: String,
    /// The device profile asked for; the user's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub device: VisitingDevice,
    /// The PIN the user typed at the phone's EM application: the home checks it (with its PIN
    /// lockout) before anything else. Absent for a login through the visiting cluster's EM
    /// API, where the visiting cluster vouches for its EM proxy application user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// The home's answer to a login: the login it made, or the EM error why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAnswer {
    pub api: String,
    pub cluster: String,
    /// `Some`: refused with this EM (EMCC) error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u32>,
    #[serde(default)]
    pub message: String,
    /// The EMCC device slot the device holds at the home (`EMCC<n>`).
    #[serde(default)]
    pub slot: i64,
    pub profile: String,
    /// Where the phone fetches its home configuration over TFTP-over-HTTP (`host:port`): the
    /// home's Default, then Backup TFTP Server for EMCC Login Device.
    #[serde(default)]
    pub tftp_servers: Vec<String>,
}

/// `POST /ucm/emcc/v1/logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutQuery {
    pub api: String,
    pub cluster: String,
    pub device: String,
}

/// The check at the home of a logout typed at the visiting phone's EM application by user ID
/// and PIN (from another device, or a phone that is not the logged-in one): the PIN is the
/// home's, as at login, so the visiting cluster asks before it ends the login.
pub const PIN_PATH: &str = "/ucm/emcc/v1/logout-pin";

/// `POST /ucm/emcc/v1/logout-pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinQuery {
    pub api: String,
    pub cluster: String,
    /// The EMCC logged-in device the logout is for.
    pub device: String,
    pub userid: String,
    pub pin: String,
}

/// The home's answer to a [`PinQuery`]: `error` is `None` when the PIN is the user's and the
/// user is the one logged in at the device through the asking cluster; else Cisco's 201 (one
/// answer for a wrong user, a wrong PIN and a lockout: nothing learnt of who is logged in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinAnswer {
    pub api: String,
    pub cluster: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<u32>,
}

/// The answer to a logout: whether the home held the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutAnswer {
    pub api: String,
    pub cluster: String,
    pub device: String,
    pub ended: bool,
}
