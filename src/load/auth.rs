//! The load tester's side of Digest authentication (RFC 7616 §3.4, with
//! the challenge of §3.3 and RFC 2326 §12.5 for RTSP).
//!
//! The user name and password come from the URL's userinfo,
//! percent-decoded ([`Secret::from_url`]), and the URL the requests name is
//! the same without them. On a 401 the first `WWW-Authenticate: Digest`
//! challenge whose algorithm is SHA-256 or MD5 is kept; every later
//! request of the connection carries
//! `response = H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" HA2)`
//! (RFC 7616 §3.4.1) with `HA1 = H(user ":" realm ":" password)` (§3.4.2)
//! and `HA2 = H(method ":" Request-URI)` (§3.4.3), a fresh `cnonce` from
//! `getrandom` and `nc` counting up per nonce. The hashes are the server's
//! own ([`crate::proto::auth::digest`]). The password is never printed:
//! [`Secret`]'s `Debug` leaves it out and no error carries it.

use percent_encoding::percent_decode_str;

use crate::proto::auth::digest::{expected_response, ha1, quote, to_hex};
use crate::proto::auth::header::{parse_params, DigestCredentials, Qop};
use crate::proto::auth::{Algorithm, HeaderError};
use crate::proto::rtsp::Response;

/// Why a request could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("401 and no credentials in the URL")]
    NoCredentials,
    #[error("401 without a Digest challenge for SHA-256 or MD5")]
    NoChallenge,
    #[error("malformed challenge: {0}")]
    Challenge(HeaderError),
    #[error("credentials rejected")]
    Rejected,
    #[error("no random cnonce")]
    Random,
}

/// A user name and password (from the URL's userinfo).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    user: String,
    password: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(user={:?})", self.user)
    }
}

impl Secret {
    /// Takes the userinfo out of `url` (which keeps everything else) and
    /// percent-decodes it; `None` when there is no user name.
    pub fn from_url(url: &mut url::Url) -> Option<Self> {
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let user = decode(url.username());
        let password = url.password().map(decode).unwrap_or_default();
        // Setting these on an rtsp:// URL with a host cannot fail.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        (!user.is_empty()).then_some(Self { user, password })
    }
}

/// Nonces remembered by [`NonceCounts`] before it starts over.
const MAX_NONCES: usize = 65_536;

