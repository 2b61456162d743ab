//! B3 — CSeq and Session headers (docs/ROBUSTNESS.md).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::common::{Rtsp, UdpPair};
use crate::fixture::{assert_no_failures, check, sess, Fixture};
use crate::table::{case, raw, Case, Status, StatusThenClose, UDP};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let udp = UDP;

    vec![
        case(
            "B3#19 CSeq missing",
            raw("OPTIONS * RTSP/1.0", &[]),
            Status(400),
        ),
        case(
            "B3#20 CSeq abc",
            raw("OPTIONS * RTSP/1.0", &["CSeq: abc"]),
            Status(400),
        ),
        case(
            "B3#20 CSeq -1",
            raw("OPTIONS * RTSP/1.0", &["CSeq: -1"]),
            Status(400),
        ),
        case(
            "B3#20 CSeq 4294967296",
            raw("OPTIONS * RTSP/1.0", &["CSeq: 4294967296"]),
            Status(400),
        ),
        case(
            "B3#20 CSeq 1.5",
            raw("OPTIONS * RTSP/1.0", &["CSeq: 1.5"]),
            Status(400),
        ),
        case(
            "B3#20 CSeq of 1,000 digits",
            raw(
                "OPTIONS * RTSP/1.0",
                &[&format!("CSeq: {}", "9".repeat(1000))],
            ),
            Status(400),
        ),
        case(
            "B3#20 CSeq of 5 KiB",
            raw(
                "OPTIONS * RTSP/1.0",
                &[&format!("CSeq: {}", "1".repeat(5 << 10))],
            ),
            StatusThenClose(400),
        ),
        case(
            "B3#20 two CSeq headers",
            raw("OPTIONS * RTSP/1.0", &["CSeq: 1", "CSeq: 2"]),
            Status(400),
        ),
        case(
            "B3#20 CR inside the CSeq value",
            "OPTIONS * RTSP/1.0\r\nCSeq: 1\rX-Injected: y\r\n\r\n",
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B3#20 NUL inside the CSeq value",
            "OPTIONS * RTSP/1.0\r\nCSeq: 1\0X-Injected: y\r\n\r\n",
            StatusThenClose(400),
        )
        .no_echo(),
        // A bare LF ends a line (lenient, like most servers): two headers, never echoed.
        case(
            "B3#20 LF inside the CSeq value",
            "OPTIONS * RTSP/1.0\r\nCSeq: 1\nX-Injected: y\r\n\r\n",
            Status(200),
        ),
        case(
            "B3#21 PLAY with an unknown session",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 21", "Session: 0123456789abcdef"],
            ),
            Status(454),
        ),
        case(
            "B3#21 PAUSE with an unknown session",
            raw(
                &format!("PAUSE {u} RTSP/1.0"),
                &["CSeq: 21", "Session: 0123456789abcdef"],
            ),
            Status(454),
        ),
        case(
            "B3#21 TEARDOWN with an unknown session",
            raw(
                &format!("TEARDOWN {u} RTSP/1.0"),
                &["CSeq: 21", "Session: 0123456789abcdef"],
            ),
            Status(454),
        ),
        case(
            "B3#21 GET_PARAMETER with an unknown session",
            raw(
                &format!("GET_PARAMETER {u} RTSP/1.0"),
                &["CSeq: 21", "Session: 0123456789abcdef"],
            ),
            Status(454),
        ),
        case(
            "B3#21 SET_PARAMETER with an unknown session",
            raw(
                &format!("SET_PARAMETER {u} RTSP/1.0"),
                &["CSeq: 21", "Session: 0123456789abcdef"],
            ),
            Status(454),
        ),
        case(
            "B3#21 SETUP into an unknown session",
            raw(
                &format!("SETUP {t0} RTSP/1.0"),
                &[
                    "CSeq: 21",
                    "Session: 0123456789abcdef",
                    &format!("Transport: RTP/AVP;unicast;{udp}"),
                ],
            ),
            Status(454),
        ),
        // B3#23: 400 or 454 allowed; rtspd answers 454 for an unparseable id.
        case(
            "B3#23 Session of 300 bytes",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 23", &format!("Session: {}", "a".repeat(300))],
            ),
            Status(454),
        ),
        case(
            "B3#23 Session of 5 KiB",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 23", &format!("Session: {}", "a".repeat(5 << 10))],
            ),
            StatusThenClose(400),
        ),
        case(
            "B3#23 Session with a huge timeout",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 23", "Session: abc;timeout=99999999999999999999"],
            ),
            Status(454),
        ),
        case(
            "B3#23 Session with junk attributes",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 23", "Session: abc;;;=;timeout;x=\"y"],
            ),
            Status(454),
        ),
        case(
            "B3#23 Session with an empty id",
            raw(
                &format!("PLAY {u} RTSP/1.0"),
                &["CSeq: 23", "Session: ;timeout=60"],
            ),
            Status(454),
        ),
        case(
            "B3#23 two Session headers",
            raw(
                &format!("GET_PARAMETER {u} RTSP/1.0"),
                &["CSeq: 23", "Session: abc", "Session: def"],
            ),
            Status(400),
        ),
    ]
}

