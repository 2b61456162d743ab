//! TEARDOWN (RFC 2326 §10.7) of a session or one of its tracks.

use super::Ctx;
use crate::proto::error::Error;
use crate::proto::rtsp::Response;
use crate::proto::session::Teardown;
use crate::server::pacing::Command;

pub(super) async fn teardown(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let (id, scope, _) = cx.scoped()?;
    let (shared, _req) = (cx.shared, cx.req);
    let (group, what, header) = cx.with_session(&id, |e| {
        (e.group, e.session.teardown(scope), e.session.header())
    })?;
    match what {
        Teardown::All => {
            if let Some(e) = shared.sessions.remove(&id) {
                crate::server::end(shared, &e, "teardown").await;
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
