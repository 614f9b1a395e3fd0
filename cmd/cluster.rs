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
    /// lag. Exit 1 when a node the definition names is down.
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
    store.close().await;
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
            name,
        });
    }
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
        print_out(&t)?;
    }
    if down.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "ucm: node(s) down: {}",
            down.join(", ")
        )))
    }
}
