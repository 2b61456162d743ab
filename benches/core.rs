//! Benchmarks of the sans-IO core and of the syscall it feeds.
//!
//! ```text
//! cargo bench --bench core              # all (about a minute)
//! cargo bench --bench core -- pacer     # one group
//! ```
//!
//! * `parse`: a typical ffmpeg SETUP and a GStreamer PLAY, whole and as the
//!   parser sees a request that arrives in two reads (one `Incomplete` call
//!   on the first half, then one on the whole buffer).
//! * `packetize`: `Packetizer::chunk` + `Stamper::packet` per RTP packet, for
//!   8 kHz mono 20 ms and 44.1 kHz stereo 350-frame (MTU-bound) packets.
//! * `pacer`: 1,000 sessions of an 8 kHz clip playing, their start times
//!   spread over one 20 ms packet interval; one iteration advances a fake
//!   `now` by 20 ms and drains `poll_transmit` (about 1,000 packets), as the
//!   server's pacing loop does. Throughput is per packet.
//! * `send`: 1,000 datagrams of 172 bytes (a 20 ms G.711 packet; 332 is a
//!   20 ms 8 kHz L16 one) sent over loopback to a socket that a thread
//!   drains, once with one `UdpSocket::send_to` each and once in `sendmmsg`
//!   batches of 64 (`rtspd::net::mmsg::send_batch`, what the pacing thread
//!   uses): the real system calls, to set the pacer's per-packet cost
//!   against and to show what batching saves.
//! * `fanout`: a relayed 2 Mbit/s P-frame (8 packets of 1,400 bytes) to
//!   125 listeners: `RelayChannel::push` of its 8 packets (restamping, the
//!   fan-out into 1,000 transmits, no I/O), then the 1,000 datagrams sent
//!   over loopback to 125 sockets that a thread drains, once with
//!   `sendmmsg` (one datagram per message) and once with UDP GSO (one
//!   segmented message per listener, `rtspd::net::gso::send_segmented`,
//!   what relay channels use).
//! * `auth`: `Authenticator::authenticate` on a Digest header as GStreamer
//!   sends it (no `qop`, so the same header verifies every time), MD5 and
//!   SHA-256: parsing, the nonce's HMAC check and the response's hashes,
//!   which every request on a protected path costs (a `qop=auth` header
//!   adds one lookup in the nonce-count table).
//!
//! Every group keeps a short measurement time so the whole run takes about a
//! minute on two cores; under `cargo test --all-targets` each runs once.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rtspd::net::{gso, mmsg};
use rtspd::proto::clock::WallClock;
use rtspd::proto::pacer::{Pacer, TrackConfig, Transmit};
use rtspd::proto::packetize::{Packetizer, L16};
use rtspd::proto::rtp::Stamper;
use rtspd::proto::rtsp::{parse, Limits, Parsed};
use rtspd::proto::session::{Dest, PlayRequest};

const PTIME: Duration = Duration::from_millis(20);
const MTU_PAYLOAD: usize = 1400;

fn short<M: criterion::measurement::Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
}

// ---------------------------------------------------------------- parse

/// What ffmpeg 6 (libavformat) sends for SETUP of a UDP track: its own
/// headers first, then CSeq and User-Agent.
const FFMPEG_SETUP: &[u8] = b"SETUP rtsp://127.0.0.1:8554/tones-8k-mono.wav/trackID=0 RTSP/1.0\r\n\
Transport: RTP/AVP/UDP;unicast;client_port=23456-23457\r\n\
CSeq: 3\r\n\
User-Agent: Lavf60.16.100\r\n\
\r\n";

/// What GStreamer's rtspsrc sends for PLAY of an aggregate URL.
const GST_PLAY: &[u8] = b"PLAY rtsp://127.0.0.1:8554/tones-8k-mono.wav/ RTSP/1.0\r\n\
CSeq: 4\r\n\
User-Agent: GStreamer/1.22.0\r\n\
Range: npt=0-\r\n\
Session: 6f1d0b5c9a7e4d2f8c3b1a0e9d8c7b6a\r\n\
Date: Sun, 23 Nov 2026 09:00:00 GMT\r\n\
\r\n";

fn expect_request(r: Result<Parsed, rtspd::proto::rtsp::ParseError>, len: usize) -> Parsed {
    match r {
        Ok(p @ Parsed::Request { consumed, .. }) if consumed == len => p,
        other => panic!("expected a whole request of {len} bytes, got {other:?}"),
    }
}

