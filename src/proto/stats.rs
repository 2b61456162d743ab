//! Receiver statistics for one RTP source (RFC 3550): the reception report
//! fields of §6.4.1, extended sequence numbers and source restarts (A.1,
//! simplified), loss and fraction lost (A.3), and interarrival jitter (A.8).
//!
//! Shared by the server (RR ingest in tests) and the load tester. Sans-IO:
//! the caller passes each packet's arrival time.

use std::time::Duration;

use super::rtcp::{ReportBlock, LOST_MAX, LOST_MIN};

/// A forward jump of fewer sequence numbers than this is a gap of lost
/// packets; a larger one may be a source restart (A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// How far back duplicates are told from late packets, in sequence numbers.
/// Older packets are treated like a large jump. (A.1 allows 100.)
const WINDOW: u16 = 1024;
/// Extended sequence numbers start one cycle up, so that a packet sent
/// before the first one received cannot underflow.
const ORIGIN: u64 = 1 << 16;

/// Reception statistics of one source: feed every RTP packet to
/// [`on_packet`](Self::on_packet), and call [`report_block`](Self::report_block)
/// once per RR.
///
/// Counts follow §6.4.1: [`received`](Self::received) includes late packets
/// and duplicates, so [`lost`](Self::lost) goes negative when duplicates
/// outnumber losses.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    /// Extended highest sequence number received, offset by `ORIGIN`.
    highest: u64,
    /// Extended sequence number of the first packet expected since the last
    /// (re)start, offset by `ORIGIN`.
    base: u64,
    /// Packets expected before the last source restart.
    expected_before: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    /// Bit `ext % WINDOW` is set once that sequence number arrived; only the
    /// last `WINDOW` sequence numbers up to `highest` are meaningful.
    seen: [u64; WINDOW as usize / 64],
    /// After a jump too large to be losses, the sequence number that would
    /// confirm it as a restart (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    /// Relative transit time of the previous packet, in RTP units (A.8).
    transit: Option<u32>,
    /// The jitter estimate times 16 (A.8).
    jitter_x16: u64,
    /// Totals at the previous [`report_block`](Self::report_block) (A.3).
    expected_prior: u64,
    received_prior: u64,
}

impl ReceiverStats {
    /// `clock_rate` is the stream's RTP clock in Hz (0 is taken as 1).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            highest: ORIGIN,
            base: ORIGIN + 1,
            expected_before: 0,
            received: 0,
            duplicates: 0,
            reordered: 0,
            seen: [0; WINDOW as usize / 64],
            bad_seq: None,
            transit: None,
            jitter_x16: 0,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    /// Records one RTP packet. `arrival` is its arrival time since any fixed
    /// origin; it is converted to RTP clock units for the A.8 jitter.
    ///
    /// A packet up to 1023 sequence numbers behind the highest is a
    /// duplicate or late; up to 2999 ahead (modulo 2^16, so wrapping at
    /// 65535 counts a cycle) it advances, the gap counting as lost. Anything
    /// else is ignored unless the next packet follows it in sequence: then
    /// the source restarted, and counting starts over from those two
    /// (A.1), keeping the totals.
    pub fn on_packet(&mut self, seq: u16, rtp_time: u32, arrival: Duration) {
        let behind = (self.highest as u16).wrapping_sub(seq);
        let ahead = seq.wrapping_sub(self.highest as u16);
        let ext = if self.received == 0 {
            self.restart(seq)
        } else if behind < WINDOW {
            self.highest - u64::from(behind)
        } else if ahead < MAX_DROPOUT {
            self.highest + u64::from(ahead)
        } else if self.bad_seq == Some(seq) {
            let first = self.restart(seq.wrapping_sub(1));
            self.highest = first;
            self.mark(first);
            self.received += 1;
            first + 1
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            return;
        };
        self.bad_seq = None;
        self.received += 1;
        if ext > self.highest {
            for lost in (self.highest + 1).max(ext - u64::from(WINDOW - 1))..ext {
                let (word, bit) = self.slot(lost);
                self.seen[word] &= !bit;
            }
            self.highest = ext;
        } else if self.mark(ext) {
            self.duplicates += 1;
            return;
        } else {
            self.reordered += 1;
            self.base = self.base.min(ext);
        }
        self.mark(ext);
        self.update_jitter(rtp_time, arrival);
    }

    /// Packets received, duplicates and late ones included (§6.4.1).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected: from the first sequence number seen to the highest,
    /// summed over source restarts (A.3).
    pub fn expected(&self) -> u64 {
        self.expected_before + (self.highest + 1 - self.base)
    }

