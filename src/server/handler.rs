//! Method dispatch (RFC 2326 §10): turns one request into one response,
//! using the sans-IO session machine for every status decision and the
//! pacing loop for the streams.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tracing::{debug, info, info_span};

use super::live::{self, LiveInfo};
use super::pacing::Command;
use super::publish;
use super::refusals::RETRY_AFTER_SECS;
use super::sessions::{Entry, Presentation};
use super::Shared;
use crate::media::Clip;
use crate::proto::error::Error;
use crate::proto::pacer::{GroupId, TrackConfig};
use crate::proto::rtsp::range::NptRange;
use crate::proto::rtsp::rtp_info::{format_rtp_info, RtpInfo};
use crate::proto::rtsp::session_header::SessionHeader;
use crate::proto::rtsp::transport::{parse_transports, LowerTransport, Transport};
use crate::proto::rtsp::{Method, Request, Response, StatusCode};
use crate::proto::sdp;
use crate::proto::session::{Dest, Mode, Scope, Session, Teardown, TrackTransport};
use crate::proto::target::{parse_target, Target};
use crate::proto::track_map::TrackMap;

const PUBLIC_PLAY: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
const PUBLIC_PUBLISH: &str = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, \
                              TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The methods this server implements, for `Public:` and `Allow:`:
/// ANNOUNCE and RECORD only when a channel takes publishers.
fn public(shared: &Shared) -> &'static str {
    if shared.channels.takes_publishers() {
        PUBLIC_PUBLISH
    } else {
        PUBLIC_PLAY
    }
}

/// A response with the headers every response carries.
pub(crate) fn base_response(status: StatusCode, cseq: Option<u32>) -> Response {
    let r = Response::new(status).header("Server", concat!("rtspd/", env!("CARGO_PKG_VERSION")));
    match cseq {
        Some(c) => r.header("CSeq", c.to_string()),
        None => r,
    }
}

/// Answers one request.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
) -> Response {
    let Some(cseq) = req.cseq() else {
        // A method we do not implement at all (an HTTP client's `GET`, say)
        // is 501 whether or not it carried a CSeq (ROBUSTNESS B1#5).
        let status = if matches!(req.method, Method::Other(_)) {
            StatusCode::NOT_IMPLEMENTED
        } else {
            StatusCode::BAD_REQUEST
        };
        return base_response(status, None);
    };
    debug!(method = %req.method, uri = %req.uri, cseq, "request");
    if let Some(tags) = req.headers.get("Require") {
        return base_response(StatusCode::OPTION_NOT_SUPPORTED, Some(cseq))
            .header("Unsupported", tags);
    }
    let ok = base_response(StatusCode::OK, Some(cseq));
    let result = match req.method {
        Method::Options => {
            keepalive(shared, req, peer.ip(), conn);
            Ok(ok.header("Public", public(shared)))
        }
        Method::Describe => describe(shared, req, peer, ok).await,
        Method::Setup => setup(shared, req, peer, conn, ok).await,
        Method::Play => play(shared, req, peer, conn, ok).await,
        Method::Pause => pause(shared, req, peer, conn, ok).await,
        Method::Teardown => teardown(shared, req, peer, conn, ok).await,
        Method::GetParameter | Method::SetParameter => parameter(shared, req, peer, conn, ok),
        Method::Announce if shared.channels.takes_publishers() => {
            publish::announce(shared, req, conn, ok).await
        }
        Method::Record if shared.channels.takes_publishers() => {
            publish::record(shared, req, peer, conn, ok).await
        }
        // A play-only server (ROBUSTNESS B4#36).
        Method::Announce | Method::Record | Method::Redirect => {
            return base_response(StatusCode::METHOD_NOT_ALLOWED, Some(cseq))
                .header("Allow", public(shared));
        }
        Method::Other(_) => Err(Error::NotImplemented),
    };
    result.unwrap_or_else(|e| {
        debug!(method = %req.method, error = %e, "request refused");
        let mut r = base_response(e.status(), Some(cseq));
        if let Some(reason) = e.reason() {
            r = r.reason(reason);
        }
        if let Error::LimitReached(limit) = e {
            shared.refusals.refuse(limit);
            r = r.header("Retry-After", RETRY_AFTER_SECS.to_string());
        }
        if matches!(e, Error::NotImplemented) {
            r.header("Public", public(shared))
        } else {
            r
        }
    })
}

