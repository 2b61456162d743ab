//! RTSP over HTTP (issue 12, QuickTime tunnelling): ffmpeg
//! (`-rtsp_transport http`) and GStreamer (`rtsph://`) play clips through a
//! tunnel on the RTSP port and on the HTTP listener, with exact samples,
//! also with Digest credentials; and a raw client runs every abuse case of
//! ROBUSTNESS B13 (#96 and the pairing rules) while a canary streams.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use common::http::{sample, scrape};
use common::pcm::assert_pcm_eq;
use common::rtsp::{build, find};
use common::tools::{ffmpeg_attempt, ffmpeg_s16be, require, run_tool};
use common::{int_spec, wav_l16, write_wav, Rtsp, Server};

/// A clip real clients play to the end (2 s).
const SHORT: &str = "short-8k-mono.wav";
/// The canary's clip, longer than every case.
const LONG: &str = "long-8k-mono.wav";

fn fill(media: &Path) {
    let tone = |n: u32| -> Vec<i16> {
        (0..n)
            .map(|i| ((f64::from(i) * 0.05).sin() * 8000.0) as i16 + (i % 89) as i16)
            .collect()
    };
    write_wav(&media.join(SHORT), int_spec(8000, 1, 16), tone(8000 * 2));
    write_wav(&media.join(LONG), int_spec(8000, 1, 16), tone(8000 * 40));
}

/// A server with the HTTP listener on an ephemeral port.
fn start(extra: &[&str]) -> Server {
    let args = [&["--http", "127.0.0.1:0"][..], extra].concat();
    let server = Server::start_with(fill, &args);
    assert!(server.http.is_some(), "no HTTP address printed");
    server
}

fn http_addr(server: &Server) -> SocketAddr {
    server.http.expect("HTTP side")
}

/// `rtsp://127.0.0.1:PORT/path` for a client that tunnels to `port`.
fn url_at(port: u16, path: &str) -> String {
    format!("rtsp://127.0.0.1:{port}/{path}")
}

// ---------------------------------------------------------------------------
// Real clients

/// ffmpeg tunnels to the RTSP port and to the HTTP listener, and decodes
/// exactly the WAV's samples both times.
#[test]
fn ffmpeg_plays_through_both_tunnels_bit_exact() {
    require("ffmpeg");
    let server = start(&[]);
    let (expected, rate, channels) = wav_l16(&server.media.join(SHORT));
    for port in [server.port, http_addr(&server).port()] {
        let url = url_at(port, SHORT);
        let (decoded, run) = ffmpeg_s16be(
            &["-rtsp_transport", "http", "-i", &url],
            Duration::from_secs(30),
        );
        assert!(run.status.success(), "{url}: {}", run.stderr);
        assert_pcm_eq(
            &format!("ffmpeg tunnel {url}"),
            &decoded,
            &expected,
            channels,
            rate,
        );
    }
    assert!(server.panics().is_empty());
}

/// GStreamer's rtspsrc with `rtsph://` URLs, on both ports, bit-exact.
#[test]
fn gstreamer_plays_rtsph_on_both_ports() {
    require("gst-launch-1.0");
    let server = start(&[]);
    let (expected, rate, channels) = wav_l16(&server.media.join(SHORT));
    for port in [server.port, http_addr(&server).port()] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.raw");
        let url = format!("rtsph://127.0.0.1:{port}/{SHORT}");
        let args = common::gst_l16_args(&url, "protocols=tcp", &[], &out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = run_tool("gst-launch-1.0", &args, Duration::from_secs(30));
        assert!(
            run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
            "`gst-launch-1.0 {}` failed ({}). stderr:\n{}",
            args.join(" "),
            run.status,
            run.stderr
        );
        let decoded = std::fs::read(&out).expect("gst output");
        assert_pcm_eq(
            &format!("gstreamer {url}"),
            &decoded,
            &expected,
            channels,
            rate,
        );
    }
    assert!(server.panics().is_empty());
}

/// A protected clip through the tunnel: ffmpeg with `alice:secret@` plays
/// it exactly; without credentials it gets 401.
#[test]
fn a_tunnel_carries_digest_auth() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media");
    fill(&media);
    let cfg = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n{}[[paths]]\nmatch = \"/**\"\nread = [\"alice\"]\n",
        common::digest::user("alice", "secret")
    );
    let file = dir.path().join("rtspd.toml");
    std::fs::write(&file, cfg).expect("config");
    let (file, media_s) = (file.display().to_string(), media.display().to_string());
    let mut args = vec!["--config", &file];
    args.extend_from_slice(&common::LOOPBACK_ARGS);
    args.push(&media_s);
    let server = Server::start_args(&args, &media);
    let (expected, rate, channels) = wav_l16(&media.join(SHORT));
    for port in [server.port, http_addr(&server).port()] {
        let url = format!("rtsp://alice:secret@127.0.0.1:{port}/{SHORT}");
        let (decoded, run) = ffmpeg_s16be(
            &["-rtsp_transport", "http", "-i", &url],
            Duration::from_secs(30),
        );
        assert!(run.status.success(), "{}", run.stderr);
        assert_pcm_eq(
            "ffmpeg tunnel with auth",
            &decoded,
            &expected,
            channels,
            rate,
        );
        let bare = url_at(port, SHORT);
        let run = ffmpeg_attempt("http", &bare, Duration::from_secs(30));
        assert!(!run.status.success(), "played without credentials");
        assert!(run.stderr.contains("401"), "{}", run.stderr);
    }
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// A raw tunnel client

