//! PLAY (RFC 2326 §10.5): starts or seeks the streams with `Range: npt=`
//! and answers with RTP-Info (§12.33); on a live channel, joins at the live
//! edge (§C.1.5).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use super::{Ctx, Shared};
use crate::proto::error::Error;
use crate::proto::pacer::GroupId;
use crate::proto::rtsp::range::NptRange;
use crate::proto::rtsp::rtp_info::{format_rtp_info, RtpInfo};
use crate::proto::rtsp::{Request, Response};
use crate::proto::session::TrackTransport;
use crate::proto::target::aggregate_url;
use crate::server::live::LiveInfo;
use crate::server::pacing::Command;
use crate::server::sessions::Presentation;

pub(super) async fn play(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let (id, scope, path) = cx.scoped()?;
    let (shared, req) = (cx.shared, cx.req);
    let mut ranges = req.headers.get_all("Range");
    let range: Option<NptRange> = match (ranges.next(), ranges.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.parse().map_err(|e| Error::InvalidRange(format!("{e}")))?),
        (Some(_), Some(_)) => return Err(Error::BadRequest("two Range headers")),
    };
    let (group, play, header, tracks, source, transports) = cx.with_session(&id, |e| {
        if path != e.session.presentation {
            return Err(Error::InvalidState("URL names another presentation"));
        }
        let play = e.session.play(scope, range.as_ref(), e.source.duration())?;
        let tracks: Vec<usize> = e.session.tracks().map(|(t, _)| t).collect();
        let transports: Vec<_> = e.session.tracks().map(|(_, t)| *t).collect();
        Ok((
            e.group,
            play,
            e.session.header(),
            tracks,
            e.source.clone(),
            transports,
        ))
    })??;
    if let Presentation::Live(live) = &source {
        let ok = ok.header("Session", header);
        if live.relay.is_some() {
            let set_up: Vec<_> = tracks.iter().copied().zip(transports).collect();
            return play_relay(shared, req, live, group, &set_up, ok).await;
        }
        let tt = transports
            .first()
            .ok_or(Error::InvalidState("no track set up"))?;
        return play_live(shared, req, live, group, *tt, ok).await;
    }
    let (reply, rx) = oneshot::channel();
    shared
        .pacer
        .send(Command::Play {
            group,
            req: play,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    let info = rx
        .await
        .map_err(|_| Error::Unavailable("shutting down"))??;
    let base = aggregate_url(&req.uri);
    let infos: Vec<RtpInfo> = info
        .tracks
        .iter()
        .filter(|(t, _, _)| tracks.contains(t))
        .map(|&(t, seq, rtptime)| RtpInfo {
            url: format!("{base}/trackID={t}"),
            seq: Some(seq),
            rtptime: Some(rtptime),
        })
        .collect();
    let range = NptRange {
        start: crate::proto::rtsp::range::NptTime::Seconds(info.start),
        end: Some(info.end),
    };
    debug!(session = %id, start = info.start, end = info.end, "playing");
    Ok(ok
        .header("Session", header)
        .header("Range", range.to_string())
        .header("RTP-Info", format_rtp_info(&infos)))
}

/// PLAY on a live channel: join at the live edge (RFC 2326 §C.1.5).
async fn play_live(
    shared: &Arc<Shared>,
    req: &Request,
    live: &LiveInfo,
    group: GroupId,
    tt: TrackTransport,
    ok: Response,
) -> Result<Response, Error> {
    let (reply, rx) = oneshot::channel();
    shared
        .pacer
        .send(Command::Subscribe {
            channel: live.key.clone(),
            group,
            rtp: tt.rtp,
            rtcp: tt.rtcp,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    let join = rx
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?
        .ok_or(Error::NotFound)?;
    let info = RtpInfo {
        url: format!("{}/trackID=0", aggregate_url(&req.uri)),
        seq: Some(join.seq),
        rtptime: Some(join.rtptime),
    };
    Ok(ok
        .header("Range", "npt=now-")
        .header("RTP-Info", format_rtp_info(&[info])))
}

/// Longest a PLAY on a relay channel waits for its first packets (a
/// keyframe for video); then 503.
const RELAY_START_TIMEOUT: Duration = Duration::from_secs(10);

/// PLAY on a relay channel: the listener starts at the next keyframe (or
/// the cached GOP), and RTP-Info names exactly the first packet of each
/// track it set up (RFC 2326 §12.33), so the answer waits for them.
async fn play_relay(
    shared: &Arc<Shared>,
    req: &Request,
    live: &LiveInfo,
    group: GroupId,
    set_up: &[(usize, TrackTransport)],
    ok: Response,
) -> Result<Response, Error> {
    let mut dests = vec![None; live.description.tracks.len()];
    for &(track, tt) in set_up {
        if let Some(d) = dests.get_mut(track) {
            *d = Some((tt.rtp, tt.rtcp));
        }
    }
    let (reply, rx) = oneshot::channel();
    shared
        .pacer
        .send(Command::SubscribeRelay {
            channel: live.key.clone(),
            group,
            dests,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    let first = match tokio::time::timeout(RELAY_START_TIMEOUT, rx).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return Err(Error::NotFound),
        Ok(Err(_)) => return Err(Error::Unavailable("the channel stopped")),
        Err(_) => {
            let _ = shared
                .pacer
                .send(Command::Unsubscribe {
                    channel: live.key.clone(),
                    group,
                })
                .await;
            return Err(Error::Unavailable("no keyframe from the source yet"));
        }
    };
    let base = aggregate_url(&req.uri);
    let infos: Vec<RtpInfo> = first
        .iter()
        .enumerate()
        .filter_map(|(t, j)| {
            j.map(|j| RtpInfo {
                url: format!("{base}/trackID={t}"),
                seq: Some(j.seq),
                rtptime: Some(j.rtptime),
            })
        })
        .collect();
    Ok(ok
        .header("Range", "npt=now-")
        .header("RTP-Info", format_rtp_info(&infos)))
}
