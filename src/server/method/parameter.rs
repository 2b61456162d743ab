//! GET_PARAMETER and SET_PARAMETER (RFC 2326 §10.8, §10.9), and OPTIONS
//! (§10.1): keepalives when they carry a Session header.

use std::net::IpAddr;
use std::time::Instant;

use super::{Ctx, Shared};
use crate::proto::error::Error;
use crate::proto::rtsp::{Request, Response};
use crate::proto::session::session_id;

/// GET_PARAMETER / SET_PARAMETER. With an empty body they are keepalives
/// (ffmpeg, VLC and GStreamer use them so); no parameters are defined, so
/// any body gets 451.
pub(super) fn parameter(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let Ctx { shared: _, req, .. } = *cx;
    let ok = match session_id(req)? {
        Some(id) => {
            let header = cx.with_session(&id, |e| e.session.header())?;
            ok.header("Session", header)
        }
        None => ok,
    };
    if req.body.iter().all(u8::is_ascii_whitespace) {
        Ok(ok)
    } else {
        Err(Error::ParameterNotUnderstood)
    }
}

/// OPTIONS carrying a Session header is a keepalive too (VLC, GStreamer).
pub(super) fn keepalive(shared: &Shared, req: &Request, peer: IpAddr, conn: u64) {
    if let Ok(Some(id)) = session_id(req) {
        let _ = shared
            .sessions
            .with(&id, peer, conn, Instant::now(), |_| ());
    }
}
