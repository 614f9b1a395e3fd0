//! The QoS policy: which senders are audited and the DSCP each traffic class must carry.
//!
//! The file format is YAML (see `conformance/qos-policy.yaml`, which is also the built-in
//! default, [`DEFAULT_POLICY_YAML`]):
//!
//! ```yaml
//! classes: { sip: CS3, voice: EF, video: AF41, http: 0, network-control: CS6, other: any }
//! senders:                      # optional; absent = every sender is audited
//!   - address: 10.10.0.0/16
//!     role: phones
//!   - address: 10.20.0.1
//!     role: gateway
//!     classes: { sip: AF31 }    # this sender's own overrides
//! roles:                        # optional per-role overrides
//!   phones: { http: any }
//! ```
//!
//! Precedence for a sender and class: the sender entry's `classes`, then its role's entry in
//! `roles`, then `classes`, then the built-in Cisco default. Unknown fields are errors, and
//! every error carries the line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::classify::TrafficClass;
use crate::net::Dscp;
use crate::wire::yaml::Path;

/// The default policy as a YAML file (Cisco's recommendations).
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../conformance/qos-policy.yaml");

/// What a class must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this DSCP.
    Dscp(Dscp),
    /// Anything: the class is not checked.
    Any,
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DSCP number 0..=63, a codepoint name such as CS3 or EF, or `any`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Expect, E> {
                u8::try_from(v)
                    .ok()
                    .and_then(|v| Dscp::new(v).ok())
                    .map(Expect::Dscp)
                    .ok_or_else(|| {
                        E::custom(format!("DSCP value {v} is out of range (expected 0..=63)"))
                    })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Expect, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "DSCP value {v} is out of range (expected 0..=63)"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                if v.trim().eq_ignore_ascii_case("any") {
                    return Ok(Expect::Any);
                }
                v.parse::<Dscp>().map(Expect::Dscp).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Dscp(d) => write!(f, "{} ({})", d.value(), d),
            Expect::Any => f.write_str("any"),
        }
    }
}

/// Per-class values; a missing class falls through to the next level.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassTable {
    pub sip: Option<Expect>,
    pub sccp: Option<Expect>,
    pub cti: Option<Expect>,
    pub assistant: Option<Expect>,
    pub http: Option<Expect>,
    pub tftp: Option<Expect>,
    pub voice: Option<Expect>,
    pub video: Option<Expect>,
    #[serde(rename = "network-control", alias = "network_control")]
    pub network_control: Option<Expect>,
    pub other: Option<Expect>,
}

impl ClassTable {
    /// The entry for `class`.
    pub fn get(&self, class: TrafficClass) -> Option<Expect> {
        match class {
            TrafficClass::Sip => self.sip,
            TrafficClass::Sccp => self.sccp,
            TrafficClass::Cti => self.cti,
            TrafficClass::Assistant => self.assistant,
            TrafficClass::Http => self.http,
            TrafficClass::Tftp => self.tftp,
            TrafficClass::Voice => self.voice,
            TrafficClass::Video => self.video,
            TrafficClass::NetworkControl => self.network_control,
            TrafficClass::Other => self.other,
        }
    }

    /// Cisco's defaults: signalling CS3, voice EF, video AF41, routers' network control CS6,
    /// everything else 0.
    pub fn cisco() -> ClassTable {
        let d = |v| Some(Expect::Dscp(v));
        ClassTable {
            sip: d(Dscp::CS3),
            sccp: d(Dscp::CS3),
            cti: d(Dscp::CS3),
            assistant: d(Dscp::CS3),
            // UNCONFIRMED for HTTP and TFTP (spec 6.1): best effort, see qos-policy.yaml.
            http: d(Dscp::DEFAULT),
            tftp: d(Dscp::DEFAULT),
            voice: d(Dscp::EF),
            video: d(Dscp::AF41),
            network_control: d(Dscp::CS6),
            other: d(Dscp::DEFAULT),
        }
    }
}

