//! `--source-ips`: the local addresses the load tester's sessions come
//! from, and the UDP receive port pairs that sessions on different
//! addresses share.
//!
//! A server caps sessions and connections per client IP (rtspd: 256 of
//! each by default), and real listeners come from many IPs. Loopback owns
//! all of 127.0.0.0/8, so one machine can play thousands of listeners from
//! hundreds of addresses. Session `i` uses address `i mod K` of the `K`
//! listed: its control connection is bound there before it connects, and
//! its RTP and RTCP arrive there (the server sends to the RTSP peer's IP).
//!
//! **Shared port pairs.** A pair of its own costs a UDP session two
//! descriptors beside its TCP one, so one machine's descriptor limit caps
//! a local test. With two or more addresses, one RTP/RTCP pair bound to
//! the wildcard address (`0.0.0.0:P`, `P+1`) serves every session that
//! announced `client_port=P-(P+1)`, each from its own address; the
//! receiver tells them apart by each datagram's destination address
//! (`IP_PKTINFO`), and sends each session's receiver reports from that
//! address, so the server sees them come from the session's own RTCP
//! address. An SSRC would not tell them apart: every listener of a live
//! channel gets the same one.
//!
//! A pair carries at most one session per address (a server refuses a
//! second session of one IP on ports in use, and the demultiplexing needs
//! it), and only as many sessions as its receive buffer has room for at
//! [`BUF_PER_SESSION`] each (at most [`MAX_PER_PAIR`]): a socket of its own
//! buffers 256 small datagrams by default, 5 s of 20 ms audio, which rides
//! out a stalled receiver thread or a server catching up in one burst; a
//! shared one must keep some of that. Session `i` uses pair slot `i / C`,
//! `C <= K` sessions per pair: the `C` sessions of a slot are consecutive,
//! so on distinct addresses, and two sessions on one address are
//! `K >= C` apart, so in distinct slots. Each track of a slot has its own
//! pair, bound the first time a session asks for it and kept for the run.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::Mutex;

use super::udp::Receiver;
use super::MAX_SESSIONS;
use crate::net::mmsg;

/// Most sessions on one shared pair, however large its buffer.
pub const MAX_PER_PAIR: usize = 256;
/// Receive buffer a session on a shared pair is given (the kernel counts
/// about 830 bytes for a small datagram: 128 KiB holds some 160, 3 s of
/// 20 ms audio).
pub const BUF_PER_SESSION: usize = 128 << 10;
/// Receive buffer asked for on a shared socket: with `SO_RCVBUFFORCE`
/// where permitted (`CAP_NET_ADMIN`), else `SO_RCVBUF`, which the kernel
/// caps at `net.core.rmem_max`. The kernel doubles what it grants.
const SHARED_RCVBUF: libc::c_int = 4 << 20;

/// A validated `--source-ips` list: loopback addresses of one family, no
/// duplicates, at most [`MAX_SESSIONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIps(Vec<IpAddr>);

impl SourceIps {
    pub fn new(addrs: Vec<IpAddr>) -> Result<Self, String> {
        check(&addrs)?;
        Ok(Self(addrs))
    }

    pub fn addrs(&self) -> &[IpAddr] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<IpAddr> {
        self.0
    }
}

/// `127.0.0.2,127.0.0.9`, `127.0.0.2-127.0.0.251`, `127.0.0.2-251` (the
/// end's last octet), `::1`, or any comma-separated mix of one family.
impl FromStr for SourceIps {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut addrs = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!("empty item in {s:?}"));
            }
            match item.split_once('-') {
                Some((a, b)) => range(item, a.trim(), b.trim(), &mut addrs)?,
                None => addrs.push(
                    item.parse()
                        .map_err(|_| format!("{item:?} is not an IP address"))?,
                ),
            }
        }
        Self::new(addrs)
    }
}

