//! One RTSP/1.0 control connection of the load tester (RFC 2326 §6–§7,
//! §10.12): writes requests with a fresh CSeq, reads responses with
//! [`parse_response`], and hands every interleaved `$` frame that arrives on
//! the way to the caller. A 401 is answered once with Digest credentials
//! when the URL had some ([`super::auth`]), and they go on every later
//! request.
//!
//! A connection is generic over its stream ([`Stream`]): a plain
//! `TcpStream` for `rtsp://`, a TLS one on it for `rtsps://`
//! ([`super::tls`]), so the plain path is compiled as it was, without a
//! branch per read.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

use super::auth::ClientAuth;
use super::LoadError;
use crate::proto::rtsp::{parse_response, Limits, ParsedResponse, Response};

/// How long one request may wait for its response.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest read buffer a connection keeps (a response body over the parser's
/// limit is refused before this).
const READ_CHUNK: usize = 16 * 1024;

/// What a control connection runs on: a TCP stream, or one wrapped in
/// something (TLS) that still knows its TCP stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}

impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Opens a TCP connection to `addr`, from `source` (any port) when given.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> Result<TcpStream, LoadError> {
    let connect = async {
        let Some(ip) = source else {
            return TcpStream::connect(addr).await;
        };
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(ip, 0))?;
        socket.connect(addr).await
    };
    let stream = timeout(REPLY_TIMEOUT, connect)
        .await
        .map_err(|_| LoadError::Timeout("connect"))?
        .map_err(|e| LoadError::Connect(e.kind()))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A control connection.
pub(crate) struct Conn<S> {
    stream: S,
    buf: BytesMut,
    cseq: u32,
    limits: Limits,
    /// The `Session` header value to send, once SETUP gave one.
    pub(crate) session: Option<String>,
    auth: ClientAuth,
    /// A `Via` header for every request (RFC 2326 §12.43): an rtspd
    /// pulling a stream says so, and its origin never redirects it.
    via: Option<String>,
}

