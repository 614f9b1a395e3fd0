//! Bounded, sans-IO reassembly of one TCP connection (both directions).
//!
//! [`TcpReassembler`] takes the TCP segments of one connection in capture order
//! ([`TcpReassembler::push`]) and produces [`TcpEvent`]s ([`TcpReassembler::poll`]): in-order
//! stream data as [`StreamChunk`]s that name the frame each piece came from, [`Gap`]s where bytes
//! are missing from the capture, and the connection's control events (handshake, FIN, RST,
//! overlap conflicts). It never reads packets or clocks itself and never guesses missing bytes.
//!
//! Rules (Wireshark's defaults where there is a choice):
//! - Offsets are counted per direction from the first sequence number seen: ISN+1 after a SYN,
//!   otherwise the sequence number of the first segment seen (a connection whose start is not in
//!   the capture). Sequence numbers are unwrapped relative to the next expected byte, so streams
//!   cross the 2^32 wraparound transparently.
//! - Data below the next expected byte is a retransmission (dropped, counted, compared with the
//!   recently delivered bytes kept in a bounded history); a 1-byte segment just below it is a
//!   keep-alive (counted, never compared: keep-alives often carry a garbage byte).
//! - Overlapping data: the bytes that arrived first win; overlaps whose bytes differ are counted
//!   and reported as [`TcpEvent::OverlapConflict`].
//! - Data above the next expected byte waits in a per-direction out-of-order buffer. The hole
//!   below it is declared a [`Gap`] when the peer acknowledges past the hole (the peer got the
//!   bytes, the capture did not), when the buffer exceeds [`TcpConfig::max_out_of_order_bytes`]
//!   or [`TcpConfig::max_out_of_order_segments`], on RST, and at [`TcpReassembler::finish`]
//!   (end of capture). Consumers must resynchronise after a gap.
//! - Delivered data waits in the event queue until polled; beyond
//!   [`TcpConfig::max_unread_bytes`] new data is dropped and reported as a gap with
//!   [`GapReason::Unread`], so memory per connection stays bounded whatever the input.

use std::collections::{BTreeMap, VecDeque};

/// One of the two directions of a connection. Which endpoint is `Forward` is the caller's choice
/// (usually the sender of the SYN, or of the first packet seen); the reassembler only needs it to
/// be consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Direction {
    Forward,
    Reverse,
}

impl Direction {
    /// The other direction.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::Forward => Direction::Reverse,
            Direction::Reverse => Direction::Forward,
        }
    }

    /// 0 for `Forward`, 1 for `Reverse`.
    pub fn index(self) -> usize {
        match self {
            Direction::Forward => 0,
            Direction::Reverse => 1,
        }
    }
}

/// TCP header flags, with the bit values of the TCP header's flags byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// Flags from the TCP header's 13th byte (FIN 0x01 .. ACK 0x10; other bits ignored here).
    pub fn from_header_byte(b: u8) -> TcpFlags {
        TcpFlags(b)
    }

    /// True if every flag of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// One TCP segment as captured.
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    /// Frame number of the packet that carried it.
    pub frame: u64,
    /// Capture timestamp (ns since the Unix epoch).
    pub ts_ns: u64,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// TCP payload (as captured; a truncated capture simply gives fewer bytes).
    pub payload: &'a [u8],
}

/// Bounds of one connection's reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Out-of-order bytes buffered per direction before the lowest hole is declared a gap.
    pub max_out_of_order_bytes: usize,
    /// Out-of-order segments buffered per direction before the lowest hole is declared a gap.
    pub max_out_of_order_segments: usize,
    /// Delivered bytes kept per direction to compare retransmissions with.
    pub history_bytes: usize,
    /// Data bytes waiting in the event queue (both directions) before new data is dropped.
    pub max_unread_bytes: usize,
    /// Non-data events waiting in the event queue before further ones are dropped (counted).
    pub max_queued_events: usize,
}

/// 1 MiB out-of-order per direction, 4096 segments, 64 KiB history, 16 MiB unread data.
pub const DEFAULT_TCP_CONFIG: TcpConfig = TcpConfig {
    max_out_of_order_bytes: 1 << 20,
    max_out_of_order_segments: 4096,
    history_bytes: 64 << 10,
    max_unread_bytes: 16 << 20,
    max_queued_events: 4096,
};

impl Default for TcpConfig {
    fn default() -> Self {
        DEFAULT_TCP_CONFIG
    }
}

/// In-order bytes of one direction, all from one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamChunk {
    pub dir: Direction,
    /// Offset of `data[0]` in the direction's stream (0 = first byte after the SYN, or first
    /// byte seen).
    pub offset: u64,
    /// Sequence number of `data[0]`.
    pub seq: u32,
    pub data: Vec<u8>,
    /// Frames that contributed these bytes (the reassembler emits one chunk per frame, so these
    /// are equal; consumers that merge chunks widen the range).
    pub first_frame: u64,
    pub last_frame: u64,
    /// Timestamp of `last_frame`.
    pub ts_ns: u64,
}

/// Why a gap was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum GapReason {
    /// The peer acknowledged past the missing bytes: they were sent and received, not captured.
    Acked,
    /// The out-of-order buffer reached its bound.
    BufferLimit,
    /// RST or end of capture with bytes still missing.
    End,
    /// The consumer did not poll: the bytes were captured but dropped to bound memory.
    Unread,
}

/// Bytes missing from one direction's stream. Consumers must drop any message in progress and
/// resynchronise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    pub dir: Direction,
    /// Sequence number of the first missing byte.
    pub at_seq: u32,
    /// Stream offset of the first missing byte.
    pub offset: u64,
    /// Number of missing bytes.
    pub len: u64,
    /// Frame of the data that follows the gap (or the frame that revealed it, at the end).
    pub before_frame: u64,
    pub reason: GapReason,
}

/// What the reassembler reports, in stream order per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    Data(StreamChunk),
    Gap(Gap),
    /// SYN, SYN-ACK and the final ACK were all seen; `client` sent the SYN.
    Handshake {
        client: Direction,
        frame: u64,
        ts_ns: u64,
    },
    /// The direction's FIN, reported once the stream has reached it (every byte before it
    /// delivered or declared a gap), with the frame that carried it.
    Fin {
        dir: Direction,
        frame: u64,
        ts_ns: u64,
    },
    /// A RST: the connection is over; pending holes were flushed as gaps (reported before).
    Rst {
        dir: Direction,
        frame: u64,
        ts_ns: u64,
    },
    /// Data overlapping bytes already seen, with different content (the first bytes were kept).
    OverlapConflict {
        dir: Direction,
        frame: u64,
        at_seq: u32,
        len: u64,
    },
}

