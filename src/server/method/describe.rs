//! DESCRIBE (RFC 2326 §10.2): the presentation's SDP (RFC 4566), with a
//! Content-Base that RTP-Info and SETUP URLs resolve against (§C.1.1).

use std::net::IpAddr;

use super::{open_presentation, target, Ctx};
use crate::proto::error::Error;
use crate::proto::rtsp::Response;
use crate::proto::sdp;
use crate::proto::target::aggregate_url;
use crate::server::sessions::Presentation;

pub(super) async fn describe(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let Ctx {
        shared, req, peer, ..
    } = *cx;
    let t = target(shared, req)?;
    if t.track.is_some() {
        return Err(Error::NotFound);
    }
    let source = open_presentation(shared, &t.path).await?;
    let sdp = sdp_of(&source, peer.ip(), None);
    Ok(ok
        .header("Content-Base", format!("{}/", aggregate_url(&req.uri)))
        .body("application/sdp", sdp))
}

/// The SDP of `source` for a client at `peer`: control URLs relative to the
/// Content-Base (DESCRIBE), or absolute under `base`, the presentation's
/// `rtsp://` URL (SDP over HTTP).
pub(crate) fn sdp_of(source: &Presentation, peer: IpAddr, base: Option<&str>) -> String {
    let desc = source.description();
    let ip = local_ip_for(peer);
    match base {
        None => sdp::describe(&desc, ip, session_version()),
        Some(base) => sdp::describe_absolute(&desc, ip, session_version(), base),
    }
}

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
