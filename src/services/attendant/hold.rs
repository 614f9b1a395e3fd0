//! Steps 7 to 9 and the server's own call park: a call an attendant transfers or parks leaves
//! the attendant's phone for one of the server's devices (a service queue, a park device),
//! which answers it (the short connect: the caller is re-INVITEd with the device's own SDP)
//! and plays music on hold to it, so that the server keeps the call:
//! - transfer: from the service queue the call is moved to the target; unanswered within
//!   `recall_seconds` (or busy, or no such number) it comes back to the attendant (transfer
//!   recall). Answered, the server is out of the call.
//! - park: the call stays on the park device until an attendant retrieves it; of attendants
//!   racing to retrieve one parked call the database decides (one conditional UPDATE).
//!
//! A caller who hangs up on hold frees the device (seen on the call's line events, and by
//! asking call control every [`WATCH`]).
//!
//! The music is `fixtures/moh/attendant-moh.wav` (a tone melody made by
//! `fixtures/moh/make_moh.py`: G.711 mu-law, 8 kHz), looped as 20 ms RTP packets of payload
//! type 0, from a socket marked with the cluster's audio DSCP (EF by default) before it is
//! bound and connected.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::media::rtp::RtpSender;
use crate::media::wav;
use crate::sip::b2bua::LineState;
use crate::wire::sdp::{Direction, SessionDescription};

use super::store::AttendantHolds;
use super::{lock, unix_ms, AttendantService};

/// How often a call on hold is checked for its caller having hung up.
pub const WATCH: Duration = Duration::from_millis(500);
/// How long an attendant's phone has to take a recalled or retrieved call.
pub const BACK_TO_ATTENDANT: Duration = Duration::from_secs(10);

const MOH_WAV: &[u8] = include_bytes!("../../../fixtures/moh/attendant-moh.wav");

/// The music on hold as 20 ms mu-law frames (decoded once).
fn moh_frames() -> &'static [[u8; wav::FRAME_20MS]] {
    static FRAMES: OnceLock<Vec<[u8; wav::FRAME_20MS]>> = OnceLock::new();
    FRAMES.get_or_init(|| match wav::read_wav(MOH_WAV) {
        Ok(a) => wav::to_ulaw_frames_20ms(&wav::resample_to_8k(&a)),
        Err(e) => {
            tracing::error!(error = %e, "attendant: the shipped music on hold does not read; silence instead");
            vec![[0xFF; wav::FRAME_20MS]; 50]
        }
    })
}

/// Music on hold playing to one caller; stops when dropped.
pub struct Moh {
    stop: Arc<AtomicBool>,
    pub local: SocketAddr,
}

impl Drop for Moh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A socket for one held call's media and the SDP offering it (PCMU, 20 ms).
pub struct MohSocket {
    sock: tokio::net::UdpSocket,
    pub sdp: bytes::Bytes,
}

pub fn moh_socket(svc: &AttendantService) -> std::io::Result<MohSocket> {
    let ip = media_ip(svc);
    let dscp = svc.node.cluster().qos.audio;
    // The DSCP is set on the socket before bind (and so before connect): every packet of the
    // stream carries it.
    let sock = crate::net::bind_udp(SocketAddr::new(ip, 0), dscp)?;
    let port = sock.local_addr()?.port();
    let sdp = SessionDescription::audio_offer(
        "ucm-attendant",
        u64::from(rand::random::<u32>()),
        ip,
        port,
        &[(0, "PCMU", 8000)],
        Some(20),
        // UNCONFIRMED: Cisco's service queue CTI port answers sendrecv; the caller keeps a
        // two-way stream (it is not told it is on hold).
        Direction::SendRecv,
    );
    Ok(MohSocket {
        sock,
        sdp: sdp.to_string().into(),
    })
}

