//! What a live channel plays, cut and encoded a packet at a time: a clip in
//! a loop (position wraps to the start with no gap), or a streamed source
//! (a pipe, stdin, or a publisher's RTP through a [`Depacketizer`], RFC
//! 2326 §10.11 RECORD) feeding a bounded FIFO of big-endian PCM. Encoding
//! is L16 or G.711 (RFC 3551 §4.5.11, §4.5.14; see [`Codec`]).
//!
//! A streamed source holds at most [`MAX_BUFFERED`]; beyond it the oldest
//! audio goes. Its jitter buffer (`prebuffer`) holds sending back until
//! that much is queued, at the start and again after each run-dry; a packet
//! it has not delivered in time is skipped (the channel's timeline runs
//! on). When it ends, what it sent still plays out.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{ChannelConfig, LiveError};
use crate::proto::clock::duration_to_ticks;
use crate::proto::depacketize::{DepacketizeStats, Depacketizer, Outcome, StreamFormat};
use crate::proto::packetize::{frames_per_packet, Codec};

/// How far a streamed source may run ahead of the channel's clock before
/// the oldest audio is dropped.
const MAX_BUFFERED: Duration = Duration::from_secs(2);

/// What the source has for the next packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cut {
    /// Its payload, encoded.
    Payload(Bytes),
    /// Nothing in time (or the channel ended): the packet is skipped.
    Starved,
    /// The streamed source ended and everything it sent is out.
    Drained,
}

/// A looping clip or a streamed FIFO, and how it is encoded.
#[derive(Debug)]
pub(super) struct Source {
    rate: u32,
    channels: u16,
    codec: Codec,
    frames_per_packet: u64,
    input: Input,
}

#[derive(Debug)]
enum Input {
    Loop {
        /// Interleaved big-endian 16-bit samples.
        pcm: Bytes,
        /// Sample frame the next packet starts at.
        cursor: u64,
    },
    Stream(Stream),
}

/// A streamed source's buffer.
#[derive(Debug)]
struct Stream {
    /// PCM fed but not yet sent, at most `cap` bytes of it.
    fifo: VecDeque<u8>,
    cap: usize,
    /// Bytes of one sample frame.
    frame: usize,
    /// Audio to have buffered before sending starts (again, after it ran
    /// dry): a jitter buffer, in bytes.
    prebuffer: usize,
    /// The buffer reached `prebuffer` and has not run dry since.
    primed: bool,
    /// The publisher feeding it, if any.
    publisher: Option<Depacketizer>,
    /// Its decoded PCM on the way to the buffer (kept, so a packet costs
    /// no allocation).
    decoded: Vec<u8>,
    /// The source said it ended.
    ended: bool,
}

impl Stream {
    /// Appends whole frames of `pcm`; returns the frames dropped because
    /// the source ran ahead.
    fn feed(&mut self, pcm: &[u8]) -> u64 {
        self.fifo.extend(&pcm[..pcm.len() - pcm.len() % self.frame]);
        if self.fifo.len() <= self.cap {
            return 0;
        }
        let drop = self.fifo.len() - self.cap;
        self.fifo.drain(..drop);
        (drop / self.frame) as u64
    }
}

impl Source {
    pub(super) fn new(cfg: &ChannelConfig) -> Result<Self, LiveError> {
        let channels = cfg.channels.max(1);
        if cfg.codec != Codec::L16 && (cfg.rate != 8000 || channels != 1) {
            return Err(LiveError::NotNarrowband {
                rate: cfg.rate,
                channels,
            });
        }
        let frame = 2 * usize::from(channels);
        if !cfg.streamed && cfg.pcm.len() < frame {
            return Err(LiveError::Empty);
        }
        let frame_out = cfg.codec.sample_bytes() * usize::from(channels);
        let input = if cfg.streamed {
            Input::Stream(Stream {
                fifo: VecDeque::new(),
                cap: duration_to_ticks(MAX_BUFFERED, cfg.rate) as usize * frame,
                frame,
                prebuffer: duration_to_ticks(cfg.prebuffer.min(MAX_BUFFERED / 2), cfg.rate)
                    as usize
                    * frame,
                primed: false,
                publisher: None,
                decoded: Vec::new(),
                ended: false,
            })
        } else {
            Input::Loop {
                pcm: cfg.pcm.clone(),
                cursor: 0,
            }
        };
        Ok(Self {
            rate: cfg.rate,
            channels,
            codec: cfg.codec,
            frames_per_packet: frames_per_packet(cfg.rate, frame_out, cfg.ptime, cfg.max_payload),
            input,
        })
    }

