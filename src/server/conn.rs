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
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::handler::{self, base_response};
use super::{ConnSlot, Shared};
use crate::proto::rtsp::{parse, Parsed, Response, StatusCode};

/// What to do after a read attempt.
enum Read {
    More,
    Closed,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    conn_id: u64,
    slot: Option<ConnSlot>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let limits = shared.config.limits;
    let mut buf = BytesMut::with_capacity(4096);
    let mut partial_since: Option<Instant> = None;
    debug!("connection opened");
    loop {
        // Answer everything already buffered, in order.
        loop {
            match parse(&buf, &limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Interleaved {
                    channel, consumed, ..
                }) => {
                    // No interleaved transport is set up on this server yet:
                    // the frame is skipped, never read as a request.
                    trace!(channel, "interleaved frame ignored");
                    buf.advance(consumed);
                }
                Ok(Parsed::Request { request, consumed }) => {
                    buf.advance(consumed);
                    let response = if slot.is_none() {
                        base_response(StatusCode::SERVICE_UNAVAILABLE, request.cseq())
                    } else {
                        handler::handle(&shared, &request, peer, conn_id).await
                    };
                    if !write(&shared, &mut stream, &response).await || slot.is_none() {
                        return;
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
            &cancel,
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

async fn read(
    shared: &Shared,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    partial_since: Option<Instant>,
    conn_id: u64,
    cancel: &CancellationToken,
) -> Read {
    let cfg = &shared.config;
    loop {
        let deadline = match partial_since {
            Some(t) => t + cfg.read_timeout,
            None => Instant::now() + cfg.idle_timeout,
        };
        buf.reserve(4096);
        let r = tokio::select! {
            _ = cancel.cancelled() => return Read::Closed,
            r = tokio::time::timeout_at(deadline.into(), stream.read_buf(buf)) => r,
        };
        match r {
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
            Ok(Ok(_)) => return Read::More,
            Err(_) if partial_since.is_some() => {
                debug!("request not completed within the read timeout");
                let _ = write(
                    shared,
                    stream,
                    &base_response(StatusCode::REQUEST_TIMEOUT, None),
                )
                .await;
                return Read::Closed;
            }
            Err(_) if shared.sessions.owned_by_conn(conn_id) => continue,
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
