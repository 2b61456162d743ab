//! MP4/MOV clips (ISO/IEC 14496-12): the first H.264 video track
//! (`avc1`/`avc3`, ISO/IEC 14496-15) and the first AAC audio track (`mp4a`,
//! ISO/IEC 14496-3), demuxed with Mozilla's `mp4parse` (built for hostile
//! files: checked arithmetic, fallible allocation). Other tracks are skipped
//! with a log line.
//!
//! The file is read once into memory; the sample tables are resolved into
//! one [`AccessUnits`] per track (decode and presentation times in the RTP
//! clock, the start of the first edit of `elst` applied to both; its length
//! is not, so a trimmed tail still plays), shared by every session.
//! Units that an edit moves before zero keep their negative times: they are
//! sent (decoders need AAC's priming frame) but never seeked to.

use std::sync::Arc;

use bytes::Bytes;
use mp4parse::unstable::{create_sample_table, CheckedInteger};
use mp4parse::{
    AudioCodecSpecific, CodecType, MediaContext, SampleEntry, Track, VideoCodecSpecific,
};
use tracing::{info, warn};

use super::clip::{self, ClipOptions};
use super::MediaError;
use crate::proto::packetize::au::{AccessUnits, Unit};
use crate::proto::packetize::{self, aac, h264, H264};

/// The `avcC` box contents (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes in each NAL unit's length prefix.
    pub length_size: usize,
    pub sps: Vec<Bytes>,
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    pub fn parse(b: &[u8]) -> Result<Self, MediaError> {
        let bad = || MediaError::Unsupported("malformed avcC".into());
        if b.len() < 7 || b[0] != 1 {
            return Err(bad());
        }
        let length_size = usize::from(b[4] & 3) + 1;
        if length_size == 3 {
            return Err(bad());
        }
        let mut r = &b[5..];
        let mut list = |count_mask: u8| -> Result<Vec<Bytes>, MediaError> {
            let (&n, rest) = r.split_first().ok_or_else(bad)?;
            r = rest;
            let mut out = Vec::new();
            for _ in 0..(n & count_mask) {
                let [hi, lo, rest @ ..] = r else {
                    return Err(bad());
                };
                let len = usize::from(u16::from_be_bytes([*hi, *lo]));
                if rest.len() < len || len == 0 {
                    return Err(bad());
                }
                out.push(Bytes::copy_from_slice(&rest[..len]));
                r = &rest[len..];
            }
            Ok(out)
        };
        let sps = list(0x1F)?;
        let pps = list(0xFF)?;
        Ok(Self {
            length_size,
            sps,
            pps,
        })
    }
}

/// A parsed clip: its duration (seconds) and the tracks it serves.
pub struct Mp4Clip {
    pub duration: f64,
    pub tracks: Vec<packetize::Track>,
}

/// Demuxes `data`, a whole MP4 file.
pub fn load(data: Bytes, opts: &ClipOptions) -> Result<Mp4Clip, MediaError> {
    if data.len() > u32::MAX as usize {
        return Err(MediaError::TooLarge(data.len() as u64, u64::from(u32::MAX)));
    }
    let ctx = mp4parse::read_mp4(&mut std::io::Cursor::new(&data[..]))
        .map_err(|e| MediaError::Unsupported(format!("mp4: {e:?}")))?;
    let mut video = None;
    let mut audio = None;
    for track in ctx.tracks.iter() {
        let entry = track.stsd.as_ref().and_then(|s| s.descriptions.first());
        match entry {
            Some(SampleEntry::Video(v)) if v.codec_type == CodecType::H264 && video.is_none() => {
                let VideoCodecSpecific::AVCConfig(avcc) = &v.codec_specific else {
                    warn!(track = track.id, "skipping an H.264 track without avcC");
                    continue;
                };
                match video_track(&ctx, track, &data, avcc, opts) {
                    Ok(t) => video = Some(t),
                    Err(e) => warn!(track = track.id, error = %e, "skipping video track"),
                }
            }
            Some(SampleEntry::Audio(a)) if a.codec_type == CodecType::AAC && audio.is_none() => {
                let AudioCodecSpecific::ES_Descriptor(es) = &a.codec_specific else {
                    warn!(track = track.id, "skipping an AAC track without esds");
                    continue;
                };
                let rate = es
                    .audio_sample_rate
                    .unwrap_or(a.samplerate as u32)
                    .clamp(1, 192_000);
                let channels = es.audio_channel_count.map_or(a.channelcount, u32::from);
                match audio_track(
                    &ctx,
                    track,
                    &data,
                    &es.decoder_specific_data,
                    rate,
                    channels,
                    opts,
                ) {
                    Ok(t) => audio = Some(t),
                    Err(e) => warn!(track = track.id, error = %e, "skipping audio track"),
                }
            }
            _ => warn!(
                track = track.id,
                kind = ?track.track_type,
                "skipping a track that is not the first H.264 or AAC one"
            ),
        }
    }
    let tracks: Vec<packetize::Track> = video.into_iter().chain(audio).collect();
    if tracks.is_empty() {
        return Err(MediaError::Unsupported(
            "mp4: no H.264 or AAC track".to_owned(),
        ));
    }
    let tracks: Vec<packetize::Track> = tracks
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            t.description.control = format!("trackID={i}");
            t
        })
        .collect();
    Ok(Mp4Clip {
        duration: clip::duration(&tracks),
        tracks,
    })
}

