//! RTCP (RFC 3550 §6): the sender's compound reports (§6.1 compounding,
//! §6.4.1 SR, §6.5.1 SDES CNAME, §6.6 BYE), receiver reports (§6.4.2 RR) and
//! a parser for compound datagrams with the validity checks of Appendix A.2.
//!
//! Every RTCP packet starts with the same header; `length` counts 32-bit
//! words minus one, header and padding included (§6.4.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|  count  |      PT       |             length            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Sans-IO: writers append to a [`BytesMut`], the parser borrows a datagram,
//! and time only enters as [`NtpTimestamp`] values.

use std::time::Duration;

use bytes::{BufMut, BytesMut};

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;
/// SDES item type of the canonical name (§6.5.1).
const CNAME: u8 = 1;
/// Most report blocks in one SR/RR: the 5-bit count field (§6.4.2).
const MAX_BLOCKS: usize = 31;
/// Most packets accepted in one compound datagram.
const MAX_PACKETS: usize = 64;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// The range of the 24-bit signed cumulative-lost field (§6.4.1).
pub(crate) const LOST_MIN: i32 = -0x80_0000;
pub(crate) const LOST_MAX: i32 = 0x7f_ffff;

/// 64-bit NTP timestamp (RFC 3550 §4): seconds since 1900 in the high 32
/// bits, fraction of a second in the low 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// Converts wallclock time since the Unix epoch. Seconds wrap modulo
    /// 2^32, so dates after 2036-02-07 land in NTP era 1 (RFC 4330 §3).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Self((secs << 32) | frac)
    }

    /// Converts back to time since the Unix epoch, rounding to the nearest
    /// nanosecond. Seconds with the top bit clear are read as era 1
    /// (2036–2104, RFC 4330 §3); instants before 1970 saturate to zero.
    pub fn to_unix(self) -> Duration {
        let mut secs = self.0 >> 32;
        if secs & 0x8000_0000 == 0 {
            secs += 1 << 32;
        }
        let nanos = ((self.0 & 0xffff_ffff) * 1_000_000_000 + (1 << 31)) >> 32;
        secs.checked_sub(NTP_UNIX_OFFSET)
            .map_or(Duration::ZERO, |s| {
                Duration::from_secs(s) + Duration::from_nanos(nanos)
            })
    }

    /// The middle 32 bits, in 1/65536 s: the form of LSR and DLSR (§6.4.1).
    /// `now.middle32().wrapping_sub(sr_arrival.middle32())` is a DLSR.
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// The sender info section of an SR (§6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    /// Wallclock time at which `rtp_time` is (or would be) sampled.
    pub ntp: NtpTimestamp,
    pub rtp_time: u32,
    pub packet_count: u32,
    /// Payload octets sent, headers and padding excluded.
    pub octet_count: u32,
}

/// One reception report block (§6.4.1):
///
/// ```text
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// |                 SSRC_1 (SSRC of first source)                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | fraction lost |       cumulative number of packets lost       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           extended highest sequence number received           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      interarrival jitter                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         last SR (LSR)                         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   delay since last SR (DLSR)                  |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// A 24-bit signed field; writers clamp to its range.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// In RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp, 0 if none yet.
    pub lsr: u32,
    /// Delay since that SR arrived, in 1/65536 s.
    pub dlsr: u32,
}

/// One packet of a compound datagram. Report blocks beyond the count and
/// SDES items other than CNAME are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    /// `(SSRC or CSRC, CNAME)` per chunk; CNAMEs are decoded lossily as UTF-8.
    SourceDescription { chunks: Vec<(u32, Option<String>)> },
    Goodbye {
        ssrcs: Vec<u32>,
        reason: Option<String>,
    },
    /// APP, feedback (RFC 4585), XR (RFC 3611) and anything else: header only.
    Other { packet_type: u8 },
}

