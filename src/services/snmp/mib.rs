//! The objects the agent serves, as one sorted view: the system group (sysDescr, sysObjectID,
//! sysUpTime, sysName) and the CISCO-CCM-MIB tables a paging server walks (`ccmTable`,
//! `ccmPhoneTable`, `ccmPhoneExtnTable`). Built from [`NodeFacts`] without I/O; GET and
//! GETNEXT are a binary search.
//!
//! OIDs and syntaxes: the MIB as summarised in the specs (section "SNMP: CISCO-CCM-MIB").
//! As on Cisco's nodes, the phone tables describe the phones "known to the server": here the
//! phones whose device pool lists this node in its Unified CM group, and any phone registered
//! to this node.

/// An object identifier as its arcs; `Vec` order is SNMP's lexicographic order.
pub type Oid = Vec<u32>;

/// `ciscoCcmMIB` ::= { ciscoMgmt 156 }.
pub const CCM_MIB: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 156];
/// `ccmTable` entry: `ccmMIBObjects.ccmGeneralInfo.ccmTable.ccmEntry`.
pub const CCM_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 1, 2, 1];
/// `ccmPhoneTable` entry.
pub const CCM_PHONE_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1];
/// `ccmPhoneExtnTable` entry.
pub const CCM_PHONE_EXTN_ENTRY: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 5, 1];
/// MIB-2 `system`.
pub const SYSTEM: &[u32] = &[1, 3, 6, 1, 2, 1, 1];
/// snmpEngine (SNMP-FRAMEWORK-MIB, RFC 3411).
pub const SNMP_ENGINE: &[u32] = &[1, 3, 6, 1, 6, 3, 10, 2, 1];
/// sysObjectID: Cisco's enterprise arc (`ciscoProducts`); which product OID Cisco's nodes
/// report is UNCONFIRMED, so the agent names only the vendor.
const SYS_OBJECT_ID: &[u32] = &[1, 3, 6, 1, 4, 1, 9, 1];

/// A value as SNMP types it (SMIv2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i32),
    Octets(Vec<u8>),
    ObjectId(Oid),
    /// Gauge32 / Unsigned32.
    Unsigned(u32),
    /// Hundredths of a second.
    Ticks(u32),
}

/// `ccmStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Up = 2,
    Down = 3,
}

/// `CcmDeviceStatus` (phones) and `CcmDeviceLineStatus` (their lines) share these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Registered = 2,
    Unregistered = 3,
}

/// A node of the cluster, one `ccmTable` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub description: String,
    /// This node's version; "unknown" for the others, as Cisco's agent says.
    pub version: String,
    pub status: NodeStatus,
    pub ipv4: Option<[u8; 4]>,
}

/// A phone, one `ccmPhoneTable` row and its `ccmPhoneExtnTable` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRow {
    /// `ccmPhoneIndex`: the phone's place in the definition, so it stays the same across
    /// walks and nodes.
    pub index: u32,
    pub name: String,
    pub description: String,
    pub user: String,
    pub status: DeviceStatus,
    /// Where it registered from (0.0.0.0 when not registered: "contains value zero if not
    /// available").
    pub ipv4: [u8; 4],
    /// `ccmPhoneDevicePoolIndex`: the pool's place in the definition (1-based), 0 for none.
    pub device_pool_index: u32,
    /// Its directory numbers, in line order.
    pub lines: Vec<String>,
}

/// What the view is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub sys_descr: String,
    pub sys_name: String,
    /// Since the agent started, in hundredths of a second.
    pub uptime_ticks: u32,
    pub cluster_id: String,
    pub nodes: Vec<NodeRow>,
    pub phones: Vec<PhoneRow>,
}

/// Every object the agent serves, sorted by OID.
#[derive(Debug, Clone, Default)]
pub struct View {
    entries: Vec<(Oid, Value)>,
}

/// `SnmpAdminString` sizes from the MIB: longer strings are cut at a character boundary.
fn admin(s: &str, max: usize) -> Value {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Value::Octets(s.as_bytes()[..end].to_vec())
}

/// The MAC address in a `SEP…` device name (6 octets), else 6 zero octets.
pub fn mac_of(device: &str) -> [u8; 6] {
    let hex = device.get(3..).unwrap_or("");
    let mut mac = [0u8; 6];
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return mac;
    }
    for (i, m) in mac.iter_mut().enumerate() {
        *m = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    mac
}