impl TcpEvent {
    /// The direction the event belongs to (`client` for a handshake).
    pub fn dir(&self) -> Direction {
        match self {
            TcpEvent::Data(c) => c.dir,
            TcpEvent::Gap(g) => g.dir,
            TcpEvent::Handshake { client, .. } => *client,
            TcpEvent::Fin { dir, .. }
            | TcpEvent::Rst { dir, .. }
            | TcpEvent::OverlapConflict { dir, .. } => *dir,
        }
    }
}

/// Per-direction counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpDirStats {
    /// Segments pushed in this direction.
    pub segments: u64,
    /// Payload bytes delivered in order.
    pub bytes: u64,
    /// Segments whose payload had been seen entirely (dropped).
    pub retransmissions: u64,
    /// Segments partly overlapping data already seen (the new part was kept).
    pub overlaps: u64,
    /// Segments overlapping data already seen with different bytes.
    pub overlap_conflicts: u64,
    /// Segments that arrived ahead of the next expected byte.
    pub out_of_order: u64,
    /// Keep-alive probes (at most one byte, just below the next expected byte).
    pub keepalives: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// SYNs after the direction had started, with another ISN (port reuse; not followed).
    pub unexpected_syns: u64,
    /// Bytes before the direction's first byte (arrived after later data in a capture that
    /// started mid-connection); dropped.
    pub before_start_bytes: u64,
}

/// Whole-connection counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpStats {
    pub forward: TcpDirStats,
    pub reverse: TcpDirStats,
    /// Non-data events dropped because the queue was full (their counters still count).
    pub dropped_events: u64,
}

#[derive(Clone, Debug)]
struct Pending {
    data: Vec<u8>,
    frame: u64,
    ts_ns: u64,
}

#[derive(Clone, Debug, Default)]
struct Half {
    started: bool,
    /// Sequence number of offset 0.
    base: u32,
    next: u64,
    ooo: BTreeMap<u64, Pending>,
    ooo_bytes: usize,
    /// The last delivered bytes: `history` ends at `next`.
    history: VecDeque<u8>,
    /// Offset, frame and timestamp of the first FIN.
    fin: Option<(u64, u64, u64)>,
    fin_reported: bool,
    /// Highest offset acknowledged by the peer.
    acked: u64,
    /// Highest offset seen (end of the highest segment).
    highest: u64,
    stats: TcpDirStats,
}

impl Half {
    fn seq_of(&self, offset: u64) -> u32 {
        self.base.wrapping_add(offset as u32)
    }

    /// Offset of `seq`, unwrapped within +-2^31 of the next expected byte (may be negative).
    fn offset_of(&self, seq: u32) -> i64 {
        let diff = seq.wrapping_sub(self.seq_of(self.next)) as i32;
        self.next as i64 + i64::from(diff)
    }

    /// Compares `data` at `offset` (entirely below `next`) with the delivered history, as far as
    /// it reaches. True if a byte differs.
    fn differs_from_history(&self, offset: u64, data: &[u8]) -> bool {
        let hist_start = self.next - self.history.len() as u64;
        data.iter().enumerate().any(|(i, b)| {
            let at = offset + i as u64;
            at >= hist_start
                && self
                    .history
                    .get((at - hist_start) as usize)
                    .is_some_and(|h| h != b)
        })
    }
}

/// Reassembles one TCP connection. See the module docs for the rules.
#[derive(Clone, Debug)]
pub struct TcpReassembler {
    config: TcpConfig,
    halves: [Half; 2],
    events: VecDeque<TcpEvent>,
    unread_bytes: usize,
    syn_from: Option<Direction>,
    syn_ack_seen: bool,
    handshake_done: bool,
    rst_seen: bool,
    dropped_events: u64,
}

impl Default for TcpReassembler {
    fn default() -> Self {
        TcpReassembler::new(TcpConfig::default())
    }
}

