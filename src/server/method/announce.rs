//! ANNOUNCE (RFC 2326 §10.3): a publisher's SDP for `/live/NAME`, checked
//! and reserved for its connection, before its SETUP `mode=record` and
//! RECORD. Its RTP then feeds the channel, which listeners hear with the
//! channel's own SSRCs, sequence numbers and timeline. One L16, PCMU or
//! PCMA stream goes to an audio channel ([`crate::proto::live`]); anything
//! else (video, AAC, Opus, several tracks) to a relay channel
//! ([`crate::proto::relay`]) that forwards each supported track as it is.

use std::time::Instant;

use tracing::info;

use super::{target, Ctx};
use crate::proto::depacketize::StreamFormat;
use crate::proto::error::Error;
use crate::proto::relay::offer::relay_tracks;
use crate::proto::rtsp::Response;
use crate::proto::sdp::{self, SdpError};
use crate::proto::target::live_channel_name;
use crate::server::channels::Offer;
use crate::server::pacing::Command;

/// ANNOUNCE: checks the SDP and reserves the channel for this connection.
pub(super) async fn announce(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let Ctx {
        shared, req, conn, ..
    } = *cx;
    let t = target(shared, req)?;
    let name = live_channel_name(&t.path)?;
    let is_sdp = req.headers.get("Content-Type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !is_sdp {
        return Err(Error::UnsupportedMedia(
            "ANNOUNCE needs an application/sdp body".into(),
        ));
    }
    let tracks = sdp::parse_offer(&req.body).map_err(|e| match e {
        SdpError::NoMedia => Error::UnsupportedMedia(e.to_string()),
        _ => Error::BadRequest("the SDP does not parse"),
    })?;
    // One PCM stream: the audio channel, as before; else a relay.
    let pcm = match tracks.as_slice() {
        [track] => StreamFormat::from_offer(track).ok(),
        _ => None,
    };
    let offer = match pcm {
        Some(format) => Offer::Audio(format),
        None => {
            let (relayed, skipped) = relay_tracks(&tracks).map_err(Error::NoSupportedTrack)?;
            for s in &skipped {
                info!(channel = %name, track = %s, "publisher's track not relayed: unsupported format");
            }
            Offer::Relay(relayed)
        }
    };
    let announced = shared
        .channels
        .announce(name, conn, offer.clone(), Instant::now())?;
    if let Some(channel) = announced.started {
        let key = announced.info.key.clone();
        info!(channel = %key, "live channel started by its first publisher");
        shared
            .pacer
            .send(Command::AddChannel {
                key,
                channel: Box::new(channel),
            })
            .await
            .map_err(|_| Error::Unavailable("shutting down"))?;
        shared.channels.running(name, announced.info.clone());
    }
    match &offer {
        Offer::Audio(format) => info!(
            channel = %name,
            codec = format.codec.name(),
            rate = format.rate,
            channels = format.channels,
            "publisher announced"
        ),
        Offer::Relay(tracks) => info!(
            channel = %name,
            tracks = %tracks.iter().map(|t| t.rtpmap.as_str()).collect::<Vec<_>>().join(", "),
            "publisher announced"
        ),
    }
    Ok(ok)
}
