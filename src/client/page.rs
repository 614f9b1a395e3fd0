//! The paging caller behind `ucm page`: it acts as a phone of the cluster (the device given
//! with `--from`), registers its line, calls the DialCast number, waits for the go-ahead tone,
//! streams the audio as G.711 mu-law RTP paced at 20 ms, hangs up, and unregisters.
//!
//! The SIP side is the simulated phone's sans-IO user agent ([`Ua`]); this is its shell for a
//! single call, with media of its own (the tone detection and the paced stream).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::{http_client, ClientError, ClientOptions};
use crate::media::g711::ulaw_to_linear;
use crate::media::rtp::{RtpPacket, RtpSender};
use crate::media::{tone, wav};
use crate::phone::device::{bootstrap, Bootstrap, PhoneError};
use crate::phone::ua::{CallState, MediaPorts, Output, Ua, UaSettings};
use crate::sip::transaction::Timers;
use crate::wire::codec::percent_encode;

/// One 20 ms frame of G.711 mu-law.
pub type Frame = [u8; 160];

/// What `ucm page` is told.
pub struct CallerOptions {
    /// TFTP-over-HTTP `host:port` serving the device's configuration file.
    pub tftp: String,
    /// The node's SIP `host:port`; by default the configuration file's first Unified CM.
    pub sip: Option<String>,
    /// The device to call as (`SEP<MAC>`).
    pub device: String,
    /// The DialCast number.
    pub number: String,
    /// The address to call from (each caller its own; the node matches registrations by it).
    pub bind: Ipv4Addr,
    pub audio: Vec<Frame>,
    /// How long to wait for the go-ahead tone after the answer.
    pub go_ahead_timeout: Duration,
    /// How long setting up (registration, answer) may take.
    pub setup_timeout: Duration,
}

/// Steps, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Registered,
    Answered,
    /// The go-ahead tone was heard, this long after the answer.
    GoAhead(Duration),
    /// Frames sent of the total.
    Streaming {
        sent: usize,
        total: usize,
    },
    HungUp,
}

/// What the call did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallerOutcome {
    pub call_id: String,
    /// From sending the INVITE to the answer.
    pub answer_ms: Option<u64>,
    /// From sending the INVITE to hearing the end of the go-ahead tone.
    pub go_ahead_ms: Option<u64>,
    pub frames_sent: usize,
    /// RTP packets from the server (the tones).
    pub packets_heard: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// Setting up failed before any call: configuration, sockets, registration.
    #[error("{0}")]
    Setup(String),
    /// The device is registered from another address (another phone or simulated phone runs
    /// it): the node refuses a second registrant until that registration expires.
    #[error("{device} is registered elsewhere: another phone (or `ucm phone sim`) runs it, and the node keeps it until that registration expires; page --from a device nothing else runs (the node said: {status} {reason})")]
    RegisteredElsewhere {
        device: String,
        status: u16,
        reason: String,
    },
    /// The call was refused (status and reason) or failed.
    #[error("the call to {number} was refused: {status} {reason}")]
    Refused {
        number: String,
        status: u16,
        reason: String,
    },
    /// Answered, but no go-ahead tone came.
    #[error("no go-ahead tone within {0:?} of the answer")]
    NoGoAhead(Duration),
}

// The paging service's HTTP API, as it publishes it.
/// The recipient groups and their DialCast numbers.
const GROUPS_PATH: &str = "/ucm/paging/groups";
/// The page reports.
const PAGES_PATH: &str = "/ucm/paging/pages";

/// The audio of a WAV file (16-bit PCM at any common rate, or G.711) as 8 kHz mu-law frames.
pub fn wav_frames(bytes: &[u8]) -> Result<Vec<Frame>, String> {
    let audio = wav::read_wav(bytes).map_err(|e| e.to_string())?;
    Ok(wav::to_ulaw_frames_20ms(&wav::resample_to_8k(&audio)))
}

/// A 1 kHz test tone of `seconds` as mu-law frames.
pub fn tone_frames(seconds: u32) -> Vec<Frame> {
    wav::to_ulaw_frames_20ms(&tone::tone(1000.0, seconds * 1000, 0.3, 8000))
}

/// The node's base URL for a `--server` given as `host:port` or as a URL.
pub fn base_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

