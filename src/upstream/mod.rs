//! The upstream (pull) RTSP client a live channel uses to relay a camera or
//! another server (issue 13 "Pull sources"): the RFC 2326 §A.2 client flow
//! (OPTIONS §10.1, DESCRIBE §10.2 with `Accept: application/sdp`, SETUP
//! §10.4 of every track, PLAY §10.5, keepalives, TEARDOWN §10.7) over
//! `rtsp://` or `rtsps://`, media over UDP or interleaved on the control
//! connection (§10.12), delivered as [`UpstreamEvent`]s on a bounded queue.
//!
//! - The control connection is the load tester's ([`crate::load::conn`]):
//!   the same response parser, Digest answers ([`crate::load::auth`], the
//!   credentials from the URL's userinfo, never logged) and TLS client
//!   ([`crate::load::tls`]). See docs/DEPENDENCIES.md for why this and not
//!   `retina`.
//! - The reconnect schedule (exponential backoff from 1 s to 30 s), the
//!   `auto` transport's fallback from UDP to TCP and the flood guard are
//!   sans-IO, in [`crate::proto::upstream`]; this file only drives them.
//! - Everything is bounded: the SDP size ([`UpstreamConfig::max_sdp`]),
//!   the packet and bit rates (an upstream over either is cut off, logged
//!   and retried after the backoff), and both queues (packets that find
//!   one full are dropped and counted, never buffered).
//! - Logs: one line per state change (up, down, fallback), not one per
//!   retry; nothing per packet above `trace`.
//!
//! Events of one attempt come in order: [`UpstreamEvent::Described`] after
//! PLAY was answered, [`UpstreamEvent::Up`] before the first packet, then
//! packets. A failure after `Up` (or the first failure of all) sends one
//! [`UpstreamEvent::Down`]; the retries of that outage are quiet until the
//! next `Described`/`Up`.

mod describe;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

pub use describe::{Description, UpstreamTrack};

use crate::load::auth::{ClientAuth, Secret};
use crate::load::conn::{self, Conn, Stream};
use crate::load::session::{base_url, control_url, setup_reply};
use crate::load::tls::{Connector, TlsError};
use crate::load::{LoadError, TlsOptions};
use crate::proto::redirect::VIA_TOKEN;
use crate::proto::rtsp::transport::LowerTransport;
use crate::proto::upstream::{
    Backoff, Failure, Flood, Lower, RateGuard, Supervisor, TransportMode, BACKOFF_MAX, BACKOFF_MIN,
};

/// Most tracks set up (interleaved channels `2k`, `2k + 1` fit a `u8`).
pub const MAX_TRACKS: usize = 16;
/// Session timeout assumed when the upstream gives none (RFC 2326 §12.37).
const DEFAULT_TIMEOUT: u32 = 60;
/// Packets between the socket readers and the session loop.
const INTERNAL_QUEUE: usize = 1024;
/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 65_536;
/// How long TEARDOWN may take when stopping.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// What to pull and within which bounds.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `rtsp://[user:pass@]host[:port]/path` or `rtsps://...`.
    pub url: String,
    /// The local address to connect from (the server's own `bind`, so an
    /// origin sees the edge by the address it serves on); `None`, or one of
    /// another family than the upstream's: the system's choice.
    pub source_ip: Option<IpAddr>,
    pub transport: TransportMode,
    /// How an `rtsps://` upstream's certificate is checked.
    pub tls: TlsOptions,
    /// Largest DESCRIBE body accepted, bytes.
    pub max_sdp: usize,
    /// Packets (RTP and RTCP, all tracks) per second; 0: no cap.
    pub max_packets_per_sec: u32,
    /// Bits per second (all tracks); 0: no cap.
    pub max_bitrate: u64,
    /// `auto`: how long a UDP attempt waits for its first packet before
    /// falling back to TCP. Also the first-packet wait of other attempts.
    pub first_packet_timeout: Duration,
    /// A playing upstream that sends nothing for this long is down.
    pub stall_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Capacity of the event queue [`Upstream::spawn`] creates.
    pub queue: usize,
}

impl UpstreamConfig {
    /// `url` with the defaults: `auto`, 64 KiB of SDP, 20,000 packets/s,
    /// 100 Mbit/s, 3 s for the first packet, 10 s of stall, backoff from
    /// 1 s to 30 s, 1,024 queued events.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            transport: TransportMode::Auto,
            tls: TlsOptions::default(),
            max_sdp: 64 * 1024,
            max_packets_per_sec: 20_000,
            max_bitrate: 100_000_000,
            first_packet_timeout: Duration::from_secs(3),
            stall_timeout: Duration::from_secs(10),
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            queue: 1024,
            source_ip: None,
        }
    }
}

