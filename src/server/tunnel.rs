//! RTSP over HTTP (QuickTime tunnelling, [`crate::proto::tunnel`]) at the
//! tokio edge: on the RTSP port, whose connections may open with `GET ` or
//! `POST` instead of an RTSP method, and on the HTTP listener, whose
//! connections are sniffed for an `x-sessioncookie` before the HTTP API
//! sees them.
//!
//! A GET is answered at once and waits for its POST ([`Tunnels`]); once
//! paired, the two are one RTSP connection ([`Tunnel`]) served by
//! [`super::conn`] like any other: same parser, limits, auth and session
//! rules. The rules of the pairing (ROBUSTNESS B13):
//! - a POST must come from the GET's address (else 403), while its GET
//!   waits, and only one per GET;
//! - the GET's own connection may send nothing more (a POST on it closes
//!   the tunnel);
//! - a GET whose POST does not come within `tunnel_timeout` is closed;
//! - the POST's base64 is decoded with at most three sextets held.
//!
//! The tunnel ends when either connection closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::conn::{self, Stream};
use super::{ConnSlot, Shared};
use crate::proto::limit::Limit;
use crate::proto::tunnel::{self, Base64Decoder, Half, Head, Sniffed};

/// Base64 read from a POST per read call at most.
const READ_CHUNK: usize = 4096;

/// The POST half, handed to the GET that waits for it.
pub(crate) struct Post {
    stream: TcpStream,
    /// Base64 that arrived with the POST's head.
    early: Vec<u8>,
    /// What the POST's connection holds while it lives (its HTTP or RTSP
    /// connection slot).
    held: Box<dyn Send>,
}

/// GETs waiting for their POST, by cookie.
#[derive(Default)]
pub(crate) struct Tunnels {
    waiting: Mutex<HashMap<String, Waiting>>,
}

struct Waiting {
    ip: IpAddr,
    tx: oneshot::Sender<Post>,
}

/// Why a POST is not joined to a GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unpaired {
    /// No GET waits with its cookie.
    Unknown,
    /// The GET came from another address (a hijack).
    OtherAddress,
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a GET; `None` if another GET waits with the same cookie.
    fn wait(&self, cookie: &str, ip: IpAddr) -> Option<oneshot::Receiver<Post>> {
        let mut m = self.lock();
        if m.get(cookie).is_some_and(|w| !w.tx.is_closed()) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        m.insert(cookie.to_owned(), Waiting { ip, tx });
        Some(rx)
    }

    /// Forgets a GET that stopped waiting (if it is still the one there).
    fn cancel(&self, cookie: &str) {
        let mut m = self.lock();
        if m.get(cookie).is_some_and(|w| w.tx.is_closed()) {
            m.remove(cookie);
        }
    }

    /// Joins a POST from `ip` to its GET. A POST from another address
    /// leaves the GET waiting for the right one.
    /// Refused, the POST comes back to be answered.
    fn join(&self, cookie: &str, ip: IpAddr, post: Post) -> Result<(), (Unpaired, Post)> {
        let mut m = self.lock();
        match m.get(cookie) {
            Some(w) if w.ip != ip => return Err((Unpaired::OtherAddress, post)),
            Some(w) if !w.tx.is_closed() => {}
            _ => return Err((Unpaired::Unknown, post)),
        }
        match m.remove(cookie) {
            Some(w) => w.tx.send(post).map_err(|post| (Unpaired::Unknown, post)),
            None => Err((Unpaired::Unknown, post)),
        }
    }
}

