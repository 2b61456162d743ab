//! Live channels configured with `--live NAME=SOURCE[,key=value...]`,
//! served at `rtsp://HOST:PORT/live/NAME` (RFC 2326 §C.1.5: no duration,
//! `Range: npt=now-`). Each runs on the pacing thread from server start,
//! whether or not anyone listens ([`crate::proto::live`]); a `publish`
//! channel whose format is not declared starts with its first publisher
//! ([`super::channels`]).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use tracing::{info, warn};

use super::pacing::{Data, DataHandle};
use crate::media::wav;
use crate::proto::clock::WallClock;
use crate::proto::live::{Channel, ChannelConfig, LiveError};
use crate::proto::pacer::Transmit;
use crate::proto::packetize::Codec;
use crate::proto::relay::channel::{RelayChannel, RelayConfig, TrackSpec};
use crate::proto::relay::offer::RelayTrack;
use crate::proto::sdp::PresentationDescription;

/// The URL path prefix of live channels.
pub use crate::proto::target::LIVE_PREFIX as PREFIX;

/// One `--live` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSpec {
    pub name: String,
    pub source: Source,
    /// What listeners get; `None`: L16, or for `publish` what the
    /// publisher sends.
    pub codec: Option<Codec>,
    /// For raw sources: sample rate, channel count, byte order.
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub big_endian: bool,
    /// A relay channel (video published to it) keeps its last GOP, once,
    /// and a newcomer gets it at once: its first frame without waiting for
    /// the next keyframe.
    pub gop_cache: bool,
    /// How a `rtsp://` or `rtsps://` source is pulled.
    pub pull: PullOptions,
}

/// The keys of a pulled channel (`source = "rtsp://..."`, issue 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    pub transport: crate::proto::upstream::TransportMode,
    /// Opened at the first reader, closed `close_after` after the last.
    pub on_demand: bool,
    pub close_after: Duration,
    /// How long a DESCRIBE waits for the upstream's SDP (then 504).
    pub start_timeout: Duration,
    /// Largest upstream SDP, bytes.
    pub max_sdp: usize,
    /// Packets per second (RTP and RTCP) before the upstream is cut off.
    pub max_packet_rate: u32,
    /// Bits per second before the upstream is cut off.
    pub max_bitrate: u64,
    /// A playing upstream that sends nothing for this long is down (and
    /// reconnected).
    pub stall_timeout: Duration,
    /// How an `rtsps://` upstream's certificate is checked: against
    /// `ca_file` (the pull client has no system trust store).
    pub tls: crate::load::TlsOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            transport: crate::proto::upstream::TransportMode::Auto,
            on_demand: false,
            close_after: Duration::from_secs(10),
            start_timeout: Duration::from_secs(10),
            max_sdp: 64 * 1024,
            max_packet_rate: 20_000,
            max_bitrate: 100_000_000,
            stall_timeout: Duration::from_secs(10),
            tls: crate::load::TlsOptions::default(),
        }
    }
}

/// Where a channel's audio comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A WAV played in a loop.
    File(PathBuf),
    /// Raw PCM from a shell command's standard output.
    Pipe(String),
    /// Raw PCM from rtspd's own standard input.
    Stdin,
    /// Audio from an RTSP publisher (ANNOUNCE/RECORD).
    Publish,
    /// Pulled from an RTSP server or camera: `rtsp://` or `rtsps://`, its
    /// userinfo the credentials (never shown: [`Source`]'s `Display`
    /// leaves the password out).
    Pull(String),
}

/// Why a `--live` option or its source is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--live {0:?}: expected NAME=SOURCE[,codec=l16|pcmu|pcma]")]
    Syntax(String),
    #[error("--live {0}: channel names are letters, digits, '-', '_' and '.'")]
    Name(String),
    #[error(
        "--live {name}: source {given:?} is not one of file:PATH (or a WAV's path), pipe:COMMAND, stdin, publish"
    )]
    Source { name: String, given: String },
    #[error("--live {name}: unknown key or value {kv:?}")]
    Key { name: String, kv: String },
    #[error("--live {name}: {path}: {error}")]
    Media {
        name: String,
        path: String,
        error: String,
    },
    #[error("--live {name}: {error}")]
    Channel { name: String, error: LiveError },
    #[error("--live {0}: the name is used twice")]
    Duplicate(String),
}