impl<S: Stream> Conn<S> {
    /// An RTSP connection on `stream`, connected (and through its
    /// handshake, if any).
    pub(crate) fn new(stream: S, auth: ClientAuth) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            cseq: 0,
            limits: Limits {
                max_body: 1 << 20,
                ..Limits::default()
            },
            session: None,
            auth,
            via: None,
        }
    }

    /// Caps response bodies (an SDP) at `max` bytes instead of 1 MiB: a
    /// larger Content-Length is a protocol error before the body is read.
    pub(crate) fn set_max_body(&mut self, max: usize) {
        self.limits.max_body = max;
    }

    /// Sends `Via: via` with every request from now on.
    pub(crate) fn set_via(&mut self, via: String) {
        self.via = Some(via);
    }

    pub(crate) fn local_addr(&self) -> Result<SocketAddr, LoadError> {
        self.stream
            .tcp()
            .local_addr()
            .map_err(|e| LoadError::Connect(e.kind()))
    }

    pub(crate) fn peer_addr(&self) -> Result<SocketAddr, LoadError> {
        self.stream
            .tcp()
            .peer_addr()
            .map_err(|e| LoadError::Connect(e.kind()))
    }

    /// Sends `method url` with `headers` and waits for its response; frames
    /// read meanwhile go to `on_frame`. A 401 is answered with credentials
    /// when there are some ([`ClientAuth`]); a non-2xx status is an error.
    pub(crate) async fn request(
        &mut self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        on_frame: &mut (dyn FnMut(u8, Bytes) + Send),
    ) -> Result<Response, LoadError> {
        self.request_with_body(method, url, headers, &[], on_frame)
            .await
    }

    /// [`Conn::request`] with a body (ANNOUNCE's SDP), its Content-Length
    /// added.
    pub(crate) async fn request_with_body(
        &mut self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        on_frame: &mut (dyn FnMut(u8, Bytes) + Send),
    ) -> Result<Response, LoadError> {
        // The first try, one after the challenge, one after a refusal of a
        // shared nonce, one after a stale nonce.
        for _ in 0..4 {
            let resp = self.exchange(method, url, headers, body, on_frame).await?;
            if resp.status.0 != 401 {
                self.auth.accepted();
                if !(200..300).contains(&resp.status.0) {
                    return Err(LoadError::Status {
                        method,
                        status: resp.status.0,
                    });
                }
                return Ok(resp);
            }
            self.auth
                .on_unauthorized(&resp)
                .map_err(|source| LoadError::Auth { method, source })?;
        }
        Err(LoadError::Auth {
            method,
            source: super::auth::AuthError::Rejected,
        })
    }

    /// Sends one request (with credentials once challenged) and returns
    /// its response, whatever the status.
    async fn exchange(
        &mut self,
        method: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        on_frame: &mut (dyn FnMut(u8, Bytes) + Send),
    ) -> Result<Response, LoadError> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: rtspd-load/{}\r\n",
            self.cseq,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(s) = &self.session {
            req.push_str(&format!("Session: {s}\r\n"));
        }
        if let Some(v) = &self.via {
            req.push_str(&format!("Via: {v}\r\n"));
        }
        let authorization = self
            .auth
            .authorization(method, url)
            .map_err(|source| LoadError::Auth { method, source })?;
        if let Some(a) = authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        timeout(REPLY_TIMEOUT, self.write(&req))
            .await
            .map_err(|_| LoadError::Timeout(method))?
            .map_err(|e| LoadError::Connect(e.kind()))?;
        loop {
            let Some(resp) = self.next_response(deadline, on_frame).await? else {
                return Err(LoadError::Timeout(method));
            };
            if resp.headers.cseq() != Some(self.cseq) {
                // A late reply to an earlier request (a keepalive whose
                // answer came after a timeout): skip it.
                continue;
            }
            return Ok(resp);
        }
    }

    /// The stream, for a caller that takes over the connection (what was
    /// read and not parsed is dropped).
    pub(crate) fn into_stream(self) -> S {
        self.stream
    }

    /// Sends an interleaved frame (RTCP receiver reports in TCP mode).
    pub(crate) async fn send_frame(&mut self, channel: u8, data: &[u8]) -> Result<(), LoadError> {
        let len =
            u16::try_from(data.len()).map_err(|_| LoadError::Protocol("frame too long".into()))?;
        let mut f = Vec::with_capacity(4 + data.len());
        f.extend_from_slice(&[b'$', channel]);
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(data);
        timeout(REPLY_TIMEOUT, self.write(&f))
            .await
            .map_err(|_| LoadError::Timeout("interleaved write"))?
            .map_err(|e| LoadError::Connect(e.kind()))
    }

    /// Writes `data` out: a TLS stream may keep records back until flushed
    /// (on a `TcpStream` the flush is a no-op).
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(data).await?;
        self.stream.flush().await
    }

    /// Reads until a response arrives (returned) or `deadline` passes
    /// (`None`), passing frames to `on_frame`.
    pub(crate) async fn next_response(
        &mut self,
        deadline: Instant,
        on_frame: &mut (dyn FnMut(u8, Bytes) + Send),
    ) -> Result<Option<Response>, LoadError> {
        loop {
            match parse_response(&self.buf, &self.limits)
                .map_err(|e| LoadError::Protocol(e.to_string()))?
            {
                ParsedResponse::Response { response, consumed } => {
                    self.buf.advance(consumed);
                    return Ok(Some(response));
                }
                ParsedResponse::Interleaved {
                    channel,
                    payload,
                    consumed,
                } => {
                    self.buf.advance(consumed);
                    on_frame(channel, payload);
                    continue;
                }
                ParsedResponse::Incomplete => {}
            }
            self.buf.reserve(READ_CHUNK);
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(LoadError::Closed),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(LoadError::Connect(e.kind())),
            }
        }
    }
}
