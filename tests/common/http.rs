//! A raw HTTP/1.1 client (one request per connection, `Connection: close`)
//! and readers of the Prometheus text the server exposes: sample values by
//! name and labels, and the families as Prometheus's own Python parser
//! (Debian's `python3-prometheus-client`) reads them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

/// A response as it arrived.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with `extra` header lines and reads the whole
/// response (the server closes after it).
pub fn request(addr: SocketAddr, method: &str, path: &str, extra: &[&str]) -> HttpReply {
    let s = TcpStream::connect(addr).expect("connect to the HTTP side");
    exchange(s, addr, method, path, extra)
}

/// [`request`] from the local address `from` (another loopback address).
pub fn request_from(
    from: std::net::Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[&str],
) -> HttpReply {
    exchange(super::rtsp::tcp_from(from, addr), addr, method, path, extra)
}

fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[&str],
) -> HttpReply {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in extra {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    parse(&raw).unwrap_or_else(|| panic!("{method} {path}: not HTTP: {raw:?}"))
}

/// `GET path`, which must answer 200.
pub fn get_ok(addr: SocketAddr, path: &str) -> HttpReply {
    let r = request(addr, "GET", path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {r:?}");
    r
}

/// A whole response (Content-Length framed; the server sends no chunked
/// bodies for these routes).
pub fn parse(raw: &[u8]) -> Option<HttpReply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")),
        "chunked body"
    );
    Some(HttpReply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The value of the sample `name{labels}` (labels exactly as written,
/// e.g. `limit="max_sessions"`; empty for none).
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes `/metrics` and returns its text.
pub fn scrape(addr: SocketAddr) -> String {
    let r = get_ok(addr, "/metrics");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.body
}

/// Family name → (type, sample count), as
/// `prometheus_client.parser.text_string_to_metric_families` reads `text`.
/// The parser names counter families without their `_total`.
pub fn prometheus_families(text: &str) -> BTreeMap<String, (String, usize)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   print(f.name, f.type, len(f.samples))\n";
    // Debian's interpreter, which the python3-prometheus-client package
    // installs for (a python3 earlier on PATH, e.g. pyenv's, lacks it).
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("python3");
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python3 (with python3-prometheus-client) must be installed");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((
                w.next()?.to_owned(),
                (w.next()?.to_owned(), w.next()?.parse().ok()?),
            ))
        })
        .collect()
}
