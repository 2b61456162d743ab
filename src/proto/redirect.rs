//! Redirects (RFC 2326 §11.3.3 `302 Moved Temporarily` with `Location:`,
//! §12.25) and the server's `REDIRECT` request (§10.15): which edge a
//! reader is sent to, the `Location` it gets, and whether a URL names this
//! server itself (a loop). Pure: the caller passes the counters and the
//! edges' reader counts it polled; the server does the IO.
//!
//! A `Location` keeps the request's path and query and replaces only the
//! scheme, host and port with the edge's, so `rtsp://origin/a/b.wav?x=1`
//! sent to edge `rtsp://e1:8554` becomes `rtsp://e1:8554/a/b.wav?x=1`.

use std::net::IpAddr;

/// One node readers may be sent to: its RTSP base URL (`rtsp://e1:8554`,
/// no path) and, for `least_readers`, its HTTP API base
/// (`http://e1:8080`), whose `/api/v1/paths` gives its reader counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub url: String,
    pub api: Option<String>,
}

/// How an edge is picked among a rule's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// In turn, per rule.
    #[default]
    RoundRobin,
    /// The edge whose API reported the fewest readers (plus the readers
    /// sent there since); round robin when no edge answered.
    LeastReaders,
}

/// When a rule redirects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Once the path has this many local readers (sessions set up to play
    /// it here).
    Full {
        max_readers: usize,
    },
}

/// A `[[paths]]` rule's redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub edges: Vec<Edge>,
    pub policy: Policy,
    pub when: When,
}

impl Redirect {
    /// Whether a reader arriving now, with `local_readers` on the path
    /// already, is sent away.
    pub fn applies(&self, local_readers: usize) -> bool {
        match self.when {
            When::Always => true,
            When::Full { max_readers } => local_readers >= max_readers,
        }
    }

    /// The index of the edge to send a reader to. `turn` is this rule's
    /// round-robin counter (the caller increments it); `load(i)` is edge
    /// `i`'s known reader count, `None` when it did not answer its last
    /// poll (skipped). Ties among the least loaded go round robin.
    pub fn choose(&self, turn: usize, load: impl Fn(usize) -> Option<u64>) -> Option<usize> {
        let n = self.edges.len();
        if n == 0 {
            return None;
        }
        let rr = turn % n;
        if self.policy == Policy::LeastReaders {
            let least = (0..n)
                .map(|k| (rr + k) % n)
                .filter_map(|i| load(i).map(|l| (l, i)))
                .min_by_key(|&(l, _)| l);
            if let Some((_, i)) = least {
                return Some(i);
            }
        }
        Some(rr)
    }
}

/// Why a redirect URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` is not a URL")]
    Syntax(String),
    #[error("`{url}`: expected a {schemes} URL")]
    Scheme { url: String, schemes: &'static str },
    #[error("`{0}` has no host")]
    NoHost(String),
    #[error("`{0}`: a base URL only (scheme, host and port), without path, query or credentials")]
    NotBase(String),
}

