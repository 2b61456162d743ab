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
        let tt = e.session.tracks().map(|(_, t)| *t).next();
        Ok((e.session.header(), tt))
    })??;
    let from = match tt.map(|t| t.rtp) {
        Some(Dest::Udp(a)) => RecordFrom::Udp(a),
        Some(Dest::Interleaved { conn, channel }) => RecordFrom::Interleaved { conn, channel },
        None => return Err(Error::InvalidState("no stream set up")),
    };
    let (key, format) = shared.channels.record(name, &id, from, now)?;
    shared
        .pacer
        .send(Command::StartPublisher { key, format })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    info_span!("session", %id).in_scope(|| info!(channel = %name, "recording"));
    Ok(ok.header("Session", header))
}
