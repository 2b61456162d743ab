//! A measuring client for the pacing of an RTSP/RTP server.
//!
//! ```text
//! cargo run --release --example pacing -- URL [--seconds N] [--csv FILE]
//! ```
//!
//! Speaks raw RTSP/1.0 over TCP (DESCRIBE, SETUP with a `client_port` pair on
//! an even port, PLAY), receives the first track's RTP over UDP, and stamps
//! each packet with the `Instant` its `recv` returned. After aligning on the
//! first packet, the send-time error of packet `i` is
//!
//! ```text
//! e_i = (arrival_i - arrival_0) - (ts_i - ts_0) / clock_rate
//! ```
//!
//! (positive: later than the media clock says). It prints p50/p99/max of
//! `|e|`, the drift (least-squares slope of `e` over the run in ms per minute,
//! and the mean `e` of the last 10 s minus that of the first 10 s), the packet
//! count and any sequence gaps. The clock rate comes from the SDP `a=rtpmap`.
//!
//! It stops at the server's RTCP BYE, after 2 s without packets, or after
//! `--seconds` of packets, whichever comes first, and then sends TEARDOWN.
//! While playing it keeps the session alive with an empty RTCP RR and a
//! GET_PARAMETER every 15 s. `--csv FILE` writes one line per packet
//! (`arrival_s,seq,ext_ts,e_ms`).
//!
//! Arrival times are taken in user space, so they include this process's
//! wake-up latency after the datagram lands in the socket: on a loaded
//! machine that shows up as error too.

use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Stop after this long without an RTP packet (once packets have started).
const QUIET: Duration = Duration::from_secs(2);
/// Give up if no first packet arrives within this.
const FIRST_PACKET_WAIT: Duration = Duration::from_secs(10);
/// Keepalive interval (the server's session timeout is 60 s by default).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Never record more than this many packets (bounds memory).
const MAX_PACKETS: usize = 20_000_000;
/// Window for the "last 10 s minus first 10 s" drift figure.
const DRIFT_WINDOW: f64 = 10.0;

struct Args {
    url: String,
    seconds: Option<f64>,
    csv: Option<String>,
}

fn usage() -> ! {
    eprintln!("usage: pacing URL [--seconds N] [--csv FILE]");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut url = None;
    let mut seconds = None;
    let mut csv = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v: f64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage());
                if !(v.is_finite() && v > 0.0) {
                    usage();
                }
                seconds = Some(v);
            }
            "--csv" => csv = Some(it.next().unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ if url.is_none() && !a.starts_with("--") => url = Some(a),
            _ => usage(),
        }
    }
    Args {
        url: url.unwrap_or_else(|| usage()),
        seconds,
        csv,
    }
}

/// `rtsp://host[:port]/...` → (host, port).
fn host_port(url: &str) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("rtsp://")
        .ok_or("the URL must start with rtsp://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or("bad IPv6 host")?;
        let port = p.strip_prefix(':').map_or(Ok(554), str::parse)?;
        return Ok((h.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), p.parse()?)),
        None => Ok((authority.to_owned(), 554)),
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Rtsp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    cseq: u32,
}

