//! What a relay needs to know about H.264 (RFC 6184) and H.265 (RFC 7798)
//! RTP payloads without decoding them: where a keyframe starts (so a late
//! joiner starts decodable), which parameter sets go by (so an SDP that
//! lacks them can be completed), and how to cut a packet larger than our
//! MTU into fragmentation units (RFC 6184 §5.8 FU-A, RFC 7798 §4.4.3 FU)
//! instead of dropping it.
//!
//! Packetization: a payload is one NAL unit, an aggregate (STAP-A, type
//! 24; AP, type 48) of length-prefixed NAL units, or a fragment (FU-A, 28;
//! FU, 49) whose FU header carries the start and end bits and the
//! fragmented unit's type.

use bytes::{BufMut, Bytes, BytesMut};

/// A video payload format the relay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

/// A parameter set's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Vps,
    Sps,
    Pps,
}

/// One NAL unit (or the start of one, in a fragment) in a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unit<'a> {
    kind: u8,
    /// The whole unit, header included; `None` for a fragment.
    whole: Option<&'a [u8]>,
    /// The first packet of the unit (a whole unit, or a starting fragment).
    starts: bool,
}

impl VideoCodec {
    /// Bytes of a NAL unit header.
    fn header_len(self) -> usize {
        match self {
            Self::H264 => 1,
            Self::H265 => 2,
        }
    }

    fn nal_type(self, header: u8) -> u8 {
        match self {
            Self::H264 => header & 0x1F,
            Self::H265 => (header >> 1) & 0x3F,
        }
    }

    fn aggregate(self) -> u8 {
        match self {
            Self::H264 => 24,
            Self::H265 => 48,
        }
    }

    fn fragment(self) -> u8 {
        match self {
            Self::H264 => 28,
            Self::H265 => 49,
        }
    }

    /// An IDR (H.264 type 5) or IRAP picture (H.265 types 16 to 21).
    fn is_random_access(self, kind: u8) -> bool {
        match self {
            Self::H264 => kind == 5,
            Self::H265 => (16..=21).contains(&kind),
        }
    }

    fn param_kind(self, kind: u8) -> Option<ParamKind> {
        match (self, kind) {
            (Self::H264, 7) | (Self::H265, 33) => Some(ParamKind::Sps),
            (Self::H264, 8) | (Self::H265, 34) => Some(ParamKind::Pps),
            (Self::H265, 32) => Some(ParamKind::Vps),
            _ => None,
        }
    }

