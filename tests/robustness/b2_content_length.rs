//! B2 — Content-Length, body and pipelining (docs/ROBUSTNESS.md), with
//! B1#11's split and trickled requests.

use std::thread;
use std::time::{Duration, Instant};

use crate::common::rtsp::build;
use crate::common::UdpPair;
use crate::fixture::{assert_no_failures, check, sess, Fixture};
use crate::table::{case, cat, opt, raw, Case, Close, StatusThenClose};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases() -> Vec<Case> {
    vec![
        case(
            "B2#13 Content-Length 99999999999999999999",
            opt("Content-Length: 99999999999999999999"),
            StatusThenClose(400),
        ),
        case(
            "B2#13 Content-Length -1",
            opt("Content-Length: -1"),
            StatusThenClose(400),
        ),
        case(
            "B2#13 Content-Length 0x10",
            opt("Content-Length: 0x10"),
            StatusThenClose(400),
        ),
        case(
            "B2#13 Content-Length 1e3",
            opt("Content-Length: 1e3"),
            StatusThenClose(400),
        ),
        case(
            "B2#13 Content-Length empty",
            opt("Content-Length:"),
            StatusThenClose(400),
        ),
        case(
            "B2#13 two conflicting Content-Lengths",
            raw(
                "OPTIONS * RTSP/1.0",
                &["CSeq: 13", "Content-Length: 1", "Content-Length: 2"],
            ),
            StatusThenClose(400),
        ),
        case(
            "B2#14 Content-Length 1000000 (over max_body)",
            cat(&[&opt("Content-Length: 1000000"), &[b'z'; 1000]]),
            StatusThenClose(413),
        ),
        case(
            "B2#15 truncated body, then FIN",
            cat(&[&opt("Content-Length: 10"), b"abcd"]),
            Close,
        )
        .fin(),
        case(
            "B2#15 head without its blank line, then FIN",
            "OPTIONS * RTSP/1.0\r\nCSeq: 15\r\n",
            Close,
        )
        .fin(),
    ]
}

/// B1#11 one byte per segment and every split point; B2#17 500 pipelined
/// OPTIONS; B2#18 pipelined PLAY + GET_PARAMETER + TEARDOWN.
#[test]
fn b1_b2_split_trickle_pipeline() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let mut f = Vec::new();
    let strip_o = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .lines()
            .filter(|l| !l.starts_with("o="))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // B1#11: the same DESCRIBE, contiguous and one byte per write.
    let mut c = fx.client();
    let whole = c.request("DESCRIBE", &u, &["Accept: application/sdp"]);
    let req = build("DESCRIBE", &u, 77, &["Accept: application/sdp"], b"");
    for b in &req {
        c.write(&[*b]).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    match c.reply(77) {
        Ok(r) => {
            check!(f, r.status == 200, "byte-by-byte DESCRIBE: {r}");
            check!(
                f,
                strip_o(&r.body) == strip_o(&whole.body),
                "byte-by-byte DESCRIBE body differs"
            );
        }
        Err(e) => f.push(format!("byte-by-byte DESCRIBE: {e}")),
    }

    // B1#11: split at every offset, on one connection (a body too).
    let set = |cseq: u32| {
        build(
            "SET_PARAMETER",
            &u,
            cseq,
            &["Content-Type: text/parameters"],
            b"volume: 0.5\n",
        )
    };
    let desc = |cseq: u32| build("DESCRIBE", &u, cseq, &["Accept: application/sdp"], b"");
    for (name, make, status) in [
        ("SET_PARAMETER", &set as &dyn Fn(u32) -> Vec<u8>, 451),
        ("DESCRIBE", &desc, 200),
    ] {
        let len = make(1000).len();
        for k in 1..len {
            let cseq = 1000 + k as u32;
            let req = make(cseq);
            c.write(&req[..k]).unwrap();
            thread::sleep(Duration::from_millis(2));
            c.write(&req[k..]).unwrap();
            match c.reply(cseq) {
                Ok(r) if r.status == status => {}
                Ok(r) => f.push(format!("{name} split at {k}: {}", r.status)),
                Err(e) => f.push(format!("{name} split at {k}: {e}")),
            }
        }
    }

    // B2#17: 500 OPTIONS in one write, answered in order.
    let all: Vec<u8> = (1..=500)
        .flat_map(|i| build("OPTIONS", "*", i, &[], b""))
        .collect();
    let mut p = fx.client();
    p.write(&all).unwrap();
    for i in 1..=500 {
        match p.reply(i) {
            Ok(r) if r.status == 200 => {}
            Ok(r) => {
                f.push(format!("pipelined OPTIONS {i}: {}", r.status));
                break;
            }
            Err(e) => {
                f.push(format!("pipelined OPTIONS {i}: {e}"));
                break;
            }
        }
    }
    check!(f, p.pending().is_empty(), "bytes after the 500th response");

    // B2#18: SETUP, then PLAY + GET_PARAMETER + TEARDOWN in one segment.
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{u}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let id = s.session();
    let h = sess(&id);
    let mut batch = build("PLAY", &u, 2001, &[&h, "Range: npt=0-"], b"");
    batch.extend(build("GET_PARAMETER", &u, 2002, &[&h], b""));
    batch.extend(build("TEARDOWN", &u, 2003, &[&h], b""));
    c.write(&batch).unwrap();
    let mut teardown_at = Instant::now();
    for (cseq, what) in [(2001, "PLAY"), (2002, "GET_PARAMETER"), (2003, "TEARDOWN")] {
        match c.reply(cseq) {
            Ok(r) if r.status == 200 => {
                if what == "PLAY" {
                    check!(
                        f,
                        r.header("RTP-Info").is_some(),
                        "pipelined PLAY without RTP-Info"
                    );
                }
                if what == "TEARDOWN" {
                    teardown_at = Instant::now();
                }
            }
            Ok(r) => f.push(format!("pipelined {what}: {}", r.status)),
            Err(e) => f.push(format!("pipelined {what}: {e}")),
        }
    }
    let after = pair.until_quiet(Duration::from_millis(1500), Duration::from_secs(4));
    if let Some((_, last)) = after.last() {
        check!(
            f,
            last.saturating_duration_since(teardown_at) < Duration::from_secs(1),
            "RTP still sent {:?} after TEARDOWN",
            last.saturating_duration_since(teardown_at)
        );
    }
    let r = c.request("PLAY", &u, &[&h]);
    check!(
        f,
        r.status == 454,
        "PLAY after pipelined TEARDOWN: {}",
        r.status
    );
    assert_no_failures(f, fx);
}
