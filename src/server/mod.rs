//! The tokio edge: binds the listeners, runs the accept loop, the pacing
//! loop, the RTCP receiver and the session reaper, and shuts down cleanly.
//!
//! Shutdown follows mini-redis with tokio-util's `CancellationToken` and
//! `TaskTracker`: cancel, say RTCP BYE to every session, let connection
//! tasks finish the request in hand, and wait for all of them.

pub mod auth;
pub mod channels;
pub mod conn;
pub mod handoff;
pub mod input;
mod interleave;
pub mod live;
pub(crate) mod method;
pub mod pacing;
pub mod placement;
pub(crate) mod pull;
pub(crate) mod redirect;
pub mod refusals;
pub mod reload;
pub mod sessions;
pub mod tls;
pub mod tunnel;
pub mod udp;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};

use crate::http::{self, HttpConfig};
use crate::media::{Catalog, ClipOptions};
use crate::metrics::Metrics;
use crate::net::bind_pair;
use crate::proto::clock::WallClock;
use crate::proto::limit::Limit;
use crate::proto::pacer::{Event, Pacer};
use crate::proto::rtsp::Limits;
pub use auth::AuthConfig;
use channels::Channels;
use interleave::Sinks;
use live::{ChannelParams, LiveSpec};
use pacing::{Command, DataHandle, Events, PacerHandle, SendStats};
use placement::PacerPriority;
use refusals::Refusals;
use reload::{Reloader, Swap};
use sessions::{SessionLimits, SessionTable};
use udp::RecvStats;

