//! Running real client tools (ffmpeg, ffprobe, gst-launch) from tests:
//! each under a deadline, killed when it passes it, so a hung client fails
//! its test instead of hanging CI.

use std::fs::File;
use std::io::{Read, Seek};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::have;

/// Fails the test unless `tool` can be started.
pub fn require(tool: &str) {
    assert!(
        have(tool),
        "`{tool}` is not installed (or not on PATH). These tests drive real clients and \
         must not be skipped: install ffmpeg, gstreamer1.0-tools, gstreamer1.0-plugins-base \
         and gstreamer1.0-plugins-good."
    );
}

/// What a finished tool run left behind.
pub struct Run {
    pub status: ExitStatus,
    pub stderr: String,
    pub stdout: String,
    pub elapsed: Duration,
}

/// Runs `tool args` with stdout and stderr captured in temp files, polling
/// for its exit; kills it and fails the test if it outlives `limit`.
pub fn run_tool(tool: &str, args: &[&str], limit: Duration) -> Run {
    run_until(tool, args, limit, false).0
}

/// Runs a `gst-launch-1.0 -e` pipeline like [`run_tool`], but past
/// `limit` interrupts it (SIGINT: `-e` turns that into an end-of-stream,
/// so its sinks are flushed) instead of failing, and says whether it had
/// to. GStreamer's `rtspsrc` over UDP now and then receives every packet
/// and both BYEs of a stored clip and still never reaches end-of-stream
/// on its own under a loaded machine (cause not found; docs/PERFORMANCE.md
/// "GSO is for relay channels only"); the caller still checks everything
/// it decoded.
pub fn run_gst_interrupting(args: &[&str], limit: Duration) -> (Run, bool) {
    run_until("gst-launch-1.0", args, limit, true)
}

/// Past `limit`, with `interrupt` a SIGINT and 15 s more before the kill
/// that fails the test; without, the kill at once.
fn run_until(tool: &str, args: &[&str], limit: Duration, interrupt: bool) -> (Run, bool) {
    let mut out = tempfile::tempfile().expect("temp file");
    let mut err = tempfile::tempfile().expect("temp file");
    let start = Instant::now();
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("clone"))
        .stderr(err.try_clone().expect("clone"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{tool}` ({e}); is it installed?"));
    let mut interrupted = false;
    let grace = if interrupt {
        Duration::from_secs(15)
    } else {
        Duration::ZERO
    };
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if interrupt && !interrupted && start.elapsed() > limit {
            interrupted = true;
            let pid = libc::pid_t::try_from(child.id()).expect("a pid");
            // SAFETY: signals our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        if start.elapsed() > limit + grace {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{tool} {}` still running after {:?}; killed it. stderr:\n{}",
                args.join(" "),
                limit + grace,
                read_all(&mut err)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let run = Run {
        status,
        stderr: read_all(&mut err),
        stdout: read_all(&mut out),
        elapsed,
    };
    (run, interrupted)
}

pub fn read_all(f: &mut File) -> String {
    let mut bytes = Vec::new();
    f.rewind().expect("rewind");
    f.read_to_end(&mut bytes).expect("read");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Like [`run_tool`], and fails the test unless the tool exited with 0.
pub fn run_ok(tool: &str, args: &[&str], limit: Duration) -> Run {
    let run = run_tool(tool, args, limit);
    assert!(
        run.status.success(),
        "`{tool} {}` failed ({}) after {:?}. stderr:\n{}",
        args.join(" "),
        run.status,
        run.elapsed,
        run.stderr
    );
    run
}

/// What every ffmpeg run here starts with: no stdin, errors only.
const FFMPEG_QUIET: [&str; 3] = ["-nostdin", "-v", "error"];

/// Runs `ffmpeg -nostdin -v error ARGS`, failing the test unless it exits
/// with 0 within `limit`.
pub fn ffmpeg(args: &[&str], limit: Duration) -> Run {
    run_ok("ffmpeg", &[&FFMPEG_QUIET[..], args].concat(), limit)
}

/// Tries to play `url` with `ffmpeg -nostdin -v error -rtsp_transport
/// TRANSPORT -i URL -f null -` and returns how it went, success or not
/// (for a test that expects a refusal).
pub fn ffmpeg_attempt(transport: &str, url: &str, limit: Duration) -> Run {
    let args = [
        &FFMPEG_QUIET[..],
        &["-rtsp_transport", transport, "-i", url, "-f", "null", "-"],
    ]
    .concat();
    run_tool("ffmpeg", &args, limit)
}

/// Decodes with `ffmpeg -nostdin -v error INPUT -f s16be -y OUT` (`INPUT`
/// names the input, e.g. `-rtsp_transport tcp -i URL`, and may limit the
/// output, e.g. `-t 2`) and returns the big-endian 16-bit PCM it wrote.
pub fn ffmpeg_s16be(input: &[&str], limit: Duration) -> (Vec<u8>, Run) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.raw");
    let out_s = out.to_str().expect("temp path");
    let run = ffmpeg(&[input, &["-f", "s16be", "-y", out_s]].concat(), limit);
    (std::fs::read(&out).expect("ffmpeg output"), run)
}

/// A tool running in the background, killed when dropped.
pub struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Background {
    /// Its exit status, if it exits within `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Starts `ffmpeg -nostdin -v error ARGS` in the background.
pub fn ffmpeg_background(args: &[&str]) -> Background {
    let mut all = FFMPEG_QUIET.to_vec();
    all.extend_from_slice(args);
    background("ffmpeg", &all)
}

/// Starts `tool args` in the background (its output goes to the test's).
pub fn background(tool: &str, args: &[&str]) -> Background {
    let child = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{tool}` ({e}); is it installed?"));
    Background(child)
}

/// Runs `ffprobe -v error ARGS`, failing the test unless it exits with 0
/// within 20 s.
pub fn ffprobe(args: &[&str]) -> Run {
    run_ok(
        "ffprobe",
        &[&["-v", "error"][..], args].concat(),
        Duration::from_secs(20),
    )
}

/// Runs `f` on every item in its own thread (clips stream in real time, so
/// this keeps the file quick), then fails naming every item that failed.
pub fn par<T: Sync>(items: &[T], name: impl Fn(&T) -> String, f: impl Fn(&T) + Sync) {
    let failed: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = items
            .iter()
            .map(|it| (name(it), s.spawn(|| f(it))))
            .collect();
        handles
            .into_iter()
            .filter_map(|(n, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    format!("{n}: {msg}")
                })
            })
            .collect()
    });
    assert!(failed.is_empty(), "failed:\n{}", failed.join("\n\n"));
}

/// Runs `rtspd load ARGS --json FILE` (the built binary) and returns its
/// summary, failing the test unless it succeeds and the JSON line it
/// printed last equals the file's.
pub fn rtspd_load(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_rtspd"))
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run rtspd load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "rtspd load failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("--json file"))
            .expect("the file is JSON");
    assert_eq!(v, file, "stdout and --json agree");
    eprintln!("{stdout}");
    v
}
