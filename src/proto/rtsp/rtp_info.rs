//! The RTP-Info header (RFC 2326 §12.33), sent in PLAY responses:
//! `url=rtsp://h/a/trackID=0;seq=1;rtptime=2,url=rtsp://h/a/trackID=1;seq=5`.
//!
//! RFC 2326 does not quote the URL, so a URL containing `,` or `;` cannot be
//! carried; the server's track URLs never contain either.
//! [`parse_rtp_info`] reads at most [`MAX_ENTRIES`] entries, for tests and the
//! load tester.

use std::fmt;
use std::str::FromStr;

use super::parse::digits;

/// Most entries [`parse_rtp_info`] accepts.
pub const MAX_ENTRIES: usize = 16;

/// One stream's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpInfo {
    pub url: String,
    /// Sequence number of the first packet sent after the PLAY.
    pub seq: Option<u16>,
    /// RTP timestamp matching the Range start.
    pub rtptime: Option<u32>,
}

/// Why an RTP-Info value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpInfoError {
    /// More than [`MAX_ENTRIES`] entries.
    #[error("too many RTP-Info entries")]
    TooManyEntries,
    /// An entry without exactly one non-empty `url=`.
    #[error("RTP-Info entry without one url")]
    BadUrl,
    /// `seq` or `rtptime` is not a plain decimal number that fits.
    #[error("malformed RTP-Info {0}")]
    BadParameter(&'static str),
}

/// The header value for `infos`, entries separated by `,`.
pub fn format_rtp_info(infos: &[RtpInfo]) -> String {
    let entries: Vec<String> = infos.iter().map(RtpInfo::to_string).collect();
    entries.join(",")
}

/// Reads an RTP-Info value; unknown parameters are ignored.
pub fn parse_rtp_info(value: &str) -> Result<Vec<RtpInfo>, RtpInfoError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, e)| match i {
            MAX_ENTRIES.. => Err(RtpInfoError::TooManyEntries),
            _ => e.parse(),
        })
        .collect()
}

impl FromStr for RtpInfo {
    type Err = RtpInfoError;

    /// Reads one entry, `url=...;seq=...;rtptime=...`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (mut url, mut seq, mut rtptime) = (None, None, None);
        for param in s.split(';').map(str::trim) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let value = value.trim();
            match name.trim_end() {
                "url" if url.is_none() && !value.is_empty() => url = Some(value),
                "url" => return Err(RtpInfoError::BadUrl),
                "seq" => seq = Some(digits(value).ok_or(RtpInfoError::BadParameter("seq"))?),
                "rtptime" => {
                    rtptime = Some(digits(value).ok_or(RtpInfoError::BadParameter("rtptime"))?)
                }
                _ => {}
            }
        }
        Ok(Self {
            url: url.ok_or(RtpInfoError::BadUrl)?.to_owned(),
            seq,
            rtptime,
        })
    }
}

impl fmt::Display for RtpInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "url={}", self.url)?;
        if let Some(seq) = self.seq {
            write!(f, ";seq={seq}")?;
        }
        if let Some(rtptime) = self.rtptime {
            write!(f, ";rtptime={rtptime}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RtpInfoError::*;

    fn info(url: &str, seq: Option<u16>, rtptime: Option<u32>) -> RtpInfo {
        RtpInfo {
            url: url.into(),
            seq,
            rtptime,
        }
    }

    #[test]
    fn format_and_round_trip() {
        let infos = [
            info("rtsp://h/a/trackID=0", Some(1), Some(2)),
            info("rtsp://h/a/trackID=1", Some(u16::MAX), Some(u32::MAX)),
            info("rtsp://h/a/trackID=2", None, None),
        ];
        let text = format_rtp_info(&infos);
        assert_eq!(
            text,
            "url=rtsp://h/a/trackID=0;seq=1;rtptime=2,\
             url=rtsp://h/a/trackID=1;seq=65535;rtptime=4294967295,\
             url=rtsp://h/a/trackID=2"
        );
        assert_eq!(parse_rtp_info(&text), Ok(infos.to_vec()));
        assert_eq!(format_rtp_info(&[]), "");
        assert_eq!(parse_rtp_info(""), Ok(vec![]));
    }

    #[test]
    fn lenient_forms() {
        let got = parse_rtp_info("url=rtsp://h/a/trackID=0; seq=7 ;ssrc=1 , url=rtsp://h/b");
        let want = vec![
            info("rtsp://h/a/trackID=0", Some(7), None),
            info("rtsp://h/b", None, None),
        ];
        assert_eq!(got, Ok(want));
    }

    #[test]
    fn refused() {
        let entries = |n| vec!["url=rtsp://h/a"; n].join(",");
        assert_eq!(
            parse_rtp_info(&entries(MAX_ENTRIES)).map(|v| v.len()),
            Ok(MAX_ENTRIES)
        );
        let seventeen = entries(MAX_ENTRIES + 1);
        for (s, e) in [
            (seventeen.as_str(), TooManyEntries),
            ("seq=1;rtptime=2", BadUrl),
            ("url=;seq=1", BadUrl),
            ("url=a;url=b", BadUrl),
            ("url=a;seq=65536", BadParameter("seq")),
            ("url=a;seq=-1", BadParameter("seq")),
            ("url=a;rtptime=4294967296", BadParameter("rtptime")),
            ("url=a;rtptime=", BadParameter("rtptime")),
        ] {
            assert_eq!(parse_rtp_info(s), Err(e), "{s:?}");
        }
    }
}
