//! The phone's media: the RTP of its calls (G.711 mu-law, 20 ms packets of a test tone, both
//! directions counted) and the URI streams pushed to it (`RTPRx`, `RTPMRx`, `RTPTx`, `RTPMTx`).
//!
//! Each stream is one task owning its socket; statistics live behind a mutex the state view
//! reads. Received packets go through [`ReceiverStats`] (loss, sequence gaps, jitter, payload
//! types and the DSCP of every packet).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::media::g711::encode_ulaw;
use crate::media::rtp::{ReceiverStats, RtpPacket, RtpSender, RtpStreamSummary};
use crate::media::tone::tone;
use crate::net::Dscp;

/// The tone the phone sends on its calls and RTPTx streams (the 697 Hz DTMF row tone).
pub const TONE_HZ: f32 = 697.0;
/// Samples per 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
/// A media task ends by itself after this long, whatever happens (every loop is bounded).
pub const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Stopped URI streams kept for the state view.
pub const MAX_STREAM_HISTORY: usize = 16;

/// One second of the tone in mu-law: 697 whole cycles, so it loops without a click.
pub fn tone_payload() -> Arc<Vec<u8>> {
    Arc::new(encode_ulaw(&tone(TONE_HZ, 1000, 0.25, 8000)))
}

/// Locks a mutex, recovering the data if a holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A UDP socket bound to exactly `addr` (no `SO_REUSEADDR`, so a port in use fails instead of
/// being shared), marked `dscp`, reporting each datagram's DSCP. Needs a tokio runtime.
pub fn bind_exclusive_udp(addr: SocketAddr, dscp: Dscp) -> io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    crate::net::set_dscp(&sock, addr.is_ipv6(), dscp)?;
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(sock.into())?;
    crate::net::enable_recv_tos(&sock)?;
    Ok(sock)
}

/// Counters of one stream in both directions.
#[derive(Debug, Clone)]
pub struct StreamStats {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub sending: bool,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    pub rx: ReceiverStats,
    /// Datagrams that were not RTP.
    pub rx_invalid: u64,
    pub active: bool,
}

impl StreamStats {
    fn new(local: Option<SocketAddr>) -> StreamStats {
        StreamStats {
            local,
            remote: None,
            sending: false,
            tx_packets: 0,
            tx_bytes: 0,
            tx_errors: 0,
            rx: ReceiverStats::new(8000),
            rx_invalid: 0,
            active: true,
        }
    }
}

/// The media of one call or URI stream as the state view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MediaView {
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    pub active: bool,
    pub sending: bool,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_invalid: u64,
    pub rx: RtpStreamSummary,
    /// Received packets per DSCP value (decimal codepoint as the key).
    pub dscp_counts: std::collections::BTreeMap<String, u64>,
}

impl MediaView {
    pub fn of(s: &StreamStats) -> MediaView {
        let rx = s.rx.summary();
        let dscp_counts = rx
            .dscp
            .iter()
            .map(|d| (d.dscp.to_string(), d.packets))
            .collect();
        MediaView {
            local: s.local,
            remote: s.remote,
            active: s.active,
            sending: s.sending,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_invalid: s.rx_invalid,
            rx,
            dscp_counts,
        }
    }
}

/// Where and whether to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendParams {
    pub remote: Option<SocketAddr>,
    pub send: bool,
}

/// A running stream: its task, its controls and its counters.
pub struct MediaSession {
    params: watch::Sender<Option<SendParams>>,
    pub stats: Arc<Mutex<StreamStats>>,
    task: JoinHandle<()>,
}

impl MediaSession {
    /// Receives on `sock` and, while `params.send`, sends the tone every 20 ms to
    /// `params.remote` with payload type `pt`. When `leave` is given, the multicast group is
    /// left on the interface with that address when the stream stops.
    pub fn start(
        sock: UdpSocket,
        params: SendParams,
        pt: u8,
        payload: Arc<Vec<u8>>,
        leave: Option<(IpAddr, Ipv4Addr)>,
    ) -> MediaSession {
        let local = sock.local_addr().ok();
        let mut st = StreamStats::new(local);
        st.remote = params.remote;
        st.sending = params.send && params.remote.is_some();
        let stats = Arc::new(Mutex::new(st));
        let (tx, rx) = watch::channel(Some(params));
        let task = tokio::spawn(run_stream(sock, rx, stats.clone(), pt, payload, leave));
        MediaSession {
            params: tx,
            stats,
            task,
        }
    }

    pub fn update(&self, params: SendParams) {
        let _ = self.params.send(Some(params));
    }