/// The base URL `url` (scheme, host and port only) checked for one of
/// `schemes`, without a trailing `/`.
pub fn base_url(url: &str, schemes: &[&'static str]) -> Result<String, UrlError> {
    let u = url::Url::parse(url).map_err(|_| UrlError::Syntax(url.into()))?;
    if !schemes.contains(&u.scheme()) {
        return Err(UrlError::Scheme {
            url: url.into(),
            schemes: if schemes.contains(&"http") {
                "http://"
            } else {
                "rtsp:// or rtsps://"
            },
        });
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(url.into()));
    }
    let bare = matches!(u.path(), "" | "/")
        && u.query().is_none()
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none();
    if !bare {
        return Err(UrlError::NotBase(url.into()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The RTSP schemes a redirect may name.
pub const RTSP_SCHEMES: &[&str] = &["rtsp", "rtsps"];

/// The `Location` for a request to `uri` sent to `edge`: the edge's
/// scheme, host and port, with the request's path and query.
pub fn location(edge: &str, uri: &str) -> String {
    let tail = match url::Url::parse(uri) {
        Ok(u) => {
            let mut t = u.path().to_owned();
            if let Some(q) = u.query() {
                t.push('?');
                t.push_str(q);
            }
            t
        }
        // `*` or a URI the method would refuse: the edge's root.
        Err(_) => String::new(),
    };
    let tail = if tail.starts_with('/') {
        tail
    } else {
        format!("/{tail}")
    };
    format!("{}{tail}", edge.trim_end_matches('/'))
}

/// Where this server listens, to tell a redirect to itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// `[server] bind` (unspecified: every local address).
    pub bind: IpAddr,
    /// The RTSP ports it may take (`auto`: 554 and 8554), and RTSPS's.
    pub ports: Vec<u16>,
}

/// Whether the base URL `url` names this server: a port it listens on at
/// its bind address, or, bound to every address, at a loopback or
/// unspecified address or `localhost`. Other names of this machine and its
/// other interface addresses need IO: [`port_and_host`] and
/// [`is_self_ip`] let the caller resolve them.
pub fn is_self(url: &str, here: &Listening) -> bool {
    let Some((port, host)) = port_and_host(url) else {
        return false;
    };
    if !here.ports.contains(&port) {
        return false;
    }
    let ips: Vec<IpAddr> = match host {
        SelfHost::Localhost => {
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()]
        }
        SelfHost::Ip(ip) => vec![ip],
        SelfHost::Name(_) => return false,
    };
    ips.into_iter().any(|ip| is_self_ip(ip, here, |_| false))
}

/// The host of a URL, as far as telling this server goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfHost {
    Localhost,
    Ip(IpAddr),
    /// A DNS name, to resolve.
    Name(String),
}

/// The port (the scheme's default when absent) and host of `url`.
pub fn port_and_host(url: &str) -> Option<(u16, SelfHost)> {
    let u = url::Url::parse(url).ok()?;
    let default = if u.scheme() == "rtsps" { 322 } else { 554 };
    let port = u.port().unwrap_or(default);
    let host = match u.host()? {
        url::Host::Domain(d) if is_localhost(d) => SelfHost::Localhost,
        // `rtsp` is not a special scheme to `url`: its IPv4 hosts stay
        // opaque names.
        url::Host::Domain(d) => match d.parse::<IpAddr>() {
            Ok(ip) => SelfHost::Ip(ip),
            Err(_) => SelfHost::Name(d.to_owned()),
        },
        url::Host::Ipv4(a) => SelfHost::Ip(a.into()),
        url::Host::Ipv6(a) => SelfHost::Ip(a.into()),
    };
    Some((port, host))
}

/// Whether connecting to `ip` (on a port this server listens on) reaches
/// this server: its bind address, or, bound to every address, a loopback
/// or unspecified address or one that `local` says is this machine's.
pub fn is_self_ip(ip: IpAddr, here: &Listening, local: impl Fn(IpAddr) -> bool) -> bool {
    // Connecting to 0.0.0.0 reaches this machine's loopback.
    let ip = if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    ip == here.bind || (here.bind.is_unspecified() && (ip.is_loopback() || local(ip)))
}

fn is_localhost(host: &str) -> bool {
    let h = host.to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// The request header that marks a request from another rtspd pulling a
/// stream (an edge's upstream client, RFC 2326 §12.43 `Via`): such a
/// request is never redirected, so an edge always gets the stream from the
/// origin it asked and never from another edge or itself.
pub const VIA_HEADER: &str = "Via";

/// The token an rtspd puts in its `Via` (`Via: RTSP/1.0 NODE (rtspd)`).
pub const VIA_TOKEN: &str = "rtspd";

/// Whether a `Via` value says another rtspd relays this request.
pub fn via_rtspd(value: &str) -> bool {
    value
        .split(',')
        .any(|hop| hop.to_ascii_lowercase().contains(VIA_TOKEN))
}

/// A server-to-client `REDIRECT` request (RFC 2326 §10.15) for session
/// `session` of `uri`, sending the client to `location`.
pub fn redirect_request(uri: &str, cseq: u32, session: &str, location: &str) -> Vec<u8> {
    format!(
        "REDIRECT {uri} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\nLocation: {location}\r\n\
         Server: rtspd/{}\r\nContent-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(policy: Policy, n: usize) -> Redirect {
        Redirect {
            edges: (0..n)
                .map(|i| Edge {
                    url: format!("rtsp://e{i}:8554"),
                    api: Some(format!("http://e{i}:8080")),
                })
                .collect(),
            policy,
            when: When::Always,
        }
    }

    #[test]
    fn round_robin_takes_turns_and_least_readers_the_emptiest() {
        let rr = rule(Policy::RoundRobin, 2);
        let picks: Vec<_> = (0..4).filter_map(|t| rr.choose(t, |_| Some(0))).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        let lr = rule(Policy::LeastReaders, 3);
        let loads = [Some(5), Some(2), None];
        assert_eq!(lr.choose(0, |i| loads[i]), Some(1));
        // Ties go in turn; nobody answering falls back to round robin.
        assert_eq!(lr.choose(0, |_| Some(1)), Some(0));
        assert_eq!(lr.choose(1, |_| Some(1)), Some(1));
        assert_eq!(lr.choose(2, |_| None), Some(2));
        assert_eq!(rule(Policy::RoundRobin, 0).choose(0, |_| None), None);
    }

    #[test]
    fn full_applies_from_max_readers_on() {
        let mut r = rule(Policy::RoundRobin, 1);
        assert!(r.applies(0));
        r.when = When::Full { max_readers: 2 };
        assert!(!r.applies(1));
        assert!(r.applies(2));
    }

    #[test]
    fn location_keeps_path_and_query() {
        let cases = [
            ("rtsp://o:554/a/b.wav?x=1", "rtsp://e1:8554/a/b.wav?x=1"),
            (
                "rtsp://o/clip.mp4/trackID=1",
                "rtsp://e1:8554/clip.mp4/trackID=1",
            ),
            ("rtsp://o:554/caf%C3%A9.wav", "rtsp://e1:8554/caf%C3%A9.wav"),
            ("*", "rtsp://e1:8554/"),
        ];
        for (uri, want) in cases {
            assert_eq!(location("rtsp://e1:8554", uri), want, "{uri}");
            assert_eq!(location("rtsp://e1:8554/", uri), want, "{uri}");
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("rtsp://e1:8554/", RTSP_SCHEMES).as_deref(),
            Ok("rtsp://e1:8554")
        );
        assert!(base_url("rtsps://e1", RTSP_SCHEMES).is_ok());
        assert!(base_url("http://e1:8080", &["http"]).is_ok());
        for bad in [
            "e1:8554",
            "http://e1",
            "rtsp://e1/path",
            "rtsp://u:p@e1",
            "rtsp://e1?x",
            "rtsp://",
        ] {
            assert!(base_url(bad, RTSP_SCHEMES).is_err(), "{bad}");
        }
    }

    #[test]
    fn self_urls() {
        let here = Listening {
            bind: "0.0.0.0".parse().unwrap(),
            ports: vec![554, 8554],
        };
        for url in [
            "rtsp://127.0.0.1:8554",
            "rtsp://localhost",
            "rtsp://LOCALHOST:8554",
            "rtsp://[::1]:554",
            "rtsp://0.0.0.0:8554",
            "rtsp://127.0.0.2:8554",
        ] {
            assert!(is_self(url, &here), "{url}");
        }
        for url in [
            "rtsp://127.0.0.1:8555",
            "rtsp://10.0.0.1:8554",
            "rtsp://edge1:8554",
        ] {
            assert!(!is_self(url, &here), "{url}");
        }
        let bound = Listening {
            bind: "10.0.0.5".parse().unwrap(),
            ports: vec![8554],
        };
        assert!(is_self("rtsp://10.0.0.5:8554", &bound));
        assert!(!is_self("rtsp://10.0.0.6:8554", &bound));
        assert!(!is_self("rtsp://127.0.0.1:8554", &bound));
        // Origin and edges on loopback addresses of their own.
        let lo = Listening {
            bind: "127.0.0.1".parse().unwrap(),
            ports: vec![8554],
        };
        assert!(is_self("rtsp://127.0.0.1:8554", &lo));
        assert!(is_self("rtsp://localhost:8554", &lo));
        assert!(!is_self("rtsp://127.0.0.2:8554", &lo));
    }

    #[test]
    fn via_and_the_redirect_request() {
        assert!(via_rtspd("RTSP/1.0 edge1 (rtspd)"));
        assert!(via_rtspd("RTSP/1.0 proxy, RTSP/1.0 e1 (rtspd/0.1)"));
        assert!(!via_rtspd("RTSP/1.0 someproxy"));
        let r = String::from_utf8(redirect_request(
            "rtsp://o/a.wav",
            3,
            "abc",
            "rtsp://e/a.wav",
        ))
        .unwrap();
        assert!(r.starts_with("REDIRECT rtsp://o/a.wav RTSP/1.0\r\nCSeq: 3\r\nSession: abc\r\n"));
        assert!(r.contains("Location: rtsp://e/a.wav\r\n") && r.ends_with("\r\n\r\n"));
    }
}
