//! TFTP (RFC 1350) on UDP, read-only, serving the same files as TFTP-over-HTTP on 6970
//! (`SEP<MAC>.cnf.xml`, `ConfigFileCacheList.txt`): phones that boot the classic way fetch their
//! configuration here. Options: blksize (RFC 2348), tsize and timeout (RFC 2349), negotiated
//! with an OACK (RFC 2347).
//!
//! [`Transfer`] is the protocol: it takes ACKs and the time and says what to send, with no
//! socket and no clock inside. [`serve`] is the shell: one socket takes requests, and each
//! transfer gets its own socket (its transfer ID, as RFC 1350 asks) and task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{Bound, Flag, ListenerSpec, Parts, Proto, ServiceSpec, Start, StartFuture};
use crate::config::model::NodeService;
use crate::net::lograte::{LogRate, LOG_RATE_WINDOW};
use crate::net::per_source::PerSource;
use crate::net::{self, Dscp};
use crate::node::http::Listener;
use crate::node::NodeState;

/// Phone configuration files, over TFTP-over-HTTP (6970) and TFTP on UDP (69).
pub const SERVICE: ServiceSpec = ServiceSpec {
    flags: &[Flag {
        flag: NodeService::Tftp,
        name: "TFTP",
        paths: &[],
    }],
    listeners: &[
        ListenerSpec {
            flag: NodeService::Tftp,
            name: "tftp_http",
            what: "TFTP-over-HTTP",
            proto: Proto::Tcp,
            default_port: crate::node::TFTP_HTTP_PORT,
            dscp: |q| q.phone_configuration,
            optional_without_privilege: false,
        },
        ListenerSpec {
            flag: NodeService::Tftp,
            name: "tftp",
            what: "TFTP",
            proto: Proto::Udp,
            default_port: crate::node::TFTP_PORT,
            dscp: |q| q.phone_configuration,
            // Port 69 needs root or CAP_NET_BIND_SERVICE; TFTP over HTTP still serves the files.
            optional_without_privilege: true,
        },
    ],
    sections: &[],
    check: None,
    model_source: "",
    feed: None,
    status: &[],
    start,
};

/// Where this node's TFTP-over-HTTP listener is bound (what EMCC tells a visiting cluster
/// when no Default TFTP Server for EMCC Login Device is configured).
#[derive(Default)]
pub struct TftpHttpAddr(pub std::sync::OnceLock<SocketAddr>);

fn start(mut s: Start) -> StartFuture {
    Box::pin(async move {
        let node = s.node.clone();
        let mut parts = Parts::default();
        if let Some(Bound::Tcp(l)) = s.take_listener(&SERVICE, "tftp_http") {
            if let Ok(a) = l.local_addr() {
                let _ = node.shared::<TftpHttpAddr>().0.set(a);
            }
            let app = Router::new()
                .route("/{file}", get(tftp_file))
                .with_state(node.clone());
            parts.tasks.push(Box::pin(crate::node::http::serve(
                l,
                app,
                None,
                Listener::TftpHttp,
                node.clone(),
                s.stop.clone(),
            )));
        }
        if let Some(Bound::Udp(sock)) = s.take_listener(&SERVICE, "tftp") {
            let dscp = node.cluster().qos.phone_configuration;
            parts
                .tasks
                .push(Box::pin(serve(sock, node.clone(), dscp, s.stop.clone())));
        }
        Ok(parts)
    })
}

/// `GET /{file}` on TFTP-over-HTTP: a phone configuration file.
async fn tftp_file(
    State(s): State<Arc<NodeState>>,
    Path(file): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    let cluster = s.cluster();
    match crate::services::phone_config::file_for(&s, &cluster, &file) {
        Some(body) => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response(),
        None => {
            tracing::debug!(%peer, file, "configuration file not found");
            (StatusCode::NOT_FOUND, "File not found\n").into_response()
        }
    }
}

