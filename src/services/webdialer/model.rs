//! WebDialer's part of the cluster definition: `service_parameters.webdialer`.

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for WebDialerParameters {
    const PATH: &'static [&'static str] = &["service_parameters", "webdialer"];
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
