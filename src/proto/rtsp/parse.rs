//! Streaming request parser (RFC 2326 §6, §10.12 interleaved frames).
//! PLACEHOLDER: signatures fixed, bodies to be written.

use bytes::Bytes;

use super::{Request, StatusCode};

/// Caps on what one request may occupy. Every one has a default and a CLI knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CRLF excluded (default 4 KiB).
    pub max_request_line: usize,
    /// Longest Request-URI (default 2 KiB); longer gets 414.
    pub max_uri: usize,
    /// Most header lines (default 256).
    pub max_headers: usize,
    /// Longest header line, name and value (default 2 KiB... value cap).
    pub max_header_line: usize,
    /// Largest whole head: request line + headers + blank line (default 16 KiB).
    pub max_head: usize,
    /// Largest body (default 64 KiB); larger gets 413.
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
    /// A whole request occupying the first `consumed` bytes.
    Request { request: Request, consumed: usize },
    /// A `$` interleaved frame (RFC 2326 §10.12).
    Interleaved { channel: u8, payload: Bytes, consumed: usize },
}

/// Why the bytes cannot be a request. `status` is what to answer (when the
/// request line was readable), and the connection is then closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {pos}")]
pub struct ParseError {
    pub kind: &'static str,
    pub pos: usize,
    pub status: StatusCode,
    /// The CSeq, if the head got far enough to read a valid one.
    pub cseq: Option<u32>,
}

/// Parses one message from the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let _ = (buf, limits);
    todo!()
}
