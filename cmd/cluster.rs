//! `ucm cluster status`: the cluster as its database sees it. Every running node keeps its
//! row in the node table alive with a heartbeat; a node of the definition whose heartbeat is
//! missing or older than `NODE_DOWN_AFTER` is down, and the command exits 1.

use clap::{Args as ClapArgs, Subcommand};
use ucm::node::feed::{unix_ms, LagFigures, NODE_DOWN_AFTER};
use ucm::services::em::store::EmStore;

use crate::db::DbArgs;
use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Nodes, the services each runs, health, registrations and EM logins per node, change-feed
    /// lag, the active Paging Server. Exit 1 when a node the definition names is down, or no
    /// node is the active Paging Server while the definition names paging on some.
    Status(StatusArgs),
}

#[derive(ClapArgs)]
pub struct StatusArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct NodeStatus {
    name: String,
    address: String,
    /// In the cluster definition (a node that is not is reported but never fails the check).
    defined: bool,
    up: bool,
    /// Up and its change feed connected to the database.
    healthy: bool,
    services: Vec<String>,
    registrations: i64,
    em_logins: i64,
    /// Milliseconds since its last heartbeat; `None` when it never reported.
    heartbeat_age_ms: Option<i64>,
    feed: LagFigures,
    /// `active` or `standby` on a node that names paging; absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    paging: Option<&'static str>,
}

/// The cluster's Paging Server: one active node (holding the lease), the others standing by.
#[derive(serde::Serialize)]
struct PagingStatus {
    /// The node holding a live lease, if any.
    active: Option<String>,
    /// Unix ms the active node took the lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    since_ms: Option<i64>,
    /// Milliseconds left before the lease lapses unless renewed (negative: lapsed).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_ms: Option<i64>,
    /// Nodes of the definition naming paging.
    nodes: Vec<String>,
    /// Those that are up and not active.
    standby: Vec<String>,
}

pub async fn run(c: Command) -> Result<(), Failure> {
    match c {
        Command::Status(a) => status(a).await,
    }
}

