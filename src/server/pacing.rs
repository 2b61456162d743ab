//! The pacing thread: the one loop that owns every sender (the on-demand
//! [`Pacer`] and the live [`Channel`]s), applies the control plane's
//! commands, and sends every due datagram from the shared UDP pair
//! (RFC 3550 §6.2 timing for the SRs it emits) or onto RTSP connections
//! (RFC 2326 §10.12 interleaved frames).
//!
//! Three bounded queues connect it to the rest of the server, so that
//! nothing the control plane does can make it late:
//! - [`PacerHandle`] carries commands (SETUP, PLAY, PAUSE, ...) in;
//! - [`DataHandle`] carries media in: publishers' RTP packets (dropped and
//!   counted when the queue is full, never waited for) and PCM from pipe
//!   and stdin sources (whose reader threads block until there is room);
//! - [`Events`] carries ends of runs out, to the session table. The thread
//!   never takes the session table's lock.
//!
//! Every datagram due in one wake-up goes out in `sendmmsg` batches
//! ([`crate::net::mmsg`]); a relay channel's to one listener go as one
//! segmented message where the kernel offers UDP GSO ([`crate::net::gso`],
//! [`Transmit::segmentable`]). Sends
//! are non-blocking: a full socket buffer
//! (`EAGAIN`, `ENOBUFS`) drops that one datagram for that one client, and
//! ICMP-driven errors such as `ECONNREFUSED` are counted and ignored, so no
//! client can stall or kill the loop (ROBUSTNESS B11 #78, #80).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace};

use super::handoff;
use super::interleave::Sinks;
use crate::metrics::{add_owned, Metrics, SessionCounters, Tally};
use crate::net::{gso, mmsg};
use crate::proto::depacketize::{Outcome, StreamFormat};
use crate::proto::error::Error;
use crate::proto::live::JoinInfo;
use crate::proto::pacer::{Event, GroupId, Pacer, PlayInfo, TrackConfig, Transmit};
use crate::proto::relay::params::ParamSets;
use crate::proto::rtcp::{self, NtpTimestamp};
use crate::proto::session::{Dest, PlayRequest};
use crate::server::live::LiveChannel;

