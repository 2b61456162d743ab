//! A live channel: one timeline that runs whether or not anyone listens,
//! packetized once per packet and fanned out to every listener (RFC 3550
//! §5.1 timing; RFC 2326 §C.1.5 live presentations).
//!
//! The source here is a clip played in a loop: position wraps to the start
//! with no gap, and the RTP timestamp and sequence number simply continue,
//! so a listener across the loop boundary sees one continuous stream.
//! Packet `k` is due at `anchor + k × samples_per_packet / rate` (absolute,
//! no accumulated error). Each packet is encoded once; every listener gets a
//! clone of the same [`Bytes`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::clock::{ticks_to_duration, WallClock};
use super::depacketize::{DepacketizeStats, Depacketizer, Outcome, StreamFormat};
use super::pacer::{Transmit, SR_INTERVAL};
use super::packetize::g711::{linear_to_alaw, linear_to_ulaw};
use super::packetize::{frames_per_packet, Codec};
use super::rtcp::{self, SenderInfo};
use super::rtp::Stamper;
use super::session::Dest;

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

/// Where a new listener's stream starts: the next packet it will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinInfo {
    pub seq: u16,
    pub rtptime: u32,
}

#[derive(Debug, Clone, Copy)]
struct Listener {
    rtp: Dest,
    rtcp: Dest,
    /// When this listener's next SR is due: every `SR_INTERVAL` from its
    /// join, so the reports of thousands of listeners spread out instead of
    /// leaving in one burst.
    next_sr: Instant,
    /// Index of the first packet it gets: the one whose turn at its slot
    /// had not yet come when it joined.
    first: u64,
}

/// A live channel fed by a looping clip.
#[derive(Debug)]
pub struct Channel {
    /// Interleaved big-endian 16-bit samples.
    pcm: Bytes,
    rate: u32,
    channels: u16,
    codec: Codec,
    stamper: Stamper,
    frames_per_packet: u64,
    /// Sample frame of the source the next packet starts at.
    cursor: u64,
    /// RTP timestamp of the next packet.
    rtptime: u32,
    anchor: Instant,
    /// Packets produced so far (the next one's index).
    index: u64,
    packets: u32,
    octets: u32,
    /// Listeners by send slot; each slot's listeners get every packet
    /// `slot × slot_len` after its due time.
    slots: Vec<BTreeMap<u64, Listener>>,
    /// Which slot each listener is in.
    slot_of: HashMap<u64, usize>,
    slot_len: Duration,
    /// The packet being sent slot by slot: (index, seq, rtptime, bytes).
    current: Option<(u64, u16, u32, Bytes)>,
    /// The next (packet, slot) to serve.
    next: (u64, usize),
    cname: String,
    wallclock: WallClock,
    /// For a streamed source: PCM fed but not yet sent, at most
    /// `MAX_BUFFERED` of it; `None` for a looping clip.
    fifo: Option<VecDeque<u8>>,
    /// Audio a streamed source must have buffered before sending starts
    /// (again, after it ran dry): a jitter buffer, in bytes.
    prebuffer: usize,
    /// The buffer reached `prebuffer` and has not run dry since.
    primed: bool,
    /// The publisher feeding this channel, if any.
    publisher: Option<Depacketizer>,
    /// Its decoded PCM on the way to the buffer (kept, so a packet costs
    /// no allocation).
    decoded: Vec<u8>,
    /// The streamed source said it ended.
    input_ended: bool,
    /// ... and everything it sent is out, and listeners had their BYE.
    ended: bool,
    /// Sample frames dropped because the source ran ahead.
    pub overflowed_frames: u64,
    /// Packets not sent because the source had not delivered them in time.
    pub starved_packets: u64,
}

/// How far a streamed source may run ahead of the channel's clock before
/// the oldest audio is dropped.
const MAX_BUFFERED: Duration = Duration::from_secs(2);

/// Send slots per packet interval. A listener keeps its slot, so its
/// packets leave at the same offset after their due time whoever else joins
/// or leaves; and the sending of one packet to thousands of listeners is
/// spread over the interval instead of leaving in one burst.
const SLOTS: usize = 16;

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

