//! Digest computations (RFC 7616 §3.4.1–§3.4.3; RFC 2617 §3.2.2 and
//! RFC 2069 §2.1.2 for clients that send no `qop`) and the challenge
//! (RFC 7616 §3.3).
//!
//! `HA1 = H(username ":" realm ":" password)` is what the config stores
//! (`ha1_md5`, `ha1_sha256`), so no password is kept. With `qop=auth`,
//! `response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)`;
//! without, `response = H(HA1 ":" nonce ":" HA2)`; `HA2 = H(method ":" uri)`.

use md5::Md5;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::header::DigestCredentials;

/// A Digest hash algorithm (RFC 7616 §6.1). The `-sess` variants are not
/// offered, so a client naming one gets a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// From the `algorithm=` token (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Self::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// `H(parts joined by ":")` in lowercase hex.
    pub fn hex(self, parts: &[&str]) -> String {
        fn run<D: sha2::Digest>(parts: &[&str]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p.as_bytes());
            }
            to_hex(&d.finalize())
        }
        match self {
            Self::Md5 => run::<Md5>(parts),
            Self::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `HA1 = H(username:realm:password)`, what `rtspd passwd` prints.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex(&[username, realm, password])
}

/// The response a client with `ha1` should send for `method` and the
/// credentials' own `uri`, nonce and qop.
pub fn expected_response(ha1: &str, method: &str, c: &DigestCredentials) -> String {
    let alg = c.algorithm;
    let ha2 = alg.hex(&[method, &c.uri]);
    match &c.qop {
        Some(q) => alg.hex(&[ha1, &c.nonce, &q.nc_text, &q.cnonce, "auth", &ha2]),
        None => alg.hex(&[ha1, &c.nonce, &ha2]),
    }
}

/// Whether the client's response matches, compared in constant time
/// (hex case folded first, so the comparison time depends only on lengths).
pub fn response_matches(ha1: &str, method: &str, c: &DigestCredentials) -> bool {
    let want = expected_response(ha1, method, c);
    let got = c.response.to_ascii_lowercase();
    want.as_bytes().ct_eq(got.as_bytes()).into()
}

/// Constant-time equality of two strings (equal lengths compared in full).
pub fn ct_str_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// One `WWW-Authenticate: Digest` value (RFC 7616 §3.3).
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, opaque: &str, stale: bool) -> String {
    let mut s = format!(
        "Digest realm=\"{}\", qop=\"auth\", algorithm={}, nonce=\"{nonce}\", opaque=\"{opaque}\"",
        quote(realm),
        alg.name()
    );
    if stale {
        s.push_str(", stale=true");
    }
    s
}

/// Escapes `"` and `\` for a quoted-string.
pub fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::super::header::{parse_authorization, Credentials};
    use super::*;

    fn digest(h: &str) -> DigestCredentials {
        match parse_authorization(h).unwrap() {
            Credentials::Digest(d) => d,
            Credentials::Basic { .. } => panic!("basic"),
        }
    }

    /// RFC 7616 §3.9.1: the same request under SHA-256 and MD5.
    #[test]
    fn rfc_7616_example_vectors() {
        let common = r#"username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;
        for (alg, response) in [
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ] {
            let c = digest(&format!(
                r#"Digest {common}, algorithm={}, response="{response}""#,
                alg.name()
            ));
            let h = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of Life");
            assert_eq!(expected_response(&h, "GET", &c), response, "{alg:?}");
            assert!(response_matches(&h, "GET", &c));
            assert!(!response_matches(&h, "POST", &c));
            let wrong = ha1(alg, "Mufasa", "http-auth@example.org", "Circle of life");
            assert!(!response_matches(&wrong, "GET", &c));
        }
    }

    /// RFC 2617 §3.5.
    #[test]
    fn rfc_2617_example_vector() {
        let c = digest(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        );
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(response_matches(&h, "GET", &c));
        // Uppercase hex from a client is the same digest.
        let mut upper = c.clone();
        upper.response = c.response.to_ascii_uppercase();
        assert!(response_matches(&h, "GET", &upper));
    }

    /// RFC 2069 §2.1.2 (no qop): what GStreamer's rtspsrc sends.
    #[test]
    fn without_qop() {
        let h = ha1(Algorithm::Md5, "u", "r", "p");
        let ha2 = Algorithm::Md5.hex(&["DESCRIBE", "rtsp://h/x"]);
        let resp = Algorithm::Md5.hex(&[&h, "n", &ha2]);
        let c = digest(&format!(
            r#"Digest username="u", realm="r", nonce="n", uri="rtsp://h/x", response="{resp}""#
        ));
        assert!(response_matches(&h, "DESCRIBE", &c));
    }

    #[test]
    fn challenge_text() {
        assert_eq!(
            challenge(Algorithm::Md5, "a\"b", "N", "O", true),
            r#"Digest realm="a\"b", qop="auth", algorithm=MD5, nonce="N", opaque="O", stale=true"#
        );
    }
}