/// Commands for the pacing thread.
#[derive(Debug)]
pub enum Command {
    /// Media was queued while the loop slept ([`DataHandle::publish`]).
    Wake,
    AddTrack {
        group: GroupId,
        track: usize,
        cfg: TrackConfig,
    },
    Play {
        group: GroupId,
        req: PlayRequest,
        reply: oneshot::Sender<Result<PlayInfo, Error>>,
    },
    Pause {
        group: GroupId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Remove {
        group: GroupId,
    },
    /// A channel a publisher started.
    AddChannel {
        key: String,
        channel: Box<LiveChannel>,
    },
    /// A channel a publisher started stopped (nobody publishes or listens).
    RemoveChannel {
        key: String,
    },
    /// A publisher starts (or resumes, after PAUSE) feeding channel `key`
    /// (an audio channel in `format`; a relay channel takes any).
    StartPublisher {
        key: String,
        format: Option<StreamFormat>,
    },
    /// The publisher of channel `key` left or paused.
    StopPublisher {
        key: String,
    },
    /// A listener joins live channel `channel` at the live edge.
    Subscribe {
        channel: String,
        group: GroupId,
        rtp: Dest,
        rtcp: Dest,
        reply: oneshot::Sender<Option<JoinInfo>>,
    },
    /// A listener joins relay channel `channel` with the destinations of
    /// the tracks it set up; the reply comes once each has its first packet
    /// (a keyframe for video), naming those packets.
    SubscribeRelay {
        channel: String,
        group: GroupId,
        dests: Vec<Option<(Dest, Dest)>>,
        reply: oneshot::Sender<Option<Vec<Option<JoinInfo>>>>,
    },
    /// The in-band parameter sets relay channel `channel` has seen, per
    /// track (`None`: no such relay channel).
    ParamSets {
        channel: String,
        reply: oneshot::Sender<Option<Vec<ParamSets>>>,
    },
    /// A listener leaves (PAUSE); it can subscribe again.
    Unsubscribe {
        channel: String,
        group: GroupId,
    },
    RemoveTrack {
        group: GroupId,
        track: usize,
    },
    /// What session `group` is sent is counted in `counters` (until
    /// [`Command::Remove`]).
    Count {
        group: GroupId,
        counters: Arc<SessionCounters>,
    },
}

/// Media for live channels, on its own queue.
#[derive(Debug)]
pub enum Data {
    /// One RTP packet of track `track` from channel `key`'s publisher.
    Publish {
        key: Arc<str>,
        track: usize,
        packet: Bytes,
        /// When it was received.
        at: Instant,
    },
    /// A sender report of track `track` from channel `key`'s publisher:
    /// its SSRC's RTP time `timestamp` is NTP time `ntp` (RFC 3550 §6.4.1).
    SourceReport {
        key: Arc<str>,
        track: usize,
        ssrc: u32,
        ntp: NtpTimestamp,
        timestamp: u32,
        /// When it was received.
        at: Instant,
    },
    /// PCM from a live channel's streamed source.
    Feed { channel: String, pcm: Bytes },
    /// A live channel's streamed source ended (after all it fed).
    SourceEnded { channel: String },
}

/// Counters of the sending side, readable while running.
#[derive(Debug, Default)]
pub struct SendStats {
    pub sent: AtomicU64,
    /// Times the pacing thread woke up.
    pub pacer_wakeups: AtomicU64,
    /// `sendmmsg` calls made.
    pub send_calls: AtomicU64,
    /// Frames queued on RTSP connections (interleaved transport).
    pub interleaved_queued: AtomicU64,
    /// Frames dropped because a connection's queue was full.
    pub interleaved_dropped: AtomicU64,
    pub send_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// Publishers' packets dropped because the data queue was full.
    pub publish_dropped: AtomicU64,
    /// Relayed packets dropped for waiting past the channel's
    /// `relay_max_delay` (with the video up to the next keyframe).
    pub relay_late_dropped: AtomicU64,
}

/// The pacing thread is gone (shutting down).
#[derive(Debug, Clone, Copy)]
pub struct PacerGone;

/// How the async side sends commands to the pacing thread: a bounded queue.
#[derive(Debug, Clone)]
pub struct PacerHandle {
    tx: handoff::Sender<Command>,
}

impl PacerHandle {
    /// Queues `cmd`; while the queue is full, waits a millisecond at a time
    /// without blocking the runtime.
    ///
    /// The first attempt happens at the call. The returned future is small
    /// (a full queue's wait is boxed), because it sits in the future of
    /// every connection task, and thousands of listeners each hold one.
    pub fn send(&self, cmd: Command) -> impl Future<Output = Result<(), PacerGone>> + '_ {
        let first = match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(handoff::TrySendError::Full(c)) => Err(Some(Box::new(c))),
            Err(handoff::TrySendError::Disconnected(_)) => Err(None),
        };
        async move {
            match first {
                Ok(()) => Ok(()),
                Err(None) => Err(PacerGone),
                Err(Some(cmd)) => Box::pin(self.send_when_room(*cmd)).await,
            }
        }
    }

    async fn send_when_room(&self, mut cmd: Command) -> Result<(), PacerGone> {
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(handoff::TrySendError::Full(c)) => {
                    cmd = c;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(handoff::TrySendError::Disconnected(_)) => return Err(PacerGone),
            }
        }
    }
}

/// How media reaches the pacing thread: a bounded queue of its own, so a
/// flood of media never delays a command and the control plane never waits
/// behind media.
#[derive(Debug, Clone)]
pub struct DataHandle {
    tx: handoff::Sender<Data>,
    stats: Arc<SendStats>,
    /// Wakes a sleeping pacing loop, so a relayed packet goes out at once
    /// rather than at its next timed wake-up.
    wake: handoff::Sender<Command>,
    /// The loop is (about to be) asleep: the next packet wakes it.
    asleep: Arc<AtomicBool>,
}