    pub(super) fn rate(&self) -> u32 {
        self.rate
    }

    pub(super) fn channels(&self) -> u16 {
        self.channels
    }

    pub(super) fn codec(&self) -> Codec {
        self.codec
    }

    pub(super) fn frames_per_packet(&self) -> u64 {
        self.frames_per_packet
    }

    /// Appends big-endian PCM to a streamed source (whole frames; a
    /// trailing partial frame is dropped). Returns the frames dropped
    /// because the source ran more than [`MAX_BUFFERED`] ahead.
    pub(super) fn feed(&mut self, pcm: &[u8]) -> u64 {
        match &mut self.input {
            Input::Stream(s) => s.feed(pcm),
            Input::Loop { .. } => 0,
        }
    }

    /// The streamed source ended: what it sent still plays out.
    pub(super) fn end(&mut self) {
        if let Input::Stream(s) = &mut self.input {
            s.ended = true;
        }
    }

    /// A publisher starts feeding a streamed source with RTP in `format`,
    /// which must have the source's rate and channel count (the codec may
    /// differ: it is decoded to PCM).
    pub(super) fn start_publisher(&mut self, format: StreamFormat) -> Result<(), LiveError> {
        match &mut self.input {
            Input::Stream(s) if format.rate == self.rate && format.channels == self.channels => {
                s.publisher = Some(Depacketizer::new(format));
                Ok(())
            }
            _ => Err(LiveError::Mismatch {
                rate: format.rate,
                channels: format.channels,
            }),
        }
    }

    /// The publisher left; returns its counters.
    pub(super) fn stop_publisher(&mut self) -> Option<DepacketizeStats> {
        match &mut self.input {
            Input::Stream(s) => s.publisher.take().map(|d| d.stats),
            Input::Loop { .. } => None,
        }
    }

    /// One RTP packet from the publisher, decoded into the buffer; `None`
    /// when there is none. With the outcome, the frames the buffer dropped.
    pub(super) fn publish(&mut self, packet: &[u8]) -> Option<(Outcome, u64)> {
        let Input::Stream(s) = &mut self.input else {
            return None;
        };
        let d = s.publisher.as_mut()?;
        let mut pcm = std::mem::take(&mut s.decoded);
        pcm.clear();
        let outcome = d.push(packet, &mut pcm);
        let dropped = s.feed(&pcm);
        s.decoded = pcm;
        Some((outcome, dropped))
    }