/// Everything the server can be told. Every limit has a default.
#[derive(Debug, Clone)]
pub struct Config {
    pub media: PathBuf,
    pub bind: IpAddr,
    /// RTSP port; `None` tries 554, then 8554.
    pub port: Option<u16>,
    /// Shared RTP port (RTCP is +1); 0 picks a free pair.
    pub rtp_port: u16,
    pub session_timeout: Duration,
    pub clip: ClipOptions,
    pub limits: Limits,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub sessions: SessionLimits,
    /// A request must be complete this long after its first byte.
    pub read_timeout: Duration,
    /// A response must be written within this.
    pub write_timeout: Duration,
    /// A connection with no session and no traffic is closed after this.
    pub idle_timeout: Duration,
    /// Depth of the pacing thread's command queue.
    pub command_queue: usize,
    /// Depth of the pacing thread's media queue (publishers' packets and
    /// pipe PCM); a publisher's packet that finds it full is dropped.
    pub data_queue: usize,
    /// Frames queued per connection for interleaved (RTP over TCP) delivery;
    /// beyond it a slow reader loses frames.
    pub client_queue: usize,
    /// Interleaved frames a client may send per second (its RTCP); more
    /// closes the connection.
    pub max_client_frames_per_sec: u32,
    /// Interleaved frames a publisher may send per second; more closes
    /// the connection.
    pub max_publisher_frames_per_sec: u32,
    /// The pacing loop sends packets up to this much before their deadline,
    /// to batch wake-ups (error bound against CPU).
    pub send_ahead: Duration,
    /// Datagrams per `sendmmsg` call; 1 sends one at a time.
    pub send_batch: usize,
    /// A relay channel's datagrams to one listener leave as one segmented
    /// message (UDP GSO), where the kernel offers it.
    pub udp_gso: bool,
    /// How the pacing thread asks for scheduling precedence.
    pub pacer_priority: PacerPriority,
    /// A core for the pacing thread alone (the caller keeps every other
    /// thread off it: see [`placement::control_cpus`]).
    pub pacer_cpu: Option<usize>,
    /// Live channels, running from start.
    pub live: Vec<LiveSpec>,
    /// Publishers may start channels at any `/live/NAME` (`--allow-publish`).
    pub allow_publish: bool,
    /// Channels publishers may start beyond the configured ones.
    pub max_published_channels: usize,
    /// Audio a pipe, stdin or published channel buffers before it sends, to
    /// ride out its source's jitter.
    pub live_prebuffer: Duration,
    /// A relayed packet waiting longer than this in the server is dropped.
    pub relay_max_delay: Duration,
    /// How much each listener widens a relay channel's fan-out window.
    pub relay_spread_per_listener: Duration,
    /// Bytes a relay channel's GOP cache may hold.
    pub gop_cache_bytes: usize,
    /// The HTTP side: where it listens and its limits.
    pub http: HttpConfig,
    /// RTSPS: certificate, port, handshake deadline.
    pub tls: tls::TlsConfig,
    /// Users, path rules and the login limits.
    pub auth: AuthConfig,
    /// RTSP over HTTP tunnels on the RTSP port and the HTTP listener.
    pub tunnel: bool,
    /// A tunnel's GET waits this long for its POST.
    pub tunnel_timeout: Duration,
    /// How often `least_readers` edges are polled.
    pub redirect_poll: Duration,
    /// Where SIGTERM drains to (`--drain-to`); `None`: stop at once.
    pub drain_to: Option<String>,
    /// How long a drain waits for clients to leave.
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            media: PathBuf::from("media"),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: None,
            rtp_port: 6970,
            session_timeout: Duration::from_secs(60),
            clip: ClipOptions::default(),
            limits: Limits::default(),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            sessions: SessionLimits {
                max_sessions: 10_000,
                max_sessions_per_ip: 256,
            },
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            command_queue: 1024,
            data_queue: 4096,
            client_queue: 512,
            max_client_frames_per_sec: 1000,
            max_publisher_frames_per_sec: 20_000,
            send_ahead: Duration::from_micros(500),
            send_batch: crate::net::mmsg::MAX_BATCH,
            udp_gso: true,
            pacer_priority: PacerPriority::Auto,
            pacer_cpu: None,
            live: Vec::new(),
            allow_publish: false,
            max_published_channels: 64,
            live_prebuffer: Duration::from_millis(200),
            relay_max_delay: Duration::from_millis(500),
            relay_spread_per_listener: Duration::from_micros(40),
            gop_cache_bytes: live::RELAY_GOP_CACHE_BYTES,
            http: HttpConfig::default(),
            tls: tls::TlsConfig::default(),
            auth: AuthConfig::default(),
            tunnel: true,
            tunnel_timeout: Duration::from_secs(10),
            redirect_poll: Duration::from_secs(2),
            drain_to: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The bound sockets, before the server runs.
pub struct Listeners {
    pub rtsp: TcpListener,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    /// `None` when HTTP is off, or its default port was taken.
    pub http: Option<TcpListener>,
    /// `None` without `[tls]` cert and key.
    pub rtsps: Option<tls::Listener>,
}

impl Listeners {
    /// Binds everything `config` asks for. Without a port, tries 554 and
    /// falls back to 8554 when 554 cannot be bound (it needs privileges);
    /// RTSPS likewise 322, then 8322. A certificate or key that does not
    /// load is an `InvalidInput` error wrapping a [`tls::TlsError`].
    pub async fn bind(config: &Config) -> io::Result<Self> {
        // First: a bad certificate stops the start before anything binds.
        let rtsps = tls::Listener::bind(config.bind, &config.tls).await?;
        let rtsp = bind_tcp(config.bind, config.port, (554, 8554)).await?;
        let (rtp, rtcp) = match bind_pair(config.bind, config.rtp_port) {
            Ok(pair) => pair,
            Err(e) if config.rtp_port != 0 => {
                warn!(port = config.rtp_port, error = %e, "cannot bind the RTP port pair, using a free pair");
                bind_pair(config.bind, 0)?
            }
            Err(e) => return Err(e),
        };
        let http = http::bind(&config.http.listen).await?;
        Ok(Self {
            rtsp,
            rtp,
            rtcp,
            http,
            rtsps,
        })
    }

    pub fn rtsp_addr(&self) -> io::Result<SocketAddr> {
        self.rtsp.local_addr()
    }

