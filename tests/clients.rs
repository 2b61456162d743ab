//! Real RTSP clients (ffprobe, ffmpeg, GStreamer's rtspsrc) against the built
//! server, asserting on what they decode, sample for sample.
//!
//! Every external tool runs under a deadline and is killed when it passes it,
//! so a hung client fails its test instead of hanging CI. A missing tool fails
//! the test with a clear message: CI installs them, and a skipped test must
//! not count as a pass.
//!
//! There is no VLC test: Debian's VLC is built without live555, so it cannot
//! open rtsp:// URLs at all.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::pcm::{assert_pcm_eq, find_offset};
use common::rtsp::parse_replies;
use common::tools::{ffmpeg_s16be, ffprobe, par, require, run_tool, Run};
use common::udp::rcvbuf_errors;
use common::{bundled_media, l16_samples, wav_l16, Reply, Server};

/// The bundled clips: path under `media/`, sample rate, channels, seconds.
const CLIPS: [(&str, u32, u16, f64); 4] = [
    ("tones-8k-mono.wav", 8000, 1, 5.0),
    ("music-44k-stereo.wav", 44100, 2, 5.0),
    ("beeps-48k-mono.wav", 48000, 1, 4.0),
    ("speech/count-16k-mono.wav", 16000, 1, 3.0),
];

// ---------------------------------------------------------------------------
// Running tools

/// How long a client may take for a clip of `secs` seconds streamed in real
/// time, startup and teardown included.
fn limit_for(secs: f64) -> Duration {
    Duration::from_secs_f64(secs + 20.0)
}

// ---------------------------------------------------------------------------
// Comparing PCM

// ---------------------------------------------------------------------------
// ffprobe's JSON

/// The value of `"key":` in `json` (a string's contents, or a bare token).
fn json_value<'a>(json: &'a str, key: &str) -> &'a str {
    let needle = format!("\"{key}\":");
    let at = json
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let rest = json[at + needle.len()..].trim_start();
    match rest.strip_prefix('"') {
        Some(s) => &s[..s.find('"').expect("closing quote")],
        None => rest[..rest.find([',', '}', '\n']).unwrap_or(rest.len())].trim(),
    }
}

// ---------------------------------------------------------------------------
// A recording TCP proxy for the RTSP control connection

/// Forwards one TCP connection to `upstream`, keeping what each side sent.
struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<u8>>>,
    replies: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let (req, rep) = (requests.clone(), replies.clone());
        thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let server = TcpStream::connect(upstream).expect("connect upstream");
            pipe(
                client.try_clone().unwrap(),
                server.try_clone().unwrap(),
                req,
            );
            pipe(server, client, rep);
        });
        Self {
            port,
            requests,
            replies,
        }
    }

    /// The requests the client sent, split at the blank line after each
    /// head (ffmpeg sends no request bodies here).
    fn requests(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.requests.lock().unwrap()).into_owned();
        text.split("\r\n\r\n")
            .map(str::to_owned)
            .filter(|m| !m.trim().is_empty())
            .collect()
    }

    /// The server's responses, each checked as `common::Rtsp` checks them.
    fn replies(&self) -> Vec<Reply> {
        parse_replies(&self.replies.lock().unwrap()).expect("well-formed responses")
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, log: Arc<Mutex<Vec<u8>>>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            log.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A header of a request.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The start of an `npt=START-[END]` range.
fn npt_start(range: &str) -> f64 {
    let v = range
        .trim()
        .strip_prefix("npt=")
        .unwrap_or_else(|| panic!("npt range: {range}"));
    v.split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("npt start: {range}"))
}

// ---------------------------------------------------------------------------
// Generated clips

const GEN_RATE: u32 = 22050;
const GEN_FRAMES: u32 = GEN_RATE * 3 / 2;

/// A deterministic signal per channel, peaking at 1.2 (so float clips clip).
/// The writers below pin the first five frames to edge values.
fn gen_signal(frame: u32, ch: u16) -> f64 {
    let t = f64::from(frame) / f64::from(GEN_RATE);
    let f = if ch == 0 { 440.0 } else { 1234.5 };
    1.2 * (2.0 * std::f64::consts::PI * f * t).sin() * (0.5 + 0.5 * (3.0 * t).cos().abs())
}

