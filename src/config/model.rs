//! The cluster definition: everything a ucm cluster is configured with, in Unified CM's own vocabulary.
//!
//! This is both the YAML schema (`fixtures/clusters/demo.yaml`) and what the store keeps. Every
//! struct denies unknown fields so a misspelt key is an error with its line, not a silent default
//! (the two that hold the services' sections are checked by the reader, which knows them).
//! Field order here is the order `ucm db export` writes. The services' sections live in their
//! own folders (`services/<service>/model.rs`).

use serde::{Deserialize, Serialize};

use super::section::{Section, Sections};
use crate::net::Dscp;

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}

// The top level of a definition. Unknown keys are refused by the reader, which knows the
// services' sections (kept in `sections`); see `super::section`. Read by hand (below): serde's
// own `flatten` would buffer the whole document before reading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDefinition {
    pub cluster: ClusterInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub enterprise_parameters: EnterpriseParameters,
    #[serde(default)]
    pub service_parameters: ServiceParameters,
    #[serde(default)]
    pub qos: QosParameters,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<Partition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calling_search_spaces: Vec<CallingSearchSpace>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Location>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_pools: Vec<DevicePool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sip_trunks: Vec<SipTrunk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_groups: Vec<RouteGroup>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_lists: Vec<RouteList>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_patterns: Vec<RoutePattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub translation_patterns: Vec<TranslationPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_security_profiles: Vec<PhoneSecurityProfile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phone_services: Vec<PhoneService>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory_numbers: Vec<DirectoryNumber>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_profiles: Vec<DeviceProfile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_points: Vec<RoutePoint>,
    /// The services' top-level sections (`paging`), as values; read them typed with
    /// [`ClusterDefinition::section`].
    #[serde(flatten)]
    pub sections: Sections,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_users: Vec<EndUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_users: Vec<ApplicationUser>,
}

/// The top-level keys of the generic model, in the order a definition writes them, with the
/// place of the services' sections (`None`); what an unknown key's error lists.
pub const TOP_LEVEL: &[Option<&str>] = &[
    Some("cluster"),
    Some("nodes"),
    Some("enterprise_parameters"),
    Some("service_parameters"),
    Some("qos"),
    Some("partitions"),
    Some("calling_search_spaces"),
    Some("regions"),
    Some("locations"),
    Some("device_pools"),
    Some("sip_trunks"),
    Some("route_groups"),
    Some("route_lists"),
    Some("route_patterns"),
    Some("translation_patterns"),
    Some("phone_security_profiles"),
    Some("phone_services"),
    Some("directory_numbers"),
    Some("devices"),
    Some("device_profiles"),
    Some("route_points"),
    None,
    Some("end_users"),
    Some("application_users"),
];

/// The keys of `service_parameters` in the generic model (the services' follow).
pub const SERVICE_PARAMETERS: &[&str] = &["call_manager"];

/// The top-level keys whose values are single mappings (the others are lists), besides the
/// services' sections, which are all mappings.
pub const SETTINGS: &[&str] = &[
    "cluster",
    "enterprise_parameters",
    "service_parameters",
    "qos",
];

