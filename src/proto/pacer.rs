//! The pacer: one schedule for every playing track of every session
//! (RFC 3550 §5.1 timing, §6.4.1 sender reports).
//!
//! Shaped like quinn-proto: the owner feeds commands ([`Pacer::play`],
//! [`Pacer::pause`], ...) and then drains [`Pacer::poll_transmit`] for every
//! packet due at `now`, sleeping until [`Pacer::poll_timeout`]. There is no
//! timer or task per packet or per session, so one loop can collect every
//! packet due in a tick and send them in a batch.
//!
//! Timing: a packet's deadline is `anchor + (due - base)`, where the anchor
//! is the wallclock instant of the PLAY that started the run, `base` is the
//! media time that run started at (the same instant on every track, which is
//! what A/V sync needs), and `due` is when the packet's media is due: its
//! presentation time for audio, its decode time for video. Deadlines are
//! absolute, so lateness never accumulates into drift.
//!
//! RTP timestamps and sequence numbers of a track are continuous for the
//! whole session: after PAUSE or a seek the next packet carries the next
//! sequence number and the timestamp where the previous run stopped, and the
//! PLAY reply's RTP-Info maps that timestamp to the new position.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::clock::{duration_to_ticks, secs_to_ticks, ticks_to_duration, ticks_to_secs, WallClock};
use super::error::Error;
use super::packetize::{Cursor, Packetizer};
use super::sender::Sender;
use super::session::{Dest, PlayRequest};

/// Identifies one session's group of tracks.
pub type GroupId = u64;

/// Default interval between periodic sender reports.
pub const SR_INTERVAL: Duration = Duration::from_secs(5);

/// How a new track is set up.
#[derive(Debug, Clone)]
pub struct TrackConfig {
    pub packetizer: Packetizer,
    pub ssrc: u32,
    pub payload_type: u8,
    pub first_seq: u16,
    pub first_rtptime: u32,
    pub rtp_dest: Dest,
    pub rtcp_dest: Dest,
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Dest,
    pub data: Bytes,
    /// Sent from the RTCP socket rather than the RTP one.
    pub rtcp: bool,
    /// The session (pacer group, or live listener) an RTP packet is for;
    /// 0 for RTCP.
    pub group: GroupId,
    /// An RTP packet's send deadline, for the lateness the server reports.
    pub due: Option<Instant>,
    /// May leave in one segmented (GSO) message with the others of its
    /// batch to the same destination: a relay channel's fan-out.
    pub segmentable: bool,
}

impl Transmit {
    /// An RTP packet for `group`, due at `due`.
    pub fn rtp(dest: Dest, data: Bytes, group: GroupId, due: Instant) -> Self {
        Self {
            dest,
            data,
            rtcp: false,
            group,
            due: Some(due),
            segmentable: false,
        }
    }

    /// The same, marked [`Transmit::segmentable`].
    pub fn segmentable(mut self) -> Self {
        self.segmentable = true;
        self
    }

    /// An RTCP packet.
    pub fn rtcp(dest: Dest, data: Bytes) -> Self {
        Self {
            dest,
            data,
            rtcp: true,
            group: 0,
            due: None,
            segmentable: false,
        }
    }
}

/// Where each track of a PLAY starts.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayInfo {
    /// The actual start position (npt seconds).
    pub start: f64,
    pub end: f64,
    /// `(track, seq, rtptime)` of each track's first packet.
    pub tracks: Vec<(usize, u16, u32)>,
}

/// Things the owner must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Every track of the group reached the end of PLAY number `run`
    /// ([`PlayRequest::run`]); the session is Ready again unless it has
    /// started another run since.
    Ended { group: GroupId, run: u32 },
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    pub rtp_packets: u64,
    pub rtp_bytes: u64,
    pub rtcp_packets: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Rtp,
    Report,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    order: u64,
    group: GroupId,
    track: usize,
    due: Due,
    generation: u32,
}

#[derive(Debug)]
struct Track {
    pkt: Packetizer,
    sender: Sender,
    rtp_dest: Dest,
    rtcp_dest: Dest,
    /// Where the next packet starts.
    pos: Cursor,
    /// Media time (ticks) the run stops at.
    end: u64,
    /// Media time (ticks) of the run's start, common to every track of the
    /// group: the anchor's instant on this track's timeline.
    base: u64,
    /// rtptime = ts_offset + pts (mod 2^32) for the current run.
    ts_offset: u32,
    /// The latest RTP timestamp sent (serial order), so that the next run
    /// starts after it whatever order the media came in.
    sent_high: Option<u32>,
    first_of_run: bool,
    done: bool,
}

