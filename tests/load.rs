//! `rtspd load` end to end: against rtspd itself (its counts must agree with
//! the server's RTCP packet counts), and against a deliberately faulty
//! in-test RTSP server whose losses, duplicates, reordering and send-time
//! jitter are known exactly, which is what shows the tester measures
//! honestly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;

/// Every key the issue names for the JSON line.
const KEYS: [&str; 12] = [
    "sessions_ok",
    "sessions_failed",
    "loss_pct",
    "jitter_p99_ms",
    "pacing_p99_ms",
    "setup_p99_ms",
    "ttfp_p99_ms",
    "pkts_per_s",
    "mbit_per_s",
    "sr_per_session",
    "av_sync_max_ms",
    "tester_cpu_pct",
];

/// Runs `rtspd load` with `args`; returns the JSON line it printed last
/// (checked against the `--json` file's copy).
fn load(args: &[&str]) -> Value {
    let v = common::tools::rtspd_load(args);
    for k in KEYS {
        assert!(v.get(k).is_some(), "key {k} missing from {v}");
    }
    v
}

fn v_is_null(v: &Value, k: &str) -> bool {
    v.get(k).is_some_and(Value::is_null)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number: {v}"))
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a count: {v}"))
}

#[test]
fn load_against_rtspd_over_udp() {
    against_rtspd(&[]);
}

#[test]
fn load_against_rtspd_over_tcp() {
    against_rtspd(&["--tcp"]);
}

fn against_rtspd(extra: &[&str]) {
    let server = Server::start(&[]);
    let url = server.url("tones-8k-mono.wav");
    let mut args = vec![url.as_str(), "-n", "20", "-d", "3", "--ramp", "100"];
    args.extend_from_slice(extra);
    let v = load(&args);
    assert_eq!(
        (u(&v, "sessions_ok"), u(&v, "sessions_failed")),
        (20, 0),
        "{v}"
    );
    assert_eq!(f(&v, "loss_pct"), 0.0);
    let received = u(&v, "packets_received");
    // 20 sessions x 3 s x 50 packets/s, give or take the edges.
    assert!((2700..=3300).contains(&received), "{received} packets");
    assert_eq!(
        received,
        u(&v, "server_packets_sent"),
        "the tester counts what the server's last SR (BYE) says it sent"
    );
    assert!(f(&v, "sr_per_session") >= 1.0, "an SR at PLAY at least");
    assert!(v["av_sync_max_ms"].is_null(), "single track");
    assert!(f(&v, "setup_p99_ms") > 0.0 && f(&v, "ttfp_p99_ms") > 0.0);
}

/// `--publish`: the tester publishes the bundled MP4 to a relay channel
/// and listens to it, over UDP and TCP; every copy a listener gets is
/// matched to the packet the publisher sent (same payload), so the delay
/// figures cover what was received, and the server dropped nothing late.
/// On a GOP-cache channel, the cached packets a newcomer starts with are
/// counted apart (they were sent before it set up), not timed.
#[test]
fn publish_measures_each_copys_delay_behind_the_publisher() {
    let server = Server::start_http(
        &[
            "--live",
            "cam=publish",
            "--live",
            "gop=publish,gop_cache=true",
        ],
        "warn",
    );
    let clip = common::bundled_media().join("testsrc-320x240.mp4");
    let clip = clip.to_str().expect("UTF-8 path");
    for (path, extra) in [
        ("live/cam", &[][..]),
        ("live/cam", &["--tcp"][..]),
        ("live/gop", &["--ramp", "2"][..]),
    ] {
        let url = server.url(path);
        let mut args = vec![url.as_str(), "--publish", clip, "-n", "8", "-d", "3"];
        args.extend_from_slice(extra);
        let v = load(&args);
        assert_eq!(u(&v, "sessions_ok"), 8, "{v}");
        assert_eq!(f(&v, "loss_pct"), 0.0, "{v}");
        let received = u(&v, "packets_received");
        let p = &v["publish"];
        let (timed, unmatched, cached) = (
            u(p, "copies_matched"),
            u(p, "copies_unmatched"),
            u(p, "copies_from_cache"),
        );
        assert!(u(p, "packets_sent") > 0, "{v}");
        assert_eq!(
            timed + unmatched + cached,
            received,
            "every copy looked up: {v}"
        );
        // Before a listener's timestamp offset is known, a repeated payload
        // (the SPS/PPS packet of every keyframe) cannot be matched: a
        // packet or two per track.
        assert!(unmatched <= 8 * 2 * 2, "{unmatched} unmatched: {v}");
        if path == "live/gop" {
            // Joining at 2/s, all but the first start with a cached GOP.
            assert!(cached > 0, "no copy from the GOP cache: {v}");
        } else {
            assert_eq!(cached, 0, "{v}");
        }
        let delay = &p["delay_ms"];
        let (p50, max) = (f(delay, "p50"), f(delay, "max"));
        assert!(p50 > 0.0 && p50 <= max, "{v}");
        // Not a timing bound: a copy matched to the wrong packet would be
        // off by a frame interval or more of the clip's 3 s loop.
        assert!(max < 1000.0, "delays this long are mismatches: {v}");
    }
    let metrics = common::http::scrape(server.http.expect("http"));
    assert_eq!(
        common::http::sample(
            &metrics,
            "rtspd_send_dropped_total",
            "reason=\"relay_late\""
        ),
        Some(0.0)
    );
}

