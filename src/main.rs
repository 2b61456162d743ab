//! The `rtspd` command line. All logic lives in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rtspd::config::reload::{ConfigReload, SetLogLevel};
use rtspd::config::{self, CliOverrides, ConfigError, Effective, LogFormat, LogLevel, LogSettings};
use rtspd::http::ReloadHook;
use rtspd::proto::target::encode_path;
use rtspd::server::live::Source;
use rtspd::server::placement;
use rtspd::server::tls::TlsError;
use rtspd::server::{self, Listeners};

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
    Serve(Box<ServeArgs>),
    /// Load-test an RTSP server and measure what arrives.
    #[command(after_help = LOAD_FIGURES)]
    Load(LoadArgs),
    /// Check a config file: print the effective configuration (every key)
    /// and exit 0, or print the error and exit 2. The `[tls]` certificate
    /// and key are loaded too.
    CheckConfig(CheckArgs),
    /// Print a [[users]] entry for the config file: reads NAME's password
    /// (without echo on a terminal, else one line from stdin) and prints
    /// its HA1 hashes for the realm. No password is stored.
    Passwd(PasswdArgs),
    /// Mint a bearer token for the HTTP side (RFC 6750): prints the token
    /// once on stderr, and its [[http.tokens]] entry (only its SHA-256) on
    /// stdout, so `rtspd token prom >> rtspd.toml` keeps the token out of
    /// the file. List NAME in [http.permissions] to let its holder in.
    Token(TokenArgs),
}

/// `rtspd token NAME`.
#[derive(Args, Debug)]
struct TokenArgs {
    /// The token's name, as [http.permissions] lists it.
    name: String,
}

/// `rtspd passwd NAME [--realm R]`.
#[derive(Args, Debug)]
struct PasswdArgs {
    /// The user's name.
    name: String,
    /// The realm of the server's [auth] section; changing it later
    /// invalidates the hashes.
    #[arg(long, default_value = "rtspd")]
    realm: String,
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
    /// The presentation to play, e.g. rtsp://127.0.0.1:8554/tones-8k-mono.wav,
    /// or rtsps://HOST:8322/PATH over TLS (with --ca-file or --insecure).
    /// user:password@ in the URL answers Digest challenges.
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
    /// RTP interleaved on the RTSP connection instead of UDP (the same
    /// as --transport tcp).
    #[arg(long, conflicts_with = "transport")]
    tcp: bool,
    /// How the media travels: udp, or tcp (interleaved on the RTSP
    /// connection). Default: udp for rtsp://; an rtsps:// URL always
    /// receives interleaved on its TLS connection and refuses udp.
    #[arg(long, value_name = "udp|tcp")]
    transport: Option<rtspd::load::Transport>,
    /// rtsps://: the CA certificates (PEM) the server's certificate must
    /// chain to. It is checked for the URL's host name or IP address.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// rtsps://: accept any server certificate (no verification; a
    /// warning says so).
    #[arg(long, conflicts_with = "ca_file")]
    insecure: bool,
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
    /// Publish this clip (WAV, MP4, ...) to the URL first (ANNOUNCE and
    /// RECORD over TCP, looped, paced in real time), then listen to it:
    /// the report adds each listener copy's delay behind the publisher.
    /// Copies are matched by payload, so delays are timed through a relay
    /// (video, AAC, Opus); a PCM channel re-cuts what it is sent.
    #[arg(long, value_name = "CLIP")]
    publish: Option<PathBuf>,
    /// Receive RTP with UDP_GRO: the datagrams a server sends to one
    /// listener as one GSO message stay one buffer through loopback, so the
    /// kernel work of cutting them apart (the listeners' on a network) is
    /// not charged to the server's core.
    #[arg(long)]
    udp_gro: bool,
    /// Write loss and pacing error over time and a setup-latency histogram
    /// to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// `rtspd serve`: the settings come from the flags, over the config file
/// if one is given, over the built-in defaults.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Read the settings from this TOML file (see rtspd.example.toml);
    /// flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    overrides: CliOverrides,
}

