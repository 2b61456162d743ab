//! Authentication and authorization, sans-IO: RTSP Digest (RFC 7616,
//! with RFC 2617 and RFC 2069 for older clients; RFC 2326 §12.5 and
//! §12.44 carry it in RTSP/1.0), Basic (RFC 7617) where the transport
//! protects it, and path rules.
//!
//! - [`header`]: the `Authorization` parser (bounded, never panics).
//! - [`digest`]: HA1, the expected response, the challenge.
//! - [`nonce`]: stateless HMAC nonces with a lifetime, and nonce counts.
//! - [`rules`]: `[[paths]]` rules (globs, CIDR lists, who may read/publish).
//! - [`throttle`]: failed attempts per IP, and the block after too many.
//! - [`bearer`]: the HTTP side's bearer tokens (RFC 6750), kept as hashes.
//! - [`permission`]: the HTTP side's permissions (`api`, `metrics`, `status`).
//!
//! The same checks serve the HTTP side (RFC 7616 is HTTP's own; there
//! the `uri` is the request-target, RFC 7616 §3.4), which adds bearer
//! tokens (RFC 6750) and its permissions.
//!
//! [`Authenticator::authenticate`] takes the request's method, URI,
//! `Authorization` value, client IP, whether the connection is TLS, and
//! `now`, and returns the user or why not. The server decides from the
//! [`Failure`] whether to challenge (401), refuse (400/403) or go on.

pub mod bearer;
pub mod digest;
pub mod header;
pub mod nonce;
pub mod permission;
pub mod rules;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use digest::Algorithm;
pub use header::{Credentials, HeaderError};
use nonce::{NonceCheck, Nonces};

/// One user: the HA1 hashes for the server's realm (never a password).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl std::fmt::Debug for User {
    // The hashes stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl User {
    fn ha1(&self, alg: Algorithm) -> Option<&str> {
        match alg {
            Algorithm::Md5 => self.ha1_md5.as_deref(),
            Algorithm::Sha256 => self.ha1_sha256.as_deref(),
        }
    }
}

/// The users and settings in force (a reload replaces them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub realm: String,
    pub users: HashMap<String, User>,
    pub allow_basic_without_tls: bool,
    /// Refuse Digest answers without `qop` (RFC 2069 style, GStreamer's
    /// rtspsrc): they carry no nonce count, so one could be replayed from
    /// the client's address while its nonce lives.
    pub require_qop: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            realm: "rtspd".into(),
            users: HashMap::new(),
            allow_basic_without_tls: false,
            require_qop: false,
        }
    }
}

/// The parts of a request authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub authorization: Option<&'a str>,
    pub ip: IpAddr,
    pub is_tls: bool,
    pub now: Instant,
}

/// Why credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no credentials")]
    NoCredentials,
    #[error("malformed Authorization header: {0}")]
    Malformed(HeaderError),
    #[error("Basic credentials on a connection without TLS")]
    BasicWithoutTls,
    #[error("unknown user")]
    UnknownUser,
    #[error("no hash for the algorithm the client chose")]
    NoHash,
    #[error("realm does not match")]
    WrongRealm,
    #[error("uri does not match the request")]
    WrongUri,
    #[error("opaque does not match")]
    WrongOpaque,
    #[error("nonce not issued by this server to this address")]
    BadNonce,
    #[error("nonce expired")]
    StaleNonce,
    #[error("nonce count replayed")]
    Replay,
    #[error("wrong password")]
    WrongResponse,
    #[error("Digest without qop, and [auth] require_qop is on")]
    NoQop,
}

impl Failure {
    /// Whether this counts as a guess towards the brute-force block. A
    /// client's first request (no credentials) and an expired nonce are
    /// ordinary steps of the protocol.
    pub fn counts_as_guess(&self) -> bool {
        !matches!(self, Self::NoCredentials | Self::StaleNonce)
    }

    /// 400 for a header that cannot be parsed (B8#64 allows 400 or 401),
    /// else 401 with a challenge. A scheme this server does not take
    /// (`Bearer` on RTSP) is well-formed credentials it does not accept:
    /// 401, whose challenge names the ones it does (RFC 7235 §3.1).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Malformed(e) if *e != HeaderError::UnknownScheme)
    }
}

