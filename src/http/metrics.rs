//! `GET /metrics`: every family in the Prometheus text exposition format
//! 0.0.4, read from the atomics the server keeps ([`crate::metrics`]), the
//! session table's census and the refusal counts. Dashboards depend on
//! these names; the integration tests parse them with Prometheus's own
//! Python parser.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::IntoResponse;

use super::State;
use crate::metrics::{Exposition, Kind};
use crate::proto::limit::Limit;

/// The content type of the 0.0.4 text format.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn scrape(Extract(state): Extract<Arc<State>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

fn render(state: &State) -> String {
    let shared = &state.shared;
    let (m, send, recv) = (&shared.metrics, &shared.send_stats, &shared.recv_stats);
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let census = shared.sessions.census();
    let mut e = Exposition::default();

    e.family(
        "rtspd_build_info",
        "Build information; always 1.",
        Kind::Gauge,
    )
    .sample(
        "rtspd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.family("rtspd_connections", "Open RTSP connections.", Kind::Gauge)
        .sample("rtspd_connections", &[], shared.connections() as f64);
    e.family("rtspd_sessions", "Sessions by state.", Kind::Gauge);
    for (state, count) in [
        ("ready", census.ready),
        ("playing", census.playing),
        ("recording", census.recording),
    ] {
        e.sample("rtspd_sessions", &[("state", state)], count as f64);
    }
    let path_bytes = m.path_bytes();
    e.family(
        "rtspd_path_readers",
        "Sessions reading each path.",
        Kind::Gauge,
    );
    let mut paths: Vec<&str> = path_bytes.iter().map(|(p, _)| p.as_str()).collect();
    paths.extend(census.readers.keys().map(String::as_str));
    paths.sort_unstable();
    paths.dedup();
    for p in paths {
        let readers = census.readers.get(p).copied().unwrap_or(0);
        e.sample("rtspd_path_readers", &[("path", p)], readers as f64);
    }

    e.family(
        "rtspd_sessions_started_total",
        "Sessions created since start.",
        Kind::Counter,
    )
    .sample("rtspd_sessions_started_total", &[], n(&m.sessions_started));
    e.family(
        "rtspd_redirects_sent_total",
        "RTSP REDIRECT requests sent to playing clients (draining); 302 answers are in rtspd_requests_total.",
        Kind::Counter,
    )
    .sample("rtspd_redirects_sent_total", &[], n(&m.redirects_sent));
    e.family(
        "rtspd_requests_total",
        "RTSP requests answered, by method and status.",
        Kind::Counter,
    );
    for (method, status, count) in m.requests() {
        let status = status.to_string();
        e.sample(
            "rtspd_requests_total",
            &[("method", method), ("status", &status)],
            count as f64,
        );
    }
    e.family(
        "rtspd_refused_total",
        "Work refused at a limit, by limit.",
        Kind::Counter,
    );
    for l in Limit::ALL {
        e.sample(
            "rtspd_refused_total",
            &[("limit", l.name())],
            shared.refusals.total(l) as f64,
        );
    }
    e.family(
        "rtspd_rtp_packets_sent_total",
        "RTP packets the kernel or a connection's queue took.",
        Kind::Counter,
    )
    .sample("rtspd_rtp_packets_sent_total", &[], n(&m.rtp_packets));
    e.family(
        "rtspd_rtp_bytes_sent_total",
        "Bytes of RTP packets handed to sending (drops are in rtspd_send_dropped_total).",
        Kind::Counter,
    )
    .sample("rtspd_rtp_bytes_sent_total", &[], n(&m.rtp_bytes));
    e.family(
        "rtspd_path_bytes_sent_total",
        "Bytes of RTP handed to sending, by path.",
        Kind::Counter,
    );
    for (p, bytes) in &path_bytes {
        e.sample("rtspd_path_bytes_sent_total", &[("path", p)], *bytes as f64);
    }
    e.family(
        "rtspd_rtcp_packets_received_total",
        "Valid RTCP compound packets received.",
        Kind::Counter,
    )
    .sample(
        "rtspd_rtcp_packets_received_total",
        &[],
        n(&recv.rtcp_received),
    );
    e.family(
        "rtspd_send_dropped_total",
        "Packets not sent, by reason.",
        Kind::Counter,
    );
    for (reason, c) in [
        ("socket_buffer_full", &send.send_dropped),
        ("send_error", &send.send_errors),
        ("client_queue_full", &send.interleaved_dropped),
        ("publish_queue_full", &send.publish_dropped),
        ("relay_late", &send.relay_late_dropped),
    ] {
        e.sample("rtspd_send_dropped_total", &[("reason", reason)], n(c));
    }

    e.histogram(
        "rtspd_pacing_lateness_seconds",
        "How late each RTP packet was sent against its deadline.",
        &m.lateness,
    );
    e.histogram(
        "rtspd_listener_loss_ratio",
        "Fraction lost of each receiver report (0 to 1).",
        &m.loss,
    );
    e.histogram(
        "rtspd_listener_jitter_seconds",
        "Interarrival jitter of each receiver report, in seconds.",
        &m.jitter,
    );
    e.finish()
}
