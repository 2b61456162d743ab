//! MP4 clips with H.264 video and AAC audio, against real clients (ffprobe,
//! ffmpeg, GStreamer) and raw sockets: what arrives must be what the file
//! holds, access unit for access unit, and audio and video must line up.
//!
//! Expectations come from ffmpeg reading the source file directly, never
//! from rtspd's own demuxer.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sync::{av_offset_ms, sync_clip};
use common::tools::{ffmpeg, ffprobe, par, require};
use common::udp::recv_sr;
use common::{bundled_media, rtp_payload, rtp_seq, rtp_ts, Rtsp, Server, UdpPair};

/// The bundled sample: 10 s of 320x240 H.264 at 25 fps, a keyframe every
/// second, with 44.1 kHz stereo AAC.
const SAMPLE: &str = "testsrc-320x240.mp4";

fn sample_path() -> PathBuf {
    bundled_media().join(SAMPLE)
}

/// How long a client may take for a clip of `secs` seconds in real time.
fn limit_for(secs: f64) -> Duration {
    Duration::from_secs_f64(secs + 25.0)
}

// ---------------------------------------------------------------------------
// Reading what ffmpeg wrote

fn nal_type(n: &[u8]) -> u8 {
    n[0] & 0x1F
}

/// The hash column of an ffmpeg framemd5 file, one entry per packet.
fn framemd5_hashes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        // stream, dts, pts, duration, size, hash[, side data...]
        .filter_map(|l| l.split(',').nth(5))
        .map(|h| h.trim().to_owned())
        .collect()
}

/// The value of `key=` in ffprobe's `default` output.
fn probe_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// Copies `input`'s video to an Annex B stream and hashes its audio packets,
/// with ffmpeg (`-c copy`, nothing decoded). `input_args` end with the
/// input; `bsf` adds `h264_mp4toannexb`, which moves the parameter sets
/// in-band before each IDR, as rtspd sends them.
fn copy_streams(input_args: &[&str], bsf: bool, dir: &Path, name: &str) -> (Vec<u8>, Vec<String>) {
    let v = dir.join(format!("{name}.h264"));
    let a = dir.join(format!("{name}-audio.md5"));
    let mut args = Vec::new();
    args.extend_from_slice(input_args);
    args.extend_from_slice(&["-map", "0:v", "-c", "copy"]);
    if bsf {
        args.extend_from_slice(&["-bsf:v", "h264_mp4toannexb"]);
    }
    let (v_s, a_s) = (v.to_str().unwrap(), a.to_str().unwrap());
    args.extend_from_slice(&["-f", "h264", "-y", v_s]);
    args.extend_from_slice(&["-map", "0:a", "-c", "copy", "-f", "framemd5", "-y", a_s]);
    ffmpeg(&args, limit_for(10.0));
    (
        std::fs::read(&v).expect("video copy"),
        framemd5_hashes(&std::fs::read_to_string(&a).expect("audio hashes")),
    )
}

/// NAL units other than SPS/PPS, and the SPS/PPS ones, in order.
fn split_parameter_sets<'a>(nals: &[&'a [u8]]) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
    nals.iter().partition(|n| !matches!(nal_type(n), 7 | 8))
}

// ---------------------------------------------------------------------------
// ffprobe and ffmpeg

#[test]
fn ffprobe_reports_h264_and_aac_over_udp_and_tcp() {
    require("ffprobe");
    let server = Server::start(&[]);
    let url = server.url(SAMPLE);
    par(
        &["udp", "tcp"],
        |t| (*t).to_owned(),
        |transport| {
            let run = ffprobe(&[
                "-rtsp_transport",
                transport,
                "-show_entries",
                "stream=codec_type,codec_name,width,height,r_frame_rate,sample_rate,channels",
                "-of",
                "default=nw=1",
                &url,
            ]);
            let out = &run.stdout;
            assert_eq!(probe_values(out, "codec_name"), ["h264", "aac"], "{out}");
            assert_eq!(probe_values(out, "width"), ["320"], "{out}");
            assert_eq!(probe_values(out, "height"), ["240"], "{out}");
            assert_eq!(probe_values(out, "r_frame_rate")[0], "25/1", "{out}");
            assert_eq!(probe_values(out, "sample_rate"), ["44100"], "{out}");
            assert_eq!(probe_values(out, "channels"), ["2"], "{out}");
        },
    );
}

