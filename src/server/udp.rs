//! The shared RTP/RTCP UDP port pair (one for all sessions, as MediaMTX
//! does) and what arrives on it: RTCP from clients (RFC 3550 §6.4, checked
//! per Appendix A.2) and publishers' RTP. Sending from the pair is the
//! pacing thread's ([`super::pacing`]).

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::channels::Channels;
use super::pacing::DataHandle;
use super::sessions::SessionTable;
use crate::metrics::Metrics;
use crate::proto::rtcp::{self, Packet};

/// Counters of what arrives on the pair, readable while running.
#[derive(Debug, Default)]
pub struct RecvStats {
    pub rtcp_received: AtomicU64,
    pub rtcp_invalid: AtomicU64,
}

/// Receives RTCP from clients: validates it (RFC 3550 A.2), hands a
/// recording publisher's sender reports to its channel, refreshes the
/// session it comes from, keeps each receiver report as the session's last
/// and observes its loss and jitter (§6.4.1) into the listener histograms.
pub async fn run_rtcp_receiver(
    socket: Arc<UdpSocket>,
    sessions: Arc<SessionTable>,
    channels: Arc<Channels>,
    data: DataHandle,
    stats: Arc<RecvStats>,
    metrics: Arc<Metrics>,
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
        // A publisher's sender reports give its channel the source's clock.
        if let Some(d) = channels.udp_rtcp_packet(from, Instant::now()) {
            if let Some(id) = d.touch {
                sessions.touch(&id, Instant::now());
            }
            if data.publish_rtcp(d.key, d.track, &buf[..n]).is_err() {
                return;
            }
            continue;
        }
        let Some(session) = sessions.touch_by_rtcp(from, Instant::now()) else {
            trace!(%from, "RTCP from an unknown address ignored");
            continue;
        };
        for p in packets {
            if let Packet::ReceiverReport { reports, .. } | Packet::SenderReport { reports, .. } = p
            {
                for r in reports {
                    if let Some(jitter_s) = sessions.receiver_report(from, &r) {
                        metrics.loss.observe(u64::from(r.fraction_lost));
                        metrics.jitter.observe((jitter_s * 1e9) as u64);
                    }
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
    data: DataHandle,
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
        if data
            .publish(d.key, d.track, Bytes::copy_from_slice(&buf[..n]))
            .is_err()
        {
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