impl ServeArgs {
    /// The merged configuration, or the error (exit code 2).
    fn effective(&self) -> Result<Effective, ConfigError> {
        match &self.config {
            Some(path) => config::load(path, &self.overrides),
            None => config::from_cli(&self.overrides),
        }
    }
}

/// `rtspd check-config FILE`.
#[derive(Args, Debug)]
struct CheckArgs {
    /// The TOML file to check.
    file: PathBuf,
}

/// `rtspd passwd`: the password from the terminal without echo, or from
/// stdin's first line when stdin is not a terminal (scripts, tests).
fn passwd(a: &PasswdArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {}: ", a.name))?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    anyhow::ensure!(!password.is_empty(), "an empty password");
    print!(
        "{}",
        config::auth::user_entry(&a.name, &a.realm, &password).map_err(anyhow::Error::msg)?
    );
    Ok(())
}

/// `rtspd token`: 32 bytes from the OS CSPRNG, base64url.
fn token(a: &TokenArgs) -> anyhow::Result<()> {
    let (token, entry) = config::auth::token_entry(&a.name).map_err(anyhow::Error::msg)?;
    eprintln!(
        "token for {:?} (shown once; send it as `Authorization: Bearer TOKEN`):",
        a.name
    );
    eprintln!("{token}");
    print!("{entry}");
    Ok(())
}

/// The exit code of a configuration that cannot be used.
const BAD_CONFIG: i32 = 2;

/// Prints why the configuration is unusable and exits with code 2.
fn bad_config(e: &ConfigError) -> ! {
    eprintln!("rtspd: {e}");
    std::process::exit(BAD_CONFIG)
}

/// Validates a file and prints the configuration it gives, every key.
fn check_config(args: &CheckArgs) {
    match config::load(&args.file, &CliOverrides::default()) {
        Ok(effective) => {
            // The certificate and key are read as the start would.
            if let Err(e) = server::tls::server_config(&effective.server.tls) {
                eprintln!("rtspd: {}: {e}", args.file.display());
                std::process::exit(BAD_CONFIG)
            }
            println!(
                "# {}: valid; the effective configuration:",
                args.file.display()
            );
            print!("{}", effective.to_toml());
        }
        Err(e) => bad_config(&e),
    }
}

/// Starts the log. Returns what changes its level later (a reload), unless
/// `RUST_LOG` decides the level.
fn init_logging(log: LogSettings) -> Option<SetLogLevel> {
    use tracing_subscriber::EnvFilter;
    let from_env = EnvFilter::try_from_default_env().ok();
    let fixed = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(log.level.as_str()));
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let set: SetLogLevel = match log.format {
        LogFormat::Text => {
            let fmt = fmt
                .with_ansi(std::io::stderr().is_terminal())
                .with_env_filter(filter)
                .with_filter_reloading();
            let set = level_setter(fmt.reload_handle());
            fmt.init();
            set
        }
        LogFormat::Json => {
            let fmt = fmt
                .json()
                .with_ansi(false)
                .with_env_filter(filter)
                .with_filter_reloading();
            let set = level_setter(fmt.reload_handle());
            fmt.init();
            set
        }
    };
    (!fixed).then_some(set)
}

/// What changes the level through a subscriber's filter `handle`.
fn level_setter<S: 'static>(
    handle: tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, S>,
) -> SetLogLevel {
    Box::new(move |level: LogLevel| {
        handle
            .reload(tracing_subscriber::EnvFilter::new(level.as_str()))
            .map_err(|e| e.to_string())
    })
}

