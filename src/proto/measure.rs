//! What the load tester measures of one received RTP stream: the RFC 3550
//! reception statistics of [`ReceiverStats`] (loss, duplicates, reordering,
//! A.8 jitter), the pacing error of every packet, how far the stream's
//! encoder reorders pictures, the sender reports (§6.4.1) and how the SR's
//! NTP/RTP mapping lines up with arrivals, which is what two tracks of one
//! session are compared on for A/V sync.
//!
//! Sans-IO: the caller passes each datagram with the instant it was read,
//! and a [`Timeline`] for the per-second totals.
//!
//! **Decode time.** An RTP timestamp is the sampling instant (RFC 3550
//! §5.1); for video that is the presentation time (RFC 6184 §5.1), but a
//! sender sends pictures in decode order, so with B-frames timestamps step
//! backwards and the pictures a B-frame refers to go out before their
//! presentation time. The tester rebuilds each packet's decode time the way
//! a demuxer rebuilds DTS from PTS: packets are taken in sequence-number
//! order (RFC 3550 §5.1: the order they were sent, whatever the network did
//! to them), a run of packets with one timestamp is a frame, and a *block*
//! is a run of frames whose timestamps are all below those of every later
//! frame (a group of a reference picture and the B-frames around it). The
//! k-th frame of a block is due at the k-th smallest timestamp of the
//! block. A block is settled once [`LOOKAHEAD_FRAMES`] frames follow it
//! (an H.264 decoder holds at most 16 frames, ITU-T H.264 §A.3.1). When
//! timestamps never step back (audio, video without B-frames) every frame
//! is its own block and the decode time is the timestamp. A packet that
//! comes after its place was settled is taken at its own timestamp, as is
//! the oldest frame when more than [`MAX_HELD_FRAMES`] frames or
//! [`MAX_HELD_PACKETS`] packets wait (timestamps that jumped backwards for
//! good). A block that lost packets (a sequence gap in or next to it), or
//! that the end of the stream cut short, ranks too few timestamps and may
//! come out a frame or more late: its packets, and those let go unsettled,
//! are *unsure*. They are measured, but move neither the envelope below,
//! the sync offset, the drift fit nor the lag. In a stream that never
//! reordered every frame is due at its own timestamp, so there the end of
//! the stream and packets too late to be placed make nothing unsure; a gap
//! still does.
//!
//! **Pacing error** of packet *i*: with `x_i = arrival_i − decode_i /
//! clock_rate` (RTP timestamps unwrapped past 2^32), the error is
//! `x_i − min(x_j)` over the packets up to *i* in sequence order (the
//! lower envelope of `x`): how much later than the least-delayed packet so
//! far it came, against the media clock. It is never negative, and a packet that arrives 50 ms after its
//! schedule shows 50 ms. Recorded in microseconds. Before the decode time
//! was rebuilt (issue 10) the tester recorded `|x_i − x_0|`, aligned on the
//! first packet, with the timestamp itself as the decode time. For a stream
//! without reordering the figures are the same whenever the first packet
//! was not delayed more than later ones; they differ where the first packet
//! was (an AAC priming frame stamped 23.2 ms before zero but sent with the
//! first frame used to put 23.2 ms on every later packet) and where a sender
//! runs fast (its packets come ever earlier: that shows in
//! [`TrackMeasure::drift_ms_per_min`], the least-squares slope of the
//! signed error, and no longer as pacing error). With B-frames the old
//! figure was the encoder's reordering, up to 200 ms on the bundled clip.
//!
//! **Reorder depth** of a packet: how far its timestamp is ahead of its
//! decode time, `ts_i − (decode_i − lag)` where `lag` is the largest
//! `decode − ts` seen so far on the track (the decode delay the reordering
//! needs, so that the least reordered picture is due at its presentation
//! time, as an encoder's own DTS have it). 0 without B-frames.
//!
//! **Sync offset** of a track: for each packet measured after the first
//! SR, `arrival_wallclock − sr_ntp − (decode − lag − sr_rtp) / clock_rate`,
//! and its minimum over the run (the lower envelope: the packet that waited
//! least in queues shows the mapping best). Two tracks whose senders map
//! media time onto one NTP timeline have the same offset up to the network
//! delay difference, so the spread of the offsets of a session's tracks is
//! its A/V sync error. Taking the decode time instead of the timestamp
//! keeps the pictures sent ahead of their presentation time (those the
//! B-frames refer to) from showing as video early by that much.
//!
//! RFC 3550 jitter (A.8) is kept exactly as defined, on RTP timestamps: for
//! video with B-frames it includes the reordering, and for frames split
//! over several packets that share one timestamp the time a frame takes to
//! send.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::clock::WallClock;
use super::rtcp::{NtpTimestamp, Packet, ReportBlock, SenderInfo};
use super::stats::ReceiverStats;

/// Largest error the histograms hold (60 s, in µs); larger values clamp.
const HIST_MAX_US: u64 = 60_000_000;
/// Largest reorder depth the reorder histograms hold (10 s, in µs).
const REORDER_MAX_US: u64 = 10_000_000;

/// Frames that must follow a block before its decode times are settled.
pub const LOOKAHEAD_FRAMES: usize = 16;
/// Most frames held back waiting for their decode time.
pub const MAX_HELD_FRAMES: usize = 64;
/// Most packets held back waiting for their decode time.
pub const MAX_HELD_PACKETS: usize = 4096;

