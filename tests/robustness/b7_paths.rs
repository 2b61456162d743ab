//! B7 — URL and path traversal (file-serving mode) (docs/ROBUSTNESS.md),
//! and I5: nothing outside the media root is served, through symlinks
//! either. The fixture's media holds the links (see `Fixture::start`).

use crate::fixture::Fixture;
use crate::table::{case, describe, raw, Case, Status, StatusThenClose, UDP};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases(fx: &Fixture) -> Vec<Case> {
    let base = fx.base();
    let udp = UDP;

    vec![
        case(
            "B7#57 ../../etc/passwd",
            describe(&format!("{base}/../../etc/passwd")),
            Status(404),
        ),
        case(
            "B7#57 media/../../../etc/shadow",
            describe(&format!("{base}/media/../../../etc/shadow")),
            Status(404),
        ),
        case(
            "B7#57 %2e%2e/%2e%2e/etc/passwd",
            describe(&format!("{base}/%2e%2e/%2e%2e/etc/passwd")),
            Status(404),
        ),
        case(
            "B7#57 ..%2f..%2fetc%2fpasswd",
            describe(&format!("{base}/..%2f..%2fetc%2fpasswd")),
            Status(404),
        ),
        case(
            "B7#57 ..%5c..%5cetc%5cpasswd",
            describe(&format!("{base}/..%5c..%5cetc%5cpasswd")),
            Status(404),
        ),
        case(
            "B7#57 NUL via %00",
            describe(&format!("{base}/long.wav%00.txt")),
            Status(404),
        ),
        case(
            "B7#59 //etc/passwd",
            describe(&format!("{base}//etc/passwd")),
            Status(404),
        ),
        case(
            "B7#59 Windows drive C:/x",
            describe(&format!("{base}/C:/x")),
            Status(404),
        ),
        case(
            "B7#59 a 4 KiB path",
            describe(&format!("{base}/{}", "a/".repeat(2 << 10))),
            StatusThenClose(414),
        )
        .no_echo(),
        case(
            "B7#59 empty path after @ (gortsplib #664)",
            describe(&format!("rtsp://@127.0.0.1:{}", fx.proc.port)),
            Status(404),
        ),
        case("B7#59 * as the URL of DESCRIBE", describe("*"), Status(404)),
        case(
            "B7#59 * as the URL of SETUP",
            raw(
                "SETUP * RTSP/1.0",
                &["CSeq: 59", &format!("Transport: RTP/AVP;unicast;{udp}")],
            ),
            Status(404),
        ),
        case(
            "B7#59 a directory",
            describe(&format!("{base}/outdir")),
            Status(404),
        ),
        case("B7#59 a relative URL", describe("/long.wav"), Status(400)),
        case(
            "B7#59 an http:// URL",
            describe("http://127.0.0.1/long.wav"),
            Status(400),
        ),
        case(
            "I5 absolute symlink out of the root",
            describe(&format!("{base}/escape.wav")),
            Status(404),
        ),
        case(
            "I5 relative symlink out of the root",
            describe(&format!("{base}/relescape.wav")),
            Status(404),
        ),
        case(
            "I5 symlinked folder out of the root",
            describe(&format!("{base}/outdir/secret.wav")),
            Status(404),
        ),
        case(
            "I5 symlink inside the root is served",
            describe(&format!("{base}/alias.wav")),
            Status(200),
        )
        .want("Content-Type", "application/sdp"),
        case(
            "B7#61 a foreign host is served by path only",
            describe("rtsp://evil.example/long.wav"),
            Status(200),
        )
        .want("Content-Type", "application/sdp"),
    ]
}
