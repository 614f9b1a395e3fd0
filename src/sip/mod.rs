//! SIP: message model ([`message`]), and the node's SIP service over UDP, TCP and TLS.
//!
//! The node answers what a Unified CM node answers to any peer: OPTIONS pings (trunk keepalive,
//! monitoring), and refuses malformed requests with the right 4xx. Registrar, digit analysis
//! and the B2BUA build on this module (call-control issue).

pub mod message;
pub mod registrar;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::server::metrics::inc;
use crate::server::NodeState;
use message::{Method, ParseError, Request, Response, SipMessage};

/// Methods this node accepts (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, NOTIFY, REFER, INFO, UPDATE";

/// Transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The node's SIP service.
#[derive(Clone)]
pub struct SipServer {
    state: Arc<NodeState>,
}

fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// An RFC 7231 date (`Date` header of REGISTER responses; phones set their clocks from it).
fn httpdate_now() -> String {
    let secs = registrar::unix_now();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mn = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1).clamp(0, 11) as usize];
    format!("{wd}, {d:02} {mn} {y} {h:02}:{m:02}:{s:02} GMT")
}

fn server_header() -> String {
    format!("ucm/{}", env!("CARGO_PKG_VERSION"))
}

impl SipServer {
    pub fn new(state: Arc<NodeState>) -> SipServer {
        SipServer { state }
    }

    /// Handles one request; `None` means nothing is sent back (ACK).
    pub fn handle_request(
        &self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Response> {
        if req.method == Method::Ack {
            return None;
        }
        if let Err(e) = req.validate() {
            tracing::info!(%source, transport = transport.as_str(), error = %e, "refusing malformed SIP request");
            let status = e.status.unwrap_or(400);
            return Some(self.respond(req, status, &reason_with_detail(status, &e)));
        }
        let resp = match &req.method {
            Method::Options => {
                let mut r = self.respond(req, 200, "OK");
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                r.headers.push("Supported", "replaces, timer");
                r
            }
            Method::Register => self.register(req, source, transport),
            other => {
                tracing::info!(%source, method = other.as_str(), "SIP method not handled by this node");
                let mut r = self.respond(req, 501, "Not Implemented");
                r.headers.push("Allow", "OPTIONS, ACK");
                r
            }
        };
        Some(resp)
    }

    fn register(&self, req: &Request, source: SocketAddr, transport: Transport) -> Response {
        let cluster = self.state.cluster();
        let max = cluster.service_parameters.call_manager.register_expires;
        let decision = registrar::decide(&cluster, req, max, |d| d.lines.clone());
        match decision {
            Ok(d) => {
                let bindings = self.state.registrar.apply(&d, transport, source);
                if let registrar::Decision::Bind { device, line, .. } = &d {
                    tracing::debug!(%source, device, line, "registered");
                }
                let mut r = self.respond(req, 200, "OK");
                let now = registrar::unix_now();
                for b in bindings {
                    let left = (b.expires_at - now).max(0);
                    r.headers
                        .push("Contact", format!("<{}>;expires={left}", b.contact));
                }
                r.headers.push("Date", httpdate_now());
                r
            }
            Err(refusal) => {
                tracing::info!(%source, status = refusal.status, reason = %refusal.reason, "REGISTER refused");
                let phrase = format!(
                    "{} ({})",
                    message::default_reason(refusal.status),
                    refusal
                        .reason
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(120)
                        .collect::<String>()
                );
                self.respond(req, refusal.status, &phrase)
            }
        }
    }

    fn respond(&self, req: &Request, status: u16, reason: &str) -> Response {
        let tag = new_tag();
        let mut r = req.make_response(status, reason, Some(&tag));
        r.headers.push("Server", server_header());
        r
    }

    /// Serves SIP over UDP until shutdown.
    pub async fn serve_udp(self, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
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
            let reply = match message::parse_datagram(data) {
                Ok(SipMessage::Request(mut req)) => {
                    stamp_via(&mut req, source);
                    self.handle_request(&req, source, Transport::Udp)
                        .map(|r| (response_target(&req, source), r.to_bytes()))
                }
                Ok(SipMessage::Response(_)) => None, // no client transactions yet
                Err(e) => {
                    inc(&self.state.metrics.sip_parse_errors);
                    tracing::info!(%source, error = %e, "malformed SIP datagram");
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

    /// Serves SIP over TCP, or TLS when `tls` is given, until shutdown.
    pub async fn serve_stream(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
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
            inc(&self.state.metrics.sip_tcp_connections);
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                match tls {
                    None => this.stream_conn(stream, peer, Transport::Tcp, stop).await,
                    Some(acc) => {
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => this.stream_conn(s, peer, Transport::Tls, stop).await,
                            _ => {
                                inc(&this.state.metrics.tls_handshake_failures);
                                tracing::debug!(%peer, "SIP TLS handshake failed");
                            }
                        }
                    }
                }
            });
        }
        drop(listener);
        // In-flight connections see the stop signal and close after their current message.
        while conns.join_next().await.is_some() {}
    }