/// A histogram of microseconds, 3 significant digits, up to 60 s.
pub fn micros_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// A smaller histogram of microseconds for reorder depths: 2 significant
/// digits, up to 10 s.
pub fn reorder_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, REORDER_MAX_US, 2).expect("valid histogram bounds")
}

/// Records `d` (clamped to the histogram's range).
pub fn record_micros(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, h.high()));
}

/// Why a datagram was not counted as RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRtp {
    #[error("not an RTP version 2 packet")]
    Malformed,
    #[error("SSRC {0:08X} is not this track's")]
    OtherSource(u32),
}

/// Most seconds a [`Timeline`] holds (the tester's longest run plus slack).
const MAX_SECONDS: usize = 3_700;

/// Per-second totals over a run, for the load tester's plot: packets
/// received and lost, and the pacing error's mean and maximum, each in the
/// second the packet arrived.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub seconds: Vec<Second>,
}

/// One second of a [`Timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    pub received: u64,
    pub lost: u64,
    pub error_sum_us: u64,
    pub error_max_us: u64,
}

impl Timeline {
    fn second(&mut self, since_start: Duration) -> Option<&mut Second> {
        let i = since_start.as_secs() as usize;
        if i >= MAX_SECONDS {
            return None;
        }
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        self.seconds.get_mut(i)
    }

    /// Counts a packet that arrived `since_start` into the run, after
    /// `newly_lost` sequence numbers it skipped.
    pub fn count(&mut self, since_start: Duration, newly_lost: u64) {
        if let Some(s) = self.second(since_start) {
            s.received += 1;
            s.lost += newly_lost;
        }
    }

    /// Adds the pacing error of a packet that arrived `since_start` into
    /// the run (measured once its decode time is known, so a little later).
    pub fn error(&mut self, since_start: Duration, error: Duration) {
        if let Some(s) = self.second(since_start) {
            let us = u64::try_from(error.as_micros()).unwrap_or(u64::MAX);
            s.error_sum_us = s.error_sum_us.saturating_add(us);
            s.error_max_us = s.error_max_us.max(us);
        }
    }

    /// Adds another timeline of the same run into this one.
    pub fn merge(&mut self, other: &Self) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), Second::default());
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.received += b.received;
            a.lost += b.lost;
            a.error_sum_us = a.error_sum_us.saturating_add(b.error_sum_us);
            a.error_max_us = a.error_max_us.max(b.error_max_us);
        }
    }
}

/// A packet waiting for its decode time.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// Extended sequence number.
    seq: i64,
    /// Unwrapped RTP timestamp.
    ts: i64,
    at: Instant,
}

/// A packet with its decode time (both in unwrapped RTP ticks).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Decoded {
    ts: i64,
    decode: i64,
    at: Instant,
    /// The decode time is sure: not from a block that lost packets, that
    /// the stream's end cut short, or that was let go unsettled.
    certain: bool,
}

/// How a block came to be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// [`LOOKAHEAD_FRAMES`] frames follow it, all with later timestamps.
    Settled,
    /// The stream ended.
    End,
    /// Too much was held.
    Forced,
}

/// Rebuilds decode times from timestamps (see the module docs).
#[derive(Debug, Clone, Default)]
struct DecodeOrder {
    /// Packets waiting, in sequence order.
    held: VecDeque<Held>,
    /// The runs of one timestamp in `held` (frames): timestamp, packets.
    frames: VecDeque<(i64, usize)>,
    /// A frame came since the last look for a settled block.
    changed: bool,
    /// Extended sequence number of the highest packet seen.
    highest: Option<i64>,
    /// Extended sequence number of the last packet given out.
    released: Option<i64>,
    /// Largest `decode − ts` so far, ticks.
    lag: i64,
    /// Largest `ts − decode` so far, ticks.
    lead: i64,
    scratch: Vec<i64>,
}

impl DecodeOrder {
    /// The extended sequence number of `seq`: the one nearest the highest.
    fn extend(&mut self, seq: u16) -> i64 {
        let ext = match self.highest {
            None => i64::from(seq),
            Some(h) => h + i64::from(seq.wrapping_sub(h as u16) as i16),
        };
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        ext
    }

    /// Takes a packet. One that comes after its place in sequence was given
    /// out comes straight back, due at its own timestamp.
    fn push(&mut self, seq: u16, ts: i64, at: Instant) -> Option<Decoded> {
        let seq = self.extend(seq);
        if self.released.is_some_and(|r| seq <= r) {
            return Some(Decoded {
                ts,
                decode: ts,
                at,
                certain: self.in_order(),
            });
        }
        let h = Held { seq, ts, at };
        if self.held.back().is_some_and(|b| b.seq > seq) {
            // Overtaken in the network: back into its place.
            let i = self.held.partition_point(|p| p.seq <= seq);
            self.held.insert(i, h);
            self.frames.clear();
            for p in &self.held {
                match self.frames.back_mut() {
                    Some((t, n)) if *t == p.ts => *n += 1,
                    _ => self.frames.push_back((p.ts, 1)),
                }
            }
            self.changed = true;
            return None;
        }
        self.held.push_back(h);
        match self.frames.back_mut() {
            Some((t, n)) if *t == ts => *n += 1,
            _ => {
                self.frames.push_back((ts, 1));
                self.changed = true;
            }
        }
        None
    }

