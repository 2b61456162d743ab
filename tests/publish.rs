//! Publishing to live channels (ANNOUNCE, SETUP `mode=record`, RECORD):
//! ffmpeg publishing L16 and PCMU over UDP and TCP to ffmpeg listeners,
//! sample for sample; publisher handover on one timeline; who may publish.

mod common;

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use common::pcm::find_offset;
use common::tools::{ffmpeg, ffmpeg_background, ffmpeg_s16be, require};
use common::udp::bye_within;
use common::{
    l16_samples, rtp_payload, rtp_seq, rtp_ssrc, rtp_ts, setup_udp, Rtsp, Server, UdpPair,
};
use rtspd::proto::packetize::g711::ulaw_to_linear;

/// Pseudo-random samples (an LCG), so any 32 of them find their place.
fn noise(n: usize, seed: u32) -> Vec<i16> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 16) as i16 / 2
        })
        .collect()
}

/// What one listener decoded must be one unbroken run of `expected`.
fn assert_run(what: &str, decoded: &[i16], expected: &[i16], channels: usize, min: usize) {
    assert!(
        decoded.len() >= min,
        "{what}: {} samples, want {min}",
        decoded.len()
    );
    let frames = expected.len() / channels;
    let start = find_offset(&decoded[..64], expected, channels, frames)
        .and_then(|frame| usize::try_from(frame).ok())
        .map(|frame| frame * channels)
        .unwrap_or_else(|| {
            panic!(
                "{what}: its first samples ({:?}, {} in all) are not the publisher's",
                &decoded[..8],
                decoded.len()
            )
        });
    let run = &expected[start..];
    let n = decoded.len().min(run.len());
    if let Some(i) = (0..n).find(|&i| decoded[i] != run[i]) {
        panic!(
            "{what}: sample {i} of {} differs (from sample {start} of the source): \
             audio was lost or altered",
            decoded.len()
        );
    }
    assert_eq!(n, decoded.len(), "{what}: more audio than was published");
}

/// Runs an ffmpeg listener on `url` for `secs` seconds of audio; returns
/// its samples.
fn listen(url: &str, transport: &str, secs: &str) -> Vec<i16> {
    let input = ["-rtsp_transport", transport, "-i", url, "-t", secs];
    let (pcm, _) = ffmpeg_s16be(&input, Duration::from_secs(30));
    l16_samples(&pcm)
}