/// Whether an RTSP-port connection opens with HTTP (`GET `/`POST`), seen
/// without consuming a byte. `None`: the client closed, or sent nothing
/// within `idle` (or the server stops).
pub(crate) async fn opens_with_http(
    stream: &TcpStream,
    idle: Duration,
    cancel: &CancellationToken,
) -> Option<bool> {
    let deadline = Instant::now() + idle;
    let mut first = [0u8; 4];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return None,
            r = tokio::time::timeout_at(deadline.into(), stream.peek(&mut first)) => match r {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            },
        };
        if let Some(http) = tunnel::starts_http(&first[..n]) {
            return Some(http);
        }
        // Fewer than four bytes that could still be either: rare (a client
        // writing a byte at a time). The bytes stay in the socket, so wait
        // a little before looking again.
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads a head from an RTSP-port connection that opened with HTTP, and
/// runs its half. Heads are capped like RTSP ones (`max_head_bytes`,
/// `max_headers`, `read_timeout`).
pub(crate) async fn serve_rtsp_port(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: CancellationToken,
) {
    let config = shared.config();
    let limits = config.limits;
    let read = tokio::select! {
        _ = cancel.cancelled() => return,
        r = read_head(&mut stream, limits.max_head, limits.max_headers, config.read_timeout) => r,
    };
    match read {
        (buf, Ok(Sniffed::Tunnel { head, len })) => {
            let early = buf[len..].to_vec();
            let held = Box::new(());
            serve(
                shared, stream, head, early, peer, conn_id, slot, held, cancel,
            )
            .await;
        }
        (_, Ok(_)) => {
            debug!("HTTP request without x-sessioncookie on the RTSP port");
            let _ = refuse(&mut stream, 400, "Bad Request").await;
        }
        (_, Err(HeadError::Refused(status))) => {
            let _ = refuse(&mut stream, status, reason(status)).await;
        }
        (_, Err(HeadError::Timeout)) => {
            shared.refusals.refuse(Limit::ReadTimeout);
            let _ = refuse(&mut stream, 408, "Request Timeout").await;
        }
        (_, Err(HeadError::Closed)) => {}
    }
}

/// A head could not be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Refused with this HTTP status (malformed, too large).
    Refused(u16),
    /// Not complete within the read timeout.
    Timeout,
    /// The client closed or reset the connection.
    Closed,
}

/// Reads until a complete HTTP head, at most `max_head` bytes within
/// `timeout`. Returns the bytes read (a POST's base64 may follow the head
/// in them, an API request's body too) and what they are. A head longer
/// than `max_head` is `Refused(431)`.
pub(crate) async fn read_head(
    stream: &mut TcpStream,
    max_head: usize,
    max_headers: usize,
    timeout: Duration,
) -> (Vec<u8>, Result<Sniffed, HeadError>) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(1024);
    loop {
        match tunnel::sniff(&buf, max_headers) {
            Ok(Sniffed::Incomplete) => {}
            Ok(s) => return (buf, Ok(s)),
            Err(e) => {
                debug!(error = %e, "HTTP head refused");
                return (buf, Err(HeadError::Refused(e.status())));
            }
        }
        if buf.len() >= max_head {
            return (buf, Err(HeadError::Refused(431)));
        }
        let room = (max_head - buf.len()).min(READ_CHUNK);
        let start = buf.len();
        buf.resize(start + room, 0);
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf[start..])).await;
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => 0,
            Err(_) => {
                buf.truncate(start);
                return (buf, Err(HeadError::Timeout));
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return (buf, Err(HeadError::Closed));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

async fn refuse(stream: &mut TcpStream, status: u16, reason: &str) -> io::Result<()> {
    let answer = tunnel::refusal(status, reason);
    tokio::time::timeout(Duration::from_secs(1), stream.write_all(&answer))
        .await
        .map_err(|_| io::ErrorKind::TimedOut)??;
    let _ = stream.shutdown().await;
    Ok(())
}

/// Runs one tunnel half whose head has been read: a GET waits for its
/// POST, then serves RTSP over the pair; a POST is handed to its GET.
/// `held` is what the connection holds besides its RTSP slot while it
/// lives (for the HTTP listener, its HTTP connection slot).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    head: Head,
    early: Vec<u8>,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    held: Box<dyn Send>,
    cancel: CancellationToken,
) {
    match head.half {
        Half::Post => {
            let cookie = head.cookie;
            let post = Post {
                stream,
                early,
                held: Box::new((slot, held)),
            };
            match shared.tunnels.join(&cookie, peer.ip(), post) {
                Ok(()) => debug!("tunnel POST joined its GET"),
                Err((Unpaired::Unknown, mut post)) => {
                    debug!("tunnel POST without a waiting GET");
                    let _ = refuse(&mut post.stream, 404, "Not Found").await;
                }
                Err((Unpaired::OtherAddress, mut post)) => {
                    info!(client = %peer, "tunnel POST for another address's GET refused");
                    let _ = refuse(&mut post.stream, 403, "Forbidden").await;
                }
            }
        }
        Half::Get => {
            let Some(slot) = slot else {
                let _ = refuse(&mut stream, 503, "Service Unavailable").await;
                return;
            };
            if !early.is_empty() {
                debug!("bytes after a tunnel GET's head");
                let _ = refuse(&mut stream, 400, "Bad Request").await;
                return;
            }
            let Some(rx) = shared.tunnels.wait(&head.cookie, peer.ip()) else {
                debug!("a tunnel GET reuses a waiting cookie");
                let _ = refuse(&mut stream, 400, "Bad Request").await;
                return;
            };
            let post = wait_for_post(&shared, &mut stream, &head, rx, &cancel).await;
            shared.tunnels.cancel(&head.cookie);
            let Some(post) = post else { return };
            info!("RTSP over HTTP tunnel open");
            let tunnel = Tunnel::new(stream, post);
            conn::serve(shared.clone(), tunnel, peer, conn_id, Some(slot), cancel).await;
            drop(held);
        }
    }
}

