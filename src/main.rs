//! The `rtspd` command line. All logic lives in the library.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rtspd::http::{HttpConfig, HttpListen};
use rtspd::media::ClipOptions;
use rtspd::proto::rtsp::Limits;
use rtspd::server::live::{LiveSpec, Source};
use rtspd::server::placement::{self, PacerPriority};
use rtspd::server::sessions::SessionLimits;
use rtspd::server::{self, Config, Listeners};

/// rtspd: an RTSP/1.0 streaming media server.
///
/// Serves the clips under a folder (WAV, MP4/MOV with H.264 and AAC, and
/// elementary .264, .aac and .mp3 files) over RTSP, with seeking and pause,
/// as paced RTP over UDP or TCP with RTCP sender reports that keep audio
/// and video in sync; also live channels from files, pipes or publishers.
/// Point ffplay, VLC, GStreamer or any RTSP client at the URLs it prints.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a folder of clips (the default when no command is given).
    Serve(ServeArgs),
    /// Load-test an RTSP server and measure what arrives.
    #[command(after_help = LOAD_FIGURES)]
    Load(LoadArgs),
}

/// What `rtspd load` reports, for its `--help`.
const LOAD_FIGURES: &str = "\
What the summary measures:
  pacing   how late each packet came: its arrival minus its decode time,
           above the lowest such value so far on the track. The decode time
           is the RTP timestamp, or, for video sent in decode order with
           B-frames (timestamps stepping back), the timestamp the picture
           takes in sorted order. A packet 50 ms behind schedule shows 50 ms.
  reorder  how far a packet's RTP timestamp (its presentation time) is ahead
           of its decode time: the encoder's B-frame reordering, reported on
           its own and kept out of pacing and A/V sync. None for audio.
  jitter   RFC 3550 interarrival jitter (A.8), on RTP timestamps as the RFC
           defines it. For video it includes the B-frame reordering and, for
           pictures split over several packets with one timestamp, the time
           a picture takes to send: compare it between runs of one clip.
  A/V sync per session, the spread between tracks of the lowest (arrival -
           decode time mapped to NTP by the sender reports): 0 when the
           server puts every track on one clock.
  drift    the slope of the pacing error, for runs of 30 s or more.";

