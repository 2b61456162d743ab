//! AAC audio, RFC 3640 `mpeg4-generic` in AAC-hbr mode (§3.3.6): each
//! packet starts with the AU-headers-length (in bits) and one 16-bit AU
//! header per access unit (13-bit size, 3-bit index or index delta, both 0
//! here because units go in order), then the raw AAC frames.
//!
//! Consecutive frames share a packet while they fit the payload and the
//! packet stays within `ptime` (at least one frame). A frame larger than the
//! payload is fragmented (§3.2.3): every fragment repeats the AU header with
//! the whole frame's size, and only the last fragment has the marker bit.
//! The cutting itself is [`super::framed`], shared with MPEG audio.

use std::sync::Arc;
use std::time::Duration;

use super::au::AccessUnits;
use super::framed::{Framed, Layout};
use super::{Packetizer, Track};
use crate::proto::clock::duration_to_ticks;
use crate::proto::sdp::{rtpmap, TrackDescription};

/// Largest frame an AU header's 13-bit size can describe.
pub const MAX_FRAME: u32 = (1 << 13) - 1;

/// The dynamic payload type AAC tracks are described with.
pub const PAYLOAD_TYPE: u8 = 97;

/// An AAC track: `mpeg4-generic` at the sample rate (the clock of `units`)
/// with the [`fmtp`] of `config`, the AudioSpecificConfig, and its
/// [`packetizer`] cutting `ptime` at most a packet.
pub fn track(
    units: Arc<AccessUnits>,
    config: &[u8],
    channels: u32,
    ptime: Duration,
    max_payload: usize,
) -> Track {
    let rate = units.clock_rate;
    Track {
        description: TrackDescription::new(
            "audio",
            PAYLOAD_TYPE,
            rtpmap("mpeg4-generic", rate, channels),
            Some(fmtp(config)),
        ),
        packetizer: Packetizer::Aac(packetizer(
            units,
            duration_to_ticks(ptime, rate),
            max_payload,
        )),
    }
}

/// An AAC track ready to cut. Frames larger than [`MAX_FRAME`] cannot be
/// described and must be left out by the demuxer.
pub fn packetizer(units: Arc<AccessUnits>, ptime_ticks: u64, max_payload: usize) -> Framed {
    Framed::new(units, Layout::Aac, ptime_ticks, max_payload)
}

/// An AU header: 13 bits of size, 3 bits of index (delta) 0.
pub(super) fn au_header(size: usize) -> u16 {
    (size.min(MAX_FRAME as usize) as u16) << 3
}

/// The `a=fmtp` parameters for an AAC track whose AudioSpecificConfig is
/// `config` (RFC 3640 §4.1).
pub fn fmtp(config: &[u8]) -> String {
    let hex: String = config.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
         indexdeltalength=3;config={hex}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::au::tests::units;
    use crate::proto::packetize::framed::tests::all;
    use crate::proto::packetize::Chunk;

    /// The frames a receiver reassembles (§3.2.3).
    fn frames(chunks: &[Chunk]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        for c in chunks {
            let p = &c.payload[..];
            let n = usize::from(u16::from_be_bytes([p[0], p[1]])) / 16;
            let sizes: Vec<usize> = (0..n)
                .map(|k| usize::from(u16::from_be_bytes([p[2 + 2 * k], p[3 + 2 * k]]) >> 3))
                .collect();
            let mut data = &p[2 + 2 * n..];
            if n == 1 && data.len() < sizes[0] || !partial.is_empty() {
                partial.extend_from_slice(data);
                if c.marker {
                    assert_eq!(partial.len(), sizes[0]);
                    out.push(std::mem::take(&mut partial));
                }
                continue;
            }
            for s in sizes {
                out.push(data[..s].to_vec());
                data = &data[s..];
            }
            assert!(c.marker);
        }
        out
    }

    #[test]
    fn frames_share_packets_within_ptime_and_payload() {
        // 1024-sample frames at 48 kHz (21.3 ms); ptime 50 ms: 3 a packet.
        let a = Arc::new(units(10, 200, 1024, 1, 48000));
        let p = packetizer(a.clone(), 2400, 1400);
        let chunks = all(&p);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].payload.len(), 2 + 3 * 2 + 3 * 200);
        assert_eq!(chunks[1].pts, 3 * 1024);
        let want: Vec<Vec<u8>> = a.units.iter().map(|u| a.bytes(u).to_vec()).collect();
        assert_eq!(frames(&chunks), want);
        // A small payload allows one frame a packet.
        assert_eq!(all(&packetizer(a, 2400, 300)).len(), 10);
    }

    #[test]
    fn a_frame_larger_than_the_payload_is_fragmented() {
        let a = Arc::new(units(2, 1000, 1024, 1, 48000));
        let p = packetizer(a.clone(), 1024, 404);
        let chunks = all(&p);
        // 1000 bytes in 400-byte pieces: 3 fragments per frame.
        assert_eq!(chunks.len(), 6);
        assert_eq!(
            chunks.iter().map(|c| c.marker).collect::<Vec<_>>(),
            [false, false, true, false, false, true]
        );
        assert!(chunks.iter().all(|c| c.payload.len() <= 404));
        let want: Vec<Vec<u8>> = a.units.iter().map(|u| a.bytes(u).to_vec()).collect();
        assert_eq!(frames(&chunks), want);
    }

    #[test]
    fn fmtp_names_the_config() {
        assert!(fmtp(&[0x12, 0x10]).ends_with("config=1210"));
    }
}
