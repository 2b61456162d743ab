//! Streaming request parser (RFC 2326 §4, §6, §10.12 interleaved frames).
//!
//! A [`RequestParser`] looks at the start of a connection's input buffer and
//! reports a whole request or `$` frame with the bytes it occupies, asks for
//! more bytes, or rejects the input with the status to answer. Between calls
//! it keeps how far it has looked: the line being scanned, what the checks
//! made on it so far found, and where the header lines already checked are.
//! A request that arrives in many small reads therefore costs time linear in
//! its length (each byte is looked at a bounded number of times, counted by
//! [`RequestParser::examined`]), and nothing is allocated before the message
//! is whole. [`parse`] is the same parser without memory, for one-shot uses.
//!
//! Every decision depends only on the bytes before the point where it is made,
//! so the same stream split anywhere gives the same result (the property of
//! retina's `roundtrip_rtsp_message` fuzz target), and every cap in [`Limits`]
//! is enforced as soon as it is exceeded, so one request never holds more
//! than `max_head + max_body` bytes of the caller's buffer.

use std::mem;
use std::str::{self, FromStr};

use bytes::Bytes;

use super::{Headers, Request, Response, StatusCode};
use crate::proto::limit::Limit;

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
    /// Offset in the buffer given to the parser where the problem was found.
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

    /// The server limit this error is a refusal at, if any: a head, a body
    /// or a header count over its cap. The server logs those (rate-limited)
    /// so that an operator can tell which option to raise.
    pub fn limit(&self) -> Option<Limit> {
        match self.kind {
            HEAD_TOO_LONG | TOO_MANY_EMPTY_LINES => Some(Limit::MaxHeadBytes),
            TOO_MANY_HEADERS => Some(Limit::MaxHeaders),
            BODY_TOO_LARGE => Some(Limit::MaxBodyBytes),
            _ => None,
        }
    }

    fn at(self, offset: usize) -> Self {
        Self {
            pos: self.pos + offset,
            ..self
        }
    }
}

const HEAD_TOO_LONG: &str = "head too long";
const TOO_MANY_EMPTY_LINES: &str = "too many empty lines";
const TOO_MANY_HEADERS: &str = "too many headers";
const BODY_TOO_LARGE: &str = "body too large";

fn bad(pos: usize, kind: &'static str) -> ParseError {
    ParseError::new(StatusCode::BAD_REQUEST, pos, kind)
}

/// Longest method token accepted.
const MAX_METHOD: usize = 32;

/// Parses one message from the start of `buf`, remembering nothing: the
/// same as a fresh [`RequestParser`].
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    RequestParser::new(*limits).parse(buf)
}

/// One connection's request parser. It gives the results of [`parse`], but
/// resumes where the previous call stopped instead of starting over.
#[derive(Debug, Clone)]
pub struct RequestParser(Scanner<RequestLine>);

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        Self(Scanner::new(limits))
    }

    /// Parses one message from the start of `buf`.
    ///
    /// `buf` must hold what the previous call was given, with bytes
    /// appended. After a message or an error the parser starts afresh: the
    /// caller removes the `consumed` bytes (or closes the connection). A
    /// buffer shorter than the previous one also starts afresh.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ParseError> {
        Ok(match self.0.feed(buf)? {
            None => Parsed::Incomplete,
            Some(Found::Interleaved {
                channel,
                payload,
                consumed,
            }) => Parsed::Interleaved {
                channel,
                payload,
                consumed,
            },
            Some(Found::Message {
                start,
                first,
                headers,
                body,
                consumed,
            }) => {
                let line = buf.get(start..).unwrap_or_default();
                let part = |(a, b): (usize, usize)| {
                    String::from_utf8_lossy(line.get(a..b).unwrap_or_default())
                };
                let Ok(method) = part((0, first.method)).parse();
                Parsed::Request {
                    request: Request {
                        method,
                        uri: part(first.uri).into_owned(),
                        headers,
                        body,
                    },
                    consumed,
                }
            }
        })
    }

    /// Drops any partial message: the next call parses from byte 0.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Bytes looked at since the parser was made, counting each pass over
    /// a byte once (the per-byte scan, the check of a finished request line,
    /// the collection of the header fields): the cost model the tests bound.
    pub fn examined(&self) -> u64 {
        self.0.examined
    }
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
/// keepalives from some servers) is an error here. Stateless: the load
/// tester reads whole responses in few reads.
pub fn parse_response(buf: &[u8], limits: &Limits) -> Result<ParsedResponse, ParseError> {
    Ok(match Scanner::<StatusLine>::new(*limits).feed(buf)? {
        None => ParsedResponse::Incomplete,
        Some(Found::Interleaved {
            channel,
            payload,
            consumed,
        }) => ParsedResponse::Interleaved {
            channel,
            payload,
            consumed,
        },
        Some(Found::Message {
            first,
            headers,
            body,
            consumed,
            ..
        }) => ParsedResponse::Response {
            response: Response {
                status: first,
                reason: None,
                headers,
                body,
            },
            consumed,
        },
    })
}

