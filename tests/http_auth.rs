//! Who may use the HTTP side (issue 12): `[http.permissions]` for the
//! API, the metrics and the status page, bearer tokens minted by `rtspd
//! token`, `/sdp/{path}` under the path's read rule, `/healthz` open.
//! A real client (curl, `--digest`) gets in with the RTSP side's users; a
//! raw client checks every refusal: 401 with the challenges, 403 without
//! the permission, a replayed nonce count, a refused token, the shared
//! brute-force block, a reload that revokes a permission.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::digest::{answer, param, params, user, REALM};
use common::http::{prometheus_families, request, request_from, HttpReply};
use common::tools::{require, run_tool};
use common::{int_spec, write_wav, Rtsp, Server};

/// A mono 8 kHz WAV of `secs` seconds.
fn tone(path: &Path, secs: u32) {
    let samples: Vec<i16> = (0..8000 * secs)
        .map(|i| ((f64::from(i) * 0.05).sin() * 8000.0) as i16)
        .collect();
    write_wav(path, int_spec(8000, 1, 16), samples);
}

/// rtspd on a temp media folder (`clip.wav`, `private/secret.wav`) with
/// the config `cfg` (the folder's `rtspd.toml`, for reloads) and HTTP on
/// an ephemeral port of 127.0.0.1 (unless `extra` says `--http`), at log
/// level `log`.
fn start(cfg: &str, log: &str, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir_all(media.join("private")).expect("media dirs");
    tone(&media.join("clip.wav"), 1);
    tone(&media.join("private/secret.wav"), 1);
    let mut args = extra.to_vec();
    if !extra.contains(&"--http") {
        args.extend(["--http", "127.0.0.1:0"]);
    }
    let server = Server::start_configured(dir.path(), cfg, &media, &args, Some(log));
    assert!(server.http.is_some(), "no HTTP address printed");
    (server, dir)
}

fn http(server: &Server) -> SocketAddr {
    server.http.expect("HTTP address")
}

/// `rtspd token NAME`: (the token, the `[[http.tokens]]` entry).
fn mint(name: &str) -> (String, String) {
    let run = run_tool(
        env!("CARGO_BIN_EXE_rtspd"),
        &["token", name],
        Duration::from_secs(20),
    );
    assert!(run.status.success(), "{}", run.stderr);
    let token = run
        .stderr
        .lines()
        .last()
        .expect("the token on stderr")
        .trim()
        .to_owned();
    (token, run.stdout)
}

/// curl's status code and body for `url` with `args` (e.g. `--digest -u
/// alice:secret`).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body");
    let body_s = body.display().to_string();
    let mut all = vec![
        "-sS",
        "--max-time",
        "20",
        "-o",
        &body_s,
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    all.push(url);
    let run = run_tool("curl", &all, Duration::from_secs(30));
    assert!(run.status.success(), "curl {all:?}: {}", run.stderr);
    let code = run.stdout.trim().parse().expect("curl's status code");
    (code, std::fs::read_to_string(&body).unwrap_or_default())
}

/// The challenges of a 401: the Digest ones' parameters, and the Bearer one.
fn challenges(r: &HttpReply) -> (Vec<Vec<(String, String)>>, Option<String>) {
    assert_eq!(r.status, 401, "{r:?}");
    let all: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    let digest = all
        .iter()
        .filter(|v| v.starts_with("Digest "))
        .map(|v| params(v))
        .collect();
    let bearer = all
        .iter()
        .find(|v| v.starts_with("Bearer "))
        .map(|v| (*v).to_owned());
    (digest, bearer)
}

/// The permissions: alice everything, bob the status page only, the token
/// `prom` the metrics; `/private/**` read by alice from 127.0.0.1 only.
fn permissions_config(token_entry: &str) -> String {
    format!(
        "[http.permissions]\napi = [\"alice\"]\nmetrics = [\"alice\", \"prom\"]\n\
         status = [\"alice\", \"bob\"]\n\n{token_entry}\n{}{}\
         [[paths]]\nmatch = \"/private/**\"\nread = [\"alice\"]\nallow_ips = [\"127.0.0.1\"]\n",
        user("alice", "secret"),
        user("bob", "pw"),
    )
}

