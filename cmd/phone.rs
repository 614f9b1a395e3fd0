//! `ucm phone sim`: simulated Cisco IP phones for labs and tests.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::{Args, Subcommand};
use ucm::phone::{sim, PhoneOptions};

use crate::{print_out, shutdown_signal, Failure};

/// A Cisco phone's web server port, where `ucm services push` looks by default.
const PHONE_HTTP_PORT: u16 = 80;

#[derive(Subcommand)]
pub enum Command {
    /// Run simulated phones, each on its own loopback address. When every phone has fetched
    /// its configuration and registered its lines, one JSON line is printed on stdout:
    /// {"event":"ready","phones":[{"device":"SEP...","ip":"127.0.0.x","http":"127.0.0.x:PORT",
    /// "sip":"127.0.0.x:PORT","lines":["..."]},...]}. Each phone serves GET /state and POST
    /// /CGI/Execute on its HTTP address. Phones register with the first node of their Unified
    /// CM group and move to the next when it stops answering keepalives (--keepalive-ms), back
    /// when it answers again; /state names the node. Runs until SIGINT or SIGTERM (lines are unregistered
    /// on the way out). Exit 2 when a phone cannot start or a registration is refused (also
    /// when the device is registered elsewhere: the node keeps a device with the phone that
    /// registered it until that registration expires).
    Sim(SimArgs),
}

#[derive(Args)]
pub struct SimArgs {
    /// The node: its HTTP base URL (http://HOST:PORT) or HOST:PORT.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The TFTP-over-HTTP address serving SEP<MAC>.cnf.xml [default: the server's host, port 6970].
    #[arg(long, value_name = "HOST:PORT")]
    tftp: Option<String>,
    /// The node's SIP address [default: the configuration file's first Unified CM].
    #[arg(long, value_name = "HOST:PORT")]
    sip: Option<String>,
    /// A phone to run (repeatable).
    #[arg(
        long = "device",
        value_name = "SEP<MAC>",
        required_unless_present = "count",
        conflicts_with = "count"
    )]
    devices: Vec<String>,
    /// Run the first N phones of the cluster (from ConfigFileCacheList.txt).
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// With --count: leave this phone out (repeatable), e.g. the device `ucm page --from`
    /// will be (the node refuses a second registrant for a device that is registered).
    #[arg(long, value_name = "SEP<MAC>", requires = "count")]
    except: Vec<String>,
    /// The first phone's address; the others follow (127.0.0.10, 127.0.0.11, ...).
    #[arg(long, default_value = "127.0.0.10")]
    first_ip: Ipv4Addr,
    /// HTTP port of every phone, as given (0: any free port). Without it, port 80 as on a real
    /// phone, or any free port (with a warning) where 80 cannot be bound.
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// SIP port tried first on every phone (any free port if taken).
    #[arg(long, default_value_t = 5060)]
    sip_port: u16,
    /// Answer incoming calls automatically (after --answer-delay-ms).
    #[arg(long)]
    auto_answer: bool,
    /// Ring this long before answering automatically (implies --auto-answer).
    #[arg(long, value_name = "MS")]
    answer_delay_ms: Option<u64>,
    /// Refuse every incoming call with 486 Busy Here.
    #[arg(long)]
    busy: bool,
    /// Phone model, as in the User-Agent (Cisco-CP8845/14.2.1).
    #[arg(long, default_value = "CP-8845")]
    model: String,
    /// Expires asked for in REGISTER, in seconds.
    #[arg(long, default_value_t = 3600)]
    register_expires: u32,
    /// Milliseconds between keepalives to the phone's node: two unanswered in a row and the
    /// phone registers with the next member of its Unified CM group; it falls back to a
    /// higher-priority member once that one answers two in a row.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    keepalive_ms: u64,
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    let Command::Sim(a) = cmd;
    // The same form as every other command's --server (a base URL), or HOST:PORT.
    let server = match a.server.split_once("://") {
        Some(("http", rest)) => rest.split('/').next().unwrap_or_default().to_string(),
        Some(_) => {
            return Err(Failure::Input(format!(
            "--server {}: the simulated phone talks to the node over plain HTTP (http://HOST:PORT)",
            a.server
        )))
        }
        None => a.server.trim_end_matches('/').to_string(),
    };
    if server.is_empty() {
        return Err(Failure::Input(format!("--server {:?}: no host", a.server)));
    }
    let tftp = match &a.tftp {
        Some(t) => t.clone(),
        None => {
            let host = match server.rsplit_once(':') {
                Some((h, _)) => h.to_string(),
                None => server.clone(),
            };
            format!("{host}:6970")
        }
    };
    let shutdown = shutdown_signal()?;
    tokio::pin!(shutdown);
    let devices = match a.count {
        Some(0) => return Err(Failure::Input("--count must be at least 1".into())),
        Some(n) => sim::device_list(&tftp, n, &a.except)
            .await
            .map_err(|e| Failure::Input(format!("cannot list the cluster's phones: {e}")))?,
        None => a.devices.clone(),
    };
    let mut template = PhoneOptions::new("", a.first_ip, &tftp);
    template.sip = a.sip.clone();
    template.sip_port = a.sip_port;
    template.http_port = a.http_port.unwrap_or(PHONE_HTTP_PORT);
    template.http_port_fallback = a.http_port.is_none();
    template.auto_answer = a.auto_answer || a.answer_delay_ms.is_some();
    template.answer_delay = Duration::from_millis(a.answer_delay_ms.unwrap_or(0));
    template.busy = a.busy;
    template.model = a.model.clone();
    template.register_expires = a.register_expires;
    template.keepalive = Duration::from_millis(a.keepalive_ms);
    let phones = tokio::select! {
        r = sim::start_all(&template, &devices, a.first_ip) => {
            r.map_err(|e| Failure::Input(e.to_string()))?
        }
        _ = &mut shutdown => {
            tracing::info!("interrupted while starting the phones");
            return Ok(());
        }
    };
    let ready = serde_json::json!({
        "event": "ready",
        "phones": phones.iter().map(sim::ready_entry).collect::<Vec<_>>(),
    });
    tracing::info!(phones = phones.len(), "simulated phones registered");
    print_out(&format!("{ready}\n"))?;
    shutdown.await;
    tracing::info!("stopping: unregistering the phones' lines");
    sim::shutdown_all(phones, Duration::from_secs(3)).await;
    Ok(())
}