/// Digest and Basic checks with this server's nonces.
#[derive(Debug)]
pub struct Authenticator {
    nonces: Nonces,
}

impl Authenticator {
    /// `secret` from the OS CSPRNG; `origin` before any `now`.
    pub fn new(secret: [u8; 32], origin: Instant, nonce_lifetime: Duration) -> Self {
        Self {
            nonces: Nonces::new(secret, origin, nonce_lifetime),
        }
    }

    pub fn set_nonce_lifetime(&mut self, lifetime: Duration) {
        self.nonces.set_lifetime(lifetime);
    }

    /// The user a request authenticates as, or why not.
    pub fn authenticate(
        &mut self,
        policy: &Policy,
        req: &AuthRequest<'_>,
    ) -> Result<String, Failure> {
        let value = req.authorization.ok_or(Failure::NoCredentials)?;
        match header::parse_authorization(value).map_err(Failure::Malformed)? {
            Credentials::Basic { username, password } => {
                if !req.is_tls && !policy.allow_basic_without_tls {
                    return Err(Failure::BasicWithoutTls);
                }
                let user = policy.users.get(&username).ok_or(Failure::UnknownUser)?;
                let alg = if user.ha1_md5.is_some() {
                    Algorithm::Md5
                } else {
                    Algorithm::Sha256
                };
                let stored = user.ha1(alg).ok_or(Failure::NoHash)?;
                let got = digest::ha1(alg, &username, &policy.realm, &password);
                if digest::ct_str_eq(&got, &stored.to_ascii_lowercase()) {
                    Ok(username)
                } else {
                    Err(Failure::WrongResponse)
                }
            }
            Credentials::Digest(c) => {
                if c.realm != policy.realm {
                    return Err(Failure::WrongRealm);
                }
                if c.uri != req.uri {
                    return Err(Failure::WrongUri);
                }
                if c.qop.is_none() && policy.require_qop {
                    return Err(Failure::NoQop);
                }
                if c.opaque
                    .as_ref()
                    .is_some_and(|o| *o != self.nonces.opaque())
                {
                    return Err(Failure::WrongOpaque);
                }
                match self.nonces.check(&c.nonce, req.ip, req.now) {
                    NonceCheck::Fresh => {}
                    NonceCheck::Stale => return Err(Failure::StaleNonce),
                    NonceCheck::Invalid => return Err(Failure::BadNonce),
                }
                // An unknown user costs the same hash work as a known one.
                let user = policy.users.get(&c.username);
                let stored = user.and_then(|u| u.ha1(c.algorithm));
                let ha1 = stored.map_or_else(|| "0".repeat(64), str::to_ascii_lowercase);
                let ok = digest::response_matches(&ha1, req.method, &c);
                match (user, stored) {
                    (None, _) => return Err(Failure::UnknownUser),
                    (Some(_), None) => return Err(Failure::NoHash),
                    _ if !ok => return Err(Failure::WrongResponse),
                    _ => {}
                }
                // RFC 2069-style clients send no count; their nonce is
                // replayable within its lifetime, from their own IP only.
                if let Some(q) = &c.qop {
                    if !self.nonces.use_count(&c.nonce, q.nc, req.now) {
                        return Err(Failure::Replay);
                    }
                }
                Ok(c.username)
            }
        }
    }

    /// The `WWW-Authenticate` values of a 401, in [`CHALLENGE_ORDER`],
    /// sharing one nonce.
    pub fn challenges(
        &self,
        policy: &Policy,
        ip: IpAddr,
        now: Instant,
        stale: bool,
    ) -> Vec<String> {
        let nonce = self.nonces.mint(ip, now);
        let opaque = self.nonces.opaque();
        CHALLENGE_ORDER
            .iter()
            .map(|&alg| digest::challenge(alg, &policy.realm, &nonce, &opaque, stale))
            .collect()
    }
}