/// Interleaved stereo samples of [`gen_signal`], the first ten replaced by
/// `edges`, converted by `conv`.
fn gen_stereo<T: Copy>(edges: &[T], conv: impl Fn(f64) -> T) -> Vec<T> {
    (0..GEN_FRAMES)
        .flat_map(|i| (0..2u16).map(move |ch| (i, ch)))
        .enumerate()
        .map(|(k, (i, ch))| {
            edges
                .get(k)
                .copied()
                .unwrap_or_else(|| conv(gen_signal(i, ch)))
        })
        .collect()
}

/// Writes a 24-bit stereo WAV; returns the expected L16 bytes (top 16 bits).
fn write_s24(path: &Path) -> Vec<u8> {
    let edges = [
        0x7F_FFFF, -0x80_0000, -1, 1, 0xFF, 0x100, -0x100, -0x101, 0x12_3456, -0x12_3456,
    ];
    let samples = gen_stereo(&edges, |v| {
        (v.clamp(-1.0, 1.0) * 8_388_607.0).round() as i32
    });
    common::write_wav(
        path,
        common::int_spec(GEN_RATE, 2, 24),
        samples.iter().copied(),
    );
    samples
        .iter()
        .flat_map(|&v| ((v >> 8) as i16).to_be_bytes())
        .collect()
}

