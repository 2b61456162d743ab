//! The load tester's UDP receiver: one thread that owns the RTP/RTCP socket
//! pair of every session's tracks, waits on all of them with one epoll set
//! (mio), drains each ready socket with `recvmmsg`, measures every packet
//! ([`TrackMeasure`]) and sends each session an RTCP receiver report about
//! every 5 s (RFC 3550 §6.4.2) so the server sees it alive.
//!
//! No task, timer or wake-up per packet: one `epoll_wait` returns every
//! socket that became ready, and one `recvmmsg` reads what each holds.
//! Arrival times are the kernel's (`SO_TIMESTAMPNS`), so the time this
//! thread takes to get round to a socket is not charged to the sender.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace};

use crate::net::mmsg::{self, RecvBufs};
use crate::proto::measure::{Timeline, TrackMeasure};
use crate::proto::rtcp;

/// Receiver reports go out this often per session (RFC 3550's minimum
/// interval is 5 s).
const RR_INTERVAL: Duration = Duration::from_secs(5);
/// Tracks per session the receiver accepts (tokens are packed with it).
pub(super) const MAX_TRACKS: usize = 8;
const WAKER: Token = Token(usize::MAX);

/// One track's sockets and measurement, handed to the receiver.
pub(super) struct RxTrack {
    pub(super) rtp: UdpSocket,
    pub(super) rtcp: UdpSocket,
    pub(super) measure: TrackMeasure,
    /// Where receiver reports go: the server's RTCP port for this track.
    pub(super) server_rtcp: Option<SocketAddr>,
}

enum Cmd {
    Register {
        session: usize,
        tracks: Vec<RxTrack>,
    },
    /// Stop receiving for `session` once every track saw a BYE or at
    /// `linger_until`, and send its measurements back.
    Finish {
        session: usize,
        linger_until: Instant,
        reply: oneshot::Sender<Vec<TrackMeasure>>,
    },
}

/// Live totals, read by the progress display.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) packets: AtomicU64,
    pub(super) bytes: AtomicU64,
}

struct Session {
    tracks: Vec<RxTrack>,
    our_ssrc: u32,
    next_rr: Instant,
    finish: Option<(Instant, oneshot::Sender<Vec<TrackMeasure>>)>,
}

/// Handle to the receiver thread; dropping every handle stops it.
#[derive(Clone)]
pub(super) struct Receiver {
    tx: mpsc::Sender<Cmd>,
    waker: Arc<Waker>,
}

impl Receiver {
    /// Starts the thread; it returns the per-second totals of every packet
    /// it read, counted from the origin of the measures' clock.
    pub(super) fn spawn(totals: Arc<Totals>) -> io::Result<(Self, JoinHandle<Timeline>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::channel(1024);
        // Linux switches receive stamping on for the whole stack, and does
        // it asynchronously, when the first socket asks; a packet that
        // arrives before that is stamped when it is read instead, which
        // would skew the first session's alignment. So ask now, keep the
        // socket for the run, and give the switch a moment.
        let stamping = std::net::UdpSocket::bind(("127.0.0.1", 0))?;
        if mmsg::enable_timestamps(stamping.as_fd()).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let thread = std::thread::Builder::new()
            .name("load-udp-rx".into())
            .spawn(move || {
                let _stamping = stamping;
                run(poll, rx, totals)
            })?;
        Ok((Self { tx, waker }, thread))
    }

