//! L16: uncompressed 16-bit linear PCM in network byte order (RFC 3551
//! §4.5.11). Payload sizing follows RFC 3551 §4.2: a packet carries `ptime`
//! of audio, is shrunk to fit the MTU, and never splits a sample frame.

use std::time::Duration;

use bytes::Bytes;

use super::{Chunk, Packetizer, Track};
use crate::proto::sdp::{rtpmap, TrackDescription};

/// The rate of L16's static payload types (RFC 3551 table 4).
pub const STATIC_RATE: u32 = 44_100;

/// The static payload type of stereo at [`STATIC_RATE`].
pub const STEREO_PAYLOAD_TYPE: u8 = 10;

/// The static payload type of mono at [`STATIC_RATE`].
pub const MONO_PAYLOAD_TYPE: u8 = 11;

/// The dynamic payload type of every other rate and channel count.
pub const DYNAMIC_PAYLOAD_TYPE: u8 = 96;

/// The payload type of L16 at `rate` with `channels`: a static one where
/// RFC 3551 has it, else [`DYNAMIC_PAYLOAD_TYPE`].
pub fn payload_type(rate: u32, channels: u16) -> u8 {
    match (rate, channels) {
        (STATIC_RATE, 2) => STEREO_PAYLOAD_TYPE,
        (STATIC_RATE, 1) => MONO_PAYLOAD_TYPE,
        _ => DYNAMIC_PAYLOAD_TYPE,
    }
}

/// What the SDP says about L16 at `rate` with `channels`.
pub fn description(rate: u32, channels: u16) -> TrackDescription {
    TrackDescription::new(
        "audio",
        payload_type(rate, channels),
        rtpmap("L16", rate, u32::from(channels)),
        None,
    )
}

/// An L16 track of a whole clip (see [`L16::new`]).
pub fn track(pcm: Bytes, rate: u32, channels: u16, ptime: Duration, max_payload: usize) -> Track {
    Track {
        description: description(rate, channels),
        packetizer: Packetizer::L16(L16::new(pcm, rate, channels, ptime, max_payload)),
    }
}

/// Frames per L16 packet ([`super::frames_per_packet`] for 2-byte samples).
pub fn frames_per_packet(rate: u32, channels: u16, ptime: Duration, max_payload: usize) -> u64 {
    super::frames_per_packet(rate, 2 * usize::from(channels.max(1)), ptime, max_payload)
}

/// A whole clip of interleaved big-endian 16-bit samples.
#[derive(Debug, Clone)]
pub struct L16 {
    data: Bytes,
    rate: u32,
    frame_bytes: usize,
    frames_per_packet: u64,
}

impl L16 {
    /// `data` must hold whole frames of big-endian samples; a trailing
    /// partial frame is ignored.
    pub fn new(data: Bytes, rate: u32, channels: u16, ptime: Duration, max_payload: usize) -> Self {
        let frame_bytes = 2 * usize::from(channels.max(1));
        Self {
            frames_per_packet: frames_per_packet(rate, channels, ptime, max_payload),
            data,
            rate,
            frame_bytes,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.rate
    }

    pub fn frames(&self) -> u64 {
        (self.data.len() / self.frame_bytes) as u64
    }

    pub fn frames_per_packet(&self) -> u64 {
        self.frames_per_packet
    }

    pub(super) fn chunk(&self, pos: u64, end: u64) -> Option<Chunk> {
        let end = end.min(self.frames());
        if pos >= end {
            return None;
        }
        let next = (pos + self.frames_per_packet).min(end);
        let fb = self.frame_bytes as u64;
        let payload = self.data.slice((pos * fb) as usize..(next * fb) as usize);
        Some(Chunk {
            payload,
            pts: pos,
            next,
            marker: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_respects_ptime_and_mtu() {
        let ms20 = Duration::from_millis(20);
        assert_eq!(frames_per_packet(8000, 1, ms20, 1400), 160);
        // 44.1 kHz stereo: 882 frames of 4 bytes = 3528 bytes > 1400 → 350 frames.
        assert_eq!(frames_per_packet(44100, 2, ms20, 1400), 350);
        // 6 channels: a frame is 12 bytes, 1400/12 = 116 whole frames.
        assert_eq!(frames_per_packet(48000, 6, ms20, 1400), 116);
        assert_eq!(frames_per_packet(8000, 1, ms20, 1), 1);
    }

    #[test]
    fn chunks_tile_the_clip_exactly() {
        let data: Vec<u8> = (0..1000u32)
            .flat_map(|i| (i as u16).to_be_bytes())
            .collect();
        let p = L16::new(
            Bytes::from(data.clone()),
            8000,
            1,
            Duration::from_millis(20),
            1400,
        );
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some(c) = p.chunk(pos, u64::MAX) {
            assert_eq!(c.pts, pos);
            assert!(c.payload.len() <= 320);
            out.extend_from_slice(&c.payload);
            pos = c.next;
        }
        assert_eq!(out, data);
        // A bounded range stops exactly at its end.
        let c = p.chunk(990, 995).unwrap();
        assert_eq!((c.payload.len(), c.next), (10, 995));
        assert!(p.chunk(995, 995).is_none());
    }
}
