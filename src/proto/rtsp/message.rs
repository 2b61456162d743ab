//! Request and response values (RFC 2326 §6, §7) and the response writer.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use bytes::Bytes;

use super::StatusCode;

/// RTSP methods (RFC 2326 §10). Method names are case-sensitive (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Describe,
    Setup,
    Play,
    Pause,
    Teardown,
    GetParameter,
    SetParameter,
    Announce,
    Record,
    Redirect,
    /// Any other syntactically valid token.
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Options => "OPTIONS",
            Self::Describe => "DESCRIBE",
            Self::Setup => "SETUP",
            Self::Play => "PLAY",
            Self::Pause => "PAUSE",
            Self::Teardown => "TEARDOWN",
            Self::GetParameter => "GET_PARAMETER",
            Self::SetParameter => "SET_PARAMETER",
            Self::Announce => "ANNOUNCE",
            Self::Record => "RECORD",
            Self::Redirect => "REDIRECT",
            Self::Other(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "OPTIONS" => Self::Options,
            "DESCRIBE" => Self::Describe,
            "SETUP" => Self::Setup,
            "PLAY" => Self::Play,
            "PAUSE" => Self::Pause,
            "TEARDOWN" => Self::Teardown,
            "GET_PARAMETER" => Self::GetParameter,
            "SET_PARAMETER" => Self::SetParameter,
            "ANNOUNCE" => Self::Announce,
            "RECORD" => Self::Record,
            "REDIRECT" => Self::Redirect,
            other => Self::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in arrival order. Names compare case-insensitively (§4.2).
/// Values are kept as sent, minus surrounding whitespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The CSeq (§12.17): `None` when absent, invalid or given twice.
    pub fn cseq(&self) -> Option<u32> {
        let mut all = self.get_all("CSeq");
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        parse_cseq(first)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A parsed RTSP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI exactly as sent (`*` or an absolute `rtsp://` URL).
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

impl Request {
    /// The CSeq when it is present exactly once and is a plain decimal u32.
    pub fn cseq(&self) -> Option<u32> {
        self.headers.cseq()
    }
}

/// Parses a CSeq value: 1–10 ASCII digits fitting a u32 (RFC 2326 §12.17).
pub fn parse_cseq(v: &str) -> Option<u32> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// A response under construction. Header values must not contain CR, LF or
/// NUL; [`Response::header`] drops such a header rather than emit it (I7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    /// A reason phrase saying more than the status's standard one
    /// (RFC 2326 §7.1.1 lets the server choose it), such as why ports were
    /// refused.
    pub reason: Option<&'static str>,
    pub headers: Headers,
    pub body: Bytes,
}

impl Response {
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            reason: None,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Replaces the standard reason phrase (it must be one line of text).
    pub fn reason(mut self, reason: &'static str) -> Self {
        if !reason.bytes().any(|b| b.is_ascii_control()) {
            self.reason = Some(reason);
        }
        self
    }

    /// Adds a header unless its name or value would break the framing.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        let bad = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        if !bad(name) && !bad(&value) {
            self.headers.push(name, value);
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.header("Content-Type", content_type)
    }

    /// Writes the status line, headers, `Content-Length` (always, computed
    /// from the body) and the body.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self.reason {
            Some(reason) => write!(w, "RTSP/1.0 {} {reason}\r\n", self.status.0)?,
            None => write!(w, "RTSP/1.0 {}\r\n", self.status)?,
        }
        for (n, v) in self.headers.iter() {
            if n.eq_ignore_ascii_case("Content-Length") {
                continue;
            }
            write!(w, "{n}: {v}\r\n")?;
        }
        write!(w, "Content-Length: {}\r\n\r\n", self.body.len())?;
        w.write_all(&self.body)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_rules() {
        assert_eq!(parse_cseq("1"), Some(1));
        assert_eq!(parse_cseq("4294967295"), Some(u32::MAX));
        for bad in ["", "abc", "-1", "4294967296", "1.5", " 1", "99999999999"] {
            assert_eq!(parse_cseq(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn response_never_emits_crlf_from_values() {
        let r = Response::new(StatusCode::OK)
            .header("CSeq", "1\r\nX-Injected: y")
            .header("Session", "abc");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(!text.contains("X-Injected"));
        assert!(text.contains("Session: abc\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }
}
