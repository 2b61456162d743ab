//! `rtspd load`: an RTSP/RTP load tester and measuring receiver that works
//! against any RTSP/1.0 server.
//!
//! It opens N sessions at a bounded ramp (each its own control connection,
//! [`session`]), receives their RTP and RTCP over UDP on one receiver thread
//! ([`udp`]) or interleaved on each connection (`--tcp`), measures every
//! packet with the sans-IO [`crate::proto::measure`], and summarises
//! ([`report`]). With `--source-ips` the sessions come from many local
//! addresses, and UDP sessions on different addresses share receive port
//! pairs ([`source`]). Every limit is capped ([`MAX_SESSIONS`],
//! [`MAX_DURATION`], [`MAX_RAMP`]) and the run stops by itself. A URL
//! with `user:password@` answers Digest challenges ([`auth`]); the
//! credentials are taken out of every URL sent or reported. An `rtsps://`
//! URL runs every control connection over TLS ([`tls`], RFC 8446) and
//! receives the media interleaved on it (RFC 2326 §10.12).

pub mod auth;
pub(crate) mod conn;
pub mod plot;
pub mod publish;
pub mod report;
pub(crate) mod session;
pub mod source;
pub mod tls;
mod udp;

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use url::Url;

use crate::proto::clock::WallClock;
use crate::proto::measure::Timeline;
pub use report::Report;
pub use source::SourceIps;
pub use tls::TlsOptions;

/// Most sessions one run opens.
pub const MAX_SESSIONS: usize = 20_000;
/// Longest receive phase of a session.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Fastest ramp, sessions per second.
pub const MAX_RAMP: f64 = 5_000.0;

/// Why a session failed. `kind` strings group failures in the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("connect: {0}")]
    Connect(std::io::ErrorKind),
    #[error("binding UDP ports: {0}")]
    Bind(std::io::ErrorKind),
    #[error("timeout waiting for {0}")]
    Timeout(&'static str),
    #[error("{method} answered {status}")]
    Status { method: &'static str, status: u16 },
    #[error("server closed the connection")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{method} authentication: {source}")]
    Auth {
        method: &'static str,
        source: auth::AuthError,
    },
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("bad options: {0}")]
    Options(String),
}

/// How the media travels (`--transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// RTP and RTCP over UDP, to ports each session announces.
    Udp,
    /// Interleaved on the RTSP connection (RFC 2326 §10.12).
    Tcp,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "udp" => Ok(Self::Udp),
            "tcp" | "interleaved" => Ok(Self::Tcp),
            _ => Err(format!("{s:?}: udp or tcp")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub sessions: usize,
    /// How long each session receives after its PLAY.
    pub duration: Duration,
    /// Sessions started per second.
    pub ramp: f64,
    /// `None`: UDP for `rtsp://`, interleaved for `rtsps://` (which
    /// refuses UDP).
    pub transport: Option<Transport>,
    /// How an `rtsps://` server's certificate is checked.
    pub tls: TlsOptions,
    /// A `Range` header value for PLAY, e.g. `npt=2.5-`.
    pub range: Option<String>,
    /// Show a progress bar (only drawn when stdout is a terminal).
    pub progress: bool,
    /// Local (loopback) addresses the sessions come from, round-robin;
    /// empty: where the OS routes them. See [`source`].
    pub source_ips: Vec<IpAddr>,
    /// Publish this clip to the URL first, and measure each listener's
    /// delay behind it ([`publish`]).
    pub publish: Option<std::path::PathBuf>,
    /// Receive RTP with `UDP_GRO` ([`crate::net::mmsg::enable_gro`]): on
    /// loopback the datagrams a server sends as one GSO message reach the
    /// tester as one buffer, so cutting them apart is not charged to the
    /// server's core (on a network, the listeners' machines do that).
    pub udp_gro: bool,
}

/// Shared by every session task.
struct Ctx {
    /// Without userinfo.
    url: Url,
    secret: Option<auth::Secret>,
    /// The `nc` of every nonce, shared by the sessions.
    nonce_counts: Arc<auth::NonceCounts>,
    server: SocketAddr,
    /// Media interleaved on the control connection.
    tcp: bool,
    /// `rtsps://`: the TLS client every connection uses.
    tls: Option<tls::Connector>,
    opts: Options,
    clock: WallClock,
    receiver: udp::Receiver,
    sources: source::Sources,
    progress: Progress,
    stop: CancellationToken,
    /// `--publish`: the publisher's send times.
    publisher: Option<Arc<publish::SendLog>>,
}