    /// `expected - received`; negative when duplicates outnumber losses.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number, duplicates
    /// excluded.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Cycles of the 16-bit sequence number in the high 16 bits, the highest
    /// sequence number in the low 16 (§6.4.1). 0 before the first packet.
    pub fn extended_highest_seq(&self) -> u32 {
        self.highest.wrapping_sub(ORIGIN) as u32
    }

    /// Interarrival jitter in RTP timestamp units (A.8).
    pub fn jitter_rtp_units(&self) -> u32 {
        (self.jitter_x16 >> 4) as u32
    }

    pub fn jitter(&self) -> Duration {
        let units = u64::from(self.jitter_rtp_units());
        Duration::from_nanos(units * 1_000_000_000 / u64::from(self.clock_rate))
    }

    /// A report block for an RR about source `ssrc`; the fraction lost
    /// covers the packets since the previous call (A.3). `lsr` is the middle
    /// 32 bits of the last SR's NTP timestamp and `dlsr` the delay since it
    /// arrived in 1/65536 s, both 0 if no SR arrived yet.
    pub fn report_block(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let lost_interval = expected_interval.saturating_sub(self.received - self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let fraction_lost = match expected_interval {
            0 => 0,
            n => ((lost_interval << 8) / n).min(255) as u8,
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(LOST_MIN.into(), LOST_MAX.into()) as i32,
            highest_seq: self.extended_highest_seq(),
            jitter: self.jitter_rtp_units(),
            lsr,
            dlsr,
        }
    }

    /// Starts counting sequence numbers over at `first`, keeping the totals;
    /// returns its extended sequence number, not yet received.
    fn restart(&mut self, first: u16) -> u64 {
        self.expected_before = self.expected();
        self.base = ORIGIN + u64::from(first);
        self.highest = self.base - 1;
        self.seen = [0; WINDOW as usize / 64];
        self.transit = None;
        self.base
    }

    /// Marks `ext` as seen; returns whether it already was.
    fn mark(&mut self, ext: u64) -> bool {
        let (word, bit) = self.slot(ext);
        let was = self.seen[word] & bit != 0;
        self.seen[word] |= bit;
        was
    }

    fn slot(&self, ext: u64) -> (usize, u64) {
        let i = (ext % u64::from(WINDOW)) as usize;
        (i / 64, 1 << (i % 64))
    }

    /// A.8: D = difference of relative transit times, J += (|D| - J) / 16,
    /// in fixed point with J scaled by 16. Arithmetic is modulo 2^32, like
    /// RTP timestamps.
    fn update_jitter(&mut self, rtp_time: u32, arrival: Duration) {
        let arrival = (arrival.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_time);
        if let Some(previous) = self.transit.replace(transit) {
            let d = u64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            // J - J/16 never underflows; adding |D| last keeps it unsigned.
            self.jitter_x16 = self.jitter_x16 - ((self.jitter_x16 + 8) >> 4) + d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;
    /// 20 ms packets of 160 samples at 8 kHz.
    const PTIME: Duration = Duration::from_millis(20);

    /// Feeds sequence numbers as if each were sent on time and arrived with
    /// no delay variation.
    fn feed(stats: &mut ReceiverStats, seqs: impl IntoIterator<Item = u16>) {
        for seq in seqs {
            let n = u32::from(seq);
            stats.on_packet(seq, n * 160, PTIME * n);
        }
    }

    fn counts(s: &ReceiverStats) -> [i64; 5] {
        [
            s.received() as i64,
            s.expected() as i64,
            s.lost(),
            s.duplicates() as i64,
            s.reordered() as i64,
        ]
    }

    #[test]
    fn in_order_stream() {
        let mut s = ReceiverStats::new(RATE);
        assert_eq!((counts(&s), s.extended_highest_seq()), ([0; 5], 0));
        feed(&mut s, 1000..1100);
        assert_eq!(counts(&s), [100, 100, 0, 0, 0]);
        assert_eq!(s.extended_highest_seq(), 1099);
        assert_eq!(s.jitter_rtp_units(), 0);
        let block = s.report_block(42, 7, 8);
        assert_eq!(
            block,
            ReportBlock {
                ssrc: 42,
                fraction_lost: 0,
                cumulative_lost: 0,
                highest_seq: 1099,
                jitter: 0,
                lsr: 7,
                dlsr: 8
            }
        );
    }

    #[test]
    fn wraps_at_65535() {
        let mut s = ReceiverStats::new(RATE);
        for seq in (65530..=65535).chain(0..14) {
            s.on_packet(seq, 0, Duration::ZERO);
        }
        assert_eq!(counts(&s), [20, 20, 0, 0, 0]);
        assert_eq!(s.extended_highest_seq(), 0x0001_000d);
        // A late packet from before the wrap is reordered, not a new cycle.
        s.on_packet(65529, 0, Duration::ZERO);
        assert_eq!(counts(&s), [21, 21, 0, 0, 1]);
        assert_eq!(s.extended_highest_seq(), 0x0001_000d);
    }

    #[test]
    fn ten_percent_loss() {
        let mut s = ReceiverStats::new(RATE);
        feed(&mut s, (0..1000).filter(|i| i % 10 != 5));
        assert_eq!(counts(&s), [900, 1000, 100, 0, 0]);
        let block = s.report_block(1, 0, 0);
        assert_eq!((block.fraction_lost, block.cumulative_lost), (25, 100)); // 0.1 × 256
        feed(&mut s, 1000..1100);
        let block = s.report_block(1, 0, 0);
        assert_eq!((block.fraction_lost, block.cumulative_lost), (0, 100));
        // Nothing new: no division by zero.
        assert_eq!(s.report_block(1, 0, 0).fraction_lost, 0);
    }

    #[test]
    fn duplicates() {
        let mut s = ReceiverStats::new(RATE);
        feed(&mut s, 0..100);
        feed(&mut s, (10..20).chain([99, 99]));
        assert_eq!(counts(&s), [112, 100, -12, 12, 0]);
        assert_eq!(s.report_block(1, 0, 0).cumulative_lost, -12);
    }

    #[test]
    fn reordering() {
        let mut s = ReceiverStats::new(RATE);
        feed(&mut s, [10, 11, 13, 12, 14, 16, 15, 9]);
        // 9 arrived after 10: the stream started earlier than it seemed.
        assert_eq!(counts(&s), [8, 8, 0, 0, 3]);
        assert_eq!(s.extended_highest_seq(), 16);
        // A gap larger than the window: a late packet inside the window is
        // reordered, one beyond it is ignored (a stray, A.1).
        feed(&mut s, [2016, 1500, 900]);
        assert_eq!(counts(&s), [10, 2008, 1998, 0, 4]);
    }

    #[test]
    fn source_restart_needs_two_packets_in_sequence() {
        let mut s = ReceiverStats::new(RATE);
        feed(&mut s, 0..10);
        feed(&mut s, [40_000]);
        assert_eq!(counts(&s), [10, 10, 0, 0, 0]);
        feed(&mut s, [10, 30_000, 30_001, 30_002]);
        assert_eq!(counts(&s), [14, 14, 0, 0, 0]);
        assert_eq!(s.extended_highest_seq(), 30_002);
    }

    #[test]
    fn jitter_of_constant_transit_is_zero() {
        let mut s = ReceiverStats::new(RATE);
        // Transit is constant (here 0.5 s) whatever its value.
        for seq in 0..500_u16 {
            let n = u32::from(seq);
            s.on_packet(
                seq,
                1_000_000 + n * 160,
                PTIME * n + Duration::from_millis(500),
            );
        }
        assert_eq!((s.jitter_rtp_units(), s.jitter()), (0, Duration::ZERO));
    }

    #[test]
    fn jitter_converges_for_alternating_transit() {
        // Transit alternates ±5 ms around its mean, so |D| = 10 ms = 80 units
        // every packet and A.8's J converges to 80 (the integer form settles
        // just below). RTP timestamps wrap on the way.
        let mut s = ReceiverStats::new(RATE);
        for seq in 0..500_u16 {
            let n = u32::from(seq);
            let skew = if seq % 2 == 0 {
                Duration::from_millis(10)
            } else {
                Duration::ZERO
            };
            s.on_packet(
                seq,
                (u32::MAX - 40_000).wrapping_add(n * 160),
                PTIME * n + skew,
            );
        }
        assert!(
            (79..=80).contains(&s.jitter_rtp_units()),
            "{}",
            s.jitter_rtp_units()
        );
        assert!(s.jitter().abs_diff(Duration::from_millis(10)) <= Duration::from_micros(125));
    }

    #[test]
    fn jitter_decays_after_a_burst() {
        let mut s = ReceiverStats::new(RATE);
        // One packet 100 ms late, then 200 on time: J rises, then decays
        // towards zero (each step J -= J/16) without going below it.
        for n in 0..201u32 {
            let late = if n == 1 {
                Duration::from_millis(100)
            } else {
                Duration::ZERO
            };
            s.on_packet(n as u16, n * 160, PTIME * n + late);
        }
        let peak = 2 * 800 / 16;
        assert!(
            s.jitter_rtp_units() < 2,
            "{} after decay from about {peak}",
            s.jitter_rtp_units()
        );
        assert_eq!(s.lost(), 0);
    }
}