    /// No timestamp stepped back so far: every frame is its own block and
    /// due at its timestamp, whatever was lost.
    fn in_order(&self) -> bool {
        self.lag == 0 && self.lead == 0
    }

    /// Whether the first `packets` held follow the last packet given out,
    /// and the next one held follows them, without a sequence number
    /// missing (a duplicate is no gap).
    fn gapless(&self, packets: usize) -> bool {
        let mut prev = self.released;
        for p in self.held.iter().take(packets + 1) {
            if prev.is_some_and(|q| p.seq > q + 1) {
                return false;
            }
            prev = Some(p.seq);
        }
        true
    }

    /// Where the first block to release ends (in frames), and why.
    fn next_block(&mut self, end: bool) -> Option<(usize, Release)> {
        let n = self.frames.len();
        if n == 0 {
            return None;
        }
        // scratch[j] = the smallest timestamp of frames j.. .
        self.scratch.clear();
        self.scratch.resize(n + 1, i64::MAX);
        for (i, f) in self.frames.iter().enumerate().rev() {
            self.scratch[i] = self.scratch[i + 1].min(f.0);
        }
        let mut max = i64::MIN;
        for j in 1..n {
            if !end && n - j < LOOKAHEAD_FRAMES {
                break;
            }
            max = max.max(self.frames[j - 1].0);
            if max < self.scratch[j] {
                return Some((j, if end { Release::End } else { Release::Settled }));
            }
        }
        if end {
            return Some((n, Release::End));
        }
        // Nothing settles (timestamps went back for good): let the oldest
        // frame go as it is rather than hold without bound.
        (n > MAX_HELD_FRAMES || self.held.len() > MAX_HELD_PACKETS).then_some((1, Release::Forced))
    }

    /// Moves every packet whose decode time is settled into `out`, in
    /// sequence order; with `end`, every packet held.
    fn release(&mut self, end: bool, out: &mut Vec<Decoded>) {
        if !end && !self.changed && self.held.len() <= MAX_HELD_PACKETS {
            return;
        }
        self.changed = false;
        while let Some((j, why)) = self.next_block(end) {
            let packets = self.frames.iter().take(j).map(|f| f.1).sum();
            // A block whose packets (or frames) were lost, or that the end
            // cut short, ranks too few timestamps: decode times may come
            // out late by a frame or more. A single frame of a stream that
            // never reordered is due at its own timestamp all the same.
            let certain = self.gapless(packets)
                && match why {
                    Release::Settled => true,
                    Release::End => j == 1 && self.in_order(),
                    Release::Forced => false,
                };
            self.scratch.clear();
            self.scratch.extend(self.frames.iter().take(j).map(|f| f.0));
            self.scratch.sort_unstable();
            if certain {
                for (f, decode) in self.frames.iter().zip(&self.scratch) {
                    self.lag = self.lag.max(decode - f.0);
                    self.lead = self.lead.max(f.0 - decode);
                }
            }
            for k in 0..j {
                let (Some((_, n)), Some(&decode)) = (self.frames.pop_front(), self.scratch.get(k))
                else {
                    break;
                };
                for p in self.held.drain(..n.min(self.held.len())) {
                    self.released = Some(p.seq);
                    out.push(Decoded {
                        ts: p.ts,
                        decode,
                        at: p.at,
                        certain,
                    });
                }
            }
        }
    }
}

/// Everything measured of one track of one session.
#[derive(Debug, Clone)]
pub struct TrackMeasure {
    clock_rate: u32,
    clock: WallClock,
    /// The SSRC the server announced (or the first one seen).
    ssrc: Option<u32>,
    pub stats: ReceiverStats,
    /// RTP timestamp of the first packet: unwrapped timestamps count from it.
    first_ts: Option<u32>,
    /// RTP timestamp of the last packet, and its unwrapped value.
    last_ts: u32,
    ext_ts: i64,
    order: DecodeOrder,
    decoded: Vec<Decoded>,
    /// Lowest `arrival − decode time` so far, s from the first arrival.
    envelope: Option<f64>,
    /// The first packet's `arrival − decode time`, for the drift fit.
    first_offset: Option<f64>,
    /// Pacing error per packet, µs (see the module docs).
    pub pacing: Histogram<u64>,
    /// Reorder depth per packet, µs; `None` while the track's timestamps
    /// never stepped back in decode order.
    pub reorder: Option<Histogram<u64>>,
    /// Packets measured so far.
    measured: u64,
    /// Payload bytes (RTCP's octet count).
    pub octets: u64,
    /// Whole datagram bytes.
    pub bytes: u64,
    pub first_arrival: Option<Instant>,
    pub last_arrival: Option<Instant>,
    /// Sender reports received about this track.
    pub sender_reports: u32,
    last_sr: Option<(SenderInfo, Instant)>,
    /// Lowest `arrival − SR-mapped decode time` before taking off the lag.
    sync_min: Option<f64>,
    /// The server said BYE for this source.
    pub bye: bool,
    /// Least-squares sums of the signed pacing error `e` (s) against the
    /// time since the first packet `t` (s): n, Σt, Σe, Σt², Σte.
    fit: [f64; 5],
}

/// `a − b` in seconds, negative when `a` is earlier.
fn secs_between(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64(),
        None => -b.saturating_duration_since(a).as_secs_f64(),
    }
}

