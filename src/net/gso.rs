//! UDP segmentation offload on send (`UDP_SEGMENT`, udp(7), Linux 4.18+):
//! several datagrams to one destination leave in one `sendmmsg` message,
//! one buffer per datagram and a segment size, and the kernel (or the
//! NIC) cuts them apart after one route lookup and one trip down the
//! stack instead of one per datagram.
//!
//! A relay fans a video frame (a run of same-sized FU-A packets) out to
//! every listener, so a batch holds several datagrams per destination.
//! [`send_segmented`] groups a batch by destination, keeping each
//! destination's order, and coalesces each run in which every datagram but
//! the last has the same size (the kernel's rule) into one message, at
//! most [`MAX_SEGMENTS`] datagrams and [`MAX_BYTES`] bytes. Datagrams to
//! different destinations may leave in another order than given; a
//! destination's own never do.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use super::mmsg::{send_messages, sockaddr, SendOutcome};

/// `UDP_SEGMENT` from linux/udp.h (not in the libc crate for glibc).
const UDP_SEGMENT: libc::c_int = 103;

/// Most datagrams in one message (`UDP_MAX_SEGMENTS` is 64 before Linux
/// 6.x, 128 since).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one message: an IPv4 datagram's 65,535 less its
/// IP and UDP headers, with room to spare.
pub const MAX_BYTES: usize = 65_000;

/// Whether this kernel offers `UDP_SEGMENT` on `fd` (setting it to 0, "no
/// segmentation by default", changes nothing else).
pub fn supported(fd: BorrowedFd<'_>) -> bool {
    super::set_int_option(fd, libc::SOL_UDP, UDP_SEGMENT, 0).is_ok()
}

/// A run of datagrams for one message: `len` entries of the grouped order
/// from `start`, each `size` bytes but the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: usize,
    len: usize,
    size: usize,
}

/// Groups `datagrams` by destination (a stable sort: each destination's
/// order is kept) and cuts the groups into runs.
fn plan(datagrams: &[(SocketAddr, &[u8])]) -> (Vec<usize>, Vec<Run>) {
    let mut order: Vec<usize> = (0..datagrams.len()).collect();
    order.sort_by_key(|&i| datagrams[i].0);
    let mut runs = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let (dest, first) = datagrams[order[i]];
        let size = first.len();
        let (mut len, mut bytes) = (1, size);
        while size > 0 && len < MAX_SEGMENTS && i + len < order.len() {
            let (d, data) = datagrams[order[i + len]];
            if d != dest || data.len() > size || bytes + data.len() > MAX_BYTES {
                break;
            }
            len += 1;
            bytes += data.len();
            if data.len() < size {
                break; // a shorter one ends the run
            }
        }
        runs.push(Run {
            start: i,
            len,
            size,
        });
        i += len;
    }
    (order, runs)
}

/// Sends every `(dest, bytes)` from the non-blocking UDP socket `fd`,
/// coalescing runs to one destination, up to `per_call` messages per
/// `sendmmsg`. Counts are of datagrams: a refused message counts each one
/// it carried.
pub fn send_segmented(
    fd: BorrowedFd<'_>,
    datagrams: &[(SocketAddr, &[u8])],
    per_call: usize,
) -> SendOutcome {
    let per_call = per_call.clamp(1, 1024);
    let (order, runs) = plan(datagrams);
    let mut iovs: Vec<libc::iovec> = order
        .iter()
        .map(|&i| libc::iovec {
            iov_base: datagrams[i].1.as_ptr() as *mut libc::c_void,
            iov_len: datagrams[i].1.len(),
        })
        .collect();
    let mut out = SendOutcome::default();
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    let words = space.div_ceil(size_of::<u64>());
    let mut addrs: Vec<libc::sockaddr_storage> = Vec::with_capacity(per_call);
    let mut control: Vec<u64> = vec![0; per_call * words];
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(per_call);
    for chunk in runs.chunks(per_call) {
        addrs.clear();
        msgs.clear();
        control.fill(0);
        for r in chunk {
            addrs.push(sockaddr::Storage::from(datagrams[order[r.start]].0).0);
        }
        for (k, r) in chunk.iter().enumerate() {
            let dest = datagrams[order[r.start]].0;
            // SAFETY: an all-zero `msghdr` is valid; the pointers set below
            // point into `addrs`, `iovs` and `control`, which are not
            // touched again until the calls are done.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = std::ptr::addr_of_mut!(addrs[k]).cast();
            hdr.msg_namelen = sockaddr::len(&dest);
            hdr.msg_iov = std::ptr::addr_of_mut!(iovs[r.start]);
            hdr.msg_iovlen = r.len;
            if r.len > 1 {
                hdr.msg_control = std::ptr::addr_of_mut!(control[k * words]).cast();
                hdr.msg_controllen = space;
                // SAFETY: `control[k * words..]` has `space` bytes for this
                // message (so CMSG_FIRSTHDR is non-null), 8-aligned; the
                // writes stay inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(&hdr);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), r.size as u16);
                }
            }
            msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        send_messages(fd, &mut msgs, |k| chunk[k].len, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn runs_keep_each_destinations_order_and_the_kernels_size_rule() {
        let (a, b) = (addr(1000), addr(2000));
        let (big, small) = ([0u8; 100], [0u8; 40]);
        let d: Vec<(SocketAddr, &[u8])> = vec![
            (a, &big),
            (b, &big),
            (a, &big),
            (b, &small),
            (a, &small),
            (a, &big),
            (b, &big),
        ];
        let (order, runs) = plan(&d);
        assert_eq!(
            order,
            [0, 2, 4, 5, 1, 3, 6],
            "stable: a's in order, then b's"
        );
        let r = |start, len, size| Run { start, len, size };
        assert_eq!(
            runs,
            [r(0, 3, 100), r(3, 1, 100), r(4, 2, 100), r(6, 1, 100)],
            "a short datagram ends a run; a bigger one starts the next"
        );
        let many: Vec<(SocketAddr, &[u8])> = (0..150).map(|_| (a, &big[..])).collect();
        let lens: Vec<usize> = plan(&many).1.iter().map(|r| r.len).collect();
        assert_eq!(lens, [64, 64, 22]);
        let empty: Vec<(SocketAddr, &[u8])> = vec![(a, &[]), (a, &[])];
        assert_eq!(plan(&empty).1.len(), 2, "empty datagrams are not segmented");
    }

    #[test]
    fn every_datagram_arrives_whole_and_in_order_per_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(supported(tx.as_fd()), "UDP_SEGMENT (Linux 4.18+)");
        let rx: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                s
            })
            .collect();
        let payloads: Vec<Vec<u8>> = (0..90u8)
            .map(|i| vec![i; if i % 30 == 29 { 300 } else { 1200 }])
            .collect();
        let mut d = Vec::new();
        for p in &payloads {
            for s in &rx {
                d.push((s.local_addr().unwrap(), &p[..]));
            }
        }
        let out = send_segmented(tx.as_fd(), &d, 8);
        assert_eq!((out.sent, out.dropped, out.failed), (270, 0, 0));
        assert!(out.calls < 270 / 8, "{} calls", out.calls);
        for s in &rx {
            let mut buf = [0u8; 2048];
            for p in &payloads {
                let n = s.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &p[..]);
            }
        }
    }
}