/// Answers the GET, then waits for its POST for `tunnel_timeout`. The GET's
/// connection must stay silent meanwhile: a byte on it (such as a POST on
/// the same connection) or its close ends the wait.
async fn wait_for_post(
    shared: &Shared,
    stream: &mut TcpStream,
    head: &Head,
    rx: oneshot::Receiver<Post>,
    cancel: &CancellationToken,
) -> Option<Post> {
    let config = shared.config();
    let ok = tunnel::get_ok(head.http10);
    match tokio::time::timeout(config.write_timeout, stream.write_all(&ok)).await {
        Ok(Ok(())) => {}
        _ => return None,
    }
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = cancel.cancelled() => None,
        r = tokio::time::timeout(config.tunnel_timeout, rx) => match r {
            Ok(Ok(post)) => Some(post),
            _ => {
                debug!(timeout = ?config.tunnel_timeout, "tunnel GET without a POST, closing");
                shared.refusals.refuse(Limit::TunnelTimeout);
                None
            }
        },
        r = stream.peek(&mut probe) => {
            match r {
                Ok(n) if n > 0 => debug!("data on a tunnel GET's connection (a POST on it?), closing"),
                _ => debug!("tunnel GET closed before its POST"),
            }
            None
        }
    }
}

/// The two halves as one RTSP connection: requests are read from the
/// POST (decoded), responses and media are written to the GET.
pub(crate) struct Tunnel {
    get: TcpStream,
    post: TcpStream,
    /// The POST connection's slot, released with the tunnel.
    _post_held: Box<dyn Send>,
    decoder: Base64Decoder,
    /// Decoded bytes not yet read, from `pos`.
    decoded: Vec<u8>,
    pos: usize,
}

impl Tunnel {
    fn new(get: TcpStream, post: Post) -> Self {
        let mut t = Self {
            get,
            post: post.stream,
            _post_held: post.held,
            decoder: Base64Decoder::default(),
            decoded: Vec::new(),
            pos: 0,
        };
        // Decoded now: an error shows at the first read.
        if t.decoder.push(&post.early, &mut t.decoded).is_err() {
            t.decoded.clear();
            t.decoder = Base64Decoder::default();
            t.pos = usize::MAX;
        }
        t
    }