/// The first line of a message, checked as it arrives and when it ends.
trait StartLine {
    /// What the checks made before the line ends remember.
    type Scan: Copy + Default + std::fmt::Debug;
    /// What a whole line gives: offsets into it, nothing allocated.
    type Value: Clone + std::fmt::Debug;
    const TOO_LONG: &'static str;
    /// Checks byte `b` at offset `i` of a line not ended yet; errors are
    /// relative to the line start.
    fn check(scan: &mut Self::Scan, i: usize, b: u8, limits: &Limits) -> Result<(), ParseError>;
    /// Checks a whole line (CRLF excluded).
    fn complete(c: &[u8], limits: &Limits) -> Result<Self::Value, ParseError>;
}

/// `Method SP Request-URI SP RTSP-Version` (§6.1).
#[derive(Debug, Clone)]
struct RequestLine;

/// Where a request line is in its checks.
#[derive(Debug, Clone, Copy, Default)]
enum RequestScan {
    #[default]
    Method,
    /// The URI starts at this offset.
    Uri(usize),
    Version,
}

/// A whole request line: the method's length and the URI's span.
#[derive(Debug, Clone, Copy)]
struct RequestParts {
    method: usize,
    uri: (usize, usize),
}

impl StartLine for RequestLine {
    type Scan = RequestScan;
    type Value = RequestParts;
    const TOO_LONG: &'static str = "request line too long";

    fn check(scan: &mut RequestScan, i: usize, b: u8, limits: &Limits) -> Result<(), ParseError> {
        match *scan {
            RequestScan::Method if is_tchar(b) => {
                if i >= MAX_METHOD {
                    return Err(bad(MAX_METHOD, "method too long"));
                }
            }
            RequestScan::Method if b == b' ' && i > 0 => *scan = RequestScan::Uri(i + 1),
            RequestScan::Method if i == 0 => {
                return Err(bad(0, "request line does not start with a method"))
            }
            RequestScan::Method => return Err(bad(i, "invalid character in method")),
            RequestScan::Uri(u) if b == b' ' => {
                if i == u {
                    return Err(bad(u, "empty Request-URI"));
                }
                *scan = RequestScan::Version;
            }
            RequestScan::Uri(u) if i - u >= limits.max_uri => {
                return Err(uri_too_long(u, limits));
            }
            RequestScan::Uri(_) if b < 0x20 || b == 0x7f => {
                return Err(bad(i, "control character in Request-URI"));
            }
            RequestScan::Uri(_) | RequestScan::Version => {}
        }
        Ok(())
    }

    fn complete(c: &[u8], limits: &Limits) -> Result<RequestParts, ParseError> {
        request_line(c, limits)
    }
}

/// `RTSP-Version SP Status-Code SP Reason-Phrase` (§7.1).
#[derive(Debug, Clone)]
struct StatusLine;

impl StartLine for StatusLine {
    type Scan = ();
    type Value = StatusCode;
    const TOO_LONG: &'static str = "status line too long";

    fn check(_: &mut (), i: usize, b: u8, _: &Limits) -> Result<(), ParseError> {
        match STATUS_VERSION.get(i) {
            Some(&want) if b != want => Err(bad(0, "not an RTSP/1.0 status line")),
            _ => Ok(()),
        }
    }

    fn complete(c: &[u8], _: &Limits) -> Result<StatusCode, ParseError> {
        status_line(c)
    }
}

/// A header line's checks: the name until the colon, then the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldScan {
    Name,
    Value,
}

