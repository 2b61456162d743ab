//! SETUP (RFC 2326 §10.4): creates a session or adds a track to one, over
//! the transport chosen by [`crate::proto::setup::choose_transport`]; with
//! `mode=record` (§12.39), the publisher's one stream of an announced
//! channel.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tracing::{info, info_span};

use super::{new_session_id, open_presentation, random_bytes, target, Ctx, Shared};
use crate::proto::error::Error;
use crate::proto::pacer::TrackConfig;
use crate::proto::rtsp::Response;
use crate::proto::session::{session_id, Mode, Session, TrackTransport};
use crate::proto::setup::{choose_transport, reply_transport};
use crate::proto::target::{live_channel_name, Target, LIVE_PREFIX};
use crate::proto::track_map::TrackMap;
use crate::server::live::LiveInfo;
use crate::server::pacing::Command;
use crate::server::sessions::{Entry, Presentation};

pub(super) async fn setup(cx: &Ctx<'_>, ok: Response) -> Result<Response, Error> {
    let Ctx {
        shared,
        req,
        peer,
        conn,
        user,
    } = *cx;
    let t = target(shared, req)?;
    let (dest, mode) = choose_transport(
        req.headers.get("Transport"),
        peer.ip(),
        conn,
        t.track.unwrap_or(0),
    )?;
    if dest.rtp.udp().is_some() && shared.is_tls(conn) {
        // RTSPS (server::tls): media goes interleaved on the TLS connection.
        return Err(Error::PlaintextAfterTls);
    }
    if mode == Mode::Record {
        if !shared.channels.takes_publishers() {
            return Err(Error::UnsupportedTransport(
                "mode=record: this server takes no publishers".into(),
            ));
        }
        return setup_record(cx, &t, dest, ok);
    }
    let source = open_presentation(shared, &t.path).await?;
    let track = match t.track {
        Some(n) => n,
        // A SETUP on the aggregate URL of a one-track clip means that track.
        None if source.track_count() == 1 => 0,
        None => return Err(Error::OnlyAggregate),
    };
    if track >= source.track_count() {
        return Err(Error::NotFound);
    }
    if dest.rtp.udp().is_none() {
        shared.sinks.open(conn, shared.config().client_queue);
    }
    let now = Instant::now();
    let existing = session_id(req)?;

    // An on-demand track gets its own sender; a live one shares the
    // channel's.
    let [a, b, c, d, e, f, g, h, i, j] = random_bytes::<10>()?;
    let cfg = match &source {
        Presentation::Clip(clip) => {
            let ct = clip.tracks.get(track).ok_or(Error::NotFound)?;
            Some(TrackConfig {
                packetizer: ct.packetizer.clone(),
                ssrc: u32::from_be_bytes([a, b, c, d]),
                payload_type: ct.description.payload_type,
                first_seq: u16::from_be_bytes([e, f]),
                first_rtptime: u32::from_be_bytes([g, h, i, j]),
                rtp_dest: dest.rtp,
                rtcp_dest: dest.rtcp,
            })
        }
        Presentation::Live(_) => None,
    };
    let new_ssrc = match (&source, &cfg) {
        (Presentation::Live(l), _) => l.ssrc_of(track).ok_or(Error::NotFound)?,
        (_, Some(cfg)) => cfg.ssrc,
        (_, None) => return Err(Error::Internal("no sender".into())),
    };

    let (group, header, ssrc) = match existing {
        Some(id) => shared.sessions.with_dests(
            &id,
            peer.ip(),
            conn,
            now,
            &[dest.rtp, dest.rtcp],
            |e| {
                e.session.setup(&t.path, track, dest)?;
                let ssrc = *e.ssrcs.get_or_insert(track, new_ssrc);
                Ok::<_, Error>((e.group, e.session.header(), ssrc))
            },
        )??,
        None if dest.rtp.udp().is_none() && shared.sessions.interleaved_on(conn) => {
            // One interleaved session per connection (ROBUSTNESS B4#32).
            return Err(Error::InvalidState(
                "this connection already streams an interleaved session",
            ));
        }
        None => {
            let id = new_session_id()?;
            let mut session = Session::new(
                id.clone(),
                peer.ip(),
                t.path.clone(),
                shared.config().session_timeout,
                now,
            );
            session.setup(&t.path, track, dest)?;
            let group = shared.next_group.fetch_add(1, Ordering::Relaxed);
            let header = session.header();
            let counters = shared.metrics.session(&t.path);
            shared.sessions.insert(Entry {
                session,
                group,
                source: source.clone(),
                conn,
                ssrcs: TrackMap::one(track, new_ssrc),
                client: peer,
                started: (SystemTime::now(), now),
                counters: counters.clone(),
                last_rr: None,
                principal: user.map(str::to_owned),
            })?;
            shared
                .metrics
                .sessions_started
                .fetch_add(1, Ordering::Relaxed);
            info_span!("session", %id)
                .in_scope(|| info!(clip = %t.path, client = %peer, "session created"));
            // Before any track: the pacing thread counts from the first packet.
            shared
                .pacer
                .send(Command::Count { group, counters })
                .await
                .map_err(|_| Error::Unavailable("shutting down"))?;
            (group, header, new_ssrc)
        }
    };
    // A repeated SETUP keeps the existing sender (and its SSRC); the pacer
    // only moves its destination.
    if let Some(cfg) = cfg {
        shared
            .pacer
            .send(Command::AddTrack { group, track, cfg })
            .await
            .map_err(|_| Error::Unavailable("shutting down"))?;
    }
    setup_reply(shared, dest, Some(ssrc), ok, header)
}