/// ffmpeg publishes (with `-re`) a 6 s clip as L16 (44.1 kHz stereo) and
/// as PCMU (8 kHz), each over UDP and over TCP, to four channels at once;
/// on each, one UDP and one TCP ffmpeg listener join after a second and
/// decode 1.5 s: every sample is the publisher's, in order, none lost.
#[test]
fn ffmpeg_publishes_l16_and_pcmu_over_udp_and_tcp() {
    require("ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let stereo = noise(44_100 * 2 * 6, 1);
    let narrow = noise(8000 * 6, 2);
    let stereo_wav = dir.path().join("stereo.wav");
    let narrow_wav = dir.path().join("narrow.wav");
    common::write_wav(
        &stereo_wav,
        common::int_spec(44_100, 2, 16),
        stereo.iter().copied(),
    );
    common::write_wav(
        &narrow_wav,
        common::int_spec(8000, 1, 16),
        narrow.iter().copied(),
    );
    // The publisher's µ-law is ffmpeg's encoder (which rounds some inputs
    // at decision boundaries to the neighbouring code, unlike ours):
    // listeners must hear exactly those codes.
    let ulaw = dir.path().join("narrow.ulaw");
    ffmpeg(
        &[
            "-i",
            narrow_wav.to_str().expect("path"),
            "-c:a",
            "pcm_mulaw",
            "-f",
            "mulaw",
            "-y",
            ulaw.to_str().expect("path"),
        ],
        Duration::from_secs(60),
    );
    let g711: Vec<i16> = std::fs::read(&ulaw)
        .expect("µ-law")
        .into_iter()
        .map(ulaw_to_linear)
        .collect();
    assert_eq!(g711.len(), narrow.len());
    let server = Server::start(&[
        "--live",
        "l16udp=publish",
        "--live",
        "l16tcp=publish",
        "--live",
        "pcmuudp=publish",
        "--live",
        "pcmutcp=publish",
    ]);
    let cases = [
        (
            "l16udp",
            &stereo_wav,
            "pcm_s16be",
            "udp",
            &stereo,
            2usize,
            44_100usize,
        ),
        (
            "l16tcp",
            &stereo_wav,
            "pcm_s16be",
            "tcp",
            &stereo,
            2,
            44_100,
        ),
        ("pcmuudp", &narrow_wav, "pcm_mulaw", "udp", &g711, 1, 8000),
        ("pcmutcp", &narrow_wav, "pcm_mulaw", "tcp", &g711, 1, 8000),
    ];
    thread::scope(|s| {
        for (name, wav, codec, transport, expected, channels, rate) in cases {
            let url = server.url(&format!("live/{name}"));
            s.spawn(move || {
                let wav = wav.to_str().expect("path");
                let _publisher = ffmpeg_background(&[
                    "-re",
                    "-i",
                    wav,
                    "-c:a",
                    codec,
                    "-rtsp_transport",
                    transport,
                    "-f",
                    "rtsp",
                    &url,
                ]);
                thread::sleep(Duration::from_secs(1));
                let got: Vec<Vec<i16>> = thread::scope(|s| {
                    let listeners: Vec<_> = ["udp", "tcp"]
                        .map(|t| {
                            let url = url.clone();
                            s.spawn(move || listen(&url, t, "1.5"))
                        })
                        .into_iter()
                        .collect();
                    listeners
                        .into_iter()
                        .map(|h| h.join().expect("listener"))
                        .collect()
                });
                let min = rate * channels * 14 / 10;
                for (decoded, t) in got.iter().zip(["udp", "tcp"]) {
                    let what = format!("{name} ({codec} published over {transport}), {t} listener");
                    assert_run(&what, decoded, expected, channels, min);
                }
            });
        }
    });
}

const L16_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio 0 RTP/AVP 96\r\na=rtpmap:96 L16/8000\r\na=control:streamid=0\r\n";

/// A publisher made of raw sockets: ANNOUNCE, SETUP over UDP, RECORD.
struct RawPublisher {
    c: Rtsp,
    pair: UdpPair,
    server_rtp: u16,
    session: String,
}

impl RawPublisher {
    fn start(server: &Server, url: &str) -> Self {
        let mut c = Rtsp::connect(server.addr());
        let a = announce(&mut c, url, L16_SDP);
        assert_eq!(a.status, 200, "ANNOUNCE");
        let pair = UdpPair::bind();
        let transport = format!(
            "Transport: RTP/AVP/UDP;unicast;client_port={}-{};mode=record",
            pair.port(),
            pair.port() + 1
        );
        let s = c.request("SETUP", &format!("{url}/streamid=0"), &[&transport]);
        assert_eq!(s.status, 200, "SETUP mode=record");
        let t = s.header("Transport").expect("Transport");
        let server_rtp = t
            .split(';')
            .find_map(|p| p.strip_prefix("server_port="))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse().ok())
            .expect("server_port");
        let session = s.session();
        let r = c.request(
            "RECORD",
            url,
            &[&format!("Session: {session}"), "Range: npt=0.000-"],
        );
        assert_eq!(r.status, 200, "RECORD");
        Self {
            c,
            pair,
            server_rtp,
            session,
        }
    }

    /// Sends `samples` as 20 ms L16 packets, paced in real time.
    fn send(&self, samples: &[i16], ssrc: u32, first_seq: u16, first_ts: u32) {
        let start = Instant::now();
        for (k, chunk) in samples.chunks(160).enumerate() {
            let mut p = vec![0x80, 96];
            p.extend(first_seq.wrapping_add(k as u16).to_be_bytes());
            p.extend(first_ts.wrapping_add(160 * k as u32).to_be_bytes());
            p.extend(ssrc.to_be_bytes());
            p.extend(chunk.iter().flat_map(|s| s.to_be_bytes()));
            send_to(&self.pair.rtp, &p, self.server_rtp);
            let due = start + Duration::from_millis(20 * (k as u64 + 1));
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
}

fn send_to(socket: &UdpSocket, data: &[u8], port: u16) {
    socket.send_to(data, ("127.0.0.1", port)).expect("send RTP");
}

fn announce(c: &mut Rtsp, url: &str, sdp: &str) -> common::Reply {
    c.request_with_body(
        "ANNOUNCE",
        url,
        &["Content-Type: application/sdp"],
        sdp.as_bytes(),
    )
}

/// Two publishers in turn on one channel: the second is refused while the
/// first publishes; the listener stays through the handover and through a
/// stall of the second (no BYE) and hears both, every sample, with the
/// channel's one SSRC and sequence numbers that never skip, while the
/// timestamps count the silent time.
#[test]
fn publishers_hand_over_on_one_timeline() {
    let server = Server::start(&["--live", "studio=publish,rate=8000,channels=1"]);
    let url = server.url("live/studio");
    let (mut lc, lp) = (Rtsp::connect(server.addr()), UdpPair::bind());
    let d = lc.request("DESCRIBE", &url, &[]);
    assert_eq!(d.status, 200, "a declared format runs before any publisher");
    let s = lc.request("SETUP", &format!("{url}/trackID=0"), &[&lp.transport()]);
    assert_eq!(s.status, 200);
    let ssrc = u32::from_str_radix(
        s.header("Transport")
            .and_then(|t| t.split(';').find_map(|p| p.strip_prefix("ssrc=")))
            .expect("ssrc"),
        16,
    )
    .expect("hex ssrc");
    let session = s.session();
    let p = lc.request("PLAY", &url, &[&format!("Session: {session}")]);
    assert_eq!(p.status, 200);
    let seq0 = p.rtp_info()[0].0;

    let first = noise(8000, 3);
    let second = noise(8000, 4);
    let a = RawPublisher::start(&server, &url);
    let mut other = Rtsp::connect(server.addr());
    assert_eq!(
        announce(&mut other, &url, L16_SDP).status,
        455,
        "a second publisher"
    );
    a.send(&first, 0xAAAA_0001, 65_500, 7);
    let mut a = a;
    let t =
        a.c.request("TEARDOWN", &url, &[&format!("Session: {}", a.session)]);
    assert_eq!(t.status, 200);
    let mut got = lp.recv_rtp_until_quiet(Duration::from_millis(600));
    assert!(
        !bye_within(&lp.rtcp, Duration::from_millis(400)),
        "listeners stay when the publisher leaves"
    );
    // The next publisher, on the connection that was refused.
    drop(other);
    let b = RawPublisher::start(&server, &url);
    // It stalls for 0.8 s halfway without leaving: listeners stay.
    b.send(&second[..4000], 0xBBBB_0002, 3, 1_000_000);
    thread::sleep(Duration::from_millis(800));
    b.send(&second[4000..], 0xBBBB_0002, 3 + 25, 1_000_000 + 4000);
    got.extend(lp.recv_rtp_until_quiet(Duration::from_millis(600)));
    let got: Vec<Vec<u8>> = got.into_iter().map(|x| x.0).collect();
    assert!(
        got.iter().all(|p| rtp_ssrc(p) == ssrc),
        "the channel's own SSRC throughout"
    );
    assert_eq!(rtp_seq(&got[0]), seq0, "first packet = RTP-Info");
    for w in got.windows(2) {
        assert_eq!(
            rtp_seq(&w[1]),
            rtp_seq(&w[0]).wrapping_add(1),
            "no sequence gap"
        );
    }
    let pcm: Vec<i16> = got
        .iter()
        .flat_map(|p| l16_samples(rtp_payload(p)))
        .collect();
    assert_eq!(
        pcm,
        [first, second].concat(),
        "both publishers' audio, all of it, in order"
    );
    assert!(
        !bye_within(&lp.rtcp, Duration::from_millis(200)),
        "no BYE after a stall either"
    );
    // At the handover and at the stall: silence the timestamps account for.
    let jumps: Vec<u32> = got
        .windows(2)
        .map(|w| rtp_ts(&w[1]).wrapping_sub(rtp_ts(&w[0])))
        .filter(|&d| d != 160)
        .collect();
    assert_eq!(
        jumps.len(),
        2,
        "two jumps, at the handover and the stall: {jumps:?}"
    );
    for j in jumps {
        assert!(
            (8000 / 4..8000 * 10).contains(&j),
            "a jump of {j} ticks is the silent time"
        );
    }
}

/// Who may publish where, and what a publisher must send.
#[test]
fn publishing_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("loop.wav");
    common::write_wav(&wav, common::int_spec(8000, 1, 16), noise(8000, 5));
    let file_channel = format!("radio=file:{}", wav.display());
    let server = Server::start(&["--live", "studio=publish", "--live", &file_channel]);
    let studio = server.url("live/studio");
    let mut c = Rtsp::connect(server.addr());
    let o = c.request("OPTIONS", &studio, &[]);
    let public = o.header("Public").expect("Public");
    assert!(
        public.contains("ANNOUNCE") && public.contains("RECORD"),
        "{public}"
    );
    assert_eq!(
        c.request("DESCRIBE", &studio, &[]).status,
        404,
        "nobody publishes yet"
    );
    let cases = [
        (server.url("live/unknown"), L16_SDP, "application/sdp", 403, "unconfigured name"),
        (server.url("live/radio"), L16_SDP, "application/sdp", 403, "a file channel"),
        (server.url("tones-8k-mono.wav"), L16_SDP, "application/sdp", 403, "a clip"),
        (studio.clone(), L16_SDP, "text/plain", 415, "not SDP"),
        (studio.clone(), "v=0\r\nthis is not sdp", "application/sdp", 400, "garbage SDP"),
        (
            studio.clone(),
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
            "application/sdp",
            415,
            "VP8 video",
        ),
        (
            studio.clone(),
            "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 speex/8000\r\nm=video 0 RTP/AVP 98\r\na=rtpmap:98 theora/90000\r\n",
            "application/sdp",
            415,
            "speex and theora",
        ),
    ];
    for (url, sdp, ctype, status, why) in cases {
        let r = c.request_with_body(
            "ANNOUNCE",
            &url,
            &[&format!("Content-Type: {ctype}")],
            sdp.as_bytes(),
        );
        assert_eq!(r.status, status, "ANNOUNCE {why}");
        // A 415 for an SDP names what the server does take.
        if status == 415 && ctype == "application/sdp" {
            assert!(
                r.reason.contains("Supported: H264, H265")
                    && r.reason.contains("OPUS")
                    && r.reason.contains("L16"),
                "ANNOUNCE {why}: {}",
                r.reason
            );
        }
    }
    // SETUP mode=record needs an ANNOUNCE on the same connection first.
    let pair = UdpPair::bind();
    let record = format!(
        "Transport: RTP/AVP;unicast;client_port={}-{};mode=record",
        pair.port(),
        pair.port() + 1
    );
    assert_eq!(
        c.request("SETUP", &format!("{studio}/streamid=0"), &[&record])
            .status,
        455
    );
    // A player's session cannot RECORD; a publisher's cannot PLAY.
    let radio = server.url("live/radio");
    let listener = setup_udp(&mut c, &radio, &UdpPair::bind());
    let r = c.request("RECORD", &radio, &[&format!("Session: {listener}")]);
    assert_eq!(r.status, 455, "RECORD on a playing session");
    let publisher = RawPublisher::start(&server, &studio);
    let mut pc = publisher.c;
    let p = pc.request(
        "PLAY",
        &studio,
        &[&format!("Session: {}", publisher.session)],
    );
    assert_eq!(p.status, 455, "PLAY on a recording session");
    assert_eq!(
        c.request("DESCRIBE", &studio, &[]).status,
        200,
        "published: listeners may come"
    );
    // The publisher's connection closes without TEARDOWN: the channel is
    // free for the next one at once.
    drop(pc);
    let mut next = Rtsp::connect(server.addr());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = announce(&mut next, &studio, L16_SDP).status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 455);
        assert!(
            Instant::now() < deadline,
            "the channel stayed taken after its publisher left"
        );
        thread::sleep(Duration::from_millis(50));
    }

    // --allow-publish: any valid name, up to --max-published-channels.
    let open = Server::start(&["--allow-publish", "--max-published-channels", "1"]);
    let mut c = Rtsp::connect(open.addr());
    assert_eq!(announce(&mut c, &open.url("live/new"), L16_SDP).status, 200);
    assert_eq!(
        c.request("DESCRIBE", &open.url("live/new"), &[]).status,
        200
    );
    assert_eq!(
        announce(&mut c, &open.url("live/more"), L16_SDP).status,
        503,
        "over the limit"
    );
    assert_eq!(
        announce(&mut c, &open.url("live/a%20b"), L16_SDP).status,
        403,
        "bad name"
    );
}