impl FieldScan {
    /// `field-name ":" field-value` (§4.2), one byte before the line ends.
    fn check(&mut self, i: usize, b: u8) -> Result<(), ParseError> {
        match self {
            Self::Name if is_tchar(b) => Ok(()),
            Self::Name if b == b':' && i > 0 => {
                *self = Self::Value;
                Ok(())
            }
            Self::Name if i == 0 && matches!(b, b' ' | b'\t') => {
                Err(bad(0, "obsolete header line folding"))
            }
            Self::Name => Err(bad(i, "invalid header name")),
            Self::Value if (b < 0x20 && b != b'\t') || b == 0x7f => {
                Err(bad(i, "control character in header value"))
            }
            Self::Value => Ok(()),
        }
    }
}

/// A line being scanned: its start, the next byte to look at and its cap.
#[derive(Debug, Clone, Copy)]
struct Line {
    from: usize,
    at: usize,
    /// Longest content (CRLF excluded) and the error for one byte more.
    max: usize,
    too_long: &'static str,
    /// No byte above 0x7f so far: the line is UTF-8 without a check.
    ascii: bool,
}

impl Line {
    fn new(from: usize, (max, too_long): (usize, &'static str)) -> Self {
        Self {
            from,
            at: from,
            max,
            too_long,
            ascii: true,
        }
    }

    /// Looks at the bytes of the line not seen yet, handing each to `check`
    /// (errors relative to the line start). Returns the end of the content
    /// and the start of the next line once the line ends (CRLF or bare LF).
    /// One byte past the cap decides "too long" without waiting for more,
    /// after `check` has seen it.
    fn scan(
        &mut self,
        buf: &[u8],
        examined: &mut u64,
        mut check: impl FnMut(usize, u8) -> Result<(), ParseError>,
    ) -> Result<Option<(usize, usize)>, ParseError> {
        while let Some(&b) = buf.get(self.at) {
            *examined += 1;
            match b {
                b'\n' => return Ok(Some((self.at, self.at + 1))),
                // A CR is looked at again once the next byte is there.
                b'\r' => {
                    return match buf.get(self.at + 1) {
                        None => Ok(None),
                        Some(b'\n') => Ok(Some((self.at, self.at + 2))),
                        Some(_) => Err(bad(self.at, "CR without LF")),
                    }
                }
                _ => {
                    let i = self.at - self.from;
                    check(i, b).map_err(|e| e.at(self.from))?;
                    if i >= self.max {
                        return Err(bad(self.at, self.too_long));
                    }
                    self.ascii &= b.is_ascii();
                    self.at += 1;
                }
            }
        }
        Ok(None)
    }
}

/// The resumable core shared by requests and responses.
#[derive(Debug, Clone)]
struct Scanner<K: StartLine> {
    limits: Limits,
    state: State<K>,
    /// Length of the buffer last given; a shorter one starts over.
    seen: usize,
    examined: u64,
}

#[derive(Debug, Clone)]
enum State<K: StartLine> {
    /// Before a message, `pos` bytes of empty lines in.
    Idle { pos: usize },
    /// In the start line.
    Start { line: Line, scan: K::Scan },
    /// In the header lines after the start line at `start` (which gave
    /// `first`): `count` of them, from `fields`, are checked and whole.
    Fields {
        start: usize,
        first: K::Value,
        fields: usize,
        count: usize,
        line: Line,
        scan: FieldScan,
    },
    /// The head is whole; the body is `len` bytes from `body`.
    Body {
        start: usize,
        first: K::Value,
        headers: Headers,
        body: usize,
        len: usize,
    },
}

/// A whole message or frame, with the start line still as offsets.
enum Found<V> {
    Interleaved {
        channel: u8,
        payload: Bytes,
        consumed: usize,
    },
    Message {
        /// Where the start line begins (after leading empty lines).
        start: usize,
        first: V,
        headers: Headers,
        body: Bytes,
        consumed: usize,
    },
}

impl<K: StartLine> Scanner<K> {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Idle { pos: 0 },
            seen: 0,
            examined: 0,
        }
    }

    fn reset(&mut self) {
        self.state = State::Idle { pos: 0 };
        self.seen = 0;
    }

    fn feed(&mut self, buf: &[u8]) -> Result<Option<Found<K::Value>>, ParseError> {
        if buf.len() < self.seen {
            self.reset();
        }
        self.seen = buf.len();
        let found = self.step(buf);
        if !matches!(found, Ok(None)) {
            self.reset();
        }
        found
    }

    /// Moves through the states as far as `buf` allows.
    fn step(&mut self, buf: &[u8]) -> Result<Option<Found<K::Value>>, ParseError> {
        let limits = self.limits;
        loop {
            match &mut self.state {
                State::Idle { pos } => {
                    loop {
                        let n = match buf.get(*pos..).unwrap_or_default() {
                            [b'\n', ..] => 1,
                            [b'\r', b'\n', ..] => 2,
                            // A lone trailing CR may become an empty line: wait.
                            [b'\r'] => return Ok(None),
                            _ => break,
                        };
                        *pos += n;
                        self.examined += n as u64;
                        if *pos > limits.max_head {
                            return Err(bad(*pos, TOO_MANY_EMPTY_LINES));
                        }
                    }
                    let start = *pos;
                    match buf.get(start) {
                        None => return Ok(None),
                        Some(b'$') => return Ok(interleaved(buf, start)),
                        Some(_) => {
                            let cap = (limits.max_request_line, K::TOO_LONG);
                            self.state = State::Start {
                                line: Line::new(start, cap),
                                scan: K::Scan::default(),
                            };
                        }
                    }
                }
                State::Start { line, scan } => {
                    let check = |i, b| K::check(scan, i, b, &limits);
                    let Some((end, next)) = line.scan(buf, &mut self.examined, check)? else {
                        return Ok(None);
                    };
                    let start = line.from;
                    let content = &buf[start..end];
                    self.examined += content.len() as u64;
                    let first = K::complete(content, &limits).map_err(|e| e.at(start))?;
                    self.state = State::Fields {
                        start,
                        first,
                        fields: next,
                        count: 0,
                        line: field_line(&limits, start, next),
                        scan: FieldScan::Name,
                    };
                }
                State::Fields {
                    start,
                    first,
                    fields,
                    count,
                    line,
                    scan,
                } => {
                    let done = &buf[*fields..line.from];
                    let with_cseq = |e: ParseError| ParseError {
                        cseq: collect_fields(done).cseq(),
                        ..e
                    };
                    if *count >= limits.max_headers
                        && buf
                            .get(line.from)
                            .is_some_and(|b| !matches!(b, b'\r' | b'\n'))
                    {
                        return Err(with_cseq(bad(line.from, TOO_MANY_HEADERS)));
                    }
                    let check = |i, b| scan.check(i, b);
                    let Some((end, next)) = line
                        .scan(buf, &mut self.examined, check)
                        .map_err(with_cseq)?
                    else {
                        return Ok(None);
                    };
                    match scan {
                        FieldScan::Name if end > line.from => {
                            return Err(with_cseq(bad(end, "header without colon")));
                        }
                        FieldScan::Name => {
                            // The blank line: the head is whole.
                            if next - *start > limits.max_head {
                                return Err(with_cseq(bad(
                                    *start + limits.max_head,
                                    HEAD_TOO_LONG,
                                )));
                            }
                            self.examined += done.len() as u64;
                            let headers = collect_fields(done);
                            let len =
                                content_length(&headers, &limits).map_err(|e| ParseError {
                                    cseq: headers.cseq(),
                                    ..e.at(next)
                                })?;
                            self.state = State::Body {
                                start: *start,
                                first: first.clone(),
                                headers,
                                body: next,
                                len,
                            };
                        }
                        FieldScan::Value => {
                            if !line.ascii {
                                str::from_utf8(&buf[line.from..end]).map_err(|e| {
                                    with_cseq(
                                        bad(e.valid_up_to(), "header value is not UTF-8")
                                            .at(line.from),
                                    )
                                })?;
                            }
                            *count += 1;
                            *line = field_line(&limits, *start, next);
                            *scan = FieldScan::Name;
                        }
                    }
                }
                State::Body {
                    start,
                    first,
                    headers,
                    body,
                    len,
                } => {
                    let end = *body + *len;
                    let Some(bytes) = buf.get(*body..end) else {
                        return Ok(None);
                    };
                    return Ok(Some(Found::Message {
                        start: *start,
                        first: first.clone(),
                        headers: mem::take(headers),
                        body: Bytes::copy_from_slice(bytes),
                        consumed: end,
                    }));
                }
            }
        }
    }
}

