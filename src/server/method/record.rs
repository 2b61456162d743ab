//! RECORD (RFC 2326 §10.11): a publisher's packets start feeding its
//! channel.

use std::time::Instant;

use tracing::{info, info_span};

use super::Ctx;
use crate::proto::error::Error;
use crate::proto::rtsp::Response;
use crate::proto::session::Dest;
use crate::proto::target::{live_channel_name, LIVE_PREFIX};
use crate::server::channels::RecordFrom;
use crate::server::pacing::Command;

/// RECORD: the publisher's packets start feeding the channel.
pub(super) async fn record(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let (id, scope, path) = cx.scoped()?;
    let (shared, _req) = (cx.shared, cx.req);
    let name = live_channel_name(&path)?;
    let now = Instant::now();
    let (header, tt) = cx.with_session(&id, |e| {
        if e.session.presentation != format!("{LIVE_PREFIX}{name}") {
            return Err(Error::InvalidState("URL names another presentation"));
        }
        e.session.record(scope)?;
        let tt: Vec<_> = e.session.tracks().map(|(n, t)| (n, *t)).collect();
        Ok((e.session.header(), tt))
    })??;
    if tt.is_empty() {
        return Err(Error::InvalidState("no stream set up"));
    }
    // Each track's packets come from its RTP source address (UDP), or on
    // its interleaved channel.
    let from: Vec<(usize, RecordFrom)> = tt
        .into_iter()
        .map(|(track, t)| {
            let from = match (t.rtp, t.rtcp) {
                (Dest::Udp(rtp), Dest::Udp(rtcp)) => RecordFrom::Udp { rtp, rtcp },
                (Dest::Udp(rtp), _) => RecordFrom::Udp { rtp, rtcp: rtp },
                (Dest::Interleaved { conn, channel }, _) => {
                    RecordFrom::Interleaved { conn, channel }
                }
            };
            (track, from)
        })
        .collect();
    let (key, format) = shared.channels.record(name, &id, &from, now)?;
    shared
        .pacer
        .send(Command::StartPublisher { key, format })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    info_span!("session", %id).in_scope(|| info!(channel = %name, "recording"));
    Ok(ok.header("Session", header))
}
