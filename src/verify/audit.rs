//! The DSCP audit: packets -> flows -> per-direction DSCP counts -> classes -> verdicts.
//!
//! [`Auditor`] takes packets one at a time (constant memory in the capture's size: per flow it
//! keeps counts per DSCP value and the first few frame numbers of each value, never the
//! packets). Classes need what the whole capture says (an SDP answer can come after the first
//! RTP packets), so flows are classified and judged in [`Auditor::finish`]. A packet offends
//! when its sender is audited and its class has an expected DSCP it does not carry; because
//! the first frames of every observed value are kept, the first offending frames are exact.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::IpAddr;

use super::classify::{
    class_by_port, is_media_multicast, is_tftp_request, lenient_sdp_body, looks_like_sip, Evidence,
    MediaBook, RtpGuess, TrafficClass, TCP, UDP,
};
use super::ladder::{Ladder, LadderBuilder};
use super::payload::{XmlChecker, XmlDocument};
use super::policy::Policy;
use super::streams::{AppEvent, TcpNote, TcpStreams};
use crate::media::rtp::{looks_like_rtp, static_clock_rate, ReceiverStats, RtpHeader};
use crate::net::Dscp;
use crate::pcap::flow::FastHash;
use crate::pcap::flow::{Endpoint, FlowId, FlowKey, FlowTable, Side};
use crate::pcap::{
    dissect, transport, CaptureReader, DefragLimits, Defragmenter, Dissected, Dissection, FragKey,
    PcapError, Transport,
};
use crate::wire::sip::{parse_datagram, SipMessage};

/// Limits and report sizes.
#[derive(Clone, Copy, Debug)]
pub struct AuditOptions {
    /// Most flows tracked; packets of later flows are counted in one unclassified bucket.
    pub max_flows: usize,
    /// Offending frame numbers listed per flow direction.
    pub max_frames: usize,
    pub defrag: DefragLimits,
    /// Pass a capture in which no flow direction is audited (no packets, none IP, or no
    /// sender and class under audit). Without it such a capture fails: a capture taken on the
    /// wrong interface must not pass a QoS audit.
    pub allow_empty: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_flows: 250_000,
            max_frames: 10,
            defrag: DefragLimits::default(),
            allow_empty: false,
        }
    }
}

/// Packets seen with one DSCP value in one direction.
#[derive(Clone, Debug, Default)]
struct DscpCount {
    dscp: u8,
    packets: u64,
    /// The first `max_frames` frame numbers, ascending.
    first_frames: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
struct DirStats {
    packets: u64,
    dscp: Vec<DscpCount>,
    rtp: RtpGuess,
    /// Receiver statistics of the RTP this direction carried (for the ladder; only reported
    /// when the flow is classified as media).
    rtp_stats: Option<Box<RtpTrack>>,
}

/// One direction's RTP, as a receiver would measure it.
#[derive(Clone, Debug)]
struct RtpTrack {
    first_frame: u64,
    first_ts_ns: u64,
    stats: ReceiverStats,
}

impl RtpTrack {
    /// `PT`, ptime and the detail of a ladder line.
    fn summary(&self) -> (u8, Option<u32>, String) {
        let s = self.stats.summary();
        let pt = s
            .payload_types
            .iter()
            .max_by_key(|p| p.packets)
            .map(|p| p.payload_type)
            .unwrap_or(0);
        let ptime = s.ptime_ms.map(|p| p.round() as u32);
        let ssrcs = s
            .ssrcs
            .iter()
            .map(|x| format!("{x:#010x}"))
            .collect::<Vec<_>>()
            .join(",");
        let detail = format!(
            "ssrc {ssrcs}, {} packets, {} lost ({:.1}%), {} seq gaps, jitter {:.2} ms (max {:.2})",
            s.packets, s.lost_clamped, s.loss_percent, s.gaps_total, s.jitter_ms, s.max_jitter_ms
        );
        (pt, ptime, detail)
    }
}

impl DirStats {
    fn count(&mut self, frame: u64, dscp: Dscp, max_frames: usize) {
        self.packets += 1;
        let v = dscp.value();
        let entry = match self.dscp.iter().position(|c| c.dscp == v) {
            Some(i) => &mut self.dscp[i],
            None => {
                self.dscp.push(DscpCount {
                    dscp: v,
                    ..DscpCount::default()
                });
                let last = self.dscp.len() - 1;
                &mut self.dscp[last]
            }
        };
        entry.packets += 1;
        if entry.first_frames.len() < max_frames {
            // Fragments held back for their first fragment can arrive out of frame order.
            let at = entry.first_frames.partition_point(|&f| f < frame);
            entry.first_frames.insert(at, frame);
        } else if entry.first_frames.last().is_some_and(|&l| frame < l) {
            entry.first_frames.pop();
            let at = entry.first_frames.partition_point(|&f| f < frame);
            entry.first_frames.insert(at, frame);
        }
    }
}

#[derive(Clone, Debug)]
struct FlowState {
    /// Side that sent the first packet.
    first_side: Side,
    dirs: [DirStats; 2],
    /// SIP messages parsed on this flow although its ports are not SIP's.
    sip_content: bool,
    /// HTTP messages parsed on this flow although its ports are not HTTP's.
    http_content: bool,
    /// A TLS ClientHello offering HTTP (ALPN) opened this flow although its ports are not
    /// HTTP's.
    https_content: bool,
    /// IGMP messages that only routers send (queries...) were seen on this flow.
    router_igmp: bool,
}

impl FlowState {
    fn new(side: Side) -> Self {
        FlowState {
            first_side: side,
            dirs: [DirStats::default(), DirStats::default()],
            sip_content: false,
            http_content: false,
            https_content: false,
            router_igmp: false,
        }
    }
}

/// Where a packet was counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Flow(FlowId, Side),
    Overflow,
}

