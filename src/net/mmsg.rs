//! Batched UDP I/O: `sendmmsg(2)` and `recvmmsg(2)` (Linux).
//!
//! The pacing loop hands every datagram due in one tick to [`send_batch`],
//! so a tick costs one system call per [`MAX_BATCH`] datagrams instead of
//! one per datagram; the load tester drains a ready socket with
//! [`recv_batch`]. Neither blocks: both are meant for non-blocking sockets.
//!
//! A socket bound to the wildcard address serves several local addresses
//! at once: with [`enable_pktinfo`] on, [`RecvBufs::dest`] says which
//! address each datagram was sent to, and [`send_from`] picks the source
//! address of a reply (`IP_PKTINFO`, ip(7); `IPV6_PKTINFO`, RFC 3542 §6).
//!
//! A datagram the kernel refuses (a full buffer, `ECONNREFUSED` from an
//! earlier ICMP error, an unreachable address) is reported in the result
//! and skipped; it never stops the rest of the batch.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most datagrams given to the kernel in one call (Linux's `UIO_MAXIOV` is
/// 1024; 64 already makes the per-call cost negligible).
pub const MAX_BATCH: usize = 64;

/// What happened to a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Refused because the socket buffer was full (`EAGAIN`, `ENOBUFS`).
    pub dropped: usize,
    /// Refused for any other reason.
    pub failed: usize,
    /// System calls made.
    pub calls: usize,
}

impl std::ops::AddAssign for SendOutcome {
    fn add_assign(&mut self, o: Self) {
        self.sent += o.sent;
        self.dropped += o.dropped;
        self.failed += o.failed;
        self.calls += o.calls;
    }
}

fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Sends every `(dest, bytes)` from the non-blocking socket `fd`, up to
/// [`MAX_BATCH`] per call.
pub fn send_batch(
    fd: std::os::fd::BorrowedFd<'_>,
    datagrams: &[(SocketAddr, &[u8])],
) -> SendOutcome {
    send_batch_of(fd, datagrams, MAX_BATCH)
}

/// [`send_batch`] with at most `per_call` datagrams per `sendmmsg` (1 is
/// one system call per datagram, the baseline batching is measured against).
pub fn send_batch_of(
    fd: std::os::fd::BorrowedFd<'_>,
    datagrams: &[(SocketAddr, &[u8])],
    per_call: usize,
) -> SendOutcome {
    let per_call = per_call.clamp(1, 1024);
    let mut out = SendOutcome::default();
    let mut addrs: Vec<libc::sockaddr_storage> = Vec::with_capacity(per_call);
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(per_call);
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(per_call);
    for chunk in datagrams.chunks(per_call) {
        addrs.clear();
        iovs.clear();
        msgs.clear();
        for (dest, data) in chunk {
            addrs.push(sockaddr::Storage::from(*dest).0);
            iovs.push(libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            });
        }
        for (i, (dest, _)) in chunk.iter().enumerate() {
            // SAFETY: an all-zero `msghdr` is valid (null pointers, zero
            // lengths); the pointers set below point into `addrs` and
            // `iovs`, which are not touched again until the calls are done.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = std::ptr::addr_of_mut!(addrs[i]).cast();
            hdr.msg_namelen = sockaddr::len(dest);
            hdr.msg_iov = std::ptr::addr_of_mut!(iovs[i]);
            hdr.msg_iovlen = 1;
            msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        send_messages(fd, &mut msgs, |_| 1, &mut out);
    }
    out
}

/// Sends `msgs` with as few `sendmmsg` calls as the kernel allows, adding
/// to `out`: message `i` carries `datagrams(i)` datagrams. A refused
/// message (full buffer, or an error such as `ECONNREFUSED`) is counted
/// and skipped; the rest still go.
pub(super) fn send_messages(
    fd: std::os::fd::BorrowedFd<'_>,
    msgs: &mut [libc::mmsghdr],
    datagrams: impl Fn(usize) -> usize,
    out: &mut SendOutcome,
) {
    use std::os::fd::AsRawFd;

    let mut at = 0;
    while at < msgs.len() {
        let rest = &mut msgs[at..];
        // SAFETY: `rest` is a live slice of initialised `mmsghdr`s whose
        // buffers outlive the call (the caller's); the count passed is its
        // length.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                rest.as_mut_ptr(),
                rest.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        out.calls += 1;
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first message of `rest` was refused: skip it.
            if is_full(&e) {
                out.dropped += datagrams(at);
            } else {
                out.failed += datagrams(at);
            }
            at += 1;
        } else {
            let n = n as usize;
            out.sent += (at..at + n).map(&datagrams).sum::<usize>();
            at += n;
        }
    }
}

