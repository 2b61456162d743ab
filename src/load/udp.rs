//! The load tester's UDP receiver: one thread that owns every session's
//! RTP/RTCP socket pairs, waits on all of them with one epoll set (mio),
//! drains each ready socket with `recvmmsg`, measures every packet
//! ([`TrackMeasure`]) and sends each session an RTCP receiver report about
//! every 5 s (RFC 3550 §6.4.2) so the server sees it alive.
//!
//! A pair is a track's own, or shared by sessions on different source
//! addresses ([`super::source`]): then each datagram goes to the session
//! whose address it was sent to (`IP_PKTINFO`), and the session's receiver
//! reports leave from that address.
//!
//! No task, timer or wake-up per packet: one `epoll_wait` returns every
//! socket that became ready, and one `recvmmsg` reads what each holds.
//! Arrival times are the kernel's (`SO_TIMESTAMPNS`), so the time this
//! thread takes to get round to a socket is not charged to the sender.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
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

use super::publish::{DelayProbe, SendLog};
use crate::net::mmsg::{self, RecvBufs};
use crate::proto::measure::{Timeline, TrackMeasure};
use crate::proto::rtcp;

/// Receiver reports go out this often per session (RFC 3550's minimum
/// interval is 5 s).
const RR_INTERVAL: Duration = Duration::from_secs(5);
/// Tracks per session the receiver accepts.
pub(super) const MAX_TRACKS: usize = 8;
const WAKER: Token = Token(usize::MAX);

/// Where a track's packets arrive.
pub(super) enum Ports {
    /// A pair of its own.
    Own { rtp: UdpSocket, rtcp: UdpSocket },
    /// The shared pair of RTP port `port` (handed over with
    /// [`Receiver::add_pair`]), on which the track's datagrams are those
    /// sent to `ip`.
    Shared { port: u16, ip: IpAddr },
}

/// One track's ports and measurement, handed to the receiver.
pub(super) struct RxTrack {
    pub(super) ports: Ports,
    pub(super) measure: TrackMeasure,
    /// Where receiver reports go: the server's RTCP port for this track.
    pub(super) server_rtcp: Option<SocketAddr>,
}

enum Cmd {
    /// A shared pair, sent before any session registers on it.
    AddPair { rtp: UdpSocket, rtcp: UdpSocket },
    /// Answered once the session's tracks are routed.
    Register {
        session: usize,
        tracks: Vec<RxTrack>,
        done: oneshot::Sender<()>,
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

/// A socket pair and who receives on it.
struct Pair {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    users: Users,
}

enum Users {
    /// Everything that arrives is this (session, track)'s.
    Own(usize, usize),
    /// By destination address.
    Shared(HashMap<IpAddr, (usize, usize)>),
}

impl Users {
    fn route(&self, dest: Option<IpAddr>) -> Option<(usize, usize)> {
        match self {
            Self::Own(s, t) => Some((*s, *t)),
            Self::Shared(by_ip) => by_ip.get(&dest?).copied(),
        }
    }
}

struct Track {
    measure: TrackMeasure,
    /// `--publish`: how its copies match the publisher's packets.
    probe: DelayProbe,
    server_rtcp: Option<SocketAddr>,
    /// Its pair (`None` if a shared one was unknown, which is a bug).
    pair: Option<usize>,
    /// On a shared pair, the address its datagrams arrive at and its
    /// receiver reports leave from.
    shared_ip: Option<IpAddr>,
}

struct Session {
    tracks: Vec<Track>,
    our_ssrc: u32,
    next_rr: Instant,
    finish: Option<(Instant, oneshot::Sender<Vec<TrackMeasure>>)>,
}

/// Handle to the receiver thread; dropping every handle stops it.
#[derive(Clone)]
pub(super) struct Receiver {
    /// Unbounded, so that [`Self::add_pair`] can send under a lock; it
    /// holds at most a few commands per session.
    tx: mpsc::UnboundedSender<Cmd>,
    waker: Arc<Waker>,
}

impl Receiver {
    /// Starts the thread; it returns the per-second totals of every packet
    /// it read, counted from the origin of the measures' clock.
    /// With `gro`, every RTP socket has `UDP_GRO` on
    /// ([`mmsg::enable_gro`]).
    pub(super) fn spawn(
        totals: Arc<Totals>,
        log: Option<Arc<SendLog>>,
        gro: bool,
    ) -> io::Result<(Self, JoinHandle<Timeline>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = mpsc::unbounded_channel();
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
                run(poll, rx, totals, log.as_deref(), gro)
            })?;
        Ok((Self { tx, waker }, thread))
    }

