//! Live channels configured with `--live NAME=SOURCE[,key=value...]`,
//! served at `rtsp://HOST:PORT/live/NAME` (RFC 2326 §C.1.5: no duration,
//! `Range: npt=now-`). Each runs on the pacing thread from server start,
//! whether or not anyone listens ([`crate::proto::live`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::io::Read;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use super::udp::{Command as Command_, PacerHandle};
use crate::media::wav;
use crate::proto::clock::WallClock;
use crate::proto::live::{Channel, ChannelConfig, Codec, LiveError};
use crate::proto::sdp::{PresentationDescription, TrackDescription};

/// The URL path prefix of live channels.
pub const PREFIX: &str = "live/";

/// One `--live` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSpec {
    pub name: String,
    pub source: Source,
    pub codec: Codec,
    /// For raw sources: sample rate, channel count, byte order.
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub big_endian: bool,
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
}

/// Why a `--live` option or its source is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--live {0:?}: expected NAME=SOURCE[,codec=l16|pcmu|pcma]")]
    Syntax(String),
    #[error("--live {0}: channel names are letters, digits, '-', '_' and '.'")]
    Name(String),
    #[error(
        "--live {name}: source {given:?} is not supported yet (only file:PATH or a path to a WAV)"
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

impl std::str::FromStr for LiveSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| SpecError::Syntax(s.into()))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(SpecError::Name(name.into()));
        }
        let mut parts = rest.split(',');
        let given = parts.next().unwrap_or("");
        let unsupported = || SpecError::Source {
            name: name.into(),
            given: given.into(),
        };
        let source = if let Some(p) = given.strip_prefix("file:") {
            Source::File(PathBuf::from(p))
        } else if let Some(cmd) = given.strip_prefix("pipe:") {
            if cmd.trim().is_empty() {
                return Err(unsupported());
            }
            Source::Pipe(cmd.to_owned())
        } else if given == "stdin" {
            Source::Stdin
        } else if given.contains(':') || given.is_empty() || given == "publish" {
            return Err(unsupported());
        } else {
            Source::File(PathBuf::from(given))
        };
        let mut spec = Self {
            name: name.into(),
            source,
            codec: Codec::L16,
            rate: None,
            channels: None,
            big_endian: false,
        };
        for kv in parts {
            let bad = || SpecError::Key {
                name: name.into(),
                kv: kv.into(),
            };
            match kv.split_once('=').ok_or_else(bad)? {
                ("codec", "l16") => spec.codec = Codec::L16,
                ("codec", "pcmu") => spec.codec = Codec::Pcmu,
                ("codec", "pcma") => spec.codec = Codec::Pcma,
                ("rate", v) => {
                    spec.rate = Some(
                        v.parse()
                            .ok()
                            .filter(|r| (1000..=192_000).contains(r))
                            .ok_or_else(bad)?,
                    )
                }
                ("channels", v) => {
                    spec.channels = Some(
                        v.parse()
                            .ok()
                            .filter(|c| (1..=8).contains(c))
                            .ok_or_else(bad)?,
                    )
                }
                ("format", "s16le") => spec.big_endian = false,
                ("format", "s16be") => spec.big_endian = true,
                _ => return Err(bad()),
            }
        }
        let raw = !matches!(spec.source, Source::File(_));
        if raw && (spec.rate.is_none() || spec.channels.is_none()) {
            return Err(SpecError::Key {
                name: name.into(),
                kv: "a pipe or stdin source needs rate= and channels=".into(),
            });
        }
        Ok(spec)
    }
}

/// What handlers need to know of a channel: its SDP.
#[derive(Debug)]
pub struct LiveInfo {
    pub name: String,
    pub description: PresentationDescription,
    /// The channel's one SSRC, the same for every listener.
    pub ssrc: u32,
}

/// Every channel's description (for handlers) and the channels themselves
/// (for the pacing thread), by name.
pub type Built = (HashMap<String, Arc<LiveInfo>>, HashMap<String, Channel>);

