//! TCP connections of a capture, reassembled ([`crate::pcap::TcpReassembler`]) and read as
//! SIP ([`crate::pcap::SipTcpFramer`]) or HTTP ([`crate::pcap::HttpConversation`]).
//!
//! One reassembler per live connection, at most [`MAX_LIVE_CONNECTIONS`] at a time (later
//! connections are not reassembled, and the report says how many segments that left out). A
//! connection is forgotten once [`crate::pcap::TcpReassembler::is_closed`]; a later SYN or data
//! on the same addresses starts a new one. What a connection is carrying is decided from its
//! first data bytes (a SIP start line, an HTTP request or status line), never from ports alone
//! (5061 is TLS). What the reassembler saw (retransmissions, out-of-order segments, gaps,
//! overlaps whose bytes differ) is kept per connection as a [`TcpNote`]: counted, not guessed.

use std::collections::HashMap;

use super::classify::looks_like_sip;
use crate::pcap::flow::{Endpoint, FlowKey, Side};
use crate::pcap::{
    Direction, HttpConversation, HttpEvent, HttpKind, HttpMessage, SipStreamEvent, SipTcpFramer,
    TcpEvent, TcpFlags, TcpReassembler, TcpSegment,
};
use crate::wire::sip::SipMessage;

/// Connections reassembled at the same time.
pub const MAX_LIVE_CONNECTIONS: usize = 20_000;
/// Connection notes listed per capture (later ones are counted).
pub const MAX_NOTES: usize = 200;
/// Unanswered HTTP requests remembered per connection.
const MAX_PENDING: usize = 64;

/// What a TCP connection delivered to the verifier.
#[derive(Debug)]
pub enum AppEvent {
    Sip {
        /// Frame of the message's last byte.
        frame: u64,
        ts_ns: u64,
        src: Endpoint,
        dst: Endpoint,
        msg: Box<SipMessage>,
    },
    SipError {
        frame: u64,
        detail: String,
    },
    /// A request, or a response with its request (`request` None when it was not seen).
    Http {
        frame: u64,
        src: Endpoint,
        dst: Endpoint,
        msg: Box<HttpMessage>,
        request: Option<HttpRequestSeen>,
    },
    /// A request that got no response in the capture.
    HttpUnanswered {
        request: HttpRequestSeen,
    },
}

/// A request remembered until its response.
#[derive(Clone, Debug)]
pub struct HttpRequestSeen {
    pub frame: u64,
    pub ts_ns: u64,
    pub method: String,
    pub target: String,
    pub client: Endpoint,
    pub server: Endpoint,
    /// When the exchange began: the connection's first packet for its first request (the
    /// client opened it for this request), else the request's first byte.
    pub start_ts_ns: u64,
}

/// What one connection's reassembly met (only connections with something to say).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TcpNote {
    /// The endpoint that sent the connection's first packet.
    pub src: String,
    pub dst: String,
    /// `sip`, `http` or `other`.
    pub app: &'static str,
    pub first_frame: u64,
    pub last_frame: u64,
    pub retransmissions: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Frame after the first gap.
    pub first_gap_frame: Option<u64>,
    pub overlap_conflicts: u64,
    pub first_conflict_frame: Option<u64>,
}

impl TcpNote {
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if self.retransmissions > 0 {
            parts.push(format!("{} retransmitted segments", self.retransmissions));
        }
        if self.out_of_order > 0 {
            parts.push(format!("{} out-of-order segments", self.out_of_order));
        }
        if self.gaps > 0 {
            parts.push(format!(
                "{} gaps ({} bytes not captured; first before frame {})",
                self.gaps,
                self.gap_bytes,
                self.first_gap_frame.unwrap_or(0)
            ));
        }
        if self.overlap_conflicts > 0 {
            parts.push(format!(
                "{} overlaps with different bytes (first in frame {}; the first bytes were kept)",
                self.overlap_conflicts,
                self.first_conflict_frame.unwrap_or(0)
            ));
        }
        format!(
            "tcp {} -> {} ({}, frames {}-{}): {}",
            self.src,
            self.dst,
            self.app,
            self.first_frame,
            self.last_frame,
            parts.join(", ")
        )
    }
}

enum App {
    Undecided,
    Sip(SipTcpFramer),
    Http(HttpConversation),
    Other,
}

