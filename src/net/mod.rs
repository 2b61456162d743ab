//! Socket helpers shared by the server and the load tester that the
//! standard library and tokio do not offer.

pub mod gso;
pub mod mmsg;

use std::io;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd};

/// `setsockopt` of an `int`-valued socket option.
pub fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid descriptor, and a pointer to a `c_int` with its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `getsockopt` of an `int`-valued socket option.
pub fn get_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid descriptor, and a pointer to a `c_int` with its size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds an RTP socket on an even port and RTCP on the next one (RFC 3550
/// §11), both non-blocking. With `port == 0`, picks a free pair.
pub fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let ready = |rtp: UdpSocket, rtcp: UdpSocket| -> io::Result<(UdpSocket, UdpSocket)> {
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        Ok((rtp, rtcp))
    };
    if port != 0 {
        if port % 2 != 0 || port == u16::MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the RTP port must be even",
            ));
        }
        return ready(
            UdpSocket::bind((ip, port))?,
            UdpSocket::bind((ip, port + 1))?,
        );
    }
    for _ in 0..64 {
        let rtp = UdpSocket::bind((ip, 0))?;
        let p = rtp.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)) {
            return ready(rtp, rtcp);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free even/odd UDP port pair",
    ))
}
