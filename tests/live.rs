//! Live channels (`--live NAME=file:PATH`): a looping file as one shared
//! timeline, fanned out to every listener; late joiners; G.711; real
//! clients over UDP and TCP.

mod common;

use std::path::Path;
use std::time::Duration;

use common::interleaved::{gaps, read_frames, tcp_listener};
use common::pcm::offset_in_loop;
use common::tools::{ffmpeg_s16be, require, run_tool};
use common::udp::bye_within;
use common::{
    l16_samples, rtp_payload, rtp_seq, rtp_ssrc, rtp_ts, setup_udp, Rtsp, Server, UdpPair,
};
use rtspd::proto::packetize::g711::{linear_to_ulaw, ulaw_to_linear};

const RATE: u32 = 8000;

/// A 1 s 8 kHz mono clip of distinct samples ([`common::pcm::distinct_wav`]).
fn one_second(dir: &Path) -> Vec<i16> {
    common::pcm::distinct_wav(&dir.join("loop.wav"), RATE)
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
    let start = offset_in_loop(&samples, &l16_samples(rtp_payload(&got_a[0])));
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
        for s in l16_samples(rtp_payload(p)) {
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
    require("ffmpeg");
    let (server, samples) = serve("pcmu");
    let expected: Vec<i16> = samples
        .iter()
        .map(|&s| ulaw_to_linear(linear_to_ulaw(s)))
        .collect();
    let url = server.url("live/ch");
    for transport in ["udp", "tcp"] {
        let input = ["-rtsp_transport", transport, "-i", &url, "-t", "2"];
        let (raw, _) = ffmpeg_s16be(&input, Duration::from_secs(30));
        let decoded = l16_samples(&raw);
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

/// A TCP listener that stops reading loses only its own packets and is
/// cut off after the write timeout; a UDP and a TCP canary on the same
/// channel lose nothing meanwhile.
#[test]
fn slow_tcp_listener_is_dropped_without_hurting_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 48 kHz stereo L16: 192 kB/s, so a stalled reader fills its buffers fast.
    let frames: Vec<i16> = (0..48_000 * 2).map(|i| (i % 3000) as i16).collect();
    common::write_wav(
        &dir.path().join("hifi.wav"),
        common::int_spec(48_000, 2, 16),
        frames,
    );
    let spec = format!("hifi=file:{}", dir.path().join("hifi.wav").display());
    let server = Server::start_with(|_| {}, &["--live", &spec, "--write-timeout", "2"]);
    let url = server.url("live/hifi");

    let before = server.fds().expect("the server's open descriptors");
    let (slow, _) = tcp_listener(&server, &url, Some(4096));
    let (tcp_canary, pending) = tcp_listener(&server, &url, None);
    let (mut c, udp) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let s = setup_udp(&mut c, &url, &udp);
    play(&mut c, &url, &s);

    let reader =
        std::thread::spawn(move || read_frames(tcp_canary, pending, Duration::from_secs(9)));
    let udp_pkts = {
        let mut got = Vec::new();
        let end = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < end {
            if let Some((p, _)) = udp.recv_rtp() {
                got.push(rtp_seq(&p));
            }
        }
        got
    };
    // At 8 s the stalled connection is gone (its buffers filled within
    // about 2 s, then the 2 s write timeout): only the two canaries' control
    // connections are open.
    let open = server.fds().expect("descriptors");
    assert_eq!(
        open,
        before + 2,
        "the slow listener's connection was closed"
    );
    let tcp_seqs = reader.join().expect("canary reader");
    // 8 s at 20 ms: 400 packets each, with no gap.
    assert!(udp_pkts.len() >= 380, "UDP canary got {}", udp_pkts.len());
    assert_eq!(gaps(&udp_pkts), 0, "UDP canary lost packets");
    assert!(tcp_seqs.len() >= 380, "TCP canary got {}", tcp_seqs.len());
    assert_eq!(gaps(&tcp_seqs), 0, "TCP canary lost packets");

    // What the slow listener got is far less than the 8 s it missed.
    let mut slow = slow;
    slow.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut total = 0usize;
    let mut buf = [0u8; 65536];
    while let Ok(n) = std::io::Read::read(&mut slow, &mut buf) {
        if n == 0 || total > 8 * 192_000 {
            break;
        }
        total += n;
    }
    assert!(
        total < 8 * 192_000 / 2,
        "it got {total} bytes, not the whole 8 s"
    );
    let mut server = server;
    assert!(server.alive());
}

/// GStreamer (`rtspsrc protocols=tcp`) plays a live channel: about 100
/// buffers (2 s), every sample the file's, from where it joined.
#[test]
fn gstreamer_plays_live_channel_over_tcp() {
    require("gst-launch-1.0");
    let (server, samples) = serve("l16");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.raw");
    let args = common::gst_l16_args(
        &server.url("live/ch"),
        "protocols=tcp",
        &["identity eos-after=100"],
        &out,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_tool("gst-launch-1.0", &args, Duration::from_secs(20));
    assert!(
        run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
        "gst-launch-1.0: {}\n{}",
        run.status,
        run.stderr
    );
    let decoded = l16_samples(&std::fs::read(&out).expect("gst output"));
    // identity's eos-after=100 lets 99 or 100 buffers through, by version.
    assert!(
        [99 * 160, 100 * 160].contains(&decoded.len()),
        "{} samples: not 99-100 buffers of 20 ms",
        decoded.len()
    );
    let start = offset_in_loop(&samples, &decoded[..160]);
    for (i, &s) in decoded.iter().enumerate() {
        assert_eq!(s, samples[(start + i) % samples.len()], "sample {i}");
    }
}

/// `pipe:`: raw PCM from a command, paced by the command (`ffmpeg -re`).
/// A listener gets the command's samples in order, then a BYE when the
/// command ends.
#[test]
fn pipe_source_is_relayed_and_its_end_says_bye() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let samples = one_second(dir.path());
    let wav = dir.path().join("loop.wav");
    let spec = format!(
        "pipe=pipe:ffmpeg -nostdin -v error -re -stream_loop 2 -i {} -f s16le -ac 1 -ar 8000 -,rate=8000,channels=1,format=s16le",
        wav.display()
    );
    let server = Server::start_with(|_| {}, &["--live", &spec]);
    let url = server.url("live/pipe");
    let (mut c, p) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let s = setup_udp(&mut c, &url, &p);
    let (seq0, _) = play(&mut c, &url, &s);
    // Three seconds of audio (the file three times) play out, then the
    // source ends: a BYE comes.
    let (got, bye) = collect_until_bye(&p, Duration::from_secs(8));
    assert!(bye, "a BYE after the source ended");
    assert!(got.len() >= 20, "{} packets", got.len());
    assert_eq!(rtp_seq(&got[0]), seq0, "first packet = RTP-Info");
    let pcm: Vec<i16> = got
        .iter()
        .flat_map(|p| l16_samples(rtp_payload(p)))
        .collect();
    let start = offset_in_loop(&samples, &pcm[..160]);
    for (i, &x) in pcm.iter().enumerate() {
        assert_eq!(
            x,
            samples[(start + i) % samples.len()],
            "sample {i}: in order, none lost"
        );
    }
    for w in got.windows(2) {
        assert_eq!(rtp_seq(&w[1]), rtp_seq(&w[0]).wrapping_add(1), "no seq gap");
    }
}

/// `stdin`: raw big-endian PCM written to rtspd's standard input plays out
/// in order; closing stdin ends the channel with a BYE after the buffered
/// audio.
#[test]
fn stdin_source_plays_what_is_written() {
    use std::io::Write;
    let mut server = Server::start_with(
        |_| {},
        &["--live", "in=stdin,rate=8000,channels=1,format=s16be"],
    );
    let mut stdin = server.take_stdin().expect("stdin");
    let url = server.url("live/in");
    let (mut c, p) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let s = setup_udp(&mut c, &url, &p);
    let (seq0, _) = play(&mut c, &url, &s);
    // 1.5 s of a ramp, at once (the channel buffers up to 2 s), then EOF.
    let written: Vec<i16> = (0..12_000).map(|n| (n * 5 - 30_000) as i16).collect();
    let bytes: Vec<u8> = written.iter().flat_map(|x| x.to_be_bytes()).collect();
    stdin.write_all(&bytes).expect("write stdin");
    drop(stdin);
    let (got, bye) = collect_until_bye(&p, Duration::from_secs(6));
    assert!(bye, "a BYE after stdin closed and the audio played out");
    assert_eq!(rtp_seq(&got[0]), seq0, "first packet = RTP-Info");
    let pcm: Vec<i16> = got
        .iter()
        .flat_map(|p| l16_samples(rtp_payload(p)))
        .collect();
    assert_eq!(pcm, written, "every sample written, in order");
}

/// RTP packets until an RTCP BYE arrives on the pair (or `max` passes);
/// whether the BYE came.
fn collect_until_bye(p: &UdpPair, max: Duration) -> (Vec<Vec<u8>>, bool) {
    let (mut got, mut bye) = (Vec::new(), false);
    let end = std::time::Instant::now() + max;
    while std::time::Instant::now() < end && !bye {
        got.extend(
            p.recv_rtp_until_quiet(Duration::from_millis(50))
                .into_iter()
                .map(|x| x.0),
        );
        bye = bye_within(&p.rtcp, Duration::from_millis(100));
    }
    // Packets that came with the BYE.
    got.extend(
        p.recv_rtp_until_quiet(Duration::from_millis(50))
            .into_iter()
            .map(|x| x.0),
    );
    (got, bye)
}
