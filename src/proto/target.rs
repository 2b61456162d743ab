//! Request-URI to presentation path and track (RFC 2326 §3.2, §C.1.1).
//!
//! `rtsp://host:port/a/b.wav` names the aggregate presentation `a/b.wav`;
//! `rtsp://host:port/a/b.wav/trackID=0` names its first track. The host part
//! is ignored: we serve by path only and never connect anywhere (no SSRF).
//! Path segments are percent-decoded and checked lexically here, so the media
//! layer only ever joins safe relative segments onto its root.

use super::error::Error;

/// What a Request-URI points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Decoded, '/'-joined relative path; empty for the server root.
    pub path: String,
    /// `Some(n)` for a `trackID=n` (or ffmpeg's `streamid=n`) control URL.
    pub track: Option<usize>,
}

/// The most tracks a presentation may have; higher `trackID`s are 404.
pub const MAX_TRACKS: usize = 16;

/// Parses a Request-URI. `*` and an empty path give an empty `path`.
pub fn parse_target(uri: &str, max_uri: usize) -> Result<Target, Error> {
    if uri.len() > max_uri {
        return Err(Error::UriTooLong);
    }
    if uri == "*" {
        return Ok(Target {
            path: String::new(),
            track: None,
        });
    }
    let url = url::Url::parse(uri)
        .map_err(|_| Error::BadRequest("Request-URI is not an absolute URL"))?;
    if !matches!(url.scheme(), "rtsp" | "rtspu" | "rtsps") {
        return Err(Error::BadRequest("Request-URI scheme is not rtsp"));
    }
    let mut segments = Vec::new();
    for raw in url.path().split('/').filter(|s| !s.is_empty()) {
        let seg = percent_decode(raw).ok_or(Error::NotFound)?;
        let bad = seg == "."
            || seg == ".."
            || seg.contains(['/', '\\', ':', '\0'])
            || seg.chars().any(char::is_control);
        if bad {
            return Err(Error::NotFound);
        }
        segments.push(seg);
    }
    // `trackID=n` is ours; `streamid=n` is what ffmpeg's RTSP muxer names
    // the streams of the SDP it ANNOUNCEs.
    let track = match segments.last().and_then(|s| {
        s.strip_prefix("trackID=")
            .or_else(|| s.strip_prefix("streamid="))
    }) {
        Some(n) => {
            let n: usize = n.parse().map_err(|_| Error::NotFound)?;
            if n >= MAX_TRACKS {
                return Err(Error::NotFound);
            }
            segments.pop();
            Some(n)
        }
        None => None,
    };
    Ok(Target {
        path: segments.join("/"),
        track,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where live channels live: `live/NAME`.
pub const LIVE_PREFIX: &str = "live/";

/// `path` ('/'-separated segments) with every byte outside RFC 3986's
/// unreserved set percent-encoded, for an `rtsp://` or `http://` URL.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b == b'/' || b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The aggregate URL of the presentation a Request-URI names, without a
/// trailing slash: the URI as the client wrote it, minus any `trackID=`
/// segment (the base of RTP-Info URLs and of Content-Base).
pub fn aggregate_url(uri: &str) -> String {
    let base = uri.trim_end_matches('/');
    match base.rsplit_once('/') {
        Some((head, last)) if last.starts_with("trackID=") => head.to_owned(),
        _ => base.to_owned(),
    }
}

/// The channel a publisher's path names: `live/NAME`, optionally followed
/// by one stream control segment (`streamid=0` from ffmpeg, `stream=0` from
/// GStreamer's rtspclientsink).
pub fn live_channel_name(path: &str) -> Result<&str, Error> {
    let rest = path
        .strip_prefix(LIVE_PREFIX)
        .ok_or(Error::Forbidden("only /live/NAME takes publishers"))?;
    match rest.split_once('/') {
        None => Ok(rest),
        Some((name, control)) if !control.contains('/') => Ok(name),
        Some(_) => Err(Error::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_paths_decode_to_the_same_target() {
        for p in ["a b/ü#?.wav", "speech/x%y.mp3", "plain-1_2~.wav"] {
            let uri = format!("rtsp://h/{}", encode_path(p));
            assert_eq!(parse_target(&uri, 4096).unwrap().path, p, "{uri}");
        }
        assert_eq!(encode_path("a b/c"), "a%20b/c");
    }

    fn t(uri: &str) -> Result<Target, Error> {
        parse_target(uri, 2048)
    }

    #[test]
    fn aggregate_and_track_urls() {
        let a = t("rtsp://h:8554/speech/count.wav").unwrap();
        assert_eq!((a.path.as_str(), a.track), ("speech/count.wav", None));
        let b = t("rtsp://h:8554/speech/count.wav/").unwrap();
        assert_eq!(b, a, "trailing slash is the same presentation");
        let s = t("rtsp://h/live/studio/streamid=1").unwrap();
        assert_eq!((s.path.as_str(), s.track), ("live/studio", Some(1)));
        let c = t("rtsp://h/speech/count.wav/trackID=0").unwrap();
        assert_eq!((c.path.as_str(), c.track), ("speech/count.wav", Some(0)));
        let d = t("rtsp://h/with%20space.wav").unwrap();
        assert_eq!(d.path, "with space.wav");
        assert_eq!(t("*").unwrap().path, "");
        assert_eq!(t("rtsp://@127.0.0.1:8554").unwrap().path, "");
    }

    #[test]
    fn hostile_urls() {
        for uri in [
            "rtsp://h/a.wav/trackID=99",
            "rtsp://h/a.wav/trackID=-1",
            "rtsp://h/a.wav/trackID=18446744073709551616",
            "rtsp://h/a/%2e%2e%2fb",
            "rtsp://h/C:/x",
            "rtsp://h/a%00b",
            "rtsp://h/a\\..\\b",
            "rtsp://h/%ff",
            "rtsp://h/%4",
        ] {
            assert_eq!(t(uri), Err(Error::NotFound), "{uri}");
        }
        // url normalises dot segments away before we see them: still under root.
        assert_eq!(t("rtsp://h/../../etc/passwd").unwrap().path, "etc/passwd");
        assert_eq!(t("rtsp://h//etc/passwd").unwrap().path, "etc/passwd");
        assert_eq!(
            t("rtsp://h/%2e%2e/%2e%2e/etc/passwd").unwrap().path,
            "etc/passwd"
        );
        assert!(matches!(t("http://h/a"), Err(Error::BadRequest(_))));
        assert!(matches!(t("/a.wav"), Err(Error::BadRequest(_))));
        assert_eq!(
            parse_target(&format!("rtsp://h/{}", "a".repeat(4096)), 2048),
            Err(Error::UriTooLong)
        );
    }

    #[test]
    fn aggregate_urls() {
        for (uri, want) in [
            ("rtsp://h/a.wav", "rtsp://h/a.wav"),
            ("rtsp://h/a.wav/", "rtsp://h/a.wav"),
            ("rtsp://h/a.wav/trackID=1", "rtsp://h/a.wav"),
            ("rtsp://h/a.wav/trackID=1/", "rtsp://h/a.wav"),
            ("rtsp://h/live/radio", "rtsp://h/live/radio"),
        ] {
            assert_eq!(aggregate_url(uri), want, "{uri}");
        }
    }

    #[test]
    fn publisher_urls() {
        assert_eq!(live_channel_name("live/studio"), Ok("studio"));
        assert_eq!(live_channel_name("live/studio/stream=0"), Ok("studio"));
        assert_eq!(live_channel_name("live/a/b/c"), Err(Error::NotFound));
        assert_eq!(live_channel_name("music.wav").unwrap_err().status().0, 403);
    }
}
