//! Redirects and draining, the IO side of [`crate::proto::redirect`].
//!
//! - A `[[paths]]` rule with `redirect` answers DESCRIBE, and SETUP
//!   without a session, `302 Moved Temporarily` with `Location:` (RFC 2326
//!   §11.3.3, §12.25) on one of its edges. Access control runs first: a
//!   reader who may not read the path gets 401/403 and never sees an edge.
//! - `least_readers` edges are polled in the background: `GET
//!   /api/v1/paths` on each edge's API, the sum of its `readers`, every
//!   `redirect_poll_ms` with the same bound as a timeout (at most 2 s); an
//!   edge that does not answer is skipped until it does.
//! - A request from another rtspd (`Via: ... (rtspd)`, §12.43) is never
//!   redirected: an edge pulling from its origin gets the stream there.
//! - Draining (`POST /api/v1/drain`, SIGTERM with `--drain-to`): every
//!   new reader gets 302 to the drain target, playing clients whose
//!   connection is open get a `REDIRECT` request (§10.15).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Shared;
use crate::proto::auth::rules::find;
use std::net::IpAddr;

use crate::proto::redirect::{
    is_self, is_self_ip, location, port_and_host, via_rtspd, Listening, Redirect, SelfHost,
    VIA_HEADER,
};
use crate::proto::rtsp::{Method, Request};

/// Largest `/api/v1/paths` answer read from an edge.
const MAX_ANSWER: u64 = 4 << 20;

/// Longest wait for one edge's answer.
const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the redirects and the drain remember between requests.
pub(crate) struct Redirector {
    inner: Mutex<Inner>,
    /// The drain target, for connections to tell their playing clients.
    drain_tx: watch::Sender<Option<String>>,
}

impl Default for Redirector {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            drain_tx: watch::channel(None).0,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Round-robin turn of each rule, by its pattern.
    turns: HashMap<String, usize>,
    /// Each polled edge API's readers at its last poll (`None`: it did not
    /// answer), plus the readers sent there since.
    loads: HashMap<String, Load>,
    /// The drain target, once draining.
    drain: Option<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Load {
    polled: Option<u64>,
    sent: u64,
}

impl Redirector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The drain target, while draining.
    pub(crate) fn draining(&self) -> Option<String> {
        self.lock().drain.clone()
    }

    /// Starts draining to `to` (a checked RTSP base URL); false when a
    /// drain already runs.
    fn start_drain(&self, to: String) -> bool {
        {
            let mut inner = self.lock();
            if inner.drain.is_some() {
                return false;
            }
            inner.drain = Some(to.clone());
        }
        self.drain_tx.send_replace(Some(to));
        true
    }

    /// What a connection watches to learn that a drain started.
    pub(crate) fn watch_drain(&self) -> watch::Receiver<Option<String>> {
        self.drain_tx.subscribe()
    }

    /// The edge for a reader of a path under `rule`, counted as sent.
    fn choose(&self, pattern: &str, rule: &Redirect) -> Option<String> {
        let mut inner = self.lock();
        let turn = inner.turns.entry(pattern.to_owned()).or_default();
        let t = *turn;
        *turn = turn.wrapping_add(1);
        let load = |i: usize| {
            let api = rule.edges.get(i)?.api.as_ref()?;
            let l = inner.loads.get(api)?;
            l.polled.map(|p| p + l.sent)
        };
        let i = rule.choose(t, load)?;
        let edge = rule.edges.get(i)?;
        if let Some(api) = &edge.api {
            inner.loads.entry(api.clone()).or_default().sent += 1;
        }
        Some(edge.url.clone())
    }
}

/// The 302 target for `req`, when it is a new reader that a rule (or the
/// drain) sends elsewhere: DESCRIBE, or SETUP without `Session` and not
/// `mode=record`, from anyone but another rtspd.
pub(crate) fn target_for(shared: &Shared, req: &Request, path: &str) -> Option<String> {
    let new_reader = match req.method {
        Method::Describe => true,
        Method::Setup => {
            req.headers.get("Session").is_none()
                && !req
                    .headers
                    .get("Transport")
                    .is_some_and(|t| t.to_ascii_lowercase().contains("mode=record"))
        }
        _ => false,
    };
    if !new_reader || req.headers.get(VIA_HEADER).is_some_and(via_rtspd) {
        return None;
    }
    let redirector = &shared.redirector;
    if let Some(to) = redirector.draining() {
        return Some(location(&to, &req.uri));
    }
    let config = shared.config();
    let rule = find(&config.auth.rules, path)?;
    let r = rule.redirect.as_ref()?;
    let local = match r.when {
        crate::proto::redirect::When::Always => 0,
        crate::proto::redirect::When::Full { .. } => shared
            .sessions
            .census()
            .readers
            .get(path)
            .copied()
            .unwrap_or(0),
    };
    if !r.applies(local) {
        return None;
    }
    let edge = redirector.choose(&rule.pattern, r)?;
    Some(location(&edge, &req.uri))
}