fn video_track(
    ctx: &MediaContext,
    track: &Track,
    data: &Bytes,
    avcc: &[u8],
    opts: &ClipOptions,
) -> Result<packetize::Track, MediaError> {
    let cfg = AvcConfig::parse(avcc)?;
    let units = Arc::new(access_units(ctx, track, data, h264::CLOCK)?);
    let (Some(sps), Some(pps)) = (cfg.sps.first(), cfg.pps.first()) else {
        return Err(MediaError::Unsupported("avcC without SPS or PPS".into()));
    };
    let in_band = carries_parameter_sets(&units, cfg.length_size);
    let packetizer = H264::new(
        units,
        cfg.length_size,
        &cfg.sps,
        &cfg.pps,
        in_band,
        opts.max_payload,
    );
    Ok(h264::track(packetizer, sps, pps))
}

fn audio_track(
    ctx: &MediaContext,
    track: &Track,
    data: &Bytes,
    config: &[u8],
    rate: u32,
    channels: u32,
    opts: &ClipOptions,
) -> Result<packetize::Track, MediaError> {
    if config.is_empty() {
        return Err(MediaError::Unsupported(
            "AAC without AudioSpecificConfig".into(),
        ));
    }
    let mut units = access_units(ctx, track, data, rate)?;
    let before = units.units.len();
    units.units.retain(|u| u.size <= aac::MAX_FRAME);
    if units.units.len() < before {
        info!(
            dropped = before - units.units.len(),
            "AAC frames too large for an AU header"
        );
    }
    Ok(aac::track(
        Arc::new(units),
        config,
        channels,
        opts.ptime,
        opts.max_payload,
    ))
}

/// The track's samples with times in `clock` ticks, the first edit applied.
fn access_units(
    ctx: &MediaContext,
    track: &Track,
    data: &Bytes,
    clock: u32,
) -> Result<AccessUnits, MediaError> {
    let bad = |what: &str| MediaError::Unsupported(format!("mp4 track {}: {what}", track.id));
    let timescale = track
        .timescale
        .map(|t| t.0)
        .filter(|t| *t > 0)
        .ok_or_else(|| bad("no timescale"))?;
    // The first edit: an empty lead-in (movie timescale) and where the
    // media starts (track timescale).
    let movie_scale = ctx.timescale.map_or(0, |t| t.0);
    let lead_in = match (track.empty_duration, movie_scale) {
        (Some(d), s) if s > 0 => rescale(i64::try_from(d.0).unwrap_or(i64::MAX), s, timescale),
        _ => 0,
    };
    let media_start = track
        .media_time
        .map_or(0, |t| i64::try_from(t.0).unwrap_or(i64::MAX));
    let offset = lead_in.saturating_sub(media_start);
    let table = create_sample_table(track, CheckedInteger(0)).ok_or_else(|| bad("no samples"))?;
    let mut units = Vec::with_capacity(table.len());
    let mut end = 0u64;
    let to_ticks = |t: i64| rescale(t.saturating_add(offset), timescale, u64::from(clock));
    for s in table.iter() {
        let (start, stop) = (s.start_offset.0, s.end_offset.0);
        if stop < start || stop > data.len() as u64 {
            return Err(bad("a sample lies outside the file"));
        }
        let pts = to_ticks(s.start_composition.0);
        end = end.max(to_ticks(s.end_composition.0).max(0) as u64);
        units.push(Unit {
            offset: start as u32,
            size: (stop - start) as u32,
            dts: to_ticks(s.start_decode.0),
            pts,
            sync: s.sync,
        });
    }
    if units.is_empty() {
        return Err(bad("no samples"));
    }
    Ok(AccessUnits {
        data: data.clone(),
        units,
        clock_rate: clock,
        duration: end,
    })
}