/// The cap of the header line starting at `from` in a head that started at
/// `start`: the line cap, or what is left of the head cap when that is less.
fn field_line(limits: &Limits, start: usize, from: usize) -> Line {
    let room = limits.max_head.saturating_sub(from - start);
    let cap = if room < limits.max_header_line {
        (room, HEAD_TOO_LONG)
    } else {
        (limits.max_header_line, "header line too long")
    };
    Line::new(from, cap)
}

/// The fields of header lines already checked: each ends with LF or CRLF
/// and has a colon after a token. Values lose surrounding blanks.
fn collect_fields(lines: &[u8]) -> Headers {
    let mut headers = Headers::new();
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            headers.push(
                String::from_utf8_lossy(&line[..colon]),
                value.trim_matches([' ', '\t']),
            );
        }
    }
    headers
}

/// `$`, channel, 16-bit big-endian length, payload; `None` until the whole
/// frame is there.
fn interleaved<V>(buf: &[u8], start: usize) -> Option<Found<V>> {
    let &[_, channel, hi, lo] = buf.get(start..start + 4)? else {
        return None;
    };
    let end = start + 4 + usize::from(u16::from_be_bytes([hi, lo]));
    let payload = buf.get(start + 4..end)?;
    Some(Found::Interleaved {
        channel,
        payload: Bytes::copy_from_slice(payload),
        consumed: end,
    })
}

