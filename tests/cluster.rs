//! Origin–edge (issue 13): the configs in `contrib/cluster/` run as three
//! rtspd processes on 127.0.0.1 (origin), 127.0.0.2 and 127.0.0.3 (edges),
//! on free ports instead of 8554/8080. Each edge pulls the origin's live
//! channel once; `rtspd load` puts 200 listeners on each edge with no loss;
//! the origin's `/api/v1/sessions` shows exactly one session per edge; and
//! the origin's redirect rule sends a reader to an edge, which ffmpeg
//! follows and plays.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::tools::{require, rtspd_load, run_tool};
use common::{Rtsp, Server};
use serde_json::Value;

/// A free TCP port on `ip` (bound and let go: the config needs numbers).
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `contrib/cluster/NAME.toml` with the cluster's fixed ports replaced by
/// `ports` (RTSP, HTTP) of each node, and `media` made absolute.
fn config(name: &str, ports: &[(u16, u16); 3], root: &Path) -> String {
    let path = root.join("contrib/cluster").join(format!("{name}.toml"));
    let mut text = std::fs::read_to_string(&path).expect("contrib config");
    let media = root.join("media");
    text = text.replace("\"media\"", &format!("{:?}", media.display().to_string()));
    text = text.replace("file:media/", &format!("file:{}/", media.display()));
    for (i, (rtsp, http)) in ports.iter().enumerate() {
        let ip = format!("127.0.0.{}", i + 1);
        text = text.replace(&format!("{ip}:8554"), &format!("{ip}:{rtsp}"));
        text = text.replace(&format!("{ip}:8080"), &format!("{ip}:{http}"));
    }
    let node = match name {
        "origin" => 0,
        "edge1" => 1,
        _ => 2,
    };
    text.replace("port = 8554", &format!("port = {}", ports[node].0))
        .replace("rtp_port = 6970", "rtp_port = 0")
}

/// Waits (up to 15 s) until `url` answers DESCRIBE with 200.
fn await_channel(server: &Server, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = Rtsp::connect(server.addr());
        if c.try_request("DESCRIBE", url, &[])
            .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never came up");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn origin_and_two_edges_serve_200_listeners_each_from_one_pull() {
    require("ffmpeg");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ips = [1u8, 2, 3].map(|n| Ipv4Addr::new(127, 0, 0, n));
    let ports = ips.map(|ip| (free_port(ip), free_port(ip)));
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |name: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, config(name, &ports, root)).expect("write config");
        let file = file.display().to_string();
        Server::start_args(&["--config", &file], &root.join("media"))
    };
    let origin = start("origin");
    let edges = [start("edge1"), start("edge2")];
    for (edge, ip) in edges.iter().zip(&ips[1..]) {
        assert_eq!(
            edge.addr().ip(),
            *ip,
            "the edge listens where its config says"
        );
        await_channel(edge, &edge.url("live/radio"));
    }
    // 200 listeners on each edge at once.
    let results: Vec<Value> = thread::scope(|sc| {
        let runs: Vec<_> = edges
            .iter()
            .map(|edge| {
                let url = edge.url("live/radio");
                sc.spawn(move || rtspd_load(&["-n", "200", "-d", "5", "--ramp", "200", &url]))
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("load")).collect()
    });
    for (r, edge) in results.iter().zip(&edges) {
        assert_eq!(r["sessions_ok"], 200, "{}: {r}", edge.addr());
        assert!(
            r["packets_received"].as_u64().unwrap_or(0) > 200 * 200,
            "{r}"
        );
        assert_eq!(r["packets_lost"], 0, "{}: {r}", edge.addr());
    }
    // The origin saw one session per edge, whatever the edges served.
    let http: SocketAddr = (ips[0], ports[0].1).into();
    let reply = common::http::get_ok(http, "/api/v1/sessions");
    let sessions: Value = serde_json::from_str(&reply.body).expect("sessions JSON");
    let list = sessions["sessions"].as_array().cloned().unwrap_or_default();
    for ip in &ips[1..] {
        let from_edge = list
            .iter()
            .filter(|s| {
                s["client"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{ip}:")))
            })
            .count();
        assert_eq!(from_edge, 1, "sessions from edge {ip}: {sessions}");
    }
    // A reader of the origin goes to an edge, and plays there.
    let mut c = Rtsp::connect(origin.addr());
    let r = c.request("DESCRIBE", &origin.url("live/radio"), &[]);
    assert_eq!(r.status, 302, "{r}");
    let location = r.header("Location").expect("Location").to_owned();
    assert!(
        edges.iter().any(|e| location == e.url("live/radio")),
        "{location}"
    );
    let run = run_tool(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-i",
            &origin.url("live/radio"),
            "-t",
            "1",
            "-f",
            "null",
            "-",
        ],
        Duration::from_secs(30),
    );
    assert!(
        run.status.success(),
        "ffmpeg through the redirect: {}",
        run.stderr
    );
    for s in [&origin, &edges[0], &edges[1]] {
        assert!(s.panics().is_empty());
    }
}