const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// RFC 1350 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    /// RFC 2347: option negotiation refused.
    BadOption = 8,
}

/// A request or packet the server refuses, with the TFTP error to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TFTP error {code:?}: {message}")]
pub struct TftpError {
    pub code: ErrorCode,
    pub message: String,
}

fn err(code: ErrorCode, message: impl Into<String>) -> TftpError {
    TftpError {
        code,
        message: message.into(),
    }
}

/// A read request with the options the server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub filename: String,
    pub mode: String,
    pub blksize: Option<u16>,
    pub tsize: bool,
    pub timeout: Option<u8>,
}

/// Longest `timeout` option (seconds) acknowledged; RFC 2349 allows up to 255.
pub const MAX_TIMEOUT_OPTION: u8 = 5;
/// Longest a transfer may last, whatever the client's pace: configuration files are a few
/// kilobytes, sent in well under a second on any network a phone boots from.
pub const MAX_TRANSFER_TIME: Duration = Duration::from_secs(60);

/// Largest block size accepted (RFC 2348 allows up to 65464; a loopback or LAN datagram of
/// that size is fine, but phones ask for at most 1468 or so).
pub const MAX_BLKSIZE: u16 = 65464;
const MIN_BLKSIZE: u16 = 8;

/// Parses the first packet of a transfer: only RRQ is accepted.
pub fn parse_request(packet: &[u8]) -> Result<ReadRequest, TftpError> {
    let op = packet
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| err(ErrorCode::IllegalOperation, "packet shorter than an opcode"))?;
    match op {
        OP_RRQ => {}
        OP_WRQ => return Err(err(ErrorCode::AccessViolation, "this server is read-only")),
        _ => {
            return Err(err(
                ErrorCode::IllegalOperation,
                format!("opcode {op} is not a request"),
            ))
        }
    }
    let body = &packet[2..];
    // NUL-terminated strings: filename, mode, then option name/value pairs.
    let Some(fields) = body.strip_suffix(&[0]) else {
        return Err(err(
            ErrorCode::IllegalOperation,
            "request not NUL-terminated",
        ));
    };
    let mut parts = fields
        .split(|&b| b == 0)
        .map(|s| std::str::from_utf8(s).ok());
    let filename = parts
        .next()
        .flatten()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| err(ErrorCode::IllegalOperation, "missing or non-UTF-8 filename"))?
        .to_string();
    let mode = parts
        .next()
        .flatten()
        .ok_or_else(|| err(ErrorCode::IllegalOperation, "missing transfer mode"))?
        .to_ascii_lowercase();
    if mode != "octet" && mode != "netascii" {
        return Err(err(
            ErrorCode::IllegalOperation,
            format!("transfer mode {mode:?} is not supported"),
        ));
    }
    let mut req = ReadRequest {
        filename,
        mode,
        blksize: None,
        tsize: false,
        timeout: None,
    };
    while let (Some(name), value) = (parts.next(), parts.next()) {
        let (Some(name), Some(Some(value))) = (name, value) else {
            return Err(err(ErrorCode::BadOption, "option without a value"));
        };
        match name.to_ascii_lowercase().as_str() {
            "blksize" => {
                // RFC 2348: a larger request than the server allows is answered with its own
                // maximum, not refused.
                let v: u32 = value
                    .parse()
                    .map_err(|_| err(ErrorCode::BadOption, format!("blksize {value:?}")))?;
                if v < u32::from(MIN_BLKSIZE) {
                    return Err(err(ErrorCode::BadOption, format!("blksize {v} below 8")));
                }
                req.blksize = Some(v.min(u32::from(MAX_BLKSIZE)) as u16);
            }
            "tsize" => req.tsize = true,
            "timeout" => {
                let v: u8 = value
                    .parse()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| err(ErrorCode::BadOption, format!("timeout {value:?}")))?;
                // RFC 2349 lets the server only echo the value asked for; a longer one than
                // we allow is left out of the OACK (RFC 2347: unacknowledged, so both sides
                // keep their defaults) instead of holding a transfer slot for minutes.
                if v <= MAX_TIMEOUT_OPTION {
                    req.timeout = Some(v);
                }
            }
            // Unknown options are ignored (RFC 2347): they simply do not appear in the OACK.
            _ => {}
        }
    }
    Ok(req)
}

