//! The SNMP agent (Cisco's "Cisco CallManager SNMP Service"): every node running `snmp` serves
//! the CISCO-CCM-MIB tables a paging server walks to find the cluster's nodes and the phones
//! registered to each (`ccmTable`, `ccmPhoneTable`, `ccmPhoneExtnTable`) and the system group,
//! over SNMPv2c and SNMPv3 with USM ([`usm`]) on UDP 161 (or `ports.snmp` / `--snmp-port`).
//!
//! Bounded work for strangers: a message without a listed community gets no answer (nothing to
//! reflect), requests are read into a fixed buffer, every answer fits `max_message_size`
//! (GetBulk answers at most [`model::MAX_BULK_BINDINGS`] bindings), answers per source are
//! capped per second, and the view is rebuilt at most once per [`VIEW_TTL`] whatever the rate
//! of requests.

pub mod agent;
pub mod check;
pub mod mib;
pub mod model;
pub mod usm;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{Bound, Flag, ListenerSpec, Parts, Proto, ServiceSpec, Start, StartFuture};
use crate::config::model::NodeService;
use crate::net::Dscp;
use crate::node::NodeState;
use crate::sip::throttle::{LogThrottle, SourceBudget};
use mib::{DeviceStatus, NodeFacts, NodeRow, NodeStatus, PhoneRow, View};
use model::{SnmpParameters, MAX_REQUEST_SIZE};

/// The standard SNMP agent port.
pub const SNMP_PORT: u16 = 161;
/// How long one view of the tables answers requests: a walk of thousands of requests reads
/// the registrations and the node table once a second, not once per request.
pub const VIEW_TTL: Duration = Duration::from_secs(1);

/// The SNMP agent.
pub const SERVICE: ServiceSpec = ServiceSpec {
    flags: &[Flag {
        flag: NodeService::Snmp,
        name: "SNMP",
        paths: &[],
    }],
    listeners: &[ListenerSpec {
        flag: NodeService::Snmp,
        name: "snmp",
        what: "SNMP",
        proto: Proto::Udp,
        default_port: SNMP_PORT,
        // Network management is OAM traffic: CS2 in Cisco's QoS baseline (RFC 4594's
        // "OAM" class); the cluster's QoS parameters have no class of their own for it.
        dscp: |_| Dscp::CS2,
        // Port 161 needs root or CAP_NET_BIND_SERVICE, and a second node on the host finds
        // it taken: the node then runs without the agent unless a port was asked for.
        optional_without_privilege: true,
    }],
    sections: &[crate::config::SectionSpec::of::<SnmpParameters>()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: None,
    status: &[],
    start,
};

fn start(mut s: Start) -> StartFuture {
    Box::pin(async move {
        let mut parts = Parts::default();
        if let Some(Bound::Udp(sock)) = s.take_listener(&SERVICE, "snmp") {
            let node = s.node.clone();
            let p = node.cluster().section::<SnmpParameters>();
            if p.communities.is_empty() && p.v3_users.is_empty() {
                tracing::warn!(
                    "SNMP agent: no community and no v3 user in the definition's `snmp` section, so it answers nobody"
                );
            }
            parts
                .tasks
                .push(Box::pin(serve(sock, node, s.stop.clone())));
        }
        Ok(parts)
    })
}

/// Drops, logged at most once a second with their count.
struct DropLogs {
    budget: LogThrottle,
    refused: LogThrottle,
    reports: LogThrottle,
}

async fn serve(sock: UdpSocket, node: Arc<NodeState>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_REQUEST_SIZE];
    let mut view: Option<(Instant, Arc<View>)> = None;
    let mut budget: Option<(u32, SourceBudget)> = None;
    // The SNMPv3 engine, its keys localised again when the users change.
    let cluster_id = node.cluster().definition().cluster.id.clone();
    let engine = usm::engine_id(&cluster_id, &node.node.name);
    let boots = usm::boots_at(crate::sip::registrar::unix_now().max(0) as u64);
    let started = Instant::now();
    let mut engine_state: Option<(Vec<model::V3User>, Arc<usm::Usm>)> = None;
    let logs = DropLogs {
        budget: LogThrottle::new(),
        refused: LogThrottle::new(),
        reports: LogThrottle::new(),
    };
    loop {
        let (n, from) = tokio::select! {
            _ = stop.changed() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP errors from an earlier send show up here on some systems: not fatal.
                Err(_) => continue,
            },
        };
        let params = node.cluster().section::<SnmpParameters>();
        let now = Instant::now();
        let per_second = params.responses_per_source_per_second.max(1);
        let b = match &mut budget {
            Some((n, b)) if *n == per_second => b,
            _ => {
                &mut budget
                    .insert((
                        per_second,
                        SourceBudget::new(per_second, Duration::from_secs(1)),
                    ))
                    .1
            }
        };
        if !b.allow(from.ip(), now) {
            if let Some(count) = logs.budget.hit(crate::sip::registrar::unix_now()) {
                tracing::warn!(%from, count, "SNMP: source over its answers per second; dropped");
            }
            continue;
        }
        let fresh = match &view {
            Some((at, v)) if now.duration_since(*at) < VIEW_TTL => v.clone(),
            _ => {
                let time = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
                let v = Arc::new(View::build(&facts(&node).await).with_engine(
                    &engine,
                    boots,
                    time,
                    MAX_REQUEST_SIZE as u32,
                ));
                view = Some((now, v.clone()));
                v
            }
        };
        let max = params.max_message_size as usize;
        let result = if usm::is_v3(&buf[..n]) {
            let engine = match &engine_state {
                Some((users, e)) if *users == params.v3_users => e.clone(),
                _ => {
                    let users = params.v3_users.clone();
                    let id = engine.clone();
                    // 1 MiB of hashing per password: off the runtime's threads.
                    let e = tokio::task::spawn_blocking(move || {
                        Arc::new(usm::Usm::new(id, boots, &users))
                    })
                    .await
                    .expect("key localisation does not panic");
                    engine_state = Some((params.v3_users.clone(), e.clone()));
                    e
                }
            };
            let time = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
            engine
                .answer(&buf[..n], &fresh, max, time)
                .map_err(|d| d.as_str())
        } else {
            let communities: Vec<&str> =
                params.communities.iter().map(|c| c.name.as_str()).collect();
            agent::answer(&buf[..n], &communities, &fresh, max).map_err(|d| d.as_str())
        };
        match result {
            Ok(a) => {
                // Discovery (unknown engine ID) is how every manager starts: not worth a line.
                if let agent::Kind::Report(e) = a.kind {
                    let quiet = e == usm::UsmError::UnknownEngineIds;
                    if let Some(count) = (!quiet)
                        .then(|| logs.reports.hit(crate::sip::registrar::unix_now()))
                        .flatten()
                    {
                        tracing::warn!(%from, count, reason = e.as_str(), "SNMP: request refused with a Report");
                    }
                }
                let _ = sock.send_to(&a.bytes, from).await;
            }
            Err(why) => {
                if let Some(count) = logs.refused.hit(crate::sip::registrar::unix_now()) {
                    tracing::warn!(%from, count, reason = why, "SNMP: request dropped");
                }
            }
        }
    }
}