impl Channel {
    /// A channel whose first packet is due at `now`.
    pub fn new(cfg: ChannelConfig, now: Instant) -> Result<Self, LiveError> {
        let channels = cfg.channels.max(1);
        if cfg.codec != Codec::L16 && (cfg.rate != 8000 || channels != 1) {
            return Err(LiveError::NotNarrowband {
                rate: cfg.rate,
                channels,
            });
        }
        let frame_in = 2 * usize::from(channels);
        if !cfg.streamed && cfg.pcm.len() < frame_in {
            return Err(LiveError::Empty);
        }
        let frame_out = cfg.codec.sample_bytes() * usize::from(channels);
        let per_packet = frames_per_packet(cfg.rate, frame_out, cfg.ptime, cfg.max_payload);
        let pt = cfg.codec.payload_type(cfg.rate, channels);
        Ok(Self {
            pcm: cfg.pcm,
            rate: cfg.rate,
            channels,
            codec: cfg.codec,
            stamper: Stamper::new(cfg.ssrc, pt, cfg.first_seq),
            frames_per_packet: per_packet,
            cursor: 0,
            rtptime: cfg.first_rtptime,
            anchor: now,
            index: 0,
            packets: 0,
            octets: 0,
            slots: vec![BTreeMap::new(); SLOTS],
            slot_of: HashMap::new(),
            slot_len: ticks_to_duration(per_packet, cfg.rate) / SLOTS as u32,
            current: None,
            next: (0, 0),
            cname: cfg.cname,
            wallclock: cfg.clock,
            fifo: cfg.streamed.then(VecDeque::new),
            prebuffer: super::clock::duration_to_ticks(
                cfg.prebuffer.min(MAX_BUFFERED / 2),
                cfg.rate,
            ) as usize
                * frame_in,
            primed: false,
            publisher: None,
            decoded: Vec::new(),
            input_ended: false,
            ended: false,
            overflowed_frames: 0,
            starved_packets: 0,
        })
    }

    pub fn clock_rate(&self) -> u32 {
        self.rate
    }

    pub fn listener_count(&self) -> usize {
        self.slot_of.len()
    }

    /// When packet `index` is due.
    fn due(&self, index: u64) -> Instant {
        self.anchor + ticks_to_duration(index * self.frames_per_packet, self.rate)
    }

    fn frames(&self) -> u64 {
        (self.pcm.len() / (2 * usize::from(self.channels))) as u64
    }

    /// When [`Channel::poll`] next has work: the next packet to encode, or
    /// the next slot with listeners.
    pub fn next_deadline(&self) -> Instant {
        let (packet, slot) = self.next;
        let first_busy = (slot..SLOTS).find(|&s| !self.slots[s].is_empty());
        match first_busy {
            // Slot 0 of a packet also encodes it: always a deadline.
            Some(s) if slot > 0 || s == 0 => self.due(packet) + self.slot_len * s as u32,
            _ if slot > 0 => self.due(packet + 1),
            _ => self.due(packet),
        }
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
        self.remove(id);
        let slot = (0..SLOTS)
            .min_by_key(|&s| (self.slots[s].len(), s))
            .unwrap_or(0);
        // The packet in flight, if the loop has not served this slot for it
        // yet and its time at this slot is still to come; else the next one.
        // The loop's position decides, not the clock alone: the owner polls
        // ahead of `now` (the pacing thread's send-ahead), so a slot whose
        // time is still to come may already be served, and a slot whose
        // time has passed may not be (the loop does not wake for empty
        // slots). Both are read here, on the thread that serves the slots,
        // so the answer and the RTP-Info built from it are exact.
        let in_flight = self.current.as_ref().filter(|(k, ..)| {
            let unserved = self.next.0 == *k && self.next.1 <= slot;
            unserved && self.due(*k) + self.slot_len * slot as u32 >= now
        });
        let (first, join) = match in_flight {
            Some((k, seq, ts, _)) => (
                *k,
                JoinInfo {
                    seq: *seq,
                    rtptime: *ts,
                },
            ),
            None => (
                self.index,
                JoinInfo {
                    seq: self.stamper.next_seq,
                    rtptime: self.rtptime,
                },
            ),
        };
        let l = Listener {
            rtp,
            rtcp,
            next_sr: now + SR_INTERVAL,
            first,
        };
        self.slots[slot].insert(id, l);
        self.slot_of.insert(id, slot);
        out.push(self.report(rtcp, now, false));
        join
    }

    fn remove(&mut self, id: u64) -> Option<Listener> {
        let slot = self.slot_of.remove(&id)?;
        self.slots[slot].remove(&id)
    }

