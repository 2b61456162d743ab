//! B4 — Method and state-machine abuse (docs/ROBUSTNESS.md; RFC 2326
//! Appendix A).

use std::thread;
use std::time::{Duration, Instant};

use crate::common::{rtp_ssrc, Rtsp, UdpPair};
use crate::fixture::{assert_no_failures, check, contiguous, sess, Fixture};
use crate::table::{case, cat, opt, raw, Case, Status, StatusThenClose, UDP};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let base = fx.base();
    let u = fx.url("long.wav");
    let udp = UDP;
    let body = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n";
    let announce = format!(
        "ANNOUNCE {u} RTSP/1.0\r\nCSeq: 40\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let param = |method: &str, ct: &str, b: &str| {
        format!(
            "{method} {u} RTSP/1.0\r\nCSeq: 41\r\n{ct}Content-Length: {}\r\n\r\n{b}",
            b.len()
        )
    };
    let set_param = |ct: &str, b: &str| param("SET_PARAMETER", ct, b);

    vec![
        case(
            "B4#25 PLAY before any SETUP",
            raw(&format!("PLAY {u} RTSP/1.0"), &["CSeq: 25"]),
            Status(454),
        ),
        case(
            "B4#25 PAUSE before any SETUP",
            raw(&format!("PAUSE {u} RTSP/1.0"), &["CSeq: 25"]),
            Status(454),
        ),
        case(
            "B4#25 TEARDOWN before any SETUP",
            raw(&format!("TEARDOWN {u} RTSP/1.0"), &["CSeq: 25"]),
            Status(454),
        ),
        case(
            "B4#30 SETUP of a missing path",
            raw(
                &format!("SETUP {base}/nope.wav/trackID=0 RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B4#30 trackID=99",
            raw(
                &format!("SETUP {u}/trackID=99 RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B4#30 trackID=1 of a one-track clip",
            raw(
                &format!("SETUP {u}/trackID=1 RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B4#30 trackID=-1",
            raw(
                &format!("SETUP {u}/trackID=-1 RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B4#30 trackID=18446744073709551616",
            raw(
                &format!("SETUP {u}/trackID=18446744073709551616 RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B4#30 trackID=abc",
            raw(
                &format!("SETUP {u}/trackID=abc RTSP/1.0"),
                &["CSeq: 30", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case("B4#36 ANNOUNCE", announce, Status(405)).want("Allow", "DESCRIBE"),
        case(
            "B4#36 RECORD",
            raw(
                &format!("RECORD {u} RTSP/1.0"),
                &["CSeq: 36", "Session: abc"],
            ),
            Status(405),
        )
        .want("Allow", "PLAY"),
        case(
            "B4#36 REDIRECT",
            raw(&format!("REDIRECT {u} RTSP/1.0"), &["CSeq: 36"]),
            Status(405),
        )
        .want("Allow", "SETUP"),
        // B4#37: 451, or 200 with an empty body; rtspd defines no parameters.
        case(
            "B4#37 SET_PARAMETER without Content-Type",
            set_param("", "volume: 0.5\r\n"),
            Status(451),
        ),
        case(
            "B4#37 SET_PARAMETER with an unknown parameter",
            set_param("Content-Type: text/parameters\r\n", "x-unknown: 1\r\n"),
            Status(451),
        ),
        case(
            "B4#37 SET_PARAMETER with a 1 MiB body",
            cat(&[
                &raw(
                    &format!("SET_PARAMETER {u} RTSP/1.0"),
                    &[
                        "CSeq: 37",
                        "Content-Type: text/parameters",
                        "Content-Length: 1048576",
                    ],
                ),
                &[b'v'; 4096],
            ]),
            StatusThenClose(413),
        ),
        case(
            "B4#37 GET_PARAMETER for an unknown parameter",
            param(
                "GET_PARAMETER",
                "Content-Type: text/parameters\r\n",
                "position\r\n",
            ),
            Status(451),
        ),
        case(
            "B4#38 GET_PARAMETER, empty, no session",
            raw(&format!("GET_PARAMETER {u} RTSP/1.0"), &["CSeq: 38"]),
            Status(200),
        ),
        case(
            "B4#39 Require: com.example.unknown",
            opt("Require: com.example.unknown"),
            Status(551),
        )
        .want("Unsupported", "com.example.unknown"),
        case(
            "B4#39 Require on DESCRIBE",
            raw(
                &format!("DESCRIBE {u} RTSP/1.0"),
                &["CSeq: 39", "Require: implicit-play, com.example.unknown"],
            ),
            Status(551),
        )
        .want("Unsupported", "com.example.unknown"),
    ]
}

/// B4#25–#29, #33, #38: state transitions and repeated SETUPs.
#[test]
fn b4_state_machine() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let mut c = fx.client();
    let (a, b) = (UdpPair::bind(), UdpPair::bind());

    // #25: PLAY before any SETUP: 454, and nothing streams.
    let r = c.request("PLAY", &u, &[]);
    check!(f, r.status == 454, "PLAY before SETUP: {}", r.status);

    // #26: PAUSE in Ready is a documented no-op (200).
    let s = c.request("SETUP", &t0, &[&a.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let (id, ssrc) = (s.session(), s.ssrc());
    check!(
        f,
        s.header("Session").is_some_and(|v| v.contains("timeout=")),
        "SETUP Session without timeout: {s}"
    );
    let h = sess(&id);
    let r = c.request("PAUSE", &u, &[&h]);
    check!(f, r.status == 200, "PAUSE in Ready: {}", r.status);
    // #38: GET_PARAMETER keepalive before PLAY.
    let r = c.request("GET_PARAMETER", &u, &[&h]);
    check!(
        f,
        r.status == 200 && r.session() == id,
        "GET_PARAMETER in Ready: {r}"
    );

    // #27: the same track again, same ports, then other ports: 200, same
    // SSRC and session, and never a second sender.
    for (pair, what) in [(&a, "same ports"), (&b, "new ports")] {
        let r = c.request("SETUP", &t0, &[&pair.transport(), &h]);
        check!(f, r.status == 200, "repeated SETUP ({what}): {r}");
        if r.status == 200 {
            check!(
                f,
                r.session() == id,
                "repeated SETUP ({what}) gave another session"
            );
            check!(
                f,
                r.ssrc() == ssrc,
                "repeated SETUP ({what}) changed the SSRC"
            );
            let cp = format!("{}-{}", pair.port(), pair.port() + 1);
            check!(
                f,
                r.transport_param("client_port") == Some(cp),
                "repeated SETUP ({what}): {r}"
            );
        }
    }
    // #28: another lower transport in the same session: 461, nothing changes.
    let r = c.request(
        "SETUP",
        &t0,
        &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1", &h],
    );
    check!(
        f,
        r.status == 461,
        "TCP SETUP into a UDP session: {}",
        r.status
    );
    // #29: another presentation in the same session: 455.
    let r = c.request(
        "SETUP",
        &fx.url("other.wav/trackID=0"),
        &[&b.transport(), &h],
    );
    check!(
        f,
        r.status == 455,
        "SETUP of another path in the session: {}",
        r.status
    );
    check!(
        f,
        a.drain_now() + b.drain_now() == 0,
        "RTP sent before PLAY"
    );

    let r = c.request("PLAY", &u, &[&h]);
    check!(f, r.status == 200, "PLAY: {r}");
    let pkts = b.collect(Duration::from_secs(2));
    // 2 s of one 50 packet/s stream; two senders would give about 200.
    check!(
        f,
        (85..=115).contains(&pkts.len()),
        "{} packets in 2 s: not one stream's rate",
        pkts.len()
    );
    if let Err(e) = contiguous(&pkts) {
        f.push(format!("stream after repeated SETUPs: {e}"));
    }
    check!(
        f,
        pkts.iter().all(|(p, _)| rtp_ssrc(p) == ssrc),
        "packets with another SSRC"
    );
    check!(
        f,
        a.drain_now() == 0,
        "the old destination still receives RTP"
    );
    // SETUP while Playing: 455 (allowed by #27), the stream is unaffected.
    let r = c.request("SETUP", &t0, &[&a.transport(), &h]);
    check!(f, r.status == 455, "SETUP while playing: {}", r.status);
    let r = c.request("GET_PARAMETER", &u, &[&h]);
    check!(
        f,
        r.status == 200,
        "GET_PARAMETER while playing: {}",
        r.status
    );

    // #26: TEARDOWN, then the old id is gone (454) and sending stops.
    let r = c.request("TEARDOWN", &u, &[&h]);
    check!(f, r.status == 200, "TEARDOWN: {}", r.status);
    let td = Instant::now();
    let tail = b.until_quiet(Duration::from_millis(1000), Duration::from_secs(4));
    if let Some((_, last)) = tail.last() {
        check!(
            f,
            last.saturating_duration_since(td) < Duration::from_secs(1),
            "RTP {:?} after TEARDOWN",
            last.saturating_duration_since(td)
        );
    }
    for m in [
        "PLAY",
        "PAUSE",
        "GET_PARAMETER",
        "SET_PARAMETER",
        "TEARDOWN",
    ] {
        let r = c.request(m, &u, &[&h]);
        check!(f, r.status == 454, "{m} after TEARDOWN: {}", r.status);
    }
    let r = c.request("SETUP", &t0, &[&a.transport(), &h]);
    check!(
        f,
        r.status == 454,
        "SETUP into a torn-down session: {}",
        r.status
    );
    check!(f, a.drain_now() + b.drain_now() == 0, "RTP after TEARDOWN");

    // #33: TEARDOWN of the only track's URL destroys the session.
    let s = c.request("SETUP", &t0, &[&a.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let h2 = sess(&s.session());
    let r = c.request("PLAY", &t0, &[&h2]);
    check!(
        f,
        r.status == 200,
        "PLAY on the only track's URL: {}",
        r.status
    );
    let r = c.request("GET_PARAMETER", &u, &[&h2]);
    check!(
        f,
        r.status == 200,
        "GET_PARAMETER while playing: {}",
        r.status
    );
    let r = c.request("TEARDOWN", &t0, &[&h2]);
    check!(
        f,
        r.status == 200,
        "TEARDOWN of the track URL: {}",
        r.status
    );
    let r = c.request("GET_PARAMETER", &u, &[&h2]);
    check!(
        f,
        r.status == 454,
        "session after track TEARDOWN: {}",
        r.status
    );
    a.until_quiet(Duration::from_millis(1000), Duration::from_secs(4));
    check!(f, a.drain_now() == 0, "RTP after the track TEARDOWN");
    assert_no_failures(f, fx);
}

/// B4#35: rapid SETUP/PLAY/TEARDOWN churn, and TEARDOWN racing PLAY/PAUSE
/// on another connection. No sender survives its session.
#[test]
fn b4_churn_and_races() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let mut c = fx.client();
    let pair = UdpPair::bind();
    for i in 0..50 {
        let s = c.request("SETUP", &t0, &[&pair.transport()]);
        if s.status != 200 {
            f.push(format!("churn {i}: SETUP {}", s.status));
            break;
        }
        let h = sess(&s.session());
        let p = c.request("PLAY", &u, &[&h, "Range: npt=1-"]);
        let t = c.request("TEARDOWN", &u, &[&h]);
        check!(
            f,
            (p.status, t.status) == (200, 200),
            "churn {i}: PLAY {} TEARDOWN {}",
            p.status,
            t.status
        );
    }
    let last_td = Instant::now();
    let tail = pair.until_quiet(Duration::from_millis(1000), Duration::from_secs(5));
    if let Some((_, last)) = tail.last() {
        check!(
            f,
            last.saturating_duration_since(last_td) < Duration::from_secs(1),
            "RTP {:?} after the last TEARDOWN",
            last.saturating_duration_since(last_td)
        );
    }

    let addr = fx.addr();
    for round in 0..15 {
        let s = c.request("SETUP", &t0, &[&pair.transport()]);
        assert_eq!(s.status, 200, "{s}");
        let id = s.session();
        let h = sess(&id);
        let (u2, id2) = (u.clone(), id.clone());
        let killer = thread::spawn(move || {
            let mut k = Rtsp::connect(addr);
            thread::sleep(Duration::from_millis(3 * (round % 5)));
            k.try_request("TEARDOWN", &u2, &[&sess(&id2)])
                .map(|r| r.status)
        });
        for i in 0..8 {
            let m = if i % 2 == 0 { "PLAY" } else { "PAUSE" };
            match c.try_request(m, &u, &[&h]) {
                Ok(r) if matches!(r.status, 200 | 454) => {}
                Ok(r) => f.push(format!("race {round}: {m} answered {}", r.status)),
                Err(e) => f.push(format!("race {round}: {m}: {e}")),
            }
        }
        match killer.join().expect("killer thread") {
            Ok(200) => {}
            other => f.push(format!("race {round}: TEARDOWN {other:?}")),
        }
        let r = c.request("PLAY", &u, &[&h]);
        check!(
            f,
            r.status == 454,
            "race {round}: PLAY after TEARDOWN {}",
            r.status
        );
    }
    let end = Instant::now();
    let tail = pair.until_quiet(Duration::from_millis(1000), Duration::from_secs(5));
    if let Some((_, last)) = tail.last() {
        check!(
            f,
            last.saturating_duration_since(end) < Duration::from_secs(1),
            "RTP {:?} after the races",
            last.saturating_duration_since(end)
        );
    }
    assert_no_failures(f, fx);
}