    /// Hands over a shared pair; sessions register on it by its RTP port
    /// afterwards.
    pub(super) fn add_pair(&self, rtp: UdpSocket, rtcp: UdpSocket) -> bool {
        let ok = self.tx.send(Cmd::AddPair { rtp, rtcp }).is_ok();
        let _ = self.waker.wake();
        ok
    }

    /// Hands over a session's tracks and returns once the receiver routes
    /// their datagrams (false if it stopped). Send PLAY after it: on a
    /// shared pair, a datagram for an address not yet routed is dropped.
    pub(super) async fn register(&self, session: usize, tracks: Vec<RxTrack>) -> bool {
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Register {
            session,
            tracks,
            done,
        };
        if self.tx.send(cmd).is_err() {
            return false;
        }
        let _ = self.waker.wake();
        rx.await.is_ok()
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
        if self.tx.send(cmd).is_err() {
            return Vec::new();
        }
        let _ = self.waker.wake();
        rx.await.unwrap_or_default()
    }
}

fn token(pair: usize, rtcp: bool) -> Token {
    Token(pair * 2 + usize::from(rtcp))
}

fn untoken(t: Token) -> (usize, bool) {
    (t.0 / 2, t.0 % 2 == 1)
}

/// The receiver thread's state.
#[derive(Default)]
struct State {
    pairs: HashMap<usize, Pair>,
    /// Shared pairs by RTP port.
    shared: HashMap<u16, usize>,
    next_pair: usize,
    sessions: HashMap<usize, Session>,
    /// `--udp-gro`: RTP sockets take coalesced datagrams.
    gro: bool,
}

impl State {
    fn add_pair(
        &mut self,
        poll: &Poll,
        mut rtp: UdpSocket,
        mut rtcp: UdpSocket,
        users: Users,
    ) -> usize {
        let id = self.next_pair;
        self.next_pair += 1;
        if self.gro {
            if let Err(e) = mmsg::enable_gro(rtp.as_fd()) {
                debug!(pair = id, error = %e, "no UDP_GRO: datagrams come one by one");
            }
        }
        let r = poll.registry();
        if let Err(e) = r
            .register(&mut rtp, token(id, false), Interest::READABLE)
            .and_then(|()| r.register(&mut rtcp, token(id, true), Interest::READABLE))
        {
            debug!(pair = id, error = %e, "cannot watch a socket");
        }
        self.pairs.insert(id, Pair { rtp, rtcp, users });
        id
    }