impl Rtsp {
    fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Self {
            stream,
            reader,
            cseq: 0,
        })
    }

    fn request(&mut self, method: &str, url: &str, headers: &[String]) -> Result<Reply> {
        self.cseq += 1;
        let mut req = format!(
            "{method} {url} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: rtspd-pacing\r\n",
            self.cseq
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes())?;
        let reply = self.read_reply()?;
        if reply.header("CSeq") != Some(self.cseq.to_string().as_str()) {
            return Err(format!("{method}: CSeq not echoed").into());
        }
        Ok(reply)
    }

    fn line(&mut self) -> Result<String> {
        let mut buf = Vec::new();
        let n = (&mut self.reader).take(8192).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Err("connection closed".into());
        }
        Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let status_line = self.line()?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        for _ in 0..256 {
            let h = self.line()?;
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            .map_or(0, |(_, v)| v.parse().unwrap_or(0));
        if len > 1 << 20 {
            return Err("body too large".into());
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// What the client needs from the SDP: the first track's control URL,
/// clock rate, and the clip duration.
struct Sdp {
    control: String,
    clock_rate: u32,
    rtpmap: String,
    duration: Option<f64>,
}

fn parse_sdp(body: &str) -> Result<Sdp> {
    let mut control = None;
    let mut rtpmap = None;
    let mut duration = None;
    let mut in_media = false;
    for line in body.lines() {
        let line = line.trim();
        if line.starts_with("m=") {
            if in_media {
                break; // only the first track
            }
            in_media = true;
        } else if let Some(v) = line.strip_prefix("a=control:") {
            if in_media {
                control = Some(v.to_owned());
            }
        } else if let Some(v) = line.strip_prefix("a=rtpmap:") {
            if in_media && rtpmap.is_none() {
                rtpmap = v.split_once(' ').map(|(_, enc)| enc.to_owned());
            }
        } else if let Some(v) = line.strip_prefix("a=range:npt=") {
            duration = v
                .split_once('-')
                .and_then(|(a, b)| Some(b.parse::<f64>().ok()? - a.parse::<f64>().ok()?));
        }
    }
    let rtpmap = rtpmap.ok_or("no a=rtpmap in the first m= section")?;
    let clock_rate = rtpmap
        .split('/')
        .nth(1)
        .and_then(|r| r.parse().ok())
        .filter(|&r: &u32| r > 0)
        .ok_or_else(|| format!("no clock rate in rtpmap {rtpmap:?}"))?;
    Ok(Sdp {
        control: control.unwrap_or_default(),
        clock_rate,
        rtpmap,
        duration,
    })
}

fn track_url(base: &str, control: &str) -> String {
    if control.starts_with("rtsp://") {
        control.to_owned()
    } else if control.is_empty() || control == "*" {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{control}")
    } else {
        format!("{base}/{control}")
    }
}

/// An RTP socket on an even port and RTCP on the next one.
fn bind_pair(ip: IpAddr) -> Result<(UdpSocket, UdpSocket)> {
    for _ in 0..100 {
        let rtp = UdpSocket::bind((ip, 0))?;
        let p = rtp.local_addr()?.port();
        if p % 2 != 0 || p == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)) {
            return Ok((rtp, rtcp));
        }
    }
    Err("no free even UDP port pair".into())
}

/// One received packet.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    seq: u16,
    ts: u32,
}