/// Buffers for [`recv_batch`]: `count` datagrams of up to `size` bytes,
/// and the kernel-facing headers, allocated once and reused by every call.
pub struct RecvBufs {
    data: Vec<u8>,
    size: usize,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
    /// Control-message space per datagram, as `u64`s for alignment.
    control: Vec<u64>,
    stamps: Vec<Option<SystemTime>>,
    dests: Vec<Option<IpAddr>>,
    /// The segment size of a coalesced (`UDP_GRO`) message, else 0.
    segments: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for RecvBufs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBufs")
            .field("count", &self.lens.len())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// C structs for which all-zero bytes are a valid value (null pointers,
/// zero lengths).
trait ZeroValid: Sized {}
impl ZeroValid for libc::sockaddr_storage {}
impl ZeroValid for libc::iovec {}
impl ZeroValid for libc::mmsghdr {}

fn zeroed<T: ZeroValid>() -> T {
    // SAFETY: `ZeroValid` is implemented only for types whose all-zero
    // representation is valid; `recv_batch` points them at real buffers
    // before every call.
    unsafe { std::mem::zeroed() }
}

/// `u64`s of control-message space per datagram: room for a timestamp
/// (`CMSG_SPACE(16)`, 32 bytes), an `in6_pktinfo` (`CMSG_SPACE(20)`, 40
/// bytes) and a `UDP_GRO` segment size (`CMSG_SPACE(4)`, 24 bytes).
const CONTROL_WORDS: usize = 16;

impl RecvBufs {
    pub fn new(count: usize, size: usize) -> Self {
        let count = count.clamp(1, 1024);
        let size = size.max(1);
        Self {
            data: vec![0; count * size],
            size,
            lens: vec![0; count],
            from: vec![None; count],
            control: vec![0; count * CONTROL_WORDS],
            stamps: vec![None; count],
            dests: vec![None; count],
            segments: vec![0; count],
            addrs: (0..count).map(|_| zeroed()).collect(),
            iovs: (0..count).map(|_| zeroed()).collect(),
            msgs: (0..count).map(|_| zeroed()).collect(),
        }
    }

    /// When the kernel received datagram `i` of the last [`recv_batch`], if
    /// the socket has [`enable_timestamps`] on.
    pub fn stamp(&self, i: usize) -> Option<SystemTime> {
        self.stamps.get(i).copied().flatten()
    }

    /// The local address datagram `i` of the last [`recv_batch`] was sent
    /// to, if the socket has [`enable_pktinfo`] on.
    pub fn dest(&self, i: usize) -> Option<IpAddr> {
        self.dests.get(i).copied().flatten()
    }

    /// The datagrams message `i` of the last [`recv_batch`] holds: itself,
    /// or, on a socket with [`enable_gro`] on, each of the equal-size
    /// datagrams (the last may be shorter) the kernel kept together.
    pub fn datagrams(&self, i: usize) -> std::slice::Chunks<'_, u8> {
        let (d, _) = self.get(i);
        let size = self.segments.get(i).copied().unwrap_or(0);
        d.chunks(if size == 0 { d.len().max(1) } else { size })
    }

    /// How many datagrams one [`recv_batch`] reads at most.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Datagram `i` of the last [`recv_batch`] and its source.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let start = i * self.size;
        (&self.data[start..start + self.lens[i]], self.from[i])
    }
}