#[test]
fn ffmpeg_copies_every_access_unit_over_udp_tcp_and_rtsps() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let src = sample_path();
    let src_input = ["-i", src.to_str().unwrap()];
    let (src_video, src_audio) = copy_streams(&src_input, true, dir.path(), "src");
    let src_nals = common::annexb::nal_units(&src_video);
    let (src_slices, src_params) = split_parameter_sets(&src_nals);
    assert_eq!(
        src_slices
            .iter()
            .filter(|n| matches!(nal_type(n), 1 | 5))
            .count(),
        250,
        "the sample has 250 pictures"
    );
    assert!(src_audio.len() > 400, "{} audio frames", src_audio.len());
    // RTSPS too (issue 12): interleaved over TLS.
    let certs = tempfile::tempdir().expect("tempdir");
    common::tls::self_signed(certs.path(), "a");
    let flags = common::tls::flags(certs.path(), "a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start(&flags);
    let (url, rtsps) = (server.url(SAMPLE), server.rtsps_url(SAMPLE));
    par(
        &["udp", "tcp", "rtsps"],
        |t| (*t).to_owned(),
        |transport| {
            let input = match *transport {
                "rtsps" => vec!["-i", rtsps.as_str()],
                t => vec!["-rtsp_transport", t, "-i", url.as_str()],
            };
            let (got, audio) = copy_streams(&input, false, dir.path(), transport);
            let nals = common::annexb::nal_units(&got);
            let (slices, params) = split_parameter_sets(&nals);
            assert_eq!(
                slices.len(),
                src_slices.len(),
                "{transport}: NAL units other than SPS/PPS"
            );
            for (k, (g, s)) in slices.iter().zip(&src_slices).enumerate() {
                assert!(
                    g == s,
                    "{transport}: NAL unit {k} differs from the source's"
                );
            }
            // Parameter sets: exactly the source's, before every IDR.
            assert_eq!(params, src_params, "{transport}: SPS/PPS");
            assert_eq!(audio.len(), src_audio.len(), "{transport}: AAC frames");
            assert!(audio == src_audio, "{transport}: AAC frames differ");
        },
    );
}

#[test]
fn fragmented_idr_frames_decode_to_the_source_pictures_over_udp() {
    require("ffmpeg");
    require("ffprobe");
    let src = sample_path();
    // The test means something only if keyframes need FU-A (> 1400 bytes).
    let biggest_key = probe_packets(&src, "v", "size,flags")
        .lines()
        .filter(|l| l.contains('K'))
        .filter_map(|l| l.split(',').next()?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    assert!(biggest_key > 3 * 1400, "largest IDR is {biggest_key} bytes");
    let decoded_md5 = |input: &str, before: &[&str]| {
        let mut args = Vec::new();
        args.extend_from_slice(before);
        args.extend_from_slice(&["-i", input, "-map", "0:v", "-f", "framemd5", "-"]);
        let run = ffmpeg(&args, limit_for(10.0));
        assert!(
            run.stderr.trim().is_empty(),
            "decoder complained:\n{}",
            run.stderr
        );
        framemd5_hashes(&run.stdout)
    };
    let want = decoded_md5(src.to_str().unwrap(), &[]);
    assert_eq!(want.len(), 250);
    let server = Server::start(&["--mtu", "1200"]);
    let got = decoded_md5(&server.url(SAMPLE), &["-rtsp_transport", "udp"]);
    assert_eq!(got.len(), want.len(), "decoded pictures");
    assert!(got == want, "decoded pictures differ from the source's");
}

// ---------------------------------------------------------------------------
// Seeking and sender reports, with raw sockets

/// The first sender report on `sock` within `wait`: its wallclock (NTP, in
/// Unix seconds) and RTP timestamp.
fn sr_time(sock: &UdpSocket, wait: Duration) -> Option<(f64, u32)> {
    let (_, info) = recv_sr(sock, wait)?;
    Some((info.ntp.to_unix().as_secs_f64(), info.rtp_time))
}

/// ffprobe's `entries` of every packet of `stream` (`v` or `a`) in `src`,
/// one CSV line each.
fn probe_packets(src: &Path, stream: &str, entries: &str) -> String {
    let show = format!("packet={entries}");
    ffprobe(&[
        "-select_streams",
        stream,
        "-show_entries",
        &show,
        "-of",
        "csv=p=0",
        src.to_str().unwrap(),
    ])
    .stdout
}

/// Presentation times (s) of the audio packets in the file, per ffprobe.
fn source_audio_pts(src: &Path) -> Vec<f64> {
    probe_packets(src, "a", "pts_time")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// SETUP of both tracks over UDP: the session id, video's and audio's
/// socket pairs.
fn setup_av(c: &mut Rtsp, url: &str) -> (String, UdpPair, UdpPair) {
    let (video, audio) = (UdpPair::bind(), UdpPair::bind());
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&video.transport()]);
    assert_eq!(s.status, 200);
    let id = s.session();
    let s = c.request(
        "SETUP",
        &format!("{url}/trackID=1"),
        &[&audio.transport(), &format!("Session: {id}")],
    );
    assert_eq!(s.status, 200);
    (id, video, audio)
}