#[test]
fn plot_shows_the_injected_loss() {
    let server = faulty_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("run.svg");
    let url = format!("rtsp://{server}/clip/loss");
    let svg_arg = svg.to_str().expect("utf-8 path");
    let v = load(&[
        &url, "-n", "2", "-d", "2.5", "--ramp", "50", "--plot", svg_arg,
    ]);
    assert_eq!(u(&v, "packets_lost"), 20);
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert_eq!(
        text.matches("<polyline").count(),
        3,
        "loss, max and mean error"
    );
    // The loss line is not flat at zero: some second lost 10% or so.
    let loss_line = text
        .split("<polyline")
        .nth(1)
        .and_then(|p| p.split("points=\"").nth(1))
        .and_then(|p| p.split('"').next())
        .expect("loss points");
    let ys: Vec<f64> = loss_line
        .split(' ')
        .filter_map(|xy| xy.split(',').nth(1)?.parse().ok())
        .collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    assert!(hi - lo > 50.0, "the loss line moves: {loss_line}");
}

#[test]
fn range_starts_play_there() {
    let server = Server::start(&[]);
    let url = server.url("tones-8k-mono.wav");
    // 5 s clip from 3.5 s: 1.5 s = 75 packets of 20 ms each, then the BYE.
    let v = load(&[&url, "-n", "2", "-d", "3", "--range", "npt=3.5-"]);
    assert_eq!(u(&v, "sessions_ok"), 2, "{v}");
    assert_eq!(u(&v, "packets_received"), 150, "{v}");
    assert_eq!(u(&v, "server_packets_sent"), 150);
}

/// The bundled MP4 has B-frames (H.264 High, B-pyramid) and AAC. rtspd
/// sends its pictures in decode order stamped with their presentation
/// time, up to 200 ms ahead; that is neither lateness nor A/V sync error
/// (the tester used to report both at 200 ms), and it shows as the reorder
/// depth. The bounds leave room for a busy machine.
#[test]
fn b_frames_are_neither_late_nor_out_of_sync() {
    let server = Server::start(&[]);
    let url = server.url("testsrc-320x240.mp4");
    let v = load(&[&url, "-n", "2", "-d", "4", "--ramp", "50"]);
    assert_eq!(
        (u(&v, "sessions_ok"), u(&v, "sessions_failed")),
        (2, 0),
        "{v}"
    );
    let pacing = f(&v, "pacing_p99_ms");
    assert!(pacing < 20.0, "pacing p99 {pacing} ms: {v}");
    let sync = f(&v, "av_sync_max_ms");
    assert!(sync < 20.0, "A/V sync {sync} ms: {v}");
    // pts - dts in the file reaches 200 ms (ffprobe: a P at 0.16 s is
    // decoded at -0.04 s).
    let depth = f(&v, "reorder_max_ms");
    assert!((depth - 200.0).abs() < 1.0, "reorder depth {depth} ms: {v}");
    // RFC 3550 jitter keeps its definition, reordering included.
    assert!(f(&v, "jitter_p99_ms") > 20.0, "{v}");
}

#[test]
fn refused_sessions_are_counted_not_fatal() {
    let server = Server::start(&[]);
    let v = load(&[
        &server.url("no-such.wav"),
        "-n",
        "3",
        "-d",
        "1",
        "--ramp",
        "100",
    ]);
    assert_eq!((u(&v, "sessions_ok"), u(&v, "sessions_failed")), (0, 3));
    assert_eq!(v["failures"]["DESCRIBE answered 404"], 3, "{v}");
}