/// One tunnel made by hand: the GET connection (responses arrive on it,
/// read with the strict RTSP reader) and the POST connection.
struct RawTunnel {
    get: Rtsp,
    post: Rtsp,
    cseq: u32,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Opens the GET half from `ip` with `cookie`; returns it after the
/// server's HTTP answer, and that answer's head.
fn open_get(addr: SocketAddr, ip: Ipv4Addr, cookie: &str) -> (Rtsp, String) {
    let mut get = Rtsp::connect_from(ip, addr);
    let head = format!(
        "GET /{SHORT} HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nAccept: application/x-rtsp-tunnelled\r\nPragma: no-cache\r\n\r\n"
    );
    get.write(head.as_bytes()).expect("GET");
    let answer = read_http_head(get.stream(), Duration::from_secs(5));
    (get, answer)
}

/// Reads an HTTP head (up to the blank line) byte by byte, so nothing after
/// it is consumed. Empty if the connection closed first.
fn read_http_head(s: &TcpStream, wait: Duration) -> String {
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while find(&head, b"\r\n\r\n").is_none() {
        match (&*s).read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    s.set_read_timeout(None).expect("timeout");
    String::from_utf8_lossy(&head).into_owned()
}

/// The POST half's head.
fn post_head(cookie: &str) -> String {
    format!(
        "POST /{SHORT} HTTP/1.0\r\nx-sessioncookie: {cookie}\r\nContent-Type: application/x-rtsp-tunnelled\r\nContent-Length: 32767\r\nExpires: Sun, 9 Jan 1972 00:00:00 GMT\r\n\r\n"
    )
}

impl RawTunnel {
    fn open(addr: SocketAddr, cookie: &str) -> Self {
        let (get, answer) = open_get(addr, Ipv4Addr::LOCALHOST, cookie);
        assert!(
            answer.starts_with("HTTP/1.0 200 "),
            "GET answer: {answer:?}"
        );
        assert!(
            answer.contains("application/x-rtsp-tunnelled"),
            "GET answer: {answer:?}"
        );
        let mut post = Rtsp::connect(addr);
        post.write(post_head(cookie).as_bytes()).expect("POST");
        Self { get, post, cseq: 0 }
    }

    /// Sends one request, base64-encoded, written in `pieces` parts cut
    /// anywhere (mid-quantum too); returns the reply's status.
    fn request(&mut self, method: &str, url: &str, headers: &[&str], pieces: usize) -> u16 {
        self.cseq += 1;
        let text = b64(&build(method, url, self.cseq, headers, b""));
        let step = text.len().div_ceil(pieces.max(1));
        for chunk in text.as_bytes().chunks(step) {
            self.post.write(chunk).expect("POST body");
            thread::sleep(Duration::from_millis(15));
        }
        match self.get.reply(self.cseq) {
            Ok(r) => r.status,
            Err(e) => panic!("{method} through the tunnel: {e}"),
        }
    }
}

/// Whether the server closed `s` within `wait` (anything it sends first is
/// returned too).
fn closed_within(s: &TcpStream, wait: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, got);
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match (&*s).read(&mut buf) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (false, got)
            }
            Err(_) => return (true, got),
        }
    }
}