    /// Stops the stream; the counters stay readable.
    pub fn stop(&self) {
        let _ = self.params.send(None);
        lock(&self.stats).active = false;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn view(&self) -> MediaView {
        MediaView::of(&lock(&self.stats))
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        let _ = self.params.send(None);
        self.task.abort();
    }
}

async fn run_stream(
    sock: UdpSocket,
    mut params_rx: watch::Receiver<Option<SendParams>>,
    stats: Arc<Mutex<StreamStats>>,
    pt: u8,
    payload: Arc<Vec<u8>>,
    leave: Option<(IpAddr, Ipv4Addr)>,
) {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + MAX_STREAM_LIFETIME;
    let mut params = (*params_rx.borrow()).unwrap_or(SendParams {
        remote: None,
        send: false,
    });
    let mut sender = RtpSender::new(
        rand::random(),
        pt,
        rand::random(),
        rand::random(),
        SAMPLES_PER_PACKET as u32,
    );
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut pos = 0usize;
    let mut buf = vec![0u8; 2048];
    let mut pkt = Vec::with_capacity(256);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            changed = params_rx.changed() => {
                match changed {
                    Ok(()) => match *params_rx.borrow() {
                        Some(p) => params = p,
                        None => break,
                    },
                    Err(_) => break,
                }
                let mut st = lock(&stats);
                st.remote = params.remote;
                st.sending = params.send && params.remote.is_some();
            }
            _ = tick.tick(), if params.send && params.remote.is_some() => {
                let Some(remote) = params.remote else { continue };
                let len = payload.len();
                let frame: Vec<u8> = if len == 0 {
                    vec![0xFF; SAMPLES_PER_PACKET]
                } else {
                    (0..SAMPLES_PER_PACKET).map(|i| payload[(pos + i) % len]).collect()
                };
                pos = if len == 0 { 0 } else { (pos + SAMPLES_PER_PACKET) % len };
                pkt.clear();
                sender.next_packet_into(&frame, &mut pkt);
                let res = sock.send_to(&pkt, remote).await;
                let mut st = lock(&stats);
                match res {
                    Ok(n) => {
                        st.tx_packets += 1;
                        st.tx_bytes += n as u64;
                    }
                    Err(_) => st.tx_errors += 1,
                }
            }
            r = crate::net::recv_meta(&sock, &mut buf) => {
                let Ok(meta) = r else { continue };
                let data = buf.get(..meta.len).unwrap_or(&[]);
                let mut st = lock(&stats);
                match RtpPacket::parse(data) {
                    Ok(p) => {
                        let arrival = started.elapsed();
                        let dscp = meta.dscp.map(|d| d.value());
                        st.rx.record(&p.header, p.payload.len(), arrival, dscp);
                    }
                    Err(_) => st.rx_invalid += 1,
                }
            }
        }
    }
    if let Some((group, iface)) = leave {
        let _ = crate::net::leave_multicast(&sock, group, iface);
    }
    let mut st = lock(&stats);
    st.active = false;
    st.sending = false;
}

/// The kinds of URI stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// `RTPRx`: unicast receive.
    Rx,
    /// `RTPMRx`: multicast receive.
    Mrx,
    /// `RTPTx`: unicast transmit.
    Tx,
    /// `RTPMTx`: multicast transmit.
    Mtx,
}

impl StreamKind {
    pub fn receives(self) -> bool {
        matches!(self, StreamKind::Rx | StreamKind::Mrx)
    }
}

/// A URI stream.
pub struct UriStream {
    pub kind: StreamKind,
    pub uri: String,
    /// The group or address and port.
    pub address: SocketAddr,
    pub volume: Option<u8>,
    pub started: Instant,
    pub stopped: Option<(Instant, String)>,
    pub session: MediaSession,
}

/// A URI stream as the state view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    pub kind: StreamKind,
    pub uri: String,
    pub address: SocketAddr,
    pub volume: Option<u8>,
    pub active: bool,
    pub stop_reason: Option<String>,
    pub duration_ms: u64,
    pub packets: u64,
    #[serde(flatten)]
    pub media: MediaView,
}

impl UriStream {
    pub fn view(&self, now: Instant) -> StreamView {
        let media = self.session.view();
        let end = self.stopped.as_ref().map_or(now, |(t, _)| *t);
        StreamView {
            kind: self.kind,
            uri: self.uri.clone(),
            address: self.address,
            volume: self.volume,
            active: self.stopped.is_none() && media.active,
            stop_reason: self.stopped.as_ref().map(|(_, r)| r.clone()),
            duration_ms: end.saturating_duration_since(self.started).as_millis() as u64,
            packets: if self.kind.receives() {
                media.rx.packets
            } else {
                media.tx_packets
            },
            media,
        }
    }

    fn stop(&mut self, reason: &str, now: Instant) {
        if self.stopped.is_none() {
            self.session.stop();
            self.stopped = Some((now, reason.to_string()));
        }
    }
}

/// The URI streams of one phone: at most one receiving and one sending at a time (a second
/// one in the same direction is refused with errorNo=1), plus the stopped ones.
#[derive(Default)]
pub struct Streams {
    pub rx: Option<UriStream>,
    pub tx: Option<UriStream>,
    pub history: VecDeque<UriStream>,
}

impl Streams {
    /// Whether a stream in `kind`'s direction is running.
    pub fn busy(&self, kind: StreamKind) -> bool {
        let slot = if kind.receives() { &self.rx } else { &self.tx };
        slot.as_ref().is_some_and(|s| s.stopped.is_none())
    }

    pub fn add(&mut self, s: UriStream) {
        let slot = if s.kind.receives() {
            &mut self.rx
        } else {
            &mut self.tx
        };
        if let Some(old) = slot.replace(s) {
            self.history.push_back(old);
        }
        while self.history.len() > MAX_STREAM_HISTORY {
            self.history.pop_front();
        }
    }

    /// Stops the receiving (`rx`) or sending stream; true if one was running.
    pub fn stop(&mut self, rx: bool, reason: &str, now: Instant) -> bool {
        let slot = if rx { &mut self.rx } else { &mut self.tx };
        let Some(mut s) = slot.take() else {
            return false;
        };
        let was_running = s.stopped.is_none();
        s.stop(reason, now);
        self.history.push_back(s);
        while self.history.len() > MAX_STREAM_HISTORY {
            self.history.pop_front();
        }
        was_running
    }

    pub fn stop_all(&mut self, reason: &str, now: Instant) {
        self.stop(true, reason, now);
        self.stop(false, reason, now);
    }

    /// Running streams first, then the stopped ones, newest first.
    pub fn views(&self, now: Instant) -> Vec<StreamView> {
        self.rx
            .iter()
            .chain(self.tx.iter())
            .chain(self.history.iter().rev())
            .map(|s| s.view(now))
            .collect()
    }
}
