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

use common::sync::{av_offset_ms, sync_clip};
use common::tools::{background, ffmpeg, ffmpeg_background, require, run_tool, Background};
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
    await_announce(server, &url);
    publisher
}

/// Waits (up to 15 s) until `url` answers DESCRIBE: its publisher is in.
fn await_announce(server: &Server, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = Rtsp::connect(server.addr());
        if c.try_request("DESCRIBE", url, &["Accept: application/sdp"])
            .is_ok_and(|r| r.status == 200)
        {
            return;
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
    let media = common::bundled_media().join(MP4);
    for publisher in ["tcp", "udp"] {
        // A channel of its own each: see lip_sync_survives_the_relay.
        let path = format!("live/cam-{publisher}");
        let url = server.url(&path);
        let _p = publish_clip(&server, &media, &path, publisher);
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

/// A clip with a flash and a beep each second, published through a relay
/// channel and read back (over UDP and TCP), keeps the source's A/V offset
/// within 10 ms: the channel's sender reports carry the publisher's. The
/// same measure tells a copy whose audio is 200 ms late.
#[test]
fn lip_sync_survives_the_relay() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let synced = sync_clip(dir.path(), "sync.mp4", 0, 48000);
    let shifted = sync_clip(dir.path(), "shifted.mp4", 200, 48000);
    let source = av_offset_ms(synced.to_str().expect("path"), &[], "6");
    let source_shifted = av_offset_ms(shifted.to_str().expect("path"), &[], "6");
    assert!(
        (source_shifted - source - 200.0).abs() < 2.0,
        "the shifted clip: {source} vs {source_shifted} ms"
    );
    let server = Server::start(&["--allow-publish"]);
    // Each clip on its own channel: a channel whose publisher left stops
    // a moment later, and a DESCRIBE in that moment would see the old one.
    for (clip, publisher, path, want) in [
        (&synced, "udp", "live/sync", source),
        (&shifted, "tcp", "live/shifted", source_shifted),
    ] {
        let _p = publish_clip(&server, clip, path, publisher);
        for reader in ["udp", "tcp"] {
            let got = av_offset_ms(&server.url(path), &["-rtsp_transport", reader], "5");
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

// ---------------------------------------------------------------------------
// Parameter sets completed from the stream

/// RTP packets (RFC 6184: single NAL units, FU-A above 1200 bytes) of the
/// access units in `nals`, 25 per second, as interleaved frames on
/// channel 0.
fn interleaved_h264(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut packet = |payload: &[u8], ts: u32, marker: bool, out: &mut Vec<u8>| {
        let mut p = vec![0x80, 96 | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(payload);
        seq = seq.wrapping_add(1);
        out.push(b'$');
        out.push(0);
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(&p);
    };
    let mut seen_slice = false;
    for nal in nals {
        let kind = nal[0] & 0x1F;
        let slice = matches!(kind, 1 | 5);
        if slice && seen_slice {
            ts = ts.wrapping_add(3600);
        }
        seen_slice |= slice;
        if nal.len() <= 1200 {
            packet(nal, ts, slice, &mut out);
            continue;
        }
        let chunks: Vec<&[u8]> = nal[1..].chunks(1200).collect();
        for (k, c) in chunks.iter().enumerate() {
            let (first, last) = (k == 0, k + 1 == chunks.len());
            let mut fu = vec![(nal[0] & 0xE0) | 28, kind];
            fu[1] |= if first { 0x80 } else { 0 } | if last { 0x40 } else { 0 };
            fu.extend_from_slice(c);
            packet(&fu, ts, slice && last, &mut out);
        }
    }
    out
}

/// A raw publisher on `url`: ANNOUNCE of one H.264 track without parameter
/// sets (PT 96), SETUP over TCP interleaved (channels 0-1), RECORD.
fn raw_publisher(server: &Server, url: &str) -> Rtsp {
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n\
               m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
               a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n";
    let mut p = Rtsp::connect(server.addr());
    let a = p.request_with_body(
        "ANNOUNCE",
        url,
        &["Content-Type: application/sdp"],
        sdp.as_bytes(),
    );
    assert_eq!(a.status, 200, "{a}");
    let s = p.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record"],
    );
    assert_eq!(s.status, 200, "{s}");
    let id = s.session();
    let r = p.request("RECORD", url, &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r}");
    p
}

/// The `a=fmtp` value of a DESCRIBE of `url`.
fn described_fmtp(server: &Server, url: &str) -> String {
    let mut c = Rtsp::connect(server.addr());
    let d = c.request("DESCRIBE", url, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200, "{d}");
    String::from_utf8_lossy(&d.body)
        .lines()
        .find_map(|l| l.strip_prefix("a=fmtp:96 "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A publisher whose SDP has no `sprop-parameter-sets` (as many cameras
/// send): once its in-band SPS and PPS went through the channel, DESCRIBE
/// gives them, byte for byte the source's, with the profile from the SPS.
#[test]
fn in_band_parameter_sets_complete_the_description() {
    require("ffmpeg");
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let (h264, _) = source_units(dir.path());
    let nals = common::annexb::nal_units(&h264);
    let sps = *nals.iter().find(|n| n[0] & 0x1F == 7).expect("an SPS");
    let pps = *nals.iter().find(|n| n[0] & 0x1F == 8).expect("a PPS");
    let server = Server::start(&["--allow-publish"]);
    let url = server.url("live/bare");
    let mut p = raw_publisher(&server, &url);
    assert_eq!(
        described_fmtp(&server, &url),
        "packetization-mode=1",
        "before any packet, the source's own"
    );
    let first_gop: Vec<&[u8]> = nals.iter().take(20).copied().collect();
    p.write(&interleaved_h264(&first_gop)).expect("publish");
    let b64 = base64::engine::general_purpose::STANDARD;
    let want = format!(
        "packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={},{}",
        sps[1],
        sps[2],
        sps[3],
        b64.encode(sps),
        b64.encode(pps)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = described_fmtp(&server, &url);
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "fmtp {got:?}, want {want:?}");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// H.265 and Opus

/// The packets of `what` in an ffmpeg framemd5 file, as their hashes.
fn framemd5(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        // stream, dts, pts, duration, size, hash
        .filter_map(|l| l.split(',').nth(5).map(|h| h.trim().as_bytes().to_vec()))
        .collect()
}

/// Coded pictures of an H.265 Annex B stream (VCL NAL units, types 0–31).
fn hevc_slices(annexb: &[u8]) -> Vec<&[u8]> {
    common::annexb::nal_units(annexb)
        .into_iter()
        .filter(|n| n.first().is_some_and(|h| (h >> 1) & 0x3F < 32))
        .collect()
}

/// ffmpeg publishes H.265 with Opus (`-c copy`); a reader over UDP and
/// one over TCP get every picture and every Opus packet of the source, in
/// order, and decode them without an error line.
#[test]
fn h265_and_opus_are_relayed_unchanged() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("hevc-opus.mkv");
    let src_hevc = dir.path().join("src.hevc");
    let src_opus = dir.path().join("src-opus.md5");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=320x240:r=25:d=4",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=48000:d=4",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "keyint=25:min-keyint=25:log-level=error",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-y",
            clip.to_str().expect("path"),
        ],
        Duration::from_secs(60),
    );
    ffmpeg(
        &[
            "-i",
            clip.to_str().expect("path"),
            "-map",
            "0:v",
            "-c",
            "copy",
            "-f",
            "hevc",
            "-y",
            src_hevc.to_str().expect("path"),
            "-map",
            "0:a",
            "-c",
            "copy",
            "-f",
            "framemd5",
            "-y",
            src_opus.to_str().expect("path"),
        ],
        Duration::from_secs(30),
    );
    let src_video = std::fs::read(&src_hevc).expect("source hevc");
    let src_audio = std::fs::read_to_string(&src_opus).expect("source opus");
    let (src_pictures, src_packets) = (hevc_slices(&src_video), framemd5(&src_audio));
    assert!(src_pictures.len() >= 90 && src_packets.len() >= 180);
    let src_packets: Vec<&[u8]> = src_packets.iter().map(Vec::as_slice).collect();
    let server = Server::start(&["--allow-publish"]);
    let _p = publish_clip(&server, &clip, "live/cam", "tcp");
    let url = server.url("live/cam");
    let d = Rtsp::connect(server.addr()).request("DESCRIBE", &url, &[]);
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(
        sdp.contains("H265/90000") && sdp.contains("opus/48000/2"),
        "{sdp}"
    );
    for reader in ["udp", "tcp"] {
        let (hevc, opus) = (
            dir.path().join(format!("{reader}.hevc")),
            dir.path().join(format!("{reader}.md5")),
        );
        let run = run_tool(
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "warning",
                "-rtsp_transport",
                reader,
                "-i",
                &url,
                "-map",
                "0:v",
                "-t",
                "2",
                "-c",
                "copy",
                "-f",
                "hevc",
                "-y",
                hevc.to_str().expect("path"),
                "-map",
                "0:a",
                "-t",
                "2",
                "-c",
                "copy",
                "-f",
                "framemd5",
                "-y",
                opus.to_str().expect("path"),
            ],
            Duration::from_secs(40),
        );
        assert!(run.status.success(), "{reader}: {}", run.stderr);
        let video = std::fs::read(&hevc).expect("hevc");
        let pictures = hevc_slices(&video);
        assert_run_of(
            &format!("H.265 over {reader}"),
            &pictures,
            &src_pictures,
            25,
        );
        let audio = framemd5(&std::fs::read_to_string(&opus).expect("opus"));
        let packets: Vec<&[u8]> = audio.iter().map(Vec::as_slice).collect();
        assert_run_of(&format!("Opus over {reader}"), &packets, &src_packets, 50);
        let decode = run_tool(
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "warning",
                "-rtsp_transport",
                reader,
                "-i",
                &url,
                "-t",
                "2",
                "-f",
                "null",
                "-",
            ],
            Duration::from_secs(30),
        );
        assert!(decode.status.success(), "decode: {}", decode.stderr);
        assert!(
            !decode.stderr.contains("rror") && !decode.stderr.contains("PPS"),
            "decoding over {reader}: {}",
            decode.stderr
        );
    }
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// GStreamer publishing and reading

/// GStreamer reads a channel ffmpeg publishes (`rtspsrc`, over UDP and
/// TCP): 40 access units of video and 60 AAC frames, each a run of the
/// source's; and GStreamer publishes (`rtspclientsink`, TCP and UDP; it
/// sends AAC as MP4A-LATM) to a channel ffmpeg reads: every slice a run
/// of the source's, and decoding without an error line.
#[test]
fn gstreamer_publishes_and_reads_video() {
    require("ffmpeg");
    require("gst-launch-1.0");
    let dir = tempfile::tempdir().expect("tempdir");
    let (src_h264, src_aac) = source_units(dir.path());
    let (src_slices, src_frames) = (slices(&src_h264), adts_frames(&src_aac));
    let server = Server::start(&["--allow-publish"]);
    {
        let _p = publish(&server, "tcp");
        let url = server.url("live/cam");
        for protocols in ["protocols=udp", "protocols=tcp"] {
            let (h264, aac) = (dir.path().join("gst.h264"), dir.path().join("gst.aac"));
            let location = format!("location={url}");
            let video_out = format!("location={}", h264.display());
            let audio_out = format!("location={}", aac.display());
            let args = [
                "-q",
                "-e",
                "rtspsrc",
                &location,
                protocols,
                "name=s",
                "s.",
                "!",
                "rtph264depay",
                "!",
                "h264parse",
                "!",
                "video/x-h264,stream-format=byte-stream,alignment=au",
                "!",
                "identity",
                "eos-after=40",
                "!",
                "filesink",
                &video_out,
                "s.",
                "!",
                "rtpmp4gdepay",
                "!",
                "aacparse",
                "!",
                "audio/mpeg,stream-format=adts",
                "!",
                "identity",
                "eos-after=60",
                "!",
                "filesink",
                &audio_out,
            ];
            let run = run_tool("gst-launch-1.0", &args, Duration::from_secs(30));
            assert!(
                run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
                "gst-launch {protocols}: {}",
                run.stderr
            );
            let video = std::fs::read(&h264).expect("gst video");
            let got = slices(&video);
            assert_eq!(
                got.first().map(|n| n[0] & 0x1F),
                Some(5),
                "{protocols}: not an IDR first"
            );
            assert_run_of(
                &format!("GStreamer {protocols}: video"),
                &got,
                &src_slices,
                35,
            );
            let audio = std::fs::read(&aac).expect("gst audio");
            let frames = adts_frames(&audio);
            // What aacparse drains at EOS after identity's last buffer is
            // not the stream's: the 55 frames before it are compared.
            assert_run_of(
                &format!("GStreamer {protocols}: audio"),
                &frames[..frames.len().min(55)],
                &src_frames,
                55,
            );
        }
    }
    thread::sleep(Duration::from_millis(500));
    let media = common::bundled_media().join(MP4);
    for protocols in ["protocols=tcp", "protocols=udp"] {
        let path = format!("live/gst-{}", &protocols[10..]);
        let url = server.url(&path);
        let source = format!("location={}", media.display());
        let sink = format!("location={url}");
        let _p = background(
            "gst-launch-1.0",
            &[
                "-q",
                "filesrc",
                &source,
                "!",
                "qtdemux",
                "name=d",
                "d.video_0",
                "!",
                "queue",
                "!",
                "h264parse",
                "!",
                "s.sink_0",
                "d.audio_0",
                "!",
                "queue",
                "!",
                "aacparse",
                "!",
                "s.sink_1",
                "rtspclientsink",
                "name=s",
                &sink,
                protocols,
            ],
        );
        await_announce(&server, &url);
        let sdp = String::from_utf8_lossy(
            &Rtsp::connect(server.addr())
                .request("DESCRIBE", &url, &[])
                .body,
        )
        .into_owned();
        assert!(
            sdp.contains("H264/90000") && sdp.contains("MP4A-LATM"),
            "{sdp}"
        );
        let h264 = dir.path().join("from-gst.h264");
        let run = run_tool(
            "ffmpeg",
            &[
                "-nostdin",
                "-v",
                "warning",
                "-i",
                &url,
                "-map",
                "0:v",
                "-t",
                "3",
                "-c",
                "copy",
                "-f",
                "h264",
                "-y",
                h264.to_str().expect("path"),
                "-map",
                "0:a",
                "-t",
                "3",
                "-f",
                "null",
                "-",
            ],
            Duration::from_secs(30),
        );
        assert!(
            run.status.success(),
            "ffmpeg reading {path}: {}",
            run.stderr
        );
        assert!(
            !DECODE_ERRORS.iter().any(|e| run.stderr.contains(e)),
            "{path}: {}",
            run.stderr
        );
        let video = std::fs::read(&h264).expect("video");
        assert_run_of(&format!("{path}: video"), &slices(&video), &src_slices, 50);
        let decode = run_tool(
            "ffmpeg",
            &[
                "-nostdin", "-v", "warning", "-i", &url, "-t", "2", "-f", "null", "-",
            ],
            Duration::from_secs(30),
        );
        assert!(
            decode.status.success() && !DECODE_ERRORS.iter().any(|e| decode.stderr.contains(e)),
            "decoding {path}: {}",
            decode.stderr
        );
    }
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// Hostile publishers (ROBUSTNESS B15)

/// One interleaved RTP frame on channel 0.
fn frame(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    let mut f = vec![b'$', 0];
    f.extend_from_slice(&(p.len() as u16).to_be_bytes());
    f.extend_from_slice(&p);
    f
}

/// A publisher that sends another payload type than its SDP's, switches
/// SSRC, jumps its sequence by 30,000, sends FU-A fragments that never
/// end (2.6 MB of them, past the 2 MiB GOP cache) and non-RTP junk: a reader
/// keeps one timeline (consecutive sequence numbers, timestamps moving
/// forward only), gets none of the wrong payload type, and a newcomer still
/// joins; the server stays up and its memory bounded.
#[test]
fn hostile_publisher_keeps_readers_on_one_timeline() {
    // The flood below is 4,000 frames a second; the last part of the test
    // exceeds this cap on purpose.
    let server = Server::start_http(
        &[
            "--live",
            "cam=publish,gop_cache=true",
            "--max-publisher-frames-per-sec",
            "6000",
        ],
        "warn",
    );
    let url = server.url("live/cam");
    let mut p = raw_publisher(&server, &url);
    let idr = [0x65, 0x88, 0x84, 0x21];
    let slice = [0x41, 0x9a, 0x02, 0x03];
    // A keyframe first, so the reader starts.
    p.write(&frame(96, 100, 0, 7, true, &idr)).expect("write");
    let mut r = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let su = r.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(su.status, 200, "{su}");
    let rid = su.session();
    let play_sent = r.send("PLAY", &url, &[&format!("Session: {rid}")], b"");
    p.write(&frame(96, 101, 3000, 7, true, &idr))
        .expect("write");
    let play = r.reply(play_sent).expect("PLAY reply");
    assert_eq!(play.status, 200, "{play}");
    let mut burst = Vec::new();
    let mut ts = 6000u32;
    let mut good = 0;
    // Good slices in between every kind of abuse.
    let mut good_slice = |seq: u16, ssrc: u32, ts: &mut u32, burst: &mut Vec<u8>| {
        *ts += 3000;
        burst.extend(frame(96, seq, *ts, ssrc, true, &slice));
        good += 1;
    };
    good_slice(102, 7, &mut ts, &mut burst);
    burst.extend(frame(100, 103, ts, 7, true, &[0xEE; 50])); // not in the SDP
    good_slice(104, 7, &mut ts, &mut burst);
    good_slice(9, 8, &mut ts, &mut burst); // another SSRC
    good_slice(30_009, 8, &mut ts, &mut burst); // a 30,000 jump
    burst.extend([b'$', 0, 0, 3, 1, 2, 3]); // not RTP
                                            // An FU-A that never ends: 2.6 MB in 1,000-byte fragments, past the
                                            // 2 MiB cache.
    const FRAGS: u16 = 2600;
    let mut fu = vec![0x7C, 0x85];
    fu.extend([0xAB; 998]);
    for k in 0..FRAGS {
        burst.extend(frame(96, 30_010u16.wrapping_add(k), ts, 8, false, &fu));
        fu[1] = 0x05; // middles from now on
    }
    good_slice(30_010 + FRAGS, 8, &mut ts, &mut burst);
    // Read while writing, at about 800 packets a second: the flood would
    // overflow the socket's buffer, or a busy machine's reader.
    let got = thread::scope(|sc| {
        let reader =
            sc.spawn(|| pair.until_quiet(Duration::from_millis(700), Duration::from_secs(15)));
        for chunk in burst.chunks(16 * 1024) {
            p.write(chunk).expect("write");
            thread::sleep(Duration::from_millis(20));
        }
        reader.join().expect("reader")
    });
    // The reader starts with the cached keyframe (100) and then the live
    // one (101), or, when 101 reached the channel before the reader's
    // PLAY did, with 101 alone from the cache.
    let keyframes = got
        .iter()
        .take_while(|(p, _)| rtp_payload(p)[0] == idr[0])
        .count();
    assert!((1..=2).contains(&keyframes), "{keyframes} keyframes first");
    assert_eq!(
        got.len(),
        keyframes + good + usize::from(FRAGS),
        "every packet but the wrong payload type"
    );
    assert!(
        got.iter().all(|(p, _)| p[1] & 0x7F == 96),
        "only PT 96 forwarded"
    );
    let seqs: Vec<u16> = got.iter().map(|(p, _)| rtp_seq(p)).collect();
    // One sequence: the dropped packet of the wrong payload type stays a
    // gap of one (as a loss); the new SSRC and the jump continue at once.
    let steps: Vec<u16> = seqs.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    assert!(
        steps.iter().all(|&d| d == 1 || d == 2) && steps.iter().filter(|&&d| d == 2).count() == 1,
        "one sequence: {:?}",
        &seqs[..seqs.len().min(20)]
    );
    assert!(
        got.windows(2)
            .all(|w| (rtp_ts(&w[1].0).wrapping_sub(rtp_ts(&w[0].0)) as i32) >= 0),
        "timestamps only move forward"
    );
    // A newcomer still joins (at a keyframe, once one comes).
    let late = UdpPair::bind();
    let mut n = Rtsp::connect(server.addr());
    let su = n.request("SETUP", &format!("{url}/trackID=0"), &[&late.transport()]);
    let nid = su.session();
    let sent = n.send("PLAY", &url, &[&format!("Session: {nid}")], b"");
    p.write(&frame(96, 30_011 + FRAGS, ts + 3000, 8, true, &idr))
        .expect("write");
    assert_eq!(n.reply(sent).expect("PLAY reply").status, 200);
    let (first, _) = late.recv_rtp().expect("the newcomer's first packet");
    assert_eq!(rtp_payload(&first)[0] & 0x1F, 5, "starts at the IDR");
    // 10x too fast: past max_publisher_frames_per_sec the publisher is cut
    // off; the readers stay, and the next publisher continues their
    // timeline.
    let last = rtp_seq(
        &late
            .until_quiet(Duration::from_millis(300), Duration::from_secs(5))
            .last()
            .map_or(first.clone(), |(p, _)| p.clone()),
    );
    // Frames the channel would not forward anyway (another payload type),
    // so what the reader must see is exact even if its socket overflowed
    // under a real flood: the cap counts frames, whatever they carry.
    let flood: Vec<u8> = (0..7000u16)
        .flat_map(|k| frame(100, 40_000u16.wrapping_add(k), ts + 6000, 8, false, &slice))
        .collect();
    let flooded = thread::scope(|sc| {
        let reader =
            sc.spawn(|| late.until_quiet(Duration::from_millis(700), Duration::from_secs(15)));
        let _ = p.write(&flood);
        assert!(
            p.expect_eof(Duration::from_secs(5)).is_ok(),
            "the flooding publisher is disconnected"
        );
        reader.join().expect("reader")
    });
    assert!(flooded.is_empty(), "{} packets of the flood", flooded.len());
    // Cut off by the publishers' cap, not the players'.
    let m = common::http::scrape(server.http.expect("http"));
    let refused = |limit: &str| {
        common::http::sample(&m, "rtspd_refused_total", &format!("limit=\"{limit}\""))
    };
    assert_eq!(refused("max_publisher_frames_per_sec"), Some(1.0));
    assert_eq!(refused("max_client_frames_per_sec"), Some(0.0));
    // The channel is free again for the next publisher.
    let mut next = raw_publisher(&server, &url);
    next.write(&frame(96, 5, 0, 99, true, &idr)).expect("write");
    let (resumed, _) = late.recv_rtp().expect("the next publisher's packet");
    let before = flooded.last().map_or(last, |(p, _)| rtp_seq(p));
    assert_eq!(
        rtp_seq(&resumed),
        before.wrapping_add(1),
        "one sequence across publishers"
    );
    assert!(server.panics().is_empty());
}