fn bench_parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    short(&mut g);
    g.throughput(Throughput::Elements(1));
    for (name, req) in [("ffmpeg_setup", FFMPEG_SETUP), ("gst_play", GST_PLAY)] {
        // Correct before timed: a whole request, and Incomplete at the split.
        let half = req.len() / 2;
        expect_request(parse(req, &limits), req.len());
        assert_eq!(parse(&req[..half], &limits), Ok(Parsed::Incomplete));

        g.bench_function(format!("{name}/whole"), |b| {
            b.iter(|| parse(black_box(req), &limits))
        });
        g.bench_function(format!("{name}/split_in_two_reads"), |b| {
            b.iter(|| {
                let first = parse(black_box(&req[..half]), &limits);
                let second = parse(black_box(req), &limits);
                (first, second)
            })
        });
    }
    g.finish();
}

// ------------------------------------------------------------ packetize

/// `seconds` of interleaved big-endian samples.
fn pcm(rate: u32, channels: u16, seconds: u32) -> Bytes {
    let frames = rate * seconds;
    let mut v = Vec::with_capacity(frames as usize * 2 * usize::from(channels));
    for i in 0..frames {
        for ch in 0..channels {
            v.extend_from_slice(&((i as u16).wrapping_add(ch)).to_be_bytes());
        }
    }
    Bytes::from(v)
}

fn bench_packetize(c: &mut Criterion) {
    let mut g = c.benchmark_group("packetize");
    short(&mut g);
    g.throughput(Throughput::Elements(1));
    for (name, rate, channels, frames, payload) in [
        ("l16_8k_mono_20ms", 8000, 1, 160, 320),
        ("l16_44k1_stereo_350f", 44_100, 2, 350, 1400),
    ] {
        let pkt = Packetizer::L16(L16::new(
            pcm(rate, channels, 10),
            rate,
            channels,
            PTIME,
            MTU_PAYLOAD,
        ));
        let end = pkt.duration_ticks();
        let first = pkt.chunk(0, end).expect("a first chunk");
        assert_eq!((first.next, first.payload.len()), (frames, payload));
        let mut stamper = Stamper::new(0x1234_5678, 96, 0);
        let mut pos = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let c = match pkt.chunk(pos, end) {
                    Some(c) => c,
                    None => pkt.chunk(0, end).expect("chunk at 0"),
                };
                pos = c.next;
                stamper.packet(
                    0x0100_0000u32.wrapping_add(c.pts as u32),
                    c.marker,
                    &c.payload,
                )
            })
        });
        assert_eq!(stamper.packet(0, false, &first.payload).len(), 12 + payload);
    }
    g.finish();
}

// ---------------------------------------------------------------- pacer

const SESSIONS: u64 = 1000;
const CLIP_SECS: u32 = 60;
const TICK: Duration = Duration::from_millis(20);

struct PacerRig {
    pacer: Pacer,
    now: Instant,
    /// Replay every session before its clip runs out.
    replay_at: Instant,
    batch: Vec<Transmit>,
    drained: u64,
    ticks: u64,
}

impl PacerRig {
    fn new() -> Self {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(
            WallClock::new(t0, Duration::from_secs(1_700_000_000)),
            "bench".into(),
        );
        // One packetizer: every session shares the clip's bytes.
        let clip = Packetizer::L16(L16::new(pcm(8000, 1, CLIP_SECS), 8000, 1, PTIME, 1400));
        for g in 0..SESSIONS {
            let port = 20_000 + 2 * g as u16;
            pacer.add_track(
                g,
                0,
                TrackConfig {
                    packetizer: clip.clone(),
                    ssrc: 0x1000_0000 + g as u32,
                    payload_type: 96,
                    first_seq: (g * 7919) as u16,
                    first_rtptime: (g * 104_729) as u32,
                    rtp_dest: Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port))),
                    rtcp_dest: Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port + 1))),
                },
            );
        }
        let mut rig = Self {
            pacer,
            now: t0,
            replay_at: t0,
            batch: Vec::with_capacity(2 * SESSIONS as usize),
            drained: 0,
            ticks: 0,
        };
        rig.replay();
        rig
    }

    /// (Re)starts every session, start times spread evenly over one tick so
    /// that each 20 ms tick has one packet of every session due, and drains
    /// what PLAY queues (the SRs and the first packets).
    fn replay(&mut self) {
        let base = self.now;
        for g in 0..SESSIONS {
            let at = base + TICK * g as u32 / SESSIONS as u32;
            let req = PlayRequest {
                start: Some(0.0),
                end: None,
                run: 1,
            };
            self.pacer.play(g, req, at).expect("play");
        }
        self.now = base + TICK;
        while self.pacer.poll_transmit(self.now).is_some() {}
        self.replay_at = base + Duration::from_secs(u64::from(CLIP_SECS) - 1);
    }

    /// One tick, untimed bookkeeping excluded; returns the time spent
    /// draining (and dropping) the tick's datagrams.
    fn tick(&mut self) -> Duration {
        if self.now >= self.replay_at {
            self.replay();
        }
        self.now += TICK;
        let start = Instant::now();
        while let Some(t) = self.pacer.poll_transmit(self.now) {
            self.batch.push(t);
        }
        let n = self.batch.len();
        // The server drops each batch after sending it: part of the cost.
        self.batch.clear();
        let spent = start.elapsed();
        self.drained += n as u64;
        self.ticks += 1;
        spent
    }
}