/// The order of the Digest challenges: SHA-256, then MD5, one nonce.
///
/// ffmpeg (5.1, `libavformat/httpauth.c`) keeps the *last* Digest
/// challenge it parses and can compute only MD5/MD5-sess: with MD5 first
/// it answers nothing and fails with 401 (`tests/auth.rs` showed it; RFC
/// 7616 §3.7 asks servers to list the preferred algorithm first, which
/// this still does). live555's `RTSPClient`, by its source (not tested
/// here), also keeps the last Digest header and computes MD5. GStreamer
/// 1.22's rtspsrc answers the same with either order: MD5, no
/// `algorithm=`, no `qop` (RFC 2069 style). Both were probed with a stub
/// server answering 401 to each order (the captures are in
/// `header::tests::real_client_headers`). A client
/// that sends no `algorithm=` is read as MD5, so with the shared nonce
/// either challenge works for every client.
pub const CHALLENGE_ORDER: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let mut users = HashMap::new();
        users.insert(
            "alice".into(),
            User {
                name: "alice".into(),
                ha1_md5: Some(digest::ha1(Algorithm::Md5, "alice", "rtspd", "secret")),
                ha1_sha256: Some(digest::ha1(Algorithm::Sha256, "alice", "rtspd", "secret")),
            },
        );
        Policy {
            users,
            ..Policy::default()
        }
    }

    /// A client's answer to `challenge`, as a test client computes it.
    fn answer(challenge: &str, user: &str, pw: &str, method: &str, uri: &str, nc: u32) -> String {
        let params = header::parse_params(challenge.trim_start_matches("Digest ")).unwrap();
        let get = |n: &str| params.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let alg = Algorithm::from_name(&get("algorithm")).unwrap();
        let (realm, nonce) = (get("realm"), get("nonce"));
        let ha1 = digest::ha1(alg, user, &realm, pw);
        let ha2 = alg.hex(&[method, uri]);
        let nc = format!("{nc:08x}");
        let resp = alg.hex(&[&ha1, &nonce, &nc, "c0ffee", "auth", &ha2]);
        format!(
            r#"Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm={}, qop=auth, nc={nc}, cnonce="c0ffee", response="{resp}", opaque="{}""#,
            alg.name(),
            get("opaque")
        )
    }

    fn req<'a>(auth: Option<&'a str>, uri: &'a str, now: Instant) -> AuthRequest<'a> {
        AuthRequest {
            method: "DESCRIBE",
            uri,
            authorization: auth,
            ip: IpAddr::from([127, 0, 0, 1]),
            is_tls: false,
            now,
        }
    }

    #[test]
    fn challenge_then_answer_for_both_algorithms() {
        let t0 = Instant::now();
        let p = policy();
        let mut a = Authenticator::new([3; 32], t0, nonce::DEFAULT_LIFETIME);
        let uri = "rtsp://127.0.0.1/clip.wav";
        assert_eq!(
            a.authenticate(&p, &req(None, uri, t0)),
            Err(Failure::NoCredentials)
        );
        let ch = a.challenges(&p, IpAddr::from([127, 0, 0, 1]), t0, false);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
        // One nonce for both: counts go on rising across them.
        for (i, c) in (0..).zip(&ch) {
            let h = answer(c, "alice", "secret", "DESCRIBE", uri, 2 * i + 1);
            assert_eq!(
                a.authenticate(&p, &req(Some(&h), uri, t0)),
                Ok("alice".into())
            );
            assert_eq!(
                a.authenticate(&p, &req(Some(&h), uri, t0)),
                Err(Failure::Replay)
            );
            let h2 = answer(c, "alice", "secret", "DESCRIBE", uri, 2 * i + 2);
            assert_eq!(
                a.authenticate(&p, &req(Some(&h2), uri, t0)),
                Ok("alice".into())
            );
        }
    }

    #[test]
    fn every_failure() {
        let t0 = Instant::now();
        let p = policy();
        let mut a = Authenticator::new([3; 32], t0, nonce::DEFAULT_LIFETIME);
        let uri = "rtsp://127.0.0.1/clip.wav";
        let ch = a.challenges(&p, IpAddr::from([127, 0, 0, 1]), t0, false)[0].clone();
        let wrong_pw = answer(&ch, "alice", "guess", "DESCRIBE", uri, 1);
        let nobody = answer(&ch, "mallory", "secret", "DESCRIBE", uri, 1);
        let other_uri = answer(&ch, "alice", "secret", "DESCRIBE", "rtsp://127.0.0.1/x", 1);
        let realm = answer(
            &ch.replace("realm=\"rtspd\"", "realm=\"other\""),
            "alice",
            "secret",
            "DESCRIBE",
            uri,
            1,
        );
        let late = t0 + Duration::from_secs(61);
        let cases: Vec<(&str, Instant, Failure)> = vec![
            (&wrong_pw, t0, Failure::WrongResponse),
            (&nobody, t0, Failure::UnknownUser),
            (&other_uri, t0, Failure::WrongUri),
            (&realm, t0, Failure::WrongRealm),
            (
                "Digest username=\"a",
                t0,
                Failure::Malformed(HeaderError::Unterminated),
            ),
            ("Basic YWxpY2U6c2VjcmV0", t0, Failure::BasicWithoutTls),
        ];
        for (h, now, want) in cases {
            assert_eq!(
                a.authenticate(&p, &req(Some(h), uri, now)),
                Err(want.clone()),
                "{want}"
            );
        }
        let good = answer(&ch, "alice", "secret", "DESCRIBE", uri, 5);
        assert_eq!(
            a.authenticate(&p, &req(Some(&good), uri, late)),
            Err(Failure::StaleNonce)
        );
        let forged = good.replace(
            &ch[ch.find("nonce=\"").unwrap() + 7..][..16],
            "0000000000000001",
        );
        assert_eq!(
            a.authenticate(&p, &req(Some(&forged), uri, t0)),
            Err(Failure::BadNonce)
        );
        let mut from_elsewhere = req(Some(&good), uri, t0);
        from_elsewhere.ip = IpAddr::from([127, 0, 0, 2]);
        assert_eq!(a.authenticate(&p, &from_elsewhere), Err(Failure::BadNonce));
        // Basic: over TLS, or when allowed in clear.
        let mut tls = req(Some("Basic YWxpY2U6c2VjcmV0"), uri, t0);
        tls.is_tls = true;
        assert_eq!(a.authenticate(&p, &tls), Ok("alice".into()));
        tls.authorization = Some("Basic YWxpY2U6d3Jvbmc=");
        assert_eq!(a.authenticate(&p, &tls), Err(Failure::WrongResponse));
        let lax = Policy {
            allow_basic_without_tls: true,
            ..p.clone()
        };
        assert_eq!(
            a.authenticate(&lax, &req(Some("Basic YWxpY2U6c2VjcmV0"), uri, t0)),
            Ok("alice".into())
        );
        assert!(!Failure::StaleNonce.counts_as_guess());
        assert!(Failure::WrongResponse.counts_as_guess());
    }

    /// An RFC 2069 answer (no qop, no count), as GStreamer's rtspsrc sends
    /// it: accepted, and again (no count to track), unless `require_qop`.
    #[test]
    fn answers_without_qop_and_require_qop() {
        let t0 = Instant::now();
        let p = policy();
        let mut a = Authenticator::new([5; 32], t0, nonce::DEFAULT_LIFETIME);
        let uri = "rtsp://127.0.0.1/clip.wav";
        let ch = a.challenges(&p, IpAddr::from([127, 0, 0, 1]), t0, false);
        let params = header::parse_params(ch[1].trim_start_matches("Digest ")).unwrap();
        let get = |n: &str| params.iter().find(|(k, _)| k == n).unwrap().1.clone();
        let nonce = get("nonce");
        let ha1 = digest::ha1(Algorithm::Md5, "alice", "rtspd", "secret");
        let ha2 = Algorithm::Md5.hex(&["DESCRIBE", uri]);
        let resp = Algorithm::Md5.hex(&[&ha1, &nonce, &ha2]);
        let h = format!(
            r#"Digest username="alice", realm="rtspd", nonce="{nonce}", uri="{uri}", response="{resp}""#
        );
        assert_eq!(
            a.authenticate(&p, &req(Some(&h), uri, t0)),
            Ok("alice".into())
        );
        assert_eq!(
            a.authenticate(&p, &req(Some(&h), uri, t0)),
            Ok("alice".into())
        );
        let strict = Policy {
            require_qop: true,
            ..p.clone()
        };
        assert_eq!(
            a.authenticate(&strict, &req(Some(&h), uri, t0)),
            Err(Failure::NoQop)
        );
        // Answers with qop still pass.
        let good = answer(&ch[1], "alice", "secret", "DESCRIBE", uri, 1);
        assert_eq!(
            a.authenticate(&strict, &req(Some(&good), uri, t0)),
            Ok("alice".into())
        );
    }
}
