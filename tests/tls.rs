//! RTSPS (issue 12): RTSP over TLS with certificates the test makes
//! (rcgen), real clients (ffmpeg, GStreamer) and a small rustls client of
//! our own, the TLS cases of ROBUSTNESS B14 while a plain RTSP/UDP canary
//! streams, certificate rotation on SIGHUP, and `[tls] require`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::http::{request, sample, scrape};
use common::interleaved::gaps;
use common::pcm::assert_pcm_eq;
use common::rtsp::{build, find, parse_replies};
use common::tools::{ffmpeg_attempt, ffmpeg_background, ffmpeg_s16be, require, run_tool};
use common::{
    int_spec, l16_samples, rtp_seq, tls, wav_l16, write_wav, Reply, Rtsp, Server, UdpPair,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A WAV long enough to outlast every case (a canary must not end first).
const LONG: &str = "long-16k-mono.wav";
/// A short one real clients play to the end.
const SHORT: &str = "short-16k-mono.wav";

/// Writes the test's clips: 30 s and 2 s of 16 kHz mono, distinct samples.
fn fill(media: &Path) {
    let tone = |n: usize| -> Vec<i16> {
        (0..n)
            .map(|i| (((i * 7919) % 65_521) as i32 - 32_760) as i16)
            .collect()
    };
    write_wav(
        &media.join(LONG),
        int_spec(16_000, 1, 16),
        tone(16_000 * 30),
    );
    write_wav(
        &media.join(SHORT),
        int_spec(16_000, 1, 16),
        tone(16_000 * 2),
    );
}

/// A server with RTSPS on an ephemeral port, the certificate `NAME` of
/// `certs`, and `extra` flags.
fn start(certs: &Path, name: &str, extra: &[&str]) -> Server {
    let flags = tls::flags(certs, name);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start_with(fill, &[&flags[..], extra].concat())
}

fn rtsps_addr(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.rtsps_port()))
}

// ---------------------------------------------------------------------------
// A blocking RTSPS client (rustls)

/// An RTSP client over TLS that trusts `roots`.
struct TlsRtsp {
    s: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    cseq: u32,
}

impl TlsRtsp {
    fn connect(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Result<Self, String> {
        let mut store = RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        let name = ServerName::IpAddress(addr.ip().into());
        let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn
                .complete_io(&mut s.sock)
                .map_err(|e| format!("handshake: {e}"))?;
        }
        Ok(Self {
            s,
            buf: Vec::new(),
            cseq: 0,
        })
    }

    /// The certificate the server presented.
    fn peer_cert(&self) -> CertificateDer<'static> {
        self.s.conn.peer_certificates().expect("a certificate")[0].clone()
    }

    fn request(&mut self, method: &str, url: &str, headers: &[&str]) -> Reply {
        self.cseq += 1;
        let req = build(method, url, self.cseq, headers, b"");
        self.s.write_all(&req).expect("write request");
        self.s.flush().expect("flush");
        self.next_reply()
    }

    /// The next reply on the connection (interleaved frames skipped).
    fn next_reply(&mut self) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Interleaved frames may come first: skip whole ones.
            while self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = 4 + usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < len {
                    break;
                }
                self.buf.drain(..len);
            }
            if self.buf.first() != Some(&b'$') {
                if let Some(len) = reply_len(&self.buf) {
                    let reply = parse_replies(&self.buf[..len]).expect("a reply");
                    assert_eq!(reply.len(), 1, "one reply");
                    self.buf.drain(..len);
                    return reply.into_iter().next().expect("one");
                }
            }
            assert!(Instant::now() < deadline, "no reply to CSeq {}", self.cseq);
            self.read_some();
        }
    }

    fn read_some(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        match self.s.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 1,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => 1,
            Err(_) => 0,
        }
    }

    /// SETUP interleaved and PLAY `url`.
    fn play_interleaved(&mut self, url: &str) {
        let s = self.request(
            "SETUP",
            &format!("{url}/trackID=0"),
            &["Transport: RTP/AVP/TCP;unicast;interleaved=0-1"],
        );
        assert_eq!(s.status, 200, "{s}");
        let p = self.request("PLAY", url, &[&format!("Session: {}", s.session())]);
        assert_eq!(p.status, 200, "{p}");
    }

    /// The RTP sequence numbers of channel 0 until `stop` is set or the
    /// connection ends.
    fn read_frames(mut self, stop: &AtomicBool) -> Vec<u16> {
        self.s
            .sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut seqs = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if self.read_some() == 0 {
                break;
            }
            while self.buf.len() >= 4 {
                assert_eq!(self.buf[0], b'$', "only frames after PLAY");
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() < 4 + len {
                    break;
                }
                if self.buf[1] == 0 {
                    seqs.push(rtp_seq(&self.buf[4..4 + len]));
                }
                self.buf.drain(..4 + len);
            }
        }
        seqs
    }
}

/// The length of the whole reply at the start of `buf`, once it is there.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let head = find(buf, b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&buf[..head]);
    let body: usize = text
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("Content-Length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head + body).then_some(head + body)
}

// ---------------------------------------------------------------------------
// The canary: a plain RTSP/UDP session that must lose nothing