/// The codecs a channel may send, by the name `codec=` gives them.
const CODECS: [(&str, Codec); 3] = [
    ("l16", Codec::L16),
    ("pcmu", Codec::Pcmu),
    ("pcma", Codec::Pcma),
];

impl LiveSpec {
    /// A channel `name` fed by `source`: `file:PATH` (or a WAV's path),
    /// `pipe:COMMAND`, `stdin` or `publish`; its keys are set with
    /// [`Self::set`] and checked together with [`Self::check`]. The
    /// `--live` option and the config file's `[[live]]` tables both go
    /// through these three.
    pub fn new(name: &str, source: &str) -> Result<Self, SpecError> {
        if !valid_name(name) {
            return Err(SpecError::Name(name.into()));
        }
        let unsupported = || SpecError::Source {
            name: name.into(),
            given: source.into(),
        };
        let source = if let Some(p) = source.strip_prefix("file:") {
            Source::File(PathBuf::from(p))
        } else if let Some(cmd) = source.strip_prefix("pipe:") {
            if cmd.trim().is_empty() {
                return Err(unsupported());
            }
            Source::Pipe(cmd.to_owned())
        } else if source == "stdin" {
            Source::Stdin
        } else if source == "publish" {
            Source::Publish
        } else if source.starts_with("rtsp://") || source.starts_with("rtsps://") {
            if url::Url::parse(source).map_or(true, |u| u.host().is_none()) {
                return Err(unsupported());
            }
            Source::Pull(source.to_owned())
        } else if source.contains(':') || source.is_empty() {
            return Err(unsupported());
        } else {
            Source::File(PathBuf::from(source))
        };
        Ok(Self {
            name: name.into(),
            source,
            codec: None,
            rate: None,
            channels: None,
            big_endian: false,
            gop_cache: false,
            pull: PullOptions::default(),
        })
    }

