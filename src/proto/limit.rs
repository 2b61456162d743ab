//! The server's limits by name, and the rate limit on the log lines that
//! report refusals at them.
//!
//! An operator whose listeners get 503 (RFC 2326 §11.3.5 of RFC 7826 names
//! `Retry-After` for it) must be able to tell from the log which limit
//! refused them and which option raises it, without a log line per refused
//! request: a client retrying in a loop would flood the log. [`LogGate`]
//! lets one line through per interval and counts what it held back, so the
//! next line says how many refusals it stands for.

use std::time::{Duration, Instant};

/// A limit the server refuses work at. Each has a default and a
/// command-line flag (and, with the config file, a key of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    MaxConnections,
    MaxConnectionsPerIp,
    MaxSessions,
    MaxSessionsPerIp,
    MaxPublishedChannels,
    MaxClientFramesPerSec,
    /// Interleaved frames a publisher (RECORD over TCP) may send per second.
    MaxPublisherFramesPerSec,
    MaxHeadBytes,
    MaxBodyBytes,
    MaxHeaders,
    ReadTimeout,
    /// Connections to the HTTP side.
    HttpMaxConnections,
    /// An RTSPS client that did not complete its TLS handshake in time.
    TlsHandshakeTimeout,
    /// Failed logins from one address (the address is then refused).
    MaxAuthFailures,
    /// Requests naming unknown sessions on one connection (then closed).
    MaxUnknownSessions,
    /// An RTSP-over-HTTP GET whose POST did not come in time.
    TunnelTimeout,
}

impl Limit {
    /// Every limit, in a fixed order (for per-limit tables).
    pub const ALL: [Self; 16] = [
        Self::MaxConnections,
        Self::MaxConnectionsPerIp,
        Self::MaxSessions,
        Self::MaxSessionsPerIp,
        Self::MaxPublishedChannels,
        Self::MaxClientFramesPerSec,
        Self::MaxPublisherFramesPerSec,
        Self::MaxHeadBytes,
        Self::MaxBodyBytes,
        Self::MaxHeaders,
        Self::ReadTimeout,
        Self::HttpMaxConnections,
        Self::TlsHandshakeTimeout,
        Self::MaxAuthFailures,
        Self::MaxUnknownSessions,
        Self::TunnelTimeout,
    ];

    /// Its position in [`Limit::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxConnections => "max_connections",
            Self::MaxConnectionsPerIp => "max_connections_per_ip",
            Self::MaxSessions => "max_sessions",
            Self::MaxSessionsPerIp => "max_sessions_per_ip",
            Self::MaxPublishedChannels => "max_published_channels",
            Self::MaxClientFramesPerSec => "max_client_frames_per_sec",
            Self::MaxPublisherFramesPerSec => "max_publisher_frames_per_sec",
            Self::MaxHeadBytes => "max_head_bytes",
            Self::MaxBodyBytes => "max_body_bytes",
            Self::MaxHeaders => "max_headers",
            Self::ReadTimeout => "read_timeout",
            Self::HttpMaxConnections => "http_max_connections",
            Self::TlsHandshakeTimeout => "tls_handshake_timeout",
            Self::MaxAuthFailures => "max_auth_failures",
            Self::MaxUnknownSessions => "max_unknown_sessions",
            Self::TunnelTimeout => "tunnel_timeout",
        }
    }

    /// The command-line flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Self::MaxConnections => "--max-connections",
            Self::MaxConnectionsPerIp => "--max-connections-per-ip",
            Self::MaxSessions => "--max-sessions",
            Self::MaxSessionsPerIp => "--max-sessions-per-ip",
            Self::MaxPublishedChannels => "--max-published-channels",
            Self::MaxClientFramesPerSec => "--max-client-frames-per-sec",
            Self::MaxPublisherFramesPerSec => "--max-publisher-frames-per-sec",
            Self::MaxHeadBytes => "--max-head-bytes",
            Self::MaxBodyBytes => "--max-body-bytes",
            Self::MaxHeaders => "--max-headers",
            Self::ReadTimeout => "--read-timeout",
            Self::HttpMaxConnections => "--http-max-connections",
            Self::TlsHandshakeTimeout => "--tls-handshake-timeout",
            Self::MaxAuthFailures => "--max-auth-failures",
            Self::MaxUnknownSessions => "--max-unknown-sessions",
            Self::TunnelTimeout => "--tunnel-timeout",
        }
    }
}

/// Lets one report through per `interval` and counts the events in
/// between. Sans-IO: the caller passes `now`.
#[derive(Debug, Clone)]
pub struct LogGate {
    interval: Duration,
    last: Option<Instant>,
    /// Events not yet reported.
    pending: u64,
}

impl LogGate {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: 0,
        }
    }

    /// One more event at `now`. Returns how many events to report now
    /// (this one included), or `None` while the gate is closed.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.pending += 1;
        self.flush(now)
    }

    /// Reports the events held back, once the interval since the last
    /// report has passed. Called periodically, so that the last burst is
    /// reported even when nothing follows it.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let open = self
            .last
            .is_none_or(|l| now.saturating_duration_since(l) >= self.interval);
        if self.pending == 0 || !open {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_interval_with_the_count_held_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut g = LogGate::new(Duration::from_secs(10));
        assert_eq!(g.flush(t0), None, "nothing to report");
        assert_eq!(g.hit(t0), Some(1), "the first refusal is reported at once");
        for i in 1..=500 {
            assert_eq!(g.hit(t0 + s * i / 100), None, "held back");
        }
        assert_eq!(g.flush(t0 + 9 * s), None, "interval not over");
        assert_eq!(g.flush(t0 + 10 * s), Some(500), "the burst, counted");
        assert_eq!(g.flush(t0 + 30 * s), None, "nothing since");
        // After a quiet spell the next refusal is reported at once.
        assert_eq!(g.hit(t0 + 31 * s), Some(1));
        assert_eq!(g.hit(t0 + 32 * s), None);
        assert_eq!(g.hit(t0 + 41 * s), Some(2));
    }

    #[test]
    fn every_limit_has_its_own_name_and_flag() {
        for (i, l) in Limit::ALL.iter().enumerate() {
            assert_eq!(l.index(), i, "{l:?}");
            assert_eq!(l.flag(), format!("--{}", l.name().replace('_', "-")));
        }
        let mut names: Vec<_> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
    }
}
