//! The load tester's summary: aggregates every session's measurements into
//! the figures an operator reads (human text) and a machine reads (one JSON
//! line with stable keys).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::session::SessionResult;
use super::Options;
use crate::proto::measure::{av_sync_ms, micros_histogram, record_micros, reorder_histogram};

/// p50 / p99 / max of a distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(h.value_at_quantile(0.5)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Everything a run measured. Serialised as the final JSON line; the keys
/// named in the issue are at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub transport: &'static str,
    pub sessions_attempted: usize,
    pub sessions_ok: usize,
    pub sessions_failed: usize,
    /// Failure description to count.
    pub failures: BTreeMap<String, usize>,
    pub packets_expected: u64,
    pub packets_received: u64,
    pub packets_lost: u64,
    pub packets_duplicated: u64,
    pub packets_reordered: u64,
    /// Sum over tracks of the packet count in the last SR (or BYE) seen:
    /// what the server says it sent.
    pub server_packets_sent: u64,
    /// RTP bytes received (whole packets: header and payload, without
    /// the interleaved `$` framing), as a server counts what it sent.
    pub bytes_received: u64,
    pub loss_pct: f64,
    /// RFC 3550 A.8 jitter, the worst track of each session, over sessions.
    /// Computed on RTP timestamps as the RFC defines it, so for video it
    /// includes B-frame reordering and the time a frame split over several
    /// packets takes to send.
    pub jitter_ms: Spread,
    pub jitter_p99_ms: f64,
    /// How late each packet came against its track's decode schedule: its
    /// `arrival - decode time` above the lowest one so far on the track,
    /// over all packets (`crate::proto::measure`). B-frame reordering is
    /// not lateness.
    pub pacing_ms: Spread,
    pub pacing_p99_ms: f64,
    /// How far each packet's RTP timestamp (presentation time) is ahead of
    /// its decode time, over the packets of every track whose timestamps
    /// step backwards in sequence order (B-frames); zeros when none does.
    pub reorder_ms: Spread,
    /// The deepest reordering of any track, ms (0 without B-frames).
    pub reorder_max_ms: f64,
    /// Connect to PLAY reply.
    pub setup_ms: Spread,
    pub setup_p99_ms: f64,
    /// Connect to first RTP packet.
    pub ttfp_ms: Spread,
    pub ttfp_p99_ms: f64,
    pub pkts_per_s: f64,
    pub mbit_per_s: f64,
    pub sr_per_session: f64,
    /// Largest |least-squares slope| of the pacing error of any track that
    /// received for 30 s or more: how far the sender's media clock drifts
    /// from ours, ms per minute.
    pub drift_max_ms_per_min: Option<f64>,
    /// Worst spread of the sync offsets of one session's tracks (the lowest
    /// `arrival - SR-mapped decode time` of each track); `null` when no
    /// session had two tracks with SRs.
    pub av_sync_max_ms: Option<f64>,
    /// The tester's CPU use over the run, percent of one core.
    pub tester_cpu_pct: f64,
    /// Most descriptors the tester had open at once (sampled every 0.5 s).
    pub tester_fds_peak: u64,
    /// Source addresses given (`--source-ips`; 0 when none was).
    pub source_ips: usize,
    /// Receive port pairs shared by sessions on different source addresses.
    pub shared_udp_pairs: usize,
    /// Most sessions on one of them (0: none shared).
    pub sessions_per_shared_pair: usize,
    pub wall_s: f64,
    pub warnings: Vec<String>,
    /// `--publish`: the tester's own publisher, and how far behind it each
    /// listener's copy arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishReport>,
}

/// What `--publish` measured.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// RTP packets the publisher sent.
    pub packets_sent: u64,
    /// Listener copies matched to the packet the publisher sent.
    pub copies_matched: u64,
    /// Copies not matched (before a listener's timestamp offset was known,
    /// or a payload key seen more than once).
    pub copies_unmatched: u64,
    /// Copies of packets sent before the listener set up (a GOP cache's):
    /// not timed.
    pub copies_from_cache: u64,
    /// Listener arrival (kernel stamp over UDP) − publisher send, over
    /// every matched copy.
    pub delay_ms: Spread,
    pub delay_p99_ms: f64,
}