/// What `Auditor::tuples` knows of a directional 5-tuple.
#[derive(Clone, Copy, Debug)]
struct TupleSlot {
    id: u32,
    side: Side,
    /// Index into `Auditor::addr_slots`, valid while `addr_gen` is the current generation.
    addr: u32,
    addr_gen: u32,
}

/// Most (protocol, source, destination) triples remembered for orphan fragments.
const MAX_LAST_BY_ADDRS: usize = 100_000;

/// Most fragments held back while waiting for their datagram's first fragment.
const MAX_WAITING_FRAGMENTS: usize = 100_000;

/// Streaming DSCP audit of one capture.
pub struct Auditor<'p> {
    policy: &'p Policy,
    options: AuditOptions,
    flows: FlowTable<FlowState>,
    overflow: Option<FlowState>,
    book: MediaBook,
    defrag: Defragmenter,
    frag_slots: HashMap<FragKey, Slot, FastHash>,
    frag_wait: HashMap<FragKey, Vec<(u64, Dscp)>, FastHash>,
    frag_waiting: usize,
    packets: u64,
    ip_packets: u64,
    non_ip_packets: u64,
    unsupported_link_types: BTreeMap<u16, u64>,
    fragments: u64,
    reassembled: u64,
    fragments_unreassembled: u64,
    /// Datagrams on SIP ports (or looking like SIP) the SIP parser refused.
    sip_errors: u64,
    first_sip_error: Option<(u64, String)>,
    /// The last flow seen per (protocol, source, destination), for fragments whose first
    /// fragment is missing: an index into `addr_slots`, so the per-packet update through
    /// `tuples` is a store, not a hash insert.
    last_by_addrs: HashMap<(u8, IpAddr, IpAddr), u32, FastHash>,
    addr_slots: Vec<Slot>,
    /// Bumped whenever `last_by_addrs` is cleared (invalidates indices cached in `tuples`).
    addrs_gen: u32,
    /// Directional IPv4 5-tuple -> its flow and side: one hash of a `u128` per packet instead
    /// of ordering endpoints and hashing `IpAddr`s. At most two entries per flow.
    tuples: HashMap<u128, TupleSlot, FastHash>,
    fragments_guessed: u64,
    /// Timestamp and number of the packet being audited.
    now_ns: u64,
    last_frame: u64,
    tcp: TcpStreams,
    app_events: Vec<AppEvent>,
    xml: XmlChecker,
    ladder: LadderBuilder,
    /// Where the capture was cut short, and the reader's words for it.
    truncated: Option<(Option<u64>, String)>,
}

impl<'p> Auditor<'p> {
    pub fn new(policy: &'p Policy, options: AuditOptions) -> Self {
        Auditor {
            policy,
            options,
            flows: FlowTable::new(options.max_flows),
            overflow: None,
            book: MediaBook::default(),
            defrag: Defragmenter::new(options.defrag),
            frag_slots: HashMap::default(),
            frag_wait: HashMap::default(),
            frag_waiting: 0,
            packets: 0,
            ip_packets: 0,
            non_ip_packets: 0,
            unsupported_link_types: BTreeMap::new(),
            fragments: 0,
            reassembled: 0,
            fragments_unreassembled: 0,
            sip_errors: 0,
            first_sip_error: None,
            last_by_addrs: HashMap::default(),
            addr_slots: Vec::new(),
            addrs_gen: 0,
            tuples: HashMap::default(),
            fragments_guessed: 0,
            now_ns: 0,
            last_frame: 0,
            tcp: TcpStreams::default(),
            app_events: Vec::new(),
            xml: XmlChecker::default(),
            ladder: LadderBuilder::default(),
            truncated: None,
        }
    }

    /// Audits one packet record (frame numbers as Wireshark counts them, from 1), without a
    /// timestamp (RTP jitter and ladder times then read 0).
    pub fn packet(&mut self, frame: u64, link_type: u16, data: &[u8]) {
        self.packet_at(frame, 0, link_type, data)
    }

    /// Audits one packet record captured at `ts_ns` (nanoseconds since the Unix epoch).
    pub fn packet_at(&mut self, frame: u64, ts_ns: u64, link_type: u16, data: &[u8]) {
        self.now_ns = ts_ns;
        self.last_frame = self.last_frame.max(frame);
        self.packets += 1;
        self.defrag.tick();
        match dissect(link_type, data) {
            Dissection::NotIp => self.non_ip_packets += 1,
            Dissection::UnsupportedLinkType => {
                *self.unsupported_link_types.entry(link_type).or_insert(0) += 1
            }
            Dissection::Ip(d) => {
                self.ip_packets += 1;
                match FragKey::of(&d) {
                    Some(key) => self.fragment(frame, key, &d),
                    None => {
                        let slot = self.count(frame, &d);
                        if d.protocol == super::classify::IGMP {
                            self.igmp(slot, d.ip_payload);
                        }
                        self.inspect(frame, slot, d.src, d.dst, &d.transport);
                    }
                }
            }
        }
        self.settle_dropped_fragments();
    }

