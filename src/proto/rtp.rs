//! RTP fixed header (RFC 3550 §5.1) and per-track stamping state.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! ```

use bytes::{Bytes, BytesMut};

/// Length of the fixed RTP header with no CSRCs.
pub const HEADER_LEN: usize = 12;

/// SSRC, sequence number and timestamp of one sending track. The initial
/// values are random (RFC 3550 §5.1); the caller supplies the randomness so
/// this stays deterministic under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamper {
    pub ssrc: u32,
    pub payload_type: u8,
    /// Sequence number of the next packet.
    pub next_seq: u16,
}

impl Stamper {
    pub fn new(ssrc: u32, payload_type: u8, first_seq: u16) -> Self {
        Self {
            ssrc,
            payload_type,
            next_seq: first_seq,
        }
    }

    /// Encodes one packet (header and payload in one buffer, ready to fan
    /// out) and advances the sequence number.
    pub fn packet(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Bytes {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let header = Header {
            ssrc: self.ssrc,
            payload_type: self.payload_type,
            seq,
            timestamp,
            marker,
        };
        header.encode(payload)
    }
}

/// The fixed header's fields, for a packet whose numbering the caller
/// decides (a relay keeps its source's gaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ssrc: u32,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
}

impl Header {
    /// Header and payload in one buffer, ready to fan out.
    pub fn encode(&self, payload: &[u8]) -> Bytes {
        let builder = rtp_rs::RtpPacketBuilder::new()
            .payload_type(self.payload_type & 0x7f)
            .ssrc(self.ssrc)
            .sequence(rtp_rs::Seq::from(self.seq))
            .timestamp(self.timestamp)
            .marked(self.marker)
            .payload(payload);
        let mut buf = BytesMut::zeroed(HEADER_LEN + payload.len());
        let n = builder.build_into_unchecked(&mut buf);
        buf.truncate(n);
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let mut s = Stamper::new(0x1122_3344, 96, 0xffff);
        let p = s.packet(0xdead_beef, true, &[1, 2, 3, 4]);
        assert_eq!(
            &p[..],
            &[
                0x80,
                0x80 | 96,
                0xff,
                0xff,
                0xde,
                0xad,
                0xbe,
                0xef,
                0x11,
                0x22,
                0x33,
                0x44,
                1,
                2,
                3,
                4
            ]
        );
        let q = s.packet(1, false, &[]);
        assert_eq!(&q[..4], &[0x80, 96, 0, 0], "seq wraps to 0");
        let r = rtp_rs::RtpReader::new(&q).unwrap();
        assert_eq!(r.ssrc(), 0x1122_3344);
    }
}
