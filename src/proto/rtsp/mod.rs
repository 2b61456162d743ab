//! RTSP/1.0 messages (RFC 2326 §6–§7): requests, responses, methods, status
//! codes and typed headers.
//!
//! This module is sans-IO: [`RequestParser`] (and the one-shot [`parse()`])
//! turns bytes into [`Request`]s or interleaved frames (RFC 2326 §10.12) and
//! [`Response::write_to`] writes to any [`std::io::Write`]. Nothing here
//! touches a socket or a clock.

mod message;
pub mod parse;
pub mod range;
pub mod rtp_info;
pub mod session_header;
pub mod status;
pub mod transport;

pub use message::{parse_cseq, Headers, Method, Request, Response};
pub use parse::{parse, parse_response, Limits, ParseError, Parsed, ParsedResponse, RequestParser};
pub use status::StatusCode;
