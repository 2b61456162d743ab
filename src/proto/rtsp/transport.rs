//! The Transport header (RFC 2326 §12.39).
//!
//! ```text
//! Transport: RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;interleaved=0-1
//!            \_protocol/profile[/lower]  *(;parameter)   ,  next alternative
//! ```
//!
//! [`parse_transports`] parses the alternatives in order of preference, at most
//! [`MAX_ALTERNATIVES`], in one linear pass. A spec whose protocol or profile
//! the server does not serve (`RTP/SAVP`, `RAW/RAW/UDP`) still parses, so the
//! server can pick the first one it supports and answer 461 otherwise; only a
//! lower transport other than UDP or TCP (`RTP/AVP/SCTP`) is an error here,
//! because [`LowerTransport`] cannot hold it. Unknown parameters are ignored.
//! Port and channel pairs are only parsed here; the server checks them, for
//! client ports with [`Transport::validate_client_ports`].
//!
//! Client forms handled: ffmpeg sends `RTP/AVP/UDP;unicast;client_port=a-b`
//! or `RTP/AVP/TCP;unicast;interleaved=0-1` (plus `mode=record` when
//! publishing); GStreamer and VLC/live555 send `RTP/AVP;unicast;client_port=a-b`
//! and live555 answers with `destination=`/`source=`. `mode` may be quoted
//! (`mode="PLAY"`, the RFC form) or bare (`mode=play`), so commas inside quotes
//! do not split alternatives.

use std::fmt;
use std::str::FromStr;

use super::parse::digits;
use super::StatusCode;

/// Alternatives parsed from one header; later ones are ignored.
pub const MAX_ALTERNATIVES: usize = 16;

/// The lower transport of a transport-spec; UDP when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LowerTransport {
    #[default]
    Udp,
    Tcp,
}

/// One transport-spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    /// As sent, e.g. `RTP` or `RAW`.
    pub protocol: String,
    /// As sent, e.g. `AVP` or `SAVP`.
    pub profile: String,
    pub lower: LowerTransport,
    /// True if `multicast` was given (the last of `unicast`/`multicast` wins).
    pub multicast: bool,
    pub destination: Option<String>,
    pub source: Option<String>,
    pub client_port: Option<(u16, u16)>,
    pub server_port: Option<(u16, u16)>,
    /// The multicast `port` pair.
    pub port: Option<(u16, u16)>,
    pub interleaved: Option<(u8, u8)>,
    pub ttl: Option<u8>,
    pub ssrc: Option<u32>,
    /// Unquoted and uppercased, e.g. `PLAY` or `RECORD`.
    pub mode: Option<String>,
}

/// Why a transport-spec (or its client ports) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The spec does not start with `protocol/profile[/lower-transport]`.
    #[error("malformed transport protocol")]
    BadProtocol,
    /// A lower transport other than UDP or TCP, e.g. `RTP/AVP/SCTP`.
    #[error("unsupported lower transport")]
    UnsupportedLowerTransport,
    /// The named parameter has no value, or not a number, pair or SSRC
    /// (at most 8 hex digits) that fits.
    #[error("malformed {0} parameter")]
    BadParameter(&'static str),
    /// No `client_port` parameter.
    #[error("no client_port")]
    MissingClientPort,
    /// `client_port` is not an even, nonzero RTP port and the port after it.
    #[error("client_port must be an even RTP port and the next port")]
    InvalidClientPorts,
}

impl TransportError {
    /// The status to answer when no alternative is usable: 400 for a
    /// malformed parameter, 461 for the rest.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadParameter(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNSUPPORTED_TRANSPORT,
        }
    }
}

/// Parses the comma-separated alternatives of a Transport header value, in
/// order; empty ones are skipped and only the first [`MAX_ALTERNATIVES`] are
/// parsed.
pub fn parse_transports(value: &str) -> Vec<Result<Transport, TransportError>> {
    let mut quoted = false;
    let unquoted_comma = move |c| {
        quoted ^= c == '"';
        c == ',' && !quoted
    };
    value
        .split(unquoted_comma)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(MAX_ALTERNATIVES)
        .map(str::parse)
        .collect()
}