/// Receives RTP until `stop` is set, `deadline` (after the first packet)
/// passes, or the stream goes quiet.
fn receive(
    sock: &UdpSocket,
    stop: &AtomicBool,
    limit: Option<Duration>,
    hard_cap: Duration,
) -> Result<(Vec<Arrival>, &'static str)> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let started = Instant::now();
    let mut out: Vec<Arrival> = Vec::with_capacity(1 << 16);
    let mut buf = [0u8; 65_536];
    let mut last = Instant::now();
    let why = loop {
        if stop.load(Ordering::Relaxed) {
            break "RTCP BYE";
        }
        let now = Instant::now();
        match out.first() {
            None if now - started > FIRST_PACKET_WAIT => {
                return Err("no RTP packet within 10 s".into())
            }
            Some(first) => {
                if now - last > QUIET {
                    break "2 s without packets";
                }
                if limit.is_some_and(|l| now - first.at >= l) {
                    break "--seconds reached";
                }
                if now - first.at > hard_cap {
                    break "hard cap (clip duration + 60 s)";
                }
                if out.len() >= MAX_PACKETS {
                    break "packet cap";
                }
            }
            None => {}
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let at = Instant::now();
                if n < 12 || buf[0] >> 6 != 2 {
                    continue;
                }
                last = at;
                out.push(Arrival {
                    at,
                    seq: u16::from_be_bytes([buf[2], buf[3]]),
                    ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                });
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
    };
    Ok((out, why))
}

/// Whether a compound RTCP datagram holds a BYE (PT 203).
fn has_bye(mut d: &[u8]) -> bool {
    for _ in 0..32 {
        if d.len() < 4 || d[0] >> 6 != 2 {
            return false;
        }
        if d[1] == 203 {
            return true;
        }
        let len = (usize::from(u16::from_be_bytes([d[2], d[3]])) + 1) * 4;
        if len > d.len() {
            return false;
        }
        d = &d[len..];
    }
    false
}

/// An empty receiver report (RFC 3550 §6.4.2, RC = 0): keeps the session
/// alive on servers that count RTCP as liveness.
fn empty_rr(ssrc: u32) -> [u8; 8] {
    let s = ssrc.to_be_bytes();
    [0x80, 201, 0, 1, s[0], s[1], s[2], s[3]]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Report {
    text: String,
    csv: String,
}

fn analyse(packets: &[Arrival], clock_rate: u32, want_csv: bool) -> Report {
    let mut text = String::new();
    let mut csv = String::new();
    let Some(first) = packets.first() else {
        text.push_str("no packets\n");
        return Report { text, csv };
    };
    // Extend timestamps and sequence numbers across wraps, relative to the
    // previous packet.
    let rate = f64::from(clock_rate);
    let mut ext_ts: i64 = 0;
    let mut prev_ts = first.ts;
    let mut ext_seq: i64 = 0;
    let mut prev_seq = first.seq;
    let mut max_seq: i64 = 0;
    let (mut gaps, mut lost, mut dup_or_reordered) = (0u64, 0i64, 0u64);
    let mut gap_list: Vec<(i64, i64)> = Vec::new();
    let mut t = Vec::with_capacity(packets.len());
    let mut e = Vec::with_capacity(packets.len());
    if want_csv {
        csv.push_str("arrival_s,seq,ext_ts,e_ms\n");
    }
    for (i, p) in packets.iter().enumerate() {
        ext_ts += i64::from(p.ts.wrapping_sub(prev_ts) as i32);
        prev_ts = p.ts;
        ext_seq += i64::from(p.seq.wrapping_sub(prev_seq) as i16);
        prev_seq = p.seq;
        if ext_seq > max_seq + 1 {
            gaps += 1;
            lost += ext_seq - max_seq - 1;
            if gap_list.len() < 10 {
                gap_list.push((max_seq + 1, ext_seq - 1));
            }
        } else if ext_seq <= max_seq && i > 0 {
            dup_or_reordered += 1;
        }
        max_seq = max_seq.max(ext_seq);
        let arrival = (p.at - first.at).as_secs_f64();
        let err = arrival - ext_ts as f64 / rate;
        t.push(arrival);
        e.push(err);
        if want_csv {
            let _ = writeln!(csv, "{arrival:.6},{},{ext_ts},{:.4}", p.seq, err * 1e3);
        }
    }
    let n = e.len();
    let span = *t.last().unwrap_or(&0.0);
    let mut abs: Vec<f64> = e.iter().map(|x| x.abs()).collect();
    abs.sort_by(f64::total_cmp);
    let mut signed = e.clone();
    signed.sort_by(f64::total_cmp);
    // Least-squares slope of e over t.
    let mean_t = t.iter().sum::<f64>() / n as f64;
    let mean_e = e.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in t.iter().zip(&e) {
        sxy += (x - mean_t) * (y - mean_e);
        sxx += (x - mean_t) * (x - mean_t);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let window_mean = |lo: f64, hi: f64| {
        let (s, c) = t
            .iter()
            .zip(&e)
            .filter(|(x, _)| **x >= lo && **x < hi)
            .fold((0.0, 0u64), |(s, c), (_, y)| (s + y, c + 1));
        (c > 0).then(|| s / c as f64)
    };
    let head = window_mean(0.0, DRIFT_WINDOW);
    let tail = window_mean(span - DRIFT_WINDOW, f64::INFINITY);
    let ms = |x: f64| x * 1e3;
    let _ = writeln!(
        text,
        "packets            {n} over {span:.3} s ({:.1}/s)",
        if span > 0.0 {
            (n - 1) as f64 / span
        } else {
            0.0
        }
    );
    let _ = writeln!(
        text,
        "seq                {gaps} gaps, {lost} missing, {dup_or_reordered} duplicate/reordered"
    );
    for (a, b) in &gap_list {
        let _ = writeln!(text, "  missing ext seq {a}..={b}");
    }
    let _ = writeln!(
        text,
        "|e| ms             p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(percentile(&abs, 50.0)),
        ms(percentile(&abs, 99.0)),
        ms(percentile(&abs, 99.9)),
        ms(*abs.last().unwrap_or(&f64::NAN)),
    );
    let _ = writeln!(
        text,
        "e ms (signed)      min {:.3}  p1 {:.3}  p50 {:.3}  p99 {:.3}  max {:.3}",
        ms(signed[0]),
        ms(percentile(&signed, 1.0)),
        ms(percentile(&signed, 50.0)),
        ms(percentile(&signed, 99.0)),
        ms(signed[n - 1]),
    );
    let over = |lim: f64| abs.iter().filter(|x| **x > lim).count();
    let _ = writeln!(
        text,
        "|e| > 1 ms         {} packets; > 2 ms {}; > 5 ms {}",
        over(1e-3),
        over(2e-3),
        over(5e-3)
    );
    let _ = writeln!(text, "drift (LS slope)   {:+.4} ms/min", slope * 1e3 * 60.0);
    match (head, tail) {
        (Some(h), Some(tl)) if span >= 2.0 * DRIFT_WINDOW => {
            let _ = writeln!(
                text,
                "drift (windows)    mean e last 10 s {:+.3} ms - first 10 s {:+.3} ms = {:+.3} ms",
                ms(tl),
                ms(h),
                ms(tl - h)
            );
        }
        _ => {
            let _ = writeln!(text, "drift (windows)    run shorter than 20 s");
        }
    }
    Report { text, csv }
}

fn run(args: &Args) -> Result<()> {
    let (host, port) = host_port(&args.url)?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or("host did not resolve")?;
    let mut rtsp = Rtsp::connect(addr)?;
    let local_ip = rtsp.stream.local_addr()?.ip();

    let d = rtsp.request(
        "DESCRIBE",
        &args.url,
        &["Accept: application/sdp".to_owned()],
    )?;
    if d.status != 200 {
        return Err(format!("DESCRIBE: {}", d.status).into());
    }
    let sdp = parse_sdp(&d.body)?;
    let base = d
        .header("Content-Base")
        .unwrap_or(&args.url)
        .trim_end_matches('/')
        .to_owned();
    let track = track_url(&base, &sdp.control);

    let (rtp, rtcp) = bind_pair(local_ip)?;
    let cport = rtp.local_addr()?.port();
    let s = rtsp.request(
        "SETUP",
        &track,
        &[format!(
            "Transport: RTP/AVP;unicast;client_port={cport}-{}",
            cport + 1
        )],
    )?;
    if s.status != 200 {
        return Err(format!("SETUP: {}", s.status).into());
    }
    let session = s
        .header("Session")
        .ok_or("no Session in the SETUP reply")?
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let transport = s.header("Transport").unwrap_or("").to_owned();
    let server_rtcp = transport
        .split(';')
        .find_map(|p| p.trim().strip_prefix("server_port="))
        .and_then(|p| p.split('-').nth(1))
        .and_then(|p| p.parse::<u16>().ok())
        .map(|p| SocketAddr::new(addr.ip(), p));

    // Start the receivers before PLAY so the first packet is not missed.
    let bye = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let rtcp = Arc::new(rtcp);
    let rtcp_thread = {
        let (bye, done, rtcp) = (bye.clone(), done.clone(), rtcp.clone());
        thread::spawn(move || {
            let _ = rtcp.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = rtcp.recv(&mut buf) {
                    if has_bye(&buf[..n]) {
                        bye.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        })
    };
    let limit = args.seconds.map(Duration::from_secs_f64);
    let hard_cap = Duration::from_secs_f64(sdp.duration.unwrap_or(3600.0).min(86_400.0) + 60.0);
    let rtp_thread = {
        let bye = bye.clone();
        thread::spawn(move || receive(&rtp, &bye, limit, hard_cap))
    };

    let p = rtsp.request(
        "PLAY",
        &base,
        &[format!("Session: {session}"), "Range: npt=0-".to_owned()],
    )?;
    if p.status != 200 {
        done.store(true, Ordering::Relaxed);
        return Err(format!("PLAY: {}", p.status).into());
    }
    eprintln!(
        "playing {} ({}, {} Hz{}), RTP-Info: {}",
        args.url,
        sdp.rtpmap,
        sdp.clock_rate,
        sdp.duration
            .map(|d| format!(", {d:.3} s"))
            .unwrap_or_default(),
        p.header("RTP-Info").unwrap_or("-")
    );

    // Keep the session alive until the receiver finishes.
    let ssrc = 0x7061_6365; // "pace"
    let mut last_keepalive = Instant::now();
    while !rtp_thread.is_finished() {
        thread::sleep(Duration::from_millis(100));
        if last_keepalive.elapsed() >= KEEPALIVE {
            last_keepalive = Instant::now();
            if let Some(to) = server_rtcp {
                let _ = rtcp.send_to(&empty_rr(ssrc), to);
            }
            let r = rtsp.request("GET_PARAMETER", &base, &[format!("Session: {session}")]);
            if let Err(e) = r {
                eprintln!("keepalive failed: {e}");
            }
        }
    }
    let (packets, why) = rtp_thread.join().map_err(|_| "receiver panicked")??;
    done.store(true, Ordering::Relaxed);
    let _ = rtcp_thread.join();
    let _ = rtsp.request("TEARDOWN", &base, &[format!("Session: {session}")]);

    let report = analyse(&packets, sdp.clock_rate, args.csv.is_some());
    println!("url                {}", args.url);
    println!("clock rate         {} ({})", sdp.clock_rate, sdp.rtpmap);
    println!("stopped by         {why}");
    print!("{}", report.text);
    if let Some(path) = &args.csv {
        std::fs::write(path, report.csv)?;
        println!("csv                {path}");
    }
    Ok(())
}

fn main() {
    let args = parse_args();
    if let Err(e) = run(&args) {
        eprintln!("pacing: {e}");
        std::process::exit(1);
    }
}
