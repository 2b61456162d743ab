//! A live channel: one timeline that runs whether or not anyone listens,
//! packetized once per packet and fanned out to every listener (RFC 3550
//! §5.1 timing; RFC 2326 §C.1.5 live presentations).
//!
//! A [`Channel`] is three parts: its `source` (a looping clip, or a
//! streamed FIFO that a pipe or a publisher feeds), its one RTP stream on
//! one timeline ([`Sender`] numbering and counting, SRs from it), and its
//! `fanout` to the listeners. Packet `k` is due at
//! `anchor + k × samples_per_packet / rate` (absolute, no accumulated
//! error) and is stamped `first_rtptime + k × samples_per_packet` whether
//! or not it is sent, so a listener across the loop boundary, a run-dry or
//! a publisher handover sees one continuous stream. Each packet is encoded
//! once; every listener gets a clone of the same [`Bytes`].

mod fanout;
mod source;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clock::{duration_to_ticks, ticks_to_duration, WallClock};
use super::depacketize::{DepacketizeStats, Outcome, StreamFormat};
use super::pacer::Transmit;
use super::packetize::Codec;
use super::sender::Sender;
use super::session::Dest;
pub use fanout::JoinInfo;
use fanout::{Fanout, Packet};
use source::{Cut, Source};

/// Why a channel cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    #[error("G.711 needs 8 kHz mono audio; this source is {rate} Hz with {channels} channels")]
    NotNarrowband { rate: u32, channels: u16 },
    #[error("the source has no audio")]
    Empty,
    #[error("the channel does not take {rate} Hz with {channels} channels")]
    Mismatch { rate: u32, channels: u16 },
}

/// How a channel is set up.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// The clip to loop; ignored when `streamed`.
    pub pcm: Bytes,
    /// Fed by [`Channel::feed`] instead of looping `pcm` (pipe, stdin,
    /// publisher).
    pub streamed: bool,
    /// For a streamed source: how much audio to hold before sending starts,
    /// to ride out the source's jitter.
    pub prebuffer: Duration,
    pub rate: u32,
    pub channels: u16,
    pub codec: Codec,
    pub ptime: Duration,
    pub max_payload: usize,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_rtptime: u32,
    pub cname: String,
    pub clock: WallClock,
}

/// The channel's one RTP stream and its timeline.
#[derive(Debug)]
struct Timeline {
    sender: Sender,
    anchor: Instant,
    rate: u32,
    frames_per_packet: u64,
    /// The next packet's index (packets produced so far) and timestamp.
    index: u64,
    rtptime: u32,
    cname: String,
    wallclock: WallClock,
}

impl Timeline {
    /// When packet `index` is due.
    fn due(&self, index: u64) -> Instant {
        self.anchor + ticks_to_duration(index * self.frames_per_packet, self.rate)
    }

    /// The next packet: its index and numbering.
    fn edge(&self) -> (u64, JoinInfo) {
        let at = JoinInfo {
            seq: self.sender.next_seq(),
            rtptime: self.rtptime,
        };
        (self.index, at)
    }

    /// Moves on a packet, stamping `payload` as the one passed if the
    /// source had it (a skipped packet takes no sequence number, but its
    /// time still goes by, RFC 3550 §5.1).
    fn advance(&mut self, payload: Option<&[u8]>) -> Option<Packet> {
        let (index, at) = self.edge();
        let packet = payload.map(|p| Packet {
            index,
            at,
            data: self.sender.packet(at.rtptime, false, p),
        });
        self.rtptime = self.rtptime.wrapping_add(self.frames_per_packet as u32);
        self.index += 1;
        packet
    }

    /// An SR (or BYE) whose RTP time is the timeline at `now`.
    fn report(&self, now: Instant, bye: bool) -> Bytes {
        // The next packet's timestamp belongs to its due time; `now` is
        // that minus (due - now).
        let due = self.due(self.index);
        let ahead = duration_to_ticks(due.saturating_duration_since(now), self.rate);
        let behind = duration_to_ticks(now.saturating_duration_since(due), self.rate);
        let rtp_time = self
            .rtptime
            .wrapping_sub(ahead as u32)
            .wrapping_add(behind as u32);
        self.sender
            .report(self.wallclock.ntp(now), rtp_time, &self.cname, bye)
    }
}

/// A live channel: a source, its timeline, its listeners.
#[derive(Debug)]
pub struct Channel {
    source: Source,
    timeline: Timeline,
    fanout: Fanout,
    /// Every listener had its BYE: the streamed source ended and played
    /// out, or the channel was stopped.
    ended: bool,
    /// Sample frames dropped because the source ran ahead.
    pub overflowed_frames: u64,
    /// Packets not sent because the source had not delivered them in time.
    pub starved_packets: u64,
}

