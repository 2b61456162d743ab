//! The shared RTP/RTCP UDP port pair (one for all sessions, as MediaMTX
//! does), the pacing loop that sends from it, and the RTCP receiver.
//!
//! Every datagram due in one tick goes out in `sendmmsg` batches
//! ([`crate::net::mmsg`]). Sends are non-blocking: a full socket buffer
//! (`EAGAIN`, `ENOBUFS`) drops that one datagram for that one client, and ICMP-driven errors such as
//! `ECONNREFUSED` are counted and ignored, so no client can stall or kill
//! the loop (ROBUSTNESS B11 #78, #80).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::net::UdpSocket;

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::channels::Channels;
use super::interleave::Sinks;
use super::sessions::SessionTable;
use crate::net::mmsg;
use crate::proto::depacketize::{Outcome, StreamFormat};
use crate::proto::error::Error;
use crate::proto::live::{Channel, JoinInfo};
use crate::proto::pacer::{Event, GroupId, Pacer, PlayInfo, TrackConfig, Transmit};
use crate::proto::rtcp::{self, Packet};
use crate::proto::session::{Dest, PlayRequest};

/// Commands for the pacing loop.
#[derive(Debug)]
pub enum Command {
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
        channel: Box<Channel>,
    },
    /// A channel a publisher started stopped (nobody publishes or listens).
    RemoveChannel {
        key: String,
    },
    /// A publisher starts (or resumes, after PAUSE) feeding channel `key`.
    StartPublisher {
        key: String,
        format: StreamFormat,
    },
    /// The publisher of channel `key` left or paused.
    StopPublisher {
        key: String,
    },
    /// One RTP packet from channel `key`'s publisher.
    Publish {
        key: Arc<str>,
        packet: Bytes,
    },
    /// A listener joins live channel `channel` at the live edge.
    Subscribe {
        channel: String,
        group: GroupId,
        rtp: Dest,
        rtcp: Dest,
        reply: oneshot::Sender<Option<JoinInfo>>,
    },
    /// PCM from a live channel's streamed source.
    Feed {
        channel: String,
        pcm: Bytes,
    },
    /// A live channel's streamed source ended.
    SourceEnded {
        channel: String,
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
}

/// Counters of the UDP side, readable while running.
#[derive(Debug, Default)]
pub struct UdpStats {
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
    pub rtcp_received: AtomicU64,
    pub rtcp_invalid: AtomicU64,
}

/// Sends `datagrams` from `socket` in `sendmmsg` batches and counts the
/// outcome.
fn send_all(
    socket: &UdpSocket,
    datagrams: &[(SocketAddr, &[u8])],
    per_call: usize,
    stats: &UdpStats,
) {
    if datagrams.is_empty() {
        return;
    }
    let out = mmsg::send_batch_of(socket.as_fd(), datagrams, per_call);
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
}

/// How the async side reaches the pacing thread: a bounded queue.
#[derive(Debug, Clone)]
pub struct PacerHandle {
    tx: std_mpsc::SyncSender<Command>,
}

/// The pacing thread is gone (shutting down).
#[derive(Debug, Clone, Copy)]
pub struct PacerGone;

impl PacerHandle {
    /// A handle and the receiving end for [`run_pacer`], holding at most
    /// `capacity` commands.
    pub fn new(capacity: usize) -> (Self, std_mpsc::Receiver<Command>) {
        let (tx, rx) = std_mpsc::sync_channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues `cmd` from a plain thread, waiting while the queue is full.
    pub fn send_blocking(&self, mut cmd: Command) -> Result<(), PacerGone> {
        loop {
            match self.tx.try_send(cmd) {
                Ok(()) => return Ok(()),
                Err(std_mpsc::TrySendError::Full(c)) => {
                    cmd = c;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(PacerGone),
            }
        }
    }

    /// Queues `cmd`; while the queue is full, waits a millisecond at a time
    /// without blocking the runtime.
    ///
    /// The first attempt happens at the call. The returned future is small
    /// (a full queue's wait is boxed), because it sits in the future of
    /// every connection task, and thousands of listeners each hold one.
    pub fn send(&self, cmd: Command) -> impl Future<Output = Result<(), PacerGone>> + '_ {
        let first = match self.tx.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(std_mpsc::TrySendError::Full(c)) => Err(Some(Box::new(c))),
            Err(std_mpsc::TrySendError::Disconnected(_)) => Err(None),
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
                Err(std_mpsc::TrySendError::Full(c)) => {
                    cmd = c;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(std_mpsc::TrySendError::Disconnected(_)) => return Err(PacerGone),
            }
        }
    }
}

/// Asks the scheduler to favour the pacing thread over the control-plane
/// threads when they share a core (nice −10). Needs `CAP_SYS_NICE`; without
/// it the thread keeps the default priority.
fn raise_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the
    // calling thread's nice value on Linux; it has no memory effects.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) };
    if r != 0 {
        debug!(error = %io::Error::last_os_error(), "pacing thread keeps the default priority");
    }
}