/// `--source-ips`: 40 sessions from 10 loopback addresses against a server
/// that allows 4 sessions and 4 connections per client IP, so they can only
/// all succeed if they really come from 10 addresses. Over UDP the sessions
/// on different addresses share receive port pairs (4 pairs for 40 here), and
/// each session still gets exactly its own packets: on a live channel every
/// listener has the same SSRC and sequence numbers, so a datagram handed to
/// the wrong session would show as a duplicate there and a loss here.
#[test]
fn source_ips_spread_sessions_and_share_receive_ports() {
    let live = format!(
        "radio=file:{},codec=pcmu",
        common::bundled_media().join("tones-8k-mono.wav").display()
    );
    let server = Server::start(&[
        "--max-sessions-per-ip",
        "4",
        "--max-connections-per-ip",
        "4",
        "--live",
        &live,
    ]);
    let clip = server.url("tones-8k-mono.wav");
    let radio = server.url("live/radio");
    let ips = "127.0.0.2-127.0.0.11";

    // The control: from one address the caps let 4 of 8 through.
    let one = load(&[&clip, "-n", "8", "-d", "1", "--ramp", "100"]);
    assert_eq!(
        (u(&one, "sessions_ok"), u(&one, "sessions_failed")),
        (4, 4),
        "{one}"
    );

    // One after the other: together they would be 8 per address.
    for url in [&clip, &radio] {
        let v = load(&[
            url,
            "--source-ips",
            ips,
            "-n",
            "40",
            "-d",
            "3",
            "--ramp",
            "100",
        ]);
        assert_eq!(
            (u(&v, "sessions_ok"), u(&v, "sessions_failed")),
            (40, 0),
            "{v}"
        );
        assert_eq!(
            (u(&v, "packets_lost"), u(&v, "packets_duplicated")),
            (0, 0),
            "{v}"
        );
        let received = u(&v, "packets_received");
        // 40 sessions x 3 s x 50 packets/s, give or take the edges.
        assert!((5400..=6600).contains(&received), "{received} packets");
        assert!(f(&v, "sr_per_session") >= 1.0, "{v}");
        assert_eq!(u(&v, "source_ips"), 10);
        // At most one session per address on a pair, and as many as the
        // pair's receive buffer holds: 10 (4 pairs) where the kernel grants
        // 1.25 MiB (as root, or with net.core.rmem_max raised), 3 with a
        // stock rmem_max.
        let per = u(&v, "sessions_per_shared_pair");
        assert!((2..=10).contains(&per), "{v}");
        let pairs = u(&v, "shared_udp_pairs");
        assert_eq!(pairs, 40u64.div_ceil(per), "{v}");
        // A TCP connection each and the shared sockets, plus the tester's
        // own handful (about 15); three per session would be over 120.
        let fds = u(&v, "tester_fds_peak");
        let floor = 40 + 2 * pairs;
        assert!(
            (floor..floor + 30).contains(&fds),
            "{fds} descriptors open at most, {pairs} pairs"
        );
        if url == &clip {
            // A clip's SRs count the session's packets (a live channel's
            // count the channel's): every session got all it was sent.
            assert_eq!(received, u(&v, "server_packets_sent"), "{v}");
        }
    }

    // Interleaved sessions come from the addresses too (no UDP ports).
    let v = load(&[&radio, "--tcp", "--source-ips", ips, "-n", "40", "-d", "1"]);
    assert_eq!(u(&v, "sessions_ok"), 40, "{v}");
    assert_eq!(u(&v, "shared_udp_pairs"), 0);
    assert!(server.panics().is_empty());
}

#[test]
fn source_ips_must_be_loopback() {
    for (list, why) in [
        ("10.0.0.1", "not a loopback address"),
        ("127.0.0.9-127.0.0.2", "ends before it starts"),
        ("127.0.0.2,,127.0.0.3", "empty item"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rtspd"))
            .args(["load", "rtsp://127.0.0.1:9/x", "--source-ips", list])
            .output()
            .expect("run rtspd load");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{list}");
        assert!(stderr.contains(why), "{list}: {stderr}");
    }
}

// ---------------------------------------------------------------------------
// The faulty server

/// What the faulty server does to the stream of one session.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every 10th packet is never sent.
    DropTenth,
    /// Every 10th packet is sent twice.
    DuplicateTenth,
    /// Packets 10k+4 and 10k+5 are sent in swapped order.
    SwapPairs,
    /// Odd packets are sent `JITTER` late.
    Jitter,
    /// Two tracks (8 kHz audio, 90 kHz video) sent in step, but the video
    /// SR maps its media time `AV_SKEW` later than the audio's.
    AvSkew,
    /// Audio, and video with B-frames sent in decode order (timestamps
    /// step backwards) as rtspd sends an MP4; both SRs right, but the
    /// audio goes out `AUDIO_LATE` after the time its SR gives it.
    AvBFrames,
}

