//! The HTTP side (HTTP/1.1, RFC 9112): Prometheus metrics, the JSON API,
//! the status page, SDP over HTTP and a health check, on the same tokio
//! runtime as the RTSP side and reading the same shared state.
//!
//! It is bounded like the RTSP side: a connection cap (beyond it a
//! connection is closed at once, and counted and reported as a refusal at
//! [`Limit::HttpMaxConnections`]), a cap on the request head (hyper answers
//! 431 beyond it), on header lines and on a declared body (413), a deadline
//! for the whole head from its first byte (slow clients are closed), and a
//! write timeout. Routing is axum's: an unknown path is 404, a known path
//! with another method 405 with `Allow`.
//!
//! Who may use what is [`auth`]'s: a permission per part (`api`,
//! `metrics`, `status`), the path's read rule for SDP, `/healthz` open.
//!
//! It never reaches into the pacing thread: the counters it reports are
//! atomics that thread publishes ([`crate::metrics`]); kicking a session
//! goes through the same command queue TEARDOWN uses.

mod api;
pub(crate) mod auth;
mod metrics;
mod page;
mod prefixed;
mod sdp;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

use crate::proto::limit::Limit;
use crate::proto::tunnel::Sniffed;
use crate::server::reload::Summary;
use crate::server::tunnel::{self, HeadError};
use crate::server::Shared;
use prefixed::Prefixed;

/// Where the HTTP side listens (`[http] listen`, `--http`).
pub use crate::config::HttpListen;

/// What `POST /api/v1/reload` calls: re-reads the configuration and returns
/// a summary of what changed, or the error. Set by whoever owns the
/// configuration file; without one, reload answers 503.
#[derive(Clone)]
pub struct ReloadHook(pub Arc<dyn Fn() -> ReloadFuture + Send + Sync>);

/// A reload in progress: what changed, or why nothing did.
pub type ReloadFuture = Pin<Box<dyn Future<Output = Result<Summary, String>> + Send>>;

impl fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadHook")
    }
}

/// Where the HTTP side listens and its limits. Every limit has a default
/// and a flag.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: HttpListen,
    /// Most concurrent HTTP connections (`--http-max-connections`).
    pub max_connections: usize,
    /// Largest request head, in bytes (`--http-max-head-bytes`; hyper
    /// needs at least 8 KiB, so smaller values count as 8 KiB).
    pub max_head_bytes: usize,
    /// Most header lines (`--http-max-headers`).
    pub max_headers: usize,
    /// Largest request body (`--http-max-body-bytes`).
    pub max_body_bytes: usize,
    /// A request head must be complete this long after its first byte, and
    /// an idle connection is closed after it (`--http-read-timeout`).
    pub read_timeout: Duration,
    /// A write may wait this long for the client (`--http-write-timeout`).
    pub write_timeout: Duration,
    pub reload: Option<ReloadHook>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: HttpListen::default(),
            max_connections: 64,
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            reload: None,
        }
    }
}

/// hyper's smallest read buffer.
const MIN_HEAD_BYTES: usize = 8192;

/// Binds the HTTP listener: `None` when off, or when the default address
/// is taken (logged at WARN); an explicit address that cannot be bound is
/// an error.
pub async fn bind(listen: &HttpListen) -> io::Result<Option<TcpListener>> {
    match *listen {
        HttpListen::Off => Ok(None),
        HttpListen::Explicit(addr) => TcpListener::bind(addr).await.map(Some).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind the HTTP address {addr}: {e}"),
            )
        }),
        HttpListen::Default(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(e) => {
                warn!(%addr, error = %e, "cannot bind the default HTTP address; running without HTTP (choose one with --http ADDR:PORT)");
                Ok(None)
            }
        },
    }
}

/// What every handler reads.
pub(crate) struct State {
    shared: Arc<Shared>,
    reload: Option<ReloadHook>,
    cancel: CancellationToken,
}