fn media_ip(svc: &AttendantService) -> IpAddr {
    svc.node
        .sip_host
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| svc.node.node.address.parse())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// Plays the music to the caller's address in `answer` (its SDP answer to the re-INVITE).
pub fn play(m: MohSocket, answer: &[u8]) -> Result<Moh, String> {
    let sdp = SessionDescription::parse_bytes(answer)
        .map_err(|e| format!("the caller's SDP answer does not parse: {e}"))?;
    let to = sdp
        .audio()
        .and_then(|a| sdp.media_address(a))
        .ok_or("the caller's SDP answer has no audio address")?;
    let local = m.sock.local_addr().map_err(|e| e.to_string())?;
    let sock = m.sock;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = sock.connect(to).await {
            tracing::warn!(error = %e, %to, "attendant: music on hold cannot reach the caller");
            return;
        }
        let frames = moh_frames();
        let mut rtp = RtpSender::new(rand::random(), 0, rand::random(), rand::random(), 160);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = [0u8; 2048];
        for i in 0.. {
            tick.tick().await;
            if flag.load(Ordering::SeqCst) {
                break;
            }
            // The caller's own RTP is read and dropped (so its socket buffer does not fill).
            while let Ok(_n) = sock.try_recv(&mut buf) {}
            let pkt = rtp.next_packet(&frames[i % frames.len()]);
            let _ = sock.send(&pkt).await;
        }
    });
    tracing::debug!(%local, %to, "attendant: music on hold playing");
    Ok(Moh { stop, local })
}

/// Why a transfer, park or retrieve was refused: an HTTP-like status and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldError {
    pub status: u16,
    pub error: String,
}

fn err(status: u16, error: impl Into<String>) -> HoldError {
    HoldError {
        status,
        error: error.into(),
    }
}

/// What a held call is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// On a service queue, being transferred to this number.
    Transfer(String),
    /// On a park device.
    Park,
}

/// A call the server holds on one of its devices.
pub struct HeldCall {
    pub queue: String,
    pub attendant: String,
    pub device: String,
    pub dn: String,
    pub holding: Holding,
    _moh: Moh,
}

impl AttendantService {
    /// A free device among `devices`, taken for `call`.
    fn take_device(&self, devices: &[String], call: u64) -> Option<(String, String)> {
        let mut held = lock(&self.devices);
        let d = devices.iter().find(|d| !held.contains_key(*d))?.clone();
        let dn = self.dn_of(&d)?;
        held.insert(d.clone(), call);
        Some((d, dn))
    }

    fn free_device(&self, device: &str, call: u64) {
        let mut held = lock(&self.devices);
        if held.get(device) == Some(&call) {
            held.remove(device);
        }
    }

    /// The call `user` talks to now, with its queue (answered by the console, not moved since).
    fn attendant_call(&self, user: &str, call: u64) -> Result<String, HoldError> {
        match lock(&self.at_attendant).get(&call) {
            Some((queue, who)) if who == user => Ok(queue.clone()),
            Some(_) => Err(err(403, format!("call {call} is another attendant's"))),
            None => Err(err(404, format!("call {call} is not on your phone"))),
        }
    }

    /// Steps 7-9: the call on `user`'s phone goes to a free service queue (music on hold)
    /// and from there to `target`; it comes back to the attendant on no answer.
    pub async fn transfer(
        self: &Arc<Self>,
        user: &super::AttendantUser,
        call: u64,
        target: &str,
    ) -> Result<String, HoldError> {
        if crate::dialplan::pattern::validate_digits(target).is_err() || target.is_empty() {
            return Err(err(400, format!("{target:?} is not a number to dial")));
        }
        let queue = self.attendant_call(&user.user, call)?;
        let devices = self.section().service_queues.clone();
        let device = self
            .hold(
                user,
                call,
                &queue,
                &devices,
                "transferring",
                Holding::Transfer(target.to_string()),
            )
            .await?;
        let svc = self.clone();
        let (user, target) = (user.clone(), target.to_string());
        tokio::spawn(async move { svc.complete_transfer(user, call, queue, target).await });
        Ok(device)
    }

    /// Parks the call on `user`'s phone on a free park device: the device's number.
    pub async fn park(
        self: &Arc<Self>,
        user: &super::AttendantUser,
        call: u64,
    ) -> Result<String, HoldError> {
        let queue = self.attendant_call(&user.user, call)?;
        let devices = self.section().park_devices.clone();
        let device = self
            .hold(user, call, &queue, &devices, "parked", Holding::Park)
            .await?;
        let dn = self.dn_of(&device).unwrap_or_default();
        self.tell(
            &queue,
            serde_json::json!({"event": "parked", "queue": queue, "call": call, "device": device, "park": dn, "attendant": user.user}),
        );
        Ok(dn)
    }

