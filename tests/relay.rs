//! Live video (issue 13): ffmpeg publishes the bundled MP4 (H.264 and AAC,
//! `-c copy`) over UDP and TCP; readers over UDP and TCP get every access
//! unit from their first keyframe on, exactly as the MP4 holds it (NAL
//! units and AAC frames compared byte for byte, in order, none missing or
//! doubled), decode without an error line, and a raw reader's first
//! packet is the one its RTP-Info names, at a keyframe.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::tools::{ffmpeg, ffmpeg_background, require, run_tool, Background};
use common::{rtp_payload, rtp_seq, rtp_ts, Rtsp, Server, UdpPair};

const MP4: &str = "testsrc-320x240.mp4";

/// Slices (coded pictures: NAL types 1 and 5) in order.
fn slices(annexb: &[u8]) -> Vec<&[u8]> {
    common::annexb::nal_units(annexb)
        .into_iter()
        .filter(|n| matches!(n.first().map(|h| h & 0x1F), Some(1 | 5)))
        .collect()
}

/// AAC frames of an ADTS stream (headers stripped).
fn adts_frames(adts: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = adts;
    while rest.len() >= 7 && rest[0] == 0xFF && rest[1] & 0xF0 == 0xF0 {
        let len = (usize::from(rest[3] & 0x03) << 11)
            | (usize::from(rest[4]) << 3)
            | usize::from(rest[5] >> 5);
        let header = if rest[1] & 1 == 0 { 9 } else { 7 };
        if len < header || len > rest.len() {
            break;
        }
        out.push(&rest[header..len]);
        rest = &rest[len..];
    }
    out
}

/// `got` is a run of the looping `source`: some offset where every unit
/// of `got` equals the source's, in order (the publisher loops the clip).
fn assert_run_of(what: &str, got: &[&[u8]], source: &[&[u8]], at_least: usize) {
    assert!(got.len() >= at_least, "{what}: only {} units", got.len());
    let n = source.len();
    let fits = (0..n).find(|&start| {
        source[start] == got[0]
            && got
                .iter()
                .enumerate()
                .all(|(k, g)| source[(start + k) % n] == *g)
    });
    assert!(
        fits.is_some(),
        "{what}: the {} units received are not a run of the source's {n}",
        got.len()
    );
}

/// The source's video slices and AAC frames, as ffmpeg reads the MP4.
fn source_units(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let media = common::bundled_media().join(MP4);
    let media = media.to_str().expect("path");
    let (h264, aac) = (dir.join("src.h264"), dir.join("src.aac"));
    ffmpeg(
        &[
            "-i",
            media,
            "-map",
            "0:v",
            "-c",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            "-y",
            h264.to_str().expect("path"),
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "adts",
            "-y",
            aac.to_str().expect("path"),
        ],
        Duration::from_secs(30),
    );
    (
        std::fs::read(&h264).expect("source h264"),
        std::fs::read(&aac).expect("source aac"),
    )
}

/// ffmpeg publishing the MP4 in a loop over `transport` to `/live/cam`,
/// once the channel answers DESCRIBE.
fn publish(server: &Server, transport: &str) -> Background {
    publish_clip(
        server,
        &common::bundled_media().join(MP4),
        "live/cam",
        transport,
    )
}