    /// Cuts and encodes the next packet's payload, wrapping a looping clip.
    /// A streamed source waits for its jitter buffer until primed (but
    /// never once it ended: the rest plays out), and has nothing more once
    /// the channel `ended`.
    pub(super) fn next(&mut self, ended: bool) -> Cut {
        let n = self.frames_per_packet;
        let frame = 2 * usize::from(self.channels);
        let mut payload = BytesMut::with_capacity(
            n as usize * self.codec.sample_bytes() * usize::from(self.channels),
        );
        match &mut self.input {
            Input::Stream(s) => {
                let want = n as usize * frame;
                let need = if s.primed || s.ended {
                    want
                } else {
                    want.max(s.prebuffer)
                };
                if ended || s.fifo.len() < need {
                    s.primed = false;
                    return if s.ended { Cut::Drained } else { Cut::Starved };
                }
                s.primed = true;
                let bytes: Vec<u8> = s.fifo.drain(..want).collect();
                self.codec.encode(&bytes, &mut payload);
            }
            Input::Loop { pcm, cursor } => {
                let total = (pcm.len() / frame) as u64;
                let mut left = n;
                while left > 0 {
                    let start = *cursor % total;
                    let take = left.min(total - start);
                    self.codec.encode(
                        &pcm[start as usize * frame..(start + take) as usize * frame],
                        &mut payload,
                    );
                    *cursor = (start + take) % total;
                    left -= take;
                }
            }
        }
        Cut::Payload(payload.freeze())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::proto::clock::WallClock;
    use crate::proto::live::tests::{pcm, rtp, udp};
    use crate::proto::live::{Channel, ChannelConfig};
    use crate::proto::pacer::Transmit;
    use crate::proto::rtcp::{parse_compound, Packet};
    use crate::proto::rtp::Stamper;

    #[test]
    fn streamed_source_starves_overflows_and_ends_with_bye() {
        let t0 = Instant::now();
        let mut c = Channel::new(
            ChannelConfig {
                pcm: Bytes::new(),
                streamed: true,
                prebuffer: Duration::ZERO,
                rate: 8000,
                channels: 1,
                codec: Codec::L16,
                ptime: Duration::from_millis(20),
                max_payload: 1400,
                ssrc: 9,
                first_seq: 100,
                first_rtptime: 0,
                cname: "s".into(),
                clock: WallClock::new(t0, Duration::ZERO),
            },
            t0,
        )
        .unwrap();
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        out.clear();
        // Nothing fed: packets 0 and 1 are skipped, no RTP goes out.
        c.poll(t0 + Duration::from_millis(39), &mut out);
        assert!(out.iter().all(|t| t.rtcp));
        assert_eq!(c.starved_packets, 2);
        // 1.5 packets fed: packet 2 goes (seq 100: skipped packets took no
        // sequence number; its timestamp is 2 × 160 on), the half waits.
        let samples: Vec<u8> = (0..240i16).flat_map(i16::to_be_bytes).collect();
        c.feed(&samples);
        c.poll(t0 + Duration::from_millis(59), &mut out);
        let sent: Vec<&Transmit> = out.iter().filter(|t| !t.rtcp).collect();
        assert_eq!(sent.len(), 1);
        let (seq, ts, payload) = rtp(sent[0]);
        assert_eq!((seq, ts), (100, 320));
        assert_eq!(payload, &samples[..320]);
        // 3 s fed at once: only MAX_BUFFERED (2 s) is kept.
        c.feed(&vec![0u8; 3 * 8000 * 2]);
        assert_eq!(c.overflowed_frames, 8000 + 80);
        // The end: the 2 s buffered still play out, then a BYE.
        c.end();
        out.clear();
        c.poll(t0 + Duration::from_millis(2059), &mut out);
        assert_eq!(
            out.iter().filter(|t| !t.rtcp).count(),
            100,
            "2 s of packets"
        );
        let has_bye = |out: &[Transmit]| {
            out.iter().filter(|t| t.rtcp).any(|t| {
                parse_compound(&t.data)
                    .unwrap()
                    .iter()
                    .any(|p| matches!(p, Packet::Goodbye { .. }))
            })
        };
        assert!(!has_bye(&out), "no BYE yet");
        out.clear();
        c.poll(t0 + Duration::from_millis(2079), &mut out);
        assert!(has_bye(&out), "a BYE once the buffer ran out");
        out.clear();
        c.poll(t0 + Duration::from_millis(3000), &mut out);
        assert!(out.iter().all(|t| t.rtcp), "no packets after the end");
    }

    fn streamed(t0: Instant, prebuffer: Duration) -> Channel {
        Channel::new(
            ChannelConfig {
                pcm: Bytes::new(),
                streamed: true,
                prebuffer,
                rate: 8000,
                channels: 1,
                codec: Codec::L16,
                ptime: Duration::from_millis(20),
                max_payload: 1400,
                ssrc: 0x5151,
                first_seq: 7,
                first_rtptime: 1000,
                cname: "p".into(),
                clock: WallClock::new(t0, Duration::ZERO),
            },
            t0,
        )
        .unwrap()
    }

    fn sent(out: &mut Vec<Transmit>) -> Vec<(u16, u32, Vec<u8>)> {
        let r = out
            .iter()
            .filter(|t| !t.rtcp)
            .map(|t| {
                let (seq, ts, p) = rtp(t);
                (seq, ts, p.to_vec())
            })
            .collect();
        out.clear();
        r
    }

    #[test]
    fn sending_waits_for_the_jitter_buffer_each_time_it_runs_dry() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = streamed(t0, ms(60));
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        let packet = vec![1u8; 320];
        c.feed(&packet);
        c.feed(&packet);
        c.poll(t0 + ms(19), &mut out);
        assert!(sent(&mut out).is_empty(), "40 ms buffered of 60");
        c.feed(&packet);
        c.poll(t0 + ms(39), &mut out);
        assert_eq!(sent(&mut out).len(), 1, "primed: packet 1 goes");
        c.poll(t0 + ms(79), &mut out);
        assert_eq!(sent(&mut out).len(), 2, "the buffer drains without waiting");
        c.poll(t0 + ms(99), &mut out);
        c.feed(&packet);
        c.feed(&packet);
        c.poll(t0 + ms(139), &mut out);
        assert!(sent(&mut out).is_empty(), "ran dry: waits for 60 ms again");
        c.feed(&packet);
        c.poll(t0 + ms(159), &mut out);
        assert_eq!(sent(&mut out).len(), 1);
    }

