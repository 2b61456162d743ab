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
    pub file: PathBuf,
    pub codec: Codec,
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
        let source = parts.next().unwrap_or("");
        let file = match source.strip_prefix("file:") {
            Some(p) => p,
            None if source.contains(':')
                || source.is_empty()
                || source == "stdin"
                || source == "publish" =>
            {
                return Err(SpecError::Source {
                    name: name.into(),
                    given: source.into(),
                })
            }
            None => source,
        };
        let mut codec = Codec::L16;
        for kv in parts {
            codec = match kv {
                "codec=l16" => Codec::L16,
                "codec=pcmu" => Codec::Pcmu,
                "codec=pcma" => Codec::Pcma,
                _ => {
                    return Err(SpecError::Key {
                        name: name.into(),
                        kv: kv.into(),
                    })
                }
            };
        }
        Ok(Self {
            name: name.into(),
            file: PathBuf::from(file),
            codec,
        })
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
            path: spec.file.display().to_string(),
            error,
        };
        let f = File::open(&spec.file).map_err(|e| media_err(e.to_string()))?;
        let pcm = wav::load(BufReader::new(f), max_bytes).map_err(|e| media_err(e.to_string()))?;
        let random = random_u64();
        let channel = Channel::new(
            ChannelConfig {
                pcm: pcm.data,
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
            (s.name.as_str(), s.file.to_str(), s.codec),
            ("radio", Some("media/tones.wav"), Codec::Pcmu)
        );
        let s: LiveSpec = "a=x.wav".parse().unwrap();
        assert_eq!(s.codec, Codec::L16);
        for bad in [
            "radio",
            "=x.wav",
            "a b=x.wav",
            "r=pipe:arecord",
            "r=stdin",
            "r=x.wav,codec=opus",
        ] {
            assert!(bad.parse::<LiveSpec>().is_err(), "{bad}");
        }
    }
}
