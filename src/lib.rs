//! rtspd: an RTSP/1.0 streaming media server (RFC 2326) with paced RTP and
//! RTCP (RFC 3550).
//!
//! - [`proto`] is the sans-IO core: parsing, the session state machine,
//!   packetizers, RTCP and pacing maths. It never touches sockets or clocks.
//! - [`media`] reads clips from disk.
//! - [`config`] reads the config file and overlays the command line.
//! - [`server`] is the tokio edge: TCP control connections, the shared UDP
//!   RTP/RTCP port pair and the one pacing loop.
//! - [`load`] is `rtspd load`, the load tester and measuring receiver.
//! - [`net`] wraps the batched UDP system calls both sides use (Linux).
//! - [`metrics`] holds the counters and histograms the server keeps.
//! - [`http`] is the HTTP side: Prometheus metrics, the JSON API, the status
//!   page and SDP over HTTP.

#[cfg(not(target_os = "linux"))]
compile_error!("rtspd batches UDP with sendmmsg/recvmmsg and builds on Linux only");

pub mod config;
pub mod http;
pub mod load;
pub mod media;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod server;
pub mod upstream;