/// SETUP with `mode=record` of the stream this connection announced.
fn setup_record(
    cx: &Ctx<'_>,
    t: &Target,
    dest: TrackTransport,
    ok: Response,
) -> Result<Response, Error> {
    let Ctx {
        shared,
        req,
        peer,
        conn,
        user,
    } = *cx;
    let name = live_channel_name(&t.path).map_err(|_| {
        Error::UnsupportedTransport("mode=record is offered on /live/NAME only".into())
    })?;
    let (info, _) = shared.channels.announced(name, conn)?;
    let track = record_track(&info, t, &req.uri)?;
    let interleaved = dest.rtp.udp().is_none();
    let path = format!("{LIVE_PREFIX}{name}");
    let now = Instant::now();
    if let Some(id) = session_id(req)? {
        // A relay channel's next track, on the publisher's session.
        if info.relay.is_none() {
            return Err(Error::InvalidState("the publisher's one stream is set up"));
        }
        let header = shared.sessions.with_dests(
            &id,
            peer.ip(),
            conn,
            now,
            &[dest.rtp, dest.rtcp],
            |e| {
                if e.session.mode() != Mode::Record {
                    return Err(Error::InvalidState("not a publishing session"));
                }
                e.session.setup(&path, track, dest)?;
                Ok::<_, Error>(e.session.header())
            },
        )??;
        return setup_reply(shared, dest, None, ok, header);
    }
    if interleaved {
        if shared.sessions.interleaved_on(conn) {
            return Err(Error::InvalidState(
                "this connection already streams an interleaved session",
            ));
        }
        shared.sinks.open(conn, shared.config().client_queue);
    }
    let id = new_session_id()?;
    let mut session = Session::new(
        id.clone(),
        peer.ip(),
        path.clone(),
        shared.config().session_timeout,
        now,
    )
    .recording();
    session.setup(&path, track, dest)?;
    let header = session.header();
    shared.sessions.insert(Entry {
        session,
        group: shared.next_group.fetch_add(1, Ordering::Relaxed),
        source: Presentation::Live(info),
        conn,
        ssrcs: TrackMap::default(),
        client: peer,
        started: (SystemTime::now(), now),
        counters: shared.metrics.session(&path),
        last_rr: None,
        principal: user.map(str::to_owned),
    })?;
    shared
        .metrics
        .sessions_started
        .fetch_add(1, Ordering::Relaxed);
    shared.channels.bind_session(name, conn, &id);
    info_span!("session", %id)
        .in_scope(|| info!(channel = %name, client = %peer, "publishing session created"));
    setup_reply(shared, dest, None, ok, header)
}

/// Which announced track a publisher's SETUP names: `trackID=N` or
/// `streamid=N` (ffmpeg), or the track whose `a=control` the URL ends with
/// (GStreamer's `stream=N`, or any name the publisher chose). An audio
/// channel has one.
fn record_track(info: &LiveInfo, t: &Target, uri: &str) -> Result<usize, Error> {
    let Some(relay) = &info.relay else {
        return match t.track {
            None | Some(0) => Ok(0),
            Some(_) => Err(Error::NotFound),
        };
    };
    let by_control = || {
        let last = uri.trim_end_matches('/').rsplit('/').next()?;
        relay.tracks.iter().position(|tr| {
            tr.control
                .as_deref()
                .is_some_and(|c| c.trim_end_matches('/').rsplit('/').next() == Some(last))
        })
    };
    let track = match t.track {
        Some(n) => Some(n),
        None if relay.tracks.len() == 1 => Some(0),
        None => by_control(),
    };
    track
        .filter(|&n| n < relay.tracks.len())
        .ok_or(Error::NotFound)
}

/// A SETUP's 200: the transport chosen (with the shared server ports for
/// UDP) and the session.
fn setup_reply(
    shared: &Shared,
    dest: TrackTransport,
    ssrc: Option<u32>,
    ok: Response,
    session: String,
) -> Result<Response, Error> {
    let reply = reply_transport(dest, ssrc, shared.rtp_port)?;
    Ok(ok
        .header("Transport", reply.to_string())
        .header("Session", session))
}
