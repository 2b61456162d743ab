//! `GET /sdp/{path}`: the presentation description over HTTP, the web
//! page → description → RTSP server flow of RFC 2326 §1.1 and §C.1.1: the
//! same SDP as DESCRIBE, with absolute `rtsp://` control URLs of this
//! server so whoever fetched it knows where to play it. The path's
//! `[[paths]]` read rule applies as it would to that DESCRIBE.

use std::sync::Arc;

use axum::extract::{Path, Request, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::auth::{self, Asked};
use super::State;
use crate::proto::error::Error;
use crate::proto::target::{encode_path, parse_target};
use crate::server::method::describe::sdp_of;
use crate::server::method::open_presentation;

pub(super) async fn sdp(
    Extract(state): Extract<Arc<State>>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let headers = req.headers();
    let base = state.rtsp_base(headers);
    // The same checks as an RTSP Request-URI: percent-decoding already
    // happened, so encode again and let the RTSP target parser decide.
    let url = format!("{base}/{}", encode_path(&path));
    let shared = &state.shared;
    let target = match parse_target(&url, shared.config().limits.max_uri) {
        Ok(t) if t.track.is_none() => t,
        _ => return not_found(),
    };
    // The path's read rule, as a DESCRIBE of it would be checked.
    if let Err(refusal) = auth::path_read(&state, &Asked::of(&req), &target.path) {
        return refusal.into_response();
    }
    match open_presentation(shared, &target.path).await {
        Ok(source) => (
            [(header::CONTENT_TYPE, "application/sdp")],
            sdp_of(shared, &source, shared.rtsp_addr.ip(), Some(&url)).await,
        )
            .into_response(),
        Err(Error::NotFound) => not_found(),
        Err(e) => (
            StatusCode::from_u16(e.status().0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{e}\n"),
        )
            .into_response(),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such presentation\n").into_response()
}
