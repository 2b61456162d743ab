//! What every robustness test runs under (ROBUSTNESS.md, "nothing lost"):
//! a server on generated media, a canary session streaming throughout, and
//! the I1/I2 checks when the test ends.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::common::{self, rtp_payload, rtp_seq, rtp_ssrc, rtp_ts, Rtsp, Server, UdpPair};

pub(crate) const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Sample rate of the generated clips.
pub(crate) const RATE: u32 = 8000;
/// Samples per RTP packet at the default 20 ms ptime.
pub(crate) const SPP: u32 = 160;
/// Length of the canary clip, in seconds.
const CANARY_SECS: u32 = 60;

// ---------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------

/// An 8 kHz mono 16-bit WAV whose sample `n` is `n as u16`.
pub(crate) fn counting_wav(path: &Path, secs: u32) {
    common::write_wav(
        path,
        common::int_spec(RATE, 1, 16),
        (0..secs * RATE).map(|n| n as u16 as i16),
    );
}

/// Whether an L16 payload holds the counting pattern from sample `first`.
pub(crate) fn counting_payload_ok(payload: &[u8], first: u32) -> bool {
    payload.len() == (SPP * 2) as usize
        && payload
            .chunks_exact(2)
            .zip(first..)
            .all(|(b, n)| u16::from_be_bytes([b[0], b[1]]) == n as u16)
}

// ---------------------------------------------------------------------------
// Requests and packets
// ---------------------------------------------------------------------------

/// A Session header line.
pub(crate) fn sess(id: &str) -> String {
    format!("Session: {id}")
}

/// Checks that `pkts` are one stream: consecutive sequence numbers and
/// timestamps 160 apart, one SSRC.
pub(crate) fn contiguous(pkts: &[(Vec<u8>, Instant)]) -> Result<(), String> {
    for w in pkts.windows(2) {
        let (a, b) = (&w[0].0, &w[1].0);
        if rtp_seq(b) != rtp_seq(a).wrapping_add(1) {
            return Err(format!("seq {} after {}", rtp_seq(b), rtp_seq(a)));
        }
        if rtp_ts(b) != rtp_ts(a).wrapping_add(SPP) {
            return Err(format!("ts {} after {}", rtp_ts(b), rtp_ts(a)));
        }
        if rtp_ssrc(b) != rtp_ssrc(a) {
            return Err("two SSRCs in one stream".into());
        }
    }
    Ok(())
}

