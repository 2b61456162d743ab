//! One relayed track's timeline: packets from whoever feeds the channel
//! (a publisher, an upstream) leave with the channel's own SSRC, sequence
//! numbers and timestamps (RFC 3550 §5.1), so listeners see one unbroken
//! stream while sources come and go.
//!
//! Within one source, sequence numbers and timestamps keep the source's
//! spacing: a gap the source had stays a gap (listeners count it as loss),
//! a reordered packet keeps its place. A new source (another SSRC, a jump
//! past RFC 3550 A.1's `MAX_DROPOUT`/`MAX_MISORDER`, or [`Restamper::reset`]
//! when the server knows the feed changed) continues at the next sequence
//! number, and its timestamps continue from the last ones sent plus the
//! wall time between, counted at the track's clock rate: the outage is a
//! pause on the listeners' timeline, not a jump back.

use std::time::Instant;

use super::super::clock::duration_to_ticks;

/// RFC 3550 A.1: a jump forward beyond this many sequence numbers is a new
/// source.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a jump back beyond this many is a new source.
const MAX_MISORDER: u16 = 100;

/// What a relayed packet's header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
}

/// What it leaves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: u16,
    pub timestamp: u32,
    /// The first packet of a new source (a publisher or upstream that
    /// took over).
    pub new_source: bool,
}

/// The current source's mapping.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    ssrc: u32,
    /// Added to the source's sequence numbers.
    seq_offset: u16,
    /// Added to the source's timestamps.
    ts_offset: u32,
    /// The source's highest sequence number seen.
    max_seq: u16,
}

/// A track's outgoing SSRC, sequence and timestamp state.
#[derive(Debug, Clone)]
pub struct Restamper {
    ssrc: u32,
    clock_rate: u32,
    /// The next sequence number after the highest one sent.
    next_seq: u16,
    /// The first timestamp, for the first source.
    first_ts: u32,
    /// The highest timestamp sent (in send order) and when.
    last: Option<(u32, Instant)>,
    mapping: Option<Mapping>,
}

