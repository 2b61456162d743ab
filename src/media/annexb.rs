//! H.264 elementary files (`.264`, `.h264`) in Annex B byte-stream format
//! (ITU-T H.264 Annex B): NAL units behind start codes, grouped into access
//! units by the rules of §7.4.1.2.3 (an access unit delimiter, parameter
//! sets or SEI after a picture, or a slice that starts a new picture,
//! `first_mb_in_slice == 0`, begin a new one).
//!
//! The frame rate comes from the SPS's VUI timing (parsed with
//! `h264-reader`; 1 to 300 frames a second), else `--fps`. The file has no timestamps: access units
//! are presented in decode order, one frame period apart, which is right for
//! progressive streams without B-frames (what such files usually hold; a
//! field-coded stream would play at half speed). SPS and PPS are
//! taken out of the access units and sent before every IDR (and in the SDP).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use tracing::{info, warn};

use super::clip::ClipOptions;
use super::MediaError;
use crate::proto::packetize::au::{AccessUnits, Unit};
use crate::proto::packetize::h264::{self, nal, CLOCK};
use crate::proto::packetize::{Track, H264};

/// NAL unit types that only ever start an access unit (§7.4.1.2.3): AUD,
/// SPS, PPS, SEI, and the reserved 14–18.
fn starts_access_unit(t: u8) -> bool {
    matches!(t, 6..=9 | 14..=18)
}

/// The NAL units of an Annex B stream.
pub fn nal_units(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut e = starts.get(k + 1).map_or(data.len(), |n| n - 3);
        // Trailing zeros (a 4-byte start code's first byte, or padding).
        while e > s && data[e - 1] == 0 {
            e -= 1;
        }
        if e > s {
            out.push(s..e);
        }
    }
    out
}

/// Frames per second as (numerator, denominator) from an SPS's VUI timing.
fn sps_frame_rate(sps: &[u8]) -> Option<(u64, u64)> {
    let nal = RefNal::new(sps, &[], true);
    let sps = SeqParameterSet::from_bits(nal.rbsp_bits()).ok()?;
    let t = sps.vui_parameters.as_ref()?.timing_info.as_ref()?;
    // One frame is two ticks of the field clock (§E.2.1).
    let (num, den) = (u64::from(t.time_scale), 2 * u64::from(t.num_units_in_tick));
    (den > 0 && num >= den && num / den <= 300).then_some((num, den))
}

/// Closes the access unit that started at `cur.0` in `out`, if it holds a
/// picture (`cur.1`; `cur.2`: an IDR one).
fn finish(out: &BytesMut, cur: Option<(usize, bool, bool)>, units: &mut Vec<Unit>) {
    if let Some((start, true, idr)) = cur {
        units.push(Unit {
            offset: start as u32,
            size: (out.len() - start) as u32,
            dts: 0,
            pts: 0,
            sync: idr,
        });
    }
}

