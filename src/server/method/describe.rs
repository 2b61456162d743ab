//! DESCRIBE (RFC 2326 §10.2): the presentation's SDP (RFC 4566), with a
//! Content-Base that RTP-Info and SETUP URLs resolve against (§C.1.1).

use std::net::IpAddr;

use tokio::sync::oneshot;

use super::{open_presentation, target, Ctx};
use crate::proto::error::Error;
use crate::proto::relay::offer::RelayTrack;
use crate::proto::relay::params::{complete_fmtp, has_param_sets};
use crate::proto::rtsp::Response;
use crate::proto::sdp;
use crate::proto::sdp::PresentationDescription;
use crate::proto::target::aggregate_url;
use crate::server::live::LiveInfo;
use crate::server::pacing::Command;
use crate::server::sessions::Presentation;
use crate::server::Shared;

pub(super) async fn describe(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let Ctx {
        shared, req, peer, ..
    } = *cx;
    let t = target(shared, req)?;
    if t.track.is_some() {
        return Err(Error::NotFound);
    }
    let source = open_presentation(shared, &t.path).await?;
    let sdp = sdp_of(shared, &source, peer.ip(), None).await;
    Ok(ok
        .header("Content-Base", format!("{}/", aggregate_url(&req.uri)))
        .body("application/sdp", sdp))
}

/// The SDP of `source` for a client at `peer`: control URLs relative to the
/// Content-Base (DESCRIBE), or absolute under `base`, the presentation's
/// `rtsp://` URL (SDP over HTTP).
pub(crate) async fn sdp_of(
    shared: &Shared,
    source: &Presentation,
    peer: IpAddr,
    base: Option<&str>,
) -> String {
    let mut desc = source.description();
    if let Presentation::Live(live) = source {
        complete_parameter_sets(shared, live, &mut desc).await;
    }
    let ip = local_ip_for(peer);
    match base {
        None => sdp::describe(&desc, ip, session_version()),
        Some(base) => sdp::describe_absolute(&desc, ip, session_version(), base),
    }
}

/// A relay channel's video tracks whose source gave no parameter sets in
/// its SDP get them from the stream (RFC 6184 §8.1, RFC 7798 §7.1), once
/// the channel has seen them in-band. Without them yet, the description
/// stays as the source wrote it; players then take them from the stream.
async fn complete_parameter_sets(
    shared: &Shared,
    live: &LiveInfo,
    desc: &mut PresentationDescription,
) {
    let Some(relay) = &live.relay else { return };
    let lacking = |t: &RelayTrack| {
        t.codec
            .video()
            .is_some_and(|c| !has_param_sets(c, t.fmtp.as_deref()))
    };
    if !relay.tracks.iter().any(lacking) {
        return;
    }
    let (reply, rx) = oneshot::channel();
    let asked = Command::ParamSets {
        channel: live.key.clone(),
        reply,
    };
    if shared.pacer.send(asked).await.is_err() {
        return;
    }
    let Ok(Ok(Some(sets))) = tokio::time::timeout(PARAM_SETS_WAIT, rx).await else {
        return;
    };
    for ((track, sets), d) in relay.tracks.iter().zip(&sets).zip(&mut desc.tracks) {
        let Some(codec) = track.codec.video().filter(|_| lacking(track)) else {
            continue;
        };
        if let Some(fmtp) = complete_fmtp(codec, track.fmtp.as_deref(), sets) {
            d.fmtp = Some(fmtp);
        }
    }
}

/// How long DESCRIBE waits for the pacing thread's parameter sets.
const PARAM_SETS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

fn local_ip_for(peer: IpAddr) -> IpAddr {
    if peer.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    }
}

fn session_version() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