impl State {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: &HttpConfig,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            reload: config.reload.clone(),
            cancel,
        })
    }

    /// `rtsp://HOST:PORT` of this server, as the HTTP client should see it:
    /// the RTSP bind address, or, when that is a wildcard, the host the
    /// client asked for (its `Host` header, if it is a plain host name or
    /// address), else 127.0.0.1.
    fn rtsp_base(&self, headers: &HeaderMap) -> String {
        base("rtsp", self.shared.rtsp_addr, headers)
    }

    /// `rtsps://HOST:PORT` of this server when RTSPS runs, the host chosen
    /// as for [`State::rtsp_base`].
    fn rtsps_base(&self, headers: &HeaderMap) -> Option<String> {
        let tls = self.shared.tls.as_ref()?;
        Some(base("rtsps", tls.addr, headers))
    }

    /// Both bases of this server's URLs.
    fn bases(&self, headers: &HeaderMap) -> Bases {
        Bases {
            rtsp: self.rtsp_base(headers),
            rtsps: self.rtsps_base(headers),
        }
    }
}

/// `rtsp://HOST:PORT` and, when RTSPS runs, `rtsps://HOST:PORT`.
#[derive(Debug, Clone)]
pub(crate) struct Bases {
    rtsp: String,
    rtsps: Option<String>,
}

/// `SCHEME://HOST:PORT` for a listener bound at `addr` (see
/// [`State::rtsp_base`]).
fn base(scheme: &str, addr: SocketAddr, headers: &HeaderMap) -> String {
    let host = if addr.ip().is_unspecified() {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(host_part)
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            })
            .map_or_else(|| "127.0.0.1".to_owned(), str::to_owned)
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

/// The host of a `Host` header value, without its port.
fn host_part(h: &str) -> &str {
    match h.rfind(':') {
        Some(i) if !h[i..].contains(']') => &h[..i],
        _ => h,
    }
}

fn router(state: Arc<State>) -> Router {
    let limits = state.clone();
    Router::new()
        .route("/", get(page::status))
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(healthz))
        .route("/api/v1/paths", get(api::paths))
        .route("/api/v1/sessions", get(api::sessions))
        .route("/api/v1/sessions/{id}", delete(api::kick))
        .route("/api/v1/reload", post(api::reload))
        .route("/api/v1/drain", get(api::drain_state).post(api::drain))
        .route("/sdp/{*path}", get(sdp::sdp))
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let max_body = limits.shared.config().http.max_body_bytes;
            body_cap(req, next, max_body)
        }))
        .with_state(state)
}

/// 413 for a declared body over the cap; no handler reads a body, so one
/// without a length is never buffered.
async fn body_cap(req: Request, next: Next, max: usize) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    next.run(req).await
}

