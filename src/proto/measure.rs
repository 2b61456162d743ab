//! What the load tester measures of one received RTP stream: the RFC 3550
//! reception statistics of [`ReceiverStats`] (loss, duplicates, reordering,
//! A.8 jitter), the pacing error of every packet, the sender reports
//! (§6.4.1) and how the SR's NTP/RTP mapping lines up with arrivals, which
//! is what two tracks of one session are compared on for A/V sync.
//!
//! Sans-IO: the caller passes each datagram with the instant it was read.
//!
//! **Pacing error** of packet *i*, after aligning on the first packet:
//! `(arrival_i - arrival_0) - (ts_i - ts_0) / clock_rate`, with RTP
//! timestamps unwrapped past 2^32. Positive means later than the media clock
//! says. Its absolute value is recorded in microseconds.
//!
//! **Sync offset** of a track: for each packet after the first SR,
//! `arrival_wallclock - sr_ntp - (ts - sr_rtp) / clock_rate`, and its minimum
//! over the run (the packet that waited least in queues shows the mapping
//! best). Two tracks whose senders map media time onto one NTP timeline have
//! the same offset up to the network delay difference, so the spread of the
//! offsets of a session's tracks is its A/V sync error.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::clock::WallClock;
use super::rtcp::{NtpTimestamp, Packet, ReportBlock, SenderInfo};
use super::stats::ReceiverStats;

/// Largest error the histograms hold (60 s, in µs); larger values clamp.
const HIST_MAX_US: u64 = 60_000_000;

/// A histogram of microseconds, 3 significant digits, up to 60 s.
pub fn micros_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Records `d` (clamped to the histogram's range).
pub fn record_micros(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(us.clamp(1, HIST_MAX_US));
}

/// Why a datagram was not counted as RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRtp {
    #[error("not an RTP version 2 packet")]
    Malformed,
    #[error("SSRC {0:08X} is not this track's")]
    OtherSource(u32),
}

/// What one packet showed, for the [`Timeline`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Sequence numbers it skipped (packets lost before it, so far).
    pub newly_lost: u64,
    /// Its |pacing error|.
    pub error: Duration,
}

/// Most seconds a [`Timeline`] holds (the tester's longest run plus slack).
const MAX_SECONDS: usize = 3_700;

/// Per-second totals over a run, for the load tester's plot: packets
/// received and lost, and the pacing error's mean and maximum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub seconds: Vec<Second>,
}

/// One second of a [`Timeline`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Second {
    pub received: u64,
    pub lost: u64,
    pub error_sum_us: u64,
    pub error_max_us: u64,
}

impl Timeline {
    /// Adds `a`, which arrived `since_start` into the run.
    pub fn record(&mut self, since_start: Duration, a: Arrival) {
        let i = since_start.as_secs() as usize;
        if i >= MAX_SECONDS {
            return;
        }
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        let s = &mut self.seconds[i];
        let us = u64::try_from(a.error.as_micros()).unwrap_or(u64::MAX);
        s.received += 1;
        s.lost += a.newly_lost;
        s.error_sum_us = s.error_sum_us.saturating_add(us);
        s.error_max_us = s.error_max_us.max(us);
    }

    /// Adds another timeline of the same run into this one.
    pub fn merge(&mut self, other: &Self) {
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), Second::default());
        }
        for (a, b) in self.seconds.iter_mut().zip(&other.seconds) {
            a.received += b.received;
            a.lost += b.lost;
            a.error_sum_us = a.error_sum_us.saturating_add(b.error_sum_us);
            a.error_max_us = a.error_max_us.max(b.error_max_us);
        }
    }
}