impl Track {
    /// Where the next run's timestamps start: where this one stopped, and
    /// always after every timestamp already sent (after B-frames, or a
    /// run that began with frames stamped before zero).
    fn next_rtptime(&self) -> u32 {
        // A track that played to the end of its run stopped at the run's
        // end, even when its own media ended sooner (the shorter track of
        // a clip) or had frames past it (AAC's last frame beyond an edit
        // list's end, left unsent): every track of the group moves on by
        // the same media time, so a loop keeps them in sync and in time
        // (RFC 3550 §5.1: timestamps follow the sampling clock).
        let stamp = if self.done {
            self.end
        } else {
            self.pkt.stamp(self.pos)
        };
        let next = self.ts_offset.wrapping_add(stamp as u32);
        match self.sent_high {
            Some(h) if next.wrapping_sub(h) as i32 <= 0 => h.wrapping_add(1),
            _ => next,
        }
    }

    /// When what starts at `cursor` is sent.
    fn deadline(&self, anchor: Instant, cursor: Cursor) -> Instant {
        let due = self.pkt.due(cursor);
        anchor + ticks_to_duration(due.saturating_sub(self.base), self.pkt.clock_rate())
    }

    /// Media position (npt seconds) of the next packet.
    fn npt(&self) -> f64 {
        ticks_to_secs(self.pkt.pts(self.pos), self.pkt.clock_rate())
    }
}

#[derive(Debug, Default)]
struct Group {
    tracks: BTreeMap<usize, Track>,
    playing: bool,
    /// Bumped at every play, pause and end: heap entries of older
    /// generations are skipped.
    generation: u32,
    /// The session's run number of the current PLAY, echoed in
    /// [`Event::Ended`].
    run: u32,
    anchor: Option<Instant>,
    resume_npt: f64,
}

impl Group {
    /// Where a PLAY without Range resumes: the earliest next packet of the
    /// tracks still sending; the end (so a replay from the top) when none
    /// is.
    fn resume_point(&self) -> f64 {
        let open = self.tracks.values().filter(|t| !t.done).map(Track::npt);
        open.reduce(f64::min).unwrap_or_else(|| self.duration())
    }

    fn duration(&self) -> f64 {
        self.tracks
            .values()
            .map(|t| ticks_to_secs(t.pkt.duration_ticks(), t.pkt.clock_rate()))
            .fold(0.0, f64::max)
    }
}

/// The schedule of every playing track.
#[derive(Debug)]
pub struct Pacer {
    groups: HashMap<GroupId, Group>,
    heap: BinaryHeap<Reverse<Entry>>,
    order: u64,
    pending: VecDeque<Transmit>,
    events: VecDeque<Event>,
    clock: WallClock,
    cname: String,
    sr_interval: Duration,
    stats: PacerStats,
}

impl Pacer {
    pub fn new(clock: WallClock, cname: String) -> Self {
        Self {
            groups: HashMap::new(),
            heap: BinaryHeap::new(),
            order: 0,
            pending: VecDeque::new(),
            events: VecDeque::new(),
            clock,
            cname,
            sr_interval: SR_INTERVAL,
            stats: PacerStats::default(),
        }
    }

    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Adds a track to a group (SETUP). A repeated SETUP only moves the
    /// destination, keeping the one sender and its numbering.
    pub fn add_track(&mut self, group: GroupId, track: usize, cfg: TrackConfig) {
        let g = self.groups.entry(group).or_default();
        if let Some(t) = g.tracks.get_mut(&track) {
            t.rtp_dest = cfg.rtp_dest;
            t.rtcp_dest = cfg.rtcp_dest;
            return;
        }
        g.tracks.insert(
            track,
            Track {
                pkt: cfg.packetizer,
                sender: Sender::new(cfg.ssrc, cfg.payload_type, cfg.first_seq),
                rtp_dest: cfg.rtp_dest,
                rtcp_dest: cfg.rtcp_dest,
                pos: 0,
                end: 0,
                base: 0,
                ts_offset: cfg.first_rtptime,
                sent_high: None,
                first_of_run: true,
                done: true,
            },
        );
    }