    async fn stream_conn<S>(
        &self,
        mut io: S,
        peer: SocketAddr,
        transport: Transport,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(8192);
        loop {
            // Answer every complete message already buffered.
            loop {
                let skip = message::skip_keepalive(&buf);
                if skip > 0 {
                    // A double-CRLF ping gets a single CRLF pong (RFC 5626 section 4.4.1).
                    if skip >= 4 && io.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                    buf.advance(skip);
                }
                match message::frame_stream(&buf) {
                    Ok(Some(n)) => {
                        let frame = buf.split_to(n);
                        match transport {
                            Transport::Tls => inc(&self.state.metrics.sip_tls_received),
                            _ => inc(&self.state.metrics.sip_tcp_received),
                        }
                        let reply = match message::parse_stream_message(&frame) {
                            Ok(SipMessage::Request(mut req)) => {
                                stamp_via(&mut req, peer);
                                self.handle_request(&req, peer, transport)
                                    .map(|r| r.to_bytes())
                            }
                            Ok(SipMessage::Response(_)) => None,
                            Err(e) => {
                                inc(&self.state.metrics.sip_parse_errors);
                                tracing::info!(%peer, error = %e, "malformed SIP message on stream");
                                error_reply(&frame, &e, peer)
                            }
                        };
                        if let Some(bytes) = reply {
                            inc(&self.state.metrics.sip_responses_sent);
                            if io.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream cannot be re-synchronised after a framing error: answer
                        // if possible, then close.
                        inc(&self.state.metrics.sip_parse_errors);
                        tracing::info!(%peer, error = %e, "SIP stream framing error; closing connection");
                        if let Some(bytes) = error_reply(&buf, &e, peer) {
                            let _ = io.write_all(&bytes).await;
                        }
                        let _ = io.shutdown().await;
                        return;
                    }
                }
            }
            tokio::select! {
                r = io.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                _ = stop.changed() => {
                    let _ = io.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// RFC 3261 18.2.1 and RFC 3581: record where the request really came from in the top Via.
fn stamp_via(req: &mut Request, source: SocketAddr) {
    let Ok(mut via) = req.top_via() else { return };
    let mut changed = false;
    if via.host.trim_start_matches('[').trim_end_matches(']') != source.ip().to_string() {
        via.set_param("received", Some(source.ip().to_string()));
        changed = true;
    }
    if matches!(via.param("rport"), Some(None)) {
        via.set_param("rport", Some(source.port().to_string()));
        changed = true;
    }
    if changed {
        replace_top_via(req, &via.to_string());
    }
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
fn response_target(req: &Request, source: SocketAddr) -> SocketAddr {
    match req.top_via() {
        Ok(v) if v.param("rport").is_none() => match v.port {
            Some(p) => SocketAddr::new(source.ip(), p),
            None => source,
        },
        _ => source,
    }
}

fn reason_with_detail(status: u16, e: &ParseError) -> String {
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