    /// Removes listener `id`; with `bye`, tells it the stream ended for it.
    pub fn unsubscribe(&mut self, id: u64, bye: bool, now: Instant, out: &mut Vec<Transmit>) {
        if let Some(l) = self.remove(id) {
            if bye {
                out.push(self.report(l.rtcp, now, true));
            }
        }
    }

    /// Appends big-endian PCM from a streamed source (whole frames; a
    /// trailing partial frame is dropped). Beyond `MAX_BUFFERED` the oldest
    /// audio goes.
    pub fn feed(&mut self, pcm: &[u8]) {
        let frame = 2 * usize::from(self.channels);
        let cap = super::clock::duration_to_ticks(MAX_BUFFERED, self.rate) as usize * frame;
        let Some(fifo) = self.fifo.as_mut() else {
            return;
        };
        fifo.extend(&pcm[..pcm.len() - pcm.len() % frame]);
        if fifo.len() > cap {
            let drop = fifo.len() - cap;
            fifo.drain(..drop);
            self.overflowed_frames += (drop / frame) as u64;
        }
    }

    /// The streamed source ended: what it sent still plays out, then every
    /// listener gets a BYE and no more packets are sent.
    pub fn end(&mut self) {
        self.input_ended = true;
    }

    /// A publisher starts feeding the channel with RTP in `format`, which
    /// must have the channel's rate and channel count (the codec may
    /// differ: it is decoded to PCM). The channel's own SSRC, sequence and
    /// timeline go on as before.
    pub fn start_publisher(&mut self, format: StreamFormat) -> Result<(), LiveError> {
        if self.fifo.is_none() || format.rate != self.rate || format.channels != self.channels {
            return Err(LiveError::Mismatch {
                rate: format.rate,
                channels: format.channels,
            });
        }
        self.publisher = Some(Depacketizer::new(format));
        Ok(())
    }

    /// The publisher left: what it sent plays out, then the channel waits
    /// (listeners stay) for the next one. Returns its counters.
    pub fn stop_publisher(&mut self) -> Option<DepacketizeStats> {
        self.publisher.take().map(|d| d.stats)
    }

    /// One RTP packet from the publisher; ignored when there is none.
    pub fn publish(&mut self, packet: &[u8]) -> Option<Outcome> {
        let d = self.publisher.as_mut()?;
        let mut pcm = std::mem::take(&mut self.decoded);
        pcm.clear();
        let outcome = d.push(packet, &mut pcm);
        self.feed(&pcm);
        self.decoded = pcm;
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
        let bye = self.report_data(now, true);
        for l in self.slots.iter().flat_map(BTreeMap::values) {
            out.push(Transmit {
                dest: l.rtcp,
                data: bye.clone(),
                rtcp: true,
            });
        }
    }