    /// A byte or the end on the GET connection: the tunnel is over (the
    /// client closed it, or misuses it). `Pending` while it is silent.
    fn poll_get_silent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.get.poll_read_ready(cx))?;
            let mut probe = [0u8; 1];
            return match self.get.try_read(&mut probe) {
                Ok(0) => Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data on the tunnel's GET connection",
                ))),
                // A stale readiness, now cleared: waiting again registers.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => Poll::Ready(Err(e)),
            };
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == usize::MAX {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "tunnel POST body is not base64",
            )));
        }
        loop {
            if this.pos < this.decoded.len() {
                let n = buf.remaining().min(this.decoded.len() - this.pos);
                buf.put_slice(&this.decoded[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.decoded.len() {
                    this.decoded.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Poll::Ready(r) = this.poll_get_silent(cx) {
                // The GET closed: the end of the tunnel, as an end of
                // stream; anything else an error.
                return match r {
                    Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(())),
                };
            }
            let mut raw = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.post).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            if let Err(e) = this.decoder.push(rb.filled(), &mut this.decoded) {
                debug!(error = %e, "tunnel POST body is not base64");
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().get).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().get).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().get).poll_shutdown(cx)
    }
}

impl Stream for Tunnel {
    const TLS: bool = false;

    /// The GET: where responses and media go.
    fn tcp(&self) -> &TcpStream {
        &self.get
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Decoded bytes, a broken POST, the GET's end (or misuse) and the
        // POST's data all call for a read.
        if self.pos < self.decoded.len()
            || self.pos == usize::MAX
            || self.get.poll_read_ready(cx).is_ready()
        {
            return Poll::Ready(Ok(()));
        }
        self.post.poll_read_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    #[tokio::test]
    async fn posts_join_only_their_own_address() {
        let t = Tunnels::default();
        let home: IpAddr = [127, 0, 0, 1].into();
        let away: IpAddr = [127, 0, 0, 2].into();
        let mut rx = t.wait("c", home).expect("first");
        assert!(t.wait("c", home).is_none(), "a second GET with the cookie");
        let (_c, s) = pair().await;
        let post = |stream| Post {
            stream,
            early: Vec::new(),
            held: Box::new(()),
        };
        assert!(matches!(
            t.join("c", away, post(s)),
            Err((Unpaired::OtherAddress, _))
        ));
        assert!(rx.try_recv().is_err(), "the GET still waits");
        let (_c2, s2) = pair().await;
        assert!(matches!(
            t.join("nope", home, post(s2)),
            Err((Unpaired::Unknown, _))
        ));
        let (_c3, s3) = pair().await;
        assert!(t.join("c", home, post(s3)).is_ok());
        assert!(rx.try_recv().is_ok());
        t.cancel("c");
        assert!(t.lock().is_empty());
    }

    #[tokio::test]
    async fn a_tunnel_reads_decoded_posts_and_writes_to_the_get() {
        use base64::Engine;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut get_client, get_server) = pair().await;
        let (mut post_client, post_server) = pair().await;
        let b64 = base64::engine::general_purpose::STANDARD;
        let request = b"OPTIONS rtsp://h/ RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        let text = b64.encode(request);
        let (early, rest) = text.as_bytes().split_at(5);
        let mut t = Tunnel::new(
            get_server,
            Post {
                stream: post_server,
                early: early.to_vec(),
                held: Box::new(()),
            },
        );
        post_client.write_all(rest).await.expect("post");
        let mut got = Vec::new();
        while got.len() < request.len() {
            let mut b = [0u8; 64];
            let n = t.read(&mut b).await.expect("read");
            assert!(n > 0, "early end");
            got.extend_from_slice(&b[..n]);
        }
        assert_eq!(got, request);
        t.write_all(b"RTSP/1.0 200 OK\r\n\r\n")
            .await
            .expect("write");
        let mut answer = [0u8; 19];
        get_client.read_exact(&mut answer).await.expect("get side");
        assert_eq!(&answer, b"RTSP/1.0 200 OK\r\n\r\n");
        // Invalid base64 is an error; the GET's close is the end.
        post_client.write_all(b"*").await.expect("post");
        let mut b = [0u8; 8];
        assert!(t.read(&mut b).await.is_err());
        drop(get_client);
        let mut t2 = {
            let (g, gs) = pair().await;
            let (_p, ps) = pair().await;
            drop(g);
            Tunnel::new(
                gs,
                Post {
                    stream: ps,
                    early: Vec::new(),
                    held: Box::new(()),
                },
            )
        };
        assert_eq!(t2.read(&mut b).await.expect("end"), 0);
    }
}
