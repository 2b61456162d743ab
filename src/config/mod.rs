//! The config file (`rtspd --config rtspd.toml`) and how the command line
//! overlays it.
//!
//! Every `serve` option has a key, in one of the sections `[server]`,
//! `[limits]`, `[http]`, `[tls]`, `[log]` and `[auth]`; live channels are
//! `[[live]]` tables, users `[[users]]` and access rules `[[paths]]`
//! ([`auth`]). A value comes from the command line if a flag gave it, else
//! from the file, else from the built-in default ([`Settings::default`]).
//! A `--live` flag adds a channel, or replaces the file's channel of the
//! same name.
//!
//! - [`file`] reads TOML: an unknown key is an error with its line and the
//!   nearest valid key, a wrong value names the key and what it allows.
//! - [`cli`] holds the `serve` flags, as [`CliOverrides`].
//! - [`value`] has the key types that carry their allowed range.
//!
//! [`load`] is the one entry point: the binary calls it at start, and a
//! reload (SIGHUP) calls it again with the same [`CliOverrides`]; it
//! touches nothing but the file, so a bad file changes nothing.
//!
//! Another section (such as `[[users]]` or `[[paths]]`) is a field of
//! [`Settings`] and an arm of [`file::section`]; nothing else changes.

pub mod auth;
pub mod cli;
pub mod file;
pub mod reload;
pub mod value;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::http::HttpConfig;
use crate::media::ClipOptions;
use crate::proto::rtsp::Limits;
use crate::server::live::LiveSpec;
use crate::server::placement::PacerPriority;
use crate::server::sessions::SessionLimits;
use crate::server::tls::TlsConfig;
use crate::server::Config;
pub use cli::CliOverrides;
pub use file::FileError;
use value::{as_str, Int, ANY};
pub use value::{HttpListen, LogFormat, LogLevel, PacerCpu, Port};

/// Every key, as the file spells it: the file's contents over the
/// built-in defaults, then the command line over both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub limits: LimitSettings,
    pub http: HttpSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveTable>,
    pub auth: auth::AuthSettings,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<auth::UserTable>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<auth::PathTable>,
}

/// `[server]`: what is served, where, and how it is paced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub media: PathBuf,
    pub bind: IpAddr,
    pub port: Port,
    pub rtp_port: Int<0, 65535>,
    /// Seconds (0 counts as 1).
    pub session_timeout: Int<0, ANY>,
    pub ptime: Int<1, 1000>,
    pub mtu: Int<64, 65000>,
    pub fps: Int<1, 300>,
    pub send_ahead_us: Int<0, 10_000>,
    pub send_batch: Int<1, 1024>,
    /// Datagrams to one destination leave as one segmented message.
    pub udp_gso: bool,
    pub max_clip_mib: Int<0, ANY>,
    pub pacer_priority: PacerPriority,
    pub pacer_cpu: PacerCpu,
    pub allow_publish: bool,
    pub live_prebuffer_ms: Int<0, 1000>,
    /// Milliseconds a relayed packet may wait in the server before it is
    /// dropped (with its video up to the next keyframe).
    pub relay_max_delay_ms: Int<1, 60_000>,
    /// Microseconds each listener of a relay channel widens the window its
    /// packets' fan-out is spread over (0: no spreading).
    pub relay_spread_us_per_listener: Int<0, 10_000>,
    /// RTSP over HTTP tunnels on the RTSP port and the HTTP listener.
    pub tunnel: bool,
    /// Milliseconds between polls of the `least_readers` edges' APIs
    /// (each poll also times out after this long, at most 2 s).
    pub redirect_poll_ms: Int<100, 3_600_000>,
    /// On SIGTERM, drain to this RTSP base URL (empty: stop at once).
    pub drain_to: String,
    /// Seconds a drain waits for redirected clients to leave.
    pub drain_timeout: Int<0, 86_400>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            media: PathBuf::from("media"),
            bind: IpAddr::from([0, 0, 0, 0]),
            port: Port::Auto,
            rtp_port: Int::of(6970),
            session_timeout: Int::of(60),
            ptime: Int::of(20),
            mtu: Int::of(1400),
            fps: Int::of(25),
            send_ahead_us: Int::of(500),
            send_batch: Int::of(64),
            udp_gso: true,
            max_clip_mib: Int::of(512),
            pacer_priority: PacerPriority::Auto,
            pacer_cpu: PacerCpu::None,
            allow_publish: false,
            live_prebuffer_ms: Int::of(200),
            relay_max_delay_ms: Int::of(500),
            relay_spread_us_per_listener: Int::of(40),
            tunnel: true,
            redirect_poll_ms: Int::of(2000),
            drain_to: String::new(),
            drain_timeout: Int::of(30),
        }
    }
}

