//! How a live channel's PCM goes on the wire: L16 (RFC 3551 §4.5.11) at
//! any rate and channel count, or G.711 µ-law/A-law (§4.5.14) at 8 kHz
//! mono. Payload types and `a=rtpmap` come from [`super::l16`] and
//! [`super::g711`], the one place each is chosen.

use bytes::BytesMut;

use super::{g711, l16};
use crate::proto::sdp::{rtpmap, TrackDescription};

/// How a channel's audio is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// 16-bit linear PCM, any rate and channel count (RFC 3551 §4.5.11).
    L16,
    /// G.711 µ-law, 8 kHz mono (payload type 0).
    Pcmu,
    /// G.711 A-law, 8 kHz mono (payload type 8).
    Pcma,
}

impl Codec {
    /// The RTP encoding name (RFC 3551 table 4).
    pub fn name(self) -> &'static str {
        match self {
            Self::L16 => "L16",
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// Bytes per sample on the wire.
    pub fn sample_bytes(self) -> usize {
        match self {
            Self::L16 => 2,
            Self::Pcmu | Self::Pcma => 1,
        }
    }

    /// Appends `pcm`, big-endian 16-bit samples, encoded this way to `out`.
    pub fn encode(self, pcm: &[u8], out: &mut BytesMut) {
        let encode = match self {
            Self::L16 => return out.extend_from_slice(pcm),
            Self::Pcmu => g711::linear_to_ulaw,
            Self::Pcma => g711::linear_to_alaw,
        };
        out.extend(
            pcm.chunks_exact(2)
                .map(|b| encode(i16::from_be_bytes([b[0], b[1]]))),
        );
    }

    /// The payload type of this codec at `rate` with `channels`.
    pub fn payload_type(self, rate: u32, channels: u16) -> u8 {
        match self {
            Self::L16 => l16::payload_type(rate, channels),
            Self::Pcmu => g711::PCMU_PAYLOAD_TYPE,
            Self::Pcma => g711::PCMA_PAYLOAD_TYPE,
        }
    }

    /// The codec and channel count of a static payload type (RFC 3551
    /// table 4), for a stream announced without an rtpmap.
    pub fn from_static_payload_type(payload_type: u8) -> Option<(Self, u16)> {
        match payload_type {
            g711::PCMU_PAYLOAD_TYPE => Some((Self::Pcmu, 1)),
            g711::PCMA_PAYLOAD_TYPE => Some((Self::Pcma, 1)),
            l16::STEREO_PAYLOAD_TYPE => Some((Self::L16, 2)),
            l16::MONO_PAYLOAD_TYPE => Some((Self::L16, 1)),
            _ => None,
        }
    }

    /// What the SDP says about audio at `rate` with `channels` sent this
    /// way.
    pub fn description(self, rate: u32, channels: u16) -> TrackDescription {
        match self {
            Self::L16 => l16::description(rate, channels),
            Self::Pcmu | Self::Pcma => TrackDescription::new(
                "audio",
                self.payload_type(rate, channels),
                rtpmap(self.name(), g711::CLOCK, 1),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_payload_types_round_trip() {
        for (codec, rate, channels) in [
            (Codec::Pcmu, 8000, 1),
            (Codec::Pcma, 8000, 1),
            (Codec::L16, 44_100, 2),
            (Codec::L16, 44_100, 1),
        ] {
            let pt = codec.payload_type(rate, channels);
            assert_eq!(Codec::from_static_payload_type(pt), Some((codec, channels)));
        }
        assert_eq!(Codec::L16.payload_type(48_000, 2), 96);
        assert_eq!(Codec::from_static_payload_type(96), None);
        let d = Codec::Pcma.description(8000, 1);
        assert_eq!((d.payload_type, d.rtpmap.as_str()), (8, "PCMA/8000"));
        assert_eq!(Codec::L16.description(16_000, 2).rtpmap, "L16/16000/2");
    }
}
