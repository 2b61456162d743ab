//! `GET /`: the status page for a person. Every clip and live channel with
//! its `rtsp://` URL, and its `rtsps://` one when RTSPS runs (a click
//! copies either), a link to its SDP, its readers,
//! and the server's totals. Rendered on the server, refreshed by the page
//! itself every [`REFRESH_S`] seconds, with no external assets, so it
//! works offline; the one script only installs the copy buttons.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};

use super::api::list_paths;
use super::State;
use crate::proto::target::encode_path;

/// Seconds between the page's refreshes.
pub(super) const REFRESH_S: u32 = 5;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
code{background:#f4f4f4;padding:.1em .3em}button{cursor:pointer}.totals span{margin-right:2em}";

/// Copies a button's `data-url` to the clipboard; falls back to a
/// selected text field where the Clipboard API is unavailable (plain HTTP
/// on another host).
const SCRIPT: &str = "document.querySelectorAll('button[data-url]').forEach(function(b){\
b.addEventListener('click',function(){var u=b.dataset.url;\
function done(){b.textContent='copied';setTimeout(function(){b.textContent='copy'},1500)}\
if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(u).then(done)}\
else{var t=document.createElement('textarea');t.value=u;document.body.appendChild(t);t.select();\
document.execCommand('copy');t.remove();done()}})});document.body.dataset.js='on';";

pub(super) async fn status(Extract(state): Extract<Arc<State>>, headers: HeaderMap) -> Response {
    let bases = state.bases(&headers);
    let base = &bases.rtsp;
    let paths = list_paths(&state, &bases).await;
    let shared = &state.shared;
    let census = shared.sessions.census();
    let m = &shared.metrics;
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>rtspd</title><style>{STYLE}</style></head><body>\
         <h1>rtspd {}</h1><p>RTSP at <code>{}/</code>{}</p><p class=\"totals\">",
        env!("CARGO_PKG_VERSION"),
        escape(base),
        bases.rtsps.as_ref().map_or(String::new(), |b| format!(
            ", RTSPS at <code>{}/</code>",
            escape(b)
        ))
    );
    for (label, value) in [
        ("connections", shared.connections()),
        ("sessions playing", census.playing as u64),
        ("sessions ready", census.ready as u64),
        ("recording", census.recording as u64),
        (
            "sessions since start",
            m.sessions_started.load(Ordering::Relaxed),
        ),
        ("RTP packets sent", m.rtp_packets.load(Ordering::Relaxed)),
        ("RTP bytes sent", m.rtp_bytes.load(Ordering::Relaxed)),
    ] {
        let _ = write!(h, "<span>{label}: <b>{value}</b></span>");
    }
    h.push_str(
        "</p><table><thead><tr><th>path</th><th>kind</th><th>URL</th><th>SDP</th>\
         <th>tracks</th><th>duration</th><th>readers</th></tr></thead><tbody>",
    );
    for p in &paths {
        let mut urls = copyable(&p.url);
        if let Some(u) = &p.rtsps_url {
            urls.push_str("<br>");
            urls.push_str(&copyable(u));
        }
        let tracks: Vec<String> = p
            .tracks
            .iter()
            .map(|t| match (t.width, t.height) {
                (Some(w), Some(ht)) => format!("{} {w}×{ht}", t.codec),
                _ => format!(
                    "{} {} Hz{}",
                    t.codec,
                    t.clock_rate.unwrap_or(0),
                    t.channels.map_or(String::new(), |c| format!(" ×{c}"))
                ),
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{urls}</td>\
             <td><a href=\"/sdp/{}\">sdp</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.path),
            p.kind,
            escape(&encode_path(&p.path)),
            escape(&tracks.join(", ")),
            p.duration_s
                .map_or("live".to_owned(), |d| format!("{d:.1} s")),
            p.readers
        );
    }
    let _ = write!(
        h,
        "</tbody></table><p><a href=\"/metrics\">metrics</a> · \
         <a href=\"/api/v1/paths\">paths</a> · <a href=\"/api/v1/sessions\">sessions</a></p>\
         <script>{SCRIPT}</script></body></html>"
    );
    Html(h).into_response()
}

/// A URL and its copy button.
fn copyable(url: &str) -> String {
    let url = escape(url);
    format!("<code>{url}</code> <button type=\"button\" data-url=\"{url}\">copy</button>")
}

/// Text for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
