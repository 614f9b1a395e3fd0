//! The running cluster: the definition plus the indexes every request needs (device by name,
//! users, directory numbers and the devices that share them, the compiled dial plan).
//! Built once per definition; requests read it through an `Arc` without locking.
//!
//! Extension Mobility changes which lines a device carries at run time: [`Mobility`] is the
//! overlay of current logins (device -> device profile), shared by every snapshot of the
//! cluster, and the line queries here ([`Cluster::lines_of`], [`Cluster::devices_with_line`],
//! [`Cluster::effective_device`]) see a logged-in device with its profile's lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use crate::config::model::{
    ApplicationUser, ClusterDefinition, Device, DeviceProfile, DirectoryNumber, EndUser,
    LineAppearance,
};
use crate::config::section::Section;
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
    profiles: HashMap<String, usize>,
    /// Extension Mobility logins, shared with later snapshots of the cluster.
    pub mobility: Arc<Mobility>,
    /// The services' sections, each parsed once for this snapshot (see [`Cluster::section`]).
    sections: SectionCache,
    /// What call control must know of Extension Mobility Cross Cluster at run time (set by
    /// `services::emcc` through [`ClusterHandle::set_emcc_routing`]).
    pub emcc: Arc<EmccRouting>,
}

/// Extension Mobility Cross Cluster as call control sees it (the seed's EMCC "Call
/// Processing"), kept by the running node beside the definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmccRouting {
    /// Home side: each run-time device (a phone of another cluster that one of this cluster's
    /// users is logged in on) and the EMCC SIP trunk with PSTN Access to its cluster. For such
    /// a caller the roaming pool's Adjunct CSS is searched first (Figure 18-6) and the Standard
    /// Local Route Group means that trunk; its INVITEs on it name the phone
    /// ([`EMCC_DEVICE_HEADER`]).
    pub visiting_phones: HashMap<String, String>,
    /// Home side: where the EMCC SIP trunk reaches each visiting phone's cluster (`host:port`,
    /// the PSTN Access nodes that cluster told in its last remote cluster update; Cisco's EMCC
    /// trunk has no destination of its own). A phone without any uses the trunk's
    /// destinations.
    pub phone_destinations: HashMap<String, Vec<String>>,
    /// Visiting side: this cluster's EMCC SIP trunks with PSTN Access; `true` when calls
    /// arriving on one are routed with the named phone's own device CSS ("CSS for PSTN Access
    /// SIP Trunk: Use phone's original device CSS"), `false` for the trunk's CSS.
    pub pstn_trunks: HashMap<String, bool>,
    /// Visiting side: the phones that may be named on those trunks (EMCC-enabled phones).
    pub phones: std::collections::HashSet<String>,
}

/// The SIP header an INVITE on the EMCC SIP trunk names the visiting phone's device in (the
/// seed: "additional information included in a SIP invite across an EMCC SIP trunk, namely the
/// device name of the visiting phone"). UNCONFIRMED: Cisco's header is not documented; ucm's
/// is its own.
pub const EMCC_DEVICE_HEADER: &str = "X-UCM-EMCC-Device";

/// Typed sections by type, parsed on first use.
#[derive(Default)]
struct SectionCache(
    std::sync::Mutex<HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>>,
);

impl Cluster {
    /// A service's section of the definition, typed; parsed on the first call for this
    /// snapshot, not per request.
    pub fn section<T: Section>(&self) -> Arc<T> {
        let id = std::any::TypeId::of::<T>();
        let mut cache = self.sections.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(&id).and_then(|a| a.clone().downcast::<T>().ok()) {
            return t;
        }
        let t = Arc::new(self.def.section::<T>());
        cache.insert(id, t.clone());
        t
    }
}

/// One device's Extension Mobility login.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Login {
    pub device: String,
    pub user: String,
    pub profile: String,
    /// Unix seconds.
    pub logged_in_at: i64,
    /// When the login ends by itself (unix seconds); `None`: until logout.
    pub logout_at: Option<i64>,
}

/// The current logins and the lines they bring, by DN and by digits.
#[derive(Debug, Default)]
pub struct Mobility {
    inner: RwLock<MobilityIndex>,
}

#[derive(Debug, Default)]
struct MobilityIndex {
    logins: HashMap<String, Login>,
    /// The user's current login devices.
    by_user: HashMap<String, Vec<String>>,
    dn_devices: HashMap<DnKey, Vec<String>>,
    by_line_digits: HashMap<String, Vec<String>>,
    /// The line keys each login added.
    lines: HashMap<String, Vec<DnKey>>,
    /// The version of each device's state as last applied (see [`Mobility::apply`]); kept
    /// after a logout, so that an older login cannot come back.
    versions: HashMap<String, i64>,
}