/// What the client tells its channel.
#[derive(Debug, Clone)]
pub enum UpstreamEvent {
    /// The upstream's tracks, after its PLAY was answered (again after
    /// each reconnect: a camera may have changed).
    Described(Description),
    /// Media flows (sent before the first packet of an attempt).
    Up { transport: Lower },
    /// An RTP packet of track `track` (an index into the description).
    Rtp { track: usize, packet: Bytes },
    /// An RTCP compound packet of track `track` (sender reports for lip
    /// sync).
    Rtcp { track: usize, packet: Bytes },
    /// The upstream failed; the client retries after its backoff.
    Down { reason: String },
}

/// Why an attempt failed (never naming the password).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream URL: {0}")]
    Url(String),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("resolving {host}: {kind}")]
    Resolve {
        host: String,
        kind: std::io::ErrorKind,
    },
    #[error(transparent)]
    Rtsp(#[from] LoadError),
    #[error("SDP: {0}")]
    Sdp(#[from] crate::proto::sdp::SdpError),
    #[error("SETUP reply: {0}")]
    Setup(String),
    #[error("no packet within {0:?}")]
    NoMedia(Duration),
    #[error("no packet for {0:?}")]
    Stalled(Duration),
    #[error("flooding, cut off: {0}")]
    Flood(#[from] Flood),
    #[error("the event receiver is gone")]
    Gone,
}

/// One upstream, its URL checked and its credentials taken out.
#[derive(Debug)]
pub struct Upstream {
    cfg: UpstreamConfig,
    /// The URL without userinfo: what requests name and logs show.
    url: Url,
    host: String,
    port: u16,
    secret: Option<Secret>,
    tls: Option<Connector>,
}

impl Upstream {
    /// Checks `cfg`: an `rtsp://` or `rtsps://` URL with a host, and for
    /// `rtsps://` a way to trust the certificate. `rtsps://` carries media
    /// interleaved (RTP over UDP would leave the protected connection).
    pub fn new(mut cfg: UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut url = Url::parse(&cfg.url).map_err(|e| UpstreamError::Url(e.to_string()))?;
        let secret = Secret::from_url(&mut url);
        // The config keeps no password either.
        cfg.url = url.to_string();
        let (tls, default_port) = match url.scheme() {
            "rtsp" => (false, 554),
            "rtsps" => (true, 322),
            s => return Err(UpstreamError::Url(format!("scheme {s:?}"))),
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(UpstreamError::Url("no host".into())),
        };
        let tls = if tls {
            if cfg.transport == TransportMode::Udp {
                return Err(UpstreamError::Url(
                    "rtsps:// carries media interleaved; transport udp does not go with it".into(),
                ));
            }
            cfg.transport = TransportMode::Tcp;
            Some(Connector::new(&cfg.tls, &host)?)
        } else {
            None
        };
        Ok(Self {
            port: url.port().unwrap_or(default_port),
            cfg,
            url,
            host,
            secret,
            tls,
        })
    }

    /// The URL requests name (no userinfo).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// Runs the client on a task until `cancel`; events come on the
    /// returned queue of [`UpstreamConfig::queue`] entries.
    pub fn spawn(
        self,
        cancel: CancellationToken,
    ) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<UpstreamEvent>) {
        let (tx, rx) = mpsc::channel(self.cfg.queue.max(1));
        (tokio::spawn(self.run(tx, cancel)), rx)
    }

    /// Connects, plays and reconnects until `cancel` (then TEARDOWN) or
    /// until `events` is closed.
    pub async fn run(self, events: mpsc::Sender<UpstreamEvent>, cancel: CancellationToken) {
        let span = tracing::info_span!("upstream", url = %self.url);
        self.run_inner(events, cancel).instrument(span).await;
    }

    async fn run_inner(self, events: mpsc::Sender<UpstreamEvent>, cancel: CancellationToken) {
        let mut sup = Supervisor::new(
            self.cfg.transport,
            Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max),
        );
        let counts = Arc::default();
        loop {
            let lower = sup.lower();
            let mut attempt = Attempt {
                up: &self,
                events: &events,
                cancel: &cancel,
                sup: &mut sup,
                lower,
                dropped: 0,
            };
            let outcome = attempt.run(&counts).await;
            let dropped = attempt.dropped;
            if dropped > 0 {
                tracing::debug!(dropped, "packets dropped on a full queue");
            }
            let err = match outcome {
                Ok(()) | Err(UpstreamError::Gone) => break,
                Err(e) => e,
            };
            if cancel.is_cancelled() {
                break;
            }
            let failure = match (&err, lower) {
                (UpstreamError::NoMedia(_), Lower::Udp)
                | (
                    UpstreamError::Rtsp(LoadError::Status {
                        method: "SETUP",
                        status: 461,
                    }),
                    Lower::Udp,
                ) => Failure::NoUdpMedia,
                _ => Failure::Other,
            };
            let now = Instant::now();
            let retry = sup.on_failure(failure, now.into_std());
            let wait = retry.at.saturating_duration_since(now.into_std());
            if let UpstreamError::Flood(_) = err {
                tracing::warn!(error = %err, "upstream cut off");
            }
            if retry.announce {
                tracing::warn!(error = %err, retry_in = ?wait, "upstream down");
                let down = UpstreamEvent::Down {
                    reason: err.to_string(),
                };
                if send(&events, &cancel, down).await.is_err() {
                    break;
                }
            } else if sup.lower() != lower {
                tracing::info!(error = %err, "no media over UDP, falling back to TCP");
            } else {
                tracing::debug!(error = %err, retry_in = ?wait, "upstream still down");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => break,
            }
        }
        sup.stop();
        tracing::debug!("upstream stopped");
    }
}