/// `[limits]`: what one client, or all of them, may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    pub max_connections: Int<0, ANY>,
    pub max_connections_per_ip: Int<0, ANY>,
    pub max_sessions: Int<0, ANY>,
    pub max_sessions_per_ip: Int<0, ANY>,
    pub max_head_bytes: Int<0, ANY>,
    pub max_headers: Int<0, ANY>,
    pub max_body_bytes: Int<0, ANY>,
    /// Seconds (0 counts as 1), like the other two timeouts.
    pub read_timeout: Int<0, ANY>,
    pub write_timeout: Int<0, ANY>,
    pub idle_timeout: Int<0, ANY>,
    /// Frames (0 counts as 1).
    pub max_client_queue: Int<0, ANY>,
    /// Frames per second (0 counts as 1).
    pub max_client_frames_per_sec: Int<0, { u32::MAX as u64 }>,
    /// Interleaved frames a TCP publisher may send per second.
    pub max_publisher_frames_per_sec: Int<0, { u32::MAX as u64 }>,
    /// Publishers' and upstreams' packets queued for the pacing thread
    /// (0 counts as 1); a packet that finds it full is dropped.
    pub max_publish_queue: Int<0, { 1 << 20 }>,
    /// KiB a relay channel's GOP cache may hold; a longer GOP is not
    /// cached (its newcomers wait for the next keyframe).
    pub max_gop_cache_kib: Int<0, { 1 << 20 }>,
    pub max_published_channels: Int<0, ANY>,
    /// Failed logins from one IP within 60 s before it is refused (403)
    /// for 60 s (0 counts as 1).
    pub max_auth_failures: Int<0, ANY>,
    /// Consecutive requests naming unknown sessions (454) before a
    /// connection is closed (0 counts as 1).
    pub max_unknown_sessions: Int<0, ANY>,
    /// Seconds a tunnel's GET waits for its POST (0 counts as 1).
    pub tunnel_timeout: Int<0, ANY>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_connections: Int::of(10_000),
            max_connections_per_ip: Int::of(256),
            max_sessions: Int::of(10_000),
            max_sessions_per_ip: Int::of(256),
            max_head_bytes: Int::of(16 * 1024),
            max_headers: Int::of(256),
            max_body_bytes: Int::of(64 * 1024),
            read_timeout: Int::of(10),
            write_timeout: Int::of(10),
            idle_timeout: Int::of(60),
            max_client_queue: Int::of(512),
            max_client_frames_per_sec: Int::of(1000),
            max_publisher_frames_per_sec: Int::of(20_000),
            max_publish_queue: Int::of(4096),
            max_gop_cache_kib: Int::of(2048),
            max_published_channels: Int::of(64),
            max_auth_failures: Int::of(10),
            max_unknown_sessions: Int::of(20),
            tunnel_timeout: Int::of(10),
        }
    }
}

/// `[http]`: the HTTP side (metrics, API, status page) and its limits,
/// bounded like the RTSP side's (flags `--http`, `--http-max-connections`,
/// ...), and who may use it (`[http.permissions]`, `[[http.tokens]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(with = "as_str")]
    pub listen: HttpListen,
    /// Connections at once (0 counts as 1).
    pub max_connections: Int<0, ANY>,
    /// Request head, in bytes (under 8 KiB counts as 8 KiB).
    pub max_head_bytes: Int<0, ANY>,
    /// Header lines (0 counts as 1).
    pub max_headers: Int<0, ANY>,
    pub max_body_bytes: Int<0, ANY>,
    /// Seconds to send a request head, and before an idle connection closes.
    pub read_timeout: Int<0, ANY>,
    /// Seconds a response may wait for the client to read.
    pub write_timeout: Int<0, ANY>,
    /// Who may use the API, the metrics and the status page.
    pub permissions: auth::HttpPermissions,
    /// Bearer tokens, by name, as SHA-256 hashes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<auth::TokenTable>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: HttpListen::default(),
            max_connections: Int::of(64),
            max_head_bytes: Int::of(16 * 1024),
            max_headers: Int::of(64),
            max_body_bytes: Int::of(64 * 1024),
            read_timeout: Int::of(10),
            write_timeout: Int::of(10),
            permissions: auth::HttpPermissions::default(),
            tokens: Vec::new(),
        }
    }
}