/// `(seq, timestamp)` of every packet received until `quiet` passes.
fn drain(pair: &UdpPair, quiet: Duration) -> Vec<(u16, u32)> {
    pair.recv_rtp_until_quiet(quiet)
        .iter()
        .map(|(p, _)| (rtp_seq(p), rtp_ts(p)))
        .collect()
}

/// Checks the packets of a run that started at RTP-Info `(seq, rtptime)`:
/// they follow `before` with no sequence gap, the packet with RTP-Info's
/// seq has RTP-Info's timestamp (also when a run from npt 0 starts with
/// AAC's priming frame, presented before zero), and the run's timestamps
/// start after every one sent before.
fn check_run(what: &str, before: &[(u16, u32)], now: &[(u16, u32)], info: (u16, u32)) {
    let all: Vec<(u16, u32)> = before.iter().chain(now).copied().collect();
    for w in all.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0.wrapping_add(1),
            "{what}: sequence gap at {w:?}"
        );
    }
    let first = all
        .iter()
        .find(|p| p.0 == info.0)
        .unwrap_or_else(|| panic!("{what}: no packet with RTP-Info's seq {}", info.0));
    assert_eq!(first.1, info.1, "{what}: first timestamp is RTP-Info's");
    let pos = all.iter().position(|p| p.0 == info.0).unwrap_or(0);
    for p in &all[..pos] {
        assert!(
            info.1.wrapping_sub(p.1) as i32 > 0,
            "{what}: the run starts at {} but {} was sent before",
            info.1,
            p.1
        );
    }
}

