//! RECORD (RFC 2326 §10.11): a publisher's packets start feeding its
//! channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, info_span};

use super::{scoped, Shared};
use crate::proto::error::Error;
use crate::proto::rtsp::{Request, Response};
use crate::proto::session::Dest;
use crate::proto::target::{live_channel_name, LIVE_PREFIX};
use crate::server::channels::RecordFrom;
use crate::server::pacing::Command;

/// RECORD: the publisher's packets start feeding the channel.
pub(super) async fn record(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let (id, scope, path) = scoped(shared, req)?;
    let name = live_channel_name(&path)?;
    let now = Instant::now();
    let (header, tt) = shared.sessions.with(&id, peer.ip(), conn, now, |e| {
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