    /// Records that the capture ends inside a record (`error`, from the capture reader): the
    /// audit covers the packets before it, and the file fails with the cut and its offset.
    pub fn truncated(&mut self, error: &PcapError) {
        self.truncated = Some((error.offset(), error.to_string()));
    }

    /// An IGMP message: routers' messages make the flow network control.
    fn igmp(&mut self, slot: Slot, message: &[u8]) {
        if let (Slot::Flow(id, _), true) = (slot, super::classify::is_router_igmp(message)) {
            if let Some((_, st)) = self.flows.by_id_mut(id) {
                st.router_igmp = true;
            }
        }
    }

    /// Records a SIP message carried by any transport (the hook for SIP over TCP framed
    /// elsewhere): its SDP announces media endpoints.
    pub fn sip_message(&mut self, msg: &SipMessage) {
        self.book.observe_sip(msg);
    }

    /// A SIP message with where and when it was seen: SDP, ladder, XML bodies.
    fn sip_seen(&mut self, frame: u64, ts_ns: u64, src: IpAddr, dst: IpAddr, msg: &SipMessage) {
        self.sip_message(msg);
        self.ladder.sip(frame, ts_ns, src, dst, msg);
        self.xml.sip(frame, msg);
    }

    /// What reassembled TCP connections delivered.
    fn app_events(&mut self) {
        let events = std::mem::take(&mut self.app_events);
        for ev in events {
            match ev {
                AppEvent::Sip {
                    frame,
                    ts_ns,
                    src,
                    dst,
                    msg,
                } => {
                    self.sip_seen(frame, ts_ns, src.addr, dst.addr, &msg);
                    if class_by_port(TCP, src.port, dst.port) != Some(TrafficClass::Sip) {
                        if let Slot::Flow(id, _) = self.slot_for(TCP, src, dst) {
                            if let Some((_, st)) = self.flows.by_id_mut(id) {
                                st.sip_content = true;
                            }
                        }
                    }
                }
                AppEvent::SipError { frame, detail } => self.sip_error(frame, detail),
                AppEvent::Http {
                    frame,
                    src,
                    dst,
                    msg,
                    request,
                } => {
                    if class_by_port(TCP, src.port, dst.port).is_none() {
                        if let Slot::Flow(id, _) = self.slot_for(TCP, src, dst) {
                            if let Some((_, st)) = self.flows.by_id_mut(id) {
                                st.http_content = true;
                            }
                        }
                    }
                    let source = match (&msg.kind, &request) {
                        (crate::pcap::HttpKind::Request { method, target, .. }, _) => {
                            format!("http {method} {}", super::ladder::path_template(target))
                        }
                        (crate::pcap::HttpKind::Response { status, .. }, Some(r)) => format!(
                            "http {status} ({} {})",
                            r.method,
                            super::ladder::path_template(&r.target)
                        ),
                        (crate::pcap::HttpKind::Response { status, .. }, None) => {
                            format!("http {status}")
                        }
                    };
                    self.xml.http(frame, &source, &msg);
                    if let (Some(status), Some(r)) = (msg.status(), request) {
                        self.ladder.http(
                            r.frame,
                            r.ts_ns,
                            r.client.addr,
                            r.server.addr,
                            &r.method,
                            &r.target,
                            Some(status),
                            (r.start_ts_ns, Some(msg.last_ts_ns)),
                        );
                    }
                }
                AppEvent::HttpUnanswered { request: r } => self.ladder.http(
                    r.frame,
                    r.ts_ns,
                    r.client.addr,
                    r.server.addr,
                    &r.method,
                    &r.target,
                    None,
                    (r.start_ts_ns, None),
                ),
            }
        }
    }

    fn slot_for(&mut self, protocol: u8, src: Endpoint, dst: Endpoint) -> Slot {
        let (key, side) = FlowKey::new(protocol, src, dst);
        match self.flows.get_or_insert_with(key, || FlowState::new(side)) {
            Some((id, _)) => Slot::Flow(id, side),
            None => Slot::Overflow,
        }
    }

    fn count_in(&mut self, slot: Slot, frame: u64, dscp: Dscp) {
        let max = self.options.max_frames;
        match slot {
            Slot::Flow(id, side) => {
                if let Some((_, st)) = self.flows.by_id_mut(id) {
                    st.dirs[side.index()].count(frame, dscp, max);
                }
            }
            Slot::Overflow => self
                .overflow
                .get_or_insert_with(|| FlowState::new(Side::A))
                .dirs[0]
                .count(frame, dscp, max),
        }
    }

