//! The config file end to end, through the built binary: `check-config`
//! and its exit codes, `--config` with a bad file (exit 2, nothing
//! started), and a server that takes its address, media, limits and log
//! format from a file, with a flag overriding one key.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{setup_udp, Rtsp, Server, UdpPair};

fn rtspd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rtspd"));
    c.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end, which must come within `limit` (a server that starts
/// never ends by itself: it is killed and the test fails).
fn run_to_end(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd.spawn().expect("spawn rtspd");
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "rtspd still running after {limit:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write config");
    p.to_string_lossy().into_owned()
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "good.toml",
        "[server]\nptime = 40\n\n[limits]\nmax_sessions_per_ip = 1\n\n\
         [[live]]\nname = \"radio\"\nsource = \"file:a.wav\"\ncodec = \"pcmu\"\n",
    );
    let out = run_to_end(rtspd(&["check-config", &file]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed: toml::Table = toml::from_str(&text(&out.stdout)).expect("the output is TOML");
    let get = |section: &str, key: &str| printed[section][key].clone();
    // The file's values, and every other key at its default.
    assert_eq!(get("server", "ptime").as_integer(), Some(40));
    assert_eq!(get("limits", "max_sessions_per_ip").as_integer(), Some(1));
    assert_eq!(get("limits", "max_sessions").as_integer(), Some(10_000));
    assert_eq!(get("server", "port").as_str(), Some("auto"));
    assert_eq!(get("http", "listen").as_str(), Some("127.0.0.1:8080"));
    assert_eq!(get("log", "format").as_str(), Some("text"));
    assert_eq!(
        get("server", "relay_spread_us_per_listener").as_integer(),
        Some(40)
    );
    assert_eq!(printed["server"].as_table().map(|t| t.len()), Some(22));
    assert_eq!(printed["limits"].as_table().map(|t| t.len()), Some(19));
    assert_eq!(get("auth", "realm").as_str(), Some("rtspd"));
    assert_eq!(printed["live"][0]["codec"].as_str(), Some("pcmu"));
    // The example shipped with rtspd is valid as it is.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/rtspd.example.toml");
    let out = run_to_end(rtspd(&["check-config", example]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `check-config` prints the configuration without its secrets: users'
/// HA1 hashes (password-equivalent for Digest), token hashes, and the
/// password in a pulled source's URL.
#[test]
fn check_config_prints_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ha1_md5, ha1_sha256, token) = (
        "4810f2ccb0902ce17b7daca2a401bd0c",
        "90fff557e2155640f012b5f679133f13a0adc706952129f8ed1ac375fbe5b7a0",
        "28f3eb3c1aba4bbf56e3a9cc2d4e64c1fd6971294d8641a0a9ba1bcf92b8b8ee",
    );
    let file = write(
        dir.path(),
        "secrets.toml",
        &format!(
            "[[http.tokens]]\nname = \"prometheus\"\nsha256 = \"{token}\"\n\n\
             [[users]]\nname = \"alice\"\nha1_md5 = \"{ha1_md5}\"\nha1_sha256 = \"{ha1_sha256}\"\n\n\
             [[live]]\nname = \"door\"\nsource = \"rtsp://viewer:hunter2@192.0.2.10:554/s\"\n"
        ),
    );
    let out = run_to_end(rtspd(&["check-config", &file]), Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for secret in [ha1_md5, ha1_sha256, token, "hunter2"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    let t: toml::Table = toml::from_str(&printed).expect("the output is TOML");
    assert_eq!(t["users"][0]["name"].as_str(), Some("alice"));
    assert_eq!(t["users"][0]["ha1_md5"].as_str(), Some("(redacted)"));
    assert_eq!(
        t["http"]["tokens"][0]["sha256"].as_str(),
        Some("(redacted)")
    );
    assert_eq!(
        t["live"][0]["source"].as_str(),
        Some("rtsp://viewer:***@192.0.2.10:554/s")
    );
}

#[test]
fn check_config_rejects_a_bad_file_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    // (file, what stderr must say)
    let cases: &[(&str, &[&str])] = &[
        (
            "[server]\nport = 0\n\n[limits]\nmax_sesions = 3\n",
            &[
                "line 5, column 1",
                "unknown key `limits.max_sesions`",
                "did you mean `max_sessions`?",
            ],
        ),
        (
            "[limits]\nmax_sessions = \"many\"\n",
            &[
                "line 2, column 16",
                "limits.max_sessions: expected a non-negative integer, got \"many\"",
            ],
        ),
        (
            "[server]\nptime = 0\n",
            &["server.ptime: expected an integer from 1 to 1000, got 0"],
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"publish\"\ncodek = \"pcmu\"\n",
            &["line 4, column 1", "live[0].codek", "did you mean `codec`?"],
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("bad{i}.toml"), body);
        let out = run_to_end(rtspd(&["check-config", &file]), Duration::from_secs(20));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(out.stdout.is_empty(), "{body}: {}", text(&out.stdout));
        for w in *want {
            assert!(err.contains(w), "{body}: {err:?} lacks {w:?}");
        }
        assert!(
            err.contains(&format!("bad{i}.toml")),
            "names the file: {err}"
        );
    }
    // Not a config file at all: a device that never ends, a huge file.
    for path in ["/dev/zero".to_string(), {
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "# padding\n".repeat(200_000)).expect("write");
        big.display().to_string()
    }] {
        let out = run_to_end(rtspd(&["check-config", &path]), Duration::from_secs(20));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains("larger than 1048576 bytes"), "{path}: {err}");
    }
    let missing = dir.path().join("none.toml");
    let out = run_to_end(
        rtspd(&["check-config", &missing.to_string_lossy()]),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(2));
}

/// `rtspd --config bad.toml` (and `rtspd serve --config`) stops at once
/// with exit 2: no listener, no URL printed.
#[test]
fn a_server_with_a_bad_file_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "bad.toml",
        &format!(
            "[server]\nbind = \"127.0.0.1\"\nport = 0\nrtp_port = 0\nmedia = {:?}\n\
             [limits]\nmax_sessions_per_ip = \"one\"\n",
            dir.path()
        ),
    );
    for args in [&["--config", &file][..], &["serve", "--config", &file]] {
        let out = run_to_end(rtspd(args), Duration::from_secs(20));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {}",
            text(&out.stdout)
        );
        assert!(err.contains("limits.max_sessions_per_ip"), "{err}");
        assert!(!err.contains("listening"), "{err}");
    }
}

