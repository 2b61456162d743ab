//! The `serve` flags. Each is the key of the same name (dashes for
//! underscores) in `[server]` or `[limits]`; `--http-` or `--tls-` and a
//! key of `[http]` or `[tls]`, and `--rtsps-port`; or `--http`, `-v`,
//! `--log-format` and `--live`. A flag not given is `None` and leaves the
//! file's value (or the default, which its help shows) in force.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::value::{Int, ANY};
use super::{HttpListen, LogFormat};
use crate::server::live::LiveSpec;
use crate::server::placement::PacerPriority;

/// What the command line says, over the file. A reload applies the same
/// overrides again, so a flag keeps winning over the file.
#[derive(Args, Debug, Clone, Default)]
pub struct CliOverrides {
    #[command(flatten)]
    pub server: ServerFlags,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// A live channel at /live/NAME (repeatable; replaces the config
    /// file's channel of that name). SOURCE is file:PATH.wav (looped),
    /// pipe:COMMAND or stdin (raw PCM; give rate=, channels=,
    /// format=s16le|s16be), or publish (fed by an RTSP publisher: ANNOUNCE
    /// and RECORD; rate= and channels= fix its format, else the first
    /// publisher's is used). codec=l16|pcmu|pcma is what listeners get.
    /// A publisher's video (or any non-PCM stream) is relayed as it comes;
    /// gop_cache=true keeps its last GOP so newcomers start at once.
    #[arg(long = "live", value_name = "NAME=SOURCE[,key=value...]")]
    pub live: Vec<LiveSpec>,
    /// The HTTP side's address, or off. If the default is taken, rtspd
    /// runs without HTTP; an address given here must bind.
    /// [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT|off")]
    pub http: Option<HttpListen>,
    #[command(flatten)]
    pub http_limits: HttpFlags,
    #[command(flatten)]
    pub tls: TlsFlags,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as text, or as JSON lines for log shippers.
    /// [default: text]
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<LogFormat>,
}