    /// Sets one key: `codec`, `rate`, `channels`, `format` or `gop_cache`. The error
    /// says what the key allows (or which keys there are).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "codec" => {
                let (_, codec) = CODECS
                    .iter()
                    .find(|(n, _)| *n == value)
                    .ok_or("l16, pcmu or pcma")?;
                self.codec = Some(*codec);
            }
            "rate" => self.rate = Some(in_range(value, 1000..=192_000)?),
            "channels" => self.channels = Some(in_range(value, 1..=8)?),
            "format" => {
                self.big_endian = match value {
                    "s16le" => false,
                    "s16be" => true,
                    _ => return Err("s16le or s16be".into()),
                }
            }
            "gop_cache" => {
                self.gop_cache = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err("true or false".into()),
                }
            }
            "transport" => {
                self.pull.transport = value.parse().map_err(|_| "auto, udp or tcp")?;
            }
            "on_demand" => {
                self.pull.on_demand = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err("true or false".into()),
                }
            }
            "close_after" => self.pull.close_after = seconds(value)?,
            "start_timeout" => self.pull.start_timeout = seconds(value)?,
            "max_sdp" => self.pull.max_sdp = in_range(value, 256..=1 << 20)?,
            "max_packet_rate" => self.pull.max_packet_rate = in_range(value, 1..=1_000_000)?,
            "max_bitrate" => self.pull.max_bitrate = in_range(value, 1000..=10_000_000_000)?,
            "stall_timeout" => self.pull.stall_timeout = seconds(value)?,
            "ca_file" => {
                if value.is_empty() {
                    return Err("the path of a PEM file of CA certificates".into());
                }
                self.pull.tls.ca_file = Some(PathBuf::from(value));
            }
            _ => {
                return Err(
                    "one of codec, rate, channels, format, gop_cache, transport, \
                     on_demand, close_after, start_timeout, max_sdp, max_packet_rate, max_bitrate, \
                     stall_timeout, ca_file"
                        .into(),
                )
            }
        }
        Ok(())
    }

    /// The checks across keys: a raw source declares its format, and a
    /// `publish` channel declares both rate and channels or neither.
    pub fn check(&self) -> Result<(), SpecError> {
        let raw = matches!(self.source, Source::Pipe(_) | Source::Stdin);
        if raw && (self.rate.is_none() || self.channels.is_none()) {
            return Err(SpecError::Key {
                name: self.name.clone(),
                kv: "a pipe or stdin source needs rate= and channels=".into(),
            });
        }
        let pulled = matches!(self.source, Source::Pull(_));
        if !pulled && self.pull != PullOptions::default() {
            return Err(SpecError::Key {
                name: self.name.clone(),
                kv: "transport, on_demand, close_after, start_timeout, max_sdp, max_packet_rate, \
                     max_bitrate and stall_timeout are for rtsp:// and rtsps:// sources, \
                     ca_file for rtsps://"
                    .into(),
            });
        }
        if let Source::Pull(url) = &self.source {
            // The pull client has no system trust store: an rtsps://
            // upstream needs a CA file, found missing here rather than at
            // the first connect.
            let kv = match (url.starts_with("rtsps://"), self.pull.tls.ca_file.is_some()) {
                (false, true) => Some("ca_file is for rtsps:// sources"),
                (true, false) => Some(
                    "an rtsps:// source needs ca_file (PEM CA certificates that verify the \
                     upstream's certificate; a self-signed one is its own CA)",
                ),
                _ => None,
            };
            if let Some(kv) = kv {
                return Err(SpecError::Key {
                    name: self.name.clone(),
                    kv: kv.into(),
                });
            }
        }
        if pulled && (self.codec.is_some() || self.rate.is_some() || self.channels.is_some()) {
            return Err(SpecError::Key {
                name: self.name.clone(),
                kv: "a pulled channel relays what the upstream sends: no codec, rate or channels"
                    .into(),
            });
        }
        if self.source == Source::Publish && self.rate.is_some() != self.channels.is_some() {
            return Err(SpecError::Key {
                name: self.name.clone(),
                kv: "a publish channel declares both rate= and channels=, or neither".into(),
            });
        }
        Ok(())
    }

    /// The name `codec=` gives the codec listeners get, if one is set.
    pub fn codec_name(&self) -> Option<&'static str> {
        let codec = self.codec?;
        CODECS.iter().find(|(_, c)| *c == codec).map(|(n, _)| *n)
    }
}

/// `value` as seconds, 0.1 to 3600.
fn seconds(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| (0.1..=3600.0).contains(v))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "seconds, from 0.1 to 3600".into())
}

/// `value` as a number in `range`; the error says what is allowed.
fn in_range<T>(value: &str, range: std::ops::RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    value
        .parse()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| format!("an integer from {} to {}", range.start(), range.end()))
}

impl std::fmt::Display for Source {
    /// As `--live` and `[[live]] source` take it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "file:{}", p.display()),
            Self::Pipe(cmd) => write!(f, "pipe:{cmd}"),
            Self::Stdin => f.write_str("stdin"),
            Self::Publish => f.write_str("publish"),
            Self::Pull(url) => f.write_str(&redact(url)),
        }
    }
}

impl std::str::FromStr for LiveSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| SpecError::Syntax(s.into()))?;
        let mut parts = rest.split(',');
        let mut spec = Self::new(name, parts.next().unwrap_or(""))?;
        for kv in parts {
            let bad = || SpecError::Key {
                name: name.into(),
                kv: kv.into(),
            };
            let (key, value) = kv.split_once('=').ok_or_else(bad)?;
            spec.set(key, value).map_err(|_| bad())?;
        }
        spec.check()?;
        Ok(spec)
    }
}