/// ffmpeg publishing `clip` in a loop over `transport` to `path`, once the
/// channel answers DESCRIBE.
fn publish_clip(server: &Server, clip: &Path, path: &str, transport: &str) -> Background {
    let url = server.url(path);
    let publisher = ffmpeg_background(&[
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        clip.to_str().expect("path"),
        "-c",
        "copy",
        "-f",
        "rtsp",
        "-rtsp_transport",
        transport,
        &url,
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = Rtsp::connect(server.addr());
        if c.try_request("DESCRIBE", &url, &["Accept: application/sdp"])
            .is_ok_and(|r| r.status == 200)
        {
            return publisher;
        }
        assert!(Instant::now() < deadline, "the publisher never announced");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `secs` of the channel over `transport`: video to Annex B and
/// audio to ADTS (copied, not decoded); returns them and ffmpeg's log.
fn read(url: &str, transport: &str, secs: &str, dir: &Path) -> (Vec<u8>, Vec<u8>, String) {
    let (h264, aac) = (
        dir.join(format!("{transport}.h264")),
        dir.join(format!("{transport}.aac")),
    );
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "warning",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-t",
            secs,
            "-map",
            "0:v",
            "-c",
            "copy",
            "-f",
            "h264",
            "-y",
            h264.to_str().expect("path"),
            "-map",
            "0:a",
            "-t",
            secs,
            "-c",
            "copy",
            "-f",
            "adts",
            "-y",
            aac.to_str().expect("path"),
        ],
        Duration::from_secs(40),
    );
    assert!(run.status.success(), "{transport} reader: {}", run.stderr);
    (
        std::fs::read(&h264).expect("h264"),
        std::fs::read(&aac).expect("aac"),
        run.stderr,
    )
}

/// The decoder's complaints about a stream that starts undecodable.
const DECODE_ERRORS: [&str; 4] = [
    "non-existing PPS",
    "no frame!",
    "decode_slice_header error",
    "error while decoding",
];

#[test]
fn published_h264_and_aac_reach_every_reader_exactly() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let (src_h264, src_aac) = source_units(dir.path());
    let (src_slices, src_frames) = (slices(&src_h264), adts_frames(&src_aac));
    assert!(
        src_slices.len() >= 250 && src_frames.len() >= 400,
        "the source's units"
    );
    let server = Server::start(&["--allow-publish"]);
    let url = server.url("live/cam");
    for publisher in ["tcp", "udp"] {
        let _p = publish(&server, publisher);
        for reader in ["udp", "tcp"] {
            let what = format!("published over {publisher}, read over {reader}");
            let (h264, aac, log) = read(&url, reader, "3", dir.path());
            let got = slices(&h264);
            assert_eq!(
                got.first().map(|n| n[0] & 0x1F),
                Some(5),
                "{what}: the first picture is not an IDR"
            );
            assert_run_of(&format!("{what}: video"), &got, &src_slices, 60);
            assert_run_of(
                &format!("{what}: audio"),
                &adts_frames(&aac),
                &src_frames,
                100,
            );
            assert!(
                !DECODE_ERRORS.iter().any(|e| log.contains(e)),
                "{what}: {log}"
            );
        }
        // Decoding, not only copying: no error line from a late joiner.
        let run = run_tool(
            "ffmpeg",
            &[
                "-nostdin", "-v", "warning", "-i", &url, "-t", "2", "-f", "null", "-",
            ],
            Duration::from_secs(30),
        );
        assert!(run.status.success(), "decode: {}", run.stderr);
        assert!(
            !DECODE_ERRORS.iter().any(|e| run.stderr.contains(e)),
            "decoding over {publisher}: {}",
            run.stderr
        );
        // The next publisher takes the channel once this one is gone.
        drop(_p);
        thread::sleep(Duration::from_millis(500));
    }
    assert!(server.panics().is_empty());
}

/// Whether an H.264 RTP payload (RFC 6184 §5.6–5.8) starts a keyframe:
/// an SPS or IDR slice, alone, first in a STAP-A, or a first FU-A fragment.
fn starts_keyframe(payload: &[u8]) -> bool {
    match payload.first().map(|h| h & 0x1F) {
        Some(5 | 7) => true,
        Some(24) => payload.get(3).is_some_and(|h| matches!(h & 0x1F, 5 | 7)),
        Some(28) => payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && h & 0x1F == 5),
        _ => false,
    }
}

/// What a raw reader of the video track got after its PLAY.
struct Joined {
    /// PLAY's RTP-Info: (seq, rtptime).
    rtp_info: (u16, u32),
    /// The packets of its first `collect` and when each arrived.
    packets: Vec<(Vec<u8>, Instant)>,
    /// When PLAY was sent.
    play_sent: Instant,
}

/// Joins `url`'s video track over UDP, collects `collect` of packets and
/// leaves.
fn join_video(server: &Server, url: &str, collect: Duration) -> Joined {
    let mut c = Rtsp::connect(server.addr());
    let d = c.request("DESCRIBE", url, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200, "{d}");
    assert!(
        String::from_utf8_lossy(&d.body).contains("H264/90000"),
        "{}",
        String::from_utf8_lossy(&d.body)
    );
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let id = s.session();
    let play_sent = Instant::now();
    let p = c.request("PLAY", url, &[&format!("Session: {id}")]);
    assert_eq!(p.status, 200, "{p}");
    let info = p.rtp_info();
    assert_eq!(info.len(), 1, "{p}");
    let packets = pair.collect(collect);
    let t = c.request("TEARDOWN", url, &[&format!("Session: {id}")]);
    assert_eq!(t.status, 200);
    Joined {
        rtp_info: info[0],
        packets,
        play_sent,
    }
}