/// The `[server]` keys as flags.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct ServerFlags {
    /// Folder of clips to serve; subfolders are served at their relative
    /// path. [default: media]
    #[arg(long)]
    #[serde(skip)] // set apart: a path need not be UTF-8, a TOML string must
    pub media: Option<PathBuf>,
    /// Address to listen on. [default: 0.0.0.0]
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// RTSP port. Without it, 554 is tried and 8554 used when 554 cannot be
    /// bound. 0 picks a free port (printed at start).
    #[arg(long)]
    pub port: Option<u16>,
    /// The shared server RTP port for all sessions (even); RTCP uses the next
    /// port. 0 picks a free pair. [default: 6970]
    #[arg(long)]
    pub rtp_port: Option<Int<0, 65535>>,
    /// Seconds without a request or RTCP before a session is freed.
    /// [default: 60]
    #[arg(long)]
    pub session_timeout: Option<Int<0, ANY>>,
    /// Milliseconds of audio per RTP packet (1 to 1000). [default: 20]
    #[arg(long)]
    pub ptime: Option<Int<1, 1000>>,
    /// Frame rate of H.264 elementary files (.264) whose SPS gives none
    /// (1 to 300). [default: 25]
    #[arg(long)]
    pub fps: Option<Int<1, 300>>,
    /// Largest RTP payload, in bytes (64 to 65000). [default: 1400]
    #[arg(long)]
    pub mtu: Option<Int<64, 65000>>,
    /// Microseconds a packet may be sent before its deadline, so one wake-up
    /// of the pacing thread serves many sessions (more: less CPU, coarser
    /// pacing; up to 10000). [default: 500]
    #[arg(long)]
    pub send_ahead_us: Option<Int<0, 10_000>>,
    /// Datagrams per sendmmsg call (1: one system call per datagram; up to
    /// 1024). [default: 64]
    #[arg(long)]
    pub send_batch: Option<Int<1, 1024>>,
    /// Send a relay channel's datagrams of one batch that go to one
    /// listener (a frame's packets) as one segmented message (UDP GSO,
    /// Linux 4.18+; off where the kernel lacks it). Clip sessions always
    /// send one datagram per message. [default: true]
    #[arg(long, value_name = "true|false")]
    pub udp_gso: Option<bool>,
    /// Largest clip held in memory, in MiB of 16-bit samples. [default: 512]
    #[arg(long)]
    pub max_clip_mib: Option<Int<0, ANY>>,
    /// Let publishers start a channel at any /live/NAME not configured
    /// (without it, ANNOUNCE to such a name gets 403).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_publish: bool,
    /// Milliseconds of audio a pipe, stdin or published channel buffers
    /// before sending, to ride out its source's jitter (max 1000).
    /// [default: 200]
    #[arg(long)]
    pub live_prebuffer_ms: Option<Int<0, 1000>>,
    /// A relayed (published or pulled) packet still unsent this many
    /// milliseconds after it arrived is dropped, with its video up to the
    /// next keyframe: an overloaded server drops rather than running ever
    /// later (1 to 60000). [default: 500]
    #[arg(long)]
    pub relay_max_delay_ms: Option<Int<1, 60_000>>,
    /// Microseconds each listener of a relay channel widens the window its
    /// packets' fan-out is spread over, so each listener gets every packet
    /// a constant time after it arrived, keyframes as P-frames, instead of
    /// big frames reaching the last listeners late (jitter); the window is
    /// at most a quarter of relay_max_delay_ms; 0 sends to everyone at
    /// once (max 10000). [default: 40]
    #[arg(long)]
    pub relay_spread_us_per_listener: Option<Int<0, 10_000>>,
    /// Scheduling of the pacing thread: auto (real-time where permitted,
    /// else nice -10), realtime, nice or normal. [default: auto]
    #[arg(long)]
    pub pacer_priority: Option<PacerPriority>,
    /// Run the pacing thread alone on this core, and every other thread of
    /// the server on the remaining ones (machines with more than one core).
    #[arg(long, value_name = "N")]
    pub pacer_cpu: Option<usize>,
    /// RTSP over HTTP (QuickTime tunnelling: ffmpeg -rtsp_transport http,
    /// GStreamer rtsph://) on the RTSP port and the HTTP listener.
    /// [default: true]
    #[arg(long, value_name = "true|false")]
    pub tunnel: Option<bool>,
    /// On SIGTERM, drain instead of stopping: new readers get 302 to this
    /// RTSP base URL, playing clients a REDIRECT, and the server stops
    /// once they left (or after --drain-timeout seconds).
    #[arg(long, value_name = "URL")]
    pub drain_to: Option<String>,
    /// Milliseconds between polls of least_readers redirect edges' APIs
    /// (100 to 3600000). [default: 2000]
    #[arg(long)]
    pub redirect_poll_ms: Option<Int<100, 3_600_000>>,
    /// Seconds a drain waits for clients to leave. [default: 30]
    #[arg(long)]
    pub drain_timeout: Option<Int<0, 86_400>>,
}

/// The `[limits]` keys as flags.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct LimitFlags {
    /// Most concurrent RTSP connections. [default: 10000]
    #[arg(long)]
    pub max_connections: Option<Int<0, ANY>>,
    /// Most concurrent RTSP connections from one IP address. [default: 256]
    #[arg(long)]
    pub max_connections_per_ip: Option<Int<0, ANY>>,
    /// Most sessions. [default: 10000]
    #[arg(long)]
    pub max_sessions: Option<Int<0, ANY>>,
    /// Most sessions from one IP address. [default: 256]
    #[arg(long)]
    pub max_sessions_per_ip: Option<Int<0, ANY>>,
    /// Largest request head (request line and headers), in bytes.
    /// [default: 16384]
    #[arg(long)]
    pub max_head_bytes: Option<Int<0, ANY>>,
    /// Most header lines in a request. [default: 256]
    #[arg(long)]
    pub max_headers: Option<Int<0, ANY>>,
    /// Largest request body, in bytes. [default: 65536]
    #[arg(long)]
    pub max_body_bytes: Option<Int<0, ANY>>,
    /// Seconds a client has to finish sending a request once it started.
    /// [default: 10]
    #[arg(long)]
    pub read_timeout: Option<Int<0, ANY>>,
    /// Seconds a response may take to write. [default: 10]
    #[arg(long)]
    pub write_timeout: Option<Int<0, ANY>>,
    /// Seconds before a silent connection that owns no session is closed.
    /// [default: 60]
    #[arg(long)]
    pub idle_timeout: Option<Int<0, ANY>>,
    /// RTP/RTCP frames queued per connection for interleaved (TCP) clients;
    /// a client that reads slower loses frames instead of stalling others.
    /// [default: 512]
    #[arg(long)]
    pub max_client_queue: Option<Int<0, ANY>>,
    /// Interleaved frames (RTCP) a TCP client may send per second before it
    /// is disconnected. [default: 1000]
    #[arg(long)]
    pub max_client_frames_per_sec: Option<Int<0, { u32::MAX as u64 }>>,
    /// Interleaved frames (RTP and RTCP) a TCP publisher may send per
    /// second before it is disconnected (20000 fits about 200 Mbit/s of
    /// video). [default: 20000]
    #[arg(long)]
    pub max_publisher_frames_per_sec: Option<Int<0, { u32::MAX as u64 }>>,
    /// Publishers' and upstreams' RTP packets queued for the pacing
    /// thread; a packet that finds the queue full is dropped (counted).
    /// [default: 4096]
    #[arg(long)]
    pub max_publish_queue: Option<Int<0, { 1 << 20 }>>,
    /// KiB a relay channel's GOP cache may hold (gop_cache); a longer GOP
    /// is not cached and its newcomers wait for the next keyframe.
    /// [default: 2048]
    #[arg(long)]
    pub max_gop_cache_kib: Option<Int<0, { 1 << 20 }>>,
    /// Most channels publishers may start with --allow-publish.
    /// [default: 64]
    #[arg(long)]
    pub max_published_channels: Option<Int<0, ANY>>,
    /// Failed logins from one address within 60 s before it gets 403,
    /// without a challenge, for 60 s. [default: 10]
    #[arg(long)]
    pub max_auth_failures: Option<Int<0, ANY>>,
    /// Consecutive requests naming unknown sessions (454) before the
    /// connection is closed. [default: 20]
    #[arg(long)]
    pub max_unknown_sessions: Option<Int<0, ANY>>,
    /// Seconds an RTSP-over-HTTP GET waits for its POST before it is
    /// closed. [default: 10]
    #[arg(long)]
    pub tunnel_timeout: Option<Int<0, ANY>>,
}

