//! The Paging Server's part of the cluster definition: the top-level `paging` section.

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for Paging {
    const PATH: &'static [&'static str] = &["paging"];
    // Most clusters page nobody: a definition leaves the section out then.
    const OMIT_DEFAULT: bool = true;
}

/// The Paging Server: recipient groups, the DialCast route points that page them, and how a
/// page is carried (multicast addresses, port, TTL, join timeout, busy phones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    /// The user named in every push to a phone's `/CGI/Execute` (an application user with
    /// `cti-control-all-devices`). The node presents a secret of its own for it, made at start
    /// and checked by the authentication URL, as InformaCast answers for its own pushes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Most phones a recipient group may hold (InformaCast Basic Paging's 50).
    #[serde(default = "default_max_group_size")]
    pub max_group_size: usize,
    /// Addresses for pages whose phones are not all in one location with its own range.
    #[serde(default = "default_paging_range")]
    pub multicast_range: String,
    /// The (even) port every page streams to; phones receive on 20480..32768.
    #[serde(default = "default_paging_port")]
    pub multicast_port: u16,
    /// TTL of the multicast stream (routers between sites decrement it).
    #[serde(default = "default_paging_ttl")]
    pub multicast_ttl: u32,
    /// Speaker volume (0-100) pushed with `RTPMRx`; absent: the phone's current volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u8>,
    /// How long the caller hears the stall tone at most while phones join.
    #[serde(default = "default_join_timeout_ms")]
    pub join_timeout_ms: u64,
    #[serde(default)]
    pub busy_phones: BusyPhones,
    /// The port of the phones' web servers (`/CGI/Execute`).
    #[serde(default = "default_phone_http_port")]
    pub phone_http_port: u16,
    /// Pages that may run at once; a DialCast call beyond it gets 486.
    #[serde(default = "default_max_concurrent_pages")]
    pub max_concurrent_pages: usize,
    /// Longest page; the call is ended then.
    #[serde(default = "default_max_page_seconds")]
    pub max_page_seconds: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_groups: Vec<RecipientGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dialcasts: Vec<DialCast>,
}

fn default_max_group_size() -> usize {
    50
}
fn default_paging_range() -> String {
    "239.0.1.0/24".into()
}
fn default_paging_port() -> u16 {
    20480
}
fn default_paging_ttl() -> u32 {
    // UNCONFIRMED: InformaCast's default TTL is not documented; 16 crosses a campus.
    16
}
fn default_join_timeout_ms() -> u64 {
    2000
}
fn default_phone_http_port() -> u16 {
    80
}
fn default_max_concurrent_pages() -> usize {
    16
}
fn default_max_page_seconds() -> u64 {
    600
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            user: None,
            max_group_size: default_max_group_size(),
            multicast_range: default_paging_range(),
            multicast_port: default_paging_port(),
            multicast_ttl: default_paging_ttl(),
            volume: None,
            join_timeout_ms: default_join_timeout_ms(),
            busy_phones: BusyPhones::default(),
            phone_http_port: default_phone_http_port(),
            max_concurrent_pages: default_max_concurrent_pages(),
            max_page_seconds: default_max_page_seconds(),
            recipient_groups: Vec::new(),
            dialcasts: Vec::new(),
        }
    }
}

/// What a page does with a phone that is on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BusyPhones {
    /// Leave it out (reported as busy).
    #[default]
    Skip,
    /// Page it anyway; the phone decides (a real one offers to play the stream).
    Page,
}

/// A recipient group: the phones a page reaches, the union of what each list names. Do Not
/// Disturb does not keep a phone out (the seed: the Paging Server ignores DND).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// Phones with a line matching one of these patterns (Cisco wildcards: `2XXXX`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dn_patterns: Vec<String>,
    /// Phones whose description matches one of these, ignoring case: `*` any run of
    /// characters, `?` one (`"*lobby*"`, `"Lab phone 1?"`), as paging servers group by the
    /// description AXL gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptions: Vec<String>,
    /// Phones whose own calling search space is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calling_search_spaces: Vec<String>,
    /// This group's own cap, above `max_group_size` when a bigger group is wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_phones: Option<usize>,
}

/// A DialCast number: calls to the route point's lines page the recipient group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialCast {
    pub route_point: String,
    pub recipient_group: String,
}
