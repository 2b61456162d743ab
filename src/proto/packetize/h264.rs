//! H.264 video, RFC 6184 with packetization-mode=1 (§6.3, non-interleaved):
//! a NAL unit that fits the payload goes alone (§5.6), a larger one is cut
//! into FU-A fragments (§5.8), and every IDR access unit is preceded by its
//! SPS and PPS in one STAP-A (§5.7.1), unless the stream already carries
//! them in-band (or, when they do not fit one packet, each alone or in FU-A
//! fragments). All packets of an access unit carry its presentation time;
//! the marker bit is set on the last one (§5.1).
//!
//! Access units are stored as length-prefixed NAL units (ISO/IEC 14496-15
//! `avcC` framing); Annex B input is converted when it is demuxed. The
//! cursor's in-unit state is 0 before the parameter sets, [`PREFIX`] plus
//! the index of the next parameter-set packet while they go out, then one
//! more than the byte offset of the next byte to send.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::au::{self, AccessUnits};
use super::{Chunk, Cursor, Packetizer, Track};
use crate::proto::sdp::{rtpmap, TrackDescription};

/// The RTP clock of H.264 (RFC 6184 §8.2.1).
pub const CLOCK: u32 = 90_000;

/// The dynamic payload type H.264 tracks are described with.
pub const PAYLOAD_TYPE: u8 = 96;

/// NAL unit types used here (H.264 Table 7-1).
pub mod nal {
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const STAP_A: u8 = 24;
    pub const FU_A: u8 = 28;
}

/// The cursor state bit that marks parameter-set packets. Access units of
/// this size or more are not sent (their offsets would collide with it).
const PREFIX: u32 = 1 << 31;

/// Most NAL units read in one access unit. Each packet walks the unit's
/// length prefixes from its start, so this bounds the pacing thread's work
/// on a hostile file (real streams have tens of slices per picture).
const MAX_NALS: usize = 4096;

/// An H.264 track ready to cut.
#[derive(Debug, Clone)]
pub struct H264 {
    units: Arc<AccessUnits>,
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    length_size: usize,
    /// The packets of SPS and PPS sent before each IDR: one STAP-A, or
    /// single NAL units and FU-A fragments when that would not fit.
    parameter_sets: Vec<Bytes>,
    max_payload: usize,
}

impl H264 {
    /// `sps` and `pps` go in-band before every IDR access unit unless
    /// `in_band` says the stream carries them itself. `max_payload` is at
    /// least 3 (an FU-A needs two header bytes and one of data).
    pub fn new(
        units: Arc<AccessUnits>,
        length_size: usize,
        sps: &[Bytes],
        pps: &[Bytes],
        in_band: bool,
        max_payload: usize,
    ) -> Self {
        let max_payload = max_payload.max(3);
        let sets = || sps.iter().chain(pps).filter(|n| !n.is_empty());
        let parameter_sets = if in_band || sets().next().is_none() {
            Vec::new()
        } else {
            let stap = stap_a(sets());
            if stap.len() <= max_payload {
                vec![stap]
            } else {
                sets().flat_map(|n| fragments(n, max_payload)).collect()
            }
        };
        Self {
            units,
            length_size: length_size.clamp(1, 4),
            parameter_sets,
            max_payload,
        }
    }

    pub fn units(&self) -> &AccessUnits {
        &self.units
    }

    pub(super) fn chunk(&self, cursor: Cursor, end: u64) -> Option<Chunk> {
        let mut i = au::index(cursor);
        let mut state = au::state(cursor);
        loop {
            let u = self.units.units.get(i)?;
            if state == 0 && u.dts >= au::signed(end) {
                return None;
            }
            if state == 0 || state & PREFIX != 0 {
                let j = (state & !PREFIX) as usize;
                if let Some(ps) = self.parameter_sets.get(j).filter(|_| u.sync) {
                    let next = if j + 1 < self.parameter_sets.len() {
                        PREFIX | (j + 1) as u32
                    } else {
                        1
                    };
                    return Some(Chunk {
                        payload: ps.clone(),
                        pts: u.pts as u64,
                        next: au::cursor(i, next),
                        marker: false,
                    });
                }
                state = 1;
            }
            let data = self.units.bytes(u);
            let cut = if data.len() < PREFIX as usize - 1 {
                self.cut(&data, state as usize - 1)
            } else {
                None
            };
            match cut {
                Some((payload, next, last)) => {
                    return Some(Chunk {
                        payload,
                        pts: u.pts as u64,
                        next: if last {
                            au::cursor(i + 1, 0)
                        } else {
                            au::cursor(i, next as u32 + 1)
                        },
                        marker: last,
                    });
                }
                // Nothing (left) to send in this unit: an empty unit, or
                // trailing bytes that hold no NAL unit.
                None => {
                    i += 1;
                    state = 0;
                }
            }
        }
    }

