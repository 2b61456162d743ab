//! One task per RTSP control connection (RFC 2326 §10): read, parse, answer
//! in order, write. Framing errors get their status and a close.
//!
//! Deadlines (ROBUSTNESS B12): a request must be complete within
//! `read_timeout` of its first byte (slowloris is cut off no matter how it
//! trickles), a response must be written within `write_timeout`, and a
//! connection that owns no session is closed after `idle_timeout` of silence.
//! A connection that owns sessions stays open: those sessions have their own
//! timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, trace};

use super::interleave::{write_frame, Frame};
use super::method::{self, base_response};
use super::pacing::Command;
use super::refusals::RETRY_AFTER_SECS;
use super::{ConnSlot, Shared};
use crate::net;
use crate::proto::limit::Limit;
use crate::proto::rtcp;
use crate::proto::rtsp::{parse, Parsed, Response, StatusCode};

/// What to do after a read attempt.
enum Read {
    More,
    Closed,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
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
        info_span!("session", id = %e.session.id)
            .in_scope(|| info!("session closed with its interleaved connection"));
        super::forget(&shared, &e).await;
    }
    // A publisher's session ends with its connection, over UDP too, so the
    // channel is free for the next publisher at once.
    let released = shared.channels.release_conn(conn_id);
    for id in released.iter().filter_map(|r| r.session.as_deref()) {
        if let Some(e) = shared.sessions.remove(id) {
            info_span!("session", id = %e.session.id)
                .in_scope(|| info!("publishing session closed with its connection"));
            let _ = shared.pacer.send(Command::Remove { group: e.group }).await;
        }
    }
    super::stop_publishers(&shared, released).await;
}