/// Encodes an ERROR packet.
pub fn error_packet(e: &TftpError) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + e.message.len());
    p.extend_from_slice(&OP_ERROR.to_be_bytes());
    p.extend_from_slice(&(e.code as u16).to_be_bytes());
    p.extend_from_slice(e.message.as_bytes());
    p.push(0);
    p
}

/// What a transfer wants done next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this packet (and wait for its ACK until `retry_at`).
    Send(Vec<u8>),
    /// Nothing to send now.
    Wait,
    /// The last block was acknowledged.
    Done,
    /// Gave up: the client stopped answering or sent an error.
    Failed(String),
}

/// One read transfer: the file's bytes, sent in blocks, each retransmitted until ACKed.
#[derive(Debug)]
pub struct Transfer {
    data: Bytes,
    blksize: usize,
    timeout: Duration,
    /// The block last sent (0 = the OACK, when options were negotiated).
    block: u64,
    last_packet: Vec<u8>,
    retry_at: Instant,
    retries: u32,
    done: bool,
    /// The client acknowledged a packet: it is really at the address the request came from.
    acknowledged: bool,
    /// The transfer is abandoned at this time ([`MAX_TRANSFER_TIME`] after the request).
    expires_at: Instant,
}

/// Retransmissions of one packet before the transfer is abandoned.
pub const MAX_RETRIES: u32 = 5;
/// Retransmissions to a client that has not acknowledged anything yet. A forged source
/// address never acknowledges, so it gets one packet per request and no more (no
/// amplification); a real client whose first packet was lost repeats its request (RFC 1350).
pub const MAX_RETRIES_UNACKNOWLEDGED: u32 = 0;

impl Transfer {
    /// Starts a transfer of `data` for `req`; returns it with its first packet (OACK or DATA 1).
    pub fn start(req: &ReadRequest, data: Bytes, now: Instant) -> (Transfer, Vec<u8>) {
        let mut t = Transfer {
            data,
            blksize: usize::from(req.blksize.unwrap_or(512)),
            timeout: Duration::from_secs(u64::from(req.timeout.unwrap_or(1))),
            block: 0,
            last_packet: Vec::new(),
            retry_at: now,
            retries: 0,
            done: false,
            acknowledged: false,
            expires_at: now + MAX_TRANSFER_TIME,
        };
        let first = if req.blksize.is_some() || req.tsize || req.timeout.is_some() {
            let mut p = OP_OACK.to_be_bytes().to_vec();
            let mut opt = |k: &str, v: String| {
                p.extend_from_slice(k.as_bytes());
                p.push(0);
                p.extend_from_slice(v.as_bytes());
                p.push(0);
            };
            if let Some(b) = req.blksize {
                opt("blksize", b.to_string());
            }
            if req.tsize {
                opt("tsize", t.data.len().to_string());
            }
            if let Some(s) = req.timeout {
                opt("timeout", s.to_string());
            }
            p
        } else {
            t.block = 1;
            t.data_packet(1)
        };
        t.last_packet = first.clone();
        t.retry_at = now + t.timeout;
        (t, first)
    }

    /// Blocks in the file: the last one is shorter than `blksize`, possibly empty.
    fn blocks(&self) -> u64 {
        self.data.len() as u64 / self.blksize as u64 + 1
    }