#[test]
fn pause_resume_seek_and_replay_keep_each_track_continuous() {
    let server = Server::start(&[]);
    let url = server.url(SAMPLE);
    let mut c = Rtsp::connect(server.addr());
    let (id, video, audio) = setup_av(&mut c, &url);
    let session = format!("Session: {id}");
    let quiet = Duration::from_millis(400);
    let play = |c: &mut Rtsp, range: Option<&str>| {
        let mut h = vec![session.as_str()];
        h.extend(range);
        let r = c.request("PLAY", &url, &h);
        assert_eq!(r.status, 200, "PLAY {range:?}");
        let info = r.rtp_info();
        (
            r.header("Range").unwrap_or_default().to_owned(),
            info[0],
            info[1],
        )
    };

    // Play, pause after about a second, resume.
    let (_, v0, a0) = play(&mut c, None);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.request("PAUSE", &url, &[&session]).status, 200);
    let (v_run1, a_run1) = (drain(&video, quiet), drain(&audio, quiet));
    check_run("video, first run", &[], &v_run1, v0);
    check_run("audio, first run", &[], &a_run1, a0);
    let (range, v1, a1) = play(&mut c, None);
    // Drained after the seek below: both runs are checked then.
    std::thread::sleep(Duration::from_millis(700));
    // Resumed where it paused: audio one frame on, video within a few
    // frames (it resumes at the next picture in decode order).
    let (a_last, v_last) = (a_run1.last().unwrap().1, v_run1.last().unwrap().1);
    assert_eq!(
        a1.1,
        a_last.wrapping_add(1024),
        "audio resumes one frame on ({range})"
    );
    let v_step = v1.1.wrapping_sub(v_last) as i32;
    assert!(
        (-3 * 3600..=3 * 3600).contains(&v_step),
        "video jumps {v_step} ticks"
    );

    // Seek back while playing: numbering continues, no gap.
    let (range, v2, a2) = play(&mut c, Some("Range: npt=2-"));
    assert!(range.starts_with("npt=2.000-"), "{range}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(c.request("PAUSE", &url, &[&session]).status, 200);
    let (v_run2, a_run2) = (drain(&video, quiet), drain(&audio, quiet));
    check_run("video, resumed", &v_run1, &v_run2, v1);
    check_run("audio, resumed", &a_run1, &a_run2, a1);
    check_run("video, after the seek", &v_run1, &v_run2, v2);
    check_run("audio, after the seek", &a_run1, &a_run2, a2);

    // Play the last half second to its end, then PLAY again: from the top,
    // still continuing the numbering.
    let (_, v3, a3) = play(&mut c, Some("Range: npt=9.5-"));
    let (v_run3, a_run3) = (drain(&video, Duration::from_secs(2)), drain(&audio, quiet));
    check_run("video, to the end", &v_run2, &v_run3, v3);
    check_run("audio, to the end", &a_run2, &a_run3, a3);
    let (range, v4, a4) = play(&mut c, None);
    assert!(
        range.starts_with("npt=0.000-"),
        "replay from the start: {range}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.request("PAUSE", &url, &[&session]).status, 200);
    let (v_run4, a_run4) = (drain(&video, quiet), drain(&audio, quiet));
    check_run("video, replay", &v_run3, &v_run4, v4);
    check_run("audio, replay", &a_run3, &a_run4, a4);
    assert_eq!(c.request("TEARDOWN", &url, &[&session]).status, 200);
}

#[test]
fn seek_starts_at_the_keyframe_and_sender_reports_share_one_timeline() {
    require("ffprobe");
    let server = Server::start(&[]);
    let url = server.url(SAMPLE);
    let mut c = Rtsp::connect(server.addr());
    let d = c.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200);
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(sdp.contains("a=rtpmap:96 H264/90000"), "{sdp}");
    assert!(sdp.contains("packetization-mode=1"), "{sdp}");
    assert!(sdp.contains("sprop-parameter-sets="), "{sdp}");
    assert!(sdp.contains("mpeg4-generic/44100/2"), "{sdp}");
    assert!(sdp.contains("mode=AAC-hbr"), "{sdp}");
    let (id, video, audio) = setup_av(&mut c, &url);
    let play = c.request(
        "PLAY",
        &url,
        &[&format!("Session: {id}"), "Range: npt=5.5-"],
    );
    assert_eq!(play.status, 200);
    let range = play.header("Range").expect("Range").to_owned();
    let start: f64 = range
        .trim_start_matches("npt=")
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("npt start");
    assert!(
        (start - 5.0).abs() < 0.001,
        "starts at the keyframe: {range}"
    );
    let info = play.rtp_info();
    assert_eq!(info.len(), 2, "RTP-Info for both tracks");

    // SRs arrive at PLAY, ahead of the first packets.
    let (v_ntp, v_rtp) = sr_time(&video.rtcp, Duration::from_secs(2)).expect("video SR");
    let (a_ntp, a_rtp) = sr_time(&audio.rtcp, Duration::from_secs(2)).expect("audio SR");

    // Video: STAP-A of SPS and PPS, then the IDR, with RTP-Info's numbers.
    let packets: Vec<Vec<u8>> = (0..3).map(|_| video.recv_rtp().expect("video").0).collect();
    assert_eq!((rtp_seq(&packets[0]), rtp_ts(&packets[0])), info[0]);
    let p0 = rtp_payload(&packets[0]);
    assert_eq!(p0[0] & 0x1F, 24, "first video packet is a STAP-A");
    let mut r = &p0[1..];
    let mut inner = Vec::new();
    while r.len() > 2 {
        let n = usize::from(u16::from_be_bytes([r[0], r[1]]));
        inner.push(r[2] & 0x1F);
        r = &r[2 + n..];
    }
    assert_eq!(inner, [7, 8], "SPS and PPS in the STAP-A");
    let p1 = rtp_payload(&packets[1]);
    let idr = match p1[0] & 0x1F {
        28 => p1[1] & 0x1F == 5 && p1[1] & 0x80 != 0,
        t => t == 5,
    };
    assert!(idr, "then the IDR picture ({:02x?})", &p1[..2]);
    assert!(
        packets.iter().all(|p| rtp_ts(p) == info[0].1),
        "one timestamp"
    );
    let (a_first, _) = audio.recv_rtp().expect("audio");
    assert_eq!((rtp_seq(&a_first), rtp_ts(&a_first)), info[1]);

    // Both tracks' SRs put their first packets where the file presents
    // them: video at 5.0 s, audio at its first frame at or after 5.0 s.
    let a_pts = source_audio_pts(&sample_path())
        .into_iter()
        .find(|t| *t >= 5.0 - 1e-6)
        .expect("audio after 5 s");
    let wall = |ntp: f64, rtp: u32, ts: u32, rate: f64| {
        ntp + f64::from(ts.wrapping_sub(rtp) as i32) / rate
    };
    let v_wall = wall(v_ntp, v_rtp, info[0].1, 90000.0);
    let a_wall = wall(a_ntp, a_rtp, info[1].1, 44100.0);
    let skew = (a_wall - v_wall) - (a_pts - 5.0);
    assert!(
        skew.abs() < 0.001,
        "audio vs video on the SR timeline: {:.3} ms off",
        skew * 1000.0
    );

    // The periodic SRs keep to the same timeline.
    let (v_ntp2, v_rtp2) = sr_time(&video.rtcp, Duration::from_secs(7)).expect("video SR 2");
    let (a_ntp2, a_rtp2) = sr_time(&audio.rtcp, Duration::from_secs(7)).expect("audio SR 2");
    let v_wall2 = wall(v_ntp2, v_rtp2, info[0].1, 90000.0);
    let a_wall2 = wall(a_ntp2, a_rtp2, info[1].1, 44100.0);
    assert!((v_wall2 - v_wall).abs() < 0.001, "video SRs disagree");
    assert!((a_wall2 - a_wall).abs() < 0.001, "audio SRs disagree");
    assert_eq!(
        c.request("TEARDOWN", &url, &[&format!("Session: {id}")])
            .status,
        200
    );
}

