//! Digest credentials computed by the tests themselves, independently of
//! rtspd (RFC 7616 §3.4.1): users' HA1 hashes for the config file, the
//! parameters of a `WWW-Authenticate: Digest` challenge, and an answer.

use md5::Md5;
use sha2::{Digest, Sha256};

/// The realm every test config uses (rtspd's default).
pub const REALM: &str = "rtspd";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex_md5(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

pub fn hex_sha256(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// A `[[users]]` table for `name` with `password` in [`REALM`].
pub fn user(name: &str, password: &str) -> String {
    let a1 = format!("{name}:{REALM}:{password}");
    format!(
        "[[users]]\nname = \"{name}\"\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n\n",
        hex_md5(&a1),
        hex_sha256(&a1)
    )
}

/// One `WWW-Authenticate: Digest` challenge's parameters.
pub fn params(challenge: &str) -> Vec<(String, String)> {
    let body = challenge
        .strip_prefix("Digest ")
        .expect("a Digest challenge");
    let mut out = Vec::new();
    for part in body.split(", ") {
        let (k, v) = part.split_once('=').expect("k=v");
        out.push((k.to_owned(), v.trim_matches('"').to_owned()));
    }
    out
}

pub fn param(p: &[(String, String)], name: &str) -> String {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// The `Authorization` value answering `challenge` (with its algorithm,
/// nonce and opaque) for `method` on `uri`, with nonce count `nc`.
pub fn answer(
    challenge: &[(String, String)],
    (user, password): (&str, &str),
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let algorithm = param(challenge, "algorithm");
    let h = |s: &str| match algorithm.as_str() {
        "SHA-256" => hex_sha256(s),
        _ => hex_md5(s),
    };
    let (realm, nonce) = (param(challenge, "realm"), param(challenge, "nonce"));
    let ha1 = h(&format!("{user}:{realm}:{password}"));
    let ha2 = h(&format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = h(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         algorithm={algorithm}, qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{response}\", \
         opaque=\"{}\"",
        param(challenge, "opaque")
    )
}
