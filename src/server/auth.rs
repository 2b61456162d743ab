//! Access control at dispatch: every request but OPTIONS passes
//! `Guard::check` before its method runs (DESIGN "Authentication"); the
//! HTTP side's requests pass `Guard::check_grant` (a permission) or
//! `Guard::check_path` (`/sdp/{path}`), with the same users, nonces and
//! failure counts (RFC 7616 over HTTP as over RTSP; RFC 7235 §3.1 401).
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

use crate::proto::auth::bearer::{self, Presented, Token};
use crate::proto::auth::nonce::DEFAULT_LIFETIME;
use crate::proto::auth::permission::{Grants, Permission};
use crate::proto::auth::rules::{self, Access, Decision, PathRule, Who};
use crate::proto::auth::throttle::Throttle;
use crate::proto::auth::{AuthRequest, Authenticator, Failure, Policy};
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
    /// Who holds each HTTP permission (`[http.permissions]`).
    pub grants: Grants,
    /// The HTTP side's bearer tokens (`[[http.tokens]]`), as hashes.
    pub tokens: Vec<Token>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            rules: Vec::new(),
            nonce_lifetime: DEFAULT_LIFETIME,
            max_failures: 10,
            max_unknown_sessions: 20,
            grants: Grants::default(),
            tokens: Vec::new(),
        }
    }
}

/// What the guard says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on; the authenticated user, if the rule asked for one.
    Allow(Option<String>),
    /// 401 with fresh challenges (`stale=true` when the nonce expired;
    /// `error="invalid_token"` on the Bearer one for a refused token).
    Challenge { stale: bool, bearer_refused: bool },
    /// 403.
    Forbidden,
    /// 400: an `Authorization` header that cannot be parsed.
    BadRequest,
}