    /// Starts (or restarts, for a seek) every track of `group` at `now`.
    pub fn play(
        &mut self,
        group: GroupId,
        req: PlayRequest,
        now: Instant,
    ) -> Result<PlayInfo, Error> {
        let g = self.groups.get_mut(&group).ok_or(Error::SessionNotFound)?;
        let duration = g.duration();
        let mut start = req.start.unwrap_or(g.resume_npt);
        if start >= duration {
            start = 0.0;
        }
        // Video starts at a keyframe at or before `start`; every track then
        // starts at that same media time. A track that has nothing left at
        // `start` (the shorter one) does not move it.
        let actual = g
            .tracks
            .values()
            .filter_map(|t| {
                let rate = t.pkt.clock_rate();
                let cursor = t.pkt.seek(secs_to_ticks(start, rate).unwrap_or(0));
                (!t.pkt.is_past_end(cursor)).then(|| ticks_to_secs(t.pkt.pts(cursor), rate))
            })
            .fold(start, f64::min);
        let end = req.end.unwrap_or(duration).clamp(actual, duration);
        g.generation = g.generation.wrapping_add(1);
        g.run = req.run;
        g.playing = true;
        g.anchor = Some(now);
        let mut info = PlayInfo {
            start: actual,
            end,
            tracks: Vec::new(),
        };
        for (&id, t) in &mut g.tracks {
            let rate = t.pkt.clock_rate();
            let next_rtp = t.next_rtptime();
            t.base = secs_to_ticks(actual, rate).unwrap_or(0);
            t.pos = t.pkt.seek(t.base);
            t.end = secs_to_ticks(end, rate).unwrap_or(0);
            // RTP-Info's rtptime is the first packet's timestamp.
            t.ts_offset = next_rtp.wrapping_sub(t.pkt.stamp(t.pos) as u32);
            t.first_of_run = true;
            t.done = false;
            info.tracks.push((id, t.sender.next_seq(), next_rtp));
            // Players such as ffmpeg sync only once they have an SR: send one
            // now, ahead of the first packet.
            self.pending
                .push_back(sender_report(&self.clock, &self.cname, t, now, now, false));
            self.stats.rtcp_packets += 1;
        }
        let gen = g.generation;
        let ids: Vec<usize> = g.tracks.keys().copied().collect();
        for id in ids {
            self.schedule(now, group, id, Due::Rtp, gen);
            self.schedule(now + self.sr_interval, group, id, Due::Report, gen);
        }
        Ok(info)
    }

    /// Stops sending; the position is kept for a PLAY without Range.
    /// Returns the position (npt seconds).
    pub fn pause(&mut self, group: GroupId) -> Option<f64> {
        let g = self.groups.get_mut(&group)?;
        if g.playing {
            g.playing = false;
            g.generation = g.generation.wrapping_add(1);
            g.resume_npt = g.resume_point();
        }
        Some(g.resume_npt)
    }

    /// Removes a whole group (TEARDOWN, timeout), saying BYE on every track.
    pub fn remove(&mut self, group: GroupId, now: Instant) {
        if let Some(g) = self.groups.remove(&group) {
            for t in g.tracks.values() {
                self.pending.push_back(sender_report(
                    &self.clock,
                    &self.cname,
                    t,
                    now,
                    g.anchor.unwrap_or(now),
                    true,
                ));
                self.stats.rtcp_packets += 1;
            }
        }
    }

    /// Removes every group, saying BYE on every track (shutdown).
    pub fn remove_all(&mut self, now: Instant) {
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        for g in groups {
            self.remove(g, now);
        }
    }