    pub fn rtp_port(&self) -> io::Result<u16> {
        Ok(self.rtp.local_addr()?.port())
    }
}

/// A TCP listener on `port`, or without one on the first of `defaults`
/// (a privileged port), falling back to the second when it cannot be bound.
pub(crate) async fn bind_tcp(
    bind: IpAddr,
    port: Option<u16>,
    (default, fallback): (u16, u16),
) -> io::Result<TcpListener> {
    match port {
        Some(p) => TcpListener::bind((bind, p)).await,
        None => match TcpListener::bind((bind, default)).await {
            Ok(l) => Ok(l),
            Err(e) => {
                warn!(error = %e, "cannot bind port {default}, falling back to {fallback}");
                TcpListener::bind((bind, fallback)).await
            }
        },
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    /// The configuration in force; a reload replaces it.
    config: Swap<Config>,
    /// The media folder's clips; a reload may open another folder.
    catalog: Swap<Catalog>,
    /// Pipe and stdin sources of configured channels, by channel name.
    sources: Mutex<HashMap<String, live::SourceGuard>>,
    /// One reload at a time; it holds the HTTP side, which a reload may
    /// move to another address.
    reloading: tokio::sync::Mutex<http::Side>,
    /// Every task of the server, and what stops them all.
    pub(crate) tracker: TaskTracker,
    pub(crate) cancel: CancellationToken,
    pub(crate) sessions: Arc<SessionTable>,
    pub(crate) pacer: PacerHandle,
    pub(crate) data: DataHandle,
    pub(crate) sinks: Arc<Sinks>,
    pub(crate) channels: Arc<Channels>,
    /// Channels pulled from an upstream server.
    pub(crate) pulls: pull::Pulls,
    pub(crate) rtp_port: u16,
    pub(crate) next_group: AtomicU64,
    pub(crate) refusals: Refusals,
    /// Nonces, nonce counts and failed logins (access control).
    pub(crate) guard: auth::Guard,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) send_stats: Arc<SendStats>,
    pub(crate) recv_stats: Arc<RecvStats>,
    pub(crate) rtsp_addr: SocketAddr,
    /// The RTSPS side, when it runs.
    pub(crate) tls: Option<Arc<tls::Tls>>,
    /// RTSP-over-HTTP GETs waiting for their POST.
    pub(crate) tunnels: tunnel::Tunnels,
    /// Ids of connections, plain and TLS alike (sinks and sessions are
    /// keyed by them).
    next_conn: AtomicU64,
    conns_per_ip: Mutex<HashMap<IpAddr, usize>>,
    conns: AtomicU64,
    /// Redirect turns, polled edge loads and the drain.
    pub(crate) redirector: redirect::Redirector,
}

/// Releases a connection slot when the connection ends.
pub(crate) struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared.conns.fetch_sub(1, Ordering::Relaxed);
        let mut m = self
            .shared
            .conns_per_ip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    /// The configuration in force (a snapshot: a reload replaces it whole).
    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// The catalog in force.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        self.catalog.get()
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<String, live::SourceGuard>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether connection `conn` is an RTSPS one.
    pub(crate) fn is_tls(&self, conn: u64) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_tls(conn))
    }

    /// Open RTSP connections.
    pub(crate) fn connections(&self) -> u64 {
        self.conns.load(Ordering::Relaxed)
    }

    /// A fresh connection id.
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A connection slot for a client at `ip`, or the limit that refuses
    /// it (counted and reported).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let config = self.config();
        let mut m = self.conns_per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        let refused = if self.conns.load(Ordering::Relaxed) as usize >= config.max_connections {
            Some(Limit::MaxConnections)
        } else if *n >= config.max_connections_per_ip {
            Some(Limit::MaxConnectionsPerIp)
        } else {
            None
        };
        if let Some(limit) = refused {
            if *n == 0 {
                m.remove(&ip);
            }
            drop(m);
            self.refusals.refuse(limit);
            return None;
        }
        *n += 1;
        self.conns.fetch_add(1, Ordering::Relaxed);
        Some(ConnSlot {
            shared: self.clone(),
            ip,
        })
    }
}