/// Every abuse case, on the RTSP port and the HTTP listener, while a
/// canary plays: it must lose nothing.
#[test]
fn tunnel_abuse_with_a_canary() {
    let server = start(&["--tunnel-timeout", "2", "--max-head-bytes", "4096"]);
    let canary = common::udp_canary(&server, LONG, 8);
    let url = server.url(SHORT);
    for addr in [server.addr(), http_addr(&server)] {
        let ctx = format!("tunnel on {addr}");
        // A working tunnel, its requests split mid-quantum.
        let mut t = RawTunnel::open(addr, &format!("ok{}", addr.port()));
        assert_eq!(t.request("OPTIONS", &url, &[], 5), 200, "{ctx}");
        assert_eq!(
            t.request("DESCRIBE", &url, &["Accept: application/sdp"], 3),
            200,
            "{ctx}"
        );

        // A POST from another address for a waiting GET: 403, and the
        // GET still takes the POST from its own address.
        let cookie = format!("hijack{}", addr.port());
        let (get, answer) = open_get(addr, Ipv4Addr::LOCALHOST, &cookie);
        assert!(answer.starts_with("HTTP/1.0 200 "), "{ctx}: {answer:?}");
        let mut thief = Rtsp::connect_from(Ipv4Addr::new(127, 0, 0, 2), addr);
        thief.write(post_head(&cookie).as_bytes()).expect("POST");
        let refused = read_http_head(thief.stream(), Duration::from_secs(5));
        assert!(
            refused.starts_with("HTTP/1.1 403 "),
            "{ctx}: hijack answered {refused:?}"
        );
        let mut owner = Rtsp::connect(addr);
        owner.write(post_head(&cookie).as_bytes()).expect("POST");
        let mut t2 = RawTunnel {
            get,
            post: owner,
            cseq: 0,
        };
        assert_eq!(
            t2.request("OPTIONS", &url, &[], 1),
            200,
            "{ctx}: owner after hijack"
        );

        // A POST with a cookie no GET waits with: 404.
        let mut stray = Rtsp::connect(addr);
        stray.write(post_head("nobody").as_bytes()).expect("POST");
        let answer = read_http_head(stray.stream(), Duration::from_secs(5));
        assert!(answer.starts_with("HTTP/1.1 404 "), "{ctx}: {answer:?}");

        // A second GET with a cookie that waits: 400; the first still works.
        let cookie = format!("twice{}", addr.port());
        let (first, _) = open_get(addr, Ipv4Addr::LOCALHOST, &cookie);
        let (_second, answer) = open_get(addr, Ipv4Addr::LOCALHOST, &cookie);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{ctx}: {answer:?}");
        let mut post = Rtsp::connect(addr);
        post.write(post_head(&cookie).as_bytes()).expect("POST");
        let mut t3 = RawTunnel {
            get: first,
            post,
            cseq: 0,
        };
        assert_eq!(t3.request("OPTIONS", &url, &[], 2), 200, "{ctx}: first GET");

        // A GET whose POST never comes: closed at tunnel_timeout (2 s).
        let (lonely, _) = open_get(addr, Ipv4Addr::LOCALHOST, &format!("lonely{}", addr.port()));
        let (closed, _) = closed_within(lonely.stream(), Duration::from_secs(8));
        assert!(closed, "{ctx}: a GET without a POST stays open");

        // A POST on the GET's own connection: the GET is closed.
        let cookie = format!("self{}", addr.port());
        let (mut same, _) = open_get(addr, Ipv4Addr::LOCALHOST, &cookie);
        same.write(post_head(&cookie).as_bytes())
            .expect("POST on the GET");
        let (closed, _) = closed_within(same.stream(), Duration::from_secs(5));
        assert!(closed, "{ctx}: a POST on the GET's connection was taken");

        // Invalid base64: the tunnel is closed.
        let mut bad = RawTunnel::open(addr, &format!("bad{}", addr.port()));
        bad.post.write(b"T1BUSU9O*&^%").expect("POST body");
        let (closed, _) = closed_within(bad.get.stream(), Duration::from_secs(5));
        assert!(closed, "{ctx}: invalid base64 kept the tunnel open");

        // One 1 MiB line: the RTSP head cap (4 KiB here) refuses it, with
        // a status, and closes.
        let mut big = RawTunnel::open(addr, &format!("big{}", addr.port()));
        let line = [
            b"OPTIONS rtsp://h/ RTSP/1.0\r\nX-Long: ".as_slice(),
            &vec![b'a'; 1 << 20],
        ]
        .concat();
        let text = b64(&line);
        // The server may close before all of it is written.
        let _ = big.post.write(text.as_bytes());
        let (closed, got) = closed_within(big.get.stream(), Duration::from_secs(10));
        assert!(closed, "{ctx}: a 1 MiB line kept the tunnel open");
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("RTSP/1.0 4"),
            "{ctx}: a 1 MiB line answered {:?}",
            got.lines().next()
        );
    }
    // An HTTP request without a cookie on the RTSP port: 400.
    let mut plain = TcpStream::connect(server.addr()).expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("GET");
    let answer = read_http_head(&plain, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");

    common::check_canary(&canary.join().expect("canary"), 8 * 50 - 100);
    let text = scrape(http_addr(&server));
    let timeouts = sample(&text, "rtspd_refused_total", "limit=\"tunnel_timeout\"");
    assert_eq!(timeouts, Some(2.0), "GETs closed at tunnel_timeout");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

/// With `--tunnel false` neither port tunnels: the RTSP port answers the
/// GET as a malformed RTSP request and the HTTP listener has no such page,
/// so ffmpeg's `-rtsp_transport http` fails (the tests above cannot pass
/// over another transport).
#[test]
fn tunnels_can_be_turned_off() {
    require("ffmpeg");
    let server = start(&["--tunnel", "false"]);
    for addr in [server.addr(), http_addr(&server)] {
        let (get, answer) = open_get(addr, Ipv4Addr::LOCALHOST, "off");
        assert!(!answer.contains(" 200 "), "{addr}: {answer:?}");
        drop(get);
        let url = url_at(addr.port(), SHORT);
        let run = ffmpeg_attempt("http", &url, Duration::from_secs(30));
        assert!(!run.status.success(), "{url} played with tunnels off");
    }
    // Plain RTSP still works.
    let mut c = Rtsp::connect(server.addr());
    assert_eq!(c.request("OPTIONS", &server.url(SHORT), &[]).status, 200);
}
