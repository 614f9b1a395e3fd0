//! The cluster definition: everything a ucm cluster is configured with, in Unified CM's own vocabulary.
//!
//! This is both the YAML schema (`fixtures/clusters/demo.yaml`) and what the store keeps. Every
//! struct denies unknown fields so a misspelt key is an error with its line, not a silent default.
//! Field order here is the order `ucm db export` writes.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default, skip_serializing_if = "Paging::is_unused")]
    pub paging: Paging,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub end_users: Vec<EndUser>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub application_users: Vec<ApplicationUser>,
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

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceParameters {
    #[serde(default)]
    pub call_manager: CallManagerParameters,
    #[serde(default)]
    pub extension_mobility: ExtensionMobilityParameters,
    #[serde(default)]
    pub webdialer: WebDialerParameters,
    #[serde(default)]
    pub phone_services: PhoneServicesParameters,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultipleLoginBehavior {
    Allowed,
    /// Cisco's default: a second login elsewhere fails with EM error 25.
    #[default]
    NotAllowed,
    /// The user's other device is logged out automatically.
    AutoLogout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionMobilityParameters {
    #[serde(default)]
    pub validate_ip_address: bool,
    /// Addresses allowed besides the device's own when Validate IP Address is on (error 28).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_ips: Vec<String>,
    /// Whether requests that came through an HTTP proxy (a Via header) are served (error 30).
    #[serde(default)]
    pub allow_proxy: bool,
    #[serde(default)]
    pub multiple_login_behavior: MultipleLoginBehavior,
    #[serde(default)]
    pub enforce_max_login_time: bool,
    /// Intra-cluster Maximum Login Time, `H:MM`, 0:00 to 168:00.
    #[serde(default = "default_max_login_time")]
    pub max_login_time: String,
    /// Maximum Concurrent Requests (error 26 past it).
    #[serde(default = "default_em_concurrency")]
    pub max_concurrent_requests: u32,
    /// Failed PIN entries before the user is locked out of EM.
    #[serde(default = "default_lockout")]
    pub pin_lockout_threshold: u32,
}

fn default_max_login_time() -> String {
    "8:00".to_string()
}
fn default_em_concurrency() -> u32 {
    5
}
fn default_lockout() -> u32 {
    5
}

impl Default for ExtensionMobilityParameters {
    fn default() -> Self {
        ExtensionMobilityParameters {
            validate_ip_address: false,
            trusted_ips: Vec::new(),
            allow_proxy: false,
            multiple_login_behavior: MultipleLoginBehavior::default(),
            enforce_max_login_time: false,
            max_login_time: default_max_login_time(),
            max_concurrent_requests: default_em_concurrency(),
            pin_lockout_threshold: default_lockout(),
        }
    }
}

impl ExtensionMobilityParameters {
    /// The maximum login time in minutes, if `max_login_time` is well formed.
    pub fn max_login_minutes(&self) -> Option<u32> {
        parse_hours_minutes(&self.max_login_time)
    }
}

/// Parses Cisco's `HHH:MM` (0:00 to 168:00) into minutes.
pub fn parse_hours_minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty() || h.len() > 3 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let total = h * 60 + m;
    (m < 60 && total <= 168 * 60).then_some(total)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebDialerParameters {
    /// User Session Expiry in hours; 0 means sessions never expire.
    #[serde(default)]
    pub user_session_expiry_hours: u32,
    /// List of WebDialers the Redirector asks (base URLs such as `https://host:8443`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webdialers: Vec<String>,
    /// Maximum Concurrent Call Requests; past it makeCall answers 9 (overloaded).
    #[serde(default = "default_wd_concurrency")]
    pub max_concurrent_call_requests: u32,
    #[serde(default = "default_end_call_dialog")]
    pub end_call_dialog_seconds: u32,
    /// How long makeCall waits for the user's phone to answer before it gives up (code 1)
    /// and cancels the ringing. Not a Cisco parameter: Cisco's CTI holds the call request for
    /// the phone's own ring timeout.
    #[serde(default = "default_wd_answer_timeout")]
    pub answer_timeout_seconds: u32,
    /// Pages of the servlet reached over plain HTTP redirect (301) to the same page over
    /// HTTPS, so passwords and the session cookie travel only encrypted.
    #[serde(default)]
    pub redirect_http_to_https: bool,
    /// PEM file of CA certificates the Redirector trusts for the WebDialers in the list
    /// (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirector_ca_file: Option<String>,
    /// How long the Redirector waits for each WebDialer's isClusterUser answer.
    #[serde(default = "default_redirector_timeout")]
    pub redirector_timeout_ms: u32,
}

fn default_wd_concurrency() -> u32 {
    3
}
fn default_end_call_dialog() -> u32 {
    15
}
/// The longest `answer_timeout_seconds` (a makeCall request is held open that long).
pub const MAX_WD_ANSWER_TIMEOUT_SECONDS: u32 = 300;
fn default_wd_answer_timeout() -> u32 {
    60
}
fn default_redirector_timeout() -> u32 {
    3000
}

impl Default for WebDialerParameters {
    fn default() -> Self {
        WebDialerParameters {
            user_session_expiry_hours: 0,
            webdialers: Vec::new(),
            max_concurrent_call_requests: default_wd_concurrency(),
            end_call_dialog_seconds: default_end_call_dialog(),
            answer_timeout_seconds: default_wd_answer_timeout(),
            redirect_http_to_https: false,
            redirector_ca_file: None,
            redirector_timeout_ms: default_redirector_timeout(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneServicesParameters {
    /// Failed authentication URL attempts before the user is locked out.
    #[serde(default = "default_lockout")]
    pub auth_lockout_threshold: u32,
    /// Minutes a lockout lasts.
    #[serde(default = "default_lockout_minutes")]
    pub auth_lockout_minutes: u32,
    /// Application users (such as the EM proxy user) are never locked out by failed
    /// checks; the per-source throttle still slows down whoever guesses their passwords.
    #[serde(default)]
    pub lockout_exempt_application_users: bool,
}

fn default_lockout_minutes() -> u32 {
    30
}

impl Default for PhoneServicesParameters {
    fn default() -> Self {
        PhoneServicesParameters {
            auth_lockout_threshold: default_lockout(),
            auth_lockout_minutes: default_lockout_minutes(),
            lockout_exempt_application_users: false,
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
}

/// Where a call forward goes and with which calling search space.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSetting {
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
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_disturb: bool,
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

impl Paging {
    fn is_unused(&self) -> bool {
        self == &Paging::default()
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
