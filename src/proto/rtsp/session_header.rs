//! The Session header (RFC 2326 §12.37): `Session: 5C1B3F2A;timeout=60`.
//!
//! The id is 1 to [`MAX_ID_LEN`] characters of `ALPHA / DIGIT / "$" "-" "_"
//! "." "+"`. `;timeout=` must be 1 to [`MAX_TIMEOUT`] seconds; other
//! attributes are ignored. Values over 256 bytes are refused outright, so
//! hostile attribute lists stay cheap (cf. CVE-2019-9928).

use std::fmt;
use std::str::FromStr;

use super::parse::digits;

/// Longest session id accepted.
pub const MAX_ID_LEN: usize = 64;

/// Largest `timeout` accepted, in seconds (one day).
pub const MAX_TIMEOUT: u32 = 86_400;

/// Longest Session value accepted.
const MAX_LEN: usize = 256;

/// A Session header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    pub id: String,
    /// Seconds, in `1..=MAX_TIMEOUT`.
    pub timeout: Option<u32>,
}

/// Why a Session value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionHeaderError {
    /// Longer than 256 bytes.
    #[error("Session value too long")]
    TooLong,
    /// The id is empty, too long or has a character outside the safe set.
    #[error("invalid session id")]
    BadId,
    /// `timeout` is not 1 to 86400 plain decimal seconds.
    #[error("invalid session timeout")]
    BadTimeout,
}

impl FromStr for SessionHeader {
    type Err = SessionHeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_LEN {
            return Err(SessionHeaderError::TooLong);
        }
        let mut parts = s.split(';').map(str::trim);
        let id = parts.next().unwrap_or_default();
        let safe = |b: u8| b.is_ascii_alphanumeric() || b"$-_.+".contains(&b);
        if !(1..=MAX_ID_LEN).contains(&id.len()) || !id.bytes().all(safe) {
            return Err(SessionHeaderError::BadId);
        }
        let mut timeout = None;
        for attr in parts {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            if name.trim_end().eq_ignore_ascii_case("timeout") {
                let t = digits(value.trim_start()).filter(|t| (1..=MAX_TIMEOUT).contains(t));
                timeout = Some(t.ok_or(SessionHeaderError::BadTimeout)?);
            }
        }
        Ok(Self {
            id: id.to_owned(),
            timeout,
        })
    }
}

impl fmt::Display for SessionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)?;
        match self.timeout {
            Some(t) => write!(f, ";timeout={t}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionHeaderError::*;

    fn session(id: &str, timeout: Option<u32>) -> SessionHeader {
        SessionHeader {
            id: id.into(),
            timeout,
        }
    }

    #[test]
    fn accepted() {
        let max_id = "a".repeat(MAX_ID_LEN);
        for (s, want) in [
            ("5C1B3F2A", session("5C1B3F2A", None)),
            ("5C1B3F2A;timeout=60", session("5C1B3F2A", Some(60))),
            (
                "a$-_.+Z9 ; timeout = 86400",
                session("a$-_.+Z9", Some(86400)),
            ),
            ("abc;foo=bar;Timeout=1;x", session("abc", Some(1))),
            (&max_id, session(&max_id, None)),
        ] {
            assert_eq!(s.parse(), Ok(want), "{s:?}");
        }
    }

    #[test]
    fn refused() {
        let (long_id, five_kib) = ("a".repeat(MAX_ID_LEN + 1), "a".repeat(5 << 10));
        for (s, e) in [
            ("", BadId),
            (";timeout=60", BadId),
            ("a b", BadId),
            ("abc\u{e9}", BadId),
            ("abc,def", BadId),
            (&long_id, BadId),
            (&five_kib, TooLong),
            ("abc;timeout=", BadTimeout),
            ("abc;timeout", BadTimeout),
            ("abc;timeout=-1", BadTimeout),
            ("abc;timeout=+1", BadTimeout),
            ("abc;timeout=0", BadTimeout),
            ("abc;timeout=86401", BadTimeout),
            ("abc;timeout=99999999999", BadTimeout),
            ("abc;timeout=1.5", BadTimeout),
        ] {
            assert_eq!(s.parse::<SessionHeader>(), Err(e), "{s:?}");
        }
    }

    #[test]
    fn round_trips() {
        for s in ["abc", "5C1B3F2A;timeout=60"] {
            assert_eq!(s.parse::<SessionHeader>().unwrap().to_string(), s);
        }
    }
}