fn oid(prefix: &[u32], rest: &[u32]) -> Oid {
    let mut o = Vec::with_capacity(prefix.len() + rest.len());
    o.extend_from_slice(prefix);
    o.extend_from_slice(rest);
    o
}

impl View {
    pub fn build(f: &NodeFacts) -> View {
        let mut e: Vec<(Oid, Value)> = vec![
            (oid(SYSTEM, &[1, 0]), admin(&f.sys_descr, 255)),
            (
                oid(SYSTEM, &[2, 0]),
                Value::ObjectId(SYS_OBJECT_ID.to_vec()),
            ),
            (oid(SYSTEM, &[3, 0]), Value::Ticks(f.uptime_ticks)),
            (oid(SYSTEM, &[5, 0]), admin(&f.sys_name, 255)),
        ];
        for (i, n) in f.nodes.iter().enumerate() {
            let ix = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let col = |c: u32| oid(CCM_ENTRY, &[c, ix]);
            e.push((col(2), admin(&n.name, 128)));
            e.push((col(3), admin(&n.description, 255)));
            e.push((col(4), admin(&n.version, 24)));
            e.push((col(5), Value::Integer(n.status as i32)));
            // InetAddressType ipv4(1) with 4 octets, unknown(0) with none (RFC 4001).
            match n.ipv4 {
                Some(a) => {
                    e.push((col(6), Value::Integer(1)));
                    e.push((col(7), Value::Octets(a.to_vec())));
                }
                None => {
                    e.push((col(6), Value::Integer(0)));
                    e.push((col(7), Value::Octets(Vec::new())));
                }
            }
            e.push((col(8), admin(&f.cluster_id, 128)));
        }
        for p in &f.phones {
            let col = |c: u32| oid(CCM_PHONE_ENTRY, &[c, p.index]);
            e.push((col(2), Value::Octets(mac_of(&p.name).to_vec())));
            e.push((col(4), admin(&p.description, 255)));
            e.push((col(5), admin(&p.user, 255)));
            e.push((col(7), Value::Integer(p.status as i32)));
            e.push((col(13), Value::Unsigned(p.device_pool_index)));
            // ccmPhoneProtocol sip(3): ucm's phones speak SIP only.
            e.push((col(19), Value::Integer(3)));
            e.push((col(20), admin(&p.name, 128)));
            e.push((col(21), Value::Octets(p.ipv4.to_vec())));
            // ccmPhoneIPv4Attribute adminAndControl(3): one address for both.
            e.push((col(23), Value::Integer(3)));
            for (l, dn) in p.lines.iter().enumerate() {
                let li = u32::try_from(l + 1).unwrap_or(u32::MAX);
                let col = |c: u32| oid(CCM_PHONE_EXTN_ENTRY, &[c, p.index, li]);
                e.push((col(2), admin(dn, 24)));
                e.push((col(3), Value::Unsigned(0)));
                e.push((col(4), Value::Integer(1)));
                e.push((col(5), Value::Octets(p.ipv4.to_vec())));
                e.push((col(6), Value::Integer(p.status as i32)));
            }
        }
        e.sort_by(|a, b| a.0.cmp(&b.0));
        e.dedup_by(|a, b| a.0 == b.0);
        View { entries: e }
    }