    fn count(&mut self, frame: u64, d: &Dissected<'_>) -> Slot {
        let (sp, dp) = d.transport.ports().unwrap_or((0, 0));
        let tuple = match (d.src, d.dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) if sp != 0 || dp != 0 => Some(
                (u128::from(d.protocol) << 96)
                    | (u128::from(u32::from(s)) << 64)
                    | (u128::from(u32::from(t)) << 32)
                    | (u128::from(sp) << 16)
                    | u128::from(dp),
            ),
            _ => None,
        };
        let cached = tuple.and_then(|k| self.tuples.get(&k).copied());
        let slot = match cached {
            Some(t) => Slot::Flow(t.id as FlowId, t.side),
            None => self.slot_for(
                d.protocol,
                Endpoint::new(d.src, sp),
                Endpoint::new(d.dst, dp),
            ),
        };
        self.count_in(slot, frame, d.ip.dscp);
        if sp != 0 || dp != 0 {
            if self.last_by_addrs.len() >= MAX_LAST_BY_ADDRS {
                self.last_by_addrs.clear();
                self.addr_slots.clear();
                self.addrs_gen = self.addrs_gen.wrapping_add(1);
            }
            let gen = self.addrs_gen;
            let addr = match cached {
                Some(t) if t.addr_gen == gen => t.addr,
                _ => {
                    let next = self.addr_slots.len() as u32;
                    let addr = *self
                        .last_by_addrs
                        .entry((d.protocol, d.src, d.dst))
                        .or_insert(next);
                    if addr == next {
                        self.addr_slots.push(slot);
                    }
                    addr
                }
            };
            if let Some(s) = self.addr_slots.get_mut(addr as usize) {
                *s = slot;
            }
            if let (Some(k), Slot::Flow(id, side)) = (tuple, slot) {
                if let (true, Ok(id)) = (
                    cached.is_none_or(|t| t.addr_gen != gen || t.addr != addr),
                    u32::try_from(id),
                ) {
                    self.tuples.insert(
                        k,
                        TupleSlot {
                            id,
                            side,
                            addr,
                            addr_gen: gen,
                        },
                    );
                }
            }
        }
        slot
    }

    /// Looks into a UDP/TCP payload: SIP (for SDP), TFTP requests, RTP evidence.
    fn inspect(&mut self, frame: u64, slot: Slot, src: IpAddr, dst: IpAddr, t: &Transport<'_>) {
        let Slot::Flow(id, side) = slot else {
            return;
        };
        match *t {
            Transport::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let sip_port = class_by_port(UDP, src_port, dst_port) == Some(TrafficClass::Sip);
                if sip_port || looks_like_sip(payload) {
                    match parse_datagram(payload) {
                        Ok(msg) => {
                            self.sip_seen(frame, self.now_ns, src, dst, &msg);
                            if !sip_port {
                                if let Some((_, st)) = self.flows.by_id_mut(id) {
                                    st.sip_content = true;
                                }
                            }
                            return;
                        }
                        // Keep-alives (CRLF, empty) are not errors.
                        Err(_) if trim_crlf(payload).is_empty() => {}
                        Err(e) => {
                            self.sip_error(frame, e.detail);
                            if let Some(sdp) = lenient_sdp_body(payload) {
                                self.book.observe_sdp(sdp);
                            }
                            return;
                        }
                    }
                }
                if dst_port == 69 && is_tftp_request(payload) {
                    self.book.observe_tftp_request(Endpoint::new(src, src_port));
                }
                let now = self.now_ns;
                if let Some((_, st)) = self.flows.by_id_mut(id) {
                    let dir = &mut st.dirs[side.index()];
                    dir.rtp.observe(payload);
                    if looks_like_rtp(payload) {
                        if let Some((header, payload_len)) = rtp_header(payload) {
                            let track = dir.rtp_stats.get_or_insert_with(|| {
                                Box::new(RtpTrack {
                                    first_frame: frame,
                                    first_ts_ns: now,
                                    stats: ReceiverStats::new(static_clock_rate(
                                        header.payload_type,
                                    )),
                                })
                            });
                            let arrival =
                                std::time::Duration::from_nanos(now - track.first_ts_ns.min(now));
                            track.stats.record(&header, payload_len, arrival, None);
                        }
                    }
                }
            }
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                payload,
                ..
            } => {
                if class_by_port(TCP, src_port, dst_port).is_none()
                    && super::classify::is_https_client_hello(payload)
                {
                    if let Some((_, st)) = self.flows.by_id_mut(id) {
                        st.https_content = true;
                    }
                }
                let mut out = std::mem::take(&mut self.app_events);
                self.tcp.segment(
                    frame,
                    self.now_ns,
                    Endpoint::new(src, src_port),
                    Endpoint::new(dst, dst_port),
                    seq,
                    ack,
                    flags,
                    payload,
                    &mut out,
                );
                self.app_events = out;
                if !self.app_events.is_empty() {
                    self.app_events();
                }
            }
            Transport::None => {}
        }
    }

    fn sip_error(&mut self, frame: u64, detail: String) {
        self.sip_errors += 1;
        if self.first_sip_error.is_none() {
            self.first_sip_error = Some((frame, detail));
        }
    }

    fn fragment(&mut self, frame: u64, key: FragKey, d: &Dissected<'_>) {
        self.fragments += 1;
        let Some(fragment) = d.fragment else {
            return;
        };
        if fragment.offset == 0 {
            let slot = self.count(frame, d);
            self.frag_slots.insert(key, slot);
            if let Some(waiting) = self.frag_wait.remove(&key) {
                self.frag_waiting -= waiting.len();
                for (f, dscp) in waiting {
                    self.count_in(slot, f, dscp);
                }
            }
        } else if let Some(&slot) = self.frag_slots.get(&key) {
            self.count_in(slot, frame, d.ip.dscp);
        } else if self.frag_waiting < MAX_WAITING_FRAGMENTS {
            self.frag_wait
                .entry(key)
                .or_default()
                .push((frame, d.ip.dscp));
            self.frag_waiting += 1;
        } else {
            self.fragments_unreassembled += 1;
            let slot = self.address_slot(&key);
            self.count_in(slot, frame, d.ip.dscp);
        }
        if let Some(datagram) = self.defrag.add(key, fragment, d.ip_payload) {
            self.reassembled += 1;
            if let Some(slot) = self.frag_slots.remove(&key) {
                let t = transport(key.protocol, &datagram);
                self.inspect(frame, slot, key.src, key.dst, &t);
            }
        }
    }

    /// Where a fragment whose first fragment never came is counted: the last flow with the
    /// same protocol and addresses (a lost first fragment of that flow, most likely), else an
    /// address-only flow.
    fn address_slot(&mut self, key: &FragKey) -> Slot {
        if let Some(&slot) = self
            .last_by_addrs
            .get(&(key.protocol, key.src, key.dst))
            .and_then(|&i| self.addr_slots.get(i as usize))
        {
            self.fragments_guessed += 1;
            return slot;
        }
        self.slot_for(
            key.protocol,
            Endpoint::new(key.src, 0),
            Endpoint::new(key.dst, 0),
        )
    }

    fn settle_dropped_fragments(&mut self) {
        for key in self.defrag.drain_dropped() {
            self.frag_slots.remove(&key);
            if let Some(waiting) = self.frag_wait.remove(&key) {
                self.frag_waiting -= waiting.len();
                self.fragments_unreassembled += waiting.len() as u64;
                for (f, dscp) in waiting {
                    let slot = self.address_slot(&key);
                    self.count_in(slot, f, dscp);
                }
            }
        }
    }

    /// Classifies every flow and judges it against the policy.
    pub fn finish(mut self, path: &str) -> FileAudit {
        let mut out = std::mem::take(&mut self.app_events);
        self.tcp.finish(self.last_frame, &mut out);
        self.app_events = out;
        self.app_events();
        self.defrag.finish();
        self.settle_dropped_fragments();
        let leftover: Vec<(FragKey, Vec<(u64, Dscp)>)> = self.frag_wait.drain().collect();
        for (key, waiting) in leftover {
            self.fragments_unreassembled += waiting.len() as u64;
            for (f, dscp) in waiting {
                let slot = self.address_slot(&key);
                self.count_in(slot, f, dscp);
            }
        }
        let table_full = self.flows.is_full();
        let mut flows = Vec::new();
        for (key, st) in std::mem::replace(&mut self.flows, FlowTable::new(0)).into_flows() {
            let (class, evidence) = classify(&key, &st, &self.book);
            let sides = [st.first_side, st.first_side.other()];
            for side in sides {
                let dir = &st.dirs[side.index()];
                if dir.packets == 0 {
                    continue;
                }
                if let (TrafficClass::Voice | TrafficClass::Video, Some(track)) =
                    (class, &dir.rtp_stats)
                {
                    let (pt, ptime, detail) = track.summary();
                    self.ladder.rtp(
                        track.first_frame,
                        track.first_ts_ns,
                        key.endpoint(side).addr,
                        key.endpoint(side.other()).addr,
                        pt,
                        ptime,
                        detail,
                    );
                }
                flows.push(self.judge(
                    key.protocol,
                    key.endpoint(side),
                    Some(key.endpoint(side.other())),
                    class,
                    evidence,
                    dir,
                ));
            }
        }
        let mut overflow_packets = 0;
        if let Some(st) = &self.overflow {
            overflow_packets = st.dirs[0].packets;
            let mut f = self.judge(
                0,
                Endpoint::new(std::net::IpAddr::from([0, 0, 0, 0]), 0),
                None,
                TrafficClass::Other,
                Evidence::TableFull,
                &st.dirs[0],
            );
            f.src = "*".into();
            f.dst = "*".into();
            f.audited = false;
            f.expected_dscp = None;
            f.offending = 0;
            f.violations.clear();
            f.passed = true;
            flows.push(f);
        }
        let mut notes = Vec::new();
        if self.book.sip_messages == 0 && self.sip_errors == 0 {
            notes.push(
                "no cleartext SIP message was read (absent, or over TLS): media could only be \
                 found by RTP heuristics and multicast groups"
                    .to_string(),
            );
        }
        if let Some((frame, detail)) = &self.first_sip_error {
            notes.push(format!(
                "{} SIP messages did not parse strictly (first: frame {frame}: {detail}); SDP \
                 bodies in them were read leniently",
                self.sip_errors
            ));
        }
        if self.book.sdp_lenient > 0 {
            notes.push(format!(
                "{} SDP bodies were refused by the strict SDP parser; their c= and m= lines were \
                 read leniently",
                self.book.sdp_lenient
            ));
        }
        if self.fragments_unreassembled > 0 {
            notes.push(format!(
                "{} IP fragments never met their datagram's first fragment: {} were counted in \
                 the last flow with the same protocol and addresses, {} under address-only flows",
                self.fragments_unreassembled,
                self.fragments_guessed,
                self.fragments_unreassembled
                    - self.fragments_guessed.min(self.fragments_unreassembled)
            ));
        }
        if table_full && overflow_packets > 0 {
            notes.push(format!(
                "flow table full ({} flows): {overflow_packets} packets of later flows are \
                 counted in one unclassified, unaudited bucket",
                self.options.max_flows
            ));
        }
        if !self.unsupported_link_types.is_empty() {
            notes.push(format!(
                "packets on unsupported link types were not decoded: {:?}",
                self.unsupported_link_types
            ));
        }
        for n in &self.tcp.notes {
            notes.push(n.text());
        }
        if self.tcp.notes_dropped > 0 {
            notes.push(format!(
                "{} more TCP connections had retransmissions, gaps or overlaps (not listed)",
                self.tcp.notes_dropped
            ));
        }
        if self.tcp.untracked_segments > 0 {
            notes.push(format!(
                "{} TCP segments belong to connections not reassembled ({} connections were \
                 live at once)",
                self.tcp.untracked_segments,
                super::streams::MAX_LIVE_CONNECTIONS
            ));
        }
        if self.xml.checked > self.xml.documents.len() as u64 {
            notes.push(format!(
                "{} XML documents checked, the first {} listed",
                self.xml.checked,
                self.xml.documents.len()
            ));
        }
        let policy = self.policy;
        let ladder = std::mem::take(&mut self.ladder)
            .finish(|addr| policy.expectation(addr, TrafficClass::Sip).role);
        let audited_flows = flows.iter().filter(|f| f.expected_dscp.is_some()).count();
        let failed_flows = flows.iter().filter(|f| !f.passed).count();
        let offending_packets = flows.iter().map(|f| f.offending).sum();
        let mut findings = Vec::new();
        if let Some((offset, error)) = self.truncated.take() {
            let before = match self.packets {
                0 => "no packet came before it".to_string(),
                1 => "the packet before it was audited".to_string(),
                n => format!("the {n} packets before it were audited"),
            };
            findings.push(FileFinding {
                kind: FileFindingKind::Truncated,
                offset,
                message: format!("{error}; {before}"),
            });
        }
        if audited_flows == 0 && !self.options.allow_empty {
            let why = if self.packets == 0 {
                "the capture holds no packets (captured on the wrong interface, or with a \
                 filter that matched nothing?)"
                    .to_string()
            } else if self.ip_packets == 0 {
                format!(
                    "none of its {} packets is IP (captured on the wrong interface?)",
                    self.packets
                )
            } else {
                format!(
                    "none of the flow directions of its {} IP packets is audited (no sender \
                     matches the policy's `senders`, or their classes are `any`)",
                    self.ip_packets
                )
            };
            findings.push(FileFinding {
                kind: FileFindingKind::NothingAudited,
                offset: None,
                message: format!("nothing audited: {why}; --allow-empty accepts this"),
            });
        }
        FileAudit {
            path: path.to_string(),
            passed: failed_flows == 0 && self.xml.invalid == 0 && findings.is_empty(),
            packets: self.packets,
            ip_packets: self.ip_packets,
            non_ip_packets: self.non_ip_packets,
            sip_messages: self.book.sip_messages,
            sdp_bodies: self.book.sdp_bodies,
            fragments: self.fragments,
            reassembled_datagrams: self.reassembled,
            audited_flows,
            failed_flows,
            offending_packets,
            notes,
            flows,
            xml_checked: self.xml.checked,
            xml_invalid: self.xml.invalid,
            xml: std::mem::take(&mut self.xml.documents),
            tcp_connections: self.tcp.connections,
            tcp: std::mem::take(&mut self.tcp.notes),
            ladder,
            golden: None,
            diff: Vec::new(),
            findings,
        }
    }

    fn judge(
        &self,
        protocol: u8,
        src: Endpoint,
        dst: Option<Endpoint>,
        class: TrafficClass,
        evidence: Evidence,
        dir: &DirStats,
    ) -> FlowAudit {
        let expectation = self.policy.expectation(src.addr, class);
        let mut dscp_counts = BTreeMap::new();
        for c in &dir.dscp {
            dscp_counts.insert(c.dscp, c.packets);
        }
        let (offending, violations) = match expectation.dscp {
            Some(want) => {
                let bad: Vec<&DscpCount> =
                    dir.dscp.iter().filter(|c| c.dscp != want.value()).collect();
                let mut frames: Vec<u64> = bad
                    .iter()
                    .flat_map(|c| c.first_frames.iter().copied())
                    .collect();
                frames.sort_unstable();
                frames.truncate(self.options.max_frames);
                (bad.iter().map(|c| c.packets).sum(), frames)
            }
            None => (0, Vec::new()),
        };
        FlowAudit {
            first_frame: dir
                .dscp
                .iter()
                .filter_map(|c| c.first_frames.first().copied())
                .min()
                .unwrap_or(0),
            src: src.to_string(),
            dst: dst.map(|d| d.to_string()).unwrap_or_default(),
            transport: match protocol {
                TCP => "tcp",
                UDP => "udp",
                _ => "other",
            },
            protocol,
            class,
            evidence,
            sender_role: expectation.role,
            audited: expectation.audited,
            expected_dscp: expectation.dscp,
            packets: dir.packets,
            dscp_counts,
            offending,
            passed: offending == 0,
            violations,
        }
    }
}

