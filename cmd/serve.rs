//! `ucm serve`: run one node.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use ucm::config::{self, ClusterDefinition};
use ucm::server::{self, ListenOptions, Listeners};
use ucm::store::{self, Store};

use crate::db::DbArgs;
use crate::{print_out, shutdown_signal, Failure};

#[derive(ClapArgs)]
pub struct Args {
    /// Cluster definition (YAML) to load into the database at start. Without it the node serves
    /// what the database holds, or the built-in demo cluster when the database is empty.
    #[arg(long, env = "UCM_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
    /// Which node of the definition this is (default: the first).
    #[arg(long)]
    node: Option<String>,
    /// Address to listen on (default: the node's `bind`, else every address; the built-in demo
    /// cluster: 127.0.0.1).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// HTTP port (phone services, EM, WebDialer); 0 = any free port. Default 8080.
    #[arg(long)]
    http_port: Option<u16>,
    /// HTTPS port. Default 8443.
    #[arg(long)]
    https_port: Option<u16>,
    /// TFTP-over-HTTP port (phone configuration files). Default 6970.
    #[arg(long)]
    tftp_http_port: Option<u16>,
    /// TFTP port on UDP (phone configuration files the classic way). Default 69; when that
    /// needs privileges the node lacks, it runs without TFTP on UDP.
    #[arg(long)]
    tftp_port: Option<u16>,
    /// SNMP agent port on UDP (CISCO-CCM-MIB, on a node running `snmp`). Default 161; when
    /// that needs privileges the node lacks or is taken, it runs without the agent.
    #[arg(long)]
    snmp_port: Option<u16>,
    /// Assistant Console port on TCP (on a node running `assistant`). Default 2912; when that
    /// is taken (another node on the host), the node runs without the console listener.
    #[arg(long)]
    assistant_console_port: Option<u16>,
    /// Attendant Console port (HTTPS + WebSocket for the consoles, on a node running
    /// `attendant`). Default 8446; when taken, the node runs without it.
    #[arg(long)]
    attendant_console_port: Option<u16>,
    /// SIP port for UDP and TCP. Default 5060.
    #[arg(long)]
    sip_port: Option<u16>,
    /// SIP over TLS port. Default 5061.
    #[arg(long)]
    sips_port: Option<u16>,
    /// Connections each SIP TCP/TLS listener holds at once (kept within its share of the
    /// descriptor limit).
    #[arg(long, default_value_t = ucm::sip::transport::MAX_SIP_CONNECTIONS)]
    sip_max_connections: usize,
    /// Connections one source address holds on each SIP TCP/TLS listener.
    #[arg(long, default_value_t = ucm::sip::transport::MAX_SIP_CONNECTIONS_PER_SOURCE)]
    sip_max_connections_per_source: usize,
    /// Seconds a SIP message begun on a TCP/TLS connection has to complete.
    #[arg(long, default_value_t = ucm::sip::transport::SIP_MESSAGE_TIMEOUT.as_secs())]
    sip_message_timeout_secs: u64,
    /// Seconds without traffic after which a SIP TCP/TLS connection is closed (unless a phone
    /// is registered over it).
    #[arg(long, default_value_t = ucm::sip::transport::SIP_IDLE_TIMEOUT.as_secs())]
    sip_idle_timeout_secs: u64,
}

/// Brings the database up to the definition asked for and returns what it now holds.
async fn load_definition(args: &Args, store: &Store) -> Result<ClusterDefinition, Failure> {
    let (text, origin) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => {
            let stored_origin = store.meta("origin").await?;
            match stored_origin {
                // The database holds a definition someone imported: it is the source of truth.
                Some(o) if o != config::DEMO_ORIGIN => {
                    tracing::info!(origin = %o, "serving the cluster stored in the database");
                    return store.load().await?.ok_or_else(|| {
                        Failure::Input("the database's cluster definition is empty".into())
                    });
                }
                _ => (
                    config::DEMO_YAML.to_string(),
                    config::DEMO_ORIGIN.to_string(),
                ),
            }
        }
    };
    let digest = store::digest(&text);
    // The same text as last imported (edits through AXL since then are kept), or the very
    // definition the database holds.
    let current = store.definition_digest().await?.as_deref() == Some(digest.as_str())
        || store.meta("source_digest").await?.as_deref() == Some(digest.as_str());
    if current {
        tracing::info!(%origin, "definition unchanged since the last import");
        return store
            .load()
            .await?
            .ok_or_else(|| Failure::Input("the database holds no cluster definition".into()));
    }
    let t0 = std::time::Instant::now();
    let mut def = ucm::services::parse_str(&text, &origin)?;
    let parsed = t0.elapsed();
    config::hash_secrets(&mut def);
    let hashed = t0.elapsed();
    let edits = store.edits_since_import().await?;
    let s = store.import_unless_current(&def, &digest, &origin).await?;
    if s.changed && edits > 0 {
        // The operator changed the file: it is the newer word, as documented in README.
        tracing::warn!(
            %origin,
            edits,
            "the changed definition file replaced the stored one and the edits made through AXL since the last import"
        );
    }
    if !s.changed {
        // Another node started at the same moment imported it first: serve what it stored.
        tracing::info!(%origin, "definition imported by another node meanwhile");
        return store
            .load()
            .await?
            .ok_or_else(|| Failure::Input("the database holds no cluster definition".into()));
    }
    tracing::info!(
        %origin,
        objects = s.objects,
        read_and_check_ms = parsed.as_millis() as u64,
        hash_secrets_ms = (hashed - parsed).as_millis() as u64,
        write_ms = (t0.elapsed() - hashed).as_millis() as u64,
        "definition imported"
    );
    // What was just written is what the database holds; no need to read it back.
    Ok(def)
}

