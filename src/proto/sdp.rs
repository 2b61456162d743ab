//! Session descriptions for DESCRIBE (RFC 2326 §C.1, RFC 8866), written with
//! `sdp-types`.
//!
//! What players rely on (live555's client in VLC most of all): `a=control:*`
//! at session level so the Content-Base is the aggregate URL, one
//! `a=control:trackID=N` per media, `a=range:npt=0-D` for the duration (this is
//! what enables seeking), and `a=rtpmap` even for static payload types.

use std::net::IpAddr;

use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};

/// What the SDP says about one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackDescription {
    /// `audio` or `video`.
    pub media: &'static str,
    pub payload_type: u8,
    /// The `a=rtpmap` value after the payload type, e.g. `L16/44100/2`.
    pub rtpmap: String,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
    /// The `a=control` value, relative to the Content-Base.
    pub control: String,
}

impl TrackDescription {
    /// A track described as the only one of its presentation
    /// (`a=control:trackID=0`; a presentation of several renumbers them).
    pub fn new(
        media: &'static str,
        payload_type: u8,
        rtpmap: String,
        fmtp: Option<String>,
    ) -> Self {
        Self {
            media,
            payload_type,
            rtpmap,
            fmtp,
            control: "trackID=0".to_owned(),
        }
    }
}

/// An `a=rtpmap` value after the payload type (RFC 8866 §6.6):
/// `encoding/rate`, and `/channels` for audio of more than one channel
/// (RFC 3551 §4.1: one channel goes unsaid).
pub fn rtpmap(encoding: &str, rate: u32, channels: u32) -> String {
    if channels > 1 {
        format!("{encoding}/{rate}/{channels}")
    } else {
        format!("{encoding}/{rate}")
    }
}

/// What the SDP says about a presentation.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentationDescription {
    pub name: String,
    /// Duration in seconds; `None` for live.
    pub duration: Option<f64>,
    pub tracks: Vec<TrackDescription>,
}

fn attr(name: &str, value: impl Into<String>) -> Attribute {
    Attribute {
        attribute: name.to_owned(),
        value: Some(value.into()),
    }
}

/// Writes the SDP text for `desc`, served from `server_ip`, as DESCRIBE
/// answers it: control URLs relative to the Content-Base (RFC 2326 §C.1.1,
/// `a=control:*` for the aggregate).
pub fn describe(desc: &PresentationDescription, server_ip: IpAddr, session_id: u64) -> String {
    write(desc, server_ip, session_id, "*")
}

/// [`describe`] with absolute control URLs under `base` (the presentation's
/// `rtsp://` URL): the aggregate is `base` itself and each track
/// `base/CONTROL`, so an SDP fetched over HTTP names the RTSP server to
/// play it from (RFC 2326 §C.1.1).
pub fn describe_absolute(
    desc: &PresentationDescription,
    server_ip: IpAddr,
    session_id: u64,
    base: &str,
) -> String {
    let mut desc = desc.clone();
    for t in &mut desc.tracks {
        t.control = format!("{base}/{}", t.control);
    }
    write(&desc, server_ip, session_id, base)
}

