//! One task per RTSP control connection (RFC 2326 §10): read, parse, answer
//! in order, write. Framing errors get their status and a close.
//!
//! Deadlines (ROBUSTNESS B12): a request must be complete within
//! `read_timeout` of its first byte (slowloris is cut off no matter how it
//! trickles), a response must be written within `write_timeout`, and a
//! connection that owns no session is closed after `idle_timeout` of silence.
//! A connection that owns sessions stays open: those sessions have their own
//! timeout.
//!
//! The task is generic over its `Stream`: a `TcpStream` (RTSP), TLS over
//! one (RTSPS, [`super::tls`]), or the two halves of an RTSP-over-HTTP
//! tunnel ([`super::tunnel::Tunnel`]); each is compiled on its own, so
//! plain RTSP pays nothing for the others. With `[tls] require`, a plain connection's
//! requests other than OPTIONS get 403.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{debug, info, trace};

use super::input::Input;
use super::interleave::{write_frame, Frame};
use super::method::{self, base_response};
use super::pacing::Command;
use super::refusals::RETRY_AFTER_SECS;
use super::{ConnSlot, Shared};
use crate::net;
use crate::proto::auth::rules::{self, Access};
use crate::proto::limit::Limit;
use crate::proto::redirect::redirect_request;
use crate::proto::rtcp;
use crate::proto::rtsp::{Method, Parsed, Request, Response, StatusCode};
use crate::proto::target::encode_path;

