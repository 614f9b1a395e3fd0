//! Unified CM Assistant's part of the cluster definition: its service parameters
//! (`service_parameters.assistant`: RNA forwarding and the capacity limits) and the top-level
//! `assistant` section (the route point, the managers and their assistants).

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for AssistantParameters {
    const PATH: &'static [&'static str] = &["service_parameters", "assistant"];
}

impl Section for Assistant {
    const PATH: &'static [&'static str] = &["assistant"];
    // Most clusters have no managers: a definition leaves the section out then.
    const OMIT_DEFAULT: bool = true;
}

/// The Cisco IP Manager Assistant service parameters, and the seed's capacity figures as
/// limits the definition is checked against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssistantParameters {
    /// Cisco IPMA RNA Forward Calls: a call the assistant leaves unanswered for
    /// `rna_timeout_seconds` goes on to the manager's next assistant, and so on.
    #[serde(default)]
    pub rna_forward_calls: bool,
    /// Cisco IPMA RNA Timeout, in seconds (Cisco's default: 10).
    #[serde(default = "default_rna_timeout")]
    pub rna_timeout_seconds: u32,
    /// Cisco IPMA Assistant Console Heartbeat Interval, in seconds (Cisco's default: 30): the
    /// server's keepalive to consoles, which fail over to the backup server when none comes.
    #[serde(default = "default_console_seconds")]
    pub console_heartbeat_seconds: u32,
    /// Cisco IPMA Assistant Console Request Timeout, in seconds (Cisco's default: 30): how
    /// long a console waits for an answer; the server gives a console as long to log in and
    /// to finish a request line.
    #[serde(default = "default_console_seconds")]
    pub console_request_timeout_seconds: u32,
    /// The port of the phones' web servers (`/CGI/Execute`), where the console's answer is
    /// pushed.
    #[serde(default = "default_phone_http_port")]
    pub phone_http_port: u16,
    /// Assistants per manager (the seed: 10).
    #[serde(default = "default_assistants_per_manager")]
    pub max_assistants_per_manager: usize,
    /// Managers per assistant (the seed: 33, one Assistant-controlled line each).
    #[serde(default = "default_managers_per_assistant")]
    pub max_managers_per_assistant: usize,
    /// Managers in the cluster (the seed: 3500).
    #[serde(default = "default_per_cluster")]
    pub max_managers_per_cluster: usize,
    /// Assistants in the cluster (the seed: 3500).
    #[serde(default = "default_per_cluster")]
    pub max_assistants_per_cluster: usize,
}

impl Default for AssistantParameters {
    fn default() -> Self {
        AssistantParameters {
            rna_forward_calls: false,
            rna_timeout_seconds: default_rna_timeout(),
            console_heartbeat_seconds: default_console_seconds(),
            console_request_timeout_seconds: default_console_seconds(),
            phone_http_port: default_phone_http_port(),
            max_assistants_per_manager: default_assistants_per_manager(),
            max_managers_per_assistant: default_managers_per_assistant(),
            max_managers_per_cluster: default_per_cluster(),
            max_assistants_per_cluster: default_per_cluster(),
        }
    }
}

fn default_rna_timeout() -> u32 {
    10
}
fn default_phone_http_port() -> u16 {
    80
}
fn default_console_seconds() -> u32 {
    30
}
fn default_assistants_per_manager() -> usize {
    10
}
fn default_managers_per_assistant() -> usize {
    33
}
fn default_per_cluster() -> usize {
    3500
}

/// The managers the Assistant service serves and the route point that intercepts calls to
/// their lines in proxy line mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assistant {
    /// The Assistant route point (`route_points[].name`, DN `6XXXX`): the service registers it
    /// and redirects the calls it intercepts. Needed when any manager is in proxy line mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_point: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<Manager>,
}

/// How a manager's calls reach the assistants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The route point intercepts calls to the manager's line and redirects them to an
    /// assistant's proxy line for the manager, or to the manager.
    #[default]
    Proxy,
    /// The manager's line is also on the assistants' phones; it rings at both (at the
    /// manager's silently while the manager is on Do Not Disturb).
    Shared,
}

/// A manager: an end user, the Assistant-controlled line, and the assistants in the order
/// calls go to them (the first is the one selected; RNA forwarding goes down the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manager {
    /// `end_users[].userid`.
    pub user: String,
    /// The manager's Assistant-controlled line (a directory number on the manager's phone).
    pub line: String,
    #[serde(default)]
    pub mode: Mode,
    /// Cisco's Mobile Manager: the manager logs in to phones with Extension Mobility (the
    /// dial plan check requires it of a manager with device profiles).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mobile: bool,
    pub assistants: Vec<ManagerAssistant>,
}

/// One assistant of a manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerAssistant {
    /// `end_users[].userid`.
    pub user: String,
    /// The manager's proxy line on the assistant's phone (proxy line mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_line: Option<String>,
}