/// Everything measured of one track of one session.
#[derive(Debug, Clone)]
pub struct TrackMeasure {
    clock_rate: u32,
    clock: WallClock,
    /// The SSRC the server announced (or the first one seen).
    ssrc: Option<u32>,
    pub stats: ReceiverStats,
    /// Arrival and RTP timestamp of the first packet.
    first: Option<(Instant, u32)>,
    /// RTP timestamp of the last packet, unwrapped relative to the first.
    last_ts: u32,
    ext_ts: i64,
    /// `|pacing error|` per packet, µs.
    pub pacing: Histogram<u64>,
    /// Payload bytes (RTCP's octet count).
    pub octets: u64,
    /// Whole datagram bytes.
    pub bytes: u64,
    pub first_arrival: Option<Instant>,
    pub last_arrival: Option<Instant>,
    /// Sender reports received about this track.
    pub sender_reports: u32,
    last_sr: Option<(SenderInfo, Instant)>,
    /// Minimum sync offset, seconds (see the module docs).
    pub sync_offset: Option<f64>,
    /// The server said BYE for this source.
    pub bye: bool,
    /// Least-squares sums of the signed pacing error `e` (s) against the
    /// time since the first packet `t` (s): n, Σt, Σe, Σt², Σte.
    fit: [f64; 5],
}

impl TrackMeasure {
    /// `ssrc` is the one from the SETUP reply's Transport, when there was one.
    pub fn new(clock_rate: u32, ssrc: Option<u32>, clock: WallClock) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            clock,
            ssrc,
            stats: ReceiverStats::new(clock_rate),
            first: None,
            last_ts: 0,
            ext_ts: 0,
            pacing: micros_histogram(),
            octets: 0,
            bytes: 0,
            first_arrival: None,
            last_arrival: None,
            sender_reports: 0,
            last_sr: None,
            sync_offset: None,
            bye: false,
            fit: [0.0; 5],
        }
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Counts one RTP datagram read at `now`.
    pub fn on_rtp(&mut self, datagram: &[u8], now: Instant) -> Result<Arrival, NotRtp> {
        let pkt = rtp_rs::RtpReader::new(datagram).map_err(|_| NotRtp::Malformed)?;
        let ssrc = pkt.ssrc();
        match self.ssrc {
            Some(s) if s != ssrc => return Err(NotRtp::OtherSource(ssrc)),
            None => self.ssrc = Some(ssrc),
            Some(_) => {}
        }
        let (seq, ts) = (u16::from(pkt.sequence_number()), pkt.timestamp());
        let since_epoch = now.saturating_duration_since(self.clock.origin());
        let expected_before = self.stats.expected();
        self.stats.on_packet(seq, ts, since_epoch);
        let newly_lost = (self.stats.expected() - expected_before).saturating_sub(1);
        self.octets += pkt.payload().len() as u64;
        self.bytes += datagram.len() as u64;
        self.first_arrival.get_or_insert(now);
        self.last_arrival = Some(now);
        if self.first.is_none() {
            self.first = Some((now, ts));
            self.last_ts = ts;
        }
        let t0 = self.first.map_or(now, |(t, _)| t);
        self.ext_ts += i64::from(ts.wrapping_sub(self.last_ts) as i32);
        self.last_ts = ts;
        let media = self.ext_ts as f64 / f64::from(self.clock_rate);
        let wall = now.saturating_duration_since(t0).as_secs_f64();
        let e = wall - media;
        record_micros(&mut self.pacing, Duration::from_secs_f64(e.abs()));
        for (acc, v) in self
            .fit
            .iter_mut()
            .zip([1.0, wall, e, wall * wall, wall * e])
        {
            *acc += v;
        }
        if let Some((sr, _)) = &self.last_sr {
            let since_sr =
                f64::from(ts.wrapping_sub(sr.rtp_time) as i32) / f64::from(self.clock_rate);
            let mapped = sr.ntp.to_unix().as_secs_f64() + since_sr;
            let arrived = self.clock.ntp(now).to_unix().as_secs_f64();
            let off = arrived - mapped;
            self.sync_offset = Some(self.sync_offset.map_or(off, |o| o.min(off)));
        }
        Ok(Arrival {
            newly_lost,
            error: Duration::from_secs_f64(e.abs()),
        })
    }

    /// Takes what concerns this track from a compound RTCP packet read at
    /// `now`: its SRs and BYE.
    pub fn on_rtcp(&mut self, packets: &[Packet], now: Instant) {
        for p in packets {
            match p {
                Packet::SenderReport { ssrc, info, .. } if self.ssrc.is_none_or(|s| s == *ssrc) => {
                    self.ssrc.get_or_insert(*ssrc);
                    self.sender_reports += 1;
                    self.last_sr = Some((*info, now));
                }
                Packet::Goodbye { ssrcs, .. } if self.ssrc.is_some_and(|s| ssrcs.contains(&s)) => {
                    self.bye = true;
                }
                _ => {}
            }
        }
    }

    /// Drift of the sender's clock against ours: the least-squares slope of
    /// the signed pacing error over time, in milliseconds per minute. `None`
    /// before two packets at different times.
    pub fn drift_ms_per_min(&self) -> Option<f64> {
        let [n, st, se, stt, ste] = self.fit;
        let den = n * stt - st * st;
        if n < 2.0 || den.abs() < 1e-12 {
            return None;
        }
        Some((n * ste - st * se) / den * 60_000.0)
    }

    /// The packet count of the last SR: what the server says it sent.
    pub fn server_packet_count(&self) -> Option<u32> {
        self.last_sr.as_ref().map(|(sr, _)| sr.packet_count)
    }

    /// A reception report about this track for an RR sent at `now`
    /// (`None` before the first packet).
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        if self.stats.received() == 0 {
            return None;
        }
        let (lsr, dlsr) = match &self.last_sr {
            Some((sr, at)) => {
                let d = now.saturating_duration_since(*at);
                let dlsr = (d.as_secs_f64() * 65536.0).min(f64::from(u32::MAX)) as u32;
                (sr.ntp.middle32(), dlsr)
            }
            None => (0, 0),
        };
        Some(self.stats.report_block(ssrc, lsr, dlsr))
    }
}

