//! `ucm emcc`: Extension Mobility Cross Cluster. `sync-certs` exchanges the clusters'
//! certificates through an sFTP server (export, consolidate, import), as Cisco's Bulk
//! Certificate Management does; `--check` reports, without changing anything, every cluster
//! whose exchange is stale. Exit codes: 0 done (or current), 1 stale (--check) or refused by a
//! cluster, 2 usage or unreachable.
//!
//! `status` reads the database, as `ucm cluster status` does: the remote cluster updates are
//! stored there by whichever node made them, so any node's database (or a copy of it) answers,
//! with no node running and no credentials beyond access to the database. `update` asks a
//! running node (HTTPS, an administrator) to update now.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use ucm::client::emcc::{self, SyncError, SyncOptions, SyncReport};
use ucm::client::sftp::{SftpOptions, SftpUrl};
use ucm::services::emcc::model::Emcc;
use ucm::services::emcc::store::{
    EmccDeviceRow, EmccDevices, PendingLogouts, RemoteClusterRow, RemoteClusters, Role,
};

use crate::client_args::ClientArgs;
use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Exchange the clusters' certificates through an sFTP server so they trust each other:
    /// each cluster's certificates (every node's HTTPS and call-control certificate) are
    /// exported to the directory as <cluster id>.pem, every export there is consolidated into
    /// consolidated.pem, and each cluster imports it into its trust stores. With --check,
    /// change nothing and report every cluster whose exchange is stale (exit 1).
    SyncCerts(SyncArgs),
    /// Remote clusters as this cluster's database has them: each one's version, EM service
    /// nodes and EMCC trunk services, when it was last updated and how that went; EMCC devices
    /// logged in. Exit 1 when a remote cluster is not activated (its last update failed, or
    /// none was made).
    Status(StatusArgs),
    /// Update Remote Cluster Now: the node asks every remote cluster at once (over HTTPS, with
    /// mutual verification against the certificates sync-certs exchanged) and prints what it
    /// learnt. Exit 1 when a remote cluster could not be updated.
    Update(UpdateArgs),
}

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    ucm emcc status --db sqlite:/var/lib/ucm/ucm.db\n  \
    UCM_DB=postgres://ucm@db/home ucm emcc status --json\n\