impl Transport {
    /// The client's RTP and RTCP ports, if they are one usable pair: an even,
    /// nonzero RTP port and RTCP on the next port. Anything wider (such as
    /// `1024-65535`) would have the server spray packets over many ports.
    pub fn validate_client_ports(&self) -> Result<(u16, u16), TransportError> {
        match self.client_port {
            None => Err(TransportError::MissingClientPort),
            Some((rtp, rtcp)) if rtp != 0 && rtp % 2 == 0 && rtp.checked_add(1) == Some(rtcp) => {
                Ok((rtp, rtcp))
            }
            Some(_) => Err(TransportError::InvalidClientPorts),
        }
    }
}

impl FromStr for Transport {
    type Err = TransportError;

    /// Parses one transport-spec (no commas between alternatives).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut params = s.split(';').map(str::trim);
        let mut spec = params.next().unwrap_or_default().split('/');
        let (Some(protocol), Some(profile), lower, None) =
            (spec.next(), spec.next(), spec.next(), spec.next())
        else {
            return Err(TransportError::BadProtocol);
        };
        let is_name = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        if !is_name(protocol) || !is_name(profile) {
            return Err(TransportError::BadProtocol);
        }
        let lower = match lower {
            None => LowerTransport::Udp,
            Some(l) if l.eq_ignore_ascii_case("UDP") => LowerTransport::Udp,
            Some(l) if l.eq_ignore_ascii_case("TCP") => LowerTransport::Tcp,
            Some(_) => return Err(TransportError::UnsupportedLowerTransport),
        };
        let mut t = Self {
            protocol: protocol.to_owned(),
            profile: profile.to_owned(),
            lower,
            ..Self::default()
        };
        for param in params {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
                None => (param, None),
            };
            let text = || value.filter(|v| !v.is_empty()).map(str::to_owned);
            match name.to_ascii_lowercase().as_str() {
                "unicast" => t.multicast = false,
                "multicast" => t.multicast = true,
                "destination" => t.destination = text(),
                "source" => t.source = text(),
                "client_port" => t.client_port = Some(pair(value, "client_port")?),
                "server_port" => t.server_port = Some(pair(value, "server_port")?),
                "port" => t.port = Some(pair(value, "port")?),
                "interleaved" => t.interleaved = Some(pair(value, "interleaved")?),
                "ttl" => {
                    t.ttl = Some(
                        value
                            .and_then(digits)
                            .ok_or(TransportError::BadParameter("ttl"))?,
                    )
                }
                "ssrc" => {
                    t.ssrc = Some(
                        value
                            .and_then(ssrc)
                            .ok_or(TransportError::BadParameter("ssrc"))?,
                    )
                }
                "mode" => {
                    let mode = value.map(|v| v.trim_matches('"')).filter(|v| !v.is_empty());
                    t.mode = Some(
                        mode.ok_or(TransportError::BadParameter("mode"))?
                            .to_ascii_uppercase(),
                    );
                }
                _ => {}
            }
        }
        Ok(t)
    }
}

/// `a-b`, or a lone `a` meaning `a-(a+1)`.
fn pair<T>(value: Option<&str>, name: &'static str) -> Result<(T, T), TransportError>
where
    T: FromStr + Copy + TryFrom<u32>,
    u32: From<T>,
{
    let v = value.ok_or(TransportError::BadParameter(name))?;
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (digits(a), digits(b)),
        None => {
            let a: Option<T> = digits(v);
            (a, a.and_then(|a| T::try_from(u32::from(a) + 1).ok()))
        }
    };
    a.zip(b).ok_or(TransportError::BadParameter(name))
}

/// 1 to 8 hex digits (RFC 2326 §12.39 `ssrc = 8*8(HEX)`, leniently shorter).
fn ssrc(v: &str) -> Option<u32> {
    let hex = (1..=8).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| u32::from_str_radix(v, 16).ok()).flatten()
}

