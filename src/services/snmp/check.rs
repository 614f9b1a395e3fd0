//! The SNMP agent's checks of its section.

use super::model::{Access, SnmpParameters, MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE, MIN_PASSWORD_LEN};
use crate::config::validate::Diagnostics;
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let p: SnmpParameters = d.section();
    let at = Path::root().key("snmp");
    for (i, c) in p.communities.iter().enumerate() {
        let ci = at.key("communities").index(i);
        // net-snmp and Cisco both take up to 32 characters.
        if c.name.is_empty() || c.name.len() > 32 || !c.name.bytes().all(|b| b.is_ascii_graphic()) {
            diag.err(
                ci.key("name"),
                "must be 1 to 32 printable characters without spaces",
            );
        }
        if c.access == Access::ReadWrite {
            diag.err(
                ci.key("access"),
                "read-write is not supported: the agent has no writable objects (use read-only)",
            );
        }
        if p.communities[..i].iter().any(|o| o.name == c.name) {
            diag.err(
                ci.key("name"),
                format!("community {:?} is listed twice", c.name),
            );
        }
    }
    for (i, u) in p.v3_users.iter().enumerate() {
        let ui = at.key("v3_users").index(i);
        if u.name.is_empty() || u.name.len() > 32 || !u.name.bytes().all(|b| b.is_ascii_graphic()) {
            diag.err(
                ui.key("name"),
                "must be 1 to 32 printable characters without spaces",
            );
        }
        if p.v3_users[..i].iter().any(|o| o.name == u.name) {
            diag.err(ui.key("name"), format!("user {:?} is listed twice", u.name));
        }
        if let Some(a) = &u.auth {
            if a.password.chars().count() < MIN_PASSWORD_LEN {
                diag.err(
                    ui.key("auth").key("password"),
                    format!("must be at least {MIN_PASSWORD_LEN} characters (RFC 3414 11.2)"),
                );
            }
        }
        if let Some(x) = &u.privacy {
            if x.password.chars().count() < MIN_PASSWORD_LEN {
                diag.err(
                    ui.key("privacy").key("password"),
                    format!("must be at least {MIN_PASSWORD_LEN} characters (RFC 3414 11.2)"),
                );
            }
            if u.auth.is_none() {
                diag.err(
                    ui.key("privacy"),
                    "privacy needs auth (SNMPv3 has no noAuthPriv level)",
                );
            }
        }
    }
    if !(MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE).contains(&p.max_message_size) {
        diag.err(
            at.key("max_message_size"),
            format!("must be {MIN_MESSAGE_SIZE} to {MAX_MESSAGE_SIZE} bytes"),
        );
    }
    if p.responses_per_source_per_second == 0 {
        diag.err(
            at.key("responses_per_source_per_second"),
            "must be at least 1",
        );
    }
}
