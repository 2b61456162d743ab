//! The test suite's one raw RTSP client, strict about every response it
//! reads (ROBUSTNESS.md I7): a well-formed status line and headers with CRLF
//! line ends and no bare CR, LF or NUL, exactly one correct
//! `Content-Length`, the request's CSeq echoed (digits only), and no text
//! that a request tried to inject ([`MARKER`]).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An injection marker: no response may ever contain it.
pub const MARKER: &str = "x-injected";

/// How long [`Rtsp::reply`] waits for a response.
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// A parsed RTSP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The status line's reason phrase.
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The whole response as it arrived.
    pub raw: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every header called `name` (any case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The session id of the Session header.
    pub fn session(&self) -> String {
        let v = self
            .header("Session")
            .unwrap_or_else(|| panic!("no Session in {self}"));
        v.split(';').next().unwrap_or_default().to_owned()
    }

    /// A parameter of the Transport header, e.g. `ssrc` or `client_port`.
    pub fn transport_param(&self, name: &str) -> Option<String> {
        self.header("Transport")?
            .split(';')
            .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    }

    /// The Transport header's `ssrc`.
    pub fn ssrc(&self) -> u32 {
        let v = self
            .transport_param("ssrc")
            .unwrap_or_else(|| panic!("no ssrc in {self}"));
        u32::from_str_radix(&v, 16).unwrap_or_else(|_| panic!("bad ssrc in {self}"))
    }

    /// `(seq, rtptime)` of each RTP-Info entry.
    pub fn rtp_info(&self) -> Vec<(u16, u32)> {
        let v = self
            .header("RTP-Info")
            .unwrap_or_else(|| panic!("no RTP-Info in {self}"));
        v.split(',')
            .map(|e| {
                let field = |k: &str| -> String {
                    e.split(';')
                        .find_map(|p| p.trim().strip_prefix(k))
                        .unwrap_or_else(|| panic!("{k} in {e}"))
                        .to_owned()
                };
                (
                    field("seq=").parse().expect("seq"),
                    field("rtptime=").parse().expect("rtptime"),
                )
            })
            .collect()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response's status line and headers.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

/// Parses a response head (without the blank line) strictly.
fn parse_head(head: &[u8]) -> Result<Head, String> {
    if head.contains(&0) {
        return Err("NUL in the response head".into());
    }
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line.strip_prefix("RTSP/1.0 ");
    let status = rest
        .and_then(|r| r.get(..3).filter(|_| r.as_bytes().get(3) == Some(&b' ')))
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = rest.and_then(|r| r.get(4..)).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines {
        if line.contains(['\r', '\n']) {
            return Err(format!("bare CR or LF in header line {line:?}"));
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without colon {line:?}"))?;
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if n.is_empty() || !n.bytes().all(token) {
            return Err(format!("bad header name {n:?}"));
        }
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

/// What the start of `buf` holds.
enum Parsed {
    /// A whole response, `len` bytes long.
    Reply { reply: Reply, len: usize },
    /// A whole head, and not yet all of its body.
    Head,
    /// Not yet a whole head.
    Partial,
}

/// Parses the response at the start of `buf`, checking its framing and
/// Content-Length.
fn parse_reply(buf: &[u8]) -> Result<Parsed, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(Parsed::Partial);
    };
    let Head {
        status,
        reason,
        headers,
    } = parse_head(&buf[..end])?;
    let lens: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.as_str())
        .collect();
    let len: usize = match lens[..] {
        [v] if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() => {
            v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?
        }
        _ => return Err(format!("Content-Length headers {lens:?}")),
    };
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(Parsed::Head);
    }
    let raw = buf[..total].to_vec();
    Ok(Parsed::Reply {
        reply: Reply {
            status,
            reason,
            headers,
            body: raw[end + 4..].to_vec(),
            raw,
        },
        len: total,
    })
}

/// Every whole response in `bytes` (one side of a recorded connection,
/// which may end inside a response still arriving), each checked as
/// [`Rtsp::read_response`] checks it.
pub fn parse_replies(mut bytes: &[u8]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    while let Parsed::Reply { reply, len } = parse_reply(bytes)? {
        out.push(reply);
        bytes = &bytes[len..];
    }
    Ok(out)
}

/// I7 on one response: CSeq echo (digits only, once), no injected text.
pub fn check_i7(r: &Reply, req_cseq: Option<u32>, require_echo: bool) -> Result<(), String> {
    let cseqs = r.all("CSeq");
    if cseqs.len() > 1 {
        return Err(format!("{} CSeq headers in {r}", cseqs.len()));
    }
    match (cseqs.first(), req_cseq) {
        (Some(v), _) if !v.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("unsanitised CSeq {v:?}"));
        }
        (Some(v), Some(c)) if !v.is_empty() && *v != c.to_string() => {
            return Err(format!("CSeq {v:?} echoed for request CSeq {c}"));
        }
        (None, Some(c)) if require_echo => {
            return Err(format!("CSeq {c} not echoed in {r}"));
        }
        _ => {}
    }
    if String::from_utf8_lossy(&r.raw)
        .to_ascii_lowercase()
        .contains(MARKER)
    {
        return Err(format!("injected text echoed: {r}"));
    }
    Ok(())
}

/// `METHOD url RTSP/1.0`, CSeq, headers, Content-Length when there is a body.
pub fn build(method: &str, url: &str, cseq: u32, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    req
}