impl TrackMeasure {
    /// `ssrc` is the one from the SETUP reply's Transport, when there was one.
    pub fn new(clock_rate: u32, ssrc: Option<u32>, clock: WallClock) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            clock,
            ssrc,
            stats: ReceiverStats::new(clock_rate),
            first_ts: None,
            last_ts: 0,
            ext_ts: 0,
            order: DecodeOrder::default(),
            decoded: Vec::new(),
            envelope: None,
            first_offset: None,
            pacing: micros_histogram(),
            reorder: None,
            measured: 0,
            octets: 0,
            bytes: 0,
            first_arrival: None,
            last_arrival: None,
            sender_reports: 0,
            last_sr: None,
            sync_min: None,
            bye: false,
            fit: [0.0; 5],
        }
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Counts one RTP datagram read at `now` into this track and
    /// `timeline`. Its pacing error is measured once its decode time is
    /// settled (at the latest by [`finish`](Self::finish)).
    pub fn on_rtp(
        &mut self,
        datagram: &[u8],
        now: Instant,
        timeline: &mut Timeline,
    ) -> Result<(), NotRtp> {
        let pkt = rtp_rs::RtpReader::new(datagram).map_err(|_| NotRtp::Malformed)?;
        let ssrc = pkt.ssrc();
        match self.ssrc {
            Some(s) if s != ssrc => return Err(NotRtp::OtherSource(ssrc)),
            None => self.ssrc = Some(ssrc),
            Some(_) => {}
        }
        let (seq, ts) = (u16::from(pkt.sequence_number()), pkt.timestamp());
        let since_epoch = now.saturating_duration_since(self.clock.origin());
        let expected_before = self.stats.expected();
        self.stats.on_packet(seq, ts, since_epoch);
        let newly_lost = (self.stats.expected() - expected_before).saturating_sub(1);
        self.octets += pkt.payload().len() as u64;
        self.bytes += datagram.len() as u64;
        self.first_arrival.get_or_insert(now);
        self.last_arrival = Some(now);
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
            self.last_ts = ts;
        }
        self.ext_ts += i64::from(ts.wrapping_sub(self.last_ts) as i32);
        self.last_ts = ts;
        timeline.count(since_epoch, newly_lost);
        if let Some(d) = self.order.push(seq, self.ext_ts, now) {
            self.decoded.push(d);
        }
        self.order.release(false, &mut self.decoded);
        self.measure_decoded(timeline);
        Ok(())
    }

    /// Measures every packet still waiting for its decode time (the stream
    /// ended). Call it before reading the figures.
    pub fn finish(&mut self, timeline: &mut Timeline) {
        self.order.release(true, &mut self.decoded);
        self.measure_decoded(timeline);
    }

    fn measure_decoded(&mut self, timeline: &mut Timeline) {
        let mut decoded = std::mem::take(&mut self.decoded);
        for d in decoded.drain(..) {
            self.measure(d, timeline);
        }
        self.decoded = decoded;
    }

    fn measure(&mut self, d: Decoded, timeline: &mut Timeline) {
        let (Some(t0), Some(first_ts)) = (self.first_arrival, self.first_ts) else {
            return;
        };
        let rate = f64::from(self.clock_rate);
        let wall = secs_between(d.at, t0);
        let x = wall - d.decode as f64 / rate;
        // An unsure decode time may be late, which would take the envelope
        // down for good: it is measured against the envelope, not into it.
        let envelope = match self.envelope {
            Some(e) if d.certain => e.min(x),
            Some(e) => e,
            None => x,
        };
        self.envelope = Some(envelope);
        let error = Duration::from_secs_f64((x - envelope).max(0.0));
        record_micros(&mut self.pacing, error);
        timeline.error(d.at.saturating_duration_since(self.clock.origin()), error);
        if d.certain {
            let e = x - *self.first_offset.get_or_insert(x);
            for (acc, v) in self
                .fit
                .iter_mut()
                .zip([1.0, wall, e, wall * wall, wall * e])
            {
                *acc += v;
            }
        }
        let ahead = d.ts - (d.decode - self.order.lag);
        if ahead > 0 && self.reorder.is_none() {
            let mut h = reorder_histogram();
            // Every packet before this one was in order.
            h.saturating_record_n(1, self.measured);
            self.reorder = Some(h);
        }
        if let Some(h) = &mut self.reorder {
            let ahead = Duration::from_secs_f64(ahead.max(0) as f64 / rate);
            record_micros(h, ahead);
        }
        self.measured += 1;
        if let (Some((sr, _)), true) = (&self.last_sr, d.certain) {
            let decode_ts = first_ts.wrapping_add(d.decode as u32);
            let since_sr = f64::from(decode_ts.wrapping_sub(sr.rtp_time) as i32) / rate;
            let mapped = sr.ntp.to_unix().as_secs_f64() + since_sr;
            let arrived = self.clock.ntp(d.at).to_unix().as_secs_f64();
            let off = arrived - mapped;
            self.sync_min = Some(self.sync_min.map_or(off, |o| o.min(off)));
        }
    }

    /// Takes what concerns this track from a compound RTCP packet read at
    /// `now`: its SRs and BYE.
    pub fn on_rtcp(&mut self, packets: &[Packet], now: Instant) {
        for p in packets {
            match p {
                Packet::SenderReport { ssrc, info, .. } if self.ssrc.is_none_or(|s| s == *ssrc) => {
                    self.ssrc.get_or_insert(*ssrc);
                    self.sender_reports += 1;
                    self.last_sr = Some((*info, now));
                }
                Packet::Goodbye { ssrcs, .. } if self.ssrc.is_some_and(|s| ssrcs.contains(&s)) => {
                    self.bye = true;
                }
                _ => {}
            }
        }
    }

    /// Minimum sync offset, seconds (see the module docs); `None` before a
    /// packet was measured after an SR.
    pub fn sync_offset(&self) -> Option<f64> {
        let lag = self.order.lag as f64 / f64::from(self.clock_rate);
        self.sync_min.map(|o| o + lag)
    }

    /// The deepest reordering so far, in ms: the largest reorder depth of
    /// a packet (see the module docs). 0 when timestamps never stepped back.
    pub fn reorder_depth_ms(&self) -> f64 {
        (self.order.lead + self.order.lag) as f64 * 1000.0 / f64::from(self.clock_rate)
    }

    /// Drift of the sender's clock against ours: the least-squares slope of
    /// the signed pacing error over time, in milliseconds per minute. `None`
    /// before two packets at different times.
    pub fn drift_ms_per_min(&self) -> Option<f64> {
        let [n, st, se, stt, ste] = self.fit;
        let den = n * stt - st * st;
        if n < 2.0 || den.abs() < 1e-12 {
            return None;
        }
        Some((n * ste - st * se) / den * 60_000.0)
    }

    /// The packet count of the last SR: what the server says it sent.
    pub fn server_packet_count(&self) -> Option<u32> {
        self.last_sr.as_ref().map(|(sr, _)| sr.packet_count)
    }

    /// A reception report about this track for an RR sent at `now`
    /// (`None` before the first packet).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        if self.stats.received() == 0 {
            return None;
        }
        let (lsr, dlsr) = match &self.last_sr {
            Some((sr, at)) => {
                let d = now.saturating_duration_since(*at);
                let dlsr = (d.as_secs_f64() * 65536.0).min(f64::from(u32::MAX)) as u32;
                (sr.ntp.middle32(), dlsr)
            }
            None => (0, 0),
        };
        Some(self.stats.report_block(ssrc, lsr, dlsr))
    }
}