struct Canary {
    _control: Rtsp,
    stop: Arc<AtomicBool>,
    reader: thread::JoinHandle<Vec<u16>>,
}

impl Canary {
    fn start(server: &Server) -> Self {
        let url = server.url(LONG);
        let mut c = Rtsp::connect(server.addr());
        let pair = UdpPair::bind();
        let id = common::setup_udp(&mut c, &url, &pair);
        let r = c.request("PLAY", &url, &[&format!("Session: {id}")]);
        assert_eq!(r.status, 200, "{r}");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let reader = thread::spawn(move || {
            let mut seqs = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some((p, _)) = pair.recv_rtp() {
                    seqs.push(rtp_seq(&p));
                }
            }
            seqs
        });
        Self {
            _control: c,
            stop,
            reader,
        }
    }

    /// Stops reading; asserts continuous sequence numbers over at least
    /// `secs` seconds of 20 ms packets.
    fn finish(self, secs: f64) {
        self.stop.store(true, Ordering::Relaxed);
        let seqs = self.reader.join().expect("canary reader");
        let want = (secs * 50.0 * 0.9) as usize;
        assert!(
            seqs.len() >= want,
            "canary got {} packets, want at least {want}",
            seqs.len()
        );
        assert_eq!(gaps(&seqs), 0, "the canary lost packets: {seqs:?}");
    }
}

/// An RTSPS client playing interleaved on a thread of its own.
struct TlsReader {
    stop: Arc<AtomicBool>,
    reader: thread::JoinHandle<Vec<u16>>,
    started: Instant,
}

impl TlsReader {
    fn start(mut c: TlsRtsp, url: &str) -> Self {
        c.play_interleaved(url);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            reader: thread::spawn(move || c.read_frames(&flag)),
            started: Instant::now(),
        }
    }

    /// Stops reading; asserts continuous sequence numbers, and 20 ms
    /// packets for the time it read.
    fn finish(self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let seqs = self.reader.join().expect("reader");
        let want = (self.started.elapsed().as_secs_f64() - 0.5) * 50.0 * 0.9;
        assert!(
            seqs.len() as f64 >= want,
            "{what} got {} packets, want {want}",
            seqs.len()
        );
        assert_eq!(gaps(&seqs), 0, "{what} lost packets");
    }
}

// ---------------------------------------------------------------------------
// Real clients

/// ffmpeg plays a clip over rtsps:// (it forces TCP interleaved for
/// RTSPS, and does not verify the certificate by default: `-tls_verify 0`
/// is the default of its TLS protocol) and decodes exactly the WAV's
/// samples.
#[test]
fn ffmpeg_plays_rtsps_bit_exact() {
    require("ffmpeg");
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    let server = start(certs.path(), "a", &[]);
    let url = server.rtsps_url(SHORT);
    let (decoded, _) = ffmpeg_s16be(&["-i", &url], Duration::from_secs(30));
    let (expected, rate, channels) = wav_l16(&server.media.join(SHORT));
    assert_pcm_eq("ffmpeg rtsps", &decoded, &expected, channels, rate);
    assert!(server.panics().is_empty());
}

/// GStreamer's rtspsrc plays an rtsps:// URL (TCP interleaved over TLS,
/// certificate checks off) bit-exactly.
#[test]
fn gstreamer_plays_rtsps() {
    require("gst-launch-1.0");
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    let server = start(certs.path(), "a", &[]);
    let decoded = gst_rtsps_pcm(&server.rtsps_url(SHORT), &[]);
    let (expected, rate, channels) = wav_l16(&server.media.join(SHORT));
    assert_pcm_eq("gstreamer rtsps", &decoded, &expected, channels, rate);
}