const STATUS_VERSION: &[u8] = b"RTSP/1.0 ";

/// A whole status line (§7.1).
fn status_line(c: &[u8]) -> Result<StatusCode, ParseError> {
    let n = c.len().min(STATUS_VERSION.len());
    if c[..n] != STATUS_VERSION[..n] {
        return Err(bad(0, "not an RTSP/1.0 status line"));
    }
    let v = STATUS_VERSION.len();
    let code = c
        .get(v..v + 3)
        .and_then(|d| str::from_utf8(d).ok())
        .and_then(digits::<u16>)
        .filter(|n| (100..600).contains(n))
        .ok_or_else(|| bad(v, "invalid status code"))?;
    match c.get(v + 3) {
        None | Some(b' ') => Ok(StatusCode(code)),
        Some(_) => Err(bad(v + 3, "invalid status code")),
    }
}

fn uri_too_long(u: usize, limits: &Limits) -> ParseError {
    ParseError::new(
        StatusCode::REQUEST_URI_TOO_LARGE,
        u + limits.max_uri,
        "Request-URI too long",
    )
}

/// A whole request line (§6.1), after [`RequestLine::check`] passed every
/// byte: the checks that need the line end, then all again (cheap, and the
/// order of errors stays that of one pass over the line).
fn request_line(c: &[u8], limits: &Limits) -> Result<RequestParts, ParseError> {
    let m = c
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|&&b| is_tchar(b))
        .count();
    match c.get(m) {
        _ if m > MAX_METHOD => return Err(bad(MAX_METHOD, "method too long")),
        Some(b' ') if m > 0 => {}
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
        return Err(uri_too_long(u, limits));
    }
    if uri_len == rest.len() {
        return Err(bad(c.len(), "no RTSP version"));
    }
    if uri_len == 0 {
        return Err(bad(u, "empty Request-URI"));
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
    // Method and version are ASCII, so any invalid byte is in the URI.
    str::from_utf8(c).map_err(|e| bad(e.valid_up_to(), "Request-URI is not UTF-8"))?;
    Ok(RequestParts {
        method: m,
        uri: (u, u + uri_len),
    })
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
        .ok_or_else(|| ParseError::new(StatusCode::REQUEST_ENTITY_TOO_LARGE, 0, BODY_TOO_LARGE))
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
    use crate::proto::rtsp::Method;

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
    fn refusals_at_a_server_limit_name_it() {
        let many: String = (0..=L.max_headers)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let cases = [
            ("\r\n".repeat(L.max_head / 2 + 1), Some(Limit::MaxHeadBytes)),
            (
                format!("OPTIONS * RTSP/1.0\r\n{many}\r\n"),
                Some(Limit::MaxHeaders),
            ),
            (
                "OPTIONS * RTSP/1.0\r\nContent-Length: 1000000\r\n\r\n".to_string(),
                Some(Limit::MaxBodyBytes),
            ),
            // Line caps are protocol sanity, not operator limits.
            (format!("OPTIONS /{}", "a".repeat(L.max_uri)), None),
            ("BAD\x01 * RTSP/1.0\r\n\r\n".to_string(), None),
        ];
        for (buf, limit) in cases {
            let e = parse(buf.as_bytes(), &L).unwrap_err();
            assert_eq!(e.limit(), limit, "{}", e.kind);
        }
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
        assert_eq!(e.limit(), Some(Limit::MaxHeadBytes));
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
                // One parser kept across reads of random sizes answers what
                // a fresh one does on the same bytes.
                let mut kept = RequestParser::new(limits);
                let mut next_read = 0;
                for n in 0..buf.len() {
                    let fresh = parse(&buf[..n], &limits);
                    match &fresh {
                        Ok(Parsed::Incomplete) => {}
                        other => assert_eq!(other, &full, "{buf:?} at {n}"),
                    }
                    if n == next_read {
                        // After a message or an error it starts afresh.
                        assert_eq!(kept.parse(&buf[..n]), fresh, "kept: {buf:?} at {n}");
                        next_read += 1 + rand(3) * rand(3);
                    }
                }
                assert_eq!(kept.parse(&buf), full, "kept: {buf:?}");
            }
        }
    }

    /// A valid OPTIONS head of exactly `size` bytes: padding header lines
    /// of 2,000 bytes at most (under the line cap).
    fn padded_head(size: usize) -> Vec<u8> {
        let mut head = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n".to_vec();
        let mut i = 0;
        while size - head.len() > 2 {
            let name = format!("X-Pad-{i}: ");
            let room = size - head.len() - 2 - name.len() - 2;
            head.extend(name.as_bytes());
            head.resize(head.len() + room.min(2000 - name.len()), b'p');
            head.extend(b"\r\n");
            i += 1;
        }
        head.extend(b"\r\n");
        assert_eq!(head.len(), size);
        head
    }

    /// Feeds `head` one byte per read to one parser kept across reads, and
    /// to a fresh parser per read (starting over from byte 0, as the
    /// connection did before issue 10): the bytes each examined in all.
    fn examined_one_byte_per_read(head: &[u8]) -> (u64, u64) {
        let mut kept = RequestParser::new(L);
        let mut restarting = 0;
        for n in 1..=head.len() {
            let got = kept.parse(&head[..n]);
            let mut fresh = RequestParser::new(L);
            assert_eq!(fresh.parse(&head[..n]), got, "at {n}");
            restarting += fresh.examined();
            if n < head.len() {
                assert_eq!(got, Ok(Parsed::Incomplete), "at {n}");
            } else {
                let consumed = head.len();
                assert!(matches!(got, Ok(Parsed::Request { consumed: c, .. }) if c == consumed));
            }
        }
        (kept.examined(), restarting)
    }

    /// Issue 10: the work of reading a trickled head is linear in its size.
    /// Each byte is examined about twice (the scan, then collecting the
    /// header fields once the head is whole); starting over on every read
    /// examines the whole prefix each time, about size / 2 times per byte.
    #[test]
    fn one_byte_reads_examine_each_byte_a_bounded_number_of_times() {
        for size in [512, 2048, 8192, 16384] {
            let head = padded_head(size);
            let (kept, restarting) = examined_one_byte_per_read(&head);
            let bound = 3 * size as u64;
            assert!(kept <= bound, "{size}-byte head: {kept} bytes examined");
            // The bound is one the quadratic way fails by far.
            assert!(
                restarting > 50 * bound,
                "{size}-byte head: {restarting} bytes examined when starting over"
            );
        }
    }

    #[test]
    fn kept_parser_resets_after_a_message_and_on_a_shorter_buffer() {
        let two = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n$\x01\x00\x01zOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n";
        let mut p = RequestParser::new(L);
        let mut buf = &two[..];
        let mut got = Vec::new();
        while !buf.is_empty() {
            // Every byte count from the message start, as reads would give.
            let (n, consumed) = (1..=buf.len())
                .find_map(|n| match p.parse(&buf[..n]).unwrap() {
                    Parsed::Incomplete => None,
                    Parsed::Request { request, consumed } => {
                        got.push(request.cseq());
                        Some((n, consumed))
                    }
                    Parsed::Interleaved { consumed, .. } => Some((n, consumed)),
                })
                .unwrap();
            assert_eq!(n, consumed);
            buf = &buf[consumed..];
        }
        assert_eq!(got, [Some(1), Some(2)]);
        // Half a head, then a different, shorter buffer: parsed afresh.
        assert_eq!(
            p.parse(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-A"),
            Ok(Parsed::Incomplete)
        );
        assert!(p.parse(b" OPTIONS").is_err());
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
