//! One RTP sender (RFC 3550 §6.4.1): the [`Stamper`] that owns the header
//! fields (SSRC, payload type, sequence numbers; §5.1), the packet and
//! octet counts, and the sender report written from them. The on-demand
//! pacer's tracks and the live channels send through it; what the payload
//! is (PCM, H.264, AAC, ...) is not its business.

use bytes::{Bytes, BytesMut};

use super::rtcp::{self, NtpTimestamp, SenderInfo};
use super::rtp::{Header, Stamper};

/// One SSRC's sending state.
#[derive(Debug, Clone)]
pub struct Sender {
    stamper: Stamper,
    packets: u32,
    /// Payload octets, headers excluded (§6.4.1).
    octets: u32,
}

impl Sender {
    pub fn new(ssrc: u32, payload_type: u8, first_seq: u16) -> Self {
        Self {
            stamper: Stamper::new(ssrc, payload_type, first_seq),
            packets: 0,
            octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.stamper.ssrc
    }

    /// The sequence number of the next packet.
    pub fn next_seq(&self) -> u16 {
        self.stamper.next_seq
    }

    /// Encodes one packet (header and payload in one buffer, ready to fan
    /// out) and counts it.
    pub fn packet(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Bytes {
        let data = self.stamper.packet(timestamp, marker, payload);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        data
    }

    /// Encodes and counts one packet numbered by the caller (a relay's
    /// restamped packet); the stamper's own numbering is not used.
    pub fn packet_at(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Bytes {
        let header = Header {
            ssrc: self.stamper.ssrc,
            payload_type: self.stamper.payload_type,
            seq,
            timestamp,
            marker,
        };
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        header.encode(payload)
    }

    /// An SR (with SDES, and BYE when `bye`) saying that the stream is at
    /// `rtp_time` at wallclock `ntp`, with the counts so far.
    pub fn report(&self, ntp: NtpTimestamp, rtp_time: u32, cname: &str, bye: bool) -> Bytes {
        let info = SenderInfo {
            ntp,
            rtp_time,
            packet_count: self.packets,
            octet_count: self.octets,
        };
        let mut out = BytesMut::with_capacity(128);
        rtcp::write_report(&mut out, self.stamper.ssrc, &info, cname, bye);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtcp::{parse_compound, Packet};

    #[test]
    fn reports_count_what_was_sent() {
        let mut s = Sender::new(0x55, 96, 65_535);
        s.packet(10, false, &[1, 2, 3]);
        s.packet(20, true, &[4; 5]);
        assert_eq!(s.next_seq(), 1);
        let sr = parse_compound(&s.report(NtpTimestamp(7), 30, "c", true)).unwrap();
        let Packet::SenderReport { info, .. } = &sr[0] else {
            panic!("an SR first")
        };
        assert_eq!(
            (info.rtp_time, info.packet_count, info.octet_count),
            (30, 2, 8)
        );
        assert!(matches!(sr.last(), Some(Packet::Goodbye { .. })));
    }
}
