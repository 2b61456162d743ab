//! The JSON API under `/api/v1`: the paths served (clips and live
//! channels), the sessions (paged: `?limit=&offset=`, at most
//! [`MAX_PAGE`] per answer, with the total), kicking a session, and the
//! reload hook.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::{Bases, State};
use crate::proto::sdp::TrackDescription;
use crate::proto::target::{encode_path, LIVE_PREFIX};
use crate::server::method::open_presentation;
use crate::server::sessions::{Entry, LastReport, Presentation};

/// Most sessions in one answer.
pub(super) const MAX_PAGE: usize = 1000;

/// One clip or live channel.
#[derive(Debug, Serialize)]
pub(super) struct PathInfo {
    pub(super) path: String,
    pub(super) kind: &'static str,
    pub(super) url: String,
    /// The `rtsps://` URL, when RTSPS runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rtsps_url: Option<String>,
    pub(super) tracks: Vec<TrackInfo>,
    pub(super) duration_s: Option<f64>,
    pub(super) readers: usize,
}

/// One track as `a=rtpmap` (RFC 4566 §6) and, for H.264, the SPS in
/// `sprop-parameter-sets` (RFC 6184 §8.1) describe it.
#[derive(Debug, Serialize, PartialEq)]
pub(super) struct TrackInfo {
    pub(super) media: &'static str,
    pub(super) codec: String,
    pub(super) clock_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) channels: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) height: Option<u32>,
}

impl TrackInfo {
    fn of(t: &TrackDescription) -> Self {
        let mut parts = t.rtpmap.split('/');
        let codec = parts.next().unwrap_or_default().to_owned();
        let clock_rate = parts.next().and_then(|r| r.parse().ok());
        let channels = match (t.media, parts.next()) {
            ("audio", Some(c)) => c.parse().ok(),
            ("audio", None) => Some(1),
            _ => None,
        };
        let size = t.fmtp.as_deref().and_then(video_size);
        Self {
            media: t.media,
            codec,
            clock_rate,
            channels,
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
        }
    }
}

/// Width and height from the first SPS of an H.264 `a=fmtp`'s
/// `sprop-parameter-sets`.
fn video_size(fmtp: &str) -> Option<(u32, u32)> {
    let sets = fmtp
        .split(';')
        .find_map(|p| p.trim().strip_prefix("sprop-parameter-sets="))?;
    let sps = sets
        .split(',')
        .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .find(|n| n.first().is_some_and(|h| h & 0x1f == 7))?;
    let nal = RefNal::new(&sps, &[], true);
    SeqParameterSet::from_bits(nal.rbsp_bits())
        .ok()?
        .pixel_dimensions()
        .ok()
}

/// Every clip under the media root and every live channel, with readers.
pub(super) async fn list_paths(state: &State, base: &Bases) -> Vec<PathInfo> {
    let shared = &state.shared;
    let readers = shared.sessions.census().readers;
    let catalog_shared = shared.clone();
    let clips = tokio::task::spawn_blocking(move || catalog_shared.catalog().list())
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(clips.len());
    for path in clips {
        // The catalog caches what it decoded: only the first listing reads.
        let clip = match open_presentation(shared, &path).await {
            Ok(p) => p,
            Err(e) => {
                debug!(clip = %path, error = %e, "not listed");
                continue;
            }
        };
        out.push(info(&path, "clip", Some(&clip), base, &readers));
    }
    for (name, live) in shared.channels.list() {
        let path = format!("{LIVE_PREFIX}{name}");
        let live = live.map(Presentation::Live);
        out.push(info(&path, "live", live.as_ref(), base, &readers));
    }
    out
}

fn info(
    path: &str,
    kind: &'static str,
    p: Option<&Presentation>,
    base: &Bases,
    readers: &std::collections::BTreeMap<String, usize>,
) -> PathInfo {
    let desc = p.map(Presentation::description);
    let encoded = encode_path(path);
    PathInfo {
        path: path.to_owned(),
        kind,
        url: format!("{}/{encoded}", base.rtsp),
        rtsps_url: base.rtsps.as_ref().map(|b| format!("{b}/{encoded}")),
        tracks: desc
            .iter()
            .flat_map(|d| d.tracks.iter().map(TrackInfo::of))
            .collect(),
        duration_s: p.and_then(Presentation::duration),
        readers: readers.get(path).copied().unwrap_or(0),
    }
}

pub(super) async fn paths(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    let bases = state.bases(&headers);
    Json(list_paths(&state, &bases).await).into_response()
}

/// One session, as `GET /api/v1/sessions` shows it.
#[derive(Debug, Serialize)]
struct SessionInfo {
    id: String,
    path: String,
    client: String,
    transport: &'static str,
    state: &'static str,
    started: String,
    rtp_packets_sent: u64,
    rtp_bytes_sent: u64,
    rr: Option<Rr>,
}

/// The last receiver report (RFC 3550 §6.4.1).
#[derive(Debug, Serialize)]
struct Rr {
    fraction_lost: f64,
    cumulative_lost: i32,
    jitter_ms: f64,
}

impl From<LastReport> for Rr {
    fn from(r: LastReport) -> Self {
        Self {
            fraction_lost: r.fraction_lost,
            cumulative_lost: r.cumulative_lost,
            jitter_ms: r.jitter_s * 1000.0,
        }
    }
}

