//! WAV (RIFF WAVE) clips, read with `hound`, converted once to big-endian
//! 16-bit samples for L16 (RFC 3551 §4.5.11).
//!
//! Conversions: 8-bit unsigned is re-centred and scaled up; 24- and 32-bit
//! integers keep their top 16 bits; 32-bit float is clamped to [-1, 1] and
//! scaled by 32767 with rounding.

use std::io::Read;

use bytes::Bytes;
use hound::{SampleFormat, WavReader, WavSpec};

use super::MediaError;

/// A whole clip as interleaved big-endian 16-bit samples.
#[derive(Debug, Clone)]
pub struct Pcm {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved samples, network byte order.
    pub data: Bytes,
}

impl Pcm {
    pub fn frames(&self) -> u64 {
        (self.data.len() / (2 * usize::from(self.channels.max(1)))) as u64
    }

    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Reads the header only: whether a file is a WAV we can serve.
pub fn probe<R: Read>(r: R) -> Result<WavSpec, MediaError> {
    let reader = WavReader::new(r).map_err(unsupported)?;
    check_spec(reader.spec())
}

fn unsupported(e: hound::Error) -> MediaError {
    match e {
        hound::Error::IoError(io) => MediaError::Io(io),
        other => MediaError::Unsupported(other.to_string()),
    }
}

fn check_spec(spec: WavSpec) -> Result<WavSpec, MediaError> {
    let ok_bits = match spec.sample_format {
        SampleFormat::Int => matches!(spec.bits_per_sample, 8 | 16 | 24 | 32),
        SampleFormat::Float => spec.bits_per_sample == 32,
    };
    if !ok_bits {
        return Err(MediaError::Unsupported(format!(
            "{}-bit {:?} samples",
            spec.bits_per_sample, spec.sample_format
        )));
    }
    if spec.channels == 0 || spec.channels > 8 || !(1000..=192_000).contains(&spec.sample_rate) {
        return Err(MediaError::Unsupported(format!(
            "{} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    Ok(spec)
}

/// Decodes a whole WAV stream. `max_bytes` caps the converted size, checked
/// against the header before anything is allocated.
pub fn load<R: Read>(r: R, max_bytes: u64) -> Result<Pcm, MediaError> {
    let mut reader = WavReader::new(r).map_err(unsupported)?;
    let spec = check_spec(reader.spec())?;
    let out_bytes = u64::from(reader.len()) * 2;
    if out_bytes > max_bytes {
        return Err(MediaError::TooLarge(out_bytes, max_bytes));
    }
    let mut out = Vec::with_capacity(out_bytes as usize);
    let mut push = |s: i16| out.extend_from_slice(&s.to_be_bytes());
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, _) => {
            for s in reader.samples::<f32>() {
                let v = s.map_err(unsupported)?;
                let v = if v.is_finite() {
                    v.clamp(-1.0, 1.0)
                } else {
                    0.0
                };
                // In f64, so the product is exact and rounded only once.
                push((f64::from(v) * 32767.0).round() as i16);
            }
        }
        (SampleFormat::Int, bits) => {
            // hound yields 8-bit samples already re-centred on zero.
            let shift = i32::from(bits) - 16;
            for s in reader.samples::<i32>() {
                let v = s.map_err(unsupported)?;
                let v = if shift >= 0 { v >> shift } else { v << -shift };
                push(v as i16);
            }
        }
    }
    let frame = 2 * usize::from(spec.channels);
    out.truncate(out.len() / frame * frame);
    Ok(Pcm {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        data: Bytes::from(out),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn wav(
        spec: WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut c = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        c.into_inner()
    }

    fn spec(bits: u16, fmt: SampleFormat, channels: u16) -> WavSpec {
        WavSpec {
            channels,
            sample_rate: 8000,
            bits_per_sample: bits,
            sample_format: fmt,
        }
    }

    fn samples(p: &Pcm) -> Vec<i16> {
        p.data
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn converts_every_sample_format() {
        let s16 = wav(spec(16, SampleFormat::Int, 2), |w| {
            for v in [0i16, 1, -1, i16::MAX, i16::MIN, 1234] {
                w.write_sample(v).unwrap();
            }
        });
        let p = load(Cursor::new(s16), 1 << 20).unwrap();
        assert_eq!(samples(&p), [0, 1, -1, i16::MAX, i16::MIN, 1234]);
        assert_eq!((p.channels, p.frames()), (2, 3));

        let s8 = wav(spec(8, SampleFormat::Int, 1), |w| {
            for v in [0i8, 127, -128] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            samples(&load(Cursor::new(s8), 1 << 20).unwrap()),
            [0, 127 << 8, -128 << 8]
        );

        let s24 = wav(spec(24, SampleFormat::Int, 1), |w| {
            for v in [0x12_3456i32, -0x80_0000] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            samples(&load(Cursor::new(s24), 1 << 20).unwrap()),
            [0x1234, i16::MIN]
        );

        let f32s = wav(spec(32, SampleFormat::Float, 1), |w| {
            for v in [0.0f32, 1.0, -1.0, 2.0, 0.5] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(
            samples(&load(Cursor::new(f32s), 1 << 20).unwrap()),
            [0, 32767, -32767, 32767, 16384]
        );
    }

    #[test]
    fn refuses_garbage_and_oversize() {
        assert!(matches!(
            load(Cursor::new(b"not a wav at all".to_vec()), 1 << 20),
            Err(MediaError::Unsupported(_))
        ));
        let big = wav(spec(16, SampleFormat::Int, 1), |w| {
            for _ in 0..100 {
                w.write_sample(0i16).unwrap();
            }
        });
        assert!(matches!(
            load(Cursor::new(big), 100),
            Err(MediaError::TooLarge(200, 100))
        ));
    }
}