/// `[tls]`: RTSPS, RTSP over TLS (flags `--tls-cert`, `--rtsps-port`, ...).
/// Empty `cert` and `key` leave it off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, PEM; empty: no RTSPS.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// `"auto"` tries 322, then 8322; 0 picks a free port.
    pub rtsps_port: Port,
    /// Plain RTSP requests other than OPTIONS get 403.
    pub require: bool,
    /// Seconds a client has to complete the TLS handshake (0 counts as 1).
    pub handshake_timeout: Int<0, ANY>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            rtsps_port: Port::Auto,
            require: false,
            handshake_timeout: Int::of(10),
        }
    }
}

/// `[log]`: the level (`RUST_LOG` overrides it) and the line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// One `[[live]]` table: the keys of one `--live NAME=SOURCE,key=value`.
/// [`file`] turns it into a [`LiveSpec`] through the same checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveTable {
    pub name: String,
    /// `file:PATH`, `pipe:COMMAND`, `stdin` or `publish`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Int<0, ANY>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Int<0, ANY>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// A relay channel keeps its last GOP for newcomers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gop_cache: Option<bool>,
    /// Pulled channels (`source = "rtsp://..."`): `auto`, `udp` or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<bool>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_after: Option<Int<0, ANY>>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<Int<0, ANY>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sdp: Option<Int<0, ANY>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packet_rate: Option<Int<0, ANY>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<Int<0, ANY>>,
    /// Seconds without a packet before a playing upstream is reconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_timeout: Option<Int<0, ANY>>,
    /// `rtsps://`: PEM file of the CA certificates that verify the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl From<&LiveSpec> for LiveTable {
    fn from(spec: &LiveSpec) -> Self {
        use crate::server::live::Source;
        let raw = matches!(spec.source, Source::Pipe(_) | Source::Stdin);
        let pull = matches!(spec.source, Source::Pull(_)).then_some(&spec.pull);
        Self {
            name: spec.name.clone(),
            source: spec.source.to_string(),
            codec: spec.codec_name().map(Into::into),
            rate: spec.rate.map(|r| Int::of(r.into())),
            channels: spec.channels.map(|c| Int::of(c.into())),
            format: (raw || spec.big_endian)
                .then(|| if spec.big_endian { "s16be" } else { "s16le" }.into()),
            gop_cache: spec.gop_cache.then_some(true),
            transport: pull.map(|p| p.transport.to_string()),
            on_demand: pull.map(|p| p.on_demand),
            close_after: pull.map(|p| Int::of(p.close_after.as_secs())),
            start_timeout: pull.map(|p| Int::of(p.start_timeout.as_secs())),
            max_sdp: pull.map(|p| Int::of(p.max_sdp as u64)),
            max_packet_rate: pull.map(|p| Int::of(p.max_packet_rate.into())),
            max_bitrate: pull.map(|p| Int::of(p.max_bitrate)),
            stall_timeout: pull.map(|p| Int::of(p.stall_timeout.as_secs())),
            ca_file: pull.and_then(|p| p.tls.ca_file.clone()),
        }
    }
}

/// The configuration in force: what the server, the HTTP side and the
/// logger are built from, and the keys it came from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub server: Config,
    pub http: HttpSettings,
    pub log: LogSettings,
    /// Every key with its value (what `rtspd check-config` prints).
    pub settings: Settings,
}

impl Effective {
    /// Every key as TOML.
    pub fn to_toml(&self) -> String {
        // Every key type serializes to a TOML value; a failure would be a
        // bug, and shows as a comment rather than a crash.
        toml::to_string(&self.redacted())
            .unwrap_or_else(|e| format!("# cannot write the settings: {e}\n"))
    }

    /// The settings with every secret replaced by [`REDACTED`]: users' HA1
    /// hashes (as good as their passwords for Digest), bearer tokens'
    /// hashes, and the password in a pulled source's URL.
    fn redacted(&self) -> Settings {
        let mut s = self.settings.clone();
        for u in &mut s.users {
            for h in [&mut u.ha1_md5, &mut u.ha1_sha256] {
                if h.is_some() {
                    *h = Some(REDACTED.into());
                }
            }
        }
        for t in &mut s.http.tokens {
            t.sha256 = REDACTED.into();
        }
        for l in &mut s.live {
            if l.source.contains("://") {
                l.source = crate::server::live::redact(&l.source);
            }
        }
        s
    }
}