struct Conn {
    reasm: TcpReassembler,
    /// Endpoint of `Direction::Forward` (the first packet's sender) and its side in the key.
    fwd: Endpoint,
    rev: Endpoint,
    fwd_side: Side,
    app: App,
    first_frame: u64,
    last_frame: u64,
    /// Time of the first packet, until the first HTTP request takes it as its start.
    opened_ts_ns: Option<u64>,
    first_gap_frame: Option<u64>,
    first_conflict_frame: Option<u64>,
    pending: Vec<HttpRequestSeen>,
}

impl Conn {
    fn endpoints(&self, dir: Direction) -> (Endpoint, Endpoint) {
        match dir {
            Direction::Forward => (self.fwd, self.rev),
            Direction::Reverse => (self.rev, self.fwd),
        }
    }
}

/// Every TCP connection of a capture.
#[derive(Default)]
pub struct TcpStreams {
    live: HashMap<FlowKey, Conn, crate::pcap::flow::FastHash>,
    pub notes: Vec<TcpNote>,
    /// Connections with something to say beyond `notes`.
    pub notes_dropped: u64,
    pub connections: u64,
    /// Segments of connections not reassembled (the live table was full).
    pub untracked_segments: u64,
}

impl TcpStreams {
    /// One TCP segment from `src` to `dst`; what it completes is appended to `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        frame: u64,
        ts_ns: u64,
        src: Endpoint,
        dst: Endpoint,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
        out: &mut Vec<AppEvent>,
    ) {
        let (key, side) = FlowKey::new(6, src, dst);
        let flags = TcpFlags::from_header_byte(flags);
        let starts = flags.contains(TcpFlags::SYN) || !payload.is_empty();
        if let Some(c) = self.live.get(&key) {
            if c.reasm.is_closed() && starts {
                let c = self.live.remove(&key).expect("present");
                self.close(c, frame, out);
            }
        }
        if !self.live.contains_key(&key) {
            if !starts {
                return;
            }
            if self.live.len() >= MAX_LIVE_CONNECTIONS {
                self.untracked_segments += 1;
                return;
            }
            self.connections += 1;
            self.live.insert(
                key,
                Conn {
                    reasm: TcpReassembler::default(),
                    fwd: src,
                    rev: dst,
                    fwd_side: side,
                    app: App::Undecided,
                    first_frame: frame,
                    last_frame: frame,
                    opened_ts_ns: Some(ts_ns),
                    first_gap_frame: None,
                    first_conflict_frame: None,
                    pending: Vec::new(),
                },
            );
        }
        let Some(c) = self.live.get_mut(&key) else {
            return;
        };
        let dir = if side == c.fwd_side {
            Direction::Forward
        } else {
            Direction::Reverse
        };
        c.last_frame = frame;
        c.reasm.push(
            dir,
            TcpSegment {
                frame,
                ts_ns,
                seq,
                ack,
                flags,
                payload,
            },
        );
        drain(c, out);
        if c.reasm.is_closed() {
            let c = self.live.remove(&key).expect("present");
            self.close(c, frame, out);
        }
    }

    /// End of capture: every live connection is finished.
    pub fn finish(&mut self, last_frame: u64, out: &mut Vec<AppEvent>) {
        let mut conns: Vec<Conn> = self.live.drain().map(|(_, c)| c).collect();
        conns.sort_by_key(|c| c.first_frame);
        for mut c in conns {
            c.reasm.finish(last_frame);
            drain(&mut c, out);
            self.close(c, last_frame, out);
        }
        self.notes.sort_by_key(|n| n.first_frame);
    }

    fn close(&mut self, mut c: Conn, frame: u64, out: &mut Vec<AppEvent>) {
        match &mut c.app {
            App::Sip(f) => {
                f.finish();
                sip_events(&c.fwd, &c.rev, f, out);
            }
            App::Http(h) => {
                h.finish(frame);
                let h = std::mem::replace(&mut c.app, App::Other);
                if let App::Http(mut h) = h {
                    http_events(&mut c, &mut h, out);
                    c.app = App::Http(h);
                }
            }
            App::Undecided | App::Other => {}
        }
        for request in c.pending.drain(..) {
            out.push(AppEvent::HttpUnanswered { request });
        }
        let s = c.reasm.stats();
        let sum = |f: fn(&crate::pcap::tcp::TcpDirStats) -> u64| f(&s.forward) + f(&s.reverse);
        let note = TcpNote {
            src: c.fwd.to_string(),
            dst: c.rev.to_string(),
            app: match c.app {
                App::Sip(_) => "sip",
                App::Http(_) => "http",
                _ => "other",
            },
            first_frame: c.first_frame,
            last_frame: c.last_frame,
            retransmissions: sum(|d| d.retransmissions),
            out_of_order: sum(|d| d.out_of_order),
            gaps: sum(|d| d.gaps),
            gap_bytes: sum(|d| d.gap_bytes),
            first_gap_frame: c.first_gap_frame,
            overlap_conflicts: sum(|d| d.overlap_conflicts),
            first_conflict_frame: c.first_conflict_frame,
        };
        if note.retransmissions + note.out_of_order + note.gaps + note.overlap_conflicts > 0 {
            if self.notes.len() < MAX_NOTES {
                self.notes.push(note);
            } else {
                self.notes_dropped += 1;
            }
        }
    }
}