/// A running server, as tests and the binary see it.
pub struct Running {
    pub rtsp_addr: SocketAddr,
    pub rtp_port: u16,
    pub sessions: Arc<SessionTable>,
    pub send_stats: Arc<SendStats>,
    pub recv_stats: Arc<RecvStats>,
    /// Applies a new configuration (SIGHUP, the HTTP API).
    pub reloader: Reloader,
    /// Where the HTTP side listens, when it runs.
    pub http_addr: Option<SocketAddr>,
    /// Where RTSPS listens, when it runs.
    pub rtsps_addr: Option<SocketAddr>,
}

/// Runs the server until `shutdown` completes, then drains: every session
/// gets an RTCP BYE, connections finish the request in hand, and this
/// returns once every task has ended (or after 5 s).
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
    started: impl FnOnce(&Running),
) -> io::Result<()> {
    let catalog = Catalog::new(&config.media, config.clip)?;
    let rtsp_addr = listeners.rtsp.local_addr()?;
    let (tls, rtsps) = match listeners.rtsps {
        Some(l) => {
            let addr = l.local_addr()?;
            (
                Some(Arc::new(tls::Tls::new(l.config, addr))),
                Some(l.listener),
            )
        }
        None => (None, None),
    };
    let rtp_port = listeners.rtp.local_addr()?.port();
    if let Some(e) = redirect::self_redirect(&config, rtsp_addr, tls.as_ref().map(|t| t.addr)).await
    {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
    }
    let sessions = Arc::new(SessionTable::new(config.sessions));
    let send_stats = Arc::new(SendStats::default());
    let recv_stats = Arc::new(RecvStats::default());
    let metrics = Arc::new(Metrics::default());
    let (tx, data, queues) =
        pacing::queues(config.command_queue, config.data_queue, send_stats.clone());
    let (events, ended) = Events::new(config.command_queue);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = Instant::now();
    let clock = WallClock::new(now, unix);
    let cname = format!("rtspd@{}", rtsp_addr.ip());
    let registry = Arc::new(Channels::new(channels::Rules {
        params: ChannelParams {
            ptime: config.clip.ptime,
            max_payload: config.clip.max_payload,
            max_bytes: config.clip.max_clip_bytes,
            prebuffer: config.live_prebuffer,
            relay_max_delay: config.relay_max_delay,
            relay_spread_per_listener: config.relay_spread_per_listener,
            gop_cache_bytes: config.gop_cache_bytes,
            clock,
            cname: cname.clone(),
        },
        allow_publish: config.allow_publish,
        max_published: config.max_published_channels,
    }));
    let mut channels = HashMap::new();
    for spec in &config.live {
        let channel = registry
            .configure(spec, now)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        match channel {
            Some(c) => {
                info!(channel = %spec.name, "live channel running");
                channels.insert(spec.name.clone(), c);
            }
            None if matches!(spec.source, live::Source::Pull(_)) => {
                info!(channel = %spec.name, source = %spec.source, "live channel pulls its source")
            }
            None => info!(channel = %spec.name, "live channel waits for its first publisher"),
        }
    }
    let pacer = Pacer::new(clock, cname);
    let sources = live::spawn_sources(&config.live, &data)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let rtp = Arc::new(listeners.rtp);
    let rtcp = Arc::new(listeners.rtcp);
    let sinks = Arc::new(Sinks::default());
    {
        let gso = config.udp_gso && crate::net::gso::supported(std::os::fd::AsFd::as_fd(&*rtp));
        if config.udp_gso && !gso {
            info!("UDP GSO (UDP_SEGMENT) not offered by this kernel: one datagram per message");
        }
        let out = pacing::Outputs {
            per_call: config.send_batch,
            gso,
            rtp: rtp.clone(),
            rtcp: rtcp.clone(),
            sinks: sinks.clone(),
            stats: send_stats.clone(),
            metrics: metrics.clone(),
        };
        let cancel = cancel.clone();
        let (ahead, priority, cpu) = (config.send_ahead, config.pacer_priority, config.pacer_cpu);
        tracker.spawn_blocking(move || {
            if let Some(cpu) = cpu {
                match placement::pin_to(&[cpu]) {
                    Ok(()) => info!(cpu, "pacing thread has its own core"),
                    Err(e) => warn!(cpu, error = %e, "cannot pin the pacing thread"),
                }
            }
            placement::raise_priority(priority);
            let channels = channels.into_iter().map(|(k, c)| (k, c.into())).collect();
            pacing::run(pacer, channels, queues, out, events, ahead, cancel);
        });
    }
    tracker.spawn(apply_ends(ended, sessions.clone()));
    tracker.spawn(udp::run_rtcp_receiver(
        rtcp,
        sessions.clone(),
        registry.clone(),
        data.clone(),
        recv_stats.clone(),
        metrics.clone(),
        cancel.clone(),
    ));
    tracker.spawn(udp::run_rtp_receiver(
        rtp,
        registry.clone(),
        data.clone(),
        sessions.clone(),
        cancel.clone(),
    ));

    let pull_specs = config.live.clone();
    let refusals = Refusals::new(&config);
    let guard = auth::Guard::new(&config.auth, now)?;
    if config.auth.policy.allow_basic_without_tls {
        warn!("[auth] allow_basic_without_tls is on: Basic credentials are accepted on plain RTSP and HTTP, where anyone on the path can read them");
    }
    http::auth::warn_if_open(&config);
    let shared = Arc::new(Shared {
        refusals,
        guard,
        metrics,
        send_stats: send_stats.clone(),
        recv_stats: recv_stats.clone(),
        rtsp_addr,
        tls: tls.clone(),
        tunnels: tunnel::Tunnels::default(),
        next_conn: AtomicU64::new(0),
        config: Swap::new(config),
        catalog: Swap::new(catalog),
        sources: Mutex::new(sources.into_iter().collect()),
        reloading: tokio::sync::Mutex::new(http::Side::default()),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        sessions: sessions.clone(),
        pacer: tx,
        data,
        sinks,
        channels: registry,
        pulls: pull::Pulls::new(&pull_specs, &cancel),
        rtp_port,
        next_group: AtomicU64::new(1),
        conns_per_ip: Mutex::new(HashMap::new()),
        conns: AtomicU64::new(0),
        redirector: redirect::Redirector::default(),
    });
    pull::Pulls::start_all(&shared);
    tracker.spawn(reaper(shared.clone(), cancel.clone()));
    tracker.spawn(redirect::poll_edges(shared.clone()));
    let http_addr = http::start(&shared, listeners.http, &mut *shared.reloading.lock().await)?;
    started(&Running {
        rtsp_addr,
        rtp_port,
        sessions,
        send_stats: send_stats.clone(),
        recv_stats: recv_stats.clone(),
        reloader: Reloader::new(shared.clone()),
        http_addr,
        rtsps_addr: tls.as_ref().map(|t| t.addr),
    });

    let accept = accept_loop(
        shared.clone(),
        listeners.rtsp,
        None,
        tracker.clone(),
        cancel.clone(),
    );
    let accept_tls = async {
        match (rtsps, tls) {
            (Some(l), Some(t)) => {
                accept_loop(shared.clone(), l, Some(t), tracker.clone(), cancel.clone()).await
            }
            _ => std::future::pending().await,
        }
    };
    // SIGTERM with `drain_to` drains first (new readers go elsewhere,
    // playing ones are told to), then stops.
    let stop = async {
        shutdown.await;
        match shared.config().drain_to.clone() {
            Some(to) => {
                info!(%to, "SIGTERM: draining before stopping");
                match redirect::start_drain(&shared, &to) {
                    Ok(()) => redirect::drained(&shared).await,
                    Err(e) => warn!(error = %e, "cannot drain; stopping"),
                }
            }
            None => info!("shutting down"),
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = accept_tls => {}
        _ = stop => {}
        // A drain over HTTP ends with this.
        _ = cancel.cancelled() => info!("stopping"),
    }
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not finish within 5 s of shutdown");
    }
    let (st, rx) = (&send_stats, &recv_stats);
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    info!(
        datagrams_sent = n(&st.sent),
        sendmmsg_calls = n(&st.send_calls),
        pacer_wakeups = n(&st.pacer_wakeups),
        dropped_full_buffer = n(&st.send_dropped),
        send_errors = n(&st.send_errors),
        interleaved_queued = n(&st.interleaved_queued),
        interleaved_dropped = n(&st.interleaved_dropped),
        publish_dropped = n(&st.publish_dropped),
        relay_late_dropped = n(&st.relay_late_dropped),
        rtcp_received = n(&rx.rtcp_received),
        rtcp_invalid = n(&rx.rtcp_invalid),
        "stopped"
    );
    Ok(())
}