/// Re-reads the config file at every SIGHUP until shutdown. The handler is
/// in place when this returns (before the server says it listens), so an
/// early SIGHUP reloads rather than ends the process.
fn reload_on_hangup(reload: Arc<ConfigReload>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload only through the API");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            // The outcome is logged by `reload` itself.
            let _ = reload.reload().await;
        }
    });
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
    let _ = init_logging(LogSettings {
        level: LogLevel::from_verbosity(args.verbose).unwrap_or_default(),
        format: LogFormat::Text,
    });
    if !(args.duration.is_finite() && args.duration > 0.0) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let opts = rtspd::load::Options {
        url: args.url.clone(),
        sessions: args.sessions,
        duration: Duration::from_secs_f64(args.duration.min(1e6)),
        ramp: args.ramp,
        transport: if args.tcp {
            Some(rtspd::load::Transport::Tcp)
        } else {
            args.transport
        },
        tls: rtspd::load::TlsOptions {
            ca_file: args.ca_file.clone(),
            insecure: args.insecure,
        },
        range: args.range.clone(),
        progress: true,
        source_ips: args
            .source_ips
            .clone()
            .map(rtspd::load::SourceIps::into_vec)
            .unwrap_or_default(),
        publish: args.publish.clone(),
        udp_gro: args.udp_gro,
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
    let args: &ServeArgs = match &cli.command {
        Some(Command::Serve(a)) => a,
        Some(Command::Load(a)) => return load(a),
        Some(Command::CheckConfig(a)) => {
            check_config(a);
            return Ok(());
        }
        Some(Command::Passwd(a)) => return passwd(a),
        Some(Command::Token(a)) => return token(a),
        None => &cli.serve,
    };
    // Nothing starts on a bad configuration.
    let effective = args.effective().unwrap_or_else(|e| bad_config(&e));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(cpu) = effective.server.pacer_cpu {
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
        .block_on(serve(effective, args))
}

async fn serve(effective: Effective, args: &ServeArgs) -> anyhow::Result<()> {
    let set_log_level = init_logging(effective.log);
    let log = effective.log;
    let (path, overrides) = (args.config.clone(), args.overrides.clone());
    let mut config = effective.server;
    // POST /api/v1/reload does what SIGHUP does, once the server runs.
    let reloader: Arc<OnceLock<Arc<ConfigReload>>> = Arc::default();
    if path.is_some() {
        let reloader = reloader.clone();
        config.http.reload = Some(ReloadHook(Arc::new(move || {
            let reload = reloader.get().cloned();
            Box::pin(async move {
                match reload {
                    Some(r) => r.reload().await.map_err(|e| e.to_string()),
                    None => Err("the server is still starting".into()),
                }
            })
        })));
    }
    let listeners = match Listeners::bind(&config).await {
        Ok(l) => l,
        Err(e) => match e.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) {
            // A certificate or key that does not load is a configuration
            // error: exit 2, naming the file.
            Some(tls) => {
                eprintln!("rtspd: {tls}");
                std::process::exit(BAD_CONFIG)
            }
            None => return Err(anyhow::Error::new(e).context("binding the listeners")),
        },
    };
    let rtsps_port = match &listeners.rtsps {
        Some(l) => Some(l.local_addr()?.port()),
        None => None,
    };
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
        let reload = Arc::new(ConfigReload::new(
            path,
            overrides,
            running.reloader.clone(),
            log,
            set_log_level,
        ));
        let _ = reloader.set(reload.clone());
        reload_on_hangup(reload);
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
        if let Some(port) = rtsps_port {
            println!(
                "rtspd listening on rtsps://{host}:{port}/ (RTSP over TLS, media interleaved)"
            );
        }
        if clips.is_empty() {
            println!("no playable clips under {media}");
        }
        for clip in &clips {
            println!("rtsp://{host}:{}/{}", addr.port(), encode_path(clip));
            if let Some(port) = rtsps_port {
                println!("rtsps://{host}:{port}/{}", encode_path(clip));
            }
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
            if let Some(port) = rtsps_port {
                println!("rtsps://{host}:{port}/live/{name} (live)");
            }
        }
        if let Some(first) = clips.first() {
            println!(
                "play one with: ffplay rtsp://{host}:{}/{}",
                addr.port(),
                encode_path(first)
            );
        }
    };
    server::run(config, listeners, shutdown_signal(), started).await?;
    Ok(())
}