// ---------------------------------------------------------------------------
// Lip sync

/// A flash-and-beep clip (44.1 kHz audio, like the sample) played over UDP
/// keeps its A/V offset within 10 ms; the same clip with its audio 200 ms
/// late measures 200 ms.
#[test]
fn audio_and_video_play_in_sync_and_a_shift_is_seen() {
    const UDP: &[&str] = &["-rtsp_transport", "udp"];
    require("ffmpeg");
    require("ffprobe");
    let server = Server::start_with(
        |dir| {
            sync_clip(dir, "sync.mp4", 0, 44100);
            sync_clip(dir, "late.mp4", 200, 44100);
        },
        &[],
    );
    let (sync, late) = std::thread::scope(|s| {
        let sync = s.spawn(|| av_offset_ms(&server.url("sync.mp4"), UDP, "6"));
        let late = s.spawn(|| av_offset_ms(&server.url("late.mp4"), UDP, "6"));
        (
            sync.join().expect("in-sync clip"),
            late.join().expect("late clip"),
        )
    });
    eprintln!("A/V offset: in-sync clip {sync:.2} ms, late clip {late:.2} ms");
    assert!(sync.abs() < 10.0, "in-sync clip plays {sync:.1} ms apart");
    assert!(
        (late - 200.0).abs() < 10.0,
        "a clip with audio 200 ms late measures {late:.1} ms"
    );
}

