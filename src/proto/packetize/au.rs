//! Access units of one demuxed track (ISO/IEC 14496-12 §8.6 sample tables,
//! already resolved): where each one's bytes are, when it is decoded and
//! presented, and whether it is a random access point. A demuxer builds
//! this once per file; every session's packetizer shares it.
//!
//! A [`Cursor`] into access units is `index << 32 | state`, where the low
//! half is the packetizer's progress inside the unit (0 = not started).

use bytes::Bytes;

use super::Cursor;

/// One access unit (a video frame, an AAC frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Byte range in [`AccessUnits::data`].
    pub offset: u32,
    pub size: u32,
    /// Decode time, in clock ticks from the start of the presentation;
    /// negative for units an edit list places before the start (AAC
    /// priming), which are still sent so that decoders can prime.
    pub dts: i64,
    /// Presentation time, in clock ticks (negative like `dts`).
    pub pts: i64,
    /// A random access point (an IDR picture; every AAC frame).
    pub sync: bool,
}

/// A track's access units in decode order, and the bytes they point into.
#[derive(Debug, Clone)]
pub struct AccessUnits {
    pub data: Bytes,
    pub units: Vec<Unit>,
    /// RTP clock rate the times are in.
    pub clock_rate: u32,
    /// Presentation length in ticks.
    pub duration: u64,
}

/// The unit index of a cursor.
pub fn index(cursor: Cursor) -> usize {
    (cursor >> 32) as usize
}

/// The in-unit state of a cursor.
pub fn state(cursor: Cursor) -> u32 {
    cursor as u32
}

/// The cursor for `index` with in-unit `state`.
pub fn cursor(index: usize, state: u32) -> Cursor {
    ((index as u64) << 32) | u64::from(state)
}

impl AccessUnits {
    /// The bytes of unit `u` (empty if the table points outside `data`,
    /// which a demuxer must not build).
    pub fn bytes(&self, u: &Unit) -> Bytes {
        let start = u.offset as usize;
        let end = start.saturating_add(u.size as usize);
        if end > self.data.len() {
            return Bytes::new();
        }
        self.data.slice(start..end)
    }

    pub fn unit(&self, cursor: Cursor) -> Option<&Unit> {
        self.units.get(index(cursor))
    }

    /// Presentation time at `cursor` (0 for units before the start); the
    /// duration past the end.
    pub fn pts(&self, cursor: Cursor) -> u64 {
        self.unit(cursor)
            .map_or(self.duration, |u| u.pts.max(0) as u64)
    }

    /// Decode time at `cursor` (0 for units before the start); the duration
    /// past the end.
    pub fn dts(&self, cursor: Cursor) -> u64 {
        self.unit(cursor)
            .map_or(self.duration, |u| u.dts.max(0) as u64)
    }

    /// The last random access point presented at or before `ticks` (the
    /// first one if none is).
    pub fn keyframe_at_or_before(&self, ticks: u64) -> Cursor {
        let best = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| u.sync && u.pts <= signed(ticks))
            .max_by_key(|(_, u)| u.pts)
            .map(|(i, _)| i);
        let first = self.units.iter().position(|u| u.sync).unwrap_or(0);
        cursor(best.unwrap_or(first), 0)
    }

    /// The first unit (in decode order) presented at or after `ticks`
    /// (negative: before the start, for pre-roll); past the end if there is
    /// none.
    pub fn first_at_or_after(&self, ticks: i64) -> Cursor {
        let i = self
            .units
            .iter()
            .position(|u| u.pts >= ticks)
            .unwrap_or(self.units.len());
        cursor(i, 0)
    }

    /// The RTP time offset (ticks, two's complement when negative) of what
    /// starts at `cursor`; the duration past the end.
    pub fn stamp(&self, cursor: Cursor) -> u64 {
        self.unit(cursor).map_or(self.duration, |u| u.pts as u64)
    }

    /// Whether `cursor` is past the last unit.
    pub fn is_past_end(&self, cursor: Cursor) -> bool {
        index(cursor) >= self.units.len()
    }
}

impl AccessUnits {
    /// How many whole units from index `i` go in one packet: at least one,
    /// and more while the payload (`fixed` bytes of header, `per_unit` more
    /// for each unit, and the units) fits `max_payload`, the units start
    /// within `ptime` ticks of the first, and before `end`; at most
    /// [`MAX_PACKED`].
    pub fn packable(
        &self,
        i: usize,
        (fixed, per_unit): (usize, usize),
        max_payload: usize,
        ptime: u64,
        end: i64,
    ) -> usize {
        let Some(first) = self.units.get(i) else {
            return 0;
        };
        let mut bytes = fixed + per_unit + first.size as usize;
        let mut count = 1;
        for u in self.units[i + 1..].iter().take(MAX_PACKED - 1) {
            bytes += per_unit + u.size as usize;
            let within = u.pts.saturating_sub(first.pts) < signed(ptime);
            if bytes > max_payload || !within || u.pts >= end {
                break;
            }
            count += 1;
        }
        count
    }
}

/// Most units in one packet (RFC 3640's AU-headers-length is a 16-bit count
/// of bits, 16 per AU header).
pub const MAX_PACKED: usize = 1024;

/// `ticks` as a signed time (saturating).
pub fn signed(ticks: u64) -> i64 {
    i64::try_from(ticks).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` units of `size` bytes each (byte value = unit index), `step`
    /// ticks apart, a keyframe every `gop` units.
    pub(crate) fn units(n: usize, size: u32, step: u64, gop: usize, rate: u32) -> AccessUnits {
        let data: Vec<u8> = (0..n)
            .flat_map(|i| std::iter::repeat_n(i as u8, size as usize))
            .collect();
        AccessUnits {
            data: Bytes::from(data),
            units: (0..n)
                .map(|i| Unit {
                    offset: i as u32 * size,
                    size,
                    dts: (i as u64 * step) as i64,
                    pts: (i as u64 * step) as i64,
                    sync: i % gop == 0,
                })
                .collect(),
            clock_rate: rate,
            duration: n as u64 * step,
        }
    }

    #[test]
    fn seeking_finds_keyframes_and_frames() {
        let a = units(250, 4, 3600, 25, 90000);
        // A keyframe every second (90000 ticks): 5.5 s starts at 5 s.
        assert_eq!(a.keyframe_at_or_before(5 * 90000 + 45000), cursor(125, 0));
        assert_eq!(a.keyframe_at_or_before(5 * 90000), cursor(125, 0));
        assert_eq!(a.keyframe_at_or_before(0), cursor(0, 0));
        assert_eq!(a.first_at_or_after(3601), cursor(2, 0));
        assert_eq!(a.first_at_or_after(3600), cursor(1, 0));
        assert_eq!(a.first_at_or_after(-5), cursor(0, 0));
        assert_eq!(a.first_at_or_after(i64::MAX), cursor(250, 0));
        assert!(a.is_past_end(cursor(250, 0)) && !a.is_past_end(cursor(249, 7)));
        assert_eq!(a.pts(cursor(250, 0)), a.duration);
        assert_eq!(a.dts(cursor(3, 77)), 3 * 3600);
    }

    #[test]
    fn a_table_pointing_outside_the_data_yields_nothing() {
        let a = units(2, 4, 10, 1, 1000);
        let bad = Unit {
            offset: 6,
            size: 4,
            ..a.units[0]
        };
        assert!(a.bytes(&bad).is_empty());
        assert_eq!(&a.bytes(&a.units[1])[..], &[1, 1, 1, 1]);
    }
}
