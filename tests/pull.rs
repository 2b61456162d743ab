//! Pull sources (issue 13): a `[[live]]` channel whose source is another
//! RTSP server. The upstream is a real one, gst-rtsp-server
//! (tests/gst_rtsp_server.py, a live H.264 + Opus stream), or a fake that
//! misbehaves (says nothing, sends a 1 MiB SDP, floods garbage RTP).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::tools::{require, run_tool};
use common::udp::recv_sr;
use common::{l16_samples, rtp_payload, rtp_seq, rtp_ssrc, rtp_ts, Rtsp, Server, UdpPair};
use rtspd::proto::rtcp::{write_sender_report, NtpTimestamp, SenderInfo};

/// gst-rtsp-server serving tests/gst_rtsp_server.py's stream at `/test`,
/// with the lines it printed (arrival time, line).
struct GstServer {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl GstServer {
    /// Starts it on `port` (0: any) and waits for its `PORT` line.
    fn start(port: u16) -> Self {
        Self::start_serving(port, None)
    }

    /// [`GstServer::start`], serving `clip` (an H.264 + AAC MP4, once, in
    /// real time) instead of the live test stream.
    fn start_serving(port: u16, clip: Option<&Path>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gst_rtsp_server.py");
        let mut args = vec![script.into_os_string(), port.to_string().into()];
        args.extend(clip.map(|c| c.as_os_str().to_owned()));
        let mut child = Command::new("/usr/bin/python3")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (install python3-gi gir1.2-gst-rtsp-server-1.0)");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push((Instant::now(), line));
            }
        });
        let mut s = Self {
            child,
            port: 0,
            lines,
        };
        let line = s.wait_for(|l| l.starts_with("PORT ") || l.starts_with("ERROR"), 20);
        let line = line.expect("gst_rtsp_server.py printed no PORT line within 20 s");
        s.port = line[5..].trim().parse().expect("PORT n");
        assert_ne!(s.port, 0, "{line}");
        s
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/test", self.port)
    }

    /// The first line matching `f` (waiting up to `secs`).
    fn wait_for(&self, f: impl Fn(&str) -> bool, secs: u64) -> Option<String> {
        self.wait_for_at(f, secs).map(|(_, l)| l)
    }

    fn wait_for_at(&self, f: impl Fn(&str) -> bool, secs: u64) -> Option<(Instant, String)> {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(hit) = self.lines.lock().unwrap().iter().find(|(_, l)| f(l)) {
                return Some(hit.clone());
            }
            if Instant::now() > end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, prefix: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|(_, l)| l.starts_with(prefix)).count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GstServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn require_gst_server() {
    require("ffmpeg");
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); \
             from gi.repository import GstRtspServer",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "gst-rtsp-server's Python bindings are missing: install python3-gi and \
         gir1.2-gst-rtsp-server-1.0 (scripts/test does)"
    );
}

/// rtspd with one pulled channel `cam` from `source` and `keys` (and no
/// HTTP side, which would take the default port 8080).
fn serve(dir: &Path, source: &str, keys: &str) -> Server {
    let cfg = format!(
        "[http]\nlisten = \"off\"\n\n[[live]]\nname = \"cam\"\nsource = \"{source}\"\n{keys}\n"
    );
    Server::start_configured(dir, &cfg, &common::bundled_media(), &[], Some("info"))
}

/// The first log line matching `f`, waiting up to 15 s.
fn wait_for_log(server: &Server, f: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(l) = server.log_lines().into_iter().find(|l| f(l)) {
            return l;
        }
        assert!(Instant::now() < end, "no such log line");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Decodes `secs` of `url` to per-frame CRCs; returns (video frames,
/// audio frames, stderr).
fn decode(url: &str, transport: &str, secs: &str) -> (usize, usize, String) {
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-rtsp_transport",
            transport,
            "-i",
            url,
            "-t",
            secs,
            "-map",
            "0",
            "-f",
            "framecrc",
            "-",
        ],
        Duration::from_secs(40),
    );
    assert!(run.status.success(), "{transport} reader: {}", run.stderr);
    let count = |stream: &str| {
        run.stdout
            .lines()
            .filter(|l| l.split(',').next().map(str::trim) == Some(stream))
            .count()
    };
    (count("0"), count("1"), run.stderr)
}

