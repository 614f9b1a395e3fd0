//! `ucm page`: page a recipient group as a caller would (a phone of the cluster dials the
//! group's DialCast number and speaks after the go-ahead tone), then print the page's report;
//! `ucm page --list` lists the reports the paging service keeps.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Args as ClapArgs;
use ucm::client::page::{self, CallerError, CallerOptions, Frame, PagingClient, Progress};

use crate::client_args::ServerArgs;
use crate::{print_out, Failure};

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    ucm page --group demo-all --tone --from SEP00036BC7B974\n  \
    ucm page --group demo-all --audio announcement.wav --from SEP00036BC7B974 --json\n  \
    UCM_PASSWORD=paging ucm page --list --user paging\n\
The --from device must be one nothing else runs: the node keeps a registered device with the phone
that registered it (with `ucm phone sim --count N`, leave it out with --except).
Exit codes: 0 every phone joined, 1 the page was refused, the --from device is registered elsewhere or a phone failed, 2 usage, bad audio or unreachable.")]
#[command(mut_arg("server", |a| a
    .help("The node's HTTP address")
    .value_name("HOST:PORT")
    .default_value("127.0.0.1:8080")
    .env(None::<&str>)))]
#[command(mut_arg("timeout", |a| a
    .default_value("10")
    .help("Seconds to wait for each request to the node (a page's report comes within 8)")))]
#[command(mut_arg("json", |a| a.help("Print the report as JSON")))]
pub struct Args {
    /// The recipient group to page (its DialCast number is looked up on the node).
    #[arg(long, value_name = "GROUP", required_unless_present_any = ["list", "number"])]
    group: Option<String>,
    /// Dial this DialCast number instead of looking the group's up.
    #[arg(long, value_name = "DN", conflicts_with = "list")]
    number: Option<String>,
    /// Audio to page: WAV with 16-bit PCM at any common rate, or G.711 (converted to 8 kHz mu-law).
    #[arg(long, value_name = "FILE.wav", conflicts_with_all = ["tone", "list"], required_unless_present_any = ["tone", "list"])]
    audio: Option<std::path::PathBuf>,
    /// Page a test tone (1 kHz) instead of a recording.
    #[arg(long)]
    tone: bool,
    /// Length of --tone in seconds.
    #[arg(long, value_name = "S", default_value_t = 3, requires = "tone")]
    seconds: u32,
    #[command(flatten)]
    srv: ServerArgs,
    /// The node's TFTP-over-HTTP address [default: the server's host, port 6970].
    #[arg(long, value_name = "HOST:PORT")]
    tftp: Option<String>,
    /// The node's SIP address [default: from the device's configuration file].
    #[arg(long, value_name = "HOST:PORT")]
    sip: Option<String>,
    /// The phone to call as: its line is registered from --bind for the call.
    #[arg(long, value_name = "SEP<MAC>", env = "UCM_PAGE_FROM")]
    from: Option<String>,
    /// The address to call from.
    #[arg(long, default_value = "127.0.0.1")]
    bind: Ipv4Addr,
    /// How long to wait for the go-ahead tone after the answer.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    go_ahead_timeout_ms: u64,
    /// List the kept page reports instead (needs --user with cti-control-all-devices; the
    /// password comes from UCM_PASSWORD or --password-stdin).
    #[arg(long)]
    list: bool,
    /// The user --list reads reports as.
    #[arg(long, requires = "list")]
    user: Option<String>,
    /// Read --user's password from the first line of stdin (otherwise the environment variable
    /// UCM_PASSWORD).
    #[arg(long, requires = "list")]
    password_stdin: bool,
    /// Reports to list at most.
    #[arg(long, default_value_t = 20, requires = "list")]
    limit: u32,
}

/// The frames to page: the WAV converted, or the test tone.
fn audio_frames(a: &Args) -> Result<Vec<Frame>, Failure> {
    let frames = match &a.audio {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            page::wav_frames(&bytes)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?
        }
        None => {
            if a.seconds == 0 || a.seconds > 600 {
                return Err(Failure::Input("--seconds must be 1 to 600".into()));
            }
            page::tone_frames(a.seconds)
        }
    };
    if frames.is_empty() {
        return Err(Failure::Input("the audio is empty".into()));
    }
    Ok(frames)
}