/// The A/V sync error of a session: the spread (max - min) of its tracks'
/// sync offsets, in milliseconds. `None` with fewer than two tracks that
/// have an offset.
pub fn av_sync_ms(tracks: &[&TrackMeasure]) -> Option<f64> {
    let offs: Vec<f64> = tracks.iter().filter_map(|t| t.sync_offset()).collect();
    if offs.len() < 2 {
        return None;
    }
    let max = offs.iter().copied().fold(f64::MIN, f64::max);
    let min = offs.iter().copied().fold(f64::MAX, f64::min);
    Some((max - min) * 1000.0)
}

/// NTP of `unix` seconds (for tests and SR construction).
pub fn ntp_at(unix: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(Duration::from_secs_f64(unix))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::proto::rtcp;

    const RATE: u32 = 8000;
    const VIDEO: u32 = 90_000;
    /// 25 fps in 90 kHz ticks.
    const FRAME: u32 = 3600;

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 10];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[0; 320]);
        v
    }

    fn clock(t0: Instant) -> WallClock {
        WallClock::new(t0, Duration::from_secs(1_700_000_000))
    }

    /// Feeds `(seq, ts, arrival ms)` in the order they arrive, and
    /// finishes.
    fn feed(m: &mut TrackMeasure, t0: Instant, packets: &[(u16, u32, f64)]) -> Timeline {
        let mut tl = Timeline::default();
        let mut packets = packets.to_vec();
        packets.sort_by(|a, b| a.2.total_cmp(&b.2));
        for (seq, ts, ms) in packets {
            let at = t0 + Duration::from_secs_f64(ms / 1000.0);
            m.on_rtp(&rtp(seq, ts, 7), at, &mut tl).unwrap();
        }
        m.finish(&mut tl);
        tl
    }

    /// Display-order frame numbers in decode order, as x264 writes them
    /// with 3 B-frames and a B-pyramid (the bundled testsrc-320x240.mp4):
    /// I0 P4 B2 b1 b3, then P8 B6 b5 b7, and so on. The decode time of the
    /// k-th picture is frame k - 2 (the first two are decoded before 0).
    fn pyramid(pictures: u32) -> Vec<u32> {
        let mut v = vec![0];
        let mut p = 0;
        while (v.len() as u32) < pictures {
            v.extend([p + 4, p + 2, p + 1, p + 3]);
            p += 4;
        }
        v.truncate(pictures as usize);
        v
    }

    /// The packets of `pictures` pyramid pictures of 3 packets each, sent
    /// on the decode schedule the way rtspd does it (what decodes before
    /// the first picture's presentation time goes out at once): `(seq, ts,
    /// arrival ms)`, with `late` ms added to the packets of picture
    /// `late_at`.
    fn decode_order(pictures: u32, ts0: u32, late_at: usize, late: f64) -> Vec<(u16, u32, f64)> {
        let mut out = Vec::new();
        for (k, shown) in pyramid(pictures).into_iter().enumerate() {
            let decode = (k as f64 - 2.0).max(0.0) * 40.0;
            let extra = if k == late_at { late } else { 0.0 };
            for part in 0..3 {
                let seq = (3 * k + part) as u16;
                let at = decode + extra + 0.01 * part as f64;
                out.push((seq, ts0.wrapping_add(shown * FRAME), at));
            }
        }
        out
    }

    #[test]
    fn pacing_error_is_arrival_against_media_time() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, Some(7), clock(t0));
        // 20 ms packets; the 3rd is 5 ms late, the 4th 1 ms early. The RTP
        // timestamp wraps between packets 2 and 3.
        let ts0 = u32::MAX - 200;
        let packets: Vec<_> = [0.0, 20.0, 45.0, 59.0, 80.0]
            .iter()
            .enumerate()
            .map(|(i, &ms)| (100 + i as u16, ts0.wrapping_add(160 * i as u32), ms))
            .collect();
        feed(&mut m, t0, &packets);
        assert_eq!(m.pacing.len(), 5);
        let drift = m.drift_ms_per_min().unwrap();
        assert!(
            drift.abs() < 60.0,
            "a few ms over 80 ms is no drift: {drift}"
        );
        assert_eq!(m.pacing.max() / 100, 50, "5 ms late, in µs (3 digits)");
        // The early 4th is the new least delayed, so the 5th, on time by
        // the first, is 1 ms late by it.
        assert_eq!(m.pacing.value_at_quantile(0.79) / 100, 10, "1 ms");
        assert_eq!((m.stats.received(), m.stats.lost()), (5, 0));
        assert_eq!(m.octets, 5 * 320);
        assert!(m.reorder.is_none(), "audio is never reordered");
        assert_eq!(m.reorder_depth_ms(), 0.0);
        let mut tl = Timeline::default();
        assert_eq!(
            m.on_rtp(&rtp(105, 0, 8), t0, &mut tl),
            Err(NotRtp::OtherSource(8)),
            "another SSRC is not counted"
        );
        assert_eq!(m.on_rtp(&[0x80, 1, 2], t0, &mut tl), Err(NotRtp::Malformed));
        assert!(tl.seconds.is_empty());
    }

    #[test]
    fn audio_figures_are_the_ones_aligned_on_the_first_packet() {
        // Without reordering, and with a first packet that is not delayed,
        // the error is |arrival - media time| after aligning on the first
        // packet, as before decode times were rebuilt: every 7th of 200
        // packets 3 ms late, the rest on time.
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        let packets: Vec<_> = (0..200u16)
            .map(|i| {
                let late = if i % 7 == 3 { 3.0 } else { 0.0 };
                (i, 160 * u32::from(i), 20.0 * f64::from(i) + late)
            })
            .collect();
        let tl = feed(&mut m, t0, &packets);
        assert_eq!(m.pacing.len(), 200);
        assert_eq!(m.pacing.max() / 100, 30);
        let late = (0..200).filter(|i| i % 7 == 3).count() as u64;
        assert_eq!(m.pacing.count_between(2900, 3100), late);
        assert_eq!(m.pacing.count_between(0, 10), 200 - late, "on time");
        assert!(m.reorder.is_none());
        // Every packet's error lands in the second it arrived.
        let received: u64 = tl.seconds.iter().map(|s| s.received).sum();
        assert_eq!(received, 200);
        assert_eq!(tl.seconds[0].error_max_us / 100, 30);
        let sum: u64 = tl.seconds.iter().map(|s| s.error_sum_us).sum();
        assert_eq!(sum / 1000, 3 * late);
    }

    #[test]
    fn packets_overtaken_in_the_network_keep_their_lateness() {
        // Seq 5 is 50 ms late, so 6 and 7 arrive before it; seq 20 comes
        // after its place was settled (40 ms late, 16 packets overtook it).
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        let packets: Vec<(u16, u32, f64)> = (0..60u16)
            .map(|i| {
                let late = match i {
                    5 => 50.0,
                    20 => 400.0,
                    _ => 0.0,
                };
                (i, 160 * u32::from(i), 20.0 * f64::from(i) + late)
            })
            .collect();
        feed(&mut m, t0, &packets);
        assert_eq!(m.stats.reordered(), 2);
        assert_eq!(m.pacing.max() / 1000, 400, "{}", m.pacing.max());
        assert_eq!(m.pacing.count_between(49_000, 51_000), 1, "seq 5");
        assert_eq!(m.pacing.count_between(0, 10), 58, "the rest on time");
        assert!(m.reorder.is_none(), "network reordering is not B-frames");
    }

    #[test]
    fn b_frames_in_decode_order_are_on_time_and_their_depth_is_reported() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(VIDEO, None, clock(t0));
        // 10 s at 25 fps (62 mini-GOPs after the I); the timestamps wrap
        // on the way.
        let packets = decode_order(249, u32::MAX - 50 * FRAME, usize::MAX, 0.0);
        let tl = feed(&mut m, t0, &packets);
        assert_eq!(m.pacing.len(), 747);
        assert!(
            m.pacing.max() <= 20,
            "on the decode schedule: {} µs",
            m.pacing.max()
        );
        // P-pictures are shown 5 frames after they are decoded: 200 ms.
        assert!(
            (m.reorder_depth_ms() - 200.0).abs() < 1e-9,
            "{}",
            m.reorder_depth_ms()
        );
        let r = m.reorder.as_ref().expect("reordered");
        assert_eq!(r.len(), 747);
        assert_eq!(r.max() / 1000, 200);
        // Per mini-GOP of 4 pictures: P 200 ms, B 80 ms, b1 0, b3 40 ms.
        assert_eq!(r.count_between(198_000, 202_000), 3 * 62);
        // (I0 is measured before the first B-frame shows the decode lag.)
        assert_eq!(r.count_between(0, 10), 3 * 62 + 3);
        // (A picture's 3 packets are sent 10 µs apart.)
        assert_eq!(tl.seconds.iter().map(|s| s.error_max_us).max(), Some(20));

        // Measured against the timestamps themselves, the same packets
        // were up to 200 ms off (what the tester used to report).
        let (x0, worst) = packets
            .iter()
            .fold((None, 0.0f64), |(x0, w), &(_, ts, ms)| {
                let media = f64::from(ts.wrapping_sub(packets[0].1) as i32) / 90.0;
                let x = ms - media;
                let x0 = x0.unwrap_or(x);
                (Some(x0), w.max((x - x0).abs()))
            });
        assert!(x0.is_some() && (worst - 200.0).abs() < 1.0, "{worst}");
    }

    #[test]
    fn a_late_picture_shows_its_lateness() {
        for late_at in [40, 41, 42, 43] {
            // Pictures 40 to 43 are b39, P44, B42 and b41: each 50 ms late
            // in turn, so the next picture overtakes it in the network.
            let t0 = Instant::now();
            let mut m = TrackMeasure::new(VIDEO, None, clock(t0));
            feed(&mut m, t0, &decode_order(101, 0, late_at, 50.0));
            assert_eq!(
                m.pacing.count_between(49_000, 51_000),
                3,
                "picture {late_at}: its 3 packets are 50 ms late"
            );
            assert_eq!(m.pacing.count_between(0, 100), 300, "the rest on time");
            assert!(
                (m.reorder_depth_ms() - 200.0).abs() < 1e-9,
                "{}",
                m.reorder_depth_ms()
            );
        }
    }

    #[test]
    fn a_lost_picture_upsets_only_its_own_group() {
        // Pictures 40 to 43 are b39, P44, B42 and b41. Losing one leaves
        // its mini-GOP (or the one before) with too few timestamps, so some
        // of its pictures are taken a frame or two off; the lowest
        // envelope must not move for it, and the next groups are on time.
        for lost in [40, 41, 42, 43] {
            let t0 = Instant::now();
            let mut m = TrackMeasure::new(VIDEO, None, clock(t0));
            let packets: Vec<_> = decode_order(101, 0, usize::MAX, 0.0)
                .into_iter()
                .filter(|&(seq, _, _)| seq / 3 != lost)
                .collect();
            feed(&mut m, t0, &packets);
            assert_eq!(m.stats.lost(), 3);
            let off = m.pacing.len() - m.pacing.count_between(0, 100);
            assert!(off <= 9, "picture {lost}: {off} packets off");
            assert!(m.pacing.max() <= 80_100, "{}", m.pacing.max());
            assert!((m.reorder_depth_ms() - 200.0).abs() < 1e-9);
        }
    }

    #[test]
    fn a_stream_cut_short_mid_group_stays_in_sync() {
        // The run ends anywhere in a mini-GOP: the last one's timestamps
        // are incomplete, which must not move the video's sync offset.
        for pictures in 98..=101 {
            let (a, v) = av_with_b_frames(pictures, 0.0);
            let ms = av_sync_ms(&[&a, &v]).unwrap();
            assert!(ms.abs() < 0.01, "{pictures} pictures: {ms} ms");
            assert!(v.pacing.max() <= 20, "{}", v.pacing.max());
            assert!((v.reorder_depth_ms() - 200.0).abs() < 1e-9);
        }
    }

    #[test]
    fn timestamps_that_go_back_for_good_are_not_held_without_bound() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        let mut tl = Timeline::default();
        // One packet far ahead, then a stream below it: no block settles
        // until the far one is let go.
        m.on_rtp(&rtp(0, 1_000_000, 1), t0, &mut tl).unwrap();
        for i in 1..200u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            m.on_rtp(&rtp(i, 160 * u32::from(i), 1), at, &mut tl)
                .unwrap();
            assert!(m.order.frames.len() <= MAX_HELD_FRAMES + 1);
        }
        assert!(m.pacing.len() > 100, "measured while running");
        m.finish(&mut tl);
        assert_eq!(m.pacing.len(), 200);
        m.finish(&mut tl);
        assert_eq!(m.pacing.len(), 200, "finish twice measures once");
    }

    #[test]
    fn timeline_counts_losses_when_the_gap_shows() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        // Seq 0, 1, then 5 (3 lost) in the next second.
        let tl = feed(
            &mut m,
            t0,
            &[(0, 0, 0.0), (1, 160, 20.0), (5, 5 * 160, 1100.0)],
        );
        assert_eq!(tl.seconds.len(), 2);
        assert_eq!((tl.seconds[0].received, tl.seconds[0].lost), (2, 0));
        assert_eq!((tl.seconds[1].received, tl.seconds[1].lost), (1, 3));
        // Packet 5 is due at 100 ms and came at 1100 ms: 1 s late.
        assert_eq!(tl.seconds[1].error_max_us / 1000, 1000);
        let mut sum = Timeline::default();
        sum.merge(&tl);
        sum.merge(&tl);
        assert_eq!((sum.seconds[1].received, sum.seconds[1].lost), (2, 6));
        sum.count(Duration::from_secs(1_000_000), 0);
        sum.error(Duration::from_secs(1_000_000), Duration::ZERO);
        assert_eq!(sum.seconds.len(), 2, "bounded");
    }

    #[test]
    fn drift_is_the_slope_of_the_error() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        // The sender's clock runs 0.1% fast: 60 ms per minute early.
        let packets: Vec<_> = (0..3000u32)
            .map(|i| (i as u16, i * 160, f64::from(i) * 20.0 * 0.999))
            .collect();
        feed(&mut m, t0, &packets);
        let d = m.drift_ms_per_min().unwrap();
        assert!((d + 60.0).abs() < 0.5, "{d}");
    }

    fn sr(ssrc: u32, unix: f64, rtp_time: u32) -> Packet {
        Packet::SenderReport {
            ssrc,
            info: SenderInfo {
                ntp: ntp_at(unix),
                rtp_time,
                packet_count: 9,
                octet_count: 0,
            },
            reports: vec![],
        }
    }

    #[test]
    fn sync_offset_and_av_sync() {
        let t0 = Instant::now();
        let c = clock(t0);
        let unix0 = 1_700_000_000.0;
        // Audio: SR says RTP 1000 = unix0; packets arrive on time.
        let mut a = TrackMeasure::new(RATE, Some(1), c);
        a.on_rtcp(&[sr(1, unix0, 1000)], t0);
        // Video (90 kHz): its SR maps media time 40 ms later than it is
        // sent, i.e. video is 40 ms early against audio.
        let mut v = TrackMeasure::new(VIDEO, Some(2), c);
        v.on_rtcp(&[sr(2, unix0 + 0.040, 5000)], t0);
        let mut tl = Timeline::default();
        for i in 0..10u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            a.on_rtp(&rtp(i as u16, 1000 + 160 * i, 1), at, &mut tl)
                .unwrap();
            v.on_rtp(&rtp(i as u16, 5000 + 1800 * i, 2), at, &mut tl)
                .unwrap();
        }
        a.finish(&mut tl);
        v.finish(&mut tl);
        let oa = a.sync_offset().unwrap();
        assert!(oa.abs() < 1e-3, "{oa}");
        let ms = av_sync_ms(&[&a, &v]).unwrap();
        assert!((ms - 40.0).abs() < 1.0, "{ms}");
        assert_eq!(av_sync_ms(&[&a]), None);
        assert_eq!((a.sender_reports, a.server_packet_count()), (1, Some(9)));
    }

    /// Audio at 20 ms for 4 s and `pictures` of B-frame video, both SRs
    /// mapping media time 0 to `unix0`; the audio is sent `audio_late_ms`
    /// after its SR says.
    fn av_with_b_frames(pictures: u32, audio_late_ms: f64) -> (TrackMeasure, TrackMeasure) {
        let t0 = Instant::now();
        let c = clock(t0);
        let unix0 = 1_700_000_000.0;
        let (ats0, vts0) = (1000u32, u32::MAX - 10 * FRAME);
        let mut a = TrackMeasure::new(RATE, Some(1), c);
        let mut v = TrackMeasure::new(VIDEO, Some(2), c);
        a.on_rtcp(&[sr(1, unix0, ats0)], t0);
        v.on_rtcp(&[sr(2, unix0, vts0)], t0);
        let mut tl = Timeline::default();
        for i in 0..200u32 {
            let at = t0 + Duration::from_secs_f64((20.0 * f64::from(i) + audio_late_ms) / 1000.0);
            a.on_rtp(&rtp(i as u16, ats0 + 160 * i, 1), at, &mut tl)
                .unwrap();
        }
        for (seq, ts, ms) in decode_order(pictures, vts0, usize::MAX, 0.0) {
            let at = t0 + Duration::from_secs_f64(ms / 1000.0);
            v.on_rtp(&rtp(seq, ts, 2), at, &mut tl).unwrap();
        }
        a.finish(&mut tl);
        v.finish(&mut tl);
        (a, v)
    }

    #[test]
    fn b_frames_are_not_a_sync_error_and_a_shift_still_is() {
        let (a, v) = av_with_b_frames(101, 0.0);
        let ms = av_sync_ms(&[&a, &v]).unwrap();
        assert!(ms.abs() < 0.01, "in sync, B-frames and all: {ms} ms");
        let (a, v) = av_with_b_frames(101, 200.0);
        let ms = av_sync_ms(&[&a, &v]).unwrap();
        assert!((ms - 200.0).abs() < 0.01, "audio 200 ms late: {ms} ms");
        assert!(v.pacing.max() <= 20 && a.pacing.max() <= 20);
    }

    #[test]
    fn bye_and_receiver_report() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        assert!(m.report_block(t0).is_none());
        let mut tl = Timeline::default();
        for seq in [1u16, 2, 4, 4] {
            m.on_rtp(&rtp(seq, 160 * u32::from(seq), 3), t0, &mut tl)
                .unwrap();
        }
        m.finish(&mut tl);
        assert_eq!(m.pacing.len(), 4, "the duplicate too");
        assert_eq!(m.ssrc(), Some(3));
        let rb = m.report_block(t0).unwrap();
        assert_eq!((rb.ssrc, rb.cumulative_lost), (3, 0), "1 lost, 1 duplicate");
        assert_eq!(m.stats.duplicates(), 1);
        let mut buf = BytesMut::new();
        let info = SenderInfo {
            ntp: ntp_at(1.0),
            rtp_time: 0,
            packet_count: 4,
            octet_count: 0,
        };
        rtcp::write_goodbye(&mut buf, 3, &info, "x");
        m.on_rtcp(&rtcp::parse_compound(&buf).unwrap(), t0);
        assert!(m.bye);
        assert_eq!(m.server_packet_count(), Some(4));
    }
}