#[test]
fn each_part_needs_its_permission_and_curl_gets_in_with_digest() {
    require("curl");
    let (token, entry) = mint("prom");
    // At debug level, so that the secrets check below covers every line.
    let (server, _dir) = start(&permissions_config(&entry), "debug", &[]);
    let addr = http(&server);
    let url = |p: &str| format!("http://{addr}{p}");

    // Open: /healthz, and SDP of a path no rule protects.
    assert_eq!(request(addr, "GET", "/healthz", &[]).status, 200);
    let r = request(addr, "GET", "/sdp/clip.wav", &[]);
    assert_eq!(r.status, 200, "{r:?}");

    // Without credentials: 401 with SHA-256 then MD5 Digest challenges,
    // one nonce, and a Bearer challenge where a token holds the permission.
    for (path, bearer) in [
        ("/metrics", true),
        ("/api/v1/paths", false),
        ("/api/v1/sessions", false),
        ("/", false),
        ("/sdp/private/secret.wav", false),
    ] {
        let r = request(addr, "GET", path, &[]);
        let (digest, b) = challenges(&r);
        assert_eq!(digest.len(), 2, "{path}: {r:?}");
        assert_eq!(param(&digest[0], "algorithm"), "SHA-256", "{path}");
        assert_eq!(param(&digest[1], "algorithm"), "MD5", "{path}");
        assert_eq!(param(&digest[0], "nonce"), param(&digest[1], "nonce"));
        assert_eq!(param(&digest[0], "realm"), REALM);
        assert_eq!(param(&digest[0], "qop"), "auth");
        assert_eq!(
            b.as_deref(),
            bearer.then_some("Bearer realm=\"rtspd\""),
            "{path}"
        );
    }
    for (method, path) in [
        ("DELETE", "/api/v1/sessions/nope"),
        ("POST", "/api/v1/reload"),
    ] {
        let r = request(addr, method, path, &[]);
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
    }

    // curl with alice's password: the real content.
    let alice = ["--digest", "-u", "alice:secret"];
    let (code, metrics) = curl(&alice, &url("/metrics"));
    assert_eq!(code, 200, "{metrics}");
    let families = prometheus_families(&metrics);
    for f in ["rtspd_sessions", "rtspd_refused", "rtspd_build_info"] {
        assert!(families.contains_key(f), "{f} missing: {families:?}");
    }
    let (code, paths) = curl(&alice, &url("/api/v1/paths"));
    assert_eq!(code, 200, "{paths}");
    let paths: serde_json::Value = serde_json::from_str(&paths).expect("JSON");
    let listed: Vec<&str> = paths
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert!(listed.contains(&"clip.wav"), "{listed:?}");
    // curl (7.88) answers the SHA-256 challenge; the `uri=` it hashes
    // is the request-target, query included.
    let (code, sessions) = curl(&alice, &url("/api/v1/sessions?limit=5"));
    assert_eq!(code, 200, "{sessions}");
    assert!(sessions.contains("\"limit\":5"), "{sessions}");
    let (code, page) = curl(&alice, &url("/"));
    assert_eq!(code, 200);
    assert!(page.contains("clip.wav"), "{page}");
    let (code, sdp) = curl(&alice, &url("/sdp/private/secret.wav"));
    assert_eq!(code, 200, "{sdp}");
    assert!(sdp.starts_with("v=0"), "{sdp}");
    let (code, _) = curl(
        &[&alice[..], &["-X", "DELETE"]].concat(),
        &url("/api/v1/sessions/nope"),
    );
    assert_eq!(code, 404, "authorized, then no such session");

    // Bob authenticates but holds only `status`: 403 elsewhere.
    let bob = ["--digest", "-u", "bob:pw"];
    assert_eq!(curl(&bob, &url("/")).0, 200);
    for path in ["/api/v1/paths", "/metrics", "/sdp/private/secret.wav"] {
        assert_eq!(curl(&bob, &url(path)).0, 403, "bob on {path}");
    }
    // A wrong password: 401 again.
    assert_eq!(
        curl(&["--digest", "-u", "alice:guess"], &url("/metrics")).0,
        401
    );

    // The token: metrics yes, the API no, the status page no; a wrong one 401.
    let auth = format!("Authorization: Bearer {token}");
    let r = request(addr, "GET", "/metrics", &[&auth]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("rtspd_build_info"));
    assert_eq!(request(addr, "GET", "/api/v1/paths", &[&auth]).status, 403);
    assert_eq!(request(addr, "GET", "/", &[&auth]).status, 403);
    let (code, _) = curl(
        &["-H", &format!("Authorization: Bearer {token}")],
        &url("/metrics"),
    );
    assert_eq!(code, 200, "curl with the token");
    let wrong = format!("Authorization: Bearer {}x", &token[..token.len() - 1]);
    let r = request(addr, "GET", "/metrics", &[&wrong]);
    let (_, bearer) = challenges(&r);
    assert_eq!(
        bearer.as_deref(),
        Some("Bearer realm=\"rtspd\", error=\"invalid_token\"")
    );
    assert_eq!(
        request(addr, "GET", "/metrics", &["Authorization: Bearer a b"]).status,
        400
    );

    // A raw Digest client: the answer works once; its nc replayed is 401.
    let (digest, _) = challenges(&request(addr, "GET", "/api/v1/sessions", &[]));
    let h = answer(
        &digest[0],
        ("alice", "secret"),
        "GET",
        "/api/v1/sessions",
        1,
    );
    let auth = format!("Authorization: {h}");
    let r = request(addr, "GET", "/api/v1/sessions", &[&auth]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"total\""), "{}", r.body);
    let r = request(addr, "GET", "/api/v1/sessions", &[&auth]);
    assert_eq!(r.status, 401, "replayed nc: {r:?}");
    // The answer for one URI is no good for another (RFC 7616 §3.4 uri).
    let h = answer(&digest[1], ("alice", "secret"), "GET", "/metrics", 2);
    let r = request(
        addr,
        "GET",
        "/api/v1/paths",
        &[&format!("Authorization: {h}")],
    );
    assert_eq!(r.status, 401, "uri of another request: {r:?}");
    // Basic in clear is refused (not allowed here); a malformed header 400.
    for (value, want) in [
        ("Basic YWxpY2U6c2VjcmV0", 401),
        ("Digest username=\"a", 400),
    ] {
        let r = request(
            addr,
            "GET",
            "/metrics",
            &[&format!("Authorization: {value}")],
        );
        assert_eq!(r.status, want, "{value}: {r:?}");
    }

    // The SDP rule's allow_ips: alice from 127.0.0.2 gets 403.
    let other = Ipv4Addr::new(127, 0, 0, 2);
    let sdp_path = "/sdp/private/secret.wav";
    let r = request_from(other, addr, "GET", sdp_path, &[]);
    assert_eq!(r.status, 403, "{r:?}");

    // Nothing secret reached the log, even at debug level.
    let log = server.log_lines().join("\n");
    for secret in [token.as_str(), "secret\"", "YWxpY2U6c2VjcmV0", "response="] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
    assert!(server.panics().is_empty());
}