/// A raw reader of the video track only: PLAY's RTP-Info names the first
/// packet it gets, exactly, and that packet starts a keyframe (SPS, or an
/// IDR slice or its first fragment).
#[test]
fn a_late_joiner_starts_at_a_keyframe_named_by_rtp_info() {
    require("ffmpeg");
    let server = Server::start(&["--allow-publish"]);
    let _p = publish(&server, "tcp");
    let url = server.url("live/cam");
    for _ in 0..3 {
        // Join at some point within the GOP.
        thread::sleep(Duration::from_millis(370));
        let j = join_video(&server, &url, Duration::from_millis(1500));
        let (first, _) = j.packets.first().expect("a packet");
        assert_eq!(
            (rtp_seq(first), rtp_ts(first)),
            j.rtp_info,
            "RTP-Info names the first packet"
        );
        assert!(
            starts_keyframe(rtp_payload(first)),
            "the first packet (NAL type {}) does not start a keyframe",
            rtp_payload(first)[0] & 0x1F
        );
    }
}

/// With `gop_cache`, a newcomer gets the current GOP at once: its first
/// packet starts the cached keyframe (named by RTP-Info), its first frame
/// is complete within 100 ms of PLAY, and the catch-up runs into the live
/// packets without a gap in the sequence.
#[test]
fn gop_cache_gives_a_newcomer_its_first_frame_at_once() {
    require("ffmpeg");
    let server = Server::start(&["--live", "cam=publish,gop_cache=true"]);
    let _p = publish(&server, "tcp");
    let url = server.url("live/cam");
    let mut delays = Vec::new();
    for k in 0..3 {
        // Join 300, 550 and 800 ms after a moment in the 1 s GOP.
        thread::sleep(Duration::from_millis(300 + 250 * k));
        let j = join_video(&server, &url, Duration::from_millis(2500));
        let (first, _) = j.packets.first().expect("a packet");
        assert_eq!(
            (rtp_seq(first), rtp_ts(first)),
            j.rtp_info,
            "RTP-Info names the first (cached) packet"
        );
        assert!(
            starts_keyframe(rtp_payload(first)),
            "the cache does not start at a keyframe"
        );
        let seqs: Vec<u16> = j.packets.iter().map(|(p, _)| rtp_seq(p)).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "the catch-up and the live packets form one sequence: {seqs:?}"
        );
        let frame_end = j
            .packets
            .iter()
            .find(|(p, _)| p[1] & 0x80 != 0)
            .expect("a complete frame");
        delays.push(frame_end.1.duration_since(j.play_sent));
    }
    delays.sort();
    // The median of three joins: one scheduling hiccup on a busy machine
    // does not decide it, a cache that waits for a keyframe does.
    assert!(
        delays[1] < Duration::from_millis(100),
        "first frame after PLAY: {delays:?}"
    );
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// Lip sync through the relay

/// Writes a 10 s H.264 + AAC clip: a white frame every second (frame 0 of
/// each 25) and a 50 ms 1 kHz beep starting `shift_ms` after each second.
fn sync_clip(dir: &Path, name: &str, shift_ms: u32) -> std::path::PathBuf {
    let out = dir.join(name);
    let shift = f64::from(shift_ms) / 1000.0;
    let beep = format!(
        "aevalsrc='if(lt(mod(t-{shift}\\,1)\\,0.05)*gte(t\\,{shift})\\,0.8*sin(2*PI*1000*t)\\,0)':s=48000:d=10"
    );
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=black:s=320x240:r=25:d=10,drawbox=w=iw:h=ih:color=white:t=fill:enable='lt(mod(n\\,25)\\,1)'",
            "-f",
            "lavfi",
            "-i",
            &beep,
            "-c:v",
            "libx264",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-shortest",
            out.to_str().expect("path"),
        ],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "making {name}: {}", run.stderr);
    out
}

/// Presentation times (s) of lines `pts_time:T` followed by `KEY=VALUE`
/// in an ffmpeg `metadata=print:file=` log.
fn metadata_values(log: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut pts = None;
    for line in log.lines() {
        if let Some(t) = line.split("pts_time:").nth(1) {
            pts = t.split_whitespace().next().and_then(|t| t.parse().ok());
        } else if let (Some(t), Some((_, v))) = (pts, line.split_once('=')) {
            if let Ok(v) = v.trim().parse::<f64>() {
                out.push((t, v));
            }
        }
    }
    out
}

