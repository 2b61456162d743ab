//! A relay channel: tracks of any payload format fed packet by packet (a
//! publisher's RECORD, an upstream's PLAY), each restamped onto the
//! channel's timeline ([`Restamper`]), re-fragmented to our MTU when it is
//! H.264/H.265 ([`VideoCodec::refragment`]), encoded once and fanned out to
//! every listener (RFC 3550 §5.1; RFC 2326 §C.1.5 live presentations).
//!
//! Listeners start decodable. A new listener gets nothing until each track
//! it set up has its first packet: for a video track, the start of the
//! next keyframe (its parameter sets, or its IDR/IRAP picture); for
//! another track, the first packet after that. Then [`RelayChannel::take_started`]
//! names exactly those packets (RFC 2326 §12.33 RTP-Info), so the server
//! answers PLAY then. With a GOP cache, the channel keeps every packet
//! since the last keyframe once, shared by all listeners; a newcomer
//! starts at once with the cached GOP, sent `catchup_speed` times faster
//! than it arrived, then live. Catching up yields to the live fan-out: it
//! waits while that runs late ([`CATCHUP_YIELD`]), so a crowd of
//! newcomers does not delay everyone already watching.
//!
//! A packet's fan-out is spread over a window that grows with the
//! audience (`spread_per_listener` each, at most a quarter of
//! `max_delay`): each listener sits in one of [`SPREAD_SLOTS`] slots and
//! gets every packet that fixed share of the window after it arrived. So a
//! keyframe, which takes several times a P-frame's time to send to
//! everyone, does not reach the last listeners later than their P-frames
//! do: their delay is constant, not a step that RFC 3550 §6.4.1 jitter
//! sees, and the sending is even over time rather than bursts.
//!
//! Sender reports (RFC 3550 §6.4.1) go to each listener of a track every
//! [`SR_INTERVAL`] from its start. They carry the source's own NTP timeline
//! when the source sent SRs ([`RelayChannel::source_report`]), so every
//! track keeps the source's A/V offset; otherwise the time packets arrived.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::nal::VideoCodec;
use super::params::ParamSets;
use super::restamp::{Incoming, Restamper};
use crate::proto::clock::{duration_to_ticks, WallClock};
use crate::proto::live::JoinInfo;
use crate::proto::pacer::{Transmit, SR_INTERVAL};
use crate::proto::rtcp::NtpTimestamp;
use crate::proto::sender::Sender;
use crate::proto::session::Dest;

/// One track of a relay channel.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// `Some` for H.264/H.265: keyframes gate listeners and big packets are
    /// re-fragmented. Other payloads pass as they come.
    pub video: Option<VideoCodec>,
    pub clock_rate: u32,
    pub payload_type: u8,
    /// From the OS CSPRNG (RFC 3550 §5.1).
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
}

/// How a relay channel sends.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Largest RTP payload we send (video is re-fragmented to it).
    pub max_payload: usize,
    /// Keep the last GOP for newcomers.
    pub gop_cache: bool,
    /// Bytes a cached GOP may hold; beyond, this GOP is not cached (its
    /// newcomers wait for the next keyframe).
    pub gop_cache_bytes: usize,
    /// How much faster than it arrived a cached GOP is sent to a newcomer.
    pub catchup_speed: u32,
    /// A packet still unsent this long after it arrived is dropped
    /// ([`RelayChannel::is_late`]): an overloaded server drops media
    /// rather than running ever later.
    pub max_delay: Duration,
    /// How much each listener widens the fan-out window (zero: every
    /// listener gets a packet as soon as it arrives); the window is at
    /// most a quarter of `max_delay`.
    pub spread_per_listener: Duration,
    pub cname: String,
    pub clock: WallClock,
}

/// A listener that started: the first packet of each track it set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: u64,
    pub first: Vec<Option<JoinInfo>>,
}

/// Listener slots a fan-out window is cut into: the listeners of one slot
/// get a packet together, slot `s` at `s / SPREAD_SLOTS` of the window.
pub const SPREAD_SLOTS: usize = 32;

/// When the live fan-out runs this late, listeners catching up through the
/// cache wait ([`CATCHUP_PAUSE`]): a newcomer's burst must not delay
/// everyone else's stream.
const CATCHUP_YIELD: Duration = Duration::from_millis(5);
/// How long catching up waits once the live fan-out ran late.
const CATCHUP_PAUSE: Duration = Duration::from_millis(2);
/// Most cached packets sent per [`RelayChannel::poll`], over all the
/// listeners catching up.
const CATCHUP_PER_POLL: usize = 512;

/// Packets still on their way to the listeners beyond which the oldest is
/// sent to all the rest at once (a bound, should the loop fall behind).
const MAX_PENDING: usize = 4096;

/// A packet as it went out, kept for the GOP cache.
#[derive(Debug, Clone)]
struct Sent {
    /// The channel's count of packets: a listener takes each once, from
    /// the cache or live ([`Listener::next_serial`]).
    serial: u64,
    track: usize,
    data: Bytes,
    at: Instant,
    join: JoinInfo,
}

/// The packets since the last keyframe, while they fit.
#[derive(Debug, Default)]
struct Gop {
    /// Counts keyframes: a listener catching up names its GOP by it.
    epoch: u64,
    packets: Vec<Sent>,
    bytes: usize,
    /// Over the byte cap: not cached.
    overflowed: bool,
    /// Begun at a keyframe (before the first one, nothing is cached).
    keyframed: bool,
    /// The keyframe's RTP timestamp: the parameter sets and slices of one
    /// keyframe share it, and start one GOP.
    timestamp: u32,
}

#[derive(Debug)]
struct Track {
    spec: TrackSpec,
    restamper: Restamper,
    sender: Sender,
    /// Without source SRs, the timeline's anchor: a packet's timestamp and
    /// when it arrived. Set by the first packet of a feed and kept (packet
    /// timestamps are presentation times: B-frames and arrival jitter
    /// would move a per-packet anchor, and every SR with it); taken anew
    /// only when the feed jumps by more than [`REANCHOR`].
    anchor: Option<(u32, Instant)>,
    /// The source's last SR mapped onto our timestamps: (its NTP time, our
    /// timestamp, when it arrived).
    source_sr: Option<(NtpTimestamp, u32, Instant)>,
    /// A source SR that came before the first packet of its SSRC (ffmpeg
    /// sends its first SR ahead of its first packet): applied once that
    /// packet gives the mapping.
    pending_sr: Option<SourceReport>,
    /// The latest in-band parameter sets (video).
    params: ParamSets,
    /// A packet of this video track was dropped late: the rest of its
    /// picture, and of its GOP, would not decode, so everything up to the
    /// next keyframe goes too.
    resync: bool,
}

