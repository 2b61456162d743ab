//! PAUSE (RFC 2326 §10.6): stops the streams and keeps the position; a
//! listener leaves its live channel, a publisher stops feeding it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{scoped, Shared};
use crate::proto::error::Error;
use crate::proto::rtsp::{Request, Response};
use crate::proto::session::Mode;
use crate::server::pacing::Command;
use crate::server::sessions::Presentation;

pub(super) async fn pause(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let (id, scope, _) = scoped(shared, req)?;
    let (group, was_playing, header, source, mode) =
        shared
            .sessions
            .with(&id, peer.ip(), conn, Instant::now(), |e| {
                e.session.pause(scope).map(|p| {
                    (
                        e.group,
                        p,
                        e.session.header(),
                        e.source.clone(),
                        e.session.mode(),
                    )
                })
            })??;
    if let (true, Presentation::Live(live), Mode::Record) = (was_playing, &source, mode) {
        let key = live.key.clone();
        let _ = shared.pacer.send(Command::StopPublisher { key }).await;
    } else if let (true, Presentation::Live(live)) = (was_playing, &source) {
        let _ = shared
            .pacer
            .send(Command::Unsubscribe {
                channel: live.key.clone(),
                group,
            })
            .await;
    } else if was_playing {
        // Wait for the pacer so nothing is sent after the reply.
        let (reply, rx) = oneshot::channel();
        if shared
            .pacer
            .send(Command::Pause { group, reply })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
    Ok(ok.header("Session", header))
}