/// What a printed configuration shows in place of a secret.
pub const REDACTED: &str = "(redacted)";

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    File { path: PathBuf, error: FileError },
    /// A command-line value that does not fit its key.
    #[error("{flag}: {message}")]
    Flag { flag: String, message: String },
    /// `drain_to` (`--drain-to`) is not another node's RTSP base URL.
    #[error("drain_to: {0}")]
    DrainTo(String),
    /// A `[[paths]]` redirect to this server itself (a loop).
    #[error("paths[{rule}].redirect: {url} is this server ({bind} port {port}): readers would be redirected to it forever")]
    RedirectLoop {
        rule: usize,
        url: String,
        bind: IpAddr,
        port: String,
    },
}

/// Reads the file at `path`, applies `cli` over it and returns the merged
/// configuration. Nothing is started or bound: a caller (start, or a
/// reload) applies the result only if this succeeds.
pub fn load(path: &Path, cli: &CliOverrides) -> Result<Effective, ConfigError> {
    let text = read_capped(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parsed = file::parse(&text).map_err(|error| ConfigError::File {
        path: path.to_owned(),
        error,
    })?;
    merge(parsed, cli)
}

/// Largest config file read. Real ones are a few KiB; the cap keeps a
/// wrong path (a device, a FIFO, a huge log) from filling memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file's text, refused past [`MAX_FILE_BYTES`].
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_BYTES} bytes; is this the config file?"),
        ));
    }
    Ok(text)
}

/// The configuration without a file: the built-in defaults under `cli`.
pub fn from_cli(cli: &CliOverrides) -> Result<Effective, ConfigError> {
    merge(file::Parsed::default(), cli)
}

/// `cli` over what a file gave.
fn merge(parsed: file::Parsed, cli: &CliOverrides) -> Result<Effective, ConfigError> {
    let mut settings = parsed.settings;
    settings.server = overlay(&settings.server, &cli.server)?;
    if let Some(media) = &cli.server.media {
        settings.server.media.clone_from(media);
    }
    settings.limits = overlay(&settings.limits, &cli.limits)?;
    // The address is set apart: written out and read back, the default
    // would become an explicit one (whose bind failure is an error).
    let listen = settings.http.listen;
    settings.http = overlay(&settings.http, &cli.http_limits)?;
    settings.http.listen = cli.http.unwrap_or(listen);
    settings.tls = overlay(&settings.tls, &cli.tls)?;
    if let Some(level) = LogLevel::from_verbosity(cli.verbose) {
        settings.log.level = level;
    }
    if let Some(format) = cli.log_format {
        settings.log.format = format;
    }
    // A flag's channel replaces the file's of that name; two flags naming
    // one channel stay an error (reported when the channels start).
    let mut live = parsed.live;
    live.retain(|f| !cli.live.iter().any(|c| c.name == f.name));
    live.extend(cli.live.iter().cloned());
    settings.live = live.iter().map(LiveTable::from).collect();
    check_redirect_loops(&settings)?;
    Ok(Effective {
        server: settings.server_config(live),
        http: settings.http.clone(),
        log: settings.log,
        settings,
    })
}

/// A redirect naming this server's own listen address and port is an
/// error (RFC 2326 §11.3.3 gives no loop limit; clients would bounce).
fn check_redirect_loops(s: &Settings) -> Result<(), ConfigError> {
    use crate::proto::redirect::{is_self, Listening};
    let mut ports = s.server.port.get().map_or(vec![554, 8554], |p| vec![p]);
    if !s.tls.cert.as_os_str().is_empty() {
        match s.tls.rtsps_port.get() {
            Some(p) => ports.push(p),
            None => ports.extend([322, 8322]),
        }
    }
    let here = Listening {
        bind: s.server.bind,
        ports,
    };
    if !s.server.drain_to.is_empty() {
        let url = &s.server.drain_to;
        crate::proto::redirect::base_url(url, crate::proto::redirect::RTSP_SCHEMES)
            .map_err(|e| ConfigError::DrainTo(e.to_string()))?;
        if is_self(url, &here) {
            return Err(ConfigError::DrainTo(format!("{url} is this server")));
        }
    }
    for (rule, p) in s.paths.iter().enumerate() {
        if let Some(url) = p.redirect.iter().find(|u| is_self(u, &here)) {
            return Err(ConfigError::RedirectLoop {
                rule,
                url: url.clone(),
                bind: here.bind,
                port: s.server.port.get().map_or("auto".into(), |p| p.to_string()),
            });
        }
    }
    Ok(())
}