impl DataHandle {
    /// Queues a publisher's packet, or drops it (counted) when the queue is
    /// full: RTP tolerates loss, and a publisher never holds up the loop.
    pub fn publish(&self, key: Arc<str>, track: usize, packet: Bytes) -> Result<(), PacerGone> {
        let at = Instant::now();
        let marker = packet.get(1).is_some_and(|b| b & 0x80 != 0);
        match self.tx.try_send(Data::Publish {
            key,
            track,
            packet,
            at,
        }) {
            Ok(()) => {
                // The last packet of a frame (RTP marker, RFC 6184 §5.1;
                // every AAC packet of RFC 3640 §3.2.1) wakes the loop, so a
                // frame's packets go out together, as one segmented message
                // per listener; others wait at most [`RELAY_WAKE`]. One wake
                // per sleep, however many packets come meanwhile; a full
                // command queue means the loop is awake anyway.
                if marker && self.asleep.swap(false, Ordering::SeqCst) {
                    let _ = self.wake.try_send(Command::Wake);
                }
                Ok(())
            }
            Err(handoff::TrySendError::Full(_)) => {
                self.stats.publish_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(handoff::TrySendError::Disconnected(_)) => Err(PacerGone),
        }
    }

    /// Queues the sender reports in a publisher's RTCP `packet` (a compound
    /// packet, RFC 3550 §6.1) for track `track` of channel `key`; anything
    /// else in it, and invalid RTCP, is ignored.
    pub fn publish_rtcp(
        &self,
        key: Arc<str>,
        track: usize,
        packet: &[u8],
    ) -> Result<(), PacerGone> {
        let Ok(packets) = rtcp::parse_compound(packet) else {
            return Ok(());
        };
        for p in packets {
            if let rtcp::Packet::SenderReport { ssrc, info, .. } = p {
                let data = Data::SourceReport {
                    key: key.clone(),
                    track,
                    ssrc,
                    ntp: info.ntp,
                    timestamp: info.rtp_time,
                    at: Instant::now(),
                };
                match self.tx.try_send(data) {
                    Ok(()) | Err(handoff::TrySendError::Full(_)) => {}
                    Err(handoff::TrySendError::Disconnected(_)) => return Err(PacerGone),
                }
            }
        }
        Ok(())
    }

    /// Queues `data` from a plain thread (a pipe's reader), blocking while
    /// the queue is full.
    pub fn send_blocking(&self, data: Data) -> Result<(), PacerGone> {
        self.tx.send(data).map_err(|_| PacerGone)
    }
}

/// The pacing thread's ends of the queues.
pub struct Queues {
    commands: handoff::Receiver<Command>,
    data: handoff::Receiver<Data>,
    asleep: Arc<AtomicBool>,
}

/// Creates the command queue (`commands` deep) and the data queue (`data`
/// deep), with the handles that feed them.
pub fn queues(
    commands: usize,
    data: usize,
    stats: Arc<SendStats>,
) -> (PacerHandle, DataHandle, Queues) {
    let (ctx, crx) = handoff::channel(commands.max(1));
    let (dtx, drx) = handoff::channel(data.max(1));
    let asleep = Arc::new(AtomicBool::new(false));
    (
        PacerHandle { tx: ctx.clone() },
        DataHandle {
            tx: dtx,
            stats,
            wake: ctx,
            asleep: asleep.clone(),
        },
        Queues {
            commands: crx,
            data: drx,
            asleep,
        },
    )
}

/// Ends of runs, on their way to the session table: a bounded channel
/// that the pacing thread fills without waiting. What does not fit waits
/// in a backlog that is bounded by the number of sessions (a session has
/// at most one run ending at a time).
pub struct Events {
    tx: mpsc::Sender<Event>,
    backlog: VecDeque<Event>,
}

impl Events {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                tx,
                backlog: VecDeque::new(),
            },
            rx,
        )
    }

    fn push(&mut self, e: Event) {
        self.backlog.push_back(e);
        while let Some(e) = self.backlog.pop_front() {
            if let Err(mpsc::error::TrySendError::Full(e)) = self.tx.try_send(e) {
                self.backlog.push_front(e);
                return;
            }
        }
    }
}

/// Where the pacing thread's packets go.
pub struct Outputs {
    /// Datagrams per `sendmmsg` (`--send-batch`).
    pub per_call: usize,
    /// RTP datagrams to one destination go as one segmented message
    /// ([`crate::net::gso`]).
    pub gso: bool,
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub(crate) sinks: Arc<Sinks>,
    pub stats: Arc<SendStats>,
    pub metrics: Arc<Metrics>,
}