/// `url` without its password (for logs and printed configs).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

/// Whether `name` may name a channel: 1 to 64 letters, digits, `-`, `_`
/// and `.`, so it is one path segment that needs no escaping.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What handlers need to know of a running channel: its SDP.
#[derive(Debug)]
pub struct LiveInfo {
    pub name: String,
    /// The pacing thread's name for this channel: the name, plus a number
    /// for one a publisher started (a later one under the same name is
    /// another channel).
    pub key: String,
    pub description: PresentationDescription,
    /// The channel's one SSRC, the same for every listener (a relay
    /// channel's first track's).
    pub ssrc: u32,
    pub rate: u32,
    pub channels: u16,
    /// A relay channel's tracks as its publisher described them, and each
    /// track's SSRC; `None` for an audio channel.
    pub relay: Option<RelayInfo>,
}

/// What a relay channel carries ([`crate::proto::relay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    pub tracks: Vec<RelayTrack>,
    pub ssrcs: Vec<u32>,
}

impl LiveInfo {
    /// The SSRC of `track`.
    pub fn ssrc_of(&self, track: usize) -> Option<u32> {
        match &self.relay {
            Some(r) => r.ssrcs.get(track).copied(),
            None => (track == 0).then_some(self.ssrc),
        }
    }
}

/// A channel on the pacing thread: decoded audio on its own timeline, or
/// relayed RTP.
#[derive(Debug)]
pub enum LiveChannel {
    Audio(Channel),
    Relay(RelayChannel),
}

impl From<Channel> for LiveChannel {
    fn from(c: Channel) -> Self {
        Self::Audio(c)
    }
}

impl LiveChannel {
    /// When it next has work without new input.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self {
            Self::Audio(c) => Some(c.next_deadline()),
            Self::Relay(r) => r.next_deadline(),
        }
    }

    pub fn poll(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        match self {
            Self::Audio(c) => c.poll(now, out),
            Self::Relay(r) => r.poll(now, out),
        }
    }

    pub fn end_now(&mut self, now: Instant, out: &mut Vec<Transmit>) {
        match self {
            Self::Audio(c) => c.end_now(now, out),
            Self::Relay(r) => r.end_now(now, out),
        }
    }

    pub fn unsubscribe(&mut self, id: u64, bye: bool, now: Instant, out: &mut Vec<Transmit>) {
        match self {
            Self::Audio(c) => c.unsubscribe(id, bye, now, out),
            Self::Relay(r) => r.unsubscribe(id, bye, now, out),
        }
    }
}

/// A relay channel for `tracks` and its description.
pub fn make_relay_channel(
    params: &ChannelParams,
    name: &str,
    key: &str,
    tracks: Vec<RelayTrack>,
    gop_cache: bool,
) -> (LiveInfo, RelayChannel) {
    let specs: Vec<TrackSpec> = tracks
        .iter()
        .map(|t| {
            let random = random_u64();
            TrackSpec {
                video: t.codec.video(),
                clock_rate: t.clock_rate,
                payload_type: t.payload_type,
                ssrc: random as u32,
                first_seq: (random >> 32) as u16,
                first_timestamp: (random >> 16) as u32 ^ (random << 7) as u32,
            }
        })
        .collect();
    let ssrcs: Vec<u32> = specs.iter().map(|s| s.ssrc).collect();
    let channel = RelayChannel::new(
        specs,
        RelayConfig {
            max_payload: params.max_payload,
            gop_cache,
            gop_cache_bytes: params.gop_cache_bytes,
            catchup_speed: RELAY_CATCHUP_SPEED,
            max_delay: params.relay_max_delay,
            spread_per_listener: params.relay_spread_per_listener,
            cname: params.cname.clone(),
            clock: params.clock,
        },
    );
    let description = PresentationDescription {
        name: format!("{PREFIX}{name}"),
        duration: None,
        tracks: tracks
            .iter()
            .enumerate()
            .map(|(i, t)| t.description(i))
            .collect(),
    };
    let info = LiveInfo {
        name: name.to_owned(),
        key: key.to_owned(),
        description,
        ssrc: ssrcs.first().copied().unwrap_or_default(),
        rate: tracks.first().map_or(0, |t| t.clock_rate),
        channels: 0,
        relay: Some(RelayInfo { tracks, ssrcs }),
    };
    (info, channel)
}