    #[test]
    fn publishers_hand_over_on_one_timeline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = streamed(t0, Duration::ZERO);
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        let l16 = StreamFormat {
            codec: Codec::L16,
            payload_type: 96,
            rate: 8000,
            channels: 1,
        };
        assert!(c.publish(&[0x80; 20]).is_none(), "no publisher yet");
        assert!(matches!(
            c.start_publisher(StreamFormat { rate: 16000, ..l16 }),
            Err(LiveError::Mismatch { rate: 16000, .. })
        ));
        c.start_publisher(l16).unwrap();
        // The first publisher: its own SSRC, sequence and clock.
        let mut a = Stamper::new(0xAAAA, 96, 40_000);
        let samples = |k: i16| -> Vec<u8> {
            (0..160)
                .flat_map(|i| (k * 1000 + i).to_be_bytes())
                .collect()
        };
        for k in 0..2 {
            c.publish(&a.packet(90_000 + 160 * k as u32, false, &samples(k)));
        }
        c.poll(t0 + ms(39), &mut out);
        let first = sent(&mut out);
        assert_eq!(
            first.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
            [(7, 1000), (8, 1160)],
            "the channel's sequence and timestamps, not the publisher's"
        );
        assert_eq!(first[1].2, samples(1));
        assert_eq!(c.stop_publisher().map(|s| s.packets), Some(2));
        // Nobody publishes for 60 ms: nothing is sent, the clock runs.
        c.poll(t0 + ms(99), &mut out);
        assert!(sent(&mut out).is_empty());
        // The next publisher, another SSRC and sequence: the listener's
        // stream goes on with the next sequence number, and a timestamp
        // that counts the silent time.
        c.start_publisher(StreamFormat {
            codec: Codec::Pcmu,
            payload_type: 0,
            ..l16
        })
        .unwrap();
        let mut b = Stamper::new(0xBBBB, 0, 3);
        c.publish(&b.packet(5, false, &[0xFF; 160]));
        c.poll(t0 + ms(119), &mut out);
        let next = sent(&mut out);
        assert_eq!((next[0].0, next[0].1), (9, 1000 + 5 * 160));
        assert_eq!(next[0].2, vec![0; 320], "µ-law silence decoded");
    }

    #[test]
    fn g711_needs_narrowband() {
        let t0 = Instant::now();
        let e = Channel::new(
            ChannelConfig {
                pcm: pcm(),
                streamed: false,
                prebuffer: Duration::ZERO,
                rate: 16_000,
                channels: 1,
                codec: Codec::Pcma,
                ptime: Duration::from_millis(20),
                max_payload: 1400,
                ssrc: 1,
                first_seq: 0,
                first_rtptime: 0,
                cname: "x".into(),
                clock: WallClock::new(t0, Duration::ZERO),
            },
            t0,
        )
        .unwrap_err();
        assert_eq!(
            e,
            LiveError::NotNarrowband {
                rate: 16_000,
                channels: 1
            }
        );
    }
}