    /// Removes one track of a group (single-track TEARDOWN).
    pub fn remove_track(&mut self, group: GroupId, track: usize, now: Instant) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if let Some(t) = g.tracks.remove(&track) {
            self.pending.push_back(sender_report(
                &self.clock,
                &self.cname,
                &t,
                now,
                g.anchor.unwrap_or(now),
                true,
            ));
            self.stats.rtcp_packets += 1;
        }
    }

    /// The next event for the owner, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Pacer::poll_transmit`] next has something scheduled. Commands
    /// may queue datagrams to send at once (SR at PLAY, BYE at TEARDOWN): the
    /// owner drains `poll_transmit` after every command as well.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// The next datagram due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.pending.pop_front() {
            return Some(t);
        }
        loop {
            let Reverse(top) = self.heap.peek()?;
            if top.at > now {
                return None;
            }
            let Reverse(e) = self.heap.pop()?;
            let Some(g) = self.groups.get_mut(&e.group) else {
                continue;
            };
            if e.generation != g.generation || !g.playing {
                continue;
            }
            let anchor = g.anchor.unwrap_or(now);
            let Some(t) = g.tracks.get_mut(&e.track) else {
                continue;
            };
            match e.due {
                // A track that said BYE sends no more reports this run.
                Due::Report if t.done => continue,
                Due::Report => {
                    let sr = sender_report(&self.clock, &self.cname, t, now, anchor, false);
                    self.stats.rtcp_packets += 1;
                    self.schedule(
                        e.at + self.sr_interval,
                        e.group,
                        e.track,
                        Due::Report,
                        e.generation,
                    );
                    return Some(sr);
                }
                Due::Rtp => match t.pkt.chunk(t.pos, t.end) {
                    Some(c) => {
                        let ts = t.ts_offset.wrapping_add(c.pts as u32);
                        let talkspurt = t.first_of_run && t.pkt.marks_talkspurt();
                        let data = t.sender.packet(ts, c.marker || talkspurt, &c.payload);
                        if t.sent_high.is_none_or(|h| ts.wrapping_sub(h) as i32 > 0) {
                            t.sent_high = Some(ts);
                        }
                        t.first_of_run = false;
                        t.pos = c.next;
                        self.stats.rtp_packets += 1;
                        self.stats.rtp_bytes += data.len() as u64;
                        let dest = t.rtp_dest;
                        let next_at = t.deadline(anchor, c.next);
                        self.schedule(next_at, e.group, e.track, Due::Rtp, e.generation);
                        return Some(Transmit::rtp(dest, data, e.group, e.at));
                    }
                    None => {
                        t.done = true;
                        let bye = sender_report(&self.clock, &self.cname, t, now, anchor, true);
                        self.stats.rtcp_packets += 1;
                        if g.tracks.values().all(|t| t.done) {
                            g.playing = false;
                            g.generation = g.generation.wrapping_add(1);
                            g.resume_npt = g.resume_point();
                            self.events.push_back(Event::Ended {
                                group: e.group,
                                run: g.run,
                            });
                        }
                        return Some(bye);
                    }
                },
            }
        }
    }

    fn schedule(&mut self, at: Instant, group: GroupId, track: usize, due: Due, generation: u32) {
        self.order += 1;
        self.heap.push(Reverse(Entry {
            at,
            order: self.order,
            group,
            track,
            due,
            generation,
        }));
    }
}