/// What a control connection runs over: TCP, or TLS over TCP.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// An RTSPS connection.
    const TLS: bool;

    /// The TCP connection underneath (socket options).
    fn tcp(&self) -> &TcpStream;

    /// Ready once a read may return data (or end of stream), so that an
    /// idle connection's read buffer is reserved only then.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Stream for TcpStream {
    const TLS: bool = false;

    fn tcp(&self) -> &TcpStream {
        self
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl Stream for TlsStream<TcpStream> {
    const TLS: bool = true;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }

    /// Ready when rustls holds plaintext (or records it has not yet
    /// decrypted) that the socket no longer signals: a read may return less
    /// than a record held. Else the socket's readiness, as for TCP.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (tcp, tls) = self.get_mut();
        match tls.process_new_packets() {
            Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {
                tcp.poll_read_ready(cx)
            }
            // Plaintext, a close, or an error the read will report.
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// What to do after a read attempt.
enum Read {
    More,
    Closed,
    /// A drain started: tell this connection's readers (RFC 2326 §10.15).
    Drain,
}

pub(crate) async fn serve<S: Stream>(
    shared: Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: CancellationToken,
) {
    serve_requests(&shared, stream, peer, conn_id, slot, &cancel).await;
    // Boxed: cleanup runs once, and its future would otherwise size every
    // connection's task.
    Box::pin(close(shared, conn_id)).await;
}

/// What a closed connection leaves behind: its interleaved sessions, and
/// the sessions and channels it published.
async fn close(shared: Arc<Shared>, conn_id: u64) {
    shared.sinks.close(conn_id);
    // Sessions streaming over this connection have lost their transport.
    for e in shared.sessions.remove_interleaved_on(conn_id) {
        super::end(&shared, &e, "interleaved connection closed").await;
    }
    // A publisher's session ends with its connection, over UDP too, so the
    // channel is free for the next publisher at once.
    let released = shared.channels.release_conn(conn_id);
    for id in released.iter().filter_map(|r| r.session.as_deref()) {
        if let Some(e) = shared.sessions.remove(id) {
            e.log_end("publishing connection closed");
            let _ = shared.pacer.send(Command::Remove { group: e.group }).await;
        }
    }
    super::stop_publishers(&shared, released).await;
}

async fn serve_requests<S: Stream>(
    shared: &Arc<Shared>,
    mut stream: S,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: &CancellationToken,
) {
    // The interleaved frame queue, once a SETUP asked for one.
    let mut frames: Option<mpsc::Receiver<Frame>> = None;
    let _ = stream.tcp().set_nodelay(true);
    let shared = shared.clone();
    let mut input = Input::new(shared.config().limits);
    let mut partial_since: Option<Instant> = None;
    // One cancellation waiter and one timer for the connection's life: a
    // read re-arms neither (the timer moves only when its deadline does).
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    let mut deadline = Instant::now() + shared.config().idle_timeout;
    let timer = tokio::time::sleep_until(deadline.into());
    tokio::pin!(timer);
    // Frames received in the current one-second window (ROBUSTNESS B10#74).
    let mut frame_window = (Instant::now(), 0u32);
    // Consecutive answers of 454 (session-id guessing, ROBUSTNESS B8).
    let mut unknown_sessions = 0u32;
    let mut drain = shared.redirector.watch_drain();
    // CSeq of the server's own requests (REDIRECT) on this connection.
    let mut server_cseq = 0u32;
    debug!("connection opened");
    loop {
        // Answer everything already buffered, in order.
        loop {
            match input.next_message() {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Interleaved {
                    channel, payload, ..
                }) => {
                    // A frame on a connection that set up no interleaved
                    // transport is a framing error (ROBUSTNESS B10#73).
                    if frames.is_none() {
                        debug!(
                            channel,
                            "interleaved frame before an interleaved SETUP, closing"
                        );
                        shared.metrics.answered(None, StatusCode::BAD_REQUEST.0);
                        let _ = write(
                            &shared,
                            &mut stream,
                            &base_response(StatusCode::BAD_REQUEST, None),
                        )
                        .await;
                        return;
                    }
                    let now = Instant::now();
                    if now.duration_since(frame_window.0) >= Duration::from_secs(1) {
                        frame_window = (now, 0);
                    }
                    frame_window.1 += 1;
                    // A publisher's RTP and RTCP go to its channel; RTCP keeps the
                    // connection's sessions alive; anything else, and
                    // unknown channels, is skipped (B10#71, #72). A publisher
                    // sends media, so it has a cap of its own.
                    let delivery = shared.channels.interleaved_packet(conn_id, channel, now);
                    let (cap, limit) = match delivery {
                        Some(_) => (
                            shared.config().max_publisher_frames_per_sec,
                            Limit::MaxPublisherFramesPerSec,
                        ),
                        None => (
                            shared.config().max_client_frames_per_sec,
                            Limit::MaxClientFramesPerSec,
                        ),
                    };
                    if frame_window.1 > cap {
                        info!(
                            channel,
                            limit = limit.name(),
                            "client sends too many interleaved frames, closing"
                        );
                        shared.refusals.refuse(limit);
                        return;
                    }
                    if let Some(d) = delivery {
                        if let Some(id) = d.touch {
                            shared.sessions.touch(&id, now);
                        }
                        let sent = if d.rtcp {
                            shared.data.publish_rtcp(d.key, d.track, &payload)
                        } else {
                            shared.data.publish(d.key, d.track, payload)
                        };
                        if sent.is_err() {
                            return;
                        }
                    } else if rtcp::parse_compound(&payload).is_ok() {
                        shared.sessions.touch_by_conn(conn_id, now);
                    } else {
                        trace!(channel, "interleaved frame ignored");
                    }
                }
                Ok(Parsed::Request { request, .. }) => {
                    let response = if slot.is_none() {
                        base_response(StatusCode::SERVICE_UNAVAILABLE, request.cseq())
                            .header("Retry-After", RETRY_AFTER_SECS.to_string())
                    } else if !S::TLS && tls_required(&shared, &request) {
                        debug!(method = %request.method, "plain RTSP refused: [tls] require");
                        base_response(StatusCode::FORBIDDEN, request.cseq())
                            .reason("Forbidden: use RTSPS (rtsps://)")
                    } else {
                        // Boxed: the handler future is large and exists only during a
                        // request, so idle connections stay small.
                        Box::pin(method::handle(&shared, &request, peer, conn_id)).await
                    };
                    shared
                        .metrics
                        .answered(Some(&request.method), response.status.0);
                    if !write(&shared, &mut stream, &response).await || slot.is_none() {
                        return;
                    }
                    if response.status == StatusCode::SESSION_NOT_FOUND {
                        unknown_sessions += 1;
                        if unknown_sessions >= shared.config().auth.max_unknown_sessions.max(1) {
                            // One debug line here; the WARN is the
                            // refusals' (rate-limited, with the count).
                            debug!(
                                client = %peer,
                                count = unknown_sessions,
                                "consecutive requests for unknown sessions, closing the connection"
                            );
                            shared.refusals.refuse(Limit::MaxUnknownSessions);
                            return;
                        }
                    } else {
                        unknown_sessions = 0;
                    }
                    if frames.is_none() {
                        frames = shared.sinks.take_receiver(conn_id);
                        if frames.is_some() {
                            limit_send_buffer(stream.tcp());
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "unparseable request, closing");
                    if let Some(limit) = e.limit() {
                        shared.refusals.refuse(limit);
                    }
                    shared.metrics.answered(None, e.status.0);
                    let _ = write(&shared, &mut stream, &base_response(e.status, e.cseq)).await;
                    return;
                }
            }
        }
        // A partial request keeps its deadline from its first byte; between
        // requests the idle deadline restarts.
        let due = if input.is_empty() {
            // An idle connection holds no read buffer (thousands of
            // listeners each sit idle between keepalives).
            input.release_if_empty();
            partial_since = None;
            Instant::now() + shared.config().idle_timeout
        } else {
            let since = *partial_since.get_or_insert_with(Instant::now);
            since + shared.config().read_timeout
        };
        if due != deadline {
            deadline = due;
            timer.as_mut().reset(deadline.into());
        }
        let io = Io {
            stream: &mut stream,
            input: &mut input,
            frames: &mut frames,
            cancelled: cancelled.as_mut(),
            timer: timer.as_mut(),
            deadline: &mut deadline,
            drain: &mut drain,
        };
        match read(&shared, io, partial_since.is_some(), conn_id).await {
            Read::More => {}
            Read::Closed => {
                debug!("connection closed");
                return;
            }
            Read::Drain => {
                let to = drain.borrow_and_update().clone();
                if let Some(to) = to {
                    if !send_redirects(&shared, &mut stream, conn_id, &to, &mut server_cseq).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Whether `[tls] require` refuses `request` on a plain connection, once
/// RTSPS runs: with `[[paths]]` rules, a request for a protected path (one
/// whose rule names users), so credentials never cross the network in
/// clear; without rules, everything. OPTIONS (which says what the server
/// is and keeps nothing secret) always passes.
fn tls_required(shared: &Shared, request: &Request) -> bool {
    let config = shared.config();
    if shared.tls.is_none() || !config.tls.require || request.method == Method::Options {
        return false;
    }
    let rules = &config.auth.rules;
    if rules.is_empty() {
        return true;
    }
    let access = if matches!(request.method, Method::Announce | Method::Record) {
        Access::Publish
    } else {
        Access::Read
    };
    // An unparsable URI counts as protected (the method refuses it
    // anyway); a path no rule matches is open to anyone, so not protected.
    match crate::proto::target::parse_target(&request.uri, config.limits.max_uri) {
        Ok(t) => rules::find(rules, &t.path).is_some_and(|rule| rule.needs_user(access)),
        Err(_) => true,
    }
}

/// Kernel send buffer of a connection that streams interleaved. Linux
/// would grow it to megabytes for a client that stops reading; bounded, the
/// write timeout notices such a client in seconds and the memory a stuck
/// client pins stays small.
const INTERLEAVED_SNDBUF: libc::c_int = 256 * 1024;

fn limit_send_buffer(stream: &TcpStream) {
    use std::os::fd::AsFd;
    let fd = stream.as_fd();
    if let Err(e) = net::set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, INTERLEAVED_SNDBUF) {
        debug!(error = %e, "send buffer not limited");
    }
}

/// The next queued frame; never resolves for a connection without a queue.
async fn next_frame(frames: &mut Option<mpsc::Receiver<Frame>>) -> Option<Frame> {
    match frames {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Frames written per `write` call at most.
const FRAMES_PER_WRITE: usize = 64;

/// What [`read`] works with, borrowed from the connection for one call.
struct Io<'a, 'c, S> {
    stream: &'a mut S,
    input: &'a mut Input,
    frames: &'a mut Option<mpsc::Receiver<Frame>>,
    cancelled: Pin<&'a mut WaitForCancellationFuture<'c>>,
    /// Set to the read timeout of a partial request, else the idle timeout.
    timer: Pin<&'a mut Sleep>,
    /// When `timer` fires.
    deadline: &'a mut Instant,
    /// Changes when a drain starts.
    drain: &'a mut watch::Receiver<Option<String>>,
}

/// Reads more request bytes; meanwhile writes the interleaved frames the
/// pacing thread queues for this connection.
async fn read<S: Stream>(shared: &Shared, io: Io<'_, '_, S>, partial: bool, conn_id: u64) -> Read {
    let Io {
        stream,
        input,
        frames,
        mut cancelled,
        mut timer,
        deadline,
        drain,
    } = io;
    let cfg = shared.config();
    let mut out = Vec::new();
    loop {
        tokio::select! {
            _ = cancelled.as_mut() => return Read::Closed,
            Ok(()) = drain.changed() => return Read::Drain,
            Some((channel, data)) = next_frame(frames) => {
                out.clear();
                write_frame(&mut out, channel, &data);
                for _ in 1..FRAMES_PER_WRITE {
                    let Some(Ok((channel, data))) = frames.as_mut().map(mpsc::Receiver::try_recv) else { break };
                    write_frame(&mut out, channel, &data);
                }
                let written = tokio::time::timeout(cfg.write_timeout, write_all(stream, &out)).await;
                if !matches!(written, Ok(Ok(()))) {
                    debug!("interleaved client not reading; closing");
                    return Read::Closed;
                }
            }
            // `poll_read_ready` first: buffer space only once there is
            // something to read, and the waker lives in the socket's
            // registration, so the idle future stays small.
            r = std::future::poll_fn(|cx| {
                ready!(stream.poll_readable(cx))?;
                input.poll_read_from(cx, Pin::new(&mut *stream))
            }) => {
                return match r {
                    Ok(0) | Err(_) => Read::Closed,
                    Ok(_) => Read::More,
                };
            }
            () = timer.as_mut() => {
                if partial {
                    debug!("request not completed within the read timeout");
                    shared.refusals.refuse(Limit::ReadTimeout);
                    shared.metrics.answered(None, StatusCode::REQUEST_TIMEOUT.0);
                    let _ = write(
                        shared,
                        stream,
                        &base_response(StatusCode::REQUEST_TIMEOUT, None),
                    )
                    .await;
                    return Read::Closed;
                }
                if !shared.sessions.owned_by_conn(conn_id) {
                    debug!("idle connection closed");
                    return Read::Closed;
                }
                *deadline = Instant::now() + cfg.idle_timeout;
                timer.as_mut().reset((*deadline).into());
            }
        }
    }
}

/// Sends a `REDIRECT` (RFC 2326 §10.15) for every reading session of
/// this connection to the same path under `to`; false when the client
/// does not take it within the write timeout.
async fn send_redirects<S: Stream>(
    shared: &Shared,
    stream: &mut S,
    conn_id: u64,
    to: &str,
    cseq: &mut u32,
) -> bool {
    // The address this client reached us at (not the wildcard we may be
    // bound to), and the scheme it used.
    let local = stream.tcp().local_addr().unwrap_or(shared.rtsp_addr);
    let host = match local {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let scheme = if S::TLS { "rtsps" } else { "rtsp" };
    for (id, path) in shared.sessions.readers_on(conn_id) {
        *cseq += 1;
        let path = encode_path(&path);
        let here = format!("{scheme}://{host}/{path}");
        let location = format!("{to}/{path}");
        info!(session = %id, %location, "REDIRECT sent");
        shared
            .metrics
            .redirects_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = redirect_request(&here, *cseq, &id, &location);
        let written =
            tokio::time::timeout(shared.config().write_timeout, write_all(stream, &bytes)).await;
        if !matches!(written, Ok(Ok(()))) {
            debug!("client not reading its REDIRECT; closing");
            return false;
        }
    }
    true
}

async fn write<S: Stream>(shared: &Shared, stream: &mut S, response: &Response) -> bool {
    let bytes = response.to_bytes();
    trace!(status = response.status.0, "response");
    matches!(
        tokio::time::timeout(shared.config().write_timeout, write_all(stream, &bytes)).await,
        Ok(Ok(()))
    )
}

/// Writes `bytes` out: for TLS, flushed, so no record waits in rustls's
/// buffer (for TCP the flush does nothing).
async fn write_all<S: Stream>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    if S::TLS {
        stream.flush().await?;
    }
    Ok(())
}
