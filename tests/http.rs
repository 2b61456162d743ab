//! The HTTP side against the built binary: `/metrics` read by Prometheus's
//! own parser and checked against what clients saw, the JSON API (and
//! kicking a playing ffmpeg), SDP over HTTP against DESCRIBE, the status
//! page in headless Chromium, and hostile HTTP input while an RTSP canary
//! plays (docs/ROBUSTNESS.md, section "HTTP").

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::http::{get_ok, prometheus_families, request, sample, scrape};
use common::tools::{ffmpeg_background, ffprobe, run_tool};
use common::udp::bye_within;
use common::{bundled_media, rtp_seq, setup_udp, Rtsp, Server, UdpPair};
use rtspd::proto::rtcp::{write_receiver_report, ReportBlock};

fn http(server: &Server) -> SocketAddr {
    server.http.expect("HTTP runs")
}

/// A live channel looping a bundled clip, for readers that never end.
fn radio() -> String {
    format!(
        "radio=file:{}",
        bundled_media().join("tones-8k-mono.wav").display()
    )
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `limit`.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_parse_with_the_prometheus_parser() {
    let server = Server::start_http(&["--live", &radio()], "warn");
    // One session, so the labelled families have series.
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let url = server.url("live/radio");
    let id = setup_udp(&mut c, &url, &pair);
    let play = c.request("PLAY", &url, &[&format!("Session: {id}")]);
    assert_eq!(play.status, 200);
    assert!(pair.recv_rtp().is_some());
    let text = scrape(http(&server));
    let families = prometheus_families(&text);
    // The parser names counter families without `_total`.
    let expected = [
        ("rtspd_build_info", "gauge"),
        ("rtspd_connections", "gauge"),
        ("rtspd_sessions", "gauge"),
        ("rtspd_path_readers", "gauge"),
        ("rtspd_sessions_started", "counter"),
        ("rtspd_redirects_sent", "counter"),
        ("rtspd_requests", "counter"),
        ("rtspd_refused", "counter"),
        ("rtspd_rtp_packets_sent", "counter"),
        ("rtspd_rtp_bytes_sent", "counter"),
        ("rtspd_path_bytes_sent", "counter"),
        ("rtspd_rtcp_packets_received", "counter"),
        ("rtspd_send_dropped", "counter"),
        ("rtspd_pacing_lateness_seconds", "histogram"),
        ("rtspd_listener_loss_ratio", "histogram"),
        ("rtspd_listener_jitter_seconds", "histogram"),
    ];
    for (name, kind) in expected {
        let (t, n) = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(t, kind, "{name}");
        assert!(*n > 0, "{name} has no samples:\n{text}");
    }
    assert_eq!(families.len(), expected.len(), "{families:?}");
    // Every limit has its series from the start; three session states.
    assert_eq!(
        families["rtspd_refused"].1,
        rtspd::proto::limit::Limit::ALL.len()
    );
    assert_eq!(families["rtspd_sessions"].1, 3);
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(&text, "rtspd_build_info", &format!("version=\"{v}\"")),
        Some(1.0)
    );
    assert_eq!(sample(&text, "rtspd_connections", ""), Some(1.0));
    assert_eq!(
        sample(&text, "rtspd_sessions", "state=\"playing\""),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "rtspd_path_readers", "path=\"live/radio\""),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "rtspd_requests_total",
            "method=\"SETUP\",status=\"200\""
        ),
        Some(1.0)
    );
    assert!(sample(&text, "rtspd_pacing_lateness_seconds_count", "").unwrap() >= 1.0);
}

