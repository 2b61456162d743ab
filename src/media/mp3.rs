//! MPEG audio elementary files (`.mp3`; layers I–III of MPEG-1, MPEG-2 and
//! MPEG-2.5, ISO/IEC 11172-3 §2.4.2.3 and 13818-3): frames found by their
//! headers, sent per RFC 2250 at the 90 kHz clock. An ID3v2 tag at the start
//! and an ID3v1 tag at the end are skipped, as is anything between frames
//! that is not a frame of the same stream. Free-format bitrates are not
//! supported.

use std::sync::Arc;

use bytes::Bytes;
use tracing::info;

use super::clip::ClipOptions;
use super::frames::{self, FrameHeader};
use super::MediaError;
use crate::proto::packetize::au::{AccessUnits, Unit};
use crate::proto::packetize::{mpa, Track};

/// kbit/s by [MPEG-1, MPEG-2/2.5] × [layer I, II, III] × index 1..=14.
const BITRATES: [[[u16; 14]; 3]; 2] = [
    [
        [
            32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ],
    [
        [
            32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ],
];

/// One MPEG audio frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub rate: u32,
    pub channels: u8,
    /// Layer 1, 2 or 3.
    pub layer: u8,
    /// The whole frame in bytes.
    pub frame_len: usize,
    pub samples: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Self> {
        let h: [u8; 4] = b.get(..4)?.try_into().ok()?;
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
            return None;
        }
        let version = (h[1] >> 3) & 3; // 0: 2.5, 2: 2, 3: 1
        let layer = match (h[1] >> 1) & 3 {
            3 => 1,
            2 => 2,
            1 => 3,
            _ => return None,
        };
        let bitrate_index = usize::from(h[2] >> 4);
        let rate_index = usize::from((h[2] >> 2) & 3);
        if version == 1 || !(1..=14).contains(&bitrate_index) || rate_index == 3 {
            return None;
        }
        let mpeg1 = version == 3;
        let kbps =
            u32::from(BITRATES[usize::from(!mpeg1)][usize::from(layer - 1)][bitrate_index - 1]);
        let rate = [44100, 48000, 32000][rate_index]
            >> match version {
                3 => 0,
                2 => 1,
                _ => 2,
            };
        let padding = u32::from((h[2] >> 1) & 1);
        let bps = kbps * 1000;
        let (frame_len, samples) = match layer {
            1 => ((12 * bps / rate + padding) * 4, 384),
            2 => (144 * bps / rate + padding, 1152),
            _ if mpeg1 => (144 * bps / rate + padding, 1152),
            _ => (72 * bps / rate + padding, 576),
        };
        Some(Self {
            rate,
            channels: if h[3] >> 6 == 3 { 1 } else { 2 },
            layer,
            frame_len: frame_len as usize,
            samples,
        })
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
        (self.rate, self.layer, self.samples) == (o.rate, o.layer, o.samples)
    }
}

/// Reads an MPEG audio file (the whole of it in `data`).
pub fn load(data: Bytes, opts: &ClipOptions) -> Result<Track, MediaError> {
    if data.len() > u32::MAX as usize {
        return Err(MediaError::TooLarge(data.len() as u64, u64::from(u32::MAX)));
    }
    let mut end = data.len();
    if end >= 128 && &data[end - 128..end - 125] == b"TAG" {
        end -= 128;
    }
    let (frames, skipped) = frames::scan::<Header>(&data, frames::id3v2_len(&data), end);
    let mut units = Vec::with_capacity(frames.len());
    let mut samples = 0u64;
    for &(p, h) in &frames {
        let t = (samples * u64::from(mpa::CLOCK) / u64::from(h.rate)) as i64;
        units.push(Unit {
            offset: p as u32,
            size: h.frame_len as u32,
            dts: t,
            pts: t,
            sync: true,
        });
        samples += u64::from(h.samples);
    }
    let Some(&(_, h)) = frames.first() else {
        return Err(MediaError::Unsupported("no MPEG audio frame".into()));
    };
    if skipped > 0 {
        info!(skipped, "bytes of the MPEG audio file were not frames");
    }
    let duration = samples * u64::from(mpa::CLOCK) / u64::from(h.rate);
    let units = Arc::new(AccessUnits {
        data,
        units,
        clock_rate: mpa::CLOCK,
        duration,
    });
    Ok(mpa::track(
        units,
        u32::from(h.channels),
        opts.ptime,
        opts.max_payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::Packetizer;

    #[test]
    fn headers_give_frame_sizes() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes.
        let h = Header::parse(&[0xFF, 0xFB, 0x90, 0x00]).unwrap();
        assert_eq!(
            (h.rate, h.layer, h.frame_len, h.samples),
            (44100, 3, 417, 1152)
        );
        assert_eq!(h.channels, 2);
        // Padded, mono.
        assert_eq!(
            Header::parse(&[0xFF, 0xFB, 0x92, 0xC0]).unwrap().frame_len,
            418
        );
        // MPEG-2 layer III, 64 kbit/s, 22.05 kHz: 72 × 64000 / 22050 = 208.
        let h = Header::parse(&[0xFF, 0xF3, 0x80, 0x00]).unwrap();
        assert_eq!((h.rate, h.frame_len, h.samples), (22050, 208, 576));
        // Free format, bad index, reserved layer.
        assert!(Header::parse(&[0xFF, 0xFB, 0x00, 0x00]).is_none());
        assert!(Header::parse(&[0xFF, 0xFB, 0xF0, 0x00]).is_none());
        assert!(Header::parse(&[0xFF, 0xF9, 0x90, 0x00]).is_none());
    }

    #[test]
    fn frames_are_found_between_tags_and_junk() {
        let frame = |fill: u8| {
            let mut f = vec![0xFF, 0xFB, 0x90, 0x00];
            f.resize(417, fill);
            f
        };
        let mut data = b"ID3\x04\0\0\0\0\0\x03xyz".to_vec();
        data.extend(frame(1));
        data.extend(frame(2));
        data.extend(b"zz");
        data.extend(frame(3));
        data.extend(b"TAG");
        data.resize(data.len() + 125, 0);
        let t = load(Bytes::from(data), &ClipOptions::default()).unwrap();
        let Packetizer::Mpa(m) = &t.packetizer else {
            panic!()
        };
        let u = &m.units().units;
        assert_eq!(u.len(), 3);
        assert_eq!((u[0].pts, u[1].pts, u[2].pts), (0, 2351, 4702));
        assert_eq!(t.description.rtpmap, "MPA/90000/2");
        for n in [0, 3, 100] {
            assert!(load(Bytes::from(vec![0xFF; n]), &ClipOptions::default()).is_err());
        }
    }
}
