//! Access control on the HTTP side (issue 12), with the RTSP side's users,
//! realm, nonces, nonce counts and per-address failure counts
//! ([`crate::server::auth::Guard`]):
//!
//! - `/api/v1/*` needs the `api` permission, `/metrics` `metrics`, `/`
//!   `status` (`[http.permissions]`; each `"anyone"` by default);
//!   `/healthz` is always open; `/sdp/{path}` is a DESCRIBE by another
//!   way, so the path's `[[paths]]` read rule decides it, users and
//!   addresses alike ([`path_read`], called by the handler with the path
//!   it serves).
//! - Credentials: Digest (RFC 7616 §3.4, the `uri=` being the
//!   request-target), Basic (RFC 7617) only with `[auth]
//!   allow_basic_without_tls` since this listener is plain HTTP, or a
//!   bearer token (RFC 6750 §2.1) that a permission names.
//! - Missing or wrong credentials: 401 (RFC 7235 §3.1) with the Digest
//!   challenges, SHA-256 then MD5, and `Bearer realm=...` where the
//!   permission names a token (RFC 6750 §3; `error="invalid_token"` after
//!   a refused one). A malformed header: 400. Credentials that are right
//!   but do not hold the permission, a refused address, or an address
//!   blocked for guessing (`max_auth_failures`, shared with RTSP): 403
//!   (RFC 7231 §6.5.3).
//!
//! Every request is checked against the configuration in force, so a
//! reload that changes users, tokens or permissions applies to the next
//! request. Nothing here logs a credential.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State as Extract};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use super::State;
use crate::proto::auth::permission::Permission;
use crate::proto::auth::rules::{Access, Who};
use crate::proto::auth::{bearer, AuthRequest};
use crate::server::auth::Verdict;
use crate::server::Config;

/// The address of the client of a request (set per connection by the
/// accept loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// What a request path needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: `/healthz`, `/sdp/...` (its handler checks the path's
    /// rule), and paths no route serves (404).
    Nothing,
    Permission(Permission),
}

/// The permission a path needs, by the raw path the router matches on.
fn need(path: &str) -> Need {
    match path {
        "/" => Need::Permission(Permission::Status),
        "/metrics" => Need::Permission(Permission::Metrics),
        p if p == "/api" || p.starts_with("/api/") => Need::Permission(Permission::Api),
        _ => Need::Nothing,
    }
}

/// What an answer is about: a permission, or reading a path.
#[derive(Debug, Clone, Copy)]
pub(super) enum What<'a> {
    Permission(Permission),
    Read(&'a str),
}

/// The parts of a request access control reads.
pub(super) struct Asked<'a> {
    pub(super) method: &'a Method,
    /// The request-target as sent: what a Digest `uri=` repeats.
    pub(super) target: String,
    pub(super) headers: &'a HeaderMap,
    pub(super) peer: Option<Peer>,
}

impl<'a> Asked<'a> {
    pub(super) fn of(req: &'a Request) -> Self {
        Self {
            method: req.method(),
            target: req.uri().to_string(),
            headers: req.headers(),
            peer: req.extensions().get::<Peer>().copied(),
        }
    }
}

/// The middleware: a request for `/`, `/metrics` or `/api/...` goes on
/// only with its permission.
pub(super) async fn guard(
    Extract(state): Extract<Arc<State>>,
    req: Request,
    next: Next,
) -> Response {
    let Need::Permission(p) = need(req.uri().path()) else {
        return next.run(req).await;
    };
    match authorize(&state, &Asked::of(&req), What::Permission(p)) {
        Ok(_) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Whether the request may read `path` (`/sdp/{path}`), by the path's
/// `[[paths]]` rule as for a DESCRIBE.
pub(super) fn path_read(state: &State, asked: &Asked<'_>, path: &str) -> Result<(), Refusal> {
    authorize(state, asked, What::Read(path)).map(drop)
}

/// The principal (if any was needed) or the refusal.
/// Why a request may not go on, as its answer.
#[derive(Debug)]
pub(super) enum Refusal {
    /// 401 with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// 400: an `Authorization` header that cannot be read.
    BadRequest,
    /// 403.
    Forbidden,
    /// 500: a request without its peer address (a bug).
    Internal,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Challenge(values) => {
                let mut r = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
                let headers = r.headers_mut();
                for v in values {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        headers.append(header::WWW_AUTHENTICATE, v);
                    }
                }
                r
            }
            Self::BadRequest => {
                (StatusCode::BAD_REQUEST, "malformed Authorization header\n").into_response()
            }
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden\n").into_response(),
            Self::Internal => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
            }
        }
    }
}