/// `t` in timescale `from`, expressed in timescale `to` (rounded toward
/// zero), saturating.
fn rescale(t: i64, from: u64, to: u64) -> i64 {
    if from == 0 {
        return 0;
    }
    let v = match i128::from(t).checked_mul(i128::from(to)) {
        Some(v) => v / i128::from(from),
        None if t < 0 => i128::MIN,
        None => i128::MAX,
    };
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// Whether the first sync sample already holds an SPS (an `avc3` stream,
/// or an encoder that repeats its parameter sets).
fn carries_parameter_sets(units: &AccessUnits, length_size: usize) -> bool {
    let Some(first) = units.units.iter().find(|u| u.sync) else {
        return false;
    };
    let data = units.bytes(first);
    let found = h264::length_prefixed(&data, length_size, 0)
        .any(|(start, _)| data[start] & 0x1F == h264::nal::SPS);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_parses_and_rejects_truncation() {
        let avcc = [
            1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 4, 0x67, 0x42, 0xc0, 0x1e, 1, 0, 2, 0x68, 0xce,
        ];
        let c = AvcConfig::parse(&avcc).unwrap();
        assert_eq!(c.length_size, 4);
        assert_eq!(c.sps, [Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e])]);
        assert_eq!(c.pps, [Bytes::from_static(&[0x68, 0xce])]);
        for n in 0..avcc.len() {
            assert!(AvcConfig::parse(&avcc[..n]).is_err(), "{n} bytes");
        }
    }

    #[test]
    fn rescale_rounds_down_and_never_overflows() {
        assert_eq!(rescale(1001, 30000, 90000), 3003);
        assert_eq!(rescale(1, 3, 2), 0);
        assert_eq!(rescale(i64::MAX, 1, 90000), i64::MAX);
        assert_eq!(rescale(5, 0, 90000), 0);
        assert_eq!(rescale(i64::MIN, 1, u64::MAX), i64::MIN);
        assert_eq!(rescale(-1001, 30000, 90000), -3003);
    }

    /// Plays every packet of every track, as a session would.
    fn cut_everything(clip: &Mp4Clip) -> usize {
        let mut packets = 0;
        for t in &clip.tracks {
            let mut c = t.packetizer.seek(0);
            while let Some(ch) = t.packetizer.chunk(c, u64::MAX) {
                assert!(ch.payload.len() <= ClipOptions::default().max_payload);
                c = ch.next;
                packets += 1;
            }
        }
        packets
    }

    #[test]
    fn the_sample_parses_and_damaged_copies_never_panic() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/media/testsrc-320x240.mp4");
        let data = std::fs::read(path).expect("the bundled sample");
        let opts = ClipOptions::default();
        let clip = load(Bytes::from(data.clone()), &opts).expect("the sample loads");
        assert_eq!(clip.tracks.len(), 2);
        assert!((clip.duration - 10.0).abs() < 0.05, "{}", clip.duration);
        // At least a packet per access unit: 250 pictures, 431 AAC frames.
        assert!(cut_everything(&clip) >= 250 + 431);
        // Damage the header (the `moov` box is at the front) in 300
        // deterministic ways: bytes replaced, and the file cut short.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let head = data.len().min(8192);
        for round in 0..300 {
            let mut d = data.clone();
            for _ in 0..1 + round % 8 {
                let at = (next() as usize) % head;
                d[at] = next() as u8;
            }
            if round % 10 == 0 {
                d.truncate((next() as usize) % data.len());
            }
            if let Ok(clip) = load(Bytes::from(d), &opts) {
                cut_everything(&clip);
            }
        }
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let opts = ClipOptions::default();
        for data in [
            &b""[..],
            b"\0\0\0\x08ftyp",
            b"\0\0\0\x10moov\0\0\0\x08trak",
            b"garbage!",
        ] {
            assert!(load(Bytes::copy_from_slice(data), &opts).is_err());
        }
    }
}