const AV_SKEW: Duration = Duration::from_millis(40);
const AUDIO_LATE: Duration = Duration::from_millis(200);

/// Packets per session: 8 kHz, 20 ms, 101 of them (seq 0..=100, so the
/// last packet is never one that a fault removes).
const PACKETS: u16 = 101;
const SPP: u32 = 160;
const JITTER: Duration = Duration::from_millis(4);

/// The send plan: `(index, extra delay)` in send order.
fn plan(fault: Fault) -> Vec<(u16, Duration)> {
    let mut p = Vec::new();
    for i in 0..PACKETS {
        match fault {
            Fault::DropTenth if i % 10 == 9 => {}
            Fault::DuplicateTenth if i % 10 == 9 => {
                p.push((i, Duration::ZERO));
                p.push((i, Duration::ZERO));
            }
            Fault::Jitter if i % 2 == 1 => p.push((i, JITTER)),
            _ => p.push((i, Duration::ZERO)),
        }
    }
    if let Fault::SwapPairs = fault {
        for k in (4..p.len() - 1).step_by(10) {
            p.swap(k, k + 1);
        }
    }
    p
}

/// A minimal RTSP server on loopback: answers the play flow, then sends the
/// planned packets of the fault named by the URL path, paced on absolute
/// deadlines. It serves sessions until the test ends.
fn faulty_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || serve_one(conn, n as u32));
        }
    });
    addr
}

fn serve_one(conn: TcpStream, n: u32) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    let ssrc = 0x1000_0000 + n;
    let mut client: Option<SocketAddr> = None;
    let mut video: Option<SocketAddr> = None;
    let mut fault = Fault::DropTenth;
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            head.push(line.trim_end().to_owned());
        }
        let Some(request_line) = head.first() else {
            return;
        };
        let mut parts = request_line.split(' ');
        let (method, url) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let header = |name: &str| {
            head.iter()
                .find_map(|h| h.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
                .unwrap_or("")
                .to_owned()
        };
        let cseq = header("CSeq");
        let mut extra = String::new();
        let mut body = String::new();
        match method {
            "OPTIONS" => extra
                .push_str("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"),
            "DESCRIBE" => {
                fault = match url.rsplit('/').next() {
                    Some("dup") => Fault::DuplicateTenth,
                    Some("reorder") => Fault::SwapPairs,
                    Some("jitter") => Fault::Jitter,
                    Some("av") => Fault::AvSkew,
                    Some("av-bframes") => Fault::AvBFrames,
                    _ => Fault::DropTenth,
                };
                extra.push_str(&format!(
                    "Content-Base: {url}/\r\nContent-Type: application/sdp\r\n"
                ));
                body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=faulty\r\nt=0 0\r\na=control:*\r\n\
                        m=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/8000\r\na=control:trackID=0\r\n"
                    .to_owned();
                if let Fault::AvSkew | Fault::AvBFrames = fault {
                    body.push_str(
                        "m=video 0 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\na=control:trackID=1\r\n",
                    );
                }
            }
            "SETUP" => {
                let t = header("Transport");
                let port: u16 = t
                    .split("client_port=")
                    .nth(1)
                    .and_then(|p| p.split('-').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let dest = SocketAddr::from(([127, 0, 0, 1], port));
                let track_ssrc = if url.ends_with("trackID=1") {
                    video = Some(dest);
                    ssrc + 0x100
                } else {
                    client = Some(dest);
                    ssrc
                };
                extra.push_str(&format!(
                    "Session: F{n};timeout=60\r\nTransport: RTP/AVP;unicast;client_port={port}-{};ssrc={track_ssrc:08X}\r\n",
                    port + 1
                ));
            }
            "PLAY" => {
                extra.push_str(&format!("Session: F{n}\r\n"));
                match (fault, client, video) {
                    (Fault::AvSkew, Some(a), Some(v)) => {
                        thread::spawn(move || send_av(a, v, ssrc, AV_SKEW, Duration::ZERO, false));
                    }
                    (Fault::AvBFrames, Some(a), Some(v)) => {
                        thread::spawn(move || {
                            send_av(a, v, ssrc, Duration::ZERO, AUDIO_LATE, true)
                        });
                    }
                    (_, Some(dest), _) => {
                        thread::spawn(move || send_plan(dest, ssrc, plan(fault)));
                    }
                    _ => {}
                }
            }
            _ => extra.push_str(&format!("Session: F{n}\r\n")),
        }
        let resp = format!(
            "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() || method == "TEARDOWN" {
            return;
        }
    }
}