/// Reads up to `bufs`' count of datagrams that are already queued on the
/// non-blocking socket `fd`; `Ok(0)` when none is. A datagram longer than
/// the buffer size is truncated.
pub fn recv_batch(fd: std::os::fd::BorrowedFd<'_>, bufs: &mut RecvBufs) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let count = bufs.lens.len();
    // (Re)point every header at this set's buffers: the vectors never grow,
    // so the pointers stay valid for the call below.
    for i in 0..count {
        bufs.iovs[i] = libc::iovec {
            iov_base: bufs.data[i * bufs.size..].as_mut_ptr().cast(),
            iov_len: bufs.size,
        };
        let hdr = &mut bufs.msgs[i].msg_hdr;
        hdr.msg_name = std::ptr::addr_of_mut!(bufs.addrs[i]).cast();
        hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdr.msg_iov = std::ptr::addr_of_mut!(bufs.iovs[i]);
        hdr.msg_iovlen = 1;
        hdr.msg_control = bufs.control[i * CONTROL_WORDS..].as_mut_ptr().cast();
        hdr.msg_controllen = CONTROL_WORDS * size_of::<u64>();
        bufs.msgs[i].msg_len = 0;
    }
    let n = loop {
        // SAFETY: `bufs.msgs` holds `count` headers pointing into `bufs`'
        // buffers, which outlive the call; a null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                bufs.msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(e),
        }
    };
    for i in 0..n {
        bufs.lens[i] = (bufs.msgs[i].msg_len as usize).min(bufs.size);
        bufs.from[i] = sockaddr::to_std(&bufs.addrs[i]);
        let c = control(&bufs.msgs[i].msg_hdr);
        bufs.stamps[i] = c.stamp;
        bufs.dests[i] = c.dest;
        bufs.segments[i] = c.segment;
    }
    Ok(n)
}

/// The control messages of a received datagram that we ask for.
#[derive(Default)]
struct Control {
    /// `SCM_TIMESTAMPNS`: when it arrived.
    stamp: Option<SystemTime>,
    /// `IP_PKTINFO`/`IPV6_PKTINFO`: the address it was sent to.
    dest: Option<IpAddr>,
    /// `UDP_GRO`: the size of each datagram coalesced in it (0: one).
    segment: usize,
}

fn control(hdr: &libc::msghdr) -> Control {
    let mut out = Control::default();
    // SAFETY: `hdr` was filled by recvmmsg: its control pointer and length
    // describe initialised control messages inside our buffer, which the
    // CMSG_* walkers stay within; each payload is read unaligned, with the
    // type its level and type say it holds.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                    let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                    let d = Duration::new(
                        ts.tv_sec.max(0) as u64,
                        ts.tv_nsec.clamp(0, 999_999_999) as u32,
                    );
                    out.stamp = Some(UNIX_EPOCH + d);
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let pi: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    // ipi_addr is the header's destination address (ip(7)).
                    let a = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                    out.dest = Some(IpAddr::V4(a));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let pi: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    out.dest = Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)));
                }
                (libc::SOL_UDP, UDP_GRO) => {
                    let size: libc::c_int = std::ptr::read_unaligned(data.cast());
                    out.segment = usize::try_from(size).unwrap_or(0);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    out
}

