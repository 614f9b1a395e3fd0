//! Call-flow ladders: what the endpoints of a capture said to each other, in frame order,
//! with everything that legitimately varies between two runs of the same scenario normalised
//! away, so that a ladder can be compared with a golden one ([`super::golden`]).
//!
//! - SIP (UDP and reassembled TCP): one line per message, `A -> B: INVITE (call 1, cseq 1)`,
//!   `B -> A: 180 INVITE (call 1, cseq 1)`. Calls are numbered by the first appearance of their
//!   Call-ID; CSeq numbers are counted from 1 per Call-ID and From tag (each UA's CSeq space);
//!   forked legs (more than one To tag answering the same call) add `leg N`.
//! - HTTP: one line per exchange, `A -> B: HTTP GET /path/{n}?q={} 200` (path template: numbers,
//!   long identifiers, device names and query values replaced).
//! - RTP: one line per stream direction, `A -> B: RTP PT 0 ptime 20ms`, with SSRC, packets,
//!   loss, sequence gaps and jitter in the line's detail (not compared: they vary).
//!
//! Roles: each address gets a stable name at its first appearance in the ladder: the policy's
//! role for it when it has one (`cucm`, `phone`...), else `A`, `B`, `C`... Ports, Call-IDs,
//! tags, branches, CSeq bases, SSRCs and timestamps never appear in a line's text. Letters,
//! role numbers and call numbers follow the order of first appearance, which concurrent
//! events change from run to run: the golden comparison ([`super::golden::equivalent`])
//! matches them by a renaming rather than as text.

use std::collections::HashMap;
use std::net::IpAddr;

/// Ladder events kept per capture (later ones are counted).
pub const MAX_EVENTS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    SipRequest {
        call_id: String,
        from_tag: String,
        to_tag: Option<String>,
        method: String,
        cseq: u32,
    },
    SipResponse {
        call_id: String,
        from_tag: String,
        to_tag: Option<String>,
        status: u16,
        method: String,
        cseq: u32,
    },
    Http {
        method: String,
        template: String,
        status: Option<u16>,
        /// When the exchange began (see [`crate::verify::streams::HttpRequestSeen`]) and
        /// when its response ended.
        start_ns: u64,
        end_ns: Option<u64>,
    },
    Rtp {
        payload_type: u8,
        ptime_ms: Option<u32>,
        detail: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Event {
    frame: u64,
    ts_ns: u64,
    src: IpAddr,
    dst: IpAddr,
    kind: Kind,
}

/// One line of a ladder.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LadderLine {
    pub frame: u64,
    /// Seconds since the capture's first ladder event (not compared).
    pub time: f64,
    /// The normalised line (what goldens hold).
    pub text: String,
    /// What varies and is not compared (SSRC, counts, jitter...), possibly empty.
    pub detail: String,
    /// When the exchange the line shows began and ended, in seconds like `time`: an HTTP
    /// exchange from its connection's opening (for the connection's first request) or its
    /// request to its response; any other line is a moment (`time`, `time`). Not shown: the
    /// golden comparison reads from it which exchanges were in progress at once.
    #[serde(skip)]
    pub span: (f64, f64),
}

impl LadderLine {
    /// A line that is a moment (no exchange around it).
    pub fn at(frame: u64, time: f64, text: impl Into<String>) -> LadderLine {
        LadderLine {
            frame,
            time,
            text: text.into(),
            detail: String::new(),
            span: (time, time),
        }
    }
}

impl Eq for LadderLine {}

/// A role and the address it stands for in this capture.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Role {
    pub name: String,
    pub addr: String,
}

/// A capture's ladder.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ladder {
    pub roles: Vec<Role>,
    pub lines: Vec<LadderLine>,
    /// Events beyond [`MAX_EVENTS`], not in `lines`.
    pub dropped: u64,
}

impl Ladder {
    /// The normalised text: one line per event, newline-terminated.
    pub fn normalised(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(&l.text);
            s.push('\n');
        }
        s
    }

    /// The ladder for people: roles, then `frame time line [detail]`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for r in &self.roles {
            s.push_str(&format!("# {} = {}\n", r.name, r.addr));
        }
        for l in &self.lines {
            s.push_str(&format!("{:>7} {:>10.6}  {}", l.frame, l.time, l.text));
            if !l.detail.is_empty() {
                s.push_str(&format!("  [{}]", l.detail));
            }
            s.push('\n');
        }
        if self.dropped > 0 {
            s.push_str(&format!("# {} more events not shown\n", self.dropped));
        }
        s
    }
}

/// Collects ladder events during an audit.
#[derive(Clone, Debug, Default)]
pub struct LadderBuilder {
    events: Vec<Event>,
    dropped: u64,
}