fn send_plan(dest: SocketAddr, ssrc: u32, plan: Vec<(u16, Duration)>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let start = Instant::now() + Duration::from_millis(5);
    for (i, late) in plan {
        let due = start + Duration::from_millis(20 * u64::from(i)) + late;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&(1000 + i).to_be_bytes());
        p.extend_from_slice(&(5000 + u32::from(i) * SPP).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0; 320]);
        let _ = sock.send_to(&p, dest);
    }
}

/// Display-order picture numbers in decode order, as x264 writes them
/// with 3 B-frames and a B-pyramid (the bundled testsrc-320x240.mp4): I0,
/// then P4 B2 b1 b3, P8 B6 b5 b7, and so on. Picture `k` in decode order is
/// decoded at frame `k - 2`, so a P is shown 5 frames (200 ms at 25 fps)
/// after it is decoded.
fn pyramid(pictures: u32) -> Vec<u32> {
    let mut v = vec![0];
    let mut p = 0;
    while (v.len() as u32) < pictures {
        v.extend([p + 4, p + 2, p + 1, p + 3]);
        p += 4;
    }
    v.truncate(pictures as usize);
    v
}

/// Audio every 20 ms and video at 25 fps for 2 s, both on the same clock;
/// an SR for each at the start, the video one claiming its media time is
/// `video_skew` later than it is. The audio goes out `audio_late` after
/// its time. With `b_frames` the video is the [`pyramid`] in decode order,
/// 3 packets a picture, on the decode schedule (what decodes before the
/// first picture is shown goes out at once, as rtspd does).
fn send_av(
    audio: SocketAddr,
    video: SocketAddr,
    ssrc: u32,
    video_skew: Duration,
    audio_late: Duration,
    b_frames: bool,
) {
    use rtspd::proto::rtcp::{write_sender_report, NtpTimestamp, SenderInfo};
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let start = Instant::now() + Duration::from_millis(5);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        + Duration::from_millis(5);
    let (vssrc, ats0, vts0) = (ssrc + 0x100, 1000u32, 9000u32);
    let rtcp = |dest: SocketAddr| SocketAddr::from(([127, 0, 0, 1], dest.port() + 1));
    thread::sleep(start.saturating_duration_since(Instant::now()));
    for (dest, s, ntp, ts) in [
        (audio, ssrc, unix, ats0),
        (video, vssrc, unix + video_skew, vts0),
    ] {
        let mut buf = bytes::BytesMut::new();
        let info = SenderInfo {
            ntp: NtpTimestamp::from_unix(ntp),
            rtp_time: ts,
            packet_count: 0,
            octet_count: 0,
        };
        write_sender_report(&mut buf, s, &info, "faulty");
        let _ = sock.send_to(&buf, rtcp(dest));
    }
    // (due, destination, datagram), sent in due order.
    let mut plan: Vec<(Duration, SocketAddr, Vec<u8>)> = Vec::new();
    let packet = |pt: u8, seq: u32, ts: u32, ssrc: u32, len: usize| {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&(seq as u16).to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&vec![0; len]);
        p
    };
    for i in 0..100u32 {
        let due = Duration::from_millis(20 * u64::from(i)) + audio_late;
        plan.push((due, audio, packet(96, i, ats0 + i * SPP, ssrc, 320)));
    }
    if b_frames {
        for (k, shown) in pyramid(49).into_iter().enumerate() {
            let due = Duration::from_millis(40 * (k as u64).saturating_sub(2));
            for part in 0..3 {
                let seq = (3 * k + part) as u32;
                let p = packet(97, seq, vts0 + shown * 3600, vssrc, 1000);
                plan.push((due, video, p));
            }
        }
    } else {
        for i in 0..50u32 {
            let due = Duration::from_millis(40 * u64::from(i));
            plan.push((due, video, packet(97, i, vts0 + i * 3600, vssrc, 100)));
        }
    }
    plan.sort_by_key(|(due, _, _)| *due);
    for (due, dest, p) in plan {
        thread::sleep((start + due).saturating_duration_since(Instant::now()));
        let _ = sock.send_to(&p, dest);
    }
}