impl Mobility {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MobilityIndex> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MobilityIndex> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn login(&self, device: &str) -> Option<Login> {
        self.read().logins.get(device).cloned()
    }

    /// Devices the user is logged in on.
    pub fn devices_of(&self, user: &str) -> Vec<String> {
        self.read().by_user.get(user).cloned().unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Login> {
        self.read().logins.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().logins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `login` (replacing the device's previous one) with the profile's lines.
    pub fn insert(&self, login: Login, profile_lines: &[LineAppearance]) {
        let mut g = self.write();
        g.remove(&login.device);
        g.add(login, profile_lines);
    }

    /// Ends the device's login, returning it.
    pub fn remove(&self, device: &str) -> Option<Login> {
        self.write().remove(device)
    }

    /// Sets the device's state as of `version` (a login with its profile's lines, or none)
    /// when that is newer than the state applied last; an older or the same version changes
    /// nothing. Returns whether it applied. Versions come from the database, where every
    /// change of the device bumps it: whoever delivers a change, and in whatever order, the
    /// newest wins.
    pub fn apply(
        &self,
        device: &str,
        version: i64,
        login: Option<(Login, &[LineAppearance])>,
    ) -> bool {
        let mut g = self.write();
        if g.versions.get(device).is_some_and(|&v| v >= version) {
            return false;
        }
        g.versions.insert(device.to_string(), version);
        g.remove(device);
        if let Some((login, lines)) = login {
            g.add(login, lines);
        }
        true
    }

    /// The version of the device's state last applied (0: none yet).
    pub fn version(&self, device: &str) -> i64 {
        self.read().versions.get(device).copied().unwrap_or(0)
    }
}

impl MobilityIndex {
    /// Indexes `login` and the lines its profile brings (the device has no login now).
    fn add(&mut self, login: Login, profile_lines: &[LineAppearance]) {
        for l in profile_lines {
            self.dn_devices
                .entry((l.dn.clone(), l.partition.clone()))
                .or_default()
                .push(login.device.clone());
            self.by_line_digits
                .entry(l.dn.clone())
                .or_default()
                .push(login.device.clone());
        }
        self.lines.insert(
            login.device.clone(),
            profile_lines
                .iter()
                .map(|l| (l.dn.clone(), l.partition.clone()))
                .collect(),
        );
        self.by_user
            .entry(login.user.clone())
            .or_default()
            .push(login.device.clone());
        self.logins.insert(login.device.clone(), login);
    }

    fn remove(&mut self, device: &str) -> Option<Login> {
        let login = self.logins.remove(device)?;
        // Only the keys this device's profile added hold it.
        for key in self.lines.remove(device).unwrap_or_default() {
            let digits = key.0.clone();
            drop_device(&mut self.dn_devices, key, device);
            drop_device(&mut self.by_line_digits, digits, device);
        }
        drop_device(&mut self.by_user, login.user.clone(), device);
        Some(login)
    }
}

fn drop_device<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Vec<String>>, key: K, device: &str) {
    if let Some(v) = m.get_mut(&key) {
        v.retain(|d| d != device);
        if v.is_empty() {
            m.remove(&key);
        }
    }
}

impl Deref for Cluster {
    type Target = ClusterDefinition;
    fn deref(&self) -> &ClusterDefinition {
        &self.def
    }
}

impl Cluster {
    pub fn new(def: ClusterDefinition) -> Cluster {
        Cluster::with_mobility(def, Arc::default())
    }

    /// A snapshot of a (possibly changed) definition that keeps the current logins.
    pub fn with_mobility(def: ClusterDefinition, mobility: Arc<Mobility>) -> Cluster {
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
            // With nobody logged in, a device with a logout profile has that profile's lines.
            let lines = logout_profile_in(&def, d).map_or(&d.lines, |p| &p.lines);
            for l in lines {
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
        let profiles = index(
            def.device_profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect(),
        );
        Cluster {
            sections: SectionCache::default(),
            emcc: Arc::default(),
            profiles,
            mobility,
            by_line_digits,
            dn_route_point,
            dialplan: def.dial_plan(),
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

    /// Devices that have a line with these digits, in any partition, as they are now (a device
    /// with an Extension Mobility login has its profile's lines instead of its own).
    pub fn devices_with_line_digits(&self, digits: &str) -> impl Iterator<Item = &Device> {
        let m = self.mobility.read();
        let mut out: Vec<&Device> = self
            .by_line_digits
            .get(digits)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.def.devices.get(i))
            .filter(|d| !m.logins.contains_key(&d.name))
            .collect();
        out.extend(
            m.by_line_digits
                .get(digits)
                .into_iter()
                .flatten()
                .filter_map(|name| self.device(name)),
        );
        out.into_iter()
    }

    pub fn device_profile(&self, name: &str) -> Option<&DeviceProfile> {
        self.profiles
            .get(name)
            .and_then(|&i| self.def.device_profiles.get(i))
    }

    /// The profile a logged-in device runs, when it still exists.
    fn login_profile(&self, device: &str) -> Option<&DeviceProfile> {
        let profile = self.mobility.read().logins.get(device)?.profile.clone();
        self.device_profile(&profile)
    }

    /// The profile a device runs now: its login's, else (nobody logged in) its logout
    /// profile when it has one (seed, Extension Mobility: the logout profile is what the
    /// phone carries between users).
    fn current_profile(&self, dev: &Device) -> Option<&DeviceProfile> {
        self.login_profile(&dev.name)
            .or_else(|| logout_profile_in(&self.def, dev))
    }

    /// The lines `dev` carries now: its login profile's, its logout profile's, or its own.
    pub fn lines_of(&self, dev: &Device) -> Vec<LineAppearance> {
        match self.current_profile(dev) {
            Some(p) => p.lines.clone(),
            None => dev.lines.clone(),
        }
    }

    /// The device as it is now: with a login, the profile's lines, speed dials, services and
    /// locale replace the device's own (what its configuration file carries); with nobody
    /// logged in, its logout profile's do.
    pub fn effective_device(&self, name: &str) -> Option<Cow<'_, Device>> {
        let dev = self.device(name)?;
        Some(match self.current_profile(dev) {
            None => Cow::Borrowed(dev),
            Some(p) => {
                let mut d = dev.clone();
                d.lines = p.lines.clone();
                d.speed_dials = p.speed_dials.clone();
                d.subscribed_services = p.subscribed_services.clone();
                if p.user_locale.is_some() {
                    d.user_locale = p.user_locale.clone();
                }
                Cow::Owned(d)
            }
        })
    }

    /// The route point that owns a DN, if a service owns it.
    pub fn route_point_for(&self, key: &DnKey) -> Option<&crate::config::model::RoutePoint> {
        self.dn_route_point
            .get(key)
            .and_then(|&i| self.def.route_points.get(i))
    }

    /// Devices that carry the DN as one of their lines now (several: a shared line), logins
    /// included.
    pub fn devices_with_line(&self, key: &DnKey) -> impl Iterator<Item = &Device> {
        let m = self.mobility.read();
        let mut out: Vec<&Device> = self
            .dn_devices
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.def.devices.get(i))
            .filter(|d| !m.logins.contains_key(&d.name))
            .collect();
        out.extend(
            m.dn_devices
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|name| self.device(name)),
        );
        out.into_iter()
    }
}

/// The logout profile `dev` runs while nobody is logged in, when it has one that exists.
fn logout_profile_in<'a>(def: &'a ClusterDefinition, dev: &Device) -> Option<&'a DeviceProfile> {
    let name = dev.logout_profile.as_deref().filter(|_| dev.em_enabled)?;
    def.device_profiles.iter().find(|p| p.name == name)
}

