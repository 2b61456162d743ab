//! Cutting framed audio (AAC, MPEG audio) into packets: consecutive frames
//! share a packet while they fit the payload and start within `ptime` of the
//! first (at least one frame), and a frame larger than the payload goes in
//! fragments. What differs between the formats is only the header in front
//! of each packet ([`Layout`]). The cursor's in-unit state is the byte
//! offset of the next fragment.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::au::{self, AccessUnits, Unit};
use super::{aac, Chunk, Cursor};

/// A payload format's packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// RFC 3640 AAC-hbr: AU-headers-length, then a 16-bit AU header per
    /// frame; the marker bit ends each frame.
    Aac,
    /// RFC 2250 §3.5: 16 zero bits and the 16-bit fragment offset; the
    /// marker only starts a talkspurt (set by the pacer).
    Mpa,
}

impl Layout {
    /// Header bytes: fixed, and per frame.
    fn overhead(self) -> (usize, usize) {
        match self {
            Self::Aac => (2, 2),
            Self::Mpa => (4, 0),
        }
    }

    /// The header of a packet with `frames`; `offset` into the first frame
    /// for a fragment.
    fn write_header(self, b: &mut BytesMut, frames: &[Unit], offset: usize) {
        match self {
            Self::Aac => {
                b.put_u16(16 * frames.len() as u16);
                for u in frames {
                    b.put_u16(aac::au_header(u.size as usize));
                }
            }
            Self::Mpa => {
                b.put_u16(0);
                b.put_u16(offset.min(usize::from(u16::MAX)) as u16);
            }
        }
    }

    /// The marker bit of a packet that ends a frame (or not).
    fn marker(self, ends_frame: bool) -> bool {
        self == Self::Aac && ends_frame
    }
}

/// A framed audio track ready to cut.
#[derive(Debug, Clone)]
pub struct Framed {
    units: Arc<AccessUnits>,
    layout: Layout,
    max_payload: usize,
    /// Longest media time the frames of one packet may span, in ticks.
    ptime_ticks: u64,
}

impl Framed {
    /// `max_payload` is raised to leave at least one byte after the header.
    pub fn new(
        units: Arc<AccessUnits>,
        layout: Layout,
        ptime_ticks: u64,
        max_payload: usize,
    ) -> Self {
        let (fixed, per) = layout.overhead();
        Self {
            units,
            layout,
            max_payload: max_payload.max(fixed + per + 1),
            ptime_ticks,
        }
    }

    pub fn units(&self) -> &AccessUnits {
        &self.units
    }

    pub(super) fn chunk(&self, cursor: Cursor, end: u64) -> Option<Chunk> {
        let i = au::index(cursor);
        let first = self.units.units.get(i)?;
        let offset = au::state(cursor) as usize;
        let end = au::signed(end);
        if offset == 0 && first.pts >= end {
            return None;
        }
        let (fixed, per) = self.layout.overhead();
        let frame = self.units.bytes(first);
        if offset > 0 || fixed + per + frame.len() > self.max_payload {
            let take = (self.max_payload - fixed - per).min(frame.len().saturating_sub(offset));
            let stop = offset + take;
            let mut b = BytesMut::with_capacity(fixed + per + take);
            self.layout
                .write_header(&mut b, std::slice::from_ref(first), offset);
            b.put_slice(&frame[offset.min(frame.len())..stop]);
            let last = stop >= frame.len();
            return Some(Chunk {
                payload: b.freeze(),
                pts: first.pts as u64,
                next: if last {
                    au::cursor(i + 1, 0)
                } else {
                    au::cursor(i, stop as u32)
                },
                marker: self.layout.marker(last),
            });
        }
        let count = self
            .units
            .packable(i, (fixed, per), self.max_payload, self.ptime_ticks, end);
        let frames = &self.units.units[i..i + count];
        let mut b = BytesMut::with_capacity(self.max_payload);
        self.layout.write_header(&mut b, frames, 0);
        for u in frames {
            b.put_slice(&self.units.bytes(u));
        }
        Some(Chunk {
            payload: b.freeze(),
            pts: first.pts as u64,
            next: au::cursor(i + count, 0),
            marker: self.layout.marker(true),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Every chunk of `p`, from the start.
    pub(in crate::proto::packetize) fn all(p: &Framed) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut c = 0;
        while let Some(ch) = p.chunk(c, u64::MAX) {
            c = ch.next;
            out.push(ch);
        }
        out
    }
}