    /// The NAL units a payload carries or starts. Malformed aggregates end
    /// the list early; nothing panics.
    fn units(self, payload: &[u8]) -> Vec<Unit<'_>> {
        let hl = self.header_len();
        if payload.len() < hl {
            return Vec::new();
        }
        let kind = self.nal_type(payload[0]);
        if kind == self.aggregate() {
            let mut units = Vec::new();
            let mut rest = &payload[hl..];
            while rest.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(unit) = rest.get(2..2 + len) else {
                    break;
                };
                if unit.len() >= hl {
                    units.push(Unit {
                        kind: self.nal_type(unit[0]),
                        whole: Some(unit),
                        starts: true,
                    });
                }
                rest = &rest[2 + len..];
            }
            units
        } else if kind == self.fragment() {
            match payload.get(hl) {
                Some(&fu) => vec![Unit {
                    kind: fu & self.fu_type_mask(),
                    whole: None,
                    starts: fu & 0x80 != 0,
                }],
                None => Vec::new(),
            }
        } else {
            vec![Unit {
                kind,
                whole: Some(payload),
                starts: true,
            }]
        }
    }

    /// Whether a listener may start with this packet: it begins a
    /// random-access picture, or a parameter set (which, in a stream that
    /// sends them in-band, comes just before one).
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        self.units(payload).first().is_some_and(|u| {
            u.starts && (self.is_random_access(u.kind) || self.param_kind(u.kind).is_some())
        })
    }

    /// Whether this packet carries any part of a random-access picture.
    pub fn has_keyframe(self, payload: &[u8]) -> bool {
        self.units(payload)
            .iter()
            .any(|u| self.is_random_access(u.kind))
    }

    /// The whole parameter sets this packet carries (fragmented ones are
    /// not reassembled: encoders send them whole, they are small).
    pub fn parameter_sets(self, payload: &[u8]) -> Vec<(ParamKind, &[u8])> {
        self.units(payload)
            .into_iter()
            .filter_map(|u| Some((self.param_kind(u.kind)?, u.whole?)))
            .collect()
    }

    /// `payload` as packets of at most `max` bytes (at least 4): itself when
    /// it fits; a single NAL unit or an aggregate too large is cut into
    /// fragments (an aggregate's units each on their own first); a fragment
    /// too large into smaller fragments that keep its start and end bits.
    /// Only the last packet may carry the RTP marker.
    pub fn refragment(self, payload: &Bytes, max: usize) -> Vec<Bytes> {
        let max = max.max(self.header_len() + 2);
        if payload.len() <= max {
            return vec![payload.clone()];
        }
        let hl = self.header_len();
        let kind = self.nal_type(payload[0]);
        if kind == self.aggregate() {
            return self
                .units(payload)
                .into_iter()
                .filter_map(|u| u.whole)
                .flat_map(|u| self.refragment(&payload.slice_ref(u), max))
                .collect();
        }
        if kind == self.fragment() {
            let Some(&fu) = payload.get(hl) else {
                return Vec::new();
            };
            let indicator = &payload[..hl];
            let body = &payload[hl + 1..];
            let parts: Vec<&[u8]> = body.chunks(max - hl - 1).collect();
            let last = parts.len().saturating_sub(1);
            return parts
                .iter()
                .enumerate()
                .map(|(k, part)| {
                    let start = k == 0 && fu & 0x80 != 0;
                    let end = k == last && fu & 0x40 != 0;
                    fragment_packet(indicator, fu & self.fu_type_mask(), start, end, part)
                })
                .collect();
        }
        // A single NAL unit: its header moves into the FU headers.
        let indicator = self.fu_indicator(&payload[..hl]);
        let body = &payload[hl..];
        let parts: Vec<&[u8]> = body.chunks(max - hl - 1).collect();
        let last = parts.len() - 1;
        parts
            .iter()
            .enumerate()
            .map(|(k, part)| fragment_packet(&indicator, kind, k == 0, k == last, part))
            .collect()
    }

    fn fu_type_mask(self) -> u8 {
        match self {
            Self::H264 => 0x1F,
            Self::H265 => 0x3F,
        }
    }

    /// The FU indicator (H.264: F and NRI of the unit, type 28) or payload
    /// header (H.265: the unit's header with type 49).
    fn fu_indicator(self, header: &[u8]) -> Vec<u8> {
        match self {
            Self::H264 => vec![(header[0] & 0xE0) | 28],
            Self::H265 => vec![(header[0] & 0x81) | (49 << 1), header[1]],
        }
    }
}