async fn serve_requests(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: &CancellationToken,
) {
    // The interleaved frame queue, once a SETUP asked for one.
    let mut frames: Option<mpsc::Receiver<Frame>> = None;
    let _ = stream.set_nodelay(true);
    let shared = shared.clone();
    let limits = shared.config.limits;
    let mut buf = BytesMut::new();
    let mut partial_since: Option<Instant> = None;
    // Frames received in the current one-second window (ROBUSTNESS B10#74).
    let mut frame_window = (Instant::now(), 0u32);
    debug!("connection opened");
    loop {
        // Answer everything already buffered, in order.
        loop {
            match parse(&buf, &limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Interleaved {
                    channel,
                    payload,
                    consumed,
                }) => {
                    buf.advance(consumed);
                    // A frame on a connection that set up no interleaved
                    // transport is a framing error (ROBUSTNESS B10#73).
                    if frames.is_none() {
                        debug!(
                            channel,
                            "interleaved frame before an interleaved SETUP, closing"
                        );
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
                    if frame_window.1 > shared.config.max_client_frames_per_sec {
                        info!(channel, "client sends too many interleaved frames, closing");
                        shared.refusals.refuse(Limit::MaxClientFramesPerSec);
                        return;
                    }
                    // A publisher's RTP goes to its channel; RTCP keeps the
                    // connection's sessions alive; anything else, and
                    // unknown channels, is skipped (B10#71, #72).
                    if let Some(d) = shared.channels.interleaved_packet(conn_id, channel, now) {
                        if let Some(id) = d.touch {
                            shared.sessions.touch(&id, now);
                        }
                        if shared.data.publish(d.key, payload).is_err() {
                            return;
                        }
                    } else if rtcp::parse_compound(&payload).is_ok() {
                        shared.sessions.touch_by_conn(conn_id, now);
                    } else {
                        trace!(channel, "interleaved frame ignored");
                    }
                }
                Ok(Parsed::Request { request, consumed }) => {
                    buf.advance(consumed);
                    let response = if slot.is_none() {
                        base_response(StatusCode::SERVICE_UNAVAILABLE, request.cseq())
                            .header("Retry-After", RETRY_AFTER_SECS.to_string())
                    } else {
                        // Boxed: the handler future is large and exists only during a
                        // request, so idle connections stay small.
                        Box::pin(method::handle(&shared, &request, peer, conn_id)).await
                    };
                    if !write(&shared, &mut stream, &response).await || slot.is_none() {
                        return;
                    }
                    if frames.is_none() {
                        frames = shared.sinks.take_receiver(conn_id);
                        if frames.is_some() {
                            limit_send_buffer(&stream);
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "unparseable request, closing");
                    let _ = write(&shared, &mut stream, &base_response(e.status, e.cseq)).await;
                    return;
                }
            }
        }
        partial_since = if buf.is_empty() {
            // An idle connection holds no read buffer (thousands of
            // listeners each sit idle between keepalives).
            buf = BytesMut::new();
            None
        } else {
            partial_since.or(Some(Instant::now()))
        };
        match read(
            &shared,
            &mut stream,
            &mut buf,
            partial_since,
            conn_id,
            &mut frames,
            cancel,
        )
        .await
        {
            Read::More => {}
            Read::Closed => {
                debug!("connection closed");
                return;
            }
        }
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

/// Reads more request bytes; meanwhile writes the interleaved frames the
/// pacing thread queues for this connection.
async fn read(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    partial_since: Option<Instant>,
    conn_id: u64,
    frames: &mut Option<mpsc::Receiver<Frame>>,
    cancel: &CancellationToken,
) -> Read {
    let cfg = &shared.config;
    let mut out = Vec::new();
    let mut idle_deadline = Instant::now() + cfg.idle_timeout;
    loop {
        let deadline = match partial_since {
            Some(t) => t + cfg.read_timeout,
            None => idle_deadline,
        };
        let r = tokio::select! {
            _ = cancel.cancelled() => return Read::Closed,
            Some((channel, data)) = next_frame(frames) => {
                out.clear();
                write_frame(&mut out, channel, &data);
                for _ in 1..FRAMES_PER_WRITE {
                    let Some(Ok((channel, data))) = frames.as_mut().map(mpsc::Receiver::try_recv) else { break };
                    write_frame(&mut out, channel, &data);
                }
                let written = tokio::time::timeout(cfg.write_timeout, stream.write_all(&out)).await;
                if !matches!(written, Ok(Ok(()))) {
                    debug!("interleaved client not reading; closing");
                    return Read::Closed;
                }
                continue;
            }
            // `poll_read_ready` rather than `readable()`: the waker lives in
            // the socket's registration, and the idle future stays small.
            r = tokio::time::timeout_at(
                deadline.into(),
                std::future::poll_fn(|cx| stream.poll_read_ready(cx)),
            ) => match r {
                // Buffer space only once there is something to read.
                Ok(Ok(())) => {
                    buf.reserve(4096);
                    match stream.try_read_buf(buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // A stale readiness: give the space back.
                            if buf.is_empty() {
                                *buf = BytesMut::new();
                            }
                            continue;
                        }
                        other => Ok(other),
                    }
                }
                Ok(Err(e)) => Ok(Err(e)),
                Err(elapsed) => Err(elapsed),
            },
        };
        match r {
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
            Ok(Ok(_)) => return Read::More,
            Err(_) if partial_since.is_some() => {
                debug!("request not completed within the read timeout");
                shared.refusals.refuse(Limit::ReadTimeout);
                let _ = write(
                    shared,
                    stream,
                    &base_response(StatusCode::REQUEST_TIMEOUT, None),
                )
                .await;
                return Read::Closed;
            }
            Err(_) if shared.sessions.owned_by_conn(conn_id) => {
                idle_deadline = Instant::now() + cfg.idle_timeout;
                continue;
            }
            Err(_) => {
                debug!("idle connection closed");
                return Read::Closed;
            }
        }
    }
}

async fn write(shared: &Shared, stream: &mut TcpStream, response: &Response) -> bool {
    let bytes = response.to_bytes();
    trace!(status = response.status.0, "response");
    matches!(
        tokio::time::timeout(shared.config.write_timeout, stream.write_all(&bytes)).await,
        Ok(Ok(()))
    )
}
