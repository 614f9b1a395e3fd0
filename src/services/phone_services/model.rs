//! IP Phone Services' part of the cluster definition: `service_parameters.phone_services` (the
//! authentication URL's lockouts).

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for PhoneServicesParameters {
    const PATH: &'static [&'static str] = &["service_parameters", "phone_services"];
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

/// The Cisco default for failed attempts before a lockout.
fn default_lockout() -> u32 {
    5
}
