//! Payload formats. One file per RFC payload format, behind one enum so the
//! per-packet path dispatches with `match`, not `dyn`.
//!
//! The pacer keeps a [`Cursor`] per track: where the next packet starts, in
//! terms the packetizer defines (a sample index for PCM; for framed media an
//! access unit and the progress within it, see [`au`] and [`h264`]). It asks [`Packetizer::chunk`] for the
//! payload at a cursor and gets back the next cursor; [`Packetizer::pts`]
//! and [`Packetizer::due`] say, in the track's RTP clock ticks, what media
//! time a cursor presents and when it is to be sent. The packetizer holds
//! only shared, immutable media data, so one instance serves every session
//! of a clip.
//!
//! Each format builds its [`Track`] (SDP description, payload type and
//! packetizer) in one place: [`h264::track`], [`aac::track`],
//! [`mpa::track`], [`l16::track`]. [`Codec`] is how a live channel's PCM
//! goes on the wire (L16 or G.711).

pub mod aac;
pub mod au;
pub mod codec;
pub mod framed;
pub mod g711;
pub mod h264;
pub mod l16;
pub mod mpa;

use std::time::Duration;

use bytes::Bytes;

use super::clock::{duration_to_ticks, ticks_to_secs};
use super::sdp::TrackDescription;
pub use codec::Codec;
pub use framed::Framed;
pub use h264::H264;
pub use l16::L16;

/// A packetizer's position in its media (see the module docs).
pub type Cursor = u64;

/// Pre-roll sent before zero from the start of a clip: 1/10 s, which holds
/// the priming of AAC encoders (1024 to 2112 samples) and MP3's.
pub const PREROLL_DIVISOR: u32 = 10;

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
    /// Only its low 32 bits reach the RTP timestamp, so a time before the
    /// start (an edit list's priming frames) is carried as its two's
    /// complement.
    pub pts: u64,
    /// Where the following chunk starts.
    pub next: Cursor,
    /// RTP marker bit.
    pub marker: bool,
}

/// One track as it is served: what the SDP says about it (its payload type
/// included) and the packetizer that cuts it.
#[derive(Debug, Clone)]
pub struct Track {
    pub description: TrackDescription,
    pub packetizer: Packetizer,
}

/// Every supported payload format.
#[derive(Debug, Clone)]
pub enum Packetizer {
    L16(L16),
    /// RFC 6184.
    H264(H264),
    /// RFC 3640 `mpeg4-generic`, AAC-hbr ([`aac::packetizer`]).
    Aac(Framed),
    /// RFC 2250 MPEG audio, e.g. MP3 ([`mpa::packetizer`]).
    Mpa(Framed),
}

impl Packetizer {
    /// The shared access units of a framed format, or the PCM.
    fn framed(&self) -> Result<&au::AccessUnits, &L16> {
        match self {
            Self::L16(p) => Err(p),
            Self::H264(p) => Ok(p.units()),
            Self::Aac(p) => Ok(p.units()),
            Self::Mpa(p) => Ok(p.units()),
        }
    }
}

impl Packetizer {
    pub fn clock_rate(&self) -> u32 {
        match self.framed() {
            Ok(u) => u.clock_rate,
            Err(p) => p.clock_rate(),
        }
    }

    /// Total length of the media, in ticks.
    pub fn duration_ticks(&self) -> u64 {
        match self.framed() {
            Ok(u) => u.duration,
            Err(p) => p.frames(),
        }
    }

    /// Total length of the media, in seconds.
    pub fn duration_secs(&self) -> f64 {
        ticks_to_secs(self.duration_ticks(), self.clock_rate())
    }

    /// Where playback from `ticks` starts: for PCM exactly there; for video
    /// the keyframe at or before it; for AAC and MPEG audio the first frame
    /// at or after it (so audio never starts ahead of the video it plays
    /// with), and from the very start also the frames an edit list places
    /// up to [`PREROLL_DIVISOR`]⁻¹ s before zero (the decoder's priming).
    pub fn seek(&self, ticks: u64) -> Cursor {
        match self {
            Self::L16(p) => ticks.min(p.frames()),
            Self::H264(p) => p.units().keyframe_at_or_before(ticks),
            Self::Aac(p) | Self::Mpa(p) => {
                let u = p.units();
                let preroll = i64::from(u.clock_rate / PREROLL_DIVISOR);
                let from = if ticks == 0 {
                    -preroll
                } else {
                    au::signed(ticks)
                };
                u.first_at_or_after(from)
            }
        }
    }

    /// Whether `cursor` is past the end of the media.
    pub fn is_past_end(&self, cursor: Cursor) -> bool {
        match self.framed() {
            Ok(u) => u.is_past_end(cursor),
            Err(p) => cursor >= p.frames(),
        }
    }

    /// The RTP time offset (ticks) of what starts at `cursor`: its
    /// presentation time, as two's complement when an edit list places it
    /// before zero. Only its low 32 bits matter.
    pub fn stamp(&self, cursor: Cursor) -> u64 {
        match self.framed() {
            Ok(u) => u.stamp(cursor),
            Err(p) => cursor.min(p.frames()),
        }
    }

    /// The presentation time (ticks) of what starts at `cursor`; the
    /// duration once the cursor is past the end.
    pub fn pts(&self, cursor: Cursor) -> u64 {
        match self.framed() {
            Ok(u) => u.pts(cursor),
            Err(p) => cursor.min(p.frames()),
        }
    }

    /// When what starts at `cursor` is due to be sent (ticks): decode time
    /// for video, presentation time otherwise.
    pub fn due(&self, cursor: Cursor) -> u64 {
        match self.framed() {
            Ok(u) => u.dts(cursor),
            Err(p) => cursor.min(p.frames()),
        }
    }

    /// Whether the first packet after a (re)start carries the marker bit
    /// (RFC 3551 §4.1, RFC 2250 §3.3: the start of a talkspurt). Video and
    /// AAC use the marker for access-unit boundaries instead.
    pub fn marks_talkspurt(&self) -> bool {
        matches!(self, Self::L16(_) | Self::Mpa(_))
    }

    /// The chunk starting at `cursor`; `None` once there is nothing left
    /// before `end`, compared with each unit's decode time for video and its
    /// presentation time otherwise (an access unit is never cut short).
    pub fn chunk(&self, cursor: Cursor, end: u64) -> Option<Chunk> {
        match self {
            Self::L16(p) => p.chunk(cursor, end),
            Self::H264(p) => p.chunk(cursor, end),
            Self::Aac(p) => p.chunk(cursor, end),
            Self::Mpa(p) => p.chunk(cursor, end),
        }
    }
}