pub(super) fn target(shared: &Shared, req: &Request) -> Result<Target, Error> {
    parse_target(&req.uri, shared.config.limits.max_uri)
}

/// The clip or live channel a path names.
async fn open_presentation(shared: &Arc<Shared>, path: &str) -> Result<Presentation, Error> {
    match path.strip_prefix(live::PREFIX) {
        Some(name) => shared
            .channels
            .get(name)
            .map(Presentation::Live)
            .ok_or(Error::NotFound),
        None => open_clip(shared, path).await.map(Presentation::Clip),
    }
}

async fn open_clip(shared: &Arc<Shared>, path: &str) -> Result<Arc<Clip>, Error> {
    if path.is_empty() {
        return Err(Error::NotFound);
    }
    let shared2 = shared.clone();
    let p = path.to_owned();
    let opened = tokio::task::spawn_blocking(move || shared2.catalog.open(&p))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    opened.map_err(|e| {
        info!(clip = %path, error = %e, "cannot serve clip");
        Error::from(e)
    })
}

/// The aggregate URL of the presentation a request names, without a
/// trailing slash: the Request-URI as the client wrote it, minus any
/// `trackID=` segment.
fn aggregate_url(req: &Request) -> String {
    let base = req.uri.trim_end_matches('/');
    match base.rsplit_once('/') {
        Some((head, last)) if last.starts_with("trackID=") => head.to_owned(),
        _ => base.to_owned(),
    }
}

async fn describe(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    ok: Response,
) -> Result<Response, Error> {
    let t = target(shared, req)?;
    if t.track.is_some() {
        return Err(Error::NotFound);
    }
    let source = open_presentation(shared, &t.path).await?;
    let server_ip = local_ip_for(peer.ip());
    let sdp = sdp::describe(&source.description(), server_ip, session_version());
    Ok(ok
        .header("Content-Base", format!("{}/", aggregate_url(req)))
        .body("application/sdp", sdp))
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

/// A new session id: 128 random bits from the OS, in hex.
pub(super) fn new_session_id() -> Result<String, Error> {
    Ok(random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("OS random source: {e}")))?;
    Ok(b)
}

/// Picks the first acceptable transport-spec (ROBUSTNESS B5): RTP/AVP over
/// unicast UDP with a valid client port pair, or interleaved on this
/// connection (RFC 2326 §10.12; channels `2 * track` and the next when the
/// client names none), and no destination other than the client itself
/// (§12.39: no third-party delivery).
pub(super) fn choose_transport(
    req: &Request,
    peer: IpAddr,
    conn: u64,
    track: usize,
) -> Result<(TrackTransport, Mode), Error> {
    let value = req
        .headers
        .get("Transport")
        .ok_or_else(|| Error::UnsupportedTransport("no Transport header".into()))?;
    let mut why = String::from("no transport offered");
    for t in parse_transports(value) {
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        if t.protocol != "RTP" || t.profile != "AVP" {
            why = format!("{}/{} is not supported", t.protocol, t.profile);
            continue;
        }
        if t.multicast {
            why = "multicast is not offered".into();
            continue;
        }
        let mode = match t.mode.as_deref() {
            None => Mode::Play,
            Some(m) if m.eq_ignore_ascii_case("play") => Mode::Play,
            Some(m) if m.eq_ignore_ascii_case("record") => Mode::Record,
            Some(m) => {
                why = format!("mode={m} is not offered");
                continue;
            }
        };
        if let Some(d) = &t.destination {
            if d.parse::<IpAddr>().ok() != Some(peer) {
                why = format!("destination {d} is not the client");
                continue;
            }
        }
        if t.lower == LowerTransport::Tcp {
            let first = u8::try_from(track * 2).unwrap_or(254).min(254);
            let (rtp, rtcp) = t.interleaved.unwrap_or((first, first + 1));
            if rtp.checked_add(1) != Some(rtcp) {
                why = "interleaved channels must be a pair n-(n+1)".into();
                continue;
            }
            let tt = TrackTransport {
                rtp: Dest::Interleaved { conn, channel: rtp },
                rtcp: Dest::Interleaved {
                    conn,
                    channel: rtcp,
                },
            };
            return Ok((tt, mode));
        }
        let (rtp, rtcp) = match t.validate_client_ports() {
            Ok(p) => p,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        let tt = TrackTransport {
            rtp: Dest::Udp(SocketAddr::new(peer, rtp)),
            rtcp: Dest::Udp(SocketAddr::new(peer, rtcp)),
        };
        return Ok((tt, mode));
    }
    Err(Error::UnsupportedTransport(why))
}

pub(super) fn session_id(req: &Request) -> Result<Option<String>, Error> {
    let mut all = req.headers.get_all("Session");
    let Some(v) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(Error::BadRequest("two Session headers"));
    }
    let h: SessionHeader = v.parse().map_err(|_| Error::SessionNotFound)?;
    Ok(Some(h.id))
}