/// Bytes a relay channel's GOP cache holds at most by default (a 2 s GOP
/// at 8 Mbit/s; `[limits] max_gop_cache_kib`).
pub const RELAY_GOP_CACHE_BYTES: usize = 2 << 20;

/// How much faster than real time a cached GOP goes to a newcomer.
pub const RELAY_CATCHUP_SPEED: u32 = 4;

/// What every channel is built with.
#[derive(Debug, Clone)]
pub struct ChannelParams {
    pub ptime: Duration,
    pub max_payload: usize,
    /// Largest WAV a `file:` channel loads.
    pub max_bytes: u64,
    /// Jitter buffer of pipe, stdin and published channels.
    pub prebuffer: Duration,
    /// How long a relayed packet may wait before it is dropped.
    pub relay_max_delay: Duration,
    /// How much each listener widens a relay channel's fan-out window.
    pub relay_spread_per_listener: Duration,
    /// Bytes a GOP cache may hold.
    pub gop_cache_bytes: usize,
    pub clock: WallClock,
    pub cname: String,
}

/// What a channel plays, once its format is known.
#[derive(Debug, Clone)]
pub struct ChannelShape {
    pub codec: Codec,
    pub rate: u32,
    pub channels: u16,
    /// The clip to loop; `None` for a streamed source.
    pub clip: Option<bytes::Bytes>,
}

/// A channel and its description, starting at `now`.
pub fn make_channel(
    params: &ChannelParams,
    name: &str,
    key: &str,
    shape: ChannelShape,
    now: Instant,
) -> Result<(LiveInfo, Channel), LiveError> {
    let random = random_u64();
    let ssrc = random as u32;
    let channel = Channel::new(
        ChannelConfig {
            streamed: shape.clip.is_none(),
            pcm: shape.clip.unwrap_or_default(),
            prebuffer: params.prebuffer,
            rate: shape.rate,
            channels: shape.channels,
            codec: shape.codec,
            ptime: params.ptime,
            max_payload: params.max_payload,
            ssrc,
            first_seq: (random >> 32) as u16,
            first_rtptime: (random >> 16) as u32 ^ (random << 7) as u32,
            cname: params.cname.clone(),
            clock: params.clock,
        },
        now,
    )?;
    let description = PresentationDescription {
        name: format!("{PREFIX}{name}"),
        duration: None,
        tracks: vec![shape.codec.description(shape.rate, shape.channels)],
    };
    let info = LiveInfo {
        name: name.to_owned(),
        key: key.to_owned(),
        description,
        ssrc,
        rate: shape.rate,
        channels: shape.channels,
        relay: None,
    };
    Ok((info, channel))
}

/// The format a configured channel starts with: a `file:` source's WAV, a
/// raw source's declared one, a `publish` channel's if declared (`None`
/// otherwise: its first publisher decides).
pub fn configured_shape(
    spec: &LiveSpec,
    max_bytes: u64,
) -> Result<Option<ChannelShape>, SpecError> {
    let codec = spec.codec.unwrap_or(Codec::L16);
    match &spec.source {
        Source::File(path) => {
            let media_err = |error: String| SpecError::Media {
                name: spec.name.clone(),
                path: path.display().to_string(),
                error,
            };
            let f = File::open(path).map_err(|e| media_err(e.to_string()))?;
            let pcm =
                wav::load(BufReader::new(f), max_bytes).map_err(|e| media_err(e.to_string()))?;
            Ok(Some(ChannelShape {
                codec,
                rate: pcm.sample_rate,
                channels: pcm.channels,
                clip: Some(pcm.data),
            }))
        }
        Source::Pull(_) => Ok(None),
        Source::Pipe(_) | Source::Stdin | Source::Publish => {
            Ok(spec
                .rate
                .zip(spec.channels)
                .map(|(rate, channels)| ChannelShape {
                    codec,
                    rate,
                    channels,
                    clip: None,
                }))
        }
    }
}