/// Sends a control event, waiting for room unless cancelled.
async fn send(
    events: &mpsc::Sender<UpstreamEvent>,
    cancel: &CancellationToken,
    ev: UpstreamEvent,
) -> Result<(), UpstreamError> {
    tokio::select! {
        r = events.send(ev) => r.map_err(|_| UpstreamError::Gone),
        _ = cancel.cancelled() => Ok(()),
    }
}

/// A packet on its way from a socket (or the interleaved connection) to
/// the session loop.
struct Packet {
    track: usize,
    rtcp: bool,
    data: Bytes,
}

/// One connection to the upstream, from connect to failure or stop.
struct Attempt<'a> {
    up: &'a Upstream,
    events: &'a mpsc::Sender<UpstreamEvent>,
    cancel: &'a CancellationToken,
    sup: &'a mut Supervisor,
    lower: Lower,
    /// Packets dropped on a full queue.
    dropped: u64,
}

impl Attempt<'_> {
    /// `Ok` when cancelled (after TEARDOWN).
    async fn run(
        &mut self,
        counts: &Arc<crate::load::auth::NonceCounts>,
    ) -> Result<(), UpstreamError> {
        let up = self.up;
        let addr = tokio::net::lookup_host((up.host.as_str(), up.port))
            .await
            .map_err(|e| UpstreamError::Resolve {
                host: up.host.clone(),
                kind: e.kind(),
            })?
            .next()
            .ok_or_else(|| UpstreamError::Resolve {
                host: up.host.clone(),
                kind: std::io::ErrorKind::NotFound,
            })?;
        let tcp = tokio::select! {
            r = conn::connect(addr, up.cfg.source_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4())) => r?,
            _ = self.cancel.cancelled() => return Ok(()),
        };
        let auth = ClientAuth::new(up.secret.clone(), counts.clone());
        match &up.tls {
            None => self.session(Conn::new(tcp, auth)).await,
            Some(tls) => {
                let stream = tokio::select! {
                    r = tls.handshake(tcp) => r?,
                    _ = self.cancel.cancelled() => return Ok(()),
                };
                self.session(Conn::new(stream, auth)).await
            }
        }
    }

    async fn session<S: Stream>(&mut self, mut conn: Conn<S>) -> Result<(), UpstreamError> {
        conn.set_max_body(self.up.cfg.max_sdp);
        // An origin rtspd never redirects an edge's pull (RFC 2326 §12.43).
        if let Ok(local) = conn.local_addr() {
            conn.set_via(format!("RTSP/1.0 {} ({VIA_TOKEN})", local.ip()));
        }
        let (tx, mut rx) = mpsc::channel::<Packet>(INTERNAL_QUEUE);
        let mut readers = JoinSet::new();
        let cancel = self.cancel;
        let flow = tokio::select! {
            r = self.start(&mut conn, &tx, &mut readers) => r,
            _ = cancel.cancelled() => Ok(None),
        };
        let keepalive = match flow {
            Ok(Some(k)) => k,
            Ok(None) => return self.teardown(&mut conn).await,
            Err(e) => return Err(e),
        };
        let result = self.receive(&mut conn, &tx, &mut rx, keepalive).await;
        readers.abort_all();
        match result {
            Ok(()) => self.teardown(&mut conn).await,
            Err(e) => Err(e),
        }
    }

    /// TEARDOWN when a session exists, within [`TEARDOWN_TIMEOUT`]; its
    /// failure is only logged.
    async fn teardown<S: Stream>(&mut self, conn: &mut Conn<S>) -> Result<(), UpstreamError> {
        if conn.session.is_some() {
            let mut ignore = |_: u8, _: Bytes| {};
            let url = self.up.url.as_str();
            let r = tokio::time::timeout(
                TEARDOWN_TIMEOUT,
                conn.request("TEARDOWN", url, &[], &mut ignore),
            )
            .await;
            match r {
                Ok(Ok(_)) => tracing::debug!("TEARDOWN answered"),
                Ok(Err(e)) => tracing::debug!(error = %e, "TEARDOWN failed"),
                Err(_) => tracing::debug!("TEARDOWN timed out"),
            }
        }
        Ok(())
    }

    /// OPTIONS to PLAY; `Some((method, interval))` for keepalives, `None`
    /// never (the caller's cancel arm).
    async fn start<S: Stream>(
        &mut self,
        conn: &mut Conn<S>,
        tx: &mpsc::Sender<Packet>,
        readers: &mut JoinSet<()>,
    ) -> Result<Option<(&'static str, Duration)>, UpstreamError> {
        let url = self.up.url.as_str();
        let mut ignore = |_: u8, _: Bytes| {};
        let options = conn.request("OPTIONS", url, &[], &mut ignore).await?;
        let keepalive_method = match options.headers.get("Public") {
            Some(p) if p.split(',').any(|m| m.trim() == "GET_PARAMETER") => "GET_PARAMETER",
            _ => "OPTIONS",
        };
        let reply = conn
            .request(
                "DESCRIBE",
                url,
                &[("Accept", "application/sdp")],
                &mut ignore,
            )
            .await?;
        let base = base_url(&reply, url)?;
        let mut tracks = describe::tracks(&reply.body)?;
        tracks.truncate(MAX_TRACKS);
        for t in &mut tracks {
            t.url = control_url(&base, t.control.as_deref())?;
        }
        let local_ip = conn.local_addr()?.ip();
        let server_ip = conn.peer_addr()?.ip();
        let mut timeout = DEFAULT_TIMEOUT;
        for (i, t) in tracks.iter().enumerate() {
            let transport = match self.lower {
                Lower::Tcp => format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1),
                Lower::Udp => {
                    let port = bind_track(i, local_ip, server_ip, tx, readers)?;
                    format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1)
                }
            };
            let reply = conn
                .request("SETUP", &t.url, &[("Transport", &transport)], &mut ignore)
                .await?;
            let (session, chosen) = setup_reply(&reply).map_err(UpstreamError::Setup)?;
            timeout = session.timeout.unwrap_or(DEFAULT_TIMEOUT);
            conn.session = Some(session.id);
            // Interop: a server answering TCP to a UDP request (or the
            // reverse) would send media where nobody reads it.
            if let Some(tr) = chosen {
                let want = match self.lower {
                    Lower::Udp => LowerTransport::Udp,
                    Lower::Tcp => LowerTransport::Tcp,
                };
                if tr.lower != want {
                    return Err(UpstreamError::Setup(format!(
                        "asked for {} and got the other",
                        self.lower
                    )));
                }
            }
        }
        let mut sink = interleaved_sink(tx);
        conn.request("PLAY", url, &[("Range", "npt=0.000-")], &mut sink)
            .await?;
        tracing::debug!(tracks = tracks.len(), transport = %self.lower, "playing");
        let desc = Description {
            sdp: reply.body.clone(),
            tracks,
        };
        send(self.events, self.cancel, UpstreamEvent::Described(desc)).await?;
        let every = Duration::from_secs(u64::from(timeout.max(2) / 2));
        Ok(Some((keepalive_method, every)))
    }

    /// Receives until a failure or cancel (`Ok`), keeping the session
    /// alive.
    async fn receive<S: Stream>(
        &mut self,
        conn: &mut Conn<S>,
        tx: &mpsc::Sender<Packet>,
        rx: &mut mpsc::Receiver<Packet>,
        (keepalive_method, every): (&'static str, Duration),
    ) -> Result<(), UpstreamError> {
        let cfg = &self.up.cfg;
        let url = self.up.url.as_str();
        let mut guard = RateGuard::new(cfg.max_packets_per_sec, cfg.max_bitrate);
        let mut next_keepalive = Instant::now() + every;
        let mut got_media = false;
        let mut silence_limit = cfg.first_packet_timeout;
        let mut silent_since = Instant::now();
        loop {
            let now = Instant::now();
            if now >= silent_since + silence_limit {
                return Err(if got_media {
                    UpstreamError::Stalled(silence_limit)
                } else {
                    UpstreamError::NoMedia(silence_limit)
                });
            }
            if now >= next_keepalive {
                next_keepalive = now + every;
                let mut sink = interleaved_sink(tx);
                conn.request(keepalive_method, url, &[], &mut sink).await?;
            }
            let wake = next_keepalive.min(silent_since + silence_limit);
            let mut sink = interleaved_sink(tx);
            let packet = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(()),
                p = rx.recv() => p,
                r = conn.next_response(wake, &mut sink) => {
                    // A late keepalive answer, or the deadline: nothing to do.
                    r?;
                    None
                }
            };
            let Some(p) = packet else {
                continue;
            };
            let now = Instant::now();
            guard.admit(p.data.len(), now.into_std())?;
            silent_since = now;
            if !got_media {
                got_media = true;
                silence_limit = cfg.stall_timeout;
                if self.sup.on_media() {
                    tracing::info!(transport = %self.lower, "upstream up");
                }
                send(
                    self.events,
                    self.cancel,
                    UpstreamEvent::Up {
                        transport: self.lower,
                    },
                )
                .await?;
            }
            tracing::trace!(track = p.track, rtcp = p.rtcp, len = p.data.len(), "packet");
            let ev = if p.rtcp {
                UpstreamEvent::Rtcp {
                    track: p.track,
                    packet: p.data,
                }
            } else {
                UpstreamEvent::Rtp {
                    track: p.track,
                    packet: p.data,
                }
            };
            match self.events.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if self.dropped == 0 {
                        tracing::debug!("event queue full, dropping packets");
                    }
                    self.dropped += 1;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(UpstreamError::Gone),
            }
        }
    }
}

