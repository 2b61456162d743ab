//! The pure parts of SETUP (RFC 2326 §10.4): choosing one of the client's
//! transport-specs (§12.39, ROBUSTNESS B5) and the Transport header of the
//! reply.

use std::net::{IpAddr, SocketAddr};

use super::error::Error;
use super::rtsp::transport::{parse_transports, LowerTransport, Transport};
use super::session::{Dest, Mode, TrackTransport};

/// Picks the first acceptable transport-spec (ROBUSTNESS B5): RTP/AVP over
/// unicast UDP with a valid client port pair, or interleaved on this
/// connection (RFC 2326 §10.12; channels `2 * track` and the next when the
/// client names none), and no destination other than the client itself
/// (§12.39: no third-party delivery).
pub fn choose_transport(
    header: Option<&str>,
    peer: IpAddr,
    conn: u64,
    track: usize,
) -> Result<(TrackTransport, Mode), Error> {
    let value = header.ok_or_else(|| Error::UnsupportedTransport("no Transport header".into()))?;
    let mut why = String::from("no transport offered");
    for t in parse_transports(value) {
        let t = match t {
            Ok(t) => t,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        if t.protocol != "RTP" || t.profile != "AVP" {
            why = format!("{}/{} is not supported", t.protocol, t.profile);
            continue;
        }
        if t.multicast {
            why = "multicast is not offered".into();
            continue;
        }
        let mode = match t.mode.as_deref() {
            None => Mode::Play,
            Some(m) if m.eq_ignore_ascii_case("play") => Mode::Play,
            Some(m) if m.eq_ignore_ascii_case("record") => Mode::Record,
            Some(m) => {
                why = format!("mode={m} is not offered");
                continue;
            }
        };
        if let Some(d) = &t.destination {
            if d.parse::<IpAddr>().ok() != Some(peer) {
                why = format!("destination {d} is not the client");
                continue;
            }
        }
        if t.lower == LowerTransport::Tcp {
            let first = u8::try_from(track * 2).unwrap_or(254).min(254);
            let (rtp, rtcp) = t.interleaved.unwrap_or((first, first + 1));
            if rtp.checked_add(1) != Some(rtcp) {
                why = "interleaved channels must be a pair n-(n+1)".into();
                continue;
            }
            let tt = TrackTransport {
                rtp: Dest::Interleaved { conn, channel: rtp },
                rtcp: Dest::Interleaved {
                    conn,
                    channel: rtcp,
                },
            };
            return Ok((tt, mode));
        }
        let (rtp, rtcp) = match t.validate_client_ports() {
            Ok(p) => p,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        let tt = TrackTransport {
            rtp: Dest::Udp(SocketAddr::new(peer, rtp)),
            rtcp: Dest::Udp(SocketAddr::new(peer, rtcp)),
        };
        return Ok((tt, mode));
    }
    Err(Error::UnsupportedTransport(why))
}

/// The Transport header of a SETUP's 200: the transport chosen, with the
/// shared server port pair (`server_rtp`, `server_rtp + 1`) for UDP.
pub fn reply_transport(
    dest: TrackTransport,
    ssrc: Option<u32>,
    server_rtp: u16,
) -> Result<Transport, Error> {
    let mut reply = Transport {
        protocol: "RTP".into(),
        profile: "AVP".into(),
        ssrc,
        ..Transport::default()
    };
    match (dest.rtp, dest.rtcp) {
        (Dest::Udp(rtp), Dest::Udp(rtcp)) => {
            reply.lower = LowerTransport::Udp;
            reply.client_port = Some((rtp.port(), rtcp.port()));
            reply.server_port = Some((server_rtp, server_rtp.wrapping_add(1)));
        }
        (Dest::Interleaved { channel: a, .. }, Dest::Interleaved { channel: b, .. }) => {
            reply.lower = LowerTransport::Tcp;
            reply.interleaved = Some((a, b));
        }
        _ => return Err(Error::Internal("mixed transport".into())),
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: [u8; 4] = [192, 0, 2, 7];

    fn udp(port: u16) -> Dest {
        Dest::Udp(SocketAddr::from((PEER, port)))
    }

    fn tcp(channel: u8) -> Dest {
        Dest::Interleaved { conn: 9, channel }
    }

    #[test]
    fn chooses_the_first_acceptable_transport_spec() {
        // (Transport header, track, expected (rtp, rtcp, mode) or status)
        type Case = (Option<&'static str>, usize, Result<(Dest, Dest, Mode), u16>);
        let cases: &[Case] = &[
            (
                Some("RTP/AVP;unicast;client_port=5000-5001"),
                0,
                Ok((udp(5000), udp(5001), Mode::Play)),
            ),
            (
                Some("RTP/AVP/UDP;unicast;client_port=5000-5001;mode=record"),
                0,
                Ok((udp(5000), udp(5001), Mode::Record)),
            ),
            (
                Some("RTP/AVP/TCP;unicast;interleaved=4-5"),
                0,
                Ok((tcp(4), tcp(5), Mode::Play)),
            ),
            (
                Some("RTP/AVP/TCP;unicast"),
                1,
                Ok((tcp(2), tcp(3), Mode::Play)),
            ),
            (
                Some("RTP/AVP/TCP;unicast;mode=\"PLAY\""),
                0,
                Ok((tcp(0), tcp(1), Mode::Play)),
            ),
            // The first acceptable one wins; unacceptable ones are skipped.
            (
                Some(
                    "RTP/SAVP;unicast;client_port=6000-6001,RTP/AVP;unicast;client_port=5000-5001",
                ),
                0,
                Ok((udp(5000), udp(5001), Mode::Play)),
            ),
            (
                Some("RTP/AVP;multicast,RTP/AVP/TCP;interleaved=0-1"),
                0,
                Ok((tcp(0), tcp(1), Mode::Play)),
            ),
            (
                Some("RTP/AVP;unicast;destination=192.0.2.7;client_port=5000-5001"),
                0,
                Ok((udp(5000), udp(5001), Mode::Play)),
            ),
            (None, 0, Err(461)),
            (
                Some("RTP/AVP;unicast;destination=198.51.100.1;client_port=5000-5001"),
                0,
                Err(461),
            ),
            (Some("RTP/AVP;unicast;client_port=5001-5002"), 0, Err(461)),
            (Some("RTP/AVP;unicast;client_port=5000-5009"), 0, Err(461)),
            (Some("RTP/AVP/TCP;interleaved=7-6"), 0, Err(461)),
            (
                Some("RTP/AVP;unicast;client_port=5000-5001;mode=receive"),
                0,
                Err(461),
            ),
            (
                Some("RAW/RAW/UDP;unicast;client_port=5000-5001"),
                0,
                Err(461),
            ),
            (Some("RTP/AVP;multicast;destination=239.1.1.1"), 0, Err(461)),
        ];
        for (header, track, want) in cases {
            let got = choose_transport(*header, IpAddr::from(PEER), 9, *track)
                .map(|(t, mode)| (t.rtp, t.rtcp, mode))
                .map_err(|e| e.status().0);
            assert_eq!(&got, want, "{header:?}");
        }
    }

    #[test]
    fn the_reply_names_the_shared_server_ports_or_the_channels() {
        let t = TrackTransport {
            rtp: udp(5000),
            rtcp: udp(5001),
        };
        let r = reply_transport(t, Some(0x1A2B_3C4D), 6970).unwrap();
        assert_eq!(
            r.to_string(),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2B3C4D"
        );
        let t = TrackTransport {
            rtp: tcp(2),
            rtcp: tcp(3),
        };
        let r = reply_transport(t, None, 6970).unwrap();
        assert_eq!(r.to_string(), "RTP/AVP/TCP;unicast;interleaved=2-3");
        let mixed = TrackTransport {
            rtp: udp(5000),
            rtcp: tcp(1),
        };
        assert!(reply_transport(mixed, None, 6970).is_err());
    }
}