/// Each session's counters, by pacer group: the pacing thread's own map,
/// so counting a packet is a lookup and three plain adds.
type Counted = HashMap<GroupId, Arc<SessionCounters>, BuildHasherDefault<GroupHasher>>;

/// Pacer groups are sequential numbers: a multiplicative hash spreads them
/// at a fraction of SipHash's cost per packet (no attacker picks them).
#[derive(Default)]
struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Longest the pacing thread sleeps without looking at `cancel` and the
/// data queue.
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// Longest it sleeps while a relay channel runs: relayed packets are
/// forwarded as they come, so the data queue is looked at this often.
const RELAY_WAKE: Duration = Duration::from_millis(2);

/// Relay listeners waiting for their first packets, by channel and group.
type Pending = HashMap<(String, GroupId), oneshot::Sender<Option<Vec<Option<JoinInfo>>>>>;

/// The pacing loop, on its own thread: owns the [`Pacer`] and the live
/// channels, applies commands and media, and sends every due datagram. It
/// sleeps in `recv_timeout` on the command queue until the next deadline,
/// which wakes within tens of microseconds (tokio's timer rounds up to the
/// millisecond). Each wake-up takes the queued media (live channels wake
/// the loop every packet interval, well within their prebuffer; a relayed
/// frame's last packet wakes it at once, and relay channels poll every
/// [`RELAY_WAKE`]) and sends everything due within
/// `send_ahead` too, so thousands of sessions whose deadlines are spread
/// over a packet interval cost a few thousand wake-ups per second, not one
/// per packet. Ends when `cancel` fires (saying BYE to every session and
/// listener first) or when every [`PacerHandle`] and [`DataHandle`] is
/// gone (a `DataHandle` can wake the loop, so it holds the command queue
/// too). The caller sets the thread's priority and core
/// ([`super::placement`]).
pub fn run(
    mut pacer: Pacer,
    mut live: HashMap<String, LiveChannel>,
    queues: Queues,
    out: Outputs,
    mut events: Events,
    send_ahead: Duration,
    cancel: CancellationToken,
) {
    let mut batch: Vec<Transmit> = Vec::with_capacity(256);
    let mut counted = Counted::default();
    let mut pending = Pending::new();
    loop {
        if cancel.is_cancelled() {
            let now = Instant::now();
            pacer.remove_all(now);
            for c in live.values_mut() {
                c.end_now(now, &mut batch);
            }
            flush(&mut pacer, &mut live, now, &mut batch, &out, &counted);
            return;
        }
        let now = Instant::now();
        let next = live
            .values()
            .filter_map(LiveChannel::next_deadline)
            .chain(pacer.poll_timeout())
            .min();
        let relaying = live.values().any(|c| matches!(c, LiveChannel::Relay(_)));
        let cap = if relaying { RELAY_WAKE } else { IDLE_WAKE };
        let mut wait = next.map_or(cap, |d| d.saturating_duration_since(now).min(cap));
        // Asleep from here: a publisher that queues a packet now wakes us.
        // One queued before we said so is taken now instead of waited on.
        queues.asleep.store(true, Ordering::SeqCst);
        let early = queues.data.try_recv();
        if early.is_some() {
            queues.asleep.store(false, Ordering::SeqCst);
            wait = Duration::ZERO;
        }
        let commands = queues.commands.recv_timeout(wait);
        queues.asleep.store(false, Ordering::SeqCst);
        match commands {
            Ok(first) => {
                // Take whatever else is queued before sending.
                let mut next = Some(first);
                while let Some(cmd) = next {
                    apply(
                        &mut pacer,
                        &mut live,
                        &mut counted,
                        &mut pending,
                        cmd,
                        &mut batch,
                    );
                    next = queues.commands.try_recv();
                }
            }
            Err(handoff::RecvTimeoutError::Timeout) => {}
            Err(handoff::RecvTimeoutError::Disconnected) => return,
        }
        // Media queued since the last wake-up, a bounded share of it: a
        // relay packet becomes one transmit per listener, so the batch is
        // sent whenever it is full (a backlog of thousands of packets to
        // thousands of listeners must not become one batch of millions),
        // and what is left waits for the next turn, after the clips' due
        // packets. Past that, the bounded queue drops (counted).
        // Also bounded in time: under load media keeps arriving while it
        // is taken, and a relay channel's fan-out slots and the clips'
        // packets fall due meanwhile (they go out in `flush`).
        let mut early = early;
        let until = Instant::now() + TAKE_SLICE;
        for _ in 0..DATA_PER_WAKE {
            let Some(data) = early.take().or_else(|| queues.data.try_recv()) else {
                break;
            };
            take(&mut live, data, &mut batch, &out.stats);
            if batch.len() >= MAX_FLUSH {
                send(&batch, &out, &counted);
                batch.clear();
            }
            if Instant::now() >= until {
                break;
            }
        }
        out.stats.pacer_wakeups.fetch_add(1, Ordering::Relaxed);
        let due = Instant::now() + send_ahead;
        flush(&mut pacer, &mut live, due, &mut batch, &out, &counted);
        answer_started(&mut live, &mut pending);
        while let Some(e) = pacer.poll_event() {
            let Event::Ended { group, run } = e;
            debug!(group, run, "end of media");
            events.push(e);
        }
    }
}