/// Appends the IPv4 range `a-b` (inclusive, full-address increments).
fn range(item: &str, a: &str, b: &str, out: &mut Vec<IpAddr>) -> Result<(), String> {
    let bad = || format!("{item:?}: a range is a.b.c.d-e.f.g.h or a.b.c.d-h (IPv4 only)");
    let a: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let b = match b.parse::<u8>() {
        Ok(last) => {
            let [o0, o1, o2, _] = a.octets();
            Ipv4Addr::new(o0, o1, o2, last)
        }
        Err(_) => b.parse().map_err(|_| bad())?,
    };
    let (lo, hi) = (u32::from(a), u32::from(b));
    if hi < lo {
        return Err(format!("{item:?} ends before it starts"));
    }
    // Counted before anything is allocated for it.
    let n = (hi - lo) as usize + 1;
    if out.len() + n > MAX_SESSIONS {
        return Err(format!("more than {MAX_SESSIONS} addresses"));
    }
    out.extend((lo..=hi).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
    Ok(())
}

/// What a source address list must be (also checked for [`super::Options`]
/// built in code).
pub(super) fn check(addrs: &[IpAddr]) -> Result<(), String> {
    if addrs.len() > MAX_SESSIONS {
        return Err(format!("more than {MAX_SESSIONS} addresses"));
    }
    if let Some(a) = addrs.iter().find(|a| !a.is_loopback()) {
        return Err(format!(
            "{a} is not a loopback address: only 127.0.0.0/8 and ::1 can be \
             source addresses, so the server must run on this machine"
        ));
    }
    if addrs.iter().any(IpAddr::is_ipv4) && addrs.iter().any(IpAddr::is_ipv6) {
        return Err("the list mixes IPv4 and IPv6".into());
    }
    let mut seen = HashSet::new();
    if let Some(a) = addrs.iter().find(|a| !seen.insert(**a)) {
        return Err(format!("{a} is listed twice"));
    }
    Ok(())
}

/// The run's source addresses and, when sessions share pairs, the pairs.
pub(super) struct Sources {
    addrs: Vec<IpAddr>,
    shared: Option<SharedPairs>,
}

impl Sources {
    /// UDP sessions share pairs when there are two addresses or more, as
    /// many on a pair as the receive buffer the kernel grants has room for.
    pub(super) fn new(addrs: Vec<IpAddr>, udp: bool) -> Self {
        let wildcard = wildcard(&addrs);
        let granted = std::net::UdpSocket::bind((wildcard, 0))
            .ok()
            .and_then(|probe| set_rcvbuf(&probe).ok())
            .unwrap_or(0);
        let per_pair = (granted / BUF_PER_SESSION).clamp(1, MAX_PER_PAIR);
        Self::with_per_pair(addrs, udp, per_pair)
    }

    /// [`Self::new`] with at most `per_pair` sessions on a shared pair.
    fn with_per_pair(addrs: Vec<IpAddr>, udp: bool, per_pair: usize) -> Self {
        let shared = (udp && addrs.len() >= 2).then(|| SharedPairs {
            wildcard: wildcard(&addrs),
            per_pair: per_pair.clamp(1, addrs.len()),
            ports: Mutex::new(HashMap::new()),
        });
        Self { addrs, shared }
    }

    /// Sessions on one shared pair (0: none shared).
    pub(super) fn per_pair(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.per_pair)
    }

    /// Where session `i` comes from (`None`: where the OS routes it).
    pub(super) fn addr(&self, session: usize) -> Option<IpAddr> {
        (!self.addrs.is_empty()).then(|| self.addrs[session % self.addrs.len()])
    }

    pub(super) fn shared(&self) -> Option<&SharedPairs> {
        self.shared.as_ref()
    }

    /// Shared pairs bound so far.
    pub(super) fn shared_pairs(&self) -> usize {
        self.shared.as_ref().map_or(0, SharedPairs::len)
    }

    /// Pairs the run may bind for `sessions` of `tracks` tracks each.
    pub(super) fn pairs_needed(&self, sessions: usize, tracks: usize) -> usize {
        match &self.shared {
            Some(s) => sessions.div_ceil(s.per_pair) * tracks,
            None => sessions * tracks,
        }
    }
}

fn wildcard(addrs: &[IpAddr]) -> IpAddr {
    if addrs.first().is_some_and(IpAddr::is_ipv6) {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// Asks for [`SHARED_RCVBUF`]; returns the receive buffer granted, bytes.
fn set_rcvbuf(s: &std::net::UdpSocket) -> io::Result<usize> {
    use crate::net::{get_int_option, set_int_option};
    let fd = s.as_fd();
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SHARED_RCVBUF).is_err() {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SHARED_RCVBUF)?;
    }
    let granted = get_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
    Ok(usize::try_from(granted).unwrap_or(0))
}

/// The wildcard-bound pairs, by (slot, track): see the module docs.
pub(super) struct SharedPairs {
    wildcard: IpAddr,
    per_pair: usize,
    ports: Mutex<HashMap<(usize, usize), u16>>,
}

