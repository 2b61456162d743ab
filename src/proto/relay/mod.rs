//! Relaying RTP without decoding it (issue 13): live channels whose tracks
//! are whatever a publisher or an upstream sends (H.264, H.265, AAC, Opus,
//! G.711, L16), forwarded payload for payload.
//!
//! - [`restamp`]: each track leaves with the channel's own SSRC, sequence
//!   numbers and timestamps, continuous across publishers and upstream
//!   reconnects (RFC 3550 §5.1, A.1).
//! - [`nal`]: H.264 (RFC 6184) and H.265 (RFC 7798) payloads: keyframe
//!   starts for late joiners, in-band parameter sets, and re-fragmenting a
//!   packet larger than our MTU.

pub mod channel;
pub mod nal;
pub mod offer;
pub mod restamp;