#[test]
fn rtp_packets_sent_match_what_the_load_tester_received() {
    let server = Server::start_http(&[], "warn");
    let addr = http(&server);
    let before = scrape(addr);
    let packets = |t: &str| sample(t, "rtspd_rtp_packets_sent_total", "").unwrap();
    let url = server.url("tones-8k-mono.wav");
    let run = run_tool(
        env!("CARGO_BIN_EXE_rtspd"),
        &["load", &url, "-n", "8", "-d", "2"],
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    let received = json["packets_received"].as_f64().unwrap();
    assert!(received > 8.0 * 90.0, "{json}");
    // The sessions tore down; what they were sent is counted by now.
    let after = scrape(addr);
    let sent = packets(&after) - packets(&before);
    assert!(
        (sent - received).abs() <= received * 0.01,
        "server counted {sent}, the tester received {received}"
    );
    assert_eq!(
        sample(&after, "rtspd_sessions_started_total", ""),
        Some(8.0)
    );
    let path_bytes = sample(
        &after,
        "rtspd_path_bytes_sent_total",
        "path=\"tones-8k-mono.wav\"",
    )
    .unwrap();
    assert_eq!(
        Some(path_bytes),
        sample(&after, "rtspd_rtp_bytes_sent_total", "")
    );
    // 8 kHz L16 at 20 ms: 320 payload bytes and a 12-byte header.
    assert_eq!(path_bytes, sent * 332.0);
}

#[test]
fn a_receiver_report_lands_in_the_histograms_and_the_api() {
    let server = Server::start_http(&[], "warn");
    let addr = http(&server);
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let url = server.url("tones-8k-mono.wav");
    c.request("DESCRIBE", &url, &[]);
    let setup = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
    assert_eq!(setup.status, 200);
    let id = setup.session();
    let play = c.request("PLAY", &url, &[&format!("Session: {id}")]);
    assert_eq!(play.status, 200);
    // A quarter lost, and jitter of 80 ticks of the 8 kHz clock: 10 ms.
    let mut rr = bytes::BytesMut::new();
    let block = ReportBlock {
        ssrc: setup.ssrc(),
        fraction_lost: 64,
        cumulative_lost: 7,
        highest_seq: 100,
        jitter: 80,
        lsr: 0,
        dlsr: 0,
    };
    write_receiver_report(&mut rr, 0x5eed, &[block], "test");
    pair.rtcp
        .send_to(&rr, ("127.0.0.1", server.rtp_port + 1))
        .unwrap();
    let text = eventually(Duration::from_secs(5), || {
        let t = scrape(addr);
        (sample(&t, "rtspd_listener_loss_ratio_count", "") == Some(1.0)).then_some(t)
    })
    .expect("the report was observed");
    let bucket = |name: &str, le: &str| sample(&text, name, &format!("le=\"{le}\"")).unwrap();
    let loss = "rtspd_listener_loss_ratio_bucket";
    assert_eq!(bucket(loss, "0.2"), 0.0);
    assert_eq!(bucket(loss, "0.5"), 1.0);
    assert_eq!(
        sample(&text, "rtspd_listener_loss_ratio_sum", ""),
        Some(0.25)
    );
    let jitter = "rtspd_listener_jitter_seconds_bucket";
    assert_eq!(bucket(jitter, "0.005"), 0.0);
    assert_eq!(bucket(jitter, "0.01"), 1.0);
    assert_eq!(bucket(jitter, "+Inf"), 1.0);
    let sum = sample(&text, "rtspd_listener_jitter_seconds_sum", "").unwrap();
    assert!((sum - 0.01).abs() < 1e-9, "{sum}");
    assert_eq!(
        sample(&text, "rtspd_rtcp_packets_received_total", ""),
        Some(1.0)
    );
    let s: serde_json::Value =
        serde_json::from_str(&get_ok(addr, "/api/v1/sessions").body).unwrap();
    let rr = &s["sessions"][0]["rr"];
    assert_eq!(rr["fraction_lost"], 0.25);
    assert_eq!(rr["cumulative_lost"], 7);
    assert!(
        (rr["jitter_ms"].as_f64().unwrap() - 10.0).abs() < 1e-9,
        "{rr}"
    );
}

#[test]
fn refusals_at_max_sessions_per_ip_are_counted_exactly() {
    let server = Server::start_http(&["--max-sessions-per-ip", "2"], "warn");
    let addr = http(&server);
    let refused = |t: &str| {
        sample(t, "rtspd_refused_total", "limit=\"max_sessions_per_ip\"")
            .expect("the series exists from the start")
    };
    assert_eq!(refused(&scrape(addr)), 0.0);
    let url = server.url("tones-8k-mono.wav");
    let mut c = Rtsp::connect(server.addr());
    let pairs: Vec<UdpPair> = (0..5).map(|_| UdpPair::bind()).collect();
    let statuses: Vec<u16> = pairs
        .iter()
        .map(|p| c.request("SETUP", &url, &[&p.transport()]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 503, 503, 503]);
    let text = scrape(addr);
    assert_eq!(refused(&text), 3.0);
    assert_eq!(
        sample(&text, "rtspd_refused_total", "limit=\"max_sessions\""),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "rtspd_requests_total",
            "method=\"SETUP\",status=\"503\""
        ),
        Some(3.0)
    );
}

/// Every file under the bundled media folder, '/'-separated.
fn media_files() -> BTreeSet<String> {
    let root = bundled_media();
    let mut out = BTreeSet::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy();
                out.insert(rel.replace('\\', "/"));
            }
        }
    }
    out
}