/// The `[http]` limits as flags: `--http-` and the key.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct HttpFlags {
    /// Most concurrent HTTP connections. [default: 64]
    #[arg(long = "http-max-connections")]
    #[serde(rename = "max_connections")]
    pub http_max_connections: Option<Int<0, ANY>>,
    /// Largest HTTP request head, in bytes (at least 8192 is used).
    /// [default: 16384]
    #[arg(long = "http-max-head-bytes")]
    #[serde(rename = "max_head_bytes")]
    pub http_max_head_bytes: Option<Int<0, ANY>>,
    /// Most header lines in an HTTP request. [default: 64]
    #[arg(long = "http-max-headers")]
    #[serde(rename = "max_headers")]
    pub http_max_headers: Option<Int<0, ANY>>,
    /// Largest HTTP request body, in bytes. [default: 65536]
    #[arg(long = "http-max-body-bytes")]
    #[serde(rename = "max_body_bytes")]
    pub http_max_body_bytes: Option<Int<0, ANY>>,
    /// Seconds an HTTP client has to send its request head; an idle HTTP
    /// connection is closed after as long. [default: 10]
    #[arg(long = "http-read-timeout")]
    #[serde(rename = "read_timeout")]
    pub http_read_timeout: Option<Int<0, ANY>>,
    /// Seconds an HTTP response may wait for the client. [default: 10]
    #[arg(long = "http-write-timeout")]
    #[serde(rename = "write_timeout")]
    pub http_write_timeout: Option<Int<0, ANY>>,
}

/// The `[tls]` keys as flags: `--tls-` and the key, and `--rtsps-port`.
#[derive(Args, Debug, Clone, Default, Serialize)]
pub struct TlsFlags {
    /// Certificate chain (PEM) for RTSPS; with --tls-key, turns RTSPS on.
    #[arg(long = "tls-cert", value_name = "FILE")]
    #[serde(rename = "cert", skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long = "tls-key", value_name = "FILE")]
    #[serde(rename = "key", skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// RTSPS port. Without it, 322 is tried and 8322 used when 322 cannot
    /// be bound. 0 picks a free port (printed at start).
    #[arg(long)]
    pub rtsps_port: Option<u16>,
    /// Refuse plain RTSP (403, OPTIONS excepted): clients must use rtsps://.
    #[arg(long = "tls-require")]
    #[serde(rename = "require", skip_serializing_if = "std::ops::Not::not")]
    pub tls_require: bool,
    /// Seconds a client has to complete the TLS handshake. [default: 10]
    #[arg(long = "tls-handshake-timeout")]
    #[serde(rename = "handshake_timeout")]
    pub tls_handshake_timeout: Option<Int<0, ANY>>,
}
