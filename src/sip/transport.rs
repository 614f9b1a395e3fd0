//! The SIP transports: UDP, and TCP and TLS connections (accepted from phones, or opened
//! towards trunks), framing, the Via stamping of RFC 3261 18.2.1 and RFC 3581, stateless
//! error answers to what does not parse, and the delivery of call control's messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::context::inc;
use super::message::{self, ParseError, Request, SipMessage};
use super::server::{new_tag, server_header, Disposition, SipServer};
use super::{b2bua, trunks};

/// Transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => Some(Transport::Udp),
            "TCP" => Some(Transport::Tcp),
            "TLS" => Some(Transport::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// Connections one SIP stream listener (TCP, TLS) holds at once, kept within the listener's
/// share of the descriptors ([`crate::net::limits::per_listener_cap`]).
pub const MAX_SIP_CONNECTIONS: usize = 10_000;
/// Connections one source address holds on one SIP stream listener at once (a phone needs
/// one; a trunk peer a few).
pub const MAX_SIP_CONNECTIONS_PER_SOURCE: usize = 32;
/// A message begun on a connection must be complete within this long, else the connection
/// is closed (a slow sender cannot hold a buffer for ever).
pub const SIP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no traffic (messages, keep-alives, or what the node sends) for this long
/// is closed, unless a phone holds a live registration over it: then it stays while the
/// registration lives.
pub const SIP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time a client has to complete the TLS handshake.
pub const SIP_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of the SIP stream listeners; [`StreamLimits::default`] is the constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub message_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> StreamLimits {
        StreamLimits {
            max_connections: MAX_SIP_CONNECTIONS,
            max_per_source: MAX_SIP_CONNECTIONS_PER_SOURCE,
            message_timeout: SIP_MESSAGE_TIMEOUT,
            idle_timeout: SIP_IDLE_TIMEOUT,
            tls_handshake_timeout: SIP_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The connections a listener holds, in total and per source address.
#[derive(Debug, Default)]
pub(super) struct ConnCount {
    total: usize,
    per_source: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    ListenerFull,
    SourceFull,
}

impl ConnCount {
    /// Takes a connection from `ip` unless a cap is reached.
    pub(super) fn admit(
        &mut self,
        ip: std::net::IpAddr,
        max: usize,
        per_source: usize,
    ) -> Result<(), Refused> {
        if self.total >= max {
            return Err(Refused::ListenerFull);
        }
        let n = self.per_source.entry(ip).or_insert(0);
        if *n >= per_source {
            return Err(Refused::SourceFull);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    pub(super) fn release(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// When a connection's reader must give up waiting, given its last traffic and the start of
/// the message it is in the middle of (if any).
pub(super) fn read_deadline(
    limits: &StreamLimits,
    last_traffic: tokio::time::Instant,
    message_started: Option<tokio::time::Instant>,
) -> tokio::time::Instant {
    match message_started {
        Some(t) => t + limits.message_timeout,
        None => last_traffic + limits.idle_timeout,
    }
}

/// The writer side of a connection and the receiver its writer task drains.
type ConnChannel = (
    mpsc::UnboundedSender<Vec<u8>>,
    mpsc::UnboundedReceiver<Vec<u8>>,
);

/// What the transport tells call control about messages it could not carry.
pub(super) enum TransportFailure {
    /// A message we built could not be sent (connect or TLS handshake failed), with why.
    Undelivered(SipMessage, String),
    /// A connection closed; requests sent on it wait for answers in vain.
    Closed(b2bua::Peer, String),
}

impl SipServer {
    fn report_failure(&self, bytes: &[u8], reason: &str) {
        if let Ok(msg) = message::parse_stream_message_bytes(&bytes::Bytes::copy_from_slice(bytes))
        {
            let _ = self
                .shared
                .failures_tx
                .send(TransportFailure::Undelivered(msg, reason.to_string()));
        }
    }

    /// Opens a connection to a peer we have none with (a trunk), TCP or TLS, marked CS3
    /// before connecting; messages for it queue on `chan` meanwhile. A failure is logged
    /// with why, and every queued message is reported to call control.
    async fn open_conn(self, to: SocketAddr, transport: Transport, chan: ConnChannel) {
        const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
        const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
        let dscp = self.state.cluster().qos.call_signalling;
        let stop_rx = self.state.stopping();
        let fail = |this: &SipServer, chan: ConnChannel, why: String| {
            let (tx, mut rx) = chan;
            this.forget_conn(to, &tx);
            drop(tx);
            // Bounded: the sender is gone from the table, so only what was queued remains.
            while let Ok(b) = rx.try_recv() {
                this.report_failure(&b, &why);
            }
        };
        // From the node's own address when it binds one: another node's intra-cluster trunk
        // trusts requests by their source address.
        let local = self
            .shared
            .udp
            .get()
            .and_then(|s| s.local_addr().ok())
            .filter(|a| !a.ip().is_unspecified() && a.is_ipv4() == to.is_ipv4())
            .map(|a| SocketAddr::new(a.ip(), 0));
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            crate::net::connect_tcp(to, local, dscp),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%to, transport = transport.as_str(), error = %e, "SIP connect failed");
                return fail(&self, chan, format!("connecting to {to}: {e}"));
            }
            Err(_) => {
                tracing::info!(%to, transport = transport.as_str(), "SIP connect timed out");
                return fail(&self, chan, format!("connecting to {to}: timed out"));
            }
        };
        if transport == Transport::Tcp {
            self.stream_conn(stream, to, Transport::Tcp, stop_rx, Some(chan))
                .await;
            return;
        }
        let target = match self.shared.tls_targets.lock() {
            Ok(g) => g.get(&to).cloned(),
            Err(p) => p.into_inner().get(&to).cloned(),
        };
        let (name, config, trunk) = match target {
            Some(trunks::TlsTarget {
                trunk,
                server_name: Ok(n),
                config: Ok(c),
            }) => (n, c, trunk),
            Some(trunks::TlsTarget {
                trunk,
                server_name,
                config,
            }) => {
                let why = server_name.err().or(config.err()).unwrap_or_default();
                tracing::warn!(%to, %trunk, error = %why, "SIP TLS connection not attempted");
                return fail(&self, chan, format!("TLS to {to}: {why}"));
            }
            None => {
                tracing::warn!(%to, "no TLS trunk has this address; SIP TLS connection not attempted");
                return fail(&self, chan, format!("TLS to {to}: no trunk configuration"));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name.clone(), stream)).await
        {
            Ok(Ok(tls)) => {
                tracing::debug!(%to, %trunk, "SIP TLS connection up");
                self.stream_conn(tls, to, Transport::Tls, stop_rx, Some(chan))
                    .await;
            }
            Ok(Err(e)) => {
                inc(&self.state.metrics.tls_handshake_failures);
                let server = name.to_str();
                tracing::warn!(%to, %trunk, server_name = %server, error = %e, "SIP TLS handshake failed");
                fail(
                    &self,
                    chan,
                    format!("TLS handshake with {to} ({server}) failed: {e}"),
                );
            }
            Err(_) => {
                inc(&self.state.metrics.tls_handshake_failures);
                tracing::warn!(%to, %trunk, "SIP TLS handshake timed out");
                fail(&self, chan, format!("TLS handshake with {to} timed out"));
            }
        }
    }

    /// Sends a message from call control to its peer, over UDP or the peer's connection.
    pub(super) fn transmit(&self, msg: SipMessage, to: b2bua::Peer) {
        let bytes = msg.to_bytes();
        if matches!(msg, SipMessage::Response(_)) {
            inc(&self.state.metrics.sip_responses_sent);
        }
        match to.transport {
            Transport::Udp => {
                if let Some(sock) = self.shared.udp.get() {
                    if let Err(e) = sock.try_send_to(&bytes, to.addr) {
                        if e.kind() == std::io::ErrorKind::WouldBlock {
                            let sock = sock.clone();
                            tokio::spawn(async move {
                                let _ = sock.send_to(&bytes, to.addr).await;
                            });
                        } else {
                            tracing::debug!(to = %to.addr, error = %e, "SIP UDP send failed");
                        }
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let conn = match self.shared.conns.lock() {
                    Ok(g) => g.get(&to.addr).cloned(),
                    Err(p) => p.into_inner().get(&to.addr).cloned(),
                };
                match conn {
                    Some(tx) => {
                        let _ = tx.send(bytes);
                    }
                    None => {
                        // No connection to this peer yet (a trunk): open one. The channel is
                        // in the table from now on, so what follows queues behind this.
                        let chan = self.register_conn(to.addr);
                        let _ = chan.0.send(bytes);
                        tokio::spawn(self.clone().open_conn(to.addr, to.transport, chan));
                    }
                }
            }
        }
    }

    /// Records the writer of a connection to `addr`; the receiver goes to its writer task.
    fn register_conn(
        &self,
        addr: SocketAddr,
    ) -> (
        mpsc::UnboundedSender<Vec<u8>>,
        mpsc::UnboundedReceiver<Vec<u8>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.shared.conns.lock() {
            Ok(mut g) => g.insert(addr, tx.clone()),
            Err(p) => p.into_inner().insert(addr, tx.clone()),
        };
        (tx, rx)
    }

    fn forget_conn(&self, addr: SocketAddr, tx: &mpsc::UnboundedSender<Vec<u8>>) {
        let mut g = match self.shared.conns.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.get(&addr).is_some_and(|t| t.same_channel(tx)) {
            g.remove(&addr);
        }
    }

    /// What to do with one parsed message from `peer`: a reply to send now, if any, and
    /// where it goes (over UDP, RFC 3261 18.2.2 / RFC 3581; the peer itself on streams).
    fn on_parsed(&self, msg: SipMessage, peer: b2bua::Peer) -> Option<(SocketAddr, Vec<u8>)> {
        match msg {
            SipMessage::Request(mut req) => {
                let target = stamp_via(&mut req, peer.addr);
                let reply_to = if peer.transport == Transport::Udp {
                    target
                } else {
                    peer.addr
                };
                match self.disposition(&req, peer.addr, peer.transport) {
                    Disposition::Reply(r) => Some((reply_to, r.to_bytes())),
                    Disposition::Drop => None,
                    Disposition::Core => {
                        let to = b2bua::Peer {
                            addr: reply_to,
                            transport: peer.transport,
                        };
                        self.to_core(SipMessage::Request(req), to)
                            .map(|r| (reply_to, r.to_bytes()))
                    }
                }
            }
            SipMessage::Response(resp) => {
                let _ = self.to_core(SipMessage::Response(resp), peer);
                None
            }
        }
    }

    /// Serves SIP over UDP until shutdown.
    pub async fn serve_udp(self, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
        let sock = Arc::new(sock);
        let _ = self.shared.udp.set(sock.clone());
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, source) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP port-unreachable from a previous send surfaces here on Linux.
                        tracing::debug!(error = %e, "SIP UDP receive error");
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            inc(&self.state.metrics.sip_udp_received);
            let data = &buf[..n];
            if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                continue; // keep-alive
            }
            let peer = b2bua::Peer {
                addr: source,
                transport: Transport::Udp,
            };
            let reply = match message::parse_datagram(data) {
                Ok(msg) => self.on_parsed(msg, peer),
                Err(e) => {
                    inc(&self.state.metrics.sip_parse_errors);
                    if let Some(n) = self.shared.malformed_log.hit(super::registrar::unix_now()) {
                        tracing::info!(%source, error = %e, malformed = n, "malformed SIP datagram");
                    }
                    error_reply(data, &e, source).map(|b| (source, b))
                }
            };
            if let Some((to, bytes)) = reply {
                inc(&self.state.metrics.sip_responses_sent);
                if let Err(e) = sock.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "SIP UDP send failed");
                }
            }
        }
    }

    /// Serves SIP over TCP, or TLS when `tls` is given, until shutdown. Connections beyond
    /// the listener's cap or the source's are closed as soon as accepted (logged at most
    /// once a second, with the count).
    pub async fn serve_stream(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
        let limits = self.shared.stream_limits;
        let max = crate::net::limits::per_listener_cap(limits.max_connections);
        let kind = if tls.is_some() { "TLS" } else { "TCP" };
        let count = Arc::new(std::sync::Mutex::new(ConnCount::default()));
        let refused_log = super::throttle::LogThrottle::new();
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "SIP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            let admitted = lock(&count).admit(peer.ip(), max, limits.max_per_source);
            if let Err(why) = admitted {
                inc(&self.state.metrics.sip_connections_refused);
                if let Some(refused) = refused_log.hit(super::registrar::unix_now()) {
                    let cap = match why {
                        Refused::ListenerFull => max,
                        Refused::SourceFull => limits.max_per_source,
                    };
                    tracing::warn!(%peer, transport = kind, refused, cap, reason = ?why, "SIP connection refused: too many connections");
                }
                drop(stream);
                continue;
            }
            inc(&self.state.metrics.sip_tcp_connections);
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            let count = count.clone();
            conns.spawn(async move {
                match tls {
                    None => {
                        this.stream_conn(stream, peer, Transport::Tcp, stop, None)
                            .await
                    }
                    Some(acc) => {
                        match tokio::time::timeout(limits.tls_handshake_timeout, acc.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => {
                                this.stream_conn(s, peer, Transport::Tls, stop, None).await
                            }
                            _ => {
                                inc(&this.state.metrics.tls_handshake_failures);
                                tracing::debug!(%peer, "SIP TLS handshake failed");
                            }
                        }
                    }
                }
                lock(&count).release(peer.ip());
            });
        }
        drop(listener);
        // In-flight connections see the stop signal and close after their current message.
        while conns.join_next().await.is_some() {}
    }

    /// Reads messages from one TCP or TLS connection; everything sent to the peer goes through
    /// the connection's writer task (replies here, requests from call control).
    async fn stream_conn<S>(
        &self,
        io: S,
        peer: SocketAddr,
        transport: Transport,
        mut stop: watch::Receiver<bool>,
        chan: Option<ConnChannel>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, mut rx) = match chan {
            Some(c) => c,
            None => self.register_conn(peer),
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        // What the node sends counts as traffic too (milliseconds after `opened`).
        let opened = tokio::time::Instant::now();
        let wrote = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let wrote_w = wrote.clone();
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
                let ms = opened.elapsed().as_millis() as u64;
                wrote_w.store(ms, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = wr.shutdown().await;
        });
        let limits = self.shared.stream_limits;
        let mut last_read = opened;
        let mut message_started: Option<tokio::time::Instant> = None;
        let mut buf = BytesMut::with_capacity(8192);
        let mut framer = message::StreamFramer::new();
        let p = b2bua::Peer {
            addr: peer,
            transport,
        };
        'conn: loop {
            // Handle every complete message already buffered.
            loop {
                match framer.poll(&buf) {
                    Ok(Some(message::StreamEvent::KeepAlive { len, ping })) => {
                        last_read = tokio::time::Instant::now();
                        buf.advance(len);
                        framer.reset();
                        // A double-CRLF ping gets a single CRLF pong (RFC 5626 section 4.4.1).
                        if ping {
                            let _ = tx.send(b"\r\n".to_vec());
                        }
                    }
                    Ok(Some(message::StreamEvent::Message { len })) => {
                        last_read = tokio::time::Instant::now();
                        message_started = None;
                        let frame = buf.split_to(len).freeze();
                        framer.reset();
                        match transport {
                            Transport::Tls => inc(&self.state.metrics.sip_tls_received),
                            _ => inc(&self.state.metrics.sip_tcp_received),
                        }
                        let reply = match message::parse_stream_message_bytes(&frame) {
                            Ok(msg) => self.on_parsed(msg, p).map(|(_, b)| b),
                            Err(e) => {
                                inc(&self.state.metrics.sip_parse_errors);
                                if let Some(n) =
                                    self.shared.malformed_log.hit(super::registrar::unix_now())
                                {
                                    tracing::info!(%peer, error = %e, malformed = n, "malformed SIP message on stream");
                                }
                                error_reply(&frame, &e, peer)
                            }
                        };
                        if let Some(bytes) = reply {
                            inc(&self.state.metrics.sip_responses_sent);
                            let _ = tx.send(bytes);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream cannot be re-synchronised after a framing error: answer
                        // if possible, then close.
                        inc(&self.state.metrics.sip_parse_errors);
                        tracing::info!(%peer, error = %e, "SIP stream framing error; closing connection");
                        if let Some(bytes) = error_reply(&buf, &e, peer) {
                            let _ = tx.send(bytes);
                        }
                        break 'conn;
                    }
                }
            }
            // Part of a message is buffered: it has SIP_MESSAGE_TIMEOUT from its first bytes.
            if buf.is_empty() {
                message_started = None;
            } else if message_started.is_none() {
                message_started = Some(tokio::time::Instant::now());
            }
            let wrote_at =
                opened + Duration::from_millis(wrote.load(std::sync::atomic::Ordering::Relaxed));
            let deadline = read_deadline(&limits, last_read.max(wrote_at), message_started);
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if message_started.is_some() {
                        inc(&self.state.metrics.sip_connections_timed_out);
                        if let Some(n) = self.shared.slow_log.hit(super::registrar::unix_now()) {
                            tracing::info!(%peer, transport = transport.as_str(), buffered = buf.len(), closed = n, "SIP message not completed within {:?}; closing the connection", limits.message_timeout);
                        }
                        break;
                    }
                    // A phone registered over this connection keeps it while its binding lives.
                    if self.state.registrar.holds_connection(peer) {
                        last_read = tokio::time::Instant::now();
                        continue;
                    }
                    inc(&self.state.metrics.sip_connections_timed_out);
                    tracing::debug!(%peer, transport = transport.as_str(), "SIP connection idle for {:?}; closing", limits.idle_timeout);
                    break;
                }
                _ = stop.changed() => break,
            }
        }
        self.forget_conn(peer, &tx);
        // Requests still waiting for an answer on this connection will get none: call
        // control ends them now (a trunk call hunts on) rather than at Timer B.
        if !*stop.borrow() {
            let _ = self.shared.failures_tx.send(TransportFailure::Closed(
                p,
                format!("the {} connection to {peer} closed", transport.as_str()),
            ));
        }
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// RFC 3261 18.2.1 and RFC 3581: record where the request really came from in the top Via.
/// Returns where a UDP response goes (see [`via_target`]; stamping does not change it).
fn stamp_via(req: &mut Request, source: SocketAddr) -> SocketAddr {
    let Ok(via) = req.headers.top_via_ref() else {
        return source;
    };
    let target = via_target(&via, source);
    let host_differs =
        via.host.trim_start_matches('[').trim_end_matches(']') != source.ip().to_string();
    let fill_rport = matches!(via.param("rport"), Some(None));
    if !host_differs && !fill_rport {
        return target;
    }
    let mut via = via.to_owned_via();
    if host_differs {
        via.set_param("received", Some(source.ip().to_string()));
    }
    if fill_rport {
        via.set_param("rport", Some(source.port().to_string()));
    }
    replace_top_via(req, &via.to_string());
    target
}

