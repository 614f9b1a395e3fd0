//! `ucm emcc`: Extension Mobility Cross Cluster. `sync-certs` exchanges the clusters'
//! certificates through an sFTP server (export, consolidate, import), as Cisco's Bulk
//! Certificate Management does; `--check` reports, without changing anything, every cluster
//! whose exchange is stale. Exit codes: 0 done (or current), 1 stale (--check) or refused by a
//! cluster, 2 usage or unreachable.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use ucm::client::emcc::{self, SyncError, SyncOptions, SyncReport};
use ucm::client::sftp::{SftpOptions, SftpUrl};

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