/// Ten failed logins over HTTP block the address for HTTP and RTSP alike
/// (one counter): 403 without a challenge even with the right password,
/// counted in `rtspd_refused_total{limit="max_auth_failures"}`; another
/// address is unaffected.
#[test]
fn brute_force_over_http_blocks_the_address() {
    let cfg = format!(
        "[http.permissions]\napi = [\"alice\"]\n\n{}\
         [[paths]]\nmatch = \"/private/**\"\nread = [\"alice\"]\n",
        user("alice", "secret")
    );
    let (server, _dir) = start(&cfg, "warn", &[]);
    let addr = http(&server);
    let path = "/api/v1/paths";
    for i in 1..=10 {
        let (digest, _) = challenges(&request(addr, "GET", path, &[]));
        let h = answer(&digest[0], ("alice", &format!("guess{i}")), "GET", path, 1);
        let r = request(addr, "GET", path, &[&format!("Authorization: {h}")]);
        assert_eq!(r.status, 401, "guess {i}: {r:?}");
    }
    // Blocked: no challenge, and the right password does not help.
    let r = request(addr, "GET", path, &[]);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("www-authenticate").is_none());
    // The RTSP side shares the count.
    let mut c = Rtsp::connect(server.addr());
    let r = c.request("DESCRIBE", &server.url("private/secret.wav"), &[]);
    assert_eq!(r.status, 403, "{r}");
    // Another address is challenged as usual and gets in.
    let other = Ipv4Addr::new(127, 0, 0, 3);
    let r = request_from(other, addr, "GET", path, &[]);
    let (digest, _) = challenges(&r);
    let h = answer(&digest[0], ("alice", "secret"), "GET", path, 1);
    let r = request_from(other, addr, "GET", path, &[&format!("Authorization: {h}")]);
    assert_eq!(r.status, 200, "{r:?}");
    // /metrics is open here: the refusals are counted.
    let metrics = request(addr, "GET", "/metrics", &[]).body;
    let refused = common::http::sample(
        &metrics,
        "rtspd_refused_total",
        "limit=\"max_auth_failures\"",
    );
    assert!(refused.is_some_and(|n| n >= 2.0), "{refused:?}");
    assert!(server.panics().is_empty());
}