fn drain(c: &mut Conn, out: &mut Vec<AppEvent>) {
    while let Some(ev) = c.reasm.poll() {
        match &ev {
            TcpEvent::Gap(g) => {
                c.first_gap_frame.get_or_insert(g.before_frame);
            }
            TcpEvent::OverlapConflict { frame, .. } => {
                c.first_conflict_frame.get_or_insert(*frame);
            }
            TcpEvent::Data(chunk) if matches!(c.app, App::Undecided) => {
                let data = &chunk.data;
                if data.iter().all(|&b| b == b'\r' || b == b'\n') {
                    continue;
                }
                let start = &data[data
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count()..];
                c.app = if looks_like_sip(start) {
                    App::Sip(SipTcpFramer::new())
                } else if let Some(client) =
                    HttpConversation::client_from_first_bytes(chunk.dir, start)
                {
                    App::Http(HttpConversation::new(client))
                } else {
                    App::Other
                };
            }
            _ => {}
        }
        match &mut c.app {
            App::Sip(f) => {
                f.on_tcp_event(&ev);
                sip_events(&c.fwd, &c.rev, f, out);
            }
            App::Http(_) => {
                let app = std::mem::replace(&mut c.app, App::Other);
                if let App::Http(mut h) = app {
                    h.on_tcp_event(&ev);
                    http_events(c, &mut h, out);
                    c.app = App::Http(h);
                }
            }
            App::Undecided | App::Other => {}
        }
    }
}

fn sip_events(fwd: &Endpoint, rev: &Endpoint, f: &mut SipTcpFramer, out: &mut Vec<AppEvent>) {
    while let Some((dir, ev)) = f.poll() {
        let (src, dst) = match dir {
            Direction::Forward => (*fwd, *rev),
            Direction::Reverse => (*rev, *fwd),
        };
        match ev {
            SipStreamEvent::Message(m) => out.push(AppEvent::Sip {
                frame: m.last_frame,
                ts_ns: m.last_ts_ns,
                src,
                dst,
                msg: Box::new(m.message),
            }),
            SipStreamEvent::Error {
                last_frame, error, ..
            } => out.push(AppEvent::SipError {
                frame: last_frame,
                detail: error.detail,
            }),
            _ => {}
        }
    }
}

fn http_events(c: &mut Conn, h: &mut HttpConversation, out: &mut Vec<AppEvent>) {
    while let Some((dir, ev)) = h.poll() {
        let HttpEvent::Message(m) = ev else {
            continue;
        };
        let (src, dst) = c.endpoints(dir);
        let request = match &m.kind {
            HttpKind::Request { method, target, .. } => {
                if c.pending.len() >= MAX_PENDING {
                    c.pending.remove(0);
                }
                let start_ts_ns = c.opened_ts_ns.take().unwrap_or(m.first_ts_ns);
                c.pending.push(HttpRequestSeen {
                    frame: m.last_frame,
                    ts_ns: m.last_ts_ns,
                    method: method.clone(),
                    target: target.clone(),
                    client: src,
                    server: dst,
                    start_ts_ns: start_ts_ns.min(m.first_ts_ns),
                });
                None
            }
            HttpKind::Response { .. } => m
                .request_frame
                .and_then(|rf| c.pending.iter().position(|p| p.frame == rf))
                .map(|i| c.pending.remove(i)),
        };
        out.push(AppEvent::Http {
            frame: m.last_frame,
            src,
            dst,
            msg: Box::new(m),
            request,
        });
    }
}