/// `rtspd load URL -n SESSIONS -d SECONDS`: opens that many sessions at the
/// ramp rate, receives for the duration, prints a summary and one JSON line.
#[derive(Args, Debug)]
struct LoadArgs {
    /// The presentation to play, e.g. rtsp://127.0.0.1:8554/tones-8k-mono.wav
    url: String,
    /// Concurrent sessions (at most 20000).
    #[arg(short = 'n', long, default_value_t = 1)]
    sessions: usize,
    /// Seconds each session receives after its PLAY (at most 3600).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Sessions started per second (at most 5000).
    #[arg(long, default_value_t = 100.0)]
    ramp: f64,
    /// RTP interleaved on the RTSP connection instead of UDP.
    #[arg(long)]
    tcp: bool,
    /// Open the sessions from these local addresses, round-robin: a
    /// comma-separated list of addresses and IPv4 ranges, e.g.
    /// 127.0.0.2-127.0.0.251 or 127.0.0.2-251. Loopback addresses only
    /// (127.0.0.0/8, ::1), so the server must run on this machine; it then
    /// sees many client IPs, as with real listeners, instead of one that
    /// reaches its per-IP caps. With two or more addresses, UDP sessions on
    /// different addresses share receive ports (one RTP/RTCP pair for up to
    /// 256 sessions), so a session costs about one descriptor instead of
    /// three.
    #[arg(long, value_name = "LIST")]
    source_ips: Option<rtspd::load::SourceIps>,
    /// Also write the JSON summary line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Range header for PLAY, e.g. npt=2.5-
    #[arg(long)]
    range: Option<String>,
    /// Write loss and pacing error over time and a setup-latency histogram
    /// to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Folder of clips to serve; subfolders are served at their relative path.
    #[arg(long, default_value = "media")]
    media: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// RTSP port. Without it, 554 is tried and 8554 used when 554 cannot be
    /// bound. 0 picks a free port (printed at start).
    #[arg(long)]
    port: Option<u16>,
    /// The shared server RTP port for all sessions (even); RTCP uses the next
    /// port. 0 picks a free pair.
    #[arg(long, default_value_t = 6970)]
    rtp_port: u16,
    /// Seconds without a request or RTCP before a session is freed.
    #[arg(long, default_value_t = 60)]
    session_timeout: u64,
    /// Milliseconds of audio per RTP packet.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    ptime: u64,
    /// Frame rate of H.264 elementary files (.264) whose SPS gives none.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=300))]
    fps: u32,
    /// Largest RTP payload, in bytes.
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u64).range(64..=65000))]
    mtu: u64,
    /// Most concurrent RTSP connections.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Most concurrent RTSP connections from one IP address.
    #[arg(long, default_value_t = 256)]
    max_connections_per_ip: usize,
    /// Most sessions.
    #[arg(long, default_value_t = 10_000)]
    max_sessions: usize,
    /// Most sessions from one IP address.
    #[arg(long, default_value_t = 256)]
    max_sessions_per_ip: usize,
    /// Largest request head (request line and headers), in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    max_head_bytes: usize,
    /// Most header lines in a request.
    #[arg(long, default_value_t = 256)]
    max_headers: usize,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Seconds a client has to finish sending a request once it started.
    #[arg(long, default_value_t = 10)]
    read_timeout: u64,
    /// Seconds a response may take to write.
    #[arg(long, default_value_t = 10)]
    write_timeout: u64,
    /// Seconds before a silent connection that owns no session is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// RTP/RTCP frames queued per connection for interleaved (TCP) clients;
    /// a client that reads slower loses frames instead of stalling others.
    #[arg(long, default_value_t = 512)]
    max_client_queue: usize,
    /// Interleaved frames (RTCP) a TCP client may send per second before it
    /// is disconnected.
    #[arg(long, default_value_t = 1000)]
    max_client_frames_per_sec: u32,
    /// Microseconds a packet may be sent before its deadline, so one wake-up
    /// of the pacing thread serves many sessions (more: less CPU, coarser
    /// pacing).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    send_ahead_us: u64,
    /// Datagrams per sendmmsg call (1: one system call per datagram).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    send_batch: u64,
    /// Largest clip held in memory, in MiB of 16-bit samples.
    #[arg(long, default_value_t = 512)]
    max_clip_mib: u64,
    /// A live channel at /live/NAME (repeatable). SOURCE is file:PATH.wav
    /// (looped), pipe:COMMAND or stdin (raw PCM; give rate=, channels=,
    /// format=s16le|s16be), or publish (fed by an RTSP publisher: ANNOUNCE
    /// and RECORD; rate= and channels= fix its format, else the first
    /// publisher's is used). codec=l16|pcmu|pcma is what listeners get.
    #[arg(long = "live", value_name = "NAME=SOURCE[,key=value...]")]
    live: Vec<LiveSpec>,
    /// Let publishers start a channel at any /live/NAME not configured
    /// (without it, ANNOUNCE to such a name gets 403).
    #[arg(long)]
    allow_publish: bool,
    /// Most channels publishers may start with --allow-publish.
    #[arg(long, default_value_t = 64)]
    max_published_channels: usize,
    /// Milliseconds of audio a pipe, stdin or published channel buffers
    /// before sending, to ride out its source's jitter (max 1000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=1000))]
    live_prebuffer_ms: u64,
    /// Scheduling of the pacing thread: auto (real-time where permitted,
    /// else nice -10), realtime, nice or normal.
    #[arg(long, default_value = "auto")]
    pacer_priority: PacerPriority,
    /// Run the pacing thread alone on this core, and every other thread of
    /// the server on the remaining ones (machines with more than one core).
    #[arg(long, value_name = "N")]
    pacer_cpu: Option<usize>,
    /// Where the HTTP side (status page, Prometheus /metrics, JSON API, SDP
    /// over HTTP) listens: ADDR:PORT, or off. Without it, 127.0.0.1:8080,
    /// skipped with a warning when that port is taken.
    #[arg(long, value_name = "ADDR:PORT|off")]
    http: Option<HttpListen>,
    /// Most concurrent HTTP connections; more are closed at once.
    #[arg(long, default_value_t = 64)]
    http_max_connections: usize,
    /// Largest HTTP request head, in bytes (at least 8192); more gets 431.
    #[arg(long, default_value_t = 16 * 1024)]
    http_max_head_bytes: usize,
    /// Most header lines in an HTTP request; more gets 431.
    #[arg(long, default_value_t = 64)]
    http_max_headers: usize,
    /// Largest HTTP request body, in bytes; more gets 413.
    #[arg(long, default_value_t = 64 * 1024)]
    http_max_body_bytes: usize,
    /// Seconds an HTTP client has to send a request head once it started,
    /// and before an idle HTTP connection is closed.
    #[arg(long, default_value_t = 10)]
    http_read_timeout: u64,
    /// Seconds an HTTP response may wait for the client to read it.
    #[arg(long, default_value_t = 10)]
    http_write_timeout: u64,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

