//! Method dispatch (RFC 2326 §10): turns one request into one response,
//! one file per method, in the shape of mini-redis's `cmd/`. The pure
//! decisions live in [`crate::proto`] (the session state machine, transport
//! choice, targets); these files apply them to the server's shared state
//! and the pacing thread. [`handle`] is the one place every request passes
//! through before its method runs.

mod announce;
pub(crate) mod describe;
mod parameter;
mod pause;
mod play;
mod record;
mod setup;
mod teardown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info};

use super::auth::{On, Verdict};
use super::live;
use super::refusals::RETRY_AFTER_SECS;
use super::sessions::{Entry, Presentation};
use super::Shared;
use crate::media::Clip;
use crate::proto::error::Error;
use crate::proto::rtsp::{Method, Request, Response, StatusCode};
use crate::proto::session::{session_id, Scope};
use crate::proto::target::{parse_target, Target};

const PUBLIC_PLAY: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
const PUBLIC_PUBLISH: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, \
                              TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The methods this server implements, for `Public:` and `Allow:`:
/// ANNOUNCE and RECORD only when a channel takes publishers.
fn public(shared: &Shared) -> &'static str {
    if shared.channels.takes_publishers() {
        PUBLIC_PUBLISH
    } else {
        PUBLIC_PLAY
    }
}

/// The request in hand, and where it came from: what every method needs.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    shared: &'a Arc<Shared>,
    req: &'a Request,
    peer: SocketAddr,
    /// The RTSP connection it arrived on.
    conn: u64,
    /// The user it authenticated as, when its path rule asked for one.
    user: Option<&'a str>,
}

impl Ctx<'_> {
    /// The session the request names, the part of it addressed and its
    /// presentation path, for the session-scoped methods.
    fn scoped(&self) -> Result<(String, Scope, String), Error> {
        let id = session_id(self.req)?.ok_or(Error::SessionNotFound)?;
        let t = target(self.shared, self.req)?;
        let scope = t.track.map_or(Scope::Aggregate, Scope::Track);
        Ok((id, scope, t.path))
    }

    /// Runs `f` on session `id` if this client owns it (and, for an
    /// interleaved session, on its connection), refreshing it first.
    fn with_session<R>(&self, id: &str, f: impl FnOnce(&mut Entry) -> R) -> Result<R, Error> {
        let now = Instant::now();
        self.shared
            .sessions
            .with(id, self.peer.ip(), self.conn, now, f)
    }
}

/// A response with the headers every response carries.
pub(crate) fn base_response(status: StatusCode, cseq: Option<u32>) -> Response {
    let r = Response::new(status).header("Server", concat!("rtspd/", env!("CARGO_PKG_VERSION")));
    match cseq {
        Some(c) => r.header("CSeq", c.to_string()),
        None => r,
    }
}

/// Answers one request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
) -> Response {
    let Some(cseq) = req.cseq() else {
        // A method we do not implement at all (an HTTP client's `GET`, say)
        // is 501 whether or not it carried a CSeq (ROBUSTNESS B1#5).
        let status = if matches!(req.method, Method::Other(_)) {
            StatusCode::NOT_IMPLEMENTED
        } else {
            StatusCode::BAD_REQUEST
        };
        return base_response(status, None);
    };
    debug!(method = %req.method, uri = %req.uri, cseq, "request");
    if let Some(tags) = req.headers.get("Require") {
        return base_response(StatusCode::OPTION_NOT_SUPPORTED, Some(cseq))
            .header("Unsupported", tags);
    }
    let user = match authorize(shared, req, peer, conn) {
        Ok(user) => user,
        Err(refused) => return refused.header("CSeq", cseq.to_string()),
    };
    if let Some(to) = target(shared, req)
        .ok()
        .and_then(|t| super::redirect::target_for(shared, req, &t.path))
    {
        info!(method = %req.method, uri = %req.uri, location = %to, "redirected");
        return base_response(StatusCode::MOVED_TEMPORARILY, Some(cseq)).header("Location", to);
    }
    let ok = base_response(StatusCode::OK, Some(cseq));
    let cx = &Ctx {
        shared,
        req,
        peer,
        conn,
        user: user.as_deref(),
    };
    let result = match req.method {
        Method::Options => {
            parameter::keepalive(shared, req, peer.ip(), conn);
            Ok(ok.header("Public", public(shared)))
        }
        Method::Describe => describe::describe(cx, ok).await,
        Method::Setup => setup::setup(cx, ok).await,
        Method::Play => play::play(cx, ok).await,
        Method::Pause => pause::pause(cx, ok).await,
        Method::Teardown => teardown::teardown(cx, ok).await,
        Method::GetParameter | Method::SetParameter => parameter::parameter(cx, ok),
        Method::Announce if shared.channels.takes_publishers() => announce::announce(cx, ok).await,
        Method::Record if shared.channels.takes_publishers() => record::record(cx, ok).await,
        // A play-only server (ROBUSTNESS B4#36).
        Method::Announce | Method::Record | Method::Redirect => {
            return base_response(StatusCode::METHOD_NOT_ALLOWED, Some(cseq))
                .header("Allow", public(shared));
        }
        Method::Other(_) => Err(Error::NotImplemented),
    };
    result.unwrap_or_else(|e| {
        debug!(method = %req.method, error = %e, "request refused");
        let mut r = base_response(e.status(), Some(cseq));
        if let Some(reason) = e.reason() {
            r = r.reason(reason);
        }
        if let Error::LimitReached(limit) = e {
            shared.refusals.refuse(limit);
            r = r.header("Retry-After", RETRY_AFTER_SECS.to_string());
        }
        if matches!(e, Error::NotImplemented) {
            r.header("Public", public(shared))
        } else {
            r
        }
    })
}