impl TcpReassembler {
    pub fn new(config: TcpConfig) -> Self {
        TcpReassembler {
            config,
            halves: [Half::default(), Half::default()],
            events: VecDeque::new(),
            unread_bytes: 0,
            syn_from: None,
            syn_ack_seen: false,
            handshake_done: false,
            rst_seen: false,
            dropped_events: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> TcpStats {
        TcpStats {
            forward: self.halves[0].stats,
            reverse: self.halves[1].stats,
            dropped_events: self.dropped_events,
        }
    }

    /// True after a RST, or once both directions' FINs have been reported: a flow table can
    /// drain the events and forget the connection (a later SYN on the same addresses starts a
    /// new one).
    pub fn is_closed(&self) -> bool {
        self.rst_seen || self.halves.iter().all(|h| h.fin_reported)
    }

    /// True once SYN, SYN-ACK and the final ACK have been seen.
    pub fn handshake_seen(&self) -> bool {
        self.handshake_done
    }

    /// Next expected stream offset of `dir` (bytes delivered or declared missing so far).
    pub fn next_offset(&self, dir: Direction) -> u64 {
        self.halves[dir.index()].next
    }

    /// Bytes buffered out of order in `dir`.
    pub fn out_of_order_bytes(&self, dir: Direction) -> usize {
        self.halves[dir.index()].ooo_bytes
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<TcpEvent> {
        let ev = self.events.pop_front()?;
        if let TcpEvent::Data(c) = &ev {
            self.unread_bytes = self.unread_bytes.saturating_sub(c.data.len());
        }
        Some(ev)
    }

    /// All pending events.
    pub fn drain(&mut self) -> impl Iterator<Item = TcpEvent> + '_ {
        std::iter::from_fn(move || self.poll())
    }

    fn emit(&mut self, ev: TcpEvent) {
        if self.events.len() >= self.config.max_queued_events {
            self.dropped_events += 1;
        } else {
            self.events.push_back(ev);
        }
    }

    /// Adds one segment of direction `dir`, in capture order.
    pub fn push(&mut self, dir: Direction, seg: TcpSegment<'_>) {
        let d = dir.index();
        let syn = seg.flags.contains(TcpFlags::SYN);
        let ackf = seg.flags.contains(TcpFlags::ACK);
        self.halves[d].stats.segments += 1;

        // Handshake bookkeeping.
        if syn && !ackf && self.syn_from.is_none() {
            self.syn_from = Some(dir);
        } else if syn && ackf && self.syn_from == Some(dir.opposite()) {
            self.syn_ack_seen = true;
        } else if !syn
            && ackf
            && self.syn_ack_seen
            && !self.handshake_done
            && self.syn_from == Some(dir)
        {
            self.handshake_done = true;
            self.emit(TcpEvent::Handshake {
                client: dir,
                frame: seg.frame,
                ts_ns: seg.ts_ns,
            });
        }

        // Where the payload starts.
        let data_seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let half = &mut self.halves[d];
        if !half.started {
            half.started = true;
            half.base = data_seq;
        } else if syn && data_seq != half.base {
            half.stats.unexpected_syns += 1;
        }

        let start = half.offset_of(data_seq);
        let len = seg.payload.len() as u64;
        if seg.flags.contains(TcpFlags::FIN) {
            let fin_at = start.saturating_add(len as i64).max(0) as u64;
            if half.fin.is_none() {
                half.fin = Some((fin_at, seg.frame, seg.ts_ns));
            }
        }
        if !seg.payload.is_empty() {
            let probe = !seg.flags.contains(TcpFlags::SYN)
                && !seg.flags.contains(TcpFlags::FIN)
                && !seg.flags.contains(TcpFlags::RST);
            self.accept(dir, start, seg.payload, seg.frame, seg.ts_ns, probe);
        }

        // The ACK tells what the peer of the other direction received.
        if ackf {
            let other = &mut self.halves[1 - d];
            if other.started {
                let mut ack_off = other.offset_of(seg.ack);
                if let Some((fin, _, _)) = other.fin {
                    ack_off = ack_off.min(fin as i64);
                }
                let limit = other.highest + self.config.max_out_of_order_bytes as u64;
                if ack_off > other.acked as i64 && ack_off as u64 <= limit {
                    other.acked = ack_off as u64;
                }
            }
            self.flush_acked(dir.opposite(), seg.frame);
        }

        if seg.flags.contains(TcpFlags::RST) {
            self.rst_seen = true;
            self.flush_end(Direction::Forward, seg.frame);
            self.flush_end(Direction::Reverse, seg.frame);
            self.emit(TcpEvent::Rst {
                dir,
                frame: seg.frame,
                ts_ns: seg.ts_ns,
            });
        }
        self.check_fin(Direction::Forward);
        self.check_fin(Direction::Reverse);
    }

    fn check_fin(&mut self, dir: Direction) {
        let half = &mut self.halves[dir.index()];
        if let Some((at, frame, ts_ns)) = half.fin {
            if !half.fin_reported && half.next >= at {
                half.fin_reported = true;
                self.emit(TcpEvent::Fin { dir, frame, ts_ns });
            }
        }
    }

    /// End of capture: declares every remaining hole a gap (buffered data after it is then
    /// delivered). Further pushes are still accepted.
    pub fn finish(&mut self, last_frame: u64) {
        self.flush_end(Direction::Forward, last_frame);
        self.flush_end(Direction::Reverse, last_frame);
    }

    /// `probe`: the segment may be a keep-alive (no SYN, FIN or RST).
    fn accept(
        &mut self,
        dir: Direction,
        start: i64,
        payload: &[u8],
        frame: u64,
        ts_ns: u64,
        probe: bool,
    ) {
        let d = dir.index();
        let half = &mut self.halves[d];
        let mut data = payload;
        let mut s = start;
        if s < 0 {
            let cut = (s.unsigned_abs() as usize).min(data.len());
            half.stats.before_start_bytes += cut as u64;
            data = data.get(cut..).unwrap_or(&[]);
            s = 0;
            if data.is_empty() {
                half.stats.retransmissions += 1;
                return;
            }
        }
        let mut s = s as u64;
        let end = s + data.len() as u64;
        half.highest = half.highest.max(end);

        // Keep-alive: at most one byte just below the next expected byte.
        if probe && data.len() == 1 && end == half.next {
            half.stats.keepalives += 1;
            return;
        }

        let mut overlapped = false;
        let mut conflict: Option<(u64, u64)> = None;

        // Part already delivered.
        if s < half.next {
            let old = ((half.next - s) as usize).min(data.len());
            let (old_bytes, rest) = data.split_at(old);
            overlapped = true;
            if half.differs_from_history(s, old_bytes) {
                conflict.get_or_insert((s, old as u64));
            }
            data = rest;
            s += old as u64;
        }

        // Parts covered by buffered out-of-order data; collect the uncovered pieces.
        let mut pieces: Vec<(u64, &[u8])> = Vec::new();
        if !data.is_empty() {
            let end = s + data.len() as u64;
            let mut covering: Vec<(u64, u64)> = Vec::new();
            for (&k, p) in half.ooo.range(..end).rev() {
                let pend = k + p.data.len() as u64;
                if pend <= s {
                    break;
                }
                covering.push((k, pend));
            }
            covering.reverse();
            let mut cursor = s;
            for (k, pend) in covering {
                if k > cursor {
                    let a = (cursor - s) as usize;
                    let b = (k - s) as usize;
                    pieces.push((cursor, data.get(a..b).unwrap_or(&[])));
                }
                // Compare the overlap [max(k, s), min(pend, end)).
                let lo = k.max(s);
                let hi = pend.min(end);
                if lo < hi {
                    overlapped = true;
                    let newer = data
                        .get((lo - s) as usize..(hi - s) as usize)
                        .unwrap_or(&[]);
                    let older = half
                        .ooo
                        .get(&k)
                        .and_then(|p| p.data.get((lo - k) as usize..(hi - k) as usize))
                        .unwrap_or(&[]);
                    if newer != older {
                        conflict.get_or_insert((lo, hi - lo));
                    }
                }
                cursor = cursor.max(pend);
            }
            if cursor < end {
                pieces.push((cursor, data.get((cursor - s) as usize..).unwrap_or(&[])));
            }
        }

        if pieces.is_empty() {
            half.stats.retransmissions += 1;
        } else if overlapped {
            half.stats.overlaps += 1;
        }
        if let Some((at, len)) = conflict {
            half.stats.overlap_conflicts += 1;
            let at_seq = half.seq_of(at);
            self.emit(TcpEvent::OverlapConflict {
                dir,
                frame,
                at_seq,
                len,
            });
        }

        let mut counted_ooo = false;
        for (at, bytes) in pieces {
            if bytes.is_empty() {
                continue;
            }
            let half = &mut self.halves[d];
            if at == half.next {
                self.deliver(dir, bytes.to_vec(), frame, ts_ns);
                self.flush_contiguous(dir);
            } else {
                if !counted_ooo {
                    half.stats.out_of_order += 1;
                    counted_ooo = true;
                }
                half.ooo_bytes += bytes.len();
                half.ooo.insert(
                    at,
                    Pending {
                        data: bytes.to_vec(),
                        frame,
                        ts_ns,
                    },
                );
            }
        }
        self.flush_bound(dir);
        self.flush_acked(dir, frame);
    }

    /// Hands in-order bytes to the consumer (or drops them as a gap when too much is unread).
    fn deliver(&mut self, dir: Direction, data: Vec<u8>, frame: u64, ts_ns: u64) {
        let d = dir.index();
        let hist_max = self.config.history_bytes;
        let over = self.unread_bytes + data.len() > self.config.max_unread_bytes;
        let half = &mut self.halves[d];
        let offset = half.next;
        let seq = half.seq_of(offset);
        let len = data.len() as u64;
        half.next += len;
        if hist_max > 0 {
            let keep = data
                .get(data.len().saturating_sub(hist_max)..)
                .unwrap_or(&[]);
            half.history.extend(keep.iter().copied());
            while half.history.len() > hist_max {
                half.history.pop_front();
            }
        }
        if over {
            half.stats.gaps += 1;
            half.stats.gap_bytes += len;
            self.emit_gap(Gap {
                dir,
                at_seq: seq,
                offset,
                len,
                before_frame: frame,
                reason: GapReason::Unread,
            });
            return;
        }
        half.stats.bytes += len;
        self.unread_bytes += data.len();
        self.events.push_back(TcpEvent::Data(StreamChunk {
            dir,
            offset,
            seq,
            data,
            first_frame: frame,
            last_frame: frame,
            ts_ns,
        }));
    }

    /// Gaps are never dropped from the queue: a consumer must always learn about them.
    fn emit_gap(&mut self, gap: Gap) {
        self.events.push_back(TcpEvent::Gap(gap));
    }

    /// Delivers buffered data that has become contiguous.
    fn flush_contiguous(&mut self, dir: Direction) {
        let d = dir.index();
        loop {
            let half = &mut self.halves[d];
            let Some(entry) = half.ooo.first_entry() else {
                return;
            };
            let k = *entry.key();
            if k > half.next {
                return;
            }
            let p = entry.remove();
            half.ooo_bytes = half.ooo_bytes.saturating_sub(p.data.len());
            // Pieces are trimmed to be >= next when inserted, so k == next here; be safe anyway.
            let skip = ((half.next - k) as usize).min(p.data.len());
            let rest = p.data.get(skip..).unwrap_or(&[]).to_vec();
            if !rest.is_empty() {
                self.deliver(dir, rest, p.frame, p.ts_ns);
            }
        }
    }

    /// Declares the hole below the first buffered segment a gap and delivers what follows.
    fn skip_hole(&mut self, dir: Direction, reason: GapReason) -> bool {
        let d = dir.index();
        let half = &mut self.halves[d];
        let Some((&k, p)) = half.ooo.first_key_value() else {
            return false;
        };
        if k > half.next {
            let gap = Gap {
                dir,
                at_seq: half.seq_of(half.next),
                offset: half.next,
                len: k - half.next,
                before_frame: p.frame,
                reason,
            };
            half.stats.gaps += 1;
            half.stats.gap_bytes += gap.len;
            half.next = k;
            half.history.clear();
            self.emit_gap(gap);
        }
        self.flush_contiguous(dir);
        true
    }

    fn flush_bound(&mut self, dir: Direction) {
        let d = dir.index();
        while self.halves[d].ooo_bytes > self.config.max_out_of_order_bytes
            || self.halves[d].ooo.len() > self.config.max_out_of_order_segments
        {
            if !self.skip_hole(dir, GapReason::BufferLimit) {
                break;
            }
        }
    }

    fn flush_acked(&mut self, dir: Direction, _frame: u64) {
        let d = dir.index();
        loop {
            let half = &self.halves[d];
            match half.ooo.first_key_value() {
                Some((&k, _)) if half.acked >= k => {
                    self.skip_hole(dir, GapReason::Acked);
                }
                _ => return,
            }
        }
    }

    fn flush_end(&mut self, dir: Direction, frame: u64) {
        while self.skip_hole(dir, GapReason::End) {}
        let half = &mut self.halves[dir.index()];
        let end = half.fin.map_or(0, |f| f.0).max(half.acked);
        if half.started && end > half.next {
            let gap = Gap {
                dir,
                at_seq: half.seq_of(half.next),
                offset: half.next,
                len: end - half.next,
                before_frame: frame,
                reason: GapReason::End,
            };
            half.stats.gaps += 1;
            half.stats.gap_bytes += gap.len;
            half.next = end;
            half.history.clear();
            self.emit_gap(gap);
        }
        self.check_fin(dir);
    }
}

/// Bytes of one direction's stream with the frame (and timestamp) each byte came from; the
/// buffer HTTP and SIP framing work on. Memory is the unconsumed bytes plus one entry per frame
/// that contributed to them.
#[derive(Clone, Debug, Default)]
pub struct StreamBuffer {
    data: Vec<u8>,
    /// Stream position of `data[0]` (counts every byte ever pushed).
    start: u64,
    /// (position of the first byte, frame, timestamp), ascending.
    spans: VecDeque<(u64, u64, u64)>,
}

impl StreamBuffer {
    pub fn new() -> Self {
        StreamBuffer::default()
    }

    /// Appends bytes that came from `frame`.
    pub fn push(&mut self, data: &[u8], frame: u64, ts_ns: u64) {
        if data.is_empty() {
            return;
        }
        let pos = self.start + self.data.len() as u64;
        if self.spans.back().map(|s| s.1) != Some(frame) || self.data.is_empty() {
            self.spans.push_back((pos, frame, ts_ns));
        }
        self.data.extend_from_slice(data);
    }

    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Drops the first `n` bytes.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.start += n as u64;
        if self.data.is_empty() {
            self.spans.clear();
            return;
        }
        while self.spans.len() >= 2 && self.spans.get(1).is_some_and(|s| s.0 <= self.start) {
            self.spans.pop_front();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.consume(self.data.len());
    }

    /// Frame and timestamp of byte `i` of [`StreamBuffer::bytes`] (the last byte's when `i` is
    /// past the end; `(0, 0)` when empty).
    pub fn frame_at(&self, i: usize) -> (u64, u64) {
        let pos = self.start + i.min(self.data.len().saturating_sub(1)) as u64;
        let idx = self.spans.partition_point(|s| s.0 <= pos);
        idx.checked_sub(1)
            .and_then(|j| self.spans.get(j))
            .map_or((0, 0), |s| (s.1, s.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Forward as F, Reverse as R};

    const A: TcpFlags = TcpFlags::ACK;

    fn seg(frame: u64, seq: u32, ack: u32, flags: TcpFlags, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            frame,
            ts_ns: frame * 1000,
            seq,
            ack,
            flags,
            payload,
        }
    }

    /// Concatenated data per direction, and the other events.
    fn collect(r: &mut TcpReassembler) -> ([Vec<u8>; 2], Vec<TcpEvent>) {
        let mut data = [Vec::new(), Vec::new()];
        let mut other = Vec::new();
        for ev in r.drain() {
            match ev {
                TcpEvent::Data(c) => data[c.dir.index()].extend_from_slice(&c.data),
                e => other.push(e),
            }
        }
        (data, other)
    }

    fn gaps(evs: &[TcpEvent]) -> Vec<Gap> {
        evs.iter()
            .filter_map(|e| match e {
                TcpEvent::Gap(g) => Some(*g),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_way_handshake_then_data_starts_at_isn_plus_one() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 1000, 0, TcpFlags::SYN, b""));
        r.push(R, seg(2, 5000, 1001, TcpFlags::SYN | A, b""));
        r.push(F, seg(3, 1001, 5001, A, b""));
        r.push(
            F,
            seg(4, 1001, 5001, A | TcpFlags::PSH, b"GET / HTTP/1.1\r\n\r\n"),
        );
        r.push(R, seg(5, 5001, 1019, A, b"HTTP/1.1 200 OK\r\n"));
        let evs: Vec<_> = r.drain().collect();
        assert_eq!(
            evs[0],
            TcpEvent::Handshake {
                client: F,
                frame: 3,
                ts_ns: 3000
            }
        );
        assert!(r.handshake_seen());
        assert!(!r.is_closed());
        match &evs[1] {
            TcpEvent::Data(c) => {
                assert_eq!(c.offset, 0);
                assert_eq!(c.seq, 1001);
                assert_eq!(c.first_frame, 4);
                assert_eq!(c.data, b"GET / HTTP/1.1\r\n\r\n");
            }
            e => panic!("{e:?}"),
        }
        match &evs[2] {
            TcpEvent::Data(c) => assert_eq!((c.dir, c.offset, c.first_frame), (R, 0, 5)),
            e => panic!("{e:?}"),
        }
        assert_eq!(evs.len(), 3);
    }

    #[test]
    fn connection_without_start_begins_at_first_seen_seq() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(7, 123_456, 9, A, b"abc"));
        r.push(F, seg(8, 123_459, 9, A, b"def"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abcdef");
        assert!(other.is_empty());
        // Data from before the first seen segment is dropped and counted.
        r.push(F, seg(9, 123_450, 9, A, b"012345"));
        assert_eq!(r.stats().forward.before_start_bytes, 6);
        assert_eq!(r.stats().forward.retransmissions, 1);
    }

    #[test]
    fn sequence_wraparound() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, u32::MAX - 3, 0, TcpFlags::SYN, b""));
        // ISN+1 = MAX-2; 5 bytes cross zero.
        r.push(F, seg(2, u32::MAX - 2, 0, A, b"01234"));
        r.push(F, seg(4, 4, 0, A, b"789"));
        r.push(F, seg(3, 2, 0, A, b"56"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"0123456789");
        assert!(other.is_empty(), "{other:?}");
        assert_eq!(r.next_offset(F), 10);
        assert_eq!(r.stats().forward.out_of_order, 1);
    }

    #[test]
    fn exact_retransmission_dropped_and_counted() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 100, 0, A, b"hello"));
        r.push(F, seg(2, 100, 0, A, b"hello"));
        r.push(F, seg(3, 105, 0, A, b" world"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"hello world");
        assert!(other.is_empty());
        assert_eq!(r.stats().forward.retransmissions, 1);
        assert_eq!(r.stats().forward.overlap_conflicts, 0);
    }

    #[test]
    fn retransmitted_out_of_order_segment_is_a_duplicate() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 100, 0, A, b"ab"));
        r.push(F, seg(2, 104, 0, A, b"ef"));
        r.push(F, seg(3, 104, 0, A, b"ef"));
        r.push(F, seg(4, 102, 0, A, b"cd"));
        let (data, _) = collect(&mut r);
        assert_eq!(data[0], b"abcdef");
        let s = r.stats().forward;
        assert_eq!((s.retransmissions, s.out_of_order), (1, 1));
    }

    #[test]
    fn overlap_first_arrived_wins_and_conflicts_reported() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 100, 0, A, b"abcd"));
        // Overlaps "cd" with "XY" and adds "ef": conflict, first bytes kept.
        r.push(F, seg(2, 102, 0, A, b"XYef"));
        // Overlap with identical bytes: an overlap, no conflict.
        r.push(F, seg(3, 105, 0, A, b"fgh"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abcdefgh");
        assert_eq!(
            other,
            vec![TcpEvent::OverlapConflict {
                dir: F,
                frame: 2,
                at_seq: 102,
                len: 2
            }]
        );
        let s = r.stats().forward;
        assert_eq!((s.overlaps, s.overlap_conflicts), (2, 1));
    }

    #[test]
    fn overlap_with_out_of_order_data_first_wins() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 0, A, b"a"));
        r.push(F, seg(2, 3, 0, A, b"DE"));
        // Covers 1..7: "bc" new, "de" conflicts with "DE", "fg" new.
        r.push(F, seg(3, 1, 0, A, b"bcdefg"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abcDEfg");
        assert_eq!(other.len(), 1);
        assert_eq!(r.stats().forward.overlap_conflicts, 1);
    }

    #[test]
    fn out_of_order_buffered_until_gap_fills() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 10, 0, A, b"01"));
        r.push(F, seg(3, 14, 0, A, b"45"));
        r.push(F, seg(4, 16, 0, A, b"67"));
        let (data, _) = collect(&mut r);
        assert_eq!(data[0], b"01");
        assert_eq!(r.out_of_order_bytes(F), 4);
        r.push(F, seg(2, 12, 0, A, b"23"));
        let evs: Vec<_> = r.drain().collect();
        let frames: Vec<u64> = evs
            .iter()
            .map(|e| match e {
                TcpEvent::Data(c) => c.first_frame,
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(frames, vec![2, 3, 4]);
        assert_eq!(r.out_of_order_bytes(F), 0);
    }

    #[test]
    fn gap_when_peer_acks_missing_bytes() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 1000, 0, TcpFlags::SYN, b""));
        r.push(R, seg(2, 5000, 1001, TcpFlags::SYN | A, b""));
        r.push(F, seg(3, 1001, 5001, A, b"aaaa"));
        // 1005..1009 lost in the capture
        r.push(F, seg(5, 1009, 5001, A, b"cccc"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"aaaa");
        assert!(gaps(&other).is_empty());
        // The peer acknowledges everything: the hole is a gap, the rest is delivered.
        r.push(R, seg(6, 5001, 1013, A, b""));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"cccc");
        assert_eq!(
            gaps(&other),
            vec![Gap {
                dir: F,
                at_seq: 1005,
                offset: 4,
                len: 4,
                before_frame: 5,
                reason: GapReason::Acked
            }]
        );
        // A late copy of the lost bytes is a retransmission, not new data.
        r.push(F, seg(7, 1005, 5001, A, b"bbbb"));
        let (data, _) = collect(&mut r);
        assert!(data[0].is_empty());
    }

    #[test]
    fn gap_when_out_of_order_buffer_is_full() {
        let config = TcpConfig {
            max_out_of_order_bytes: 8,
            ..TcpConfig::default()
        };
        let mut r = TcpReassembler::new(config);
        r.push(F, seg(1, 0, 0, A, b"ab"));
        r.push(F, seg(2, 10, 0, A, b"0123"));
        r.push(F, seg(3, 14, 0, A, b"4567"));
        assert!(gaps(&collect(&mut r).1).is_empty());
        r.push(F, seg(4, 18, 0, A, b"8"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"012345678");
        let g = gaps(&other);
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].offset, g[0].len, g[0].before_frame), (2, 8, 2));
        assert_eq!(g[0].reason, GapReason::BufferLimit);
        assert_eq!(r.out_of_order_bytes(F), 0);
    }

    #[test]
    fn segment_count_bound() {
        let config = TcpConfig {
            max_out_of_order_segments: 2,
            ..TcpConfig::default()
        };
        let mut r = TcpReassembler::new(config);
        r.push(F, seg(1, 0, 0, A, b"a"));
        for (i, s) in [10u32, 20, 30].iter().enumerate() {
            r.push(F, seg(2 + i as u64, *s, 0, A, b"x"));
        }
        let (_, other) = collect(&mut r);
        assert_eq!(gaps(&other).len(), 1);
        assert_eq!(r.stats().forward.gaps, 1);
    }

    #[test]
    fn gaps_at_end_of_capture_and_after_fin() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 0, A, b"ab"));
        r.push(F, seg(3, 6, 0, A | TcpFlags::FIN, b"gh"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"ab");
        assert!(other.is_empty(), "FIN waits for the stream to reach it");
        r.finish(9);
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"gh");
        let g = gaps(&other);
        assert_eq!((g[0].offset, g[0].len, g[0].reason), (2, 4, GapReason::End));
        assert!(matches!(
            other[1],
            TcpEvent::Fin {
                dir: F,
                frame: 3,
                ..
            }
        ));

        // FIN whose preceding data was lost: the hole up to the FIN is a gap at the end.
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 0, A, b"ab"));
        r.push(F, seg(2, 5, 0, A | TcpFlags::FIN, b""));
        r.finish(2);
        let g = gaps(&collect(&mut r).1);
        assert_eq!((g[0].offset, g[0].len), (2, 3));
    }

    #[test]
    fn fin_in_order_is_reported_after_its_data_and_syn_data_starts_at_isn_plus_one() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 41, 0, TcpFlags::SYN, b"syn-data"));
        r.push(F, seg(2, 50, 0, A | TcpFlags::FIN, b"!"));
        r.push(F, seg(3, 50, 0, A | TcpFlags::FIN, b"!"));
        let evs: Vec<_> = r.drain().collect();
        assert!(matches!(&evs[0], TcpEvent::Data(c) if c.data == b"syn-data" && c.seq == 42));
        assert!(matches!(&evs[1], TcpEvent::Data(c) if c.data == b"!" && c.offset == 8));
        assert!(matches!(
            evs[2],
            TcpEvent::Fin {
                dir: F,
                frame: 2,
                ..
            }
        ));
        assert_eq!(evs.len(), 3, "one FIN event for a retransmitted FIN");
        assert!(!r.is_closed(), "only one direction has closed");
        let s = r.stats().forward;
        assert_eq!((s.retransmissions, s.keepalives), (1, 0));
        // A retransmitted SYN is not a new connection; another ISN is counted.
        r.push(F, seg(4, 41, 0, TcpFlags::SYN, b""));
        r.push(F, seg(5, 9999, 0, TcpFlags::SYN, b""));
        assert_eq!(r.stats().forward.unexpected_syns, 1);
    }

    #[test]
    fn rst_flushes_holes() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 0, A, b"ab"));
        r.push(F, seg(2, 4, 0, A, b"ef"));
        r.push(R, seg(3, 0, 0, TcpFlags::RST, b""));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abef");
        assert_eq!(gaps(&other).len(), 1);
        assert!(matches!(
            other[1],
            TcpEvent::Rst {
                dir: R,
                frame: 3,
                ..
            }
        ));
        assert_eq!(other[1].dir(), R);
        assert!(r.is_closed());
    }

    #[test]
    fn keepalive_one_byte_below_next_is_not_a_conflict() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 100, 0, A, b"hello"));
        // Keep-alive: seq = next-1, one garbage byte.
        r.push(F, seg(2, 104, 0, A, b"\0"));
        r.push(F, seg(3, 104, 0, A, b""));
        r.push(F, seg(4, 105, 0, A, b"!"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"hello!");
        assert!(other.is_empty());
        let s = r.stats().forward;
        assert_eq!(
            (s.keepalives, s.overlap_conflicts, s.retransmissions),
            (1, 0, 0)
        );
    }

    #[test]
    fn zero_window_probe_byte_then_retransmitted_with_more() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 0, A, b"abc"));
        // Zero-window probes carry the next byte of real data, repeatedly.
        r.push(F, seg(2, 3, 0, A, b"d"));
        r.push(F, seg(3, 3, 0, A, b"d"));
        // The window opens: the byte is sent again with the rest.
        r.push(F, seg(4, 3, 0, A, b"defg"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abcdefg");
        assert!(other.is_empty());
        let s = r.stats().forward;
        assert_eq!(s.overlap_conflicts, 0);
        assert_eq!(s.overlaps, 1);
    }

    #[test]
    fn unread_data_beyond_cap_becomes_a_gap() {
        let config = TcpConfig {
            max_unread_bytes: 4,
            ..TcpConfig::default()
        };
        let mut r = TcpReassembler::new(config);
        r.push(F, seg(1, 0, 0, A, b"abc"));
        r.push(F, seg(2, 3, 0, A, b"de"));
        let (data, other) = collect(&mut r);
        assert_eq!(data[0], b"abc");
        let g = gaps(&other);
        assert_eq!(
            (g[0].offset, g[0].len, g[0].reason),
            (3, 2, GapReason::Unread)
        );
        r.push(F, seg(3, 5, 0, A, b"fg"));
        assert_eq!(collect(&mut r).0[0], b"fg");
    }

    #[test]
    fn both_directions_are_independent() {
        let mut r = TcpReassembler::default();
        r.push(F, seg(1, 0, 77, A, b"req"));
        r.push(R, seg(2, 77, 3, A, b"resp"));
        r.push(F, seg(3, 3, 81, A, b"!"));
        let (data, _) = collect(&mut r);
        assert_eq!(data[0], b"req!");
        assert_eq!(data[1], b"resp");
        r.push(F, seg(4, 4, 81, A | TcpFlags::FIN, b""));
        assert!(!r.is_closed());
        r.push(R, seg(5, 81, 5, A | TcpFlags::FIN, b""));
        assert!(r.is_closed());
        let (_, other) = collect(&mut r);
        assert_eq!(other.len(), 2, "{other:?}");
    }

    #[test]
    fn stream_buffer_tracks_frames() {
        let mut b = StreamBuffer::new();
        b.push(b"abc", 1, 10);
        b.push(b"de", 2, 20);
        b.push(b"f", 2, 20);
        b.push(b"gh", 5, 50);
        assert_eq!(b.frame_at(0), (1, 10));
        assert_eq!(b.frame_at(3), (2, 20));
        assert_eq!(b.frame_at(5), (2, 20));
        assert_eq!(b.frame_at(6), (5, 50));
        assert_eq!(b.frame_at(100), (5, 50));
        b.consume(4);
        assert_eq!(b.bytes(), b"efgh");
        assert_eq!(b.frame_at(0), (2, 20));
        b.clear();
        assert_eq!(b.frame_at(0), (0, 0));
        b.push(b"x", 9, 90);
        assert_eq!(b.frame_at(0), (9, 90));
    }

    /// The `tcp_http` fuzz target's crash input (issue 15): a 34-byte stream in 1-byte segments
    /// whose first segment arrives after the 23 that follow it. The reassembler's default
    /// bounds (4096 out-of-order segments) hold that losslessly; the target's lossless mode had
    /// kept its 16-segment bound, so the reassembler rightly declared the hole a
    /// `BufferLimit` gap. Both halves are asserted: the default is lossless, the bound is a bound.
    #[test]
    fn r15_one_byte_segments_reordered_past_23_later_ones() {
        let stream =
            hex::decode("01200900ffffffff000a0a202e20200101802323232323232323ffffffff00202020")
                .expect("hex");
        let isn = (u32::MAX - 40).wrapping_add(0x80);
        let mut order: Vec<usize> = (0..stream.len()).collect();
        for k in 0..23 {
            order.swap(k, k + 1);
        }
        assert_eq!(order[..24].last(), Some(&0));
        let run = |config: TcpConfig| {
            let mut r = TcpReassembler::new(config);
            r.push(F, seg(0, isn, 0, TcpFlags::SYN, b""));
            for (frame, &k) in order.iter().enumerate() {
                let seq = isn.wrapping_add(1).wrapping_add(k as u32);
                r.push(F, seg(frame as u64 + 1, seq, 0, A, &stream[k..k + 1]));
            }
            r.finish(100);
            collect(&mut r)
        };
        let (data, other) = run(TcpConfig::default());
        assert_eq!(data[0], stream);
        assert!(gaps(&other).is_empty(), "{other:?}");

        let bounded = TcpConfig {
            max_out_of_order_segments: 16,
            ..TcpConfig::default()
        };
        let (data, other) = run(bounded);
        let g = gaps(&other);
        assert_eq!(g.len(), 1, "{other:?}");
        assert_eq!(
            (g[0].offset, g[0].len, g[0].reason),
            (0, 1, GapReason::BufferLimit)
        );
        assert_eq!(data[0], stream[1..]);
    }

    /// Every corpus capture: each connection's chunks and gaps tile its streams exactly.
    #[test]
    fn r4_corpus_every_capture_reassembles_contiguously() {
        let Some(dir) = capture::corpus("") else {
            return;
        };
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&dir, &mut files);
        files.sort();
        assert!(!files.is_empty());
        for f in &files {
            let conns = capture::connections(f);
            let mut totals = TcpDirStats::default();
            for c in &conns {
                let mut next = [0u64; 2];
                for ev in &c.events {
                    match ev {
                        TcpEvent::Data(d) => {
                            assert_eq!(d.offset, next[d.dir.index()], "{}", f.display());
                            next[d.dir.index()] += d.data.len() as u64;
                        }
                        TcpEvent::Gap(g) => {
                            assert_eq!(g.offset, next[g.dir.index()], "{}", f.display());
                            next[g.dir.index()] += g.len;
                        }
                        _ => {}
                    }
                }
                for s in [c.stats.forward, c.stats.reverse] {
                    totals.bytes += s.bytes;
                    totals.retransmissions += s.retransmissions;
                    totals.overlap_conflicts += s.overlap_conflicts;
                    totals.gaps += s.gaps;
                    totals.keepalives += s.keepalives;
                }
            }
            if !conns.is_empty() {
                eprintln!(
                    "{}: {} connections, {} bytes, {} retransmissions, {} gaps, {} conflicts, {} keep-alives",
                    f.file_name().and_then(|n| n.to_str()).unwrap_or(""),
                    conns.len(),
                    totals.bytes,
                    totals.retransmissions,
                    totals.gaps,
                    totals.overlap_conflicts,
                    totals.keepalives
                );
            }
        }
    }

    /// Any sequence of segments: never panics, stays within its bounds, and each direction's
    /// delivered data plus gaps is contiguous.
    #[test]
    fn pseudo_random_segments_keep_invariants() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let config = TcpConfig {
            max_out_of_order_bytes: 64,
            max_out_of_order_segments: 8,
            history_bytes: 16,
            max_unread_bytes: 1 << 20,
            max_queued_events: 1 << 20,
        };
        for round in 0..200u64 {
            let mut r = TcpReassembler::new(config);
            let mut next = [0u64; 2];
            let base = rnd() as u32;
            for frame in 0..100u64 {
                let dir = if rnd() % 2 == 0 { F } else { R };
                let seq = base.wrapping_add((rnd() % 300) as u32).wrapping_sub(20);
                let len = (rnd() % 20) as usize;
                let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ (round as u8)).collect();
                let flags = TcpFlags((rnd() % 32) as u8);
                r.push(dir, seg(frame, seq, rnd() as u32, flags, &payload));
                for ev in r.drain() {
                    match ev {
                        TcpEvent::Data(c) => {
                            assert_eq!(c.offset, next[c.dir.index()]);
                            next[c.dir.index()] += c.data.len() as u64;
                        }
                        TcpEvent::Gap(g) => {
                            assert_eq!(g.offset, next[g.dir.index()]);
                            next[g.dir.index()] += g.len;
                        }
                        _ => {}
                    }
                }
                assert!(r.out_of_order_bytes(F) <= 64 && r.out_of_order_bytes(R) <= 64);
            }
            r.finish(1000);
            for ev in r.drain() {
                if let TcpEvent::Gap(g) = ev {
                    assert_eq!(g.offset, next[g.dir.index()]);
                    next[g.dir.index()] += g.len;
                } else if let TcpEvent::Data(c) = ev {
                    assert_eq!(c.offset, next[c.dir.index()]);
                    next[c.dir.index()] += c.data.len() as u64;
                }
            }
            assert_eq!(r.out_of_order_bytes(F), 0);
        }
    }
}

