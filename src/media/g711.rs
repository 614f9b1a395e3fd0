//! G.711 (ITU-T Recommendation G.711) mu-law and A-law companding.
//!
//! Both codecs map one 16-bit linear PCM sample to one 8-bit code and back. The
//! encoders follow the segment (chord) definition of G.711 tables 1a/2a applied to
//! 16-bit input, as in the widely used reference implementation that accompanies
//! the standard:
//!
//! * mu-law: take the magnitude, clip it at 32635, add the bias 0x84 (132), find the
//!   segment (position of the highest set bit above bit 7), keep the 4 bits below
//!   it as the mantissa, and complement the result (`~(sign | seg << 4 | mant)`).
//!   Silence (0) encodes to 0xFF. Codes 0x7F and 0xFF both decode to 0 ("negative
//!   zero" and "positive zero").
//! * A-law: work on the 13 most significant bits, search the segment, and invert
//!   the even bits (XOR 0x55; positive samples additionally carry the sign bit,
//!   XOR 0xD5). A-law has no zero code: 0 encodes to 0xD5, which decodes to 8.
//!
//! The decoders return the midpoint of each quantisation interval, scaled to 16
//! bits (mu-law: +-32124 at full scale, A-law: +-32256).

/// mu-law bias added to the magnitude before the segment search.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude that can be biased without overflowing 15 bits.
const ULAW_CLIP: i32 = 32635;

/// Encodes one 16-bit linear sample as a G.711 mu-law code.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign: i32 = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS;
    // pcm is now in 132..=32767: the segment is the position of the highest set bit
    // minus 7 (bit 7 set -> segment 0, ..., bit 14 set -> segment 7).
    let highest_bit = 31 - pcm.leading_zeros() as i32;
    let exponent = (highest_bit - 7).clamp(0, 7);
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    // Truncation to u8 is intended: all three parts fit in 8 bits.
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one G.711 mu-law code to a 16-bit linear sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // magnitude is at most 32124, so it always fits.
    let value = if u & 0x80 != 0 { -magnitude } else { magnitude };
    value as i16
}

/// Upper bounds (inclusive) of the A-law segments, on 13-bit magnitudes.
const ALAW_SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

/// Encodes one 16-bit linear sample as a G.711 A-law code.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // Work on the 13 most significant bits (arithmetic shift).
    let mut pcm = i32::from(sample) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5 // sign bit set (positive) and even bits inverted
    } else {
        // One's-complement magnitude: -1 -> 0, -4096 -> 4095.
        pcm = -pcm - 1;
        0x55
    };
    let seg = ALAW_SEG_END
        .iter()
        .position(|&end| pcm <= end)
        .unwrap_or(ALAW_SEG_END.len());
    if seg >= 8 {
        // Out of range: cannot happen for 16-bit input, kept for completeness.
        return 0x7F ^ mask;
    }
    let seg = seg as i32;
    let mantissa = if seg < 2 {
        (pcm >> 1) & 0x0F
    } else {
        (pcm >> seg) & 0x0F
    };
    ((seg << 4) | mantissa) as u8 ^ mask
}

/// Decodes one G.711 A-law code to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    // t is at most 32256, so it always fits.
    let value = if a & 0x80 != 0 { t } else { -t };
    value as i16
}

/// Encodes a buffer of linear samples as mu-law.
pub fn encode_ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_ulaw(s)).collect()
}

/// Decodes a buffer of mu-law codes to linear samples.
pub fn decode_ulaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| ulaw_to_linear(c)).collect()
}

/// Encodes a buffer of linear samples as A-law.
pub fn encode_alaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| linear_to_alaw(s)).collect()
}