/// What [`crate::media::rtp::RtpPacket::parse`] gives the receiver statistics (the fixed
/// header and the payload length without padding), without building the packet (CSRC list,
/// extension copy): `None` exactly when `parse` fails. Called for every RTP packet.
fn rtp_header(data: &[u8]) -> Option<(RtpHeader, usize)> {
    let (&[b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3], _) = data.split_first_chunk::<12>()?;
    let version = b0 >> 6;
    if version != 2 {
        return None;
    }
    let padding = b0 & 0x20 != 0;
    let extension = b0 & 0x10 != 0;
    let mut offset = 12 + usize::from(b0 & 0x0f) * 4;
    if offset > data.len() {
        return None;
    }
    if extension {
        let (&[_, _, w0, w1], _) = data.get(offset..)?.split_first_chunk::<4>()?;
        offset += 4 + usize::from(u16::from_be_bytes([w0, w1])) * 4;
        if offset > data.len() {
            return None;
        }
    }
    let rest = data.len() - offset;
    let payload_len = if padding {
        let pad = usize::from(*data.get(offset..)?.last()?);
        if pad == 0 || pad > rest {
            return None;
        }
        rest - pad
    } else {
        rest
    };
    let header = RtpHeader {
        version,
        padding,
        extension,
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        csrc: Vec::new(),
        extension_header: None,
    };
    Some((header, payload_len))
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
    b.get(n..).unwrap_or(&[])
}