/// Reads an Annex B file (the whole of it in `data`).
pub fn load(data: &[u8], opts: &ClipOptions) -> Result<Track, MediaError> {
    let mut sps: Option<Bytes> = None;
    let mut pps: Option<Bytes> = None;
    let mut out = BytesMut::with_capacity(data.len() + data.len() / 64);
    let mut units: Vec<Unit> = Vec::new();
    let mut current: Option<(usize, bool, bool)> = None; // start, has picture, IDR
    let mut changed_parameters = false;
    for r in nal_units(data) {
        let n = &data[r];
        let t = n[0] & 0x1F;
        let picture = matches!(t, 1 | 5);
        let new_au = match current {
            Some((_, true, _)) => {
                starts_access_unit(t) || picture && n.get(1).is_some_and(|b| b & 0x80 != 0)
            }
            Some(_) => false,
            None => true,
        };
        if new_au {
            finish(&out, current, &mut units);
            current = Some((out.len(), false, false));
        }
        match t {
            nal::SPS | nal::PPS => {
                let slot = if t == nal::SPS { &mut sps } else { &mut pps };
                match slot {
                    None => *slot = Some(Bytes::copy_from_slice(n)),
                    Some(s) if s[..] != *n => changed_parameters = true,
                    Some(_) => {}
                }
                continue;
            }
            _ => {}
        }
        if let Some(cur) = current.as_mut() {
            cur.1 |= picture;
            cur.2 |= t == nal::IDR;
        }
        if out.len() + 4 + n.len() > u32::MAX as usize {
            return Err(MediaError::TooLarge(data.len() as u64, u64::from(u32::MAX)));
        }
        out.put_u32(n.len() as u32);
        out.put_slice(n);
    }
    finish(&out, current, &mut units);
    let (Some(sps), Some(pps)) = (sps, pps) else {
        return Err(MediaError::Unsupported(
            "H.264 stream without SPS and PPS".into(),
        ));
    };
    if units.is_empty() {
        return Err(MediaError::Unsupported(
            "H.264 stream without pictures".into(),
        ));
    }
    if changed_parameters {
        warn!("the stream changes its SPS or PPS; only the first ones are sent");
    }
    let (num, den) = sps_frame_rate(&sps).unwrap_or((u64::from(opts.fps), 1));
    info!(fps = num as f64 / den as f64, "H.264 elementary stream");
    let tick = |k: u64| {
        let t = u128::from(k) * u128::from(CLOCK) * u128::from(den) / u128::from(num);
        i64::try_from(t).unwrap_or(i64::MAX)
    };
    for (k, u) in units.iter_mut().enumerate() {
        u.dts = tick(k as u64);
        u.pts = u.dts;
    }
    let duration = tick(units.len() as u64) as u64;
    let units = Arc::new(AccessUnits {
        data: out.freeze(),
        units,
        clock_rate: CLOCK,
        duration,
    });
    let packetizer = H264::new(
        units,
        4,
        std::slice::from_ref(&sps),
        std::slice::from_ref(&pps),
        false,
        opts.max_payload,
    );
    Ok(h264::track(packetizer, &sps, &pps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packetize::Packetizer;

    #[test]
    fn access_units_are_grouped_and_parameter_sets_taken_out() {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9];
        let pps: &[u8] = &[0x68, 0xce, 0x3c, 0x80];
        let mut data = Vec::new();
        let mut put = |n: &[u8]| {
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(n);
        };
        put(&[0x09, 0x10]);
        put(sps);
        put(pps);
        put(&[0x65, 0x88, 1]); // IDR, first_mb 0
        put(&[0x65, 0x08, 2]); // second slice of the same picture
        put(&[0x41, 0x9a, 3]); // P picture
        put(&[0x41, 0x9a, 4]); // P picture
        let t = load(&data, &ClipOptions::default()).unwrap();
        let Packetizer::H264(p) = &t.packetizer else {
            panic!()
        };
        let u = &p.units().units;
        assert_eq!(u.len(), 3);
        assert!(u[0].sync && !u[1].sync);
        // 25 fps by default: 3600 ticks a frame.
        assert_eq!(
            (u[1].pts, u[2].dts, p.units().duration),
            (3600, 7200, 10800)
        );
        let first = p.units().bytes(&u[0]);
        assert_eq!(
            &first[..],
            [
                &[0, 0, 0, 2, 0x09, 0x10][..],
                &[0, 0, 0, 3, 0x65, 0x88, 1],
                &[0, 0, 0, 3, 0x65, 0x08, 2]
            ]
            .concat()
        );
        assert!(t
            .description
            .fmtp
            .unwrap()
            .contains("profile-level-id=42C01E"));
    }

    #[test]
    fn streams_without_parameter_sets_or_pictures_are_refused() {
        let opts = ClipOptions::default();
        assert!(load(&[0, 0, 1, 0x41, 0x9a], &opts).is_err());
        assert!(load(&[0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce], &opts).is_err());
        assert!(load(b"", &opts).is_err());
    }
}
