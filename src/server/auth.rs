//! Access control at dispatch: every request but OPTIONS passes
//! `Guard::check` before its method runs (DESIGN "Authentication").
//!
//! - The path is the session's for a request that names one, else the
//!   Request-URI's; the first `[[paths]]` rule fitting it decides
//!   (`proto::auth::rules`). No rule: allowed, as before there were rules.
//! - Reading (DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET/SET_PARAMETER)
//!   needs `read`; publishing (ANNOUNCE, RECORD, a `mode=record` SETUP,
//!   and every request on a recording session) needs `publish`.
//! - Missing or failed credentials: 401 with the Digest challenges; a
//!   header that cannot be parsed: 400; an authenticated user the rule
//!   does not name, or a refused address: 403. A session belongs to the
//!   user who created it: anyone else gets 403 on it.
//! - Brute force (ROBUSTNESS B8#65): `max_auth_failures` failed attempts
//!   from one address within 60 s, and it gets 403 without a challenge
//!   for 60 s, counted in `rtspd_refused_total{limit="max_auth_failures"}`
//!   and reported by [`super::refusals`] (rate-limited WARN).
//!
//! Nothing here logs a credential: failures are logged with the user
//! name the client claimed and the reason only.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::proto::auth::nonce::DEFAULT_LIFETIME;
use crate::proto::auth::rules::{self, Access, Decision, PathRule};
use crate::proto::auth::throttle::Throttle;
use crate::proto::auth::{AuthRequest, Authenticator, Policy};
use crate::proto::limit::Limit;
use crate::proto::rtsp::{Method, Request};

use super::refusals::Refusals;

/// How long failures are counted, and how long a blocked address waits.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Users, rules and the login limits (part of `server::Config`, so a
/// reload replaces them; the next request of every session is checked
/// against the new ones).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub policy: Policy,
    pub rules: Vec<PathRule>,
    pub nonce_lifetime: Duration,
    pub max_failures: u32,
    pub max_unknown_sessions: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            rules: Vec::new(),
            nonce_lifetime: DEFAULT_LIFETIME,
            max_failures: 10,
            max_unknown_sessions: 20,
        }
    }
}

/// What the guard says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on; the authenticated user, if the rule asked for one.
    Allow(Option<String>),
    /// 401 with fresh challenges (`stale=true` when the nonce expired).
    Challenge { stale: bool },
    /// 403.
    Forbidden,
    /// 400: an `Authorization` header that cannot be parsed.
    BadRequest,
}

/// The session a request names, as the guard needs it.
#[derive(Debug, Clone)]
pub struct SessionOwner {
    pub path: String,
    pub principal: Option<String>,
    pub recording: bool,
}

/// What a request is about: the path, and the session it names; and
/// whether it came over TLS (Basic is accepted there).
#[derive(Debug, Clone, Copy)]
pub(crate) struct On<'a> {
    pub path: &'a str,
    pub session: Option<&'a SessionOwner>,
    pub is_tls: bool,
}

/// The server's nonce secret, nonce counts and failure counts.
pub(crate) struct Guard {
    authenticator: Mutex<Authenticator>,
    throttle: Mutex<Throttle>,
}

impl Guard {
    /// A guard with a fresh 256-bit secret from the OS CSPRNG.
    pub(crate) fn new(config: &AuthConfig, now: Instant) -> std::io::Result<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| std::io::Error::other(format!("OS random source: {e}")))?;
        Ok(Self {
            authenticator: Mutex::new(Authenticator::new(secret, now, config.nonce_lifetime)),
            throttle: Mutex::new(Throttle::new(
                config.max_failures,
                FAILURE_WINDOW,
                FAILURE_WINDOW,
            )),
        })
    }

    /// Applies a reloaded configuration's limits.
    pub(crate) fn configure(&self, config: &AuthConfig) {
        lock(&self.authenticator).set_nonce_lifetime(config.nonce_lifetime);
        lock(&self.throttle).max_failures = config.max_failures.max(1);
    }

    /// The decision for `req` from `ip` on `on.path` (the session's path
    /// when it names one).
    pub(crate) fn check(
        &self,
        config: &AuthConfig,
        refusals: &Refusals,
        req: &Request,
        on: On<'_>,
        ip: IpAddr,
        now: Instant,
    ) -> Verdict {
        let On {
            path,
            session,
            is_tls,
        } = on;
        if matches!(req.method, Method::Options) {
            return Verdict::Allow(None);
        }
        let Some(rule) = rules::find(&config.rules, path) else {
            return Verdict::Allow(None);
        };
        if lock(&self.throttle).blocked(ip, now) {
            refusals.refuse(Limit::MaxAuthFailures);
            return Verdict::Forbidden;
        }
        let access = access(req, session);
        if !rule.ip_allowed(ip) {
            debug!(%ip, path, "address refused by its path rule");
            return Verdict::Forbidden;
        }
        // Credentials are checked whenever the rule names users, or the
        // session has an owner to compare them with.
        let owner = session.and_then(|s| s.principal.as_deref());
        let user = if rule.needs_user(access) || owner.is_some() {
            let auth = AuthRequest {
                method: req.method.as_str(),
                uri: &req.uri,
                authorization: req.headers.get("Authorization"),
                ip,
                is_tls,
                now,
            };
            let result = lock(&self.authenticator).authenticate(&config.policy, &auth);
            match result {
                Ok(u) => Some(u),
                Err(failure) => {
                    debug!(%ip, path, method = %req.method, reason = %failure, "authentication failed");
                    if failure.counts_as_guess() && lock(&self.throttle).fail(ip, now) {
                        refusals.refuse(Limit::MaxAuthFailures);
                    }
                    if failure.is_malformed() {
                        return Verdict::BadRequest;
                    }
                    return Verdict::Challenge {
                        stale: failure == crate::proto::auth::Failure::StaleNonce,
                    };
                }
            }
        } else {
            None
        };
        if owner.is_some() && owner != user.as_deref() {
            debug!(%ip, path, "request on another user's session");
            return Verdict::Forbidden;
        }
        match rule.decide(access, ip, user.as_deref()) {
            Decision::Allow => Verdict::Allow(user),
            Decision::NeedUser => Verdict::Challenge { stale: false },
            Decision::Forbidden => Verdict::Forbidden,
        }
    }

    /// The `WWW-Authenticate` values of a 401.
    pub(crate) fn challenges(
        &self,
        policy: &Policy,
        ip: IpAddr,
        now: Instant,
        stale: bool,
    ) -> Vec<String> {
        lock(&self.authenticator).challenges(policy, ip, now, stale)
    }
}

/// Read or publish: what the request does, or what its session does.
fn access(req: &Request, session: Option<&SessionOwner>) -> Access {
    if session.is_some_and(|s| s.recording) {
        return Access::Publish;
    }
    match req.method {
        Method::Announce | Method::Record => Access::Publish,
        Method::Setup if is_record_setup(req) => Access::Publish,
        _ => Access::Read,
    }
}

/// A SETUP whose Transport asks for `mode=record` (RFC 2326 §12.39).
fn is_record_setup(req: &Request) -> bool {
    req.headers.get("Transport").is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("mode=record") || t.contains("mode=\"record\"")
    })
}

/// The guard's tables are updated in a few steps that cannot be left
/// half done, so a poisoned lock is fine to take.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