    /// The view with SNMP-FRAMEWORK-MIB's snmpEngine group (RFC 3411): snmpEngineID, Boots,
    /// Time and MaxMessageSize, the objects `utils snmp walk 1.3.6.1.6.3.10.2.1` shows.
    pub fn with_engine(mut self, id: &[u8], boots: u32, time: u32, max_size: u32) -> View {
        let clamp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let mut add = vec![
            (oid(SNMP_ENGINE, &[1, 0]), Value::Octets(id.to_vec())),
            (oid(SNMP_ENGINE, &[2, 0]), Value::Integer(clamp(boots))),
            (oid(SNMP_ENGINE, &[3, 0]), Value::Integer(clamp(time))),
            (oid(SNMP_ENGINE, &[4, 0]), Value::Integer(clamp(max_size))),
        ];
        self.entries.retain(|(o, _)| !o.starts_with(SNMP_ENGINE));
        self.entries.append(&mut add);
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The object at exactly `oid`.
    pub fn get(&self, oid: &[u32]) -> Option<&Value> {
        self.entries
            .binary_search_by(|(o, _)| o.as_slice().cmp(oid))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Whether `oid` names an object type the view serves (an instance of it may be missing):
    /// decides noSuchInstance against noSuchObject.
    pub fn has_object(&self, oid: &[u32]) -> bool {
        if oid.is_empty() {
            return false;
        }
        let parent = &oid[..oid.len() - 1];
        match self.next(parent) {
            Some((o, _)) => o.starts_with(parent) && o.len() > parent.len(),
            None => false,
        }
    }

    /// The first object after `oid` in lexicographic order (GETNEXT).
    pub fn next(&self, oid: &[u32]) -> Option<(&Oid, &Value)> {
        let i = self.entries.partition_point(|(o, _)| o.as_slice() <= oid);
        self.entries.get(i).map(|(o, v)| (o, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            sys_descr: "ucm".into(),
            sys_name: "ucm-pub".into(),
            uptime_ticks: 100,
            cluster_id: "demo".into(),
            nodes: vec![NodeRow {
                name: "ucm-pub".into(),
                description: "publisher".into(),
                version: "0.1".into(),
                status: NodeStatus::Up,
                ipv4: Some([127, 0, 0, 1]),
            }],
            phones: vec![
                PhoneRow {
                    index: 5,
                    name: "SEP00036BC7B973".into(),
                    description: "d".into(),
                    user: "u".into(),
                    status: DeviceStatus::Registered,
                    ipv4: [127, 0, 0, 10],
                    device_pool_index: 1,
                    lines: vec!["10001".into(), "10002".into()],
                },
                PhoneRow {
                    index: 2,
                    name: "SEP000000000002".into(),
                    description: String::new(),
                    user: String::new(),
                    status: DeviceStatus::Unregistered,
                    ipv4: [0; 4],
                    device_pool_index: 0,
                    lines: vec![],
                },
            ],
        }
    }

    #[test]
    fn instance_oids_are_the_mibs() {
        let v = View::build(&facts());
        // The spec's derived examples: ccmPhoneName of phone 5, its line 1's ccmPhoneExtn.
        let name: Oid = vec![1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1, 20, 5];
        assert_eq!(
            v.get(&name),
            Some(&Value::Octets(b"SEP00036BC7B973".to_vec()))
        );
        let extn: Oid = vec![1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 5, 1, 2, 5, 1];
        assert_eq!(v.get(&extn), Some(&Value::Octets(b"10001".to_vec())));
        assert_eq!(
            v.get(&oid(CCM_PHONE_ENTRY, &[2, 5])),
            Some(&Value::Octets(vec![0x00, 0x03, 0x6b, 0xc7, 0xb9, 0x73]))
        );
        assert_eq!(
            v.get(&oid(CCM_ENTRY, &[7, 1])),
            Some(&Value::Octets(vec![127, 0, 0, 1]))
        );
    }

    #[test]
    fn getnext_walks_in_lexicographic_order_and_ends() {
        let v = View::build(&facts());
        let mut at: Oid = vec![1, 3];
        let mut seen = Vec::new();
        while let Some((o, _)) = v.next(&at) {
            assert!(o > &at, "{o:?} after {at:?}");
            seen.push(o.clone());
            at = o.clone();
        }
        assert_eq!(seen.len(), v.len());
        // Phone 2 comes before phone 5 within each column, whatever the input order.
        let names: Vec<_> = seen
            .iter()
            .filter(|o| o.starts_with(&oid(CCM_PHONE_ENTRY, &[20])))
            .map(|o| o[o.len() - 1])
            .collect();
        assert_eq!(names, vec![2, 5]);
    }

    #[test]
    fn no_such_object_and_instance_are_told_apart() {
        let v = View::build(&facts());
        assert!(v.has_object(&oid(CCM_PHONE_ENTRY, &[20, 99])));
        assert!(!v.has_object(&oid(CCM_PHONE_ENTRY, &[99, 1])));
        assert!(!v.has_object(&[]));
    }

    #[test]
    fn a_long_string_is_cut_at_a_character_boundary() {
        let s = "é".repeat(100);
        match admin(&s, 25) {
            Value::Octets(b) => assert_eq!(b.len(), 24),
            v => panic!("{v:?}"),
        }
        assert_eq!(mac_of("SEPzz"), [0; 6]);
    }
}
