//! A page's media, sans-IO: every 20 ms tick yields what to send. Before the go-ahead the
//! caller hears the low stall tone; then the high go-ahead tone; from then on the caller's
//! audio goes out as one multicast stream of its own (payload type 0, 160-byte packets, its
//! own SSRC, continuous sequence numbers and timestamps, the marker on the first packet).
//!
//! The stream is paced by the tick, not by the caller's packets: a late caller packet is
//! covered by a frame of silence so the phones hear an unbroken stream, and caller audio that
//! arrives faster than real time is kept up to [`MAX_QUEUED_FRAMES`] and then the oldest is
//! dropped (a page should not lag behind the speaker).

use std::collections::VecDeque;

use crate::media::g711::linear_to_ulaw;
use crate::media::rtp::RtpSender;
use crate::media::tone;

/// Samples in one 20 ms packet of G.711 at 8 kHz.
pub const FRAME: usize = 160;
/// Caller audio held for the multicast stream at most (200 ms).
pub const MAX_QUEUED_FRAMES: usize = 10;
/// mu-law silence.
const SILENCE: u8 = 0xFF;

/// Where the page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Phones are joining; the caller hears the stall tone.
    Stall,
    /// Every phone joined or the join timeout passed; the caller hears the go-ahead tone.
    GoAhead,
    /// The caller's audio goes to the group.
    Live,
}

/// What one tick sends.
#[derive(Debug, Default)]
pub struct Tick {
    /// An RTP packet to the caller (the tones).
    pub to_caller: Option<Vec<u8>>,
    /// An RTP packet to the multicast group.
    pub to_group: Option<Vec<u8>>,
}

/// Counters for the page report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamCounts {
    /// RTP packets from the caller that carried audio (PT 0).
    pub caller_packets: u64,
    /// Packets from the caller that were not PCMU audio, ignored.
    pub caller_ignored: u64,
    /// Packets sent to the multicast group.
    pub group_packets: u64,
    /// Of those, frames of silence covering late caller audio.
    pub silence_frames: u64,
    /// Caller frames dropped because they came faster than real time.
    pub dropped_frames: u64,
}

pub struct PageStream {
    phase: Phase,
    stall: Vec<u8>,
    stall_pos: usize,
    go_ahead: Vec<u8>,
    go_ahead_pos: usize,
    to_caller: RtpSender,
    to_group: RtpSender,
    queue: VecDeque<u8>,
    /// Live has begun and the queue has filled once (a frame of slack against jitter).
    primed: bool,
    pub counts: StreamCounts,
}

fn ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_ulaw(s)).collect()
}