/// Loads every channel's source and builds the channels, all starting at
/// `now`.
pub fn build(
    specs: &[LiveSpec],
    ptime: Duration,
    max_payload: usize,
    max_bytes: u64,
    clock: WallClock,
    cname: &str,
    now: Instant,
) -> Result<Built, SpecError> {
    let mut infos = HashMap::new();
    let mut channels = HashMap::new();
    for spec in specs {
        if infos.contains_key(&spec.name) {
            return Err(SpecError::Duplicate(spec.name.clone()));
        }
        let media_err = |error: String| SpecError::Media {
            name: spec.name.clone(),
            path: match &spec.source {
                Source::File(p) => p.display().to_string(),
                Source::Pipe(c) => c.clone(),
                Source::Stdin => "stdin".into(),
            },
            error,
        };
        let pcm = match &spec.source {
            Source::File(path) => {
                let f = File::open(path).map_err(|e| media_err(e.to_string()))?;
                wav::load(BufReader::new(f), max_bytes).map_err(|e| media_err(e.to_string()))?
            }
            Source::Pipe(_) | Source::Stdin => wav::Pcm {
                sample_rate: spec.rate.unwrap_or(8000),
                channels: spec.channels.unwrap_or(1),
                data: bytes::Bytes::new(),
            },
        };
        let streamed = !matches!(spec.source, Source::File(_));
        let random = random_u64();
        let channel = Channel::new(
            ChannelConfig {
                pcm: pcm.data,
                streamed,
                rate: pcm.sample_rate,
                channels: pcm.channels,
                codec: spec.codec,
                ptime,
                max_payload,
                ssrc: random as u32,
                first_seq: (random >> 32) as u16,
                first_rtptime: (random >> 16) as u32 ^ (random << 7) as u32,
                cname: cname.to_owned(),
                clock,
            },
            now,
        )
        .map_err(|error| SpecError::Channel {
            name: spec.name.clone(),
            error,
        })?;
        let (payload_type, rtpmap) = spec.codec.payload(pcm.sample_rate, pcm.channels);
        let description = PresentationDescription {
            name: format!("{PREFIX}{}", spec.name),
            duration: None,
            tracks: vec![TrackDescription {
                media: "audio",
                payload_type,
                rtpmap,
                fmtp: None,
                control: "trackID=0".into(),
            }],
        };
        infos.insert(
            spec.name.clone(),
            Arc::new(LiveInfo {
                name: spec.name.clone(),
                description,
                ssrc: random as u32,
            }),
        );
        channels.insert(spec.name.clone(), channel);
    }
    Ok((infos, channels))
}

/// Starts a reader thread for every pipe and stdin channel: it feeds the
/// channel raw PCM as it comes and says when the source ends.
pub fn spawn_sources(specs: &[LiveSpec], pacer: &PacerHandle) -> Result<(), SpecError> {
    for spec in specs {
        let reader: Box<dyn Read + Send> = match &spec.source {
            Source::File(_) => continue,
            Source::Stdin => Box::new(std::io::stdin()),
            Source::Pipe(cmd) => {
                let child = Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .map_err(|e| SpecError::Media {
                        name: spec.name.clone(),
                        path: cmd.clone(),
                        error: e.to_string(),
                    })?;
                match child.stdout {
                    Some(out) => Box::new(out),
                    None => continue,
                }
            }
        };
        let (name, pacer) = (spec.name.clone(), pacer.clone());
        let frame = 2 * usize::from(spec.channels.unwrap_or(1));
        let chunk = (spec.rate.unwrap_or(8000) as usize / 50).max(1) * frame;
        let big_endian = spec.big_endian;
        std::thread::Builder::new()
            .name(format!("live-{name}"))
            .spawn(move || read_source(&name, reader, frame, chunk, big_endian, &pacer))
            .map_err(|e| SpecError::Media {
                name: spec.name.clone(),
                path: "reader thread".into(),
                error: e.to_string(),
            })?;
    }
    Ok(())
}

/// Reads raw PCM until the end, in about 20 ms pieces of whole frames,
/// converted to big-endian.
fn read_source(
    name: &str,
    mut r: Box<dyn Read + Send>,
    frame: usize,
    chunk: usize,
    big_endian: bool,
    pacer: &PacerHandle,
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
        let cmd = Command_::Feed {
            channel: name.to_owned(),
            pcm: bytes::Bytes::from(pcm),
        };
        if pacer.send_blocking(cmd).is_err() {
            return;
        }
    }
    info!(channel = %name, "live source ended");
    let _ = pacer.send_blocking(Command_::SourceEnded {
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
                Codec::Pcmu
            )
        );
        let s: LiveSpec = "a=x.wav".parse().unwrap();
        assert_eq!(s.codec, Codec::L16);
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
        for bad in [
            "radio",
            "=x.wav",
            "a b=x.wav",
            "r=pipe:arecord",
            "r=stdin,rate=8000",
            "r=pipe:,rate=8000,channels=1",
            "r=x.wav,codec=opus",
            "r=stdin,rate=8000,channels=0",
            "r=publish",
        ] {
            assert!(bad.parse::<LiveSpec>().is_err(), "{bad}");
        }
    }
}
