//! Live channels (`--live NAME=file:PATH`): a looping file as one shared
//! timeline, fanned out to every listener; late joiners; G.711; real
//! clients over UDP and TCP.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{rtp_payload, rtp_seq, rtp_ssrc, rtp_ts, setup_udp, Rtsp, Server, UdpPair};
use rtspd::proto::packetize::g711::{linear_to_ulaw, ulaw_to_linear};

const RATE: u32 = 8000;

/// A 1 s 8 kHz mono clip whose sample n is a distinct value (n * 7 - 20000),
/// so any 20 ms window identifies its position.
fn one_second(dir: &Path) -> Vec<i16> {
    let samples: Vec<i16> = (0..RATE as i32).map(|n| (n * 7 - 20_000) as i16).collect();
    common::write_wav(
        &dir.join("loop.wav"),
        common::int_spec(RATE, 1, 16),
        samples.iter().copied(),
    );
    samples
}

fn serve(codec: &str) -> (Server, Vec<i16>) {
    let mut samples = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    samples.extend(one_second(dir.path()));
    let spec = format!(
        "ch=file:{},codec={codec}",
        dir.path().join("loop.wav").display()
    );
    let server = Server::start_with(|_| {}, &["--live", &spec]);
    // The channel read its file at start; the temp dir may go.
    drop(dir);
    (server, samples)
}

/// Where `window` starts in `samples` played in a loop.
fn offset_in_loop(samples: &[i16], window: &[i16]) -> usize {
    (0..samples.len())
        .find(|&p| {
            window
                .iter()
                .enumerate()
                .all(|(i, &w)| samples[(p + i) % samples.len()] == w)
        })
        .unwrap_or_else(|| panic!("window {:?}.. not found in the source", &window[..4]))
}