impl fmt::Display for Transport {
    /// The canonical form: UDP is implied, ports before the SSRC, e.g.
    /// `RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2B3C4D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.profile)?;
        if self.lower == LowerTransport::Tcp {
            f.write_str("/TCP")?;
        }
        f.write_str(if self.multicast {
            ";multicast"
        } else {
            ";unicast"
        })?;
        for (name, v) in [("destination", &self.destination), ("source", &self.source)] {
            if let Some(v) = v {
                write!(f, ";{name}={v}")?;
            }
        }
        let pairs = [
            ("port", self.port),
            ("client_port", self.client_port),
            ("server_port", self.server_port),
            (
                "interleaved",
                self.interleaved.map(|(a, b)| (a.into(), b.into())),
            ),
        ];
        for (name, (a, b)) in pairs.into_iter().filter_map(|(n, p)| Some((n, p?))) {
            write!(f, ";{name}={a}-{b}")?;
        }
        if let Some(ttl) = self.ttl {
            write!(f, ";ttl={ttl}")?;
        }
        if let Some(ssrc) = self.ssrc {
            write!(f, ";ssrc={ssrc:08X}")?;
        }
        if let Some(mode) = &self.mode {
            write!(f, ";mode=\"{mode}\"")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransportError::*;

    fn one(s: &str) -> Transport {
        s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn client_forms() {
        let t = one("RTP/AVP/UDP;unicast;client_port=5000-5001"); // ffmpeg
        assert_eq!(
            (t.lower, t.client_port, t.multicast),
            (LowerTransport::Udp, Some((5000, 5001)), false)
        );
        assert_eq!((t.protocol.as_str(), t.profile.as_str()), ("RTP", "AVP"));
        let t = one("RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"); // ffmpeg publishing
        assert_eq!(
            (t.lower, t.interleaved, t.mode.as_deref()),
            (LowerTransport::Tcp, Some((0, 1)), Some("RECORD"))
        );
        let t = one("RTP/AVP;unicast;client_port=50000-50001"); // GStreamer, VLC
        assert_eq!(
            (t.lower, t.client_port),
            (LowerTransport::Udp, Some((50000, 50001)))
        );
        // live555's answer form.
        let t = one("RTP/AVP;unicast;destination=10.0.0.2;source=10.0.0.1;client_port=5000-5001;server_port=6970-6971");
        assert_eq!(
            (t.destination.as_deref(), t.source.as_deref()),
            (Some("10.0.0.2"), Some("10.0.0.1"))
        );
        assert_eq!(t.server_port, Some((6970, 6971)));
        let t = one("rtp/avp/tcp ; Unicast ; Interleaved = 2-3 ; mode=\"PLAY\"");
        assert_eq!(
            (t.lower, t.interleaved, t.mode.as_deref()),
            (LowerTransport::Tcp, Some((2, 3)), Some("PLAY"))
        );
        let t = one("RTP/AVP;unicast;client_port=5000;foo=bar;append;layers=2;ssrc=1a2b");
        assert_eq!((t.client_port, t.ssrc), (Some((5000, 5001)), Some(0x1a2b)));
        assert_eq!(one("RTP/AVP;interleaved=4").interleaved, Some((4, 5)));
    }

    #[test]
    fn alternatives() {
        let all = parse_transports(
            "RTP/AVP;unicast;client_port=5000-5001, RTP/AVP/TCP;interleaved=0-1,,RTP/AVP/SCTP",
        );
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].as_ref().map(|t| t.lower), Ok(LowerTransport::Tcp));
        assert_eq!(all[2], Err(UnsupportedLowerTransport));
        let quoted = parse_transports("RTP/AVP;mode=\"PLAY,RECORD\",RTP/AVP/TCP");
        assert_eq!(quoted.len(), 2);
        assert_eq!(
            quoted[0].as_ref().map(|t| t.mode.as_deref()),
            Ok(Some("PLAY,RECORD"))
        );
        assert!(parse_transports("").is_empty());
        // 50 alternatives of 100 bytes, and one 8 KiB spec: bounded and linear.
        let alt = format!("RTP/AVP;unicast;client_port=5000-5001;x={}", "y".repeat(58));
        let fifty = vec![alt; 50].join(",");
        assert_eq!(parse_transports(&fifty).len(), MAX_ALTERNATIVES);
        let long = format!(
            "RTP/AVP;unicast;{}client_port=5000-5001",
            "x=y;".repeat(2048)
        );
        assert_eq!(
            parse_transports(&long)[0].as_ref().map(|t| t.client_port),
            Ok(Some((5000, 5001)))
        );
    }

