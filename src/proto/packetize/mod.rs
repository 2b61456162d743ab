//! Payload formats. One file per RFC payload format, behind one enum so the
//! per-packet path dispatches with `match`, not `dyn`.
//!
//! Positions are in the track's RTP clock ticks (its presentation time). The
//! pacer asks [`Packetizer::chunk`] for the payload starting at a position
//! and gets back the next position; the packetizer holds only shared,
//! immutable media data, so one instance serves every session of a clip.

pub mod g711;
pub mod l16;

use std::time::Duration;

use bytes::Bytes;

use super::clock::duration_to_ticks;
pub use l16::L16;

/// Sample frames per packet (RFC 3551 §4.2): `ptime` worth, cut down so
/// the payload fits `max_payload` bytes, never splitting a frame, and at
/// least one frame. `frame_bytes` is the encoded size of one frame.
pub fn frames_per_packet(
    rate: u32,
    frame_bytes: usize,
    ptime: Duration,
    max_payload: usize,
) -> u64 {
    let by_time = duration_to_ticks(ptime, rate).max(1);
    let by_mtu = (max_payload / frame_bytes.max(1)).max(1) as u64;
    by_time.min(by_mtu)
}

/// One RTP payload cut from the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub payload: Bytes,
    /// Presentation time of the payload's first sample, in clock ticks.
    pub pts: u64,
    /// Where the following chunk starts.
    pub next: u64,
    /// RTP marker bit.
    pub marker: bool,
}

/// Every supported payload format.
#[derive(Debug, Clone)]
pub enum Packetizer {
    L16(L16),
}

impl Packetizer {
    pub fn clock_rate(&self) -> u32 {
        match self {
            Self::L16(p) => p.clock_rate(),
        }
    }

    /// Total length of the media, in ticks.
    pub fn duration_ticks(&self) -> u64 {
        match self {
            Self::L16(p) => p.frames(),
        }
    }

    /// The position where playback from `ticks` starts (for PCM, exactly
    /// there; for video, the keyframe at or before it).
    pub fn seek(&self, ticks: u64) -> u64 {
        match self {
            Self::L16(p) => ticks.min(p.frames()),
        }
    }

    /// The chunk starting at `pos`, not extending past `end`; `None` once
    /// `pos` reaches `end`.
    pub fn chunk(&self, pos: u64, end: u64) -> Option<Chunk> {
        match self {
            Self::L16(p) => p.chunk(pos, end),
        }
    }
}