impl PageStream {
    /// `caller` and `group` seed the two RTP streams: (SSRC, first sequence, first timestamp).
    pub fn new(caller: (u32, u16, u32), group: (u32, u16, u32)) -> PageStream {
        let rate = 8000;
        PageStream {
            phase: Phase::Stall,
            stall: ulaw(&tone::stall_tone(rate, 1)),
            stall_pos: 0,
            go_ahead: ulaw(&tone::go_ahead_tone(rate)),
            go_ahead_pos: 0,
            to_caller: RtpSender::new(caller.0, 0, caller.1, caller.2, FRAME as u32),
            to_group: RtpSender::new(group.0, 0, group.1, group.2, FRAME as u32),
            queue: VecDeque::with_capacity(FRAME * (MAX_QUEUED_FRAMES + 1)),
            primed: false,
            counts: StreamCounts::default(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Every phone has joined, or the join timeout passed: play the go-ahead tone.
    pub fn go_ahead(&mut self) {
        if self.phase == Phase::Stall {
            self.phase = Phase::GoAhead;
        }
    }

    /// A datagram from the caller. Only PCMU audio counts; before the page is live it is
    /// discarded (the caller speaks after the go-ahead tone).
    pub fn caller_packet(&mut self, datagram: &[u8]) {
        let Ok(p) = crate::media::rtp::RtpPacket::parse(datagram) else {
            self.counts.caller_ignored += 1;
            return;
        };
        if p.header.payload_type != 0 {
            self.counts.caller_ignored += 1;
            return;
        }
        self.counts.caller_packets += 1;
        if self.phase != Phase::Live {
            return;
        }
        self.queue.extend(p.payload.iter().copied());
        let max = FRAME * MAX_QUEUED_FRAMES;
        if self.queue.len() > max {
            let excess = self.queue.len() - max;
            let frames = excess.div_ceil(FRAME);
            let drop = (frames * FRAME).min(self.queue.len());
            self.queue.drain(..drop);
            self.counts.dropped_frames += frames as u64;
        }
    }

    /// The 20 ms tick.
    pub fn tick(&mut self) -> Tick {
        let mut t = Tick::default();
        match self.phase {
            Phase::Stall => {
                let frame = cycle(&self.stall, &mut self.stall_pos);
                t.to_caller = Some(self.to_caller.next_packet(&frame));
            }
            Phase::GoAhead => {
                let end = (self.go_ahead_pos + FRAME).min(self.go_ahead.len());
                let mut frame = self.go_ahead[self.go_ahead_pos..end].to_vec();
                frame.resize(FRAME, SILENCE);
                self.go_ahead_pos = end;
                t.to_caller = Some(self.to_caller.next_packet(&frame));
                if self.go_ahead_pos >= self.go_ahead.len() {
                    self.phase = Phase::Live;
                }
            }
            Phase::Live => {
                if !self.primed && self.queue.len() >= 2 * FRAME {
                    self.primed = true;
                }
                let frame: Vec<u8> = if self.primed && self.queue.len() >= FRAME {
                    self.queue.drain(..FRAME).collect()
                } else {
                    if self.primed {
                        self.counts.silence_frames += 1;
                    }
                    vec![SILENCE; FRAME]
                };
                self.counts.group_packets += 1;
                t.to_group = Some(self.to_group.next_packet(&frame));
            }
        }
        t
    }
}

fn cycle(samples: &[u8], pos: &mut usize) -> Vec<u8> {
    if samples.is_empty() {
        return vec![SILENCE; FRAME];
    }
    let out = (0..FRAME)
        .map(|i| samples[(*pos + i) % samples.len()])
        .collect();
    *pos = (*pos + FRAME) % samples.len();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::g711::ulaw_to_linear;
    use crate::media::rtp::{RtpHeader, RtpPacket};

    fn caller_rtp(seq: u16, byte: u8) -> Vec<u8> {
        let h = RtpHeader {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 7,
            ..RtpHeader::default()
        };
        RtpPacket::new(h, &[byte; FRAME]).to_vec()
    }

    fn decode(pkt: &[u8]) -> (RtpHeader, Vec<u8>) {
        let p = RtpPacket::parse(pkt).expect("our packet parses");
        (p.header.clone(), p.payload.to_vec())
    }

    #[test]
    fn stall_then_go_ahead_then_the_callers_audio_in_order() {
        let mut s = PageStream::new((1, 100, 1000), (2, 65534, 4_294_967_000));
        // Stall: tone to the caller only, at the stall frequency; caller audio is dropped.
        let mut stall = Vec::new();
        for i in 0..20 {
            s.caller_packet(&caller_rtp(i, 0x11));
            let t = s.tick();
            assert!(t.to_group.is_none());
            stall.extend(decode(&t.to_caller.unwrap()).1);
        }
        let pcm: Vec<i16> = stall.iter().map(|&b| ulaw_to_linear(b)).collect();
        assert!(tone::tone_present(&pcm[..1600], 8000, tone::STALL_TONE_HZ));
        s.go_ahead();
        let mut ahead = Vec::new();
        while s.phase() == Phase::GoAhead {
            let t = s.tick();
            assert!(t.to_group.is_none());
            ahead.extend(decode(&t.to_caller.unwrap()).1);
        }
        let pcm: Vec<i16> = ahead.iter().map(|&b| ulaw_to_linear(b)).collect();
        assert!(tone::tone_present(&pcm, 8000, tone::GO_AHEAD_TONE_HZ));
        // Live: frames 1..=30 from the caller come out in order after one frame of slack.
        let mut out = Vec::new();
        for i in 1..=30u8 {
            s.caller_packet(&caller_rtp(u16::from(i), i));
            if let Some(p) = s.tick().to_group {
                out.push(decode(&p));
            }
        }
        let (first, _) = &out[0];
        assert!(first.marker, "the marker is on the first packet");
        assert_eq!(first.payload_type, 0);
        assert_eq!(first.ssrc, 2);
        for w in out.windows(2) {
            assert_eq!(w[1].0.sequence, w[0].0.sequence.wrapping_add(1));
            assert_eq!(w[1].0.timestamp, w[0].0.timestamp.wrapping_add(160));
            assert!(!w[1].0.marker);
        }
        let audio: Vec<u8> = out
            .iter()
            .map(|(_, p)| p[0])
            .filter(|&b| b != SILENCE)
            .collect();
        assert_eq!(audio, (1..=29).collect::<Vec<u8>>());
        assert_eq!(s.counts.silence_frames, 0);
        assert_eq!(s.counts.group_packets, 30);
    }

    #[test]
    fn late_audio_is_covered_with_silence_and_a_flood_is_trimmed() {
        let mut s = PageStream::new((1, 1, 1), (2, 1, 1));
        s.go_ahead();
        while s.phase() != Phase::Live {
            s.tick();
        }
        s.caller_packet(&caller_rtp(1, 1));
        s.caller_packet(&caller_rtp(2, 2));
        assert_eq!(decode(&s.tick().to_group.unwrap()).1[0], 1);
        assert_eq!(decode(&s.tick().to_group.unwrap()).1[0], 2);
        // The caller is late: silence keeps the stream going.
        assert_eq!(decode(&s.tick().to_group.unwrap()).1[0], SILENCE);
        assert_eq!(s.counts.silence_frames, 1);
        for i in 0..50 {
            s.caller_packet(&caller_rtp(10 + i, 9));
        }
        assert_eq!(s.counts.dropped_frames, 40);
        // Non-audio is ignored.
        let mut dtmf = caller_rtp(99, 1);
        dtmf[1] = 101;
        s.caller_packet(&dtmf);
        s.caller_packet(b"junk");
        assert_eq!(s.counts.caller_ignored, 2);
    }
}
