//! A control connection's input side (RFC 2326 §10.12 frames and §6
//! requests share one byte stream): the bytes read and not yet consumed, and
//! the request parser's progress through them.
//!
//! What one read costs is kept small because a client may send a request one
//! byte per TCP segment (issue 10): the parser resumes where it stopped
//! instead of starting over, the buffer grows only when little room is left
//! (never on every read), and a read that returns less than the room given
//! tells tokio the socket is drained, so no second `recv` is made just to get
//! `EAGAIN`. An idle connection holds no buffer at all: it is freed whenever
//! everything read has been consumed and the socket has nothing more.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncRead;

use crate::proto::rtsp::{
    parse_response, Limits, ParseError, Parsed, ParsedResponse, RequestParser,
};

/// Room made for a read: the first reserve of a connection's buffer, and
/// the least the buffer grows by.
pub const READ_CHUNK: usize = 4096;

/// Below this much free room, the buffer grows before the next read (by
/// doubling, past [`READ_CHUNK`]), so a trickled request causes a handful
/// of allocations in all, not one per read.
pub const READ_MIN_ROOM: usize = 1024;

/// The unconsumed bytes of one connection and the parser's state over them.
#[derive(Debug)]
pub struct Input {
    buf: BytesMut,
    parser: RequestParser,
    limits: Limits,
}

impl Input {
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: BytesMut::new(),
            parser: RequestParser::new(limits),
            limits,
        }
    }

    /// The next whole message in the buffer, which is then consumed;
    /// `Incomplete` until one is there. Only bytes not seen by an earlier
    /// call are scanned.
    pub fn next_message(&mut self) -> Result<Parsed, ParseError> {
        // A client's answer to the server's own request (REDIRECT, RFC 2326
        // §10.15) is read whole and dropped.
        while self.buf.starts_with(b"RTSP/") {
            match parse_response(&self.buf, &self.limits)? {
                ParsedResponse::Response { consumed, .. } => {
                    self.buf.advance(consumed);
                    self.parser = RequestParser::new(self.limits);
                }
                _ => return Ok(Parsed::Incomplete),
            }
        }
        let parsed = self.parser.parse(&self.buf)?;
        if let Parsed::Request { consumed, .. } | Parsed::Interleaved { consumed, .. } = parsed {
            self.buf.advance(consumed);
        }
        Ok(parsed)
    }

    /// Nothing read is waiting to be consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Frees the buffer when nothing in it is waiting (an idle connection
    /// between requests holds no memory).
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Makes room for a read: [`READ_CHUNK`] bytes for an empty buffer,
    /// more only once less than [`READ_MIN_ROOM`] is free.
    pub fn reserve_for_read(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_MIN_ROOM {
            self.buf.reserve(READ_CHUNK);
        }
    }

    /// The buffer's capacity, for tests and accounting.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// One read from `r` into the buffer: `Ready(Ok(0))` at end of stream.
    /// Room is made first; an empty buffer is freed again when nothing was
    /// there (a stale readiness), so waiting holds no memory.
    pub fn poll_read_from<R: AsyncRead>(
        &mut self,
        cx: &mut Context<'_>,
        r: Pin<&mut R>,
    ) -> Poll<io::Result<usize>> {
        self.reserve_for_read();
        let polled = tokio_util::io::poll_read_buf(r, cx, &mut self.buf);
        if polled.is_pending() {
            self.release_if_empty();
        }
        polled
    }

    /// Bytes the parser has looked at on this connection (see
    /// [`RequestParser::examined`]).
    pub fn examined(&self) -> u64 {
        self.parser.examined()
    }
}
