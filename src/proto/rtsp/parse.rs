//! Streaming request parser (RFC 2326 §4, §6, §10.12 interleaved frames).
//!
//! [`parse`] looks at the start of a connection's input buffer and reports a
//! whole request or `$` frame with the bytes it occupies, asks for more bytes,
//! or rejects the input with the status to answer. It keeps no state: the
//! caller appends what it reads and calls again.
//!
//! Every decision depends only on the bytes before the point where it is made,
//! so the same stream split anywhere gives the same result (the property of
//! retina's `roundtrip_rtsp_message` fuzz target), and every cap in [`Limits`]
//! is enforced as soon as it is exceeded, so one request never holds more
//! than `max_head + max_body` bytes of the caller's buffer.

use std::str::{self, FromStr};

use bytes::Bytes;

use super::{Headers, Method, Request, Response, StatusCode};

/// Caps on what one request may occupy. Every one has a default and a CLI knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CRLF excluded (default 4 KiB); longer gets 400.
    pub max_request_line: usize,
    /// Longest Request-URI (default 2 KiB); longer gets 414.
    pub max_uri: usize,
    /// Most header lines (default 256).
    pub max_headers: usize,
    /// Longest header line, name and value, CRLF excluded (default 2 KiB
    /// of value plus room for the name).
    pub max_header_line: usize,
    /// Largest whole head: leading empty lines are capped at this too, and
    /// so is request line + headers + blank line (default 16 KiB).
    pub max_head: usize,
    /// Largest body (default 64 KiB); larger gets 413 as soon as the
    /// Content-Length is read.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_line: 4096,
            max_uri: 2048,
            max_headers: 256,
            max_header_line: 2048 + 64,
            max_head: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// What [`parse`] found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// A whole request occupying the first `consumed` bytes (leading empty
    /// lines included).
    Request { request: Request, consumed: usize },
    /// A `$` interleaved frame (RFC 2326 §10.12).
    Interleaved {
        channel: u8,
        payload: Bytes,
        consumed: usize,
    },
}

/// Why the bytes cannot be a request. `status` is what to answer (when the
/// request line was readable), and the connection is then closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {pos}")]
pub struct ParseError {
    /// A short description of the problem.
    pub kind: &'static str,
    /// Offset in the buffer passed to [`parse`] where the problem was found.
    pub pos: usize,
    /// 400, 413, 414 or 505.
    pub status: StatusCode,
    /// The CSeq, if the head got far enough to read a valid one.
    pub cseq: Option<u32>,
}

impl ParseError {
    fn new(status: StatusCode, pos: usize, kind: &'static str) -> Self {
        Self {
            kind,
            pos,
            status,
            cseq: None,
        }
    }

    fn at(self, offset: usize) -> Self {
        Self {
            pos: self.pos + offset,
            ..self
        }
    }
}

fn bad(pos: usize, kind: &'static str) -> ParseError {
    ParseError::new(StatusCode::BAD_REQUEST, pos, kind)
}

/// Longest method token accepted.
const MAX_METHOD: usize = 32;

/// Parses one message from the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let start = skip_empty_lines(buf, limits)?;
    match buf.get(start) {
        None => Ok(Parsed::Incomplete),
        Some(b'$') => Ok(match interleaved(buf, start) {
            Some((channel, payload, consumed)) => Parsed::Interleaved {
                channel,
                payload,
                consumed,
            },
            None => Parsed::Incomplete,
        }),
        Some(_) => request(buf, start, limits),
    }
}

/// Returns where the first non-empty line starts (`buf.len()` if none yet).
fn skip_empty_lines(buf: &[u8], limits: &Limits) -> Result<usize, ParseError> {
    let mut i = 0;
    loop {
        i += match buf[i..] {
            [b'\n', ..] => 1,
            [b'\r', b'\n', ..] => 2,
            // A lone trailing CR may become an empty line: wait.
            [b'\r'] => return Ok(buf.len()),
            _ => return Ok(i),
        };
        if i > limits.max_head {
            return Err(bad(i, "too many empty lines"));
        }
    }
}

