//! Extension Mobility's part of the cluster definition: `service_parameters.extension_mobility`.

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for ExtensionMobilityParameters {
    const PATH: &'static [&'static str] = &["service_parameters", "extension_mobility"];
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