/// Live counts for the progress display.
#[derive(Debug, Default)]
struct Progress {
    established: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    /// Most descriptors seen open at once.
    fds_peak: AtomicU64,
}

impl Progress {
    fn established(&self) {
        self.established.fetch_add(1, Ordering::Relaxed);
    }
}

/// [`Options`] checked and resolved.
struct Checked {
    /// Without userinfo.
    url: Url,
    secret: Option<auth::Secret>,
    server: SocketAddr,
    tcp: bool,
    tls: Option<tls::Connector>,
}

impl Options {
    /// The URL without its userinfo, the credentials it had, the server's
    /// address, and how to reach it.
    fn check(&self) -> Result<Checked, LoadError> {
        let bad = |s: String| Err(LoadError::Options(s));
        if self.sessions == 0 || self.sessions > MAX_SESSIONS {
            return bad(format!("sessions must be 1 to {MAX_SESSIONS}"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "duration must be 1 s to {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if !(self.ramp.is_finite() && self.ramp > 0.0 && self.ramp <= MAX_RAMP) {
            return bad(format!("ramp must be above 0 and at most {MAX_RAMP}/s"));
        }
        let mut url = Url::parse(&self.url).map_err(|e| LoadError::Options(format!("URL: {e}")))?;
        let secret = auth::Secret::from_url(&mut url);
        let rtsps = match url.scheme() {
            "rtsp" => false,
            "rtsps" => true,
            _ => return bad("only rtsp:// and rtsps:// URLs".into()),
        };
        let tcp = match (rtsps, self.transport) {
            (true, Some(Transport::Udp)) => {
                return bad("an rtsps:// URL carries the media interleaved on its TLS \
                     connection (RFC 2326 §10.12), never as plaintext UDP: \
                     drop --transport udp"
                    .into())
            }
            (true, _) => true,
            (false, t) => t == Some(Transport::Tcp),
        };
        if rtsps && self.publish.is_some() {
            return bad("--publish is for rtsp:// URLs".into());
        }
        if !rtsps && self.tls.given() {
            return bad("--ca-file and --insecure are for rtsps:// URLs".into());
        }
        let host = url
            .host_str()
            .ok_or_else(|| LoadError::Options("URL without host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = if rtsps {
            let c = tls::Connector::new(&self.tls, host)
                .map_err(|e| LoadError::Options(e.to_string()))?;
            Some(c)
        } else {
            None
        };
        // RFC 7826 §4.2: rtsps defaults to 322.
        let port = url.port().unwrap_or(if rtsps { 322 } else { 554 });
        let server = (host, port)
            .to_socket_addrs()
            .map_err(|e| LoadError::Options(format!("resolving {host}: {e}")))?
            .next()
            .ok_or_else(|| LoadError::Options(format!("{host} has no address")))?;
        source::check(&self.source_ips)
            .map_err(|e| LoadError::Options(format!("source IPs: {e}")))?;
        if let Some(a) = self
            .source_ips
            .iter()
            .find(|a| a.is_ipv4() != server.is_ipv4())
        {
            return bad(format!(
                "source IP {a} and server {server} are of different families"
            ));
        }
        Ok(Checked {
            url,
            secret,
            server,
            tcp,
            tls,
        })
    }

    /// What the report calls the transport.
    fn transport_label(checked: &Checked) -> &'static str {
        match (&checked.tls, checked.tcp) {
            (Some(_), _) => "rtsps/interleaved",
            (None, true) => "tcp",
            (None, false) => "udp",
        }
    }
}

/// Raises the open-file limit to what `sessions` need: one descriptor each
/// for the control connection, and two per UDP port pair (one per session
/// and track, or shared: [`source`]), counting two tracks. Returns a
/// warning when it cannot.
fn raise_fd_limit(sessions: usize, tcp: bool, sources: &source::Sources) -> Option<String> {
    let pairs = if tcp {
        0
    } else {
        sources.pairs_needed(sessions, 2)
    };
    let need = (sessions + 2 * pairs + 64) as libc::rlim_t;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Some("cannot read the open-file limit".into());
    }
    if lim.rlim_cur >= need {
        return None;
    }
    let want = libc::rlimit {
        rlim_cur: need.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `want` is a valid rlimit.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0;
    if ok && want.rlim_cur >= need {
        return None;
    }
    Some(format!(
        "open-file limit is {} (hard {}), {} sessions need about {need}: some will fail \
         (raise it with `ulimit -n {need}` as root)",
        if ok { want.rlim_cur } else { lim.rlim_cur },
        lim.rlim_max,
        sessions
    ))
}

/// Descriptors this process has open (Linux: `/proc/self/fd`).
fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // Less the one reading the directory.
    Some(n.saturating_sub(1))
}

/// CPU time this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid and getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs the load test; call it inside a tokio runtime.
pub async fn run(mut opts: Options) -> Result<Run, LoadError> {
    let checked = opts.check()?;
    let transport = Options::transport_label(&checked);
    let Checked {
        url,
        secret,
        server,
        tcp,
        tls,
    } = checked;
    // The report names the URL without the password.
    opts.url = url.to_string();
    let sources = source::Sources::new(opts.source_ips.clone(), !tcp);
    let mut warnings = Vec::new();
    if tls.is_some() && opts.tls.insecure {
        let w = "--insecure: the server's certificate is not verified";
        tracing::warn!("{w}");
        warnings.push(w.to_owned());
    }
    if let Some(w) = raise_fd_limit(opts.sessions, tcp, &sources) {
        warnings.push(w);
    }
    let totals = Arc::new(udp::Totals::default());
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // The publisher runs until every listener is done.
    let stop_publishing = CancellationToken::new();
    let publisher = match &opts.publish {
        Some(clip) => {
            let auth = auth::ClientAuth::new(secret.clone(), Arc::default());
            let p = publish::start(&url, server, auth, clip, stop_publishing.clone()).await?;
            Some(p)
        }
        None => None,
    };
    let log = publisher.as_ref().map(|p| p.log.clone());
    let t0 = Instant::now();
    let (receiver, rx_thread) = udp::Receiver::spawn(totals.clone(), log.clone(), opts.udp_gro)
        .map_err(|e| LoadError::Bind(e.kind()))?;
    let ctx = Arc::new(Ctx {
        url,
        secret,
        nonce_counts: Arc::default(),
        server,
        tcp,
        tls,
        clock: WallClock::new(t0, unix_now),
        receiver,
        sources,
        progress: Progress::default(),
        stop: CancellationToken::new(),
        opts: opts.clone(),
        publisher: log.clone(),
    });
    let cpu0 = cpu_time();
    let bar = progress_bar(&opts);
    let ramp_time = Duration::from_secs_f64(opts.sessions as f64 / opts.ramp);
    // Hard stop: ramp, receive, and a minute for setup and teardown.
    let hard_stop = t0 + ramp_time + opts.duration + Duration::from_secs(60);

    let spawner = {
        let ctx = ctx.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..ctx.opts.sessions {
                let at = t0 + Duration::from_secs_f64(i as f64 / ctx.opts.ramp);
                tokio::time::sleep_until(at.into()).await;
                let ctx = ctx.clone();
                tasks.spawn(async move {
                    let r = session::run(ctx.clone(), i).await;
                    let p = &ctx.progress;
                    let c = if r.outcome.is_ok() {
                        &p.finished
                    } else {
                        &p.failed
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    r
                });
            }
            tasks
        }
    };
    let ticker = tokio::spawn(show_progress(ctx.clone(), totals.clone(), bar.clone()));
    let mut sessions = spawner.await;
    let mut results = Vec::with_capacity(opts.sessions);
    loop {
        tokio::select! {
            r = sessions.join_next() => match r {
                Some(Ok(r)) => results.push(r),
                Some(Err(_)) => {}
                None => break,
            },
            // Past the hard stop every session is told to end now.
            _ = tokio::time::sleep_until(hard_stop.into()), if !ctx.stop.is_cancelled() => {
                ctx.stop.cancel();
            }
        }
    }
    ticker.abort();
    stop_publishing.cancel();
    if let Some(p) = publisher {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
    let wall = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    bar.finish_and_clear();
    let fds_peak = ctx.progress.fds_peak.load(Ordering::Relaxed);
    let shared_pairs = ctx.sources.shared_pairs();
    let per_pair = ctx.sources.per_pair();
    drop(ctx);
    let mut timeline = match tokio::task::spawn_blocking(move || rx_thread.join()).await {
        Ok(Ok(t)) => t,
        _ => {
            warnings.push("the UDP receiver thread failed; its per-second totals are lost".into());
            Timeline::default()
        }
    };
    for r in &results {
        timeline.merge(&r.timeline);
    }
    let (mut report, setup_us) = Report::build(&opts, transport, &results, wall, cpu, warnings);
    report.tester_fds_peak = fds_peak;
    report.shared_udp_pairs = shared_pairs;
    report.sessions_per_shared_pair = per_pair;
    report.publish = log.map(|l| report::PublishReport::of(&l.delays()));
    Ok(Run {
        report,
        timeline,
        setup_us,
    })
}

/// A finished run: the summary, and what the plot is drawn from.
pub struct Run {
    pub report: Report,
    /// Per-second totals over every session.
    pub timeline: Timeline,
    /// Setup latencies, µs.
    pub setup_us: hdrhistogram::Histogram<u64>,
}

impl Run {
    /// The `--plot` picture.
    pub fn svg(&self) -> String {
        let r = &self.report;
        let title = format!(
            "rtspd load {} -n {} over {}: {} ok, {:.3}% lost, pacing p99 {:.2} ms",
            r.url, r.sessions_attempted, r.transport, r.sessions_ok, r.loss_pct, r.pacing_p99_ms
        );
        plot::render(&title, &self.timeline, &self.setup_us)
    }
}

async fn show_progress(ctx: Arc<Ctx>, totals: Arc<udp::Totals>, bar: indicatif::ProgressBar) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let p = totals.packets.load(Ordering::Relaxed);
        let now = Instant::now();
        let rate = (p - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, p);
        let pr = &ctx.progress;
        if let Some(n) = open_fds() {
            pr.fds_peak.fetch_max(n, Ordering::Relaxed);
        }
        let (est, fin, fail) = (
            pr.established.load(Ordering::Relaxed),
            pr.finished.load(Ordering::Relaxed),
            pr.failed.load(Ordering::Relaxed),
        );
        bar.set_position(fin + fail);
        bar.set_message(format!(
            "playing {} | failed {fail} | {rate:.0} pkt/s",
            est.saturating_sub(fin)
        ));
    }
}