/// `$`, channel, 16-bit big-endian length, payload: `(channel, payload,
/// end)`, or `None` until the whole frame is there.
fn interleaved(buf: &[u8], start: usize) -> Option<(u8, Bytes, usize)> {
    let &[_, channel, hi, lo] = buf.get(start..start + 4)? else {
        return None;
    };
    let end = start + 4 + usize::from(u16::from_be_bytes([hi, lo]));
    let payload = buf.get(start + 4..end)?;
    Some((channel, Bytes::copy_from_slice(payload), end))
}

fn request(buf: &[u8], start: usize, limits: &Limits) -> Result<Parsed, ParseError> {
    let line_cap = (limits.max_request_line, "request line too long");
    let Some(((method, uri), pos)) = line(buf, start, line_cap, |c, complete| {
        request_line(c, complete, limits)
    })?
    else {
        return Ok(Parsed::Incomplete);
    };
    Ok(match head_and_body(buf, start, pos, limits)? {
        None => Parsed::Incomplete,
        Some((headers, body, consumed)) => Parsed::Request {
            request: Request {
                method,
                uri: uri.to_owned(),
                headers,
                body,
            },
            consumed,
        },
    })
}

/// The header lines from `pos` up to the blank line, and the body they
/// announce, of a message whose start line began at `start`. Returns the
/// end of the message too; `None` when more bytes are needed.
fn head_and_body(
    buf: &[u8],
    start: usize,
    mut pos: usize,
    limits: &Limits,
) -> Result<Option<(Headers, Bytes, usize)>, ParseError> {
    let mut headers = Headers::new();
    let with_cseq = |e: ParseError, headers: &Headers| ParseError {
        cseq: headers.cseq(),
        ..e
    };
    loop {
        let room = limits.max_head.saturating_sub(pos - start);
        let cap = if room < limits.max_header_line {
            (room, "head too long")
        } else {
            (limits.max_header_line, "header line too long")
        };
        if headers.len() >= limits.max_headers
            && buf.get(pos).is_some_and(|b| !matches!(b, b'\r' | b'\n'))
        {
            return Err(with_cseq(bad(pos, "too many headers"), &headers));
        }
        let Some((field, next)) =
            line(buf, pos, cap, header_line).map_err(|e| with_cseq(e, &headers))?
        else {
            return Ok(None);
        };
        pos = next;
        match field {
            Some((name, value)) => headers.push(name, value),
            None => break,
        }
    }
    if pos - start > limits.max_head {
        return Err(with_cseq(
            bad(start + limits.max_head, "head too long"),
            &headers,
        ));
    }
    let len = content_length(&headers, limits).map_err(|e| with_cseq(e.at(pos), &headers))?;
    let Some(body) = buf.get(pos..pos + len) else {
        return Ok(None);
    };
    Ok(Some((headers, Bytes::copy_from_slice(body), pos + len)))
}

/// What [`parse_response`] found at the start of a client's input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedResponse {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// A whole response occupying the first `consumed` bytes.
    Response { response: Response, consumed: usize },
    /// A `$` interleaved frame (RFC 2326 §10.12).
    Interleaved {
        channel: u8,
        payload: Bytes,
        consumed: usize,
    },
}

/// Parses one response (§7) or interleaved frame from the start of `buf`,
/// for the client side ([`crate::load`]), under the same [`Limits`] as
/// requests. A server's request to the client (rare: ANNOUNCE, GET_PARAMETER
/// keepalives from some servers) is an error here.
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<ParsedResponse, ParseError> {
    let start = skip_empty_lines(buf, limits)?;
    match buf.get(start) {
        None => return Ok(ParsedResponse::Incomplete),
        Some(b'$') => {
            return Ok(match interleaved(buf, start) {
                Some((channel, payload, consumed)) => ParsedResponse::Interleaved {
                    channel,
                    payload,
                    consumed,
                },
                None => ParsedResponse::Incomplete,
            })
        }
        Some(_) => {}
    }
    let cap = (limits.max_request_line, "status line too long");
    let Some((status, pos)) = line(buf, start, cap, status_line)? else {
        return Ok(ParsedResponse::Incomplete);
    };
    Ok(match head_and_body(buf, start, pos, limits)? {
        None => ParsedResponse::Incomplete,
        Some((headers, body, consumed)) => ParsedResponse::Response {
            response: Response {
                status,
                reason: None,
                headers,
                body,
            },
            consumed,
        },
    })
}