/// `base` with every key `top` sets replaced. `top` serializes only the
/// keys its flags gave (`None` is left out), under the same names.
fn overlay<T: Serialize + DeserializeOwned>(
    base: &T,
    top: &impl Serialize,
) -> Result<T, ConfigError> {
    let flag_error = |message: String| ConfigError::Flag {
        flag: "command line".into(),
        message,
    };
    let mut table = toml::Table::try_from(base).map_err(|e| flag_error(e.to_string()))?;
    let given = toml::Table::try_from(top).map_err(|e| flag_error(e.to_string()))?;
    let flags: Vec<String> = given
        .keys()
        .map(|k| format!("--{}", k.replace('_', "-")))
        .collect();
    table.extend(given);
    table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Flag {
            flag: flags.join(", "),
            message: e.message().to_owned(),
        })
}

impl Settings {
    /// The server's configuration from these keys, with `live` channels.
    pub fn server_config(&self, live: Vec<LiveSpec>) -> Config {
        let (s, l, h, t) = (&self.server, &self.limits, &self.http, &self.tls);
        let secs = |v: Int<0, ANY>| Duration::from_secs(v.get().max(1));
        Config {
            media: s.media.clone(),
            bind: s.bind,
            port: s.port.get(),
            rtp_port: s.rtp_port.get() as u16,
            session_timeout: secs(s.session_timeout),
            clip: ClipOptions {
                ptime: Duration::from_millis(s.ptime.get()),
                max_payload: s.mtu.usize(),
                max_clip_bytes: s.max_clip_mib.get() << 20,
                fps: s.fps.get() as u32,
                ..ClipOptions::default()
            },
            limits: Limits {
                max_head: l.max_head_bytes.usize(),
                max_headers: l.max_headers.usize(),
                max_body: l.max_body_bytes.usize(),
                ..Limits::default()
            },
            max_connections: l.max_connections.usize(),
            max_connections_per_ip: l.max_connections_per_ip.usize(),
            sessions: SessionLimits {
                max_sessions: l.max_sessions.usize(),
                max_sessions_per_ip: l.max_sessions_per_ip.usize(),
            },
            read_timeout: secs(l.read_timeout),
            write_timeout: secs(l.write_timeout),
            idle_timeout: secs(l.idle_timeout),
            client_queue: l.max_client_queue.usize().max(1),
            max_client_frames_per_sec: (l.max_client_frames_per_sec.get() as u32).max(1),
            max_publisher_frames_per_sec: (l.max_publisher_frames_per_sec.get() as u32).max(1),
            data_queue: l.max_publish_queue.usize().max(1),
            gop_cache_bytes: l.max_gop_cache_kib.usize() * 1024,
            send_ahead: Duration::from_micros(s.send_ahead_us.get()),
            send_batch: s.send_batch.usize(),
            udp_gso: s.udp_gso,
            pacer_priority: s.pacer_priority,
            pacer_cpu: s.pacer_cpu.get(),
            live,
            allow_publish: s.allow_publish,
            max_published_channels: l.max_published_channels.usize(),
            live_prebuffer: Duration::from_millis(s.live_prebuffer_ms.get()),
            relay_max_delay: Duration::from_millis(s.relay_max_delay_ms.get()),
            relay_spread_per_listener: Duration::from_micros(s.relay_spread_us_per_listener.get()),
            http: HttpConfig {
                listen: h.listen,
                max_connections: h.max_connections.usize().max(1),
                max_head_bytes: h.max_head_bytes.usize(),
                max_headers: h.max_headers.usize().max(1),
                max_body_bytes: h.max_body_bytes.usize(),
                read_timeout: secs(h.read_timeout),
                write_timeout: secs(h.write_timeout),
                reload: None,
            },
            tls: TlsConfig {
                cert: t.cert.clone(),
                key: t.key.clone(),
                port: t.rtsps_port.get(),
                require: t.require,
                handshake_timeout: secs(t.handshake_timeout),
            },
            auth: auth::auth_config(self),
            tunnel: s.tunnel,
            tunnel_timeout: secs(l.tunnel_timeout),
            redirect_poll: Duration::from_millis(s.redirect_poll_ms.get()),
            drain_to: (!s.drain_to.is_empty()).then(|| s.drain_to.clone()),
            drain_timeout: Duration::from_secs(s.drain_timeout.get()),
            ..Config::default()
        }
    }
}