/// A valid RTCP receiver report with no report blocks.
pub(crate) fn rtcp_rr(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

// ---------------------------------------------------------------------------
// The canary
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct CanaryStats {
    packets: u64,
    problems: Vec<String>,
    /// Problems beyond the first 20, not kept.
    more_problems: u64,
    max_gap: Duration,
    rtts: Vec<Duration>,
    /// From the first packet to the stop.
    elapsed: Duration,
}

impl CanaryStats {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 20 {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }
}

/// One UDP session playing `long.wav` from before a test's first case to
/// after its last, checking every packet and keeping its connection alive.
pub(crate) struct Canary {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<CanaryStats>>,
    pub(crate) session: String,
    /// A handle on the canary's RTCP socket, to send from its address.
    pub(crate) rtcp: UdpSocket,
}

impl Canary {
    fn start(addr: SocketAddr, url: &str) -> Self {
        let mut c = Rtsp::connect(addr);
        let pair = UdpPair::bind();
        let d = c.request("DESCRIBE", url, &["Accept: application/sdp"]);
        assert_eq!(d.status, 200, "canary DESCRIBE: {d}");
        let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
        assert_eq!(s.status, 200, "canary SETUP: {s}");
        let session = s.session();
        let ssrc = s.ssrc();
        let p = c.request("PLAY", url, &[&sess(&session)]);
        assert_eq!(p.status, 200, "canary PLAY: {p}");
        let (seq0, ts0) = p.rtp_info()[0];
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let rtcp = pair
            .rtcp
            .try_clone()
            .expect("clone the canary's RTCP socket");
        let (url, id) = (url.to_owned(), session.clone());
        let handle = thread::spawn(move || {
            let mut st = CanaryStats::default();
            let mut buf = [0u8; 2048];
            pair.rtp
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let start = Instant::now();
            let mut first: Option<Instant> = None;
            let mut prev: Option<(u16, u32, Instant)> = None;
            let mut last_keepalive = Instant::now();
            while !flag.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(58) {
                if let Ok(n) = pair.rtp.recv(&mut buf) {
                    let now = Instant::now();
                    let p = &buf[..n];
                    st.packets += 1;
                    first.get_or_insert(now);
                    if n < 12 || p[0] >> 6 != 2 {
                        st.problem(format!("not RTP: {n} bytes"));
                        continue;
                    }
                    let (seq, ts) = (rtp_seq(p), rtp_ts(p));
                    if rtp_ssrc(p) != ssrc {
                        st.problem(format!("SSRC {:08X}, SETUP said {ssrc:08X}", rtp_ssrc(p)));
                    }
                    match prev {
                        None if (seq, ts) != (seq0, ts0) => st.problem(format!(
                            "first packet seq {seq} ts {ts}, RTP-Info said {seq0} {ts0}"
                        )),
                        Some((ps, pt, pa)) => {
                            if seq != ps.wrapping_add(1) {
                                st.problem(format!("sequence gap: {seq} after {ps}"));
                            }
                            if ts != pt.wrapping_add(SPP) {
                                st.problem(format!("timestamp {ts} after {pt}"));
                            }
                            st.max_gap = st.max_gap.max(now - pa);
                        }
                        None => {}
                    }
                    if !counting_payload_ok(rtp_payload(p), ts.wrapping_sub(ts0)) {
                        st.problem(format!("payload of seq {seq} is not the clip's samples"));
                    }
                    prev = Some((seq, ts, now));
                }
                if last_keepalive.elapsed() >= Duration::from_millis(500) {
                    last_keepalive = Instant::now();
                    let t = Instant::now();
                    match c.try_request("GET_PARAMETER", &url, &[&sess(&id)]) {
                        Ok(r) if r.status == 200 => st.rtts.push(t.elapsed()),
                        Ok(r) => st.problem(format!("keepalive answered {}", r.status)),
                        Err(e) => st.problem(format!("keepalive: {e}")),
                    }
                }
            }
            st.elapsed = first.map_or(Duration::ZERO, |f| f.elapsed());
            st
        });
        Self {
            stop,
            handle: Some(handle),
            session,
            rtcp,
        }
    }

    fn stop(&mut self) -> CanaryStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("canary running")
            .join()
            .expect("canary thread")
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The fixture: media, server, canary
// ---------------------------------------------------------------------------

/// A server serving the test media, with its canary.
pub(crate) struct Fixture {
    pub(crate) proc: Server,
    pub(crate) canary: Canary,
    started: Instant,
    _media: tempfile::TempDir,
    _outside: tempfile::TempDir,
}

impl Fixture {
    /// Media: `long.wav` (60 s, the canary's clip), `other.wav` (5 s), an
    /// in-root alias, and two symlinks to a clip outside the root.
    pub(crate) fn start(extra: &[&str]) -> Self {
        let media = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = media.path();
        counting_wav(&root.join("long.wav"), CANARY_SECS);
        counting_wav(&root.join("other.wav"), 5);
        counting_wav(&outside.path().join("secret.wav"), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("long.wav", root.join("alias.wav")).unwrap();
            symlink(outside.path().join("secret.wav"), root.join("escape.wav")).unwrap();
            let name = outside.path().file_name().unwrap().to_str().unwrap();
            symlink(format!("../{name}/secret.wav"), root.join("relescape.wav")).unwrap();
            symlink(outside.path(), root.join("outdir")).unwrap();
        }
        let proc = Server::start_at(root, extra);
        let addr = SocketAddr::from((LOCAL, proc.port));
        let url = format!("rtsp://127.0.0.1:{}/long.wav", proc.port);
        let canary = Canary::start(addr, &url);
        Self {
            proc,
            canary,
            started: Instant::now(),
            _media: media,
            _outside: outside,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((LOCAL, self.proc.port))
    }

    /// `rtsp://127.0.0.1:PORT`, without a path.
    pub(crate) fn base(&self) -> String {
        format!("rtsp://127.0.0.1:{}", self.proc.port)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base())
    }

    pub(crate) fn client(&self) -> Rtsp {
        Rtsp::connect(self.addr())
    }

    pub(crate) fn rtcp_addr(&self) -> SocketAddr {
        SocketAddr::from((LOCAL, self.proc.rtp_port + 1))
    }

    /// A new connection gets 200 to OPTIONS. Connection slots freed by the
    /// test's clients may take a moment to come back, so a 503 is retried
    /// for up to 2 s.
    pub(crate) fn options_ok(&self) -> Result<(), String> {
        let mut last = String::new();
        for _ in 0..20 {
            match Rtsp::connect(self.addr()).try_request("OPTIONS", "*", &[]) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) if r.status == 503 => last = "503".into(),
                Ok(r) => return Err(format!("answered {}", r.status)),
                Err(e) => last = e,
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Stops the canary and returns every violation of I1/I2 found.
    fn finish_problems(mut self) -> Vec<String> {
        let mut out = Vec::new();
        assert!(
            self.started.elapsed() < Duration::from_secs(CANARY_SECS as u64 - 5),
            "the test outlived the canary's clip"
        );
        // Keep watching a little after the last action (deferred effects), and
        // long enough for keepalives and a meaningful packet count.
        let min_end = self.started + Duration::from_secs(2);
        thread::sleep(
            Duration::from_secs(1).max(min_end.saturating_duration_since(Instant::now())),
        );
        let st = self.canary.stop();
        if !self.proc.alive() {
            out.push("I1: the server process exited".to_owned());
        }
        for p in self.proc.panics() {
            out.push(format!("I1: panic logged: {p}"));
        }
        if let Err(e) = self.options_ok() {
            out.push(format!("I1: OPTIONS after the test: {e}"));
        }
        out.extend(st.problems.iter().map(|p| format!("I2 canary: {p}")));
        if st.more_problems > 0 {
            out.push(format!(
                "I2 canary: ... and {} more problems",
                st.more_problems
            ));
        }
        let expected = st.elapsed.as_secs_f64() * f64::from(RATE / SPP);
        let got = st.packets as f64;
        if st.packets < 20 || got < expected * 0.9 - 5.0 || got > expected * 1.1 + 5.0 {
            out.push(format!(
                "I2 canary: {} packets in {:?}, expected about {expected:.0}",
                st.packets, st.elapsed
            ));
        }
        if st.max_gap > Duration::from_millis(500) {
            out.push(format!("I2 canary: stalled for {:?}", st.max_gap));
        }
        let mut rtts = st.rtts.clone();
        rtts.sort();
        if rtts.is_empty() {
            out.push("I2 canary: no keepalive completed".into());
        } else {
            // I2 asks for p99 < 50 ms; with a few dozen samples p99 is the
            // maximum, so one scheduler hiccup of a loaded debug build on a
            // shared CI machine must not fail it: allow 250 ms for the max.
            let p99 = rtts[(rtts.len() * 99).div_ceil(100) - 1];
            if p99 > Duration::from_millis(250) {
                out.push(format!("I2 canary: keepalive p99 {p99:?} ({rtts:?})"));
            }
        }
        out
    }
}

pub(crate) fn assert_no_failures(mut failures: Vec<String>, fx: Fixture) {
    failures.extend(fx.finish_problems());
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Records a failure (formatted like `format!`) unless `cond` holds, so
/// that one run reports every failed check.
macro_rules! check {
    ($failures:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $failures.push(format!($($fmt)+));
        }
    };
}
pub(crate) use check;