/// Why a datagram is not a valid compound RTCP packet (RFC 3550 A.2).
/// Positions are byte offsets into the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("empty RTCP datagram")]
    Empty,
    #[error("RTCP version {version} at byte {pos}, expected 2")]
    Version { pos: usize, version: u8 },
    #[error("compound RTCP starts with packet type {packet_type}, not SR (200) or RR (201)")]
    FirstPacket { packet_type: u8 },
    #[error("RTCP packet at byte {pos} needs {needed} bytes, {available} remain")]
    Length {
        pos: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad RTCP padding in the packet at byte {pos}")]
    Padding { pos: usize },
    #[error("RTCP packet type {packet_type} at byte {pos} overruns its length")]
    Malformed { pos: usize, packet_type: u8 },
    #[error("more than {} packets in one compound RTCP datagram", MAX_PACKETS)]
    TooManyPackets,
}

/// Appends a compound SR + SDES(CNAME). The SR carries no report blocks:
/// the server only sends.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |V=2|P|    RC   |   PT=SR=200   |             length            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         SSRC of sender                        |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// |              NTP timestamp, most significant word             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             NTP timestamp, least significant word             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         RTP timestamp                         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     sender's packet count                     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      sender's octet count                     |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// ```
pub fn write_sender_report(out: &mut BytesMut, ssrc: u32, info: &SenderInfo, cname: &str) {
    let start = begin(out, 0, SR);
    out.put_u32(ssrc);
    out.put_u64(info.ntp.0);
    out.put_u32(info.rtp_time);
    out.put_u32(info.packet_count);
    out.put_u32(info.octet_count);
    finish(out, start);
    write_sdes(out, ssrc, cname);
}

/// Appends a compound SR + SDES(CNAME) + BYE: a compound must start with an
/// SR or RR (§6.1), and BYE goes last (§6.6).
pub fn write_goodbye(out: &mut BytesMut, ssrc: u32, info: &SenderInfo, cname: &str) {
    write_sender_report(out, ssrc, info, cname);
    let start = begin(out, 1, BYE);
    out.put_u32(ssrc);
    finish(out, start);
}

/// An SR compound (SR + SDES), or with `bye` the BYE compound of
/// [`write_goodbye`]: what a sender emits periodically and when it leaves.
pub fn write_report(out: &mut BytesMut, ssrc: u32, info: &SenderInfo, cname: &str, bye: bool) {
    if bye {
        write_goodbye(out, ssrc, info, cname);
    } else {
        write_sender_report(out, ssrc, info, cname);
    }
}

