//! The client's UDP side: an RTP/RTCP socket pair, RTP header fields, and
//! receiving the server's RTCP (RFC 3550).

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use rtspd::proto::rtcp::{parse_compound, Packet, SenderInfo};

/// The read timeout a pair's sockets are left with.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A client RTP/RTCP socket pair: an even port and the next one.
pub struct UdpPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl UdpPair {
    /// A pair on 127.0.0.1.
    pub fn bind() -> Self {
        Self::bind_on(Ipv4Addr::LOCALHOST)
    }

    /// A pair on `ip` (another loopback address, e.g. 127.0.0.2).
    pub fn bind_on(ip: Ipv4Addr) -> Self {
        for _ in 0..200 {
            let rtp = UdpSocket::bind((ip, 0)).expect("bind udp");
            let p = rtp.local_addr().unwrap().port();
            if p % 2 != 0 || p == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)) {
                rtp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                rtcp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                return Self { rtp, rtcp };
            }
        }
        panic!("no even UDP port pair on {ip}");
    }

    pub fn port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }

    pub fn transport(&self) -> String {
        format!(
            "Transport: RTP/AVP;unicast;client_port={}-{}",
            self.port(),
            self.port() + 1
        )
    }

    /// Receives one RTP datagram, with its arrival time.
    pub fn recv_rtp(&self) -> Option<(Vec<u8>, Instant)> {
        let mut buf = vec![0u8; 2048];
        let n = self.rtp.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some((buf, Instant::now()))
    }

    /// Receives RTP until `quiet` has passed with nothing arriving.
    pub fn recv_rtp_until_quiet(&self, quiet: Duration) -> Vec<(Vec<u8>, Instant)> {
        self.until_quiet(quiet, Duration::from_secs(3600))
    }

    /// RTP datagrams until nothing arrives for `quiet` (for at most `max`).
    pub fn until_quiet(&self, quiet: Duration, max: Duration) -> Vec<(Vec<u8>, Instant)> {
        let end = Instant::now() + max;
        let mut out = Vec::new();
        self.rtp.set_read_timeout(Some(quiet)).unwrap();
        while Instant::now() < end {
            match self.recv_rtp() {
                Some(p) => out.push(p),
                None => break,
            }
        }
        self.rtp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        out
    }

    /// Every RTP datagram arriving within `dur`.
    pub fn collect(&self, dur: Duration) -> Vec<(Vec<u8>, Instant)> {
        let end = Instant::now() + dur;
        let mut out = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.rtp
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            out.extend(self.recv_rtp());
        }
        self.rtp.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        out
    }

    /// How many RTP datagrams are waiting, without blocking.
    pub fn drain_now(&self) -> usize {
        self.rtp.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while n < 100_000 && self.rtp.recv(&mut buf).is_ok() {
            n += 1;
        }
        self.rtp.set_nonblocking(false).unwrap();
        n
    }
}

/// Fields of an RTP packet.
pub fn rtp_seq(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}
pub fn rtp_ts(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}
pub fn rtp_ssrc(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}
pub fn rtp_payload(p: &[u8]) -> &[u8] {
    &p[12..]
}

/// The next RTCP datagram on `sock` within `wait`, which must be a valid
/// compound packet, with its arrival time.
pub fn recv_rtcp(sock: &UdpSocket, wait: Duration) -> Option<(Vec<Packet>, Instant)> {
    sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = vec![0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    Some((
        parse_compound(&buf[..n]).expect("valid RTCP from the server"),
        Instant::now(),
    ))
}

/// RTCP arriving on `sock` within `wait` until `pick` takes something from
/// a packet.
fn recv_rtcp_until<T>(
    sock: &UdpSocket,
    wait: Duration,
    mut pick: impl FnMut(Packet) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (packets, _) = recv_rtcp(sock, left)?;
        if let Some(t) = packets.into_iter().find_map(&mut pick) {
            return Some(t);
        }
    }
}

/// The first sender report arriving on `sock` within `wait`: its SSRC and
/// sender info.
pub fn recv_sr(sock: &UdpSocket, wait: Duration) -> Option<(u32, SenderInfo)> {
    recv_rtcp_until(sock, wait, |p| match p {
        Packet::SenderReport { ssrc, info, .. } => Some((ssrc, info)),
        _ => None,
    })
}

/// Whether an RTCP BYE arrives on `sock` within `wait`.
pub fn bye_within(sock: &UdpSocket, wait: Duration) -> bool {
    recv_rtcp_until(sock, wait, |p| {
        matches!(p, Packet::Goodbye { .. }).then_some(())
    })
    .is_some()
}

/// Datagrams the kernel dropped because a receiving socket's buffer was
/// full, machine-wide since boot (`Udp: RcvbufErrors` in /proc/net/snmp).
/// A UDP client that misses packets while this rises lost them at its own
/// socket, not on the server's side.
pub fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