/// The last `nc` sent with each nonce, shared by every connection of a run:
/// rtspd's nonce is its client's address and millisecond
/// ([`crate::proto::auth::nonce`]), so connections from one address
/// challenged in the same millisecond get the same nonce, and a count per
/// connection would repeat an `nc` the server then refuses as a replay.
#[derive(Debug, Default)]
pub(crate) struct NonceCounts(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl NonceCounts {
    /// The next `nc` for `nonce`.
    fn next(&self, nonce: &str) -> u32 {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_NONCES && !map.contains_key(nonce) {
            map.clear();
        }
        let nc = map.entry(nonce.to_owned()).or_insert(0);
        *nc = nc.wrapping_add(1);
        *nc
    }
}

/// The challenge in use.
#[derive(Debug)]
struct Challenge {
    algorithm: Algorithm,
    realm: String,
    nonce: String,
    opaque: Option<String>,
    ha1: String,
}

/// One connection's authentication state.
#[derive(Debug, Default)]
pub(crate) struct ClientAuth {
    secret: Option<Secret>,
    counts: std::sync::Arc<NonceCounts>,
    challenge: Option<Challenge>,
    /// Plain (not stale) 401s to credentials since the last answer that
    /// was not a 401.
    refused: u8,
}

impl ClientAuth {
    pub(crate) fn new(secret: Option<Secret>, counts: std::sync::Arc<NonceCounts>) -> Self {
        Self {
            secret,
            counts,
            challenge: None,
            refused: 0,
        }
    }

    /// A response other than 401 came.
    pub(super) fn accepted(&mut self) {
        self.refused = 0;
    }

    /// The `Authorization` value for `method uri`, once a challenge was
    /// taken; each call counts one more `nc` on the nonce.
    pub(super) fn authorization(
        &mut self,
        method: &str,
        uri: &str,
    ) -> Result<Option<String>, AuthError> {
        let (Some(s), Some(c)) = (&self.secret, &self.challenge) else {
            return Ok(None);
        };
        let nc = self.counts.next(&c.nonce);
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| AuthError::Random)?;
        let mut creds = DigestCredentials {
            username: s.user.clone(),
            realm: c.realm.clone(),
            nonce: c.nonce.clone(),
            uri: uri.to_owned(),
            response: String::new(),
            algorithm: c.algorithm,
            opaque: c.opaque.clone(),
            qop: Some(Qop {
                nc,
                nc_text: format!("{nc:08x}"),
                cnonce: to_hex(&raw),
            }),
        };
        creds.response = expected_response(&c.ha1, method, &creds);
        let q = creds.qop.as_ref().ok_or(AuthError::Random)?;
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
             algorithm={}, qop=auth, nc={}, cnonce=\"{}\", response=\"{}\"",
            quote(&creds.username),
            quote(&creds.realm),
            quote(&creds.nonce),
            quote(&creds.uri),
            creds.algorithm.name(),
            q.nc_text,
            q.cnonce,
            creds.response
        );
        if let Some(o) = &creds.opaque {
            v.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        Ok(Some(v))
    }

    /// Takes the challenge of a 401 to `resp`. `Ok` means send again: the
    /// first challenge, a `stale=true` one after credentials were sent, or
    /// the first plain 401 to credentials. That one retry is there because
    /// rtspd's nonce is its address and millisecond
    /// ([`crate::proto::auth::nonce`]): connections from one address
    /// challenged in the same millisecond share a nonce, so their `nc`
    /// counts collide and the second is refused as a replay. A second
    /// plain 401 in a row means the credentials are wrong.
    pub(super) fn on_unauthorized(&mut self, resp: &Response) -> Result<(), AuthError> {
        let Some(secret) = &self.secret else {
            return Err(AuthError::NoCredentials);
        };
        let mut malformed = None;
        let mut chosen = None;
        for value in resp.headers.get_all("WWW-Authenticate") {
            match parse_challenge(value) {
                Ok(Some(c)) => {
                    chosen = Some(c);
                    break;
                }
                Ok(None) => {}
                Err(e) => malformed = malformed.or(Some(e)),
            }
        }
        let Some(p) = chosen else {
            return Err(malformed.unwrap_or(AuthError::NoChallenge));
        };
        if self.challenge.is_some() && !p.stale {
            self.refused = self.refused.saturating_add(1);
            if self.refused > 1 {
                return Err(AuthError::Rejected);
            }
        }
        self.challenge = Some(Challenge {
            ha1: ha1(p.algorithm, &secret.user, &p.realm, &secret.password),
            algorithm: p.algorithm,
            realm: p.realm,
            nonce: p.nonce,
            opaque: p.opaque,
        });
        Ok(())
    }
}

/// A parsed `Digest` challenge.
struct Parsed {
    algorithm: Algorithm,
    realm: String,
    nonce: String,
    opaque: Option<String>,
    stale: bool,
}