/// Reads the generic fields as they are and every other key as a service section's value.
macro_rules! definition_visitor {
    ($($f:ident),*) => {
        impl<'de> Deserialize<'de> for ClusterDefinition {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::{Error, MapAccess, Visitor};
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = ClusterDefinition;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("struct ClusterDefinition")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<ClusterDefinition, A::Error> {
                        let mut cluster = None;
                        $( let mut $f = None; )*
                        let mut sections = Sections::default();
                        while let Some(key) = map.next_key::<String>()? {
                            match key.as_str() {
                                "cluster" => {
                                    if cluster.is_some() {
                                        return Err(A::Error::duplicate_field("cluster"));
                                    }
                                    cluster = Some(map.next_value()?);
                                }
                                $( stringify!($f) => {
                                    if $f.is_some() {
                                        return Err(A::Error::duplicate_field(stringify!($f)));
                                    }
                                    $f = Some(map.next_value()?);
                                } )*
                                other => {
                                    let v: serde_json::Value = map.next_value()?;
                                    sections.set(other, v);
                                }
                            }
                        }
                        Ok(ClusterDefinition {
                            cluster: cluster.ok_or_else(|| A::Error::missing_field("cluster"))?,
                            $( $f: $f.unwrap_or_default(), )*
                            sections,
                        })
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

definition_visitor!(
    nodes,
    enterprise_parameters,
    service_parameters,
    qos,
    partitions,
    calling_search_spaces,
    regions,
    locations,
    device_pools,
    sip_trunks,
    route_groups,
    route_lists,
    route_patterns,
    translation_patterns,
    phone_security_profiles,
    phone_services,
    directory_numbers,
    devices,
    device_profiles,
    route_points,
    end_users,
    application_users
);

impl ClusterDefinition {
    /// A service's section, typed: its defaults when the definition leaves it out. Parses the
    /// value each call; running code reads it through the cluster snapshot, which keeps it.
    pub fn section<T: Section>(&self) -> T {
        self.section_value(T::PATH)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Replaces a service's section.
    pub fn set_section<T: Section>(&mut self, t: &T) {
        let v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
        match T::PATH {
            [key] => self.sections.set(key, v),
            [_, key] => self.service_parameters.sections.set(key, v),
            _ => {}
        }
    }

    /// The stored value of the section at `path` (see [`Section::PATH`]).
    pub fn section_value(&self, path: &[&str]) -> Option<&serde_json::Value> {
        match path {
            [key] => self.sections.get(key),
            ["service_parameters", key] => self.service_parameters.sections.get(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    /// The enterprise parameter Cluster ID (EMCC and the Redirector compare it).
    pub id: String,
    pub name: String,
    /// The Unified CM version this cluster presents (EMCC version checks).
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub security_mode: SecurityMode,
}

pub(crate) fn default_version() -> String {
    "14.0".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityMode {
    #[default]
    NonSecure,
    Mixed,
}

/// A server of the cluster and the services activated on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    /// The address phones and peers use to reach this node.
    pub address: String,
    /// The services this node runs. Left out: every service (an all-in-one node).
    #[serde(default = "NodeService::all")]
    pub services: Vec<NodeService>,
    /// Address to listen on (default: every address). `--bind` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<std::net::IpAddr>,
    /// Listening ports; absent means the standard port, 0 any free port. Flags override them.
    #[serde(default, skip_serializing_if = "NodePorts::is_empty")]
    pub ports: NodePorts,
    /// How the other nodes send calls to this node over the intra-cluster trunk: `udp` (the
    /// default, to `ports.sip`), `tcp` (to `ports.sip`) or `tls` (to `ports.sips`, 5061 when
    /// left out; the sender verifies the certificate this node stored in the database).
    #[serde(default, skip_serializing_if = "SipTransport::is_udp")]
    pub sip_transport: SipTransport,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePorts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_http: Option<u16>,
    /// TFTP on UDP (standard 69).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp: Option<u16>,
    /// SIP over UDP and TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sips: Option<u16>,
    /// The SNMP agent on UDP (standard 161).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<u16>,
    /// The Assistant Console on TCP (standard 2912), on a node running `assistant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_console: Option<u16>,
    /// The Attendant Console's console protocol (HTTPS + WebSocket; ucm's own: 8446).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attendant_console: Option<u16>,
}

impl NodePorts {
    fn is_empty(&self) -> bool {
        self == &NodePorts::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeService {
    CallProcessing,
    Tftp,
    PhoneServices,
    ExtensionMobility,
    EmApplication,
    Webdialer,
    Redirector,
    Assistant,
    Attendant,
    Paging,
    /// The SNMP agent (Cisco CallManager SNMP Service): CISCO-CCM-MIB for this node.
    Snmp,
    /// AXL (Cisco AXL Web Service) on `/axl/`.
    Axl,
}

impl NodeService {
    /// The flag as `nodes[].services` spells it.
    pub fn flag(self) -> &'static str {
        use NodeService::*;
        match self {
            CallProcessing => "call-processing",
            Tftp => "tftp",
            PhoneServices => "phone-services",
            ExtensionMobility => "extension-mobility",
            EmApplication => "em-application",
            Webdialer => "webdialer",
            Redirector => "redirector",
            Assistant => "assistant",
            Attendant => "attendant",
            Paging => "paging",
            Snmp => "snmp",
            Axl => "axl",
        }
    }

    /// Every service, in the order a node starts them.
    pub fn all() -> Vec<NodeService> {
        use NodeService::*;
        vec![
            CallProcessing,
            Tftp,
            PhoneServices,
            ExtensionMobility,
            EmApplication,
            Webdialer,
            Redirector,
            Assistant,
            Attendant,
            Paging,
            Snmp,
            Axl,
        ]
    }
}

impl Node {
    /// Whether this node runs `service`.
    pub fn runs(&self, service: NodeService) -> bool {
        self.services.contains(&service)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServicesProvisioning {
    /// The phone takes its service list from its configuration file (Cisco's default).
    #[default]
    Internal,
    /// The phone asks the services URL (getservicesmenu.jsp).
    ExternalUrl,
    Both,
}

/// Enterprise parameters. URLs left out default to this node's own endpoints at run time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseParameters {
    #[serde(default)]
    pub services_provisioning: ServicesProvisioning,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_services: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_authentication: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_directories: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_idle: Option<String>,
    /// Seconds of idle before the phone fetches URL Idle; 0 disables it.
    #[serde(default)]
    pub url_idle_time: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_messages: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_services: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_authentication: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_directories: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_idle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url_messages: Option<String>,
}

// Service parameters: call control's here, each service's in its own section (its model lives
// with the service). Unknown keys are refused by the reader.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServiceParameters {
    #[serde(default)]
    pub call_manager: CallManagerParameters,
    /// The services' sections (`extension_mobility`, `webdialer`, ...), as values.
    #[serde(flatten)]
    pub sections: Sections,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallManagerParameters {
    /// Forward No Answer Timer (seconds) for lines that set none.
    #[serde(default = "default_cfna_timer")]
    pub forward_no_answer_timer: u32,
    /// Seconds a route point's service has to act before the route point's forwarding applies.
    #[serde(default = "default_route_point_timeout")]
    pub route_point_timeout: u32,
    /// Registration expiry granted to phones (seconds).
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
}

fn default_cfna_timer() -> u32 {
    12
}
fn default_route_point_timeout() -> u32 {
    5
}
fn default_register_expires() -> u32 {
    3600
}

impl Default for CallManagerParameters {
    fn default() -> Self {
        CallManagerParameters {
            forward_no_answer_timer: default_cfna_timer(),
            route_point_timeout: default_route_point_timeout(),
            register_expires: default_register_expires(),
        }
    }
}

/// DSCP values: the node marks its own sockets with them and writes them into phone
/// configuration files. Defaults are Cisco's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosParameters {
    #[serde(default = "cs3")]
    pub call_signalling: Dscp,
    #[serde(default = "ef")]
    pub audio: Dscp,
    #[serde(default = "af41")]
    pub video: Dscp,
    /// HTTP, HTTPS and TFTP towards phones and browsers.
    #[serde(default = "cs0")]
    pub phone_configuration: Dscp,
    #[serde(default = "cs0")]
    pub phone_services: Dscp,
}

fn cs3() -> Dscp {
    Dscp::CS3
}
fn ef() -> Dscp {
    Dscp::EF
}
fn af41() -> Dscp {
    Dscp::AF41
}
fn cs0() -> Dscp {
    Dscp::CS0
}

impl Default for QosParameters {
    fn default() -> Self {
        QosParameters {
            call_signalling: cs3(),
            audio: ef(),
            video: af41(),
            phone_configuration: cs0(),
            phone_services: cs0(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An ordered list of partitions: digit analysis searches them in this order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallingSearchSpace {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub partitions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    /// Max audio bit rate within the region (kbit/s): 64 allows G.711.
    #[serde(default = "default_bitrate")]
    pub max_audio_bit_rate: u32,
}

fn default_bitrate() -> u32 {
    64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub name: String,
    /// The paging multicast range for this site, e.g. `239.1.1.0/24` (sites never share one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multicast_range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePool {
    pub name: String,
    /// The Unified CM group: nodes in priority order.
    #[serde(default)]
    pub node_group: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srst_reference: Option<String>,
    /// Adjunct CSS: searched after the device CSS (EMCC roaming, as Cisco uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjunct_css: Option<String>,
    /// The route group the Standard Local Route Group means for devices in this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_route_group: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SipTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl SipTransport {
    pub fn is_udp(&self) -> bool {
        *self == SipTransport::Udp
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTrunk {
    pub name: String,
    /// `host:port` destinations tried in order; the host is an IP address or a name (every
    /// address of a name is tried, in order).
    pub destinations: Vec<String>,
    #[serde(default)]
    pub transport: SipTransport,
    pub device_pool: String,
    /// Inbound calling search space for calls arriving on the trunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `transport: tls` only: a PEM file of the CA certificates the peer's certificate must
    /// chain to (a relative path is taken from ucm's working directory). Without it the
    /// system's trust store and this node's own certificate are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// `transport: tls` only: the name the peer's certificate must carry; defaults to the
    /// destination's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    #[default]
    TopDown,
    Circular,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteGroup {
    pub name: String,
    #[serde(default)]
    pub distribution: Distribution,
    /// SIP trunks, in order.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteList {
    pub name: String,
    /// Route groups in order; `Standard Local Route Group` resolves through the caller's pool.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscardDigits {
    /// Drop the digits matched before the `.` of the pattern.
    PreDot,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePattern {
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_list: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_trunk: Option<String>,
    /// A blocking pattern: calls matching it are refused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub block: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_digits: Option<DiscardDigits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called_party_transform_mask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_digits: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranslationPattern {
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// CSS the translated number is analysed with; absent means the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_digits: Option<DiscardDigits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub called_party_transform_mask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_digits: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSecurityMode {
    #[default]
    NonSecure,
    Authenticated,
    Encrypted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSecurityProfile {
    pub name: String,
    #[serde(default)]
    pub device_security_mode: DeviceSecurityMode,
    #[serde(default)]
    pub transport: SipTransport,
    /// Registrations from devices with this profile must pass digest authentication.
    #[serde(default)]
    pub digest_authentication: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    #[default]
    Services,
    Directories,
    Messages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceCategory {
    #[default]
    Xml,
    JavaMidlet,
}

/// An IP phone service (Device > Device Settings > Phone Services).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneService {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// May carry phone parameters such as `#DEVICENAME#`; `{http}`/`{https}` stand for this
    /// node's own base URLs.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_url: Option<String>,
    #[serde(default)]
    pub service_type: ServiceType,
    #[serde(default)]
    pub category: ServiceCategory,
    /// Subscribed on every phone without per-device subscription.
    #[serde(default)]
    pub enterprise_subscription: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// A Java MIDlet service whose JAD this node serves (`/ucm/midlets/app.jad?service=NAME`,
    /// the service's URL): the MIDlet and its JAR files by phone model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub midlet: Option<Midlet>,
}

/// A Java MIDlet's descriptor (JAD) fields and its JAR files. The seed: "when the application
/// server receives the JAD file request, the server should return the appropriate JAR file
/// for that device".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Midlet {
    /// `MIDlet-Version` (major.minor[.micro]); a phone upgrades or downgrades when it changes.
    pub version: String,
    /// `MIDlet-Vendor`.
    pub vendor: String,
    /// The class the phone starts (`MIDlet-1`).
    pub class: String,
    /// The JAR for each phone model, first match wins.
    pub jars: Vec<MidletJar>,
}

/// One JAR file of a MIDlet and the phone models it is for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidletJar {
    /// Phone models (`Cisco 8845`, `CP-8845`: spelled either way); `*` is any model.
    pub models: Vec<String>,
    /// The JAR file on the node (a relative path is from the node's working directory).
    pub file: String,
}

/// A Service URL button: a line or speed-dial key that opens a phone service directly (seed:
/// "a Service URL button can be configured ... so that the user can press a line or
/// speed-dial button"). Placed after the device's lines and speed dials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUrlButton {
    /// A phone service of the definition (enabled, and subscribed on the device or by
    /// enterprise subscription).
    pub service: String,
    /// The key's label; absent: the service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Where a call forward goes and with which calling search space.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSetting {
    /// A number, or a pattern (`6XXXX`) meaning the number that was dialled, analysed again
    /// with this forward's CSS (the Assistant route point's fall-through to the managers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallForward {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<ForwardSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<ForwardSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_answer: Option<ForwardSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unregistered: Option<ForwardSetting>,
}

impl CallForward {
    fn is_empty(&self) -> bool {
        self == &CallForward::default()
    }
}

/// A directory number (line), identified by pattern and partition; shared when several devices
/// carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryNumber {
    pub pattern: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting_name: Option<String>,
    /// Line CSS: searched before the device CSS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
    #[serde(default, skip_serializing_if = "CallForward::is_empty")]
    pub call_forward: CallForward,
    /// Seconds before Call Forward No Answer; absent means the service parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_answer_timer: Option<u32>,
    #[serde(default = "default_max_calls")]
    pub max_calls: u32,
    #[serde(default = "default_busy_trigger")]
    pub busy_trigger: u32,
    /// Kept without any appearance (Cisco's unassigned DN), as AXL's `addLine` leaves a line
    /// before a phone carries it: not reported as on no device.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unassigned: bool,
}

fn default_max_calls() -> u32 {
    4
}
fn default_busy_trigger() -> u32 {
    2
}

/// A line appearance on a device or device profile: which DN, and how it is labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineAppearance {
    pub dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedDial {
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A phone, named `SEP` + its MAC in 12 upper-case hex digits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub name: String,
    /// Phone model, e.g. `Cisco 8845`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub device_pool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Owner user ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default)]
    pub em_enabled: bool,
    /// The device profile applied while nobody is logged in (EM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_profile: Option<String>,
    /// The end user whose digest credentials the device registers with, when its security
    /// profile asks for digest authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribed_services: Vec<String>,
    /// The phone's own Services Provisioning; absent: the enterprise parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_provisioning: Option<ServicesProvisioning>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineAppearance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speed_dials: Vec<SpeedDial>,
    /// Service URL buttons, on the keys after the lines and speed dials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_url_buttons: Vec<ServiceUrlButton>,
    /// Do Not Disturb: calls do not ring here (a page still plays: the seed's phone selection
    /// rules ignore DND).
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_disturb: bool,
    /// Cisco's product-specific "Disable Speakerphone": the Paging Server leaves the phone out
    /// of every page (the seed's phone selection rules), and the page's report says why.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable_speakerphone: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_locale: Option<String>,
}

/// A CTI route point: directory numbers owned by a service (WebDialer, Assistant, Paging)
/// rather than a phone. Calls to them are offered to the service, which redirects or answers;
/// when the service is down or does not act in time, the line's call forwarding applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePoint {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub device_pool: String,
    /// CSS used when the service redirects a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub css: Option<String>,
    pub lines: Vec<LineAppearance>,
}

/// An EM device profile: what a user's login puts on a phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_locale: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineAppearance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speed_dials: Vec<SpeedDial>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribed_services: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Standard EM Authentication Proxy Rights: may log any user in or out.
    EmProxy,
    /// Standard CTI Enabled.
    CtiEnabled,
    /// Standard CTI Allow Control of All Devices (WebDialer proxy, paging pushes).
    CtiControlAllDevices,
    /// Standard CCM Super Users: administers the cluster (its certificates and trust stores,
    /// `ucm emcc sync-certs`).
    Administrator,
    /// Standard AXL API Access: may use AXL (`/axl/`).
    AxlApiAccess,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnRef {
    pub dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndUser {
    pub userid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Clear text in a hand-written definition; hashed (argon2) on import and never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_hash: Option<String>,
    /// Controlled devices: phones the user may push to, dial from (WebDialer) and log in to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associated_devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_extension: Option<DnRef>,
    /// Controlled device profiles (EM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Whether this cluster is the user's home cluster (WebDialer Redirector, EMCC).
    #[serde(default = "yes")]
    pub home_cluster: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone_number: Option<String>,
    /// Digest Credentials for SIP digest authentication of the devices naming this user as
    /// their digest user. Clear text in a hand-written definition; stored as the RFC 2617 HA1
    /// (`digest_ha1`), which is what digest verification needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_credentials: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_ha1: Option<String>,
}

impl EndUser {
    pub fn display_name(&self) -> String {
        match &self.first_name {
            Some(f) => format!("{f} {}", self.last_name),
            None => self.last_name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationUser {
    pub userid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associated_devices: Vec<String>,
}
