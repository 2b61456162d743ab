//! Completing a video track's SDP from its in-band parameter sets: a
//! source whose `a=fmtp` lacks them (many cameras, and encoders that send
//! them only in-band) still gets a description a player can set up its
//! decoder from before the first keyframe.
//!
//! - H.264: `sprop-parameter-sets` (RFC 6184 §8.1), base64 SPS and PPS,
//!   and `profile-level-id` from the SPS's profile, constraint and level
//!   bytes (§8.1) when the source gave none.
//! - H.265: `sprop-vps`, `sprop-sps`, `sprop-pps` (RFC 7798 §7.1).
//!
//! Parameters the source wrote stay as they are; only missing ones are
//! added.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;

use super::nal::{ParamKind, VideoCodec};

/// Largest parameter set kept (an SPS with VUI is well under 100 bytes).
pub const MAX_PARAM_SET: usize = 512;

/// The latest in-band parameter sets of one video track.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSets {
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
}

impl ParamSets {
    /// Keeps `unit` (a whole NAL unit, header included) as the latest of
    /// its kind; `true` if that changed anything. Oversized units are
    /// ignored.
    pub fn observe(&mut self, kind: ParamKind, unit: &[u8]) -> bool {
        if unit.is_empty() || unit.len() > MAX_PARAM_SET {
            return false;
        }
        let slot = match kind {
            ParamKind::Vps => &mut self.vps,
            ParamKind::Sps => &mut self.sps,
            ParamKind::Pps => &mut self.pps,
        };
        if slot.as_deref() == Some(unit) {
            return false;
        }
        *slot = Some(Bytes::copy_from_slice(unit));
        true
    }

    /// Whether every set `codec` needs is here.
    pub fn complete(&self, codec: VideoCodec) -> bool {
        self.sps.is_some()
            && self.pps.is_some()
            && (codec == VideoCodec::H264 || self.vps.is_some())
    }
}

/// Whether `fmtp` (the text after `a=fmtp:PT `) already carries the
/// parameter sets of `codec`.
pub fn has_param_sets(codec: VideoCodec, fmtp: Option<&str>) -> bool {
    let Some(fmtp) = fmtp else {
        return false;
    };
    let has = |name: &str| params(fmtp).any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_empty());
    match codec {
        VideoCodec::H264 => has("sprop-parameter-sets"),
        VideoCodec::H265 => has("sprop-vps") && has("sprop-sps") && has("sprop-pps"),
    }
}

/// `fmtp` with the parameter sets of `sets` added where it lacks them;
/// `None` if `sets` is not complete or nothing was missing.
pub fn complete_fmtp(codec: VideoCodec, fmtp: Option<&str>, sets: &ParamSets) -> Option<String> {
    if has_param_sets(codec, fmtp) || !sets.complete(codec) {
        return None;
    }
    let b64 = |b: &Option<Bytes>| b.as_deref().map(|b| STANDARD.encode(b)).unwrap_or_default();
    let given: Vec<(&str, &str)> = fmtp.map(|f| params(f).collect()).unwrap_or_default();
    let missing = |name: &str| !given.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out: Vec<String> = given
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| {
            if v.is_empty() {
                (*k).to_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    match codec {
        VideoCodec::H264 => {
            if missing("packetization-mode") {
                out.push("packetization-mode=1".into());
            }
            if let Some(sps) = sets.sps.as_deref().filter(|s| s.len() >= 4) {
                if missing("profile-level-id") {
                    out.push(format!(
                        "profile-level-id={:02X}{:02X}{:02X}",
                        sps[1], sps[2], sps[3]
                    ));
                }
            }
            out.retain(|p| !p.to_ascii_lowercase().starts_with("sprop-parameter-sets"));
            out.push(format!(
                "sprop-parameter-sets={},{}",
                b64(&sets.sps),
                b64(&sets.pps)
            ));
        }
        VideoCodec::H265 => {
            out.retain(|p| {
                let l = p.to_ascii_lowercase();
                !(l.starts_with("sprop-vps")
                    || l.starts_with("sprop-sps")
                    || l.starts_with("sprop-pps"))
            });
            out.push(format!("sprop-vps={}", b64(&sets.vps)));
            out.push(format!("sprop-sps={}", b64(&sets.sps)));
            out.push(format!("sprop-pps={}", b64(&sets.pps)));
        }
    }
    Some(out.join(";"))
}

/// `name=value` pairs of an fmtp line (RFC 4566 §6: `;`-separated).
fn params(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    fmtp.split(';').map(|p| {
        let p = p.trim();
        p.split_once('=')
            .map_or((p, ""), |(k, v)| (k.trim(), v.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: [u8; 8] = [0x67, 0x42, 0xC0, 0x1E, 0xD9, 0x01, 0x41, 0xFB];
    const PPS: [u8; 4] = [0x68, 0xCB, 0x83, 0xCB];

    fn h264_sets() -> ParamSets {
        let mut s = ParamSets::default();
        assert!(s.observe(ParamKind::Sps, &SPS));
        assert!(!s.observe(ParamKind::Sps, &SPS), "the same SPS again");
        assert!(s.observe(ParamKind::Pps, &PPS));
        s
    }

    #[test]
    fn h264_without_sets_gets_them_and_a_profile() {
        let f = complete_fmtp(VideoCodec::H264, Some("packetization-mode=1"), &h264_sets())
            .expect("completed");
        assert_eq!(
            f,
            "packetization-mode=1;profile-level-id=42C01E;sprop-parameter-sets=Z0LAHtkBQfs=,aMuDyw=="
        );
        let none = complete_fmtp(VideoCodec::H264, None, &h264_sets()).expect("completed");
        assert!(
            none.starts_with("packetization-mode=1;profile-level-id=42C01E;"),
            "{none}"
        );
    }

    #[test]
    fn given_sets_and_keys_stay() {
        let given = "packetization-mode=1; sprop-parameter-sets=AAAA,BBBB";
        assert!(has_param_sets(VideoCodec::H264, Some(given)));
        assert_eq!(
            complete_fmtp(VideoCodec::H264, Some(given), &h264_sets()),
            None
        );
        let f = complete_fmtp(
            VideoCodec::H264,
            Some("profile-level-id=640028"),
            &h264_sets(),
        )
        .expect("completed");
        assert!(
            f.contains("profile-level-id=640028") && !f.contains("42C01E"),
            "{f}"
        );
    }

    #[test]
    fn incomplete_or_oversized_sets_add_nothing() {
        let mut s = ParamSets::default();
        s.observe(ParamKind::Sps, &SPS);
        assert_eq!(complete_fmtp(VideoCodec::H264, None, &s), None);
        assert!(!s.observe(ParamKind::Pps, &[0x68; MAX_PARAM_SET + 1]));
        assert!(!s.observe(ParamKind::Pps, &[]));
        assert!(!s.complete(VideoCodec::H264));
    }

    #[test]
    fn h265_needs_all_three() {
        let mut s = ParamSets::default();
        s.observe(ParamKind::Sps, &[0x42, 0x01, 1]);
        s.observe(ParamKind::Pps, &[0x44, 0x01, 2]);
        assert_eq!(complete_fmtp(VideoCodec::H265, None, &s), None);
        s.observe(ParamKind::Vps, &[0x40, 0x01, 3]);
        assert_eq!(
            complete_fmtp(VideoCodec::H265, Some("profile-id=1"), &s).as_deref(),
            Some("profile-id=1;sprop-vps=QAED;sprop-sps=QgEB;sprop-pps=RAEC")
        );
    }
}