    /// Moves the call from the attendant's phone to a free device of `devices` playing music
    /// on hold, the row going from `answered` to `state`.
    async fn hold(
        self: &Arc<Self>,
        user: &super::AttendantUser,
        call: u64,
        queue: &str,
        devices: &[String],
        state: &str,
        holding: Holding,
    ) -> Result<String, HoldError> {
        let Some((device, dn)) = self.take_device(devices, call) else {
            return Err(err(
                503,
                format!("every one of the {} devices holds a call", devices.len()),
            ));
        };
        let store = &self.node.store;
        let inst = &self.node.feed.instance;
        match store
            .hold_call(inst, call, &user.user, state, &device)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.free_device(&device, call);
                return Err(err(
                    409,
                    format!("call {call} is no longer yours to {state}"),
                ));
            }
            Err(e) => {
                self.free_device(&device, call);
                return Err(err(503, format!("the database is unavailable: {e}")));
            }
        }
        let undo = |svc: &Arc<Self>| {
            let svc = svc.clone();
            let (device, user) = (device.clone(), user.user.clone());
            async move {
                svc.free_device(&device, call);
                let _ = svc
                    .node
                    .store
                    .set_call_state(
                        &svc.node.feed.instance,
                        call,
                        state,
                        "answered",
                        Some(&user),
                    )
                    .await;
            }
        };
        let sock = match moh_socket(self) {
            Ok(s) => s,
            Err(e) => {
                undo(self).await;
                return Err(err(503, format!("no media socket: {e}")));
            }
        };
        let sdp = sock.sdp.clone();
        let answer = match self.node.call_control.move_to_media(call, sdp).await {
            Ok(a) => a,
            Err(e) => {
                undo(self).await;
                return Err(err(410, format!("the call could not be moved: {e}")));
            }
        };
        lock(&self.at_attendant).remove(&call);
        let moh = match play(sock, &answer) {
            Ok(m) => m,
            Err(e) => {
                // The caller is on the device already; it waits without music.
                tracing::warn!(call, error = %e, "attendant: no music on hold");
                Moh {
                    stop: Arc::new(AtomicBool::new(true)),
                    local: SocketAddr::from(([0, 0, 0, 0], 0)),
                }
            }
        };
        tracing::info!(call, device = %device, dn = %dn, state, attendant = %user.user, "attendant: call on a device of the server with music on hold");
        lock(&self.held).insert(
            call,
            HeldCall {
                queue: queue.to_string(),
                attendant: user.user.clone(),
                device: device.clone(),
                dn,
                holding,
                _moh: moh,
            },
        );
        let svc = self.clone();
        tokio::spawn(async move { svc.watch_held(call).await });
        Ok(device)
    }

    /// Frees the device of a held call whose caller hung up.
    async fn watch_held(self: Arc<Self>, call: u64) {
        let mut events = self.node.call_control.subscribe();
        loop {
            if !lock(&self.held).contains_key(&call) {
                return;
            }
            let gone = tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ev) => ev.call == call && ev.state == LineState::Idle
                        && matches!(self.node.call_control.call_exists(call).await, Ok(false)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                    Err(_) => return,
                },
                _ = tokio::time::sleep(WATCH) => matches!(self.node.call_control.call_exists(call).await, Ok(false)),
            };
            if gone {
                self.held_call_gone(call).await;
                return;
            }
        }
    }

    async fn held_call_gone(&self, call: u64) {
        let Some(h) = lock(&self.held).remove(&call) else {
            return;
        };
        self.free_device(&h.device, call);
        let from = match h.holding {
            Holding::Transfer(_) => "transferring",
            Holding::Park => "parked",
        };
        let _ = self
            .node
            .store
            .set_call_state(&self.node.feed.instance, call, from, "abandoned", None)
            .await;
        tracing::info!(call, device = %h.device, "attendant: the caller hung up on hold; device freed");
        self.tell(
            &h.queue,
            serde_json::json!({"event": "left", "queue": h.queue, "call": call, "how": "abandoned", "device": h.device}),
        );
    }

    async fn complete_transfer(
        self: Arc<Self>,
        user: super::AttendantUser,
        call: u64,
        queue: String,
        target: String,
    ) {
        let device = lock(&self.held).get(&call).map(|h| h.device.clone());
        self.tell(
            &queue,
            serde_json::json!({"event": "transferring", "queue": queue, "call": call, "target": target, "device": device, "attendant": user.user}),
        );
        let recall = Duration::from_secs(u64::from(self.section().recall_seconds));
        let cc = &self.node.call_control;
        let inst = &self.node.feed.instance;
        match cc.move_call(call, &target, recall).await {
            Ok(()) => {
                if let Some(h) = lock(&self.held).remove(&call) {
                    self.free_device(&h.device, call);
                }
                let _ = self
                    .node
                    .store
                    .set_call_state(inst, call, "transferring", "transferred", None)
                    .await;
                tracing::info!(call, target = %target, "attendant: transfer answered; the server is out of the call");
                self.tell(
                    &queue,
                    serde_json::json!({"event": "transferred", "queue": queue, "call": call, "target": target}),
                );
                return;
            }
            Err(e) => {
                if !lock(&self.held).contains_key(&call) {
                    return; // the caller hung up (watch_held closed it)
                }
                if matches!(cc.call_exists(call).await, Ok(false)) {
                    self.held_call_gone(call).await;
                    return;
                }
                tracing::info!(call, target = %target, error = %e, "attendant: transfer not answered; recalled to the attendant");
                self.tell(
                    &queue,
                    serde_json::json!({"event": "recall", "queue": queue, "call": call, "target": target, "attendant": user.user, "reason": e.to_string()}),
                );
            }
        }
        // Transfer recall: back to the attendant who transferred it (tried while the caller
        // waits, every recall period, the music playing meanwhile).
        loop {
            match cc.move_call(call, &user.line, BACK_TO_ATTENDANT).await {
                Ok(()) => {
                    if let Some(h) = lock(&self.held).remove(&call) {
                        self.free_device(&h.device, call);
                    }
                    lock(&self.at_attendant).insert(call, (queue.clone(), user.user.clone()));
                    let _ = self
                        .node
                        .store
                        .set_call_state(inst, call, "transferring", "answered", Some(&user.user))
                        .await;
                    self.tell(
                        &queue,
                        serde_json::json!({"event": "recalled", "queue": queue, "call": call, "target": target, "attendant": user.user, "line": user.line}),
                    );
                    return;
                }
                Err(e) => {
                    if !lock(&self.held).contains_key(&call)
                        || matches!(cc.call_exists(call).await, Ok(false))
                    {
                        self.held_call_gone(call).await;
                        return;
                    }
                    tracing::warn!(call, error = %e, "attendant: the attendant's phone did not take the recalled call; trying again");
                    tokio::time::sleep(recall.max(Duration::from_secs(1))).await;
                }
            }
        }
    }

    /// `user` retrieves the call parked on `park` (the park device's number or name): the
    /// database decides between attendants retrieving it at once. The call id.
    pub async fn retrieve(
        &self,
        user: &super::AttendantUser,
        park: &str,
    ) -> Result<u64, HoldError> {
        let section = self.section();
        let Some(device) = section
            .park_devices
            .iter()
            .find(|d| *d == park || self.dn_of(d).as_deref() == Some(park))
            .cloned()
        else {
            return Err(err(
                404,
                format!("{park:?} is no park device of the server"),
            ));
        };
        let inst = &self.node.feed.instance;
        let call = match self.node.store.parked_on(inst, &device).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(err(404, format!("no call is parked on {park}"))),
            Err(e) => return Err(err(503, format!("the database is unavailable: {e}"))),
        };
        match self
            .node
            .store
            .retrieve_call(inst, call, &user.user, unix_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(err(
                    409,
                    format!("the call on {park} was retrieved by another attendant"),
                ))
            }
            Err(e) => return Err(err(503, format!("the database is unavailable: {e}"))),
        }
        let queue = lock(&self.held)
            .get(&call)
            .map(|h| h.queue.clone())
            .unwrap_or_default();
        match self
            .node
            .call_control
            .move_call(call, &user.line, BACK_TO_ATTENDANT)
            .await
        {
            Ok(()) => {
                if let Some(h) = lock(&self.held).remove(&call) {
                    self.free_device(&h.device, call);
                }
                lock(&self.at_attendant).insert(call, (queue.clone(), user.user.clone()));
                tracing::info!(call, park = %device, attendant = %user.user, "attendant: parked call retrieved");
                self.tell(
                    &queue,
                    serde_json::json!({"event": "retrieved", "queue": queue, "call": call, "device": device, "attendant": user.user}),
                );
                Ok(call)
            }
            Err(e) => {
                // Still parked (with its music): any attendant may try again.
                let _ = self
                    .node
                    .store
                    .set_call_state(inst, call, "answered", "parked", None)
                    .await;
                if matches!(self.node.call_control.call_exists(call).await, Ok(false)) {
                    self.held_call_gone(call).await;
                }
                Err(err(
                    410,
                    format!("the call could not be moved to your phone: {e}"),
                ))
            }
        }
    }
}