#[test]
fn three_readers_share_one_upstream_closed_after_the_last_leaves() {
    require_gst_server();
    let gst = GstServer::start(0);
    let dir = tempfile::tempdir().unwrap();
    let source = gst.url().replace("rtsp://", "rtsp://viewer:s3cret-pw@");
    let server = serve(
        dir.path(),
        &source,
        "on_demand = true\nclose_after = 1\nstart_timeout = 10",
    );
    let url = server.url("live/cam");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(gst.count("CLIENT"), 0, "on demand: opened before a reader");

    let readers: Vec<_> = ["tcp", "udp", "tcp"]
        .into_iter()
        .map(|transport| {
            let url = url.clone();
            thread::spawn(move || decode(&url, transport, "3"))
        })
        .collect();
    for r in readers {
        let (video, audio, stderr) = r.join().unwrap();
        assert!(stderr.trim().is_empty(), "decoder errors:\n{stderr}");
        // 3 s of 25 fps video and 20 ms Opus frames.
        assert!(video >= 50, "{video} video frames");
        assert!(audio >= 100, "{audio} audio frames");
    }
    let last_left = Instant::now();
    assert_eq!(gst.count("CLIENT"), 1, "{:?}", gst.lines.lock().unwrap());
    assert_eq!(
        gst.count("SESSION"),
        1,
        "one upstream session for three readers"
    );

    let (closed_at, _) = gst
        .wait_for_at(|l| l == "CLOSED 0", 20)
        .expect("the upstream was not closed after the last reader left");
    assert!(
        gst.count("TEARDOWN") == 1,
        "closed without TEARDOWN: {:?}",
        gst.lines.lock().unwrap()
    );
    assert!(
        closed_at >= last_left + Duration::from_millis(900),
        "closed {:?} after the last reader, before close_after",
        closed_at.saturating_duration_since(last_left)
    );
    let log = server.log_lines().join("\n");
    assert!(log.contains("closing the upstream"), "{log}");
    assert!(!log.contains("s3cret-pw"), "the password was logged");

    // The next reader opens it again.
    let (video, _, _) = decode(&url, "tcp", "3");
    assert!(video >= 10, "{video} video frames after reopening");
    assert_eq!(gst.count("SESSION"), 2);
    assert!(server.panics().is_empty());
}

