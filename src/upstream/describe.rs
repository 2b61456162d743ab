//! The upstream's DESCRIBE answer: its SDP kept whole (a relay channel
//! re-offers the supported tracks from it) and the tracks to SET UP.

use bytes::Bytes;

use crate::proto::sdp::{parse_offer, OfferedTrack, SdpError};

/// One track of the upstream's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTrack {
    pub offered: OfferedTrack,
    /// `a=control`, as given.
    pub control: Option<String>,
    /// The absolute URL its SETUP names.
    pub url: String,
}

/// What an attempt found at the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The DESCRIBE body, bounded by the config's `max_sdp`.
    pub sdp: Bytes,
    /// The tracks SET UP, in order: track `k` of the events is `tracks[k]`.
    pub tracks: Vec<UpstreamTrack>,
}

/// The tracks of `sdp` (their URLs still to resolve).
pub(super) fn tracks(sdp: &[u8]) -> Result<Vec<UpstreamTrack>, SdpError> {
    Ok(parse_offer(sdp)?
        .into_iter()
        .map(|offered| UpstreamTrack {
            control: offered.control.clone(),
            offered,
            url: String::new(),
        })
        .collect())
}