/// Test support: reads a corpus capture, cuts each packet down to its TCP segment with a
/// minimal IPv4/IPv6 + TCP parser (the real decoder lives elsewhere) and reassembles every
/// connection.
#[cfg(test)]
pub(crate) mod capture {
    use super::*;
    use crate::pcap::CaptureReader;
    use std::collections::HashMap;
    use std::path::PathBuf;

    /// The corpus directory (`../shared/corpus/pcaps` beside the checkout, or
    /// `/work/shared/corpus/pcaps`), or None after printing that the test is skipped.
    pub(crate) fn corpus(file: &str) -> Option<PathBuf> {
        let beside = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/corpus/pcaps"
        ));
        let fixed = PathBuf::from("/work/shared/corpus/pcaps");
        let dir = [beside, fixed].into_iter().find(|d| d.is_dir());
        let Some(dir) = dir else {
            eprintln!("SKIPPED: the shared corpus (../shared/corpus) is not present");
            return None;
        };
        Some(dir.join(file))
    }

    type Endpoint = (Vec<u8>, u16);
    type Conn = (Endpoint, (u16, u16), TcpReassembler, Vec<TcpEvent>);

    struct Parsed<'a> {
        src: Endpoint,
        dst: Endpoint,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &'a [u8],
    }

    fn be16(d: &[u8], i: usize) -> Option<u16> {
        Some(u16::from_be_bytes([*d.get(i)?, *d.get(i + 1)?]))
    }

    fn be32(d: &[u8], i: usize) -> Option<u32> {
        Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?))
    }

    fn tcp<'a>(src: Vec<u8>, dst: Vec<u8>, t: &'a [u8]) -> Option<Parsed<'a>> {
        let off = usize::from(*t.get(12)? >> 4) * 4;
        Some(Parsed {
            src: (src, be16(t, 0)?),
            dst: (dst, be16(t, 2)?),
            seq: be32(t, 4)?,
            ack: be32(t, 8)?,
            flags: *t.get(13)?,
            payload: t.get(off..)?,
        })
    }

    fn ip(et: u16, d: &[u8]) -> Option<Parsed<'_>> {
        match et {
            0x0800 => {
                let ihl = usize::from(*d.first()? & 0x0f) * 4;
                let total = usize::from(be16(d, 2)?);
                let frag = be16(d, 6)? & 0x3fff;
                if *d.get(9)? != 6 || frag != 0 {
                    return None;
                }
                let end = total.min(d.len());
                tcp(
                    d.get(12..16)?.to_vec(),
                    d.get(16..20)?.to_vec(),
                    d.get(ihl..end)?,
                )
            }
            0x86dd => {
                let plen = usize::from(be16(d, 4)?);
                let mut next = *d.get(6)?;
                let body = d.get(40..(40 + plen).min(d.len()))?;
                let mut at = 0;
                while matches!(next, 0 | 43 | 60) {
                    next = *body.get(at)?;
                    at += (usize::from(*body.get(at + 1)?) + 1) * 8;
                }
                if next != 6 {
                    return None;
                }
                tcp(
                    d.get(8..24)?.to_vec(),
                    d.get(24..40)?.to_vec(),
                    body.get(at..)?,
                )
            }
            0x8100 | 0x88a8 => ip(be16(d, 2)?, d.get(4..)?),
            _ => None,
        }
    }

    fn packet(link_type: u16, d: &[u8]) -> Option<Parsed<'_>> {
        match link_type {
            1 => ip(be16(d, 12)?, d.get(14..)?),
            113 => ip(be16(d, 14)?, d.get(16..)?),
            276 => ip(be16(d, 0)?, d.get(20..)?),
            101 => ip(
                if *d.first()? >> 4 == 6 {
                    0x86dd
                } else {
                    0x0800
                },
                d,
            ),
            _ => None,
        }
    }

    /// One reassembled connection: the ports of its `Forward` direction (source, destination)
    /// and its events, in order.
    pub(crate) struct Connection {
        pub ports: (u16, u16),
        pub events: Vec<TcpEvent>,
        pub stats: TcpStats,
    }

    /// Every TCP connection of the capture, in order of first packet.
    pub(crate) fn connections(path: &std::path::Path) -> Vec<Connection> {
        let file = std::fs::File::open(path).expect("open capture");
        let mut reader = CaptureReader::new(std::io::BufReader::new(file)).expect("capture");
        let mut index: HashMap<(Endpoint, Endpoint), usize> = HashMap::new();
        let mut conns: Vec<Conn> = Vec::new();
        let mut last_frame = 0;
        while let Some(p) = reader.next_packet().expect("packet") {
            last_frame = p.frame;
            let Some(seg) = packet(p.link_type, p.data) else {
                continue;
            };
            let key = if seg.src <= seg.dst {
                (seg.src.clone(), seg.dst.clone())
            } else {
                (seg.dst.clone(), seg.src.clone())
            };
            let flags = TcpFlags::from_header_byte(seg.flags);
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    conns.push((
                        seg.src.clone(),
                        (seg.src.1, seg.dst.1),
                        TcpReassembler::default(),
                        Vec::new(),
                    ));
                    index.insert(key, conns.len() - 1);
                    conns.len() - 1
                }
            };
            let (fwd, _, r, evs) = &mut conns[i];
            let dir = if seg.src == *fwd {
                Direction::Forward
            } else {
                Direction::Reverse
            };
            r.push(
                dir,
                TcpSegment {
                    frame: p.frame,
                    ts_ns: p.ts_nanos,
                    seq: seg.seq,
                    ack: seg.ack,
                    flags,
                    payload: seg.payload,
                },
            );
            evs.extend(r.drain());
        }
        conns
            .into_iter()
            .map(|(_, ports, mut r, mut events)| {
                r.finish(last_frame);
                events.extend(r.drain());
                Connection {
                    ports,
                    events,
                    stats: r.stats(),
                }
            })
            .collect()
    }
}
