//! Interleaved (RTP over the RTSP connection, RFC 2326 §10.12) listeners:
//! set one up and read its frames.

use std::time::Duration;

use super::udp::rtp_seq;
use super::{Rtsp, Server};

/// An interleaved (TCP) listener: SETUP with `interleaved=0-1`, PLAY, and
/// the stream positioned at the first frame. With `rcvbuf`, the socket's
/// receive buffer is made that small before connecting.
pub fn tcp_listener(
    server: &Server,
    url: &str,
    rcvbuf: Option<i32>,
) -> (std::net::TcpStream, Vec<u8>) {
    let mut c = Rtsp::connect(server.addr());
    if let Some(size) = rcvbuf {
        // Set after connect, it still caps the window the server sees from
        // here on.
        let fd = std::os::fd::AsFd::as_fd(c.stream());
        rtspd::net::set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, size).expect("SO_RCVBUF");
    }
    let s = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"],
    );
    assert_eq!(s.status, 200, "{s}");
    // Frames may follow the PLAY reply at once: read just the reply.
    let cseq = c.send("PLAY", url, &[&format!("Session: {}", s.session())], b"");
    let p = c.reply(cseq).expect("PLAY reply");
    assert_eq!(p.status, 200, "{p}");
    assert!(
        c.pending().is_empty() || c.pending()[0] == b'$',
        "frames follow the reply"
    );
    // Frame bytes already read past the reply go back with the stream.
    c.into_parts()
}

/// Reads interleaved frames for `dur`; returns the RTP sequence numbers
/// seen on channel 0.
pub fn read_frames(mut sock: std::net::TcpStream, mut buf: Vec<u8>, dur: Duration) -> Vec<u16> {
    use std::io::Read;
    let end = std::time::Instant::now() + dur;
    let mut seqs = Vec::new();
    let mut chunk = [0u8; 8192];
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while std::time::Instant::now() < end {
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 4 {
            assert_eq!(buf[0], b'$', "only frames after PLAY");
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            if buf.len() < 4 + len {
                break;
            }
            if buf[1] == 0 {
                seqs.push(rtp_seq(&buf[4..4 + len]));
            }
            buf.drain(..4 + len);
        }
    }
    seqs
}

pub fn gaps(seqs: &[u16]) -> usize {
    seqs.windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .count()
}
