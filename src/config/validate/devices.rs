//! Phones, route points and device profiles: their references, lines and speed dials; the
//! phone security profiles they use.

use std::collections::HashSet;

use super::{is_device_name, Checker, DnKey, Names};
use crate::config::model::{DeviceSecurityMode, LineAppearance, SipTransport, SpeedDial};
use crate::dialplan::pattern::validate_digits;
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn phone_security_profiles(&mut self) {
        let d = self.def;
        let root = Path::root();
        for (i, sp) in d.phone_security_profiles.iter().enumerate() {
            let p = root.key("phone_security_profiles").index(i);
            if sp.device_security_mode == DeviceSecurityMode::Encrypted
                && sp.transport != SipTransport::Tls
            {
                self.err(p.key("transport"), "an encrypted profile must use tls");
            }
        }
    }

    pub(super) fn devices(
        &mut self,
        n: &Names,
        dn_keys: &HashSet<DnKey>,
        used: &mut HashSet<DnKey>,
    ) {
        let d = self.def;
        let root = Path::root();
        for (i, dev) in d.devices.iter().enumerate() {
            let p = root.key("devices").index(i);
            if !is_device_name(&dev.name) {
                self.err(
                    p.key("name"),
                    format!(
                        "bad device name {:?}: a phone is named SEP followed by its MAC address in 12 upper-case hex digits",
                        dev.name
                    ),
                );
            }
            if dev.model.trim().is_empty() {
                self.err(p.key("model"), "model is empty");
            }
            self.refers(
                p.key("device_pool"),
                Some(&dev.device_pool),
                &n.pools,
                "device pool",
            );
            self.refers(
                p.key("css"),
                dev.css.as_deref(),
                &n.css,
                "calling search space",
            );
            self.refers(
                p.key("location"),
                dev.location.as_deref(),
                &n.locations,
                "location",
            );
            self.refers(p.key("owner"), dev.owner.as_deref(), &n.users, "end user");
            self.refers(
                p.key("logout_profile"),
                dev.logout_profile.as_deref(),
                &n.profiles,
                "device profile",
            );
            if dev.logout_profile.is_some() && !dev.em_enabled {
                self.err(
                    p.key("logout_profile"),
                    "a logout profile needs em_enabled: true",
                );
            }
            self.refers(
                p.key("security_profile"),
                dev.security_profile.as_deref(),
                &n.secprofiles,
                "phone security profile",
            );
            self.refers(
                p.key("digest_user"),
                dev.digest_user.as_deref(),
                &n.users,
                "end user",
            );
            let wants_digest = dev.security_profile.as_ref().is_some_and(|sp| {
                d.phone_security_profiles
                    .iter()
                    .any(|x| &x.name == sp && x.digest_authentication)
            });
            if wants_digest {
                let has_creds = dev.digest_user.as_ref().is_some_and(|u| {
                    d.end_users.iter().any(|x| {
                        &x.userid == u && (x.digest_credentials.is_some() || x.digest_ha1.is_some())
                    })
                });
                if !has_creds {
                    self.err(
                        p.key("digest_user"),
                        "the security profile asks for digest authentication: name a digest_user that has digest_credentials",
                    );
                }
            }
            for (j, s) in dev.subscribed_services.iter().enumerate() {
                self.refers(
                    p.key("subscribed_services").index(j),
                    Some(s),
                    &n.services,
                    "phone service",
                );
            }
            self.lines(&p, &dev.lines, dn_keys, used);
            self.speed_dials(&p, &dev.speed_dials);
            for (j, b) in dev.service_url_buttons.iter().enumerate() {
                let bp = p.key("service_url_buttons").index(j).key("service");
                self.refers(bp.clone(), Some(&b.service), &n.services, "phone service");
                // A Service URL button opens a service the phone has: enabled, and
                // subscribed on the device or by enterprise subscription.
                if let Some(s) = d.phone_services.iter().find(|s| s.name == b.service) {
                    if !s.enabled {
                        self.err(bp, format!("phone service {:?} is disabled", b.service));
                    } else if !s.enterprise_subscription
                        && !dev.subscribed_services.contains(&b.service)
                    {
                        self.err(
                            bp,
                            format!(
                                "phone service {:?} is not subscribed on this device (subscribed_services) nor an enterprise subscription",
                                b.service
                            ),
                        );
                    }
                }
            }
        }
    }

    pub(super) fn route_points(
        &mut self,
        n: &Names,
        dn_keys: &HashSet<DnKey>,
        used: &mut HashSet<DnKey>,
    ) {
        let d = self.def;
        let root = Path::root();
        self.unique(
            "route_points",
            &d.route_points,
            |x| x.name.clone(),
            "route point",
        );
        for (i, rp) in d.route_points.iter().enumerate() {
            let p = root.key("route_points").index(i);
            if n.devices.contains(rp.name.as_str()) {
                self.err(
                    p.key("name"),
                    format!("{:?} is already a device name", rp.name),
                );
            }
            self.refers(
                p.key("device_pool"),
                Some(&rp.device_pool),
                &n.pools,
                "device pool",
            );
            self.refers(
                p.key("css"),
                rp.css.as_deref(),
                &n.css,
                "calling search space",
            );
            if rp.lines.is_empty() {
                self.err(p.key("lines"), "a route point needs at least one line");
            }
            self.lines(&p, &rp.lines, dn_keys, used);
        }
    }

    pub(super) fn device_profiles(
        &mut self,
        n: &Names,
        dn_keys: &HashSet<DnKey>,
        used: &mut HashSet<DnKey>,
    ) {
        let d = self.def;
        let root = Path::root();
        for (i, prof) in d.device_profiles.iter().enumerate() {
            let p = root.key("device_profiles").index(i);
            for (j, s) in prof.subscribed_services.iter().enumerate() {
                self.refers(
                    p.key("subscribed_services").index(j),
                    Some(s),
                    &n.services,
                    "phone service",
                );
            }
            self.lines(&p, &prof.lines, dn_keys, used);
            self.speed_dials(&p, &prof.speed_dials);
        }
    }

    fn lines(
        &mut self,
        p: &Path,
        lines: &[LineAppearance],
        dn_keys: &HashSet<DnKey>,
        used: &mut HashSet<DnKey>,
    ) {
        let mut here = HashSet::new();
        for (j, l) in lines.iter().enumerate() {
            let lp = p.key("lines").index(j);
            let key = (l.dn.clone(), l.partition.clone());
            if !dn_keys.contains(&key) {
                self.err(
                    lp.key("dn"),
                    format!(
                        "unknown directory number {:?} in partition {} (define it under directory_numbers)",
                        l.dn,
                        l.partition.as_deref().map_or("<None>".to_string(), |x| format!("{x:?}"))
                    ),
                );
            }
            if !here.insert(key.clone()) {
                self.err(
                    lp.key("dn"),
                    format!("directory number {:?} appears twice", l.dn),
                );
            }
            used.insert(key);
        }
    }

    fn speed_dials(&mut self, p: &Path, sds: &[SpeedDial]) {
        for (j, sd) in sds.iter().enumerate() {
            if let Err(e) = validate_digits(&sd.number) {
                self.err(
                    p.key("speed_dials").index(j).key("number"),
                    format!("not a number: {e}"),
                );
            }
        }
    }
}