/// One `WWW-Authenticate` value: `Ok(None)` for another scheme, an
/// algorithm we do not compute, or a `qop` without `auth`.
fn parse_challenge(value: &str) -> Result<Option<Parsed>, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("digest") {
        return Ok(None);
    }
    let params = parse_params(rest).map_err(AuthError::Challenge)?;
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    // No `algorithm=` is MD5 (RFC 7616 §3.3).
    let Some(algorithm) = Algorithm::from_name(get("algorithm").unwrap_or("MD5")) else {
        return Ok(None);
    };
    if let Some(q) = get("qop") {
        if !q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
            return Ok(None);
        }
    }
    let need = |n: &'static str| {
        get(n)
            .map(str::to_owned)
            .ok_or(AuthError::Challenge(HeaderError::Missing(n)))
    };
    Ok(Some(Parsed {
        algorithm,
        realm: need("realm")?,
        nonce: need("nonce")?,
        opaque: get("opaque").map(str::to_owned),
        stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::digest::response_matches;
    use crate::proto::auth::header::{parse_authorization, Credentials};

    fn unauthorized(challenges: &[&str]) -> Response {
        let mut r = Response::new(crate::proto::rtsp::StatusCode(401));
        for c in challenges {
            r = r.header("WWW-Authenticate", *c);
        }
        r
    }

    #[test]
    fn userinfo_is_taken_out_and_decoded() {
        let mut u = url::Url::parse("rtsp://al%40ice:p%3Aw+x@h:1/a.wav").unwrap();
        let s = Secret::from_url(&mut u).unwrap();
        assert_eq!((s.user.as_str(), s.password.as_str()), ("al@ice", "p:w+x"));
        assert_eq!(u.as_str(), "rtsp://h:1/a.wav");
        assert!(!format!("{s:?}").contains("p:w"));
        assert!(Secret::from_url(&mut url::Url::parse("rtsp://h/a").unwrap()).is_none());
    }

    /// What the server verifies is what the client computed, under both
    /// algorithms, with `nc` counting up; a second plain 401 is a rejection
    /// and a stale one a new nonce.
    #[test]
    fn answers_verify_with_the_server_code() {
        for (alg, first) in [("SHA-256", 0), ("MD5", 1)] {
            let mut a = ClientAuth::new(
                Some(Secret {
                    user: "alice".into(),
                    password: "secret".into(),
                }),
                Default::default(),
            );
            assert_eq!(a.authorization("OPTIONS", "rtsp://h/x").unwrap(), None);
            let challenges = [
                "Basic realm=\"r\"",
                "Digest realm=\"r\", qop=\"auth\", algorithm=SHA-512-256, nonce=\"z\"",
                &format!(
                    "Digest realm=\"r\", qop=\"auth\", algorithm={alg}, nonce=\"n1\", opaque=\"o\""
                ),
                "Digest realm=\"r\", qop=\"auth\", algorithm=MD5, nonce=\"n2\"",
            ];
            a.on_unauthorized(&unauthorized(&challenges[first..]))
                .unwrap();
            let algorithm = Algorithm::from_name(alg).unwrap();
            let h = ha1(algorithm, "alice", "r", "secret");
            for nc in 1..=2 {
                let v = a.authorization("DESCRIBE", "rtsp://h/x").unwrap().unwrap();
                let Ok(Credentials::Digest(c)) = parse_authorization(&v) else {
                    panic!("{v}");
                };
                assert_eq!(c.algorithm, algorithm);
                assert_eq!(c.qop.as_ref().map(|q| q.nc), Some(nc));
                assert_eq!(c.opaque.as_deref(), Some("o"));
                assert!(response_matches(&h, "DESCRIBE", &c), "{v}");
                assert!(!response_matches(&h, "SETUP", &c));
            }
            // One retry (a nonce shared with another connection), then
            // the credentials are wrong.
            a.on_unauthorized(&unauthorized(&challenges[first..]))
                .unwrap();
            assert_eq!(
                a.on_unauthorized(&unauthorized(&challenges[first..])),
                Err(AuthError::Rejected)
            );
            a.accepted();
            let stale = format!("{}, stale=true", challenges[2]).replace("n1", "n3");
            a.on_unauthorized(&unauthorized(&[&stale])).unwrap();
            let v = a.authorization("PLAY", "rtsp://h/x").unwrap().unwrap();
            let Ok(Credentials::Digest(c)) = parse_authorization(&v) else {
                panic!("{v}");
            };
            assert_eq!((c.nonce.as_str(), c.qop.map(|q| q.nc)), ("n3", Some(1)));
        }
    }

    #[test]
    fn failures_are_told_apart() {
        let mut none = ClientAuth::new(None, Default::default());
        assert_eq!(
            none.on_unauthorized(&unauthorized(&["Digest realm=\"r\", nonce=\"n\""])),
            Err(AuthError::NoCredentials)
        );
        let mut a = ClientAuth::new(
            Some(Secret {
                user: "u".into(),
                password: "p".into(),
            }),
            Default::default(),
        );
        assert_eq!(
            a.on_unauthorized(&unauthorized(&["Basic realm=\"r\""])),
            Err(AuthError::NoChallenge)
        );
        assert!(matches!(
            a.on_unauthorized(&unauthorized(&["Digest realm=\"r"])),
            Err(AuthError::Challenge(_))
        ));
    }
}