#[test]
fn api_paths_match_the_media_folder() {
    let server = Server::start_http(&["--live", &radio()], "warn");
    let body = get_ok(http(&server), "/api/v1/paths").body;
    let paths: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let clips: BTreeSet<String> = paths
        .iter()
        .filter(|p| p["kind"] == "clip")
        .map(|p| p["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(clips, media_files());
    let by = |path: &str| paths.iter().find(|p| p["path"] == path).unwrap().clone();
    let tones = by("tones-8k-mono.wav");
    assert_eq!(tones["url"], server.url("tones-8k-mono.wav"));
    assert_eq!(tones["duration_s"], 5.0);
    assert_eq!(tones["readers"], 0);
    assert_eq!(
        tones["tracks"],
        serde_json::json!([{"media": "audio", "codec": "L16", "clock_rate": 8000, "channels": 1}])
    );
    let video = by("testsrc-320x240.mp4");
    assert_eq!(video["tracks"][0]["codec"], "H264");
    assert_eq!(video["tracks"][0]["width"], 320);
    assert_eq!(video["tracks"][0]["height"], 240);
    assert_eq!(video["tracks"][1]["codec"], "mpeg4-generic");
    let live = by("live/radio");
    assert_eq!(live["kind"], "live");
    assert_eq!(live["duration_s"], serde_json::Value::Null);
    assert_eq!(live["url"], server.url("live/radio"));
    assert_eq!(live["tracks"][0]["clock_rate"], 8000);
}

#[test]
fn api_sessions_and_kicking_a_playing_ffmpeg() {
    common::tools::require("ffmpeg");
    let server = Server::start_http(&["--live", &radio()], "rtspd=info");
    let addr = http(&server);
    let url = server.url("live/radio");
    // A raw UDP session, oldest, then ffmpeg's.
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let raw_id = setup_udp(&mut c, &url, &pair);
    assert_eq!(
        c.request("PLAY", &url, &[&format!("Session: {raw_id}")])
            .status,
        200
    );
    let mut ffmpeg = ffmpeg_background(&["-rtsp_transport", "udp", "-i", &url, "-f", "null", "-"]);
    let sessions = || -> serde_json::Value {
        serde_json::from_str(&get_ok(addr, "/api/v1/sessions").body).unwrap()
    };
    let list = eventually(Duration::from_secs(15), || {
        let s = sessions();
        let both = s["total"] == 2
            && s["sessions"][1]["state"] == "playing"
            && s["sessions"][1]["rtp_packets_sent"].as_u64() > Some(0);
        both.then_some(s)
    })
    .expect("ffmpeg's session plays");
    let raw = &list["sessions"][0];
    assert_eq!(raw["id"], raw_id.as_str());
    assert_eq!(raw["path"], "live/radio");
    assert_eq!(raw["transport"], "udp");
    assert_eq!(raw["state"], "playing");
    assert_eq!(
        raw["client"],
        c.stream().local_addr().unwrap().to_string().as_str()
    );
    let started = raw["started"].as_str().unwrap();
    assert!(
        started.len() >= 20 && started.ends_with('Z') && started.as_bytes()[10] == b'T',
        "{started}"
    );
    assert!(raw["rtp_packets_sent"].as_u64().unwrap() > 0);
    assert_eq!(
        raw["rtp_bytes_sent"].as_u64().unwrap(),
        raw["rtp_packets_sent"].as_u64().unwrap() * 332
    );
    assert!(raw["rr"].is_null(), "no report sent yet: {raw}");
    let ff_id = list["sessions"][1]["id"].as_str().unwrap().to_owned();

    // Paging: one at a time, with the total.
    let page: serde_json::Value =
        serde_json::from_str(&get_ok(addr, "/api/v1/sessions?limit=1&offset=1").body).unwrap();
    assert_eq!(page["total"], 2);
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(page["sessions"][0]["id"], ff_id.as_str());

    // Kick ffmpeg: it hears BYE and stops.
    let del = request(addr, "DELETE", &format!("/api/v1/sessions/{ff_id}"), &[]);
    assert_eq!(del.status, 204, "{del:?}");
    assert!(
        ffmpeg.exited_within(Duration::from_secs(15)).is_some(),
        "ffmpeg still plays after its session was kicked"
    );
    // Kick the raw one: BYE, and its next request gets 454.
    let del = request(addr, "DELETE", &format!("/api/v1/sessions/{raw_id}"), &[]);
    assert_eq!(del.status, 204);
    assert!(bye_within(&pair.rtcp, Duration::from_secs(3)), "no BYE");
    let next = c.request("GET_PARAMETER", &url, &[&format!("Session: {raw_id}")]);
    assert_eq!(next.status, 454);
    let again = request(addr, "DELETE", &format!("/api/v1/sessions/{raw_id}"), &[]);
    assert_eq!(again.status, 404);
    assert_eq!(sessions()["total"], 0);
    // Each ended session left one summary line.
    let ends: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("session ended"))
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    let raw_end = ends.iter().find(|l| l.contains(&raw_id)).unwrap();
    for field in [
        "path=live/radio",
        "transport=\"udp\"",
        "duration_s=",
        "packets=",
        "bytes=",
        "rr_fraction_lost=",
        "rr_jitter_ms=",
        "reason=\"kicked over HTTP\"",
    ] {
        assert!(raw_end.contains(field), "{field} in {raw_end}");
    }
    let client = format!("client={}", c.stream().local_addr().unwrap());
    assert!(raw_end.contains(&client), "{raw_end}");
}

/// The SDP lines that describe media (everything but origin and control).
fn media_lines(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter(|l| l.starts_with("m=") || l.starts_with("a=rtpmap") || l.starts_with("a=fmtp"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn sdp_over_http_is_describe_with_absolute_playable_control_urls() {
    let server = Server::start_http(&[], "warn");
    let addr = http(&server);
    let url = server.url("testsrc-320x240.mp4");
    let r = get_ok(addr, "/sdp/testsrc-320x240.mp4");
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let mut c = Rtsp::connect(server.addr());
    let d = c.request("DESCRIBE", &url, &["Accept: application/sdp"]);
    let described = String::from_utf8(d.body.clone()).unwrap();
    assert_eq!(media_lines(&r.body), media_lines(&described));
    assert_eq!(media_lines(&r.body).len(), 6, "{}", r.body);
    let controls: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("a=control:"))
        .collect();
    assert_eq!(
        controls,
        [
            url.clone(),
            format!("{url}/trackID=0"),
            format!("{url}/trackID=1")
        ]
    );
    // The aggregate control URL plays.
    let probe = ffprobe(&[
        "-rtsp_transport",
        "tcp",
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        controls[0],
    ]);
    let codecs: BTreeSet<&str> = probe.stdout.lines().map(str::trim).collect();
    assert_eq!(codecs, BTreeSet::from(["aac", "h264"]), "{}", probe.stdout);
    for missing in [
        "/sdp/nope.wav",
        "/sdp/../Cargo.toml",
        "/sdp/%2e%2e/Cargo.toml",
    ] {
        assert_eq!(request(addr, "GET", missing, &[]).status, 404, "{missing}");
    }
}

#[test]
fn status_page_in_headless_chromium_shows_every_url() {
    common::tools::require("chromium");
    let server = Server::start_http(&["--live", &radio()], "warn");
    let addr = http(&server);
    let profile = tempfile::tempdir().unwrap();
    let run = run_tool(
        "chromium",
        &[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("http://{addr}/"),
        ],
        Duration::from_secs(90),
    );
    let dom = run.stdout;
    assert!(dom.contains("<table"), "no page: {dom}\n{}", run.stderr);
    // The script ran (it installs the copy buttons and marks the body).
    assert!(dom.contains("data-js=\"on\""), "{dom}");
    let paths: Vec<serde_json::Value> =
        serde_json::from_str(&get_ok(addr, "/api/v1/paths").body).unwrap();
    assert_eq!(paths.len(), media_files().len() + 1);
    for p in &paths {
        let url = p["url"].as_str().unwrap();
        assert!(
            dom.contains(&format!("data-url=\"{url}\"")),
            "{url} in {dom}"
        );
        assert!(
            dom.contains(&format!("<code>{url}</code>")),
            "{url} in {dom}"
        );
    }
    assert!(dom.contains("href=\"/sdp/testsrc-320x240.mp4\""));
    assert!(dom.contains("http-equiv=\"refresh\""));
}

/// Reads until EOF or `limit`; returns what arrived and whether the server
/// closed.
fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    common::http::parse(raw).map(|r| r.status)
}

#[test]
fn bad_http_input_gets_clean_errors_and_the_canary_loses_nothing() {
    let server = Server::start_http(
        &[
            "--live",
            &radio(),
            "--http-read-timeout",
            "2",
            "--http-max-connections",
            "4",
        ],
        "warn",
    );
    let addr = http(&server);
    // The canary: a UDP reader of the live channel for the whole test.
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let url = server.url("live/radio");
    let id = setup_udp(&mut c, &url, &pair);
    assert_eq!(
        c.request("PLAY", &url, &[&format!("Session: {id}")]).status,
        200
    );
    let canary = thread::spawn(move || {
        let got = pair.collect(Duration::from_secs(9));
        (got, pair)
    });
    thread::sleep(Duration::from_millis(300));

    // H1: a 20 KiB header, over the 16 KiB head cap.
    let big = format!("X-Big: {}", "a".repeat(20 * 1024));
    assert_eq!(request(addr, "GET", "/metrics", &[&big]).status, 431);
    // H2: more header lines than --http-max-headers.
    let many: Vec<String> = (0..100).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(request(addr, "GET", "/metrics", &many).status, 431);
    // H3, H4: unknown path, wrong method (with Allow).
    assert_eq!(request(addr, "GET", "/nope", &[]).status, 404);
    let wrong = request(addr, "POST", "/metrics", &[]);
    assert_eq!(wrong.status, 405);
    assert!(wrong.header("allow").unwrap().contains("GET"));
    assert_eq!(request(addr, "PUT", "/api/v1/sessions/x", &[]).status, 405);
    // H5: a declared body over the cap.
    let body = request(
        addr,
        "POST",
        "/api/v1/reload",
        &["Content-Length: 10000000"],
    );
    assert_eq!(body.status, 413);
    // H6: no reload hook in this binary.
    assert_eq!(request(addr, "POST", "/api/v1/reload", &[]).status, 503);
    // H7: a head trickled past the read timeout is cut off (408 or close).
    let mut slow = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let mut cut = false;
    // Valid lines that never end the head.
    let lines = std::iter::once("GET /metrics HTTP/1.1\r\n")
        .chain(["Host: x\r\n", "X-A: 1\r\n"].into_iter().cycle());
    for chunk in lines.take(12) {
        if slow.write_all(chunk.as_bytes()).is_err() {
            cut = true;
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    let (answer, closed) = read_until_close(&mut slow, Duration::from_secs(5));
    let elapsed = start.elapsed();
    assert!(cut || closed, "slow client still connected");
    assert!(
        matches!(status_of(&answer), None | Some(408)),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(elapsed < Duration::from_secs(9), "{elapsed:?}");
    // H8: connections beyond --http-max-connections are closed at once;
    // the held ones free their slots.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(addr).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_close(&mut extra, Duration::from_secs(3));
    assert!(closed && answer.is_empty(), "{answer:?}");
    drop(held);
    // Until the server has seen the held ones close, a new one may be
    // refused too: count those.
    let mut closed_early = 0.0;
    let healthy = eventually(Duration::from_secs(3), || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let (raw, _) = read_until_close(&mut s, Duration::from_secs(2));
        if raw.is_empty() {
            closed_early += 1.0;
        }
        (status_of(&raw) == Some(200)).then_some(())
    });
    assert!(
        healthy.is_some(),
        "/healthz after the held connections closed"
    );
    let refused = sample(
        &scrape(addr),
        "rtspd_refused_total",
        "limit=\"http_max_connections\"",
    );
    assert_eq!(refused, Some(1.0 + closed_early));

    let (got, _pair) = canary.join().unwrap();
    let seqs: Vec<u16> = got.iter().map(|(p, _)| rtp_seq(p)).collect();
    // 8.7 s of 20 ms packets (the collection started before the attacks).
    assert!(seqs.len() > 400, "canary got {} packets", seqs.len());
    let gaps: Vec<(u16, u16)> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(gaps.is_empty(), "canary sequence gaps: {gaps:?}");
    assert!(server.panics().is_empty());
}

#[test]
fn a_taken_default_port_warns_and_a_taken_explicit_address_stops_the_start() {
    // Whoever holds 127.0.0.1:8080 (this test, or another test's server),
    // it is taken while the server starts.
    let _held = std::net::TcpListener::bind("127.0.0.1:8080");
    let server = Server::start_logged(&[], "warn");
    assert_eq!(server.http, None, "no HTTP on a taken default port");
    let warned = eventually(Duration::from_secs(5), || {
        let log = server.log_lines();
        log.into_iter()
            .find(|l| l.contains("WARN") && l.contains("running without HTTP"))
    });
    assert!(warned.is_some(), "{:?}", server.log_lines());
    assert!(server.url("x").starts_with("rtsp://"), "RTSP runs");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let media = bundled_media();
    let args = [
        &common::LOOPBACK_ARGS[..],
        &[media.to_str().unwrap(), "--http", &addr],
    ]
    .concat();
    let run = run_tool(env!("CARGO_BIN_EXE_rtspd"), &args, Duration::from_secs(20));
    assert!(!run.status.success());
    assert!(
        run.stderr
            .contains(&format!("cannot bind the HTTP address {addr}")),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("listening"), "{}", run.stdout);
}