fn run_fault(server: SocketAddr, name: &str) -> Value {
    let url = format!("rtsp://{server}/clip/{name}");
    load(&[&url, "-n", "3", "-d", "2.5", "--ramp", "50"])
}

#[test]
fn faults_are_measured_as_injected() {
    let server = faulty_server();
    let names = ["loss", "dup", "reorder", "jitter", "av", "av-bframes"];
    let results: Vec<Value> = thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(move || run_fault(server, n)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("load run"))
            .collect()
    });
    let [loss, dup, reorder, jitter, av, av_bframes] = &results[..] else {
        unreachable!("one result per run")
    };
    // A/V sync: the video SR is 40 ms off the audio one, and the tester
    // says so (loopback adds well under a millisecond).
    assert_eq!(u(av, "sessions_ok"), 3, "{av}");
    let skew = f(av, "av_sync_max_ms");
    assert!(
        (38.0..=42.0).contains(&skew),
        "A/V sync {skew} ms, injected 40 ms: {av}"
    );
    assert!(
        v_is_null(loss, "av_sync_max_ms"),
        "one track: no A/V figure"
    );
    // With B-frames in decode order, the audio sent 200 ms after its SR
    // time is still 200 ms out of sync, and the reordering is neither
    // lateness nor sync error: it is reported on its own, 200 ms deep
    // (a P-picture is shown 5 frames after it is decoded).
    assert_eq!(u(av_bframes, "sessions_ok"), 3, "{av_bframes}");
    let late = f(av_bframes, "av_sync_max_ms");
    assert!(
        (195.0..=205.0).contains(&late),
        "A/V sync {late} ms, audio injected 200 ms late: {av_bframes}"
    );
    let p = f(av_bframes, "pacing_p99_ms");
    assert!(p < 20.0, "pacing p99 {p} ms: B-frames are not lateness");
    assert_eq!(f(av_bframes, "reorder_max_ms"), 200.0, "{av_bframes}");
    assert_eq!(f(av, "reorder_max_ms"), 0.0, "no B-frames");
    for (name, v) in names[..4].iter().zip(&results) {
        assert_eq!(u(v, "sessions_ok"), 3, "{name}: {v}");
        assert_eq!(u(v, "packets_expected"), 3 * u64::from(PACKETS), "{name}");
    }
    // Loss: 10 of 101 per session, exactly.
    assert_eq!(u(loss, "packets_lost"), 30);
    assert!(
        (f(loss, "loss_pct") - 1000.0 / 101.0).abs() < 1e-6,
        "{loss}"
    );
    assert_eq!(
        u(loss, "packets_duplicated") + u(loss, "packets_reordered"),
        0
    );
    // Duplicates: 10 per session, nothing lost.
    assert_eq!(
        (u(dup, "packets_duplicated"), u(dup, "packets_lost")),
        (30, 0)
    );
    // Reordering: one late packet per swapped pair, 10 per session. The
    // network's reordering is not the encoder's.
    assert_eq!(
        (u(reorder, "packets_reordered"), u(reorder, "packets_lost")),
        (30, 0)
    );
    assert_eq!(f(reorder, "reorder_max_ms"), 0.0, "{reorder}");
    // Jitter: |D| is 4 ms between every two packets, so the A.8 estimate
    // converges on 4 ms; the pacing error of the late packets is 4 ms too.
    // The upper bounds leave room for a busy machine's scheduling delays
    // (the faulty server sleeps between packets); the lower ones are what
    // shows the injected 4 ms was seen.
    let j = f(jitter, "jitter_p99_ms");
    assert!(
        (3.0..=8.0).contains(&j),
        "jitter {j} ms, injected 4 ms: {jitter}"
    );
    let p = f(jitter, "pacing_p99_ms");
    assert!(
        (3.5..=20.0).contains(&p),
        "pacing p99 {p} ms, injected 4 ms"
    );
    // (A swapped packet really is 20 ms late, so reordering shows jitter.)
    for v in [loss, dup] {
        assert!(f(v, "jitter_p99_ms") < 2.5, "no jitter injected: {v}");
    }
}