/// The A/V sync error of a session: the spread (max - min) of its tracks'
/// sync offsets, in milliseconds. `None` with fewer than two tracks that
/// have an offset.
pub fn av_sync_ms(tracks: &[&TrackMeasure]) -> Option<f64> {
    let offs: Vec<f64> = tracks.iter().filter_map(|t| t.sync_offset).collect();
    if offs.len() < 2 {
        return None;
    }
    let max = offs.iter().copied().fold(f64::MIN, f64::max);
    let min = offs.iter().copied().fold(f64::MAX, f64::min);
    Some((max - min) * 1000.0)
}

/// NTP of `unix` seconds (for tests and SR construction).
pub fn ntp_at(unix: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(Duration::from_secs_f64(unix))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::proto::rtcp;

    const RATE: u32 = 8000;

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 10];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[0; 320]);
        v
    }

    fn clock(t0: Instant) -> WallClock {
        WallClock::new(t0, Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn pacing_error_is_arrival_against_media_time() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, Some(7), clock(t0));
        // 20 ms packets; the 3rd is 5 ms late, the 4th 1 ms early. The RTP
        // timestamp wraps between packets 2 and 3.
        let ts0 = u32::MAX - 200;
        let arrivals = [0, 20, 45, 59, 80];
        for (i, ms) in arrivals.iter().enumerate() {
            let ts = ts0.wrapping_add(160 * i as u32);
            m.on_rtp(&rtp(100 + i as u16, ts, 7), t0 + Duration::from_millis(*ms))
                .unwrap();
        }
        assert_eq!(m.pacing.len(), 5);
        let drift = m.drift_ms_per_min().unwrap();
        assert!(
            drift.abs() < 60.0,
            "a few ms over 80 ms is no drift: {drift}"
        );
        assert_eq!(m.pacing.max() / 100, 50, "5 ms late, in µs (3 digits)");
        assert_eq!(m.pacing.value_at_quantile(0.79) / 100, 10, "1 ms early");
        assert_eq!((m.stats.received(), m.stats.lost()), (5, 0));
        assert_eq!(m.octets, 5 * 320);
        assert_eq!(
            m.on_rtp(&rtp(105, 0, 8), t0),
            Err(NotRtp::OtherSource(8)),
            "another SSRC is not counted"
        );
        assert_eq!(m.on_rtp(&[0x80, 1, 2], t0), Err(NotRtp::Malformed));
    }

    #[test]
    fn timeline_counts_losses_when_the_gap_shows() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        let mut tl = Timeline::default();
        // Seq 0, 1, then 5 (3 lost) in the next second.
        for (seq, ms) in [(0u16, 0u64), (1, 20), (5, 1100)] {
            let at = t0 + Duration::from_millis(ms);
            let a = m.on_rtp(&rtp(seq, u32::from(seq) * 160, 1), at).unwrap();
            tl.record(at - t0, a);
        }
        assert_eq!(tl.seconds.len(), 2);
        assert_eq!((tl.seconds[0].received, tl.seconds[0].lost), (2, 0));
        assert_eq!((tl.seconds[1].received, tl.seconds[1].lost), (1, 3));
        // Packet 5 is due at 100 ms and came at 1100 ms: 1 s late.
        assert_eq!(tl.seconds[1].error_max_us / 1000, 1000);
        let mut sum = Timeline::default();
        sum.merge(&tl);
        sum.merge(&tl);
        assert_eq!((sum.seconds[1].received, sum.seconds[1].lost), (2, 6));
        let far = Arrival {
            newly_lost: 0,
            error: Duration::ZERO,
        };
        sum.record(Duration::from_secs(1_000_000), far);
        assert_eq!(sum.seconds.len(), 2, "bounded");
    }

    #[test]
    fn drift_is_the_slope_of_the_error() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        // The sender's clock runs 0.1% fast: 60 ms per minute early.
        for i in 0..3000u32 {
            let at = t0 + Duration::from_micros(u64::from(i) * 20_000 * 999 / 1000);
            m.on_rtp(&rtp(i as u16, i * 160, 1), at).unwrap();
        }
        let d = m.drift_ms_per_min().unwrap();
        assert!((d + 60.0).abs() < 0.5, "{d}");
    }

    #[test]
    fn sync_offset_and_av_sync() {
        let t0 = Instant::now();
        let c = clock(t0);
        let unix0 = 1_700_000_000.0;
        // Audio: SR says RTP 1000 = unix0; packets arrive on time.
        let mut a = TrackMeasure::new(RATE, Some(1), c);
        let sr = |ssrc, ntp, rtp_time| Packet::SenderReport {
            ssrc,
            info: SenderInfo {
                ntp,
                rtp_time,
                packet_count: 9,
                octet_count: 0,
            },
            reports: vec![],
        };
        a.on_rtcp(&[sr(1, ntp_at(unix0), 1000)], t0);
        // Video (90 kHz): its SR maps media time 40 ms later than it is
        // sent, i.e. video is 40 ms early against audio.
        let mut v = TrackMeasure::new(90_000, Some(2), c);
        v.on_rtcp(&[sr(2, ntp_at(unix0 + 0.040), 5000)], t0);
        for i in 0..10u32 {
            let at = t0 + Duration::from_millis(20 * u64::from(i));
            a.on_rtp(&rtp(i as u16, 1000 + 160 * i, 1), at).unwrap();
            v.on_rtp(&rtp(i as u16, 5000 + 1800 * i, 2), at).unwrap();
        }
        let oa = a.sync_offset.unwrap();
        assert!(oa.abs() < 1e-3, "{oa}");
        let ms = av_sync_ms(&[&a, &v]).unwrap();
        assert!((ms - 40.0).abs() < 1.0, "{ms}");
        assert_eq!(av_sync_ms(&[&a]), None);
        assert_eq!((a.sender_reports, a.server_packet_count()), (1, Some(9)));
    }

    #[test]
    fn bye_and_receiver_report() {
        let t0 = Instant::now();
        let mut m = TrackMeasure::new(RATE, None, clock(t0));
        assert!(m.report_block(t0).is_none());
        for seq in [1u16, 2, 4, 4] {
            m.on_rtp(&rtp(seq, 160 * u32::from(seq), 3), t0).unwrap();
        }
        assert_eq!(m.ssrc(), Some(3));
        let rb = m.report_block(t0).unwrap();
        assert_eq!((rb.ssrc, rb.cumulative_lost), (3, 0), "1 lost, 1 duplicate");
        assert_eq!(m.stats.duplicates(), 1);
        let mut buf = BytesMut::new();
        let info = SenderInfo {
            ntp: ntp_at(1.0),
            rtp_time: 0,
            packet_count: 4,
            octet_count: 0,
        };
        rtcp::write_goodbye(&mut buf, 3, &info, "x");
        m.on_rtcp(&rtcp::parse_compound(&buf).unwrap(), t0);
        assert!(m.bye);
        assert_eq!(m.server_packet_count(), Some(4));
    }
}