/// Decodes a buffer of A-law codes to linear samples.
pub fn decode_alaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| alaw_to_linear(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_i16() -> impl Iterator<Item = i16> {
        i16::MIN..=i16::MAX
    }

    /// Half of the quantisation step of a mu-law code's segment.
    fn ulaw_half_step(code: u8) -> i32 {
        let exponent = i32::from((!code >> 4) & 0x07);
        4 << exponent
    }

    /// Half of the quantisation step of an A-law code's segment.
    fn alaw_half_step(code: u8) -> i32 {
        let seg = i32::from(((code ^ 0x55) >> 4) & 0x07);
        if seg < 2 {
            8
        } else {
            4 << seg
        }
    }

    #[test]
    fn ulaw_reference_pairs() {
        // Decoder values computed by hand from the G.711 mu-law segment table:
        // code c -> u = !c; value = ((mantissa*8 + 132) << exponent) - 132, sign from bit 7.
        let decode = [
            (0x00u8, -32124i16), // u=0xFF: seg 7, mant 15: (120+132)*128-132
            (0x01, -31100),      // seg 7, mant 14: (112+132)*128-132
            (0x0F, -16764),      // seg 7, mant 0: 132*128-132
            (0x10, -15996),      // seg 6, mant 15: 252*64-132
            (0x1F, -8316),       // seg 6, mant 0: 132*64-132
            (0x20, -7932),       // seg 5, mant 15: 252*32-132
            (0x6F, -132),        // seg 1, mant 0: 132*2-132
            (0x70, -120),        // seg 0, mant 15: 252-132
            (0x7E, -8),          // seg 0, mant 1: 140-132
            (0x7F, 0),           // negative zero
            (0x80, 32124),
            (0x8F, 16764),
            (0xEF, 132),
            (0xF0, 120),
            (0xFE, 8),
            (0xFF, 0),
        ];
        for (code, value) in decode {
            assert_eq!(ulaw_to_linear(code), value, "decode {code:#04x}");
        }
        let encode = [
            (0i16, 0xFFu8),
            (1, 0xFF),
            (3, 0xFF),
            (4, 0xFE), // 136 -> seg 0, mant 1
            (8, 0xFE),
            (-1, 0x7F), // magnitude 1 -> negative zero code
            (-8, 0x7E),
            (100, 0xF2), // 232 -> seg 0, mant 13 -> !0x0D
            (-100, 0x72),
            (1000, 0xCE), // 1132 -> seg 3, mant 1 -> !0x31
            (-1000, 0x4E),
            (32124, 0x80),
            (32767, 0x80), // clipped
            (-32768, 0x00),
            (16764, 0x8F),
            (-16764, 0x0F),
        ];
        for (value, code) in encode {
            assert_eq!(linear_to_ulaw(value), code, "encode {value}");
        }
    }

    #[test]
    fn ulaw_silence() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
    }

    #[test]
    fn ulaw_every_sample_within_quantisation_step() {
        for x in all_i16() {
            let code = linear_to_ulaw(x);
            let y = i32::from(ulaw_to_linear(code));
            // Beyond the clip level the reference is the clipped value.
            let reference = i32::from(x).clamp(-ULAW_CLIP, ULAW_CLIP);
            let err = (y - reference).abs();
            assert!(
                err <= ulaw_half_step(code),
                "x={x} code={code:#04x} y={y} err={err}"
            );
            // The sign is preserved (zero codes aside).
            if y != 0 {
                assert_eq!(y < 0, x < 0, "sign of {x}");
            }
        }
    }

    #[test]
    fn ulaw_encoder_is_monotonic() {
        let mut previous = i32::MIN;
        for x in all_i16() {
            let y = i32::from(ulaw_to_linear(linear_to_ulaw(x)));
            assert!(y >= previous, "not monotonic at {x}");
            previous = y;
        }
    }

    #[test]
    fn ulaw_every_code_round_trips() {
        for code in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(code));
            if code == 0x7F {
                // Negative zero decodes to 0, which encodes as positive zero.
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "code {code:#04x}");
            }
        }
    }

    #[test]
    fn ulaw_decoder_is_odd_symmetric() {
        for code in 0..=0x7Fu8 {
            assert_eq!(
                i32::from(ulaw_to_linear(code)),
                -i32::from(ulaw_to_linear(code | 0x80))
            );
        }
    }

    #[test]
    fn alaw_reference_pairs() {
        // code c -> a = c ^ 0x55; seg = (a>>4)&7, mant = a&15;
        // seg 0: mant*16+8; seg 1: mant*16+264; seg s>1: (mant*16+264) << (s-1). Bit 7 of a set = positive.
        let decode = [
            (0xD5u8, 8i16), // a=0x80: positive, seg 0, mant 0
            (0x55, -8),
            (0xD4, 24),   // a=0x81: seg 0, mant 1
            (0xC5, 264),  // a=0x90: seg 1, mant 0
            (0x80, 5504), // a=0xD5: seg 5, mant 5: (80+264)*16
            (0x00, -5504),
            (0x01, -5248), // a=0x54: seg 5, mant 4: (64+264)*16
            (0x02, -6016), // a=0x57: seg 5, mant 7: (112+264)*16
            (0xAA, 32256), // a=0xFF: seg 7, mant 15: (240+264)*64
            (0x2A, -32256),
            (0xFA, 1008), // a=0xAF: seg 2, mant 15: (240+264) << 1
        ];
        for (code, value) in decode {
            assert_eq!(alaw_to_linear(code), value, "decode {code:#04x}");
        }
        let encode = [
            (0i16, 0xD5u8),
            (7, 0xD5),
            (16, 0xD4),
            (-1, 0x55),
            (-8, 0x55),
            (-16, 0x55),
            (-17, 0x54),
            (32767, 0xAA),
            (-32768, 0x2A),
            (5504, 0x80),
            (-5504, 0x00),
            (264, 0xC5),
        ];
        for (value, code) in encode {
            assert_eq!(linear_to_alaw(value), code, "encode {value}");
        }
    }

    #[test]
    fn alaw_every_sample_within_quantisation_step() {
        for x in all_i16() {
            let code = linear_to_alaw(x);
            let y = i32::from(alaw_to_linear(code));
            let err = (y - i32::from(x)).abs();
            assert!(
                err <= alaw_half_step(code),
                "x={x} code={code:#04x} y={y} err={err}"
            );
            assert_eq!(y < 0, x < 0, "sign of {x}");
        }
    }

    #[test]
    fn alaw_encoder_is_monotonic() {
        let mut previous = i32::MIN;
        for x in all_i16() {
            let y = i32::from(alaw_to_linear(linear_to_alaw(x)));
            assert!(y >= previous, "not monotonic at {x}");
            previous = y;
        }
    }

    #[test]
    fn alaw_every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "code {code:#04x}"
            );
        }
    }

    #[test]
    fn buffer_helpers() {
        let samples = [0i16, 1000, -1000, 32767, -32768];
        assert_eq!(
            encode_ulaw(&samples),
            samples
                .iter()
                .map(|&s| linear_to_ulaw(s))
                .collect::<Vec<_>>()
        );
        assert_eq!(decode_ulaw(&[0xFF, 0x80]), vec![0, 32124]);
        assert_eq!(decode_alaw(&encode_alaw(&[5504])), vec![5504]);
    }
}