/// Appends a compound RR + SDES(CNAME). More than 31 blocks are stacked in
/// further RR packets (§6.4.2).
pub fn write_receiver_report(out: &mut BytesMut, ssrc: u32, reports: &[ReportBlock], cname: &str) {
    let mut rest = reports;
    loop {
        let (blocks, tail) = rest.split_at(rest.len().min(MAX_BLOCKS));
        let start = begin(out, blocks.len() as u8, RR);
        out.put_u32(ssrc);
        for block in blocks {
            put_block(out, block);
        }
        finish(out, start);
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    write_sdes(out, ssrc, cname);
}

/// SDES with one chunk holding one CNAME item (§6.5), truncated to 255 bytes
/// on a character boundary. The item list ends with a null octet, then
/// nulls up to the next 32-bit boundary.
fn write_sdes(out: &mut BytesMut, ssrc: u32, cname: &str) {
    let mut len = cname.len().min(255);
    while !cname.is_char_boundary(len) {
        len -= 1;
    }
    let start = begin(out, 1, SDES);
    out.put_u32(ssrc);
    out.put_u8(CNAME);
    out.put_u8(len as u8);
    out.put_slice(&cname.as_bytes()[..len]);
    out.put_u8(0);
    finish(out, start);
}

fn put_block(out: &mut BytesMut, b: &ReportBlock) {
    let lost = b.cumulative_lost.clamp(LOST_MIN, LOST_MAX) as u32 & 0x00ff_ffff;
    out.put_u32(b.ssrc);
    out.put_u32((u32::from(b.fraction_lost) << 24) | lost);
    out.put_u32(b.highest_seq);
    out.put_u32(b.jitter);
    out.put_u32(b.lsr);
    out.put_u32(b.dlsr);
}

/// Writes a header with a placeholder length; returns where it starts.
fn begin(out: &mut BytesMut, count: u8, packet_type: u8) -> usize {
    let start = out.len();
    out.put_u8(0x80 | count);
    out.put_u8(packet_type);
    out.put_u16(0);
    start
}

/// Pads the packet begun at `start` with nulls to 32 bits and fills in its
/// length.
fn finish(out: &mut BytesMut, start: usize) {
    while (out.len() - start) % 4 != 0 {
        out.put_u8(0);
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

/// Validates a compound datagram (RFC 3550 A.2) and returns its packets.
///
/// Checks: version 2 everywhere; the first packet is an SR or RR; only the
/// last packet may set the padding bit, with a count from 1 to its body
/// length; the lengths add up exactly to the datagram; each packet's
/// contents fit its length; at most 64 packets.
pub fn parse_compound(datagram: &[u8]) -> Result<Vec<Packet>, RtcpError> {
    if datagram.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut pos = 0;
    while pos < datagram.len() {
        if packets.len() == MAX_PACKETS {
            return Err(RtcpError::TooManyPackets);
        }
        let rest = &datagram[pos..];
        let short = |needed| RtcpError::Length {
            pos,
            needed,
            available: rest.len(),
        };
        let &[first, packet_type, len_hi, len_lo] = rest.first_chunk().ok_or(short(4))?;
        let version = first >> 6;
        if version != 2 {
            return Err(RtcpError::Version { pos, version });
        }
        if pos == 0 && !matches!(packet_type, SR | RR) {
            return Err(RtcpError::FirstPacket { packet_type });
        }
        let len = (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1) * 4;
        let packet = rest.get(..len).ok_or(short(len))?;
        let mut body = &packet[4..];
        if first & 0x20 != 0 {
            let pad = body.last().map_or(0, |&n| usize::from(n));
            if len != rest.len() || pad == 0 || pad > body.len() {
                return Err(RtcpError::Padding { pos });
            }
            body = &body[..body.len() - pad];
        }
        let packet = parse_packet(packet_type, first & 0x1f, body)
            .ok_or(RtcpError::Malformed { pos, packet_type })?;
        packets.push(packet);
        pos += len;
    }
    Ok(packets)
}

/// Parses one packet's body (header and padding removed); `None` if the
/// contents overrun it.
fn parse_packet(packet_type: u8, count: u8, body: &[u8]) -> Option<Packet> {
    let mut r = Reader {
        rest: body,
        len: body.len(),
    };
    let count = usize::from(count);
    Some(match packet_type {
        SR => Packet::SenderReport {
            ssrc: r.u32()?,
            info: SenderInfo {
                ntp: NtpTimestamp(u64::from_be_bytes(r.take()?)),
                rtp_time: r.u32()?,
                packet_count: r.u32()?,
                octet_count: r.u32()?,
            },
            reports: r.repeat(count, Reader::block)?,
        },
        RR => Packet::ReceiverReport {
            ssrc: r.u32()?,
            reports: r.repeat(count, Reader::block)?,
        },
        SDES => Packet::SourceDescription {
            chunks: r.repeat(count, Reader::sdes_chunk)?,
        },
        BYE => Packet::Goodbye {
            ssrcs: r.repeat(count, Reader::u32)?,
            reason: if r.rest.is_empty() {
                None
            } else {
                Some(lossy(r.text()?)).filter(|s| !s.is_empty())
            },
        },
        packet_type => Packet::Other { packet_type },
    })
}

/// A bounds-checked cursor over one packet body; `len` is the body's length,
/// for 32-bit alignment.
struct Reader<'a> {
    rest: &'a [u8],
    len: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk()?;
        self.rest = rest;
        Some(*head)
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    /// A length octet, then that many bytes (SDES items, BYE reason).
    fn text(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.bytes(n.into())
    }

    /// `count` is at most 31, so this allocates little whatever the input.
    fn repeat<T>(&mut self, count: usize, item: fn(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        (0..count).map(|_| item(self)).collect()
    }

    fn block(&mut self) -> Option<ReportBlock> {
        let ssrc = self.u32()?;
        let lost = self.u32()?;
        Some(ReportBlock {
            ssrc,
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: self.u32()?,
            jitter: self.u32()?,
            lsr: self.u32()?,
            dlsr: self.u32()?,
        })
    }

    /// ```text
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |                          SSRC/CSRC_1                          |
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |    CNAME=1    |     length    | user and domain name        ...
    /// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    /// |  (more items) |    END = 0    | null padding to 32 bits
    /// ```
    fn sdes_chunk(&mut self) -> Option<(u32, Option<String>)> {
        let ssrc = self.u32()?;
        let mut cname = None;
        loop {
            match self.u8()? {
                0 => break,
                CNAME => cname = Some(lossy(self.text()?)),
                _ => {
                    self.text()?;
                }
            }
        }
        let pad = (4 - (self.len - self.rest.len()) % 4) % 4;
        self.bytes(pad)?;
        Some((ssrc, cname))
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: SenderInfo = SenderInfo {
        ntp: NtpTimestamp(0xe8a1_b2c3_8000_0000),
        rtp_time: 0x1234_5678,
        packet_count: 1000,
        octet_count: 160_000,
    };

    fn block(ssrc: u32, cumulative_lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost,
            highest_seq: 0x0001_0010,
            jitter: 37,
            lsr: 0xb2c3_8000,
            dlsr: 0x0001_8000,
        }
    }

    fn compound(write: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        write(&mut out);
        assert_eq!(out.len() % 4, 0);
        out.to_vec()
    }

    fn sdes(ssrc: u32, cname: &str) -> Packet {
        Packet::SourceDescription {
            chunks: vec![(ssrc, Some(cname.to_owned()))],
        }
    }

    #[test]
    fn sender_report_round_trips() {
        let bytes = compound(|out| write_sender_report(out, 7, &INFO, "rtspd@host"));
        assert_eq!(
            parse_compound(&bytes).unwrap(),
            [
                Packet::SenderReport {
                    ssrc: 7,
                    info: INFO,
                    reports: vec![]
                },
                sdes(7, "rtspd@host")
            ]
        );
    }

    #[test]
    fn goodbye_round_trips() {
        let bytes = compound(|out| write_goodbye(out, 7, &INFO, "a"));
        assert_eq!(
            parse_compound(&bytes).unwrap(),
            [
                Packet::SenderReport {
                    ssrc: 7,
                    info: INFO,
                    reports: vec![]
                },
                sdes(7, "a"),
                Packet::Goodbye {
                    ssrcs: vec![7],
                    reason: None
                },
            ]
        );
    }

    #[test]
    fn receiver_report_round_trips_including_stacked_and_empty() {
        for n in [0, 1, 2, 31, 32, 70] {
            let reports: Vec<_> = (0..n).map(|i| block(i, i as i32 * 1000 - 5000)).collect();
            let bytes = compound(|out| write_receiver_report(out, 9, &reports, "load@test"));
            let packets = parse_compound(&bytes).unwrap();
            let (last, rrs) = packets.split_last().unwrap();
            assert_eq!(*last, sdes(9, "load@test"));
            assert_eq!(rrs.len(), n.div_ceil(31).max(1) as usize);
            let mut parsed = vec![];
            for rr in rrs {
                let Packet::ReceiverReport { ssrc: 9, reports } = rr else {
                    panic!("{rr:?}")
                };
                parsed.extend_from_slice(reports);
            }
            assert_eq!(parsed, reports);
        }
    }

    #[test]
    fn cumulative_lost_is_24_bit_signed_and_clamped() {
        for (written, read) in [
            (-1, -1),
            (-0x80_0000, -0x80_0000),
            (i32::MIN, -0x80_0000),
            (i32::MAX, 0x7f_ffff),
        ] {
            let bytes = compound(|out| write_receiver_report(out, 1, &[block(2, written)], ""));
            let Packet::ReceiverReport { reports, .. } = &parse_compound(&bytes).unwrap()[0] else {
                panic!()
            };
            assert_eq!(reports[0].cumulative_lost, read);
        }
    }

    #[test]
    fn sender_report_matches_rfc_3550_layout() {
        let bytes = compound(|out| write_sender_report(out, 0xdead_beef, &INFO, "ab"));
        #[rustfmt::skip]
        let expected = [
            // SR: V=2 P=0 RC=0, PT=200, length 6 (7 words)
            0x80, 200, 0, 6,
            0xde, 0xad, 0xbe, 0xef,             // SSRC of sender
            0xe8, 0xa1, 0xb2, 0xc3,             // NTP seconds
            0x80, 0x00, 0x00, 0x00,             // NTP fraction (0.5 s)
            0x12, 0x34, 0x56, 0x78,             // RTP timestamp
            0x00, 0x00, 0x03, 0xe8,             // packet count 1000
            0x00, 0x02, 0x71, 0x00,             // octet count 160000
            // SDES: V=2 P=0 SC=1, PT=202, length 3 (4 words)
            0x81, 202, 0, 3,
            0xde, 0xad, 0xbe, 0xef,             // SSRC
            1, 2, b'a', b'b',                   // CNAME, length 2, "ab"
            0, 0, 0, 0,                         // END, then null padding
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn long_cname_is_truncated_on_a_char_boundary() {
        let ascii = "x".repeat(300);
        let bytes = compound(|out| write_sender_report(out, 1, &INFO, &ascii));
        assert_eq!(parse_compound(&bytes).unwrap()[1], sdes(1, &ascii[..255]));
        let wide = "é".repeat(200); // 2 bytes each: 255 would split one
        let bytes = compound(|out| write_sender_report(out, 1, &INFO, &wide));
        assert_eq!(parse_compound(&bytes).unwrap()[1], sdes(1, &wide[..254]));
    }

    #[test]
    fn parses_bye_reason_other_sdes_items_and_unknown_types() {
        let mut bytes = compound(|out| write_receiver_report(out, 5, &[], "c"));
        #[rustfmt::skip]
        let more = [
            0x81, 202, 0, 3, 0, 0, 0, 6,        // SDES, one chunk for SSRC 6:
            2, 1, b'n', 1, 2, b'c', b'd', 0,    // NAME "n", CNAME "cd", END
            0x80, 204, 0, 0,                    // APP, header only
            0x82, 203, 0, 3, 0, 0, 0, 5, 0, 0, 0, 6, // BYE 5 and 6,
            3, b'b', b'y', b'e',                // reason "bye"
        ];
        bytes.extend_from_slice(&more);
        let packets = parse_compound(&bytes).unwrap();
        assert_eq!(packets[2], sdes(6, "cd"));
        assert_eq!(packets[3], Packet::Other { packet_type: 204 });
        assert_eq!(
            packets[4],
            Packet::Goodbye {
                ssrcs: vec![5, 6],
                reason: Some("bye".into())
            }
        );
    }

    #[test]
    fn padding_is_accepted_on_the_last_packet_only() {
        let rr = [0x80, RR, 0, 1, 0, 0, 0, 5];
        let padded_rr = [0xa0, RR, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4];
        let padded = [&rr[..], &padded_rr].concat();
        assert_eq!(parse_compound(&padded).unwrap().len(), 2);
        let early = [&padded_rr[..], &rr].concat();
        assert_eq!(parse_compound(&early), Err(RtcpError::Padding { pos: 0 }));
        for count in [0, 9] {
            let bad = [0xa0, RR, 0, 2, 0, 0, 0, 5, 0, 0, 0, count];
            assert_eq!(parse_compound(&bad), Err(RtcpError::Padding { pos: 0 }));
        }
    }

    #[test]
    fn rejects_invalid_compounds() {
        let good = compound(|out| write_sender_report(out, 1, &INFO, "c"));
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        let cases: [(Vec<u8>, RtcpError); 8] = [
            (vec![], RtcpError::Empty),
            (with(0, 0x40), RtcpError::Version { pos: 0, version: 1 }),
            (
                with(28, 0xc1),
                RtcpError::Version {
                    pos: 28,
                    version: 3,
                },
            ),
            (
                good[28..].to_vec(),
                RtcpError::FirstPacket { packet_type: SDES },
            ),
            (
                with(3, 60),
                RtcpError::Length {
                    pos: 0,
                    needed: 244,
                    available: 40,
                },
            ),
            (
                with(3, 0),
                RtcpError::Malformed {
                    pos: 0,
                    packet_type: SR,
                },
            ),
            (
                [&good[..], &[0x80, 0, 0]].concat(),
                RtcpError::Length {
                    pos: 40,
                    needed: 4,
                    available: 3,
                },
            ),
            (
                [&good[..], &[0x80, 1, 0, 1]].concat(),
                RtcpError::Length {
                    pos: 40,
                    needed: 8,
                    available: 4,
                },
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(parse_compound(&bytes), Err(err), "{bytes:02x?}");
        }
        // One report block claimed, none present.
        assert_eq!(
            parse_compound(&[0x81, RR, 0, 1, 0, 0, 0, 5]),
            Err(RtcpError::Malformed {
                pos: 0,
                packet_type: RR
            })
        );
        // An SDES chunk without its END item.
        assert_eq!(
            parse_compound(&[
                0x80, RR, 0, 1, 0, 0, 0, 5, 0x81, SDES, 0, 2, 0, 0, 0, 5, 1, 2, b'a', b'b'
            ]),
            Err(RtcpError::Malformed {
                pos: 8,
                packet_type: SDES
            })
        );
    }

    #[test]
    fn caps_the_packet_count() {
        let rr = [0x80, RR, 0, 1, 0, 0, 0, 5];
        assert_eq!(parse_compound(&rr.repeat(64)).unwrap().len(), 64);
        assert_eq!(
            parse_compound(&rr.repeat(65)),
            Err(RtcpError::TooManyPackets)
        );
    }

    #[test]
    fn junk_and_truncations_never_panic() {
        let mut state = 0x1234_5678_u32;
        let noise: Vec<u8> = (0..65_000)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        let mut valid_prefix = vec![0x80, RR, 0, 1, 0, 0, 0, 5];
        valid_prefix.extend_from_slice(&noise);
        let mut zero_lengths = vec![0x80, RR, 0, 1, 0, 0, 0, 5];
        zero_lengths.extend_from_slice(&[0x9f, SDES, 0, 0].repeat(16_000));
        for junk in [
            noise,
            vec![0xff; 65_000],
            vec![0; 65_000],
            valid_prefix,
            zero_lengths,
        ] {
            assert!(parse_compound(&junk).is_err());
        }
        let good = compound(|out| {
            write_goodbye(out, 1, &INFO, "cname");
            write_receiver_report(out, 2, &[block(3, -7)], "x");
        });
        for cut in 0..good.len() {
            // Valid exactly at packet boundaries after the first packet.
            let ok = parse_compound(&good[..cut]).is_ok();
            assert_eq!(ok, [28, 44, 52, 84].contains(&cut), "cut at {cut}");
        }
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(
            NtpTimestamp::from_unix(Duration::ZERO).0,
            2_208_988_800 << 32
        );
        let half = NtpTimestamp::from_unix(Duration::from_millis(1500));
        assert_eq!(half.0, ((2_208_988_800 + 1) << 32) | 0x8000_0000);
        assert_eq!(half.middle32(), ((2_208_988_801 & 0xffff) << 16) | 0x8000);
        assert_eq!(half.to_unix(), Duration::from_millis(1500));
        // Nanosecond round trips, across the 2036 era rollover too.
        for unix in [1_700_000_000, 2_085_978_495, 2_085_978_496, 4_000_000_000] {
            for nanos in [0, 1, 999_999_999, 123_456_789] {
                let t = Duration::new(unix, nanos);
                assert_eq!(NtpTimestamp::from_unix(t).to_unix(), t);
            }
        }
        // 1968–1970 saturates.
        assert_eq!(NtpTimestamp(0x8000_0000 << 32).to_unix(), Duration::ZERO);
    }
}