fn write(
    desc: &PresentationDescription,
    server_ip: IpAddr,
    session_id: u64,
    aggregate: &str,
) -> String {
    let addrtype = if server_ip.is_ipv4() {
        AddrType::Ip4
    } else {
        AddrType::Ip6
    };
    let range = match desc.duration {
        Some(d) => format!("npt=0-{d:.3}"),
        None => "npt=now-".to_owned(),
    };
    let medias = desc
        .tracks
        .iter()
        .map(|t| {
            let mut attributes = vec![attr("rtpmap", format!("{} {}", t.payload_type, t.rtpmap))];
            if let Some(f) = &t.fmtp {
                attributes.push(attr("fmtp", format!("{} {f}", t.payload_type)));
            }
            attributes.push(attr("control", t.control.clone()));
            Media {
                media: t.media.to_owned(),
                port: 0,
                num_ports: None,
                proto: "RTP/AVP".to_owned(),
                fmt: t.payload_type.to_string(),
                media_title: None,
                connections: Vec::new(),
                bandwidths: Vec::new(),
                key: None,
                attributes,
            }
        })
        .collect();
    let session = Session {
        origin: Origin {
            username: None,
            sess_id: session_id.to_string(),
            sess_version: 1,
            nettype: NetType::In,
            addrtype: addrtype.clone(),
            unicast_address: server_ip.to_string(),
        },
        session_name: desc.name.clone(),
        session_description: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: Some(Connection {
            nettype: NetType::In,
            addrtype,
            connection_address: if server_ip.is_ipv4() { "0.0.0.0" } else { "::" }.to_owned(),
        }),
        bandwidths: Vec::new(),
        times: vec![Time {
            start_time: 0,
            stop_time: 0,
            repeats: Vec::new(),
        }],
        time_zones: Vec::new(),
        key: None,
        attributes: vec![
            attr("tool", concat!("rtspd ", env!("CARGO_PKG_VERSION"))),
            attr("type", "broadcast"),
            attr("control", aggregate),
            attr("range", range),
        ],
        medias,
    };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; an empty SDP would be caught by tests.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A track as a client reads it from someone else's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    pub payload_type: u8,
    /// From `a=rtpmap`, or RFC 3551's table for static payload types.
    pub clock_rate: u32,
    /// The `a=rtpmap` encoding name (`L16`, `PCMU`, `H264`, ...), if any.
    pub encoding: Option<String>,
    /// The `a=rtpmap` channel count for audio (1 when not given).
    pub channels: u16,
    /// `a=control`, if any (relative or absolute).
    pub control: Option<String>,
    /// The `a=fmtp` parameters for the payload type, if any.
    pub fmtp: Option<String>,
}

/// Why an SDP could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("invalid SDP: {0}")]
    Syntax(String),
    #[error("no usable media in the SDP")]
    NoMedia,
}

/// Static payload types' clock rates (RFC 3551 §6, table 4 and 5).
fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0 | 3..=5 | 7..=9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        14 | 25 | 26 | 28 | 31..=34 => Some(90000),
        16 => Some(11025),
        17 => Some(22050),
        _ => None,
    }
}