/// The `on_frame` of interleaved frames: channel `2k` is track `k`'s RTP,
/// `2k + 1` its RTCP. A full queue drops the frame.
fn interleaved_sink(tx: &mpsc::Sender<Packet>) -> impl FnMut(u8, Bytes) + Send + '_ {
    move |channel, data| {
        let track = usize::from(channel / 2);
        if track < MAX_TRACKS {
            let _ = tx.try_send(Packet {
                track,
                rtcp: channel % 2 == 1,
                data,
            });
        }
    }
}

/// Binds track `track`'s RTP/RTCP pair on `local_ip` and starts their
/// readers; returns the RTP port. Datagrams from any host but the
/// upstream's are dropped.
fn bind_track(
    track: usize,
    local_ip: IpAddr,
    server_ip: IpAddr,
    tx: &mpsc::Sender<Packet>,
    readers: &mut JoinSet<()>,
) -> Result<u16, UpstreamError> {
    let bind = |e: std::io::Error| UpstreamError::Rtsp(LoadError::Bind(e.kind()));
    let (rtp, rtcp) = crate::net::bind_pair(local_ip, 0).map_err(bind)?;
    let port = rtp.local_addr().map_err(bind)?.port();
    for (socket, is_rtcp) in [(rtp, false), (rtcp, true)] {
        let socket = UdpSocket::from_std(socket).map_err(bind)?;
        let tx = tx.clone();
        readers.spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let (n, from): (usize, SocketAddr) = match socket.recv_from(&mut buf).await {
                    Ok(r) => r,
                    // ICMP errors surface here; the socket stays usable.
                    Err(_) => continue,
                };
                if from.ip() != server_ip {
                    continue;
                }
                let p = Packet {
                    track,
                    rtcp: is_rtcp,
                    data: Bytes::copy_from_slice(&buf[..n]),
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(p) {
                    return;
                }
            }
        });
    }
    Ok(port)
}