/// `RTSP-Version SP Status-Code SP Reason-Phrase` (§7.1).
fn status_line(c: &[u8], complete: bool) -> Result<Option<StatusCode>, ParseError> {
    const VERSION: &[u8] = b"RTSP/1.0 ";
    let n = c.len().min(VERSION.len());
    if c[..n] != VERSION[..n] {
        return Err(bad(0, "not an RTSP/1.0 status line"));
    }
    if !complete {
        return Ok(None);
    }
    let code = c
        .get(VERSION.len()..VERSION.len() + 3)
        .and_then(|d| str::from_utf8(d).ok())
        .and_then(digits::<u16>)
        .filter(|n| (100..600).contains(n))
        .ok_or_else(|| bad(VERSION.len(), "invalid status code"))?;
    match c.get(VERSION.len() + 3) {
        None | Some(b' ') => Ok(Some(StatusCode(code))),
        Some(_) => Err(bad(VERSION.len() + 3, "invalid status code")),
    }
}

/// Finds the line starting at `from` (its content is at most `cap.0` bytes
/// before CRLF or bare LF) and hands its content to `f`, with whether the
/// line end was seen. `f` reports errors relative to the line start, returns
/// `None` only when it needs more bytes, and must not return `None` for a
/// complete line. Returns the value and the next line's start.
fn line<'a, T>(
    buf: &'a [u8],
    from: usize,
    (max, too_long): (usize, &'static str),
    f: impl FnOnce(&'a [u8], bool) -> Result<Option<T>, ParseError>,
) -> Result<Option<(T, usize)>, ParseError> {
    // One byte past the cap decides "too long" without waiting for more.
    let window = &buf[from..buf.len().min(from.saturating_add(max).saturating_add(1))];
    let eol = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let (content, next) = match eol {
        None => (window, None),
        Some(k) => (
            &window[..k],
            match (window[k], buf.get(from + k + 1)) {
                (b'\n', _) => Some(from + k + 1),
                (_, Some(b'\n')) => Some(from + k + 2),
                (_, None) => None,
                (_, Some(_)) => {
                    // Let `f` report anything earlier first.
                    f(&window[..k], false).map_err(|e| e.at(from))?;
                    return Err(bad(from + k, "CR without LF"));
                }
            },
        ),
    };
    match (f(content, next.is_some()).map_err(|e| e.at(from))?, next) {
        (Some(value), Some(next)) => Ok(Some((value, next))),
        _ if eol.is_none() && window.len() > max => Err(bad(from + max, too_long)),
        _ => Ok(None),
    }
}

/// `Method SP Request-URI SP RTSP-Version` (§6.1).
fn request_line<'a>(
    c: &'a [u8],
    complete: bool,
    limits: &Limits,
) -> Result<Option<(Method, &'a str)>, ParseError> {
    let m = c
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|&&b| is_tchar(b))
        .count();
    match c.get(m) {
        _ if m > MAX_METHOD => return Err(bad(MAX_METHOD, "method too long")),
        Some(b' ') if m > 0 => {}
        None if !complete => return Ok(None),
        None => return Err(bad(m, "no Request-URI")),
        Some(_) if m == 0 => return Err(bad(0, "request line does not start with a method")),
        Some(_) => return Err(bad(m, "invalid character in method")),
    }
    let u = m + 1;
    let rest = &c[u..];
    let uri_len = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if let Some(i) = rest[..uri_len]
        .iter()
        .take(limits.max_uri)
        .position(|&b| b < 0x20 || b == 0x7f)
    {
        return Err(bad(u + i, "control character in Request-URI"));
    }
    if uri_len > limits.max_uri {
        return Err(ParseError::new(
            StatusCode::REQUEST_URI_TOO_LARGE,
            u + limits.max_uri,
            "Request-URI too long",
        ));
    }
    if uri_len == rest.len() {
        return if complete {
            Err(bad(c.len(), "no RTSP version"))
        } else {
            Ok(None)
        };
    }
    if uri_len == 0 {
        return Err(bad(u, "empty Request-URI"));
    }
    if !complete {
        return Ok(None);
    }
    let v = u + uri_len + 1;
    match &c[v..] {
        // HTTP is let through so `GET / HTTP/1.1` gets a 501 rather than a
        // closed connection.
        b"RTSP/1.0" | b"HTTP/1.0" | b"HTTP/1.1" => {}
        ver if ver.starts_with(b"RTSP/") && !ver.contains(&b' ') => {
            return Err(ParseError::new(
                StatusCode::VERSION_NOT_SUPPORTED,
                v,
                "unsupported RTSP version",
            ))
        }
        _ => return Err(bad(v, "invalid RTSP version")),
    }
    // Method and version are ASCII, so any invalid byte is in the URI; the
    // slice bounds below are ASCII spaces.
    let text = str::from_utf8(c).map_err(|e| bad(e.valid_up_to(), "Request-URI is not UTF-8"))?;
    let Ok(method) = text[..m].parse();
    Ok(Some((method, &text[u..u + uri_len])))
}

