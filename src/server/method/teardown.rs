//! TEARDOWN (RFC 2326 §10.7) of a session or one of its tracks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, info_span};

use super::{scoped, Shared};
use crate::proto::error::Error;
use crate::proto::rtsp::{Request, Response};
use crate::proto::session::Teardown;
use crate::server::pacing::Command;

pub(super) async fn teardown(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let (id, scope, _) = scoped(shared, req)?;
    let (group, what, header) =
        shared
            .sessions
            .with(&id, peer.ip(), conn, Instant::now(), |e| {
                (e.group, e.session.teardown(scope), e.session.header())
            })?;
    match what {
        Teardown::All => {
            if let Some(e) = shared.sessions.remove(&id) {
                info_span!("session", %id).in_scope(|| info!("session torn down"));
                crate::server::forget(shared, &e).await;
            }
        }
        Teardown::Track(track) => {
            let _ = shared
                .pacer
                .send(Command::RemoveTrack { group, track })
                .await;
        }
    }
    Ok(ok.header("Session", header))
}