#[test]
fn readers_stay_through_an_upstream_restart() {
    require_gst_server();
    let mut gst = GstServer::start(0);
    let port = gst.port;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &gst.url(), "transport = \"tcp\"");
    let url = server.url("live/cam");

    // A raw reader of the video track.
    let mut c = Rtsp::connect(server.addr());
    let mut described = None;
    for _ in 0..100 {
        let d = c.request("DESCRIBE", &url, &["Accept: application/sdp"]);
        if d.status == 200 {
            described = Some(d);
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(described.is_some(), "the channel never ran");
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200);
    let session = s.session();
    let p = c.request("PLAY", &url, &[&format!("Session: {session}")]);
    assert_eq!(p.status, 200);
    let before = pair.collect(Duration::from_secs(2));
    assert!(
        before.len() >= 20,
        "{} packets before the outage",
        before.len()
    );

    gst.kill();
    // New readers are refused during the outage.
    let mut refused = None;
    for _ in 0..100 {
        let mut d = Rtsp::connect(server.addr());
        let r = d.request("DESCRIBE", &url, &["Accept: application/sdp"]);
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let refused = refused.expect("no 503 during the outage");
    assert!(refused.reason.contains("Upstream"), "{}", refused.reason);
    let _ = pair.drain_now();

    let _gst = GstServer::start(port);
    // Media again, on the same session.
    let mut after = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while after.len() < 50 && Instant::now() < end {
        after.extend(pair.collect(Duration::from_millis(500)));
        let k = c.request("GET_PARAMETER", &url, &[&format!("Session: {session}")]);
        assert_eq!(k.status, 200);
    }
    assert!(
        after.len() >= 50,
        "{} packets after the restart",
        after.len()
    );

    let ssrc = rtp_ssrc(&before[0].0);
    let (last, last_at) = before.last().unwrap();
    let (first, first_at) = &after[0];
    assert!(
        after
            .iter()
            .chain(&before)
            .all(|(p, _)| rtp_ssrc(p) == ssrc),
        "the SSRC changed"
    );
    let seq_step = rtp_seq(first).wrapping_sub(rtp_seq(last));
    assert!(
        (1..=10).contains(&seq_step),
        "sequence jumped by {seq_step} across the restart"
    );
    for w in after.windows(2) {
        let step = rtp_seq(&w[1].0).wrapping_sub(rtp_seq(&w[0].0));
        assert!((1..=10).contains(&step), "sequence jumped by {step}");
    }
    // The timeline counts the gap (90 kHz), within half of it at least.
    let gap = first_at.duration_since(*last_at).as_secs_f64();
    let ts_gap = f64::from(rtp_ts(first).wrapping_sub(rtp_ts(last))) / 90_000.0;
    eprintln!("outage {gap:.2} s, RTP time moved {ts_gap:.2} s, sequence step {seq_step}");
    assert!(gap > 0.5, "the outage lasted only {gap} s");
    assert!(
        ts_gap > gap * 0.5 && ts_gap < gap * 1.5 + 1.0,
        "timestamps moved {ts_gap} s over a {gap} s outage"
    );
    let mut d = Rtsp::connect(server.addr());
    let r = d.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    assert_eq!(r.status, 200, "new readers once the upstream is back");
    assert!(server.panics().is_empty());
}

/// A fake upstream: answers each request with `reply(method, cseq, head)`
/// (a whole response, or nothing); after PLAY's answer calls `after_play`.
fn fake_upstream(
    reply: impl Fn(&str, &str, &str) -> Option<Vec<u8>> + Send + Sync + 'static,
    after_play: impl Fn(&mut TcpStream) + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (reply, after_play) = (Arc::new(reply), Arc::new(after_play));
    thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            let (reply, after_play) = (reply.clone(), after_play.clone());
            thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let method = head.split(' ').next().unwrap_or("").to_owned();
                    let cseq = head
                        .lines()
                        .find_map(|l| l.strip_prefix("CSeq:"))
                        .unwrap_or("0")
                        .trim()
                        .to_owned();
                    if let Some(r) = reply(&method, &cseq, &head) {
                        if conn.write_all(&r).is_err() {
                            return;
                        }
                    }
                    if method == "PLAY" {
                        after_play(&mut conn);
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn an_upstream_that_never_answers_gets_504_after_start_timeout() {
    let addr = fake_upstream(|_, _, _| None, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/silent", addr.port());
    let server = serve(dir.path(), &source, "on_demand = true\nstart_timeout = 1");
    let url = server.url("live/cam");
    let mut c = Rtsp::connect(server.addr());
    let start = Instant::now();
    let r = c.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    let took = start.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert!(r.reason.contains("Upstream"), "{}", r.reason);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "504 after {took:?}"
    );
    // The connection and the server go on.
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    let clip = server.url("testsrc-320x240.mp4");
    let d = c.request("DESCRIBE", &clip, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200);
    // Again: one upstream attempt, not one more per request.
    let r = c.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    assert_eq!(r.status, 504);
    assert!(server.panics().is_empty());
}

/// An answer with `extra` headers and `body`.
fn answer(cseq: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

const H264_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1\r\na=control:track0\r\n";

#[test]
fn a_1_mib_sdp_is_refused_and_garbage_rtp_floods_are_cut_off() {
    // 1 MiB of SDP.
    let big = fake_upstream(
        |method, cseq, _| {
            Some(match method {
                "DESCRIBE" => {
                    let mut body = H264_SDP.as_bytes().to_vec();
                    body.resize(1 << 20, b'a');
                    answer(cseq, "Content-Type: application/sdp\r\n", &body)
                }
                _ => answer(cseq, "Public: OPTIONS, DESCRIBE, SETUP, PLAY\r\n", b""),
            })
        },
        |_| {},
    );
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/big", big.port());
    let server = serve(dir.path(), &source, "on_demand = true\nstart_timeout = 2");
    let mut c = Rtsp::connect(server.addr());
    let r = c.request("DESCRIBE", &server.url("live/cam"), &[]);
    assert_eq!(r.status, 504, "{r}");
    let log = wait_for_log(&server, |l| l.contains("upstream down"));
    eprintln!("{log}");
    assert!(log.contains("body") || log.contains("large"), "{log}");
    assert!(server.panics().is_empty());

    // A valid session whose RTP is garbage, as fast as it can.
    let flood = fake_upstream(plays(H264_SDP), |conn| {
        // Time for the reader to SETUP and PLAY.
        thread::sleep(Duration::from_millis(1500));
        let frame = |conn: &mut TcpStream, payload: &[u8]| conn.write_all(&interleaved(0, payload));
        let mut seq: u16 = 0;
        for round in 0..40u32 {
            // A valid keyframe: SPS, PPS, IDR, one timestamp.
            for (nal, size) in [(0x67u8, 12usize), (0x68, 5), (0x65, 200)] {
                let mut payload = vec![nal];
                payload.resize(size, 0x11);
                let pt = if nal == 0x65 { 0xE0 } else { 0x60 };
                let p = rtp_packet(pt, seq, round * 3600, 0x1234_5678, &payload);
                seq = seq.wrapping_add(1);
                if frame(conn, &p).is_err() {
                    return;
                }
            }
            // Then garbage: bytes that are sometimes RTP version 2 with
            // another payload type, or too short.
            for n in 0..100u8 {
                let len = if n % 2 == 0 { 40 } else { 3 };
                let g: Vec<u8> = (0..len).map(|i| n.wrapping_mul(31) ^ i & 0x3F).collect();
                if frame(conn, &g).is_err() {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        thread::sleep(Duration::from_secs(30));
    });
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/flood", flood.port());
    let server = serve(
        dir.path(),
        &source,
        "transport = \"tcp\"\non_demand = true\nmax_packet_rate = 1000",
    );
    let url = server.url("live/cam");
    let mut c = Rtsp::connect(server.addr());
    let d = c.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 200, "{d}");
    assert!(String::from_utf8_lossy(&d.body).contains("H264/90000"));
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200, "{s}");
    let p = c.request("PLAY", &url, &[&format!("Session: {}", s.session())]);
    assert_eq!(p.status, 200);
    let line = wait_for_log(&server, |l| l.contains("upstream cut off"));
    assert!(line.contains("1000 packets/s"), "{line}");
    let got = pair.collect(Duration::from_secs(1));
    // The keyframes before the cut-off came through; no garbage did.
    assert!(got.len() >= 3, "{} packets relayed", got.len());
    for (p, _) in &got {
        let nal = p.get(12).map(|b| b & 0x1F);
        assert!(
            matches!(nal, Some(5 | 7 | 8)) && p.len() >= 17,
            "garbage relayed: {p:?}"
        );
    }
    eprintln!("{} packets relayed before the cut-off", got.len());
    assert_eq!(c.request("OPTIONS", &url, &[]).status, 200);
    assert!(server.panics().is_empty());
}

/// DESCRIBE of `url` until it answers `status` (within 20 s).
fn wait_for_status(server: &Server, url: &str, status: u16) -> bool {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let mut c = Rtsp::connect(server.addr());
        if c.request("DESCRIBE", url, &[]).status == status {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_reload_adds_and_removes_a_pulled_channel() {
    require_gst_server();
    let gst = GstServer::start(0);
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start_configured(dir.path(), "", &common::bundled_media(), &[], Some("info"));
    let url = server.url("live/cam");
    let mut c = Rtsp::connect(server.addr());
    assert_eq!(c.request("DESCRIBE", &url, &[]).status, 404);

    let cfg = format!("[[live]]\nname = \"cam\"\nsource = \"{}\"\n", gst.url());
    std::fs::write(dir.path().join("rtspd.toml"), cfg).unwrap();
    server.signal("HUP");
    assert!(wait_for_status(&server, &url, 200), "never pulled");
    assert!(gst.wait_for(|l| l == "SESSION 1", 10).is_some());

    std::fs::write(dir.path().join("rtspd.toml"), "").unwrap();
    server.signal("HUP");
    assert!(wait_for_status(&server, &url, 404), "still described");
    assert!(
        gst.wait_for(|l| l == "CLOSED 0", 10).is_some(),
        "the upstream stayed open: {:?}",
        gst.lines.lock().unwrap()
    );
    assert_eq!(gst.count("SESSION"), 1);
    assert!(server.panics().is_empty());
}

/// An RTP packet: payload type `pt` (its high bit the marker), `seq`,
/// `ts`, `ssrc`, `payload`.
fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An H.264 IDR slice NAL unit of 100 bytes whose bytes 1 to 4 are `tag`
/// (so a reader can tell which upstream packet it got).
fn idr_nal(tag: u32) -> Vec<u8> {
    let mut nal = vec![0x65];
    nal.extend_from_slice(&tag.to_be_bytes());
    nal.resize(100, 0x22);
    nal
}

/// One valid H.264 RTP packet (an IDR slice NAL unit, marker set) of
/// sequence `seq`.
fn idr_packet(seq: u16) -> Vec<u8> {
    rtp_packet(
        0xE0,
        seq,
        u32::from(seq) * 3600,
        0x0BAD_F00D,
        &idr_nal(seq.into()),
    )
}

/// `packet` as an interleaved frame on `channel` (RFC 2326 §10.12).
fn interleaved(channel: u8, packet: &[u8]) -> Vec<u8> {
    let mut f = vec![b'$', channel];
    f.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    f.extend_from_slice(packet);
    f
}

/// The Transport header of a request's `head`.
fn transport_of(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("Transport:"))
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// A fake upstream's answers for an interleaved session: DESCRIBE gets
/// `sdp`, SETUP its own Transport back with a session, the rest 200.
fn plays(sdp: &'static str) -> impl Fn(&str, &str, &str) -> Option<Vec<u8>> + Send + Sync {
    move |method, cseq, head| {
        Some(match method {
            "DESCRIBE" => answer(cseq, "Content-Type: application/sdp\r\n", sdp.as_bytes()),
            "SETUP" => answer(
                cseq,
                &format!(
                    "Session: 12345678;timeout=60\r\nTransport: {}\r\n",
                    transport_of(head)
                ),
                b"",
            ),
            _ => answer(cseq, "Public: OPTIONS, DESCRIBE, SETUP, PLAY\r\n", b""),
        })
    }
}

/// DESCRIBE, SETUP of `tracks` (each to its pair, over UDP) and PLAY of
/// `url`; returns the session.
fn play_udp(c: &mut Rtsp, url: &str, tracks: &[&UdpPair]) -> String {
    let d = c.request("DESCRIBE", url, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200, "{d}");
    let mut session: Option<String> = None;
    for (i, pair) in tracks.iter().enumerate() {
        let id = session.as_ref().map(|s| format!("Session: {s}"));
        let mut headers = vec![pair.transport()];
        headers.extend(id);
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let s = c.request("SETUP", &format!("{url}/trackID={i}"), &headers);
        assert_eq!(s.status, 200, "{s}");
        session.get_or_insert_with(|| s.session());
    }
    let session = session.expect("a track");
    let p = c.request("PLAY", url, &[&format!("Session: {session}")]);
    assert_eq!(p.status, 200, "{p}");
    session
}

#[test]
fn auto_falls_back_to_tcp_when_no_udp_packet_comes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Answers UDP and TCP SETUPs alike, but sends media only interleaved
    // (a firewall that drops UDP).
    let tcp = Arc::new(AtomicBool::new(false));
    let (t1, t2) = (tcp.clone(), tcp.clone());
    let addr = fake_upstream(
        move |method, cseq, head| {
            Some(match method {
                "DESCRIBE" => answer(
                    cseq,
                    "Content-Type: application/sdp\r\n",
                    H264_SDP.as_bytes(),
                ),
                "SETUP" => {
                    let transport = transport_of(head);
                    t1.store(transport.contains("RTP/AVP/TCP"), Ordering::SeqCst);
                    answer(
                        cseq,
                        &format!(
                            "Session: 42;timeout=60\r\nTransport: {transport};server_port=9-10\r\n"
                        ),
                        b"",
                    )
                }
                _ => answer(cseq, "Public: OPTIONS, DESCRIBE, SETUP, PLAY\r\n", b""),
            })
        },
        move |conn| {
            if !t2.load(Ordering::SeqCst) {
                return;
            }
            for seq in 0..2000u16 {
                if conn.write_all(&interleaved(0, &idr_packet(seq))).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/cam", addr.port());
    let server = serve(dir.path(), &source, "transport = \"auto\"");
    let line = wait_for_log(&server, |l| l.contains("falling back to TCP"));
    assert!(line.contains("no packet within"), "{line}");
    let up = wait_for_log(&server, |l| l.contains("upstream up"));
    assert!(up.contains("transport=tcp"), "{up}");
    // A reader gets the interleaved packets.
    let url = server.url("live/cam");
    let mut c = Rtsp::connect(server.addr());
    assert_eq!(c.request("DESCRIBE", &url, &[]).status, 200);
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 200);
    let p = c.request("PLAY", &url, &[&format!("Session: {}", s.session())]);
    assert_eq!(p.status, 200);
    let got = pair.collect(Duration::from_secs(1));
    assert!(got.len() >= 20, "{} packets over the fallback", got.len());
    assert!(server.panics().is_empty());
}

/// Lip sync through a pull: gst-rtsp-server serves a flash-and-beep clip
/// (its sender reports from one pipeline clock); read through rtspd's pulled
/// channel and straight from gst at the same time, the A/V offsets agree
/// within 10 ms, and both are the file's within 10 ms.
///
/// gst sends both tracks on time, so this guards the relayed timeline as a
/// whole; it also passes with the upstream's sender reports ignored (checked
/// by hand), so the SR mapping itself is what
/// `tests/relay.rs::lip_sync_survives_the_relay` shows (it fails without).
#[test]
fn lip_sync_survives_a_pull() {
    require_gst_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = common::sync::sync_clip(dir.path(), "sync.mp4", 0, 48000);
    let file = common::sync::av_offset_ms(clip.to_str().expect("path"), &[], "6");
    let gst = GstServer::start_serving(0, Some(&clip));
    let server = serve(
        dir.path(),
        &gst.url(),
        "transport = \"tcp\"\non_demand = true\nstart_timeout = 10",
    );
    let relayed_url = server.url("live/cam");
    let direct_url = gst.url();
    // The clip plays once (10 s) from the first reader on: both read at once.
    let (relayed, direct) = thread::scope(|sc| {
        let relayed =
            sc.spawn(|| common::sync::av_offset_ms(&relayed_url, &["-rtsp_transport", "tcp"], "5"));
        let direct = sc.spawn(|| {
            thread::sleep(Duration::from_millis(300));
            common::sync::av_offset_ms(&direct_url, &["-rtsp_transport", "tcp"], "5")
        });
        (
            relayed.join().expect("relayed"),
            direct.join().expect("direct"),
        )
    });
    assert!(
        (relayed - direct).abs() <= 10.0,
        "through rtspd {relayed} ms, straight from gst {direct} ms"
    );
    assert!(
        (relayed - file).abs() <= 10.0,
        "through rtspd {relayed} ms, the file {file} ms"
    );
    assert!(server.panics().is_empty());
}

/// An upstream that streams, then goes silent with its connection open (an
/// encoder that hung): after `stall_timeout` rtspd drops that connection
/// and reconnects. The reader stays (its session answers, new readers get
/// 503 meanwhile) and goes on with the same SSRC and the next sequence
/// numbers, carrying the new connection's payloads.
#[test]
fn a_stalled_upstream_is_reconnected_and_readers_go_on() {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Connection 1 streams 1.5 s, then stays silent until rtspd closes it;
    // the next ones stream 4 s. Each packet's NAL unit is tagged with
    // (connection << 16 | sequence number).
    let conns = Arc::new(AtomicU32::new(0));
    // (when connection 1 sent its last packet, when rtspd closed it)
    let stall = Arc::new(Mutex::new((None, None)));
    let (seen, st) = (conns.clone(), stall.clone());
    let addr = fake_upstream(plays(H264_SDP), move |conn| {
        let k = seen.fetch_add(1, Ordering::SeqCst) + 1;
        let count: u16 = if k == 1 { 75 } else { 200 };
        for seq in 0..count {
            let p = rtp_packet(
                0xE0,
                seq,
                u32::from(seq) * 1800,
                0x5000 + k,
                &idr_nal(k << 16 | u32::from(seq)),
            );
            if conn.write_all(&interleaved(0, &p)).is_err() {
                return;
            }
            if k == 1 && seq + 1 == count {
                st.lock().unwrap().0 = Some(Instant::now());
            }
            thread::sleep(Duration::from_millis(20));
        }
        if k == 1 {
            // Silent, reading whatever comes until rtspd closes.
            let mut buf = [0u8; 1024];
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            st.lock().unwrap().1 = Some(Instant::now());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/cam", addr.port());
    let server = serve(
        dir.path(),
        &source,
        "transport = \"tcp\"\nstall_timeout = 1",
    );
    let url = server.url("live/cam");
    assert!(wait_for_status(&server, &url, 200), "never pulled");
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let session = play_udp(&mut c, &url, &[&pair]);

    // Tag of a relayed packet: (upstream connection, upstream seq).
    let tag = |p: &[u8]| {
        let t = u32::from_be_bytes([p[13], p[14], p[15], p[16]]);
        (t >> 16, t as u16)
    };
    // Packets until 50 of a later connection came (or 15 s).
    let collector = thread::spawn(move || {
        let mut got: Vec<(Vec<u8>, Instant)> = Vec::new();
        let end = Instant::now() + Duration::from_secs(15);
        let later = |got: &[(Vec<u8>, Instant)]| got.iter().filter(|(p, _)| tag(p).0 > 1).count();
        while later(&got) < 50 && Instant::now() < end {
            got.extend(pair.collect(Duration::from_millis(200)));
        }
        got
    });
    // The stall is detected: new readers are refused, this one stays.
    assert!(
        wait_for_status(&server, &url, 503),
        "no 503 after the stall"
    );
    let k = c.request("GET_PARAMETER", &url, &[&format!("Session: {session}")]);
    assert_eq!(k.status, 200, "the reader's session during the outage");
    let down = wait_for_log(&server, |l| l.contains("upstream down"));
    assert!(down.contains("no packet for 1s"), "{down}");
    assert!(wait_for_status(&server, &url, 200), "never reconnected");
    let got = collector.join().unwrap();

    let (last_sent, closed) = *stall.lock().unwrap();
    let (last_sent, closed) = (
        last_sent.expect("connection 1 stalled"),
        closed.expect("rtspd never closed the stalled connection"),
    );
    let detected = closed.duration_since(last_sent);
    eprintln!("the stalled connection was closed {detected:?} after its last packet");
    assert!(
        detected >= Duration::from_millis(900) && detected < Duration::from_secs(4),
        "closed {detected:?} after the last packet, stall_timeout 1 s"
    );
    assert!(conns.load(Ordering::SeqCst) >= 2, "no reconnect");

    let before = got.iter().filter(|(p, _)| tag(p).0 == 1).count();
    let after: Vec<_> = got.iter().filter(|(p, _)| tag(p).0 > 1).collect();
    assert!(before >= 20, "{before} packets before the stall");
    assert!(after.len() >= 50, "{} packets after the stall", after.len());
    let ssrc = rtp_ssrc(&got[0].0);
    for (i, (p, _)) in got.iter().enumerate() {
        // The upstream's payload, byte for byte.
        let (k, seq) = tag(p);
        assert_eq!(rtp_payload(p), &idr_nal(k << 16 | u32::from(seq))[..]);
        assert_eq!(rtp_ssrc(p), ssrc, "the SSRC changed at packet {i}");
        if i > 0 {
            let prev = &got[i - 1].0;
            assert_eq!(
                rtp_seq(p),
                rtp_seq(prev).wrapping_add(1),
                "sequence at packet {i} ({:?} after {:?})",
                tag(p),
                tag(prev)
            );
            if tag(prev).0 == k {
                assert_eq!(seq, tag(prev).1.wrapping_add(1), "an upstream packet lost");
            }
        }
    }
    // The first packets after the stall are the new connection's first.
    let resumed = tag(&after[0].0);
    assert!(resumed.0 == 2 && resumed.1 < 5, "resumed at {resumed:?}");
    let (last, first) = (&got[before - 1], after[0]);
    let gap = first.1.duration_since(last.1).as_secs_f64();
    let ts_gap = f64::from(rtp_ts(&first.0).wrapping_sub(rtp_ts(&last.0))) / 90_000.0;
    eprintln!("stall to resume {gap:.2} s, RTP time moved {ts_gap:.2} s");
    assert!(
        ts_gap > gap * 0.5 && ts_gap < gap * 1.5 + 1.0,
        "timestamps moved {ts_gap} s over a {gap} s outage"
    );
    assert!(server.panics().is_empty());
}

/// An `rtsps://` upstream: one rtspd serves a live L16 channel over RTSPS
/// with a self-signed certificate, a second pulls it with that certificate
/// as `ca_file`, and a reader of the second gets the file's samples in
/// order. Pulled with another CA, the handshake fails and nothing plays.
#[test]
fn an_rtsps_upstream_is_pulled_with_its_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    common::tls::self_signed(dir.path(), "origin");
    common::tls::self_signed(dir.path(), "other");
    let samples = common::pcm::distinct_wav(&dir.path().join("loop.wav"), 8000);
    let live = format!(
        "src=file:{},codec=l16",
        dir.path().join("loop.wav").display()
    );
    let mut args = vec!["--live".to_owned(), live];
    args.extend(common::tls::flags(dir.path(), "origin"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let origin = Server::start(&args);
    let source = origin.rtsps_url("live/src");
    let ca = |name: &str| {
        dir.path()
            .join(format!("{name}.cert.pem"))
            .display()
            .to_string()
    };

    let edge_dir = tempfile::tempdir().unwrap();
    let edge = serve(
        edge_dir.path(),
        &source,
        &format!("ca_file = \"{}\"", ca("origin")),
    );
    let url = edge.url("live/cam");
    assert!(wait_for_status(&edge, &url, 200), "never pulled");
    let up = wait_for_log(&edge, |l| l.contains("upstream up"));
    assert!(up.contains("transport=tcp"), "{up}");
    let mut c = Rtsp::connect(edge.addr());
    let d = c.request("DESCRIBE", &url, &[]);
    assert!(String::from_utf8_lossy(&d.body).contains("L16/8000"), "{d}");
    let pair = UdpPair::bind();
    play_udp(&mut c, &url, &[&pair]);
    let got = pair.collect(Duration::from_millis(1500));
    assert!(got.len() >= 50, "{} packets in 1.5 s", got.len());
    // One unbroken run of the file, looped.
    let start = common::pcm::offset_in_loop(&samples, &l16_samples(rtp_payload(&got[0].0)));
    let mut n = 0;
    for (i, (p, _)) in got.iter().enumerate() {
        if i > 0 {
            assert_eq!(rtp_seq(p), rtp_seq(&got[i - 1].0).wrapping_add(1));
        }
        for s in l16_samples(rtp_payload(p)) {
            assert_eq!(s, samples[(start + n) % samples.len()], "sample {n}");
            n += 1;
        }
    }
    assert!(edge.panics().is_empty());

    // Another CA: refused at the handshake, logged, 504 for the reader.
    let bad_dir = tempfile::tempdir().unwrap();
    let keys = format!(
        "ca_file = \"{}\"\non_demand = true\nstart_timeout = 1",
        ca("other")
    );
    let bad = serve(bad_dir.path(), &source, &keys);
    let mut c = Rtsp::connect(bad.addr());
    let r = c.request("DESCRIBE", &bad.url("live/cam"), &[]);
    assert_eq!(r.status, 504, "{r}");
    let down = wait_for_log(&bad, |l| l.contains("upstream down"));
    assert!(down.to_lowercase().contains("certificate"), "{down}");
    assert!(origin.panics().is_empty() && bad.panics().is_empty());
}

const AV_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1\r\na=control:track0\r\n\
m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=control:track1\r\n";

/// NTP time as seconds (RFC 3550 §4: 32.32 fixed point).
fn ntp_secs(ntp: NtpTimestamp) -> f64 {
    ntp.0 as f64 / 4_294_967_296.0
}

/// The upstream's sender reports, in isolation: a fake upstream sends video
/// and audio packets of the same instant together, but its SRs put the
/// audio 150 ms later on the NTP timeline than the video. From the SRs
/// rtspd sends a reader, the same instant's packets are 150 ms apart
/// (within 2 ms), where arrival times alone would say 0.
#[test]
fn a_pulls_sender_reports_carry_the_upstreams_av_offset() {
    const OFFSET: f64 = 0.150;
    let (video_ssrc, audio_ssrc) = (0x0000_0E0E_u32, 0x0000_0A0A_u32);
    let (video_ts0, audio_ts0) = (1_000_000u32, 77_000u32);
    let ntp0 = NtpTimestamp(3_900_000_000u64 << 32);
    // Instant k (every 20 ms): one video and one audio packet, both
    // tagged k; every 10th instant an SR for each track first.
    let addr = fake_upstream(plays(AV_SDP), move |conn| {
        let ntp_at = |secs: f64| NtpTimestamp(ntp0.0 + (secs * 4_294_967_296.0) as u64);
        for k in 0..500u32 {
            let (vts, ats) = (video_ts0 + k * 1800, audio_ts0 + k * 160);
            let t = f64::from(k) * 0.020;
            let mut out = Vec::new();
            if k % 10 == 0 {
                for (channel, ssrc, ntp, rtp_time) in [
                    (1, video_ssrc, ntp_at(t), vts),
                    (3, audio_ssrc, ntp_at(t + OFFSET), ats),
                ] {
                    let info = SenderInfo {
                        ntp,
                        rtp_time,
                        packet_count: k,
                        octet_count: k * 100,
                    };
                    let mut sr = bytes::BytesMut::new();
                    write_sender_report(&mut sr, ssrc, &info, "fake");
                    out.extend(interleaved(channel, &sr));
                }
            }
            let video = rtp_packet(0xE0, k as u16, vts, video_ssrc, &idr_nal(k));
            let mut pcmu = k.to_be_bytes().to_vec();
            pcmu.resize(160, 0xFF);
            let audio = rtp_packet(0x80, k as u16, ats, audio_ssrc, &pcmu);
            out.extend(interleaved(0, &video));
            out.extend(interleaved(2, &audio));
            if conn.write_all(&out).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/av", addr.port());
    let server = serve(dir.path(), &source, "transport = \"tcp\"");
    let url = server.url("live/cam");
    assert!(wait_for_status(&server, &url, 200), "never pulled");
    // The upstream's first SRs are in before the reader's first.
    thread::sleep(Duration::from_millis(500));
    let mut c = Rtsp::connect(server.addr());
    let (video, audio) = (UdpPair::bind(), UdpPair::bind());
    play_udp(&mut c, &url, &[&video, &audio]);
    let vp = video.collect(Duration::from_millis(1000));
    let ap = audio.until_quiet(Duration::from_millis(100), Duration::from_secs(1));
    let (v_ssrc, v_sr) = recv_sr(&video.rtcp, Duration::from_secs(2)).expect("a video SR");
    let (a_ssrc, a_sr) = recv_sr(&audio.rtcp, Duration::from_secs(2)).expect("an audio SR");
    assert!(
        vp.len() >= 20 && ap.len() >= 20,
        "{} video, {} audio packets",
        vp.len(),
        ap.len()
    );
    assert_eq!((v_ssrc, a_ssrc), (rtp_ssrc(&vp[0].0), rtp_ssrc(&ap[0].0)));

    // Each instant's NTP time on each track, from rtspd's SRs.
    let ntp_of = |p: &[u8], sr: &SenderInfo, rate: f64| {
        ntp_secs(sr.ntp) + f64::from(rtp_ts(p).wrapping_sub(sr.rtp_time) as i32) / rate
    };
    let tag = |payload: &[u8]| u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let mut compared = 0;
    for (a, _) in &ap {
        let k = tag(rtp_payload(a));
        let Some((v, _)) = vp.iter().find(|(v, _)| tag(&rtp_payload(v)[1..]) == k) else {
            continue;
        };
        let offset = ntp_of(a, &a_sr, 8000.0) - ntp_of(v, &v_sr, 90_000.0);
        if compared == 0 {
            eprintln!("instant {k}: audio {:.1} ms after video", offset * 1000.0);
        }
        assert!(
            offset.abs() > 0.050,
            "instant {k}: A/V offset {offset} s, the upstream's SRs ignored"
        );
        assert!(
            (offset - OFFSET).abs() <= 0.002,
            "instant {k}: A/V offset {offset} s, the upstream's {OFFSET} s"
        );
        compared += 1;
    }
    assert!(compared >= 20, "{compared} instants on both tracks");
    assert!(server.panics().is_empty());
}

const OPUS_SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:track0\r\n";

/// An upstream that comes back from an outage with other tracks (H.264
/// before, Opus after): what its readers set up cannot decode them, so
/// their channel ends (a BYE each, their sessions gone) and a new one, with
/// the new tracks, serves readers from then on.
#[test]
fn an_upstream_back_with_other_tracks_ends_its_readers_channel() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let described = Arc::new(AtomicU32::new(0));
    let d = described.clone();
    let dropped = AtomicBool::new(false);
    let addr = fake_upstream(
        move |method, cseq, head| {
            if method != "DESCRIBE" {
                return plays(H264_SDP)(method, cseq, head);
            }
            let sdp = match d.fetch_add(1, Ordering::SeqCst) {
                0 => H264_SDP,
                _ => OPUS_SDP,
            };
            Some(answer(
                cseq,
                "Content-Type: application/sdp\r\n",
                sdp.as_bytes(),
            ))
        },
        move |conn| {
            // The first connection drops after 1.5 s of 20 ms packets; the
            // next ones stream for 6 s.
            for seq in 0..300u16 {
                let p = rtp_packet(
                    0xE0,
                    seq,
                    u32::from(seq) * 1800,
                    0x77,
                    &idr_nal(u32::from(seq)),
                );
                let q = rtp_packet(0xE1, seq, u32::from(seq) * 960, 0x78, &[0xFC, 1, 2, 3]);
                // Both kinds go: the channel takes the ones its track has.
                if conn.write_all(&interleaved(0, &p)).is_err()
                    || conn.write_all(&interleaved(0, &q)).is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
                if seq == 75 && !dropped.swap(true, Ordering::SeqCst) {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let source = format!("rtsp://127.0.0.1:{}/cam", addr.port());
    let server = serve(dir.path(), &source, "transport = \"tcp\"");
    let url = server.url("live/cam");
    assert!(wait_for_status(&server, &url, 200), "never pulled");
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let session = play_udp(&mut c, &url, &[&pair]);
    let (first, _) = pair.recv_rtp().expect("the H.264 reader's first packet");
    assert_eq!(first[1] & 0x7F, 96, "H.264 as described first");
    // The upstream drops; it comes back with Opus.
    assert!(
        common::udp::bye_within(&pair.rtcp, Duration::from_secs(15)),
        "no BYE to the H.264 reader: {:#?}",
        server.log_lines()
    );
    let r = c.request("GET_PARAMETER", &url, &[&format!("Session: {session}")]);
    assert_eq!(r.status, 454, "the reader's session is gone: {r}");
    let log = wait_for_log(&server, |l| l.contains("came back with other tracks"));
    assert!(log.contains("a new one starts"), "{log}");
    // A new reader gets the new tracks.
    assert!(wait_for_status(&server, &url, 200), "not pulled again");
    let mut n = Rtsp::connect(server.addr());
    let d = n.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    assert_eq!(d.status, 200, "{d}");
    let sdp = String::from_utf8_lossy(&d.body).into_owned();
    assert!(sdp.contains("m=audio") && !sdp.contains("m=video"), "{sdp}");
    let opus = UdpPair::bind();
    play_udp(&mut n, &url, &[&opus]);
    let (p, _) = opus.recv_rtp().expect("an Opus packet for the new reader");
    assert_eq!(rtp_payload(&p), [0xFC, 1, 2, 3]);
    assert!(described.load(Ordering::SeqCst) >= 2);
    assert!(server.panics().is_empty());
}
