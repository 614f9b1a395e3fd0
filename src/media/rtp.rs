//! RTP (RFC 3550): packet parsing and writing, a sender that numbers successive
//! packets, and receiver statistics (RFC 3550 appendix A.1, A.3 and A.8).
//!
//! Parsing never panics: every length in the fixed header (CSRC count, header
//! extension length, padding count) is checked against the buffer, and the error
//! names what did not fit.

use std::time::Duration;

use serde::Serialize;

/// Length of the fixed RTP header.
pub const RTP_HEADER_LEN: usize = 12;
/// The only RTP version in use (RFC 3550).
pub const RTP_VERSION: u8 = 2;

/// Why a buffer is not a valid RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet too short: {len} bytes, the fixed header needs 12")]
    TooShort { len: usize },
    #[error("RTP version {0} not supported (must be 2)")]
    BadVersion(u8),
    #[error("CSRC count {count} needs {needed} bytes but the packet has {len}")]
    CsrcOverrun {
        count: usize,
        needed: usize,
        len: usize,
    },
    #[error(
        "header extension flag set but only {available} bytes remain at offset {offset} (4 needed)"
    )]
    ExtensionHeaderTruncated { offset: usize, available: usize },
    #[error("header extension length {words} words ({bytes} bytes) exceeds the {available} bytes remaining at offset {offset}")]
    ExtensionOverrun {
        words: u16,
        bytes: usize,
        available: usize,
        offset: usize,
    },
    #[error("padding flag set but the packet has no room for the padding count")]
    PaddingMissing,
    #[error("padding count {count} is invalid: {available} bytes follow the header")]
    PaddingInvalid { count: u8, available: usize },
}

/// RTP header extension (RFC 3550 5.3.1): profile-defined 16 bits and the data,
/// a multiple of 4 bytes long.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpExtension {
    pub profile: u16,
    pub data: Vec<u8>,
}

/// The RTP fixed header plus CSRC list and header extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub version: u8,
    pub padding: bool,
    pub extension: bool,
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: Vec<u32>,
    /// The header extension when `extension` is set. When writing, an extension is
    /// written if either `extension` is set (an empty one if this is `None`) or this
    /// is `Some`.
    pub extension_header: Option<RtpExtension>,
}

impl Default for RtpHeader {
    fn default() -> Self {
        RtpHeader {
            version: RTP_VERSION,
            padding: false,
            extension: false,
            marker: false,
            payload_type: 0,
            sequence: 0,
            timestamp: 0,
            ssrc: 0,
            csrc: Vec::new(),
            extension_header: None,
        }
    }
}

impl RtpHeader {
    /// Length of this header on the wire.
    pub fn wire_len(&self) -> usize {
        let csrc = self.csrc.len().min(15) * 4;
        let ext = if self.extension || self.extension_header.is_some() {
            4 + self
                .extension_header
                .as_ref()
                .map_or(0, |e| padded4(e.data.len().min(usize::from(u16::MAX) * 4)))
        } else {
            0
        };
        RTP_HEADER_LEN + csrc + ext
    }

    /// Appends this header to `out`. At most 15 CSRCs and 65535 extension words are
    /// written; extension data is zero-padded to a multiple of 4 bytes.
    pub fn write(&self, padding: bool, out: &mut Vec<u8>) {
        let csrc = &self.csrc[..self.csrc.len().min(15)];
        let has_ext = self.extension || self.extension_header.is_some();
        let b0 = ((self.version & 0x03) << 6)
            | (u8::from(padding) << 5)
            | (u8::from(has_ext) << 4)
            | csrc.len() as u8;
        let b1 = (u8::from(self.marker) << 7) | (self.payload_type & 0x7F);
        out.push(b0);
        out.push(b1);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in csrc {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if has_ext {
            let (profile, data) = match &self.extension_header {
                Some(e) => (
                    e.profile,
                    &e.data[..e.data.len().min(usize::from(u16::MAX) * 4)],
                ),
                None => (0, &[][..]),
            };
            let words = padded4(data.len()) / 4;
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&(words as u16).to_be_bytes());
            out.extend_from_slice(data);
            out.resize(out.len() + (padded4(data.len()) - data.len()), 0);
        }
    }
}

fn padded4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(b.try_into().ok()?))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// A parsed RTP packet borrowing its payload from the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// Number of padding bytes (including the count byte) when `header.padding` is
    /// set; 0 otherwise.
    pub padding_len: u8,
}

impl<'a> RtpPacket<'a> {
    /// A packet without padding.
    pub fn new(header: RtpHeader, payload: &'a [u8]) -> Self {
        RtpPacket {
            header,
            payload,
            padding_len: 0,
        }
    }

    /// Parses one RTP packet (one UDP datagram).
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let (true, &[b0, b1, ..]) = (data.len() >= RTP_HEADER_LEN, data) else {
            return Err(RtpError::TooShort { len: data.len() });
        };
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let padding = b0 & 0x20 != 0;
        let extension = b0 & 0x10 != 0;
        let count = usize::from(b0 & 0x0F);
        let marker = b1 & 0x80 != 0;
        let payload_type = b1 & 0x7F;
        let short = || RtpError::TooShort { len: data.len() };
        let sequence = be16(data, 2).ok_or_else(short)?;
        let timestamp = be32(data, 4).ok_or_else(short)?;
        let ssrc = be32(data, 8).ok_or_else(short)?;

        let mut offset = RTP_HEADER_LEN;
        let needed = offset + count * 4;
        if needed > data.len() {
            return Err(RtpError::CsrcOverrun {
                count,
                needed,
                len: data.len(),
            });
        }
        let mut csrc = Vec::with_capacity(count);
        for _ in 0..count {
            csrc.push(be32(data, offset).ok_or_else(short)?);
            offset += 4;
        }

