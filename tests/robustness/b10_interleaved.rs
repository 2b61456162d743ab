//! B10 — Interleaved binary frames on the RTSP channel
//! (docs/ROBUSTNESS.md).

use std::time::{Duration, Instant};

use crate::common::Rtsp;
use crate::fixture::{assert_no_failures, check, rtcp_rr, Fixture};

/// B10#71–#74: `$` frames are framing errors before an interleaved SETUP,
/// RTCP on them is accepted after one, unknown channels are skipped, a
/// truncated frame runs into the read deadline, and a flood is cut off.
/// The canary streams throughout.
#[test]
fn b10_interleaved_frames() {
    let fx = Fixture::start(&["--read-timeout", "2"]);
    let u = fx.url("long.wav");
    let setup_tcp = |c: &mut Rtsp| {
        let r = c.request(
            "SETUP",
            &format!("{u}/trackID=0"),
            &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"],
        );
        r.status
    };
    let frame = |ch: u8, payload: &[u8]| {
        let mut f = vec![b'$', ch];
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut f = Vec::new();

    // #73: before any SETUP, and in the middle of a header block.
    let mut c = fx.client();
    c.write(&frame(1, &rtcp_rr(7))).unwrap();
    match c.read_response(Duration::from_secs(3)) {
        Ok(r) => check!(f, r.status == 400, "frame before SETUP: {r}"),
        Err(e) => check!(f, e.contains("closed"), "frame before SETUP: {e}"),
    }
    check!(
        f,
        c.expect_eof(Duration::from_secs(3)).is_ok(),
        "closed after the framing error"
    );
    let mut c = fx.client();
    c.write(b"OPTIONS * RTSP/1.0\r\nCSeq: 9\r\n$\x00\x00\x04abcd\r\n\r\n")
        .unwrap();
    let r = c.read_response(Duration::from_secs(3));
    check!(
        f,
        r.as_ref().is_ok_and(|r| r.status == 400),
        "frame inside a header block: {r:?}"
    );
    check!(
        f,
        c.expect_eof(Duration::from_secs(3)).is_ok(),
        "closed after it"
    );

    // #71, #72: after an interleaved SETUP, an RR and a frame on an unknown
    // channel are taken in stride; the next request is answered.
    let mut c = fx.client();
    let s = setup_tcp(&mut c);
    check!(f, s == 200, "interleaved SETUP: {s}");
    let mut bytes = frame(1, &rtcp_rr(7));
    bytes.extend(frame(200, &[]));
    bytes.extend_from_slice(b"OPTIONS * RTSP/1.0\r\nCSeq: 77\r\n\r\n");
    c.write(&bytes).unwrap();
    let r = c.read_response(Duration::from_secs(3));
    check!(
        f,
        r.as_ref()
            .is_ok_and(|r| r.status == 200 && r.header("CSeq") == Some("77")),
        "OPTIONS after RR and channel-200 frames: {r:?}"
    );
    // #72: a frame that announces 65535 bytes and sends 10 runs into the
    // 2 s read deadline: 408, then the connection closes.
    let mut truncated = vec![b'$', 0, 0xFF, 0xFF];
    truncated.extend_from_slice(&[0u8; 10]);
    c.write(&truncated).unwrap();
    let t = Instant::now();
    let r = c.read_response(Duration::from_secs(5));
    check!(
        f,
        r.as_ref().is_ok_and(|r| r.status == 408),
        "truncated frame: {r:?}"
    );
    check!(
        f,
        t.elapsed() >= Duration::from_millis(1500),
        "not before the deadline"
    );
    check!(
        f,
        c.expect_eof(Duration::from_secs(3)).is_ok(),
        "closed after 408"
    );

    // #74: 5,000 empty frames at once, over the 1,000 a second allowed.
    let mut c = fx.client();
    let s = setup_tcp(&mut c);
    check!(f, s == 200, "interleaved SETUP: {s}");
    let flood: Vec<u8> = (0..5000).flat_map(|_| frame(1, &[])).collect();
    let _ = c.write(&flood);
    check!(
        f,
        c.expect_eof(Duration::from_secs(3)).is_ok(),
        "a frame flood is cut off"
    );
    assert_no_failures(f, fx);
}
