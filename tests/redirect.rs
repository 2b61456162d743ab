//! Redirects (RFC 2326 §11.3.3 302 with `Location`, §12.25): an origin
//! rtspd whose `[[paths]]` rule names edges sends readers there; ffmpeg
//! and GStreamer follow and play the same samples from the edge;
//! `least_readers` picks the emptier edge and skips one that is down; a
//! redirect to the server itself is refused at load and on reload.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{request, scrape};
use common::pcm::assert_pcm_eq;
use common::tools::{ffmpeg_s16be, require, run_tool};
use common::udp::UdpPair;
use common::{bundled_media, wav_l16, Rtsp, Server};

/// The shortest bundled clip: path, rate, channels, seconds.
const CLIP: (&str, u32, u16, f64) = ("speech/count-16k-mono.wav", 16000, 1, 3.0);

fn edge() -> Server {
    Server::start_http(&[], "info")
}

fn base(s: &Server) -> String {
    format!("rtsp://127.0.0.1:{}", s.port)
}

fn api(s: &Server) -> String {
    format!("http://{}", s.http.expect("edge HTTP side"))
}

/// An origin serving the bundled media whose every path redirects with
/// `rule` (TOML keys of a `[[paths]]` table after `match`), polling edges
/// every 100 ms.
fn origin(dir: &Path, rule: &str) -> Server {
    let cfg = format!("[server]\nredirect_poll_ms = 100\n\n[[paths]]\nmatch = \"/**\"\n{rule}\n");
    Server::start_configured(
        dir,
        &cfg,
        &bundled_media(),
        &["--http", "127.0.0.1:0"],
        Some("info"),
    )
}

fn started(s: &Server) -> f64 {
    let text = scrape(s.http.expect("HTTP side"));
    common::http::sample(&text, "rtspd_sessions_started_total", "").unwrap_or(-1.0)
}

/// Where the origin sends a DESCRIBE of `path`.
fn location_of(origin: &Server, path: &str) -> String {
    let mut c = Rtsp::connect(origin.addr());
    let r = c.request("DESCRIBE", &origin.url(path), &["Accept: application/sdp"]);
    assert_eq!(r.status, 302, "DESCRIBE {path}: {r:?}");
    r.header("Location").expect("Location").to_owned()
}

