//! B12 — Connection-level resource exhaustion and faults
//! (docs/ROBUSTNESS.md).

use std::net::{Ipv4Addr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::rtsp::check_i7;
use crate::common::{Rtsp, UdpPair};
use crate::fixture::{assert_no_failures, check, sess, Fixture};
use crate::table::{case, Case, Close};

/// This section's table cases (run by `table::table_b1_to_b7`).
pub(crate) fn cases() -> Vec<Case> {
    vec![case("B12#83 connect, send nothing, FIN", "", Close).fin()]
}

/// B12#81 slowloris (20 connections trickling a header byte every second)
/// and B2#15 (a truncated body, then silence), with `--read-timeout 2`: each
/// is closed at the request deadline (about 2 s from its first byte, however
/// the bytes trickle) with 408; B12#84 an idle connection with no session is
/// closed after `--idle-timeout 3`. The canary is unaffected.
#[test]
fn b12_slowloris_and_deadlines() {
    let fx = Fixture::start(&["--read-timeout", "2", "--idle-timeout", "3"]);
    let mut f = Vec::new();
    let addr = fx.addr();
    let mut idle = fx.client();
    let idle_since = Instant::now();
    let trickle = |prefix: Vec<u8>, drip: bool| {
        thread::spawn(move || -> Result<Duration, String> {
            let mut c = Rtsp::connect(addr);
            let t = Instant::now();
            c.write(&prefix).map_err(|e| e.to_string())?;
            let end = t + Duration::from_secs(8);
            let mut resp = None;
            loop {
                if Instant::now() > end {
                    return Err("not closed within 8 s".into());
                }
                if resp.is_none() {
                    match c.read_response(Duration::from_secs(1)) {
                        Ok(r) => resp = Some(r),
                        Err(e) if e.starts_with("no response") => {}
                        Err(e) => return Err(e),
                    }
                }
                if let Some(r) = &resp {
                    if r.status != 408 {
                        return Err(format!("answered {r}"));
                    }
                    check_i7(r, None, false)?;
                    c.expect_eof(Duration::from_secs(2))?;
                    return Ok(t.elapsed());
                }
                if drip {
                    let _ = c.write(b"a");
                }
            }
        })
    };
    let mut threads: Vec<_> = (0..20)
        .map(|_| {
            trickle(
                b"OPTIONS rtsp://127.0.0.1/ RTSP/1.0\r\nCSeq: 1\r\nX-a: ".to_vec(),
                true,
            )
        })
        .collect();
    threads.push(trickle(
        b"SET_PARAMETER * RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 10\r\n\r\nabcd".to_vec(),
        false,
    ));
    // Meanwhile a normal client is served promptly.
    let mut c = fx.client();
    let t = Instant::now();
    let r = c.request("OPTIONS", "*", &[]);
    check!(
        f,
        r.status == 200 && t.elapsed() < Duration::from_millis(500),
        "OPTIONS during slowloris: {} in {:?}",
        r.status,
        t.elapsed()
    );
    for (i, th) in threads.into_iter().enumerate() {
        match th.join().expect("slowloris thread") {
            Ok(d) => check!(
                f,
                d >= Duration::from_millis(1500) && d <= Duration::from_millis(4500),
                "connection {i} closed after {d:?}, expected about 2 s"
            ),
            Err(e) => f.push(format!("connection {i}: {e}")),
        }
    }
    // B12#84: the idle connection is closed after about 3 s, no response.
    match idle.expect_eof(Duration::from_secs(6)) {
        Ok(()) => {
            let d = idle_since.elapsed();
            check!(
                f,
                d >= Duration::from_millis(2500) && d <= Duration::from_millis(5500),
                "idle connection closed after {d:?}, expected about 3 s"
            );
        }
        Err(e) => f.push(format!("idle connection: {e}")),
    }
    assert_no_failures(f, fx);
}

/// B12#85 with `--max-connections-per-ip 4`: the 5th connection gets 503 to
/// its first request and is closed; existing ones keep working; a freed slot
/// is reusable; OPTIONS traffic does not count as a session. B5#50 with
/// `--max-sessions-per-ip 3`: the 4th session gets 503. Every 503 at a limit
/// carries `Retry-After`, and the log says which limit refused and which
/// flag raises it, once for a burst (issue 10, defect 5).
#[test]
fn b12_connection_and_session_caps() {
    let fx = Fixture::start(&[
        "--max-connections-per-ip",
        "4",
        "--max-sessions-per-ip",
        "3",
    ]);
    let u = fx.url("long.wav");
    let t0 = format!("{u}/trackID=0");
    let mut f = Vec::new();
    // The canary holds one connection and one session.
    let mut conns: Vec<Rtsp> = (0..3).map(|_| fx.client()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.request("OPTIONS", "*", &[]);
        check!(
            f,
            r.status == 200,
            "connection {i} under the cap: {}",
            r.status
        );
    }
    let mut fifth = fx.client();
    let c = fifth.send("OPTIONS", "*", &[], b"");
    match fifth.reply(c) {
        Ok(r) => {
            check!(f, r.status == 503, "5th connection: {}", r.status);
            check!(
                f,
                r.header("Retry-After") == Some("10"),
                "5th connection's 503 has no Retry-After: {r}"
            );
            if let Err(e) = fifth.expect_eof(Duration::from_secs(2)) {
                f.push(format!("5th connection after 503: {e}"));
            }
        }
        // An immediate close is allowed too.
        Err(e) => check!(
            f,
            e.starts_with("closed without a response (0 bytes"),
            "5th connection: {e}"
        ),
    }
    // From another IP the per-IP cap is separate.
    let mut other = Rtsp::connect_from(Ipv4Addr::new(127, 0, 0, 2), fx.addr());
    let r = other.request("OPTIONS", "*", &[]);
    check!(
        f,
        r.status == 200,
        "connection from 127.0.0.2: {}",
        r.status
    );
    // Existing connections still work, and may hold sessions up to the cap.
    let pairs: Vec<UdpPair> = (0..3).map(|_| UdpPair::bind()).collect();
    let mut ids = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c.request("SETUP", &t0, &[&pairs[i].transport()]);
        let want = if i < 2 { 200 } else { 503 };
        check!(
            f,
            r.status == want,
            "SETUP {} on connection {i}: {} (expected {want})",
            i + 2,
            r.status
        );
        if r.status == 200 {
            ids.push(r.session());
        }
        if r.status == 503 {
            check!(
                f,
                r.header("Retry-After") == Some("10"),
                "session refusal without Retry-After: {r}"
            );
        }
    }
    // A burst of refused connections: one WARN line for the burst.
    for _ in 0..8 {
        let mut c = fx.client();
        let n = c.send("OPTIONS", "*", &[], b"");
        let _ = c.reply(n);
    }
    thread::sleep(Duration::from_millis(100));
    let warns = |limit: &str| -> Vec<String> {
        fx.proc
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("WARN") && l.contains(&format!("limit=\"{limit}\"")))
            .collect()
    };
    let conn_warns = warns("max_connections_per_ip");
    check!(
        f,
        conn_warns.len() == 1
            && conn_warns[0].contains("refused=1")
            && conn_warns[0].contains("value=4")
            && conn_warns[0].contains("--max-connections-per-ip"),
        "9 refused connections in a burst: {conn_warns:?}"
    );
    let session_warns = warns("max_sessions_per_ip");
    check!(
        f,
        session_warns.len() == 1 && session_warns[0].contains("--max-sessions-per-ip"),
        "a refused session: {session_warns:?}"
    );
    if let Some(id) = ids.first() {
        let r = conns[0].request("TEARDOWN", &u, &[&sess(id)]);
        check!(f, r.status == 200, "TEARDOWN: {}", r.status);
        let r = conns[2].request("SETUP", &t0, &[&pairs[2].transport()]);
        check!(
            f,
            r.status == 200,
            "SETUP after a session was freed: {}",
            r.status
        );
    }
    // A closed connection frees its slot.
    drop(conns.remove(0));
    let ok = fx.options_ok();
    check!(
        f,
        ok.is_ok(),
        "a freed connection slot was not reusable: {ok:?}"
    );
    drop(conns);
    thread::sleep(Duration::from_millis(200));
    assert_no_failures(f, fx);
}