/// Accepts RTSP connections, or with `tls` RTSPS ones. The connection
/// caps apply here, before any TLS handshake work.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<tls::Tls>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                // EMFILE/ENFILE and friends: back off and keep accepting.
                warn!(error = %e, "accept failed; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn_id = shared.next_conn_id();
        let slot = shared.admit(peer.ip());
        match &tls {
            None => {
                let span = info_span!("conn", id = conn_id, %peer);
                tracker.spawn(
                    serve_plain(shared.clone(), stream, peer, conn_id, slot, cancel.clone())
                        .instrument(span),
                );
            }
            Some(t) => {
                let span = info_span!("conn", id = conn_id, %peer, tls = true);
                let task = tls::serve(
                    shared.clone(),
                    t.clone(),
                    stream,
                    peer,
                    conn_id,
                    slot,
                    cancel.clone(),
                );
                tracker.spawn(task.instrument(span));
            }
        }
    }
}

/// Serves a plain RTSP-port connection: RTSP, or with `tunnel` on, one
/// half of an RTSP-over-HTTP tunnel when it opens with `GET `/`POST`.
async fn serve_plain(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: CancellationToken,
) {
    let config = shared.config();
    if config.tunnel {
        match tunnel::opens_with_http(&stream, config.idle_timeout, &cancel).await {
            Some(false) => {}
            Some(true) => {
                let serve = tunnel::serve_rtsp_port(shared, stream, peer, conn_id, slot, cancel);
                return Box::pin(serve).await;
            }
            None => return,
        }
    }
    drop(config);
    conn::serve(shared, stream, peer, conn_id, slot, cancel).await;
}

