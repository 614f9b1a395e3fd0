//! The flags every command that talks to a node (or a phone) over HTTP(S) shares, declared once
//! and flattened into each command. A command whose server, or whose patience, means something
//! of its own says so with `mut_arg` (the help of `--server`, the default of `--timeout`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ucm::client::ClientOptions;

/// `--server` and the client flags.
#[derive(Args)]
pub struct ServerArgs {
    /// The node (its HTTP base URL).
    #[arg(long, env = "UCM_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Trust, patience and the output form of a command that makes HTTP(S) requests.
#[derive(Args)]
pub struct ClientArgs {
    /// PEM file of CA certificates for HTTPS (for example the node's node-cert.pem).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept any HTTPS certificate (test beds only).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds to wait for each request.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// One JSON document on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    /// The library's client settings (a zero timeout means one second).
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            ca: self.ca.clone(),
            insecure: self.insecure,
            timeout: Some(Duration::from_secs(self.timeout.max(1))),
        }
    }
}