/// Access control (`server::auth`): the user to go on with, or the
/// response (401 with challenges, 403, 400) without its CSeq.
fn authorize(
    shared: &Shared,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
) -> Result<Option<String>, Response> {
    let config = shared.config();
    if config.auth.rules.is_empty() || matches!(req.method, Method::Options) {
        return Ok(None);
    }
    let now = Instant::now();
    // The session's own path for a request that names one; an unknown
    // session is left to the method (454), judged on the URI's path.
    let owner = session_id(req)
        .ok()
        .flatten()
        .and_then(|id| shared.sessions.owner(&id));
    let path = match &owner {
        Some(o) => o.path.clone(),
        None => target(shared, req).map(|t| t.path).unwrap_or_default(),
    };
    let verdict = shared.guard.check(
        &config.auth,
        &shared.refusals,
        req,
        On {
            path: &path,
            session: owner.as_ref(),
            // Basic credentials are taken on RTSPS only (or when allowed).
            is_tls: shared.is_tls(conn),
        },
        peer.ip(),
        now,
    );
    let refused = |s: StatusCode| {
        Response::new(s).header("Server", concat!("rtspd/", env!("CARGO_PKG_VERSION")))
    };
    match verdict {
        Verdict::Allow(user) => Ok(user),
        Verdict::Forbidden => Err(refused(StatusCode::FORBIDDEN)),
        Verdict::BadRequest => Err(refused(StatusCode::BAD_REQUEST)),
        Verdict::Challenge { stale, .. } => {
            let mut r = refused(StatusCode::UNAUTHORIZED);
            for c in shared
                .guard
                .challenges(&config.auth.policy, peer.ip(), now, stale)
            {
                r = r.header("WWW-Authenticate", c);
            }
            Err(r)
        }
    }
}

fn target(shared: &Shared, req: &Request) -> Result<Target, Error> {
    parse_target(&req.uri, shared.config().limits.max_uri)
}

/// The clip or live channel a path names.
pub(crate) async fn open_presentation(
    shared: &Arc<Shared>,
    path: &str,
) -> Result<Presentation, Error> {
    match path.strip_prefix(live::PREFIX) {
        Some(name) => {
            super::pull::Pulls::ensure(shared, name).await?;
            shared
                .channels
                .get(name)
                .map(Presentation::Live)
                .ok_or(Error::NotFound)
        }
        None => open_clip(shared, path).await.map(Presentation::Clip),
    }
}

async fn open_clip(shared: &Arc<Shared>, path: &str) -> Result<Arc<Clip>, Error> {
    if path.is_empty() {
        return Err(Error::NotFound);
    }
    let shared2 = shared.clone();
    let p = path.to_owned();
    let opened = tokio::task::spawn_blocking(move || shared2.catalog().open(&p))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    opened.map_err(|e| {
        info!(clip = %path, error = %e, "cannot serve clip");
        Error::from(e)
    })
}

/// A new session id: 128 random bits from the OS, in hex.
fn new_session_id() -> Result<String, Error> {
    Ok(random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("OS random source: {e}")))?;
    Ok(b)
}
