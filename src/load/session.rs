//! One load-test session (RFC 2326 §A.2 client flow): OPTIONS, DESCRIBE,
//! SETUP of every track against the Content-Base, PLAY, keepalives at half
//! the session timeout while receiving, then TEARDOWN.
//!
//! With `--source-ips` the control connection is bound to the session's
//! source address before it connects ([`super::source`]). Over `rtsps://`
//! the TLS handshake ([`super::tls`]) follows the TCP connect, and counts
//! in the setup time; the rest runs on the TLS stream as on a plain one.
//!
//! Over UDP the packets go to the shared receiver thread ([`super::udp`]);
//! over TCP they arrive interleaved on this session's own connection and
//! are measured here, and receiver reports go back the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use url::Url;

use super::auth::ClientAuth;
use super::conn::{self, Conn, Stream};
use super::publish::{DelayProbe, SendLog};
use super::udp::{Ports, RxTrack, MAX_TRACKS};
use super::{Ctx, LoadError};
use crate::proto::measure::{Timeline, TrackMeasure};
use crate::proto::rtcp;
use crate::proto::rtsp::session_header::SessionHeader;
use crate::proto::rtsp::transport::{parse_transports, Transport};
use crate::proto::sdp::{parse_offer, OfferedTrack};

/// Session timeout assumed when the server gives none (RFC 2326 §12.37).
const DEFAULT_TIMEOUT: u32 = 60;
/// Longest wait for the BYE after TEARDOWN (it ends as soon as every track
/// said BYE).
const BYE_LINGER: Duration = Duration::from_secs(1);
const RR_INTERVAL: Duration = Duration::from_secs(5);

/// What one session reports.
#[derive(Debug)]
pub(super) struct SessionResult {
    pub(super) outcome: Result<(), LoadError>,
    /// Connect to PLAY reply.
    pub(super) setup: Option<Duration>,
    /// Connect to the first RTP packet of any track.
    pub(super) first_packet: Option<Duration>,
    pub(super) tracks: Vec<TrackMeasure>,
    /// Per-second totals of what arrived on this session's connection
    /// (TCP only; UDP packets are counted by the receiver thread).
    pub(super) timeline: Timeline,
}

impl SessionResult {
    fn new(outcome: Result<(), LoadError>) -> Self {
        Self {
            outcome,
            setup: None,
            first_packet: None,
            tracks: Vec::new(),
            timeline: Timeline::default(),
        }
    }
}

struct Track {
    offer: OfferedTrack,
    url: String,
    ssrc: Option<u32>,
    server_rtcp: Option<SocketAddr>,
}

/// Runs session `id` to the end; never panics on what the server sends.
pub(super) async fn run(ctx: Arc<Ctx>, id: usize) -> SessionResult {
    let started = Instant::now();
    let failed = |e| SessionResult::new(Err(e));
    let tcp = match conn::connect(ctx.server, ctx.sources.addr(id)).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let auth = ClientAuth::new(ctx.secret.clone(), ctx.nonce_counts.clone());
    match &ctx.tls {
        None => drive(&ctx, id, Conn::new(tcp, auth), started).await,
        Some(tls) => match tls.handshake(tcp).await {
            Ok(s) => drive(&ctx, id, Conn::new(s, auth), started).await,
            Err(e) => failed(e),
        },
    }
}