/// B12#83 (small): 200 connections that send nothing, 300 connect+RST and
/// 300 connect+FIN, with `--max-connections-per-ip 64`. The cap holds, the
/// accept loop keeps accepting, every slot and fd is reclaimed (I4), and the
/// canary is unaffected.
#[test]
fn b12_connection_flood() {
    let fx = Fixture::start(&["--max-connections-per-ip", "64"]);
    let mut f = Vec::new();
    thread::sleep(Duration::from_millis(200));
    let base_fds = fx.proc.fds();
    let mut flood: Vec<Rtsp> = (0..200).map(|_| fx.client()).collect();
    let (mut ok, mut busy) = (0, 0);
    for (i, c) in flood.iter_mut().enumerate() {
        let n = c.send("OPTIONS", "*", &[], b"");
        match c.reply(n) {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) if r.status == 503 => busy += 1,
            Ok(r) => f.push(format!("flood connection {i}: {}", r.status)),
            Err(e) => f.push(format!("flood connection {i}: {e}")),
        }
    }
    // The canary holds one of the 64 slots.
    check!(
        f,
        (ok, busy) == (63, 137),
        "{ok} connections served and {busy} refused, expected 63 and 137"
    );
    drop(flood);
    for _ in 0..300 {
        Rtsp::connect(fx.addr()).reset();
    }
    for _ in 0..300 {
        drop(TcpStream::connect(fx.addr()).expect("connect"));
    }
    // Every slot comes back: 63 new connections are all served.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut served = 0;
    while Instant::now() < deadline {
        let mut again: Vec<Rtsp> = (0..63).map(|_| fx.client()).collect();
        served = again
            .iter_mut()
            .map(|c| {
                let n = c.send("OPTIONS", "*", &[], b"");
                c.reply(n).is_ok_and(|r| r.status == 200)
            })
            .filter(|&ok| ok)
            .count();
        if served == 63 {
            break;
        }
        drop(again);
        thread::sleep(Duration::from_millis(200));
    }
    check!(
        f,
        served == 63,
        "only {served} of 63 slots reclaimed after the flood"
    );
    // I4: the server's open fds return to the baseline.
    if let Some(base) = base_fds {
        let mut now = fx.proc.fds();
        for _ in 0..30 {
            if now.is_some_and(|n| n <= base) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
            now = fx.proc.fds();
        }
        check!(
            f,
            now.is_some_and(|n| n <= base),
            "server fds {now:?}, baseline {base}"
        );
    }
    assert_no_failures(f, fx);
}

