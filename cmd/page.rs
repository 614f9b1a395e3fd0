//! `ucm page`: page a recipient group as a caller would (a phone of the cluster dials the
//! group's DialCast number and speaks after the go-ahead tone), then print the page's report;
//! `ucm page --list` lists the reports the paging service keeps.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Args as ClapArgs;
use ucm::client::page::{self, CallerError, CallerOptions, Frame, Progress};

use crate::{print_out, Failure};

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    ucm page --group demo-all --tone --from SEP00036BC7B974\n  \
    ucm page --group demo-all --audio announcement.wav --from SEP00036BC7B974 --json\n  \
    UCM_PASSWORD=paging ucm page --list --user paging\n\
Exit codes: 0 every phone joined, 1 the page was refused or a phone failed, 2 usage, bad audio or unreachable.")]
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
    /// The node's HTTP address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    server: String,
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
    /// Read --user's password from the first line of stdin (otherwise UCM_PASSWORD).
    #[arg(long, requires = "list")]
    password_stdin: bool,
    /// Reports to list at most.
    #[arg(long, default_value_t = 20, requires = "list")]
    limit: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn base_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

fn host_of(server: &str) -> String {
    let s = server
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let s = s.split('/').next().unwrap_or(s);
    match s.rsplit_once(':') {
        Some((h, _)) => h.to_string(),
        None => s.to_string(),
    }
}

/// The frames to page: the WAV converted, or the test tone.
fn audio_frames(a: &Args) -> Result<Vec<Frame>, Failure> {
    use ucm::media::wav;
    let samples = match &a.audio {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            let audio = wav::read_wav(&bytes)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            wav::resample_to_8k(&audio)
        }
        None => {
            if a.seconds == 0 || a.seconds > 600 {
                return Err(Failure::Input("--seconds must be 1 to 600".into()));
            }
            ucm::media::tone::tone(1000.0, a.seconds * 1000, 0.3, 8000)
        }
    };
    let frames = wav::to_ulaw_frames_20ms(&samples);
    if frames.is_empty() {
        return Err(Failure::Input("the audio is empty".into()));
    }
    Ok(frames)
}

async fn http() -> Result<reqwest::Client, Failure> {
    ucm::client::http_client(&ucm::client::ClientOptions {
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    })
    .map_err(|e| Failure::Input(e.to_string()))
}

/// The DialCast number of `group`, from the node's list.
async fn number_of(client: &reqwest::Client, base: &str, group: &str) -> Result<String, Failure> {
    let url = format!("{base}{}", ucm::services::paging::http::GROUPS_PATH);
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    let body = resp
        .bytes()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Failure::Input(format!("{url}: not the paging group list: {e}")))?;
    let groups = v["recipient_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(g) = groups.iter().find(|g| g["name"] == group) else {
        let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        return Err(Failure::Input(format!(
            "no recipient group {group:?} on {base} (there are: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )));
    };
    g["dialcast"][0]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::Input(format!("recipient group {group:?} has no DialCast number")))
}

async fn report_of(
    client: &reqwest::Client,
    base: &str,
    call_id: &str,
) -> Option<serde_json::Value> {
    // The report is stored once the server has sent RTPRx:Stop to every phone: the server
    // answers as soon as it is (or after 8 s, within the client's 10 s timeout); a few more
    // tries cover a lost connection.
    let url = format!(
        "{base}{}?call_id={}&wait_ms=8000",
        ucm::services::paging::http::PAGES_PATH,
        ucm::phone::http::encode_component(call_id)
    );
    for _ in 0..3 {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                if let Ok(b) = r.bytes().await {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                        return v["pages"].get(0).cloned();
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn print_report(r: &serde_json::Value) -> String {
    let mut out = format!(
        "page {} to {} (DialCast {}): {} joined, {} not; go-ahead after {} ms; {} packets to {}; {} ms; ended: {}\n",
        r["id"].as_str().unwrap_or("?"),
        r["recipient_group"].as_str().unwrap_or("?"),
        r["dialcast"].as_str().unwrap_or("?"),
        r["joined"],
        r["failed"],
        r["go_ahead_ms"],
        r["stream"]["group_packets"],
        r["multicast"].as_str().unwrap_or("-"),
        r["duration_ms"],
        r["ended_by"].as_str().unwrap_or("?"),
    );
    let phones = r["phones"].as_array().cloned().unwrap_or_default();
    if !phones.is_empty() {
        out.push_str("DEVICE\tIP\tOUTCOME\tDETAIL\n");
        for p in phones {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                p["device"].as_str().unwrap_or("?"),
                p["ip"].as_str().unwrap_or("-"),
                p["outcome"].as_str().unwrap_or("?"),
                p["reason"].as_str().unwrap_or(""),
            ));
        }
    }
    out
}

async fn list(a: &Args) -> Result<(), Failure> {
    let user = a
        .user
        .clone()
        .ok_or_else(|| Failure::Input("--list needs --user".into()))?;
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| Failure::Input(format!("reading the password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        std::env::var("UCM_PASSWORD").map_err(|_| {
            Failure::Input("give --password-stdin or set UCM_PASSWORD (never a flag)".into())
        })?
    };
    let base = base_url(&a.server);
    let client = http().await?;
    let url = format!(
        "{base}{}?limit={}",
        ucm::services::paging::http::PAGES_PATH,
        a.limit.clamp(1, 1000)
    );
    let resp = client
        .get(&url)
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(Failure::Input(format!(
            "{url}: HTTP {status}: {}",
            text.trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::Input(format!("{url}: not a report list: {e}")))?;
    if a.json {
        return print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ));
    }
    let pages = v["pages"].as_array().cloned().unwrap_or_default();
    let mut out = String::from("STARTED_MS\tID\tGROUP\tCALLER\tJOINED\tNOT\tDURATION_MS\tENDED\n");
    for p in pages {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            p["started_at_ms"],
            p["id"].as_str().unwrap_or("?"),
            p["recipient_group"].as_str().unwrap_or("?"),
            p["calling"].as_str().unwrap_or("?"),
            p["joined"],
            p["failed"],
            p["duration_ms"],
            p["ended_by"].as_str().unwrap_or("?"),
        ));
    }
    print_out(&out)
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
    let base = base_url(&a.server);
    let client = http().await?;
    let number = match (&a.number, &a.group) {
        (Some(n), _) => n.clone(),
        (None, Some(g)) => number_of(&client, &base, g).await?,
        (None, None) => return Err(Failure::Input("give --group or --number".into())),
    };
    let tftp = a
        .tftp
        .clone()
        .unwrap_or_else(|| format!("{}:6970", host_of(&a.server)));
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
        Err(e @ CallerError::Refused { .. }) | Err(e @ CallerError::NoGoAhead(_)) => {
            return Err(Failure::Check(format!("ucm: {e}")))
        }
        Err(e) => return Err(Failure::Input(e.to_string())),
    };
    let report = report_of(&client, &base, &outcome.call_id).await;
    if a.json {
        let v = serde_json::json!({ "caller": outcome, "report": report });
        print_out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ))?;
    } else if let Some(r) = &report {
        print_out(&print_report(r))?;
    }
    let Some(r) = report else {
        return Err(Failure::Check(format!(
            "ucm: the page ran ({} packets sent) but {base} has no report for it",
            outcome.frames_sent
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