        let mut extension_header = None;
        if extension {
            let available = data.len() - offset;
            let (Some(profile), Some(words)) = (be16(data, offset), be16(data, offset + 2)) else {
                return Err(RtpError::ExtensionHeaderTruncated { offset, available });
            };
            offset += 4;
            let bytes = usize::from(words) * 4;
            let available = data.len() - offset;
            let Some(ext) = data.get(offset..offset + bytes) else {
                return Err(RtpError::ExtensionOverrun {
                    words,
                    bytes,
                    available,
                    offset,
                });
            };
            extension_header = Some(RtpExtension {
                profile,
                data: ext.to_vec(),
            });
            offset += bytes;
        }

        let rest = data.get(offset..).unwrap_or_default();
        let (payload, padding_len) = if padding {
            let Some(&count) = rest.last() else {
                return Err(RtpError::PaddingMissing);
            };
            let pad = usize::from(count);
            if pad == 0 || pad > rest.len() {
                return Err(RtpError::PaddingInvalid {
                    count,
                    available: rest.len(),
                });
            }
            (rest.get(..rest.len() - pad).unwrap_or_default(), count)
        } else {
            (rest, 0)
        };

        Ok(RtpPacket {
            header: RtpHeader {
                version,
                padding,
                extension,
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
                csrc,
                extension_header,
            },
            payload,
            padding_len,
        })
    }

    /// Appends the packet to `out`. When `header.padding` is set (or `padding_len` is
    /// non-zero) `max(padding_len, 1)` padding bytes are written, zeros followed by
    /// the count.
    pub fn write(&self, out: &mut Vec<u8>) {
        let padding = self.header.padding || self.padding_len > 0;
        self.header.write(padding, out);
        out.extend_from_slice(self.payload);
        if padding {
            let n = self.padding_len.max(1);
            out.resize(out.len() + usize::from(n) - 1, 0);
            out.push(n);
        }
    }

    /// The packet as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header.wire_len() + self.payload.len() + 4);
        self.write(&mut out);
        out
    }
}

/// Cheap test whether a datagram looks like RTP (not RTCP, not STUN, not DTLS):
/// version 2, payload type outside 72..=76 (RTCP packet types 200..=204 with the
/// marker bit), CSRC list inside the packet and a plausible UDP length.
pub fn looks_like_rtp(data: &[u8]) -> bool {
    let &[b0, b1, ..] = data else {
        return false;
    };
    if data.len() < RTP_HEADER_LEN || data.len() > 65_535 || b0 >> 6 != RTP_VERSION {
        return false;
    }
    let pt = b1 & 0x7F;
    if (72..=76).contains(&pt) {
        return false;
    }
    RTP_HEADER_LEN + usize::from(b0 & 0x0F) * 4 <= data.len()
}

/// RTP clock rate of a static payload type (RFC 3551 table 4), 8000 for unknown
/// (dynamic) types. G.722 uses an 8000 Hz RTP clock although it samples at 16 kHz.
pub fn static_clock_rate(payload_type: u8) -> u32 {
    match payload_type {
        10 | 11 => 44_100,
        6 => 16_000,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90_000,
        _ => 8_000,
    }
}

/// Numbers successive packets of one outgoing stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpSender {
    pub ssrc: u32,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Timestamp of the next packet.
    pub timestamp: u32,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// Timestamp increment per packet (160 for 20 ms of G.711).
    pub samples_per_packet: u32,
    /// The next packet is the first of the stream (marker bit set).
    pub first: bool,
}

impl RtpSender {
    /// A sender whose first packet carries `initial_seq`, `initial_ts` and the
    /// marker bit. The clock rate is the static one of `payload_type` (8000 for
    /// dynamic types); see [`RtpSender::with_clock_rate`].
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        initial_seq: u16,
        initial_ts: u32,
        samples_per_packet: u32,
    ) -> Self {
        RtpSender {
            ssrc,
            seq: initial_seq,
            timestamp: initial_ts,
            payload_type: payload_type & 0x7F,
            clock_rate: static_clock_rate(payload_type),
            samples_per_packet,
            first: true,
        }
    }

    /// Sets the RTP clock rate (dynamic payload types).
    pub fn with_clock_rate(mut self, clock_rate: u32) -> Self {
        self.clock_rate = clock_rate;
        self
    }

    /// Duration of one packet at the clock rate.
    pub fn packet_duration(&self) -> Duration {
        if self.clock_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(
            u64::from(self.samples_per_packet) * 1_000_000_000 / u64::from(self.clock_rate),
        )
    }

    /// Header of the next packet, without advancing.
    pub fn next_header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.first,
            payload_type: self.payload_type,
            sequence: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            ..RtpHeader::default()
        }
    }

    /// Writes the next packet into `out` (appending) and advances sequence and
    /// timestamp.
    pub fn next_packet_into(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let header = self.next_header();
        header.write(false, out);
        out.extend_from_slice(payload);
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.samples_per_packet);
    }

    /// The next packet: marker on the first only, then sequence +1 and timestamp
    /// +`samples_per_packet` per packet (both wrapping).
    pub fn next_packet(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        self.next_packet_into(payload, &mut out);
        out
    }

    /// Skips `packets` packets' worth of timestamp without sending (silence
    /// suppression); the sequence number is not advanced (RFC 3550 5.1).
    pub fn skip_timestamp(&mut self, packets: u32) {
        self.timestamp = self
            .timestamp
            .wrapping_add(self.samples_per_packet.wrapping_mul(packets));
    }
}

const RTP_SEQ_MOD: i64 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u16 = 2;
/// Gaps listed in the summary (the total is always counted).
pub const MAX_GAPS: usize = 100;
const MAX_SSRCS: usize = 32;
const MAX_TS_DELTAS: usize = 32;
const SEQ_WINDOW: i64 = 1024;

/// Which extended sequence numbers were seen among the last [`SEQ_WINDOW`].
#[derive(Debug, Clone, Default)]
struct SeqWindow {
    bits: [u64; 16],
}

impl SeqWindow {
    fn slot(ext: i64) -> (usize, u64) {
        let s = ext.rem_euclid(SEQ_WINDOW) as usize;
        (s / 64, 1u64 << (s % 64))
    }

    fn clear(&mut self) {
        self.bits = [0; 16];
    }