fn ipv4(s: &str) -> Option<[u8; 4]> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map(|a| a.octets()),
    }
}

/// What this node knows now: the cluster's nodes (up when their heartbeat is fresh), the
/// phones whose Unified CM group lists it or that registered to it.
async fn facts(node: &NodeState) -> NodeFacts {
    let cluster = node.cluster();
    let def = cluster.definition();
    let me = node.node.name.as_str();
    // Other nodes' state from the node table; unread (database away) counts as down.
    let beats: HashMap<String, i64> = node
        .store
        .nodes()
        .await
        .map(|rows| rows.into_iter().map(|r| (r.name, r.heartbeat_at)).collect())
        .unwrap_or_default();
    let now_ms = crate::node::feed::unix_ms();
    let down_after = crate::node::feed::NODE_DOWN_AFTER.as_millis() as i64;
    let version = if def.cluster.version.is_empty() {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        def.cluster.version.clone()
    };
    let nodes = def
        .nodes
        .iter()
        .map(|n| {
            let mine = n.name == me;
            let up = mine
                || beats
                    .get(&n.name)
                    .is_some_and(|&at| now_ms - at <= down_after);
            NodeRow {
                name: n.name.clone(),
                description: n
                    .services
                    .iter()
                    .map(|s| s.flag())
                    .collect::<Vec<_>>()
                    .join(", "),
                // Cisco's agent knows only its own node's version.
                version: if mine {
                    version.clone()
                } else {
                    "unknown".into()
                },
                status: if up { NodeStatus::Up } else { NodeStatus::Down },
                ipv4: ipv4(&n.address),
            }
        })
        .collect();
    let here: HashMap<String, SocketAddr> = node
        .registrar
        .bindings_here()
        .into_iter()
        .map(|b| (b.device, b.source))
        .collect();
    let pool_index: HashMap<&str, (u32, bool)> = def
        .device_pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                p.name.as_str(),
                (
                    u32::try_from(i + 1).unwrap_or(0),
                    p.node_group.iter().any(|g| g == me),
                ),
            )
        })
        .collect();
    let em_users: HashMap<String, String> = cluster
        .mobility
        .all()
        .into_iter()
        .map(|l| (l.device, l.user))
        .collect();
    let phones = def
        .devices
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let (pool, in_group) = pool_index
                .get(d.device_pool.as_str())
                .copied()
                .unwrap_or((0, false));
            let at = here.get(&d.name);
            if at.is_none() && !in_group {
                return None;
            }
            let user = em_users
                .get(&d.name)
                .cloned()
                .or_else(|| d.owner.clone())
                .unwrap_or_default();
            Some(PhoneRow {
                index: u32::try_from(i + 1).unwrap_or(u32::MAX),
                name: d.name.clone(),
                description: d.description.clone().unwrap_or_default(),
                user,
                status: if at.is_some() {
                    DeviceStatus::Registered
                } else {
                    DeviceStatus::Unregistered
                },
                ipv4: at.and_then(|a| ipv4(&a.ip().to_string())).unwrap_or([0; 4]),
                device_pool_index: pool,
                lines: cluster.lines_of(d).into_iter().map(|l| l.dn).collect(),
            })
        })
        .collect();
    let ticks = node.started.elapsed().as_millis() / 10;
    NodeFacts {
        sys_descr: format!(
            "ucm {} (Cisco Unified CM application layer), node {me}",
            env!("CARGO_PKG_VERSION")
        ),
        sys_name: me.to_string(),
        // sysUpTime wraps at 2^32 hundredths of a second (about 497 days), as TimeTicks do.
        uptime_ticks: (ticks % (1u128 << 32)) as u32,
        cluster_id: def.cluster.id.clone(),
        nodes,
        phones,
    }
}
