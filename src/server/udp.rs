//! The shared RTP/RTCP UDP port pair (one for all sessions, as MediaMTX
//! does), the pacing loop that sends from it, and the RTCP receiver.
//!
//! Sends are non-blocking: a full socket buffer (`EAGAIN`, `ENOBUFS`) drops
//! that one datagram for that one client, and ICMP-driven errors such as
//! `ECONNREFUSED` are counted and ignored, so no client can stall or kill
//! the loop (ROBUSTNESS B11 #78, #80).

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::sessions::SessionTable;
use crate::proto::error::Error;
use crate::proto::pacer::{Event, GroupId, Pacer, PlayInfo, TrackConfig, Transmit};
use crate::proto::rtcp::{self, Packet};
use crate::proto::session::PlayRequest;

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
    RemoveTrack {
        group: GroupId,
        track: usize,
    },
}

/// Counters of the UDP side, readable while running.
#[derive(Debug, Default)]
pub struct UdpStats {
    pub sent: AtomicU64,
    pub send_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    pub rtcp_received: AtomicU64,
    pub rtcp_invalid: AtomicU64,
}

/// Binds an RTP socket on an even port and RTCP on the next one. With
/// `port == 0`, picks a free pair.
pub async fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    if port != 0 {
        if port % 2 != 0 || port == u16::MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the RTP port must be even",
            ));
        }
        let rtp = UdpSocket::bind((ip, port)).await?;
        let rtcp = UdpSocket::bind((ip, port + 1)).await?;
        return Ok((rtp, rtcp));
    }
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0)).await?;
        let p = rtp.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)).await {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free RTP/RTCP port pair",
    ))
}

fn send(socket: &UdpSocket, t: &Transmit, stats: &UdpStats) {
    match socket.try_send_to(&t.data, t.dest) {
        Ok(_) => {
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            stats.send_dropped.fetch_add(1, Ordering::Relaxed);
            trace!(dest = %t.dest, "socket buffer full, packet dropped");
        }
        Err(e) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            trace!(dest = %t.dest, error = %e, "send failed");
        }
    }
}

/// The one pacing loop: owns the [`Pacer`], applies commands, and sends
/// every due datagram. Ends when `cancel` fires (saying BYE to every
/// session first) or when every command sender is gone.
pub async fn run_pacer(
    mut pacer: Pacer,
    mut commands: mpsc::Receiver<Command>,
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    sessions: Arc<SessionTable>,
    stats: Arc<UdpStats>,
    cancel: CancellationToken,
) {
    let mut batch: Vec<Transmit> = Vec::with_capacity(256);
    loop {
        let deadline = pacer.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                for e in sessions.drain() {
                    pacer.remove(e.group, Instant::now());
                }
                flush(&mut pacer, Instant::now(), &mut batch, &rtp, &rtcp, &stats);
                return;
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                apply(&mut pacer, cmd);
                // Take whatever else is queued before sending.
                while let Ok(cmd) = commands.try_recv() {
                    apply(&mut pacer, cmd);
                }
            }
            _ = sleep_until(deadline) => {}
        }
        flush(&mut pacer, Instant::now(), &mut batch, &rtp, &rtcp, &stats);
        while let Some(Event::Ended(group)) = pacer.poll_event() {
            debug!(group, "end of media");
            sessions.ended(group);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn apply(pacer: &mut Pacer, cmd: Command) {
    let now = Instant::now();
    match cmd {
        Command::AddTrack { group, track, cfg } => pacer.add_track(group, track, cfg),
        Command::Play { group, req, reply } => {
            let _ = reply.send(pacer.play(group, req, now));
        }
        Command::Pause { group, reply } => {
            let _ = reply.send(pacer.pause(group));
        }
        Command::Remove { group } => pacer.remove(group, now),
        Command::RemoveTrack { group, track } => pacer.remove_track(group, track, now),
    }
}

/// Collects every datagram due at `now`, then sends them back to back.
fn flush(
    pacer: &mut Pacer,
    now: Instant,
    batch: &mut Vec<Transmit>,
    rtp: &UdpSocket,
    rtcp: &UdpSocket,
    stats: &UdpStats,
) {
    batch.clear();
    while let Some(t) = pacer.poll_transmit(now) {
        batch.push(t);
    }
    for t in batch.iter() {
        send(if t.rtcp { rtcp } else { rtp }, t, stats);
    }
}

/// Receives RTCP from clients: validates it (RFC 3550 A.2), refreshes the
/// session it comes from, and logs receiver reports at debug level.
pub async fn run_rtcp_receiver(
    socket: Arc<UdpSocket>,
    sessions: Arc<SessionTable>,
    stats: Arc<UdpStats>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
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

/// Drains the RTP socket: clients send NAT-opening packets to it (ffmpeg
/// does); they carry nothing for a play-only server.
pub async fn run_rtp_drain(socket: Arc<UdpSocket>, cancel: CancellationToken) {
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => if let Err(e) = r { trace!(error = %e, "rtp recv error") },
        }
    }
}