    pub(super) async fn register(&self, session: usize, tracks: Vec<RxTrack>) -> bool {
        let ok = self
            .tx
            .send(Cmd::Register { session, tracks })
            .await
            .is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// Ends a session's reception and returns its measurements (empty if the
    /// receiver is gone).
    pub(super) async fn finish(&self, session: usize, linger: Duration) -> Vec<TrackMeasure> {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Finish {
            session,
            linger_until: Instant::now() + linger,
            reply,
        };
        if self.tx.send(cmd).await.is_err() {
            return Vec::new();
        }
        let _ = self.waker.wake();
        rx.await.unwrap_or_default()
    }
}

fn token(session: usize, track: usize, rtcp: bool) -> Token {
    Token((session * MAX_TRACKS + track) * 2 + usize::from(rtcp))
}

fn untoken(t: Token) -> (usize, usize, bool) {
    let rtcp = t.0 % 2 == 1;
    let k = t.0 / 2;
    (k / MAX_TRACKS, k % MAX_TRACKS, rtcp)
}

fn run(mut poll: Poll, mut rx: mpsc::Receiver<Cmd>, totals: Arc<Totals>) -> Timeline {
    let mut timeline = Timeline::default();
    let mut events = Events::with_capacity(1024);
    let mut sessions: HashMap<usize, Session> = HashMap::new();
    let mut bufs = RecvBufs::new(32, 2048);
    let mut rr = BytesMut::with_capacity(512);
    let mut commands_open = true;
    loop {
        if !commands_open && sessions.is_empty() {
            return timeline;
        }
        let now = Instant::now();
        let next = sessions
            .values()
            .map(|s| {
                s.finish
                    .as_ref()
                    .map_or(s.next_rr, |(f, _)| (*f).min(s.next_rr))
            })
            .min();
        let wait = next.map_or(Duration::from_millis(100), |n| {
            n.saturating_duration_since(now)
                .min(Duration::from_millis(100))
        });
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                debug!(error = %e, "poll failed; receiver stops");
                return timeline;
            }
        }
        for ev in &events {
            if ev.token() == WAKER {
                continue;
            }
            let (sid, track, is_rtcp) = untoken(ev.token());
            let Some(s) = sessions.get_mut(&sid) else {
                continue;
            };
            if is_rtcp {
                drain_rtcp(s, track, &mut bufs);
            } else if let Some(t) = s.tracks.get_mut(track) {
                drain_rtp(t, &mut bufs, &totals, &mut timeline);
            }
        }
        while commands_open {
            match rx.try_recv() {
                Ok(Cmd::Register { session, tracks }) => {
                    register(&poll, &mut sessions, session, tracks);
                }
                Ok(Cmd::Finish {
                    session,
                    linger_until,
                    reply,
                }) => match sessions.get_mut(&session) {
                    Some(s) => s.finish = Some((linger_until, reply)),
                    None => {
                        let _ = reply.send(Vec::new());
                    }
                },
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => commands_open = false,
            }
        }
        let now = Instant::now();
        let done: Vec<usize> = sessions
            .iter()
            .filter(|(_, s)| {
                s.finish.as_ref().is_some_and(|(until, _)| {
                    now >= *until || s.tracks.iter().all(|t| t.measure.bye)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(mut s) = sessions.remove(&id) {
                for t in &mut s.tracks {
                    let _ = poll.registry().deregister(&mut t.rtp);
                    let _ = poll.registry().deregister(&mut t.rtcp);
                }
                if let Some((_, reply)) = s.finish.take() {
                    for t in &mut s.tracks {
                        t.measure.finish(&mut timeline);
                    }
                    let _ = reply.send(s.tracks.into_iter().map(|t| t.measure).collect());
                }
            }
        }
        if !commands_open {
            // Nobody will ask for the rest: drop them.
            sessions.retain(|_, s| s.finish.is_some());
        }
        for s in sessions.values_mut() {
            if now >= s.next_rr {
                s.next_rr = now + RR_INTERVAL;
                send_receiver_reports(s, now, &mut rr);
            }
        }
    }
}

fn register(
    poll: &Poll,
    sessions: &mut HashMap<usize, Session>,
    id: usize,
    mut tracks: Vec<RxTrack>,
) {
    tracks.truncate(MAX_TRACKS);
    for (i, t) in tracks.iter_mut().enumerate() {
        let r = poll.registry();
        if let Err(e) = r
            .register(&mut t.rtp, token(id, i, false), Interest::READABLE)
            .and_then(|()| r.register(&mut t.rtcp, token(id, i, true), Interest::READABLE))
        {
            debug!(session = id, error = %e, "cannot watch a socket");
        }
    }
    let mut ssrc = [0u8; 4];
    let _ = getrandom::fill(&mut ssrc);
    sessions.insert(
        id,
        Session {
            tracks,
            our_ssrc: u32::from_be_bytes(ssrc),
            // The first report once packets have had time to arrive.
            next_rr: Instant::now() + Duration::from_secs(1),
            finish: None,
        },
    );
}

/// Reads everything queued on `socket`, one `recvmmsg` batch at a time,
/// handing each batch's datagram count to `batch` (which reads `bufs`).
fn drain(socket: &UdpSocket, bufs: &mut RecvBufs, mut batch: impl FnMut(&RecvBufs, usize)) {
    loop {
        let n = match mmsg::recv_batch(socket.as_fd(), bufs) {
            Ok(n) => n,
            Err(e) => {
                trace!(error = %e, "recv error");
                return;
            }
        };
        batch(bufs, n);
        if n < bufs.capacity() {
            return;
        }
    }
}

fn drain_rtp(t: &mut RxTrack, bufs: &mut RecvBufs, totals: &Totals, timeline: &mut Timeline) {
    let measure = &mut t.measure;
    drain(&t.rtp, bufs, |bufs, n| {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut bytes = 0;
        for i in 0..n {
            let (d, _) = bufs.get(i);
            bytes += d.len() as u64;
            // The kernel's arrival stamp, so this thread's own scheduling
            // delay is not counted as the sender's pacing error.
            let at = bufs
                .stamp(i)
                .and_then(|s| wall.duration_since(s).ok())
                .and_then(|ago| now.checked_sub(ago))
                .unwrap_or(now);
            if let Err(e) = measure.on_rtp(d, at, timeline) {
                trace!(error = %e, "datagram not counted");
            }
        }
        totals.packets.fetch_add(n as u64, Ordering::Relaxed);
        totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    });
}

fn drain_rtcp(s: &mut Session, track: usize, bufs: &mut RecvBufs) {
    let Some(t) = s.tracks.get_mut(track) else {
        return;
    };
    let (measure, server_rtcp) = (&mut t.measure, &mut t.server_rtcp);
    drain(&t.rtcp, bufs, |bufs, n| {
        let now = Instant::now();
        for i in 0..n {
            let (d, from) = bufs.get(i);
            if let Ok(packets) = rtcp::parse_compound(d) {
                // The server's RTCP source is where reports go, if SETUP
                // did not say.
                if server_rtcp.is_none() {
                    *server_rtcp = from;
                }
                measure.on_rtcp(&packets, now);
            }
        }
    });
}

fn send_receiver_reports(s: &mut Session, now: Instant, buf: &mut BytesMut) {
    for t in &mut s.tracks {
        let (Some(block), Some(dest)) = (t.measure.report_block(now), t.server_rtcp) else {
            continue;
        };
        buf.clear();
        rtcp::write_receiver_report(buf, s.our_ssrc, &[block], "rtspd-load");
        if let Err(e) = t.rtcp.send_to(buf, dest) {
            trace!(error = %e, "receiver report not sent");
        }
    }
}
