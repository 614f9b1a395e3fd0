//! Calls across the nodes of a cluster: the intra-cluster SIP trunk.
//!
//! Every node knows every node's registrations (the change feed). A call for a line whose
//! device is registered with another node goes to that node as an INVITE over UDP to the
//! address and SIP port the definition gives it (`nodes[].address`, `nodes[].ports.sip`, 5060
//! when left out), from this node's own SIP socket (marked `qos.call_signalling`, CS3). The
//! INVITE names what to ring in [`DELIVER_HEADER`]; the receiving node rings exactly those
//! devices among its own registrations and nothing else: no digit analysis, no forwarding, no
//! other node, so a call can cross at most once and never loops. Its answers (180, 200, the
//! SDP) come back the same way and media flows phone to phone.
//!
//! Trust: the header is honoured only from the address of a node of the definition, over UDP
//! from that node's SIP port (where its node sends from). From anyone else it is refused (403)
//! and logged: a stranger cannot make a node ring its phones by forging the header.

use super::*;
use crate::config::model::Node;
use crate::sip::registrar::Binding;

/// The header an intra-cluster INVITE carries: `line=DN;pt=PARTITION;devices=A,B;node=FROM`
/// (`pt` only when the line has a partition), or for a route point another node's service
/// serves `line=DN;pt=PARTITION;rp=ROUTE_POINT;node=FROM`.
pub const DELIVER_HEADER: &str = "X-Ucm-Deliver";

/// What an intra-cluster INVITE asks its node to ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    pub line: String,
    pub partition: Option<String>,
    /// The devices to ring (none when `route_point` is given).
    pub devices: Vec<String>,
    /// The route point whose service (on the receiving node) is offered the call.
    pub route_point: Option<String>,
    /// The caller's own Call-ID, which the service names the call by (its reports), when it
    /// fits the header (no `"`).
    pub call_id: Option<String>,
    /// The node that sent it (for the log).
    pub node: String,
}

impl Deliver {
    pub fn to_header(&self) -> String {
        let pt = self
            .partition
            .as_deref()
            .map(|p| format!(";pt={p}"))
            .unwrap_or_default();
        let target = match &self.route_point {
            Some(rp) => format!("rp={rp}"),
            None => format!("devices={}", self.devices.join(",")),
        };
        let cid = self
            .call_id
            .as_deref()
            .map(|c| format!(";cid={c}"))
            .unwrap_or_default();
        format!("line={}{pt};{target}{cid};node={}", self.line, self.node)
    }

    pub fn parse(v: &str) -> Result<Deliver, String> {
        let (mut line, mut partition, mut devices, mut node) = (None, None, None, None);
        let (mut route_point, mut call_id) = (None, None);
        for part in v.split(';') {
            let (k, val) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=value"))?;
            let val = val.trim();
            let ok = !val.is_empty()
                && val
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'"'));
            if !ok {
                return Err(format!("{k} has a bad value {val:?}"));
            }
            match k.trim() {
                "line" => line = Some(val.to_string()),
                "pt" => partition = Some(val.to_string()),
                "devices" => devices = Some(val.split(',').map(str::to_string).collect()),
                "node" => node = Some(val.to_string()),
                "rp" => route_point = Some(val.to_string()),
                "cid" => call_id = Some(val.to_string()),
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        let devices: Vec<String> = match (devices, &route_point) {
            (Some(_), Some(_)) => return Err("both devices and a route point".into()),
            (None, Some(_)) => Vec::new(),
            (d, None) => d.ok_or("no devices")?,
        };
        if devices.iter().any(|d| d.is_empty()) || devices.len() > 64 {
            return Err("bad device list".into());
        }
        Ok(Deliver {
            line: line.ok_or("no line")?,
            partition,
            devices,
            route_point,
            call_id,
            node: node.ok_or("no node")?,
        })
    }
}

/// Where node `node` takes SIP from other nodes, as its definition says.
pub fn node_sip_addr(node: &Node) -> Result<SocketAddr, String> {
    let ip: std::net::IpAddr = node
        .address
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("its address {:?} is not an IP address", node.address))?;
    match node.ports.sip.unwrap_or(5060) {
        0 => Err("its SIP port is chosen at start (ports.sip: 0), unknown to other nodes".into()),
        port => Ok(SocketAddr::new(ip, port)),
    }
}