/// 200 while the server accepts RTSP connections.
async fn healthz(axum::extract::State(state): axum::extract::State<Arc<State>>) -> Response {
    if state.cancel.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if state.shared.redirector.draining().is_some() {
        // A load balancer stops sending new clients here.
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// Accepts HTTP connections until `cancel`, each on its own task under
/// the limits in force when it is accepted (a reload may change them).
pub(crate) async fn serve(
    state: Arc<State>,
    listener: TcpListener,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let app = router(state.clone());
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let config = state.shared.config();
        let config = &config.http;
        let Some(slot) = Slot::take(&open, config.max_connections.max(1)) else {
            debug!(%peer, "HTTP connection refused");
            state.shared.refusals.refuse(Limit::HttpMaxConnections);
            continue;
        };
        next_id += 1;
        let conn = Conn {
            state: state.clone(),
            app: app.clone(),
            stream,
            peer,
            slot,
            cancel: cancel.clone(),
        };
        tracker.spawn(
            conn.run()
                .instrument(info_span!("http_conn", id = next_id, %peer)),
        );
    }
}

/// One accepted HTTP connection, before it is known to be an HTTP API
/// client or half of an RTSP-over-HTTP tunnel.
struct Conn {
    state: Arc<State>,
    app: Router,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    cancel: CancellationToken,
}

impl Conn {
    /// With tunnels on, reads the first request head to see whether it
    /// opens a tunnel ([`tunnel`]); an API request goes to hyper with the
    /// head read so far in front of the rest.
    async fn run(mut self) {
        let shared = self.state.shared.clone();
        let config = shared.config();
        let http = &config.http;
        let mut prefix = Vec::new();
        if config.tunnel {
            let max_head = http.max_head_bytes.max(MIN_HEAD_BYTES);
            let read = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = tunnel::read_head(&mut self.stream, max_head, http.max_headers.max(1), http.read_timeout) => r,
            };
            match read {
                (buf, Ok(Sniffed::Tunnel { head, len })) => {
                    let early = buf[len..].to_vec();
                    let conn_id = shared.next_conn_id();
                    let slot = shared.admit(self.peer.ip());
                    let held = Box::new(self.slot);
                    let serve = tunnel::serve(
                        shared.clone(),
                        self.stream,
                        head,
                        early,
                        self.peer,
                        conn_id,
                        slot,
                        held,
                        self.cancel,
                    );
                    return Box::pin(serve)
                        .instrument(info_span!("conn", id = conn_id))
                        .await;
                }
                (_, Err(HeadError::Timeout | HeadError::Closed)) => {
                    debug!("HTTP request head not received");
                    return;
                }
                // The API's request, or one hyper refuses its own way.
                (buf, _) => prefix = buf,
            }
        }
        let mut io = TimeoutStream::new(Prefixed::new(prefix, self.stream));
        io.set_read_timeout(Some(http.read_timeout));
        io.set_write_timeout(Some(http.write_timeout));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(http.read_timeout)
            .max_buf_size(http.max_head_bytes.max(MIN_HEAD_BYTES))
            .max_headers(http.max_headers.max(1))
            .serve_connection(TokioIo::new(Box::pin(io)), with_peer(&self.app, self.peer));
        let mut conn = std::pin::pin!(conn);
        let done = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = self.cancel.cancelled() => None,
        };
        let r = match done {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = r {
            debug!(error = %e, "HTTP connection ended");
        }
        drop(self.slot);
    }
}

/// The router as one connection's service: each request carries the
/// connection's peer address ([`auth::Peer`]) for access control.
fn with_peer(
    app: &Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    let service = TowerToHyperService::new(app.clone());
    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(auth::Peer(peer));
        hyper::service::Service::call(&service, req)
    })
}

/// The running HTTP side: where it listens and what stops its accept
/// loop (a reload that moves it starts another loop, then stops this one).
#[derive(Default)]
pub(crate) struct Side {
    pub(crate) addr: Option<SocketAddr>,
    stop: Option<CancellationToken>,
}

/// Serves HTTP on `listener` (none: the side is off) in place of what
/// served before; connections of the old listener finish what they do.
/// Returns the new address.
pub(crate) fn start(
    shared: &Arc<Shared>,
    listener: Option<TcpListener>,
    side: &mut Side,
) -> io::Result<Option<SocketAddr>> {
    if let Some(old) = side.stop.take() {
        old.cancel();
    }
    side.addr = None;
    let Some(listener) = listener else {
        return Ok(None);
    };
    let addr = listener.local_addr()?;
    let stop = shared.cancel.child_token();
    let state = State::new(shared.clone(), &shared.config().http, stop.clone());
    shared.tracker.spawn(
        serve(state, listener, shared.tracker.clone(), stop.clone()).instrument(info_span!("http")),
    );
    side.addr = Some(addr);
    side.stop = Some(stop);
    Ok(Some(addr))
}

/// One of the open HTTP connections, counted against the cap in force.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        // Only the accept loop adds, so the check and the add cannot race
        // with another add.
        if open.load(Ordering::Relaxed) >= max {
            return None;
        }
        open.fetch_add(1, Ordering::Relaxed);
        Some(Self(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!("off".parse(), Ok(HttpListen::Off));
        assert_eq!(
            "0.0.0.0:9000".parse(),
            Ok(HttpListen::Explicit("0.0.0.0:9000".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:80".parse(),
            Ok(HttpListen::Explicit("[::1]:80".parse().unwrap()))
        );
        assert!("localhost".parse::<HttpListen>().is_err());
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host_part("example.org:8080"), "example.org");
        assert_eq!(host_part("example.org"), "example.org");
        assert_eq!(host_part("[::1]:8080"), "[::1]");
        assert_eq!(host_part("[::1]"), "[::1]");
    }
}