/// B3#22: a valid session id used from another client IP gets 454 for every
/// method, never 200, and the victim (the canary) is unaffected (I2, I6).
#[test]
fn b3_session_from_another_ip() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let victim = fx.canary.session.clone();
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let mut evil = Rtsp::connect_from(other, fx.addr());
    let evil_pair = UdpPair::bind_on(other);
    let vh = sess(&victim);
    let attempts: [(&str, &str, Vec<String>); 9] = [
        ("PLAY", &u, vec![vh.clone()]),
        ("PLAY", &u, vec![vh.clone(), "Range: npt=30-".into()]),
        ("PAUSE", &u, vec![vh.clone()]),
        ("GET_PARAMETER", &u, vec![vh.clone()]),
        ("SET_PARAMETER", &u, vec![vh.clone()]),
        ("SETUP", &t0, vec![vh.clone(), evil_pair.transport()]),
        ("PLAY", &t0, vec![vh.clone()]),
        ("TEARDOWN", &t0, vec![vh.clone()]),
        ("TEARDOWN", &u, vec![vh.clone()]),
    ];
    for (m, url, hs) in &attempts {
        let hs: Vec<&str> = hs.iter().map(String::as_str).collect();
        let r = evil.request(m, url, &hs);
        check!(
            f,
            r.status == 454,
            "{m} {hs:?} from 127.0.0.2 with the victim's session: {}",
            r.status
        );
    }
    check!(
        f,
        evil_pair.collect(Duration::from_millis(500)).is_empty(),
        "RTP reached 127.0.0.2"
    );

    // 127.0.0.2 may have its own session; it streams to 127.0.0.2 only, and
    // 127.0.0.1 cannot use it either.
    let s = evil.request("SETUP", &t0, &[&evil_pair.transport()]);
    check!(f, s.status == 200, "own SETUP from 127.0.0.2: {s}");
    if s.status == 200 {
        let eh = sess(&s.session());
        let r = evil.request("PLAY", &u, &[&eh]);
        check!(f, r.status == 200, "own PLAY from 127.0.0.2: {}", r.status);
        let got = evil_pair.collect(Duration::from_millis(600));
        check!(
            f,
            !got.is_empty(),
            "127.0.0.2 got no RTP for its own session"
        );
        let mut c = fx.client();
        for m in ["GET_PARAMETER", "PAUSE", "TEARDOWN"] {
            let r = c.request(m, &u, &[&eh]);
            check!(
                f,
                r.status == 454,
                "{m} from 127.0.0.1 with 127.0.0.2's session: {}",
                r.status
            );
        }
        let r = evil.request("TEARDOWN", &u, &[&eh]);
        check!(
            f,
            r.status == 200,
            "TEARDOWN of its own session: {}",
            r.status
        );
    }
    assert_no_failures(f, fx);
}