fn paging_client(a: &Args) -> Result<PagingClient, Failure> {
    PagingClient::new(&a.srv.server, &a.srv.client.options())
        .map_err(|e| Failure::Input(e.to_string()))
}

async fn list(a: &Args) -> Result<(), Failure> {
    let user = a
        .user
        .clone()
        .ok_or_else(|| Failure::Input("--list needs --user".into()))?;
    let password = crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        crate::PASSWORD_ENV,
        "password for --user",
    )?;
    let v = paging_client(a)?
        .reports(&user, &password, a.limit)
        .await
        .map_err(|e| match e {
            page::ReportsError::Refused(m) => Failure::Check(format!("ucm: {m}")),
            page::ReportsError::Failed(m) => Failure::Input(m),
        })?;
    if a.srv.client.json {
        return print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    }
    print_out(&page::reports_table(&v))
}

pub async fn run(a: Args) -> Result<(), Failure> {
    if a.list {
        return list(&a).await;
    }
    let from = a.from.clone().ok_or_else(|| {
        Failure::Input(
            "--from DEVICE (or UCM_PAGE_FROM) is needed: the phone of the cluster to call as"
                .into(),
        )
    })?;
    let frames = audio_frames(&a)?;
    let client = paging_client(&a)?;
    let number = match (&a.number, &a.group) {
        (Some(n), _) => n.clone(),
        (None, Some(g)) => client.number_of(g).await.map_err(Failure::Input)?,
        (None, None) => return Err(Failure::Input("give --group or --number".into())),
    };
    let tftp = a
        .tftp
        .clone()
        .unwrap_or_else(|| page::default_tftp(&a.srv.server));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total_s = frames.len() as f64 * 0.02;
    let outcome = page::place_page(
        CallerOptions {
            tftp,
            sip: a.sip.clone(),
            device: from.clone(),
            number: number.clone(),
            bind: a.bind,
            audio: frames,
            go_ahead_timeout: Duration::from_millis(a.go_ahead_timeout_ms),
            setup_timeout: Duration::from_secs(10),
        },
        |p| {
            if !terminal {
                return;
            }
            match p {
                Progress::Registered => eprint!("\r{from} registered; calling {number}"),
                Progress::Answered => eprint!("\ranswered; stall tone, phones joining   "),
                Progress::GoAhead(d) => {
                    eprint!("\rgo-ahead after {} ms; paging            ", d.as_millis())
                }
                Progress::Streaming { sent, total } => eprint!(
                    "\rstreaming {:.1}/{total_s:.1} s ({sent}/{total} packets)   ",
                    sent as f64 * 0.02
                ),
                Progress::HungUp => eprintln!("\rhung up                                        "),
            }
        },
    )
    .await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ CallerError::Refused { .. })
        | Err(e @ CallerError::NoGoAhead(_))
        | Err(e @ CallerError::RegisteredElsewhere { .. }) => {
            return Err(Failure::Check(format!("ucm: {e}")))
        }
        Err(e) => return Err(Failure::Input(e.to_string())),
    };
    let report = client.report(&outcome.call_id).await;
    if a.srv.client.json {
        let v = serde_json::json!({ "caller": outcome, "report": report });
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ))?;
    } else if let Some(r) = &report {
        print_out(&page::report_text(r))?;
    }
    let Some(r) = report else {
        return Err(Failure::Check(format!(
            "ucm: the page ran ({} packets sent) but {} has no report for it",
            outcome.frames_sent,
            client.base()
        )));
    };
    let joined = r["joined"].as_u64().unwrap_or(0);
    let failed = r["failed"].as_u64().unwrap_or(0);
    if joined == 0 || failed > 0 {
        return Err(Failure::Check(format!(
            "ucm: {joined} phones joined, {failed} did not"
        )));
    }
    Ok(())
}