/// Where and how other nodes send node `node` calls over the intra-cluster trunk: its
/// `sip_transport` to its SIP port (UDP, TCP) or SIPS port (TLS, 5061 when left out).
pub fn node_peer(node: &Node) -> Result<Peer, String> {
    use crate::config::model::SipTransport;
    let udp = node_sip_addr(node)?;
    match node.sip_transport {
        SipTransport::Udp => Ok(Peer {
            addr: udp,
            transport: Transport::Udp,
        }),
        SipTransport::Tcp => Ok(Peer {
            addr: udp,
            transport: Transport::Tcp,
        }),
        SipTransport::Tls => match node.ports.sips.unwrap_or(5061) {
            0 => Err(
                "its SIPS port is chosen at start (ports.sips: 0), unknown to other nodes".into(),
            ),
            port => Ok(Peer {
                addr: SocketAddr::new(udp.ip(), port),
                transport: Transport::Tls,
            }),
        },
    }
}

/// The Request-URI of an intra-cluster INVITE for `user` at `peer`.
fn node_target(user: &str, peer: Peer) -> String {
    match peer.transport {
        Transport::Udp => format!("sip:{user}@{}", peer.addr),
        t => format!(
            "sip:{user}@{};transport={}",
            peer.addr,
            t.as_str().to_ascii_lowercase()
        ),
    }
}

/// The node of the cluster a request comes from, if any: the source address is a node's and,
/// over UDP, the port its SIP port (a node sends from its SIP socket).
pub fn node_at(cluster: &Cluster, peer: Peer) -> Option<&Node> {
    cluster.nodes.iter().find(|n| {
        node_sip_addr(n).is_ok_and(|a| {
            a.ip() == peer.addr.ip()
                && (peer.transport != Transport::Udp || a.port() == peer.addr.port())
        })
    })
}