impl PublishReport {
    pub(super) fn of(d: &super::publish::Delays) -> Self {
        let delay_ms = Spread::of(&d.histogram);
        Self {
            packets_sent: d.sent,
            copies_matched: d.matched,
            copies_unmatched: d.unmatched,
            copies_from_cache: d.cached,
            delay_p99_ms: delay_ms.p99,
            delay_ms,
        }
    }
}

impl Report {
    pub(super) fn build(
        opts: &Options,
        transport: &'static str,
        results: &[SessionResult],
        wall: Duration,
        cpu: Duration,
        warnings: Vec<String>,
    ) -> (Self, Histogram<u64>) {
        let mut failures = BTreeMap::new();
        let (mut setup, mut ttfp, mut jitter, mut pacing) = (
            micros_histogram(),
            micros_histogram(),
            micros_histogram(),
            micros_histogram(),
        );
        let (mut expected, mut received, mut lost, mut dups, mut reordered) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let (mut server_sent, mut srs, mut bytes) = (0u64, 0u64, 0u64);
        let mut reorder = reorder_histogram();
        let mut reorder_max = 0.0f64;
        let mut av_sync: Option<f64> = None;
        let mut drift: Option<f64> = None;
        let (mut first, mut last) = (None, None);
        for r in results {
            if let Err(e) = &r.outcome {
                *failures.entry(e.to_string()).or_insert(0) += 1;
            }
            if let Some(d) = r.setup {
                record_micros(&mut setup, d);
            }
            if let Some(d) = r.first_packet {
                record_micros(&mut ttfp, d);
            }
            let mut worst_jitter = None;
            for t in &r.tracks {
                let s = &t.stats;
                expected += s.expected();
                received += s.received();
                lost += s.lost().max(0) as u64;
                dups += s.duplicates();
                reordered += s.reordered();
                server_sent += u64::from(t.server_packet_count().unwrap_or(0));
                srs += u64::from(t.sender_reports);
                bytes += t.bytes;
                let _ = pacing.add(&t.pacing);
                if let Some(h) = &t.reorder {
                    let _ = reorder.add(h);
                }
                reorder_max = reorder_max.max(t.reorder_depth_ms());
                // Over less than 30 s the slope is mostly scheduling noise.
                let span = match (t.first_arrival, t.last_arrival) {
                    (Some(a), Some(b)) => b.saturating_duration_since(a),
                    _ => Duration::ZERO,
                };
                if let Some(d) = t
                    .drift_ms_per_min()
                    .filter(|_| span >= Duration::from_secs(30))
                {
                    drift = Some(drift.map_or(d.abs(), |m: f64| m.max(d.abs())));
                }
                if s.received() > 1 {
                    worst_jitter =
                        Some(worst_jitter.map_or(s.jitter(), |w: Duration| w.max(s.jitter())));
                }
                first = min_opt(first, t.first_arrival);
                last = max_opt(last, t.last_arrival);
            }
            if let Some(j) = worst_jitter {
                record_micros(&mut jitter, j);
            }
            let tracks: Vec<_> = r.tracks.iter().collect();
            if let Some(a) = av_sync_ms(&tracks) {
                av_sync = Some(av_sync.map_or(a, |m| m.max(a)));
            }
        }
        let ok = results.iter().filter(|r| r.outcome.is_ok()).count();
        let receiving = match (first, last) {
            (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
            _ => 0.0,
        };
        let per_s = |n: f64| if receiving > 0.0 { n / receiving } else { 0.0 };
        // The histogram keeps 2 significant digits; the maximum is exact.
        let mut reorder_ms = Spread::of(&reorder);
        reorder_ms.max = reorder_max;
        reorder_ms.p50 = reorder_ms.p50.min(reorder_max);
        reorder_ms.p99 = reorder_ms.p99.min(reorder_max);
        let (jitter_ms, pacing_ms, setup_ms, ttfp_ms) = (
            Spread::of(&jitter),
            Spread::of(&pacing),
            Spread::of(&setup),
            Spread::of(&ttfp),
        );
        let report = Self {
            url: opts.url.clone(),
            transport,
            sessions_attempted: opts.sessions,
            sessions_ok: ok,
            sessions_failed: opts.sessions - ok,
            failures,
            packets_expected: expected,
            packets_received: received,
            packets_lost: lost,
            packets_duplicated: dups,
            packets_reordered: reordered,
            server_packets_sent: server_sent,
            bytes_received: bytes,
            loss_pct: if expected > 0 {
                100.0 * lost as f64 / expected as f64
            } else {
                0.0
            },
            jitter_p99_ms: jitter_ms.p99,
            jitter_ms,
            pacing_p99_ms: pacing_ms.p99,
            pacing_ms,
            reorder_ms,
            reorder_max_ms: reorder_max,
            setup_p99_ms: setup_ms.p99,
            setup_ms,
            ttfp_p99_ms: ttfp_ms.p99,
            ttfp_ms,
            pkts_per_s: per_s(received as f64),
            mbit_per_s: per_s(bytes as f64 * 8.0 / 1e6),
            sr_per_session: if results.is_empty() {
                0.0
            } else {
                srs as f64 / results.len() as f64
            },
            drift_max_ms_per_min: drift,
            av_sync_max_ms: av_sync,
            tester_cpu_pct: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            // Filled in by the run, which samples them.
            tester_fds_peak: 0,
            source_ips: opts.source_ips.len(),
            shared_udp_pairs: 0,
            sessions_per_shared_pair: 0,
            wall_s: wall.as_secs_f64(),
            warnings,
            publish: None,
        };
        (report, setup)
    }

    /// The one-line JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sp = |s: &Spread| format!("p50 {:.2} / p99 {:.2} / max {:.2} ms", s.p50, s.p99, s.max);
        writeln!(
            f,
            "rtspd load: {} over {} for {:.1} s",
            self.url, self.transport, self.wall_s
        )?;
        writeln!(
            f,
            "  sessions   {} attempted, {} ok, {} failed",
            self.sessions_attempted, self.sessions_ok, self.sessions_failed
        )?;
        for (why, n) in &self.failures {
            writeln!(f, "    {n} x {why}")?;
        }
        writeln!(
            f,
            "  packets    {} received of {} expected: {} lost ({:.3}%), {} duplicated, {} reordered; server says it sent {}",
            self.packets_received,
            self.packets_expected,
            self.packets_lost,
            self.loss_pct,
            self.packets_duplicated,
            self.packets_reordered,
            self.server_packets_sent
        )?;
        writeln!(
            f,
            "  jitter     {} (RFC 3550 A.8 on RTP timestamps: for video it includes \
             B-frame reordering and each frame's send time)",
            sp(&self.jitter_ms)
        )?;
        writeln!(
            f,
            "  pacing     {} late against each track's decode schedule",
            sp(&self.pacing_ms)
        )?;
        if self.reorder_max_ms > 0.0 {
            writeln!(
                f,
                "  reorder    {} presentation ahead of decode (B-frames; \
                 not counted in pacing or A/V sync)",
                sp(&self.reorder_ms)
            )?;
        } else {
            writeln!(f, "  reorder    none (timestamps never step back)")?;
        }
        if let Some(p) = &self.publish {
            writeln!(
                f,
                "  delay      {} behind the tester's publisher ({} packets sent, \
                 {} copies timed, {} from a cache, {} unmatched)",
                sp(&p.delay_ms),
                p.packets_sent,
                p.copies_matched,
                p.copies_from_cache,
                p.copies_unmatched
            )?;
        }
        writeln!(f, "  setup      {}", sp(&self.setup_ms))?;
        writeln!(f, "  1st packet {}", sp(&self.ttfp_ms))?;
        writeln!(
            f,
            "  throughput {:.0} packets/s, {:.2} Mbit/s; {:.1} SRs per session; A/V sync {}",
            self.pkts_per_s,
            self.mbit_per_s,
            self.sr_per_session,
            self.av_sync_max_ms
                .map_or("n/a (single track)".to_owned(), |v| format!(
                    "worst {v:.2} ms"
                ))
        )?;
        if let Some(d) = self.drift_max_ms_per_min {
            writeln!(
                f,
                "  drift      worst {d:.4} ms per minute (slope of the pacing error)"
            )?;
        }
        writeln!(f, "  tester CPU {:.1}% of one core", self.tester_cpu_pct)?;
        write!(f, "  tester fds {} open at most", self.tester_fds_peak)?;
        if self.source_ips > 0 {
            write!(f, "; sessions from {} source addresses", self.source_ips)?;
        }
        if self.shared_udp_pairs > 0 {
            write!(
                f,
                ", {} shared UDP port pairs (up to {} sessions each)",
                self.shared_udp_pairs, self.sessions_per_shared_pair
            )?;
        }
        writeln!(f)?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}
