//! A live channel's fan-out: its listeners, each sent the channel's one
//! encoding of every packet (a clone of the same [`Bytes`]; RFC 3550 §5.1
//! numbering is the channel's, not the listener's), its own SRs every
//! [`SR_INTERVAL`] from its join (§6.4.1), and for a newcomer the first
//! packet it gets, which RTP-Info names (RFC 2326 §12.33).
//!
//! The packets are opaque here: any payload the channel stamps goes out
//! the same way. Listeners sit in [`SLOTS`] fixed send slots per packet
//! interval: a listener in slot `s` is served `s × interval / SLOTS` after
//! each packet's due time, so others joining or leaving never move it, and
//! the sending of one packet to thousands of listeners is spread over the
//! interval instead of leaving in one burst. The owner walks (packet, slot)
//! turns with [`Fanout::turn`] and [`Fanout::serve`]; due times come from
//! the owner's timeline.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::pacer::{Transmit, SR_INTERVAL};
use crate::proto::session::Dest;

/// Send slots per packet interval.
pub(super) const SLOTS: usize = 16;

/// Where a new listener's stream starts: the next packet it will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinInfo {
    pub seq: u16,
    pub rtptime: u32,
}

/// One (packet, slot) turn: when the slot's listeners get the packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Turn {
    pub(super) packet: u64,
    pub(super) slot: usize,
    pub(super) at: Instant,
}

/// One packet of the channel, encoded once.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    /// Its index on the channel's timeline.
    pub(super) index: u64,
    /// Its sequence number and timestamp.
    pub(super) at: JoinInfo,
    pub(super) data: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct Listener {
    rtp: Dest,
    rtcp: Dest,
    /// When this listener's next SR is due: every `SR_INTERVAL` from its
    /// join, so the reports of thousands of listeners spread out instead of
    /// leaving in one burst.
    next_sr: Instant,
    /// Index of the first packet it gets: the one whose turn at its slot
    /// had not yet come when it joined.
    first: u64,
}

/// The listeners of one channel, by send slot.
#[derive(Debug)]
pub(super) struct Fanout {
    /// Listeners by send slot; each slot's listeners get every packet
    /// `slot × slot_len` after its due time.
    slots: Vec<BTreeMap<u64, Listener>>,
    /// Which slot each listener is in.
    slot_of: HashMap<u64, usize>,
    slot_len: Duration,
    /// The packet being sent slot by slot.
    current: Option<Packet>,
    /// The next (packet, slot) to serve.
    next: (u64, usize),
}

impl Fanout {
    /// No listeners yet; packets are `interval` apart.
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            slots: vec![BTreeMap::new(); SLOTS],
            slot_of: HashMap::new(),
            slot_len: interval / SLOTS as u32,
            current: None,
            next: (0, 0),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// When the next turn has work: the next packet to encode, or the next
    /// slot with listeners. `due` gives each packet's due time.
    pub(super) fn next_deadline(&self, due: impl Fn(u64) -> Instant) -> Instant {
        let (packet, slot) = self.next;
        let first_busy = (slot..SLOTS).find(|&s| !self.slots[s].is_empty());
        match first_busy {
            // Slot 0 of a packet also encodes it: always a deadline.
            Some(s) if slot > 0 || s == 0 => due(packet) + self.slot_len * s as u32,
            _ if slot > 0 => due(packet + 1),
            _ => due(packet),
        }
    }

    /// Adds listener `id` (a session's pacer group) in the least busy slot.
    /// Its first packet is the one in flight, if it has yet to be served
    /// there, else `edge`, the timeline's next packet (its index and
    /// numbering); returns that packet's numbering.
    pub(super) fn subscribe(
        &mut self,
        id: u64,
        rtp: Dest,
        rtcp: Dest,
        now: Instant,
        due: impl Fn(u64) -> Instant,
        edge: (u64, JoinInfo),
    ) -> JoinInfo {
        self.remove(id);
        let slot = (0..SLOTS)
            .min_by_key(|&s| (self.slots[s].len(), s))
            .unwrap_or(0);
        // The packet in flight, if the loop has not served this slot for it
        // yet and its time at this slot is still to come; else the next one.
        // The loop's position decides, not the clock alone: the owner polls
        // ahead of `now` (the pacing thread's send-ahead), so a slot whose
        // time is still to come may already be served, and a slot whose
        // time has passed may not be (the loop does not wake for empty
        // slots). Both are read here, on the thread that serves the slots,
        // so the answer and the RTP-Info built from it are exact.
        let in_flight = self.current.as_ref().filter(|p| {
            let unserved = self.next.0 == p.index && self.next.1 <= slot;
            unserved && due(p.index) + self.slot_len * slot as u32 >= now
        });
        let (first, join) = match in_flight {
            Some(p) => (p.index, p.at),
            None => edge,
        };
        let l = Listener {
            rtp,
            rtcp,
            next_sr: now + SR_INTERVAL,
            first,
        };
        self.slots[slot].insert(id, l);
        self.slot_of.insert(id, slot);
        join
    }