    fn register(&mut self, poll: &Poll, id: usize, tracks: Vec<RxTrack>) {
        let mut out = Vec::with_capacity(tracks.len());
        for (i, t) in tracks.into_iter().take(MAX_TRACKS).enumerate() {
            let (pair, shared_ip) = match t.ports {
                Ports::Own { rtp, rtcp } => (
                    Some(self.add_pair(poll, rtp, rtcp, Users::Own(id, i))),
                    None,
                ),
                Ports::Shared { port, ip } => {
                    let pair = self.shared.get(&port).copied();
                    match pair
                        .and_then(|p| self.pairs.get_mut(&p))
                        .map(|p| &mut p.users)
                    {
                        Some(Users::Shared(by_ip)) => {
                            if let Some(old) = by_ip.insert(ip, (id, i)) {
                                debug!(session = id, ?old, %ip, port, "two sessions on one address share a pair");
                            }
                        }
                        _ => debug!(session = id, port, "no shared pair on that port"),
                    }
                    (pair, Some(ip))
                }
            };
            out.push(Track {
                probe: DelayProbe::new(Instant::now()),
                measure: t.measure,
                server_rtcp: t.server_rtcp,
                pair,
                shared_ip,
            });
        }
        let mut ssrc = [0u8; 4];
        let _ = getrandom::fill(&mut ssrc);
        self.sessions.insert(
            id,
            Session {
                tracks: out,
                our_ssrc: u32::from_be_bytes(ssrc),
                // The first report once packets have had time to arrive.
                next_rr: Instant::now() + Duration::from_secs(1),
                finish: None,
            },
        );
    }

    /// Stops receiving for session `id`: closes its own pairs, leaves the
    /// shared ones.
    fn remove(&mut self, poll: &Poll, id: usize) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        for t in &s.tracks {
            let Some(pid) = t.pair else { continue };
            let own = match self.pairs.get_mut(&pid).map(|p| &mut p.users) {
                Some(Users::Own(..)) => true,
                Some(Users::Shared(by_ip)) => {
                    if let Some(ip) = t.shared_ip {
                        if by_ip.get(&ip).is_some_and(|(sid, _)| *sid == id) {
                            by_ip.remove(&ip);
                        }
                    }
                    false
                }
                None => false,
            };
            if own {
                if let Some(mut p) = self.pairs.remove(&pid) {
                    let _ = poll.registry().deregister(&mut p.rtp);
                    let _ = poll.registry().deregister(&mut p.rtcp);
                }
            }
        }
        Some(s)
    }
}

