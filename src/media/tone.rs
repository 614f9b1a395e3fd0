//! Tone generation, the two paging cues, and Goertzel tone detection.
//!
//! UNCONFIRMED: the paging cues below are this project's own choice, not a
//! documented vendor value. Paging systems differ: the "stall" (please wait) cue
//! here is a low 440 Hz tone, 200 ms on / 200 ms off, repeated while the page is
//! being set up; the "go-ahead" (start talking) cue is a high 1400 Hz tone, two
//! 100 ms beeps separated by 100 ms. Replace the constants if a capture of the
//! real equipment shows different values.

use std::f64::consts::PI;

/// Frequency of the "stall" (please wait) cue. UNCONFIRMED vendor-specific choice.
pub const STALL_TONE_HZ: f32 = 440.0;
/// On time of one stall cycle.
pub const STALL_ON_MS: u32 = 200;
/// Off time of one stall cycle.
pub const STALL_OFF_MS: u32 = 200;
/// Frequency of the "go-ahead" (start talking) cue. UNCONFIRMED vendor-specific choice.
pub const GO_AHEAD_TONE_HZ: f32 = 1400.0;
/// Length of one go-ahead beep.
pub const GO_AHEAD_BEEP_MS: u32 = 100;
/// Gap between the go-ahead beeps.
pub const GO_AHEAD_GAP_MS: u32 = 100;
/// Number of go-ahead beeps.
pub const GO_AHEAD_BEEPS: u32 = 2;
/// Amplitude of the cues (about -10 dBFS).
pub const CUE_AMPLITUDE: f32 = 0.3;
/// Ramp applied to both ends of each cue burst, against clicks.
pub const CUE_RAMP_MS: u32 = 5;
/// [`detect_tone`] ratio above which a tone counts as present.
pub const DETECT_THRESHOLD: f32 = 0.5;

fn samples_for(ms: u32, rate: u32) -> usize {
    (u64::from(ms) * u64::from(rate) / 1000) as usize
}

/// A sine tone of `freq_hz` lasting `ms` milliseconds at `rate` samples per second.
/// `amplitude` is a fraction of full scale, clamped to 0..=1.
pub fn tone(freq_hz: f32, ms: u32, amplitude: f32, rate: u32) -> Vec<i16> {
    let n = samples_for(ms, rate);
    if rate == 0 {
        return Vec::new();
    }
    let amp = f64::from(amplitude.clamp(0.0, 1.0)) * f64::from(i16::MAX);
    let step = 2.0 * PI * f64::from(freq_hz) / f64::from(rate);
    (0..n)
        .map(|i| (amp * (step * i as f64).sin()).round() as i16)
        .collect()
}

/// `ms` milliseconds of silence.
pub fn silence(ms: u32, rate: u32) -> Vec<i16> {
    vec![0; samples_for(ms, rate)]
}

/// Applies a raised-cosine fade-in and fade-out of `ramp_ms` to `samples`.
pub fn apply_ramp(samples: &mut [i16], ramp_ms: u32, rate: u32) {
    let n = samples_for(ramp_ms, rate).min(samples.len() / 2);
    if n == 0 {
        return;
    }
    let len = samples.len();
    for i in 0..n {
        let gain = 0.5 - 0.5 * (PI * i as f64 / n as f64).cos();
        for idx in [i, len - 1 - i] {
            if let Some(s) = samples.get_mut(idx) {
                *s = (f64::from(*s) * gain).round() as i16;
            }
        }
    }
}

fn burst(freq: f32, ms: u32, rate: u32) -> Vec<i16> {
    let mut t = tone(freq, ms, CUE_AMPLITUDE, rate);
    apply_ramp(&mut t, CUE_RAMP_MS, rate);
    t
}

/// `cycles` cycles of the stall cue (tone on, then silence).
pub fn stall_tone(rate: u32, cycles: u32) -> Vec<i16> {
    let mut out = Vec::new();
    for _ in 0..cycles {
        out.extend(burst(STALL_TONE_HZ, STALL_ON_MS, rate));
        out.extend(silence(STALL_OFF_MS, rate));
    }
    out
}

/// The go-ahead cue: two short high beeps with a gap between them, no trailing
/// silence.
pub fn go_ahead_tone(rate: u32) -> Vec<i16> {
    let mut out = Vec::new();
    for i in 0..GO_AHEAD_BEEPS {
        if i > 0 {
            out.extend(silence(GO_AHEAD_GAP_MS, rate));
        }
        out.extend(burst(GO_AHEAD_TONE_HZ, GO_AHEAD_BEEP_MS, rate));
    }
    out
}