/// The class of a flow and how it was found (see [`super::classify`]).
fn classify(key: &FlowKey, st: &FlowState, book: &MediaBook) -> (TrafficClass, Evidence) {
    let (a, b) = (key.a, key.b);
    if key.protocol == TCP || key.protocol == UDP {
        if let Some(c) = class_by_port(key.protocol, a.port, b.port) {
            return (c, Evidence::Port);
        }
    }
    let network_control = match key.protocol {
        TCP | UDP => {
            super::classify::network_control_port(key.protocol, a.port)
                || super::classify::network_control_port(key.protocol, b.port)
        }
        super::classify::IGMP => st.router_igmp,
        p => super::classify::is_network_control_protocol(p),
    };
    if network_control {
        let by = match key.protocol {
            TCP | UDP => Evidence::Port,
            _ => Evidence::Protocol,
        };
        return (TrafficClass::NetworkControl, by);
    }
    if st.sip_content {
        return (TrafficClass::Sip, Evidence::SipContent);
    }
    if st.http_content {
        return (TrafficClass::Http, Evidence::HttpContent);
    }
    if st.https_content {
        return (TrafficClass::Http, Evidence::TlsAlpn);
    }
    if key.protocol != UDP || a.port == 0 || b.port == 0 {
        return (TrafficClass::Other, Evidence::None);
    }
    if let Some(k) = book.rtp(a, b) {
        return (k.class(), Evidence::Sdp);
    }
    if let Some(k) = book.rtcp(a, b) {
        return (k.class(), Evidence::SdpRtcp);
    }
    if book.is_tftp_client(a, b) {
        return (TrafficClass::Tftp, Evidence::TftpTransfer);
    }
    if let Some(k) = book.by_ports(a, b) {
        return (k.class(), Evidence::SdpPorts);
    }
    let rtp = st.dirs.iter().any(|d| d.rtp.is_rtp());
    let video = st
        .dirs
        .iter()
        .any(|d| d.rtp.is_rtp() && d.rtp.looks_like_video());
    let media = if video {
        TrafficClass::Video
    } else {
        TrafficClass::Voice
    };
    let multicast = is_media_multicast(a.addr) || is_media_multicast(b.addr);
    if multicast && st.dirs.iter().any(|d| d.rtp.mostly_rtp()) {
        return (media, Evidence::Multicast);
    }
    // Heuristics only between unprivileged ports: DNS, NTP, SNMP... are never media.
    if a.port >= 1024 && b.port >= 1024 {
        if rtp {
            return (media, Evidence::RtpHeuristic);
        }
        if st.dirs.iter().any(|d| d.rtp.is_rtcp()) {
            return (TrafficClass::Voice, Evidence::RtcpHeuristic);
        }
    }
    (TrafficClass::Other, Evidence::None)
}

