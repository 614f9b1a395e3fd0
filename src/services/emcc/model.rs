//! Extension Mobility Cross Cluster's part of the cluster definition: the top-level `emcc`
//! section (Cisco's EMCC Feature Configuration, EMCC Remote Cluster and the EMCC settings of
//! trunks, device pools, device profiles and phones, which the generic model does not carry).

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for Emcc {
    const PATH: &'static [&'static str] = &["emcc"];
    // Most clusters have no EMCC partner: a definition leaves the section out then.
    const OMIT_DEFAULT: bool = true;
}

/// Extension Mobility Cross Cluster: the other clusters this one exchanges logins with, how
/// often it asks them about themselves, and which of its own objects take part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emcc {
    /// Remote Cluster Update Interval (minutes, 15 to 10080): how often the EM service of each
    /// node asks every remote cluster for its version and services (also at start and on
    /// demand, `POST /ucm/emcc/update`).
    #[serde(default = "default_update_minutes")]
    pub remote_cluster_update_minutes: u32,
    /// EMCC Remote Clusters, each named by one address of a node running its EM service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_clusters: Vec<RemoteCluster>,
    /// The SIP trunks whose Trunk Service Type is "Extension Mobility Cross Clusters" (at
    /// most two), and which EMCC services each carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunks: Vec<EmccTrunk>,
    /// EMCC roaming device pools: what a visiting phone of another cluster is put in at this
    /// (its home) cluster. Their Adjunct CSS holds the emergency patterns that go back to the
    /// visiting cluster through the Standard Local Route Group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roaming_device_pools: Vec<String>,
    /// The EMCC CSS of device profiles (searched after the line CSS while the user is logged
    /// in at another cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_profiles: Vec<EmccProfile>,
    /// Phones with "Enable Extension Mobility Cross Cluster" set (they must be EM enabled):
    /// users of other clusters may log in at them (their home cluster then registers them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// Cluster-wide cap on EMCC logged-in devices (the seed: 2,500 per cluster).
    #[serde(default = "default_max_devices")]
    pub max_emcc_devices: u32,
    /// Default TFTP Server for EMCC Login Device (host or host:port): where a visiting phone
    /// of this cluster's users fetches its home configuration (told to the visiting cluster at
    /// each login; when unset, the TFTP-over-HTTP listener of the node that took the login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tftp_server: Option<String>,
    /// Backup TFTP Server for EMCC Login Device (host or host:port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_tftp_server: Option<String>,
    /// CSS for PSTN Access SIP Trunk: what a call of one of this cluster's phones, sent back
    /// by its user's home over the EMCC SIP trunk, is routed with here: the trunk's CSS
    /// (default) or the phone's original device CSS. Either way the phone's device pool gives
    /// the Standard Local Route Group.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pstn_access_css: PstnAccessCss,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Cisco's "CSS for PSTN Access SIP Trunk".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PstnAccessCss {
    /// Use Trunk CSS.
    #[default]
    Trunk,
    /// Use phone's original device CSS.
    Phone,
}

fn default_update_minutes() -> u32 {
    30
}
fn default_max_devices() -> u32 {
    2500
}

impl Default for Emcc {
    fn default() -> Self {
        Emcc {
            remote_cluster_update_minutes: default_update_minutes(),
            remote_clusters: Vec::new(),
            trunks: Vec::new(),
            roaming_device_pools: Vec::new(),
            device_profiles: Vec::new(),
            phones: Vec::new(),
            max_emcc_devices: default_max_devices(),
            default_tftp_server: None,
            backup_tftp_server: None,
            pstn_access_css: PstnAccessCss::Trunk,
        }
    }
}

/// An EMCC Remote Cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteCluster {
    /// Its enterprise parameter Cluster ID (`cluster.id` of its definition): an answer from
    /// another cluster at the address is refused.
    pub cluster_id: String,
    /// Fully Qualified Name: one address (IP or host name, optionally `:port`; default 8443)
    /// of a node running its EM service, reached over HTTPS.
    pub address: String,
    /// Free text for administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The default HTTPS port of a remote cluster's address.
pub const REMOTE_HTTPS_PORT: u16 = 8443;

impl RemoteCluster {
    /// `host:port` of its address (IPv6 in brackets), the port 8443 when none is given.
    pub fn authority(&self) -> String {
        let a = self.address.trim();
        if a.parse::<std::net::Ipv6Addr>().is_ok() {
            return format!("[{a}]:{REMOTE_HTTPS_PORT}");
        }
        if a.starts_with('[') && a.ends_with(']') {
            return format!("{a}:{REMOTE_HTTPS_PORT}");
        }
        match a.rsplit_once(':') {
            Some((_, p)) if p.parse::<u16>().is_ok() => a.to_string(),
            _ => format!("{a}:{REMOTE_HTTPS_PORT}"),
        }
    }
}

/// An EMCC service a trunk carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrunkService {
    /// PSTN calls (emergency calls above all) of a visiting phone, sent back to its cluster.
    PstnAccess,
    /// RSVP agents of the visiting phone's cluster.
    RsvpAgent,
}

impl TrunkService {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkService::PstnAccess => "pstn-access",
            TrunkService::RsvpAgent => "rsvp-agent",
        }
    }
}

/// A SIP trunk of Trunk Service Type "Extension Mobility Cross Clusters".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmccTrunk {
    /// A trunk of `sip_trunks`; the nodes that handle it are its device pool's Unified CM
    /// group, in order (the first three are told to remote clusters).
    pub sip_trunk: String,
    /// The services it carries (at least one; each service on one trunk only).
    pub services: Vec<TrunkService>,
}

/// A device profile's EMCC CSS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmccProfile {
    /// A device profile of `device_profiles`.
    pub device_profile: String,
    /// Its EMCC CSS, searched after the line CSS while its user is logged in at another
    /// cluster (the seed's Figure 18-6: Adjunct CSS, line CSS, EMCC CSS).
    pub emcc_css: String,
}