Exit codes: 0 every remote cluster activated, 1 one is not, 2 usage or database error.")]
pub struct StatusArgs {
    #[command(flatten)]
    db: crate::db::DbArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    export UCM_PASSWORD=...   # the administrator's password\n  \
    ucm emcc update --server https://127.0.1.1:8443 --user admin --ca node-cert.pem\n\
Exit codes: 0 every remote cluster updated, 1 one was not (or the node refused the user), 2 usage or unreachable.")]
pub struct UpdateArgs {
    /// A node of this cluster running the EM service (its HTTPS base URL).
    #[arg(long, env = "UCM_SERVER", value_name = "URL")]
    server: String,
    /// An application user with the administrator role.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Read --user's password from the first line of stdin (otherwise UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    export UCM_PASSWORD=...   # the administrator's password on every cluster\n  \
    ucm emcc sync-certs --cluster https://127.0.1.1:8443 --cluster https://127.0.2.1:8443 \\\n    \
    --user admin --sftp sftp://certs@127.0.0.1:2222/srv/emcc --identity ~/.ssh/id_ed25519 --insecure\n  \
    ucm emcc sync-certs --check --cluster https://127.0.1.1:8443 --cluster https://127.0.2.1:8443 \\\n    \
    --user admin --sftp sftp://certs@127.0.0.1:2222/srv/emcc --insecure\n\
Exit codes: 0 done (or, with --check, current), 1 stale or refused by a cluster, 2 usage or unreachable.")]
pub struct SyncArgs {
    /// A cluster, by the HTTPS base URL of one of its nodes (repeat for each cluster).
    #[arg(long = "cluster", value_name = "URL", required = true)]
    clusters: Vec<String>,
    /// The sFTP directory every cluster's export and the consolidated bundle meet in
    /// (sftp://user@host[:port]/dir; /~/dir is relative to the user's home).
    #[arg(long, value_name = "URL")]
    sftp: String,
    /// The private key for the sFTP server [default: the SSH agent's keys].
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The known_hosts file that must hold the sFTP server's host key [default:
    /// ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// An application user with the administrator role on every cluster.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Read --user's password from the first line of stdin (otherwise the environment variable
    /// UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// Change nothing; report every cluster whose exchange is stale and exit 1 if any is.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(c: Command) -> Result<(), Failure> {
    match c {
        Command::SyncCerts(a) => sync_certs(a).await,
        Command::Status(a) => status(a).await,
        Command::Update(a) => update(a).await,
    }
}

fn failure(e: SyncError) -> Failure {
    match e {
        SyncError::Refused { .. } => Failure::Check(format!("ucm: {e}")),
        other => Failure::Input(other.to_string()),
    }
}

fn text(r: &SyncReport, check: bool) -> String {
    let mut out = String::new();
    for c in &r.clusters {
        if check {
            if c.stale.is_empty() {
                out.push_str(&format!("current  {} ({})\n", c.cluster, c.url));
            } else {
                out.push_str(&format!("STALE    {} ({})\n", c.cluster, c.url));
                for why in &c.stale {
                    out.push_str(&format!("  - {why}\n"));
                }
            }
        } else {
            out.push_str(&format!(
                "{} ({}): exported {} certificates; trust stores: {} added, {} unchanged, {} removed\n",
                c.cluster, c.url, c.exported, c.added, c.unchanged, c.removed
            ));
        }
    }
    let clusters: Vec<String> = r
        .consolidated
        .iter()
        .map(|(c, n)| format!("{c} ({n})"))
        .collect();
    out.push_str(&format!(
        "{}/{}: {}\n",
        r.sftp,
        emcc::CONSOLIDATED,
        if clusters.is_empty() {
            "absent".to_string()
        } else {
            clusters.join(", ")
        }
    ));
    out
}

async fn sync_certs(a: SyncArgs) -> Result<(), Failure> {
    let sftp = SftpUrl::parse(&a.sftp).map_err(|e| Failure::Input(format!("--sftp: {e}")))?;
    if let Some(p) = &a.identity {
        ucm::client::sftp::identity_readable(p).map_err(|e| Failure::Input(e.to_string()))?;
    }
    let password = crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        "UCM_EMCC_PASSWORD",
        "password for --user",
    )?;
    let client = a.client.options();
    let opts = SyncOptions {
        clusters: a.clusters.clone(),
        sftp,
        sftp_options: SftpOptions {
            identity: a.identity.clone(),
            known_hosts: a.known_hosts.clone(),
            timeout: client.timeout.unwrap_or(std::time::Duration::from_secs(30)),
        },
        client,
        user: a.user.clone(),
        password,
    };
    let report = if a.check {
        emcc::check(&opts).await
    } else {
        emcc::sync(&opts).await
    }
    .map_err(failure)?;
    if a.client.json {
        print_out(&format!(
            "{}\n",
            serde_json::to_string(&serde_json::json!({
                "stale": report.stale(),
                "sftp": report.sftp,
                "clusters": report.clusters,
                "consolidated": report.consolidated,
            }))
            .unwrap_or_default()
        ))?;
    } else {
        print_out(&text(&report, a.check))?;
    }
    if a.check && report.stale() {
        return Err(Failure::Check(
            "ucm: the certificate exchange is stale (run ucm emcc sync-certs without --check)"
                .into(),
        ));
    }
    Ok(())
}

/// A remote cluster's line of the table.
fn remote_line(r: &RemoteClusterRow) -> String {
    let state = if r.remote_activated {
        "active"
    } else {
        "INACTIVE"
    };
    let services = if r.trunk_services.is_empty() {
        "-".to_string()
    } else {
        r.trunk_services
            .iter()
            .map(|(s, nodes)| format!("{s} [{}]", nodes.join(" ")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut t =
        format!(
        "{:<14} {:<22} {:<8} {:<8}  EM nodes: {}\n    trunk services: {}\n    last update: {}\n",
        r.cluster_id,
        r.address,
        r.version.as_deref().unwrap_or("?"),
        state,
        if r.em_service_nodes.is_empty() {
            "-".to_string()
        } else {
            r.em_service_nodes.join(" ")
        },
        services,
        if r.last_attempt_at == 0 {
            "never".to_string()
        } else {
            format!("{} by {}: {}", when(r.last_attempt_at), r.updated_by, r.last_outcome)
        },
    );
    if let Some(ok) = r.last_success_at.filter(|_| !r.remote_activated) {
        t.push_str(&format!("    last success: {}\n", when(ok)));
    }
    t
}

/// Unix seconds as UTC `YYYY-MM-DD HH:MM:SS`.
fn when(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// One EMCC logged-in device in `--json`.
fn device_json(r: &EmccDeviceRow) -> serde_json::Value {
    serde_json::json!({
        "device": r.device,
        "slot": format!("EMCC{}", r.slot),
        "user": r.userid,
        "remote_cluster": r.remote_cluster,
        "profile": r.profile,
        "logged_in_at": r.logged_in_at,
        "node": r.node,
    })
}

async fn status(a: StatusArgs) -> Result<(), Failure> {
    let store = a.db.open().await?;
    let def = store.load().await?;
    let rows = store.remote_clusters().await?;
    let as_home = store.emcc_devices(Role::Home).await?;
    let as_visiting = store.emcc_devices(Role::Visiting).await?;
    let pending = store.pending_logouts().await?;
    store.close().await;
    let def = def.unwrap_or_else(|| ucm::services::demo().expect("the demo cluster is valid"));
    let emcc: Emcc = def.section();
    // Every remote cluster of the definition, as the last update left it (never: not yet).
    let out: Vec<RemoteClusterRow> = emcc
        .remote_clusters
        .iter()
        .map(|r| {
            rows.iter()
                .find(|x| x.cluster_id == r.cluster_id)
                .cloned()
                .unwrap_or_else(|| RemoteClusterRow {
                    cluster_id: r.cluster_id.clone(),
                    address: r.address.clone(),
                    version: None,
                    em_service_nodes: Vec::new(),
                    trunk_services: Default::default(),
                    remote_activated: false,
                    last_attempt_at: 0,
                    last_success_at: None,
                    last_outcome: "never updated".into(),
                    updated_by: String::new(),
                })
        })
        .collect();
    let inactive: Vec<&str> = out
        .iter()
        .filter(|r| !r.remote_activated)
        .map(|r| r.cluster_id.as_str())
        .collect();
    if a.json {
        let doc = serde_json::json!({
            "cluster": def.cluster.id,
            "version": def.cluster.version,
            "remote_cluster_update_minutes": emcc.remote_cluster_update_minutes,
            "remote_clusters": out,
            "inactive": inactive,
            "emcc_devices": {
                "max": emcc.max_emcc_devices,
                "as_home": as_home.iter().map(device_json).collect::<Vec<_>>(),
                "as_visiting": as_visiting.iter().map(device_json).collect::<Vec<_>>(),
            },
            // Logouts made here that the user's home has not acknowledged yet.
            "pending_logouts": pending,
        });
        print_out(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    } else {
        let mut t = format!(
            "cluster {} (version {}): {} EMCC remote clusters, updated every {} minutes\n",
            def.cluster.id,
            def.cluster.version,
            out.len(),
            emcc.remote_cluster_update_minutes
        );
        if !out.is_empty() {
            t.push_str(&format!(
                "{:<14} {:<22} {:<8} STATE\n",
                "REMOTE", "ADDRESS", "VERSION"
            ));
        }
        for r in &out {
            t.push_str(&remote_line(r));
        }
        if as_home.is_empty() && as_visiting.is_empty() {
            t.push_str(&format!(
                "EMCC devices logged in: none (at most {})\n",
                emcc.max_emcc_devices
            ));
        } else {
            t.push_str(&format!(
                "EMCC devices logged in: {} as home, {} as visiting (at most {} each)\n",
                as_home.len(),
                as_visiting.len(),
                emcc.max_emcc_devices
            ));
            t.push_str(&format!(
                "{:<9} {:<8} {:<16} {:<14} {:<14} SINCE\n",
                "SIDE", "SLOT", "DEVICE", "USER", "CLUSTER"
            ));
            for r in as_home.iter().chain(&as_visiting) {
                t.push_str(&format!(
                    "{:<9} {:<8} {:<16} {:<14} {:<14} {}\n",
                    r.role.as_str(),
                    format!("EMCC{}", r.slot),
                    r.device,
                    r.userid,
                    r.remote_cluster,
                    when(r.logged_in_at)
                ));
            }
        }
        if !pending.is_empty() {
            t.push_str(&format!(
                "logouts not yet acknowledged by the home: {}\n",
                pending.len()
            ));
            for p in &pending {
                t.push_str(&format!(
                    "  {} ({}) at {}: since {}, {} attempts{}\n",
                    p.device,
                    p.userid,
                    p.home,
                    when(p.queued_at),
                    p.attempts,
                    if p.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(", last: {}", p.last_error)
                    }
                ));
            }
        }
        print_out(&t)?;
    }
    if !inactive.is_empty() {
        return Err(Failure::Check(format!(
            "ucm: remote clusters not activated: {}",
            inactive.join(", ")
        )));
    }
    Ok(())
}

async fn update(a: UpdateArgs) -> Result<(), Failure> {
    let password = crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        "UCM_EMCC_PASSWORD",
        "password for --user",
    )?;
    let v = emcc::update_now(&a.server, &a.client.options(), &a.user, &password)
        .await
        .map_err(failure)?;
    let rows: Vec<RemoteClusterRow> =
        serde_json::from_value(v["remote_clusters"].clone()).unwrap_or_default();
    if a.client.json {
        print_out(&format!("{}\n", serde_json::to_string(&v)?))?;
    } else {
        let mut t = format!(
            "cluster {} (node {}): {} remote clusters asked\n",
            v["cluster"].as_str().unwrap_or("?"),
            v["node"].as_str().unwrap_or("?"),
            rows.len()
        );
        for r in &rows {
            t.push_str(&remote_line(r));
        }
        print_out(&t)?;
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.remote_activated)
        .map(|r| r.cluster_id.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(Failure::Check(format!(
            "ucm: remote clusters not updated: {}",
            failed.join(", ")
        )));
    }
    Ok(())
}