/// One direction of one flow, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowAudit {
    /// Sender, `IP:PORT` (address only for protocols without ports).
    pub src: String,
    pub dst: String,
    /// `udp`, `tcp` or `other`.
    pub transport: &'static str,
    /// IP protocol number.
    pub protocol: u8,
    pub class: TrafficClass,
    pub evidence: Evidence,
    /// Role of the sender in the policy.
    pub sender_role: Option<String>,
    /// The sender is under audit.
    pub audited: bool,
    /// `None` when the sender is not audited or the class is `any`.
    pub expected_dscp: Option<Dscp>,
    pub packets: u64,
    /// Frame number of this direction's first packet.
    pub first_frame: u64,
    /// DSCP value -> packets.
    pub dscp_counts: BTreeMap<u8, u64>,
    /// Packets whose DSCP differs from the expected one.
    pub offending: u64,
    /// The first offending frame numbers (at most [`AuditOptions::max_frames`]).
    pub violations: Vec<u64>,
    pub passed: bool,
}

/// What fails a capture as a whole rather than one of its flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFinding {
    pub kind: FileFindingKind,
    /// Byte offset in the file where the problem starts (a truncation).
    pub offset: Option<u64>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFindingKind {
    /// The file ends inside a record (a capture cut short): the packets before it were
    /// audited.
    Truncated,
    /// No flow direction was under audit (see [`AuditOptions::allow_empty`]).
    NothingAudited,
}

impl FileFindingKind {
    /// The name in JSON and JUnit (`type`).
    pub fn as_str(self) -> &'static str {
        match self {
            FileFindingKind::Truncated => "truncated",
            FileFindingKind::NothingAudited => "nothing-audited",
        }
    }

    /// The name of its JUnit test case.
    pub fn title(self) -> &'static str {
        match self {
            FileFindingKind::Truncated => "truncated",
            FileFindingKind::NothingAudited => "nothing audited",
        }
    }
}