    /// Removes listener `id`; returns its RTCP destination.
    pub(super) fn remove(&mut self, id: u64) -> Option<Dest> {
        let slot = self.slot_of.remove(&id)?;
        self.slots[slot].remove(&id).map(|l| l.rtcp)
    }

    /// `data` to every listener's RTCP destination.
    pub(super) fn report_to_all(&self, data: &Bytes, out: &mut Vec<Transmit>) {
        for l in self.slots.iter().flat_map(BTreeMap::values) {
            out.push(Transmit::rtcp(l.rtcp, data.clone()));
        }
    }

    /// The next turn, if its time is at or before `now`; the one after it
    /// is next. At slot 0 the owner makes the
    /// packet ([`Fanout::set_current`]) before it is served.
    pub(super) fn turn(&mut self, now: Instant, due: impl Fn(u64) -> Instant) -> Option<Turn> {
        let (packet, slot) = self.next;
        let at = due(packet) + self.slot_len * slot as u32;
        if at > now {
            return None;
        }
        self.next = if slot + 1 == SLOTS {
            (packet + 1, 0)
        } else {
            (packet, slot + 1)
        };
        Some(Turn { packet, slot, at })
    }

    /// The packet the next turns serve; `None` when the timeline skipped it.
    pub(super) fn set_current(&mut self, packet: Option<Packet>) {
        self.current = packet;
    }

