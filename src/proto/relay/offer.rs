//! Which tracks of a publisher's (or an upstream's) SDP a relay channel
//! carries: the payload formats it forwards without decoding (RFC 6184
//! H.264, RFC 7798 H.265, RFC 3640 `mpeg4-generic` and RFC 6416
//! `MP4A-LATM` AAC, RFC 7587 Opus, RFC 3551 G.711 and L16), each described
//! to listeners as the source described it (`a=rtpmap`, `a=fmtp`).

use super::nal::VideoCodec;
use crate::proto::sdp::{OfferedTrack, TrackDescription};

/// The encoding names a relay channel forwards, as a literal (for
/// `concat!`).
macro_rules! supported {
    () => {
        "H264, H265, MPEG4-GENERIC, MP4A-LATM, OPUS, PCMU, PCMA, L16"
    };
}

/// What the 415 for an SDP without a supported track says it takes.
pub const SUPPORTED: &str = supported!();

/// The reason phrase of that 415 (RFC 2326 §7.1.1 lets a server choose it).
pub const NO_SUPPORTED_TRACK_REASON: &str =
    concat!("Unsupported Media Type; Supported: ", supported!());

/// A payload format a relay channel forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayCodec {
    H264,
    H265,
    Mpeg4Generic,
    Mp4aLatm,
    Opus,
    Pcmu,
    Pcma,
    L16,
}

impl RelayCodec {
    fn from_offer(t: &OfferedTrack) -> Option<Self> {
        let Some(name) = t.encoding.as_deref() else {
            // RFC 3551 static payload types.
            return match t.payload_type {
                0 => Some(Self::Pcmu),
                8 => Some(Self::Pcma),
                10 | 11 => Some(Self::L16),
                _ => None,
            };
        };
        let known = [
            ("H264", Self::H264),
            ("H265", Self::H265),
            ("MPEG4-GENERIC", Self::Mpeg4Generic),
            ("MP4A-LATM", Self::Mp4aLatm),
            ("OPUS", Self::Opus),
            ("PCMU", Self::Pcmu),
            ("PCMA", Self::Pcma),
            ("L16", Self::L16),
        ];
        known
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| c)
    }

    /// H.264 and H.265: keyframes gate listeners, big packets are cut.
    pub fn video(self) -> Option<VideoCodec> {
        match self {
            Self::H264 => Some(VideoCodec::H264),
            Self::H265 => Some(VideoCodec::H265),
            _ => None,
        }
    }
}

/// One track a relay channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayTrack {
    pub codec: RelayCodec,
    pub payload_type: u8,
    pub clock_rate: u32,
    /// `a=rtpmap` after the payload type, as the source wrote it.
    pub rtpmap: String,
    pub fmtp: Option<String>,
    /// The source's `a=control` (a publisher's SETUP names it).
    pub control: Option<String>,
}

impl RelayTrack {
    /// Track `index` as listeners see it (`a=control:trackID=index`).
    pub fn description(&self, index: usize) -> TrackDescription {
        let media = if self.codec.video().is_some() {
            "video"
        } else {
            "audio"
        };
        TrackDescription {
            control: format!("trackID={index}"),
            ..TrackDescription::new(
                media,
                self.payload_type,
                self.rtpmap.clone(),
                self.fmtp.clone(),
            )
        }
    }
}

/// The tracks of `offered` a relay carries, in order, and a line for each
/// one it skips. No supported track is `Err` with what the SDP had.
pub fn relay_tracks(offered: &[OfferedTrack]) -> Result<(Vec<RelayTrack>, Vec<String>), String> {
    let mut tracks = Vec::new();
    let mut skipped = Vec::new();
    for t in offered {
        let name = t
            .encoding
            .clone()
            .unwrap_or_else(|| format!("payload type {}", t.payload_type));
        match RelayCodec::from_offer(t) {
            Some(codec) if t.payload_type < 128 => {
                let rtpmap = match &t.encoding {
                    Some(e) if t.channels > 1 => format!("{e}/{}/{}", t.clock_rate, t.channels),
                    Some(e) => format!("{e}/{}", t.clock_rate),
                    None => crate::proto::sdp::rtpmap(
                        if codec == RelayCodec::L16 {
                            "L16"
                        } else if codec == RelayCodec::Pcma {
                            "PCMA"
                        } else {
                            "PCMU"
                        },
                        t.clock_rate,
                        u32::from(t.channels),
                    ),
                };
                tracks.push(RelayTrack {
                    codec,
                    payload_type: t.payload_type,
                    clock_rate: t.clock_rate,
                    rtpmap,
                    fmtp: t.fmtp.clone(),
                    control: t.control.clone(),
                });
            }
            _ => skipped.push(format!("{} ({name})", t.media)),
        }
    }
    if tracks.is_empty() {
        return Err(format!(
            "no supported track (the SDP has {}; supported: {SUPPORTED})",
            skipped.join(", ")
        ));
    }
    Ok((tracks, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sdp::parse_offer;

    /// What ffmpeg 5.1 announces for the bundled MP4 (`-c copy -f rtsp`).
    const FFMPEG_MP4: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:libavformat 59.27.100\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAHtkBQfsBEAAAAwAQAAADAyDxYuSA,aMuDyyA=; profile-level-id=42C01E\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\nb=AS:128\r\na=rtpmap:97 MPEG4-GENERIC/44100/2\r\na=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\na=control:streamid=1\r\n\
m=application 0 RTP/AVP 98\r\na=rtpmap:98 t140/1000\r\na=control:streamid=2\r\n";

    #[test]
    fn an_mp4_publishers_tracks_and_what_is_skipped() {
        let offered = parse_offer(FFMPEG_MP4.as_bytes()).expect("SDP");
        let (tracks, skipped) = relay_tracks(&offered).expect("tracks");
        assert_eq!(tracks.len(), 2);
        assert_eq!(tracks[0].codec, RelayCodec::H264);
        assert_eq!(tracks[0].control.as_deref(), Some("streamid=0"));
        assert!(tracks[0]
            .fmtp
            .as_deref()
            .is_some_and(|f| f.contains("sprop-parameter-sets=")));
        assert_eq!(tracks[1].rtpmap, "MPEG4-GENERIC/44100/2");
        assert_eq!(skipped, ["application (t140)"]);
        let d = tracks[1].description(1);
        assert_eq!(
            (d.media, d.payload_type, d.control.as_str()),
            ("audio", 97, "trackID=1")
        );
        assert_eq!(d.fmtp, tracks[1].fmtp);
    }

    #[test]
    fn nothing_supported_says_what_is() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let offered = parse_offer(sdp.as_bytes()).expect("SDP");
        let e = relay_tracks(&offered).expect_err("VP8 is not relayed");
        assert!(e.contains("video (VP8)") && e.contains(SUPPORTED), "{e}");
    }

    #[test]
    fn static_payload_types() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\nm=audio 0 RTP/AVP 8\r\n";
        let (tracks, _) = relay_tracks(&parse_offer(sdp.as_bytes()).expect("SDP")).expect("tracks");
        assert_eq!(tracks[0].rtpmap, "PCMU/8000");
        assert_eq!(tracks[1].codec, RelayCodec::Pcma);
    }
}