// ---------------------------------------------------------------------------
// GStreamer

#[test]
fn gstreamer_plays_picture_and_sound_to_the_end() {
    require("gst-launch-1.0");
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (v, a) = (dir.path().join("v.gray"), dir.path().join("a.s16"));
    let pipeline = format!(
        "rtspsrc location={} protocols=udp name=s \
         s. ! application/x-rtp,media=video ! rtph264depay ! avdec_h264 ! videoconvert ! \
         video/x-raw,format=GRAY8 ! filesink location={} \
         s. ! application/x-rtp,media=audio ! rtpmp4gdepay ! avdec_aac ! audioconvert ! \
         audio/x-raw,format=S16LE ! filesink location={}",
        server.url(SAMPLE),
        v.display(),
        a.display()
    );
    let mut args = vec!["-q", "-e"];
    args.extend(pipeline.split_whitespace());
    let (run, interrupted) = common::tools::run_gst_interrupting(&args, limit_for(10.0));
    if interrupted {
        println!("rtspsrc did not reach end-of-stream by itself; interrupted, its output checked");
    }
    assert!(
        run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
        "gst-launch failed ({}):\n{}",
        run.status,
        run.stderr
    );
    // Every picture and all the sound, whether it ended by itself or not.
    let frames = std::fs::metadata(&v).expect("video out").len() / (320 * 240);
    assert_eq!(frames, 250, "decoded pictures");
    let secs = std::fs::metadata(&a).expect("audio out").len() as f64 / (44100.0 * 4.0);
    assert!((secs - 10.0).abs() < 0.1, "decoded {secs:.3} s of sound");
}

#[test]
fn annexb_splitting_finds_every_unit() {
    let data = [
        0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0, 0, 0, 1, 0x65, 3, 0,
    ];
    assert_eq!(
        common::annexb::nal_units(&data),
        // Trailing zeros are the byte stream's (H.264 B.1.1), not the unit's.
        [&[0x67, 1][..], &[0x68, 2][..], &[0x65, 3][..]]
    );
}

// ---------------------------------------------------------------------------
// Elementary streams

/// Writes `clip.264` (baseline H.264 at 30 fps, no B-frames), `clip.aac`
/// (the sample's AAC in ADTS) and `clip.mp3` into `dir`.
fn write_elementary(dir: &Path) {
    let sample = sample_path();
    let out = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let runs: [Vec<String>; 3] = [
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=176x144:rate=30",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            "30",
            "-f",
            "h264",
        ]
        .map(String::from)
        .into_iter()
        .chain([out("clip.264")])
        .collect(),
        [
            "-i",
            sample.to_str().unwrap(),
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "adts",
        ]
        .map(String::from)
        .into_iter()
        .chain([out("clip.aac")])
        .collect(),
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=660:sample_rate=44100",
            "-t",
            "4",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
            "-write_xing",
            "0",
            "-id3v2_version",
            "3",
        ]
        .map(String::from)
        .into_iter()
        .chain([out("clip.mp3")])
        .collect(),
    ];
    for args in &runs {
        let mut all = vec!["-y"];
        all.extend(args.iter().map(String::as_str));
        ffmpeg(&all, Duration::from_secs(60));
    }
}