/// An address or a CIDR prefix such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the prefix (an IPv4 prefix never matches an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "invalid address {s:?}: expected an IP address or a CIDR prefix such as 10.0.0.0/8"
            )
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(bad()),
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// One entry of `senders`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderRule {
    pub address: Cidr,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub classes: ClassTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    classes: ClassTable,
    #[serde(default)]
    senders: Option<Vec<SenderRule>>,
    #[serde(default)]
    roles: BTreeMap<String, ClassTable>,
}

/// A loaded policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Base table (missing classes fall back to [`ClassTable::cisco`]).
    pub classes: ClassTable,
    /// `None`: every sender is audited.
    pub senders: Option<Vec<SenderRule>>,
    pub roles: BTreeMap<String, ClassTable>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::cisco_default()
    }
}

/// How one sender's packets of one class are judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The sender is under audit.
    pub audited: bool,
    /// The role of the matching `senders` entry.
    pub role: Option<String>,
    /// The DSCP its packets must carry; `None` when not audited or the class is `any`.
    pub dscp: Option<Dscp>,
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
}

impl Policy {
    /// Cisco's defaults, every sender audited.
    pub fn cisco_default() -> Policy {
        Policy {
            classes: ClassTable::cisco(),
            senders: None,
            roles: BTreeMap::new(),
        }
    }

    /// Reads a policy file.
    pub fn load(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            file: file.clone(),
            source,
        })?;
        Policy::parse(&text, &file)
    }

    /// Parses a policy; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |line, column, message| PolicyError::Invalid {
            file: origin.to_string(),
            line,
            column,
            message,
        };
        // An empty document (or only comments) is the default policy.
        if text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || t == "---"
        }) {
            return Ok(Policy::cisco_default());
        }
        let file: PolicyFile =
            serde_saphyr::from_str_with_options(text, crate::wire::yaml::options(text)).map_err(
                |e| {
                    let (line, column) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((1, 1));
                    invalid(line, column, plain_message(&e))
                },
            )?;
        for (i, s) in file.senders.iter().flatten().enumerate() {
            if let Some(role) = &s.role {
                if role.trim().is_empty() {
                    let path = Path::root().key("senders").index(i).key("role");
                    let (line, column) = locate(text, &path);
                    return Err(invalid(line, column, "an empty role name".into()));
                }
            }
        }
        for role in file.roles.keys() {
            let used = file
                .senders
                .iter()
                .flatten()
                .any(|s| s.role.as_deref() == Some(role.as_str()));
            if !used {
                let (line, column) = locate(text, &Path::root().key("roles").key(role));
                return Err(invalid(
                    line,
                    column,
                    format!("roles.{role}: no entry in `senders` has role {role:?}"),
                ));
            }
        }
        Ok(Policy {
            classes: file.classes,
            senders: file.senders,
            roles: file.roles,
        })
    }

    /// How packets of `class` sent by `sender` are judged.
    pub fn expectation(&self, sender: IpAddr, class: TrafficClass) -> Expectation {
        let base = || {
            self.classes
                .get(class)
                .or_else(|| ClassTable::cisco().get(class))
                .unwrap_or(Expect::Any)
        };
        let to_dscp = |e: Expect| match e {
            Expect::Dscp(d) => Some(d),
            Expect::Any => None,
        };
        let Some(senders) = &self.senders else {
            return Expectation {
                audited: true,
                role: None,
                dscp: to_dscp(base()),
            };
        };
        let Some(rule) = senders.iter().find(|s| s.address.contains(sender)) else {
            return Expectation {
                audited: false,
                role: None,
                dscp: None,
            };
        };
        let from_role = rule
            .role
            .as_ref()
            .and_then(|r| self.roles.get(r))
            .and_then(|t| t.get(class));
        let expect = rule.classes.get(class).or(from_role).unwrap_or_else(base);
        Expectation {
            audited: true,
            role: rule.role.clone(),
            dscp: to_dscp(expect),
        }
    }
}

/// Line and column of a path given as keys and indices (falls back to 1:1).
fn locate(text: &str, path: &Path) -> (u64, u64) {
    crate::wire::yaml::Locator::new(text)
        .locate(path)
        .unwrap_or((1, 1))
}

/// serde-saphyr's message without its snippet and trailing location.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}