fn fragment_packet(indicator: &[u8], kind: u8, start: bool, end: bool, part: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(indicator.len() + 1 + part.len());
    b.put_slice(indicator);
    b.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | kind);
    b.put_slice(part);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoCodec::{H264, H265};

    /// Reassembles H.264 or H.265 packets into NAL units (a depacketizer
    /// written apart from the code under test).
    fn reassemble(codec: VideoCodec, packets: &[Bytes]) -> Vec<Vec<u8>> {
        let hl = codec.header_len();
        let mut out = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for p in packets {
            let kind = codec.nal_type(p[0]);
            if kind == codec.fragment() {
                let fu = p[hl];
                if fu & 0x80 != 0 {
                    let mut h = p[..hl].to_vec();
                    match codec {
                        H264 => h[0] = (h[0] & 0xE0) | (fu & 0x1F),
                        H265 => h[0] = (h[0] & 0x81) | ((fu & 0x3F) << 1),
                    }
                    cur = Some(h);
                }
                if let Some(c) = cur.as_mut() {
                    c.extend_from_slice(&p[hl + 1..]);
                }
                if fu & 0x40 != 0 {
                    out.extend(cur.take());
                }
            } else if kind == codec.aggregate() {
                out.extend(
                    codec
                        .units(p)
                        .iter()
                        .filter_map(|u| u.whole.map(<[u8]>::to_vec)),
                );
            } else {
                out.push(p.to_vec());
            }
        }
        out
    }

    fn h264_nal(kind: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0x60 | kind];
        v.extend((0..len - 1).map(|i| (i * 7) as u8));
        v
    }

    fn h265_nal(kind: u8, len: usize) -> Vec<u8> {
        let mut v = vec![kind << 1, 1];
        v.extend((0..len - 2).map(|i| (i * 5) as u8));
        v
    }

    fn stap(codec: VideoCodec, units: &[&[u8]]) -> Bytes {
        let mut b = match codec {
            H264 => vec![0x60 | 24],
            H265 => vec![48 << 1, 1],
        };
        for u in units {
            b.extend_from_slice(&(u.len() as u16).to_be_bytes());
            b.extend_from_slice(u);
        }
        Bytes::from(b)
    }

    #[test]
    fn keyframes_and_parameter_sets_in_every_packetization() {
        let sps = h264_nal(7, 12);
        let pps = h264_nal(8, 4);
        let idr = h264_nal(5, 3000);
        let p_slice = h264_nal(1, 500);
        let agg = stap(H264, &[&sps, &pps]);
        assert!(H264.starts_keyframe(&agg));
        assert_eq!(
            H264.parameter_sets(&agg),
            vec![(ParamKind::Sps, &sps[..]), (ParamKind::Pps, &pps[..])]
        );
        let frags = H264.refragment(&Bytes::from(idr.clone()), 1400);
        assert_eq!(frags.len(), 3);
        assert!(H264.starts_keyframe(&frags[0]));
        assert!(!H264.starts_keyframe(&frags[1]) && H264.has_keyframe(&frags[1]));
        assert!(!H264.starts_keyframe(&p_slice));
        assert!(H264.starts_keyframe(&idr));
        // H.265: VPS/SPS/PPS aggregated, then an IDR_W_RADL (19) in FUs.
        let (vps, sps5, pps5) = (h265_nal(32, 20), h265_nal(33, 40), h265_nal(34, 8));
        let agg5 = stap(H265, &[&vps, &sps5, &pps5]);
        assert!(H265.starts_keyframe(&agg5));
        let kinds: Vec<ParamKind> = H265.parameter_sets(&agg5).iter().map(|p| p.0).collect();
        assert_eq!(kinds, [ParamKind::Vps, ParamKind::Sps, ParamKind::Pps]);
        let irap = h265_nal(19, 4000);
        let frags5 = H265.refragment(&Bytes::from(irap.clone()), 1200);
        assert!(H265.starts_keyframe(&frags5[0]));
        assert!(!H265.starts_keyframe(&h265_nal(1, 100)));
        assert_eq!(reassemble(H265, &frags5), vec![irap]);
    }

    #[test]
    fn refragmenting_keeps_every_byte_and_the_size_limit() {
        for codec in [H264, H265] {
            let nal = |k: u8, n: usize| match codec {
                H264 => h264_nal(k, n),
                H265 => h265_nal(k, n),
            };
            let big = nal(1, 5000);
            let small = nal(1, 300);
            for max in [64usize, 500, 1400, 4999, 6000] {
                // A single unit, an aggregate of two, and fragments of an
                // upstream with a bigger MTU.
                let single = codec.refragment(&Bytes::from(big.clone()), max);
                let agg = codec.refragment(&stap(codec, &[&small, &big]), max);
                let upstream = codec.refragment(&Bytes::from(big.clone()), 3000);
                let refrag: Vec<Bytes> = upstream
                    .iter()
                    .flat_map(|p| codec.refragment(p, max))
                    .collect();
                for (what, packets, want) in [
                    ("single", &single, vec![big.clone()]),
                    ("aggregate", &agg, vec![small.clone(), big.clone()]),
                    ("fragments", &refrag, vec![big.clone()]),
                ] {
                    assert!(
                        packets.iter().all(|p| p.len() <= max.max(5)),
                        "{codec:?} {what} max {max}"
                    );
                    assert_eq!(
                        reassemble(codec, packets),
                        want,
                        "{codec:?} {what} max {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn malformed_payloads_are_harmless() {
        for codec in [H264, H265] {
            for p in [
                &[][..],
                &[24][..],
                &[24, 0, 9, 1][..],
                &[28][..],
                &[98, 1][..],
                &[48 << 1][..],
            ] {
                let _ = codec.starts_keyframe(p);
                let _ = codec.parameter_sets(p);
                let _ = codec.refragment(&Bytes::copy_from_slice(p), 4);
            }
        }
    }
}