impl Verdict {
    /// 401 for a request without (enough) credentials.
    pub(crate) fn challenge() -> Self {
        Self::Challenge {
            stale: false,
            bearer_refused: false,
        }
    }
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
        if matches!(req.method, Method::Options) {
            return Verdict::Allow(None);
        }
        let auth = AuthRequest {
            method: req.method.as_str(),
            uri: &req.uri,
            authorization: req.headers.get("Authorization"),
            ip,
            is_tls: on.is_tls,
            now,
        };
        self.check_path(
            config,
            refusals,
            on.path,
            access(req, on.session),
            on.session,
            &auth,
        )
    }

    /// The decision for `access` to `path` by the request `auth`
    /// describes: RTSP requests, and HTTP's `/sdp/{path}` (a DESCRIBE by
    /// another way, so the same read rule).
    pub(crate) fn check_path(
        &self,
        config: &AuthConfig,
        refusals: &Refusals,
        path: &str,
        access: Access,
        session: Option<&SessionOwner>,
        auth: &AuthRequest<'_>,
    ) -> Verdict {
        let ip = auth.ip;
        let Some(rule) = rules::find(&config.rules, path) else {
            return Verdict::Allow(None);
        };
        if self.blocked(refusals, ip, auth.now) {
            return Verdict::Forbidden;
        }
        if !rule.ip_allowed(ip) {
            debug!(%ip, path, "address refused by its path rule");
            return Verdict::Forbidden;
        }
        // Credentials are checked whenever the rule names users, or the
        // session has an owner to compare them with.
        let owner = session.and_then(|s| s.principal.as_deref());
        let user = if rule.needs_user(access) || owner.is_some() {
            match self.authenticate(config, refusals, auth, path) {
                Ok(u) => Some(u),
                Err(v) => return v,
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
            Decision::NeedUser => Verdict::challenge(),
            Decision::Forbidden => Verdict::Forbidden,
        }
    }

    /// The decision for a request that needs the HTTP permission `p`
    /// (`api`, `metrics`, `status`): a user by Digest (or Basic where
    /// allowed), or a bearer token (RFC 6750), that the permission names.
    /// Failures count towards the same per-address block as RTSP's.
    pub(crate) fn check_grant(
        &self,
        config: &AuthConfig,
        refusals: &Refusals,
        p: Permission,
        auth: &AuthRequest<'_>,
    ) -> Verdict {
        let who = config.grants.of(p);
        if *who == Who::Anyone {
            return Verdict::Allow(None);
        }
        let (ip, now) = (auth.ip, auth.now);
        if self.blocked(refusals, ip, now) {
            return Verdict::Forbidden;
        }
        let name = match auth.authorization.map(bearer::parse) {
            Some(Presented::Token(t)) => match bearer::find(&config.tokens, t) {
                Some(name) => name.to_owned(),
                None => {
                    debug!(%ip, method = auth.method, "unknown bearer token");
                    self.failed(refusals, ip, now);
                    return Verdict::Challenge {
                        stale: false,
                        bearer_refused: true,
                    };
                }
            },
            Some(Presented::Malformed) => {
                debug!(%ip, method = auth.method, "malformed bearer token");
                self.failed(refusals, ip, now);
                return Verdict::BadRequest;
            }
            Some(Presented::Other) | None => {
                match self.authenticate(config, refusals, auth, auth.uri) {
                    Ok(user) => user,
                    Err(v) => return v,
                }
            }
        };
        if who.admits(&name) {
            Verdict::Allow(Some(name))
        } else {
            debug!(%ip, principal = %name, method = auth.method, "authenticated, but without the permission");
            Verdict::Forbidden
        }
    }

    /// Whether `ip` is blocked for guessing (counted as a refusal).
    fn blocked(&self, refusals: &Refusals, ip: IpAddr, now: Instant) -> bool {
        let blocked = lock(&self.throttle).blocked(ip, now);
        if blocked {
            refusals.refuse(Limit::MaxAuthFailures);
        }
        blocked
    }

    /// Counts a failed attempt from `ip`.
    fn failed(&self, refusals: &Refusals, ip: IpAddr, now: Instant) {
        if lock(&self.throttle).fail(ip, now) {
            refusals.refuse(Limit::MaxAuthFailures);
        }
    }

    /// The user `auth` authenticates as, or the verdict (401 or 400),
    /// with the failure counted when it is a guess.
    fn authenticate(
        &self,
        config: &AuthConfig,
        refusals: &Refusals,
        auth: &AuthRequest<'_>,
        what: &str,
    ) -> Result<String, Verdict> {
        let result = lock(&self.authenticator).authenticate(&config.policy, auth);
        result.map_err(|failure| {
            let ip = auth.ip;
            debug!(%ip, what, method = auth.method, reason = %failure, "authentication failed");
            if failure.counts_as_guess() {
                self.failed(refusals, ip, auth.now);
            }
            if failure.is_malformed() {
                Verdict::BadRequest
            } else {
                Verdict::Challenge {
                    stale: failure == Failure::StaleNonce,
                    bearer_refused: false,
                }
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::digest::{ha1, to_hex};
    use crate::proto::auth::{Algorithm, User};

    /// alice (password "secret") holds `api`; the token "tok" (named
    /// "prom") holds `metrics`; `status` is anyone's. Basic is allowed in
    /// clear so that a user can log in without a nonce round trip.
    fn config() -> AuthConfig {
        let mut policy = Policy {
            allow_basic_without_tls: true,
            ..Policy::default()
        };
        policy.users.insert(
            "alice".into(),
            User {
                name: "alice".into(),
                ha1_md5: Some(ha1(Algorithm::Md5, "alice", "rtspd", "secret")),
                ha1_sha256: None,
            },
        );
        AuthConfig {
            policy,
            grants: Grants {
                api: Who::from_list(&["alice".into()]),
                metrics: Who::from_list(&["prom".into()]),
                status: Who::Anyone,
            },
            tokens: vec![Token::from_hex("prom", &to_hex(&bearer::hash("tok"))).unwrap()],
            ..AuthConfig::default()
        }
    }

    #[test]
    fn grants_for_users_and_tokens_and_the_shared_block() {
        let config = config();
        let now = Instant::now();
        let guard = Guard::new(&config, now).unwrap();
        let refusals = Refusals::new(&crate::server::Config::default());
        let ask = |p, authorization, ip: [u8; 4]| {
            let auth = AuthRequest {
                method: "GET",
                uri: "/x",
                authorization,
                ip: IpAddr::from(ip),
                is_tls: false,
                now,
            };
            guard.check_grant(&config, &refusals, p, &auth)
        };
        let lo = [127, 0, 0, 1];
        // "alice:secret", "alice:guess".
        let (good, bad) = (
            Some("Basic YWxpY2U6c2VjcmV0"),
            Some("Basic YWxpY2U6Z3Vlc3M="),
        );
        use Permission::{Api, Metrics, Status};
        assert_eq!(ask(Status, None, lo), Verdict::Allow(None));
        assert_eq!(ask(Api, None, lo), Verdict::challenge());
        assert_eq!(ask(Api, good, lo), Verdict::Allow(Some("alice".into())));
        assert_eq!(ask(Metrics, good, lo), Verdict::Forbidden);
        assert_eq!(
            ask(Metrics, Some("Bearer tok"), lo),
            Verdict::Allow(Some("prom".into()))
        );
        assert_eq!(ask(Api, Some("Bearer tok"), lo), Verdict::Forbidden);
        assert_eq!(
            ask(Metrics, Some("Bearer tox"), lo),
            Verdict::Challenge {
                stale: false,
                bearer_refused: true
            }
        );
        assert_eq!(ask(Metrics, Some("Bearer a b"), lo), Verdict::BadRequest);
        // Two failures so far; eight more wrong passwords block the
        // address, for the right password and the right token too.
        for _ in 0..8 {
            assert_eq!(ask(Api, bad, lo), Verdict::challenge());
        }
        assert_eq!(ask(Api, good, lo), Verdict::Forbidden);
        assert_eq!(ask(Metrics, Some("Bearer tok"), lo), Verdict::Forbidden);
        assert_eq!(
            ask(Status, None, lo),
            Verdict::Allow(None),
            "open stays open"
        );
        assert_eq!(
            ask(Api, good, [127, 0, 0, 2]),
            Verdict::Allow(Some("alice".into()))
        );
    }
}
