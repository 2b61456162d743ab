//! Live reload (issue 11): `SIGHUP` re-reads `--config` and applies the
//! difference while listeners play.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::http;
use common::interleaved::{gaps, read_frames, tcp_listener};
use common::udp::bye_within;
use common::{int_spec, rtp_seq, rtp_ssrc, setup_udp, write_wav, Rtsp, Server, UdpPair};

/// A config file with `[limits] max_sessions_per_ip` and one `file:`
/// channel per name, all looping `wav`.
fn config(max_per_ip: u32, channels: &[&str], wav: &Path) -> String {
    let mut s =
        format!("[http]\nlisten = \"off\"\n\n[limits]\nmax_sessions_per_ip = {max_per_ip}\n");
    for name in channels {
        s += &format!(
            "\n[[live]]\nname = \"{name}\"\nsource = \"file:{}\"\ncodec = \"pcmu\"\n",
            wav.display()
        );
    }
    s
}

/// Polls DESCRIBE of `url` until it answers `status` (bounded).
fn wait_for_status(server: &Server, url: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = Rtsp::connect(server.addr()).request("DESCRIBE", url, &[]);
        if r.status == status {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A UDP reader and a TCP reader play channel `keep`, a UDP reader plays
/// `gone`. The file is rewritten to drop `gone`, add `fresh` and lower the
/// per-IP session cap, and the server gets SIGHUP: `fresh` becomes
/// playable, `gone`'s reader hears BYE and its session is gone (454), the
/// new cap refuses the next session, and `keep`'s readers lose nothing,
/// with continuous sequence numbers and one SSRC. A broken file at the next
/// SIGHUP changes nothing.
#[test]
fn reload_while_streaming() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let wav = cfg_dir.path().join("tone.wav");
    let samples: Vec<i16> = (0..8000)
        .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
        .collect();
    write_wav(&wav, int_spec(8000, 1, 16), samples);
    let cfg = cfg_dir.path().join("rtspd.toml");
    std::fs::write(&cfg, config(10, &["keep", "gone"], &wav)).expect("write config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_with(|_| {}, &["--config", &cfg_arg]);
    let (keep, gone, fresh) = (
        server.url("live/keep"),
        server.url("live/gone"),
        server.url("live/fresh"),
    );
    assert!(
        wait_for_status(&server, &fresh, 404),
        "fresh exists before the reload"
    );

    // Readers of `keep` (UDP and TCP) and of `gone` (UDP).
    let mut c_keep = Rtsp::connect(server.addr());
    let keep_pair = UdpPair::bind();
    let keep_id = setup_udp(&mut c_keep, &keep, &keep_pair);
    let r = c_keep.request("PLAY", &keep, &[&format!("Session: {keep_id}")]);
    assert_eq!(r.status, 200, "{r}");
    let (tcp, pending) = tcp_listener(&server, &keep, None);
    let mut c_gone = Rtsp::connect(server.addr());
    let gone_pair = UdpPair::bind();
    let gone_id = setup_udp(&mut c_gone, &gone, &gone_pair);
    let r = c_gone.request("PLAY", &gone, &[&format!("Session: {gone_id}")]);
    assert_eq!(r.status, 200, "{r}");

    let listen = Duration::from_secs(4);
    let tcp_reader = thread::spawn(move || read_frames(tcp, pending, listen));
    let udp_reader = thread::spawn(move || {
        let pkts = keep_pair.collect(listen);
        let seqs: Vec<u16> = pkts.iter().map(|(p, _)| rtp_seq(p)).collect();
        let ssrcs: Vec<u32> = pkts.iter().map(|(p, _)| rtp_ssrc(p)).collect();
        (seqs, ssrcs)
    });
    thread::sleep(Duration::from_secs(1));

    // The reload: `gone` out, `fresh` in, at most 3 sessions per IP.
    std::fs::write(&cfg, config(3, &["keep", "fresh"], &wav)).expect("write config");
    server.signal("HUP");
    assert!(
        wait_for_status(&server, &fresh, 200),
        "fresh never became playable"
    );
    assert!(
        bye_within(&gone_pair.rtcp, Duration::from_secs(3)),
        "the removed channel's reader heard no BYE"
    );
    assert!(
        wait_for_status(&server, &gone, 404),
        "gone is still described"
    );
    let r = c_gone.request("PLAY", &gone, &[&format!("Session: {gone_id}")]);
    assert_eq!(r.status, 454, "a removed channel's session: {r}");

    // `fresh` plays; it is the 3rd session from 127.0.0.1, the 4th is refused.
    let mut c_fresh = Rtsp::connect(server.addr());
    let fresh_pair = UdpPair::bind();
    let fresh_id = setup_udp(&mut c_fresh, &fresh, &fresh_pair);
    let r = c_fresh.request("PLAY", &fresh, &[&format!("Session: {fresh_id}")]);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        fresh_pair.collect(Duration::from_millis(500)).len() >= 10,
        "the added channel sent nothing"
    );
    let extra = UdpPair::bind();
    let r = Rtsp::connect(server.addr()).request(
        "SETUP",
        &format!("{keep}/trackID=0"),
        &[&extra.transport()],
    );
    assert_eq!(
        r.status, 503,
        "a 4th session under the reloaded cap of 3: {r}"
    );

    // The untouched readers lost nothing.
    let tcp_seqs = tcp_reader.join().expect("tcp reader");
    let (udp_seqs, ssrcs) = udp_reader.join().expect("udp reader");
    for (name, seqs) in [("UDP", &udp_seqs), ("TCP", &tcp_seqs)] {
        assert!(
            seqs.len() >= 150,
            "{name} reader got {} packets in 4 s",
            seqs.len()
        );
        assert_eq!(
            gaps(seqs),
            0,
            "{name} reader: sequence gaps across the reload"
        );
    }
    assert!(
        ssrcs.windows(2).all(|w| w[0] == w[1]),
        "the SSRC changed across the reload"
    );

    // A broken file is refused whole: `fresh` stays, `keep` plays on.
    std::fs::write(&cfg, "[limits]\nmax_sessions_per_ip = \"many\"\n").expect("write config");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let log = server.log_lines();
        if let Some(line) = log.iter().find(|l| l.contains("reload refused")) {
            break line.clone();
        }
        assert!(Instant::now() < deadline, "no refusal logged: {log:?}");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        refused.contains("max_sessions_per_ip"),
        "the refusal names the key: {refused}"
    );
    assert!(
        wait_for_status(&server, &fresh, 200),
        "a broken file removed fresh"
    );
    let r = c_keep.request("GET_PARAMETER", &keep, &[&format!("Session: {keep_id}")]);
    assert_eq!(r.status, 200, "keep's session after a broken reload: {r}");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

/// The log level follows the file at a reload (when `RUST_LOG` does not
/// fix it): a DEBUG line appears only after the file says `debug`; a
/// setting that needs a restart is reported as such and keeps its value.
#[test]
fn reload_changes_the_log_level_and_reports_restart_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("rtspd.toml");
    let file = |level: &str, rtp_port: u16| {
        format!(
            "[server]\nmedia = \"{}\"\nbind = \"127.0.0.1\"\nport = 0\nrtp_port = {rtp_port}\n\n\
             [http]\nlisten = \"off\"\n\n[log]\nlevel = \"{level}\"\n",
            dir.path().display()
        )
    };
    std::fs::write(&cfg, file("warn", 0)).expect("write config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_args_leveled_by_config(&["--config", &cfg_arg], dir.path());
    // A garbage request is logged at DEBUG ("unparseable request").
    let garbage = |server: &Server| {
        let mut c = Rtsp::connect(server.addr());
        let _ = c.write(b"\x01\x02 nonsense\r\n\r\n");
        let _ = c.read_response(Duration::from_secs(2));
    };
    let debug_lines = |server: &Server| {
        server
            .log_lines()
            .iter()
            .filter(|l| l.contains("DEBUG") && l.contains("unparseable request"))
            .count()
    };
    garbage(&server);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(debug_lines(&server), 0, "DEBUG logged at level warn");

    std::fs::write(&cfg, file("debug", 40000)).expect("write config");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log_lines()
        .iter()
        .any(|l| l.contains("needs a restart"))
    {
        assert!(
            Instant::now() < deadline,
            "no restart warning: {:?}",
            server.log_lines()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let log = server.log_lines();
    assert!(
        log.iter()
            .any(|l| l.contains("needs a restart") && l.contains("rtp_port: 40000")),
        "{log:?}"
    );
    garbage(&server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while debug_lines(&server) == 0 {
        assert!(
            Instant::now() < deadline,
            "no DEBUG line after the reload: {:?}",
            server.log_lines()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The RTP pair is the one bound at start.
    let mut c = Rtsp::connect(server.addr());
    let r = c.request("OPTIONS", "*", &[]);
    assert_eq!(r.status, 200);
    assert_ne!(server.rtp_port, 40000);
}

/// A burst of SIGHUPs while the file flips a channel in and out: reloads
/// run one at a time, the untouched reader loses nothing, and the last
/// file wins.
#[test]
fn a_burst_of_reloads_loses_nothing_and_the_last_file_wins() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let wav = cfg_dir.path().join("tone.wav");
    let samples: Vec<i16> = (0..8000).map(|i| (i % 200) as i16 * 40).collect();
    write_wav(&wav, int_spec(8000, 1, 16), samples);
    let cfg = cfg_dir.path().join("rtspd.toml");
    std::fs::write(&cfg, config(10, &["keep"], &wav)).expect("write config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_with(|_| {}, &["--config", &cfg_arg]);
    let keep = server.url("live/keep");
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let id = setup_udp(&mut c, &keep, &pair);
    let r = c.request("PLAY", &keep, &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r}");
    let reader = thread::spawn(move || pair.collect(Duration::from_secs(3)));
    for i in 0..30 {
        let channels: &[&str] = if i % 2 == 0 {
            &["keep", "flap"]
        } else {
            &["keep"]
        };
        std::fs::write(&cfg, config(10, channels, &wav)).expect("write config");
        server.signal("HUP");
        thread::sleep(Duration::from_millis(20));
    }
    // The last write has `flap` out; put it in once more and wait for it.
    std::fs::write(&cfg, config(10, &["keep", "flap"], &wav)).expect("write config");
    server.signal("HUP");
    assert!(
        wait_for_status(&server, &server.url("live/flap"), 200),
        "the last file's channel is missing"
    );
    let pkts = reader.join().expect("reader");
    let seqs: Vec<u16> = pkts.iter().map(|(p, _)| rtp_seq(p)).collect();
    assert!(seqs.len() >= 100, "{} packets in 3 s", seqs.len());
    assert_eq!(gaps(&seqs), 0, "the untouched reader lost packets");
    let r = c.request("GET_PARAMETER", &keep, &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r}");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

/// `POST /api/v1/reload` does what SIGHUP does and answers with what
/// changed: a channel added, and the HTTP side moved to another port (the
/// old one stops accepting). A broken file gets 400 with the key, and
/// nothing changes.
#[test]
fn reload_over_http_applies_the_file_and_moves_the_http_side() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let wav = cfg_dir.path().join("tone.wav");
    write_wav(
        &wav,
        int_spec(8000, 1, 16),
        (0..8000).map(|i| (i % 100) as i16),
    );
    let cfg = cfg_dir.path().join("rtspd.toml");
    let file = |listen: &str, channels: &[&str]| {
        config(10, channels, &wav).replace(
            "[http]\nlisten = \"off\"",
            &format!("[http]\nlisten = \"{listen}\""),
        )
    };
    std::fs::write(&cfg, file("127.0.0.1:0", &["keep"])).expect("write config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_with(|_| {}, &["--config", &cfg_arg]);
    let old = server.http.expect("the HTTP side runs");
    // A port free a moment ago, for the new address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let new: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    std::fs::write(&cfg, file(&new.to_string(), &["keep", "fresh"])).expect("write config");
    let r = http::request(old, "POST", "/api/v1/reload", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let summary: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let applied: Vec<&str> = summary["applied"]
        .as_array()
        .expect("applied")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(applied.contains(&"live channel fresh added"), "{applied:?}");
    assert!(
        applied
            .iter()
            .any(|l| l.starts_with("http.listen:") && l.ends_with(&new.to_string())),
        "{applied:?}"
    );
    assert!(wait_for_status(&server, &server.url("live/fresh"), 200));
    assert_eq!(http::request(new, "GET", "/healthz", &[]).status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(old).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the old HTTP address still accepts"
        );
        thread::sleep(Duration::from_millis(50));
    }

    std::fs::write(&cfg, "[http]\nmax_connections = -1\n").expect("write config");
    let r = http::request(new, "POST", "/api/v1/reload", &[]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("http.max_connections"), "{}", r.body);
    assert_eq!(http::request(new, "GET", "/healthz", &[]).status, 200);
    assert!(wait_for_status(&server, &server.url("live/fresh"), 200));
}

/// A reload that points `media` at another folder serves that folder's
/// clips from the next request on; a session already playing a clip of the
/// old folder plays on.
#[test]
fn reload_switches_the_media_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (folder, name) in [(&a, "one.wav"), (&b, "two.wav")] {
        std::fs::create_dir(folder).expect("mkdir");
        write_wav(
            &folder.join(name),
            int_spec(8000, 1, 16),
            (0..40_000).map(|i| (i % 300) as i16),
        );
    }
    let cfg = dir.path().join("rtspd.toml");
    let file = |media: &Path| {
        format!(
            "[server]\nmedia = \"{}\"\nbind = \"127.0.0.1\"\nport = 0\nrtp_port = 0\n\n[http]\nlisten = \"off\"\n",
            media.display()
        )
    };
    std::fs::write(&cfg, file(&a)).expect("write config");
    let cfg_arg = cfg.display().to_string();
    let server = Server::start_args(&["--config", &cfg_arg], &a);
    let (one, two) = (server.url("one.wav"), server.url("two.wav"));
    let mut c = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let id = setup_udp(&mut c, &one, &pair);
    let r = c.request("PLAY", &one, &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r}");
    assert!(
        wait_for_status(&server, &two, 404),
        "two.wav before the reload"
    );

    std::fs::write(&cfg, file(&b)).expect("write config");
    server.signal("HUP");
    assert!(
        wait_for_status(&server, &two, 200),
        "two.wav after the reload"
    );
    assert!(
        wait_for_status(&server, &one, 404),
        "one.wav after the reload"
    );
    // The session of the old folder's clip still streams.
    pair.drain_now();
    let pkts = pair.collect(Duration::from_millis(500));
    assert!(pkts.len() >= 15, "{} packets after the reload", pkts.len());
    let r = c.request("GET_PARAMETER", &one, &[&format!("Session: {id}")]);
    assert_eq!(r.status, 200, "{r}");
}