/// Most media items taken from the data queue per wake-up.
const DATA_PER_WAKE: usize = 512;
/// Longest a wake-up spends taking media before it sends what is due.
const TAKE_SLICE: Duration = Duration::from_millis(1);

/// Answers the relay listeners that started: their PLAY can be answered.
fn answer_started(live: &mut HashMap<String, LiveChannel>, pending: &mut Pending) {
    if pending.is_empty() {
        return;
    }
    for (key, c) in live.iter_mut() {
        let LiveChannel::Relay(r) = c else { continue };
        for s in r.take_started() {
            if let Some(reply) = pending.remove(&(key.clone(), s.id)) {
                let _ = reply.send(Some(s.first));
            }
        }
    }
}

fn apply(
    pacer: &mut Pacer,
    live: &mut HashMap<String, LiveChannel>,
    counted: &mut Counted,
    pending: &mut Pending,
    cmd: Command,
    out: &mut Vec<Transmit>,
) {
    let now = Instant::now();
    match cmd {
        Command::Subscribe {
            channel,
            group,
            rtp,
            rtcp,
            reply,
        } => {
            let join = match live.get_mut(&channel) {
                Some(LiveChannel::Audio(c)) => Some(c.subscribe(group, rtp, rtcp, now, out)),
                _ => None,
            };
            let _ = reply.send(join);
        }
        Command::SubscribeRelay {
            channel,
            group,
            dests,
            reply,
        } => {
            let Some(LiveChannel::Relay(r)) = live.get_mut(&channel) else {
                let _ = reply.send(None);
                return;
            };
            r.subscribe(group, dests, now, out);
            pending.insert((channel, group), reply);
        }
        Command::ParamSets { channel, reply } => {
            let sets = match live.get(&channel) {
                Some(LiveChannel::Relay(r)) => Some(r.parameter_sets()),
                _ => None,
            };
            let _ = reply.send(sets);
        }
        Command::Unsubscribe { channel, group } => {
            pending.remove(&(channel.clone(), group));
            if let Some(c) = live.get_mut(&channel) {
                c.unsubscribe(group, false, now, out);
            }
        }
        Command::AddChannel { key, channel } => {
            live.insert(key, *channel);
        }
        Command::RemoveChannel { key } => {
            pending.retain(|(k, _), _| *k != key);
            if let Some(mut c) = live.remove(&key) {
                // Nobody should be listening; if someone is, they hear BYE.
                c.end_now(now, out);
            }
        }
        Command::StartPublisher { key, format } => match (live.get_mut(&key), format) {
            (Some(LiveChannel::Audio(c)), Some(format)) => {
                if let Err(e) = c.start_publisher(format) {
                    debug!(channel = %key, error = %e, "publisher refused");
                }
            }
            (Some(LiveChannel::Relay(r)), _) => r.source_changed(),
            _ => {}
        },
        Command::StopPublisher { key } => match live.get_mut(&key) {
            Some(LiveChannel::Audio(c)) => {
                let (overflowed, starved) = (c.overflowed_frames, c.starved_packets);
                if let Some(stats) = c.stop_publisher() {
                    debug!(
                        channel = %key,
                        overflowed_frames = overflowed,
                        starved_packets = starved,
                        packets = stats.packets,
                        lost = stats.lost,
                        late = stats.late,
                        rejected = stats.rejected,
                        "publisher stopped"
                    );
                }
            }
            Some(LiveChannel::Relay(r)) => {
                debug!(channel = %key, rejected = r.rejected, "publisher stopped");
                r.source_changed();
            }
            None => {}
        },
        Command::Wake => {}
        Command::AddTrack { group, track, cfg } => pacer.add_track(group, track, cfg),
        Command::Play { group, req, reply } => {
            let _ = reply.send(pacer.play(group, req, now));
        }
        Command::Pause { group, reply } => {
            let _ = reply.send(pacer.pause(group));
        }
        Command::Count { group, counters } => {
            counted.insert(group, counters);
        }
        Command::Remove { group } => {
            counted.remove(&group);
            pacer.remove(group, now);
            pending.retain(|(_, g), _| *g != group);
            for c in live.values_mut() {
                c.unsubscribe(group, true, now, out);
            }
        }
        Command::RemoveTrack { group, track } => pacer.remove_track(group, track, now),
    }
}

