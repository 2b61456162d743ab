//! The table of single-request cases: bytes sent on a fresh connection and
//! the status (or close) they must get. Each section's module lists its
//! cases; one test runs them all under one canary.

use std::time::Duration;

use crate::common::rtsp::{check_i7, find, Reply};
use crate::fixture::{assert_no_failures, Fixture};
use crate::{
    b12_resources, b1_framing, b2_content_length, b3_cseq_session, b4_methods_state, b5_transport,
    b6_range, b7_paths,
};

/// Client ports for SETUPs that never play.
pub(crate) const UDP: &str = "client_port=50000-50001";

/// What the server must do with a case's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// This status, and the connection stays usable.
    Status(u16),
    /// This status, then the server closes the connection.
    StatusThenClose(u16),
    /// The server closes without answering.
    Close,
}
pub(crate) use Expect::{Close, Status, StatusThenClose};

/// One table case: bytes sent on a fresh connection, and what must happen.
pub(crate) struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
    /// The request's CSeq must be echoed (false when the error comes before
    /// the server can read the CSeq line).
    echo: bool,
    /// Half-close the connection after sending.
    fin: bool,
    /// Headers the response must have, each containing the text.
    want: Vec<(&'static str, String)>,
}

pub(crate) fn case(name: impl Into<String>, bytes: impl AsRef<[u8]>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        bytes: bytes.as_ref().to_vec(),
        expect,
        echo: true,
        fin: false,
        want: Vec::new(),
    }
}

impl Case {
    pub(crate) fn no_echo(mut self) -> Self {
        self.echo = false;
        self
    }

    pub(crate) fn fin(mut self) -> Self {
        self.fin = true;
        self
    }

    pub(crate) fn want(mut self, header: &'static str, contains: impl Into<String>) -> Self {
        self.want.push((header, contains.into()));
        self
    }
}

/// A request from its request line and header lines.
pub(crate) fn raw(line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// OPTIONS with CSeq 7 and one more header line.
pub(crate) fn opt(header: &str) -> Vec<u8> {
    raw("OPTIONS * RTSP/1.0", &["CSeq: 7", header])
}

/// DESCRIBE of `url` with CSeq 50.
pub(crate) fn describe(url: &str) -> Vec<u8> {
    raw(&format!("DESCRIBE {url} RTSP/1.0"), &["CSeq: 50"])
}

/// The CSeq of a request as a compliant server sees it: present exactly
/// once, 1 to 10 digits, fitting a u32. Lines end at LF (a CR before it is
/// dropped), as the server reads them.
fn request_cseq(req: &[u8]) -> Option<u32> {
    let head_end = find(req, b"\r\n\r\n").unwrap_or(req.len());
    let head = String::from_utf8_lossy(&req[..head_end]);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // Skip leading empty lines and the request line.
    lines.by_ref().find(|l| !l.is_empty())?;
    let values: Vec<&str> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case("CSeq"))
        .map(|(_, v)| v.trim_matches([' ', '\t']))
        .collect();
    match values[..] {
        [v] if (1..=10).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse().ok()
        }
        _ => None,
    }
}

pub(crate) fn run_case(fx: &Fixture, c: &Case) -> Result<(), String> {
    let mut cl = fx.client();
    // The server may close before a big input is all written: fine unless
    // the connection is expected to stay usable.
    if let Err(e) = cl.write(&c.bytes) {
        if matches!(c.expect, Status(_)) {
            return Err(format!("write failed: {e}"));
        }
    }
    if c.fin {
        cl.shutdown_write();
    }
    let req_cseq = request_cseq(&c.bytes);
    let wait = Duration::from_secs(5);
    let check = |r: &Reply, want: u16| -> Result<(), String> {
        if r.status != want {
            return Err(format!("status {} (expected {want}): {r}", r.status));
        }
        check_i7(r, req_cseq, c.echo)?;
        for (h, text) in &c.want {
            match r.header(h) {
                Some(v) if v.contains(text.as_str()) => {}
                other => return Err(format!("{h} is {other:?}, expected it to contain {text:?}")),
            }
        }
        Ok(())
    };
    match c.expect {
        Status(s) => {
            let r = cl.read_response(wait)?;
            check(&r, s)?;
            // Still usable, and no second response to the same request.
            cl.write(b"OPTIONS * RTSP/1.0\r\nCSeq: 4242\r\n\r\n")
                .map_err(|e| format!("follow-up write: {e}"))?;
            let f = cl
                .read_response(wait)
                .map_err(|e| format!("follow-up OPTIONS: {e}"))?;
            if f.status != 200 || f.header("CSeq") != Some("4242") {
                return Err(format!("follow-up OPTIONS got {f}"));
            }
        }
        StatusThenClose(s) => {
            let r = cl.read_response(wait)?;
            check(&r, s)?;
            cl.expect_eof(Duration::from_secs(3))?;
        }
        Close => cl.expect_eof(Duration::from_secs(3))?,
    }
    Ok(())
}

/// B1–B7 request cases (and B12#83's silent connection), each on a fresh
/// connection, under the canary.
#[test]
fn table_b1_to_b7() {
    // B1#5's `GET / HTTP/1.1` rows are for tunnelling off; with it on
    // (the default) an HTTP request on the RTSP port is a tunnel half, or
    // an HTTP 400 (tests/tunnel.rs).
    let fx = Fixture::start(&["--tunnel", "false"]);
    let cases = [
        b1_framing::cases(&fx),
        b2_content_length::cases(),
        b3_cseq_session::cases(&fx),
        b4_methods_state::cases(&fx),
        b5_transport::cases(&fx),
        b6_range::cases(),
        b7_paths::cases(&fx),
        b12_resources::cases(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>();
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = run_case(&fx, c) {
            failures.push(format!("[{}] {e}", c.name));
        }
    }
    eprintln!("{} table cases run", cases.len());
    assert_no_failures(failures, fx);
}
