//! What a publisher sends (RFC 2326 §10.11 RECORD), back to PCM: L16
//! (RFC 3551 §4.5.11) and G.711 PCMU/PCMA (§4.5.14) RTP packets become
//! big-endian 16-bit samples for a live channel's buffer.
//!
//! Packets are taken in arrival order and placed by sequence number
//! (RFC 3550 §5.1): a late or repeated packet is dropped, and a gap left by
//! lost packets is filled with silence as long as the RTP timestamps say
//! (up to [`MAX_GAP`]), so the audio that follows keeps its timing. A new
//! SSRC is a new stream: the sequence starts over from its first packet.

use super::packetize::g711::{alaw_to_linear, ulaw_to_linear};
use super::packetize::Codec;
use super::sdp::OfferedTrack;

/// The audio format of a published stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub codec: Codec,
    pub payload_type: u8,
    pub rate: u32,
    pub channels: u16,
}

/// Why an offered track cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("only audio can be published, not {0}")]
    NotAudio(String),
    #[error("payload type {0} without an rtpmap is not L16, PCMU or PCMA")]
    UnknownStatic(u8),
    #[error("encoding {0} is not L16, PCMU or PCMA")]
    Encoding(String),
    #[error("{codec} at {rate} Hz with {channels} channels is not supported")]
    Shape {
        codec: &'static str,
        rate: u32,
        channels: u16,
    },
}

impl StreamFormat {
    /// The format an SDP track announces: its rtpmap, or a static payload
    /// type (RFC 3551 table 4) when it has none.
    pub fn from_offer(t: &OfferedTrack) -> Result<Self, FormatError> {
        if !t.media.eq_ignore_ascii_case("audio") {
            return Err(FormatError::NotAudio(t.media.clone()));
        }
        let (codec, channels) = match t.encoding.as_deref() {
            Some(e) if e.eq_ignore_ascii_case("L16") => (Codec::L16, t.channels),
            Some(e) if e.eq_ignore_ascii_case("PCMU") => (Codec::Pcmu, t.channels),
            Some(e) if e.eq_ignore_ascii_case("PCMA") => (Codec::Pcma, t.channels),
            Some(e) => return Err(FormatError::Encoding(e.to_owned())),
            None => Codec::from_static_payload_type(t.payload_type)
                .ok_or(FormatError::UnknownStatic(t.payload_type))?,
        };
        let shape_ok = match codec {
            Codec::L16 => (1000..=192_000).contains(&t.clock_rate) && (1..=8).contains(&channels),
            Codec::Pcmu | Codec::Pcma => t.clock_rate == 8000 && channels == 1,
        };
        if !shape_ok {
            return Err(FormatError::Shape {
                codec: codec.name(),
                rate: t.clock_rate,
                channels,
            });
        }
        Ok(Self {
            codec,
            payload_type: t.payload_type,
            rate: t.clock_rate,
            channels,
        })
    }

    /// Bytes of one sample frame on the wire.
    fn wire_frame(&self) -> usize {
        self.codec.sample_bytes() * usize::from(self.channels)
    }
}

/// The longest run of lost audio filled with silence; a longer jump in
/// timestamps (a publisher that restarted its clock, say) starts over
/// without filling.
pub const MAX_GAP: u32 = 1;

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its samples (and any silence before them) were appended.
    Decoded { frames: usize, silence: usize },
    /// Not RTP, or a payload type other than the announced one.
    Rejected,
    /// Older than or the same as a packet already taken.
    Late,
}

/// Counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizeStats {
    pub packets: u64,
    pub rejected: u64,
    pub late: u64,
    /// Packets known lost from sequence gaps.
    pub lost: u64,
    pub silence_frames: u64,
    pub ssrc_changes: u64,
}

/// Turns one publisher's packets into PCM.
#[derive(Debug, Clone)]
pub struct Depacketizer {
    format: StreamFormat,
    /// SSRC, next expected sequence number and timestamp.
    next: Option<(u32, u16, u32)>,
    pub stats: DepacketizeStats,
}