/// A source's sender report as it came: its SSRC's RTP time `timestamp` is
/// NTP time `ntp` (RFC 3550 §6.4.1), received at `at`.
#[derive(Debug, Clone, Copy)]
struct SourceReport {
    ssrc: u32,
    ntp: NtpTimestamp,
    timestamp: u32,
    at: Instant,
}

impl Track {
    /// Our timestamp and NTP time for `now`.
    fn clock_at(&self, now: Instant, wallclock: &WallClock) -> Option<(NtpTimestamp, u32)> {
        let rate = self.spec.clock_rate;
        if let Some((ntp, ts, at)) = self.source_sr {
            let since = now.saturating_duration_since(at);
            return Some((
                ntp_plus(ntp, since),
                ts.wrapping_add(duration_to_ticks(since, rate) as u32),
            ));
        }
        let (ts, at) = self.anchor?;
        let since = now.saturating_duration_since(at);
        Some((
            wallclock.ntp(now),
            ts.wrapping_add(duration_to_ticks(since, rate) as u32),
        ))
    }

    /// Maps `sr` onto our timeline, or keeps it until its SSRC's first
    /// packet.
    fn take_report(&mut self, sr: SourceReport) {
        match self.restamper.map_timestamp(sr.ssrc, sr.timestamp) {
            Some(ours) => {
                self.source_sr = Some((sr.ntp, ours, sr.at));
                self.pending_sr = None;
            }
            None => self.pending_sr = Some(sr),
        }
    }

    /// Keeps the anchor unless packet `ts` arriving at `now` is more than
    /// [`REANCHOR`] off the timeline it gives.
    fn observe(&mut self, ts: u32, now: Instant) {
        let rate = i64::from(self.spec.clock_rate.max(1));
        if let Some((a_ts, a_at)) = self.anchor {
            let elapsed =
                duration_to_ticks(now.saturating_duration_since(a_at), rate as u32) as i64;
            let media = i64::from(ts.wrapping_sub(a_ts) as i32);
            if (media - elapsed).abs() <= REANCHOR.as_secs() as i64 * rate {
                return;
            }
        }
        self.anchor = Some((ts, now));
    }
}

/// How far a feed's timestamps may stray from the anchored timeline before
/// it is taken anew.
const REANCHOR: Duration = Duration::from_secs(1);

fn ntp_plus(ntp: NtpTimestamp, d: Duration) -> NtpTimestamp {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    NtpTimestamp(ntp.0.wrapping_add((d.as_secs() << 32).wrapping_add(frac)))
}

#[derive(Debug)]
struct Listener {
    /// RTP and RTCP destinations of each track it set up.
    dests: Vec<Option<(Dest, Dest)>>,
    /// Each set-up track's first packet, once known.
    first: Vec<Option<JoinInfo>>,
    /// Started: every set-up track has its first packet.
    started: bool,
    /// Waiting for a keyframe start on the video tracks.
    gated: bool,
    /// Catching up through the cache: (GOP epoch, next index, when the
    /// first cached packet went to it, that packet's arrival).
    catchup: Option<(u64, usize, Instant, Instant)>,
    next_sr: Instant,
    /// Its fan-out slot ([`SPREAD_SLOTS`]).
    slot: usize,
    /// The serial of the next packet it may take: one it already got from
    /// the cache does not come again live.
    next_serial: u64,
}

/// A packet on its way to the listeners, slot by slot.
#[derive(Debug)]
struct Fanout {
    serial: u64,
    track: usize,
    data: Bytes,
    join: JoinInfo,
    /// The first packet of a keyframe: gated listeners start here.
    keyframe_start: bool,
    at: Instant,
    /// The next slot it goes to.
    slot: usize,
}

impl Listener {
    fn wants(&self, track: usize) -> Option<(Dest, Dest)> {
        self.dests.get(track).copied().flatten()
    }

    /// Whether it takes live packet `f` (of a video track if `video`):
    /// where to send it, and whether it is its first of that track.
    fn take(&mut self, f: &Fanout, video: bool) -> Option<(Dest, bool)> {
        let (rtp, _) = self.wants(f.track)?;
        if self.catchup.is_some() || f.serial < self.next_serial {
            return None; // it gets (or got) this from the cache
        }
        if self.gated {
            if !(video && f.keyframe_start) {
                return None;
            }
            self.gated = false;
        }
        self.next_serial = f.serial + 1;
        let first = self.first[f.track].is_none();
        if first {
            self.first[f.track] = Some(f.join);
        }
        Some((rtp, first))
    }
}

/// When slot `slot` of a window of `spread` gets a packet, after it came.
fn slot_offset(spread: Duration, slot: usize) -> Duration {
    let (slot, slots) = (slot as u32, SPREAD_SLOTS as u32);
    spread * slot.min(slots) / slots
}

/// A live channel that relays RTP.
#[derive(Debug)]
pub struct RelayChannel {
    tracks: Vec<Track>,
    cfg: RelayConfig,
    listeners: BTreeMap<u64, Listener>,
    /// Listener ids by fan-out slot.
    slots: Vec<Vec<u64>>,
    /// Listeners catching up through the cache: a wake-up looks at these,
    /// not at every listener.
    catching: BTreeSet<u64>,
    /// When each started listener's next SR is due.
    reports: BTreeSet<(Instant, u64)>,
    /// Catching up waits until then: the live fan-out ran late.
    catchup_paused: Option<Instant>,
    /// Packets not yet sent to every slot, oldest first.
    pending: VecDeque<Fanout>,
    /// The next packet's serial.
    serial: u64,
    gop: Gop,
    /// The GOP before the current one, kept while listeners catch up in it.
    previous: Option<Gop>,
    started: VecDeque<Started>,
    /// Packets that came for a track the channel does not have, were not
    /// RTP, or had another payload type than the track's.
    pub rejected: u64,
    /// Packets dropped for coming too late ([`RelayChannel::drop_late`]),
    /// with the video dropped after them up to a keyframe.
    pub late: u64,
}