    /// The payload starting at byte `at` of a length-prefixed access unit,
    /// the offset after it, and whether that ends the unit's NAL units.
    fn cut(&self, data: &Bytes, at: usize) -> Option<(Bytes, usize, bool)> {
        let (start, stop) =
            length_prefixed(data, self.length_size, 0).find(|&(_, stop)| at < stop)?;
        let nalu = &data[start..stop];
        let take = self.max_payload - 2;
        let (payload, end) = if at <= start && nalu.len() <= self.max_payload {
            (data.slice(start..stop), stop)
        } else if at <= start {
            // The first fragment: the NAL header moves into the FU
            // indicator and header (§5.8).
            let end = (start + 1 + take).min(stop);
            (fu_a(nalu[0], true, end == stop, &data[start + 1..end]), end)
        } else {
            let end = (at + take).min(stop);
            (fu_a(nalu[0], false, end == stop, &data[at..end]), end)
        };
        let last = end == stop
            && length_prefixed(data, self.length_size, stop)
                .next()
                .is_none();
        Some((payload, end, last))
    }
}

/// The NAL units of a length-prefixed access unit (`length_size`-byte
/// prefixes), from `from` (a prefix's position): `(start, stop)` of each
/// non-empty one, clipped to `data`, at most [`MAX_NALS`] prefixes read.
pub fn length_prefixed(
    data: &[u8],
    length_size: usize,
    from: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut p = from;
    std::iter::from_fn(move || {
        if p + length_size > data.len() {
            return None;
        }
        let len = data[p..p + length_size]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let start = p + length_size;
        let stop = start.saturating_add(len).min(data.len());
        p = stop;
        Some((start, stop))
    })
    .take(MAX_NALS)
    .filter(|(start, stop)| stop > start)
}

/// An H.264 track: `H264/90000` with the [`fmtp`] of `sps` and `pps` (the
/// stream's first ones), cut by `packetizer`.
pub fn track(packetizer: H264, sps: &[u8], pps: &[u8]) -> Track {
    Track {
        description: TrackDescription::new(
            "video",
            PAYLOAD_TYPE,
            rtpmap("H264", CLOCK, 1),
            Some(fmtp(sps, pps)),
        ),
        packetizer: Packetizer::H264(packetizer),
    }
}

/// The `a=fmtp` parameters for packetization-mode=1 (§8.1):
/// `profile-level-id` from the SPS's profile, constraint and level bytes,
/// and `sprop-parameter-sets` in base64.
pub fn fmtp(sps: &[u8], pps: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let profile: String = sps
        .get(1..4)
        .unwrap_or(&[0x42, 0xe0, 0x1e])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    format!(
        "packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={},{}",
        STANDARD.encode(sps),
        STANDARD.encode(pps)
    )
}

/// `nalu` as one packet, or in FU-A fragments of at most `max_payload`.
fn fragments(nalu: &Bytes, max_payload: usize) -> Vec<Bytes> {
    if nalu.len() <= max_payload {
        return vec![nalu.clone()];
    }
    let body = &nalu[1..];
    let parts: Vec<&[u8]> = body.chunks(max_payload - 2).collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(k, part)| fu_a(nalu[0], k == 0, k == last, part))
        .collect()
}

/// An FU-A packet of `header`'s NAL unit (§5.8).
fn fu_a(header: u8, start: bool, end: bool, part: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(part.len() + 2);
    b.put_u8((header & 0xE0) | nal::FU_A);
    b.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | (header & 0x1F));
    b.put_slice(part);
    b.freeze()
}