/// The first redirect (or drain target) of `config` that names this
/// server, listening at `rtsp` (and `rtsps`), as an error message: the
/// ports actually bound, so `port = 0` is covered too, and DNS names
/// resolved (each within [`RESOLVE_TIMEOUT`]; one that does not resolve
/// is not this server).
pub(crate) async fn self_redirect(
    config: &super::Config,
    rtsp: std::net::SocketAddr,
    rtsps: Option<std::net::SocketAddr>,
) -> Option<String> {
    let here = Listening {
        bind: config.bind,
        ports: std::iter::once(rtsp.port())
            .chain(rtsps.map(|a| a.port()))
            .collect(),
    };
    for (i, r) in config.auth.rules.iter().enumerate() {
        for e in r.redirect.iter().flat_map(|r| r.edges.iter()) {
            if names_self(&e.url, &here).await {
                return Some(format!(
                    "paths[{i}].redirect: {} is this server ({rtsp}): readers would be redirected to it forever",
                    e.url
                ));
            }
        }
    }
    match &config.drain_to {
        Some(d) if names_self(d, &here).await => {
            Some(format!("drain_to: {d} is this server ({rtsp})"))
        }
        _ => None,
    }
}

/// Longest wait for a redirect's host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `url` reaches this server: [`is_self`], or a name resolving
/// to, or (bound to every address) an address of, this machine.
async fn names_self(url: &str, here: &Listening) -> bool {
    if is_self(url, here) {
        return true;
    }
    let Some((port, host)) = port_and_host(url) else {
        return false;
    };
    if !here.ports.contains(&port) {
        return false;
    }
    let ips: Vec<IpAddr> = match host {
        SelfHost::Localhost => return true,
        SelfHost::Ip(ip) => vec![ip],
        SelfHost::Name(name) => {
            match tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                _ => {
                    debug!(%name, "redirect host does not resolve; not this server");
                    return false;
                }
            }
        }
    };
    ips.into_iter()
        .any(|ip| is_self_ip(ip, here, is_local_address))
}

/// Whether `ip` is an address of this machine: one a socket can bind.
fn is_local_address(ip: IpAddr) -> bool {
    !ip.is_multicast() && std::net::UdpSocket::bind(std::net::SocketAddr::new(ip, 0)).is_ok()
}

/// Why a drain cannot start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrainError {
    #[error("{0}")]
    Url(#[from] crate::proto::redirect::UrlError),
    #[error("{0} is this server")]
    ToSelf(String),
    #[error("already draining to {0}")]
    Already(String),
}

/// Checks `to` and starts draining this server to it: new readers get
/// 302 to `to`, every connection sends its playing clients a `REDIRECT`
/// (RFC 2326 §10.15). [`drained`] then waits for them to leave.
pub(crate) fn start_drain(shared: &Shared, to: &str) -> Result<(), DrainError> {
    use crate::proto::redirect::{base_url, is_self, Listening, RTSP_SCHEMES};
    let to = base_url(to, RTSP_SCHEMES)?;
    let config = shared.config();
    let here = Listening {
        bind: config.bind,
        ports: std::iter::once(shared.rtsp_addr.port())
            .chain(shared.tls.as_ref().map(|t| t.addr.port()))
            .collect(),
    };
    if is_self(&to, &here) {
        return Err(DrainError::ToSelf(to));
    }
    if !shared.redirector.start_drain(to.clone()) {
        return Err(DrainError::Already(
            shared.redirector.draining().unwrap_or_default(),
        ));
    }
    info!(
        %to,
        readers = readers(shared),
        timeout_s = config.drain_timeout.as_secs(),
        "draining: new readers get 302, playing clients a REDIRECT"
    );
    Ok(())
}

