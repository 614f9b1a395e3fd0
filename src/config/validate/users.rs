//! End users and application users: secrets, PINs, digest credentials, their devices and
//! profiles.

use std::collections::HashSet;

use super::{Checker, DnKey, Names};
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn end_users(&mut self, n: &Names, dn_keys: &HashSet<DnKey>) {
        let d = self.def;
        let root = Path::root();
        for (i, u) in d.end_users.iter().enumerate() {
            let p = root.key("end_users").index(i);
            if u.last_name.trim().is_empty() {
                self.err(p.key("last_name"), "last_name is empty");
            }
            self.secret(&p, "password", &u.password, &u.password_hash);
            self.secret(&p, "pin", &u.pin, &u.pin_hash);
            if u.digest_credentials.is_some() && u.digest_ha1.is_some() {
                self.err(
                    p.key("digest_credentials"),
                    "give either digest_credentials or digest_ha1, not both",
                );
            }
            if let Some(h) = &u.digest_ha1 {
                if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.err(p.key("digest_ha1"), "not an MD5 HA1 (32 hex digits)");
                }
            }
            if let Some(pin) = &u.pin {
                if pin.len() < 4 || pin.len() > 32 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    self.err(p.key("pin"), "a PIN is 4 to 32 digits");
                }
            }
            for (j, dev) in u.associated_devices.iter().enumerate() {
                self.refers(
                    p.key("associated_devices").index(j),
                    Some(dev),
                    &n.devices,
                    "device",
                );
            }
            for (j, prof) in u.device_profiles.iter().enumerate() {
                self.refers(
                    p.key("device_profiles").index(j),
                    Some(prof),
                    &n.profiles,
                    "device profile",
                );
            }
            if let Some(def) = &u.default_profile {
                if !n.profiles.contains(def.as_str()) {
                    self.err(
                        p.key("default_profile"),
                        format!("unknown device profile {def:?}"),
                    );
                } else if !u.device_profiles.iter().any(|x| x == def) {
                    self.err(
                        p.key("default_profile"),
                        format!("default profile {def:?} is not among the user's device_profiles"),
                    );
                }
            }
            if let Some(pe) = &u.primary_extension {
                if !dn_keys.contains(&(pe.dn.clone(), pe.partition.clone())) {
                    self.err(
                        p.key("primary_extension"),
                        format!(
                            "unknown directory number {:?} in partition {}",
                            pe.dn,
                            pe.partition.as_deref().unwrap_or("<None>")
                        ),
                    );
                }
            }
        }
    }

    pub(super) fn application_users(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, a) in d.application_users.iter().enumerate() {
            let p = root.key("application_users").index(i);
            self.secret(&p, "password", &a.password, &a.password_hash);
            for (j, dev) in a.associated_devices.iter().enumerate() {
                self.refers(
                    p.key("associated_devices").index(j),
                    Some(dev),
                    &n.devices,
                    "device",
                );
            }
        }
    }

    fn secret(&mut self, p: &Path, name: &str, clear: &Option<String>, hash: &Option<String>) {
        if clear.is_some() && hash.is_some() {
            self.err(
                p.key(name),
                format!("give either {name} or {name}_hash, not both"),
            );
        }
        if let Some(h) = hash {
            if !crate::auth::is_password_hash(h) {
                self.err(
                    p.key(&format!("{name}_hash")),
                    "not an argon2 hash in PHC format ($argon2id$...) using at most 64 MiB (m=65536)",
                );
            }
        }
    }
}