#[test]
fn ffmpeg_and_gstreamer_follow_the_302_to_the_edge_and_play_it() {
    require("ffmpeg");
    require("gst-launch-1.0");
    let edge = edge();
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(dir.path(), &format!("redirect = [\"{}\"]", base(&edge)));
    let (path, rate, channels, secs) = CLIP;
    let (expected, _, _) = wav_l16(&bundled_media().join(path));
    let limit = Duration::from_secs_f64(secs + 20.0);

    // The Location keeps the path and query.
    assert_eq!(
        location_of(&origin, &format!("{path}?x=1")),
        format!("{}/{path}?x=1", base(&edge))
    );

    let (decoded, run) = ffmpeg_s16be(&["-rtsp_transport", "tcp", "-i", &origin.url(path)], limit);
    assert!(run.status.success(), "ffmpeg: {}", run.stderr);
    assert_pcm_eq("ffmpeg via 302", &decoded, &expected, channels, rate);
    assert_eq!(started(&edge), 1.0, "the edge served ffmpeg's session");

    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.raw");
    let args = common::gst_l16_args(&origin.url(path), "protocols=tcp", &[], &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_tool("gst-launch-1.0", &args, limit);
    assert!(
        run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
        "gst-launch: {}",
        run.stderr
    );
    let decoded = std::fs::read(&out).expect("gst output");
    assert_pcm_eq("gstreamer via 302", &decoded, &expected, channels, rate);
    assert_eq!(started(&edge), 2.0, "the edge served GStreamer's session");
    assert_eq!(started(&origin), 0.0, "the origin served no session");
}

#[test]
fn round_robin_takes_turns_and_setup_without_session_is_redirected() {
    let (a, b) = (edge(), edge());
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(
        dir.path(),
        &format!("redirect = [\"{}\", \"{}\"]", base(&a), base(&b)),
    );
    let picks: Vec<String> = (0..4).map(|_| location_of(&origin, CLIP.0)).collect();
    let want = |s: &Server| format!("{}/{}", base(s), CLIP.0);
    assert_eq!(picks, [want(&a), want(&b), want(&a), want(&b)]);
    let mut c = Rtsp::connect(origin.addr());
    let pair = UdpPair::bind();
    let url = format!("{}/trackID=0", origin.url(CLIP.0));
    let r = c.request("SETUP", &url, &[&pair.transport()]);
    assert_eq!(r.status, 302, "{r:?}");
    assert!(r
        .header("Location")
        .is_some_and(|l| l.ends_with("/trackID=0")));
}

/// Puts `n` readers (set-up sessions) on `s`, kept open by the returned
/// connections.
fn readers_on(s: &Server, n: usize) -> Vec<(Rtsp, UdpPair)> {
    (0..n)
        .map(|_| {
            let mut c = Rtsp::connect(s.addr());
            let pair = UdpPair::bind();
            common::setup_udp(&mut c, &s.url(CLIP.0), &pair);
            (c, pair)
        })
        .collect()
}

/// Waits (up to 5 s) until `f` holds.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(5), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn least_readers_picks_the_emptier_edge() {
    let (a, b) = (edge(), edge());
    let _held = readers_on(&a, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(
        dir.path(),
        &format!(
            "redirect = [\"{}\", \"{}\"]\nredirect_api = [\"{}\", \"{}\"]\nredirect_policy = \"least_readers\"",
            base(&a),
            base(&b),
            api(&a),
            api(&b)
        ),
    );
    eventually("the origin polled both edges", || {
        origin
            .log_lines()
            .iter()
            .filter(|l| l.contains("redirect edge answers"))
            .count()
            >= 2
    });
    // Round robin would send the first or the second to A; B has 0 (+1
    // for the first sent there) against A's 3.
    for _ in 0..3 {
        assert_eq!(
            location_of(&origin, CLIP.0),
            format!("{}/{}", base(&b), CLIP.0)
        );
    }
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn least_readers_skips_an_edge_that_is_down() {
    let b = edge();
    let dead = dead_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(
        dir.path(),
        &format!(
            "redirect = [\"rtsp://127.0.0.1:{dead}\", \"{}\"]\nredirect_api = [\"http://127.0.0.1:{dead}\", \"{}\"]\nredirect_policy = \"least_readers\"",
            base(&b),
            api(&b)
        ),
    );
    eventually("the origin polled both edges", || {
        let log = origin.log_lines();
        log.iter().any(|l| l.contains("redirect edge answers"))
            && log.iter().any(|l| l.contains("redirect edge skipped"))
    });
    for _ in 0..4 {
        assert_eq!(
            location_of(&origin, CLIP.0),
            format!("{}/{}", base(&b), CLIP.0)
        );
    }
}

/// `rtspd ARGS` run to its end (bounded): status and stderr.
fn run_rtspd(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtspd"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rtspd");
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("rtspd {args:?} still runs after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}

#[test]
fn a_redirect_to_this_server_is_refused_at_load_and_on_reload() {
    let port = dead_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("loop.toml");
    for self_url in [
        format!("rtsp://127.0.0.1:{port}"),
        format!("rtsp://localhost:{port}/"),
    ] {
        let cfg = format!(
            "[server]\nbind = \"127.0.0.1\"\nport = {port}\n\n[[paths]]\nmatch = \"/**\"\nredirect = [\"rtsp://127.0.0.1:1\", \"{self_url}\"]\n"
        );
        std::fs::write(&file, &cfg).expect("write");
        let media = bundled_media().display().to_string();
        let file_s = file.display().to_string();
        let (status, err) = run_rtspd(&["--config", &file_s, "--media", &media]);
        assert_eq!(status.code(), Some(2), "started with a loop: {err}");
        assert!(
            err.contains("paths[0].redirect") && err.contains("is this server"),
            "{err}"
        );
        let (status, err) = run_rtspd(&["check-config", &file_s]);
        assert!(
            status.code() == Some(2) && err.contains("is this server"),
            "{err}"
        );
    }

    // On reload: refused, the rule in force stays.
    let edge = edge();
    let running_dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(
        running_dir.path(),
        &format!("redirect = [\"{}\"]", base(&edge)),
    );
    let cfg = format!(
        "[server]\nredirect_poll_ms = 100\n\n[[paths]]\nmatch = \"/**\"\nredirect = [\"rtsp://localhost:{}\"]\n",
        origin.port
    );
    std::fs::write(running_dir.path().join("rtspd.toml"), cfg).expect("write");
    let http: SocketAddr = origin.http.expect("HTTP");
    let r = request(http, "POST", "/api/v1/reload", &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("is this server"), "{}", r.body);
    assert_eq!(
        location_of(&origin, CLIP.0),
        format!("{}/{}", base(&edge), CLIP.0)
    );
}

/// Plays `CLIP` on `s` over UDP from a raw client: the client, its
/// session id and its ports (kept open).
fn playing(s: &Server) -> (Rtsp, String, UdpPair) {
    let mut c = Rtsp::connect(s.addr());
    let pair = UdpPair::bind();
    let id = common::setup_udp(&mut c, &s.url(CLIP.0), &pair);
    let r = c.request("PLAY", &s.url(CLIP.0), &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "PLAY: {r:?}");
    (c, id, pair)
}

/// What the server sends on `c` up to the end of a message head (its
/// next request, or a response read raw), within `wait`.
fn server_request(c: &Rtsp, wait: Duration) -> String {
    use std::io::Read;
    assert!(c.pending().is_empty(), "unread bytes: {:?}", c.pending());
    let mut s = c.stream();
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no request from the server within {wait:?}: {buf:?}"
        );
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) => panic!("closed; read {:?}", String::from_utf8_lossy(&buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Checks a REDIRECT (RFC 2326 §10.15) from `node` for session `id` to
/// `to`: its Request-URI is the session's URL at the address the client
/// reached.
fn assert_redirect(head: &str, node: &Server, id: &str, to: &str) {
    let line = format!("REDIRECT {} RTSP/1.0\r\n", node.url(CLIP.0));
    assert!(head.starts_with(&line), "{head}");
    assert!(head.contains(&format!("\r\nSession: {id}\r\n")), "{head}");
    assert!(
        head.contains(&format!("\r\nLocation: {to}/{}\r\n", CLIP.0)),
        "{head}"
    );
    assert!(head.contains("\r\nCSeq: 1\r\n"), "{head}");
}

/// Waits up to `limit` for `s` to exit; how long it took.
fn exits_within(s: &mut Server, limit: Duration) -> Duration {
    let t0 = Instant::now();
    while s.alive() {
        assert!(t0.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

#[test]
fn drain_over_http_redirects_players_and_new_readers_then_stops_when_they_left() {
    let target = edge();
    let mut node = Server::start_http(&["--drain-timeout", "30"], "info");
    let http = node.http.expect("HTTP");
    let (mut c, id, _pair) = playing(&node);
    let r = request(http, "GET", "/api/v1/drain", &[]);
    assert!(r.body.contains("\"draining\":false"), "{}", r.body);

    // Refused: not a base URL, or this server.
    let r = request(http, "POST", "/api/v1/drain?to=rtsp://h/x", &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    let own = format!("/api/v1/drain?to=rtsp://127.0.0.1:{}", node.port);
    let r = request(http, "POST", &own, &[]);
    assert_eq!(r.status, 400, "{}", r.body);

    let to = base(&target);
    let r = request(http, "POST", &format!("/api/v1/drain?to={to}"), &[]);
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"draining\":true"), "{}", r.body);
    let r = request(http, "POST", &format!("/api/v1/drain?to={to}"), &[]);
    assert_eq!(r.status, 409, "a second drain: {}", r.body);
    assert_eq!(request(http, "GET", "/healthz", &[]).status, 503);

    assert_redirect(&server_request(&c, Duration::from_secs(5)), &node, &id, &to);
    // A new reader is sent to the target.
    assert_eq!(location_of(&node, CLIP.0), format!("{to}/{}", CLIP.0));
    // Both counted: the REDIRECT sent and the 302 answered.
    let m = scrape(http);
    let sample = |name, labels| common::http::sample(&m, name, labels);
    assert_eq!(sample("rtspd_redirects_sent_total", ""), Some(1.0));
    assert_eq!(
        sample("rtspd_requests_total", "method=\"DESCRIBE\",status=\"302\""),
        Some(1.0)
    );
    // The client answers the REDIRECT, then leaves on the same connection.
    c.write(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
        .expect("write");
    let r = c.request("TEARDOWN", &node.url(CLIP.0), &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r:?}");
    // Gone well before the 30 s timeout: it stopped because nobody was left.
    let took = exits_within(&mut node, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn sigterm_with_drain_to_redirects_and_stops_at_the_timeout() {
    let target = edge();
    let to = base(&target);
    let mut node = Server::start(&["--drain-to", &to, "--drain-timeout", "2"]);
    let (c, id, _pair) = playing(&node);
    let t0 = Instant::now();
    node.signal("TERM");
    assert_redirect(&server_request(&c, Duration::from_secs(5)), &node, &id, &to);
    assert_eq!(location_of(&node, CLIP.0), format!("{to}/{}", CLIP.0));
    // The client stays: the drain ends at its 2 s timeout.
    exits_within(&mut node, Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn full_redirects_only_past_max_readers_and_refused_readers_never_see_an_edge() {
    let edge = edge();
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = origin(
        dir.path(),
        &format!(
            "redirect = [\"{}\"]\nredirect_when = \"full\"\nmax_readers = 2\nallow_ips = [\"127.0.0.1/32\"]",
            base(&edge)
        ),
    );
    let describe = |c: &mut Rtsp| c.request("DESCRIBE", &origin.url(CLIP.0), &[]);
    // Under max_readers, served here.
    let _first = readers_on(&origin, 1);
    assert_eq!(describe(&mut Rtsp::connect(origin.addr())).status, 200);
    let _second = readers_on(&origin, 1);
    let r = describe(&mut Rtsp::connect(origin.addr()));
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(
        r.header("Location"),
        Some(format!("{}/{}", base(&edge), CLIP.0).as_str())
    );
    // Another rtspd pulling the stream is never redirected.
    let mut c = Rtsp::connect(origin.addr());
    let r = c.request(
        "DESCRIBE",
        &origin.url(CLIP.0),
        &["Via: RTSP/1.0 edge1 (rtspd)"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    // A client the rule refuses gets 403 and no Location.
    let mut c = Rtsp::connect_from(std::net::Ipv4Addr::new(127, 0, 0, 2), origin.addr());
    let r = describe(&mut c);
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("Location"), None);
}

#[test]
fn a_drain_ends_at_its_timeout_even_when_an_interleaved_player_stops_reading() {
    let target = edge();
    let to = base(&target);
    let mut node = Server::start(&[
        "--drain-to",
        &to,
        "--drain-timeout",
        "2",
        "--write-timeout",
        "1",
    ]);
    // The longest, widest clip: far more than socket buffers hold.
    let clip = "music-44k-stereo.wav";
    let mut c = Rtsp::connect(node.addr());
    let url = node.url(clip);
    let r = c.request(
        "SETUP",
        &format!("{url}/trackID=0"),
        &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"],
    );
    assert_eq!(r.status, 200, "{r:?}");
    let id = r.session();
    // Frames follow the PLAY answer at once: its head is read raw.
    c.send("PLAY", &url, &[&format!("Session: {id}")], b"");
    let head = server_request(&c, Duration::from_secs(5));
    assert!(head.starts_with("RTSP/1.0 200 OK\r\n"), "{head:?}");
    // From here on the client reads nothing.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    node.signal("TERM");
    // New readers are still sent away while the stuck one holds on (once
    // the signal is handled: a DESCRIBE may overtake it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = Rtsp::connect(node.addr());
        let r = d.request("DESCRIBE", &node.url(clip), &["Accept: application/sdp"]);
        if r.status == 302 {
            assert_eq!(r.header("Location"), Some(format!("{to}/{clip}").as_str()));
            break;
        }
        assert!(Instant::now() < deadline, "never redirected: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    exits_within(&mut node, Duration::from_secs(12));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(9),
        "{took:?}"
    );
    drop(c);
}

/// What real players do with a server's REDIRECT (RFC 2326 §10.15) during
/// a drain: ffmpeg and GStreamer's rtspsrc neither follow it nor fail on
/// it. Both keep playing the live channel through it, with nothing
/// dropped, until the drain's timeout stops the server; a new reader is
/// sent to the target with 302 meanwhile. (Were either to stop or error at
/// the REDIRECT, the durations below would be short.)
#[test]
fn players_keep_playing_through_a_redirect_until_the_drain_timeout() {
    require("ffmpeg");
    require("gst-launch-1.0");
    let target = edge();
    let to = base(&target);
    let wav = bundled_media().join("music-44k-stereo.wav");
    let live = format!("hifi=file:{}", wav.display());
    let mut node = Server::start_http(&["--live", &live, "--drain-timeout", "3"], "info");
    let url = node.url("live/hifi");
    let http = node.http.expect("HTTP");
    let limit = Duration::from_secs(30);
    let t0 = Instant::now();
    let location = format!("location={url}");
    let (ffmpeg, gst, drained_at) = std::thread::scope(|s| {
        let ffmpeg = s.spawn(|| ffmpeg_s16be(&["-rtsp_transport", "tcp", "-i", &url], limit));
        let gst = s.spawn(|| {
            let args = ["-q", "rtspsrc", &location, "protocols=tcp", "!", "fakesink"];
            run_tool("gst-launch-1.0", &args, limit)
        });
        // Both playing, then the drain.
        let deadline = Instant::now() + Duration::from_secs(10);
        while common::http::sample(&scrape(http), "rtspd_sessions_started_total", "") != Some(2.0) {
            assert!(Instant::now() < deadline, "the players did not set up");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        let r = request(http, "POST", &format!("/api/v1/drain?to={to}"), &[]);
        assert_eq!(r.status, 202, "{}", r.body);
        let drained_at = t0.elapsed();
        assert_eq!(location_of(&node, "live/hifi"), format!("{to}/live/hifi"));
        (
            ffmpeg.join().expect("ffmpeg thread"),
            gst.join().expect("gst thread"),
            drained_at,
        )
    });
    exits_within(&mut node, Duration::from_secs(10));
    let log = node.log_lines().join("\n");
    assert_eq!(log.matches("REDIRECT sent").count(), 2, "{log}");
    assert!(
        log.contains("drain timed out; stopping with readers left readers=2"),
        "both players stayed to the end: {log}"
    );
    // ffmpeg decoded from its PLAY to the stop: through the REDIRECT and
    // the 3 s after it, with no error line.
    let (pcm, run) = ffmpeg;
    let decoded = pcm.len() as f64 / (44_100.0 * 2.0 * 2.0);
    let until_stop = drained_at.as_secs_f64() + 3.0;
    assert!(
        decoded > until_stop - 1.5 && decoded < until_stop + 1.0,
        "ffmpeg decoded {decoded:.2} s; the drain began at {drained_at:?} and stopped 3 s later\n{}",
        run.stderr
    );
    // GStreamer ran until the server closed, not until the REDIRECT.
    let (_, gst) = (run, gst);
    assert!(
        gst.elapsed > drained_at + Duration::from_millis(2500),
        "rtspsrc ended {:?} after start; the drain began at {drained_at:?}\n{}",
        gst.elapsed,
        gst.stderr
    );
}