pub(super) fn session_header(s: &Session) -> String {
    SessionHeader {
        id: s.id.clone(),
        timeout: Some(s.timeout().as_secs().clamp(1, 86_400) as u32),
    }
    .to_string()
}

async fn setup(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let t = target(shared, req)?;
    let (dest, mode) = choose_transport(req, peer.ip(), conn, t.track.unwrap_or(0))?;
    if mode == Mode::Record {
        if !shared.channels.takes_publishers() {
            return Err(Error::UnsupportedTransport(
                "mode=record: this server takes no publishers".into(),
            ));
        }
        return publish::setup(shared, req, &t, dest, peer, conn, ok);
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
        shared.sinks.open(conn, shared.config.client_queue);
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
        (Presentation::Live(l), _) => l.ssrc,
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
                Ok::<_, Error>((e.group, session_header(&e.session), ssrc))
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
                shared.config.session_timeout,
                now,
            );
            session.setup(&t.path, track, dest)?;
            let group = shared.next_group.fetch_add(1, Ordering::Relaxed);
            let header = session_header(&session);
            shared.sessions.insert(Entry {
                session,
                group,
                source: source.clone(),
                conn,
                ssrcs: TrackMap::one(track, new_ssrc),
            })?;
            info_span!("session", %id)
                .in_scope(|| info!(clip = %t.path, client = %peer, "session created"));
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

/// A SETUP's 200: the transport chosen (with the shared server ports for
/// UDP) and the session.
pub(super) fn setup_reply(
    shared: &Shared,
    dest: TrackTransport,
    ssrc: Option<u32>,
    ok: Response,
    session: String,
) -> Result<Response, Error> {
    let mut reply = Transport {
        protocol: "RTP".into(),
        profile: "AVP".into(),
        ssrc,
        ..Transport::default()
    };
    match (dest.rtp, dest.rtcp) {
        (Dest::Udp(rtp), Dest::Udp(rtcp)) => {
            reply.lower = LowerTransport::Udp;
            reply.client_port = Some((rtp.port(), rtcp.port()));
            reply.server_port = Some((shared.rtp_port, shared.rtp_port + 1));
        }
        (Dest::Interleaved { channel: a, .. }, Dest::Interleaved { channel: b, .. }) => {
            reply.lower = LowerTransport::Tcp;
            reply.interleaved = Some((a, b));
        }
        _ => return Err(Error::Internal("mixed transport".into())),
    }
    Ok(ok
        .header("Transport", reply.to_string())
        .header("Session", session))
}

/// Resolves the session a request names, for the session-scoped methods.
pub(super) fn scoped(shared: &Shared, req: &Request) -> Result<(String, Scope, String), Error> {
    let id = session_id(req)?.ok_or(Error::SessionNotFound)?;
    let t = target(shared, req)?;
    let scope = t.track.map_or(Scope::Aggregate, Scope::Track);
    Ok((id, scope, t.path))
}

async fn play(
    shared: &Arc<Shared>,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let (id, scope, path) = scoped(shared, req)?;
    let mut ranges = req.headers.get_all("Range");
    let range: Option<NptRange> = match (ranges.next(), ranges.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.parse().map_err(|e| Error::InvalidRange(format!("{e}")))?),
        (Some(_), Some(_)) => return Err(Error::BadRequest("two Range headers")),
    };
    let (group, play, header, tracks, source, transports) =
        shared
            .sessions
            .with(&id, peer.ip(), conn, Instant::now(), |e| {
                if path != e.session.presentation {
                    return Err(Error::InvalidState("URL names another presentation"));
                }
                let play = e.session.play(scope, range.as_ref(), e.source.duration())?;
                let tracks: Vec<usize> = e.session.tracks().map(|(t, _)| t).collect();
                let transports: Vec<_> = e.session.tracks().map(|(_, t)| *t).collect();
                Ok((
                    e.group,
                    play,
                    session_header(&e.session),
                    tracks,
                    e.source.clone(),
                    transports,
                ))
            })??;
    if let Presentation::Live(live) = &source {
        let tt = transports
            .first()
            .ok_or(Error::InvalidState("no track set up"))?;
        return play_live(shared, req, live, group, *tt, ok.header("Session", header)).await;
    }
    let (reply, rx) = oneshot::channel();
    shared
        .pacer
        .send(Command::Play {
            group,
            req: play,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    let info = rx
        .await
        .map_err(|_| Error::Unavailable("shutting down"))??;
    let base = aggregate_url(req);
    let infos: Vec<RtpInfo> = info
        .tracks
        .iter()
        .filter(|(t, _, _)| tracks.contains(t))
        .map(|&(t, seq, rtptime)| RtpInfo {
            url: format!("{base}/trackID={t}"),
            seq: Some(seq),
            rtptime: Some(rtptime),
        })
        .collect();
    let range = NptRange {
        start: crate::proto::rtsp::range::NptTime::Seconds(info.start),
        end: Some(info.end),
    };
    debug!(session = %id, start = info.start, end = info.end, "playing");
    Ok(ok
        .header("Session", header)
        .header("Range", range.to_string())
        .header("RTP-Info", format_rtp_info(&infos)))
}

/// PLAY on a live channel: join at the live edge (RFC 2326 §C.1.5).
async fn play_live(
    shared: &Arc<Shared>,
    req: &Request,
    live: &LiveInfo,
    group: GroupId,
    tt: TrackTransport,
    ok: Response,
) -> Result<Response, Error> {
    let (reply, rx) = oneshot::channel();
    shared
        .pacer
        .send(Command::Subscribe {
            channel: live.key.clone(),
            group,
            rtp: tt.rtp,
            rtcp: tt.rtcp,
            reply,
        })
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?;
    let join = rx
        .await
        .map_err(|_| Error::Unavailable("shutting down"))?
        .ok_or(Error::NotFound)?;
    let info = RtpInfo {
        url: format!("{}/trackID=0", aggregate_url(req)),
        seq: Some(join.seq),
        rtptime: Some(join.rtptime),
    };
    Ok(ok
        .header("Range", "npt=now-")
        .header("RTP-Info", format_rtp_info(&[info])))
}

async fn pause(
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
                        session_header(&e.session),
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

async fn teardown(
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
                (
                    e.group,
                    e.session.teardown(scope),
                    session_header(&e.session),
                )
            })?;
    match what {
        Teardown::All => {
            if let Some(e) = shared.sessions.remove(&id) {
                info_span!("session", %id).in_scope(|| info!("session torn down"));
                super::forget(shared, &e).await;
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

/// GET_PARAMETER / SET_PARAMETER. With an empty body they are keepalives
/// (ffmpeg, VLC and GStreamer use them so); no parameters are defined, so
/// any body gets 451.
fn parameter(
    shared: &Shared,
    req: &Request,
    peer: SocketAddr,
    conn: u64,
    ok: Response,
) -> Result<Response, Error> {
    let ok = match session_id(req)? {
        Some(id) => {
            let header = shared
                .sessions
                .with(&id, peer.ip(), conn, Instant::now(), |e| {
                    session_header(&e.session)
                })?;
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
fn keepalive(shared: &Shared, req: &Request, peer: IpAddr, conn: u64) {
    if let Ok(Some(id)) = session_id(req) {
        let _ = shared
            .sessions
            .with(&id, peer, conn, Instant::now(), |_| ());
    }
}