/// A blocking TCP connection to `addr` from the local address `ip`.
pub fn tcp_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let s = rt().block_on(async {
        let sock = tokio::net::TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from((ip, 0)))?;
        let s = sock.connect(addr).await?.into_std()?;
        s.set_nonblocking(false)?;
        io::Result::Ok(s)
    });
    s.expect("connect from another address")
}

/// A small runtime for the socket options std lacks (binding before
/// connecting, SO_LINGER 0).
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("tokio runtime")
    })
}

/// The outcome of one read attempt.
enum Fill {
    Data,
    Eof,
    Timeout,
}

/// A raw RTSP control connection that checks every response (I7).
pub struct Rtsp {
    s: TcpStream,
    /// Bytes read and not yet consumed as a response.
    pending: Vec<u8>,
    cseq: u32,
    buf: Vec<u8>,
}

impl Rtsp {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::from_stream(TcpStream::connect(addr).expect("connect"))
    }

    /// Connects from another loopback address (e.g. 127.0.0.2).
    pub fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> Self {
        Self::from_stream(tcp_from(ip, addr))
    }

    fn from_stream(s: TcpStream) -> Self {
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        Self {
            s,
            pending: Vec::new(),
            cseq: 0,
            buf: vec![0; 64 * 1024],
        }
    }

    /// The connection's socket.
    pub fn stream(&self) -> &TcpStream {
        &self.s
    }

    /// Bytes read past the last response.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The socket and the bytes read past the last response, for a test
    /// that reads what follows (interleaved frames) itself.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.s, self.pending)
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Half-closes the connection: no more bytes from this side.
    pub fn shutdown_write(&self) {
        let _ = self.s.shutdown(Shutdown::Write);
    }

    /// Drops the connection with a RST instead of a FIN.
    pub fn reset(self) {
        let _guard = rt().enter();
        let _ = self.s.set_nonblocking(true);
        if let Ok(s) = tokio::net::TcpStream::from_std(self.s) {
            let _ = s.set_zero_linger();
        }
    }

    fn fill(&mut self, deadline: Instant) -> Fill {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Fill::Timeout;
        };
        let _ = self
            .s
            .set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match self.s.read(&mut self.buf) {
            Ok(0) => Fill::Eof,
            Ok(n) => {
                self.pending.extend_from_slice(&self.buf[..n]);
                Fill::Data
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Fill::Timeout
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Fill::Data,
            // A reset is a close.
            Err(_) => Fill::Eof,
        }
    }

    /// Reads one whole response, checking its framing and Content-Length.
    pub fn read_response(&mut self, wait: Duration) -> Result<Reply, String> {
        let deadline = Instant::now() + wait;
        loop {
            let in_body = match parse_reply(&self.pending)? {
                Parsed::Reply { reply, len } => {
                    self.pending.drain(..len);
                    return Ok(reply);
                }
                Parsed::Head => true,
                Parsed::Partial if self.pending.len() > 64 * 1024 => {
                    return Err("response head over 64 KiB".into());
                }
                Parsed::Partial => false,
            };
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof if in_body => return Err("closed inside a response body".into()),
                Fill::Timeout if in_body => return Err("timed out inside a response body".into()),
                Fill::Eof => {
                    return Err(format!(
                        "closed without a response ({} bytes: {:?})",
                        self.pending.len(),
                        String::from_utf8_lossy(&self.pending)
                    ))
                }
                Fill::Timeout => return Err(format!("no response within {wait:?}")),
            }
        }
    }

    /// The server closes (FIN or RST) within `wait`, sending nothing more.
    pub fn expect_eof(&mut self, wait: Duration) -> Result<(), String> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.pending.is_empty() {
                return Err(format!(
                    "unexpected bytes instead of a close: {:?}",
                    String::from_utf8_lossy(&self.pending)
                ));
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Eof => return Ok(()),
                Fill::Timeout => return Err(format!("connection still open after {wait:?}")),
            }
        }
    }

    /// Writes one request with the next CSeq; returns the CSeq.
    pub fn send(&mut self, method: &str, url: &str, headers: &[&str], body: &[u8]) -> u32 {
        self.cseq += 1;
        let req = build(method, url, self.cseq, headers, body);
        self.write(&req).expect("write request");
        self.cseq
    }

    /// Reads the response to `cseq` and checks I7.
    pub fn reply(&mut self, cseq: u32) -> Result<Reply, String> {
        let r = self.read_response(REPLY_WAIT)?;
        check_i7(&r, Some(cseq), true)?;
        Ok(r)
    }

    /// One request and its response, with nothing after it.
    fn exchange(
        &mut self,
        method: &str,
        url: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Result<Reply, String> {
        let c = self.send(method, url, headers, body);
        let r = self.reply(c)?;
        if !self.pending.is_empty() {
            return Err(format!(
                "extra bytes after the response: {:?}",
                String::from_utf8_lossy(&self.pending)
            ));
        }
        Ok(r)
    }

    /// Sends `METHOD url` with the given extra header lines and a fresh
    /// CSeq, and reads the response.
    pub fn try_request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[&str],
    ) -> Result<Reply, String> {
        self.exchange(method, url, headers, b"")
    }

    /// [`Rtsp::try_request`], failing the test on a missing or malformed
    /// response.
    pub fn request(&mut self, method: &str, url: &str, headers: &[&str]) -> Reply {
        self.request_with_body(method, url, headers, b"")
    }

    /// [`Rtsp::request`] with a body (its Content-Length added).
    pub fn request_with_body(
        &mut self,
        method: &str,
        url: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Reply {
        self.exchange(method, url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url} {headers:?}: {e}"))
    }
}