/// Plays `url` with rtspsrc over TLS (certificate checks off, `props`
/// added to rtspsrc) and returns the S16BE samples it wrote.
fn gst_rtsps_pcm(url: &str, props: &[&str]) -> Vec<u8> {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = out_dir.path().join("out.raw");
    let mut args = common::gst_l16_args(url, "protocols=tcp", &[], &out);
    // After `rtspsrc location=... protocols=tcp`: a certificate of our own.
    for (k, prop) in ["tls-validation-flags=0"].iter().chain(props).enumerate() {
        args.insert(5 + k, (*prop).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_tool("gst-launch-1.0", &args, Duration::from_secs(30));
    assert!(
        run.status.success() || gst_tls_shutdown_race_only(run.status, &run.stderr),
        "`gst-launch-1.0 {}` failed ({}). stderr:\n{}",
        args.join(" "),
        run.status,
        run.stderr
    );
    std::fs::read(&out).expect("gst output")
}

/// rtspsrc's shutdown race ([`common::gst_shutdown_race_only`]: at end
/// of stream it flushes the connection while its PAUSE is being written),
/// and the form it also takes over TLS: the cut PAUSE reaches the server
/// as a malformed request, which gets 400 and a close (the server log
/// shows `unparseable request` right after the clip's last packet), and
/// rtspsrc reports `Parse error` for the PAUSE and the TEARDOWN after it.
/// Seen in about 1 run in 10 on a loaded machine. Only those exact lines
/// count; the decoded samples are still checked in full.
fn gst_tls_shutdown_race_only(status: std::process::ExitStatus, stderr: &str) -> bool {
    if common::gst_shutdown_race_only(status, stderr) {
        return true;
    }
    let element = "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: ";
    let mut parse_error = false;
    let all_race = stderr.lines().filter(|l| !l.trim().is_empty()).all(|l| {
        if matches!(
            l,
            "Could not receive message. (Parse error)" | "Could not send message. (Parse error)"
        ) {
            parse_error = true;
            return true;
        }
        // Both forms at once: the PAUSE's write meets the close that the
        // cut request caused.
        if l == "Could not send message. (Received end-of-file)" {
            return true;
        }
        l.strip_prefix(element).is_some_and(|e| {
            matches!(
                e,
                "Could not read from resource." | "Could not write to resource."
            )
        }) || l == "Additional debug info:"
            || (l.contains("gstrtspsrc.c(")
                && [
                    "gst_rtsp_src_receive_response",
                    "gst_rtspsrc_try_send",
                    "gst_rtspsrc_close",
                    "gst_rtspsrc_pause",
                ]
                .iter()
                .any(|f| l.contains(f)))
    });
    status.code() == Some(1) && parse_error && all_race
}

// ---------------------------------------------------------------------------
// ROBUSTNESS B14 with a canary

/// The first bytes of a TLS 1.2/1.3 ClientHello record: handshake type,
/// legacy version, a length promising more than is sent.
const PARTIAL_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0xfc, 0x03, 0x03,
];

/// Reads until end of stream or `wait`; true if the server closed.
fn closed_within(s: &mut TcpStream, wait: Duration) -> (bool, Vec<u8>) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, got),
        }
    }
    (false, got)
}

/// Asserts that `s`, connected at `start`, is closed with nothing written
/// at the 1 s handshake deadline, not before.
fn closed_at_deadline(s: &mut TcpStream, start: Instant, what: &str) {
    let (closed, got) = closed_within(s, Duration::from_secs(10));
    let took = start.elapsed();
    assert!(closed, "{what} was never closed");
    assert!(got.is_empty(), "{what} got a reply: {got:?}");
    assert!(
        took >= Duration::from_millis(900),
        "{what} closed before the deadline: {took:?}"
    );
}

