//! AAC elementary files in ADTS framing (ISO/IEC 14496-3 §1.A.2): each raw
//! AAC frame behind a 7-byte header (9 with CRC) that gives the profile,
//! sampling frequency, channel configuration and frame length. The headers
//! are stripped, the AudioSpecificConfig for the SDP is built from the first
//! one, and the frames are sent per RFC 3640 like an MP4's AAC track.
//!
//! Bytes that are not a frame (a leading ID3v2 tag, junk between frames) are
//! skipped by scanning to the next header with the stream's parameters.

use std::sync::Arc;

use bytes::Bytes;
use tracing::info;

use super::clip::ClipOptions;
use super::frames::{self, FrameHeader};
use super::MediaError;
use crate::proto::packetize::au::{AccessUnits, Unit};
use crate::proto::packetize::{aac, Track};

/// Sampling frequencies by index (ISO/IEC 14496-3 Table 1.18).
const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Samples per AAC frame.
const FRAME_SAMPLES: i64 = 1024;

/// One ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Audio object type minus one (1 = AAC-LC).
    pub profile: u8,
    pub rate_index: u8,
    pub channels: u8,
    /// Header bytes (7, or 9 with CRC).
    pub header_len: usize,
    /// The whole frame, header included.
    pub frame_len: usize,
    /// Raw data blocks in the frame, minus one.
    pub blocks: u8,
}

impl Header {
    /// Parses the header at the start of `b`, if there is a valid one.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h: [u8; 7] = b.get(..7)?.try_into().ok()?;
        if h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            return None;
        }
        let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let rate_index = (h[2] >> 2) & 0xF;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        let frame_len =
            (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if usize::from(rate_index) >= RATES.len() || frame_len <= header_len || channels == 0 {
            return None;
        }
        Some(Self {
            profile: h[2] >> 6,
            rate_index,
            channels,
            header_len,
            frame_len,
            blocks: h[6] & 3,
        })
    }

    pub fn rate(&self) -> u32 {
        RATES[usize::from(self.rate_index)]
    }

    /// The two-byte AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
    pub fn audio_specific_config(&self) -> [u8; 2] {
        let object = self.profile + 1;
        [
            (object << 3) | (self.rate_index >> 1),
            ((self.rate_index & 1) << 7) | (self.channels << 3),
        ]
    }
}

impl FrameHeader for Header {
    fn parse(b: &[u8]) -> Option<Self> {
        Self::parse(b)
    }

    fn frame_len(&self) -> usize {
        self.frame_len
    }

    fn same_stream(&self, o: &Self) -> bool {
        (self.profile, self.rate_index, self.channels) == (o.profile, o.rate_index, o.channels)
    }
}

/// Reads an ADTS file (the whole of it in `data`).
pub fn load(data: Bytes, opts: &ClipOptions) -> Result<Track, MediaError> {
    if data.len() > u32::MAX as usize {
        return Err(MediaError::TooLarge(data.len() as u64, u64::from(u32::MAX)));
    }
    let (frames, mut skipped) = frames::scan::<Header>(&data, frames::id3v2_len(&data), data.len());
    let mut units = Vec::new();
    for &(p, h) in &frames {
        if h.blocks == 0 {
            let t = units.len() as i64 * FRAME_SAMPLES;
            units.push(Unit {
                offset: (p + h.header_len) as u32,
                size: (h.frame_len - h.header_len) as u32,
                dts: t,
                pts: t,
                sync: true,
            });
        } else {
            // Several raw blocks behind one header: not worth splitting.
            skipped += h.frame_len;
        }
    }
    let Some(&(_, h)) = frames.first() else {
        return Err(MediaError::Unsupported("no ADTS frame".into()));
    };
    if skipped > 0 {
        info!(skipped, "bytes of the ADTS file were not AAC frames");
    }
    units.retain(|u| u.size <= aac::MAX_FRAME);
    let rate = h.rate();
    let duration = units.len() as u64 * FRAME_SAMPLES as u64;
    let units = Arc::new(AccessUnits {
        data,
        units,
        clock_rate: rate,
        duration,
    });
    Ok(aac::track(
        units,
        &h.audio_specific_config(),
        u32::from(h.channels),
        opts.ptime,
        opts.max_payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::Packetizer;

    /// An ADTS frame: AAC-LC, 44.1 kHz, stereo, `payload` bytes.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let len = 7 + payload.len();
        let mut f = vec![
            0xFF,
            0xF1,
            (1 << 6) | (4 << 2),
            (2 << 6) | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            ((len & 7) as u8) << 5 | 0x1F,
            0xFC,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn headers_give_config_and_frames_are_found_past_junk() {
        let h = Header::parse(&frame(&[1, 2, 3])).unwrap();
        assert_eq!((h.rate(), h.channels, h.frame_len), (44100, 2, 10));
        assert_eq!(h.audio_specific_config(), [0x12, 0x10]);
        let mut data = b"ID3\x03\0\0\0\0\0\x02ab".to_vec();
        data.extend(b"\xff\xf1junk");
        data.extend(frame(&[1, 2, 3]));
        data.extend(frame(&[4, 5]));
        data.extend(b"junk");
        data.extend(frame(&[6]));
        let t = load(Bytes::from(data), &ClipOptions::default()).unwrap();
        assert_eq!(t.packetizer.duration_ticks(), 3072);
        let Packetizer::Aac(a) = &t.packetizer else {
            panic!()
        };
        let frames: Vec<Bytes> = a.units().units.iter().map(|u| a.units().bytes(u)).collect();
        assert_eq!(frames, [&[1u8, 2, 3][..], &[4, 5][..], &[6][..]]);
        assert!(t.description.fmtp.unwrap().ends_with("config=1210"));
    }

    #[test]
    fn truncated_and_garbage_input_is_refused() {
        let f = frame(&[9; 20]);
        for n in 0..f.len() {
            assert!(load(Bytes::copy_from_slice(&f[..n]), &ClipOptions::default()).is_err());
        }
        assert!(Header::parse(&[0xFF, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).is_none());
    }
}