    /// Every packet, slot by slot, and every report due at `now`. A
    /// listener's SR goes out with its first packet at or after its SR time,
    /// encoded once for all listeners due in that slot.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        loop {
            let (packet, slot) = self.next;
            let at = self.due(packet) + self.slot_len * slot as u32;
            if at > now {
                break;
            }
            if slot == 0 {
                // The timeline runs whether or not anyone listens, and
                // whether or not a streamed source delivered: a packet it
                // has not is skipped (the timestamp still advances, RFC 3550
                // §5.1), and listeners wait.
                let (seq, ts) = (self.stamper.next_seq, self.rtptime);
                self.current = self.next_packet().map(|data| (packet, seq, ts, data));
                if self.current.is_none() && self.input_ended && !self.ended {
                    self.say_goodbye(now, out);
                }
            }
            self.next = if slot + 1 == SLOTS {
                (packet + 1, 0)
            } else {
                (packet, slot + 1)
            };
            let Some((_, _, _, data)) = &self.current else {
                continue;
            };
            let mut srs_due = false;
            for l in self.slots[slot].values().filter(|l| l.first <= packet) {
                out.push(Transmit {
                    dest: l.rtp,
                    data: data.clone(),
                    rtcp: false,
                });
                srs_due |= l.next_sr <= at;
            }
            if !srs_due {
                continue;
            }
            let sr = self.report_data(now, false);
            for l in self.slots[slot].values_mut() {
                if l.next_sr > at || l.first > packet {
                    continue;
                }
                l.next_sr += SR_INTERVAL;
                if l.next_sr <= at {
                    l.next_sr = at + SR_INTERVAL;
                }
                out.push(Transmit {
                    dest: l.rtcp,
                    data: sr.clone(),
                    rtcp: true,
                });
            }
        }
    }

    /// Cuts, encodes and stamps the next packet, wrapping the source.
    fn next_packet(&mut self) -> Option<Bytes> {
        let n = self.frames_per_packet;
        let frame = 2 * usize::from(self.channels);
        let mut payload = BytesMut::with_capacity(
            n as usize * self.codec.sample_bytes() * usize::from(self.channels),
        );
        let codec = self.codec;
        let mut encode = |bytes: &[u8]| match codec {
            Codec::L16 => payload.extend_from_slice(bytes),
            Codec::Pcmu | Codec::Pcma => {
                let enc = if codec == Codec::Pcmu {
                    linear_to_ulaw
                } else {
                    linear_to_alaw
                };
                payload.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| enc(i16::from_be_bytes([b[0], b[1]]))),
                );
            }
        };
        match self.fifo.as_mut() {
            Some(fifo) => {
                let want = n as usize * frame;
                // Until primed, wait for the jitter buffer (but never for a
                // source that ended: the rest plays out).
                let need = if self.primed || self.input_ended {
                    want
                } else {
                    want.max(self.prebuffer)
                };
                if self.ended || fifo.len() < need {
                    self.rtptime = self.rtptime.wrapping_add(n as u32);
                    self.index += 1;
                    if !self.input_ended {
                        self.starved_packets += 1;
                    }
                    self.primed = false;
                    return None;
                }
                self.primed = true;
                let bytes: Vec<u8> = fifo.drain(..want).collect();
                encode(&bytes);
            }
            None => {
                let total = self.frames();
                let mut left = n;
                while left > 0 {
                    let start = self.cursor % total;
                    let take = left.min(total - start);
                    encode(&self.pcm[start as usize * frame..(start + take) as usize * frame]);
                    self.cursor = (start + take) % total;
                    left -= take;
                }
            }
        }
        let data = self.stamper.packet(self.rtptime, false, &payload);
        self.rtptime = self.rtptime.wrapping_add(n as u32);
        self.index += 1;
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
        Some(data)
    }

    /// An SR (or BYE) whose RTP time is the channel's timeline at `now`.
    fn report(&self, dest: Dest, now: Instant, bye: bool) -> Transmit {
        Transmit {
            dest,
            data: self.report_data(now, bye),
            rtcp: true,
        }
    }

    fn report_data(&self, now: Instant, bye: bool) -> Bytes {
        // The next packet's timestamp belongs to its due time; `now` is
        // that minus (due - now).
        let due = self.due(self.index);
        let ahead = super::clock::duration_to_ticks(due.saturating_duration_since(now), self.rate);
        let behind = super::clock::duration_to_ticks(now.saturating_duration_since(due), self.rate);
        let info = SenderInfo {
            ntp: self.wallclock.ntp(now),
            rtp_time: self
                .rtptime
                .wrapping_sub(ahead as u32)
                .wrapping_add(behind as u32),
            packet_count: self.packets,
            octet_count: self.octets,
        };
        let mut out = BytesMut::with_capacity(128);
        rtcp::write_report(&mut out, self.stamper.ssrc, &info, &self.cname, bye);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::g711::ulaw_to_linear;
    use crate::proto::rtcp::{parse_compound, Packet};

    /// 1 s of 8 kHz mono: sample i is i (so the loop point is visible).
    fn pcm() -> Bytes {
        (0..8000u32)
            .flat_map(|i| (i as i16).to_be_bytes())
            .collect()
    }

    fn channel(codec: Codec, t0: Instant) -> Channel {
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

    fn udp(port: u16) -> Dest {
        Dest::Udp(([127, 0, 0, 1], port).into())
    }

    fn rtp(t: &Transmit) -> (u16, u32, &[u8]) {
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

    #[test]
    fn reports_are_staggered_by_join_time() {
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        c.subscribe(
            2,
            udp(6000),
            udp(6001),
            t0 + Duration::from_millis(2000),
            &mut out,
        );
        out.clear();
        let srs_to = |out: &[Transmit], port: u16| {
            out.iter().filter(|t| t.rtcp && t.dest == udp(port)).count()
        };
        c.poll(t0 + Duration::from_millis(5010), &mut out);
        assert_eq!((srs_to(&out, 5001), srs_to(&out, 6001)), (1, 0));
        out.clear();
        c.poll(t0 + Duration::from_millis(7010), &mut out);
        assert_eq!((srs_to(&out, 5001), srs_to(&out, 6001)), (0, 1));
    }

    #[test]
    fn listeners_keep_their_slot_whoever_leaves() {
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        for id in 0..40 {
            c.subscribe(
                id,
                udp(5000 + 2 * id as u16),
                udp(5001 + 2 * id as u16),
                t0,
                &mut out,
            );
        }
        let counts: Vec<usize> = c.slots.iter().map(BTreeMap::len).collect();
        assert!(
            counts
                .iter()
                .all(|&n| n == 40 / SLOTS || n == 40 / SLOTS + 1),
            "{counts:?}"
        );
        // Listener 39 is served 1.25 ms × its slot after each due time, and
        // still after half the others leave.
        let slot = c.slot_of[&39];
        let sent_at = |c: &mut Channel, k: u64| {
            let due = t0 + Duration::from_millis(20 * k);
            let mut out = Vec::new();
            let mut t = due;
            loop {
                c.poll(t, &mut out);
                if out.iter().any(|x| x.dest == udp(5000 + 78)) {
                    return t - due;
                }
                t += Duration::from_micros(50);
            }
        };
        c.poll(t0 + Duration::from_millis(19), &mut out);
        let before = sent_at(&mut c, 1);
        for id in 0..20 {
            c.unsubscribe(id, false, t0, &mut out);
        }
        let after = sent_at(&mut c, 2);
        assert_eq!(before, after, "slot {slot}: same offset");
        assert!(
            before >= c.slot_len * slot as u32
                && before < c.slot_len * slot as u32 + Duration::from_micros(60)
        );
    }

    #[test]
    fn a_listener_never_gets_a_packet_late_for_its_slot() {
        // The loop only wakes for busy slots: after serving slot 0 at the
        // due time it sleeps to the next packet. A listener joining 5 ms
        // later lands in slot 1, whose time for this packet has passed: its
        // first packet must be the next one, at its slot time, not this one
        // sent 3.75 ms late.
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        c.poll(t0, &mut out);
        out.clear();
        let join_at = t0 + Duration::from_millis(5);
        let join = c.subscribe(2, udp(6000), udp(6001), join_at, &mut out);
        out.clear();
        c.poll(join_at, &mut out);
        assert!(
            out.iter().all(|t| t.dest != udp(6000)),
            "nothing late for slot 1"
        );
        let at = t0 + Duration::from_millis(20) + c.slot_len;
        c.poll(at, &mut out);
        let first = out
            .iter()
            .find(|t| t.dest == udp(6000))
            .expect("the next packet");
        assert_eq!((rtp(first).0, rtp(first).1), (join.seq, join.rtptime));
    }

    /// Issue 10, defect 3: whatever the join time and slot, and with the
    /// loop polled ahead of the clock as the pacing thread does (its
    /// send-ahead), a listener's first packet is exactly the one its
    /// RTP-Info names.
    #[test]
    fn a_late_joiner_first_gets_the_packet_its_rtp_info_names() {
        let send_ahead = Duration::from_micros(500);
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        // One listener in each slot; before each join the one in slot j
        // leaves, so the newcomer takes slot j.
        for j in 0..SLOTS as u64 {
            c.subscribe(j, udp(1000 + j as u16), udp(2000), t0, &mut out);
        }
        let me = udp(20_000);
        let mut clock = t0;
        let mut misses = Vec::new();
        for i in 0..800u64 {
            let j = i % SLOTS as u64;
            // Join times fall anywhere in the packet interval.
            clock += Duration::from_micros((i * 7_919 + 311) % 20_000);
            c.poll(clock + send_ahead, &mut out);
            c.unsubscribe(j, false, clock, &mut out);
            let join = c.subscribe(100 + i, me, udp(2000), clock, &mut out);
            assert_eq!(c.slot_of[&(100 + i)], j as usize);
            out.clear();
            let first = loop {
                clock += Duration::from_micros(100);
                c.poll(clock + send_ahead, &mut out);
                if let Some(t) = out.iter().find(|t| t.dest == me) {
                    break rtp(t);
                }
                out.clear();
            };
            if (first.0, first.1) != (join.seq, join.rtptime) {
                misses.push((i, j, join.seq, first.0));
            }
            out.clear();
            c.unsubscribe(100 + i, false, clock, &mut out);
            c.subscribe(j, udp(1000 + j as u16), udp(2000), clock, &mut out);
            out.clear();
        }
        assert!(
            misses.is_empty(),
            "(join, slot, RTP-Info seq, first seq received): {misses:?}"
        );
    }

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