/// The session on its connected control connection.
async fn drive<S: Stream>(
    ctx: &Ctx,
    id: usize,
    mut conn: Conn<S>,
    started: Instant,
) -> SessionResult {
    let mut result = SessionResult::new(Ok(()));
    let mut registered = false;
    let mut tcp = TcpTracks {
        tracks: Vec::new(),
        timeline: Timeline::default(),
        log: ctx.publisher.clone(),
        probes: Vec::new(),
        since: started.into_std(),
    };
    let flow = flow(
        ctx,
        id,
        &mut conn,
        started,
        &mut result,
        &mut registered,
        &mut tcp,
    )
    .await;
    if let Err(e) = flow {
        result.outcome = Err(e);
    }
    if conn.session.is_some() {
        let url = ctx.url.as_str().to_owned();
        let mut sink = |ch: u8, data: Bytes| tcp.on_frame(ch, &data);
        let teardown = conn.request("TEARDOWN", &url, &[], &mut sink).await;
        if let (Err(e), Ok(())) = (teardown, &result.outcome) {
            result.outcome = Err(e);
        }
        if ctx.tcp {
            // The BYE follows the reply on the same connection.
            let until = Instant::now() + BYE_LINGER;
            while Instant::now() < until && !tcp.tracks.iter().all(|t| t.bye) {
                let mut sink = |ch: u8, data: Bytes| tcp.on_frame(ch, &data);
                match conn.next_response(until, &mut sink).await {
                    Ok(None) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
        }
    }
    result.tracks = if registered {
        ctx.receiver.finish(id, BYE_LINGER).await
    } else {
        for t in &mut tcp.tracks {
            t.finish(&mut tcp.timeline);
        }
        tcp.tracks
    };
    result.timeline = tcp.timeline;
    let started_std = started.into_std();
    result.first_packet = result
        .tracks
        .iter()
        .filter_map(|t| t.first_arrival)
        .min()
        .map(|f| f.saturating_duration_since(started_std));
    result
}

/// The measurements of a session whose packets arrive interleaved on its
/// own connection (channel `2k` is track `k`'s RTP, `2k + 1` its RTCP).
struct TcpTracks {
    tracks: Vec<TrackMeasure>,
    timeline: Timeline,
    /// `--publish`: the publisher's send times, and how each track's
    /// copies match them.
    log: Option<Arc<SendLog>>,
    probes: Vec<DelayProbe>,
    /// When the session started: copies of packets sent before came from
    /// a cache.
    since: std::time::Instant,
}

impl TcpTracks {
    fn on_frame(&mut self, channel: u8, data: &[u8]) {
        let now = std::time::Instant::now();
        let Some(t) = self.tracks.get_mut(usize::from(channel / 2)) else {
            return;
        };
        if channel % 2 == 0 {
            // Not RTP: not counted (as over UDP).
            let counted = t.on_rtp(data, now, &mut self.timeline).is_ok();
            let track = usize::from(channel / 2);
            if let (true, Some(log)) = (counted, &self.log) {
                if self.probes.len() <= track {
                    self.probes.resize(track + 1, DelayProbe::new(self.since));
                }
                log.observe(track, data, now, &mut self.probes[track]);
            }
        } else if let Ok(packets) = rtcp::parse_compound(data) {
            t.on_rtcp(&packets, now);
        }
    }
}

/// The URL a DESCRIBE answer's controls are relative to: its Content-Base,
/// else its Content-Location, else the request's `url`, with a trailing
/// `/` (RFC 2326 §C.1.1).
pub(crate) fn base_url(
    describe: &crate::proto::rtsp::Response,
    url: &str,
) -> Result<Url, LoadError> {
    let base_str = describe
        .headers
        .get("Content-Base")
        .or_else(|| describe.headers.get("Content-Location"))
        .unwrap_or(url);
    let mut base =
        Url::parse(base_str).map_err(|e| LoadError::Protocol(format!("Content-Base: {e}")))?;
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    Ok(base)
}

/// A SETUP answer's session (RFC 2326 §12.37) and the first transport it
/// names that parses (§12.39; `None`: none did).
pub(crate) fn setup_reply(
    reply: &crate::proto::rtsp::Response,
) -> Result<(SessionHeader, Option<Transport>), String> {
    let session: SessionHeader = reply
        .headers
        .get("Session")
        .ok_or_else(|| "SETUP reply without Session".to_owned())?
        .parse()
        .map_err(|e| format!("Session: {e}"))?;
    let chosen = reply
        .headers
        .get("Transport")
        .and_then(|v| parse_transports(v).into_iter().find_map(Result::ok));
    Ok((session, chosen))
}

/// Resolves a track's `a=control` against the base URL (RFC 2326 §C.1.1).
pub(crate) fn control_url(base: &Url, control: Option<&str>) -> Result<String, LoadError> {
    match control {
        None | Some("*") => Ok(base.as_str().trim_end_matches('/').to_owned()),
        Some(c) if c.starts_with("rtsp://") || c.starts_with("rtsps://") => Ok(c.to_owned()),
        Some(c) => base
            .join(c)
            .map(|u| u.to_string())
            .map_err(|e| LoadError::Protocol(format!("control {c:?}: {e}"))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn flow<S: Stream>(
    ctx: &Ctx,
    id: usize,
    conn: &mut Conn<S>,
    started: Instant,
    result: &mut SessionResult,
    registered: &mut bool,
    tcp: &mut TcpTracks,
) -> Result<(), LoadError> {
    let url = ctx.url.as_str().to_owned();
    let mut ignore = |_: u8, _: Bytes| {};
    let options = conn.request("OPTIONS", &url, &[], &mut ignore).await?;
    let keepalive_method = match options.headers.get("Public") {
        Some(p) if p.split(',').any(|m| m.trim() == "GET_PARAMETER") => "GET_PARAMETER",
        _ => "OPTIONS",
    };
    let describe = conn
        .request(
            "DESCRIBE",
            &url,
            &[("Accept", "application/sdp")],
            &mut ignore,
        )
        .await?;
    let base = base_url(&describe, &url)?;
    let offers = parse_offer(&describe.body).map_err(|e| LoadError::Protocol(e.to_string()))?;
    let mut tracks = Vec::new();
    for offer in offers.into_iter().take(MAX_TRACKS) {
        let url = control_url(&base, offer.control.as_deref())?;
        tracks.push(Track {
            offer,
            url,
            ssrc: None,
            server_rtcp: None,
        });
    }
    let local_ip = conn.local_addr()?.ip();
    let server_ip = conn.peer_addr()?.ip();
    let mut ports = Vec::new();
    let mut timeout = DEFAULT_TIMEOUT;
    for (i, t) in tracks.iter_mut().enumerate() {
        let transport = if ctx.tcp {
            format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1)
        } else {
            let bind = |e: std::io::Error| LoadError::Bind(e.kind());
            let port = match ctx.sources.shared() {
                // The server sends to (our address, port): the shared
                // pair's receiver knows us by our address.
                Some(shared) => {
                    let port = shared.port(id, i, &ctx.receiver).map_err(bind)?;
                    ports.push(Ports::Shared { port, ip: local_ip });
                    port
                }
                None => {
                    let (rtp, rtcp) = bind_pair(local_ip).map_err(bind)?;
                    let port = rtp.local_addr().map_err(bind)?.port();
                    ports.push(Ports::Own { rtp, rtcp });
                    port
                }
            };
            format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1)
        };
        let reply = conn
            .request("SETUP", &t.url, &[("Transport", &transport)], &mut ignore)
            .await?;
        let (session, chosen) = setup_reply(&reply).map_err(LoadError::Protocol)?;
        timeout = session.timeout.unwrap_or(DEFAULT_TIMEOUT);
        conn.session = Some(session.id);
        if let Some(tr) = chosen {
            t.ssrc = tr.ssrc;
            t.server_rtcp = tr
                .server_port
                .map(|(_, rtcp)| SocketAddr::new(server_ip, rtcp));
        }
    }
    let measures: Vec<TrackMeasure> = tracks
        .iter()
        .map(|t| TrackMeasure::new(t.offer.clock_rate, t.ssrc, ctx.clock))
        .collect();
    if ctx.tcp {
        tcp.tracks = measures;
    } else {
        let rx: Vec<RxTrack> = ports
            .into_iter()
            .zip(measures)
            .zip(&tracks)
            .map(|((ports, measure), t)| RxTrack {
                ports,
                measure,
                server_rtcp: t.server_rtcp,
            })
            .collect();
        if !ctx.receiver.register(id, rx).await {
            return Err(LoadError::Protocol("receiver stopped".into()));
        }
        *registered = true;
    }
    let mut play_headers = Vec::new();
    if let Some(r) = &ctx.opts.range {
        play_headers.push(("Range", r.as_str()));
    }
    let mut sink = |ch: u8, data: Bytes| tcp.on_frame(ch, &data);
    conn.request("PLAY", &url, &play_headers, &mut sink).await?;
    result.setup = Some(started.elapsed());
    ctx.progress.established();

    // Receive until the end, keeping the session alive.
    let end = Instant::now() + ctx.opts.duration;
    let keepalive_every = Duration::from_secs(u64::from(timeout.max(2) / 2));
    let mut next_keepalive = Instant::now() + keepalive_every;
    let mut next_rr = Instant::now() + Duration::from_secs(1);
    let mut rr = BytesMut::new();
    let mut our_ssrc = [0u8; 4];
    let _ = getrandom::fill(&mut our_ssrc);
    loop {
        let now = Instant::now();
        if now >= end || ctx.stop.is_cancelled() {
            return Ok(());
        }
        if now >= next_keepalive {
            next_keepalive = now + keepalive_every;
            let mut sink = |ch: u8, data: Bytes| tcp.on_frame(ch, &data);
            conn.request(keepalive_method, &url, &[], &mut sink).await?;
        }
        if ctx.tcp && now >= next_rr {
            next_rr = now + RR_INTERVAL;
            for (i, t) in tcp.tracks.iter_mut().enumerate() {
                if let Some(block) = t.report_block(now.into_std()) {
                    rr.clear();
                    rtcp::write_receiver_report(
                        &mut rr,
                        u32::from_be_bytes(our_ssrc),
                        &[block],
                        "rtspd-load",
                    );
                    conn.send_frame((2 * i + 1) as u8, &rr).await?;
                }
            }
        }
        let wake = end
            .min(next_keepalive)
            .min(if ctx.tcp { next_rr } else { end });
        if ctx.tcp {
            let mut sink = |ch: u8, data: Bytes| tcp.on_frame(ch, &data);
            tokio::select! {
                r = conn.next_response(wake, &mut sink) => {
                    // A response nobody waits for (a server-sent request is an
                    // error in the parser) is ignored.
                    r?;
                }
                _ = ctx.stop.cancelled() => return Ok(()),
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = ctx.stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// Binds an even RTP port and the next one for RTCP on `ip`.
fn bind_pair(ip: IpAddr) -> std::io::Result<(mio::net::UdpSocket, mio::net::UdpSocket)> {
    let (rtp, rtcp) = crate::net::bind_pair(ip, 0)?;
    // Without kernel stamps arrival falls back to the time of reading.
    if let Err(e) = crate::net::mmsg::enable_timestamps(std::os::fd::AsFd::as_fd(&rtp)) {
        tracing::debug!(error = %e, "no kernel receive timestamps");
    }
    Ok((
        mio::net::UdpSocket::from_std(rtp),
        mio::net::UdpSocket::from_std(rtcp),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_urls_resolve_against_the_base() {
        let base = Url::parse("rtsp://h:8554/a/clip.wav/").unwrap();
        assert_eq!(
            control_url(&base, Some("trackID=0")).unwrap(),
            "rtsp://h:8554/a/clip.wav/trackID=0"
        );
        assert_eq!(
            control_url(&base, Some("*")).unwrap(),
            "rtsp://h:8554/a/clip.wav"
        );
        assert_eq!(
            control_url(&base, None).unwrap(),
            "rtsp://h:8554/a/clip.wav"
        );
        assert_eq!(
            control_url(&base, Some("rtsp://other/x/track1")).unwrap(),
            "rtsp://other/x/track1"
        );
    }
}