impl SessionInfo {
    fn of(e: &Entry) -> Self {
        use crate::proto::session::State as S;
        Self {
            id: e.session.id.clone(),
            path: e.session.presentation.clone(),
            client: e.client.to_string(),
            transport: e.transport(),
            state: match e.session.state() {
                S::Init => "init",
                S::Ready => "ready",
                S::Playing => "playing",
                S::Recording => "recording",
            },
            started: humantime::format_rfc3339_millis(e.started.0).to_string(),
            rtp_packets_sent: e.counters.packets.load(Ordering::Relaxed),
            rtp_bytes_sent: e.counters.bytes.load(Ordering::Relaxed),
            rr: e.last_rr.map(Rr::from),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Sessions {
    total: usize,
    offset: usize,
    limit: usize,
    sessions: Vec<SessionInfo>,
}

pub(super) async fn sessions(
    Extract(state): Extract<Arc<State>>,
    Query(page): Query<Page>,
) -> Response {
    let limit = page.limit.unwrap_or(100).min(MAX_PAGE);
    let offset = page.offset.unwrap_or(0);
    let (total, sessions) = state.shared.sessions.page(offset, limit, SessionInfo::of);
    Json(Sessions {
        total,
        offset,
        limit,
        sessions,
    })
    .into_response()
}

/// Ends a session as TEARDOWN would: RTCP BYE, resources freed, and its
/// next request answered 454.
pub(super) async fn kick(Extract(state): Extract<Arc<State>>, Path(id): Path<String>) -> Response {
    let shared = &state.shared;
    let Some(e) = shared.sessions.remove(&id) else {
        return (StatusCode::NOT_FOUND, "no such session\n").into_response();
    };
    crate::server::end(shared, &e, "kicked over HTTP").await;
    StatusCode::NO_CONTENT.into_response()
}

/// Calls the reload hook: 200 with what changed (JSON: `applied`,
/// `needs_restart`), 400 with why nothing did, 503 when nothing can
/// reload.
pub(super) async fn reload(Extract(state): Extract<Arc<State>>) -> Response {
    let Some(hook) = state.reload.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "reload not available\n").into_response();
    };
    match (hook.0)().await {
        Ok(summary) => {
            info!(applied = summary.applied.len(), "reloaded over HTTP");
            (StatusCode::OK, Json(summary)).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response(),
    }
}

/// `GET /api/v1/drain`: whether the server drains, where to, and the
/// readers left.
pub(super) async fn drain_state(Extract(state): Extract<Arc<State>>) -> Response {
    let shared = &state.shared;
    let to = shared.redirector.draining();
    Json(serde_json::json!({
        "draining": to.is_some(),
        "to": to,
        "readers": crate::server::redirect::readers(shared),
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct DrainTo {
    to: Option<String>,
}

/// `POST /api/v1/drain?to=rtsp://node:8554` (or the URL as the body):
/// new readers get 302 there, playing clients a REDIRECT (RFC 2326
/// §10.15), and the server stops once they left or after
/// `drain_timeout`. 202 when it started, 400 for a bad or own URL, 409
/// when a drain already runs.
pub(super) async fn drain(
    Extract(state): Extract<Arc<State>>,
    Query(q): Query<DrainTo>,
    body: String,
) -> Response {
    let Some(to) =
        q.to.or_else(|| Some(body.trim().to_owned()).filter(|b| !b.is_empty()))
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": "no target: ?to=rtsp://HOST:PORT" })),
        )
            .into_response();
    };
    use crate::server::redirect::{drained, start_drain, DrainError};
    let shared = state.shared.clone();
    if let Err(e) = start_drain(&shared, &to) {
        let status = match e {
            DrainError::Already(_) => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        let body = Json(serde_json::json!({ "error": e.to_string() }));
        return (status, body).into_response();
    }
    shared.tracker.clone().spawn(async move {
        drained(&shared).await;
        info!("drain over HTTP done; stopping");
        shared.cancel.cancel();
    });
    let r = drain_state(Extract(state)).await;
    (StatusCode::ACCEPTED, r).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_from_rtpmap_and_sps() {
        let audio = TrackDescription::new("audio", 10, "L16/44100/2".into(), None);
        assert_eq!(
            TrackInfo::of(&audio),
            TrackInfo {
                media: "audio",
                codec: "L16".into(),
                clock_rate: Some(44100),
                channels: Some(2),
                width: None,
                height: None,
            }
        );
        let mono = TrackDescription::new("audio", 0, "PCMU/8000".into(), None);
        assert_eq!(TrackInfo::of(&mono).channels, Some(1));
        // The SPS of media/testsrc-320x240.mp4, as ffmpeg writes it in SDP.
        let fmtp = "packetization-mode=1;profile-level-id=64000d;\
                    sprop-parameter-sets=Z2QADazZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvssiw=";
        let video = TrackDescription::new("video", 96, "H264/90000".into(), Some(fmtp.into()));
        let v = TrackInfo::of(&video);
        assert_eq!(
            (v.width, v.height, v.channels),
            (Some(320), Some(240), None)
        );
        assert_eq!(video_size("packetization-mode=1"), None);
    }
}