/// Longest the pacing thread sleeps without looking at `cancel`.
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// The one pacing loop, on its own thread: owns the [`Pacer`], applies
/// commands, and sends every due datagram. It sleeps in `recv_timeout` until
/// the next deadline, which wakes within tens of microseconds (tokio's timer
/// rounds up to the millisecond). Each wake-up sends everything due within
/// `send_ahead` too, so thousands of sessions whose deadlines are spread
/// over a packet interval cost a few thousand wake-ups per second, not one
/// per packet. Ends when `cancel` fires (saying BYE to every session first)
/// or when every [`PacerHandle`] is gone.
#[allow(clippy::too_many_arguments)]
pub fn run_pacer(
    mut pacer: Pacer,
    mut live: HashMap<String, Channel>,
    commands: std_mpsc::Receiver<Command>,
    out: Outputs,
    sessions: Arc<SessionTable>,
    send_ahead: Duration,
    cancel: CancellationToken,
) {
    raise_priority();
    let mut batch: Vec<Transmit> = Vec::with_capacity(256);
    loop {
        if cancel.is_cancelled() {
            let now = Instant::now();
            for e in sessions.drain() {
                pacer.remove(e.group, now);
                for c in live.values_mut() {
                    c.unsubscribe(e.group, true, now, &mut batch);
                }
            }
            flush(&mut pacer, &mut live, now, &mut batch, &out);
            return;
        }
        let now = Instant::now();
        let next = live
            .values()
            .map(Channel::next_deadline)
            .chain(pacer.poll_timeout())
            .min();
        let wait = next.map_or(IDLE_WAKE, |d| {
            d.saturating_duration_since(now).min(IDLE_WAKE)
        });
        match commands.recv_timeout(wait) {
            Ok(cmd) => {
                apply(&mut pacer, &mut live, cmd, &mut batch);
                // Take whatever else is queued before sending.
                while let Ok(cmd) = commands.try_recv() {
                    apply(&mut pacer, &mut live, cmd, &mut batch);
                }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        out.stats.pacer_wakeups.fetch_add(1, Ordering::Relaxed);
        let due = Instant::now() + send_ahead;
        flush(&mut pacer, &mut live, due, &mut batch, &out);
        while let Some(Event::Ended { group, run }) = pacer.poll_event() {
            debug!(group, run, "end of media");
            sessions.ended(group, run);
        }
    }
}

fn apply(
    pacer: &mut Pacer,
    live: &mut HashMap<String, Channel>,
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
            let join = live
                .get_mut(&channel)
                .map(|c| c.subscribe(group, rtp, rtcp, now, out));
            let _ = reply.send(join);
        }
        Command::Feed { channel, pcm } => {
            if let Some(c) = live.get_mut(&channel) {
                c.feed(&pcm);
            }
        }
        Command::SourceEnded { channel } => {
            if let Some(c) = live.get_mut(&channel) {
                c.end();
            }
        }
        Command::Unsubscribe { channel, group } => {
            if let Some(c) = live.get_mut(&channel) {
                c.unsubscribe(group, false, now, out);
            }
        }
        Command::AddChannel { key, channel } => {
            live.insert(key, *channel);
        }
        Command::RemoveChannel { key } => {
            if let Some(mut c) = live.remove(&key) {
                // Nobody should be listening; if someone is, they hear BYE.
                c.end_now(now, out);
            }
        }
        Command::StartPublisher { key, format } => {
            if let Some(Err(e)) = live.get_mut(&key).map(|c| c.start_publisher(format)) {
                debug!(channel = %key, error = %e, "publisher refused");
            }
        }
        Command::StopPublisher { key } => {
            let Some(c) = live.get_mut(&key) else { return };
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
        Command::Publish { key, packet } => {
            if let Some(outcome) = live.get_mut(&*key).and_then(|c| c.publish(&packet)) {
                if !matches!(outcome, Outcome::Decoded { .. }) {
                    trace!(channel = %key, ?outcome, "published packet");
                }
            }
        }
        Command::AddTrack { group, track, cfg } => pacer.add_track(group, track, cfg),
        Command::Play { group, req, reply } => {
            let _ = reply.send(pacer.play(group, req, now));
        }
        Command::Pause { group, reply } => {
            let _ = reply.send(pacer.pause(group));
        }
        Command::Remove { group } => {
            pacer.remove(group, now);
            for c in live.values_mut() {
                c.unsubscribe(group, true, now, out);
            }
        }
        Command::RemoveTrack { group, track } => pacer.remove_track(group, track, now),
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
    live: &mut HashMap<String, Channel>,
    now: Instant,
    batch: &mut Vec<Transmit>,
    out: &Outputs,
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
        send(batch, out);
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

/// Sends one batch of datagrams.
fn send(batch: &[Transmit], out: &Outputs) {
    if batch.is_empty() {
        return;
    }
    let (mut on_rtp, mut on_rtcp) = (Vec::with_capacity(batch.len()), Vec::new());
    let mut interleaved = Vec::new();
    for t in batch {
        match t.dest {
            Dest::Udp(a) if t.rtcp => on_rtcp.push((a, &t.data[..])),
            Dest::Udp(a) => on_rtp.push((a, &t.data[..])),
            Dest::Interleaved { conn, channel } => interleaved.push((conn, channel, &t.data)),
        }
    }
    send_all(&out.rtp, &on_rtp, out.per_call, &out.stats);
    send_all(&out.rtcp, &on_rtcp, out.per_call, &out.stats);
    if !interleaved.is_empty() {
        let d = out.sinks.deliver(interleaved);
        out.stats
            .interleaved_queued
            .fetch_add(d.queued as u64, Ordering::Relaxed);
        out.stats
            .interleaved_dropped
            .fetch_add(d.dropped as u64, Ordering::Relaxed);
    }
}

/// Where the pacing thread's packets go.
pub struct Outputs {
    /// Datagrams per `sendmmsg` (`--send-batch`).
    pub per_call: usize,
    pub rtp: Arc<UdpSocket>,
    pub rtcp: Arc<UdpSocket>,
    pub(crate) sinks: Arc<Sinks>,
    pub stats: Arc<UdpStats>,
}

/// Receives RTCP from clients: validates it (RFC 3550 A.2), refreshes the
/// session it comes from, and logs receiver reports at debug level.
pub async fn run_rtcp_receiver(
    socket: Arc<UdpSocket>,
    sessions: Arc<SessionTable>,
    stats: Arc<UdpStats>,
    cancel: CancellationToken,
) {
    let Ok(fd) = readable(&socket) else { return };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = fd.async_io(Interest::READABLE, |s| s.recv_from(&mut buf)) => match r {
                Ok(v) => v,
                // ICMP errors surface here on Linux: never fatal.
                Err(e) => { trace!(error = %e, "rtcp recv error"); continue; }
            },
        };
        let packets = match rtcp::parse_compound(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                stats.rtcp_invalid.fetch_add(1, Ordering::Relaxed);
                trace!(%from, error = %e, "invalid RTCP ignored");
                continue;
            }
        };
        stats.rtcp_received.fetch_add(1, Ordering::Relaxed);
        let Some(session) = sessions.touch_by_rtcp(from, Instant::now()) else {
            trace!(%from, "RTCP from an unknown address ignored");
            continue;
        };
        for p in packets {
            if let Packet::ReceiverReport { reports, .. } | Packet::SenderReport { reports, .. } = p
            {
                for r in reports {
                    debug!(
                        %session,
                        ssrc = format_args!("{:08X}", r.ssrc),
                        fraction_lost = f64::from(r.fraction_lost) / 256.0,
                        cumulative_lost = r.cumulative_lost,
                        jitter = r.jitter,
                        "receiver report"
                    );
                }
            }
        }
    }
}

