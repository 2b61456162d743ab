//! PAUSE (RFC 2326 §10.6): stops the streams and keeps the position; a
//! listener leaves its live channel, a publisher stops feeding it.

use tokio::sync::oneshot;

use super::Ctx;
use crate::proto::error::Error;
use crate::proto::rtsp::Response;
use crate::proto::session::Mode;
use crate::server::pacing::Command;
use crate::server::sessions::Presentation;

pub(super) async fn pause(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let (id, scope, _) = cx.scoped()?;
    let (shared, _req) = (cx.shared, cx.req);
    let (group, was_playing, header, source, mode) = cx.with_session(&id, |e| {
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
