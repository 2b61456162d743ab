//! B6 — Range header (PLAY) (docs/ROBUSTNESS.md).

use std::time::Duration;

use crate::common::rtsp::build;
use crate::common::{rtp_payload, rtp_seq, rtp_ts, UdpPair};
use crate::fixture::{
    assert_no_failures, check, contiguous, counting_payload_ok, sess, Fixture, RATE, SPP,
};
use crate::table::{case, opt, Case, Status};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases() -> Vec<Case> {
    vec![case(
        "B6#55 Range on OPTIONS is ignored",
        opt("Range: npt=abc"),
        Status(200),
    )]
}

/// B6#52–#56 on the 60 s clip: every invalid range is 457 and changes
/// nothing; a valid seek starts at the right sample; a seek storm is
/// answered in order with consistent RTP-Info and one sender.
#[test]
fn b6_range() {
    let fx = Fixture::start(&[]);
    let u = fx.url("long.wav");
    let mut f = Vec::new();
    let mut c = fx.client();
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{u}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let h = sess(&s.session());
    let invalid = [
        "npt=30-10".to_owned(),
        "npt=-5-".into(),
        "npt=-".into(),
        "npt=".into(),
        "npt=abc".into(),
        "npt=abc-".into(),
        "npt=1e309-".into(),
        "npt=1e3-".into(),
        "npt=0x10-".into(),
        "npt=inf-".into(),
        "npt=NaN-".into(),
        "npt=99999999999999999999999".into(),
        "npt=99999999999999999999999-".into(),
        "npt=4294967296-".into(),
        "npt=3600-".into(),
        "npt=60-".into(),
        "npt=0:99:00-".into(),
        "npt=10:00:00-".into(),
        "npt=5-4".into(),
        format!("npt={}-", "1".repeat(200)),
        "smpte=99:99:99:99.99-".into(),
        "smpte-25=00:00:01:00-".into(),
        "clock=99999999T999999Z-".into(),
        "clock=19000101T000000Z-".into(),
        "bytes=0-100".into(),
    ];
    for r in &invalid {
        let resp = c.request("PLAY", &u, &[&h, &format!("Range: {r}")]);
        check!(f, resp.status == 457, "Range: {r} answered {}", resp.status);
    }
    let r = c.request("PLAY", &u, &[&h, "Range: npt=1-", "Range: npt=2-"]);
    check!(f, r.status == 400, "two Range headers: {}", r.status);
    check!(f, pair.drain_now() == 0, "RTP sent after refused PLAYs");
    // Still Ready: PAUSE is the Ready no-op, SETUP is allowed.
    let r = c.request("PAUSE", &u, &[&h]);
    check!(
        f,
        r.status == 200,
        "PAUSE after refused PLAYs: {}",
        r.status
    );

    // A valid seek: the first packet is RTP-Info's, carrying sample 10 s.
    let r = c.request("PLAY", &u, &[&h, "Range: npt=10-"]);
    check!(f, r.status == 200, "PLAY npt=10-: {r}");
    check!(
        f,
        r.header("Range").is_some_and(|v| v.starts_with("npt=10")),
        "Range in reply: {:?}",
        r.header("Range")
    );
    let (seq, ts) = r.rtp_info()[0];
    let pkts = pair.collect(Duration::from_millis(500));
    match pkts.first() {
        Some((p, _)) => {
            check!(
                f,
                (rtp_seq(p), rtp_ts(p)) == (seq, ts),
                "first packet {} {} vs RTP-Info {seq} {ts}",
                rtp_seq(p),
                rtp_ts(p)
            );
            check!(
                f,
                counting_payload_ok(rtp_payload(p), 10 * RATE),
                "first packet after npt=10- is not sample 80000"
            );
        }
        None => f.push("no RTP after PLAY npt=10-".into()),
    }
    // An invalid range while playing: 457 and the stream goes on unchanged.
    let r = c.request("PLAY", &u, &[&h, "Range: npt=abc"]);
    check!(
        f,
        r.status == 457,
        "invalid Range while playing: {}",
        r.status
    );
    let more = pair.collect(Duration::from_millis(500));
    let both: Vec<_> = pkts.iter().chain(&more).cloned().collect();
    if let Err(e) = contiguous(&both) {
        f.push(format!("stream around a refused seek: {e}"));
    }
    if let (Some((p, _)), Some((q, _))) = (pkts.first(), both.last()) {
        let idx = 10 * RATE + rtp_ts(q).wrapping_sub(rtp_ts(p));
        check!(
            f,
            counting_payload_ok(rtp_payload(q), idx),
            "a refused seek moved the stream"
        );
    }

    // B6#56: 30 seeks pipelined in one write.
    let batch: Vec<u8> = (0..30)
        .flat_map(|i| {
            build(
                "PLAY",
                &u,
                500 + i,
                &[&h, &format!("Range: npt={}-", 11 + i)],
                b"",
            )
        })
        .collect();
    c.write(&batch).unwrap();
    let mut infos = Vec::new();
    for i in 0..30 {
        match c.reply(500 + i) {
            Ok(r) if r.status == 200 => infos.push(r.rtp_info()[0]),
            Ok(r) => f.push(format!("seek {i}: {}", r.status)),
            Err(e) => {
                f.push(format!("seek {i}: {e}"));
                break;
            }
        }
    }
    for w in infos.windows(2) {
        let (ds, dt) = (w[1].0.wrapping_sub(w[0].0), w[1].1.wrapping_sub(w[0].1));
        check!(
            f,
            ds < 1000 && dt < 1000 * SPP,
            "RTP-Info went backwards: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    if let Some(&(seq, ts)) = infos.last() {
        let pkts = pair.collect(Duration::from_millis(2500));
        let from: Vec<_> = pkts
            .iter()
            .skip_while(|(p, _)| rtp_seq(p) != seq)
            .cloned()
            .collect();
        match from.first() {
            Some((p, _)) => {
                check!(
                    f,
                    rtp_ts(p) == ts,
                    "after the seeks: ts {} vs RTP-Info {ts}",
                    rtp_ts(p)
                );
                check!(
                    f,
                    counting_payload_ok(rtp_payload(p), 40 * RATE),
                    "after the seeks: not sample 40 s"
                );
            }
            None => f.push(format!("no packet with the last RTP-Info seq {seq}")),
        }
        if let Err(e) = contiguous(&from) {
            f.push(format!("after the seeks: {e}"));
        }
        // One sender: about 50 packets/s over the last 2 s.
        let t_end = from.last().map(|x| x.1);
        if let Some(t_end) = t_end {
            let n = from
                .iter()
                .filter(|(_, t)| t_end.duration_since(*t) < Duration::from_secs(2))
                .count();
            check!(
                f,
                (85..=115).contains(&n),
                "{n} packets in 2 s after the seek storm"
            );
        }
    }
    let r = c.request("TEARDOWN", &u, &[&h]);
    check!(f, r.status == 200, "TEARDOWN: {}", r.status);
    assert_no_failures(f, fx);
}
