//! AAC audio, RFC 3640 `mpeg4-generic` in AAC-hbr mode (§3.3.6): each
//! packet starts with the AU-headers-length (in bits) and one 16-bit AU
//! header per access unit (13-bit size, 3-bit index or index delta, both 0
//! here because units go in order), then the raw AAC frames.
//!
//! Consecutive frames share a packet while they fit the payload and the
//! packet stays within `ptime` (at least one frame). A frame larger than the
//! payload is fragmented (§3.2.3): every fragment repeats the AU header with
//! the whole frame's size, and only the last fragment has the marker bit.
//! The cursor's in-unit state is the byte offset of the next fragment.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::au::{self, AccessUnits};
use super::{Chunk, Cursor};

/// Largest frame an AU header's 13-bit size can describe.
pub const MAX_FRAME: u32 = (1 << 13) - 1;

/// An AAC track ready to cut.
#[derive(Debug, Clone)]
pub struct Aac {
    units: Arc<AccessUnits>,
    max_payload: usize,
    /// Longest media time one packet may span, in ticks.
    ptime_ticks: u64,
}

impl Aac {
    /// Frames larger than [`MAX_FRAME`] cannot be described and must be
    /// left out by the demuxer. `max_payload` is at least 5.
    pub fn new(units: Arc<AccessUnits>, ptime_ticks: u64, max_payload: usize) -> Self {
        Self {
            units,
            max_payload: max_payload.max(5),
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
        let frame = self.units.bytes(first);
        if offset > 0 || 4 + frame.len() > self.max_payload {
            // A fragment of one large frame.
            let take = (self.max_payload - 4).min(frame.len().saturating_sub(offset));
            let stop = offset + take;
            let mut b = BytesMut::with_capacity(4 + take);
            b.put_u16(16);
            b.put_u16(au_header(frame.len()));
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
                marker: last,
            });
        }
        // Whole frames: as many as fit, within ptime.
        let mut count = 1;
        let mut bytes = 2 + 2 + frame.len();
        for u in &self.units.units[i + 1..] {
            let fits = bytes + 2 + u.size as usize <= self.max_payload;
            let within = u.pts.saturating_sub(first.pts) < au::signed(self.ptime_ticks);
            if !fits || !within || u.pts >= end {
                break;
            }
            bytes += 2 + u.size as usize;
            count += 1;
        }
        let group = &self.units.units[i..i + count];
        let mut b = BytesMut::with_capacity(bytes);
        b.put_u16(16 * count as u16);
        for u in group {
            b.put_u16(au_header(u.size as usize));
        }
        for u in group {
            b.put_slice(&self.units.bytes(u));
        }
        Some(Chunk {
            payload: b.freeze(),
            pts: first.pts as u64,
            next: au::cursor(i + count, 0),
            marker: true,
        })
    }
}

/// An AU header: 13 bits of size, 3 bits of index (delta) 0.
fn au_header(size: usize) -> u16 {
    (size.min(MAX_FRAME as usize) as u16) << 3
}

/// The `a=fmtp` parameters for an AAC track whose AudioSpecificConfig is
/// `config` (RFC 3640 §4.1).
pub fn fmtp(config: &[u8]) -> String {
    let hex: String = config.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;\
         indexdeltalength=3;config={hex}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::au::tests::units;

    fn all(p: &Aac) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut c = 0;
        while let Some(ch) = p.chunk(c, u64::MAX) {
            c = ch.next;
            out.push(ch);
        }
        out
    }

    /// The frames a receiver reassembles (§3.2.3).
    fn frames(chunks: &[Chunk]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        for c in chunks {
            let p = &c.payload[..];
            let n = usize::from(u16::from_be_bytes([p[0], p[1]])) / 16;
            let sizes: Vec<usize> = (0..n)
                .map(|k| usize::from(u16::from_be_bytes([p[2 + 2 * k], p[3 + 2 * k]]) >> 3))
                .collect();
            let mut data = &p[2 + 2 * n..];
            if n == 1 && data.len() < sizes[0] || !partial.is_empty() {
                partial.extend_from_slice(data);
                if c.marker {
                    assert_eq!(partial.len(), sizes[0]);
                    out.push(std::mem::take(&mut partial));
                }
                continue;
            }
            for s in sizes {
                out.push(data[..s].to_vec());
                data = &data[s..];
            }
            assert!(c.marker);
        }
        out
    }

    #[test]
    fn frames_share_packets_within_ptime_and_payload() {
        // 1024-sample frames at 48 kHz (21.3 ms); ptime 50 ms: 3 a packet.
        let a = Arc::new(units(10, 200, 1024, 1, 48000));
        let p = Aac::new(a.clone(), 2400, 1400);
        let chunks = all(&p);
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].payload.len(), 2 + 3 * 2 + 3 * 200);
        assert_eq!(chunks[1].pts, 3 * 1024);
        let want: Vec<Vec<u8>> = a.units.iter().map(|u| a.bytes(u).to_vec()).collect();
        assert_eq!(frames(&chunks), want);
        // A small payload allows one frame a packet.
        assert_eq!(all(&Aac::new(a, 2400, 300)).len(), 10);
    }

    #[test]
    fn a_frame_larger_than_the_payload_is_fragmented() {
        let a = Arc::new(units(2, 1000, 1024, 1, 48000));
        let p = Aac::new(a.clone(), 1024, 404);
        let chunks = all(&p);
        // 1000 bytes in 400-byte pieces: 3 fragments per frame.
        assert_eq!(chunks.len(), 6);
        assert_eq!(
            chunks.iter().map(|c| c.marker).collect::<Vec<_>>(),
            [false, false, true, false, false, true]
        );
        assert!(chunks.iter().all(|c| c.payload.len() <= 404));
        let want: Vec<Vec<u8>> = a.units.iter().map(|u| a.bytes(u).to_vec()).collect();
        assert_eq!(frames(&chunks), want);
    }

    #[test]
    fn fmtp_names_the_config() {
        assert!(fmtp(&[0x12, 0x10]).ends_with("config=1210"));
    }
}