    /// Serves `turn`: the packet to each of the slot's listeners, and an
    /// SR (from `report`, encoded once for all of them) to each whose SR
    /// time has come.
    pub(super) fn serve(
        &mut self,
        turn: Turn,
        report: impl FnOnce() -> Bytes,
        out: &mut Vec<Transmit>,
    ) {
        let Turn { packet, slot, at } = turn;
        let Some(current) = &self.current else {
            return;
        };
        let mut srs_due = false;
        for (&id, l) in self.slots[slot].iter().filter(|(_, l)| l.first <= packet) {
            out.push(Transmit::rtp(l.rtp, current.data.clone(), id, at));
            srs_due |= l.next_sr <= at;
        }
        if !srs_due {
            return;
        }
        let sr = report();
        for l in self.slots[slot].values_mut() {
            if l.next_sr > at || l.first > packet {
                continue;
            }
            l.next_sr += SR_INTERVAL;
            if l.next_sr <= at {
                l.next_sr = at + SR_INTERVAL;
            }
            out.push(Transmit::rtcp(l.rtcp, sr.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::live::tests::{channel, rtp, udp};
    use crate::proto::live::Channel;
    use crate::proto::packetize::Codec;

    #[test]
    fn reports_are_staggered_by_join_time() {
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        c.subscribe(
            2,
            udp(6000),
            udp(6001),
            t0 + Duration::from_millis(2000),
            &mut out,
        );
        out.clear();
        let srs_to = |out: &[Transmit], port: u16| {
            out.iter().filter(|t| t.rtcp && t.dest == udp(port)).count()
        };
        c.poll(t0 + Duration::from_millis(5010), &mut out);
        assert_eq!((srs_to(&out, 5001), srs_to(&out, 6001)), (1, 0));
        out.clear();
        c.poll(t0 + Duration::from_millis(7010), &mut out);
        assert_eq!((srs_to(&out, 5001), srs_to(&out, 6001)), (0, 1));
    }

    #[test]
    fn listeners_keep_their_slot_whoever_leaves() {
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        for id in 0..40 {
            c.subscribe(
                id,
                udp(5000 + 2 * id as u16),
                udp(5001 + 2 * id as u16),
                t0,
                &mut out,
            );
        }
        let counts: Vec<usize> = c.fanout.slots.iter().map(BTreeMap::len).collect();
        assert!(
            counts
                .iter()
                .all(|&n| n == 40 / SLOTS || n == 40 / SLOTS + 1),
            "{counts:?}"
        );
        // Listener 39 is served 1.25 ms × its slot after each due time, and
        // still after half the others leave.
        let slot = c.fanout.slot_of[&39];
        let sent_at = |c: &mut Channel, k: u64| {
            let due = t0 + Duration::from_millis(20 * k);
            let mut out = Vec::new();
            let mut t = due;
            loop {
                c.poll(t, &mut out);
                if out.iter().any(|x| x.dest == udp(5000 + 78)) {
                    return t - due;
                }
                t += Duration::from_micros(50);
            }
        };
        c.poll(t0 + Duration::from_millis(19), &mut out);
        let before = sent_at(&mut c, 1);
        for id in 0..20 {
            c.unsubscribe(id, false, t0, &mut out);
        }
        let after = sent_at(&mut c, 2);
        assert_eq!(before, after, "slot {slot}: same offset");
        assert!(
            before >= c.fanout.slot_len * slot as u32
                && before < c.fanout.slot_len * slot as u32 + Duration::from_micros(60)
        );
    }

    #[test]
    fn a_listener_never_gets_a_packet_late_for_its_slot() {
        // The loop only wakes for busy slots: after serving slot 0 at the
        // due time it sleeps to the next packet. A listener joining 5 ms
        // later lands in slot 1, whose time for this packet has passed: its
        // first packet must be the next one, at its slot time, not this one
        // sent 3.75 ms late.
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        c.subscribe(1, udp(5000), udp(5001), t0, &mut out);
        c.poll(t0, &mut out);
        out.clear();
        let join_at = t0 + Duration::from_millis(5);
        let join = c.subscribe(2, udp(6000), udp(6001), join_at, &mut out);
        out.clear();
        c.poll(join_at, &mut out);
        assert!(
            out.iter().all(|t| t.dest != udp(6000)),
            "nothing late for slot 1"
        );
        let at = t0 + Duration::from_millis(20) + c.fanout.slot_len;
        c.poll(at, &mut out);
        let first = out
            .iter()
            .find(|t| t.dest == udp(6000))
            .expect("the next packet");
        assert_eq!((rtp(first).0, rtp(first).1), (join.seq, join.rtptime));
    }

    /// Issue 10, defect 3: whatever the join time and slot, and with the
    /// loop polled ahead of the clock as the pacing thread does (its
    /// send-ahead), a listener's first packet is exactly the one its
    /// RTP-Info names.
    #[test]
    fn a_late_joiner_first_gets_the_packet_its_rtp_info_names() {
        let send_ahead = Duration::from_micros(500);
        let t0 = Instant::now();
        let mut c = channel(Codec::L16, t0);
        let mut out = Vec::new();
        // One listener in each slot; before each join the one in slot j
        // leaves, so the newcomer takes slot j.
        for j in 0..SLOTS as u64 {
            c.subscribe(j, udp(1000 + j as u16), udp(2000), t0, &mut out);
        }
        let me = udp(20_000);
        let mut clock = t0;
        let mut misses = Vec::new();
        for i in 0..800u64 {
            let j = i % SLOTS as u64;
            // Join times fall anywhere in the packet interval.
            clock += Duration::from_micros((i * 7_919 + 311) % 20_000);
            c.poll(clock + send_ahead, &mut out);
            c.unsubscribe(j, false, clock, &mut out);
            let join = c.subscribe(100 + i, me, udp(2000), clock, &mut out);
            assert_eq!(c.fanout.slot_of[&(100 + i)], j as usize);
            out.clear();
            let first = loop {
                clock += Duration::from_micros(100);
                c.poll(clock + send_ahead, &mut out);
                if let Some(t) = out.iter().find(|t| t.dest == me) {
                    break rtp(t);
                }
                out.clear();
            };
            if (first.0, first.1) != (join.seq, join.rtptime) {
                misses.push((i, j, join.seq, first.0));
            }
            out.clear();
            c.unsubscribe(100 + i, false, clock, &mut out);
            c.subscribe(j, udp(1000 + j as u16), udp(2000), clock, &mut out);
            out.clear();
        }
        assert!(
            misses.is_empty(),
            "(join, slot, RTP-Info seq, first seq received): {misses:?}"
        );
    }
}
