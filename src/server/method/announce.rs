//! ANNOUNCE (RFC 2326 §10.3): a publisher's SDP for `/live/NAME`, checked
//! and reserved for its connection, before its SETUP `mode=record` and
//! RECORD. Its RTP then feeds the channel, which listeners hear with the
//! channel's own SSRC, sequence and timeline ([`crate::proto::live`]).

use std::time::Instant;

use tracing::info;

use super::{target, Ctx};
use crate::proto::depacketize::StreamFormat;
use crate::proto::error::Error;
use crate::proto::rtsp::Response;
use crate::proto::sdp::{self, SdpError};
use crate::proto::target::live_channel_name;
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
    let [track] = tracks.as_slice() else {
        return Err(Error::UnsupportedMedia(format!(
            "a live channel carries one audio stream; this SDP has {}",
            tracks.len()
        )));
    };
    let format =
        StreamFormat::from_offer(track).map_err(|e| Error::UnsupportedMedia(e.to_string()))?;
    let announced = shared
        .channels
        .announce(name, conn, format, Instant::now())?;
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
    info!(
        channel = %name,
        codec = format.codec.name(),
        rate = format.rate,
        channels = format.channels,
        "publisher announced"
    );
    Ok(ok)
}