fn l16(payload: &[u8]) -> Vec<i16> {
    payload
        .chunks_exact(2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .collect()
}

fn play(c: &mut Rtsp, url: &str, session: &str) -> (u16, u32) {
    let r = c.request("PLAY", url, &[&format!("Session: {session}")]);
    assert_eq!(r.status, 200, "PLAY {url}");
    assert_eq!(r.header("Range"), Some("npt=now-"));
    r.rtp_info()[0]
}

#[test]
fn looped_file_is_one_continuous_stream_and_late_joiners_share_it() {
    let (server, samples) = serve("l16");
    let url = server.url("live/ch");
    let d = Rtsp::connect(server.addr()).request("DESCRIBE", &url, &[]);
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(sdp.contains("a=rtpmap:96 L16/8000"), "{sdp}");
    assert!(
        !sdp.contains("a=range:npt=0-"),
        "a live channel has no duration: {sdp}"
    );

    let (mut a, pa) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let sa = setup_udp(&mut a, &url, &pa);
    let (seq_a, ts_a) = play(&mut a, &url, &sa);
    std::thread::sleep(Duration::from_millis(1000));
    let (mut b, pb) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let sb = setup_udp(&mut b, &url, &pb);
    let (seq_b, ts_b) = play(&mut b, &url, &sb);
    std::thread::sleep(Duration::from_millis(1500));
    for (c, s) in [(&mut a, &sa), (&mut b, &sb)] {
        let r = c.request("TEARDOWN", &url, &[&format!("Session: {s}")]);
        assert_eq!(r.status, 200);
    }
    let got_a: Vec<Vec<u8>> = pa
        .recv_rtp_until_quiet(Duration::from_millis(300))
        .into_iter()
        .map(|p| p.0)
        .collect();
    let got_b: Vec<Vec<u8>> = pb
        .recv_rtp_until_quiet(Duration::from_millis(300))
        .into_iter()
        .map(|p| p.0)
        .collect();
    // A: 2.5 s across at least two loop points.
    assert!(got_a.len() >= 120, "{} packets", got_a.len());
    assert_eq!(
        (rtp_seq(&got_a[0]), rtp_ts(&got_a[0])),
        (seq_a, ts_a),
        "first packet = RTP-Info"
    );
    assert_eq!(
        (rtp_seq(&got_b[0]), rtp_ts(&got_b[0])),
        (seq_b, ts_b),
        "late joiner: first packet = RTP-Info"
    );
    let start = offset_in_loop(&samples, &l16(rtp_payload(&got_a[0])));
    let mut n = 0usize;
    for (k, p) in got_a.iter().enumerate() {
        assert_eq!(
            rtp_seq(p),
            seq_a.wrapping_add(k as u16),
            "no seq gap at packet {k}"
        );
        assert_eq!(
            rtp_ts(p),
            ts_a.wrapping_add(160 * k as u32),
            "no timestamp jump at packet {k}"
        );
        for s in l16(rtp_payload(p)) {
            assert_eq!(
                s,
                samples[(start + n) % samples.len()],
                "sample {n} (the file repeated)"
            );
            n += 1;
        }
    }
    assert!(
        start + n > 2 * samples.len(),
        "crossed the loop point: {start} + {n}"
    );
    // Both listeners get the very same packets for the seqs they share.
    let same_ssrc = rtp_ssrc(&got_a[0]) == rtp_ssrc(&got_b[0]);
    assert!(same_ssrc, "one SSRC for the channel");
    let k = seq_b.wrapping_sub(seq_a) as usize;
    assert!(
        k > 40 && k < got_a.len(),
        "B joined about 1 s (50 packets) later: {k}"
    );
    for (i, pb) in got_b.iter().enumerate().take(got_a.len() - k) {
        assert_eq!(&got_a[k + i], pb, "packet {i} of B is A's packet {}", k + i);
    }
}

#[test]
fn pause_leaves_and_play_rejoins_at_the_live_edge() {
    let (server, _) = serve("l16");
    let url = server.url("live/ch");
    let (mut c, p) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let s = setup_udp(&mut c, &url, &p);
    let h = format!("Session: {s}");
    let (seq1, ts1) = play(&mut c, &url, &s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.request("PAUSE", &url, &[&h]).status, 200);
    let first = p.recv_rtp_until_quiet(Duration::from_millis(200));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        p.recv_rtp_until_quiet(Duration::from_millis(100))
            .is_empty(),
        "nothing while paused"
    );
    let (seq2, ts2) = play(&mut c, &url, &s);
    let again = p.recv_rtp().expect("packets after PLAY").0;
    assert_eq!(
        (rtp_seq(&again), rtp_ts(&again)),
        (seq2, ts2),
        "fresh RTP-Info"
    );
    // The live edge moved on while paused: about 0.7 s of the timeline.
    let skipped = ts2.wrapping_sub(ts1) as f64 / f64::from(RATE);
    assert!((0.6..2.0).contains(&skipped), "{skipped} s");
    assert!(
        seq2.wrapping_sub(seq1) as usize > first.len(),
        "the channel's seq ran on"
    );
}

#[test]
fn unknown_channel_is_404() {
    let (server, _) = serve("l16");
    let r = Rtsp::connect(server.addr()).request("DESCRIBE", &server.url("live/nope"), &[]);
    assert_eq!(r.status, 404);
}

/// ffmpeg decodes the PCMU channel (UDP and TCP): every sample equals the
/// file's, from where it joined, through µ-law and back.
#[test]
fn ffmpeg_plays_pcmu_channel_over_udp_and_tcp() {
    if !common::have("ffmpeg") {
        panic!("ffmpeg is required (scripts/test installs it)");
    }
    let (server, samples) = serve("pcmu");
    let expected: Vec<i16> = samples
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    let url = server.url("live/ch");
    for transport in ["udp", "tcp"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.raw");
        let status = Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-v",
                "error",
                "-rtsp_transport",
                transport,
                "-i",
                &url,
            ])
            .args(["-t", "2", "-f", "s16le", "-y"])
            .arg(&out)
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "ffmpeg over {transport}");
        let raw = std::fs::read(&out).expect("decoded audio");
        let decoded: Vec<i16> = raw
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert!(
            decoded.len() >= 15_000,
            "{transport}: {} samples",
            decoded.len()
        );
        let start = offset_in_loop(&expected, &decoded[..160]);
        for (i, &s) in decoded.iter().enumerate() {
            assert_eq!(
                s,
                expected[(start + i) % expected.len()],
                "{transport}: sample {i}"
            );
        }
    }
}