/// Reads the tracks of an SDP (RFC 8866) for SETUP: each `m=` line's first
/// format, its clock rate and `a=control`. Media without a known clock rate
/// are skipped.
pub fn parse_offer(sdp: &[u8]) -> Result<Vec<OfferedTrack>, SdpError> {
    let session = Session::parse(sdp).map_err(|e| SdpError::Syntax(e.to_string()))?;
    let mut tracks = Vec::new();
    for m in &session.medias {
        let Some(pt) = m
            .fmt
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u8>().ok())
        else {
            continue;
        };
        // `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`
        let rtpmap = m.get_attribute_values("rtpmap").find_map(|v| {
            let (p, enc) = v?.split_once(' ')?;
            if p.trim().parse::<u8>().ok()? != pt {
                return None;
            }
            let mut parts = enc.trim().split('/');
            let name = parts.next()?.to_owned();
            let rate = parts.next()?.trim().parse::<u32>().ok()?;
            let channels = parts
                .next()
                .and_then(|c| c.trim().parse::<u16>().ok())
                .unwrap_or(1);
            Some((name, rate, channels))
        });
        let (encoding, channels) = match &rtpmap {
            Some((name, _, ch)) => (Some(name.clone()), *ch),
            None => (None, 1),
        };
        let Some(clock_rate) = rtpmap
            .map(|(_, rate, _)| rate)
            .or_else(|| static_clock_rate(pt))
            .filter(|&r| r > 0)
        else {
            continue;
        };
        tracks.push(OfferedTrack {
            media: m.media.clone(),
            payload_type: pt,
            clock_rate,
            encoding,
            channels,
            control: m
                .get_first_attribute_value("control")
                .flatten()
                .map(str::to_owned),
            fmtp: m.get_attribute_values("fmtp").find_map(|v| {
                let (p, params) = v?.split_once(' ')?;
                (p.trim().parse::<u8>().ok()? == pt).then(|| params.trim().to_owned())
            }),
        });
    }
    if tracks.is_empty() {
        return Err(SdpError::NoMedia);
    }
    Ok(tracks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_control_urls_under_the_base() {
        let desc = PresentationDescription {
            name: "a.mp4".into(),
            duration: Some(1.0),
            tracks: ["video", "audio"]
                .iter()
                .enumerate()
                .map(|(i, m)| TrackDescription {
                    control: format!("trackID={i}"),
                    ..TrackDescription::new(m, 96 + i as u8, "X/90000".into(), None)
                })
                .collect(),
        };
        let ip = IpAddr::from([0, 0, 0, 0]);
        let base = "rtsp://10.0.0.1:8554/a.mp4";
        let abs = describe_absolute(&desc, ip, 7, base);
        let controls: Vec<&str> = abs
            .lines()
            .filter_map(|l| l.strip_prefix("a=control:"))
            .collect();
        assert_eq!(
            controls,
            [
                base,
                &format!("{base}/trackID=0"),
                &format!("{base}/trackID=1")
            ]
        );
        // Everything but the control lines is DESCRIBE's answer.
        let rel = describe(&desc, ip, 7);
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("a=control:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&abs), strip(&rel));
    }

    #[test]
    fn l16_stereo_description() {
        let desc = PresentationDescription {
            name: "music.wav".into(),
            duration: Some(5.0),
            tracks: vec![TrackDescription {
                media: "audio",
                payload_type: 10,
                rtpmap: "L16/44100/2".into(),
                fmtp: None,
                control: "trackID=0".into(),
            }],
        };
        let sdp = describe(&desc, "127.0.0.1".parse().unwrap(), 42);
        for line in [
            "v=0\r\n",
            "o=- 42 1 IN IP4 127.0.0.1\r\n",
            "s=music.wav\r\n",
            "a=control:*\r\n",
            "a=range:npt=0-5.000\r\n",
            "m=audio 0 RTP/AVP 10\r\n",
            "a=rtpmap:10 L16/44100/2\r\n",
            "a=control:trackID=0\r\n",
        ] {
            assert!(sdp.contains(line), "missing {line:?} in\n{sdp}");
        }
        // The description parses back.
        let parsed = Session::parse(sdp.as_bytes()).unwrap();
        assert_eq!(parsed.medias.len(), 1);
    }

    #[test]
    fn offers_from_other_servers() {
        // What MediaMTX sends for H.264 + AAC, trimmed; and one from
        // live555 with a static payload type and no rtpmap.
        let mediamtx =
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=Stream\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=control:rtsp://h:8554/s/trackID=0\r\na=rtpmap:96 H264/90000\r\n\
m=audio 0 RTP/AVP 97\r\na=control:trackID=1\r\na=rtpmap:97 mpeg4-generic/48000/2\r\n";
        let t = parse_offer(mediamtx.as_bytes()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].clock_rate, t[0].control.as_deref()),
            (90000, Some("rtsp://h:8554/s/trackID=0"))
        );
        assert_eq!((t[1].payload_type, t[1].clock_rate), (97, 48000));
        assert_eq!(
            (t[1].encoding.as_deref(), t[1].channels),
            (Some("mpeg4-generic"), 2)
        );
        assert_eq!((t[0].encoding.as_deref(), t[0].channels), (Some("H264"), 1));
        let live555 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\na=control:track1\r\n";
        let t = parse_offer(live555.as_bytes()).unwrap();
        assert_eq!(
            (t[0].clock_rate, t[0].control.as_deref()),
            (8000, Some("track1"))
        );
        assert!(parse_offer(b"garbage").is_err());
    }
}
