//! Refusals at the server's limits: counted per limit, and reported at WARN
//! at most once per limit every [`REPORT_INTERVAL`], each line naming the
//! limit, its value, the flag that raises it and how many refusals it
//! stands for. A client retrying in a loop cannot flood the log, and an
//! operator whose listeners get 503 can tell why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use super::Config;
use crate::proto::limit::{Limit, LogGate};

/// At most one WARN line per limit this often.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What a 503 at a limit tells the client to wait (RFC 2326 §12.31).
pub const RETRY_AFTER_SECS: u32 = 10;

const N: usize = Limit::ALL.len();

pub struct Refusals {
    totals: [AtomicU64; N],
    /// A std `Mutex`: held for a counter update, never across `.await`.
    gates: Mutex<[LogGate; N]>,
    /// Each limit's configured value, as the log line shows it (replaced
    /// by a reload).
    values: Mutex<[String; N]>,
}

impl Refusals {
    pub fn new(config: &Config) -> Self {
        Self {
            totals: Default::default(),
            gates: Mutex::new(std::array::from_fn(|_| LogGate::new(REPORT_INTERVAL))),
            values: Mutex::new(values(config)),
        }
    }

    /// The limits' values changed.
    pub fn set_values(&self, config: &Config) {
        *self.values.lock().unwrap_or_else(|e| e.into_inner()) = values(config);
    }

    /// Something was refused at `limit`.
    pub fn refuse(&self, limit: Limit) {
        self.totals[limit.index()].fetch_add(1, Ordering::Relaxed);
        let report = self.gates()[limit.index()].hit(Instant::now());
        if let Some(n) = report {
            self.report(limit, n);
        }
    }

    /// Reports refusals held back whose interval is over (called
    /// periodically, so the end of a burst is reported too).
    pub fn flush(&self, now: Instant) {
        let due: Vec<(Limit, u64)> = {
            let mut gates = self.gates();
            Limit::ALL
                .iter()
                .filter_map(|&l| gates[l.index()].flush(now).map(|n| (l, n)))
                .collect()
        };
        for (limit, n) in due {
            self.report(limit, n);
        }
    }

    /// Refusals at `limit` since start.
    pub fn total(&self, limit: Limit) -> u64 {
        self.totals[limit.index()].load(Ordering::Relaxed)
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, [LogGate; N]> {
        // A gate update cannot be left half done: a poisoned lock is fine.
        self.gates.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, limit: Limit, n: u64) {
        let value = self.values.lock().unwrap_or_else(|e| e.into_inner())[limit.index()].clone();
        warn!(
            limit = limit.name(),
            value = %value,
            refused = n,
            total = self.total(limit),
            "refused {n} at limit {}={value} since the last report; raise it with {} or the config key [limits] {}",
            limit.name(),
            limit.flag(),
            limit.name(),
        );
    }
}

/// Each limit's value in `config`, as the log line shows it.
fn values(config: &Config) -> [String; N] {
    Limit::ALL.map(|l| match l {
        Limit::MaxConnections => config.max_connections.to_string(),
        Limit::MaxConnectionsPerIp => config.max_connections_per_ip.to_string(),
        Limit::MaxSessions => config.sessions.max_sessions.to_string(),
        Limit::MaxSessionsPerIp => config.sessions.max_sessions_per_ip.to_string(),
        Limit::MaxPublishedChannels => config.max_published_channels.to_string(),
        Limit::MaxClientFramesPerSec => config.max_client_frames_per_sec.to_string(),
        Limit::MaxPublisherFramesPerSec => config.max_publisher_frames_per_sec.to_string(),
        Limit::MaxHeadBytes => config.limits.max_head.to_string(),
        Limit::MaxBodyBytes => config.limits.max_body.to_string(),
        Limit::MaxHeaders => config.limits.max_headers.to_string(),
        Limit::ReadTimeout => format!("{} s", config.read_timeout.as_secs_f64()),
        Limit::HttpMaxConnections => config.http.max_connections.to_string(),
        Limit::TlsHandshakeTimeout => format!("{} s", config.tls.handshake_timeout.as_secs_f64()),
        Limit::MaxAuthFailures => config.auth.max_failures.to_string(),
        Limit::MaxUnknownSessions => config.auth.max_unknown_sessions.to_string(),
        Limit::TunnelTimeout => format!("{} s", config.tunnel_timeout.as_secs_f64()),
    })
}