/// Asks the kernel to say which local address each datagram the socket
/// receives was sent to (`IP_PKTINFO` for IPv4, `IPV6_RECVPKTINFO` for
/// IPv6), read back with [`RecvBufs::dest`]. Only useful on a socket bound
/// to the wildcard address, which receives for every local address.
pub fn enable_pktinfo(fd: std::os::fd::BorrowedFd<'_>, v6: bool) -> io::Result<()> {
    if v6 {
        super::set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        super::set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Sends one datagram from the non-blocking socket `fd` to `dest` with
/// `src` as its source address, through an `IP_PKTINFO` (`IPV6_PKTINFO`)
/// control message: a socket bound to the wildcard address answers from
/// the address the peer knows it by. `src` must be a local address of the
/// same family as `dest`.
pub fn send_from(
    fd: std::os::fd::BorrowedFd<'_>,
    data: &[u8],
    dest: SocketAddr,
    src: IpAddr,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let mut name = sockaddr::Storage::from(dest).0;
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: an all-zero `msghdr` is valid; every pointer set below points
    // at a local that outlives the sendmsg call.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = std::ptr::addr_of_mut!(name).cast();
    hdr.msg_namelen = sockaddr::len(&dest);
    hdr.msg_iov = std::ptr::addr_of_mut!(iov);
    hdr.msg_iovlen = 1;
    hdr.msg_control = control.as_mut_ptr().cast();
    let (level, kind, len) = match src {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic; `control` has
    // room for one message of either size (checked by the assertion), so
    // CMSG_FIRSTHDR is non-null and the writes stay inside `control`.
    unsafe {
        let space = libc::CMSG_SPACE(len as u32) as usize;
        assert!(space <= size_of::<[u64; CONTROL_WORDS]>());
        hdr.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&hdr);
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
        let data = libc::CMSG_DATA(c);
        match src {
            IpAddr::V4(a) => {
                // ipi_spec_dst sets the source address; no interface.
                let pi = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast(), pi);
            }
            IpAddr::V6(a) => {
                let pi = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                std::ptr::write_unaligned(data.cast(), pi);
            }
        }
    }
    loop {
        // SAFETY: `hdr` points at `name`, `iov` and `control`, all alive.
        let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Asks the kernel to stamp every datagram the socket receives with its
/// arrival time (`SO_TIMESTAMPNS`), read back with [`RecvBufs::stamp`].
/// A measuring receiver uses it so its own scheduling delay does not count
/// as the sender's pacing error.
pub fn enable_timestamps(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    super::set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// `UDP_GRO` (udp(7), Linux 5.0): not in the `libc` crate for glibc.
const UDP_GRO: libc::c_int = 104;

/// Lets the kernel hand over the equal-size datagrams of one sender that
/// arrive together as one message (`UDP_GRO`, udp(7)), read back with
/// [`RecvBufs::datagrams`]; the buffers must then hold 64 KiB. On
/// loopback, a sender's UDP GSO message then stays one buffer up to the
/// receiving socket instead of being cut into datagrams on the sender's
/// core, as it would be by the receivers' own machines on a network.
pub fn enable_gro(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    super::set_int_option(fd, libc::SOL_UDP, UDP_GRO, 1)
}

pub(super) mod sockaddr {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

    pub(in crate::net) struct Storage(pub(in crate::net) libc::sockaddr_storage);

    impl From<SocketAddr> for Storage {
        fn from(a: SocketAddr) -> Self {
            // SAFETY: all-zero is a valid `sockaddr_storage`, and it is large
            // and aligned enough for either address family written into it.
            let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            match a {
                SocketAddr::V4(a) => {
                    let sin = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: a.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(*a.ip()).to_be(),
                        },
                        sin_zero: [0; 8],
                    };
                    // SAFETY: see above.
                    unsafe { std::ptr::write(std::ptr::addr_of_mut!(s).cast(), sin) };
                }
                SocketAddr::V6(a) => {
                    let sin6 = libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: a.port().to_be(),
                        sin6_flowinfo: a.flowinfo(),
                        sin6_addr: libc::in6_addr {
                            s6_addr: a.ip().octets(),
                        },
                        sin6_scope_id: a.scope_id(),
                    };
                    // SAFETY: see above.
                    unsafe { std::ptr::write(std::ptr::addr_of_mut!(s).cast(), sin6) };
                }
            }
            Self(s)
        }
    }

    pub(in crate::net) fn len(a: &SocketAddr) -> libc::socklen_t {
        (match a {
            SocketAddr::V4(_) => size_of::<libc::sockaddr_in>(),
            SocketAddr::V6(_) => size_of::<libc::sockaddr_in6>(),
        }) as libc::socklen_t
    }

    pub(super) fn to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(s.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a `sockaddr_in`.
                let sin: libc::sockaddr_in =
                    unsafe { std::ptr::read(std::ptr::from_ref(s).cast()) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a `sockaddr_in6`.
                let sin6: libc::sockaddr_in6 =
                    unsafe { std::ptr::read(std::ptr::from_ref(s).cast()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn batch_round_trip_over_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let dest = rx.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..150u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (dest, &p[..])).collect();
        let out = send_batch(tx.as_fd(), &batch);
        assert_eq!((out.sent, out.dropped, out.failed), (150, 0, 0));
        assert_eq!(out.calls, 3, "150 datagrams in chunks of {MAX_BATCH}");

        let mut bufs = RecvBufs::new(16, 2048);
        let mut got = Vec::new();
        while got.len() < 150 {
            let n = recv_batch(rx.as_fd(), &mut bufs).unwrap();
            assert!(n > 0, "all 150 were queued before reading");
            for i in 0..n {
                let (d, from) = bufs.get(i);
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                got.push(d.to_vec());
            }
        }
        assert_eq!(got, payloads);
        assert_eq!(recv_batch(rx.as_fd(), &mut bufs).unwrap(), 0);
        assert_eq!(bufs.stamp(0), None, "no timestamps unless asked");
        enable_timestamps(rx.as_fd()).unwrap();
        // The kernel turns stamping on asynchronously.
        std::thread::sleep(Duration::from_millis(50));
        let before = SystemTime::now();
        send_batch(tx.as_fd(), &batch[..1]);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(recv_batch(rx.as_fd(), &mut bufs).unwrap(), 1);
        let stamp = bufs.stamp(0).expect("a kernel timestamp");
        let after = SystemTime::now();
        assert!(stamp >= before && stamp <= after, "{stamp:?}");
        // Stamped on arrival, not when read 20 ms later.
        assert!(after.duration_since(stamp).unwrap() >= Duration::from_millis(15));

        // One datagram per call, the baseline batching is measured against.
        let one_by_one = send_batch_of(tx.as_fd(), &batch[..5], 1);
        assert_eq!((one_by_one.sent, one_by_one.calls), (5, 5));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(recv_batch(rx.as_fd(), &mut bufs).unwrap(), 5);
    }

    /// A GSO message read by a `UDP_GRO` socket comes back as the same
    /// datagrams in the same order, the shorter last one too.
    #[test]
    fn gro_receiver_reads_a_segmented_message_as_its_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_gro(rx.as_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        let mut payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000]).collect();
        payloads.push(vec![9; 300]);
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (dest, &p[..])).collect();
        let gso = crate::net::gso::supported(tx.as_fd());
        let out = if gso {
            crate::net::gso::send_segmented(tx.as_fd(), &batch, 8)
        } else {
            send_batch(tx.as_fd(), &batch)
        };
        assert_eq!(out.sent, 6);
        std::thread::sleep(Duration::from_millis(20));
        let mut bufs = RecvBufs::new(8, 65536);
        let (mut got, mut messages) = (Vec::new(), 0);
        loop {
            let n = recv_batch(rx.as_fd(), &mut bufs).unwrap();
            if n == 0 {
                break;
            }
            messages += n;
            for i in 0..n {
                got.extend(bufs.datagrams(i).map(<[u8]>::to_vec));
            }
        }
        assert_eq!(got, payloads);
        println!("gso {gso}: 6 datagrams in {messages} messages");
    }

    #[test]
    fn refused_datagram_is_skipped_not_fatal() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let good = rx.local_addr().unwrap();
        // An IPv6 destination on an IPv4 socket fails with EAFNOSUPPORT or
        // EINVAL: the datagram after it must still go.
        let bad: SocketAddr = "[::1]:9".parse().unwrap();
        let out = send_batch(tx.as_fd(), &[(good, b"a"), (bad, b"b"), (good, b"c")]);
        assert_eq!((out.sent, out.dropped, out.failed), (2, 0, 1));
        let mut buf = [0u8; 8];
        assert_eq!(rx.recv(&mut buf).unwrap(), 1);
        assert_eq!(&buf[..1], b"a");
        assert_eq!(rx.recv(&mut buf).unwrap(), 1);
        assert_eq!(&buf[..1], b"c");
    }

    /// One wildcard-bound socket receives for 127.0.0.2 and 127.0.0.3 and
    /// tells them apart, and answers from either.
    #[test]
    fn wildcard_socket_knows_each_datagrams_destination() {
        let rx = UdpSocket::bind("0.0.0.0:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_pktinfo(rx.as_fd(), false).unwrap();
        enable_timestamps(rx.as_fd()).unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for last in [2u8, 3, 2] {
            tx.send_to(&[last], (Ipv4Addr::new(127, 0, 0, last), port))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let mut bufs = RecvBufs::new(8, 64);
        assert_eq!(recv_batch(rx.as_fd(), &mut bufs).unwrap(), 3);
        for i in 0..3 {
            let (d, from) = bufs.get(i);
            assert_eq!(from, Some(tx.local_addr().unwrap()));
            assert_eq!(bufs.dest(i), Some(IpAddr::from([127, 0, 0, d[0]])));
            assert!(bufs.stamp(i).is_some(), "both control messages fit");
        }

        // Replies carry the source address asked for, from the same port.
        let to = tx.local_addr().unwrap();
        for last in [7u8, 9] {
            let src = IpAddr::from([127, 0, 0, last]);
            assert_eq!(send_from(rx.as_fd(), b"rr", to, src).unwrap(), 2);
            let mut buf = [0u8; 8];
            let (n, from) = tx.recv_from(&mut buf).unwrap();
            assert_eq!((n, from), (2, SocketAddr::new(src, port)));
        }
    }

    #[test]
    fn addresses_convert_both_ways() {
        for a in ["127.0.0.1:6970", "[::1]:5004", "[fe80::1%2]:1"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(sockaddr::to_std(&sockaddr::Storage::from(a).0), Some(a));
        }
    }
}