/// Returns once no reader is left, or after the configured
/// `drain_timeout`; the caller then stops the server.
pub(crate) async fn drained(shared: &Shared) {
    let limit = shared.config().drain_timeout;
    let t0 = tokio::time::Instant::now();
    loop {
        let left = readers(shared);
        if left == 0 {
            info!("drained: every reader left");
            return;
        }
        if t0.elapsed() >= limit {
            warn!(
                readers = left,
                "drain timed out; stopping with readers left"
            );
            return;
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Sessions reading from this server.
pub(crate) fn readers(shared: &Shared) -> usize {
    shared.sessions.census().readers.values().sum()
}

/// Polls every `least_readers` edge API named by the rules in force,
/// until the server stops.
pub(crate) async fn poll_edges(shared: Arc<Shared>) {
    loop {
        let config = shared.config();
        let every = config.redirect_poll;
        let mut apis: Vec<String> = config
            .auth
            .rules
            .iter()
            .filter_map(|r| r.redirect.as_ref())
            .filter(|r| r.policy == crate::proto::redirect::Policy::LeastReaders)
            .flat_map(|r| r.edges.iter().filter_map(|e| e.api.clone()))
            .collect();
        apis.sort();
        apis.dedup();
        drop(config);
        let timeout = every.min(MAX_POLL_TIMEOUT);
        let mut polls = tokio::task::JoinSet::new();
        for api in apis.iter().cloned() {
            polls.spawn(async move {
                let readers = tokio::time::timeout(timeout, readers_at(&api))
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r);
                (api, readers)
            });
        }
        let answers = polls.join_all().await;
        {
            let mut inner = shared.redirector.lock();
            inner.loads.retain(|k, _| apis.contains(k));
            for (api, readers) in answers {
                let l = inner.loads.entry(api.clone()).or_default();
                match readers {
                    Ok(n) => {
                        if l.polled.is_none() {
                            info!(edge_api = %api, readers = n, "redirect edge answers");
                        }
                        *l = Load {
                            polled: Some(n),
                            sent: 0,
                        };
                    }
                    Err(e) => {
                        if l.polled.is_some() || l.sent == 0 {
                            warn!(edge_api = %api, error = %e, "redirect edge skipped: its API does not answer");
                        }
                        *l = Load {
                            polled: None,
                            sent: 1,
                        };
                    }
                }
            }
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The sum of the `readers` an edge's `/api/v1/paths` reports.
async fn readers_at(api: &str) -> Result<u64, String> {
    let u = url::Url::parse(api).map_err(|e| e.to_string())?;
    let host = u.host_str().ok_or("no host")?;
    let port = u.port_or_known_default().unwrap_or(80);
    let mut s = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the answer ends with the connection, never chunked.
    let req = format!(
        "GET /api/v1/paths HTTP/1.0\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.take(MAX_ANSWER)
        .read_to_end(&mut body)
        .await
        .map_err(|e| e.to_string())?;
    let split = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header end")?;
    let head = String::from_utf8_lossy(&body[..split]);
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("HTTP status {status}"));
    }
    readers_in(&body[split + 4..])
}

/// The sum of `readers` in a `/api/v1/paths` JSON answer.
fn readers_in(json: &[u8]) -> Result<u64, String> {
    #[derive(serde::Deserialize)]
    struct P {
        #[serde(default)]
        readers: u64,
    }
    let paths: Vec<P> = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    debug!(paths = paths.len(), "edge paths polled");
    Ok(paths.iter().map(|p| p.readers).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_interface_addresses_of_this_machine_are_self() {
        let any = Listening {
            bind: IpAddr::from([0, 0, 0, 0]),
            ports: vec![8554],
        };
        assert!(names_self("rtsp://localhost:8554", &any).await);
        assert!(is_local_address(IpAddr::from([127, 0, 0, 1])));
        // TEST-NET-1 (RFC 5737) is nobody's address.
        assert!(!is_local_address(IpAddr::from([192, 0, 2, 1])));
        assert!(!names_self("rtsp://192.0.2.1:8554", &any).await);
        assert!(!names_self("rtsp://localhost:8555", &any).await);
        // A name that cannot resolve (RFC 6761 .invalid) is not this server.
        assert!(!names_self("rtsp://nowhere.invalid:8554", &any).await);
    }

    #[test]
    fn readers_are_summed() {
        let j = br#"[{"path":"a.wav","readers":2},{"path":"b","readers":3,"x":1}]"#;
        assert_eq!(readers_in(j), Ok(5));
        assert!(readers_in(b"{}").is_err());
    }
}