impl Channel {
    /// A channel whose first packet is due at `now`.
    pub fn new(cfg: ChannelConfig, now: Instant) -> Result<Self, LiveError> {
        let source = Source::new(&cfg)?;
        let (rate, per_packet) = (source.rate(), source.frames_per_packet());
        let pt = source.codec().payload_type(rate, source.channels());
        Ok(Self {
            timeline: Timeline {
                sender: Sender::new(cfg.ssrc, pt, cfg.first_seq),
                anchor: now,
                rate,
                frames_per_packet: per_packet,
                index: 0,
                rtptime: cfg.first_rtptime,
                cname: cfg.cname,
                wallclock: cfg.clock,
            },
            fanout: Fanout::new(ticks_to_duration(per_packet, rate)),
            source,
            ended: false,
            overflowed_frames: 0,
            starved_packets: 0,
        })
    }

    pub fn clock_rate(&self) -> u32 {
        self.timeline.rate
    }

    pub fn listener_count(&self) -> usize {
        self.fanout.len()
    }

    /// When [`Channel::poll`] next has work: the next packet to encode, or
    /// the next slot with listeners.
    pub fn next_deadline(&self) -> Instant {
        self.fanout.next_deadline(|k| self.timeline.due(k))
    }

    /// Adds listener `id` (a session's pacer group) at the live edge, in the
    /// least busy slot. Returns the first packet it will get; an SR goes to
    /// it at once so it can sync.
    pub fn subscribe(
        &mut self,
        id: u64,
        rtp: Dest,
        rtcp: Dest,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) -> JoinInfo {
        let edge = self.timeline.edge();
        let join = self
            .fanout
            .subscribe(id, rtp, rtcp, now, |k| self.timeline.due(k), edge);
        out.push(Transmit::rtcp(rtcp, self.timeline.report(now, false)));
        join
    }

    /// Removes listener `id`; with `bye`, tells it the stream ended for it.
    pub fn unsubscribe(&mut self, id: u64, bye: bool, now: Instant, out: &mut Vec<Transmit>) {
        if let Some(rtcp) = self.fanout.remove(id) {
            if bye {
                out.push(Transmit::rtcp(rtcp, self.timeline.report(now, true)));
            }
        }
    }

    /// Appends big-endian PCM from a streamed source (whole frames; a
    /// trailing partial frame is dropped). Beyond two seconds ahead the
    /// oldest audio goes.
    pub fn feed(&mut self, pcm: &[u8]) {
        self.overflowed_frames += self.source.feed(pcm);
    }

    /// The streamed source ended: what it sent still plays out, then every
    /// listener gets a BYE and no more packets are sent.
    pub fn end(&mut self) {
        self.source.end();
    }

    /// A publisher starts feeding the channel with RTP in `format`, which
    /// must have the channel's rate and channel count (the codec may
    /// differ: it is decoded to PCM). The channel's own SSRC, sequence and
    /// timeline go on as before.
    pub fn start_publisher(&mut self, format: StreamFormat) -> Result<(), LiveError> {
        self.source.start_publisher(format)
    }

    /// The publisher left: what it sent plays out, then the channel waits
    /// (listeners stay) for the next one. Returns its counters.
    pub fn stop_publisher(&mut self) -> Option<DepacketizeStats> {
        self.source.stop_publisher()
    }

    /// One RTP packet from the publisher; ignored when there is none.
    pub fn publish(&mut self, packet: &[u8]) -> Option<Outcome> {
        let (outcome, dropped) = self.source.publish(packet)?;
        self.overflowed_frames += dropped;
        Some(outcome)
    }

    /// The channel stops at once: every listener gets a BYE.
    pub fn end_now(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        if !self.ended {
            self.say_goodbye(now, out);
        }
    }

    fn say_goodbye(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        self.ended = true;
        let bye = self.timeline.report(now, true);
        self.fanout.report_to_all(&bye, out);
    }

    /// Every packet, slot by slot, and every report due at `now`. A
    /// listener's SR goes out with its first packet at or after its SR time,
    /// encoded once for all listeners due in that slot.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        while let Some(turn) = self.fanout.turn(now, |k| self.timeline.due(k)) {
            if turn.slot == 0 {
                // The timeline runs whether or not anyone listens, and
                // whether or not a streamed source delivered: a packet it
                // has not is skipped (the timestamp still advances, RFC 3550
                // §5.1), and listeners wait.
                let cut = self.source.next(self.ended);
                let payload = match &cut {
                    Cut::Payload(p) => Some(&p[..]),
                    Cut::Starved => {
                        self.starved_packets += 1;
                        None
                    }
                    Cut::Drained => None,
                };
                let packet = self.timeline.advance(payload);
                self.fanout.set_current(packet);
                if cut == Cut::Drained && !self.ended {
                    self.say_goodbye(now, out);
                }
            }
            let timeline = &self.timeline;
            self.fanout.serve(turn, || timeline.report(now, false), out);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::proto::packetize::g711::ulaw_to_linear;
    use crate::proto::rtcp::{parse_compound, Packet};