    fn data_packet(&self, block: u64) -> Vec<u8> {
        let start = ((block - 1) as usize).saturating_mul(self.blksize);
        let end = start.saturating_add(self.blksize).min(self.data.len());
        let chunk = self.data.get(start..end).unwrap_or(&[]);
        let mut p = Vec::with_capacity(4 + chunk.len());
        p.extend_from_slice(&OP_DATA.to_be_bytes());
        // Block numbers wrap at 65535 -> 0, as most clients expect for large files.
        p.extend_from_slice(&((block & 0xffff) as u16).to_be_bytes());
        p.extend_from_slice(chunk);
        p
    }

    /// When [`Transfer::on_timeout`] should next be called: the packet in flight is due
    /// again, or the transfer's time is up.
    pub fn retry_at(&self) -> Instant {
        self.retry_at.min(self.expires_at)
    }

    /// A packet from the client's transfer ID.
    pub fn on_packet(&mut self, packet: &[u8], now: Instant) -> Step {
        if self.done {
            return Step::Done;
        }
        let op = match packet.get(..2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return Step::Wait,
        };
        match op {
            OP_ACK => {
                let Some(b) = packet.get(2..4) else {
                    return Step::Wait;
                };
                let acked = u16::from_be_bytes([b[0], b[1]]);
                // Duplicate or old ACKs are ignored (no resend: Sorcerer's Apprentice, RFC 1123).
                if acked != (self.block & 0xffff) as u16 {
                    return Step::Wait;
                }
                self.acknowledged = true;
                if self.block == self.blocks() {
                    self.done = true;
                    return Step::Done;
                }
                self.block += 1;
                self.retries = 0;
                self.last_packet = self.data_packet(self.block);
                self.retry_at = now + self.timeout;
                Step::Send(self.last_packet.clone())
            }
            OP_ERROR => {
                self.done = true;
                let msg = packet.get(4..).unwrap_or(&[]);
                let msg = String::from_utf8_lossy(msg.strip_suffix(&[0]).unwrap_or(msg));
                Step::Failed(format!("client sent an error: {msg}"))
            }
            _ => Step::Wait,
        }
    }

    /// Time passed: resend the packet in flight, or give up after [`MAX_RETRIES`].
    pub fn on_timeout(&mut self, now: Instant) -> Step {
        if self.done {
            return Step::Done;
        }
        if now >= self.expires_at {
            self.done = true;
            return Step::Failed(format!(
                "transfer took longer than {} s",
                MAX_TRANSFER_TIME.as_secs()
            ));
        }
        if now < self.retry_at {
            return Step::Wait;
        }
        let max = if self.acknowledged {
            MAX_RETRIES
        } else {
            MAX_RETRIES_UNACKNOWLEDGED
        };
        if self.retries >= max {
            self.done = true;
            return Step::Failed(if self.acknowledged {
                format!("no ACK for block {} after {max} retries", self.block)
            } else {
                "the client never acknowledged; not retransmitting to it".to_string()
            });
        }
        self.retries += 1;
        self.retry_at = now + self.timeout;
        Step::Send(self.last_packet.clone())
    }
}

/// Transfers running at once; further requests get "server busy" errors.
pub const MAX_TRANSFERS: usize = 1024;
/// Transfers one source address runs at once (a phone fetches one file at a time; a site
/// behind one NAT address boots a few together).
pub const MAX_TRANSFERS_PER_SOURCE: usize = 16;

static BUSY_LOG: LogRate = LogRate::new(LOG_RATE_WINDOW);
static REFUSED_LOG: LogRate = LogRate::new(LOG_RATE_WINDOW);
static ABANDONED_LOG: LogRate = LogRate::new(LOG_RATE_WINDOW);