    /// The highest extended sequence number moved from `old` to `new`: forget the
    /// slots that the new numbers reuse.
    fn advance(&mut self, old: i64, new: i64) {
        if new - old >= SEQ_WINDOW {
            self.clear();
            return;
        }
        for ext in old + 1..=new {
            let (i, bit) = Self::slot(ext);
            if let Some(w) = self.bits.get_mut(i) {
                *w &= !bit;
            }
        }
    }

    /// Marks `ext` seen; returns whether it was already seen. Numbers outside the
    /// window (relative to the highest, `max`) are never reported as seen.
    fn test_and_set(&mut self, ext: i64, max: i64) -> bool {
        if ext > max || ext <= max - SEQ_WINDOW {
            return false;
        }
        let (i, bit) = Self::slot(ext);
        match self.bits.get_mut(i) {
            Some(w) => {
                let seen = *w & bit != 0;
                *w |= bit;
                seen
            }
            None => false,
        }
    }
}

/// A run of missing sequence numbers, observed when a later packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeqGap {
    /// First missing sequence number.
    pub from: u16,
    /// Last missing sequence number.
    pub to: u16,
}

impl SeqGap {
    /// Number of missing packets in the gap.
    pub fn len(&self) -> u32 {
        u32::from(self.to.wrapping_sub(self.from)) + 1
    }

    /// Never true: a gap has at least one missing packet.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Packets seen with one payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PayloadTypeCount {
    pub payload_type: u8,
    pub packets: u64,
}

/// Packets received with one DSCP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DscpCount {
    pub dscp: u8,
    pub packets: u64,
}

/// Loss over one reporting interval (RFC 3550 A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IntervalLoss {
    pub expected: i64,
    pub received: i64,
    pub lost: i64,
    /// Fraction lost as in an RTCP report block: lost/expected * 256, 0 when
    /// nothing was lost (or more arrived than expected).
    pub fraction_lost: u8,
}

/// Receiver statistics of one RTP stream, as a serializable snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtpStreamSummary {
    pub clock_rate: u32,
    /// Every packet passed to `record`, valid or not.
    pub packets: u64,
    /// Payload bytes of every packet passed to `record`.
    pub payload_bytes: u64,
    /// Packets counted as received by RFC 3550 A.1 (duplicates included, packets
    /// from a source still on probation or after an unexplained jump excluded).
    pub received: u64,
    /// Packets expected from the extended sequence numbers (A.3).
    pub expected: u64,
    /// Cumulative lost, expected - received (negative when duplicates arrived).
    pub lost: i64,
    /// `lost` clamped at 0 for display.
    pub lost_clamped: u64,
    /// `lost_clamped` / `expected` in percent.
    pub loss_percent: f64,
    pub duplicates: u64,
    /// Packets older than the highest sequence number seen (not duplicates).
    pub out_of_order: u64,
    /// Gaps in arrival order, the first [`MAX_GAPS`].
    pub gaps: Vec<SeqGap>,
    /// All gaps, including those beyond the list.
    pub gaps_total: u64,
    /// Sequence number where counting started (first packet of the current source).
    pub base_seq: Option<u16>,
    /// Extended highest sequence number received (cycles << 16 | max seq).
    pub highest_seq_ext: Option<u64>,
    /// Times the sequence number wrapped past 65535.
    pub seq_cycles: u64,
    /// Sequence restarts after a large jump (RFC 3550 A.1), each also counted as a
    /// new source for `expected`.
    pub seq_restarts: u64,
    /// Interarrival jitter (RFC 3550 A.8) in timestamp units.
    pub jitter_ts: f64,
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub payload_types: Vec<PayloadTypeCount>,
    /// SSRCs in order of first appearance (at most 32 listed).
    pub ssrcs: Vec<u32>,
    /// Times the SSRC changed from one packet to the next.
    pub ssrc_changes: u64,
    pub ssrc_changed: bool,
    /// Packets per DSCP value, for packets whose DSCP was known.
    pub dscp: Vec<DscpCount>,
    pub dscp_unknown: u64,
    pub marker_packets: u64,
    /// Most common timestamp increment between consecutive sequence numbers.
    pub timestamp_delta: Option<u32>,
    /// `timestamp_delta` as a packetisation time.
    pub ptime_ms: Option<f64>,
    /// Time between the first and the last arrival.
    pub duration_ms: f64,
}

/// RFC 3550 receiver state for one stream: sequence validation with probation and
/// wraparound (A.1), expected/lost (A.3), interarrival jitter (A.8), plus the
/// counters a test tool needs (duplicates, reordering, gaps, DSCP, payload types,
/// SSRC changes, packetisation time).
///
/// When the SSRC changes, the statistics of the old source are kept in the totals
/// and sequence tracking starts again for the new one.
///
/// Deviation from A.1: when a source passes probation, the packets that made it
/// pass are counted as received (A.1 drops the first `MIN_SEQUENTIAL - 1`), so a
/// clean stream of N packets reports N received and N expected.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    // A.1 state of the current source.
    started: bool,
    ssrc: u32,
    max_seq: u16,
    cycles: i64,
    base_ext: i64,
    bad_seq: i64,
    probation: u16,
    received: u64,
    // Totals of earlier sources / restarts.
    retired_expected: i64,
    retired_received: u64,
    // A.3 interval state.
    expected_prior: i64,
    received_prior: u64,
    seen: SeqWindow,
    packets: u64,
    payload_bytes: u64,
    duplicates: u64,
    out_of_order: u64,
    gaps: Vec<SeqGap>,
    gaps_total: u64,
    seq_restarts: u64,
    wraps: u64,
    // A.8
    jitter: f64,
    max_jitter: f64,
    last_transit: Option<(f64, u32)>,
    payload_types: Vec<PayloadTypeCount>,
    ssrcs: Vec<u32>,
    ssrc_changes: u64,
    dscp: Vec<DscpCount>,
    dscp_unknown: u64,
    marker_packets: u64,
    last_highest: Option<(u16, u32)>,
    ts_deltas: Vec<(u32, u64)>,
    first_arrival: Option<Duration>,
    last_arrival: Option<Duration>,
}

