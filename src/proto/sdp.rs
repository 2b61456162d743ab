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

/// Writes the SDP text for `desc`, served from `server_ip`.
pub fn describe(desc: &PresentationDescription, server_ip: IpAddr, session_id: u64) -> String {
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
            attr("control", "*"),
            attr("range", range),
        ],
        medias,
    };
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; an empty SDP would be caught by tests.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
