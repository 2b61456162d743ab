//! Bearer tokens for the HTTP side (RFC 6750 §2.1, §3), for scrapers and
//! scripts that cannot do Digest.
//!
//! The server keeps only `SHA-256(token)`: a presented token is hashed and
//! compared in constant time (`subtle`) with every configured hash, all of
//! them, so neither the time nor the order tells which one (or whether
//! any) matched. Tokens are minted from the OS CSPRNG ([`mint`]): 32
//! bytes, base64url without padding, a valid RFC 6750 `b64token`.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::digest::to_hex;

/// One configured token: its name (what permission lists name) and the
/// SHA-256 of the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for Token {
    // The hash stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// From the config's hex hash; `None` unless it is 64 hex digits.
    pub fn from_hex(name: &str, hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut sha256 = [0u8; 32];
        for (i, b) in sha256.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self {
            name: name.to_owned(),
            sha256,
        })
    }
}

/// Bytes of randomness in a minted token.
pub const TOKEN_BYTES: usize = 32;

/// What an `Authorization` value is, as far as Bearer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// `Bearer <b64token>`.
    Token(&'a str),
    /// The Bearer scheme with something that is not an RFC 6750
    /// `b64token` (RFC 6750 §3.1 `invalid_request`: 400).
    Malformed,
    /// Another scheme (Digest, Basic, ...).
    Other,
}

/// Reads an `Authorization` value (RFC 6750 §2.1:
/// `"Bearer" 1*SP b64token`).
pub fn parse(value: &str) -> Presented<'_> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Other;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && token.len() <= super::header::MAX_AUTHORIZATION
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if ok {
        Presented::Token(token)
    } else {
        Presented::Malformed
    }
}

/// `SHA-256(token)`.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The name of the configured token `presented` is, compared in constant
/// time against every one (no early exit).
pub fn find<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a str> {
    let got = hash(presented);
    let mut found = subtle::Choice::from(0);
    let mut index = 0u32;
    for (i, t) in (0u32..).zip(tokens) {
        let hit = t.sha256.ct_eq(&got);
        index.conditional_assign(&i, hit);
        found |= hit;
    }
    bool::from(found)
        .then(|| tokens.get(index as usize).map(|t| t.name.as_str()))
        .flatten()
}

/// A fresh token and its hex SHA-256 (what `rtspd token` prints).
pub fn mint() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hex = to_hex(&hash(&token));
    Ok((token, hex))
}

/// One `WWW-Authenticate: Bearer` value (RFC 6750 §3); `invalid` adds
/// `error="invalid_token"` for a token that was presented and refused.
pub fn challenge(realm: &str, invalid: bool) -> String {
    let mut s = format!("Bearer realm=\"{}\"", super::digest::quote(realm));
    if invalid {
        s.push_str(", error=\"invalid_token\"");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, secret: &str) -> Token {
        Token::from_hex(name, &to_hex(&hash(secret))).unwrap()
    }

    #[test]
    fn finds_the_matching_token_among_all() {
        let tokens = [
            token("prom", "aaa"),
            token("grafana", "bbb"),
            token("ci", "ccc"),
        ];
        assert_eq!(find(&tokens, "aaa"), Some("prom"));
        assert_eq!(find(&tokens, "bbb"), Some("grafana"));
        assert_eq!(find(&tokens, "ccc"), Some("ci"));
        assert_eq!(find(&tokens, "ccd"), None);
        assert_eq!(find(&tokens, ""), None);
        assert_eq!(find(&[], "aaa"), None);
    }

    #[test]
    fn hex_hashes() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let t = Token::from_hex("x", h).unwrap();
        assert_eq!(t.sha256, hash("abc"));
        assert!(Token::from_hex("x", &h.to_ascii_uppercase()).is_some());
        assert!(Token::from_hex("x", &h[..62]).is_none());
        assert!(Token::from_hex("x", &format!("{}zz", &h[..62])).is_none());
        assert!(Token::from_hex("x", &format!("{}é", &h[..62])).is_none());
        assert!(!format!("{t:?}").contains("ba78"));
    }

    #[test]
    fn parses_the_bearer_scheme() {
        use Presented::{Malformed, Other, Token as T};
        assert_eq!(parse("Bearer abc-_.~+/=="), T("abc-_.~+/=="));
        assert_eq!(parse("bearer  tok"), T("tok"));
        assert_eq!(parse("Bearer"), Malformed);
        assert_eq!(parse("Bearer a b"), Malformed);
        assert_eq!(parse("Bearer =="), Malformed);
        assert_eq!(parse("Bearer a\"b"), Malformed);
        assert_eq!(parse("Digest username=\"a\""), Other);
        assert_eq!(parse("Basic YQ=="), Other);
    }

    #[test]
    fn minted_tokens_are_fresh_b64tokens_with_their_hash() {
        let (a, ha) = mint().unwrap();
        let (b, _) = mint().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(parse(&format!("Bearer {a}")), Presented::Token(&a));
        let t = Token::from_hex("m", &ha).unwrap();
        assert_eq!(find(&[t], &a), Some("m"));
    }

    #[test]
    fn challenge_text() {
        assert_eq!(challenge("rtspd", false), "Bearer realm=\"rtspd\"");
        assert_eq!(
            challenge("r", true),
            "Bearer realm=\"r\", error=\"invalid_token\""
        );
    }
}