/// Packet hashes (`-c copy`, framemd5) and, for video, the NAL units
/// other than SPS/PPS, of `input`'s first stream; `bsf` is a bitstream
/// filter for the hashed copy.
fn copy_first_stream(
    input_args: &[&str],
    video: bool,
    bsf: Option<&str>,
) -> (Vec<String>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("v.h264");
    let mut args = Vec::new();
    args.extend_from_slice(input_args);
    args.extend_from_slice(&["-map", "0:0", "-c", "copy"]);
    if let Some(f) = bsf {
        args.extend_from_slice(&["-bsf", f]);
    }
    args.extend_from_slice(&["-f", "framemd5", "-"]);
    if video {
        args.extend_from_slice(&["-map", "0:0", "-c", "copy", "-f", "h264"]);
        args.push(raw.to_str().unwrap());
    }
    let run = ffmpeg(&args, limit_for(4.0));
    let nals = if video {
        let data = std::fs::read(&raw).expect("video copy");
        let (slices, _) = split_parameter_sets(&common::annexb::nal_units(&data));
        slices.into_iter().map(<[u8]>::to_vec).collect()
    } else {
        Vec::new()
    };
    (framemd5_hashes(&run.stdout), nals)
}

#[test]
fn elementary_h264_aac_and_mp3_files_play_losslessly() {
    require("ffmpeg");
    require("ffprobe");
    let server = Server::start_with(write_elementary, &[]);
    let media = server.media.clone();
    par(
        &[
            ("clip.264", "h264"),
            ("clip.aac", "aac"),
            ("clip.mp3", "mp3"),
        ],
        |c| c.0.to_owned(),
        |&(name, codec)| {
            let url = server.url(name);
            let probe = ffprobe(&[
                "-show_entries",
                "stream=codec_name,r_frame_rate",
                "-of",
                "default=nw=1",
                &url,
            ]);
            assert_eq!(
                probe_values(&probe.stdout, "codec_name"),
                [codec],
                "{}",
                probe.stdout
            );
            if codec == "h264" {
                let rate = &probe_values(&probe.stdout, "r_frame_rate")[0];
                assert_eq!(rate, "30/1", "frame rate from the SPS");
            }
            let video = codec == "h264";
            let file = media.join(name);
            // ffmpeg's ADTS demuxer keeps the headers in its packets; RTP
            // carries the raw frames.
            let strip = (codec == "aac").then_some("aac_adtstoasc");
            let file_input = ["-i", file.to_str().unwrap()];
            let (want, want_nals) = copy_first_stream(&file_input, video, strip);
            let rtsp_input = ["-rtsp_transport", "udp", "-i", &url];
            let (got, got_nals) = copy_first_stream(&rtsp_input, video, None);
            if video {
                assert_eq!(got_nals.len(), want_nals.len(), "{name}: NAL units");
                assert!(got_nals == want_nals, "{name}: NAL units differ");
                assert_eq!(got.len(), 120, "{name}: pictures");
            } else {
                assert!(
                    want.len() > 100,
                    "{name}: {} frames in the file",
                    want.len()
                );
                assert_eq!(got.len(), want.len(), "{name}: frames");
                assert!(got == want, "{name}: frames differ from the file's");
            }
        },
    );
}

#[test]
fn a_second_audio_track_is_skipped_and_the_rest_plays() {
    require("ffmpeg");
    require("ffprobe");
    let server = Server::start_with(
        |dir| {
            let out = dir.join("two-audio.mov");
            ffmpeg(
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=160x120:rate=25",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=440:sample_rate=48000",
                    "-f",
                    "lavfi",
                    "-i",
                    "sine=frequency=880:sample_rate=22050",
                    "-t",
                    "2",
                    "-map",
                    "0",
                    "-map",
                    "1",
                    "-map",
                    "2",
                    "-c:v",
                    "libx264",
                    "-c:a",
                    "aac",
                    "-y",
                    out.to_str().unwrap(),
                ],
                Duration::from_secs(60),
            );
        },
        &[],
    );
    let probe = ffprobe(&[
        "-show_entries",
        "stream=codec_name,sample_rate",
        "-of",
        "default=nw=1",
        &server.url("two-audio.mov"),
    ]);
    let out = &probe.stdout;
    assert_eq!(probe_values(out, "codec_name"), ["h264", "aac"], "{out}");
    assert_eq!(
        probe_values(out, "sample_rate"),
        ["48000"],
        "the first audio track: {out}"
    );
    assert!(
        server.log_lines().iter().any(|l| l.contains("skipping")),
        "the skipped track is logged"
    );
}
