//! RTSP over HTTP, as QuickTime tunnels it (Apple, "Tunneling QuickTime
//! RTSP and RTP over HTTP"): what a tunnel's HTTP request heads say, the
//! base64 that carries requests, and the answers. Sans-IO: bytes in,
//! decisions and bytes out.
//!
//! A client behind a proxy that passes only HTTP opens two connections:
//! - a `GET` with `x-sessioncookie: C` and `Accept:
//!   application/x-rtsp-tunnelled`, whose response never ends: RTSP
//!   responses and interleaved media (RFC 2326 §10.12) follow it, raw;
//! - a `POST` with the same cookie and `Content-Type:
//!   application/x-rtsp-tunnelled`, whose body is base64 (RFC 4648 §4) of
//!   the RTSP requests. Its `Content-Length` is a placeholder (32767); the
//!   body runs until the client closes.
//!
//! The POST gets no answer unless it is refused. [`Base64Decoder`] decodes
//! the body as it arrives, split anywhere, with at most three sextets of
//! state (ROBUSTNESS B13#96).

use thiserror::Error;

/// The media type both halves of a tunnel name.
pub const TUNNELLED: &str = "application/x-rtsp-tunnelled";

/// Longest `x-sessioncookie` accepted (clients send 22 to 32 characters).
pub const MAX_COOKIE: usize = 128;

/// Which half of a tunnel a request opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// The server-to-client half: responses and media.
    Get,
    /// The client-to-server half: base64 requests.
    Post,
}

/// A tunnel's request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub half: Half,
    /// The `x-sessioncookie` that pairs the two halves.
    pub cookie: String,
    /// `HTTP/1.0` asked (the answer uses the request's version).
    pub http10: bool,
}

/// What the bytes read so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// The head is not complete yet.
    Incomplete,
    /// A complete HTTP head that is no tunnel (for the HTTP API).
    Other,
    /// A tunnel half; its head ends `len` bytes in (a POST's base64
    /// starts there).
    Tunnel { head: Head, len: usize },
}

/// A head that cannot open a tunnel; each maps to the HTTP status that
/// answers it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TunnelError {
    #[error("malformed HTTP request head: {0}")]
    Malformed(&'static str),
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    #[error("x-sessioncookie is empty, longer than {MAX_COOKIE} bytes, or not visible ASCII")]
    BadCookie,
    #[error("a tunnel half is opened with GET or POST, not {0}")]
    Method(String),
    #[error("no x-sessioncookie header: not a tunnel")]
    NoCookie,
}

impl TunnelError {
    /// The HTTP status that answers it.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyHeaders(_) => 431,
            Self::Method(_) => 405,
            Self::Malformed(_) | Self::BadCookie | Self::NoCookie => 400,
        }
    }
}

