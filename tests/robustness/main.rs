//! Robustness tests: the cases of `docs/ROBUSTNESS.md` that apply to an on-demand
//! WAV server with UDP transport (B1–B7, B10, B11 #75/#78/#79, B12
//! #81/#83/#85/#86), run against the built binary, one module per section.
//!
//! Every test starts its own server with a *canary* ([`fixture`]): one UDP
//! session playing a generated 60 s clip (8 kHz mono, sample `n` has the
//! value `n as u16`) from before the first case to after the last one. When
//! the test ends the canary must have seen no RTP sequence gap, timestamps
//! advancing by exactly 160 per packet, payloads matching the counting
//! pattern, one stream's packet rate, and prompt GET_PARAMETER keepalives
//! (I2); the process must still be running, must not have logged a panic,
//! and must answer a new OPTIONS (I1).
//!
//! Every response read here goes through `common::Rtsp`, which checks I7: a
//! well-formed status line and headers (no bare CR/LF/NUL), exactly one
//! correct `Content-Length`, the CSeq echoed (digits only) when the request
//! had a valid one, and no text that a request tried to inject.
//!
//! The server is the built binary, started through `common::Server`, whose
//! captured stderr is scanned for panics in connection tasks (I1), which
//! tokio would otherwise swallow without the process exiting.

#[path = "../common/mod.rs"]
mod common;
mod fixture;
mod table;

mod b10_interleaved;
mod b11_udp_rtcp;
mod b12_resources;
mod b1_framing;
mod b2_content_length;
mod b3_cseq_session;
mod b4_methods_state;
mod b5_transport;
mod b6_range;
mod b7_paths;
