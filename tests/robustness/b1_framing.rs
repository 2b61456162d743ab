//! B1 — Framing and request-line parsing (docs/ROBUSTNESS.md).

use crate::fixture::{assert_no_failures, Fixture};
use crate::table::{case, cat, describe, opt, raw, run_case, Case, Status, StatusThenClose};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let base = fx.base();
    let u = fx.url("long.wav");
    let mib = "a".repeat(1 << 20);
    let many_headers: String = (0..10_000).map(|i| format!("X-{i:05}: b\r\n")).collect();
    let max_headers: Vec<String> = (1..256).map(|i| format!("X-{i}: v")).collect();
    let max_headers: Vec<&str> = [
        &["CSeq: 8"][..],
        &max_headers.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat();

    vec![
        case(
            "B1#1 leading space (CVE-2013-6934)",
            " OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#2 leading CRLF lines",
            "\r\n\r\n\r\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n",
            Status(200),
        ),
        case(
            "B1#2 leading bare LF lines",
            "\n\nOPTIONS * RTSP/1.0\r\nCSeq: 2\r\n\r\n",
            Status(200),
        ),
        case(
            "B1#3 1 MiB URL without CRLF",
            format!("OPTIONS {base}/{mib}"),
            StatusThenClose(414),
        )
        .no_echo(),
        case(
            "B1#3 1 MiB request line without CRLF",
            format!("OPTIONS * RTSP/1.0{mib}"),
            StatusThenClose(400),
        )
        .no_echo(),
        case("B1#3 1 MiB token without CRLF", &mib, StatusThenClose(400)).no_echo(),
        case(
            "B1#4 64-byte method",
            raw(&format!("{} * RTSP/1.0", "M".repeat(64)), &["CSeq: 4"]),
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#4 10 KiB method",
            raw(
                &format!("{} * RTSP/1.0", "M".repeat(10 << 10)),
                &["CSeq: 4"],
            ),
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#4 32-byte unknown method",
            raw(&format!("{} * RTSP/1.0", "M".repeat(32)), &["CSeq: 4"]),
            Status(501),
        )
        .want("Public", "DESCRIBE"),
        case(
            "B1#5 lowercase play",
            raw(&format!("play {u} RTSP/1.0"), &["CSeq: 5"]),
            Status(501),
        )
        .want("Public", "PLAY"),
        case(
            "B1#5 XPLAY",
            raw(&format!("XPLAY {u} RTSP/1.0"), &["CSeq: 5"]),
            Status(501),
        )
        .want("Public", "PLAY"),
        case(
            "B1#5 GET / HTTP/1.1 with a CSeq",
            raw("GET / HTTP/1.1", &["Host: 127.0.0.1", "CSeq: 5"]),
            Status(501),
        ),
        case(
            "B1#6 RTSP/2.0",
            raw("OPTIONS * RTSP/2.0", &["CSeq: 6"]),
            StatusThenClose(505),
        )
        .no_echo(),
        case(
            "B1#6 RTSP/9.9",
            raw("OPTIONS * RTSP/9.9", &["CSeq: 6"]),
            StatusThenClose(505),
        )
        .no_echo(),
        case(
            "B1#6 rtsp/1.0",
            raw("OPTIONS * rtsp/1.0", &["CSeq: 6"]),
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#6 no version",
            raw(&format!("DESCRIBE {u}"), &["CSeq: 6"]),
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#9 header folding (SP)",
            "OPTIONS * RTSP/1.0\r\nCSeq: 9\r\nX-A: b\r\n c\r\n\r\n",
            StatusThenClose(400),
        ),
        case(
            "B1#9 header folding (HTAB)",
            "OPTIONS * RTSP/1.0\r\nCSeq: 9\r\nX-A: b\r\n\tc\r\n\r\n",
            StatusThenClose(400),
        ),
        case(
            "B1#9 folding that would inject a header",
            "OPTIONS * RTSP/1.0\r\nCSeq: 9\r\nX-A: b\r\n X-Injected: y\r\n\r\n",
            StatusThenClose(400),
        ),
        case(
            "B1#9 NUL in a header name",
            "OPTIONS * RTSP/1.0\r\nCSeq: 9\r\nHeader\0: v\r\n\r\n",
            StatusThenClose(400),
        ),
        case(
            "B1#9 header without colon",
            "OPTIONS * RTSP/1.0\r\nCSeq: 9\r\nNoColon\r\n\r\n",
            StatusThenClose(400),
        ),
        case(
            "B1#10 10,000 headers",
            format!("OPTIONS * RTSP/1.0\r\nCSeq: 10\r\n{many_headers}\r\n"),
            StatusThenClose(400),
        ),
        case(
            "B1#10 one 100 KiB header",
            opt(&format!("X-Big: {}", "v".repeat(100 << 10))),
            StatusThenClose(400),
        ),
        case(
            "B1#10 256 headers (the cap) accepted",
            raw("OPTIONS * RTSP/1.0", &max_headers),
            Status(200),
        ),
        case(
            "B1#12 invalid UTF-8 in a header value",
            cat(&[b"OPTIONS * RTSP/1.0\r\nCSeq: 12\r\nX-A: \xff\xfe\x80\r\n\r\n"]),
            StatusThenClose(400),
        ),
        case(
            "B1#12 0x80-0xFF bytes in the URL",
            cat(&[
                b"DESCRIBE ",
                base.as_bytes(),
                b"/\x80\xff.wav RTSP/1.0\r\nCSeq: 12\r\n\r\n",
            ]),
            StatusThenClose(400),
        )
        .no_echo(),
        case(
            "B1#12 percent-encoded invalid UTF-8 in the URL",
            describe(&format!("{base}/%ff%fe.wav")),
            Status(404),
        ),
        case(
            "B1#12 valid non-ASCII UTF-8 in the URL",
            describe(&format!("{base}/caf\u{e9}.wav")),
            Status(404),
        ),
    ]
}

/// B1#5 literally: an HTTP client's `GET / HTTP/1.1` (which never carries a
/// CSeq) gets 501 Not Implemented (or 405 with Allow), and the connection
/// stays usable. The parser lets HTTP/1.x through for exactly this reason.
/// The case is for tunnelling off (tests/tunnel.rs has it on).
#[test]
fn b1_http_get_without_cseq_is_501() {
    let fx = Fixture::start(&["--tunnel", "false"]);
    let c = case(
        "B1#5 GET / HTTP/1.1 (no CSeq)",
        raw("GET / HTTP/1.1", &["Host: 127.0.0.1", "Accept: */*"]),
        Status(501),
    );
    let failures = run_case(&fx, &c).err().into_iter().collect();
    assert_no_failures(failures, fx);
}