/// Looks at the start of a connection: `Incomplete` until the head's blank
/// line has arrived. `max_headers` caps the header lines (more is an
/// error); the caller caps the head's bytes.
pub fn sniff(buf: &[u8], max_headers: usize) -> Result<Sniffed, TunnelError> {
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers.max(1)];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Sniffed::Incomplete),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(TunnelError::TooManyHeaders(max_headers))
        }
        Err(_) => return Err(TunnelError::Malformed("not an HTTP/1.x request")),
    };
    let cookies: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-sessioncookie"))
        .map(|h| h.value)
        .collect();
    let cookie = match cookies[..] {
        [] => return Ok(Sniffed::Other),
        [one] => one,
        _ => return Err(TunnelError::Malformed("more than one x-sessioncookie")),
    };
    let half = match req.method {
        Some("GET") => Half::Get,
        Some("POST") => Half::Post,
        Some(other) => return Err(TunnelError::Method(printable(other))),
        None => return Err(TunnelError::Malformed("no method")),
    };
    let cookie = std::str::from_utf8(cookie)
        .ok()
        .map(str::trim)
        .filter(|c| {
            !c.is_empty() && c.len() <= MAX_COOKIE && c.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or(TunnelError::BadCookie)?;
    Ok(Sniffed::Tunnel {
        head: Head {
            half,
            cookie: cookie.to_owned(),
            http10: req.version == Some(0),
        },
        len,
    })
}

/// At most 16 visible characters of client text, for an error message.
fn printable(s: &str) -> String {
    s.chars().filter(char::is_ascii_graphic).take(16).collect()
}

/// Whether the first bytes of an RTSP-port connection may be a tunnel half
/// (`GET ` or `POST`): `None` while fewer than four bytes decide it. RTSP
/// methods that share a first letter (`GET_PARAMETER`, `PLAY`, `PAUSE`)
/// differ by the fourth byte.
pub fn starts_http(first: &[u8]) -> Option<bool> {
    const HTTP: [&[u8]; 2] = [b"GET ", b"POST"];
    let n = first.len().min(4);
    let maybe = HTTP.iter().any(|m| m[..n] == first[..n]);
    if !maybe {
        Some(false)
    } else if n == 4 {
        Some(true)
    } else {
        None
    }
}

/// The answer to a GET that opens a tunnel. No length: the body is the
/// RTSP conversation and ends when the connection does.
pub fn get_ok(http10: bool) -> Vec<u8> {
    format!(
        "HTTP/1.{} 200 OK\r\nServer: rtspd/{}\r\nConnection: close\r\nCache-Control: no-store\r\nPragma: no-cache\r\nContent-Type: {TUNNELLED}\r\n\r\n",
        if http10 { 0 } else { 1 },
        env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// The answer to a tunnel half that is refused; the connection closes after
/// it.
pub fn refusal(status: u16, reason: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: rtspd/{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
    )
    .into_bytes()
}

/// Base64 that is not.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum Base64Error {
    #[error("byte {0:#04x} is not base64")]
    Byte(u8),
    #[error("padding in the wrong place")]
    Padding,
}

/// Decodes a base64 stream (RFC 4648 §4) pushed in pieces split anywhere.
/// It holds at most three sextets of a quantum between pushes. Padding may
/// end a quantum in the middle of the stream (clients encode each request
/// on its own), and line breaks and spaces between characters are skipped.
#[derive(Debug, Clone, Default)]
pub struct Base64Decoder {
    /// Sextets of the quantum being read.
    sextets: [u8; 3],
    /// How many of them are held.
    held: u8,
    /// A second `=` is due (after `xx=`).
    pad_due: bool,
}

impl Base64Decoder {
    /// Decodes `input`, appending the bytes to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Base64Error> {
        out.reserve(input.len() / 4 * 3 + 3);
        for &c in input {
            if matches!(c, b'\r' | b'\n' | b' ' | b'\t') {
                continue;
            }
            if self.pad_due {
                if c != b'=' {
                    return Err(Base64Error::Padding);
                }
                self.pad_due = false;
                continue;
            }
            if c == b'=' {
                let [a, b, c2] = self.sextets;
                match self.held {
                    2 => {
                        out.push(a << 2 | b >> 4);
                        self.pad_due = true;
                    }
                    3 => {
                        out.push(a << 2 | b >> 4);
                        out.push(b << 4 | c2 >> 2);
                    }
                    _ => return Err(Base64Error::Padding),
                }
                self.held = 0;
                continue;
            }
            let v = sextet(c).ok_or(Base64Error::Byte(c))?;
            if self.held < 3 {
                self.sextets[usize::from(self.held)] = v;
                self.held += 1;
            } else {
                let [a, b, c2] = self.sextets;
                out.push(a << 2 | b >> 4);
                out.push(b << 4 | c2 >> 2);
                out.push(c2 << 6 | v);
                self.held = 0;
            }
        }
        Ok(())
    }

    /// Whether a quantum is part-way (the stream may not end here).
    pub fn mid_quantum(&self) -> bool {
        self.held != 0 || self.pad_due
    }
}

fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn decode_split(text: &[u8], at: &[usize]) -> Result<Vec<u8>, Base64Error> {
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in at.iter().chain([text.len()].iter()) {
            d.push(&text[from..cut], &mut out)?;
            from = cut;
        }
        Ok(out)
    }

    #[test]
    fn decodes_what_the_base64_crate_encodes_split_anywhere() {
        let engine = base64::engine::general_purpose::STANDARD;
        for len in 0..40usize {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = engine.encode(&data);
            for cut in 0..=text.len() {
                let got = decode_split(text.as_bytes(), &[cut]).expect("valid");
                assert_eq!(got, data, "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn padded_requests_back_to_back_with_line_breaks() {
        let engine = base64::engine::general_purpose::STANDARD;
        let a = b"OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        let b = b"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 2\r\n\r\n";
        let text = format!("{}\r\n{}", engine.encode(a), engine.encode(b));
        let got = decode_split(text.as_bytes(), &[3, 17, 55]).expect("valid");
        assert_eq!(got, [&a[..], &b[..]].concat());
    }

    #[test]
    fn state_is_at_most_three_sextets() {
        let mut d = Base64Decoder::default();
        let mut out = Vec::new();
        d.push(b"QUJ", &mut out).expect("valid");
        assert!(out.is_empty() && d.mid_quantum());
        d.push(b"D", &mut out).expect("valid");
        assert_eq!(out, b"ABC");
        assert!(!d.mid_quantum());
        assert!(size_of::<Base64Decoder>() <= 5);
    }

    #[test]
    fn invalid_input_is_an_error() {
        assert_eq!(decode_split(b"QU*D", &[]), Err(Base64Error::Byte(b'*')));
        assert_eq!(decode_split(b"Q===", &[]), Err(Base64Error::Padding));
        assert_eq!(decode_split(b"=", &[]), Err(Base64Error::Padding));
        assert_eq!(decode_split(b"QQ=A", &[]), Err(Base64Error::Padding));
        assert!(decode_split(b"QQ==", &[2]).is_ok());
    }

    #[test]
    fn sniffs_tunnel_halves_and_other_requests() {
        let get = b"GET /clip.wav HTTP/1.0\r\nx-sessioncookie: abc123\r\nAccept: application/x-rtsp-tunnelled\r\n\r\n";
        assert_eq!(sniff(&get[..20], 16), Ok(Sniffed::Incomplete));
        assert_eq!(
            sniff(get, 16),
            Ok(Sniffed::Tunnel {
                head: Head {
                    half: Half::Get,
                    cookie: "abc123".into(),
                    http10: true
                },
                len: get.len()
            })
        );
        let post = b"POST /clip.wav HTTP/1.1\r\nX-SessionCookie: abc123\r\nContent-Length: 32767\r\n\r\nT1BU";
        match sniff(post, 16) {
            Ok(Sniffed::Tunnel { head, len }) => {
                assert_eq!(head.half, Half::Post);
                assert_eq!(&post[len..], b"T1BU");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sniff(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 16),
            Ok(Sniffed::Other)
        );
    }

    #[test]
    fn bad_heads_have_their_status() {
        let cases: [(&[u8], u16); 5] = [
            (b"PUT / HTTP/1.1\r\nx-sessioncookie: a\r\n\r\n", 405),
            (b"GET / HTTP/1.1\r\nx-sessioncookie: \r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nx-sessioncookie: a\r\nx-sessioncookie: b\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", 431),
            (b"\x01\x02 / HTTP/1.1\r\n\r\n", 400),
        ];
        for (head, status) in cases {
            let e = sniff(head, 2).expect_err("refused");
            assert_eq!(e.status(), status, "{e}");
        }
        let long = format!(
            "GET / HTTP/1.1\r\nx-sessioncookie: {}\r\n\r\n",
            "a".repeat(MAX_COOKIE + 1)
        );
        assert_eq!(sniff(long.as_bytes(), 8), Err(TunnelError::BadCookie));
    }

    #[test]
    fn first_bytes_tell_http_from_rtsp() {
        assert_eq!(starts_http(b"GET "), Some(true));
        assert_eq!(starts_http(b"POST /"), Some(true));
        assert_eq!(starts_http(b"GET_PARAMETER"), Some(false));
        assert_eq!(starts_http(b"PLAY"), Some(false));
        assert_eq!(starts_http(b"PAUSE"), Some(false));
        assert_eq!(starts_http(b"OPTIONS"), Some(false));
        assert_eq!(starts_http(b"$\x00"), Some(false));
        assert_eq!(starts_http(b"GE"), None);
        assert_eq!(starts_http(b"P"), None);
        assert_eq!(starts_http(b""), None);
    }
}