    /// 1 s of 8 kHz mono: sample i is i (so the loop point is visible).
    pub(super) fn pcm() -> Bytes {
        (0..8000u32)
            .flat_map(|i| (i as i16).to_be_bytes())
            .collect()
    }

    pub(super) fn channel(codec: Codec, t0: Instant) -> Channel {
        Channel::new(
            ChannelConfig {
                pcm: pcm(),
                streamed: false,
                prebuffer: Duration::ZERO,
                rate: 8000,
                channels: 1,
                codec,
                ptime: Duration::from_millis(20),
                max_payload: 1400,
                ssrc: 0xABCD,
                first_seq: 65_500,
                first_rtptime: u32::MAX - 1000,
                cname: "test".into(),
                clock: WallClock::new(t0, Duration::from_secs(1_700_000_000)),
            },
            t0,
        )
        .unwrap()
    }

    pub(super) fn udp(port: u16) -> Dest {
        Dest::Udp(([127, 0, 0, 1], port).into())
    }

    pub(super) fn rtp(t: &Transmit) -> (u16, u32, &[u8]) {
        let d = &t.data;
        (
            u16::from_be_bytes([d[2], d[3]]),
            u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            &d[12..],
        )
    }

    #[test]
    fn loops_without_gaps_and_fans_out_one_encoding() {
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        let join = c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        c.subscribe(2, udp(6000), udp(6001), t0, &mut out);
        assert_eq!(out.len(), 2, "an SR for each new listener");
        assert_eq!((join.seq, join.rtptime), (65_500, u32::MAX - 1000));
        out.clear();
        // 2.5 s: 125 packets, crossing the 1 s loop point twice, seq and
        // timestamp wrapping too.
        c.poll(t0 + Duration::from_millis(2490), &mut out);
        let rtps: Vec<&Transmit> = out.iter().filter(|t| !t.rtcp).collect();
        assert_eq!(rtps.len(), 2 * 125);
        let mut sample = 0u32;
        for (k, pair) in rtps.chunks(2).enumerate() {
            assert_eq!(
                pair[0].data, pair[1].data,
                "the same bytes for both listeners"
            );
            assert_eq!(pair[0].data.as_ptr(), pair[1].data.as_ptr(), "encoded once");
            let (seq, ts, payload) = rtp(pair[0]);
            assert_eq!(seq, 65_500u16.wrapping_add(k as u16));
            assert_eq!(ts, (u32::MAX - 1000).wrapping_add(160 * k as u32));
            for b in payload.chunks_exact(2) {
                assert_eq!(i16::from_be_bytes([b[0], b[1]]), (sample % 8000) as i16);
                sample += 1;
            }
        }
        assert!(!out.iter().any(|t| t.rtcp), "no periodic SR before 5 s");
        out.clear();
        c.poll(t0 + Duration::from_millis(5010), &mut out);
        let srs: Vec<&Transmit> = out.iter().filter(|t| t.rtcp).collect();
        assert_eq!(srs.len(), 2, "one SR to each listener");
    }

    #[test]
    fn late_joiner_gets_the_next_packet_and_pcmu_is_encoded() {
        let t0 = Instant::now();
        let mut c = channel(Codec::Pcmu, t0);
        let mut out = Vec::new();
        c.poll(t0 + Duration::from_millis(1000), &mut out);
        assert!(out.is_empty(), "nobody listens, but the timeline runs");
        let join = c.subscribe(
            7,
            udp(5000),
            udp(5001),
            t0 + Duration::from_millis(1005),
            &mut out,
        );
        assert_eq!(
            join.seq,
            65_500u16.wrapping_add(51),
            "51 packets went by (0..=1000 ms)"
        );
        let sr = parse_compound(&out[0].data).unwrap();
        let Packet::SenderReport { info, .. } = &sr[0] else {
            panic!("an SR")
        };
        // 5 ms after packet 50 was due: its timestamp + 40 ticks.
        assert_eq!(
            info.rtp_time,
            (u32::MAX - 1000)
                .wrapping_add(51 * 160)
                .wrapping_sub(160 - 40)
        );
        out.clear();
        c.poll(t0 + Duration::from_millis(1020), &mut out);
        let (seq, ts, payload) = rtp(&out[0]);
        assert_eq!((seq, ts), (join.seq, join.rtptime));
        assert_eq!(payload.len(), 160, "one byte per sample");
        // Source samples 51*160.. (mod 8000) through µ-law and back.
        let first = (51 * 160) % 8000;
        let back: Vec<i16> = payload.iter().map(|&b| ulaw_to_linear(b)).collect();
        assert!(
            (i32::from(back[0]) - first).abs() <= 8,
            "{} vs {first}",
            back[0]
        );
        let mut out = Vec::new();
        c.unsubscribe(7, true, t0 + Duration::from_millis(1030), &mut out);
        assert!(matches!(
            parse_compound(&out[0].data).unwrap().last(),
            Some(Packet::Goodbye { .. })
        ));
    }
}
