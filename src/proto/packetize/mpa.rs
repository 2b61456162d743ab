//! MPEG audio (MP3 and layers I/II), RFC 2250 §3.5, static payload type 14
//! (RFC 3551 §4.5.13) at a 90 kHz clock: each packet starts with four bytes,
//! 16 bits that must be zero and the 16-bit offset of the payload within its
//! frame, then either whole frames (as many as fit within MTU and ptime) or
//! one fragment of a frame larger than the payload. The cutting itself is
//! [`super::framed`], shared with AAC.

use std::sync::Arc;
use std::time::Duration;

use super::au::AccessUnits;
use super::framed::{Framed, Layout};
use super::{Packetizer, Track};
use crate::proto::clock::duration_to_ticks;
use crate::proto::sdp::{rtpmap, TrackDescription};

/// The RTP clock of MPA (RFC 3551 §4.5.13).
pub const CLOCK: u32 = 90_000;

/// The static payload type.
pub const PAYLOAD_TYPE: u8 = 14;

/// An MPEG audio track ready to cut: `units` are whole frames with times
/// at [`CLOCK`].
pub fn packetizer(units: Arc<AccessUnits>, ptime_ticks: u64, max_payload: usize) -> Framed {
    Framed::new(units, Layout::Mpa, ptime_ticks, max_payload)
}

/// An MPEG audio track: `MPA/90000` with the static payload type, and its
/// [`packetizer`] cutting `ptime` at most a packet.
pub fn track(units: Arc<AccessUnits>, channels: u32, ptime: Duration, max_payload: usize) -> Track {
    Track {
        description: TrackDescription::new(
            "audio",
            PAYLOAD_TYPE,
            rtpmap("MPA", CLOCK, channels),
            None,
        ),
        packetizer: Packetizer::Mpa(packetizer(
            units,
            duration_to_ticks(ptime, CLOCK),
            max_payload,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::au::tests::units;
    use crate::proto::packetize::framed::tests::all;

    #[test]
    fn whole_frames_then_fragments_reassemble_to_the_frames() {
        // 1152-sample frames at 44.1 kHz are 2351 ticks of 90 kHz apart.
        let a = Arc::new(units(6, 417, 2351, 1, CLOCK));
        let want: Vec<u8> = a.data.to_vec();
        // ptime 60 ms (5400 ticks): frames at 0, 2351 and 4702 share a
        // packet (3 × 417 + 4 bytes fit 1400).
        let chunks = all(&packetizer(a.clone(), 5400, 1400));
        assert_eq!(chunks.len(), 2);
        let mut got = Vec::new();
        for c in &chunks {
            assert_eq!(&c.payload[..4], &[0, 0, 0, 0]);
            got.extend_from_slice(&c.payload[4..]);
        }
        assert_eq!(got, want);
        // A 200-byte payload: every frame in three fragments with offsets.
        let chunks = all(&packetizer(a, 5400, 200));
        assert_eq!(chunks.len(), 6 * 3);
        let offsets: Vec<u16> = chunks[..3]
            .iter()
            .map(|c| u16::from_be_bytes([c.payload[2], c.payload[3]]))
            .collect();
        assert_eq!(offsets, [0, 196, 392]);
        let got: Vec<u8> = chunks
            .iter()
            .flat_map(|c| c.payload[4..].to_vec())
            .collect();
        assert_eq!(got, want);
    }
}