impl RelayChannel {
    pub fn new(tracks: Vec<TrackSpec>, cfg: RelayConfig) -> Self {
        let tracks = tracks
            .into_iter()
            .map(|spec| Track {
                restamper: Restamper::new(
                    spec.ssrc,
                    spec.clock_rate,
                    spec.first_seq,
                    spec.first_timestamp,
                ),
                sender: Sender::new(spec.ssrc, spec.payload_type, spec.first_seq),
                anchor: None,
                pending_sr: None,
                params: ParamSets::default(),
                source_sr: None,
                resync: false,
                spec,
            })
            .collect();
        Self {
            tracks,
            cfg,
            listeners: BTreeMap::new(),
            slots: vec![Vec::new(); SPREAD_SLOTS],
            catching: BTreeSet::new(),
            reports: BTreeSet::new(),
            catchup_paused: None,
            pending: VecDeque::new(),
            serial: 0,
            gop: Gop::default(),
            previous: None,
            started: VecDeque::new(),
            rejected: 0,
            late: 0,
        }
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// The feed changed (a new publisher, an upstream reconnected): its
    /// packets continue every track's timeline, and its SRs are awaited
    /// anew.
    pub fn source_changed(&mut self) {
        for t in &mut self.tracks {
            t.restamper.reset();
            t.source_sr = None;
            t.pending_sr = None;
            t.anchor = None;
        }
    }

    /// The source's SR for `track`: its SSRC's RTP time `timestamp` is NTP
    /// time `ntp`, received at `now`.
    pub fn source_report(
        &mut self,
        track: usize,
        ssrc: u32,
        ntp: NtpTimestamp,
        timestamp: u32,
        now: Instant,
    ) {
        if let Some(t) = self.tracks.get_mut(track) {
            t.take_report(SourceReport {
                ssrc,
                ntp,
                timestamp,
                at: now,
            });
        }
    }

    /// The latest in-band parameter sets of each track (empty for audio).
    pub fn parameter_sets(&self) -> Vec<ParamSets> {
        self.tracks.iter().map(|t| t.params.clone()).collect()
    }

    /// Adds listener `id` with the destinations of the tracks it set up
    /// (by track index). It starts once each has its first packet
    /// ([`RelayChannel::take_started`]); with a cached GOP, at once.
    pub fn subscribe(
        &mut self,
        id: u64,
        dests: Vec<Option<(Dest, Dest)>>,
        now: Instant,
        out: &mut Vec<Transmit>,
    ) {
        let mut dests = dests;
        dests.resize(self.tracks.len(), None);
        // Gated only if it takes video: an audio-only listener of a video
        // channel starts at the next packet.
        let video = self
            .tracks
            .iter()
            .zip(&dests)
            .any(|(t, d)| t.spec.video.is_some() && d.is_some());
        // The emptiest slot (the first one for a lone listener, which then
        // waits for nothing).
        let slot = (0..self.slots.len())
            .min_by_key(|&s| self.slots[s].len())
            .unwrap_or(0);
        let mut l = Listener {
            first: vec![None; dests.len()],
            dests,
            started: false,
            gated: video,
            catchup: None,
            next_sr: now + SR_INTERVAL,
            slot,
            next_serial: 0,
        };
        let cached =
            video && self.cfg.gop_cache && !self.gop.overflowed && !self.gop.packets.is_empty();
        if cached {
            l.gated = false;
            l.catchup = Some((self.gop.epoch, 0, now, self.gop.packets[0].at));
        }
        if let Some(old) = self.listeners.insert(id, l) {
            self.forget(id, &old);
        }
        if let Some(ids) = self.slots.get_mut(slot) {
            ids.push(id);
        }
        if cached {
            self.catching.insert(id);
            self.catch_up(id, now, out, &mut { CATCHUP_PER_POLL });
        }
    }

    /// Removes listener `id`; with `bye`, tells it the stream ended.
    pub fn unsubscribe(&mut self, id: u64, bye: bool, now: Instant, out: &mut Vec<Transmit>) {
        if let Some(l) = self.listeners.remove(&id) {
            self.forget(id, &l);
            if bye {
                self.report_to(&l, now, true, out);
            }
        }
        self.started.retain(|s| s.id != id);
    }

    /// Drops a leaving listener from the slot, catch-up and SR indexes.
    fn forget(&mut self, id: u64, l: &Listener) {
        if let Some(ids) = self.slots.get_mut(l.slot) {
            ids.retain(|&i| i != id);
        }
        self.catching.remove(&id);
        self.reports.remove(&(l.next_sr, id));
    }

    /// The fan-out window now: `spread_per_listener` per listener, at most
    /// a quarter of `max_delay` (so the spread never makes media late).
    fn spread(&self) -> Duration {
        let n = u32::try_from(self.listeners.len()).unwrap_or(u32::MAX);
        self.cfg
            .spread_per_listener
            .saturating_mul(n)
            .min(self.cfg.max_delay / 4)
    }

    /// Every listener hears a BYE (the channel stops).
    pub fn end_now(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        for l in self.listeners.values() {
            self.report_to(l, now, true, out);
        }
    }

    /// Listeners that started since the last call.
    pub fn take_started(&mut self) -> Vec<Started> {
        self.started.drain(..).collect()
    }

    /// A packet received at `received` and not yet sent at `now` waited
    /// past `max_delay`: the caller drops it ([`RelayChannel::drop_late`]).
    pub fn is_late(&self, received: Instant, now: Instant) -> bool {
        now.saturating_duration_since(received) > self.cfg.max_delay
    }

    /// Drops a late packet of `track`. Listeners see a gap in the
    /// sequence (the loss is theirs to count); a video track drops
    /// everything else up to its next keyframe, so nobody is fed a picture
    /// that refers to one it never got, and the GOP cache holds only
    /// what decodes.
    pub fn drop_late(&mut self, track: usize) {
        self.late += 1;
        if let Some(t) = self.tracks.get_mut(track) {
            t.resync |= t.spec.video.is_some();
        }
    }

    /// One RTP packet of `track` from the source, received at `now` (it is
    /// sent then, or as soon after as the caller sends `out`).
    pub fn push(&mut self, track: usize, packet: &[u8], now: Instant, out: &mut Vec<Transmit>) {
        let Ok(rtp) = rtp_rs::RtpReader::new(packet) else {
            self.rejected += 1;
            return;
        };
        let Some(t) = self.tracks.get_mut(track) else {
            self.rejected += 1;
            return;
        };
        // Another payload type than the source described is not this
        // track's format (RFC 3550 §5.1): forwarding it under ours would
        // feed decoders garbage.
        if rtp.payload_type() != t.spec.payload_type {
            self.rejected += 1;
            return;
        }
        let o = t.restamper.restamp(
            Incoming {
                ssrc: rtp.ssrc(),
                seq: u16::from(rtp.sequence_number()),
                timestamp: rtp.timestamp(),
            },
            now,
        );
        t.observe(o.timestamp, now);
        if let Some(sr) = t.pending_sr.filter(|sr| sr.ssrc == rtp.ssrc()) {
            t.take_report(sr);
        }
        let video = t.spec.video;
        if t.resync {
            if !video.is_some_and(|c| c.starts_keyframe(rtp.payload())) {
                self.late += 1;
                return;
            }
            t.resync = false;
        }
        let payload = Bytes::copy_from_slice(rtp.payload());
        if let Some(codec) = video {
            for (kind, unit) in codec.parameter_sets(&payload) {
                t.params.observe(kind, unit);
            }
        }
        let parts = match video {
            Some(codec) => codec.refragment(&payload, self.cfg.max_payload),
            None => vec![payload],
        };
        let keyframe = video.is_some_and(|c| parts.first().is_some_and(|p| c.starts_keyframe(p)));
        if keyframe && !(self.gop.keyframed && self.gop.timestamp == o.timestamp) {
            self.new_gop(o.timestamp);
        }
        let last = parts.len().saturating_sub(1);
        // A re-fragmented packet takes sequence numbers after its own; the
        // restamper continues from there.
        let mut seq = o.seq;
        for (k, part) in parts.iter().enumerate() {
            let t = &mut self.tracks[track];
            let marker = rtp.mark() && k == last;
            let join = JoinInfo {
                seq,
                rtptime: o.timestamp,
            };
            let data = t.sender.packet_at(seq, o.timestamp, marker, part);
            let serial = self.serial;
            self.serial += 1;
            self.pending.push_back(Fanout {
                serial,
                track,
                data: data.clone(),
                join,
                keyframe_start: keyframe && k == 0,
                at: now,
                slot: 0,
            });
            self.cache(Sent {
                serial,
                track,
                data,
                at: now,
                join,
            });
            seq = seq.wrapping_add(1);
        }
        if last > 0 {
            self.tracks[track].restamper.skip(last as u16);
        }
        self.release(now, out);
    }

    /// Sends each pending packet to the slots whose turn has come by
    /// `now`: to the listeners of its track that are live, starting gated
    /// listeners at a keyframe. Returns how late the latest of them is.
    fn release(&mut self, now: Instant, out: &mut Vec<Transmit>) -> Duration {
        let spread = self.spread();
        let Some(last) = self.slots.iter().rposition(|ids| !ids.is_empty()) else {
            self.pending.clear();
            return Duration::ZERO;
        };
        let over = self.pending.len().saturating_sub(MAX_PENDING);
        let Self {
            pending,
            slots,
            listeners,
            tracks,
            ..
        } = self;
        let (mut newly, mut behind) = (Vec::new(), Duration::ZERO);
        for (i, f) in pending.iter_mut().enumerate() {
            let video = tracks.get(f.track).is_some_and(|t| t.spec.video.is_some());
            while f.slot <= last {
                let due = f.at + slot_offset(spread, f.slot);
                if due > now && i >= over {
                    break;
                }
                behind = behind.max(now.saturating_duration_since(due));
                for &id in &slots[f.slot] {
                    let Some(l) = listeners.get_mut(&id) else {
                        continue;
                    };
                    if let Some((rtp, first)) = l.take(f, video) {
                        out.push(Transmit::rtp(rtp, f.data.clone(), id, due).segmentable());
                        if first {
                            newly.push(id);
                        }
                    }
                }
                f.slot += 1;
            }
        }
        while pending.front().is_some_and(|f| f.slot > last) {
            pending.pop_front();
        }
        for id in newly {
            self.check_started(id, now, out);
        }
        behind
    }

    fn new_gop(&mut self, timestamp: u32) {
        let epoch = self.gop.epoch + 1;
        let old = std::mem::replace(
            &mut self.gop,
            Gop {
                epoch,
                keyframed: true,
                timestamp,
                ..Gop::default()
            },
        );
        // The previous GOP stays while someone catches up in it; older
        // ones go (their listeners jump to the current keyframe).
        let in_old = self
            .listeners
            .values()
            .any(|l| l.catchup.is_some_and(|(e, ..)| e == old.epoch));
        self.previous = in_old.then_some(old);
    }

    fn cache(&mut self, sent: Sent) {
        if !self.cfg.gop_cache || !self.gop.keyframed || self.gop.overflowed {
            return;
        }
        self.gop.bytes += sent.data.len();
        if self.gop.bytes > self.cfg.gop_cache_bytes {
            self.gop.overflowed = true;
            self.gop.packets = Vec::new();
            return;
        }
        self.gop.packets.push(sent);
    }

    /// Records a listener's start once every track it set up has its first
    /// packet, and gives it an SR per track at once so it can sync.
    fn check_started(&mut self, id: u64, now: Instant, out: &mut Vec<Transmit>) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let ready = !l.started
            && l.dests
                .iter()
                .zip(&l.first)
                .all(|(d, f)| d.is_none() || f.is_some());
        if !ready {
            return;
        }
        l.started = true;
        self.reports.insert((l.next_sr, id));
        let first = l.first.clone();
        self.started.push_back(Started { id, first });
        if let Some(l) = self.listeners.get(&id) {
            self.report_to(l, now, false, out);
        }
    }