impl SharedPairs {
    /// The RTP port of the pair session `session`'s track `track` uses,
    /// bound and handed to `receiver` the first time it is asked for, so
    /// the receiver holds it before any session registers on it.
    pub(super) fn port(
        &self,
        session: usize,
        track: usize,
        receiver: &Receiver,
    ) -> io::Result<u16> {
        let key = (session / self.per_pair, track);
        // A std mutex, held for two binds and never across an await.
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&p) = ports.get(&key) {
            return Ok(p);
        }
        let (rtp, rtcp) = crate::net::bind_pair(self.wildcard, 0)?;
        let v6 = self.wildcard.is_ipv6();
        for s in [&rtp, &rtcp] {
            mmsg::enable_pktinfo(s.as_fd(), v6)?;
        }
        if let Err(e) = set_rcvbuf(&rtp) {
            tracing::debug!(error = %e, "receive buffer left as it is");
        }
        if let Err(e) = mmsg::enable_timestamps(rtp.as_fd()) {
            tracing::debug!(error = %e, "no kernel receive timestamps");
        }
        let port = rtp.local_addr()?.port();
        if !receiver.add_pair(
            mio::net::UdpSocket::from_std(rtp),
            mio::net::UdpSocket::from_std(rtcp),
        ) {
            return Err(io::Error::other("receiver stopped"));
        }
        ports.insert(key, port);
        Ok(port)
    }

    fn len(&self) -> usize {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<IpAddr>, String> {
        s.parse::<SourceIps>().map(SourceIps::into_vec)
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse("127.0.0.2").unwrap(), [v4(2)]);
        assert_eq!(parse("127.0.0.2, 127.0.0.9").unwrap(), [v4(2), v4(9)]);
        assert_eq!(parse("127.0.0.2-127.0.0.4").unwrap(), [v4(2), v4(3), v4(4)]);
        assert_eq!(
            parse("127.0.0.2-4,127.0.0.9").unwrap(),
            [v4(2), v4(3), v4(4), v4(9)]
        );
        assert_eq!(parse("127.0.0.7-7").unwrap(), [v4(7)]);
        // Full-address increments carry over octets.
        assert_eq!(
            parse("127.0.0.255-127.0.1.1").unwrap(),
            [
                IpAddr::from([127, 0, 0, 255]),
                IpAddr::from([127, 0, 1, 0]),
                IpAddr::from([127, 0, 1, 1])
            ]
        );
        assert_eq!(parse("127.0.0.2-127.0.0.251").unwrap().len(), 250);
        assert_eq!(parse("::1").unwrap(), [IpAddr::from(Ipv6Addr::LOCALHOST)]);
    }

    #[test]
    fn bad_lists_say_why() {
        for (s, why) in [
            ("", "empty item"),
            ("127.0.0.2,,127.0.0.3", "empty item"),
            ("localhost", "not an IP address"),
            ("127.0.0.9-127.0.0.2", "ends before it starts"),
            ("127.0.0.2-300", "a range is"),
            ("::1-::2", "IPv4 only"),
            ("10.0.0.1", "not a loopback address"),
            ("127.0.0.2-127.0.0.3,192.168.1.1", "not a loopback address"),
            ("127.0.0.1,::1", "mixes IPv4 and IPv6"),
            ("127.0.0.2-5,127.0.0.4", "127.0.0.4 is listed twice"),
            ("127.0.0.0-127.255.255.255", "more than 20000 addresses"),
        ] {
            let e = parse(s).expect_err(s);
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn sessions_on_one_pair_have_distinct_addresses() {
        for (k, n) in [(10, 40), (250, 6000), (300, 1000), (3, 3)] {
            let addrs: Vec<IpAddr> = (0..k)
                .map(|i| IpAddr::V4(Ipv4Addr::from(0x7f00_0002 + i as u32)))
                .collect();
            for per_pair in [1, 3, 64, MAX_PER_PAIR] {
                let s = Sources::with_per_pair(addrs.clone(), true, per_pair);
                let per_pair = s.per_pair();
                assert!(per_pair <= k);
                let mut used = HashSet::new();
                for i in 0..n {
                    let slot = i / per_pair;
                    assert!(used.insert((slot, s.addr(i))), "k {k} n {n} session {i}");
                }
                assert_eq!(s.pairs_needed(n, 1), n.div_ceil(per_pair));
            }
        }
        let two = vec![v4(2), v4(3)];
        let s = Sources::with_per_pair(two.clone(), true, 64);
        assert_eq!(s.pairs_needed(6000, 1), 3000);
        assert!(Sources::new(two.clone(), true).per_pair() >= 1);
        assert!(Sources::new(vec![v4(2)], true).shared().is_none());
        assert!(Sources::new(two, false).shared().is_none());
        assert_eq!(Sources::new(Vec::new(), true).addr(5), None);
    }
}