/// A running pipe or stdin source. Dropping it stops a pipe's command (its
/// whole process group, so a shell's children go too); the reader thread
/// then sees the end of the pipe and finishes.
#[derive(Debug)]
pub struct SourceGuard {
    child: Option<Child>,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else { return };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) with a negative pid signals that process
            // group; it touches no memory of ours.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
        }
        let _ = child.kill();
        // Reaped off the caller's thread: the command may take a moment.
        if let Some(mut child) = self.child.take() {
            let _ = std::thread::Builder::new()
                .name("live-reap".into())
                .spawn(move || child.wait());
        }
    }
}

/// Starts a reader thread for every pipe and stdin channel of `specs`
/// (their pacing-thread key is their name), returning their guards by
/// name.
pub fn spawn_sources(
    specs: &[LiveSpec],
    data: &DataHandle,
) -> Result<Vec<(String, SourceGuard)>, SpecError> {
    let mut guards = Vec::new();
    for spec in specs {
        if let Some(guard) = spawn_source(spec, &spec.name, data)? {
            guards.push((spec.name.clone(), guard));
        }
    }
    Ok(guards)
}

/// Starts the reader thread of a pipe or stdin channel: it feeds channel
/// `key` raw PCM as it comes and says when the source ends. `None` for
/// sources the pacing thread plays itself (files) or publishers feed.
pub fn spawn_source(
    spec: &LiveSpec,
    key: &str,
    data: &DataHandle,
) -> Result<Option<SourceGuard>, SpecError> {
    let (reader, child): (Box<dyn Read + Send>, _) = match &spec.source {
        Source::File(_) | Source::Publish | Source::Pull(_) => return Ok(None),
        Source::Stdin => (Box::new(std::io::stdin()), None),
        Source::Pipe(cmd) => {
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .process_group(0)
                .spawn()
                .map_err(|e| SpecError::Media {
                    name: spec.name.clone(),
                    path: cmd.clone(),
                    error: e.to_string(),
                })?;
            match child.stdout.take() {
                Some(out) => (Box::new(out), Some(child)),
                None => return Ok(None),
            }
        }
    };
    let guard = SourceGuard { child };
    let (key, data) = (key.to_owned(), data.clone());
    let frame = 2 * usize::from(spec.channels.unwrap_or(1));
    let chunk = (spec.rate.unwrap_or(8000) as usize / 50).max(1) * frame;
    let big_endian = spec.big_endian;
    std::thread::Builder::new()
        .name(format!("live-{}", spec.name))
        .spawn(move || read_source(&key, reader, frame, chunk, big_endian, &data))
        .map_err(|e| SpecError::Media {
            name: spec.name.clone(),
            path: "reader thread".into(),
            error: e.to_string(),
        })?;
    Ok(Some(guard))
}