/// Waits (bounded) until the server's log has a line with `needle`.
fn log_line(server: &Server, needle: &str) -> Option<String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Some(l) = server.log_lines().into_iter().find(|l| l.contains(needle)) {
            return Some(l);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Sessions from this address until one is refused: the statuses.
fn setups(server: &Server, url: &str, n: usize) -> (Vec<u16>, Vec<(Rtsp, UdpPair)>) {
    let mut held = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..n {
        let mut c = Rtsp::connect(server.addr());
        let pair = UdpPair::bind();
        let d = c.request("DESCRIBE", url, &["Accept: application/sdp"]);
        assert_eq!(d.status, 200, "DESCRIBE {url}");
        let s = c.request("SETUP", &format!("{url}/trackID=0"), &[&pair.transport()]);
        statuses.push(s.status);
        held.push((c, pair));
    }
    (statuses, held)
}

#[test]
fn a_server_takes_its_settings_from_the_file_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("clips");
    std::fs::create_dir(&media).expect("media dir");
    common::write_wav(
        &media.join("tone.wav"),
        common::int_spec(8000, 1, 16),
        (0..8000).map(|n| ((n % 80) * 300) as i16),
    );
    let file = write(
        dir.path(),
        "rtspd.toml",
        &format!(
            "[server]\nbind = \"127.0.0.1\"\nport = 0\nrtp_port = 0\nmedia = {:?}\n\n\
             [limits]\nmax_sessions_per_ip = 1\n\n[http]\nlisten = \"off\"\n\n\
             [log]\nformat = \"json\"\n",
            media
        ),
    );
    // From the file: one session per address; the second gets 503.
    let server = Server::start_args(&["--config", &file], &media);
    let url = server.url("tone.wav");
    let mut first = Rtsp::connect(server.addr());
    let pair = UdpPair::bind();
    let _session = setup_udp(&mut first, &url, &pair);
    let (statuses, _held) = setups(&server, &url, 1);
    assert_eq!(statuses, [503], "max_sessions_per_ip = 1 from the file");
    // The refusal is logged as a JSON line ([log] format = "json").
    let line = log_line(&server, "max_sessions_per_ip").expect("a refusal logged");
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["level"], "WARN", "{line}");
    assert_eq!(json["fields"]["limit"], "max_sessions_per_ip", "{line}");
    drop(server);

    // The flag overrides the key: two sessions, the third refused.
    let server = Server::start_args(
        &[
            "--config",
            &file,
            "--max-sessions-per-ip",
            "2",
            "--log-format",
            "text",
        ],
        &media,
    );
    let url = server.url("tone.wav");
    let (statuses, _held) = setups(&server, &url, 3);
    assert_eq!(statuses, [200, 200, 503], "--max-sessions-per-ip 2 wins");
    let line = log_line(&server, "max_sessions_per_ip").expect("a refusal logged");
    assert!(
        serde_json::from_str::<serde_json::Value>(&line).is_err(),
        "--log-format text wins: {line}"
    );
}