pub async fn run(args: Args) -> Result<(), Failure> {
    // Every connection is a descriptor: take all the process may have, and say how many.
    match ucm::net::limits::raise_nofile_limit() {
        Ok(n) => tracing::info!(
            descriptors = n,
            per_listener = ucm::net::limits::per_listener_cap(usize::MAX),
            "descriptor limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit"),
    }
    for (flag, v) in [
        ("--sip-max-connections", args.sip_max_connections as u64),
        (
            "--sip-max-connections-per-source",
            args.sip_max_connections_per_source as u64,
        ),
        ("--sip-message-timeout-secs", args.sip_message_timeout_secs),
        ("--sip-idle-timeout-secs", args.sip_idle_timeout_secs),
    ] {
        if v == 0 {
            return Err(Failure::Input(format!("{flag} must be at least 1")));
        }
    }
    let data_dir = args.db.data_dir();
    store::private_dir(&data_dir)
        .map_err(|e| Failure::Input(format!("data directory {}: {e}", data_dir.display())))?;
    let url = args.db.url()?;
    let store = Store::open(&url).await?;
    // SQLite serves one node: a second `ucm serve` on the same file is refused here. Held
    // until the process ends.
    let _single_node = store.single_node_lock()?;
    let def = load_definition(&args, &store).await?;
    // The demo's passwords are in README: it listens on loopback unless told otherwise.
    let demo = args.config.is_none()
        && store.meta("origin").await?.as_deref() == Some(config::DEMO_ORIGIN);
    let node = match &args.node {
        Some(n) => def.nodes.iter().find(|x| &x.name == n),
        None => def.nodes.first(),
    };
    let ports = node.map(|n| n.ports.clone()).unwrap_or_default();
    let opts = ListenOptions {
        bind: args.bind.or(node.and_then(|n| n.bind)).unwrap_or(if demo {
            tracing::info!(
                "the demo cluster (well-known passwords) listens on 127.0.0.1 only; \
                     --bind 0.0.0.0 (or another address) exposes it"
            );
            IpAddr::from([127, 0, 0, 1])
        } else {
            ListenOptions::default().bind
        }),
        http_port: args.http_port.or(ports.http),
        https_port: args.https_port.or(ports.https),
        tftp_http_port: args.tftp_http_port.or(ports.tftp_http),
        tftp_port: args.tftp_port.or(ports.tftp),
        sip_port: args.sip_port.or(ports.sip),
        sips_port: args.sips_port.or(ports.sips),
        snmp_port: args.snmp_port.or(ports.snmp),
        assistant_console_port: args.assistant_console_port.or(ports.assistant_console),
        attendant_console_port: args.attendant_console_port.or(ports.attendant_console),
    };
    let listeners = Listeners::bind(&opts, &def, args.node.as_deref())?;
    let ready = listeners.ready(&def.cluster.id)?;
    let cluster_id = def.cluster.id.clone();
    let mut node = server::start(listeners, store, def, data_dir).await?;
    node.set_sip_limits(ucm::sip::StreamLimits {
        max_connections: args.sip_max_connections,
        max_per_source: args.sip_max_connections_per_source,
        message_timeout: std::time::Duration::from_secs(args.sip_message_timeout_secs),
        idle_timeout: std::time::Duration::from_secs(args.sip_idle_timeout_secs),
        ..Default::default()
    });
    // Handlers first: a SIGTERM sent the moment the ready line appears must stop us cleanly.
    let shutdown = shutdown_signal()?;
    let show = |k: &str| ready.get(k).map_or("-".to_string(), |a| a.to_string());
    tracing::info!(
        cluster = %cluster_id,
        node = %node.state.node.name,
        db = %store::redact(&url),
        http = %show("http"),
        https = %show("https"),
        sip = %show("sip_udp"),
        "ready"
    );
    print_out(&format!("{}\n", serde_json::to_string(&ready)?))?;
    server::run(node, shutdown).await?;
    Ok(())
}