    #[test]
    fn protocols_kept_for_461() {
        for (s, protocol, profile) in [("RTP/SAVP", "RTP", "SAVP"), ("RAW/RAW/UDP", "RAW", "RAW")] {
            let t = one(s);
            assert_eq!(
                (t.protocol.as_str(), t.profile.as_str()),
                (protocol, profile)
            );
        }
        for (s, e) in [
            ("RTP/AVP/SCTP", UnsupportedLowerTransport),
            ("RTP/AVP/", UnsupportedLowerTransport),
            ("", BadProtocol),
            ("RTP", BadProtocol),
            ("RTP/;unicast", BadProtocol),
            ("/AVP", BadProtocol),
            ("RTP/AVP/UDP/X", BadProtocol),
            ("RT P/AVP", BadProtocol),
        ] {
            assert_eq!(s.parse::<Transport>(), Err(e), "{s:?}");
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_TRANSPORT);
        }
    }

    #[test]
    fn malformed_parameters() {
        let huge_ssrc = format!("ssrc={}", "A".repeat(5000));
        for (p, name) in [
            ("client_port=abc", "client_port"),
            ("client_port=-5", "client_port"),
            ("client_port=5000-", "client_port"),
            ("client_port=+5000-5001", "client_port"),
            ("client_port=5000-5001-5002", "client_port"),
            ("client_port=70000-70001", "client_port"),
            ("client_port=65535", "client_port"),
            ("client_port", "client_port"),
            ("server_port=1 2", "server_port"),
            ("port=", "port"),
            ("interleaved=256-257", "interleaved"),
            ("interleaved=255", "interleaved"),
            ("ttl=256", "ttl"),
            ("ttl=-1", "ttl"),
            ("ssrc=123456789", "ssrc"),
            ("ssrc=xyz", "ssrc"),
            ("ssrc=+1", "ssrc"),
            ("ssrc=", "ssrc"),
            (&huge_ssrc, "ssrc"),
            ("mode=\"\"", "mode"),
        ] {
            let s = format!("RTP/AVP;unicast;{p}");
            assert_eq!(s.parse::<Transport>(), Err(BadParameter(name)), "{p:?}");
        }
        assert_eq!(BadParameter("ssrc").status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn client_port_validation() {
        let ports =
            |p: &str| one(&format!("RTP/AVP;unicast;client_port={p}")).validate_client_ports();
        assert_eq!(ports("5000-5001"), Ok((5000, 5001)));
        assert_eq!(ports("5000"), Ok((5000, 5001)));
        assert_eq!(ports("65534-65535"), Ok((65534, 65535)));
        for p in [
            "5001-5000",
            "5001-5002",
            "5000-5009",
            "1024-65535",
            "0-1",
            "5000-5000",
            "5001",
        ] {
            assert_eq!(ports(p), Err(InvalidClientPorts), "{p}");
        }
        assert_eq!(
            one("RTP/AVP/TCP;interleaved=0-1").validate_client_ports(),
            Err(MissingClientPort)
        );
    }

    #[test]
    fn hostile_values_parse_for_the_server_to_refuse() {
        let t = one("RTP/AVP;unicast;destination=198.51.100.7;client_port=5000-5001");
        assert_eq!(t.destination.as_deref(), Some("198.51.100.7"));
        let t = one("RTP/AVP;multicast;destination=239.1.1.1;ttl=255;port=5000-5001");
        assert_eq!(
            (t.multicast, t.ttl, t.port),
            (true, Some(255), Some((5000, 5001)))
        );
        for (s, pair) in [("254-255", (254, 255)), ("7-6", (7, 6))] {
            assert_eq!(
                one(&format!("RTP/AVP/TCP;interleaved={s}")).interleaved,
                Some(pair)
            );
        }
    }

    #[test]
    fn round_trips() {
        let canonical = [
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=1A2B3C4D",
            "RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0000BEEF;mode=\"PLAY\"",
            "RTP/AVP;multicast;destination=232.0.0.1;source=10.0.0.1;port=5000-5001;ttl=16",
            "RTP/SAVP;unicast",
        ];
        for s in canonical {
            assert_eq!(one(s).to_string(), s);
        }
        for s in [
            "RTP/AVP/UDP;unicast;client_port=5000",
            "rtp/avp/tcp;interleaved=4;mode=record",
            "RTP/AVP;mode=\"PLAY,RECORD\";ssrc=a",
        ] {
            let t = one(s);
            assert_eq!(one(&t.to_string()), t, "{s}");
        }
    }
}
