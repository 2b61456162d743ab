//! B11 — UDP and RTCP side (docs/ROBUSTNESS.md), with B12#86: a UDP
//! session outlives its connection until the session timeout.

use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Reply, Rtsp, UdpPair};
use crate::fixture::{assert_no_failures, check, contiguous, rtcp_rr, sess, Fixture, LOCAL};

/// B11#75: malformed RTCP (and junk RTP) to the server's ports is ignored;
/// B11#78: a client whose UDP ports are closed (ICMP port unreachable) while
/// playing disturbs nobody and the shared sockets keep working.
#[test]
fn b11_malformed_rtcp_and_icmp() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let rtcp = fx.rtcp_addr();
    let rtp = SocketAddr::from((LOCAL, fx.proc.rtp_port));
    let junk_sock = UdpSocket::bind((LOCAL, 0)).unwrap();
    let mut big = vec![0x80, 201, 0xff, 0xff];
    big.resize(65_000, 0xa5);
    let mut tcp_like = vec![0u8; 65_507];
    tcp_like[0] = 0x81;
    let datagrams: Vec<(&str, Vec<u8>)> = vec![
        ("empty datagram", vec![]),
        ("version 1 RR", vec![0x40, 201, 0, 1, 1, 2, 3, 4]),
        ("version 0", vec![0x00, 201, 0, 1, 1, 2, 3, 4]),
        (
            "length beyond the datagram",
            vec![0x80, 201, 0xff, 0xff, 1, 2, 3, 4],
        ),
        ("zero length, twice", vec![0x80, 201, 0, 0, 0x80, 201, 0, 0]),
        ("first packet is a BYE", vec![0x81, 203, 0, 1, 1, 2, 3, 4]),
        (
            "31 report blocks claimed, none sent",
            vec![0x9f, 201, 0, 1, 1, 2, 3, 4],
        ),
        (
            "padding larger than the packet",
            vec![0xa0, 201, 0, 1, 1, 2, 3, 0xff],
        ),
        ("3 bytes", vec![0x80, 201, 0]),
        ("SR cut short", vec![0x80, 200, 0, 6, 1, 2, 3, 4, 5]),
        ("65,000 bytes claiming 0xffff words", big),
        ("65,507 bytes of zeros", tcp_like),
    ];
    for round in 0..20 {
        for (_, d) in &datagrams {
            let _ = junk_sock.send_to(d, rtcp);
            let _ = junk_sock.send_to(d, rtp);
        }
        if round % 5 == 0 {
            thread::sleep(Duration::from_millis(20));
        }
    }
    // The same junk from the canary's own RTCP address, which the server
    // maps to the canary's session: ignored too, the canary plays on.
    for (_, d) in &datagrams {
        let _ = fx.canary.rtcp.send_to(d, rtcp);
    }

    // B11#78: a client that vanishes at the UDP level while playing.
    let mut c = fx.client();
    let gone = UdpPair::bind();
    let s = c.request("SETUP", &t0, &[&gone.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let h = sess(&s.session());
    let r = c.request("PLAY", &u, &[&h]);
    check!(f, r.status == 200, "PLAY: {}", r.status);
    check!(
        f,
        !gone.collect(Duration::from_millis(300)).is_empty(),
        "no RTP before closing the ports"
    );
    drop(gone);
    // Every packet to it now bounces with ICMP port unreachable.
    thread::sleep(Duration::from_millis(1500));
    let r = c.request("GET_PARAMETER", &u, &[&h]);
    check!(
        f,
        r.status == 200,
        "GET_PARAMETER of the bouncing session: {}",
        r.status
    );
    // The shared sockets still serve a new client, and still read RTCP.
    let fresh = UdpPair::bind();
    let s = c.request("SETUP", &t0, &[&fresh.transport()]);
    check!(f, s.status == 200, "SETUP after ICMP errors: {}", s.status);
    if s.status == 200 {
        let h2 = sess(&s.session());
        let r = c.request("PLAY", &u, &[&h2]);
        check!(f, r.status == 200, "PLAY after ICMP errors: {}", r.status);
        let _ = fresh.rtcp.send_to(&rtcp_rr(0x1234_5678), rtcp);
        let got = fresh.collect(Duration::from_secs(1));
        check!(
            f,
            got.len() >= 40,
            "only {} packets for a new client after ICMP errors",
            got.len()
        );
        if let Err(e) = contiguous(&got) {
            f.push(format!("new client's stream: {e}"));
        }
        let r = c.request("TEARDOWN", &u, &[&h2]);
        check!(f, r.status == 200, "TEARDOWN: {}", r.status);
    }
    let r = c.request("TEARDOWN", &u, &[&h]);
    check!(
        f,
        r.status == 200,
        "TEARDOWN of the bouncing session: {}",
        r.status
    );
    assert_no_failures(f, fx);
}

/// B11#79 and B12#86 with `--session-timeout 2`: a silent UDP client, and one
/// whose TCP connection was reset, are torn down within timeout + 2 s and
/// their ids then get 454; a client that only sends RTCP stays alive (RTCP
/// counts as liveness); a reset client may come back on a new connection
/// before the timeout.
#[test]
fn b11_b12_session_timeout() {
    let fx = Fixture::start(&["--session-timeout", "2"]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let rtcp = fx.rtcp_addr();
    let start = |pair: &UdpPair| -> (Rtsp, String, u32) {
        let mut c = fx.client();
        let s = c.request("SETUP", &t0, &[&pair.transport()]);
        assert_eq!(s.status, 200, "{s}");
        check_timeout_attr(&s);
        let id = s.session();
        let p = c.request("PLAY", &u, &[&sess(&id)]);
        assert_eq!(p.status, 200, "{p}");
        (c, id, s.ssrc())
    };
    let (silent, rtcp_only, vanished) = (UdpPair::bind(), UdpPair::bind(), UdpPair::bind());
    let (mut c_silent, id_silent, _) = start(&silent);
    let (mut c_rtcp, id_rtcp, ssrc_rtcp) = start(&rtcp_only);
    let (c_gone, id_gone, _) = start(&vanished);
    c_gone.reset();
    // B12#86: a UDP session outlives its connection; the client may return.
    thread::sleep(Duration::from_millis(300));
    let r = fx.client().request("GET_PARAMETER", &u, &[&sess(&id_gone)]);
    check!(
        f,
        r.status == 200,
        "session after its connection was reset: {}",
        r.status
    );
    let last_gone = Instant::now();
    let last_silent = last_gone - Duration::from_millis(300);

    // Watch all three for 6 s; the RTCP-only client sends an RR every 500 ms.
    let socks = [&silent, &rtcp_only, &vanished];
    for p in socks {
        p.rtp.set_nonblocking(true).unwrap();
    }
    let mut last: [Option<Instant>; 3] = [None; 3];
    let mut counts = [0usize; 3];
    let t = Instant::now();
    let mut next_rr = t;
    let mut buf = [0u8; 2048];
    while t.elapsed() < Duration::from_secs(6) {
        if Instant::now() >= next_rr {
            let _ = rtcp_only.rtcp.send_to(&rtcp_rr(ssrc_rtcp ^ 1), rtcp);
            next_rr += Duration::from_millis(500);
        }
        for (i, p) in socks.iter().enumerate() {
            while p.rtp.recv(&mut buf).is_ok() {
                last[i] = Some(Instant::now());
                counts[i] += 1;
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    let limit = Duration::from_secs(2 + 2);
    for (i, (name, since)) in [("silent", last_silent), ("", t), ("reset", last_gone)]
        .iter()
        .enumerate()
    {
        if i == 1 {
            continue;
        }
        match last[i] {
            Some(l) => check!(
                f,
                l.saturating_duration_since(*since) <= limit,
                "{name} client still got RTP {:?} after its last request",
                l.saturating_duration_since(*since)
            ),
            None => f.push(format!("{name} client got no RTP at all")),
        }
    }
    check!(
        f,
        last[1].is_some_and(|l| l.elapsed() < Duration::from_millis(200)),
        "the RTCP-only client stopped receiving ({counts:?})"
    );
    let r = c_silent.request("GET_PARAMETER", &u, &[&sess(&id_silent)]);
    check!(
        f,
        r.status == 454,
        "silent session after the timeout: {}",
        r.status
    );
    let r = fx.client().request("PLAY", &u, &[&sess(&id_gone)]);
    check!(
        f,
        r.status == 454,
        "reset session after the timeout: {}",
        r.status
    );
    let r = c_rtcp.request("GET_PARAMETER", &u, &[&sess(&id_rtcp)]);
    check!(f, r.status == 200, "RTCP-only session: {}", r.status);
    // The silent client's connection owns no session now but is not torn
    // down by the session timeout (idle timeout is 60 s).
    let r = c_silent.request("OPTIONS", "*", &[]);
    check!(
        f,
        r.status == 200,
        "OPTIONS on the silent client's connection: {}",
        r.status
    );
    assert_no_failures(f, fx);
}

fn check_timeout_attr(s: &Reply) {
    let v = s.header("Session").unwrap_or_default();
    assert!(
        v.ends_with(";timeout=2"),
        "Session header {v:?} should advertise timeout=2"
    );
}