/// An SR (with SDES, and BYE when `bye`) for `t` at `now`. The RTP time is
/// the media position the run has reached at `now` (`base` plus the time
/// since the anchor), so (NTP, RTP) name the same instant on the track's
/// timeline, and every track of a group maps to one NTP timeline.
fn sender_report(
    clock: &WallClock,
    cname: &str,
    t: &Track,
    now: Instant,
    anchor: Instant,
    bye: bool,
) -> Transmit {
    let elapsed = duration_to_ticks(now.saturating_duration_since(anchor), t.pkt.clock_rate());
    let rtp_time = t
        .ts_offset
        .wrapping_add(t.base.wrapping_add(elapsed) as u32);
    Transmit::rtcp(
        t.rtcp_dest,
        t.sender.report(clock.ntp(now), rtp_time, cname, bye),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::L16;
    use crate::proto::rtcp::{parse_compound, Packet};

    const RATE: u32 = 8000;

    /// 5 s of 8 kHz mono whose sample i is (i as u16).
    fn clip() -> Packetizer {
        let data: Vec<u8> = (0..5 * RATE)
            .flat_map(|i| (i as u16).to_be_bytes())
            .collect();
        Packetizer::L16(L16::new(
            Bytes::from(data),
            RATE,
            1,
            Duration::from_millis(20),
            1400,
        ))
    }

    fn setup(t0: Instant) -> Pacer {
        let mut p = Pacer::new(
            WallClock::new(t0, Duration::from_secs(1_700_000_000)),
            "test".into(),
        );
        p.add_track(
            1,
            0,
            TrackConfig {
                packetizer: clip(),
                ssrc: 0xabcd,
                payload_type: 96,
                first_seq: 65_530,
                first_rtptime: u32::MAX - 100,
                rtp_dest: Dest::Udp("127.0.0.1:5000".parse().unwrap()),
                rtcp_dest: Dest::Udp("127.0.0.1:5001".parse().unwrap()),
            },
        );
        p
    }

    /// Group 1: track 0 lasts 2 s (RTP time from 1), track 1 is the 5 s
    /// clip (RTP time from 0xabcd's `first_rtptime`, 1 too).
    fn short_and_long(t0: Instant) -> Pacer {
        let mut p = Pacer::new(
            WallClock::new(t0, Duration::from_secs(1_700_000_000)),
            "test".into(),
        );
        // Track 0 lasts 2 s, track 1 is the 5 s clip.
        let short: Vec<u8> = vec![0; 2 * 2 * RATE as usize];
        let cfg = TrackConfig {
            packetizer: Packetizer::L16(L16::new(
                Bytes::from(short),
                RATE,
                1,
                Duration::from_millis(20),
                1400,
            )),
            ssrc: 0x1234,
            payload_type: 96,
            first_seq: 1,
            first_rtptime: 1,
            rtp_dest: Dest::Udp("127.0.0.1:5002".parse().unwrap()),
            rtcp_dest: Dest::Udp("127.0.0.1:5003".parse().unwrap()),
        };
        let long = TrackConfig {
            packetizer: clip(),
            ssrc: 0xabcd,
            rtp_dest: Dest::Udp("127.0.0.1:5000".parse().unwrap()),
            rtcp_dest: Dest::Udp("127.0.0.1:5001".parse().unwrap()),
            ..cfg.clone()
        };
        p.add_track(1, 0, cfg);
        p.add_track(1, 1, long);
        p
    }

    #[test]
    fn the_shorter_track_neither_moves_a_seek_nor_the_resume_point() {
        let t0 = Instant::now();
        let mut p = short_and_long(t0);
        let info = play(&mut p, Some(3.0), t0);
        assert_eq!(info.start, 3.0, "a seek past the short track's end");
        // After the short track has ended, PAUSE keeps the long one's place.
        let later = t0 + Duration::from_millis(500);
        drain(&mut p, later);
        let at = p.pause(1).unwrap();
        assert!((3.4..=3.6).contains(&at), "resumes at {at}");
    }

    #[test]
    fn a_loop_moves_every_track_on_by_the_clips_length() {
        let t0 = Instant::now();
        let mut p = short_and_long(t0);
        play(&mut p, None, t0);
        let mut last = [0u32; 2];
        while let Some(at) = p.poll_timeout() {
            for r in drain(&mut p, at).0 {
                let track = usize::from(r.ssrc() == 0xabcd);
                last[track] = r.timestamp();
            }
        }
        assert_eq!(p.poll_event(), Some(Event::Ended { group: 1, run: 1 }));
        // The next loop starts when the clip's 5 s are over.
        let again = t0 + Duration::from_secs(5);
        let info = p
            .play(
                1,
                PlayRequest {
                    start: Some(0.0),
                    end: None,
                    run: 2,
                },
                again,
            )
            .unwrap();
        let mut tracks = info.tracks;
        tracks.sort_unstable();
        let first: Vec<u32> = tracks.iter().map(|&(_, _, ts)| ts).collect();
        // Both tracks 5 s (40,000 ticks) on from where they began, the one
        // that ended after 2 s too: no step between them.
        assert_eq!(first, vec![1 + 5 * RATE, 1 + 5 * RATE]);
        assert!(last[0] < 1 + 2 * RATE && last[1] < 1 + 5 * RATE);
    }

    fn play(p: &mut Pacer, start: Option<f64>, now: Instant) -> PlayInfo {
        p.play(
            1,
            PlayRequest {
                start,
                end: None,
                run: 1,
            },
            now,
        )
        .unwrap()
    }

    /// Every datagram due at `now`, split into RTP packets and RTCP.
    fn drain(p: &mut Pacer, now: Instant) -> (Vec<rtp_rs::RtpReader<'static>>, Vec<Vec<Packet>>) {
        let (mut rtp, mut rtcp) = (Vec::new(), Vec::new());
        while let Some(t) = p.poll_transmit(now) {
            let data: &'static [u8] = Box::leak(t.data.to_vec().into_boxed_slice());
            if t.rtcp {
                rtcp.push(parse_compound(data).unwrap());
            } else {
                rtp.push(rtp_rs::RtpReader::new(data).unwrap());
            }
        }
        (rtp, rtcp)
    }

    fn sample0(r: &rtp_rs::RtpReader<'_>) -> u16 {
        u16::from_be_bytes([r.payload()[0], r.payload()[1]])
    }

    #[test]
    fn first_packet_matches_rtp_info_and_sr_comes_first() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        let info = play(&mut p, None, t0);
        assert_eq!(info.tracks, vec![(0, 65_530, u32::MAX - 100)]);
        assert_eq!((info.start, info.end), (0.0, 5.0));
        let first = p.poll_transmit(t0).unwrap();
        assert!(first.rtcp, "the SR goes out before the first RTP packet");
        let (rtp, _) = drain(&mut p, t0);
        assert_eq!(rtp.len(), 1, "only the first packet is due at once");
        assert_eq!(u16::from(rtp[0].sequence_number()), 65_530);
        assert_eq!(rtp[0].timestamp(), u32::MAX - 100);
        assert!(rtp[0].mark(), "marker on the first packet of a run");
        // The next is due exactly 20 ms later, not before.
        assert!(drain(&mut p, t0 + Duration::from_micros(19_999))
            .0
            .is_empty());
        let (rtp, _) = drain(&mut p, t0 + Duration::from_millis(20));
        assert_eq!(u16::from(rtp[0].sequence_number()), 65_531);
        assert_eq!(rtp[0].timestamp(), (u32::MAX - 100).wrapping_add(160));
        assert_eq!(sample0(&rtp[0]), 160);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(40)));
    }

    #[test]
    fn deadlines_do_not_drift_and_packets_tile_the_clip() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        play(&mut p, None, t0);
        let mut n = 0u32;
        let mut byes = 0;
        // Poll late every time (a busy loop): still exactly one packet per 20 ms.
        while let Some(at) = p.poll_timeout() {
            let (rtp, rtcp) = drain(&mut p, at + Duration::from_micros(700));
            for r in &rtp {
                assert_eq!(sample0(r), (n * 160) as u16);
                n += 1;
            }
            byes += rtcp
                .iter()
                .filter(|c| c.iter().any(|x| matches!(x, Packet::Goodbye { .. })))
                .count();
        }
        assert_eq!(n, 250, "5 s at 50 packets/s");
        assert_eq!(byes, 1, "one BYE at the end of the clip");
        assert_eq!(p.poll_event(), Some(Event::Ended { group: 1, run: 1 }));
    }

    #[test]
    fn seek_starts_at_the_exact_sample() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        let info = play(&mut p, Some(2.5), t0);
        assert_eq!(info.start, 2.5);
        let (rtp, _) = drain(&mut p, t0);
        assert_eq!(sample0(&rtp[0]), 20_000);
        assert_eq!(rtp[0].timestamp(), info.tracks[0].2);
    }

    #[test]
    fn pause_and_resume_continue_seq_and_timestamps() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        play(&mut p, None, t0);
        let mut last = None;
        for k in 0..5 {
            let (rtp, _) = drain(&mut p, t0 + Duration::from_millis(20 * k));
            last = rtp
                .last()
                .map(|r| (u16::from(r.sequence_number()), r.timestamp()));
        }
        let (seq, ts) = last.unwrap();
        assert_eq!(p.pause(1), Some(0.1));
        assert!(
            drain(&mut p, t0 + Duration::from_secs(3)).0.is_empty(),
            "nothing while paused"
        );
        let t1 = t0 + Duration::from_secs(10);
        let info = play(&mut p, None, t1);
        assert_eq!(info.start, 0.1);
        assert_eq!(info.tracks[0].1, seq.wrapping_add(1));
        assert_eq!(
            info.tracks[0].2,
            ts.wrapping_add(160),
            "no jump beyond the paused media time"
        );
        let (rtp, _) = drain(&mut p, t1);
        assert_eq!(u16::from(rtp[0].sequence_number()), seq.wrapping_add(1));
        assert_eq!(sample0(&rtp[0]), 800);
    }

    #[test]
    fn sender_reports_map_ntp_to_rtp_on_one_timeline() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        let info = play(&mut p, None, t0);
        let sr_at = |c: &Vec<Packet>| match &c[0] {
            Packet::SenderReport { info, .. } => Some(*info),
            _ => None,
        };
        let (_, rtcp) = drain(&mut p, t0);
        let first = sr_at(&rtcp[0]).unwrap();
        assert_eq!(first.rtp_time, info.tracks[0].2);
        let mut later = None;
        let mut t = t0;
        while later.is_none() {
            t += Duration::from_millis(20);
            let (_, rtcp) = drain(&mut p, t);
            later = rtcp.first().and_then(sr_at);
        }
        let later = later.unwrap();
        let dt = later.ntp.to_unix() - first.ntp.to_unix();
        assert_eq!(dt, Duration::from_secs(5));
        assert_eq!(later.rtp_time.wrapping_sub(first.rtp_time), 5 * RATE);
        assert_eq!(later.packet_count, 250);
        assert_eq!(later.octet_count, 250 * 320);
    }

    #[test]
    fn teardown_says_bye_and_forgets() {
        let t0 = Instant::now();
        let mut p = setup(t0);
        play(&mut p, None, t0);
        drain(&mut p, t0);
        p.remove(1, t0);
        let (rtp, rtcp) = drain(&mut p, t0 + Duration::from_secs(1));
        assert!(rtp.is_empty());
        assert!(matches!(rtcp[0].last(), Some(Packet::Goodbye { .. })));
        assert_eq!(p.group_count(), 0);
        assert!(p
            .play(
                1,
                PlayRequest {
                    start: None,
                    end: None,
                    run: 2,
                },
                t0
            )
            .is_err());
    }

    /// Issue 10, defect 1: a PLAY accepted just before the previous run's
    /// end is reported. The session (handler side) and the pacer (pacing
    /// thread) are driven in the order the race produced; the stale end
    /// must not put the session back in Ready, or the PAUSE that follows
    /// would not stop the pacer.
    #[test]
    fn a_stale_end_does_not_undo_a_play_that_raced_it() {
        use crate::proto::rtsp::range::{NptRange, NptTime};
        use crate::proto::session::{Scope, Session, State, TrackTransport};

        let t0 = Instant::now();
        let mut p = setup(t0);
        let mut s = Session::new(
            "s".into(),
            "127.0.0.1".parse().unwrap(),
            "a.wav".into(),
            Duration::from_secs(60),
            t0,
        );
        let tt = TrackTransport {
            rtp: Dest::Udp("127.0.0.1:5000".parse().unwrap()),
            rtcp: Dest::Udp("127.0.0.1:5001".parse().unwrap()),
        };
        s.setup("a.wav", 0, tt).unwrap();
        let first = s.play(Scope::Aggregate, None, Some(5.0)).unwrap();
        p.play(1, first, t0).unwrap();
        // The clip (5 s) runs to its end; the last packet leaves at 4.98 s.
        let end = t0 + Duration::from_millis(4_980);
        let mut at = t0;
        while at < end {
            drain(&mut p, at);
            at += Duration::from_millis(20);
        }
        // The client's second PLAY (npt=0-) is accepted by the session ...
        let from0 = NptRange {
            start: NptTime::Seconds(0.0),
            end: None,
        };
        let second = s.play(Scope::Aggregate, Some(&from0), Some(5.0)).unwrap();
        // ... while the pacing thread reaches the end of the first run and
        // reports it, before it applies the second PLAY.
        drain(&mut p, t0 + Duration::from_secs(5));
        let Some(Event::Ended { run, .. }) = p.poll_event() else {
            panic!("the first run ended");
        };
        assert!(!s.ended(run), "the end of run {run} is stale");
        assert_eq!(s.state(), State::Playing);
        let t1 = t0 + Duration::from_millis(5_001);
        p.play(1, second, t1).unwrap();
        drain(&mut p, t1);
        // PAUSE 300 ms later must reach the pacer, and nothing follows it.
        let t2 = t1 + Duration::from_millis(300);
        drain(&mut p, t2);
        assert_eq!(s.pause(Scope::Aggregate), Ok(true), "PAUSE stops streams");
        p.pause(1);
        let (rtp, _) = drain(&mut p, t2 + Duration::from_secs(2));
        assert!(rtp.is_empty(), "{} packets after PAUSE", rtp.len());
        assert_eq!(p.poll_event(), None);
    }
}
