//! Path rules: who may read or publish what, from where. The first rule
//! whose `match` fits the path decides; with no rule matching, anyone may
//! read, and publishing follows the server's own publish settings.
//!
//! A pattern is an exact path or a glob over `/`-separated segments: `*`
//! matches any run of characters within one segment, `**` as a whole
//! segment matches any number of segments (none included). Leading `/`
//! is ignored on both sides, so `/live/studio` and `live/studio` match
//! the same requests.
//!
//! A rule may also send readers elsewhere ([`PathRule::redirect`]: a 302,
//! RFC 2326 §11.3.3, [`crate::proto::redirect`]); the same first rule
//! that fits decides.

use std::net::IpAddr;

use crate::proto::redirect::Redirect;

/// Who a permission is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// `"anyone"`: no credentials needed.
    Anyone,
    /// These users (an empty list: nobody).
    Users(Vec<String>),
}

impl Who {
    /// From a config list: `["anyone"]` (alone or among names) is everyone.
    pub fn from_list(names: &[String]) -> Self {
        if names.iter().any(|n| n == "anyone") {
            Self::Anyone
        } else {
            Self::Users(names.to_vec())
        }
    }

    /// Whether `name` (an authenticated user or token) is admitted.
    pub fn admits(&self, name: &str) -> bool {
        match self {
            Self::Anyone => true,
            Self::Users(names) => names.iter().any(|n| n == name),
        }
    }
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is in the network. An IPv4-mapped IPv6 client
    /// (`::ffff:a.b.c.d`) is compared as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// One `[[paths]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    pub pattern: String,
    pub read: Who,
    pub publish: Who,
    pub allow_ips: Vec<Cidr>,
    pub deny_ips: Vec<Cidr>,
    /// Readers of the path are sent to other nodes.
    pub redirect: Option<Redirect>,
}

/// What a request wants to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Publish,
}

/// What a rule says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Credentials are needed (401 with a challenge).
    NeedUser,
    /// Not for this user or this address (403).
    Forbidden,
}

impl PathRule {
    /// Whether this rule's pattern fits `path`.
    pub fn matches(&self, path: &str) -> bool {
        glob(&self.pattern, path)
    }

    /// Whether the address may reach the path at all.
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        !self.deny_ips.iter().any(|c| c.contains(ip))
            && (self.allow_ips.is_empty() || self.allow_ips.iter().any(|c| c.contains(ip)))
    }

    /// The decision for `user` (if authenticated) from `ip`.
    pub fn decide(&self, access: Access, ip: IpAddr, user: Option<&str>) -> Decision {
        if !self.ip_allowed(ip) {
            return Decision::Forbidden;
        }
        let who = match access {
            Access::Read => &self.read,
            Access::Publish => &self.publish,
        };
        match (who, user) {
            (Who::Anyone, _) => Decision::Allow,
            (Who::Users(_), None) => Decision::NeedUser,
            (who, Some(u)) if who.admits(u) => Decision::Allow,
            (Who::Users(_), Some(_)) => Decision::Forbidden,
        }
    }

    /// Whether a request needs credentials before [`PathRule::decide`]
    /// can allow it.
    pub fn needs_user(&self, access: Access) -> bool {
        let who = match access {
            Access::Read => &self.read,
            Access::Publish => &self.publish,
        };
        matches!(who, Who::Users(_))
    }
}

/// The first rule in `rules` that fits `path`.
pub fn find<'a>(rules: &'a [PathRule], path: &str) -> Option<&'a PathRule> {
    rules.iter().find(|r| r.matches(path))
}

/// `pattern` against `path`, segment by segment.
pub fn glob(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    segments(&p, &s)
}

fn segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        // `**` takes zero or more segments. Patterns are short (config), so
        // the backtracking is bounded by pattern × path segments.
        Some((&"**", rest)) => (0..=s.len()).any(|k| segments(rest, &s[k..])),
        Some((first, rest)) => s.split_first().is_some_and(|(seg, tail)| {
            segment(first.as_bytes(), seg.as_bytes()) && segments(rest, tail)
        }),
    }
}

/// `*` within one segment (iterative, linear backtracking).
fn segment(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("/live/studio", "live/studio", true),
            ("/live/studio", "live/studio2", false),
            ("/private/**", "private/a/b.wav", true),
            ("/private/**", "private", true),
            ("/private/**", "privateer/x", false),
            ("/live/*", "live/ch", true),
            ("/live/*", "live/ch/x", false),
            ("/clips/*.wav", "clips/a.wav", true),
            ("/clips/*.wav", "clips/a.mp4", false),
            ("/**/secret*", "a/b/secret.wav", true),
            ("/**", "anything/at/all", true),
            ("/a*b*c", "axxbyyc", true),
            ("/a*b*c", "axxbyy", false),
            ("clip.wav", "clip.wav", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "::/129", "1.2.3.4/"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn decisions() {
        let r = PathRule {
            pattern: "/live/**".into(),
            read: Who::from_list(&["alice".into(), "bob".into()]),
            publish: Who::from_list(&["bob".into()]),
            allow_ips: vec!["127.0.0.0/8".parse().unwrap()],
            deny_ips: vec!["127.0.0.9".parse().unwrap()],
            redirect: None,
        };
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(r.decide(Access::Read, lo, None), Decision::NeedUser);
        assert_eq!(r.decide(Access::Read, lo, Some("alice")), Decision::Allow);
        assert_eq!(
            r.decide(Access::Publish, lo, Some("alice")),
            Decision::Forbidden
        );
        assert_eq!(r.decide(Access::Publish, lo, Some("bob")), Decision::Allow);
        let denied: IpAddr = "127.0.0.9".parse().unwrap();
        assert_eq!(
            r.decide(Access::Read, denied, Some("bob")),
            Decision::Forbidden
        );
        let outside: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            r.decide(Access::Read, outside, Some("bob")),
            Decision::Forbidden
        );
        let open = PathRule {
            read: Who::from_list(&["anyone".into()]),
            allow_ips: vec![],
            deny_ips: vec![],
            ..r.clone()
        };
        assert_eq!(open.decide(Access::Read, outside, None), Decision::Allow);
        assert!(!open.needs_user(Access::Read));
        let rules = [open.clone(), r];
        assert_eq!(find(&rules, "/live/x").map(|r| &r.read), Some(&Who::Anyone));
        assert_eq!(find(&rules, "clip.wav"), None);
    }
}
