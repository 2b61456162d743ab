//! Publishing to a live channel (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD,
//! §12.39 `mode=record`): a client announces an SDP for `/live/NAME`, sets
//! up its one audio stream with `mode=record` over UDP or interleaved TCP,
//! and RECORDs. Its RTP then feeds the channel, which listeners hear with
//! the channel's own SSRC, sequence and timeline ([`crate::proto::live`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, info_span};

use super::channels::RecordFrom;
use super::handler::{new_session_id, scoped, session_header, session_id, setup_reply, target};
use super::live::PREFIX;
use super::pacing::Command;
use super::sessions::{Entry, Presentation};
use super::Shared;
use crate::proto::depacketize::StreamFormat;
use crate::proto::error::Error;
use crate::proto::rtsp::{Request, Response};
use crate::proto::sdp::{self, SdpError};
use crate::proto::session::{Dest, Session, TrackTransport};
use crate::proto::target::Target;
use crate::proto::track_map::TrackMap;

/// The channel a publisher's URL names: `live/NAME`, optionally followed by
/// one stream control segment (`streamid=0` from ffmpeg, `stream=0` from
/// GStreamer's rtspclientsink).
fn channel_name(path: &str) -> Result<&str, Error> {
    let rest = path
        .strip_prefix(PREFIX)
        .ok_or(Error::Forbidden("only /live/NAME takes publishers"))?;
    match rest.split_once('/') {
        None => Ok(rest),
        Some((name, control)) if !control.contains('/') => Ok(name),
        Some(_) => Err(Error::NotFound),
    }
}

/// ANNOUNCE: checks the SDP and reserves the channel for this connection.
pub(super) async fn announce(
    shared: &Arc<Shared>,
    req: &Request,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let t = target(shared, req)?;
    let name = channel_name(&t.path)?;
    let is_sdp = req.headers.get("Content-Type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
    });
    if !is_sdp {
        return Err(Error::UnsupportedMedia(
            "ANNOUNCE needs an application/sdp body".into(),
        ));
    }
    let tracks = sdp::parse_offer(&req.body).map_err(|e| match e {
        SdpError::NoMedia => Error::UnsupportedMedia(e.to_string()),
        _ => Error::BadRequest("the SDP does not parse"),
    })?;
    let [track] = tracks.as_slice() else {
        return Err(Error::UnsupportedMedia(format!(
            "a live channel carries one audio stream; this SDP has {}",
            tracks.len()
        )));
    };
    let format =
        StreamFormat::from_offer(track).map_err(|e| Error::UnsupportedMedia(e.to_string()))?;
    let announced = shared
        .channels
        .announce(name, conn, format, Instant::now())?;
    if let Some(channel) = announced.started {
        let key = announced.info.key.clone();
        info!(channel = %key, "live channel started by its first publisher");
        shared
            .pacer
            .send(Command::AddChannel {
                key,
                channel: Box::new(channel),
            })
            .await
            .map_err(|_| Error::Unavailable("shutting down"))?;
    }
    info!(
        channel = %name,
        codec = format.codec.name(),
        rate = format.rate,
        channels = format.channels,
        "publisher announced"
    );
    Ok(ok)
}

/// SETUP with `mode=record` of the stream this connection announced.
pub(super) fn setup(
    shared: &Arc<Shared>,
    req: &Request,
    t: &Target,
    dest: TrackTransport,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let name = channel_name(&t.path).map_err(|_| {
        Error::UnsupportedTransport("mode=record is offered on /live/NAME only".into())
    })?;
    let (info, _) = shared.channels.announced(name, conn)?;
    if session_id(req)?.is_some() {
        return Err(Error::InvalidState("the publisher's one stream is set up"));
    }
    let interleaved = dest.rtp.udp().is_none();
    if interleaved {
        if shared.sessions.interleaved_on(conn) {
            return Err(Error::InvalidState(
                "this connection already streams an interleaved session",
            ));
        }
        shared.sinks.open(conn, shared.config.client_queue);
    }
    let id = new_session_id()?;
    let path = format!("{PREFIX}{name}");
    let now = Instant::now();
    let mut session = Session::new(
        id.clone(),
        peer.ip(),
        path.clone(),
        shared.config.session_timeout,
        now,
    )
    .recording();
    session.setup(&path, 0, dest)?;
    let header = session_header(&session);
    shared.sessions.insert(Entry {
        session,
        group: shared.next_group.fetch_add(1, Ordering::Relaxed),
        source: Presentation::Live(info),
        conn,
        ssrcs: TrackMap::default(),
    })?;
    shared.channels.bind_session(name, conn, &id);
    info_span!("session", %id)
        .in_scope(|| info!(channel = %name, client = %peer, "publishing session created"));
    setup_reply(shared, dest, None, ok, header)
}

/// RECORD: the publisher's packets start feeding the channel.
pub(super) async fn record(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let (id, scope, path) = scoped(shared, req)?;
    let name = channel_name(&path)?;
    let now = Instant::now();
    let (header, tt) = shared.sessions.with(&id, peer.ip(), conn, now, |e| {
        if e.session.presentation != format!("{PREFIX}{name}") {
            return Err(Error::InvalidState("URL names another presentation"));
        }
        e.session.record(scope)?;
        let tt = e.session.tracks().map(|(_, t)| *t).next();
        Ok((session_header(&e.session), tt))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_urls() {
        assert_eq!(channel_name("live/studio"), Ok("studio"));
        assert_eq!(channel_name("live/studio/stream=0"), Ok("studio"));
        assert_eq!(channel_name("live/a/b/c"), Err(Error::NotFound));
        assert_eq!(channel_name("music.wav").unwrap_err().status().0, 403);
    }
}