/// Hands media to its live channel.
fn take(
    live: &mut HashMap<String, LiveChannel>,
    data: Data,
    out: &mut Vec<Transmit>,
    stats: &SendStats,
) {
    match data {
        Data::Publish {
            key,
            track,
            packet,
            at,
        } => match live.get_mut(&*key) {
            Some(LiveChannel::Audio(c)) => {
                if let Some(outcome) = c.publish(&packet) {
                    if !matches!(outcome, Outcome::Decoded { .. }) {
                        trace!(channel = %key, ?outcome, "published packet");
                    }
                }
            }
            Some(LiveChannel::Relay(r)) => {
                let (before, late) = (r.rejected, r.late);
                if r.is_late(at, Instant::now()) {
                    r.drop_late(track);
                } else {
                    r.push(track, &packet, at, out);
                }
                if r.late != late {
                    stats
                        .relay_late_dropped
                        .fetch_add(r.late - late, Ordering::Relaxed);
                    if r.late.is_power_of_two() {
                        info!(channel = %key, dropped = r.late, "relayed packets dropped: the server fell behind by more than relay_max_delay_ms");
                    }
                }
                // Logged at 1, 2, 4, 8, ... rejects: a flood of junk costs
                // a few lines, not one per packet.
                if r.rejected != before && r.rejected.is_power_of_two() {
                    info!(channel = %key, rejected = r.rejected, "source packets rejected (not RTP, unknown track or payload type)");
                }
            }
            None => {}
        },
        Data::SourceReport {
            key,
            track,
            ssrc,
            ntp,
            timestamp,
            at,
        } => {
            if let Some(LiveChannel::Relay(r)) = live.get_mut(&*key) {
                r.source_report(track, ssrc, ntp, timestamp, at);
            }
        }
        Data::Feed { channel, pcm } => {
            if let Some(LiveChannel::Audio(c)) = live.get_mut(&channel) {
                c.feed(&pcm);
            }
        }
        Data::SourceEnded { channel } => {
            if let Some(LiveChannel::Audio(c)) = live.get_mut(&channel) {
                c.end();
            }
        }
    }
}

/// Most datagrams taken from the pacer per send. An overloaded pacing
/// thread (more due than one core can send) works through its backlog a
/// slice at a time, the rest waiting as deadlines in the pacer, instead of
/// encoding the whole backlog into memory first.
const MAX_FLUSH: usize = 4096;

/// Sends every datagram due at `now`, at most [`MAX_FLUSH`] at a time: the
/// UDP ones in batches (one `sendmmsg` per [`mmsg::MAX_BATCH`]), the
/// interleaved ones queued on their connections. `batch` may already hold
/// datagrams that commands produced; it is empty again afterwards.
fn flush(
    pacer: &mut Pacer,
    live: &mut HashMap<String, LiveChannel>,
    now: Instant,
    batch: &mut Vec<Transmit>,
    out: &Outputs,
    counted: &Counted,
) {
    for c in live.values_mut() {
        c.poll(now, batch);
    }
    loop {
        while batch.len() < MAX_FLUSH {
            let Some(t) = pacer.poll_transmit(now) else {
                break;
            };
            batch.push(t);
        }
        let more = batch.len() >= MAX_FLUSH;
        send(batch, out, counted);
        batch.clear();
        if !more {
            break;
        }
    }
    // A burst (thousands of listeners due at once) leaves no lasting memory.
    if batch.capacity() > 2 * MAX_FLUSH {
        batch.shrink_to(MAX_FLUSH);
    }
}

