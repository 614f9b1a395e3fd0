//! The running cluster: the definition plus the indexes every request needs (device by name,
//! users, directory numbers and the devices that share them, the compiled dial plan).
//! Built once per definition; requests read it through an `Arc` without locking.

use std::collections::HashMap;
use std::ops::Deref;

use crate::config::model::{ApplicationUser, ClusterDefinition, Device, DirectoryNumber, EndUser};
use crate::dialplan::analysis::DnKey;
use crate::dialplan::DialPlan;

pub struct Cluster {
    def: ClusterDefinition,
    pub dialplan: DialPlan,
    devices: HashMap<String, usize>,
    end_users: HashMap<String, usize>,
    app_users: HashMap<String, usize>,
    dns: HashMap<DnKey, usize>,
    dn_devices: HashMap<DnKey, Vec<usize>>,
    dn_route_point: HashMap<DnKey, usize>,
    /// Devices by the digits of their lines' DNs, whatever the partition (SIP names lines by
    /// digits only).
    by_line_digits: HashMap<String, Vec<usize>>,
}

impl Deref for Cluster {
    type Target = ClusterDefinition;
    fn deref(&self) -> &ClusterDefinition {
        &self.def
    }
}

impl Cluster {
    pub fn new(def: ClusterDefinition) -> Cluster {
        let index = |names: Vec<&str>| -> HashMap<String, usize> {
            names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), i))
                .collect()
        };
        let devices = index(def.devices.iter().map(|d| d.name.as_str()).collect());
        let end_users = index(def.end_users.iter().map(|u| u.userid.as_str()).collect());
        let app_users = index(
            def.application_users
                .iter()
                .map(|u| u.userid.as_str())
                .collect(),
        );
        let dns = def
            .directory_numbers
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.pattern.clone(), d.partition.clone()), i))
            .collect();
        let mut dn_devices: HashMap<DnKey, Vec<usize>> = HashMap::new();
        let mut by_line_digits: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in def.devices.iter().enumerate() {
            for l in &d.lines {
                by_line_digits.entry(l.dn.clone()).or_default().push(i);
                dn_devices
                    .entry((l.dn.clone(), l.partition.clone()))
                    .or_default()
                    .push(i);
            }
        }
        let mut dn_route_point = HashMap::new();
        for (i, rp) in def.route_points.iter().enumerate() {
            for l in &rp.lines {
                dn_route_point.insert((l.dn.clone(), l.partition.clone()), i);
            }
        }
        Cluster {
            by_line_digits,
            dn_route_point,
            dialplan: DialPlan::new(&def),
            def,
            devices,
            end_users,
            app_users,
            dns,
            dn_devices,
        }
    }

    pub fn definition(&self) -> &ClusterDefinition {
        &self.def
    }

    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices
            .get(name)
            .and_then(|&i| self.def.devices.get(i))
    }

    pub fn end_user(&self, userid: &str) -> Option<&EndUser> {
        self.end_users
            .get(userid)
            .and_then(|&i| self.def.end_users.get(i))
    }

    pub fn application_user(&self, userid: &str) -> Option<&ApplicationUser> {
        self.app_users
            .get(userid)
            .and_then(|&i| self.def.application_users.get(i))
    }

    pub fn directory_number(&self, key: &DnKey) -> Option<&DirectoryNumber> {
        self.dns
            .get(key)
            .and_then(|&i| self.def.directory_numbers.get(i))
    }

    /// Devices that have a line with these digits, in any partition.
    pub fn devices_with_line_digits(&self, digits: &str) -> impl Iterator<Item = &Device> {
        self.by_line_digits
            .get(digits)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.def.devices.get(i))
    }

    /// The route point that owns a DN, if a service owns it.
    pub fn route_point_for(&self, key: &DnKey) -> Option<&crate::config::model::RoutePoint> {
        self.dn_route_point
            .get(key)
            .and_then(|&i| self.def.route_points.get(i))
    }

    /// Devices that carry the DN as one of their lines (several: a shared line).
    pub fn devices_with_line(&self, key: &DnKey) -> impl Iterator<Item = &Device> {
        self.dn_devices
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.def.devices.get(i))
    }
}