/// B1#5/B2#13 at their caps, with `--max-head-bytes 1024`, `--max-headers 8`
/// and `--max-body-bytes 100`: each request over a cap gets its status and a
/// close, and the log names the limit and its flag once per burst, as the
/// connection and session caps do (issue 10, defect 5).
#[test]
fn b12_parse_caps_are_logged() {
    let fx = Fixture::start(&[
        "--max-head-bytes",
        "1024",
        "--max-headers",
        "8",
        "--max-body-bytes",
        "100",
    ]);
    let mut f = Vec::new();
    let long_head = format!(
        "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Pad: {}\r\n",
        "p".repeat(1000)
    );
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let many = format!("OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n{many}\r\n");
    let body = "SET_PARAMETER * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 101\r\n\r\n".to_string();
    for (name, bytes, status) in [
        ("head", &long_head, 400),
        ("headers", &many, 400),
        ("body", &body, 413),
    ] {
        // Three in a burst each.
        for _ in 0..3 {
            let mut c = fx.client();
            if c.write(bytes.as_bytes()).is_err() {
                f.push(format!("{name}: write failed"));
                continue;
            }
            match c.read_response(Duration::from_secs(2)) {
                Ok(r) => check!(f, r.status == status, "{name} over its cap: {}", r.status),
                Err(e) => f.push(format!("{name} over its cap: {e}")),
            }
            if let Err(e) = c.expect_eof(Duration::from_secs(2)) {
                f.push(format!("{name} over its cap, then: {e}"));
            }
        }
    }
    thread::sleep(Duration::from_millis(100));
    let lines = fx.proc.log_lines();
    for (limit, flag, value) in [
        ("max_head_bytes", "--max-head-bytes", "1024"),
        ("max_headers", "--max-headers", "8"),
        ("max_body_bytes", "--max-body-bytes", "100"),
    ] {
        let warns: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("WARN") && l.contains(&format!("limit=\"{limit}\"")))
            .collect();
        check!(
            f,
            warns.len() == 1
                && warns[0].contains(flag)
                && warns[0].contains(&format!("value={value}")),
            "3 refusals at {limit}: {warns:?}"
        );
    }
    assert_no_failures(f, fx);
}