/// Applies the pacing thread's ends of runs to the session table (the
/// pacing thread itself never takes the table's lock).
async fn apply_ends(mut ended: tokio::sync::mpsc::Receiver<Event>, sessions: Arc<SessionTable>) {
    while let Some(Event::Ended { group, run }) = ended.recv().await {
        sessions.ended(group, run);
    }
}

/// Frees sessions that timed out, and says why.
async fn reaper(shared: Arc<Shared>, cancel: CancellationToken) {
    let period = (shared.config().session_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        for e in shared.sessions.take_expired(Instant::now()) {
            end(&shared, &e, "timeout: no request or RTCP").await;
        }
        shared.refusals.flush(Instant::now());
        for key in shared.channels.sweep() {
            info!(channel = %key, "published channel stopped: no publisher and no listener");
            let _ = shared.pacer.send(Command::RemoveChannel { key }).await;
        }
    }
}

/// A session left the table for `why`: log its summary and [`forget`] it.
pub(crate) async fn end(shared: &Shared, e: &sessions::Entry, why: &str) {
    e.log_end(why);
    forget(shared, e).await;
}

/// A session left the table: stop what it sent or received. A publisher's
/// channel keeps running for its listeners.
pub(crate) async fn forget(shared: &Shared, e: &sessions::Entry) {
    let _ = shared.pacer.send(Command::Remove { group: e.group }).await;
    stop_publishers(shared, shared.channels.release_session(&e.session.id)).await;
}

/// Tells the pacing thread which channels lost their publisher.
pub(crate) async fn stop_publishers(shared: &Shared, released: Vec<channels::Released>) {
    for key in released.into_iter().filter_map(|r| r.stopped) {
        info!(channel = %key, "publisher left; listeners stay");
        let _ = shared.pacer.send(Command::StopPublisher { key }).await;
    }
}