/// Share of the signal's power at `freq` (Goertzel algorithm): about 1.0 for a
/// pure tone at `freq`, about 0.0 for silence or other frequencies, clamped to
/// 0..=1. The block is the whole of `samples`; pass 20-100 ms of audio (longer
/// blocks separate closer frequencies).
pub fn detect_tone(samples: &[i16], rate: u32, freq: f32) -> f32 {
    if samples.is_empty() || rate == 0 {
        return 0.0;
    }
    let omega = 2.0 * PI * f64::from(freq) / f64::from(rate);
    let coeff = 2.0 * omega.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy <= 0.0 {
        return 0.0;
    }
    // |X(freq)|^2 for a (possibly non-integer) bin.
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    // A sine of amplitude A gives power (A*N/2)^2 and energy A^2*N/2.
    let ratio = 2.0 * power / (n * energy);
    ratio.clamp(0.0, 1.0) as f32
}

/// Whether `freq` dominates `samples` (ratio above [`DETECT_THRESHOLD`]).
pub fn tone_present(samples: &[i16], rate: u32, freq: f32) -> bool {
    detect_tone(samples, rate, freq) > DETECT_THRESHOLD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_length_and_amplitude() {
        let t = tone(1000.0, 20, 0.5, 8000);
        assert_eq!(t.len(), 160);
        let peak = t.iter().map(|s| i32::from(*s).abs()).max().unwrap();
        assert!((16_000..=16_384).contains(&peak), "peak {peak}");
        assert_eq!(t[0], 0);
        assert!(tone(1000.0, 20, 3.0, 8000).iter().all(|s| *s > -32_768));
        assert!(tone(1000.0, 20, -1.0, 8000).iter().all(|s| *s == 0));
        assert!(tone(1000.0, 20, 1.0, 0).is_empty());
        assert_eq!(silence(100, 8000), vec![0; 800]);
        assert_eq!(silence(10, 44_100).len(), 441);
    }

    #[test]
    fn detection_distinguishes_440_from_1400() {
        for rate in [8000, 16_000] {
            let low = tone(440.0, 100, 0.5, rate);
            let high = tone(1400.0, 100, 0.5, rate);
            assert!(detect_tone(&low, rate, 440.0) > 0.9);
            assert!(detect_tone(&low, rate, 1400.0) < 0.01);
            assert!(detect_tone(&high, rate, 1400.0) > 0.9);
            assert!(detect_tone(&high, rate, 440.0) < 0.01);
            assert!(tone_present(&high, rate, GO_AHEAD_TONE_HZ));
            assert!(!tone_present(&low, rate, GO_AHEAD_TONE_HZ));
        }
    }

    #[test]
    fn detection_of_silence_and_mixtures() {
        assert_eq!(detect_tone(&[], 8000, 440.0), 0.0);
        assert_eq!(detect_tone(&silence(50, 8000), 8000, 440.0), 0.0);
        let a = tone(440.0, 100, 0.3, 8000);
        let b = tone(1400.0, 100, 0.3, 8000);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let r440 = detect_tone(&mix, 8000, 440.0);
        let r1400 = detect_tone(&mix, 8000, 1400.0);
        assert!((0.4..0.6).contains(&r440), "{r440}");
        assert!((0.4..0.6).contains(&r1400), "{r1400}");
    }

    #[test]
    fn cues_have_the_documented_shape() {
        let stall = stall_tone(8000, 3);
        assert_eq!(stall.len(), 3 * 400 * 8);
        // Each cycle: 200 ms of 440 Hz then 200 ms of silence.
        let on = &stall[..1600];
        let off = &stall[1600..3200];
        assert!(tone_present(on, 8000, STALL_TONE_HZ));
        assert!(off.iter().all(|s| *s == 0));
        // Ramps: starts and ends at (near) zero.
        assert_eq!(on[0], 0);
        assert!(i32::from(on[1599]).abs() < 200);

        let go = go_ahead_tone(8000);
        assert_eq!(go.len(), 300 * 8);
        assert!(tone_present(&go[..800], 8000, GO_AHEAD_TONE_HZ));
        assert!(!tone_present(&go[..800], 8000, STALL_TONE_HZ));
        assert!(go[800..1600].iter().all(|s| *s == 0));
        assert!(tone_present(&go[1600..], 8000, GO_AHEAD_TONE_HZ));
    }

    #[test]
    fn detection_survives_g711() {
        use crate::media::g711::{decode_ulaw, encode_ulaw};
        let go = go_ahead_tone(8000);
        let received = decode_ulaw(&encode_ulaw(&go[..800]));
        assert!(detect_tone(&received, 8000, GO_AHEAD_TONE_HZ) > 0.9);
    }
}