fn replace_top_via(req: &mut Request, new_top: &str) {
    let vias: Vec<String> = req
        .headers
        .get_all_split("Via")
        .map(str::to_string)
        .collect();
    if vias.is_empty() {
        return;
    }
    req.headers.remove("Via");
    // Keep every Via, the first replaced, in its own header line each.
    let mut first = true;
    for v in vias {
        let val = if first { new_top.to_string() } else { v };
        first = false;
        req.headers.push("Via", val);
    }
}

/// Where a UDP response goes (RFC 3261 18.2.2 with RFC 3581): the source port when the Via asked
/// for rport or named none, else the Via's port at the source address.
fn via_target(v: &message::ViaRef<'_>, source: SocketAddr) -> SocketAddr {
    match (v.param("rport"), v.port) {
        (None, Some(p)) => SocketAddr::new(source.ip(), p),
        _ => source,
    }
}

pub(super) fn reason_with_detail(status: u16, e: &ParseError) -> String {
    // Reason phrases are one line of text; keep the detail short and free of CR/LF.
    let detail: String = e
        .detail
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    format!("{} ({detail})", message::default_reason(status))
}

/// Builds an error response for a message that did not parse, from whatever header lines can
/// be read; `None` (drop) when the status says so or the headers needed to answer are missing.
fn error_reply(data: &[u8], e: &ParseError, source: SocketAddr) -> Option<Vec<u8>> {
    let status = e.status?;
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len().min(8192));
    let head = String::from_utf8_lossy(&data[..head_end]);
    let mut lines = head.lines();
    let first = lines.next()?;
    if first.starts_with("SIP/") {
        return None; // never answer a response
    }
    let mut keep: Vec<(String, String)> = Vec::new();
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let n = name.trim().to_ascii_lowercase();
        let canonical = match n.as_str() {
            "via" | "v" => "Via",
            "from" | "f" => "From",
            "to" | "t" => "To",
            "call-id" | "i" => "Call-ID",
            "cseq" => "CSeq",
            _ => continue,
        };
        keep.push((canonical.to_string(), value.trim().to_string()));
    }
    for needed in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !keep.iter().any(|(n, _)| n == needed) {
            tracing::debug!(%source, missing = needed, "cannot answer malformed message");
            return None;
        }
    }
    let tag = new_tag();
    let mut out = format!("SIP/2.0 {status} {}\r\n", reason_with_detail(status, e));
    for (n, v) in keep {
        if n == "To" && !v.contains(";tag=") {
            out.push_str(&format!("To: {v};tag={tag}\r\n"));
        } else {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Server: {}\r\nContent-Length: 0\r\n\r\n",
        server_header()
    ));
    Some(out.into_bytes())
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn r15_connections_are_capped_per_listener_and_per_source() {
        let mut c = ConnCount::default();
        let a: std::net::IpAddr = "127.0.0.69".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.70".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(c.admit(a, 5, 3), Ok(()));
        }
        assert_eq!(c.admit(a, 5, 3), Err(Refused::SourceFull));
        assert_eq!(c.admit(b, 5, 3), Ok(()));
        assert_eq!(c.admit(b, 5, 3), Ok(()));
        assert_eq!(c.admit(b, 5, 3), Err(Refused::ListenerFull));
        c.release(a);
        assert_eq!(c.admit(b, 5, 3), Ok(()));
        // Releasing what was never admitted changes nothing.
        c.release("127.0.0.1".parse().unwrap());
        assert_eq!(c.total, 5);
    }

    #[test]
    fn r15_a_begun_message_has_the_message_timeout_an_idle_connection_the_idle_one() {
        let l = StreamLimits::default();
        let t = tokio::time::Instant::now();
        let later = t + Duration::from_secs(3);
        assert_eq!(read_deadline(&l, t, None), t + SIP_IDLE_TIMEOUT);
        assert_eq!(
            read_deadline(&l, t, Some(later)),
            later + SIP_MESSAGE_TIMEOUT
        );
    }
}