/// `field-name ":" field-value` (§4.2), or `Some(None)` for the blank line.
fn header_line(c: &[u8], complete: bool) -> Result<Option<Option<(&str, &str)>>, ParseError> {
    let n = c.iter().take_while(|&&b| is_tchar(b)).count();
    match c.get(n) {
        None if !complete => return Ok(None),
        None if n == 0 => return Ok(Some(None)),
        None => return Err(bad(n, "header without colon")),
        Some(b' ' | b'\t') if n == 0 => return Err(bad(0, "obsolete header line folding")),
        Some(b':') if n > 0 => {}
        Some(_) => return Err(bad(n, "invalid header name")),
    }
    if let Some(i) = c[n + 1..]
        .iter()
        .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(bad(n + 1 + i, "control character in header value"));
    }
    if !complete {
        return Ok(None);
    }
    let text = str::from_utf8(c).map_err(|e| bad(e.valid_up_to(), "header value is not UTF-8"))?;
    Ok(Some(Some((
        &text[..n],
        text[n + 1..].trim_matches([' ', '\t']),
    ))))
}

/// The body length: every Content-Length (§12.14) must be plain decimal
/// and agree, and the length must fit `max_body`. Errors are at offset 0.
fn content_length(headers: &Headers, limits: &Limits) -> Result<usize, ParseError> {
    let mut len = None;
    for v in headers.get_all("Content-Length") {
        let n = digits::<u64>(v)
            .filter(|_| v.len() <= 20)
            .ok_or_else(|| bad(0, "invalid Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(bad(0, "conflicting Content-Length headers"));
        }
        len = Some(n);
    }
    usize::try_from(len.unwrap_or(0))
        .ok()
        .filter(|&n| n <= limits.max_body)
        .ok_or_else(|| ParseError::new(StatusCode::REQUEST_ENTITY_TOO_LARGE, 0, "body too large"))
}

/// RFC 2616 §2.2 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty run of ASCII digits as a number (no sign, no spaces); `None`
/// on anything else or overflow. Shared by the typed-header parsers.
pub(super) fn digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_request_line: 4096,
        max_uri: 2048,
        max_headers: 256,
        max_header_line: 2048 + 64,
        max_head: 16 * 1024,
        max_body: 64 * 1024,
    };

    /// Parses `buf` and checks that every prefix (at most ~4,000 of them,
    /// evenly spread, plus the last 300) gives `Incomplete` or the same result.
    fn parse_split(buf: &[u8]) -> Result<Parsed, ParseError> {
        let full = parse(buf, &L);
        let step = (buf.len() / 4000).max(1);
        let tail = buf.len().saturating_sub(300)..buf.len();
        for n in (0..buf.len()).step_by(step).chain(tail) {
            match parse(&buf[..n], &L) {
                Ok(Parsed::Incomplete) => {}
                other => assert_eq!(other, full, "prefix of {n} bytes"),
            }
        }
        full
    }

    fn request_of(buf: &[u8]) -> (Request, usize) {
        match parse_split(buf) {
            Ok(Parsed::Request { request, consumed }) => (request, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn expect_err(buf: &[u8], status: u16, kind: &str, cseq: Option<u32>) {
        let head = String::from_utf8_lossy(&buf[..buf.len().min(60)]);
        let e = parse_split(buf).expect_err(&head);
        assert_eq!(
            (e.status.0, e.kind, e.cseq),
            (status, kind, cseq),
            "{head:?}"
        );
    }

    fn opts(line: &str) -> Vec<u8> {
        format!("{line}\r\nCSeq: 1\r\n\r\n").into_bytes()
    }

    fn with_header(h: &str) -> Vec<u8> {
        format!("OPTIONS * RTSP/1.0\r\nCSeq: 7\r\n{h}\r\n\r\n").into_bytes()
    }

    #[test]
    fn accepted_requests() {
        let many: String = (0..L.max_headers)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let many = format!("OPTIONS * RTSP/1.0\r\n{many}\r\n");
        let cases = [
            ("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n", "OPTIONS", "*"),
            ("OPTIONS * RTSP/1.0\nCSeq: 1\n\n", "OPTIONS", "*"),
            (
                "\r\n\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                "OPTIONS",
                "*",
            ),
            ("\n\nOPTIONS * RTSP/1.0\r\n\r\n", "OPTIONS", "*"),
            (
                "play rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                "play",
                "rtsp://h/s",
            ),
            (
                "XPLAY rtsp://h/s RTSP/1.0\r\nCSeq: 1\r\n\r\n",
                "XPLAY",
                "rtsp://h/s",
            ),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/"),
            ("OPTIONS * HTTP/1.0\r\n\r\n", "OPTIONS", "*"),
            (
                "DESCRIBE rtsp://h/caf\u{e9} RTSP/1.0\r\n\r\n",
                "DESCRIBE",
                "rtsp://h/caf\u{e9}",
            ),
            (
                "OPTIONS * RTSP/1.0\r\nContent-Length: 0\r\n\r\n",
                "OPTIONS",
                "*",
            ),
            (
                "OPTIONS * RTSP/1.0\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
                "OPTIONS",
                "*",
            ),
            (&many, "OPTIONS", "*"),
        ];
        for (buf, method, uri) in cases {
            let (req, consumed) = request_of(buf.as_bytes());
            assert_eq!((req.method.as_str(), req.uri.as_str()), (method, uri));
            assert_eq!((consumed, req.body.len()), (buf.len(), 0));
        }
        let method = "M".repeat(MAX_METHOD);
        let (req, _) = request_of(&opts(&format!("{method} * RTSP/1.0")));
        assert_eq!(req.method, Method::Other(method));
        let (req, _) = request_of(&with_header("X-Tab:\tv\t"));
        assert_eq!(req.headers.get("x-tab"), Some("v"));
    }

    #[test]
    fn rejected_request_lines() {
        let cases = [
            (
                " OPTIONS * RTSP/1.0",
                400,
                "request line does not start with a method",
            ),
            ("OPT(ONS * RTSP/1.0", 400, "invalid character in method"),
            ("OPTIONS * RTSP/2.0", 505, "unsupported RTSP version"),
            ("OPTIONS * RTSP/9.9", 505, "unsupported RTSP version"),
            ("OPTIONS * rtsp/1.0", 400, "invalid RTSP version"),
            ("OPTIONS * HTTP/2", 400, "invalid RTSP version"),
            ("OPTIONS * RTSP/1.0 x", 400, "invalid RTSP version"),
            ("OPTIONS rtsp://h/s ", 400, "invalid RTSP version"),
            ("OPTIONS rtsp://h/s", 400, "no RTSP version"),
            ("OPTIONS  * RTSP/1.0", 400, "empty Request-URI"),
            ("OPTIONS", 400, "no Request-URI"),
            (
                "OPTIONS rtsp://h/\ts RTSP/1.0",
                400,
                "control character in Request-URI",
            ),
        ];
        for (line, status, kind) in cases {
            expect_err(&opts(line), status, kind, None);
        }
    }

    #[test]
    fn rejected_headers() {
        let big = format!("X-Big: {}", "v".repeat(100 << 10));
        let cases = [
            ("X-A: b\r\n c", 400, "obsolete header line folding"),
            ("X-A: b\r\n\tc", 400, "obsolete header line folding"),
            ("Header\0: v", 400, "invalid header name"),
            ("X-A : v", 400, "invalid header name"),
            (": v", 400, "invalid header name"),
            ("NoColon", 400, "header without colon"),
            ("Header: v\0w", 400, "control character in header value"),
            ("X-A: 1\rX-Injected: y", 400, "CR without LF"),
            (&big, 400, "header line too long"),
            ("Content-Length: 1000000", 413, "body too large"),
            (
                "Content-Length: 65537\r\nContent-Length: 65537",
                413,
                "body too large",
            ),
        ];
        for (header, status, kind) in cases {
            expect_err(&with_header(header), status, kind, Some(7));
        }
        let lengths = ["99999999999999999999", "000000000000000000001"];
        for v in lengths
            .into_iter()
            .chain(["-1", "+1", "0x10", "1e3", "1.0", "1 2", ""])
        {
            let buf = with_header(&format!("Content-Length: {v}"));
            expect_err(&buf, 400, "invalid Content-Length", Some(7));
        }
        let buf = with_header("Content-Length: 1\r\nContent-Length: 2");
        expect_err(&buf, 400, "conflicting Content-Length headers", Some(7));
    }

    #[test]
    fn rejected_big_and_binary_inputs() {
        let mib = "a".repeat(1 << 20);
        let many: String = (0..10_000).map(|i| format!("X-{i:04}: b\r\n")).collect();
        let cases: [(Vec<u8>, u16, &str); 9] = [
            (
                format!("OPTIONS rtsp://h/{mib}").into(),
                414,
                "Request-URI too long",
            ),
            (mib.clone().into(), 400, "method too long"),
            (
                opts(&format!("{} * RTSP/1.0", "M".repeat(64))),
                400,
                "method too long",
            ),
            (
                opts(&format!("{} * RTSP/1.0", "M".repeat(10 << 10))),
                400,
                "method too long",
            ),
            (
                format!("OPTIONS * RTSP/1.0{mib}").into(),
                400,
                "request line too long",
            ),
            (
                format!("OPTIONS * RTSP/1.0\r\n{many}\r\n").into(),
                400,
                "too many headers",
            ),
            (
                b"OPTIONS * RTSP/1.0\rCSeq: 1\r\n\r\n".to_vec(),
                400,
                "CR without LF",
            ),
            (
                b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n".to_vec(),
                400,
                "invalid character in method",
            ),
            (
                b"OPTIONS /\xff\xfe RTSP/1.0\r\n\r\n".to_vec(),
                400,
                "Request-URI is not UTF-8",
            ),
        ];
        for (buf, status, kind) in cases {
            expect_err(&buf, status, kind, None);
        }
        let buf = b"OPTIONS * RTSP/1.0\r\nCSeq: 7\r\nX-A: \xff\xfe\r\n\r\n";
        expect_err(buf, 400, "header value is not UTF-8", Some(7));
        // Two CSeq headers: no CSeq to echo.
        let buf = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\nX\r\n\r\n";
        expect_err(buf, 400, "header without colon", None);
    }

    #[test]
    fn caps_are_decided_without_waiting() {
        let cases: [(String, u16, &str); 5] = [
            (
                format!("OPTIONS /{}", "a".repeat(L.max_uri)),
                414,
                "Request-URI too long",
            ),
            ("M".repeat(MAX_METHOD + 1), 400, "method too long"),
            (
                format!("OPTIONS * {}", "v".repeat(L.max_request_line - 9)),
                400,
                "request line too long",
            ),
            (
                format!(
                    "OPTIONS * RTSP/1.0\r\nX: {}",
                    "v".repeat(L.max_header_line - 2)
                ),
                400,
                "header line too long",
            ),
            (
                "\r\n".repeat(L.max_head / 2 + 1),
                400,
                "too many empty lines",
            ),
        ];
        for (buf, status, kind) in cases {
            // The buffer is one byte past the cap and has no line end.
            let e = parse(buf.as_bytes(), &L).unwrap_err();
            assert_eq!((e.status.0, e.kind), (status, kind));
            let shorter = parse(&buf.as_bytes()[..buf.len() - 1], &L);
            assert_eq!(shorter, Ok(Parsed::Incomplete), "{kind}");
        }
        // A head made of many legal lines is capped at max_head.
        let head: String = (0..200)
            .map(|i| format!("X-{i:03}: {:100}\r\n", 1))
            .collect();
        let buf = format!("OPTIONS * RTSP/1.0\r\n{head}");
        let e = parse(buf.as_bytes(), &L).unwrap_err();
        assert_eq!(
            (e.status.0, e.kind, e.pos),
            (400, "head too long", L.max_head)
        );
        // With a URL cap above the line cap, a long URL gets 400, not 414.
        let wide = Limits { max_uri: 8192, ..L };
        let buf = format!("OPTIONS rtsp://h/{}", "a".repeat(5000));
        let e = parse(buf.as_bytes(), &wide).unwrap_err();
        assert_eq!((e.status.0, e.kind), (400, "request line too long"));
    }

    #[test]
    fn incomplete_inputs() {
        for buf in [
            &b""[..],
            b"\r",
            b"\r\n\r\n\n\r",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n",
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 10\r\n\r\nabcd",
            b"$",
            b"$\x00\xff\xff0123456789",
        ] {
            assert_eq!(parse(buf, &L), Ok(Parsed::Incomplete), "{buf:?}");
        }
    }

    #[test]
    fn interleaved_frames() {
        let cases: [(&[u8], u8, &[u8], usize); 4] = [
            (b"$\x00\x00\x04abcd", 0, b"abcd", 8),
            (b"$\x01\x00\x00", 1, b"", 4),
            (b"$\xc8\x00\x02xyOPTIONS * RTSP/1.0\r\n\r\n", 200, b"xy", 6),
            (b"\r\n$\x01\x00\x01z", 1, b"z", 7),
        ];
        for (buf, channel, payload, consumed) in cases {
            let payload = Bytes::from_static(payload);
            let want = Parsed::Interleaved {
                channel,
                payload,
                consumed,
            };
            assert_eq!(parse_split(buf), Ok(want), "{buf:?}");
        }
        let big = [&[b'$', 3, 0xff, 0xff][..], &[7; 0xffff]].concat();
        let got = parse_split(&big);
        assert!(matches!(
            got,
            Ok(Parsed::Interleaved {
                consumed: 0x10003,
                ..
            })
        ));
    }

    #[test]
    fn pipelined_options() {
        let all: String = (1..=500)
            .map(|i| format!("OPTIONS * RTSP/1.0\r\nCSeq: {i}\r\n\r\n"))
            .collect();
        let mut buf = all.as_bytes();
        for i in 1..=500 {
            let Ok(Parsed::Request { request, consumed }) = parse(buf, &L) else {
                panic!("request {i}");
            };
            assert_eq!(request.cseq(), Some(i));
            buf = &buf[consumed..];
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn real_requests_at_every_split() {
        let ffmpeg = "SETUP rtsp://127.0.0.1:8554/clip/trackID=0 RTSP/1.0\r\n\
            Transport: RTP/AVP/UDP;unicast;client_port=5000-5001\r\n\
            CSeq: 3\r\n\
            User-Agent: Lavf61.7.100\r\n\r\n";
        let gst = "PLAY rtsp://127.0.0.1:8554/clip/ RTSP/1.0\r\n\
            CSeq: 5\r\n\
            User-Agent: GStreamer/1.24.2\r\n\
            User-Agent:   second  \r\n\
            Range: npt=0-\r\n\
            Session: 5C1B3F2A\r\n\
            Date: Wed, 01 Jan 2025 00:00:00 GMT\r\n\r\n";
        let set = "SET_PARAMETER rtsp://127.0.0.1:8554/clip/ RTSP/1.0\r\n\
            CSeq: 9\r\nSession: 5C1B3F2A\r\nContent-Type: text/parameters\r\n\
            Content-Length: 12\r\n\r\nvolume: 0.5\n";
        let cases = [
            (ffmpeg, Method::Setup, 3, 3, ""),
            (gst, Method::Play, 5, 6, ""),
            (set, Method::SetParameter, 9, 4, "volume: 0.5\n"),
        ];
        for (text, method, cseq, headers, body) in cases {
            // Alone, and followed by the start of a pipelined request.
            for buf in [text.to_owned(), format!("{text}OPTIONS * RTSP/1.0\r\n")] {
                let (req, consumed) = request_of(buf.as_bytes());
                assert_eq!(
                    (consumed, req.cseq(), req.headers.len()),
                    (text.len(), Some(cseq), headers)
                );
                assert_eq!((&req.method, &req.body[..]), (&method, body.as_bytes()));
            }
        }
        let (req, _) = request_of(gst.as_bytes());
        let agents: Vec<_> = req.headers.get_all("user-agent").collect();
        assert_eq!(agents, ["GStreamer/1.24.2", "second"]);
        let (req, _) = request_of(ffmpeg.as_bytes());
        let transport = "RTP/AVP/UDP;unicast;client_port=5000-5001";
        assert_eq!(req.headers.get("Transport"), Some(transport));
    }

    /// Random edits of real requests, under the default and tiny limits: a
    /// prefix never disagrees with the whole buffer.
    #[test]
    fn mutations_give_the_same_result_at_every_split() {
        let base = "\r\nSET_PARAMETER rtsp://h/a RTSP/1.0\r\nCSeq: 9\r\n\
            Transport: RTP/AVP;unicast\r\nContent-Length: 4\r\n\r\nabcd$\x00\x00\x01z";
        let tiny = Limits {
            max_request_line: 40,
            max_uri: 12,
            max_headers: 2,
            max_header_line: 30,
            max_head: 90,
            max_body: 3,
        };
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut buf = base.as_bytes().to_vec();
            for _ in 0..1 + rand(3) {
                let at = rand(buf.len());
                match rand(3) {
                    0 => _ = buf.remove(at),
                    1 => buf.insert(at, b"\r\n :\0\xff$\t"[rand(8)]),
                    _ => buf[at] = b"\r\n :\0\xffa1"[rand(8)],
                }
            }
            for limits in [L, tiny] {
                let full = parse(&buf, &limits);
                for n in 0..buf.len() {
                    match parse(&buf[..n], &limits) {
                        Ok(Parsed::Incomplete) => {}
                        other => assert_eq!(other, full, "{buf:?} at {n}"),
                    }
                }
            }
        }
    }

    #[test]
    fn errors_carry_position() {
        let e = parse(b" OPTIONS * RTSP/1.0\r\n\r\n", &L).unwrap_err();
        assert_eq!(e.pos, 0);
        let e = parse(b"\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\nX\0: v\r\n\r\n", &L).unwrap_err();
        assert_eq!((e.pos, e.cseq), (32, Some(2)));
        assert_eq!(e.to_string(), "invalid header name at byte 32");
        assert_eq!(L, Limits::default());
    }

    #[test]
    fn responses_at_every_split() {
        let buf = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nv=0\
$\x01\x00\x02ab";
        let Ok(ParsedResponse::Response { response, consumed }) = parse_response(buf, &L) else {
            panic!("a response");
        };
        assert_eq!((response.status, consumed), (StatusCode::OK, 50));
        assert_eq!(
            (response.headers.cseq(), &response.body[..]),
            (Some(2), &b"v=0"[..])
        );
        let frame = parse_response(&buf[consumed..], &L).unwrap();
        assert_eq!(
            frame,
            ParsedResponse::Interleaved {
                channel: 1,
                payload: Bytes::from_static(b"ab"),
                consumed: 6
            }
        );
        for n in 0..consumed {
            assert_eq!(
                parse_response(&buf[..n], &L),
                Ok(ParsedResponse::Incomplete),
                "{n}"
            );
        }
    }

    #[test]
    fn bad_status_lines() {
        for line in [
            "HTTP/1.1 200 OK",
            "RTSP/1.0 2000 OK",
            "RTSP/1.0 99 Low",
            "RTSP/1.0 abc Nope",
            "OPTIONS * RTSP/1.0",
        ] {
            let buf = format!("{line}\r\nCSeq: 1\r\n\r\n");
            assert!(parse_response(buf.as_bytes(), &L).is_err(), "{line}");
        }
        let ok = parse_response(b"RTSP/1.0 454\r\n\r\n", &L).unwrap();
        assert!(
            matches!(ok, ParsedResponse::Response { response, .. } if response.status.0 == 454)
        );
    }

    #[test]
    fn digits_helper() {
        assert_eq!(digits::<u16>("05000"), Some(5000));
        for bad in ["", "+1", "-1", " 1", "65536", "1a"] {
            assert_eq!(digits::<u16>(bad), None, "{bad:?}");
        }
    }
}