    /// An SR (or BYE) to each track `l` set up.
    fn report_to(&self, l: &Listener, now: Instant, bye: bool, out: &mut Vec<Transmit>) {
        for (t, d) in self.tracks.iter().zip(&l.dests) {
            // Without a timeline (the source is away), an SR would say
            // nothing true; a BYE must still go, with the last timestamp.
            let clock = t
                .clock_at(now, &self.cfg.clock)
                .or_else(|| bye.then(|| (self.cfg.clock.ntp(now), t.restamper.last_timestamp())));
            let (Some((_, rtcp)), Some((ntp, ts))) = (d, clock) else {
                continue;
            };
            out.push(Transmit::rtcp(
                *rtcp,
                t.sender.report(ntp, ts, &self.cfg.cname, bye),
            ));
        }
    }

    /// Sends listener `id` the cached packets due by `now`, at most
    /// `budget` of them (taken off it); once it has them all it is live.
    fn catch_up(&mut self, id: u64, now: Instant, out: &mut Vec<Transmit>, budget: &mut usize) {
        let speed = self.cfg.catchup_speed.max(1);
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let mut newly = false;
        while let Some((epoch, index, began, origin)) = l.catchup {
            let gop = if epoch == self.gop.epoch {
                &self.gop
            } else if let Some(p) = self.previous.as_ref().filter(|p| p.epoch == epoch) {
                p
            } else {
                // Its GOP is gone: on at the current keyframe.
                l.catchup = match self.gop.packets.first() {
                    Some(p) if !self.gop.overflowed => Some((self.gop.epoch, 0, now, p.at)),
                    _ => None,
                };
                continue;
            };
            let Some(p) = gop.packets.get(index) else {
                // The end of its GOP: the current one next, or live.
                l.catchup = if epoch == self.gop.epoch || self.gop.overflowed {
                    None
                } else {
                    Some((self.gop.epoch, 0, began, origin))
                };
                continue;
            };
            let due = began + p.at.saturating_duration_since(origin) / speed;
            if due > now || *budget == 0 {
                break;
            }
            *budget -= 1;
            l.next_serial = p.serial + 1;
            if let Some((rtp, _)) = l.wants(p.track) {
                out.push(Transmit::rtp(rtp, p.data.clone(), id, due).segmentable());
                if l.first[p.track].is_none() {
                    l.first[p.track] = Some(p.join);
                    newly = true;
                }
            }
            l.catchup = Some((epoch, index + 1, began, origin));
        }
        if l.catchup.is_none() {
            self.catching.remove(&id);
        }
        if newly {
            self.check_started(id, now, out);
        }
    }