fn run(
    mut poll: Poll,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    totals: Arc<Totals>,
    log: Option<&SendLog>,
    gro: bool,
) -> Timeline {
    let mut timeline = Timeline::default();
    let mut events = Events::with_capacity(1024);
    let mut st = State {
        gro,
        ..State::default()
    };
    // A coalesced message holds up to 64 KiB.
    let mut bufs = RecvBufs::new(64, if gro { 65536 } else { 2048 });
    let mut rr = BytesMut::with_capacity(512);
    let mut commands_open = true;
    loop {
        if !commands_open && st.sessions.is_empty() {
            return timeline;
        }
        let now = Instant::now();
        let next = st
            .sessions
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
            let (pid, is_rtcp) = untoken(ev.token());
            let Some(pair) = st.pairs.get(&pid) else {
                continue;
            };
            if is_rtcp {
                drain_rtcp(pair, &mut st.sessions, &mut bufs);
            } else {
                drain_rtp(
                    pair,
                    &mut st.sessions,
                    &mut bufs,
                    &totals,
                    &mut timeline,
                    log,
                );
            }
        }
        while commands_open {
            match rx.try_recv() {
                Ok(Cmd::AddPair { rtp, rtcp }) => {
                    let port = rtp.local_addr().map_or(0, |a| a.port());
                    let id = st.add_pair(&poll, rtp, rtcp, Users::Shared(HashMap::new()));
                    st.shared.insert(port, id);
                }
                Ok(Cmd::Register {
                    session,
                    tracks,
                    done,
                }) => {
                    st.register(&poll, session, tracks);
                    let _ = done.send(());
                }
                Ok(Cmd::Finish {
                    session,
                    linger_until,
                    reply,
                }) => match st.sessions.get_mut(&session) {
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
        let done: Vec<usize> = st
            .sessions
            .iter()
            .filter(|(_, s)| {
                s.finish.as_ref().is_some_and(|(until, _)| {
                    now >= *until || s.tracks.iter().all(|t| t.measure.bye)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(mut s) = st.remove(&poll, id) {
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
            let orphans: Vec<usize> = st
                .sessions
                .iter()
                .filter(|(_, s)| s.finish.is_none())
                .map(|(id, _)| *id)
                .collect();
            for id in orphans {
                st.remove(&poll, id);
            }
        }
        for s in st.sessions.values_mut() {
            if now >= s.next_rr {
                s.next_rr = now + RR_INTERVAL;
                send_receiver_reports(s, &st.pairs, now, &mut rr);
            }
        }
    }
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

/// The track datagram `i` of the last batch on `pair` belongs to, and its
/// index in its session.
fn track_of<'a>(
    pair: &Pair,
    sessions: &'a mut HashMap<usize, Session>,
    bufs: &RecvBufs,
    i: usize,
) -> Option<(usize, &'a mut Track)> {
    let (sid, track) = pair.users.route(bufs.dest(i))?;
    Some((track, sessions.get_mut(&sid)?.tracks.get_mut(track)?))
}

fn drain_rtp(
    pair: &Pair,
    sessions: &mut HashMap<usize, Session>,
    bufs: &mut RecvBufs,
    totals: &Totals,
    timeline: &mut Timeline,
    log: Option<&SendLog>,
) {
    drain(&pair.rtp, bufs, |bufs, n| {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let (mut packets, mut bytes) = (0, 0);
        for i in 0..n {
            let Some((index, t)) = track_of(pair, sessions, bufs, i) else {
                trace!(dest = ?bufs.dest(i), "datagram for no session");
                continue;
            };
            // The kernel's arrival stamp, so this thread's own scheduling
            // delay is not counted as the sender's pacing error.
            let at = bufs
                .stamp(i)
                .and_then(|s| wall.duration_since(s).ok())
                .and_then(|ago| now.checked_sub(ago))
                .unwrap_or(now);
            for d in bufs.datagrams(i) {
                packets += 1;
                bytes += d.len() as u64;
                if let Err(e) = t.measure.on_rtp(d, at, timeline) {
                    trace!(error = %e, "datagram not counted");
                } else if let Some(log) = log {
                    log.observe(index, d, at, &mut t.probe);
                }
            }
        }
        totals.packets.fetch_add(packets, Ordering::Relaxed);
        totals.bytes.fetch_add(bytes, Ordering::Relaxed);
    });
}

fn drain_rtcp(pair: &Pair, sessions: &mut HashMap<usize, Session>, bufs: &mut RecvBufs) {
    drain(&pair.rtcp, bufs, |bufs, n| {
        let now = Instant::now();
        for i in 0..n {
            let Some((_, t)) = track_of(pair, sessions, bufs, i) else {
                continue;
            };
            let (d, from) = bufs.get(i);
            if let Ok(packets) = rtcp::parse_compound(d) {
                // The server's RTCP source is where reports go, if SETUP
                // did not say.
                if t.server_rtcp.is_none() {
                    t.server_rtcp = from;
                }
                t.measure.on_rtcp(&packets, now);
            }
        }
    });
}

/// Sends a session's receiver reports from each track's RTCP address: its
/// own socket's, or its address on a shared pair, which is where the server
/// knows the session's RTCP by (rtspd takes RTCP from there as liveness).
fn send_receiver_reports(
    s: &mut Session,
    pairs: &HashMap<usize, Pair>,
    now: Instant,
    buf: &mut BytesMut,
) {
    for t in &mut s.tracks {
        let (Some(block), Some(dest)) = (t.measure.report_block(now), t.server_rtcp) else {
            continue;
        };
        let Some(pair) = t.pair.and_then(|p| pairs.get(&p)) else {
            continue;
        };
        buf.clear();
        rtcp::write_receiver_report(buf, s.our_ssrc, &[block], "rtspd-load");
        let sent = match t.shared_ip {
            Some(src) => mmsg::send_from(pair.rtcp.as_fd(), buf, dest, src).map(drop),
            None => pair.rtcp.send_to(buf, dest).map(drop),
        };
        if let Err(e) = sent {
            trace!(error = %e, "receiver report not sent");
        }
    }
}
