//! A clip ready to serve (RFC 2326 §C.1: one presentation, its tracks
//! described for DESCRIBE): each track an SDP description and a packetizer
//! over media shared by every session playing it, and the options every
//! demuxer cuts clips with.

use std::time::Duration;

use crate::proto::packetize::Track;
use crate::proto::sdp::PresentationDescription;

/// How clips are cut into packets, and how big they may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipOptions {
    pub ptime: Duration,
    /// Largest RTP payload in bytes.
    pub max_payload: usize,
    /// Largest decoded clip held in memory.
    pub max_clip_bytes: u64,
    /// Most clips held in the cache.
    pub max_cached: usize,
    /// Frame rate of H.264 elementary files whose SPS does not say.
    pub fps: u32,
}

impl Default for ClipOptions {
    fn default() -> Self {
        Self {
            ptime: Duration::from_millis(20),
            max_payload: 1400,
            max_clip_bytes: 512 << 20,
            max_cached: 64,
            fps: 25,
        }
    }
}

/// A clip ready to serve.
#[derive(Debug)]
pub struct Clip {
    /// The path relative to the media root, '/'-separated.
    pub path: String,
    pub duration: f64,
    pub tracks: Vec<Track>,
}

impl Clip {
    /// The clip at `path` made of `tracks`, as long as the longest.
    pub fn new(path: String, tracks: Vec<Track>) -> Self {
        Self {
            path,
            duration: duration(&tracks),
            tracks,
        }
    }

    pub fn description(&self) -> PresentationDescription {
        PresentationDescription {
            name: self.path.clone(),
            duration: Some(self.duration),
            tracks: self.tracks.iter().map(|t| t.description.clone()).collect(),
        }
    }
}

/// How long `tracks` play together: the longest one, in seconds.
pub fn duration(tracks: &[Track]) -> f64 {
    tracks
        .iter()
        .map(|t| t.packetizer.duration_secs())
        .fold(0.0, f64::max)
}