/// The node's TFTP-over-HTTP address when only its HTTP address is known: same host, 6970.
pub fn default_tftp(server: &str) -> String {
    let s = server
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let s = s.split('/').next().unwrap_or(s);
    let host = match s.rsplit_once(':') {
        Some((h, _)) => h,
        None => s,
    };
    format!("{host}:6970")
}

/// The paging service's HTTP side as a caller sees it: a group's DialCast number, the report
/// of a page, the kept reports.
pub struct PagingClient {
    http: reqwest::Client,
    base: String,
    /// How long the service may hold a report request open (within the client's timeout).
    report_wait: Duration,
}

impl PagingClient {
    pub fn new(server: &str, opts: &ClientOptions) -> Result<PagingClient, ClientError> {
        let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
        Ok(PagingClient {
            http: http_client(opts)?,
            base: base_url(server),
            report_wait: timeout
                .saturating_sub(Duration::from_secs(2))
                .min(Duration::from_secs(8)),
        })
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The DialCast number of `group`, from the node's list.
    pub async fn number_of(&self, group: &str) -> Result<String, String> {
        let base = &self.base;
        let url = format!("{base}{GROUPS_PATH}");
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", super::describe_error(&e)))?;
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{url}: not the paging group list: {e}"))?;
        let groups = v["recipient_groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(g) = groups.iter().find(|g| g["name"] == group) else {
            let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
            return Err(format!(
                "no recipient group {group:?} on {base} (there are: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ));
        };
        g["dialcast"][0]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("recipient group {group:?} has no DialCast number"))
    }

    /// The report of the page the call `call_id` made, once the service has stored it.
    pub async fn report(&self, call_id: &str) -> Option<serde_json::Value> {
        // The report is stored once the server has sent RTPRx:Stop to every phone: the server
        // answers as soon as it is (or after the wait, within the client's timeout); a few more
        // tries cover a lost connection.
        let url = format!(
            "{}{PAGES_PATH}?call_id={}&wait_ms={}",
            self.base,
            percent_encode(call_id),
            self.report_wait.as_millis()
        );
        for _ in 0..3 {
            if let Ok(r) = self.http.get(&url).send().await {
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

    /// The last `limit` page reports, read as `user` (who needs cti-control-all-devices).
    pub async fn reports(
        &self,
        user: &str,
        password: &str,
        limit: u32,
    ) -> Result<serde_json::Value, ReportsError> {
        use ReportsError::{Failed, Refused};
        let url = format!("{}{PAGES_PATH}?limit={}", self.base, limit.clamp(1, 1000));
        let resp = self
            .http
            .get(&url)
            .basic_auth(user, Some(password))
            .send()
            .await
            .map_err(|e| Failed(format!("{url}: {}", super::describe_error(&e))))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Refused(format!("{url}: HTTP {status}: {}", text.trim())));
        }
        if !status.is_success() {
            return Err(Failed(format!("{url}: HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text).map_err(|e| Failed(format!("{url}: not a report list: {e}")))
    }
}

/// Why the page reports could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// The node refused the credentials (wrong password, not a paging user).
    #[error("{0}")]
    Refused(String),
    /// The node could not be asked, or answered something else.
    #[error("{0}")]
    Failed(String),
}

/// A page report as text: a summary line, then a `DEVICE IP OUTCOME DETAIL` line a phone.
pub fn report_text(r: &serde_json::Value) -> String {
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

/// The kept reports (the node's list) as a table, one page a line.
pub fn reports_table(v: &serde_json::Value) -> String {
    let pages = v["pages"].as_array().cloned().unwrap_or_default();
    let mut out = String::from("STARTED (UTC)\tID\tGROUP\tCALLER\tJOINED\tNOT\tDURATION\tENDED\n");
    for p in pages {
        let started = p["started_at_ms"]
            .as_u64()
            .map_or_else(|| "?".to_string(), utc_time);
        let duration = p["duration_ms"].as_u64().map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            started,
            p["id"].as_str().unwrap_or("?"),
            p["recipient_group"].as_str().unwrap_or("?"),
            p["calling"].as_str().unwrap_or("?"),
            p["joined"],
            p["failed"],
            duration,
            p["ended_by"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// `2026-12-07 07:49:05` (UTC) for milliseconds since the Unix epoch.
pub fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn r21_page_report_times_read_as_dates() {
        assert_eq!(super::utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(super::utc_time(1_796_629_745_123), "2026-12-07 07:49:05");
    }
}

/// The one RTP port this caller uses.
struct OnePort(u16);

impl MediaPorts for OnePort {
    fn allocate(&mut self) -> Option<u16> {
        Some(self.0)
    }
    fn release(&mut self, _port: u16) {}
}

/// Drives the UA's outputs: SIP goes out, media start names the far RTP address.
async fn carry_out(sip: &UdpSocket, outs: Vec<Output>, remote_rtp: &mut Option<SocketAddr>) {
    for o in outs {
        match o {
            Output::Send { to, msg } => {
                let _ = sip.send_to(&msg.to_bytes(), to).await;
            }
            Output::MediaStart { remote, .. } | Output::MediaUpdate { remote, .. } => {
                if remote.is_some() {
                    *remote_rtp = remote;
                }
            }
            Output::MediaStop { .. } | Output::Resync { .. } | Output::Moved { .. } => {}
        }
    }
}

/// Places the page. `progress` is told each step.
pub async fn place_page(
    opts: CallerOptions,
    mut progress: impl FnMut(Progress),
) -> Result<CallerOutcome, CallerError> {
    let setup = CallerError::Setup;
    let ip = IpAddr::V4(opts.bind);
    // The phone's own first steps; the errors keep the caller's wording.
    let Bootstrap {
        mac,
        config,
        server,
        ..
    } = bootstrap(&opts.device, &opts.tftp, ip, opts.sip.as_deref())
        .await
        .map_err(|e| {
            setup(match e {
                PhoneError::BadName(d) => {
                    format!("{d:?} is not a phone's device name (SEP and 12 hex digits)")
                }
                PhoneError::Config { device, reason } => format!("{device}: {reason}"),
                PhoneError::Setup { reason, .. } => reason,
                e => e.to_string(),
            })
        })?;
    let sip = crate::net::bind_udp(SocketAddr::new(ip, 0), config.dscp_signalling)
        .map_err(|e| setup(format!("binding SIP on {ip}: {e}")))?;
    let rtp = crate::net::bind_udp(SocketAddr::new(ip, 0), config.dscp_audio)
        .map_err(|e| setup(format!("binding RTP on {ip}: {e}")))?;
    let local = sip.local_addr().map_err(|e| setup(e.to_string()))?;
    let rtp_port = rtp.local_addr().map_err(|e| setup(e.to_string()))?.port();
    let mut ports = OnePort(rtp_port);
    let mut ua = Ua::new(
        UaSettings {
            device: opts.device.clone(),
            mac,
            local,
            server,
            user_agent: format!("ucm-page/{}", env!("CARGO_PKG_VERSION")),
            media_ip: ip,
            register_expires: 300,
            auto_answer: false,
            answer_delay: Duration::ZERO,
            busy: true,
            send_trying: true,
            seed: rand::random(),
            timers: Timers::default(),
        },
        &config.lines,
    );
    let mut remote_rtp: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];

    // Register the line(s).
    let outs = ua.register_all(Instant::now(), &mut ports);
    carry_out(&sip, outs, &mut remote_rtp).await;
    let deadline = Instant::now() + opts.setup_timeout;
    loop {
        let regs = ua.registrations(Instant::now());
        if regs.iter().any(|r| r.registered) {
            break;
        }
        if let Some(r) = regs
            .iter()
            .find(|r| r.last_status.is_some_and(|s| s >= 300))
        {
            let (status, reason) = (
                r.last_status.unwrap_or(0),
                r.last_reason.clone().unwrap_or_default(),
            );
            if crate::phone::ua::registered_elsewhere(status, &reason) {
                return Err(CallerError::RegisteredElsewhere {
                    device: opts.device.clone(),
                    status,
                    reason,
                });
            }
            return Err(setup(format!(
                "registering {} line {} was refused: {} {}",
                opts.device,
                r.line,
                r.last_status.unwrap_or(0),
                r.last_reason.clone().unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            return Err(setup(format!(
                "{} did not register with {server} within {:?}",
                opts.device, opts.setup_timeout
            )));
        }
        step(&mut ua, &sip, &mut buf, &mut ports, &mut remote_rtp).await;
    }
    progress(Progress::Registered);

    let result = call(
        &mut ua,
        &sip,
        &rtp,
        &mut buf,
        &mut ports,
        &mut remote_rtp,
        &opts,
        &mut progress,
    )
    .await;

    // Leave the registrar as found (best effort, bounded).
    let outs = ua.unregister_all(Instant::now(), &mut ports);
    carry_out(&sip, outs, &mut remote_rtp).await;
    let until = Instant::now() + Duration::from_secs(2);
    while !ua.all_unregistered() && Instant::now() < until {
        step(&mut ua, &sip, &mut buf, &mut ports, &mut remote_rtp).await;
    }
    result
}

/// How long the SIP loop may wait: until the UA's next timer, at most 20 ms.
fn sip_wait(ua: &Ua) -> Duration {
    ua.next_deadline()
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::from_millis(20))
        .min(Duration::from_millis(20))
}

/// One turn of the SIP loop: a datagram, or the UA's next timer (at most 20 ms).
async fn step(
    ua: &mut Ua,
    sip: &UdpSocket,
    buf: &mut [u8],
    ports: &mut OnePort,
    remote_rtp: &mut Option<SocketAddr>,
) {
    let outs = tokio::select! {
        r = sip.recv_from(buf) => match r {
            Ok((n, from)) => ua.on_datagram(&buf[..n], from, Instant::now(), ports),
            Err(_) => Vec::new(),
        },
        _ = tokio::time::sleep(sip_wait(ua)) => ua.on_timers(Instant::now(), ports),
    };
    carry_out(sip, outs, remote_rtp).await;
}

#[allow(clippy::too_many_arguments)]
async fn call(
    ua: &mut Ua,
    sip: &UdpSocket,
    rtp: &UdpSocket,
    buf: &mut [u8],
    ports: &mut OnePort,
    remote_rtp: &mut Option<SocketAddr>,
    opts: &CallerOptions,
    progress: &mut impl FnMut(Progress),
) -> Result<CallerOutcome, CallerError> {
    let started = Instant::now();
    let (call_id, outs) = ua
        .dial(&opts.number, started, ports)
        .map_err(|e| CallerError::Setup(format!("cannot dial {}: {e}", opts.number)))?;
    carry_out(sip, outs, remote_rtp).await;
    let mut outcome = CallerOutcome {
        call_id: call_id.clone(),
        answer_ms: None,
        go_ahead_ms: None,
        frames_sent: 0,
        packets_heard: 0,
    };
    let state = |ua: &Ua| {
        ua.calls(Instant::now())
            .into_iter()
            .find(|c| c.call_id == call_id)
    };
    // Until answered.
    let deadline = started + opts.setup_timeout;
    loop {
        match state(ua) {
            Some(c) if c.state == CallState::Connected => break,
            Some(c) if c.state == CallState::Ended => {
                return Err(CallerError::Refused {
                    number: opts.number.clone(),
                    status: c.final_status.unwrap_or(0),
                    reason: c.end_reason.unwrap_or_default(),
                })
            }
            None => {
                return Err(CallerError::Setup("the call vanished".into()));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            let (_, outs) = ua.hangup(Instant::now(), ports).unwrap_or_default();
            carry_out(sip, outs, remote_rtp).await;
            return Err(CallerError::Setup(format!(
                "{} did not answer within {:?}",
                opts.number, opts.setup_timeout
            )));
        }
        step(ua, sip, buf, ports, remote_rtp).await;
    }
    let answered = Instant::now();
    outcome.answer_ms = Some(answered.duration_since(started).as_millis() as u64);
    progress(Progress::Answered);

    // Listen for the go-ahead tone: heard once a 20 ms frame carries it, over when the
    // server has sent nothing for 60 ms after that (it stops sending once the tone ends).
    let mut heard_at: Option<Instant> = None;
    let mut last_packet = Instant::now();
    let mut rtp_buf = vec![0u8; 2048];
    loop {
        if let Some(h) = heard_at {
            if last_packet.elapsed() >= Duration::from_millis(60) && h <= last_packet {
                break;
            }
        }
        if answered.elapsed() > opts.go_ahead_timeout {
            let (_, outs) = ua.hangup(Instant::now(), ports).unwrap_or_default();
            carry_out(sip, outs, remote_rtp).await;
            return Err(CallerError::NoGoAhead(opts.go_ahead_timeout));
        }
        if state(ua).is_none_or(|c| c.state == CallState::Ended) {
            return Err(CallerError::Refused {
                number: opts.number.clone(),
                status: 0,
                reason: "the paging server hung up before the go-ahead".into(),
            });
        }
        // Only receiving is raced; what a branch then does runs to completion.
        let wait = sip_wait(ua);
        tokio::select! {
            r = sip.recv_from(buf) => {
                if let Ok((n, from)) = r {
                    let outs = ua.on_datagram(&buf[..n], from, Instant::now(), ports);
                    carry_out(sip, outs, remote_rtp).await;
                }
            }
            _ = tokio::time::sleep(wait) => {
                let outs = ua.on_timers(Instant::now(), ports);
                carry_out(sip, outs, remote_rtp).await;
            }
            r = rtp.recv_from(&mut rtp_buf) => {
                if let Ok((n, _)) = r {
                    if let Ok(p) = RtpPacket::parse(&rtp_buf[..n]) {
                        outcome.packets_heard += 1;
                        last_packet = Instant::now();
                        if p.header.payload_type == 0 && heard_at.is_none() {
                            let pcm: Vec<i16> = p.payload.iter().map(|&b| ulaw_to_linear(b)).collect();
                            if tone::tone_present(&pcm, 8000, tone::GO_AHEAD_TONE_HZ) {
                                heard_at = Some(Instant::now());
                            }
                        }
                    }
                }
            }
        }
    }
    let go = Instant::now();
    outcome.go_ahead_ms = Some(go.duration_since(started).as_millis() as u64);
    progress(Progress::GoAhead(go.duration_since(answered)));

    // Stream the audio, paced by absolute deadlines.
    let to =
        remote_rtp.ok_or_else(|| CallerError::Setup("the answer named no RTP address".into()))?;
    let mut sender = RtpSender::new(rand::random(), 0, rand::random(), rand::random(), 160);
    let total = opts.audio.len();
    let mut next = tokio::time::Instant::now();
    let mut pkt = Vec::with_capacity(200);
    for (i, frame) in opts.audio.iter().enumerate() {
        pkt.clear();
        sender.next_packet_into(frame, &mut pkt);
        let _ = rtp.send_to(&pkt, to).await;
        outcome.frames_sent += 1;
        if i % 25 == 0 {
            progress(Progress::Streaming { sent: i + 1, total });
        }
        next += Duration::from_millis(20);
        // Keep SIP going while pacing (retransmissions, a BYE from the server).
        while tokio::time::Instant::now() < next {
            let wait = sip_wait(ua);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                r = sip.recv_from(buf) => {
                    if let Ok((n, from)) = r {
                        let outs = ua.on_datagram(&buf[..n], from, Instant::now(), ports);
                        carry_out(sip, outs, remote_rtp).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    let outs = ua.on_timers(Instant::now(), ports);
                    carry_out(sip, outs, remote_rtp).await;
                }
            }
        }
        if state(ua).is_none_or(|c| c.state == CallState::Ended) {
            break;
        }
    }
    progress(Progress::Streaming {
        sent: outcome.frames_sent,
        total,
    });
    // Hang up and wait for the BYE's answer (bounded): the call ends here at once, but the
    // unREGISTER that follows must not overtake the BYE.
    if let Ok((_, outs)) = ua.hangup(Instant::now(), ports) {
        carry_out(sip, outs, remote_rtp).await;
    }
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until
        && (state(ua).is_some_and(|c| c.state != CallState::Ended) || ua.awaiting_answer(&call_id))
    {
        step(ua, sip, buf, ports, remote_rtp).await;
    }
    progress(Progress::HungUp);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_paths_are_the_ones_the_service_serves() {
        use crate::services::paging::http;
        assert_eq!(super::GROUPS_PATH, http::GROUPS_PATH);
        assert_eq!(super::PAGES_PATH, http::PAGES_PATH);
    }

    #[test]
    fn a_nodes_tftp_address_follows_its_http_one() {
        assert_eq!(super::default_tftp("127.0.0.1:8080"), "127.0.0.1:6970");
        assert_eq!(
            super::default_tftp("https://ucm.example:8443/x"),
            "ucm.example:6970"
        );
        assert_eq!(super::base_url("127.0.0.1:8080/"), "http://127.0.0.1:8080");
    }
}