/// Receives on the shared RTP port: a recording publisher's packets go to
/// its channel (matched by source address); anything else, such as the
/// NAT-opening packets players send (ffmpeg does), is dropped.
pub async fn run_rtp_receiver(
    socket: Arc<UdpSocket>,
    channels: Arc<Channels>,
    pacer: PacerHandle,
    sessions: Arc<SessionTable>,
    cancel: CancellationToken,
) {
    let Ok(fd) = readable(&socket) else { return };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = fd.async_io(Interest::READABLE, |s| s.recv_from(&mut buf)) => match r {
                Ok(v) => v,
                Err(e) => { trace!(error = %e, "rtp recv error"); continue; }
            },
        };
        let now = Instant::now();
        let Some(d) = channels.udp_packet(from, now) else {
            trace!(%from, "RTP from a stranger dropped");
            continue;
        };
        if let Some(id) = d.touch {
            sessions.touch(&id, now);
        }
        let cmd = Command::Publish {
            key: d.key,
            packet: Bytes::copy_from_slice(&buf[..n]),
        };
        if pacer.send(cmd).await.is_err() {
            return;
        }
    }
}

/// Watches a socket that the pacing thread sends from for readability
/// only. A tokio `UdpSocket` would also wake the runtime at every change of
/// write space, which at tens of thousands of datagrams a second costs more
/// than the sending.
fn readable(socket: &Arc<UdpSocket>) -> io::Result<AsyncFd<Arc<UdpSocket>>> {
    // SAFETY: the `Arc` keeps the socket, so its descriptor stays open and
    // the same for as long as the `AsyncFd` holds this clone.
    unsafe { AsyncFd::register_with_interest(socket.clone(), Interest::READABLE) }.map_err(|e| {
        let e = io::Error::from(e);
        tracing::error!(error = %e, "cannot watch a UDP socket");
        e
    })
}