/// Times where `values` rise over `threshold` (not counting the first
/// value: a reader may start in the middle of an event).
fn onsets(values: &[(f64, f64)], threshold: f64) -> Vec<f64> {
    values
        .windows(2)
        .filter(|w| w[0].1 <= threshold && w[1].1 > threshold)
        .map(|w| w[1].0)
        .collect()
}

/// Decodes `secs` of `input` (a file, or an RTSP URL with `input_args`)
/// and returns the median A/V offset in ms: the beep's onset (1 ms
/// resolution) minus the flash frame's presentation time, over every
/// flash after the first second.
fn av_offset_ms(input: &str, input_args: &[&str], dir: &Path, secs: &str) -> f64 {
    let (v, a) = (dir.join("video.log"), dir.join("audio.log"));
    let vf = format!(
        "signalstats,metadata=print:key=lavfi.signalstats.YAVG:file={}",
        v.display()
    );
    let af = format!(
        "aresample=48000,asetnsamples=n=48:p=0,astats=metadata=1:reset=1,\
         ametadata=print:key=lavfi.astats.Overall.Peak_level:file={}",
        a.display()
    );
    let mut args = vec!["-nostdin", "-v", "error", "-y"];
    args.extend_from_slice(input_args);
    args.extend_from_slice(&[
        "-i", input, "-map", "0:v", "-t", secs, "-vf", &vf, "-f", "null", "-", "-map", "0:a", "-t",
        secs, "-af", &af, "-f", "null", "-",
    ]);
    let run = run_tool("ffmpeg", &args, Duration::from_secs(60));
    assert!(run.status.success(), "measuring {input}: {}", run.stderr);
    let read = |p: &Path| std::fs::read_to_string(p).expect("metadata log");
    let flashes = onsets(&metadata_values(&read(&v)), 128.0);
    let beeps = onsets(&metadata_values(&read(&a)), -20.0);
    let start = flashes.first().copied().unwrap_or(0.0) + 0.5;
    let mut offsets: Vec<f64> = flashes
        .iter()
        .filter(|&&f| f > start)
        .filter_map(|&f| {
            beeps
                .iter()
                .map(|&b| (b - f) * 1000.0)
                .filter(|d| d.abs() < 500.0)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
        })
        .collect();
    assert!(
        offsets.len() >= 3,
        "{input}: too few flash/beep pairs: flashes {flashes:?}, beeps {beeps:?}"
    );
    offsets.sort_by(f64::total_cmp);
    offsets[offsets.len() / 2]
}

/// A clip with a flash and a beep each second, published through a relay
/// channel and read back (over UDP and TCP), keeps the source's A/V offset
/// within 10 ms: the channel's sender reports carry the publisher's. The
/// same measure tells a copy whose audio is 200 ms late.
#[test]
fn lip_sync_survives_the_relay() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let synced = sync_clip(dir.path(), "sync.mp4", 0);
    let shifted = sync_clip(dir.path(), "shifted.mp4", 200);
    let source = av_offset_ms(synced.to_str().expect("path"), &[], dir.path(), "6");
    let source_shifted = av_offset_ms(shifted.to_str().expect("path"), &[], dir.path(), "6");
    assert!(
        (source_shifted - source - 200.0).abs() < 2.0,
        "the shifted clip: {source} vs {source_shifted} ms"
    );
    let server = Server::start(&["--allow-publish"]);
    for (clip, publisher, want) in [(&synced, "udp", source), (&shifted, "tcp", source_shifted)] {
        let _p = publish_clip(&server, clip, "live/sync", publisher);
        for reader in ["udp", "tcp"] {
            let got = av_offset_ms(
                &server.url("live/sync"),
                &["-rtsp_transport", reader],
                dir.path(),
                "5",
            );
            let what = format!(
                "{} published over {publisher}, read over {reader}",
                clip.display()
            );
            assert!(
                (got - want).abs() <= 10.0,
                "{what}: A/V offset {got} ms, the source's {want} ms"
            );
            // The shifted copy, measured against the synced source, fails.
            if want == source_shifted {
                assert!(
                    (got - source).abs() > 150.0,
                    "{what}: a 200 ms shift went unnoticed ({got} ms)"
                );
            }
        }
        drop(_p);
        thread::sleep(Duration::from_millis(500));
    }
    assert!(server.panics().is_empty());
}