async fn status(a: StatusArgs) -> Result<(), Failure> {
    let store = a.db.open().await?;
    let def = store.load().await?;
    let rows = store.nodes().await?;
    let now = unix_ms();
    let regs = store.registrations_per_node(now / 1000).await?;
    let logins = store.em_logins_per_node().await?;
    let lease = store.lease(ucm::services::paging::LEASE).await?;
    store.close().await;
    // Paging is served when the definition has DialCast numbers and a paging user.
    let paging_named: Vec<String> = def
        .as_ref()
        .filter(|d| {
            let p = d.section::<ucm::services::paging::model::Paging>();
            !p.dialcasts.is_empty() && p.user.is_some()
        })
        .map(|d| {
            d.nodes
                .iter()
                .filter(|n| {
                    n.services
                        .contains(&ucm::config::model::NodeService::Paging)
                })
                .map(|n| n.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let active = lease.as_ref().filter(|l| l.live()).map(|l| l.node.clone());
    let defined: Vec<(String, String, Vec<String>)> = def
        .as_ref()
        .map(|d| {
            d.nodes
                .iter()
                .map(|n| {
                    let services = n.services.iter().map(|s| s.flag().to_string()).collect();
                    (n.name.clone(), n.address.clone(), services)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<NodeStatus> = Vec::new();
    let mut names: Vec<String> = defined.iter().map(|d| d.0.clone()).collect();
    names.extend(
        rows.iter()
            .filter(|r| !defined.iter().any(|d| d.0 == r.name))
            .map(|r| r.name.clone()),
    );
    for name in names {
        let def_entry = defined.iter().find(|d| d.0 == name);
        let row = rows.iter().find(|r| r.name == name);
        let age = row.map(|r| now - r.heartbeat_at);
        let up = age.is_some_and(|a| a <= NODE_DOWN_AFTER.as_millis() as i64);
        let feed_connected = row
            .and_then(|r| r.status.get("feed_connected"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let registrations = regs.get(&name).copied().unwrap_or_default();
        let em_logins = logins.get(&name).copied().unwrap_or_default();
        out.push(NodeStatus {
            address: row
                .map(|r| r.address.clone())
                .or_else(|| def_entry.map(|d| d.1.clone()))
                .unwrap_or_default(),
            defined: def_entry.is_some(),
            up,
            healthy: up && feed_connected,
            services: row
                .map(|r| r.services.clone())
                .or_else(|| def_entry.map(|d| d.2.clone()))
                .unwrap_or_default(),
            registrations,
            em_logins,
            heartbeat_age_ms: age,
            feed: row
                .and_then(|r| r.status.get("feed"))
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            paging: paging_named.contains(&name).then(|| {
                if active.as_deref() == Some(name.as_str()) {
                    "active"
                } else {
                    "standby"
                }
            }),
            name,
        });
    }
    let paging = PagingStatus {
        active: active.clone(),
        since_ms: lease.as_ref().filter(|l| l.live()).map(|l| l.acquired_at),
        expires_in_ms: lease.as_ref().map(|l| l.expires_at - l.now),
        standby: out
            .iter()
            .filter(|n| n.up && n.paging == Some("standby"))
            .map(|n| n.name.clone())
            .collect(),
        nodes: paging_named.clone(),
    };
    let paging_missing = !paging_named.is_empty() && active.is_none();
    let down: Vec<&str> = out
        .iter()
        .filter(|n| n.defined && !n.up)
        .map(|n| n.name.as_str())
        .collect();
    let cluster = def
        .as_ref()
        .map(|d| d.cluster.id.clone())
        .unwrap_or_default();
    if a.json {
        let doc = serde_json::json!({
            "cluster": cluster,
            "nodes": out,
            "down": down,
            "paging": paging,
        });
        print_out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    } else {
        let mut t = format!("cluster {cluster}: {} nodes defined\n", defined.len());
        t.push_str(&format!(
            "{:<12} {:<16} {:<9} {:>5} {:>5}  {:<22} {:>10}  SERVICES\n",
            "NODE", "ADDRESS", "STATE", "REGS", "EM", "FEED p50/p99/max ms", "HEARTBEAT"
        ));
        for n in &out {
            let state = match (n.up, n.healthy) {
                (false, _) => "DOWN",
                (true, false) => "NO-FEED",
                (true, true) => "up",
            };
            let hb = n.heartbeat_age_ms.map_or("never".to_string(), |a| {
                format!("{:.1}s ago", a as f64 / 1000.0)
            });
            t.push_str(&format!(
                "{:<12} {:<16} {:<9} {:>5} {:>5}  {:<22} {:>10}  {}{}\n",
                n.name,
                n.address,
                state,
                n.registrations,
                n.em_logins,
                format!(
                    "{}/{}/{} ({})",
                    n.feed.p50_ms, n.feed.p99_ms, n.feed.max_ms, n.feed.events
                ),
                hb,
                n.services.join(","),
                if n.defined {
                    ""
                } else {
                    "  (not in the definition)"
                },
            ));
        }
        if !paging_named.is_empty() {
            let standby = if paging.standby.is_empty() {
                "none".to_string()
            } else {
                paging.standby.join(", ")
            };
            match (&paging.active, paging.since_ms) {
                (Some(a), Some(since)) => t.push_str(&format!(
                    "Paging Server: active on {a} for {:.1}s (standby: {standby})\n",
                    (now - since).max(0) as f64 / 1000.0
                )),
                _ => t.push_str(&format!(
                    "Paging Server: NONE ACTIVE (named on {}; standby: {standby})\n",
                    paging_named.join(", ")
                )),
            }
        }
        print_out(&t)?;
    }
    let mut problems = Vec::new();
    if !down.is_empty() {
        problems.push(format!("node(s) down: {}", down.join(", ")));
    }
    if paging_missing {
        problems.push(format!(
            "no active Paging Server (paging is named on {})",
            paging_named.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check(format!("ucm: {}", problems.join("; "))))
    }
}
