//! B5 — Transport header (SETUP) (docs/ROBUSTNESS.md).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::common::UdpPair;
use crate::fixture::{assert_no_failures, check, sess, Fixture};
use crate::table::{case, raw, Case, Status, StatusThenClose, UDP};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let t0 = fx.url("long.wav/trackID=0");
    let setup = |tr: &str| raw(&format!("SETUP {t0} RTSP/1.0"), &["CSeq: 30", tr]);
    let udp = UDP;
    let alternatives: Vec<String> = (0..50)
        .map(|i| {
            let a = format!(
                "RTP/SAVP;unicast;client_port={}-{};x-pad=",
                50000 + 2 * i,
                50001 + 2 * i
            );
            format!("{a}{}", "p".repeat(100 - a.len()))
        })
        .collect();
    let alternatives = format!("Transport: {}", alternatives.join(","));

    vec![
        case(
            "B5#40 SETUP without Transport",
            raw(&format!("SETUP {t0} RTSP/1.0"), &["CSeq: 40"]),
            Status(461),
        ),
        case("B5#40 empty Transport", setup("Transport:"), Status(461)),
        case(
            "B5#40 garbage Transport",
            setup("Transport: !!!;;;,,,"),
            Status(461),
        ),
        case(
            "B5#42 inverted client_port 50001-50000",
            setup("Transport: RTP/AVP;unicast;client_port=50001-50000"),
            Status(461),
        ),
        case(
            "B5#42 odd RTP port 50001-50002",
            setup("Transport: RTP/AVP;unicast;client_port=50001-50002"),
            Status(461),
        ),
        case(
            "B5#42 non-consecutive 50000-50009",
            setup("Transport: RTP/AVP;unicast;client_port=50000-50009"),
            Status(461),
        ),
        case(
            "B5#42 client_port 0-1",
            setup("Transport: RTP/AVP;unicast;client_port=0-1"),
            Status(461),
        ),
        case(
            "B5#42 client_port without ports",
            setup("Transport: RTP/AVP;unicast"),
            Status(461),
        ),
        case(
            "B5#43 client_port 1024-65535",
            setup("Transport: RTP/AVP;unicast;client_port=1024-65535"),
            Status(461),
        ),
        case(
            "B5#44 destination=198.51.100.7",
            setup(&format!(
                "Transport: RTP/AVP;unicast;destination=198.51.100.7;{udp}"
            )),
            Status(461),
        ),
        case(
            "B5#44 destination=a hostname",
            setup(&format!(
                "Transport: RTP/AVP;unicast;destination=evil.example;{udp}"
            )),
            Status(461),
        ),
        case(
            "B5#45 client-chosen multicast",
            setup("Transport: RTP/AVP;multicast;destination=239.1.1.1;ttl=255;port=5000-5001"),
            Status(461),
        ),
        case(
            "B5#46 50 alternatives of 100 bytes (over the 2 KiB value cap)",
            setup(&alternatives),
            StatusThenClose(400),
        ),
        case(
            "B5#46 one 8 KiB Transport",
            setup(&format!(
                "Transport: RTP/AVP;unicast;{udp};x={}",
                "x".repeat(8 << 10)
            )),
            StatusThenClose(400),
        ),
        case(
            "B5#47 RTP/AVP/TCP interleaved=0-1",
            setup("Transport: RTP/AVP/TCP;unicast;interleaved=0-1"),
            Status(200),
        ),
        case(
            "B5#47 interleaved=254-255 (the last pair)",
            setup("Transport: RTP/AVP/TCP;unicast;interleaved=254-255"),
            Status(200),
        ),
        case(
            "B5#47 interleaved=255-256 (no such channel)",
            setup("Transport: RTP/AVP/TCP;unicast;interleaved=255-256"),
            Status(461),
        ),
        case(
            "B5#47 interleaved=7-6",
            setup("Transport: RTP/AVP/TCP;unicast;interleaved=7-6"),
            Status(461),
        ),
        case(
            "B5#48 RTP/AVP/SCTP",
            setup(&format!("Transport: RTP/AVP/SCTP;unicast;{udp}")),
            Status(461),
        ),
        case(
            "B5#48 RTP/SAVP",
            setup(&format!("Transport: RTP/SAVP;unicast;{udp}")),
            Status(461),
        ),
        case(
            "B5#48 RAW/RAW/UDP",
            setup(&format!("Transport: RAW/RAW/UDP;unicast;{udp}")),
            Status(461),
        ),
        // 461 or 400 allowed for a malformed ssrc; rtspd answers 461.
        case(
            "B5#48 ssrc of 100 hex digits",
            setup(&format!(
                "Transport: RTP/AVP;unicast;{udp};ssrc={}",
                "f".repeat(100)
            )),
            Status(461),
        ),
        case(
            "B5#48 ssrc of 5,000 hex digits (over the value cap)",
            setup(&format!(
                "Transport: RTP/AVP;unicast;{udp};ssrc={}",
                "f".repeat(5000)
            )),
            StatusThenClose(400),
        ),
    ]
}