/// Serves read requests on `socket` until `stop` changes. Each transfer answers from its own
/// socket on the same address, marked `dscp`.
pub async fn serve(
    socket: UdpSocket,
    state: Arc<NodeState>,
    dscp: Dscp,
    mut stop: watch::Receiver<bool>,
) {
    let local_ip = match socket.local_addr() {
        Ok(a) => a.ip(),
        Err(e) => {
            tracing::error!(error = %e, "TFTP socket has no address");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TRANSFERS));
    let per_source = Arc::new(PerSource::default());
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "TFTP receive failed");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let packet = buf[..n].to_vec();
        let source = per_source.take(peer.ip(), MAX_TRANSFERS_PER_SOURCE);
        let permit = slots.clone().try_acquire_owned().ok();
        let (Some(source), Some(permit)) = (source, permit) else {
            // One small error packet, no bigger than a request: nothing to amplify.
            let busy = err(ErrorCode::NotDefined, "server busy, try again");
            let _ = socket.send_to(&error_packet(&busy), peer).await;
            if let Some(suppressed) = BUSY_LOG.allow(Instant::now()) {
                tracing::warn!(%peer, suppressed, "TFTP: transfer limit reached (server or this source)");
            }
            continue;
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _held = (permit, source);
            transfer(packet, peer, local_ip, state, dscp, stop).await;
        });
    }
}