fn authorize(state: &State, asked: &Asked<'_>, what: What<'_>) -> Result<Option<String>, Refusal> {
    let shared = &state.shared;
    let config = shared.config();
    let Some(Peer(peer)) = asked.peer else {
        // The accept loop sets it on every request.
        warn!("HTTP request without its peer address");
        return Err(Refusal::Internal);
    };
    let authorization = match asked.headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(v) => Some(v),
            Err(_) => return Err(Refusal::BadRequest),
        },
    };
    let now = Instant::now();
    let auth = AuthRequest {
        method: asked.method.as_str(),
        uri: &asked.target,
        authorization,
        ip: peer.ip(),
        // The HTTP listener has no TLS: Basic only where allowed in clear.
        is_tls: false,
        now,
    };
    let (guard, refusals) = (&shared.guard, &shared.refusals);
    let verdict = match what {
        What::Permission(p) => guard.check_grant(&config.auth, refusals, p, &auth),
        What::Read(path) => {
            guard.check_path(&config.auth, refusals, path, Access::Read, None, &auth)
        }
    };
    match verdict {
        Verdict::Allow(principal) => Ok(principal),
        Verdict::Forbidden => {
            debug!(%peer, target = %asked.target, "HTTP request forbidden");
            Err(Refusal::Forbidden)
        }
        Verdict::BadRequest => Err(Refusal::BadRequest),
        Verdict::Challenge {
            stale,
            bearer_refused,
        } => {
            let policy = &config.auth.policy;
            let mut values = guard.challenges(policy, peer.ip(), now, stale);
            let tokens_may = match what {
                What::Permission(p) => names_a_token(&config, config.auth.grants.of(p)),
                What::Read(_) => false,
            };
            if tokens_may || bearer_refused {
                values.push(bearer::challenge(&policy.realm, bearer_refused));
            }
            Err(Refusal::Challenge(values))
        }
    }
}

/// Whether `who` names one of the configured tokens.
fn names_a_token(config: &Config, who: &Who) -> bool {
    match who {
        Who::Anyone => false,
        Who::Users(names) => config.auth.tokens.iter().any(|t| names.contains(&t.name)),
    }
}

/// Says, at start and at each reload, when the API (kicking sessions,
/// reloading) is open to anyone on an address other hosts can reach
/// although users are configured: most likely an oversight.
pub(crate) fn warn_if_open(config: &Config) {
    let Some(addr) = config.http.listen.addr() else {
        return;
    };
    let users = !config.auth.policy.users.is_empty();
    if users && config.auth.grants.api == Who::Anyone && !addr.ip().is_loopback() {
        warn!(%addr, "the HTTP API (sessions, kicking, reload) is open to anyone on a non-loopback address although [[users]] are configured; set [http.permissions] api");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_needs_its_permission() {
        use Permission::{Api, Metrics, Status};
        let cases = [
            ("/", Need::Permission(Status)),
            ("/metrics", Need::Permission(Metrics)),
            ("/api/v1/paths", Need::Permission(Api)),
            ("/api/v1/sessions", Need::Permission(Api)),
            ("/api/v1/sessions/abc", Need::Permission(Api)),
            ("/api/v1/reload", Need::Permission(Api)),
            ("/api/v2/anything", Need::Permission(Api)),
            ("/api", Need::Permission(Api)),
            ("/healthz", Need::Nothing),
            ("/sdp/clip.wav", Need::Nothing),
            ("/nope", Need::Nothing),
            ("/apix", Need::Nothing),
        ];
        for (path, want) in cases {
            assert_eq!(need(path), want, "{path}");
        }
    }
}