/// The audit of one capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAudit {
    pub path: String,
    pub passed: bool,
    pub packets: u64,
    pub ip_packets: u64,
    pub non_ip_packets: u64,
    pub sip_messages: u64,
    pub sdp_bodies: u64,
    pub fragments: u64,
    pub reassembled_datagrams: u64,
    /// Flow directions with an expected DSCP.
    pub audited_flows: usize,
    pub failed_flows: usize,
    pub offending_packets: u64,
    /// Things the reader of the report should know (limits hit, nothing readable...).
    pub notes: Vec<String>,
    /// Flow directions in order of the flows' first packets.
    pub flows: Vec<FlowAudit>,
    /// XML documents checked, and how many had errors.
    pub xml_checked: u64,
    pub xml_invalid: u64,
    /// The checked documents (the first [`super::payload::MAX_DOCUMENTS`]).
    pub xml: Vec<XmlDocument>,
    /// TCP connections reassembled.
    pub tcp_connections: u64,
    /// Connections whose reassembly met retransmissions, gaps or overlaps.
    pub tcp: Vec<TcpNote>,
    pub ladder: Ladder,
    /// The golden ladder compared with (`--golden`), and the unified diff (empty: equal).
    pub golden: Option<String>,
    pub diff: Vec<String>,
    /// Problems of the file as a whole (a truncation, nothing audited); each fails it.
    pub findings: Vec<FileFinding>,
}

impl FileAudit {
    /// Compares the ladder with a golden one (`golden_text`, read from `golden_name`); a
    /// difference fails the file.
    pub fn compare_golden(&mut self, golden_name: &str, golden_text: &str) {
        let expected = super::golden::lines_of(golden_text);
        let actual: Vec<String> = self.ladder.lines.iter().map(|l| l.text.clone()).collect();
        self.diff = if super::golden::equivalent(&expected, &self.ladder.lines) {
            Vec::new()
        } else {
            super::golden::unified_diff(&expected, &actual, golden_name, &self.path)
        };
        self.golden = Some(golden_name.to_string());
        if !self.diff.is_empty() {
            self.passed = false;
        }
    }
}

/// Reads a whole capture and audits it. `path` only names the file in the result. A capture
/// cut short is audited up to the cut, which is a [`FileFindingKind::Truncated`] finding;
/// other read errors are returned.
pub fn audit_capture<R: Read>(
    reader: R,
    path: &str,
    policy: &Policy,
    options: AuditOptions,
) -> Result<FileAudit, PcapError> {
    audit_capture_reader(CaptureReader::new(reader)?, path, policy, options)
}

/// Audits what an opened [`CaptureReader`] yields (e.g. one made with
/// [`CaptureReader::with_read_ahead`]), a cut as [`audit_capture`] says. `path` only names
/// the file in the result.
pub fn audit_capture_reader<R: Read>(
    mut capture: CaptureReader<R>,
    path: &str,
    policy: &Policy,
    options: AuditOptions,
) -> Result<FileAudit, PcapError> {
    let mut auditor = Auditor::new(policy, options);
    loop {
        match capture.next_packet() {
            Ok(Some(p)) => auditor.packet_at(p.frame, p.ts_nanos, p.link_type, p.data),
            Ok(None) => break,
            // As tshark does: the packets before the cut are read, and the cut is reported.
            Err(e @ PcapError::Truncated { .. }) => {
                auditor.truncated(&e);
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(auditor.finish(path))
}

#[cfg(test)]
mod rtp_header_tests {
    use super::rtp_header;
    use crate::media::rtp::RtpPacket;

    /// `rtp_header` accepts exactly what `RtpPacket::parse` accepts, with the same fields.
    #[test]
    fn agrees_with_the_full_parser() {
        let mut samples: Vec<Vec<u8>> = vec![
            vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 9, 9, 9],
            // Two CSRCs, marker, PT 96.
            vec![
                0x82, 0xe0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0, 0, 0, 5, 0, 0, 0, 6, 7, 7,
            ],
            // Extension of one word.
            vec![
                0x90, 0x08, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 5,
            ],
            // Padding of 3 (valid), of 0 and too long (invalid).
            vec![0xa0, 0x00, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 8, 8, 0, 0, 3],
            vec![0xa0, 0x00, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 8, 0],
            vec![0xa0, 0x00, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 8, 9],
            // Padding with nothing after the header; version 1.
            vec![0xa0, 0x00, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4],
            vec![0x40, 0x00, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5],
        ];
        let mut x = 0x2545_f491_u32;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut v = v;
            if let Some(b) = v.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            samples.push(v);
        }
        for s in &samples {
            for cut in 0..=s.len() {
                let data = &s[..cut];
                let full = RtpPacket::parse(data).ok();
                let light = rtp_header(data);
                match (full, light) {
                    (None, None) => {}
                    (Some(p), Some((h, len))) => {
                        assert_eq!(
                            (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc),
                            (
                                p.header.marker,
                                p.header.payload_type,
                                p.header.sequence,
                                p.header.timestamp,
                                p.header.ssrc
                            ),
                            "{data:?}"
                        );
                        assert_eq!(len, p.payload.len(), "{data:?}");
                    }
                    (full, light) => panic!("{data:?}: parse {full:?}, rtp_header {light:?}"),
                }
            }
        }
    }
}