/// B5#44/#46/#48: third-party destinations are refused and never receive a
/// datagram (I6, checked by capture on 127.0.0.3); alternatives are tried
/// in order; `mode=record` is refused on a play-only server.
#[test]
fn b5_transport_choice_and_destination() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    let mut c = fx.client();
    let third = UdpPair::bind_on(Ipv4Addr::new(127, 0, 0, 3));
    let mine = UdpPair::bind();
    let tp = third.port();

    // A third-party destination alone: 461.
    let r = c.request(
        "SETUP",
        &t0,
        &[&format!(
            "Transport: RTP/AVP;unicast;destination=127.0.0.3;client_port={tp}-{}",
            tp + 1
        )],
    );
    check!(
        f,
        r.status == 461,
        "SETUP with destination=127.0.0.3: {}",
        r.status
    );
    // Unusable alternatives first, then a usable one: the first usable wins.
    let offer = format!(
        "Transport: RAW/RAW/UDP;unicast;client_port=50004-50005, RTP/SAVP;unicast;client_port=50000-50001, RTP/AVP;unicast;destination=127.0.0.3;client_port={tp}-{}, RTP/AVP;unicast;destination=127.0.0.1;client_port={}-{}, RTP/AVP;unicast;client_port=50002-50003",
        tp + 1,
        mine.port(),
        mine.port() + 1
    );
    let s = c.request("SETUP", &t0, &[&offer]);
    check!(f, s.status == 200, "SETUP with alternatives: {s}");
    if s.status == 200 {
        let cp = format!("{}-{}", mine.port(), mine.port() + 1);
        check!(
            f,
            s.transport_param("client_port") == Some(cp),
            "wrong alternative chosen: {s}"
        );
        let sp = format!("{}-{}", fx.proc.rtp_port, fx.proc.rtp_port + 1);
        check!(
            f,
            s.transport_param("server_port") == Some(sp),
            "server_port: {s}"
        );
        check!(
            f,
            s.transport_param("destination")
                .is_none_or(|d| d == "127.0.0.1"),
            "destination echoed: {s}"
        );
        let h = sess(&s.session());
        let r = c.request("PLAY", &u, &[&h]);
        check!(f, r.status == 200, "PLAY: {}", r.status);
        let got = mine.collect(Duration::from_millis(800));
        check!(
            f,
            got.len() >= 20,
            "only {} packets to the client",
            got.len()
        );
        let r = c.request("TEARDOWN", &u, &[&h]);
        check!(f, r.status == 200, "TEARDOWN: {}", r.status);
    }
    // I6: nothing ever reached the third party, RTP or RTCP.
    let mut buf = [0u8; 2048];
    third.rtcp.set_nonblocking(true).unwrap();
    check!(
        f,
        third.drain_now() == 0 && third.rtcp.recv(&mut buf).is_err(),
        "UDP reached the third party 127.0.0.3"
    );

    // B5#46: alternatives are parsed up to a bound: 20 unusable ones (in
    // 2 KiB) and a usable one after them get 461 ("first supported or 461").
    let junk: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "RTP/SAVP;unicast;client_port={}-{}",
                50010 + 2 * i,
                50011 + 2 * i
            )
        })
        .collect();
    let r = c.request(
        "SETUP",
        &t0,
        &[&format!(
            "Transport: {}, RTP/AVP;unicast;client_port=50100-50101",
            junk.join(",")
        )],
    );
    check!(f, r.status == 461, "21 alternatives: {}", r.status);
    assert_no_failures(f, fx);
}

/// B5#48: `mode=record` on a play-only server must be refused (461), not
/// set up as a play session.
#[test]
fn b5_mode_record_is_refused() {
    let fx = Fixture::start(&[]);
    let t0 = fx.url("long.wav/trackID=0");
    let mut f = Vec::new();
    let mut c = fx.client();
    let pair = UdpPair::bind();
    for mode in ["record", "\"RECORD\""] {
        let tr = format!(
            "Transport: RTP/AVP;unicast;client_port={}-{};mode={mode}",
            pair.port(),
            pair.port() + 1
        );
        let r = c.request("SETUP", &t0, &[&tr]);
        check!(
            f,
            r.status == 461,
            "SETUP with mode={mode}: {} (expected 461)",
            r.status
        );
    }
    // mode=play is fine.
    let tr = format!(
        "Transport: RTP/AVP;unicast;client_port={}-{};mode=\"PLAY\"",
        pair.port(),
        pair.port() + 1
    );
    let r = c.request("SETUP", &t0, &[&tr]);
    check!(f, r.status == 200, "SETUP with mode=\"PLAY\": {}", r.status);
    assert_no_failures(f, fx);
}