/// Reads raw PCM until the end, in about 20 ms pieces of whole frames,
/// converted to big-endian.
fn read_source(
    name: &str,
    mut r: Box<dyn Read + Send>,
    frame: usize,
    chunk: usize,
    big_endian: bool,
    data: &DataHandle,
) {
    let mut buf = vec![0u8; chunk];
    let mut carry: Vec<u8> = Vec::with_capacity(chunk + frame);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!(channel = %name, error = %e, "live source read failed");
                break;
            }
        };
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() - carry.len() % frame;
        let mut pcm: Vec<u8> = carry.drain(..whole).collect();
        if !big_endian {
            for s in pcm.chunks_exact_mut(2) {
                s.swap(0, 1);
            }
        }
        let feed = Data::Feed {
            channel: name.to_owned(),
            pcm: bytes::Bytes::from(pcm),
        };
        if data.send_blocking(feed).is_err() {
            return;
        }
    }
    info!(channel = %name, "live source ended");
    let _ = data.send_blocking(Data::SourceEnded {
        channel: name.to_owned(),
    });
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failing OS source leaves zeros: still a valid (if guessable) start.
    let _ = getrandom::fill(&mut b);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s: LiveSpec = "radio=file:media/tones.wav,codec=pcmu".parse().unwrap();
        assert_eq!(
            (s.name.as_str(), &s.source, s.codec),
            (
                "radio",
                &Source::File("media/tones.wav".into()),
                Some(Codec::Pcmu)
            )
        );
        let s: LiveSpec = "a=x.wav".parse().unwrap();
        assert_eq!(s.codec, None);
        let s: LiveSpec = "studio=publish".parse().unwrap();
        assert_eq!((s.source, s.rate), (Source::Publish, None));
        let s: LiveSpec = "studio=publish,codec=pcmu,rate=8000,channels=1"
            .parse()
            .unwrap();
        assert_eq!(
            (s.codec, s.rate, s.channels),
            (Some(Codec::Pcmu), Some(8000), Some(1))
        );
        let s: LiveSpec = "mic=pipe:arecord -f S16_LE -r 48000,rate=48000,channels=1"
            .parse()
            .unwrap();
        assert_eq!(s.source, Source::Pipe("arecord -f S16_LE -r 48000".into()));
        assert_eq!(
            (s.rate, s.channels, s.big_endian),
            (Some(48000), Some(1), false)
        );
        let s: LiveSpec = "in=stdin,rate=8000,channels=2,format=s16be,codec=l16"
            .parse()
            .unwrap();
        assert_eq!((s.source, s.big_endian), (Source::Stdin, true));
        let s: LiveSpec = "cam=rtsp://u:pw@10.0.0.9/s,transport=tcp,on_demand=true,close_after=0.5"
            .parse()
            .unwrap();
        assert_eq!(s.source, Source::Pull("rtsp://u:pw@10.0.0.9/s".into()));
        assert_eq!(
            s.source.to_string(),
            "rtsp://u:***@10.0.0.9/s",
            "password shown"
        );
        assert_eq!(
            (
                s.pull.transport.to_string(),
                s.pull.on_demand,
                s.pull.close_after
            ),
            ("tcp".into(), true, Duration::from_millis(500))
        );
        assert_eq!(s.pull.start_timeout, Duration::from_secs(10));
        assert_eq!(s.pull.stall_timeout, Duration::from_secs(10));
        let s: LiveSpec = "cam=rtsps://h/s,ca_file=/etc/ca.pem,stall_timeout=2"
            .parse()
            .unwrap();
        assert_eq!(s.pull.tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.pull.stall_timeout, Duration::from_secs(2));
        for bad in [
            "cam=rtsps://h/s",
            "cam=rtsp://h/s,ca_file=a.pem",
            "cam=rtsp://h/s,stall_timeout=0",
            "cam=publish,stall_timeout=5",
            "cam=rtsp://",
            "cam=rtsp://h/s,codec=pcmu",
            "cam=rtsp://h/s,transport=sctp",
            "cam=rtsp://h/s,close_after=0",
            "cam=publish,on_demand=true",
            "radio",
            "=x.wav",
            "a b=x.wav",
            "r=pipe:arecord",
            "r=stdin,rate=8000",
            "r=pipe:,rate=8000,channels=1",
            "r=x.wav,codec=opus",
            "r=stdin,rate=8000,channels=0",
            "r=publish,rate=8000",
        ] {
            assert!(bad.parse::<LiveSpec>().is_err(), "{bad}");
        }
    }
}