impl Depacketizer {
    pub fn new(format: StreamFormat) -> Self {
        Self {
            format,
            next: None,
            stats: DepacketizeStats::default(),
        }
    }

    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// Decodes `packet`, appending big-endian 16-bit samples to `out`.
    pub fn push(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Outcome {
        let Ok(rtp) = rtp_rs::RtpReader::new(packet) else {
            self.stats.rejected += 1;
            return Outcome::Rejected;
        };
        if rtp.payload_type() != self.format.payload_type {
            self.stats.rejected += 1;
            return Outcome::Rejected;
        }
        let (ssrc, seq, ts) = (
            rtp.ssrc(),
            u16::from(rtp.sequence_number()),
            rtp.timestamp(),
        );
        let payload = rtp.payload();
        let frame = self.format.wire_frame();
        let frames = payload.len() / frame;
        let mut silence = 0;
        match self.next {
            Some((s, next_seq, next_ts)) if s == ssrc => {
                // Serial-number arithmetic (RFC 1982): ahead within half the
                // space is new, behind is late.
                let ahead = seq.wrapping_sub(next_seq);
                if ahead >= 0x8000 {
                    self.stats.late += 1;
                    return Outcome::Late;
                }
                if ahead > 0 {
                    self.stats.lost += u64::from(ahead);
                    let gap = ts.wrapping_sub(next_ts);
                    if gap <= MAX_GAP * self.format.rate {
                        silence = gap as usize;
                    }
                }
            }
            Some(_) => self.stats.ssrc_changes += 1,
            None => {}
        }
        self.next = Some((ssrc, seq.wrapping_add(1), ts.wrapping_add(frames as u32)));
        let channels = usize::from(self.format.channels);
        out.resize(out.len() + silence * 2 * channels, 0);
        let samples = &payload[..frames * frame];
        match self.format.codec {
            Codec::L16 => out.extend_from_slice(samples),
            Codec::Pcmu => out.extend(
                samples
                    .iter()
                    .flat_map(|&c| ulaw_to_linear(c).to_be_bytes()),
            ),
            Codec::Pcma => out.extend(
                samples
                    .iter()
                    .flat_map(|&c| alaw_to_linear(c).to_be_bytes()),
            ),
        }
        self.stats.packets += 1;
        self.stats.silence_frames += silence as u64;
        Outcome::Decoded { frames, silence }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::g711::linear_to_ulaw;
    use crate::proto::rtp::Stamper;

    fn offer(media: &str, pt: u8, enc: Option<&str>, rate: u32, channels: u16) -> OfferedTrack {
        OfferedTrack {
            media: media.into(),
            payload_type: pt,
            clock_rate: rate,
            encoding: enc.map(str::to_owned),
            channels,
            control: None,
            fmtp: None,
        }
    }

    #[test]
    fn formats_from_sdp() {
        let f = StreamFormat::from_offer(&offer("audio", 10, None, 44100, 1)).unwrap();
        assert_eq!((f.codec, f.rate, f.channels), (Codec::L16, 44100, 2));
        let f = StreamFormat::from_offer(&offer("audio", 0, None, 8000, 1)).unwrap();
        assert_eq!((f.codec, f.payload_type), (Codec::Pcmu, 0));
        let f = StreamFormat::from_offer(&offer("audio", 97, Some("l16"), 48000, 2)).unwrap();
        assert_eq!(
            (f.codec, f.rate, f.channels, f.payload_type),
            (Codec::L16, 48000, 2, 97)
        );
        let f = StreamFormat::from_offer(&offer("audio", 8, Some("PCMA"), 8000, 1)).unwrap();
        assert_eq!(f.codec, Codec::Pcma);
        for (bad, why) in [
            (offer("video", 96, Some("H264"), 90000, 1), "only audio"),
            (offer("audio", 97, Some("opus"), 48000, 2), "opus"),
            (offer("audio", 14, None, 90000, 1), "payload type 14"),
            (offer("audio", 96, Some("PCMU"), 16000, 1), "16000 Hz"),
            (offer("audio", 96, Some("L16"), 8000, 9), "9 channels"),
        ] {
            let e = StreamFormat::from_offer(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    fn l16_mono() -> StreamFormat {
        StreamFormat {
            codec: Codec::L16,
            payload_type: 96,
            rate: 8000,
            channels: 1,
        }
    }

    fn samples(from: i16, n: i16) -> Vec<u8> {
        (from..from + n).flat_map(i16::to_be_bytes).collect()
    }

    #[test]
    fn in_order_packets_are_concatenated() {
        let mut s = Stamper::new(7, 96, 65534);
        let mut d = Depacketizer::new(l16_mono());
        let mut out = Vec::new();
        for k in 0..4i16 {
            let p = s.packet(1000 + 3 * k as u32, false, &samples(3 * k, 3));
            assert_eq!(
                d.push(&p, &mut out),
                Outcome::Decoded {
                    frames: 3,
                    silence: 0
                }
            );
        }
        assert_eq!(out, samples(0, 12), "across the sequence wrap too");
        assert_eq!(d.stats.packets, 4);
    }

    #[test]
    fn losses_become_silence_and_late_packets_are_dropped() {
        let mut s = Stamper::new(7, 96, 10);
        let p: Vec<_> = (0..5i16)
            .map(|k| s.packet(3 * k as u32, false, &samples(100 * k, 3)))
            .collect();
        let mut d = Depacketizer::new(l16_mono());
        let mut out = Vec::new();
        d.push(&p[0], &mut out);
        // 1 and 2 lost (2 arrives late, after 3).
        assert_eq!(
            d.push(&p[3], &mut out),
            Outcome::Decoded {
                frames: 3,
                silence: 6
            }
        );
        assert_eq!(d.push(&p[2], &mut out), Outcome::Late);
        assert_eq!(d.push(&p[3], &mut out), Outcome::Late, "duplicate");
        d.push(&p[4], &mut out);
        let want = [samples(0, 3), vec![0; 12], samples(300, 3), samples(400, 3)].concat();
        assert_eq!(out, want);
        assert_eq!(
            (d.stats.lost, d.stats.late, d.stats.silence_frames),
            (2, 2, 6)
        );
    }

    #[test]
    fn a_huge_timestamp_jump_is_not_filled() {
        let mut s = Stamper::new(7, 96, 0);
        let mut d = Depacketizer::new(l16_mono());
        let mut out = Vec::new();
        d.push(&s.packet(0, false, &samples(0, 2)), &mut out);
        s.next_seq = 5;
        let r = d.push(&s.packet(8000 * 60, false, &samples(2, 2)), &mut out);
        assert_eq!(
            r,
            Outcome::Decoded {
                frames: 2,
                silence: 0
            }
        );
        assert_eq!(out, samples(0, 4));
    }

    #[test]
    fn new_ssrc_restarts_the_sequence_and_strangers_are_rejected() {
        let mut a = Stamper::new(1, 96, 500);
        let mut b = Stamper::new(2, 96, 9);
        let mut d = Depacketizer::new(l16_mono());
        let mut out = Vec::new();
        d.push(&a.packet(0, false, &samples(0, 1)), &mut out);
        let r = d.push(&b.packet(77, false, &samples(1, 1)), &mut out);
        assert_eq!(
            r,
            Outcome::Decoded {
                frames: 1,
                silence: 0
            }
        );
        let mut other_pt = Stamper::new(2, 0, 10);
        assert_eq!(
            d.push(&other_pt.packet(78, false, &[1]), &mut out),
            Outcome::Rejected
        );
        assert_eq!(d.push(b"\x00garbage", &mut out), Outcome::Rejected);
        assert_eq!(out, samples(0, 2));
        assert_eq!((d.stats.ssrc_changes, d.stats.rejected), (1, 2));
    }

    #[test]
    fn g711_and_stereo_l16() {
        let mut d = Depacketizer::new(StreamFormat {
            codec: Codec::Pcmu,
            payload_type: 0,
            rate: 8000,
            channels: 1,
        });
        let pcm = [0i16, 1000, -1000, 32000];
        let codes: Vec<u8> = pcm.iter().map(|&x| linear_to_ulaw(x)).collect();
        let mut out = Vec::new();
        d.push(&Stamper::new(3, 0, 0).packet(0, false, &codes), &mut out);
        let want: Vec<u8> = codes
            .iter()
            .flat_map(|&c| ulaw_to_linear(c).to_be_bytes())
            .collect();
        assert_eq!(out, want);

        let mut d = Depacketizer::new(StreamFormat {
            channels: 2,
            ..l16_mono()
        });
        let mut out = Vec::new();
        // Five samples: two whole stereo frames and a stray half frame.
        let r = d.push(
            &Stamper::new(3, 96, 0).packet(0, false, &samples(0, 5)),
            &mut out,
        );
        assert_eq!(
            r,
            Outcome::Decoded {
                frames: 2,
                silence: 0
            }
        );
        assert_eq!(out, samples(0, 4));
    }
}