impl LadderBuilder {
    fn push(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push(e);
        } else {
            self.dropped += 1;
        }
    }

    /// A SIP message from `src` to `dst`, shown in `frame`.
    pub fn sip(
        &mut self,
        frame: u64,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        msg: &crate::wire::sip::SipMessage,
    ) {
        use crate::wire::sip::SipMessage;
        let h = msg.headers();
        let call_id = msg.call_id().unwrap_or("").to_string();
        let from_tag = h
            .from_addr()
            .ok()
            .and_then(|a| a.tag().map(str::to_string))
            .unwrap_or_default();
        let (cseq, cmethod) = match msg.cseq() {
            Ok(c) => (c.seq, c.method.as_str().to_string()),
            Err(_) => (0, String::new()),
        };
        let to_tag = h.to_addr().ok().and_then(|a| a.tag().map(str::to_string));
        let kind = match msg {
            SipMessage::Request(r) => Kind::SipRequest {
                call_id,
                from_tag,
                to_tag,
                method: r.method.as_str().to_string(),
                cseq,
            },
            SipMessage::Response(r) => Kind::SipResponse {
                call_id,
                from_tag,
                to_tag,
                status: r.status,
                method: cmethod,
                cseq,
            },
        };
        self.push(Event {
            frame,
            ts_ns,
            src,
            dst,
            kind,
        });
    }

    /// An HTTP exchange (request frame, client -> server), `status` None when unanswered;
    /// `span_ns`: when the exchange began and when its response ended (None: unanswered).
    #[allow(clippy::too_many_arguments)]
    pub fn http(
        &mut self,
        frame: u64,
        ts_ns: u64,
        client: IpAddr,
        server: IpAddr,
        method: &str,
        target: &str,
        status: Option<u16>,
        span_ns: (u64, Option<u64>),
    ) {
        self.push(Event {
            frame,
            ts_ns,
            src: client,
            dst: server,
            kind: Kind::Http {
                method: method.to_string(),
                template: path_template(target),
                status,
                start_ns: span_ns.0,
                end_ns: span_ns.1,
            },
        });
    }

    /// An RTP stream direction, at its first frame.
    #[allow(clippy::too_many_arguments)]
    pub fn rtp(
        &mut self,
        frame: u64,
        ts_ns: u64,
        src: IpAddr,
        dst: IpAddr,
        payload_type: u8,
        ptime_ms: Option<u32>,
        detail: String,
    ) {
        self.push(Event {
            frame,
            ts_ns,
            src,
            dst,
            kind: Kind::Rtp {
                payload_type,
                ptime_ms,
                detail,
            },
        });
    }

    /// The ladder, with roles named by `role_of` (the policy's role of an address) or letters.
    pub fn finish(mut self, role_of: impl Fn(IpAddr) -> Option<String>) -> Ladder {
        self.events.sort_by_key(|e| e.frame);
        let mut roles: Vec<Role> = Vec::new();
        let mut by_addr: HashMap<IpAddr, String> = HashMap::new();
        let mut letters = 0usize;
        let mut name_of = |addr: IpAddr, roles: &mut Vec<Role>| -> String {
            if let Some(n) = by_addr.get(&addr) {
                return n.clone();
            }
            let name = match role_of(addr) {
                Some(r) => {
                    let mut name = r.clone();
                    let mut k = 1;
                    while roles.iter().any(|x| x.name == name) {
                        k += 1;
                        name = format!("{r}{k}");
                    }
                    name
                }
                None => {
                    let n = letter_name(letters);
                    letters += 1;
                    n
                }
            };
            by_addr.insert(addr, name.clone());
            roles.push(Role {
                name: name.clone(),
                addr: addr.to_string(),
            });
            name
        };
        // Calls by first appearance; CSeq bases per (call, from tag); legs per call.
        let mut calls: HashMap<String, usize> = HashMap::new();
        let mut bases: HashMap<(String, String), u32> = HashMap::new();
        let mut legs: HashMap<(usize, String), usize> = HashMap::new();
        let mut legs_per_call: HashMap<usize, usize> = HashMap::new();
        for e in &self.events {
            if let Kind::SipResponse {
                call_id,
                from_tag,
                to_tag,
                ..
            } = &e.kind
            {
                let n = calls.len() + 1;
                let call = *calls.entry(call_id.clone()).or_insert(n);
                if let Some(t) = to_tag {
                    let pair = dialog_pair(from_tag, t);
                    if !legs.contains_key(&(call, pair.clone())) {
                        let c = legs_per_call.entry(call).or_insert(0);
                        *c += 1;
                        legs.insert((call, pair), *c);
                    }
                }
            } else if let Kind::SipRequest { call_id, .. } = &e.kind {
                let n = calls.len() + 1;
                calls.entry(call_id.clone()).or_insert(n);
            }
        }
        // Renumber calls in order of first appearance (the pass above did exactly that).
        let t0 = self.events.first().map(|e| e.ts_ns).unwrap_or(0);
        let mut lines = Vec::with_capacity(self.events.len());
        for e in &self.events {
            let src = name_of(e.src, &mut roles);
            let dst = name_of(e.dst, &mut roles);
            let mut detail = String::new();
            let secs = |ns: u64| (ns as i128 - t0 as i128) as f64 / 1e9;
            let time = secs(e.ts_ns).max(0.0);
            let mut span = (time, time);
            let body = match &e.kind {
                Kind::SipRequest {
                    call_id,
                    from_tag,
                    to_tag,
                    method,
                    cseq,
                } => {
                    let call = calls.get(call_id).copied().unwrap_or(0);
                    let rel = relative(&mut bases, call_id, from_tag, *cseq);
                    let leg = leg_text(&legs, &legs_per_call, call, from_tag, to_tag);
                    format!("{method} (call {call}{leg}, cseq {rel})")
                }
                Kind::SipResponse {
                    call_id,
                    from_tag,
                    to_tag,
                    status,
                    method,
                    cseq,
                } => {
                    let call = calls.get(call_id).copied().unwrap_or(0);
                    let rel = relative(&mut bases, call_id, from_tag, *cseq);
                    let leg = leg_text(&legs, &legs_per_call, call, from_tag, to_tag);
                    format!("{status} {method} (call {call}{leg}, cseq {rel})")
                }
                Kind::Http {
                    method,
                    template,
                    status,
                    start_ns,
                    end_ns,
                } => {
                    span = (
                        secs(*start_ns).min(time),
                        end_ns.map_or(time, |e| secs(e).max(time)),
                    );
                    match status {
                        Some(s) => format!("HTTP {method} {template} {s}"),
                        None => format!("HTTP {method} {template} (no response)"),
                    }
                }
                Kind::Rtp {
                    payload_type,
                    ptime_ms,
                    detail: d,
                } => {
                    detail = d.clone();
                    match ptime_ms {
                        Some(p) => format!("RTP PT {payload_type} ptime {p}ms"),
                        None => format!("RTP PT {payload_type}"),
                    }
                }
            };
            lines.push(LadderLine {
                frame: e.frame,
                time,
                text: format!("{src} -> {dst}: {body}"),
                detail,
                span,
            });
        }
        Ladder {
            roles,
            lines,
            dropped: self.dropped,
        }
    }
}