impl ServeArgs {
    fn config(&self) -> Config {
        let limits = Limits {
            max_head: self.max_head_bytes,
            max_headers: self.max_headers,
            max_body: self.max_body_bytes,
            ..Limits::default()
        };
        Config {
            media: self.media.clone(),
            bind: self.bind,
            port: self.port,
            rtp_port: self.rtp_port,
            session_timeout: Duration::from_secs(self.session_timeout.max(1)),
            clip: ClipOptions {
                ptime: Duration::from_millis(self.ptime),
                max_payload: self.mtu as usize,
                max_clip_bytes: self.max_clip_mib << 20,
                fps: self.fps,
                ..ClipOptions::default()
            },
            limits,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            sessions: SessionLimits {
                max_sessions: self.max_sessions,
                max_sessions_per_ip: self.max_sessions_per_ip,
            },
            read_timeout: Duration::from_secs(self.read_timeout.max(1)),
            write_timeout: Duration::from_secs(self.write_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            client_queue: self.max_client_queue.max(1),
            max_client_frames_per_sec: self.max_client_frames_per_sec.max(1),
            send_ahead: Duration::from_micros(self.send_ahead_us),
            send_batch: self.send_batch as usize,
            pacer_priority: self.pacer_priority,
            pacer_cpu: self.pacer_cpu,
            live: self.live.clone(),
            allow_publish: self.allow_publish,
            max_published_channels: self.max_published_channels,
            live_prebuffer: Duration::from_millis(self.live_prebuffer_ms),
            http: HttpConfig {
                listen: self
                    .http
                    .unwrap_or(HttpListen::Default(rtspd::http::DEFAULT_LISTEN)),
                max_connections: self.http_max_connections.max(1),
                max_head_bytes: self.http_max_head_bytes,
                max_headers: self.http_max_headers.max(1),
                max_body_bytes: self.http_max_body_bytes,
                read_timeout: Duration::from_secs(self.http_read_timeout.max(1)),
                write_timeout: Duration::from_secs(self.http_write_timeout.max(1)),
                reload: None,
            },
            ..Config::default()
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Percent-encodes what may not stand in a URL path segment.
fn url_path(rel: &str) -> String {
    rel.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn load(args: &LoadArgs) -> anyhow::Result<()> {
    init_logging(args.verbose);
    if !(args.duration.is_finite() && args.duration > 0.0) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let opts = rtspd::load::Options {
        url: args.url.clone(),
        sessions: args.sessions,
        duration: Duration::from_secs_f64(args.duration.min(1e6)),
        ramp: args.ramp,
        tcp: args.tcp,
        range: args.range.clone(),
        progress: true,
        source_ips: args
            .source_ips
            .clone()
            .map(rtspd::load::SourceIps::into_vec)
            .unwrap_or_default(),
    };
    // One thread for every control connection; the UDP receiver has its own.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let run = rt.block_on(rtspd::load::run(opts))?;
    if let Some(path) = &args.plot {
        std::fs::write(path, run.svg()).with_context(|| format!("writing {}", path.display()))?;
    }
    let report = &run.report;
    print!("{report}");
    let json = report.to_json();
    println!("{json}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match &cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Load(a)) => return load(a),
        None => &cli.serve,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(cpu) = args.pacer_cpu {
        // Every thread but the pacing one (which pins itself) stays off
        // its core: this one, and every thread the runtime starts.
        let others = placement::control_cpus(cpu).map_err(anyhow::Error::msg)?;
        placement::pin_to(&others).context("setting the CPU affinity")?;
        runtime.on_thread_start(move || {
            let _ = placement::pin_to(&others);
        });
    }
    runtime
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    init_logging(args.verbose);
    let config = args.config();
    let listeners = Listeners::bind(&config)
        .await
        .context("binding the listeners")?;
    let catalog = rtspd::media::Catalog::new(&config.media, config.clip)
        .with_context(|| format!("opening the media folder {}", config.media.display()))?;
    let clips = catalog.list();
    let addr = listeners.rtsp_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let rtp_port = listeners.rtp_port()?;
    let live: Vec<(String, bool)> = config
        .live
        .iter()
        .map(|l| (l.name.clone(), l.source == Source::Publish))
        .collect();
    let media = config.media.display().to_string();
    drop(catalog);
    // Printed once everything runs (live sources are open), so a script
    // that waits for the first line can use the server at once.
    let started = move |running: &server::Running| {
        println!(
            "rtspd listening on rtsp://{host}:{}/ (RTP/RTCP on UDP {rtp_port}-{})",
            addr.port(),
            rtp_port + 1
        );
        if let Some(mut http) = running.http_addr {
            if http.ip().is_unspecified() {
                http.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            println!("http status page: http://{http}/");
        }
        if clips.is_empty() {
            println!("no playable clips under {media}");
        }
        for clip in &clips {
            println!("rtsp://{host}:{}/{}", addr.port(), url_path(clip));
        }
        for (name, publish) in &live {
            let port = addr.port();
            if *publish {
                println!(
                    "rtsp://{host}:{port}/live/{name} (live, fed by publishers: \
                     ffmpeg -re -i in.wav -c:a pcm_s16be -f rtsp rtsp://{host}:{port}/live/{name})"
                );
            } else {
                println!("rtsp://{host}:{port}/live/{name} (live)");
            }
        }
        if let Some(first) = clips.first() {
            println!(
                "play one with: ffplay rtsp://{host}:{}/{}",
                addr.port(),
                url_path(first)
            );
        }
    };
    server::run(config, listeners, shutdown_signal(), started).await?;
    Ok(())
}
