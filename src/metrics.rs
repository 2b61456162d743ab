//! The server's counters and histograms, kept where the work happens and
//! read when Prometheus scrapes (text exposition format 0.0.4:
//! <https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Nothing here takes a lock or allocates on the send path: the pacing
//! thread adds to [`SessionCounters`] and [`PathCounters`] it was handed
//! when the session started, and observes into [`Histogram`]s whose buckets
//! are atomics. A scrape only loads them. The counters only the pacing
//! thread writes are added to with [`add_owned`] (a plain load and store, no
//! locked instruction), and its lateness observations are tallied per batch
//! ([`Tally`]) and published once per batch. Per-listener detail goes to the
//! JSON API; the series here stay bounded however many listeners there are
//! (no per-session labels, methods outside RFC 2326's set are `other`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::proto::rtsp::Method;

/// Adds `n` to a counter that only the calling thread ever writes (the
/// pacing thread's): readers on other threads see whole values, since a
/// relaxed 64-bit store is atomic, without the cost of a locked add per
/// packet. A counter with two writers must use `fetch_add`.
pub fn add_owned(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Most buckets a [`Tally`] holds (the `+Inf` one included).
const TALLY_BUCKETS: usize = 16;

/// Observations of one histogram gathered on one thread, published into
/// it at once: one batch of the pacing thread costs a few adds per
/// bucket, not three atomic adds per packet.
#[derive(Debug, Default)]
pub struct Tally {
    buckets: [u64; TALLY_BUCKETS],
    count: u64,
    sum: u64,
}

impl Tally {
    /// One observation of `units` for `h`.
    pub fn observe(&mut self, h: &Histogram, units: u64) {
        self.buckets[h.bucket(units)] += 1;
        self.count += 1;
        self.sum += units;
    }

    /// Adds everything tallied to `h`, whose only writer is this thread,
    /// and starts again.
    pub fn publish_owned(&mut self, h: &Histogram) {
        if self.count == 0 {
            return;
        }
        for (b, n) in h.buckets.iter().zip(self.buckets) {
            if n > 0 {
                add_owned(b, n);
            }
        }
        add_owned(&h.count, self.count);
        add_owned(&h.sum, self.sum);
        *self = Self::default();
    }
}

/// A histogram with fixed bucket bounds and atomic buckets: observations
/// are integers in `unit`s (nanoseconds, 1/256ths), so the sum is exact.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in the exposed unit (seconds, ratio), ascending.
    bounds: &'static [f64],
    /// How many exposed units one observed unit is.
    unit: f64,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum of observations, in observed units.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64], unit: f64) -> Self {
        assert!(bounds.len() < TALLY_BUCKETS, "at most 15 bounds");
        Self {
            bounds,
            unit,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// The bucket `units` falls in.
    fn bucket(&self, units: u64) -> usize {
        let v = units as f64 * self.unit;
        self.bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len())
    }

    /// One observation of `units` (the observed unit, e.g. nanoseconds),
    /// from any thread.
    pub fn observe(&self, units: u64) {
        self.buckets[self.bucket(units)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(units, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The sum in the exposed unit.
    pub fn sum(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 * self.unit
    }

    /// `(upper bound, cumulative count)` per bucket, `+Inf` last.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter())
            .map(|(b, n)| {
                acc += n.load(Ordering::Relaxed);
                (b, acc)
            })
            .collect()
    }
}

/// Bounds of `rtspd_pacing_lateness_seconds`.
pub const LATENESS_BOUNDS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Bounds of `rtspd_listener_loss_ratio`.
pub const LOSS_BOUNDS: [f64; 10] = [0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Bounds of `rtspd_listener_jitter_seconds`.
pub const JITTER_BOUNDS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// What one presentation path has sent, across its sessions.
#[derive(Debug, Default)]
pub struct PathCounters {
    pub bytes: AtomicU64,
}

/// What one session has been sent; the pacing thread adds, the API reads.
#[derive(Debug, Default)]
pub struct SessionCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub path: Arc<PathCounters>,
}

impl SessionCounters {
    /// One RTP packet of `len` bytes handed to the socket or connection;
    /// only the pacing thread calls this.
    pub fn sent(&self, len: usize) {
        add_owned(&self.packets, 1);
        add_owned(&self.bytes, len as u64);
        add_owned(&self.path.bytes, len as u64);
    }
}

/// RTSP methods by label, `other` last.
pub const METHODS: [&str; 12] = [
    "OPTIONS",
    "DESCRIBE",
    "SETUP",
    "PLAY",
    "PAUSE",
    "TEARDOWN",
    "GET_PARAMETER",
    "SET_PARAMETER",
    "ANNOUNCE",
    "RECORD",
    "REDIRECT",
    "other",
];
/// Status codes counted one by one (RFC 2326 §7.1.1: three digits, 100 to
/// 599); anything else lands on 599's neighbour below.
const STATUS_MIN: u16 = 100;
const STATUSES: usize = 500;

fn method_index(m: Option<&Method>) -> usize {
    match m {
        Some(Method::Options) => 0,
        Some(Method::Describe) => 1,
        Some(Method::Setup) => 2,
        Some(Method::Play) => 3,
        Some(Method::Pause) => 4,
        Some(Method::Teardown) => 5,
        Some(Method::GetParameter) => 6,
        Some(Method::SetParameter) => 7,
        Some(Method::Announce) => 8,
        Some(Method::Record) => 9,
        Some(Method::Redirect) => 10,
        Some(Method::Other(_)) | None => 11,
    }
}

/// Every counter and histogram that is not already a field of
/// `SendStats`, `RecvStats` or `Refusals`.
#[derive(Debug)]
pub struct Metrics {
    pub sessions_started: AtomicU64,
    /// RTSP `REDIRECT` requests sent to playing clients (a drain).
    pub redirects_sent: AtomicU64,
    /// `METHODS × STATUSES` answer counts.
    requests: Box<[AtomicU64]>,
    pub rtp_packets: AtomicU64,
    pub rtp_bytes: AtomicU64,
    pub lateness: Histogram,
    pub loss: Histogram,
    pub jitter: Histogram,
    /// By presentation path; a path is added by its first session, so the
    /// map is bounded by the paths that exist. Locked at SETUP and scrape,
    /// never per packet.
    paths: Mutex<BTreeMap<String, Arc<PathCounters>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sessions_started: AtomicU64::new(0),
            redirects_sent: AtomicU64::new(0),
            requests: (0..METHODS.len() * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            rtp_packets: AtomicU64::new(0),
            rtp_bytes: AtomicU64::new(0),
            lateness: Histogram::new(&LATENESS_BOUNDS, 1e-9),
            loss: Histogram::new(&LOSS_BOUNDS, 1.0 / 256.0),
            jitter: Histogram::new(&JITTER_BOUNDS, 1e-9),
            paths: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// A response with `status` to a request with `method` (`None`: the
    /// request could not be parsed).
    pub fn answered(&self, method: Option<&Method>, status: u16) {
        let s =
            usize::from(status.clamp(STATUS_MIN, STATUS_MIN + STATUSES as u16 - 1) - STATUS_MIN);
        self.requests[method_index(method) * STATUSES + s].fetch_add(1, Ordering::Relaxed);
    }

    /// `(method, status, count)` of every pair answered at least once.
    pub fn requests(&self) -> Vec<(&'static str, u16, u64)> {
        self.requests
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let n = n.load(Ordering::Relaxed);
                let status = STATUS_MIN + (i % STATUSES) as u16;
                (n > 0).then_some((METHODS[i / STATUSES], status, n))
            })
            .collect()
    }

    /// Counters for a new session on `path`.
    pub fn session(&self, path: &str) -> Arc<SessionCounters> {
        let path = {
            let mut paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
            paths.entry(path.to_owned()).or_default().clone()
        };
        Arc::new(SessionCounters {
            path,
            ..SessionCounters::default()
        })
    }

    /// Bytes sent per path, by path.
    pub fn path_bytes(&self) -> Vec<(String, u64)> {
        let paths = self.paths.lock().unwrap_or_else(|e| e.into_inner());
        paths
            .iter()
            .map(|(p, c)| (p.clone(), c.bytes.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Writes the text exposition format 0.0.4: a `# HELP` and `# TYPE` line
/// per family, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// The kind of a family, as `# TYPE` names it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Exposition {
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; label values are escaped as the format requires.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A whole histogram family from `h`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        self.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        for (le, n) in h.cumulative() {
            self.sample(&bucket, &[("le", &number(le))], n as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum());
        self.sample(&format!("{name}_count"), &[], h.count() as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A sample value as the format writes it (`+Inf`, integers without `.0`).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_the_sum_exact() {
        let h = Histogram::new(&LOSS_BOUNDS, 1.0 / 256.0);
        h.observe(0); // 0
        h.observe(64); // 0.25 → le 0.5
        h.observe(256); // 1.0 → le 1
        let inf = f64::INFINITY;
        let buckets = [
            (0, 0.0, 1),
            (7, 0.2, 1),
            (8, 0.5, 2),
            (9, 1.0, 3),
            (10, inf, 3),
        ];
        check(&h, &buckets, 1.25);
    }

    /// `h`'s cumulative buckets at the given indexes, its count (the
    /// `+Inf` bucket's) and its sum.
    fn check(h: &Histogram, buckets: &[(usize, f64, u64)], sum: f64) {
        let c = h.cumulative();
        for &(i, le, n) in buckets {
            assert_eq!(c[i], (le, n), "bucket {i}");
        }
        assert_eq!(Some(h.count()), c.last().map(|b| b.1));
        assert!((h.sum() - sum).abs() < 1e-12, "{}", h.sum());
    }

    #[test]
    fn a_tally_publishes_what_it_observed() {
        let h = Histogram::new(&LATENESS_BOUNDS, 1e-9);
        let mut t = Tally::default();
        t.observe(&h, 50_000); // 50 µs: le 0.0001
        t.observe(&h, 2_000_000_000); // 2 s: +Inf
        assert_eq!(h.count(), 0, "nothing published yet");
        t.publish_owned(&h);
        h.observe(300_000); // 0.3 ms: le 0.0005
        t.publish_owned(&h); // empty: no change
        let buckets = [(0, 0.0001, 1), (2, 0.0005, 2), (13, f64::INFINITY, 3)];
        check(&h, &buckets, 2.00035);
    }

    #[test]
    fn requests_by_method_and_status() {
        let m = Metrics::default();
        m.answered(Some(&Method::Options), 200);
        m.answered(Some(&Method::Options), 200);
        m.answered(Some(&Method::Other("XPLAY".into())), 501);
        m.answered(None, 400);
        assert_eq!(
            m.requests(),
            [("OPTIONS", 200, 2), ("other", 400, 1), ("other", 501, 1)]
        );
    }

    #[test]
    fn exposition_escapes_label_values() {
        let mut e = Exposition::default();
        e.family("x_total", "a \\ help", Kind::Counter)
            .sample("x_total", &[("path", "a\"b\\c\nd")], 3.0)
            .sample("y", &[], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP x_total a \\\\ help\n# TYPE x_total counter\n\
             x_total{path=\"a\\\"b\\\\c\\nd\"} 3\ny 0.5\n"
        );
    }
}