impl Restamper {
    /// `ssrc`, `first_seq` and `first_ts` come from the OS CSPRNG (RFC 3550
    /// §5.1); the caller passes them so tests are deterministic.
    pub fn new(ssrc: u32, clock_rate: u32, first_seq: u16, first_ts: u32) -> Self {
        Self {
            ssrc,
            clock_rate: clock_rate.max(1),
            next_seq: first_seq,
            first_ts,
            last: None,
            mapping: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The sequence number the next packet of a new source would get.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// The highest timestamp sent so far (the first one before any).
    pub fn last_timestamp(&self) -> u32 {
        self.last.map_or(self.first_ts, |(ts, _)| ts)
    }

    /// The feed changed (a new publisher, an upstream reconnected): the
    /// next packet starts a new mapping even if its SSRC is the same.
    pub fn reset(&mut self) {
        self.mapping = None;
    }

    /// The last packet became `1 + n` packets (re-fragmented): the source's
    /// next packets move `n` sequence numbers on.
    pub fn skip(&mut self, n: u16) {
        if let Some(m) = &mut self.mapping {
            m.seq_offset = m.seq_offset.wrapping_add(n);
        }
        self.next_seq = self.next_seq.wrapping_add(n);
    }

    /// Maps one packet received at `now`.
    pub fn restamp(&mut self, p: Incoming, now: Instant) -> Outgoing {
        let same = self.mapping.filter(|m| {
            m.ssrc == p.ssrc && {
                let ahead = p.seq.wrapping_sub(m.max_seq);
                let behind = m.max_seq.wrapping_sub(p.seq);
                ahead < MAX_DROPOUT || behind <= MAX_MISORDER
            }
        });
        let (mut m, new_source) = match same {
            Some(m) => (m, false),
            None => {
                let out_ts = match self.last {
                    None => self.first_ts,
                    Some((ts, at)) => {
                        let gap =
                            duration_to_ticks(now.saturating_duration_since(at), self.clock_rate);
                        // At least one tick on, so the new source never
                        // repeats the last timestamp.
                        ts.wrapping_add((gap as u32).max(1))
                    }
                };
                let m = Mapping {
                    ssrc: p.ssrc,
                    seq_offset: self.next_seq.wrapping_sub(p.seq),
                    ts_offset: out_ts.wrapping_sub(p.timestamp),
                    max_seq: p.seq,
                };
                (m, true)
            }
        };
        if p.seq.wrapping_sub(m.max_seq) < MAX_DROPOUT {
            m.max_seq = p.seq;
        }
        let seq = p.seq.wrapping_add(m.seq_offset);
        let timestamp = p.timestamp.wrapping_add(m.ts_offset);
        // The highest sequence number decides what a new source continues
        // from; a reordered packet does not move it back.
        if new_source || (seq.wrapping_sub(self.next_seq) as i16) >= 0 {
            self.next_seq = seq.wrapping_add(1);
        }
        let later = self
            .last
            .is_none_or(|(ts, _)| (timestamp.wrapping_sub(ts) as i32) >= 0);
        if new_source || later {
            self.last = Some((timestamp, now));
        }
        self.mapping = Some(m);
        Outgoing {
            seq,
            timestamp,
            new_source,
        }
    }

    /// The outgoing timestamp of the current source's `timestamp` (for
    /// mapping the source's sender reports onto ours); `None` before any
    /// packet, or for another SSRC.
    pub fn map_timestamp(&self, ssrc: u32, timestamp: u32) -> Option<u32> {
        self.mapping
            .filter(|m| m.ssrc == ssrc)
            .map(|m| timestamp.wrapping_add(m.ts_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(ssrc: u32, seq: u16, timestamp: u32) -> Incoming {
        Incoming {
            ssrc,
            seq,
            timestamp,
        }
    }

    #[test]
    fn one_source_keeps_its_spacing_gaps_and_order() {
        let t0 = Instant::now();
        let mut r = Restamper::new(7, 90_000, 1000, 5_000);
        let a = r.restamp(pkt(1, 60_000, 123), t0);
        assert_eq!((a.seq, a.timestamp, a.new_source), (1000, 5_000, true));
        let b = r.restamp(pkt(1, 60_001, 3_123), t0);
        assert_eq!((b.seq, b.timestamp, b.new_source), (1001, 8_000, false));
        // A lost packet stays a gap; a late one keeps its place.
        let d = r.restamp(pkt(1, 60_003, 9_123), t0);
        assert_eq!(d.seq, 1003);
        let c = r.restamp(pkt(1, 60_002, 6_123), t0);
        assert_eq!((c.seq, c.timestamp), (1002, 11_000));
        assert_eq!(r.next_seq(), 1004);
        assert_eq!(r.map_timestamp(1, 9_123), Some(14_000));
        assert_eq!(r.map_timestamp(2, 9_123), None);
    }

    #[test]
    fn sequence_and_timestamp_wrap_within_a_source() {
        let t0 = Instant::now();
        let mut r = Restamper::new(7, 8000, 65_534, u32::MAX - 100);
        let mut seqs = Vec::new();
        let mut stamps = Vec::new();
        for i in 0..5u16 {
            let ts = (u32::MAX - 200).wrapping_add(u32::from(i) * 160);
            let o = r.restamp(pkt(9, 65_533u16.wrapping_add(i), ts), t0);
            assert!(!o.new_source || i == 0);
            seqs.push(o.seq);
            stamps.push(o.timestamp);
        }
        for w in stamps.windows(2) {
            assert_eq!(w[1].wrapping_sub(w[0]), 160);
        }
        assert_eq!(seqs, [65_534, 65_535, 0, 1, 2]);
    }

    #[test]
    fn a_new_source_continues_the_timeline_across_the_outage() {
        let t0 = Instant::now();
        let mut r = Restamper::new(7, 90_000, 10, 0);
        r.restamp(pkt(1, 500, 1_000_000), t0);
        let last = r.restamp(pkt(1, 501, 1_003_000), t0 + Duration::from_millis(33));
        // Two seconds later another publisher, starting anywhere.
        let then = t0 + Duration::from_millis(2_033);
        let first = r.restamp(pkt(2, 7, 42), then);
        assert!(first.new_source);
        assert_eq!(first.seq, last.seq.wrapping_add(1));
        assert_eq!(first.timestamp, last.timestamp + 180_000);
        let next = r.restamp(pkt(2, 8, 3_042), then);
        assert_eq!(
            (next.seq, next.timestamp),
            (first.seq + 1, first.timestamp + 3_000)
        );
        assert!(!next.new_source);
    }

    #[test]
    fn a_jump_or_a_reset_is_a_new_source_with_the_same_ssrc() {
        let t0 = Instant::now();
        let mut r = Restamper::new(7, 8000, 0, 0);
        r.restamp(pkt(1, 100, 0), t0);
        // An upstream that restarted with the same SSRC, far from before.
        let o = r.restamp(pkt(1, 100 + MAX_DROPOUT + 1, 77), t0);
        assert!(o.new_source);
        assert_eq!(o.seq, 1);
        assert!(r.restamp(pkt(1, 100 + MAX_DROPOUT + 2, 237), t0).seq == 2);
        r.reset();
        let o = r.restamp(pkt(1, 100 + MAX_DROPOUT + 3, 397), t0);
        assert!(o.new_source);
        assert_eq!(o.seq, 3);
        // The same timestamp is never reused across a handover.
        assert!(o.timestamp > 160);
    }
}