/// A SIGHUP that takes `api` from alice and the token from `metrics`
/// applies to the next request.
#[test]
fn reload_revokes_a_permission_on_the_next_request() {
    let (token, entry) = mint("prom");
    let cfg = |api: &str, metrics: &str| {
        format!(
            "[http.permissions]\napi = [{api}]\nmetrics = [{metrics}]\n\n{entry}\n{}{}",
            user("alice", "secret"),
            user("bob", "pw")
        )
    };
    let (server, dir) = start(&cfg("\"alice\"", "\"prom\""), "info", &[]);
    let addr = http(&server);
    let path = "/api/v1/paths";
    let as_user = |who: (&str, &str)| {
        let (digest, _) = challenges(&request(addr, "GET", path, &[]));
        let h = answer(&digest[0], who, "GET", path, 1);
        request(addr, "GET", path, &[&format!("Authorization: {h}")]).status
    };
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(as_user(("alice", "secret")), 200);
    assert_eq!(as_user(("bob", "pw")), 403);
    assert_eq!(request(addr, "GET", "/metrics", &[&bearer]).status, 200);

    std::fs::write(dir.path().join("rtspd.toml"), cfg("\"bob\"", "\"bob\"")).expect("write");
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while as_user(("bob", "pw")) != 200 {
        assert!(Instant::now() < deadline, "the reload never let bob in");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(as_user(("alice", "secret")), 403);
    let r = request(addr, "GET", "/metrics", &[&bearer]);
    assert_eq!(
        r.status, 403,
        "a token the permission no longer names: {r:?}"
    );
    let log = server.log_lines().join("\n");
    assert!(
        log.contains("http.permissions.api"),
        "the reload's summary names the change"
    );
    assert!(!log.contains(&token));
    assert!(server.panics().is_empty());
}

/// A permission naming nobody configured is a config error that names
/// the key (exit 2); the entry `rtspd token` prints is accepted.
#[test]
fn check_config_names_an_unknown_permission_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[http.permissions]\nmetrics = [\"prometheus\"]\n").expect("write");
    let check = || {
        run_tool(
            env!("CARGO_BIN_EXE_rtspd"),
            &["check-config", &file.display().to_string()],
            Duration::from_secs(20),
        )
    };
    let run = check();
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("http.permissions.metrics")
            && run
                .stderr
                .contains("\"prometheus\" is not a [[users]] or [[http.tokens]] name"),
        "{}",
        run.stderr
    );
    let (token, entry) = mint("prometheus");
    assert!(!entry.contains(&token), "the entry holds only the hash");
    std::fs::write(
        &file,
        format!("[http.permissions]\nmetrics = [\"prometheus\"]\n\n{entry}"),
    )
    .expect("write");
    let run = check();
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
}

/// Users on a non-loopback HTTP address with the API open to anyone:
/// one WARN at start.
#[test]
fn an_open_api_with_users_on_a_public_address_is_warned_about() {
    let cfg = user("alice", "secret");
    let (server, _dir) = start(&cfg, "warn", &["--http", "0.0.0.0:0"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log_lines()
        .iter()
        .any(|l| l.contains("WARN") && l.contains("HTTP API") && l.contains("[http.permissions]"))
    {
        assert!(
            Instant::now() < deadline,
            "no WARN: {:?}",
            server.log_lines()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// With RTSPS on, the status page and `/api/v1/paths` give `rtsps://`
/// URLs next to the `rtsp://` ones.
#[test]
fn rtsps_urls_on_the_status_page_and_in_the_api() {
    let certs = tempfile::tempdir().expect("tempdir");
    common::tls::self_signed(certs.path(), "srv");
    let flags = common::tls::flags(certs.path(), "srv");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (server, _dir) = start("", "warn", &flags);
    let addr = http(&server);
    let rtsps = server.rtsps_port();
    let r = request(addr, "GET", "/api/v1/paths", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let paths: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let clip = paths
        .as_array()
        .and_then(|a| a.iter().find(|p| p["path"] == "clip.wav"))
        .expect("clip.wav listed");
    assert_eq!(
        clip["url"].as_str(),
        Some(format!("rtsp://127.0.0.1:{}/clip.wav", server.port).as_str())
    );
    let want = format!("rtsps://127.0.0.1:{rtsps}/clip.wav");
    assert_eq!(clip["rtsps_url"].as_str(), Some(want.as_str()));
    let page = request(addr, "GET", "/", &[]).body;
    assert!(page.contains(&format!("data-url=\"{want}\"")), "{page}");
}