    /// When [`RelayChannel::poll`] next has work: a cached packet due to a
    /// listener catching up, or an SR.
    pub fn next_deadline(&self) -> Option<Instant> {
        let speed = self.cfg.catchup_speed.max(1);
        let spread = self.spread();
        let last = self.slots.iter().rposition(|ids| !ids.is_empty());
        let fanout = self
            .pending
            .iter()
            .filter(|f| last.is_some_and(|last| f.slot <= last))
            .map(|f| f.at + slot_offset(spread, f.slot))
            .min();
        let catchup = self
            .catching
            .iter()
            .filter_map(|id| {
                let (epoch, index, began, origin) = self.listeners.get(id)?.catchup?;
                let gop = [Some(&self.gop), self.previous.as_ref()]
                    .into_iter()
                    .flatten()
                    .find(|g| g.epoch == epoch)?;
                let p = gop.packets.get(index)?;
                let due = began + p.at.saturating_duration_since(origin) / speed;
                Some(self.catchup_paused.map_or(due, |until| due.max(until)))
            })
            .min();
        let report = self.reports.first().map(|&(at, _)| at);
        [fanout, catchup, report].into_iter().flatten().min()
    }

    /// Packets due to their next slots, cached packets and SRs due at
    /// `now`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        let behind = self.release(now, out);
        if behind > CATCHUP_YIELD {
            self.catchup_paused = Some(now + CATCHUP_PAUSE);
        }
        if self.catchup_paused.is_none_or(|until| until <= now) {
            self.catchup_paused = None;
            let ids: Vec<u64> = self.catching.iter().copied().collect();
            let mut budget = CATCHUP_PER_POLL;
            for id in ids {
                if budget == 0 {
                    break;
                }
                self.catch_up(id, now, out, &mut budget);
            }
        }
        while let Some(&(at, id)) = self.reports.first() {
            if at > now {
                break;
            }
            self.reports.pop_first();
            let next = now + SR_INTERVAL;
            if let Some(l) = self.listeners.get_mut(&id) {
                l.next_sr = next;
            }
            if let Some(l) = self.listeners.get(&id) {
                self.report_to(l, now, false, out);
                self.reports.insert((next, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtcp::{parse_compound, Packet};
    use std::collections::HashMap;

    const V: usize = 0;
    const A: usize = 1;

    fn channel(gop_cache: bool, t0: Instant) -> RelayChannel {
        spread_channel(gop_cache, t0, Duration::ZERO)
    }

    fn spread_channel(gop_cache: bool, t0: Instant, per_listener: Duration) -> RelayChannel {
        let track = |video: Option<VideoCodec>, rate, pt, ssrc| TrackSpec {
            video,
            clock_rate: rate,
            payload_type: pt,
            ssrc,
            first_seq: 65_530,
            first_timestamp: u32::MAX - 5000,
        };
        RelayChannel::new(
            vec![
                track(Some(VideoCodec::H264), 90_000, 96, 0xAAAA),
                track(None, 8000, 97, 0xBBBB),
            ],
            RelayConfig {
                max_payload: 1400,
                gop_cache,
                gop_cache_bytes: 1 << 20,
                catchup_speed: 4,
                max_delay: Duration::from_millis(500),
                spread_per_listener: per_listener,
                cname: "test".into(),
                clock: WallClock::new(t0, Duration::from_secs(1_700_000_000)),
            },
        )
    }

    /// A source packet: SSRC `ssrc`, `seq`, `ts`, marker, payload.
    fn src(ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        src_pt(96, ssrc, seq, ts, marker, payload)
    }

    fn src_pt(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        crate::proto::rtp::Header {
            ssrc,
            payload_type: pt,
            seq,
            timestamp: ts,
            marker,
        }
        .encode(payload)
        .to_vec()
    }

    fn udp(port: u16) -> Dest {
        Dest::Udp(([127, 0, 0, 1], port).into())
    }

    fn both() -> Vec<Option<(Dest, Dest)>> {
        vec![Some((udp(5000), udp(5001))), Some((udp(5002), udp(5003)))]
    }

    /// (seq, timestamp, marker, ssrc, payload) of an RTP transmit.
    fn fields(t: &Transmit) -> (u16, u32, bool, u32, Vec<u8>) {
        let r = rtp_rs::RtpReader::new(&t.data).expect("RTP");
        (
            u16::from(r.sequence_number()),
            r.timestamp(),
            r.mark(),
            r.ssrc(),
            r.payload().to_vec(),
        )
    }

    fn rtp_to(out: &[Transmit], port: u16) -> Vec<(u16, u32, bool, u32, Vec<u8>)> {
        out.iter()
            .filter(|t| !t.rtcp && t.dest == udp(port))
            .map(fields)
            .collect()
    }

    fn stap(units: &[&[u8]]) -> Vec<u8> {
        let mut b = vec![0x78];
        for u in units {
            b.extend_from_slice(&(u.len() as u16).to_be_bytes());
            b.extend_from_slice(u);
        }
        b
    }

    const P_SLICE: &[u8] = &[0x41, 1, 2, 3];
    const SPS: &[u8] = &[0x67, 0x42, 0, 0x1e];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn idr(len: usize) -> Vec<u8> {
        let mut v = vec![0x65];
        v.extend((1..len).map(|i| (i % 251) as u8));
        v
    }

    #[test]
    fn a_late_video_packet_drops_the_rest_of_its_gop_and_leaves_a_gap() {
        let t0 = Instant::now();
        let mut c = channel(false, t0);
        let mut out = Vec::new();
        c.subscribe(7, both(), t0, &mut out);
        c.push(V, &src(1, 10, 0, true, &idr(100)), t0, &mut out);
        c.push(A, &src_pt(97, 2, 50, 0, false, &[1; 160]), t0, &mut out);
        let late = t0 + Duration::from_millis(501);
        assert!(!c.is_late(t0, t0 + Duration::from_millis(500)));
        assert!(c.is_late(t0, late));
        // Packet 11 waited too long; 12 (same GOP) goes with it, audio
        // carries on, and video resumes at the next keyframe.
        c.drop_late(V);
        c.push(V, &src(1, 12, 6000, true, P_SLICE), late, &mut out);
        c.push(A, &src_pt(97, 2, 51, 160, false, &[2; 160]), late, &mut out);
        c.push(V, &src(1, 13, 9000, true, &idr(100)), late, &mut out);
        c.push(V, &src(1, 14, 12_000, true, P_SLICE), late, &mut out);
        assert_eq!(c.late, 2, "the late packet and the one after it");
        let video: Vec<(u16, Vec<u8>)> = rtp_to(&out, 5000)
            .into_iter()
            .map(|(seq, _, _, _, p)| (seq, p))
            .collect();
        let seqs: Vec<u16> = video.iter().map(|v| v.0).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            [first, first.wrapping_add(3), first.wrapping_add(4)],
            "11 and 12 are a gap listeners count as loss"
        );
        assert_eq!(video[1].1, idr(100), "resumed at the keyframe");
        assert_eq!(rtp_to(&out, 5002).len(), 2, "audio unaffected");
        // An audio packet dropped late does not hold anything back.
        c.drop_late(A);
        c.push(A, &src_pt(97, 2, 53, 480, false, &[3; 160]), late, &mut out);
        assert_eq!(rtp_to(&out, 5002).len(), 3);
    }

    #[test]
    fn a_late_joiner_starts_at_the_next_keyframe_and_started_names_its_packets() {
        let t0 = Instant::now();
        let mut c = channel(false, t0);
        let mut out = Vec::new();
        c.push(V, &src(1, 100, 9000, true, P_SLICE), t0, &mut out);
        c.subscribe(7, both(), t0, &mut out);
        c.push(V, &src(1, 101, 12_000, true, P_SLICE), t0, &mut out);
        c.push(
            A,
            &src_pt(97, 2, 500, 800, false, &[0xff; 160]),
            t0,
            &mut out,
        );
        assert!(out.is_empty(), "nothing before a keyframe: {out:?}");
        // The keyframe: SPS and PPS aggregated, then an IDR of 3000 bytes,
        // cut in three (max payload 1400).
        let t1 = t0 + Duration::from_millis(40);
        c.push(
            V,
            &src(1, 102, 15_000, false, &stap(&[SPS, PPS])),
            t1,
            &mut out,
        );
        c.push(V, &src(1, 103, 15_000, true, &idr(3000)), t1, &mut out);
        assert!(
            c.take_started().is_empty(),
            "the audio track has no first packet yet"
        );
        c.push(
            A,
            &src_pt(97, 2, 501, 960, false, &[0x7f; 160]),
            t1,
            &mut out,
        );
        let started = c.take_started();
        let video = rtp_to(&out, 5000);
        let audio = rtp_to(&out, 5002);
        assert_eq!(video.len(), 4, "STAP-A and three FU-A");
        assert_eq!(audio.len(), 1);
        assert_eq!(
            started,
            vec![Started {
                id: 7,
                first: vec![
                    Some(JoinInfo {
                        seq: video[0].0,
                        rtptime: video[0].1
                    }),
                    Some(JoinInfo {
                        seq: audio[0].0,
                        rtptime: audio[0].1
                    }),
                ],
            }]
        );
        // Our numbering: the SSRC is the channel's, sequence numbers run on
        // through the fragments, one timestamp, the marker on the last.
        let seqs: Vec<u16> = video.iter().map(|v| v.0).collect();
        assert_eq!(
            seqs,
            (0..4)
                .map(|k| 65_532u16.wrapping_add(k))
                .collect::<Vec<_>>()
        );
        assert!(video.iter().all(|v| v.3 == 0xAAAA && v.1 == video[0].1));
        assert_eq!(
            video.iter().map(|v| v.2).collect::<Vec<_>>(),
            [false, false, false, true]
        );
        assert_eq!(video[0].4, stap(&[SPS, PPS]), "payloads pass unchanged");
        // The IDR comes back whole from the fragments.
        let mut nal = vec![(video[1].4[0] & 0xE0) | (video[1].4[1] & 0x1F)];
        for v in &video[1..] {
            nal.extend_from_slice(&v.4[2..]);
        }
        assert_eq!(nal, idr(3000));
        // An SR to each track's RTCP port came with the start.
        let srs: Vec<Dest> = out.iter().filter(|t| t.rtcp).map(|t| t.dest).collect();
        assert_eq!(srs, [udp(5001), udp(5003)]);
        // The next source packet follows the fragments.
        out.clear();
        c.push(V, &src(1, 104, 18_000, true, P_SLICE), t1, &mut out);
        assert_eq!(rtp_to(&out, 5000)[0].0, 65_532u16.wrapping_add(4));
        assert!(!out.iter().any(|t| t.rtcp), "no SR until the interval");
    }

    #[test]
    fn a_new_source_continues_each_track() {
        let t0 = Instant::now();
        let mut c = channel(false, t0);
        let mut out = Vec::new();
        c.subscribe(1, vec![None, Some((udp(5002), udp(5003)))], t0, &mut out);
        c.push(A, &src_pt(97, 2, 10, 0, false, &[1; 160]), t0, &mut out);
        c.push(
            A,
            &src_pt(97, 2, 11, 160, false, &[2; 160]),
            t0 + Duration::from_millis(20),
            &mut out,
        );
        c.source_changed();
        let later = t0 + Duration::from_millis(1020);
        c.push(
            A,
            &src_pt(97, 9, 40_000, 77, false, &[3; 160]),
            later,
            &mut out,
        );
        let a = rtp_to(&out, 5002);
        assert_eq!(a.len(), 3, "an audio-only listener starts at once");
        assert_eq!(a[2].0, a[1].0.wrapping_add(1));
        assert_eq!(a[2].1, a[1].1.wrapping_add(8000), "one second later");
        assert!(a.iter().all(|p| p.3 == 0xBBBB));
        assert_eq!(a[2].4, [3; 160]);
    }

    #[test]
    fn with_the_gop_cache_a_newcomer_starts_at_once_then_goes_live() {
        let t0 = Instant::now();
        let mut c = channel(true, t0);
        let mut out = Vec::new();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        c.push(V, &src(1, 1, 0, true, P_SLICE), ms(0), &mut out);
        c.push(
            V,
            &src(1, 2, 3000, true, &stap(&[SPS, PPS, &idr(200)])),
            ms(40),
            &mut out,
        );
        for k in 0..10u16 {
            c.push(
                V,
                &src(1, 3 + k, 6000 + u32::from(k) * 3000, true, P_SLICE),
                ms(80 + 40 * u64::from(k)),
                &mut out,
            );
            c.push(
                A,
                &src_pt(97, 2, 50 + k, u32::from(k) * 320, false, &[9; 160]),
                ms(80 + 40 * u64::from(k)),
                &mut out,
            );
        }
        assert!(out.is_empty());
        // At 500 ms: the keyframe at once, the rest at four times the
        // speed it came (the cache spans 440 ms: 110 ms to send).
        c.subscribe(3, both(), ms(500), &mut out);
        let first = rtp_to(&out, 5000);
        assert_eq!(first.len(), 1, "the cached keyframe at once");
        assert_eq!(first[0].4, stap(&[SPS, PPS, &idr(200)]));
        assert_eq!(
            c.next_deadline(),
            Some(ms(510)),
            "the next cached packet, 40 ms / 4 later"
        );
        out.clear();
        c.poll(ms(560), &mut out);
        let started = c.take_started();
        assert_eq!(
            started.len(),
            1,
            "started once its audio came from the cache"
        );
        assert_eq!(started[0].first[V].map(|j| j.seq), Some(first[0].0));
        c.poll(ms(620), &mut out);
        let video = rtp_to(&out, 5000);
        assert_eq!(video.len(), 10, "the whole GOP by 110 ms after joining");
        // Live from here: the next packet goes straight out.
        out.clear();
        c.push(V, &src(1, 13, 36_000, true, P_SLICE), ms(640), &mut out);
        let live = rtp_to(&out, 5000);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, video[9].0.wrapping_add(1));
    }

    /// Video-only destinations of spread-test listener `i`.
    fn video_only(i: u16) -> Vec<Option<(Dest, Dest)>> {
        vec![Some((udp(6000 + 2 * i), udp(6001 + 2 * i))), None]
    }

    /// Polls `c` every millisecond from `from` up to (not including)
    /// `to`, recording each RTP transmit with the time it left.
    fn poll_each_ms(
        c: &mut RelayChannel,
        from: Instant,
        to: Instant,
        sent: &mut Vec<(Instant, Transmit)>,
    ) {
        let mut now = from;
        while now < to {
            let mut out = Vec::new();
            c.poll(now, &mut out);
            sent.extend(out.into_iter().filter(|t| !t.rtcp).map(|t| (now, t)));
            now += Duration::from_millis(1);
        }
    }

    /// A spread channel with `listeners` video-only listeners (ids and
    /// ports by index), set up before any packet.
    fn spread_with(
        gop_cache: bool,
        per_listener: Duration,
        listeners: u16,
    ) -> (Instant, RelayChannel) {
        let t0 = Instant::now();
        let mut c = spread_channel(gop_cache, t0, per_listener);
        let mut out = Vec::new();
        for i in 0..listeners {
            c.subscribe(u64::from(i), video_only(i), t0, &mut out);
        }
        assert!(out.is_empty());
        (t0, c)
    }

    #[test]
    fn each_listener_gets_every_packet_a_constant_time_after_it_came() {
        // 64 listeners at 500 us each: a 32 ms window, two per slot.
        let (t0, mut c) = spread_with(false, Duration::from_micros(500), 64);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut sent = Vec::new();
        // A keyframe re-fragmented into 4 packets, then two P-frames.
        let frames: [(u64, Vec<u8>); 3] = [
            (0, stap(&[SPS, PPS, &idr(5000)])),
            (40, P_SLICE.to_vec()),
            (80, P_SLICE.to_vec()),
        ];
        let mut arrival = HashMap::new();
        for (k, (at, payload)) in frames.iter().enumerate() {
            let k16 = k as u16;
            let mut out = Vec::new();
            c.push(
                V,
                &src(1, k16, 3000 * u32::from(k16), true, payload),
                ms(*at),
                &mut out,
            );
            for t in out.iter().filter(|t| !t.rtcp) {
                arrival.entry(fields(t).0).or_insert(ms(*at));
            }
            sent.extend(out.into_iter().filter(|t| !t.rtcp).map(|t| (ms(*at), t)));
            poll_each_ms(&mut c, ms(*at), ms(*at + 40), &mut sent);
        }
        assert!(arrival.len() > 4, "the keyframe is several packets");
        let mut offsets = Vec::new();
        for i in 0..64u16 {
            let mine: Vec<_> = sent
                .iter()
                .filter(|(_, t)| t.dest == udp(6000 + 2 * i))
                .collect();
            let seqs: Vec<u16> = mine.iter().map(|(_, t)| fields(t).0).collect();
            let mut want: Vec<u16> = arrival.keys().copied().collect();
            want.sort_by_key(|&s| s.wrapping_sub(65_530));
            assert_eq!(seqs, want, "listener {i}: each packet once, in order");
            let offset = |t: &Transmit| {
                let due = t.due.expect("an RTP deadline");
                due.duration_since(arrival[&fields(t).0])
            };
            let first = offset(&mine[0].1);
            for (left, t) in &mine {
                assert_eq!(
                    offset(t),
                    first,
                    "listener {i}: the keyframe as the P-frames"
                );
                let due = t.due.expect("an RTP deadline");
                assert!(*left >= due && *left - due < Duration::from_millis(1));
            }
            offsets.push(first);
        }
        offsets.sort();
        // Two listeners in each of the 32 slots, 1 ms apart.
        let want: Vec<Duration> = (0..64u32)
            .map(|i| Duration::from_millis(u64::from(i / 2)))
            .collect();
        assert_eq!(offsets, want);
    }

    #[test]
    fn a_newcomer_catching_up_late_in_the_window_gets_each_packet_once() {
        // 32 listeners at 1 ms each: a 32 ms window.
        let (t0, mut c) = spread_with(true, Duration::from_millis(1), 31);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut out = Vec::new();
        let mut sent = Vec::new();
        // Frame k comes at 10k ms, and the channel is polled until the next.
        let frames = |c: &mut RelayChannel, ks: std::ops::Range<u16>, sent: &mut Vec<_>| {
            for k in ks {
                let payload = if k == 0 {
                    stap(&[SPS, PPS, &idr(200)])
                } else {
                    P_SLICE.to_vec()
                };
                let at = 10 * u64::from(k);
                let mut out = Vec::new();
                let packet = src(1, k, 3000 * u32::from(k), true, &payload);
                c.push(V, &packet, ms(at), &mut out);
                sent.extend(out.into_iter().filter(|t| !t.rtcp).map(|t| (ms(at), t)));
                poll_each_ms(c, ms(at), ms(at + 10), sent);
            }
        };
        frames(&mut c, 0..10, &mut sent);
        // The newcomer takes the last slot: the cached GOP comes at four
        // times its speed while the same packets still wait for its slot.
        c.subscribe(99, video_only(99), ms(100), &mut out);
        sent.extend(out.drain(..).map(|t| (ms(100), t)));
        frames(&mut c, 10..20, &mut sent);
        poll_each_ms(&mut c, ms(200), ms(300), &mut sent);
        let seqs: Vec<u16> = sent
            .iter()
            .filter(|(_, t)| !t.rtcp && t.dest == udp(6000 + 2 * 99))
            .map(|(_, t)| fields(t).0)
            .collect();
        let want: Vec<u16> = (0..20u16).map(|k| 65_530u16.wrapping_add(k)).collect();
        assert_eq!(seqs, want, "the GOP from the cache, then live, none twice");
    }

    #[test]
    fn catching_up_waits_while_the_live_fan_out_runs_late() {
        // 32 listeners at 1 ms each: a 32 ms window.
        let (t0, mut c) = spread_with(true, Duration::from_millis(1), 31);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut out = Vec::new();
        c.push(
            V,
            &src(1, 0, 0, true, &stap(&[SPS, PPS, &idr(200)])),
            ms(0),
            &mut out,
        );
        poll_each_ms(&mut c, ms(0), ms(40), &mut Vec::new());
        for k in 1..5u16 {
            c.push(
                V,
                &src(1, k, 3000 * u32::from(k), true, P_SLICE),
                ms(40),
                &mut out,
            );
        }
        // A newcomer catches up from the cache (its keyframe at once).
        out.clear();
        c.subscribe(99, video_only(99), ms(40), &mut out);
        assert_eq!(rtp_to(&out, 6000 + 2 * 99).len(), 1);
        // The loop comes back 20 ms late for the live slots: only they go.
        out.clear();
        c.poll(ms(80), &mut out);
        assert!(
            rtp_to(&out, 6000 + 2 * 30).len() == 4,
            "live listeners first"
        );
        assert!(rtp_to(&out, 6000 + 2 * 99).is_empty(), "the newcomer waits");
        assert!(c.next_deadline().is_some_and(|d| d >= ms(82)));
        // Once the live fan-out is on time, catching up goes on.
        out.clear();
        c.poll(ms(83), &mut out);
        assert_eq!(rtp_to(&out, 6000 + 2 * 99).len(), 4, "the rest of its GOP");
    }

    #[test]
    fn sender_reports_keep_the_sources_av_offset() {
        let t0 = Instant::now();
        let mut c = channel(false, t0);
        let mut out = Vec::new();
        c.subscribe(5, vec![None, Some((udp(5002), udp(5003)))], t0, &mut out);
        c.push(V, &src(1, 1, 90_000, true, P_SLICE), t0, &mut out);
        c.push(A, &src_pt(97, 2, 1, 8000, false, &[0; 160]), t0, &mut out);
        // The source says video ts 90 000 and audio ts 8000 are both NTP
        // second 100 (the same instant) — though they arrived 30 ms apart.
        let ntp = NtpTimestamp(100 << 32);
        c.source_report(V, 1, ntp, 90_000, t0);
        c.source_report(A, 2, ntp, 8000, t0 + Duration::from_millis(30));
        let now = t0 + Duration::from_secs(2);
        let (v, a) = (&c.tracks[V], &c.tracks[A]);
        let (nv, tv) = v.clock_at(now, &c.cfg.clock).expect("video clock");
        let (na, ta) = a.clock_at(now, &c.cfg.clock).expect("audio clock");
        let v0 = v.restamper.map_timestamp(1, 90_000).expect("mapped");
        let a0 = a.restamper.map_timestamp(2, 8000).expect("mapped");
        // Each track: its media time since the SR equals the NTP time since.
        let secs = |n: NtpTimestamp| (n.0 as f64 - ntp.0 as f64) / 4_294_967_296.0;
        let v_media = f64::from(tv.wrapping_sub(v0)) / 90_000.0;
        let a_media = f64::from(ta.wrapping_sub(a0)) / 8000.0;
        assert!(
            (v_media - secs(nv)).abs() < 1e-3,
            "{v_media} vs {}",
            secs(nv)
        );
        assert!(
            (a_media - secs(na)).abs() < 1e-3,
            "{a_media} vs {}",
            secs(na)
        );
        // And the SR the listener gets says so.
        c.poll(t0 + SR_INTERVAL, &mut out);
        let sr = out.iter().rev().find(|t| t.rtcp).expect("an SR");
        let Packet::SenderReport { info, .. } = &parse_compound(&sr.data).expect("SR")[0] else {
            panic!("an SR first")
        };
        let media = f64::from(info.rtp_time.wrapping_sub(a0)) / 8000.0;
        assert!((media - secs(info.ntp)).abs() < 1e-3);
    }

    #[test]
    fn junk_and_unknown_tracks_are_counted() {
        let t0 = Instant::now();
        let mut c = channel(true, t0);
        let mut out = Vec::new();
        c.push(V, &[1, 2, 3], t0, &mut out);
        c.push(9, &src(1, 1, 0, true, P_SLICE), t0, &mut out);
        c.push(V, &src_pt(97, 1, 1, 0, true, P_SLICE), t0, &mut out);
        assert_eq!(c.rejected, 3);
        assert!(out.is_empty());
    }
}