fn bench_pacer(c: &mut Criterion) {
    let mut rig = PacerRig::new();
    // Correct before timed: one packet per session per tick.
    rig.tick();
    assert!(
        (SESSIONS..=2 * SESSIONS).contains(&rig.drained),
        "{} datagrams in one tick",
        rig.drained
    );
    let mut g = c.benchmark_group("pacer");
    short(&mut g);
    g.throughput(Throughput::Elements(SESSIONS));
    g.bench_function("1000_sessions_8k_20ms_tick", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| rig.tick()).sum())
    });
    g.finish();
    eprintln!(
        "pacer: {:.1} datagrams per tick on average over {} ticks (RTP + periodic SRs)",
        rig.drained as f64 / rig.ticks as f64,
        rig.ticks
    );
}

// ----------------------------------------------------------------- send

const BATCH: u64 = 1000;

fn bench_send(c: &mut Criterion) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    // Datagrams the drain thread misses are dropped by the kernel; the send
    // costs the same either way, and the drop share is printed at the end.
    rx.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let dest = rx.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let drain = {
        let (stop, received) = (stop.clone(), received.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let mut sent = 0u64;
    let mut g = c.benchmark_group("send");
    short(&mut g);
    g.throughput(Throughput::Elements(BATCH));
    for size in [172usize, 332] {
        let datagram = vec![0x80u8; size];
        g.bench_function(format!("send_to_{BATCH}x{size}B_loopback"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    tx.send_to(black_box(&datagram), dest).expect("send_to");
                }
                sent += BATCH;
            })
        });
    }
    // The same datagrams through `sendmmsg`, as the pacing thread sends
    // them (a non-blocking socket; a refused datagram would be counted).
    let txm = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    txm.set_nonblocking(true).expect("non-blocking");
    let mut refused = 0;
    for size in [172usize, 332] {
        let datagram = vec![0x80u8; size];
        let batch: Vec<(SocketAddr, &[u8])> = (0..BATCH).map(|_| (dest, &datagram[..])).collect();
        g.bench_function(format!("sendmmsg_{BATCH}x{size}B_loopback"), |b| {
            b.iter(|| {
                let out = mmsg::send_batch(txm.as_fd(), black_box(&batch));
                refused += out.dropped + out.failed;
                sent += out.sent as u64;
            })
        });
    }
    g.finish();
    eprintln!("sendmmsg: {refused} datagrams refused by the kernel");
    // Let the drain catch up (bounded), then stop it.
    let wait = Instant::now();
    while received.load(Ordering::Relaxed) < sent && wait.elapsed() < Duration::from_millis(500) {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    drain.join().expect("drain thread");
    let got = received.load(Ordering::Relaxed);
    eprintln!(
        "send: {got} of {sent} datagrams received ({:.2}% dropped at the receiver)",
        100.0 * (sent - got.min(sent)) as f64 / sent.max(1) as f64
    );
}

// --------------------------------------------------------------- fanout

const LISTENERS: usize = 125;
const FRAME_PACKETS: usize = 8;