/// B14#97, #98 and the 461: a UDP SETUP on RTSPS is refused with its
/// reason; plain RTSP on the RTSPS port and a ClientHello on the plain
/// port are closed (or answered 400), never left hanging; a ClientHello
/// that stalls, or trickles, is closed at the handshake deadline (1 s
/// here) and counted.
/// A plain RTSP/UDP canary streams throughout and loses nothing.
#[test]
fn bad_tls_clients_are_closed_and_the_canary_streams() {
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = tls::self_signed(certs.path(), "a");
    let server = start(
        certs.path(),
        "a",
        &["--tls-handshake-timeout", "1", "--http", "127.0.0.1:0"],
    );
    let http = server.http.expect("HTTP side");
    let canary = Canary::start(&server);
    let t0 = Instant::now();

    // 461 for UDP over TLS, with the reason; interleaved is fine.
    let mut c = TlsRtsp::connect(rtsps_addr(&server), &[cert]).expect("TLS");
    let url = server.rtsps_url(LONG);
    let pair = UdpPair::bind();
    let r = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(r.status, 461, "{r}");
    assert!(
        r.reason
            .contains("Plaintext RTP Must Not Follow A TLS Control Session"),
        "{r}"
    );
    let d = c.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 200, "the connection stays usable: {d}");
    // 200 pipelined requests in one write (one 16 KiB TLS record holds
    // more than a read takes): every one answered, none left in rustls.
    let burst: Vec<u8> = (0..200)
        .flat_map(|i| build("OPTIONS", &url, 100 + i, &[], b""))
        .collect();
    c.s.write_all(&burst).expect("write burst");
    c.s.flush().expect("flush");
    for i in 0..200 {
        c.cseq = 100 + i;
        let r = c.next_reply();
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.header("CSeq"), Some((100 + i).to_string().as_str()));
    }

    // Plain RTSP to the RTSPS port: closed without an RTSP reply.
    let mut plain = TcpStream::connect(rtsps_addr(&server)).expect("connect");
    plain
        .write_all(&build("OPTIONS", &url, 1, &[], b""))
        .expect("write");
    let (closed, got) = closed_within(&mut plain, Duration::from_secs(5));
    assert!(closed, "plain RTSP on the RTSPS port was left open");
    assert!(!got.starts_with(b"RTSP/"), "an RTSP reply over a TLS port");

    // A ClientHello to the plain port: 400 and a close.
    let mut hello = TcpStream::connect(server.addr()).expect("connect");
    hello.write_all(PARTIAL_HELLO).expect("write");
    hello.write_all(&[0u8; 64]).expect("write");
    let (closed, got) = closed_within(&mut hello, Duration::from_secs(15));
    assert!(closed, "a ClientHello on the plain port was left open");
    assert!(
        got.is_empty() || got.starts_with(b"RTSP/1.0 400"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // A ClientHello that stalls: closed at the 1 s deadline, not before.
    // Timed from before the connect: the server's deadline starts at its
    // accept, which cannot come earlier.
    let start = Instant::now();
    let mut stall = TcpStream::connect(rtsps_addr(&server)).expect("connect");
    stall.write_all(PARTIAL_HELLO).expect("write");
    closed_at_deadline(&mut stall, start, "a stalled handshake");

    // A handshake trickled a byte every 200 ms: the deadline is from the
    // connection's start, so trickling buys nothing.
    let start = Instant::now();
    let mut trickle = TcpStream::connect(rtsps_addr(&server)).expect("connect");
    let mut writer = trickle.try_clone().expect("clone");
    let trickler = thread::spawn(move || {
        for b in PARTIAL_HELLO.iter().cycle().take(50) {
            if writer.write_all(&[*b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    closed_at_deadline(&mut trickle, start, "a trickled handshake");
    drop(trickle);
    trickler.join().expect("trickler");
    let refused = sample(
        &scrape(http),
        "rtspd_refused_total",
        "limit=\"tls_handshake_timeout\"",
    );
    assert_eq!(refused, Some(2.0), "both timeouts are counted");

    canary.finish(t0.elapsed().as_secs_f64() - 0.5);
    assert!(server.panics().is_empty());
}

/// B14#99: 50 stalled handshakes at once from one IP meet the per-IP
/// connection cap before any handshake work: with room for 11 (the canary
/// holds one), 10 wait for their handshake deadline and 40 are closed at
/// once. The canary loses nothing.
#[test]
fn stalled_handshakes_hit_the_per_ip_cap_first() {
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    let server = start(
        certs.path(),
        "a",
        &[
            "--max-connections-per-ip",
            "11",
            "--tls-handshake-timeout",
            "60",
            "--http",
            "127.0.0.1:0",
        ],
    );
    let http = server.http.expect("HTTP side");
    let canary = Canary::start(&server);
    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect(rtsps_addr(&server)).expect("connect");
            s.write_all(PARTIAL_HELLO).expect("write");
            s
        })
        .collect();
    // Refused ones are closed at accept; held ones stay open (their
    // deadline is a minute away). Each is read for up to 3 s at most once.
    let mut closed = 0;
    let end = Instant::now() + Duration::from_secs(3);
    for s in &mut conns {
        let left = end.saturating_duration_since(Instant::now());
        let (c, got) = closed_within(s, left.max(Duration::from_millis(200)));
        assert!(got.is_empty(), "bytes sent to a stalled handshake: {got:?}");
        closed += usize::from(c);
    }
    assert_eq!(closed, 40, "connections closed at the per-IP cap");
    let refused = sample(
        &scrape(http),
        "rtspd_refused_total",
        "limit=\"max_connections_per_ip\"",
    );
    assert_eq!(refused, Some(40.0));
    drop(conns);
    canary.finish(t0.elapsed().as_secs_f64() - 0.5);
}

// ---------------------------------------------------------------------------
// Certificate rotation and require

/// A config file serving `media` with RTSPS from `cert` and `key`.
fn tls_config(media: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "[server]\nmedia = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\nrtsps_port = 0\n",
        media.display(),
        cert.display(),
        key.display()
    )
}

/// Connects over TLS until the server presents `want` (bounded).
fn wait_for_cert(
    addr: SocketAddr,
    roots: &[CertificateDer<'static>],
    want: &CertificateDer,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(c) = TlsRtsp::connect(addr, roots) {
            if c.peer_cert() == *want {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A TLS reader plays interleaved; the certificate files are replaced and
/// the server gets SIGHUP: new connections get the new certificate, the
/// reader keeps its session with continuous sequence numbers. A broken key
/// then refuses the reload (`POST /api/v1/reload`), and connections keep
/// getting the last good certificate.
#[test]
fn certificate_rotation_keeps_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (
        tls::self_signed(dir.path(), "old"),
        tls::self_signed(dir.path(), "new"),
    );
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media dir");
    fill(&media);
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(dir.path().join("old.cert.pem"), &cert).expect("copy");
    std::fs::copy(dir.path().join("old.key.pem"), &key).expect("copy");
    let cfg = dir.path().join("rtspd.toml");
    std::fs::write(&cfg, tls_config(&media, &cert, &key)).expect("config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_at(&media, &["--config", &cfg_arg]);
    let addr = rtsps_addr(&server);
    let roots = [old.clone(), new.clone()];

    let reader = TlsRtsp::connect(addr, &roots).expect("TLS");
    assert!(reader.peer_cert() == old, "the start's certificate");
    let reader = TlsReader::start(reader, &server.rtsps_url(LONG));
    thread::sleep(Duration::from_secs(1));

    std::fs::copy(dir.path().join("new.cert.pem"), &cert).expect("copy");
    std::fs::copy(dir.path().join("new.key.pem"), &key).expect("copy");
    server.signal("HUP");
    assert!(
        wait_for_cert(addr, &roots, &new),
        "new connections never got the new certificate"
    );

    // A key that does not load: the reload is refused, nothing changes.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64!\n").expect("write");
    let http = server.http.expect("HTTP side");
    let r = request(http, "POST", "/api/v1/reload", &[]);
    assert!(r.status >= 400, "a bad key was accepted: {}", r.status);
    let body = &r.body;
    assert!(body.contains("key.pem"), "the error names the file: {body}");
    let c = TlsRtsp::connect(addr, &roots).expect("TLS after a refused reload");
    assert!(c.peer_cert() == new, "the last good certificate stays");

    thread::sleep(Duration::from_secs(1));
    reader.finish("the old reader");
    assert!(server.panics().is_empty());
}

/// `[tls] require = true`: plain RTSP gets 403 for DESCRIBE (and SETUP),
/// OPTIONS still 200; RTSPS serves.
#[test]
fn require_refuses_plain_rtsp() {
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = tls::self_signed(certs.path(), "a");
    let server = start(certs.path(), "a", &["--tls-require"]);
    let url = server.url(SHORT);
    let mut c = Rtsp::connect(server.addr());
    let o = c.request("OPTIONS", &url, &[]);
    assert_eq!(o.status, 200, "{o}");
    let d = c.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 403, "{d}");
    assert!(d.reason.contains("RTSPS"), "{d}");
    let pair = UdpPair::bind();
    let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(s.status, 403, "{s}");
    let mut t = TlsRtsp::connect(rtsps_addr(&server), &[cert]).expect("TLS");
    let d = t.request("DESCRIBE", &server.rtsps_url(SHORT), &[]);
    assert_eq!(d.status, 200, "{d}");
}

/// `rtspd check-config` of a file in `dir` naming `cert` and `key`.
fn check_config(dir: &Path, cert: &Path, key: &Path) -> std::process::Output {
    let cfg = dir.join("rtspd.toml");
    let text = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&cfg, text).expect("config");
    std::process::Command::new(env!("CARGO_BIN_EXE_rtspd"))
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("run rtspd check-config")
}

/// A certificate or key that does not load stops the start with exit
/// code 2 and a message naming the file; `check-config` says the same.
#[test]
fn bad_certificate_files_stop_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    tls::self_signed(dir.path(), "a");
    tls::self_signed(dir.path(), "b");
    let other_key = dir.path().join("b.key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let missing = dir.path().join("missing.pem");
    let good_cert = dir.path().join("a.cert.pem");
    let good_key = dir.path().join("a.key.pem");
    let cases: [(&Path, &Path, &Path); 5] = [
        (&missing, &good_key, &missing),
        (&garbage, &good_key, &garbage),
        (&good_cert, &garbage, &garbage),
        // No key in the file named as the key.
        (&good_cert, &good_cert, &good_cert),
        // A key that is not the certificate's.
        (&good_cert, &other_key, &other_key),
    ];
    for (cert, key, named) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtspd"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--rtp-port", "0"])
            .args(["--http", "off", "--rtsps-port", "0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .env_remove("RUST_LOG")
            .output()
            .expect("run rtspd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert:?} {key:?}: {stderr}");
        assert!(
            stderr.contains(&named.display().to_string()),
            "{cert:?} {key:?}: the error names {named:?}: {stderr}"
        );
        // `check-config` loads them as the start would.
        let out = check_config(dir.path(), cert, key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "check-config: {stderr}");
        assert!(stderr.contains(&named.display().to_string()), "{stderr}");
    }
    // And a good pair passes.
    let out = check_config(dir.path(), &good_cert, &good_key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A live channel fans out to an RTSPS listener through the same bounded
/// per-connection queue as plain interleaved: continuous sequence numbers
/// while a plain UDP canary of a clip streams beside it.
#[test]
fn live_channel_plays_over_rtsps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = tls::self_signed(dir.path(), "a");
    fill(dir.path());
    let live = format!("radio=file:{}", dir.path().join(LONG).display());
    let server = start(dir.path(), "a", &["--live", &live]);
    // The live channel's rtsps:// URL is printed.
    server.wait_for_line(|l| l.starts_with("rtsps://") && l.ends_with("/live/radio (live)"));
    let canary = Canary::start(&server);
    let t0 = Instant::now();
    let c = TlsRtsp::connect(rtsps_addr(&server), &[cert]).expect("TLS");
    let reader = TlsReader::start(c, &server.rtsps_url("live/radio"));
    thread::sleep(Duration::from_secs(2));
    reader.finish("the RTSPS listener");
    canary.finish(t0.elapsed().as_secs_f64() - 0.5);
}

/// The race matcher accepts exactly rtspsrc's lines, seen in a real run.
#[test]
fn gst_race_matcher_is_exact() {
    use std::os::unix::process::ExitStatusExt;
    let seen = "\
ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not read from resource.
Additional debug info:
../gst/rtsp/gstrtspsrc.c(6682): gst_rtsp_src_receive_response (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:
Could not receive message. (Parse error)
ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not write to resource.
Additional debug info:
../gst/rtsp/gstrtspsrc.c(8552): gst_rtspsrc_close (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:
Could not send message. (Parse error)
";
    let exit_1 = std::process::ExitStatus::from_raw(1 << 8);
    let exit_2 = std::process::ExitStatus::from_raw(2 << 8);
    assert!(gst_tls_shutdown_race_only(exit_1, seen));
    assert!(!gst_tls_shutdown_race_only(exit_2, seen));
    let other = format!("{seen}ERROR: from element /GstPipeline:pipeline0/GstRtpL16Depay:rtpl16depay0: Internal data stream error.\n");
    assert!(!gst_tls_shutdown_race_only(exit_1, &other));
    // Both forms in one run (seen with credentials, 2 runs in 15).
    let both = "\
ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not write to resource.
Additional debug info:
../gst/rtsp/gstrtspsrc.c(6766): gst_rtspsrc_try_send (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:
Could not send message. (Received end-of-file)
ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not write to resource.
Additional debug info:
../gst/rtsp/gstrtspsrc.c(9240): gst_rtspsrc_pause (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:
Could not send message. (Received end-of-file)
ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not read from resource.
Additional debug info:
../gst/rtsp/gstrtspsrc.c(6682): gst_rtsp_src_receive_response (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:
Could not receive message. (Parse error)
";
    assert!(gst_tls_shutdown_race_only(exit_1, both));
    let no_parse_error = seen.replace(
        "(Parse error)",
        "(Timeout while waiting for server response)",
    );
    assert!(!gst_tls_shutdown_race_only(exit_1, &no_parse_error));
}

/// A server with RTSPS (certificate `a` of `certs`), `clip` also under
/// `private/`, which only alice (password `secret`, rtspd's realm) may
/// read, and `extra` flags. The Digest hashes are computed here.
fn start_private(certs: &Path, clip: &str, extra: &[&str]) -> Server {
    use md5::{Digest as _, Md5};
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let a1 = "alice:rtspd:secret";
    let cfg = certs.join("rtspd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"off\"\n\n[[users]]\nname = \"alice\"\nha1_md5 = \"{}\"\n\
             ha1_sha256 = \"{}\"\n\n[[paths]]\nmatch = \"/private/**\"\nread = [\"alice\"]\n",
            hex(&Md5::digest(a1.as_bytes())),
            hex(&sha2::Sha256::digest(a1.as_bytes())),
        ),
    )
    .expect("config");
    let cfg = cfg.display().to_string();
    let flags = tls::flags(certs, "a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let extra = [&flags[..], &["--config", &cfg], extra].concat();
    Server::start_with(
        |media| {
            fill(media);
            let private = media.join("private");
            std::fs::create_dir(&private).expect("mkdir");
            std::fs::copy(media.join(clip), private.join(clip)).expect("copy");
        },
        &extra,
    )
}

/// `[tls] require` with `[[paths]]` rules protects only protected paths:
/// plain RTSP may still describe an open clip but gets 403 for one whose
/// rule names users; over RTSPS that clip asks for credentials (401), and
/// Basic credentials, refused on plain RTSP, are taken there.
#[test]
fn require_with_rules_protects_only_protected_paths_and_basic_works_over_tls() {
    use base64::Engine as _;
    let certs = tempfile::tempdir().expect("tempdir");
    let cert = tls::self_signed(certs.path(), "a");
    let server = start_private(certs.path(), SHORT, &["--tls-require"]);
    let (open, private) = (SHORT.to_owned(), format!("private/{SHORT}"));
    let mut plain = Rtsp::connect(server.addr());
    let d = plain.request("DESCRIBE", &server.url(&open), &[]);
    assert_eq!(d.status, 200, "an open clip over plain RTSP: {d}");
    let d = plain.request("DESCRIBE", &server.url(&private), &[]);
    assert_eq!(d.status, 403, "a protected clip over plain RTSP: {d}");
    let basic = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:secret")
    );
    let mut t = TlsRtsp::connect(rtsps_addr(&server), &[cert]).expect("TLS");
    let url = server.rtsps_url(&private);
    let d = t.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 401, "no credentials over RTSPS: {d}");
    let d = t.request("DESCRIBE", &url, &[&basic]);
    assert_eq!(d.status, 200, "Basic over RTSPS: {d}");
    let wrong = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );
    let d = t.request("DESCRIBE", &url, &[&wrong]);
    assert_eq!(d.status, 401, "a wrong Basic password over RTSPS: {d}");
}

/// The real clients with credentials over RTSPS (issue 12): ffmpeg with
/// `rtsps://alice:secret@` plays a protected clip bit-exactly, GStreamer
/// with `user-id`/`user-pw` too; no credentials and a wrong password get
/// 401; ffmpeg publishes over RTSPS as bob (publish permission) and a
/// reader over RTSPS hears bob's samples, while alice (read only) gets 403.
#[test]
fn real_clients_with_credentials_over_rtsps() {
    require("ffmpeg");
    require("gst-launch-1.0");
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media");
    fill(&media);
    tls::self_signed(dir.path(), "a");
    let cfg = format!(
        "[http]\nlisten = \"off\"\n\n{}{}\
         [[live]]\nname = \"studio\"\nsource = \"publish\"\nrate = 16000\nchannels = 1\n\n\
         [[paths]]\nmatch = \"/live/studio\"\nread = [\"alice\"]\npublish = [\"bob\"]\n\n\
         [[paths]]\nmatch = \"/*.wav\"\nread = [\"alice\"]\n",
        common::digest::user("alice", "secret"),
        common::digest::user("bob", "pw"),
    );
    let flags = tls::flags(dir.path(), "a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = Server::start_configured(dir.path(), &cfg, &media, &flags, None);
    let port = server.rtsps_port();
    let at = |who: &str, path: &str| format!("rtsps://{who}127.0.0.1:{port}/{path}");
    let (expected, rate, channels) = wav_l16(&media.join(SHORT));

    let (decoded, run) = ffmpeg_s16be(
        &["-i", &at("alice:secret@", SHORT)],
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_pcm_eq(
        "ffmpeg rtsps with credentials",
        &decoded,
        &expected,
        channels,
        rate,
    );
    for who in ["", "alice:wrong@"] {
        let run = ffmpeg_attempt("tcp", &at(who, SHORT), Duration::from_secs(30));
        assert!(!run.status.success(), "{who:?} played");
        assert!(run.stderr.contains("401"), "{who:?}: {}", run.stderr);
    }

    let decoded = gst_rtsps_pcm(&at("", SHORT), &["user-id=alice", "user-pw=secret"]);
    assert_pcm_eq(
        "gstreamer rtsps with credentials",
        &decoded,
        &expected,
        channels,
        rate,
    );

    // Publishing over RTSPS: alice may only read. The published clip is a
    // tone with a ramp, so the reader's samples align at one offset only
    // (LONG's arithmetic sequence also matches, 1 LSB off, elsewhere).
    let published = dir.path().join("publish.wav");
    let samples: Vec<i16> = (0..16_000 * 8)
        .map(|i| ((f64::from(i) * 0.07).sin() * 9000.0) as i16 + (i % 97) as i16)
        .collect();
    write_wav(&published, int_spec(16_000, 1, 16), samples);
    let long = published.to_str().expect("path");
    let alice = at("alice:secret@", "live/studio");
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-t",
            "1",
            "-i",
            long,
            "-c:a",
            "pcm_s16be",
            "-f",
            "rtsp",
            &alice,
        ],
        Duration::from_secs(30),
    );
    assert!(!run.status.success(), "alice published");
    assert!(run.stderr.contains("403"), "alice: {}", run.stderr);
    let bob = at("bob:pw@", "live/studio");
    let _publisher =
        ffmpeg_background(&["-re", "-i", long, "-c:a", "pcm_s16be", "-f", "rtsp", &bob]);
    thread::sleep(Duration::from_secs(1));
    let (pcm, run) = ffmpeg_s16be(
        &["-i", &at("alice:secret@", "live/studio"), "-t", "1"],
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let decoded = l16_samples(&pcm);
    let (expected, _, _) = wav_l16(&published);
    let expected = l16_samples(&expected);
    assert!(decoded.len() >= 8000, "{} samples", decoded.len());
    let start = common::pcm::find_offset(&decoded[..64], &expected, 1, expected.len())
        .and_then(|f| usize::try_from(f).ok())
        .expect("the reader hears bob's audio");
    let run = &expected[start..];
    let n = decoded.len().min(run.len());
    let first_bad = (0..n).find(|&i| decoded[i] != run[i]);
    assert!(
        first_bad.is_none(),
        "bob's audio altered or lost over RTSPS: first difference at sample {first_bad:?} of {n} (decoded {:?}, expected {:?})",
        first_bad.map(|i| &decoded[i..(i + 8).min(n)]),
        first_bad.map(|i| &run[i..(i + 8).min(n)]),
    );
    assert!(server.panics().is_empty());
}

// ---------------------------------------------------------------------------
// `rtspd load` over rtsps:// (issue 12)

/// Runs `rtspd load ARGS` (bounded to 60 s).
fn run_load(args: &[&str]) -> common::tools::Run {
    let args = [&["load"][..], args].concat();
    run_tool(env!("CARGO_BIN_EXE_rtspd"), &args, Duration::from_secs(60))
}

/// [`run_load`], which must succeed: what it wrote, and the JSON line it
/// printed last.
fn load(args: &[&str]) -> (common::tools::Run, serde_json::Value) {
    let run = run_load(args);
    let json = run
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    match json {
        Some(v) if run.status.success() => (run, v),
        _ => panic!(
            "rtspd load {args:?}: {}\n{}\n{}",
            run.status, run.stdout, run.stderr
        ),
    }
}

fn count(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is not a count: {v}"))
}

/// `rtspd load` plays 5 listeners of a Digest-protected clip over
/// rtsps:// with the test's CA (`--ca-file`) and the URL's credentials:
/// every packet the server counted (`/metrics`, read after the sessions
/// tore down) arrived, byte for byte, with no gap, as the server's final
/// SRs also say; and the password is nowhere in the output.
#[test]
fn load_tester_plays_over_rtsps_with_digest() {
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    let server = start_private(certs.path(), LONG, &["--http", "127.0.0.1:0"]);
    let http = server.http.expect("the HTTP side");
    let before = scrape(http);
    let url = format!(
        "rtsps://alice:secret@127.0.0.1:{}/private/{LONG}",
        server.rtsps_port()
    );
    let ca = certs.path().join("a.cert.pem").display().to_string();
    let (run, v) = load(&[&url, "-n", "5", "-d", "3", "--ramp", "50", "--ca-file", &ca]);
    eprintln!("{}", run.stdout);
    assert!(
        !run.stdout.contains("secret") && !run.stderr.contains("secret"),
        "the password leaked: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(v["transport"], "rtsps/interleaved", "{v}");
    assert_eq!(
        v["url"],
        format!("rtsps://127.0.0.1:{}/private/{LONG}", server.rtsps_port())
    );
    assert_eq!(
        (count(&v, "sessions_ok"), count(&v, "sessions_failed")),
        (5, 0),
        "{v}"
    );
    for k in ["packets_lost", "packets_duplicated", "packets_reordered"] {
        assert_eq!(count(&v, k), 0, "{k}: {v}");
    }
    let received = count(&v, "packets_received");
    // 5 sessions x 3 s x 50 packets/s, give or take the edges.
    assert!((675..=825).contains(&received), "{received} packets: {v}");
    assert_eq!(
        received,
        count(&v, "server_packets_sent"),
        "the server's final SRs count what arrived: {v}"
    );
    let after = scrape(http);
    let delta = |name: &str| {
        sample(&after, name, "").expect(name) - sample(&before, name, "").unwrap_or(0.0)
    };
    assert_eq!(delta("rtspd_rtp_packets_sent_total"), received as f64);
    assert_eq!(
        delta("rtspd_rtp_bytes_sent_total"),
        count(&v, "bytes_received") as f64
    );
    // 16 kHz mono L16 in 20 ms packets: 640 payload bytes, 12 of header.
    assert_eq!(count(&v, "bytes_received"), received * 652);
    assert_eq!(delta("rtspd_sessions_started_total"), 5.0);
}

/// A CA that did not sign the server's certificate: every session fails
/// its handshake, counted as such; nothing plays and the server starts no
/// session. `--insecure` then plays, and says it did not verify.
#[test]
fn load_tester_refuses_a_certificate_its_ca_did_not_sign() {
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    tls::self_signed(certs.path(), "other");
    let server = start(certs.path(), "a", &["--http", "127.0.0.1:0"]);
    let ca = certs.path().join("other.cert.pem").display().to_string();
    let url = server.rtsps_url(LONG);
    let (_, v) = load(&[&url, "-n", "3", "-d", "1", "--ramp", "50", "--ca-file", &ca]);
    assert_eq!(
        (count(&v, "sessions_ok"), count(&v, "sessions_failed")),
        (0, 3),
        "{v}"
    );
    // Both test certificates have rcgen's one subject, so rustls finds an
    // issuer by name and its signature fails (`BadSignature`); a CA of
    // another name gives `UnknownIssuer`. Either is the verification.
    let failures: Vec<_> = v["failures"]
        .as_object()
        .expect("failures")
        .iter()
        .collect();
    assert!(
        matches!(&failures[..], [(why, n)]
            if why.starts_with("TLS handshake: invalid peer certificate: ") && *n == 3),
        "{v}"
    );
    assert_eq!(count(&v, "packets_received"), 0, "{v}");
    let text = scrape(server.http.expect("the HTTP side"));
    assert_eq!(sample(&text, "rtspd_sessions_started_total", ""), Some(0.0));

    let (run, v) = load(&[&url, "-n", "3", "-d", "1", "--ramp", "50", "--insecure"]);
    assert_eq!(
        (count(&v, "sessions_ok"), count(&v, "packets_lost")),
        (3, 0),
        "{v}"
    );
    assert!(count(&v, "packets_received") > 0, "{v}");
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert_eq!(
        v["warnings"][0],
        "--insecure: the server's certificate is not verified"
    );
}

/// What `rtspd load` refuses before it connects anywhere: UDP media with
/// rtsps:// (it would be plaintext), rtsps:// with no way to verify the
/// certificate, and TLS flags with rtsp://.
#[test]
fn load_tester_refuses_rtsps_misuse_at_startup() {
    let certs = tempfile::tempdir().expect("tempdir");
    tls::self_signed(certs.path(), "a");
    let ca = certs.path().join("a.cert.pem").display().to_string();
    // Nothing listens there: a refusal comes before any connect.
    let rtsps = "rtsps://127.0.0.1:9/x.wav";
    for (args, says) in [
        (
            vec![rtsps, "--transport", "udp", "--ca-file", &ca],
            "interleaved on its TLS connection",
        ),
        (vec![rtsps], "rtsps:// needs --ca-file"),
        (
            vec!["rtsp://127.0.0.1:9/x.wav", "--ca-file", &ca],
            "--ca-file and --insecure are for rtsps:// URLs",
        ),
    ] {
        let run = run_load(&args);
        assert!(!run.status.success(), "{args:?} ran: {}", run.stdout);
        assert!(run.stderr.contains(says), "{args:?}: {}", run.stderr);
        assert!(
            run.elapsed < Duration::from_secs(5),
            "{args:?} took {:?}",
            run.elapsed
        );
    }
}