/// Writes a 32-bit float stereo WAV. Returns the expected L16 bytes (clamped
/// to [-1, 1], times 32767, rounded to nearest: computed in f64, where the
/// product of an f32 and 32767 is exact, so it is rounded once), and what a
/// converter that multiplies in f32 (rounding twice) produces instead.
fn write_f32(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let edges = [
        1.0f32, -1.0, 1.5, -2.0, 0.5, -0.5, 0.0, -0.0, 1e-6, -0.999_9,
    ];
    let samples = gen_stereo(&edges, |v| v as f32);
    let spec = hound::WavSpec {
        sample_format: hound::SampleFormat::Float,
        ..common::int_spec(GEN_RATE, 2, 32)
    };
    common::write_wav(path, spec, samples.iter().copied());
    let exact = samples
        .iter()
        .flat_map(|&v| ((f64::from(v).clamp(-1.0, 1.0) * 32767.0).round() as i16).to_be_bytes())
        .collect();
    let in_f32 = samples
        .iter()
        .flat_map(|&v| ((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_be_bytes())
        .collect();
    (exact, in_f32)
}

// ---------------------------------------------------------------------------
// ffmpeg

/// Decodes `url` with ffmpeg over UDP into big-endian 16-bit PCM.
fn ffmpeg_decode(url: &str, before_input: &[&str], secs: f64) -> (Vec<u8>, Run) {
    let input = [&["-rtsp_transport", "udp"], before_input, &["-i", url]].concat();
    ffmpeg_s16be(&input, limit_for(secs))
}

#[test]
fn ffprobe_reports_l16_for_every_bundled_clip() {
    require("ffprobe");
    let server = Server::start(&[]);
    par(
        &CLIPS,
        |c| c.0.to_owned(),
        |&(path, rate, channels, _)| {
            let url = server.url(path);
            let run = ffprobe(&[
                "-rtsp_transport",
                "udp",
                "-show_entries",
                "stream=codec_name,sample_rate,channels",
                "-of",
                "json",
                &url,
            ]);
            let json = run.stdout.as_str();
            assert_eq!(
                json.matches("\"codec_name\"").count(),
                1,
                "one stream in {json}"
            );
            assert_eq!(json_value(json, "codec_name"), "pcm_s16be", "{json}");
            assert_eq!(json_value(json, "sample_rate"), rate.to_string(), "{json}");
            assert_eq!(json_value(json, "channels"), channels.to_string(), "{json}");
        },
    );
}

/// One clip to decode and what it must decode to.
struct Job<'a> {
    server: &'a Server,
    path: &'a str,
    expected: Vec<u8>,
    rate: u32,
    channels: u16,
    secs: f64,
}

#[test]
fn ffmpeg_decodes_bit_exact_pcm() {
    require("ffmpeg");
    let bundled = Server::start(&[]);
    let mut s24 = Vec::new();
    let generated = Server::start_with(|dir| s24 = write_s24(&dir.join("s24-22k-stereo.wav")), &[]);
    let mut jobs: Vec<Job> = CLIPS
        .iter()
        .map(|&(path, rate, channels, secs)| {
            let (expected, r, c) = wav_l16(&bundled_media().join(path));
            assert_eq!((r, c), (rate, channels), "{path} on disk");
            Job {
                server: &bundled,
                path,
                expected,
                rate,
                channels,
                secs,
            }
        })
        .collect();
    jobs.push(Job {
        server: &generated,
        path: "s24-22k-stereo.wav",
        expected: s24,
        rate: GEN_RATE,
        channels: 2,
        secs: 1.5,
    });
    par(
        &jobs,
        |j| j.path.to_owned(),
        |j| {
            let what = format!("ffmpeg {}", j.path);
            let dropped = rcvbuf_errors();
            let (mut decoded, _) = ffmpeg_decode(&j.server.url(j.path), &[], j.secs);
            // On a busy machine ffmpeg's own UDP socket may overflow; that
            // loss is the client's (the kernel counts it), so the clip is
            // played once more. A loss the kernel did not see still fails.
            if decoded.len() != j.expected.len() && rcvbuf_errors() > dropped {
                eprintln!("{what}: ffmpeg's socket overflowed; playing it again");
                decoded = ffmpeg_decode(&j.server.url(j.path), &[], j.secs).0;
            }
            assert_pcm_eq(&what, &decoded, &j.expected, j.channels, j.rate);
        },
    );
}

/// RTP interleaved on the RTSP connection (RFC 2326 §10.12), as ffmpeg
/// does with `-rtsp_transport tcp`: the same samples arrive.
#[test]
fn ffmpeg_decodes_bit_exact_pcm_over_tcp() {
    require("ffmpeg");
    let server = Server::start(&[]);
    let jobs: Vec<_> = CLIPS[..2].to_vec();
    par(
        &jobs,
        |j| j.0.to_owned(),
        |&(path, rate, channels, secs)| {
            let (expected, _, _) = wav_l16(&bundled_media().join(path));
            let (decoded, _) = ffmpeg_decode(&server.url(path), &["-rtsp_transport", "tcp"], secs);
            assert_pcm_eq(
                &format!("ffmpeg over TCP {path}"),
                &decoded,
                &expected,
                channels,
                rate,
            );
        },
    );
}

#[test]
fn ffmpeg_decodes_float_wav_rounded_once() {
    // 32-bit float must be scaled by 32767 and rounded once: a product
    // rounded to f32 first turns values just under k + 0.5 into k + 0.5 and
    // then k + 1. The clip is built so that some samples hit that case.
    require("ffmpeg");
    let mut expected = (Vec::new(), Vec::new());
    let server = Server::start_with(
        |dir| expected = write_f32(&dir.join("f32-22k-stereo.wav")),
        &[],
    );
    let (exact, in_f32) = expected;
    let (decoded, _) = ffmpeg_decode(&server.url("f32-22k-stereo.wav"), &[], 1.5);
    assert!(
        decoded == exact || decoded != in_f32,
        "ffmpeg f32-22k-stereo.wav: the decoded samples equal the float samples scaled by \
         32767 in f32 and then rounded (two roundings), not the nearest integers; {} of {} \
         samples differ from the correctly rounded ones",
        l16_samples(&exact)
            .iter()
            .zip(&l16_samples(&in_f32))
            .filter(|(a, b)| a != b)
            .count(),
        exact.len() / 2
    );
    assert_pcm_eq("ffmpeg f32-22k-stereo.wav", &decoded, &exact, 2, GEN_RATE);
}

#[test]
fn ffmpeg_seeks_with_range() {
    // `-ss` before `-i` makes ffmpeg's RTSP demuxer seek on the server: it
    // PLAYs from 0 on opening, then PAUSEs and PLAYs again with
    // `Range: npt=2.500-` (checked below through a recording proxy). `-noaccurate_seek` turns off ffmpeg's own trimming
    // of decoded frames before 2.5 s, so what comes out is what the server
    // sent from its seek point.
    require("ffmpeg");
    let server = Server::start(&[]);
    par(
        &CLIPS,
        |c| c.0.to_owned(),
        |&(path, rate, channels, secs)| {
            let (pcm, _, _) = wav_l16(&bundled_media().join(path));
            let frame = 2 * usize::from(channels);
            let start = (2.5 * f64::from(rate)) as usize;
            assert_eq!(
                start as f64,
                2.5 * f64::from(rate),
                "2.5 s is a whole frame"
            );
            let expected = &pcm[start * frame..];

            let proxy = Recorder::start(server.addr());
            let url = format!("rtsp://127.0.0.1:{}/{path}", proxy.port);
            let (decoded, run) = ffmpeg_decode(&url, &["-ss", "2.5", "-noaccurate_seek"], secs);

            // ffmpeg asked the server to seek...
            let requests = proxy.requests();
            let plays: Vec<&String> = requests.iter().filter(|m| m.starts_with("PLAY ")).collect();
            let last = plays
                .last()
                .unwrap_or_else(|| panic!("no PLAY in {requests:#?}"));
            let range = header(last, "Range").unwrap_or_else(|| panic!("no Range in {last}"));
            assert_eq!(npt_start(range), 2.5, "ffmpeg's last PLAY: {last}");
            // ...and the server said it did.
            let replies = proxy.replies();
            let cseq = header(last, "CSeq").unwrap();
            let reply = replies
                .iter()
                .find(|r| r.header("CSeq") == Some(cseq))
                .unwrap_or_else(|| {
                    let all: Vec<String> = replies.iter().map(Reply::to_string).collect();
                    panic!("no reply to CSeq {cseq} in {all:#?}")
                });
            assert_eq!(reply.status, 200, "seek PLAY reply: {reply}");
            let range = reply
                .header("Range")
                .unwrap_or_else(|| panic!("Range in {reply}"));
            assert_eq!(npt_start(range), 2.5, "seek PLAY reply: {reply}");
            // Streaming only the rest takes less than the whole clip.
            assert!(
                run.elapsed.as_secs_f64() < secs - 0.5,
                "{path}: ffmpeg took {:?} for the last {} s of a {secs} s clip",
                run.elapsed,
                secs - 2.5
            );

            assert_pcm_eq(
                &format!("ffmpeg -ss 2.5 {path}"),
                &decoded,
                expected,
                channels,
                rate,
            );
        },
    );
}

// ---------------------------------------------------------------------------
// GStreamer

#[test]
fn gstreamer_plays_to_the_end() {
    // What ends the pipeline is the RTCP BYE the server sends right after a
    // clip's last packet: with GST_DEBUG=rtspsrc:5,rtpsession:5 the log shows
    // `rtp_session_process_bye: got BYE packet`, then rtspsrc `on_bye_ssrc`
    // and `gst_rtspsrc_do_stream_eos`, and gst-launch exits 0 about 50 ms
    // after the clip's duration. The upper time bound below guards that
    // (rtspsrc's own UDP `timeout` is 5 s, so anything else would be slower).
    // rtpL16depay already outputs S16BE; audioconvert passes it through.
    // Both lower transports: `protocols=tcp` is RTP interleaved on the RTSP
    // connection.
    require("gst-launch-1.0");
    let server = Server::start(&[]);
    let clips = [
        (CLIPS[0], "protocols=udp"),
        (CLIPS[1], "protocols=udp"),
        (CLIPS[0], "protocols=tcp"),
        (CLIPS[1], "protocols=tcp"),
    ];
    par(
        &clips,
        |c| format!("{} {}", c.0 .0, c.1),
        |&((path, rate, channels, secs), protocols)| {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = dir.path().join("out.raw");
            let args = common::gst_l16_args(&server.url(path), protocols, &[], &out);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = run_tool("gst-launch-1.0", &args, limit_for(secs));
            assert!(
                run.status.success() || common::gst_shutdown_race_only(run.status, &run.stderr),
                "`gst-launch-1.0 {}` failed ({}) after {:?}. stderr:\n{}",
                args.join(" "),
                run.status,
                run.elapsed,
                run.stderr
            );
            let t = run.elapsed.as_secs_f64();
            assert!(
                t > secs - 0.5 && t < secs + 3.0,
                "{path} {protocols}: gst-launch ended after {t:.2} s for a {secs} s clip (it \
                 should end on the server's RTCP BYE right after the last packet)"
            );
            let (expected, _, _) = wav_l16(&bundled_media().join(path));
            let decoded = std::fs::read(&out).expect("gst output");
            assert_pcm_eq(
                &format!("gstreamer {path} {protocols}"),
                &decoded,
                &expected,
                channels,
                rate,
            );
        },
    );
}

// ---------------------------------------------------------------------------
// The helpers above, checked without any client

#[test]
fn helpers_find_offsets_and_kill_hung_tools() {
    let panics = |f: &dyn Fn()| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .err()
            .map(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| e.downcast_ref::<&str>().unwrap_or(&"").to_string())
            })
    };
    // A stereo ramp-ish signal with no repeats.
    let pcm: Vec<u8> = (0..2000i32)
        .flat_map(|i| ((i * 37 % 20011 - 10000) as i16).to_be_bytes())
        .collect();
    let frame = 4;
    // The GStreamer shutdown race is forgiven only in its exact form.
    use std::os::unix::process::ExitStatusExt;
    let race = "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Could not \
                write to resource.\nAdditional debug info:\n../gst/rtsp/gstrtspsrc.c(6766): \
                gst_rtspsrc_try_send (): /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0:\nCould \
                not send message. (Received end-of-file)\n";
    let exit1 = ExitStatus::from_raw(1 << 8);
    assert!(common::gst_shutdown_race_only(exit1, race));
    assert!(!common::gst_shutdown_race_only(
        ExitStatus::from_raw(2 << 8),
        race
    ));
    let other = race.replace("Received end-of-file", "Connection refused");
    assert!(!common::gst_shutdown_race_only(exit1, &other));
    let more =
        format!("{race}ERROR: from element /GstPipeline:pipeline0/GstFileSink:filesink0: x\n");
    assert!(!common::gst_shutdown_race_only(exit1, &more));
    let samples = l16_samples(&pcm);
    let f = frame / 2;
    assert_eq!(find_offset(&samples, &samples, 2, 100), Some(0));
    assert_eq!(find_offset(&samples[3 * f..], &samples, 2, 100), Some(3));
    let padded: Vec<i16> = [vec![0; 5 * f], samples.clone()].concat();
    assert_eq!(find_offset(&padded, &samples, 2, 100), Some(-5));
    assert_eq!(find_offset(&samples, &samples[200 * f..], 2, 100), None);

    let msg = panics(&|| assert_pcm_eq("dropped", &pcm[3 * frame..], &pcm, 2, 100)).unwrap();
    assert!(msg.contains("Some(3)"), "{msg}");
    let msg = panics(&|| assert_pcm_eq("short", &pcm[..pcm.len() - frame], &pcm, 2, 100)).unwrap();
    assert!(msg.contains("frame count"), "{msg}");
    let mut off_by_one = pcm.clone();
    off_by_one[101] ^= 1;
    let msg = panics(&|| assert_pcm_eq("lsb", &off_by_one, &pcm, 2, 100)).unwrap();
    assert!(
        msg.contains("1 of 2000 samples differ (largest by 1)"),
        "{msg}"
    );
    assert!(panics(&|| assert_pcm_eq("same", &pcm, &pcm, 2, 100)).is_none());

    let start = Instant::now();
    let msg = panics(&|| {
        run_tool("sleep", &["30"], Duration::from_millis(300));
    })
    .unwrap();
    assert!(msg.contains("killed it"), "{msg}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let msg = panics(&|| {
        run_tool("rtspd-no-such-tool", &[], Duration::from_secs(1));
    })
    .unwrap();
    assert!(msg.contains("cannot start"), "{msg}");
}