/// ` leg N` when the call forked (more than one dialog), else nothing.
fn leg_text(
    legs: &HashMap<(usize, String), usize>,
    legs_per_call: &HashMap<usize, usize>,
    call: usize,
    from_tag: &str,
    to_tag: &Option<String>,
) -> String {
    match to_tag {
        Some(t) if legs_per_call.get(&call).copied().unwrap_or(0) > 1 => legs
            .get(&(call, dialog_pair(from_tag, t)))
            .map(|l| format!(" leg {l}"))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// A dialog's tags in a fixed order (both UAs' messages name the same dialog).
fn dialog_pair(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}\n{b}")
    } else {
        format!("{b}\n{a}")
    }
}

/// CSeq counted from 1 per (Call-ID, From tag): the first CSeq seen is 1.
fn relative(
    bases: &mut HashMap<(String, String), u32>,
    call_id: &str,
    from_tag: &str,
    cseq: u32,
) -> i64 {
    let base = *bases
        .entry((call_id.to_string(), from_tag.to_string()))
        .or_insert(cseq);
    i64::from(cseq) - i64::from(base) + 1
}

/// `A`..`Z`, then `AA`, `AB`...
fn letter_name(mut n: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// A request target with what varies replaced: numbers `{n}`, long identifiers `{id}`, Cisco
/// device names `SEP{mac}`, query values `{}` (names kept, in order).
pub fn path_template(target: &str) -> String {
    // Absolute-form targets keep only the path.
    let t = match target.find("://") {
        Some(p) => {
            let rest = &target[p + 3..];
            rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
        }
        None => target,
    };
    let (path, query) = match t.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (t, None),
    };
    let segs: Vec<String> = path.split('/').map(segment_template).collect();
    let mut out = segs.join("/");
    if let Some(q) = query {
        let names: Vec<String> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, _)) => format!("{n}={{}}"),
                None => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&names.join("&"));
    }
    out
}

fn segment_template(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return "{n}".into();
    }
    let up = s.to_ascii_uppercase();
    if up.len() == 15 && up.starts_with("SEP") && up[3..].bytes().all(|b| b.is_ascii_hexdigit()) {
        return "SEP{mac}".into();
    }
    if s.len() >= 16
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return "{id}".into();
    }
    s.to_string()
}
