//! The SNMP agent's part of the cluster definition: the top-level `snmp` section.

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for SnmpParameters {
    const PATH: &'static [&'static str] = &["snmp"];
    const OMIT_DEFAULT: bool = true;
}

/// The agent of every node that runs `snmp` (Cisco's "Cisco CallManager SNMP Service").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpParameters {
    /// SNMPv2c communities. SNMPv2c sends the community in clear text, as Cisco's nodes do
    /// with it; without one the agent answers nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// SNMPv3 users of the User-based Security Model (RFC 3414), read-only like the
    /// communities. A user without `auth` is served at noAuthNoPriv only; with `auth`, at
    /// authNoPriv; with `auth` and `privacy`, at authPriv too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub v3_users: Vec<V3User>,
    /// The largest response the agent sends, in bytes (RFC 3417: at least 484). A Get or
    /// GetNext whose answer would be larger gets `tooBig`; a GetBulk gets fewer bindings.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u32,
    /// Responses per second to one source address; past it requests are dropped (SNMP has no
    /// busy answer), so the agent cannot be turned into an amplifier.
    #[serde(default = "default_responses_per_second")]
    pub responses_per_source_per_second: u32,
}

/// One SNMPv2c community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Community {
    pub name: String,
    /// `read-only`, the only access: the agent has no writable objects.
    #[serde(default)]
    pub access: Access,
}

/// One SNMPv3 (USM) user. Its passwords are localised to the node's engine ID when the
/// section is read (RFC 3414 A.2) and are never logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V3User {
    /// The user name (net-snmp's `-u`), 1 to 32 characters.
    pub name: String,
    /// Authentication (net-snmp's `-a`/`-A`); absent: noAuthNoPriv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<V3Auth>,
    /// Privacy (net-snmp's `-x`/`-X`); needs `auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<V3Privacy>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V3Auth {
    /// `sha` (HMAC-SHA-96, RFC 3414) or `sha-256` (HMAC-SHA-256-192, RFC 7860).
    pub protocol: AuthProtocol,
    /// At least 8 characters (RFC 3414 11.2).
    pub password: String,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V3Privacy {
    /// `aes` (AES-128 in CFB mode, RFC 3826), the only one.
    pub protocol: PrivProtocol,
    /// At least 8 characters (RFC 3414 11.2).
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthProtocol {
    Sha,
    #[serde(rename = "sha-256")]
    Sha256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivProtocol {
    Aes,
}

// The passwords never reach a log line: `Debug` shows `***` in their place.
impl std::fmt::Debug for V3Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V3Auth")
            .field("protocol", &self.protocol)
            .field("password", &"***")
            .finish()
    }
}

impl std::fmt::Debug for V3Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V3Privacy")
            .field("protocol", &self.protocol)
            .field("password", &"***")
            .finish()
    }
}

/// RFC 3414 11.2: passwords shorter than this are refused.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    #[default]
    ReadOnly,
    ReadWrite,
}

/// A message larger than this is not read (the agent's receive buffer).
pub const MAX_REQUEST_SIZE: usize = 8192;
/// RFC 3417's smallest maximum message size every SNMP entity must accept.
pub const MIN_MESSAGE_SIZE: u32 = 484;
/// The largest UDP payload over IPv4.
pub const MAX_MESSAGE_SIZE: u32 = 65_507;
/// Bindings one GetBulk answer may carry, whatever max-repetitions asks.
pub const MAX_BULK_BINDINGS: usize = 1000;

fn default_max_message_size() -> u32 {
    // A response that fits an Ethernet frame unfragmented (net-snmp's default too).
    1472
}
fn default_responses_per_second() -> u32 {
    2000
}

impl Default for SnmpParameters {
    fn default() -> Self {
        SnmpParameters {
            communities: Vec::new(),
            v3_users: Vec::new(),
            max_message_size: default_max_message_size(),
            responses_per_source_per_second: default_responses_per_second(),
        }
    }
}