impl Default for ReceiverStats {
    fn default() -> Self {
        ReceiverStats::new(8000)
    }
}

impl ReceiverStats {
    /// Statistics for a stream with the given RTP clock rate (8000 for G.711).
    pub fn new(clock_rate: u32) -> Self {
        ReceiverStats {
            clock_rate,
            started: false,
            ssrc: 0,
            max_seq: 0,
            cycles: 0,
            base_ext: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: 0,
            received: 0,
            retired_expected: 0,
            retired_received: 0,
            expected_prior: 0,
            received_prior: 0,
            seen: SeqWindow::default(),
            packets: 0,
            payload_bytes: 0,
            duplicates: 0,
            out_of_order: 0,
            gaps: Vec::new(),
            gaps_total: 0,
            seq_restarts: 0,
            wraps: 0,
            jitter: 0.0,
            max_jitter: 0.0,
            last_transit: None,
            payload_types: Vec::new(),
            ssrcs: Vec::new(),
            ssrc_changes: 0,
            dscp: Vec::new(),
            dscp_unknown: 0,
            marker_packets: 0,
            last_highest: None,
            ts_deltas: Vec::new(),
            first_arrival: None,
            last_arrival: None,
        }
    }

    /// The RTP clock rate the jitter is computed with.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    fn ext_max(&self) -> i64 {
        self.cycles + i64::from(self.max_seq)
    }

    /// Expected packets of the current source (0 while on probation).
    fn current_expected(&self) -> i64 {
        if !self.started || self.probation > 0 || self.received == 0 {
            return 0;
        }
        self.ext_max() - self.base_ext + 1
    }

    /// Moves the current source's counts into the totals.
    fn retire(&mut self) {
        self.retired_expected += self.current_expected();
        self.retired_received += self.received;
        self.received = 0;
    }

    /// RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.retire();
        self.base_ext = i64::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.seen.clear();
    }

    /// RFC 3550 A.1 `update_seq`, extended with duplicate, reorder and gap counts.
    /// Returns whether the packet counts as received.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    // Count the packets that made the source pass probation.
                    let n = i64::from(MIN_SEQUENTIAL);
                    self.base_ext = i64::from(seq) - (n - 1);
                    for ext in self.base_ext..=i64::from(seq) {
                        self.seen.test_and_set(ext, i64::from(seq));
                    }
                    self.received = u64::from(MIN_SEQUENTIAL);
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            let old = self.ext_max();
            if udelta == 0 {
                if self.seen.test_and_set(old, old) {
                    self.duplicates += 1;
                }
            } else {
                if seq < self.max_seq {
                    self.cycles += RTP_SEQ_MOD;
                    self.wraps += 1;
                }
                if udelta > 1 {
                    self.gaps_total += 1;
                    if self.gaps.len() < MAX_GAPS {
                        self.gaps.push(SeqGap {
                            from: self.max_seq.wrapping_add(1),
                            to: seq.wrapping_sub(1),
                        });
                    }
                }
                self.max_seq = seq;
                let new = self.ext_max();
                self.seen.advance(old, new);
                self.seen.test_and_set(new, new);
            }
        } else if udelta <= (RTP_SEQ_MOD as u32 - u32::from(MAX_MISORDER)) as u16 {
            // Very large jump.
            if i64::from(seq) == self.bad_seq {
                // Two sequential packets: the source restarted without telling us.
                self.seq_restarts += 1;
                self.init_seq(seq);
                self.seen.test_and_set(i64::from(seq), i64::from(seq));
            } else {
                self.bad_seq = (i64::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            // Duplicate or reordered packet, up to MAX_MISORDER behind.
            let max = self.ext_max();
            let ext = max - (RTP_SEQ_MOD - i64::from(udelta));
            if self.seen.test_and_set(ext, max) {
                self.duplicates += 1;
            } else {
                self.out_of_order += 1;
            }
        }
        self.received += 1;
        true
    }

    /// Arrival time in timestamp units.
    fn to_units(&self, arrival: Duration) -> f64 {
        // Without 128-bit arithmetic when the product fits in 64 bits (arrivals within weeks
        // of the first): the same integers, so the same result, for a fraction of the cost.
        if let Some(product) = u64::try_from(arrival.as_nanos())
            .ok()
            .and_then(|n| n.checked_mul(u64::from(self.clock_rate)))
        {
            let whole = product / 1_000_000_000;
            let frac = product % 1_000_000_000;
            return whole as f64 + frac as f64 / 1e9;
        }
        let product = arrival
            .as_nanos()
            .saturating_mul(u128::from(self.clock_rate));
        let whole = product / 1_000_000_000;
        let frac = product % 1_000_000_000;
        whole as f64 + frac as f64 / 1e9
    }

    /// Records one received packet. `arrival` is measured from any fixed epoch;
    /// `dscp` is the DSCP the packet arrived with, when the socket reports it.
    pub fn record(
        &mut self,
        pkt: &RtpHeader,
        payload_len: usize,
        arrival: Duration,
        dscp: Option<u8>,
    ) {
        self.packets += 1;
        self.payload_bytes = self.payload_bytes.saturating_add(payload_len as u64);
        if pkt.marker {
            self.marker_packets += 1;
        }
        match self
            .payload_types
            .iter_mut()
            .find(|p| p.payload_type == pkt.payload_type)
        {
            Some(p) => p.packets += 1,
            None => self.payload_types.push(PayloadTypeCount {
                payload_type: pkt.payload_type,
                packets: 1,
            }),
        }
        match dscp {
            Some(d) => match self.dscp.iter_mut().find(|c| c.dscp == d) {
                Some(c) => c.packets += 1,
                None => self.dscp.push(DscpCount {
                    dscp: d,
                    packets: 1,
                }),
            },
            None => self.dscp_unknown += 1,
        }
        if self.first_arrival.is_none() {
            self.first_arrival = Some(arrival);
        }
        self.last_arrival = Some(arrival);
        if !self.ssrcs.contains(&pkt.ssrc) && self.ssrcs.len() < MAX_SSRCS {
            self.ssrcs.push(pkt.ssrc);
        }

        if self.started && pkt.ssrc != self.ssrc {
            self.ssrc_changes += 1;
            self.retire();
            self.started = false;
            self.last_transit = None;
            self.last_highest = None;
            self.seen.clear();
        }
        if !self.started {
            self.started = true;
            self.ssrc = pkt.ssrc;
            self.init_seq(pkt.sequence);
            self.max_seq = pkt.sequence.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }

        let duplicates_before = self.duplicates;
        self.update_seq(pkt.sequence);
        let duplicate = self.duplicates > duplicates_before;

        if !duplicate {
            // A.8 interarrival jitter.
            let units = self.to_units(arrival);
            if let Some((last_units, last_ts)) = self.last_transit {
                let rtp_delta = f64::from(pkt.timestamp.wrapping_sub(last_ts) as i32);
                let d = (units - last_units) - rtp_delta;
                self.jitter += (d.abs() - self.jitter) / 16.0;
                if self.jitter > self.max_jitter {
                    self.max_jitter = self.jitter;
                }
            }
            self.last_transit = Some((units, pkt.timestamp));

            // Timestamp increment between consecutive sequence numbers.
            match self.last_highest {
                Some((seq, ts)) => {
                    let ahead = pkt.sequence.wrapping_sub(seq);
                    if ahead == 1 {
                        let delta = pkt.timestamp.wrapping_sub(ts);
                        if delta > 0 && delta <= self.clock_rate {
                            self.count_delta(delta);
                        }
                    }
                    if ahead > 0 && ahead < 0x8000 {
                        self.last_highest = Some((pkt.sequence, pkt.timestamp));
                    }
                }
                None => self.last_highest = Some((pkt.sequence, pkt.timestamp)),
            }
        }
    }

    fn count_delta(&mut self, delta: u32) {
        if let Some((_, n)) = self.ts_deltas.iter_mut().find(|(d, _)| *d == delta) {
            *n += 1;
        } else if self.ts_deltas.len() < MAX_TS_DELTAS {
            self.ts_deltas.push((delta, 1));
        }
    }

    /// Packets counted as received (RFC 3550 A.1), all sources.
    pub fn received(&self) -> u64 {
        self.retired_received + self.received
    }

    /// Packets expected (RFC 3550 A.3), all sources.
    pub fn expected(&self) -> u64 {
        (self.retired_expected + self.current_expected()).max(0) as u64
    }

    /// Cumulative packets lost; negative when duplicates arrived.
    pub fn lost(&self) -> i64 {
        self.retired_expected + self.current_expected() - self.received() as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.units_to_ms(self.jitter)
    }

    fn units_to_ms(&self, units: f64) -> f64 {
        if self.clock_rate == 0 {
            0.0
        } else {
            units * 1000.0 / f64::from(self.clock_rate)
        }
    }

    /// Loss since the previous call (RFC 3550 A.3), as for an RTCP report block.
    pub fn interval(&mut self) -> IntervalLoss {
        let expected = self.retired_expected + self.current_expected();
        let received = self.received();
        let expected_interval = expected - self.expected_prior;
        let received_interval = received as i64 - self.received_prior as i64;
        self.expected_prior = expected;
        self.received_prior = received;
        let lost = expected_interval - received_interval;
        let fraction_lost = if expected_interval <= 0 || lost <= 0 {
            0
        } else {
            ((lost << 8) / expected_interval).min(255) as u8
        };
        IntervalLoss {
            expected: expected_interval,
            received: received_interval,
            lost,
            fraction_lost,
        }
    }

    /// Snapshot of all counters.
    pub fn summary(&self) -> RtpStreamSummary {
        let expected = self.expected();
        let lost = self.lost();
        let lost_clamped = lost.max(0) as u64;
        let loss_percent = if expected == 0 {
            0.0
        } else {
            (lost_clamped as f64 * 100.0 / expected as f64).min(100.0)
        };
        let current = self.started && self.probation == 0 && self.received > 0;
        let timestamp_delta = self
            .ts_deltas
            .iter()
            .max_by_key(|(d, n)| (*n, std::cmp::Reverse(*d)))
            .map(|(d, _)| *d);
        let ptime_ms = timestamp_delta.map(|d| self.units_to_ms(f64::from(d)));
        let duration_ms = match (self.first_arrival, self.last_arrival) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let mut dscp = self.dscp.clone();
        dscp.sort_by_key(|c| c.dscp);
        let mut payload_types = self.payload_types.clone();
        payload_types.sort_by_key(|p| p.payload_type);
        RtpStreamSummary {
            clock_rate: self.clock_rate,
            packets: self.packets,
            payload_bytes: self.payload_bytes,
            received: self.received(),
            expected,
            lost,
            lost_clamped,
            loss_percent,
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            gaps: self.gaps.clone(),
            gaps_total: self.gaps_total,
            base_seq: current.then_some(self.base_ext.rem_euclid(RTP_SEQ_MOD) as u16),
            highest_seq_ext: current.then_some(self.ext_max().max(0) as u64),
            seq_cycles: self.wraps,
            seq_restarts: self.seq_restarts,
            jitter_ts: self.jitter,
            jitter_ms: self.jitter_ms(),
            max_jitter_ms: self.units_to_ms(self.max_jitter),
            payload_types,
            ssrcs: self.ssrcs.clone(),
            ssrc_changes: self.ssrc_changes,
            ssrc_changed: self.ssrc_changes > 0,
            dscp,
            dscp_unknown: self.dscp_unknown,
            marker_packets: self.marker_packets,
            timestamp_delta,
            ptime_ms,
            duration_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
            ..RtpHeader::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds (seq, ts, arrival ms) to fresh stats.
    fn feed(packets: &[(u16, u32, u64)]) -> ReceiverStats {
        let mut stats = ReceiverStats::new(8000);
        for &(seq, ts, at) in packets {
            stats.record(&header(seq, ts), 160, ms(at), Some(46));
        }
        stats
    }

    /// A perfectly paced stream: seq from `first`, 160 samples / 20 ms per packet.
    fn paced(first: u16, n: u16) -> Vec<(u16, u32, u64)> {
        (0..n)
            .map(|i| {
                (
                    first.wrapping_add(i),
                    1000 + u32::from(i) * 160,
                    u64::from(i) * 20,
                )
            })
            .collect()
    }

    #[test]
    fn parse_minimal_packet() {
        let mut data = vec![
            0x80, 0x00, 0x12, 0x34, 0, 0, 0x01, 0x00, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        data.extend_from_slice(&[0xFF; 160]);
        let p = RtpPacket::parse(&data).unwrap();
        assert_eq!(p.header.version, 2);
        assert!(!p.header.marker);
        assert_eq!(p.header.payload_type, 0);
        assert_eq!(p.header.sequence, 0x1234);
        assert_eq!(p.header.timestamp, 256);
        assert_eq!(p.header.ssrc, 0xDEAD_BEEF);
        assert_eq!(p.payload.len(), 160);
        assert_eq!(p.to_vec(), data);
    }

    #[test]
    fn round_trip_with_csrc_extension_and_padding() {
        let payload = [1u8, 2, 3, 4, 5];
        let p = RtpPacket {
            header: RtpHeader {
                padding: true,
                extension: true,
                marker: true,
                payload_type: 101,
                sequence: 65535,
                timestamp: u32::MAX,
                ssrc: 7,
                csrc: vec![1, 2, 3],
                extension_header: Some(RtpExtension {
                    profile: 0xBEDE,
                    data: vec![0x10, 0xAA, 0, 0],
                }),
                ..RtpHeader::default()
            },
            payload: &payload,
            padding_len: 3,
        };
        let bytes = p.to_vec();
        assert_eq!(bytes.len(), 12 + 12 + 4 + 4 + 5 + 3);
        assert_eq!(bytes[0], 0x80 | 0x20 | 0x10 | 3);
        assert_eq!(bytes[1], 0x80 | 101);
        assert_eq!(*bytes.last().unwrap(), 3);
        let q = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(q, p);
    }

    #[test]
    fn extension_flag_without_data_writes_empty_extension() {
        let h = RtpHeader {
            extension: true,
            ..RtpHeader::default()
        };
        let bytes = RtpPacket::new(h, &[9]).to_vec();
        assert_eq!(bytes.len(), 12 + 4 + 1);
        let q = RtpPacket::parse(&bytes).unwrap();
        assert_eq!(q.header.extension_header, Some(RtpExtension::default()));
        assert_eq!(q.payload, &[9]);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { len: 11 })
        );
        let mut v1 = vec![0x40u8, 0];
        v1.extend_from_slice(&[0; 10]);
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));

        let mut cc = vec![0x82u8, 0];
        cc.extend_from_slice(&[0; 14]);
        assert_eq!(
            RtpPacket::parse(&cc),
            Err(RtpError::CsrcOverrun {
                count: 2,
                needed: 20,
                len: 16
            })
        );

        let mut ext = vec![0x90u8, 0];
        ext.extend_from_slice(&[0; 12]);
        assert_eq!(
            RtpPacket::parse(&ext),
            Err(RtpError::ExtensionHeaderTruncated {
                offset: 12,
                available: 2
            })
        );
        let mut ext = vec![0x90u8, 0];
        ext.extend_from_slice(&[0; 10]);
        ext.extend_from_slice(&[0xBE, 0xDE, 0, 2, 1, 2, 3, 4]);
        let err = RtpPacket::parse(&ext).unwrap_err();
        assert_eq!(
            err,
            RtpError::ExtensionOverrun {
                words: 2,
                bytes: 8,
                available: 4,
                offset: 16
            }
        );
        assert!(err.to_string().contains("extension length 2 words"));

        let mut pad = vec![0xA0u8, 0];
        pad.extend_from_slice(&[0; 10]);
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::PaddingMissing));
        pad.extend_from_slice(&[1, 2, 0]);
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::PaddingInvalid {
                count: 0,
                available: 3
            })
        );
        pad.pop();
        pad.push(4);
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::PaddingInvalid {
                count: 4,
                available: 3
            })
        );
        pad.pop();
        pad.push(3);
        let p = RtpPacket::parse(&pad).unwrap();
        assert!(p.payload.is_empty());
        assert_eq!(p.padding_len, 3);
    }

    #[test]
    fn parse_never_panics_on_short_prefixes() {
        let p = RtpPacket {
            header: RtpHeader {
                padding: true,
                csrc: vec![1, 2],
                extension_header: Some(RtpExtension {
                    profile: 1,
                    data: vec![1, 2, 3, 4, 5, 6, 7, 8],
                }),
                ..RtpHeader::default()
            },
            payload: &[1, 2, 3],
            padding_len: 2,
        };
        let bytes = p.to_vec();
        for n in 0..bytes.len() {
            let _ = RtpPacket::parse(&bytes[..n]);
            let _ = looks_like_rtp(&bytes[..n]);
        }
        for b0 in 0..=255u8 {
            let mut data = bytes.clone();
            data[0] = b0;
            let _ = RtpPacket::parse(&data);
        }
    }

    #[test]
    fn rtp_versus_rtcp_heuristic() {
        let mut sender = RtpSender::new(1, 0, 0, 0, 160);
        assert!(looks_like_rtp(&sender.next_packet(&[0xFF; 160])));
        // RTCP sender report: V=2, PT=200.
        let sr = [0x80u8, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(!looks_like_rtp(&sr));
        let rr = [0x81u8, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(!looks_like_rtp(&rr));
        // STUN binding request starts with 0x00 0x01.
        let stun = [0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0];
        assert!(!looks_like_rtp(&stun));
        assert!(!looks_like_rtp(&[0x80, 0]));
        // CSRC count pointing past the end.
        assert!(!looks_like_rtp(&[0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn sender_numbers_packets() {
        let mut s = RtpSender::new(0xCAFE, 0, 65534, u32::MAX - 159, 160);
        assert_eq!(s.clock_rate, 8000);
        assert_eq!(s.packet_duration(), ms(20));
        let payload = [0xFFu8; 160];
        let packets: Vec<Vec<u8>> = (0..3).map(|_| s.next_packet(&payload)).collect();
        let parsed: Vec<RtpPacket> = packets
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap())
            .collect();
        assert!(parsed[0].header.marker);
        assert!(!parsed[1].header.marker);
        assert!(!parsed[2].header.marker);
        assert_eq!(
            parsed.iter().map(|p| p.header.sequence).collect::<Vec<_>>(),
            vec![65534, 65535, 0]
        );
        assert_eq!(
            parsed
                .iter()
                .map(|p| p.header.timestamp)
                .collect::<Vec<_>>(),
            vec![u32::MAX - 159, 0, 160]
        );
        assert!(parsed
            .iter()
            .all(|p| p.header.ssrc == 0xCAFE && p.payload == payload));
        s.skip_timestamp(2);
        assert_eq!(s.timestamp, 160 * 4);
        assert_eq!(s.seq, 1);
        let wide = RtpSender::new(1, 96, 0, 0, 320).with_clock_rate(16_000);
        assert_eq!(wide.packet_duration(), ms(20));
    }

    #[test]
    fn in_order_stream() {
        let stats = feed(&paced(1000, 50));
        let s = stats.summary();
        assert_eq!(s.packets, 50);
        assert_eq!(s.received, 50);
        assert_eq!(s.expected, 50);
        assert_eq!(s.lost, 0);
        assert_eq!(s.duplicates, 0);
        assert_eq!(s.out_of_order, 0);
        assert!(s.gaps.is_empty());
        assert_eq!(s.jitter_ts, 0.0);
        assert_eq!(s.jitter_ms, 0.0);
        assert_eq!(s.timestamp_delta, Some(160));
        assert_eq!(s.ptime_ms, Some(20.0));
        assert_eq!(s.base_seq, Some(1000));
        assert_eq!(s.highest_seq_ext, Some(1049));
        assert_eq!(s.payload_bytes, 50 * 160);
        assert_eq!(
            s.dscp,
            vec![DscpCount {
                dscp: 46,
                packets: 50
            }]
        );
        assert_eq!(s.ssrcs, vec![0x1234_5678]);
        assert!(!s.ssrc_changed);
        assert_eq!(s.duration_ms, 980.0);
    }

    #[test]
    fn loss_is_counted_with_gaps() {
        let packets: Vec<_> = paced(1, 30)
            .into_iter()
            .filter(|(seq, _, _)| ![10, 20, 21, 22].contains(seq))
            .collect();
        let s = feed(&packets).summary();
        assert_eq!(s.received, 26);
        assert_eq!(s.expected, 30);
        assert_eq!(s.lost, 4);
        assert_eq!(s.lost_clamped, 4);
        assert!((s.loss_percent - 100.0 * 4.0 / 30.0).abs() < 1e-9);
        assert_eq!(
            s.gaps,
            vec![SeqGap { from: 10, to: 10 }, SeqGap { from: 20, to: 22 }]
        );
        assert_eq!(s.gaps[1].len(), 3);
        assert_eq!(s.gaps_total, 2);
        // Timestamps stay regular, so the jitter is 0 despite the loss.
        assert_eq!(s.jitter_ts, 0.0);
    }

    #[test]
    fn reordered_packets() {
        let mut packets = paced(1, 10);
        packets.swap(4, 5); // seq 6 arrives before 5
                            // Keep arrival times increasing in arrival order.
        for (i, p) in packets.iter_mut().enumerate() {
            p.2 = i as u64 * 20;
        }
        let s = feed(&packets).summary();
        assert_eq!(s.received, 10);
        assert_eq!(s.expected, 10);
        assert_eq!(s.lost, 0);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.duplicates, 0);
        assert_eq!(s.gaps, vec![SeqGap { from: 5, to: 5 }]);
    }

    #[test]
    fn duplicates_make_lost_negative() {
        let mut packets = paced(1, 10);
        packets.insert(5, packets[4]); // seq 5 twice in a row
        packets.insert(8, packets[2]); // seq 3 again later
        let s = feed(&packets).summary();
        assert_eq!(s.packets, 12);
        assert_eq!(s.duplicates, 2);
        assert_eq!(s.out_of_order, 0);
        assert_eq!(s.received, 12);
        assert_eq!(s.expected, 10);
        assert_eq!(s.lost, -2);
        assert_eq!(s.lost_clamped, 0);
        assert_eq!(s.loss_percent, 0.0);
    }

    #[test]
    fn sequence_wraparound() {
        let s = feed(&paced(65530, 20)).summary();
        assert_eq!(s.received, 20);
        assert_eq!(s.expected, 20);
        assert_eq!(s.lost, 0);
        assert_eq!(s.seq_cycles, 1);
        assert_eq!(s.base_seq, Some(65530));
        assert_eq!(s.highest_seq_ext, Some(65536 + 13));
        assert!(s.gaps.is_empty());

        // Loss and reordering across the wrap.
        let mut packets: Vec<_> = paced(65530, 20).into_iter().filter(|p| p.0 != 0).collect();
        let late = packets.remove(4); // 65534 arrives after 65535
        packets.insert(5, late);
        let s = feed(&packets).summary();
        assert_eq!(s.expected, 20);
        assert_eq!(s.received, 19);
        assert_eq!(s.lost, 1);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(
            s.gaps,
            vec![
                SeqGap {
                    from: 65534,
                    to: 65534
                },
                SeqGap { from: 0, to: 0 }
            ]
        );
        assert_eq!(s.gaps[1].len(), 1);
        let wrap_gap = SeqGap { from: 65535, to: 1 };
        assert_eq!(wrap_gap.len(), 3);
    }

    #[test]
    fn jitter_of_known_deltas() {
        // Transit times (arrival - timestamp) in timestamp units: 0, 0, 40, 0, 0.
        // D: 0, 40, 40, 0. J = 0 -> 0 -> 40/16 = 2.5 -> 2.5 + 37.5/16 = 4.84375
        //    -> 4.84375 - 4.84375/16 = 4.541015625.
        let packets = [
            (1, 0, 0),
            (2, 160, 20),
            (3, 320, 45),
            (4, 480, 60),
            (5, 640, 80),
        ];
        let stats = feed(&packets);
        assert_eq!(stats.jitter(), 4.541_015_625);
        assert_eq!(stats.jitter_ms(), 4.541_015_625 / 8.0);
        let s = stats.summary();
        assert_eq!(s.jitter_ts, 4.541_015_625);
        assert_eq!(s.max_jitter_ms, 4.843_75 / 8.0);
    }

    #[test]
    fn jitter_handles_timestamp_wrap() {
        let packets: Vec<_> = (0..10u16)
            .map(|i| {
                (
                    i,
                    (u32::MAX - 480).wrapping_add(u32::from(i) * 160),
                    u64::from(i) * 20,
                )
            })
            .collect();
        assert_eq!(feed(&packets).jitter(), 0.0);
    }

    #[test]
    fn probation_and_restart() {
        let mut stats = ReceiverStats::new(8000);
        // A lone packet does not validate the source.
        stats.record(&header(100, 0), 160, ms(0), None);
        assert_eq!(stats.received(), 0);
        assert_eq!(stats.expected(), 0);
        // The next packet is not sequential: probation starts again.
        stats.record(&header(500, 160), 160, ms(20), None);
        assert_eq!(stats.received(), 0);
        stats.record(&header(501, 320), 160, ms(40), None);
        assert_eq!(stats.received(), 2);
        assert_eq!(stats.expected(), 2);
        // A large jump is ignored once...
        stats.record(&header(20_000, 480), 160, ms(60), None);
        assert_eq!(stats.received(), 2);
        // ...and accepted as a restart when the next packet follows it.
        stats.record(&header(20_001, 640), 160, ms(80), None);
        stats.record(&header(20_002, 800), 160, ms(100), None);
        let s = stats.summary();
        assert_eq!(s.seq_restarts, 1);
        assert_eq!(s.received, 4);
        assert_eq!(s.expected, 4);
        assert_eq!(s.base_seq, Some(20_001));
        assert_eq!(s.packets, 6);
        assert_eq!(s.dscp_unknown, 6);
    }

    #[test]
    fn ssrc_change_is_flagged() {
        let mut stats = feed(&paced(10, 5));
        let mut h = header(7000, 0);
        h.ssrc = 0x9999;
        h.marker = true;
        for i in 0..5u16 {
            h.sequence = 7000 + i;
            h.timestamp = u32::from(i) * 160;
            stats.record(&h, 160, ms(200 + u64::from(i) * 20), Some(0));
            h.marker = false;
        }
        let s = stats.summary();
        assert!(s.ssrc_changed);
        assert_eq!(s.ssrc_changes, 1);
        assert_eq!(s.ssrcs, vec![0x1234_5678, 0x9999]);
        assert_eq!(s.received, 10);
        assert_eq!(s.expected, 10);
        assert_eq!(s.lost, 0);
        assert_eq!(s.marker_packets, 1);
        assert_eq!(
            s.dscp,
            vec![
                DscpCount {
                    dscp: 0,
                    packets: 5
                },
                DscpCount {
                    dscp: 46,
                    packets: 5
                }
            ]
        );
        assert_eq!(s.jitter_ts, 0.0);
    }

    #[test]
    fn payload_types_and_ptime() {
        let mut stats = ReceiverStats::new(8000);
        for i in 0..20u16 {
            let mut h = header(i, u32::from(i) * 240);
            h.payload_type = if i % 10 == 9 { 101 } else { 8 };
            stats.record(&h, 240, ms(u64::from(i) * 30), None);
        }
        let s = stats.summary();
        assert_eq!(
            s.payload_types,
            vec![
                PayloadTypeCount {
                    payload_type: 8,
                    packets: 18
                },
                PayloadTypeCount {
                    payload_type: 101,
                    packets: 2
                }
            ]
        );
        assert_eq!(s.ptime_ms, Some(30.0));
    }

    #[test]
    fn gap_list_is_bounded() {
        // Two sequential packets pass probation, then every other packet is lost.
        let packets: Vec<_> = [0u16, 1]
            .into_iter()
            .chain((1..=300u16).map(|i| 1 + 2 * i))
            .map(|seq| (seq, u32::from(seq) * 160, u64::from(seq) * 20))
            .collect();
        let s = feed(&packets).summary();
        assert_eq!(s.gaps.len(), MAX_GAPS);
        assert_eq!(s.gaps[0], SeqGap { from: 2, to: 2 });
        assert_eq!(s.gaps_total, 300);
        assert_eq!(s.lost, 300);
        assert_eq!(s.received, 302);
    }

    #[test]
    fn interval_fraction_lost() {
        let mut stats = ReceiverStats::new(8000);
        for (seq, ts, at) in paced(1, 8) {
            if seq != 4 && seq != 6 {
                stats.record(&header(seq, ts), 160, ms(at), None);
            }
        }
        let first = stats.interval();
        assert_eq!(first.expected, 8);
        assert_eq!(first.received, 6);
        assert_eq!(first.lost, 2);
        assert_eq!(first.fraction_lost, 64); // 2/8 * 256
        let second = stats.interval();
        assert_eq!(second.expected, 0);
        assert_eq!(second.fraction_lost, 0);
    }

    #[test]
    fn summary_serializes() {
        let json = serde_json::to_value(feed(&paced(1, 3)).summary()).unwrap();
        assert_eq!(json["received"], 3);
        assert_eq!(json["lost"], 0);
        assert_eq!(json["ptime_ms"], 20.0);
        assert_eq!(json["dscp"][0]["dscp"], 46);
    }
}
