//! A bounded flow table keyed by 5-tuple.
//!
//! A flow is bidirectional: both directions of a UDP or TCP conversation share one
//! [`FlowKey`] (its two endpoints in a canonical order), and [`FlowKey::new`] says which
//! [`Side`] each packet was sent from. Protocols without ports (ICMP, IGMP, PIM, OSPF,
//! ESP...) are keyed by protocol and addresses with port 0, so every IP packet belongs to
//! exactly one flow.
//!
//! [`FlowTable`] holds at most a fixed number of flows, in order of first appearance; when it
//! is full, lookups of new keys fail and the caller decides where those packets go.

use std::collections::HashMap;

/// The hasher of the per-packet tables: foldhash (fast, seeded per process), not SipHash.
pub type FastHash = foldhash::fast::RandomState;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// One end of a flow. `port` is 0 for protocols without ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn new(addr: IpAddr, port: u16) -> Self {
        Endpoint { addr, port }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(s: SocketAddr) -> Self {
        Endpoint::new(s.ip(), s.port())
    }
}

impl fmt::Display for Endpoint {
    /// `IP:PORT`, IPv6 in brackets; a port-less endpoint prints only the address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (a, 0) => write!(f, "{a}"),
            (IpAddr::V4(a), p) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), p) => write!(f, "[{a}]:{p}"),
        }
    }
}

/// Which endpoint of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Sent by [`FlowKey::a`].
    A,
    /// Sent by [`FlowKey::b`].
    B,
}

impl Side {
    /// 0 for `A`, 1 for `B`: an index into per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Bidirectional flow identity: protocol and two endpoints with `a <= b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub protocol: u8,
    pub a: Endpoint,
    pub b: Endpoint,
}

impl FlowKey {
    /// The key of a packet from `src` to `dst`, and the side that sent it. Ports must be 0 for
    /// protocols without ports.
    pub fn new(protocol: u8, src: Endpoint, dst: Endpoint) -> (FlowKey, Side) {
        if src <= dst {
            (
                FlowKey {
                    protocol,
                    a: src,
                    b: dst,
                },
                Side::A,
            )
        } else {
            (
                FlowKey {
                    protocol,
                    a: dst,
                    b: src,
                },
                Side::B,
            )
        }
    }

    /// The endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }

    /// The side whose endpoint is `e`, if any.
    pub fn side_of(&self, e: Endpoint) -> Option<Side> {
        if e == self.a {
            Some(Side::A)
        } else if e == self.b {
            Some(Side::B)
        } else {
            None
        }
    }
}

/// Index of a flow in a [`FlowTable`] (order of first appearance).
pub type FlowId = usize;

/// Flows in order of first appearance, at most `capacity` of them, each with state `T`.
#[derive(Debug)]
pub struct FlowTable<T> {
    index: HashMap<FlowKey, FlowId, FastHash>,
    flows: Vec<(FlowKey, T)>,
    capacity: usize,
}

impl<T> FlowTable<T> {
    /// A table that holds at most `capacity` flows.
    pub fn new(capacity: usize) -> Self {
        FlowTable {
            index: HashMap::default(),
            flows: Vec::new(),
            capacity,
        }
    }

    /// The flow `key`, created with `init` if new; `None` when it is new and the table is full.
    pub fn get_or_insert_with(
        &mut self,
        key: FlowKey,
        init: impl FnOnce() -> T,
    ) -> Option<(FlowId, &mut T)> {
        let id = match self.index.get(&key) {
            Some(&id) => id,
            None => {
                if self.flows.len() >= self.capacity {
                    return None;
                }
                let id = self.flows.len();
                self.flows.push((key, init()));
                self.index.insert(key, id);
                id
            }
        };
        self.flows.get_mut(id).map(|(_, t)| (id, t))
    }

    /// The flow `key`, if present.
    pub fn get(&self, key: &FlowKey) -> Option<(FlowId, &T)> {
        let id = *self.index.get(key)?;
        self.flows.get(id).map(|(_, t)| (id, t))
    }

    /// The flow with id `id`.
    pub fn by_id(&self, id: FlowId) -> Option<(&FlowKey, &T)> {
        self.flows.get(id).map(|(k, t)| (k, t))
    }

    /// The flow with id `id`, mutably.
    pub fn by_id_mut(&mut self, id: FlowId) -> Option<(&FlowKey, &mut T)> {
        self.flows.get_mut(id).map(|(k, t)| (&*k, t))
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// True when no new flow can be added.
    pub fn is_full(&self) -> bool {
        self.flows.len() >= self.capacity
    }

    /// Flows in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &FlowKey, &T)> + '_ {
        self.flows.iter().enumerate().map(|(i, (k, t))| (i, k, t))
    }

    /// Consumes the table, yielding flows in order of first appearance.
    pub fn into_flows(self) -> Vec<(FlowKey, T)> {
        self.flows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        Endpoint::from(s.parse::<SocketAddr>().expect("addr"))
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, s1) = FlowKey::new(17, ep("10.0.0.2:5060"), ep("10.0.0.1:5060"));
        let (k2, s2) = FlowKey::new(17, ep("10.0.0.1:5060"), ep("10.0.0.2:5060"));
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.endpoint(s1), ep("10.0.0.2:5060"));
        assert_eq!(k1.side_of(ep("10.0.0.1:5060")), Some(s2));
        // Same addresses, other protocol: another flow.
        let (k3, _) = FlowKey::new(6, ep("10.0.0.1:5060"), ep("10.0.0.2:5060"));
        assert_ne!(k1, k3);
    }

    #[test]
    fn table_is_bounded_and_ordered() {
        let mut t: FlowTable<u32> = FlowTable::new(2);
        let keys: Vec<FlowKey> = ["10.0.0.1:1", "10.0.0.1:2", "10.0.0.1:3"]
            .iter()
            .map(|s| FlowKey::new(17, ep(s), ep("10.0.0.9:9")).0)
            .collect();
        assert_eq!(t.get_or_insert_with(keys[0], || 1).map(|(i, _)| i), Some(0));
        assert_eq!(t.get_or_insert_with(keys[1], || 2).map(|(i, _)| i), Some(1));
        assert!(t.is_full());
        assert!(t.get_or_insert_with(keys[2], || 3).is_none());
        // Existing flows are still found when full.
        if let Some((_, v)) = t.get_or_insert_with(keys[0], || 0) {
            *v += 10;
        }
        assert_eq!(t.get(&keys[0]).map(|(_, v)| *v), Some(11));
        let order: Vec<u32> = t.iter().map(|(_, _, v)| *v).collect();
        assert_eq!(order, vec![11, 2]);
    }

    #[test]
    fn endpoints_print_like_socket_addresses() {
        assert_eq!(ep("10.0.0.1:5060").to_string(), "10.0.0.1:5060");
        assert_eq!(ep("[2001:db8::1]:5060").to_string(), "[2001:db8::1]:5060");
        assert_eq!(
            Endpoint::new("10.0.0.1".parse().expect("ip"), 0).to_string(),
            "10.0.0.1"
        );
    }
}