impl B2bua {
    /// Offers the call to the devices of `dn` registered with other nodes: one INVITE per
    /// node, which rings its devices. A node that cannot be reached from the definition is
    /// logged and left out. Returns how many nodes were offered the call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_through_nodes(
        &mut self,
        cluster: &Cluster,
        local: &str,
        call: u64,
        dn: &DnKey,
        remote: Vec<(String, Binding)>,
        now: Now,
        out: &mut Vec<Out>,
    ) -> usize {
        let mut offered = 0;
        let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (device, b) in remote {
            by_node.entry(b.node).or_default().push(device);
        }
        for (node, devices) in by_node {
            let peer = match cluster.nodes.iter().find(|n| n.name == node) {
                Some(n) => node_peer(n),
                None => Err("it is not in the definition".to_string()),
            };
            let peer = match peer {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!(call, node, reason = %why, "devices registered with another node cannot be reached");
                    continue;
                }
            };
            let deliver = Deliver {
                line: dn.0.clone(),
                partition: dn.1.clone(),
                devices: devices.clone(),
                route_point: None,
                call_id: None,
                node: local.to_string(),
            };
            let device = (devices.len() == 1).then(|| devices[0].clone());
            tracing::debug!(
                call,
                node,
                ?devices,
                "offering the call through another node"
            );
            let Some(presented) = self
                .calls
                .get(&call)
                .map(|c| (c.caller.number.clone(), c.caller.display.clone()))
            else {
                return offered;
            };
            let target = node_target(&dn.0, peer);
            let extra = (DELIVER_HEADER, deliver.to_header());
            self.fork_as(
                call,
                peer,
                &target,
                &dn.0,
                device,
                presented,
                Some(extra),
                now,
                out,
            );
            offered += 1;
        }
        offered
    }

    /// Offers a call for route point `rp`, which another node's service serves (a service
    /// the cluster runs once, on the node holding its lease), to that node: one INVITE naming
    /// the route point, whose service answers there. False (nothing sent) when no other node
    /// is known to serve it, the node cannot be reached from the definition, or the call
    /// itself came from another node (a call crosses once: no loops).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_route_point_through_node(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        dn: &DnKey,
        rp: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) -> bool {
        let local = registrar.local_node();
        let Some(node) = self.remote_route_points.get(rp).cloned() else {
            return false;
        };
        if node == local {
            return false;
        }
        let Some((presented, call_id)) = self.calls.get(&call).and_then(|c| {
            c.a_request.headers.get(DELIVER_HEADER).is_none().then(|| {
                let cid = c.a_request.call_id().unwrap_or_default();
                let cid = (!cid.is_empty()
                    && cid
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'"')))
                .then(|| cid.to_string());
                ((c.caller.number.clone(), c.caller.display.clone()), cid)
            })
        }) else {
            return false;
        };
        let peer = match cluster.nodes.iter().find(|n| n.name == node) {
            Some(n) => node_peer(n),
            None => Err("it is not in the definition".to_string()),
        };
        let peer = match peer {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(call, node, route_point = rp, reason = %why, "the node serving the route point cannot be reached");
                return false;
            }
        };
        let deliver = Deliver {
            line: dn.0.clone(),
            partition: dn.1.clone(),
            devices: Vec::new(),
            route_point: Some(rp.to_string()),
            call_id,
            node: local,
        };
        tracing::info!(
            call,
            node,
            route_point = rp,
            "offering the call to the route point's node"
        );
        // The Request-URI names the number that reached the route point (what its service
        // acts on), not its pattern.
        let number = match self.calls.get(&call) {
            Some(c) if !c.reached.is_empty() => c.reached.clone(),
            _ => dn.0.clone(),
        };
        let target = node_target(&number, peer);
        let extra = (DELIVER_HEADER, deliver.to_header());
        self.fork_as(
            call,
            peer,
            &target,
            &number,
            None,
            presented,
            Some(extra),
            now,
            out,
        );
        true
    }

    /// An intra-cluster call: rings the devices it names among this node's own registrations,
    /// or offers it to the route point it names when this node's service serves it, and
    /// nothing else (never forwarded, never sent to another node). 480 when none of the
    /// devices is registered here, or the route point is not served here.
    pub(super) fn deliver_here(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        deliver: &Deliver,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if let Some(rp) = &deliver.route_point {
            let dn: DnKey = (deliver.line.clone(), deliver.partition.clone());
            let owns = cluster.route_point_for(&dn).is_some_and(|r| &r.name == rp);
            if !owns || !self.route_points.contains(rp) {
                tracing::info!(call, from = %deliver.node, route_point = %rp, "intra-cluster call for a route point not served here");
                self.fail_call(
                    call,
                    480,
                    "Temporarily Unavailable (the route point is not served by this node)",
                    now,
                    out,
                );
                return;
            }
            // The Request-URI carries the number that reached the route point elsewhere.
            if let Some(c) = self.calls.get_mut(&call) {
                let n = c.dialled.clone();
                let fits = crate::dialplan::pattern::Pattern::parse(&dn.0).is_ok_and(|p| {
                    p.matches(&n) == crate::dialplan::pattern::MatchResult::Complete
                });
                if fits {
                    c.reached = n;
                }
            }
            if let Some(c) = self.calls.get_mut(&call) {
                // The sending node counts the call for the route point's line.
                c.delivered = true;
            }
            self.offer_to_route_point(cluster, registrar, call, &dn, rp.clone(), now, out);
            return;
        }
        let local = registrar.local_node();
        let here: Vec<(String, Binding)> = deliver
            .devices
            .iter()
            .filter_map(|d| {
                registrar
                    .binding_at(d, &deliver.line, now.unix)
                    .filter(|b| b.node == local)
                    .map(|b| (d.clone(), b))
            })
            .collect();
        if here.is_empty() {
            tracing::info!(call, from = %deliver.node, line = %deliver.line, "intra-cluster call for devices not registered here");
            self.fail_call(
                call,
                480,
                "Temporarily Unavailable (not registered with this node)",
                now,
                out,
            );
            return;
        }
        let dn: DnKey = (deliver.line.clone(), deliver.partition.clone());
        // The sending node counts the call for the line; this node's count is not announced.
        self.set_target(call, dn.clone(), Some(true));
        for (device, b) in here {
            self.event(call, &dn, Some(device.clone()), LineState::Ringing);
            let peer = Peer {
                addr: b.source,
                transport: b.transport,
            };
            self.fork(call, peer, &b.contact, &dn.0, Some(device), now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_deliver_header_round_trips_and_bad_ones_are_refused() {
        let d = Deliver {
            line: "10001".into(),
            partition: Some("Internal_PT".into()),
            devices: vec!["SEP0001".into(), "SEP0002".into()],
            route_point: None,
            call_id: None,
            node: "ucm-pub".into(),
        };
        assert_eq!(Deliver::parse(&d.to_header()), Ok(d.clone()));
        let plain = Deliver {
            partition: None,
            ..d
        };
        assert_eq!(Deliver::parse(&plain.to_header()), Ok(plain.clone()));
        let rp = Deliver {
            devices: Vec::new(),
            route_point: Some("DialCast_All".into()),
            call_id: Some("a84b4c76e66710@pc33.example.com".into()),
            ..plain
        };
        assert_eq!(
            rp.to_header(),
            "line=10001;rp=DialCast_All;cid=a84b4c76e66710@pc33.example.com;node=ucm-pub"
        );
        assert_eq!(Deliver::parse(&rp.to_header()), Ok(rp));
        for bad in [
            "line=1;devices=A;rp=R;node=n",
            "line=1;rp=;node=n",
            "",
            "line=1",
            "line=1;devices=A",
            "line=1;devices=;node=n",
            "line=1;devices=A,,B;node=n",
            "line=1;devices=A;node=n;x=y",
            "line=1;devices=A;node",
            "line=1 2;devices=A;node=n",
        ] {
            assert!(Deliver::parse(bad).is_err(), "{bad:?}");
        }
    }
}