fn progress_bar(opts: &Options) -> indicatif::ProgressBar {
    if !opts.progress || !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(opts.sessions as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} sessions done | {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(url: &str, transport: Option<Transport>, insecure: bool) -> Options {
        Options {
            url: url.into(),
            sessions: 1,
            duration: Duration::from_secs(1),
            ramp: 10.0,
            transport,
            tls: TlsOptions {
                ca_file: None,
                insecure,
            },
            range: None,
            progress: false,
            source_ips: Vec::new(),
            publish: None,
            udp_gro: false,
        }
    }

    /// rtsps:// is interleaved whatever is asked (UDP is refused), on
    /// port 322 by default; rtsp:// is UDP unless told, on 554.
    #[test]
    fn schemes_resolve_transport_and_port() {
        let c = opts("rtsps://u:p@127.0.0.1/a", None, true)
            .check()
            .expect("rtsps");
        assert!(c.tcp && c.tls.is_some());
        assert_eq!(c.server, SocketAddr::from(([127, 0, 0, 1], 322)));
        assert_eq!(c.url.as_str(), "rtsps://127.0.0.1/a");
        assert!(c.secret.is_some());
        assert_eq!(Options::transport_label(&c), "rtsps/interleaved");
        let c = opts("rtsps://127.0.0.1:8322/a", Some(Transport::Tcp), true)
            .check()
            .expect("rtsps, tcp");
        assert!(c.tcp && c.server.port() == 8322);
        let e = opts("rtsps://127.0.0.1/a", Some(Transport::Udp), true)
            .check()
            .err()
            .expect("UDP with rtsps");
        assert!(e.to_string().contains("--transport udp"), "{e}");

        let c = opts("rtsp://127.0.0.1/a", None, false)
            .check()
            .expect("rtsp");
        assert!(!c.tcp && c.tls.is_none());
        assert_eq!(c.server.port(), 554);
        assert_eq!(Options::transport_label(&c), "udp");
        let c = opts("rtsp://127.0.0.1/a", Some(Transport::Tcp), false)
            .check()
            .expect("rtsp, tcp");
        assert_eq!(Options::transport_label(&c), "tcp");
        assert!(opts("rtsp://127.0.0.1/a", None, true).check().is_err());
        assert!(opts("http://127.0.0.1/a", None, false).check().is_err());
        assert_eq!("interleaved".parse(), Ok(Transport::Tcp));
        assert!("quic".parse::<Transport>().is_err());
    }
}