/// A STAP-A of `units` (§5.7.1); its NRI is the highest of theirs.
pub fn stap_a<'a>(units: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let nri = units
        .clone()
        .filter_map(|u| u.first())
        .map(|h| h & 0x60)
        .max()
        .unwrap_or(0x60);
    let mut b = BytesMut::new();
    b.put_u8(nri | nal::STAP_A);
    for u in units {
        b.put_u16(u.len().min(usize::from(u16::MAX)) as u16);
        b.put_slice(&u[..u.len().min(usize::from(u16::MAX))]);
    }
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::au::Unit;

    /// Length-prefixed (4 bytes) access units of the given NAL units.
    fn track(aus: &[(&[&[u8]], bool)]) -> Arc<AccessUnits> {
        let mut data = Vec::new();
        let mut units = Vec::new();
        for (i, (nals, sync)) in aus.iter().enumerate() {
            let offset = data.len() as u32;
            for n in nals.iter() {
                data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                data.extend_from_slice(n);
            }
            units.push(Unit {
                offset,
                size: data.len() as u32 - offset,
                dts: i as i64 * 3000,
                pts: i as i64 * 3000 + 6000,
                sync: *sync,
            });
        }
        Arc::new(AccessUnits {
            data: Bytes::from(data),
            duration: units.len() as u64 * 3000,
            units,
            clock_rate: 90000,
        })
    }

    fn all(p: &H264, end: u64) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut c = 0;
        while let Some(ch) = p.chunk(c, end) {
            c = ch.next;
            out.push(ch);
        }
        out
    }

    /// Reassembles what a receiver would (§5.7, §5.8): NAL units per
    /// timestamp, in order.
    fn depacketize(chunks: &[Chunk]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        let mut fu: Option<Vec<u8>> = None;
        for c in chunks {
            if out.last().map(|(t, _)| *t) != Some(c.pts) {
                out.push((c.pts, Vec::new()));
            }
            let nals = &mut out.last_mut().unwrap().1;
            let p = &c.payload[..];
            match p[0] & 0x1F {
                nal::STAP_A => {
                    let mut r = &p[1..];
                    while r.len() >= 2 {
                        let n = usize::from(u16::from_be_bytes([r[0], r[1]]));
                        nals.push(r[2..2 + n].to_vec());
                        r = &r[2 + n..];
                    }
                }
                nal::FU_A => {
                    if p[1] & 0x80 != 0 {
                        fu = Some(vec![(p[0] & 0xE0) | (p[1] & 0x1F)]);
                    }
                    let f = fu.as_mut().unwrap();
                    f.extend_from_slice(&p[2..]);
                    if p[1] & 0x40 != 0 {
                        nals.push(fu.take().unwrap());
                    }
                }
                _ => nals.push(p.to_vec()),
            }
        }
        out
    }

    #[test]
    fn small_units_alone_large_ones_in_fragments_with_parameter_sets_before_idr() {
        let big: Vec<u8> = std::iter::once(0x65)
            .chain((0..3000).map(|i| i as u8))
            .collect();
        let t = track(&[(&[&[0x09, 0xf0], &big], true), (&[&[0x41, 1, 2, 3]], false)]);
        let sps = Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]);
        let pps = Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]);
        let p = H264::new(
            t,
            4,
            std::slice::from_ref(&sps),
            std::slice::from_ref(&pps),
            false,
            1400,
        );
        let chunks = all(&p, u64::MAX);
        // STAP-A, AUD, 3 fragments of the IDR slice, then the P slice.
        assert_eq!(chunks.len(), 6);
        assert!(chunks.iter().all(|c| c.payload.len() <= 1400));
        assert_eq!(chunks[0].payload[0] & 0x1F, nal::STAP_A);
        assert_eq!(
            chunks.iter().map(|c| c.marker).collect::<Vec<_>>(),
            [false, false, false, false, true, true]
        );
        assert_eq!(
            chunks.iter().map(|c| c.pts).collect::<Vec<_>>(),
            [6000, 6000, 6000, 6000, 6000, 9000]
        );
        let aus = depacketize(&chunks);
        assert_eq!(aus.len(), 2);
        assert_eq!(
            aus[0].1,
            [sps.to_vec(), pps.to_vec(), vec![0x09, 0xf0], big]
        );
        assert_eq!(aus[1].1, [vec![0x41, 1, 2, 3]]);
    }

    #[test]
    fn fmtp_carries_profile_and_parameter_sets() {
        let f = fmtp(&[0x67, 0x64, 0x00, 0x0d, 0xac], &[0x68, 0xeb]);
        assert_eq!(
            f,
            "packetization-mode=1;profile-level-id=64000D;sprop-parameter-sets=Z2QADaw=,aOs="
        );
    }

    #[test]
    fn parameter_sets_too_large_for_one_packet_go_in_fragments() {
        let sps = Bytes::from([0x67].into_iter().chain(0..40u8).collect::<Vec<u8>>());
        let pps = Bytes::from_static(&[0x68, 0xce]);
        let t = track(&[(&[&[0x65, 9]], true)]);
        let p = H264::new(
            t,
            4,
            std::slice::from_ref(&sps),
            std::slice::from_ref(&pps),
            false,
            20,
        );
        let chunks = all(&p, u64::MAX);
        assert!(chunks.iter().all(|c| c.payload.len() <= 20));
        let aus = depacketize(&chunks);
        assert_eq!(aus[0].1, [sps.to_vec(), pps.to_vec(), vec![0x65, 9]]);
    }

    #[test]
    fn padding_after_the_last_nal_unit_still_ends_the_unit_with_a_marker() {
        // A zero-length NAL unit and two stray bytes after the slice.
        let t = Arc::new(AccessUnits {
            data: Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a, 0, 0, 0, 0, 0, 0]),
            units: vec![
                Unit {
                    offset: 0,
                    size: 12,
                    dts: 0,
                    pts: 0,
                    sync: false,
                },
                Unit {
                    offset: 0,
                    size: 6,
                    dts: 3000,
                    pts: 3000,
                    sync: false,
                },
            ],
            clock_rate: 90000,
            duration: 6000,
        });
        let p = H264::new(t, 4, &[], &[], false, 1400);
        let first = p.chunk(0, u64::MAX).unwrap();
        assert!(first.marker);
        assert_eq!(
            first.next,
            au::cursor(1, 0),
            "the next unit waits for its own time"
        );
    }

    #[test]
    fn in_band_parameter_sets_are_not_repeated() {
        let t = track(&[(&[&[0x67, 1], &[0x68, 2], &[0x65, 3]], true)]);
        let p = H264::new(t, 4, &[Bytes::from_static(&[0x67, 1])], &[], true, 1400);
        let aus = depacketize(&all(&p, u64::MAX));
        assert_eq!(aus[0].1, [vec![0x67, 1], vec![0x68, 2], vec![0x65, 3]]);
    }

    #[test]
    fn end_stops_at_an_access_unit_boundary_and_cursors_resume() {
        let t = track(&[
            (&[&[0x65, 0]], true),
            (&[&[0x41, 1]], false),
            (&[&[0x41, 2]], false),
        ]);
        let p = H264::new(t, 4, &[], &[], false, 1400);
        assert_eq!(all(&p, 6000).len(), 2);
        let c = p.chunk(au::cursor(2, 0), u64::MAX).unwrap();
        assert_eq!(&c.payload[..], &[0x41, 2]);
        assert!(p.chunk(c.next, u64::MAX).is_none());
    }

    #[test]
    fn corrupt_lengths_never_read_outside_the_unit() {
        // A length claiming more than the unit holds, then a zero length.
        let t = Arc::new(AccessUnits {
            data: Bytes::from_static(&[0, 0, 0, 200, 0x65, 1, 2, 0, 0, 0, 0]),
            units: vec![Unit {
                offset: 0,
                size: 11,
                dts: 0,
                pts: 0,
                sync: true,
            }],
            clock_rate: 90000,
            duration: 3000,
        });
        let p = H264::new(t, 4, &[], &[], false, 4);
        let chunks = all(&p, u64::MAX);
        assert!(chunks.last().unwrap().marker);
        assert!(chunks.iter().all(|c| c.payload.len() <= 4));
    }
}