/// The running node's current cluster: a snapshot readers take without waiting (writers swap
/// the whole `Arc`; EM logins live in the shared [`Mobility`] and survive a swap).
///
/// Devices that exist at run time only (the EMCC devices of another cluster's phones that this
/// cluster's users are logged in on, see `services::emcc`) are added to every snapshot's
/// definition, so the registrar, configuration files and call routing see them as devices.
pub struct ClusterHandle {
    current: std::sync::RwLock<Arc<Cluster>>,
    /// The definition as given, without the run-time devices.
    base: std::sync::RwLock<Arc<ClusterDefinition>>,
    extra: std::sync::RwLock<Arc<Vec<Device>>>,
    emcc: std::sync::RwLock<Arc<EmccRouting>>,
}

impl ClusterHandle {
    pub fn new(def: ClusterDefinition) -> ClusterHandle {
        ClusterHandle {
            current: std::sync::RwLock::new(Arc::new(Cluster::new(def.clone()))),
            base: std::sync::RwLock::new(Arc::new(def)),
            extra: Default::default(),
            emcc: Default::default(),
        }
    }

    /// The current cluster (a cheap snapshot).
    pub fn get(&self) -> Arc<Cluster> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the definition, keeping the logins and the run-time devices.
    pub fn set(&self, def: ClusterDefinition) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *self.base.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(def);
        self.rebuild(&mut g);
    }

    /// Replaces the run-time devices (a device of the definition with the same name wins) and
    /// what call control knows of EMCC, in one new snapshot.
    pub fn set_extra_devices(&self, devices: Vec<Device>, routing: EmccRouting) {
        let mut g = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *self.extra.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(devices);
        *self.emcc.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routing);
        self.rebuild(&mut g);
    }

    fn rebuild(&self, current: &mut Arc<Cluster>) {
        let mut def = (**self.base.read().unwrap_or_else(|p| p.into_inner())).clone();
        let extra = self.extra.read().unwrap_or_else(|p| p.into_inner()).clone();
        for d in extra.iter() {
            if !def.devices.iter().any(|x| x.name == d.name) {
                def.devices.push(d.clone());
            }
        }
        let mobility = current.mobility.clone();
        let mut c = Cluster::with_mobility(def, mobility);
        c.emcc = self.emcc.read().unwrap_or_else(|p| p.into_inner()).clone();
        *current = Arc::new(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(device: &str, user: &str) -> Login {
        Login {
            device: device.into(),
            user: user.into(),
            profile: "p".into(),
            logged_in_at: 1,
            logout_at: None,
        }
    }

    fn line(dn: &str) -> LineAppearance {
        LineAppearance {
            dn: dn.into(),
            partition: None,
            label: None,
            display: None,
        }
    }

    #[test]
    fn r15_mobility_applies_a_devices_changes_newest_first_whatever_the_order() {
        let m = Mobility::default();
        let lines = [line("10001")];
        // Login (v1), then the logout (v2) arrives before a late delivery of the login.
        assert!(m.apply("A", 2, None));
        assert!(!m.apply("A", 1, Some((login("A", "u"), &lines))));
        assert_eq!(m.login("A"), None);
        assert!(m.devices_of("u").is_empty());
        // A newer login applies, with its lines; the same version again changes nothing.
        assert!(m.apply("A", 3, Some((login("A", "u"), &lines))));
        assert!(!m.apply("A", 3, None));
        assert_eq!(m.login("A").map(|l| l.user), Some("u".into()));
        assert_eq!(
            m.read().by_line_digits.get("10001"),
            Some(&vec!["A".into()])
        );
        // Another user's newer login replaces it, lines and user index included.
        assert!(m.apply("A", 4, Some((login("A", "v"), &[]))));
        assert!(m.devices_of("u").is_empty());
        assert_eq!(m.devices_of("v"), vec!["A".to_string()]);
        assert!(!m.read().by_line_digits.contains_key("10001"));
        assert_eq!((m.version("A"), m.version("B")), (4, 0));
        // Devices are independent.
        assert!(m.apply("B", 1, Some((login("B", "v"), &[]))));
        assert_eq!(m.len(), 2);
    }

    /// The demo with the hot-desk phone's own line differing from its logout profile's.
    fn hotdesk() -> Cluster {
        let mut def = crate::services::demo().unwrap();
        let d = def
            .devices
            .iter_mut()
            .find(|d| d.name == "SEP0000000000A1")
            .unwrap();
        d.lines[0].dn = "29009".into();
        let p = def
            .device_profiles
            .iter_mut()
            .find(|p| p.name == "hotdesk-logout")
            .unwrap();
        p.user_locale = Some("French_France".into());
        p.subscribed_services = vec!["Corporate Directory".into()];
        Cluster::new(def)
    }

    #[test]
    fn r15_with_nobody_logged_in_a_device_runs_its_logout_profile() {
        let c = hotdesk();
        let dev = c.device("SEP0000000000A1").unwrap();
        let dns = |c: &Cluster| -> Vec<String> {
            c.lines_of(c.device("SEP0000000000A1").unwrap())
                .into_iter()
                .map(|l| l.dn)
                .collect()
        };
        assert_eq!(dns(&c), vec!["29001"], "the logout profile's line");
        let e = c.effective_device(&dev.name).unwrap();
        assert_eq!(e.lines[0].dn, "29001");
        assert_eq!(e.user_locale.as_deref(), Some("French_France"));
        assert_eq!(
            e.subscribed_services,
            vec!["Corporate Directory".to_string()]
        );
        // Call control finds the device by the profile's line, not by its own.
        let key = ("29001".to_string(), Some("Internal_PT".to_string()));
        assert!(c.devices_with_line(&key).any(|d| d.name == dev.name));
        assert!(c
            .devices_with_line_digits("29001")
            .any(|d| d.name == dev.name));
        assert!(!c
            .devices_with_line_digits("29009")
            .any(|d| d.name == dev.name));
        // A login replaces it; the logout brings it back.
        let prof = c.device_profile("jsmith-udp").unwrap().clone();
        c.mobility.insert(
            Login {
                device: dev.name.clone(),
                user: "jsmith".into(),
                profile: prof.name.clone(),
                logged_in_at: 0,
                logout_at: None,
            },
            &prof.lines,
        );
        assert_eq!(dns(&c), vec!["10001"]);
        assert!(!c.devices_with_line(&key).any(|d| d.name == dev.name));
        let e = c.effective_device(&dev.name).unwrap();
        assert_eq!(e.user_locale.as_deref(), Some("English_United_States"));
        c.mobility.remove(&dev.name);
        assert_eq!(dns(&c), vec!["29001"]);
    }
}