async fn transfer(
    packet: Vec<u8>,
    peer: SocketAddr,
    local_ip: std::net::IpAddr,
    state: Arc<NodeState>,
    dscp: Dscp,
    mut stop: watch::Receiver<bool>,
) {
    let sock = match net::bind_udp(SocketAddr::new(local_ip, 0), dscp) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "TFTP: cannot open a transfer socket");
            return;
        }
    };
    let send = |p: Vec<u8>| {
        let sock = &sock;
        async move {
            if let Err(e) = sock.send_to(&p, peer).await {
                tracing::debug!(%peer, error = %e, "TFTP send failed");
            }
        }
    };
    let req = match parse_request(&packet) {
        Ok(r) => r,
        Err(e) => {
            if let Some(suppressed) = REFUSED_LOG.allow(Instant::now()) {
                tracing::info!(%peer, error = %e, suppressed, "TFTP request refused");
            }
            send(error_packet(&e)).await;
            return;
        }
    };
    let name = req.filename.trim_start_matches('/').to_string();
    let cluster = state.cluster();
    let Some(body) = crate::services::phone_config::file_for(&state, &cluster, &name) else {
        tracing::debug!(%peer, file = name, "TFTP: file not found");
        send(error_packet(&err(
            ErrorCode::FileNotFound,
            "File not found",
        )))
        .await;
        return;
    };
    let data = Bytes::from(body);
    let (mut t, first) = Transfer::start(&req, data, Instant::now());
    send(first).await;
    let mut buf = vec![0u8; 2048];
    loop {
        let sleep = tokio::time::sleep_until(t.retry_at().into());
        let step = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) if from == peer => t.on_packet(&buf[..n], Instant::now()),
                Ok((_, from)) => {
                    // RFC 1350: a packet from another transfer ID gets an error, and the
                    // transfer goes on.
                    let e = err(ErrorCode::UnknownTransferId, "unknown transfer ID");
                    let _ = sock.send_to(&error_packet(&e), from).await;
                    Step::Wait
                }
                Err(_) => Step::Wait,
            },
            _ = sleep => t.on_timeout(Instant::now()),
            _ = stop.changed() => return,
        };
        match step {
            Step::Send(p) => send(p).await,
            Step::Wait => {}
            Step::Done => {
                tracing::debug!(%peer, file = name, "TFTP transfer complete");
                return;
            }
            Step::Failed(why) => {
                if let Some(suppressed) = ABANDONED_LOG.allow(Instant::now()) {
                    tracing::info!(%peer, file = name, reason = why, suppressed, "TFTP transfer abandoned");
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(fields: &[&str]) -> Vec<u8> {
        let mut p = OP_RRQ.to_be_bytes().to_vec();
        for f in fields {
            p.extend_from_slice(f.as_bytes());
            p.push(0);
        }
        p
    }

    fn ack(block: u16) -> Vec<u8> {
        let mut p = OP_ACK.to_be_bytes().to_vec();
        p.extend_from_slice(&block.to_be_bytes());
        p
    }

    #[test]
    fn requests_parse_with_options_and_bad_ones_get_the_right_error() {
        let r = parse_request(&rrq(&[
            "SEP1.cnf.xml",
            "OCTET",
            "blksize",
            "1468",
            "tsize",
            "0",
            "x",
            "y",
        ]))
        .unwrap();
        assert_eq!(r.filename, "SEP1.cnf.xml");
        assert_eq!((r.blksize, r.tsize, r.timeout), (Some(1468), true, None));
        assert_eq!(
            parse_request(&rrq(&["f", "octet", "blksize", "99999"]))
                .unwrap()
                .blksize,
            Some(MAX_BLKSIZE)
        );
        let code = |p: &[u8]| parse_request(p).unwrap_err().code;
        assert_eq!(code(&[0, 2, b'f', 0, b'o', 0]), ErrorCode::AccessViolation);
        assert_eq!(code(&[0, 9]), ErrorCode::IllegalOperation);
        assert_eq!(code(&[0]), ErrorCode::IllegalOperation);
        assert_eq!(code(&rrq(&["f"])), ErrorCode::IllegalOperation);
        assert_eq!(code(&rrq(&["f", "mail"])), ErrorCode::IllegalOperation);
        assert_eq!(code(&rrq(&["", "octet"])), ErrorCode::IllegalOperation);
        assert_eq!(
            code(&rrq(&["f", "octet", "blksize", "4"])),
            ErrorCode::BadOption
        );
        assert_eq!(
            code(&rrq(&["f", "octet", "timeout", "0"])),
            ErrorCode::BadOption
        );
        assert_eq!(code(&rrq(&["f", "octet", "blksize"])), ErrorCode::BadOption);
        let mut unterminated = rrq(&["f", "octet"]);
        unterminated.pop();
        assert_eq!(code(&unterminated), ErrorCode::IllegalOperation);
    }

    #[test]
    fn plain_transfer_sends_blocks_until_the_short_one_is_acked() {
        let now = Instant::now();
        let req = parse_request(&rrq(&["f", "octet"])).unwrap();
        // Exactly two full blocks: a third, empty block ends the transfer.
        let (mut t, first) = Transfer::start(&req, Bytes::from(vec![7u8; 1024]), now);
        assert_eq!(&first[..4], &[0, 3, 0, 1]);
        assert_eq!(first.len(), 4 + 512);
        // A duplicate ACK of an older block is ignored.
        assert_eq!(t.on_packet(&ack(0), now), Step::Wait);
        let Step::Send(p) = t.on_packet(&ack(1), now) else {
            panic!()
        };
        assert_eq!((&p[..4], p.len()), (&[0u8, 3, 0, 2][..], 516));
        let Step::Send(p) = t.on_packet(&ack(2), now) else {
            panic!()
        };
        assert_eq!(p, vec![0, 3, 0, 3]);
        assert_eq!(t.on_packet(&ack(3), now), Step::Done);
    }

    #[test]
    fn options_are_acknowledged_and_lost_packets_resent_then_abandoned() {
        let now = Instant::now();
        let req = parse_request(&rrq(&[
            "f", "octet", "blksize", "1000", "tsize", "0", "timeout", "2",
        ]))
        .unwrap();
        let (mut t, oack) = Transfer::start(&req, Bytes::from(vec![1u8; 1500]), now);
        assert_eq!(
            oack,
            b"\x00\x06blksize\x001000\x00tsize\x001500\x00timeout\x002\x00".to_vec()
        );
        // The client ACKs the OACK with block 0.
        let Step::Send(d1) = t.on_packet(&ack(0), now) else {
            panic!()
        };
        assert_eq!(d1.len(), 1004);
        assert_eq!(
            t.on_timeout(now + Duration::from_secs(1)),
            Step::Wait,
            "timeout is 2 s"
        );
        let mut at = now;
        for _ in 0..MAX_RETRIES {
            at += Duration::from_secs(2);
            assert_eq!(t.on_timeout(at), Step::Send(d1.clone()));
        }
        at += Duration::from_secs(2);
        assert!(matches!(t.on_timeout(at), Step::Failed(_)));
    }

    #[test]
    fn block_numbers_wrap_and_client_errors_end_the_transfer() {
        let now = Instant::now();
        let req = parse_request(&rrq(&["f", "octet", "blksize", "8"])).unwrap();
        let (mut t, _) = Transfer::start(&req, Bytes::from(vec![0u8; 8 * 65537]), now);
        let mut last = Vec::new();
        for b in 0..=65535u32 {
            match t.on_packet(&ack(b as u16), now) {
                Step::Send(p) => last = p,
                other => panic!("block {b}: {other:?}"),
            }
        }
        // Block 65536 goes out numbered 0.
        assert_eq!(&last[..4], &[0, 3, 0, 0]);
        let e = error_packet(&err(ErrorCode::NotDefined, "cancelled"));
        assert!(matches!(t.on_packet(&e, now), Step::Failed(m) if m.contains("cancelled")));
    }

    #[test]
    fn r15_a_long_timeout_option_is_not_acknowledged() {
        let now = Instant::now();
        let req =
            parse_request(&rrq(&["f", "octet", "blksize", "1000", "timeout", "255"])).unwrap();
        assert_eq!(req.timeout, None, "255 s is past MAX_TIMEOUT_OPTION");
        let (t, oack) = Transfer::start(&req, Bytes::from(vec![1u8; 10]), now);
        assert_eq!(oack, b"\x00\x06blksize\x001000\x00".to_vec());
        assert_eq!(t.retry_at(), now + Duration::from_secs(1), "the default");
        let max = MAX_TIMEOUT_OPTION.to_string();
        let req = parse_request(&rrq(&["f", "octet", "timeout", &max])).unwrap();
        assert_eq!(req.timeout, Some(MAX_TIMEOUT_OPTION));
    }

    #[test]
    fn r15_nothing_is_retransmitted_to_a_client_that_never_acknowledged() {
        let now = Instant::now();
        // A 32-byte request; its source may be forged.
        let req = parse_request(&rrq(&["SEP00036BC7B973.cnf.xml", "octet"])).unwrap();
        let (mut t, first) = Transfer::start(&req, Bytes::from(vec![7u8; 3000]), now);
        assert_eq!(first.len(), 516);
        let mut sent = first.len();
        let (end, at) = loop {
            let at = t.retry_at();
            match t.on_timeout(at) {
                Step::Send(p) => sent += p.len(),
                Step::Wait => continue,
                other => break (other, at),
            }
        };
        assert!(
            matches!(end, Step::Failed(ref m) if m.contains("never acknowledged")),
            "{end:?}"
        );
        assert_eq!(sent, 516, "one packet per request, no retransmission");
        assert_eq!(
            at,
            now + Duration::from_secs(1),
            "the slot is free after one timeout"
        );
    }

    #[test]
    fn r15_a_transfer_ends_after_its_maximum_time() {
        let now = Instant::now();
        let req = parse_request(&rrq(&["f", "octet", "blksize", "8"])).unwrap();
        let (mut t, _) = Transfer::start(&req, Bytes::from(vec![0u8; 8 * 1000]), now);
        // A slow client: it acknowledges every block just before the retransmission is due.
        let mut at = now;
        let mut block = 0u16;
        let outcome = loop {
            at += Duration::from_millis(900);
            match t.on_timeout(at) {
                Step::Wait => {}
                other => break other,
            }
            assert!(matches!(t.on_packet(&ack(block), at), Step::Send(_)));
            block += 1;
        };
        assert!(
            matches!(outcome, Step::Failed(ref m) if m.contains("longer than")),
            "{outcome:?}"
        );
        assert!(
            at >= now + MAX_TRANSFER_TIME && at < now + MAX_TRANSFER_TIME + Duration::from_secs(1)
        );
    }
}