/// Sends one batch of datagrams, and counts each RTP packet for its
/// session and path, its bytes and how late it goes out (all atomics: the
/// scrape reads them, nothing here waits for it).
fn send(batch: &[Transmit], out: &Outputs, counted: &Counted) {
    if batch.is_empty() {
        return;
    }
    let (mut on_rtp, mut on_rtcp) = (Vec::with_capacity(batch.len()), Vec::new());
    let mut segmentable = Vec::new();
    let (mut interleaved, mut interleaved_rtcp) = (Vec::new(), Vec::new());
    let sent_at = Instant::now();
    let mut rtp_bytes = 0u64;
    let mut late = Tally::default();
    for t in batch {
        if !t.rtcp {
            rtp_bytes += t.data.len() as u64;
            if let Some(c) = counted.get(&t.group) {
                c.sent(t.data.len());
            }
            if let Some(due) = t.due {
                let ns = sent_at.saturating_duration_since(due).as_nanos();
                late.observe(&out.metrics.lateness, ns as u64);
            }
        }
        match t.dest {
            Dest::Udp(a) if t.rtcp => on_rtcp.push((a, &t.data[..])),
            Dest::Udp(a) if t.segmentable && out.gso => segmentable.push((a, &t.data[..])),
            Dest::Udp(a) => on_rtp.push((a, &t.data[..])),
            Dest::Interleaved { conn, channel } if t.rtcp => {
                interleaved_rtcp.push((conn, channel, &t.data));
            }
            Dest::Interleaved { conn, channel } => interleaved.push((conn, channel, &t.data)),
        }
    }
    // The pacing thread is the only writer of these.
    late.publish_owned(&out.metrics.lateness);
    add_owned(&out.metrics.rtp_bytes, rtp_bytes);
    let sent = send_all(&out.rtp, &on_rtp, out.per_call, false, &out.stats)
        + send_all(&out.rtp, &segmentable, out.per_call, true, &out.stats);
    send_all(&out.rtcp, &on_rtcp, out.per_call, false, &out.stats);
    let queued = deliver(out, interleaved);
    deliver(out, interleaved_rtcp);
    add_owned(&out.metrics.rtp_packets, (sent + queued) as u64);
}

/// Queues interleaved frames on their connections; returns how many were
/// queued.
fn deliver(out: &Outputs, frames: Vec<(u64, u8, &Bytes)>) -> usize {
    if frames.is_empty() {
        return 0;
    }
    let d = out.sinks.deliver(frames);
    out.stats
        .interleaved_queued
        .fetch_add(d.queued as u64, Ordering::Relaxed);
    out.stats
        .interleaved_dropped
        .fetch_add(d.dropped as u64, Ordering::Relaxed);
    d.queued
}

/// Sends `datagrams` from `socket` in `sendmmsg` batches and counts the
/// outcome.
fn send_all(
    socket: &UdpSocket,
    datagrams: &[(SocketAddr, &[u8])],
    per_call: usize,
    gso: bool,
    stats: &SendStats,
) -> usize {
    if datagrams.is_empty() {
        return 0;
    }
    let out = if gso {
        gso::send_segmented(socket.as_fd(), datagrams, per_call)
    } else {
        mmsg::send_batch_of(socket.as_fd(), datagrams, per_call)
    };
    stats.sent.fetch_add(out.sent as u64, Ordering::Relaxed);
    stats
        .send_calls
        .fetch_add(out.calls as u64, Ordering::Relaxed);
    if out.dropped + out.failed > 0 {
        stats
            .send_dropped
            .fetch_add(out.dropped as u64, Ordering::Relaxed);
        stats
            .send_errors
            .fetch_add(out.failed as u64, Ordering::Relaxed);
        trace!(
            dropped = out.dropped,
            failed = out.failed,
            "datagrams refused"
        );
    }
    out.sent
}