fn bench_fanout(c: &mut Criterion) {
    use rtspd::proto::relay::channel::{RelayChannel, RelayConfig, TrackSpec};
    use rtspd::proto::relay::nal::VideoCodec;

    let t0 = Instant::now();
    let mut relay = RelayChannel::new(
        vec![TrackSpec {
            video: Some(VideoCodec::H264),
            clock_rate: 90_000,
            payload_type: 96,
            ssrc: 0x1234,
            first_seq: 1,
            first_timestamp: 0,
        }],
        RelayConfig {
            max_payload: MTU_PAYLOAD,
            gop_cache: false,
            gop_cache_bytes: 0,
            catchup_speed: 4,
            max_delay: Duration::from_millis(500),
            spread_per_listener: Duration::ZERO,
            cname: "bench".into(),
            clock: WallClock::new(t0, Duration::from_secs(1_700_000_000)),
        },
    );
    // Receivers, drained by one thread (non-blocking reads in turn).
    let rx: Vec<UdpSocket> = (0..LISTENERS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
            s.set_nonblocking(true).expect("non-blocking");
            s
        })
        .collect();
    let dests: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().expect("addr")).collect();
    let mut out = Vec::new();
    for (i, d) in dests.iter().enumerate() {
        let rtcp = SocketAddr::new(d.ip(), d.port().wrapping_add(1));
        relay.subscribe(
            i as u64,
            vec![Some((Dest::Udp(*d), Dest::Udp(rtcp)))],
            t0,
            &mut out,
        );
    }
    // A keyframe starts every listener; then P-frames.
    let rtp = |seq: u16, ts: u32, marker: bool, payload: &[u8]| {
        rtspd::proto::rtp::Header {
            ssrc: 7,
            payload_type: 96,
            seq,
            timestamp: ts,
            marker,
        }
        .encode(payload)
        .to_vec()
    };
    relay.push(0, &rtp(1, 0, true, &[0x65, 1, 2, 3]), t0, &mut out);
    let fu = |start: bool, end: bool| {
        let mut p = vec![
            0x7C,
            0x01 | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
        ];
        p.resize(MTU_PAYLOAD, 0xAB);
        p
    };
    let frame: Vec<Vec<u8>> = (0..FRAME_PACKETS)
        .map(|k| fu(k == 0, k + 1 == FRAME_PACKETS))
        .collect();
    let (mut seq, mut ts) = (2u16, 0u32);
    let mut g = c.benchmark_group("fanout");
    short(&mut g);
    g.throughput(Throughput::Elements((LISTENERS * FRAME_PACKETS) as u64));
    g.bench_function(
        format!("relay_push_{FRAME_PACKETS}_packets_to_{LISTENERS}"),
        |b| {
            b.iter(|| {
                out.clear();
                ts = ts.wrapping_add(3000);
                for (k, p) in frame.iter().enumerate() {
                    let packet = rtp(seq, ts, k + 1 == FRAME_PACKETS, p);
                    relay.push(0, black_box(&packet), t0, &mut out);
                    seq = seq.wrapping_add(1);
                }
            })
        },
    );
    assert_eq!(
        out.len(),
        LISTENERS * FRAME_PACKETS,
        "every listener gets the frame"
    );
    let batch: Vec<(SocketAddr, &[u8])> = out
        .iter()
        .filter_map(|t: &Transmit| Some((t.dest.udp()?, &t.data[..])))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let mut any = false;
                for s in &rx {
                    while s.recv(&mut buf).is_ok() {
                        any = true;
                    }
                }
                if !any {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    tx.set_nonblocking(true).expect("non-blocking");
    let mut refused = 0;
    g.bench_function(format!("sendmmsg_{LISTENERS}x{FRAME_PACKETS}x1400B"), |b| {
        b.iter(|| {
            let o = mmsg::send_batch(tx.as_fd(), black_box(&batch));
            refused += o.dropped + o.failed;
        })
    });
    g.bench_function(format!("gso_{LISTENERS}x{FRAME_PACKETS}x1400B"), |b| {
        b.iter(|| {
            let o = gso::send_segmented(tx.as_fd(), black_box(&batch), mmsg::MAX_BATCH);
            refused += o.dropped + o.failed;
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    drain.join().expect("drain thread");
    eprintln!("fanout: {refused} datagrams refused by the kernel");
}

// ----------------------------------------------------------------- auth

fn bench_auth(c: &mut Criterion) {
    use rtspd::proto::auth::digest::ha1;
    use rtspd::proto::auth::{Algorithm, AuthRequest, Authenticator, Policy, User};
    let t0 = Instant::now();
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut a = Authenticator::new([5; 32], t0, Duration::from_secs(60));
    let user = User {
        name: "alice".into(),
        ha1_md5: Some(ha1(Algorithm::Md5, "alice", "rtspd", "secret")),
        ha1_sha256: Some(ha1(Algorithm::Sha256, "alice", "rtspd", "secret")),
    };
    let policy = Policy {
        users: [("alice".to_owned(), user.clone())].into_iter().collect(),
        ..Policy::default()
    };
    let challenge = a.challenges(&policy, ip, t0, false).remove(0);
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a nonce")
        .to_owned();
    let uri = "rtsp://127.0.0.1:8554/tones-8k-mono.wav/";
    let mut g = c.benchmark_group("auth");
    short(&mut g);
    g.throughput(Throughput::Elements(1));
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let h1 = ha1(alg, "alice", "rtspd", "secret");
        let response = alg.hex(&[&h1, &nonce, &alg.hex(&["PLAY", uri])]);
        let header = format!(
            "Digest username=\"alice\", realm=\"rtspd\", nonce=\"{nonce}\", uri=\"{uri}\", \
             algorithm={}, response=\"{response}\"",
            alg.name()
        );
        let req = AuthRequest {
            method: "PLAY",
            uri,
            authorization: Some(&header),
            ip,
            is_tls: false,
            now: t0 + Duration::from_secs(1),
        };
        assert_eq!(a.authenticate(&policy, &req).as_deref(), Ok("alice"));
        g.bench_function(alg.name(), |b| {
            b.iter(|| black_box(a.authenticate(&policy, black_box(&req)).is_ok()))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_auth,
    bench_parse,
    bench_packetize,
    bench_pacer,
    bench_send,
    bench_fanout
);
criterion_main!(benches);
