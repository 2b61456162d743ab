//! Table tests of the config file: parsing, every error kind, the command
//! line over the file, and the shipped example against the structs.

use clap::{CommandFactory, Parser};

use super::file::{self, FileError, Hint, Location, Section};
use super::*;
use crate::server::live::Source;

/// The `serve` flags alone, as the binary flattens them.
#[derive(Parser, Debug)]
struct Flags {
    #[command(flatten)]
    o: CliOverrides,
}

fn flags(args: &[&str]) -> CliOverrides {
    let argv = std::iter::once("rtspd").chain(args.iter().copied());
    match Flags::try_parse_from(argv) {
        Ok(f) => f.o,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn parse(text: &str) -> Result<Effective, FileError> {
    file::parse(text).map(|p| merge(p, &CliOverrides::default()).expect("no flags"))
}

fn at(line: usize, column: usize) -> Location {
    Location { line, column }
}

#[test]
fn unknown_keys_name_the_line_and_the_nearest_key() {
    let cases: &[(&str, &str, Location, Hint)] = &[
        (
            "[limits]\nmax_sesions = 3\n",
            "limits.max_sesions",
            at(2, 1),
            Hint::Nearest("max_sessions".into()),
        ),
        (
            "[server]\nport = 0\n  prot = 5\n",
            "server.prot",
            at(3, 3),
            Hint::Nearest("port".into()),
        ),
        (
            "# top\nservr = {}\n",
            "servr",
            at(2, 1),
            Hint::Nearest("server".into()),
        ),
        (
            "max_sessions = 3\n",
            "max_sessions",
            at(1, 1),
            Hint::Section("[limits]".into()),
        ),
        (
            "[server]\nmax_sessions = 3\n",
            "server.max_sessions",
            at(2, 1),
            Hint::Section("[limits]".into()),
        ),
        (
            "[log]\nrate = 8000\n",
            "log.rate",
            at(2, 1),
            Hint::Section("[[live]]".into()),
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"publish\"\n\n[[live]]\nname = \"b\"\nsource = \"publish\"\ncodek = \"pcmu\"\n",
            "live[1].codek",
            at(8, 1),
            Hint::Nearest("codec".into()),
        ),
        (
            "[http]\nwhatever = 1\n",
            "http.whatever",
            at(2, 1),
            Hint::OneOf(vec![
                "listen",
                "max_connections",
                "max_head_bytes",
                "max_headers",
                "max_body_bytes",
                "read_timeout",
                "write_timeout",
                "permissions",
                "tokens",
            ]),
        ),
        (
            "[http.permissions]\napi = []\nmetrix = []\n",
            "http.permissions.metrix",
            at(3, 1),
            Hint::Nearest("metrics".into()),
        ),
        (
            "[[http.tokens]]\nname = \"a\"\nsha = \"00\"\n",
            "http.tokens[0].sha",
            at(3, 1),
            Hint::OneOf(vec!["name", "sha256"]),
        ),
    ];
    for (text, key, loc, hint) in cases {
        match parse(text) {
            Err(FileError::UnknownKey {
                key: k,
                at: a,
                hint: h,
            }) => assert_eq!((k.as_str(), a, h), (*key, *loc, hint.clone()), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let e = parse("[limits]\nmax_sesions = 3\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "line 2, column 1: unknown key `limits.max_sesions`; did you mean `max_sessions`?"
    );
}

#[test]
fn wrong_types_and_values_name_the_key_and_what_it_allows() {
    let cases: &[(&str, &str, Location, &str, &str)] = &[
        (
            "[limits]\nmax_sessions = \"many\"\n",
            "limits.max_sessions",
            at(2, 16),
            "a non-negative integer",
            "\"many\"",
        ),
        (
            "[limits]\nmax_sessions = -1\n",
            "limits.max_sessions",
            at(2, 16),
            "a non-negative integer",
            "-1",
        ),
        (
            "[server]\nptime = 0\n",
            "server.ptime",
            at(2, 9),
            "an integer from 1 to 1000",
            "0",
        ),
        (
            "[server]\nmtu = 70000\n",
            "server.mtu",
            at(2, 7),
            "an integer from 64 to 65000",
            "70000",
        ),
        (
            "[server]\nsend_batch = 2.5\n",
            "server.send_batch",
            at(2, 14),
            "an integer from 1 to 1024",
            "2.5",
        ),
        (
            "[server]\nport = \"x\"\n",
            "server.port",
            at(2, 8),
            "an integer from 0 to 65535, or \"auto\"",
            "\"x\"",
        ),
        (
            "[server]\nport = 70000\n",
            "server.port",
            at(2, 8),
            "an integer from 0 to 65535, or \"auto\"",
            "70000",
        ),
        (
            "[server]\nallow_publish = \"yes\"\n",
            "server.allow_publish",
            at(2, 17),
            "a boolean",
            "\"yes\"",
        ),
        (
            "[server]\npacer_priority = \"high\"\n",
            "server.pacer_priority",
            at(2, 18),
            "one of `auto`, `realtime`, `nice`, `normal`",
            "\"high\"",
        ),
        (
            "[http]\nlisten = \"8080\"\n",
            "http.listen",
            at(2, 10),
            "ADDR:PORT (e.g. 127.0.0.1:8080) or \"off\"",
            "\"8080\"",
        ),
        (
            "[log]\nlevel = \"verbose\"\n",
            "log.level",
            at(2, 9),
            "one of `error`, `warn`, `info`, `debug`, `trace`",
            "\"verbose\"",
        ),
        (
            "server = { ptime = 2000 }\n",
            "server.ptime",
            at(1, 20),
            "an integer from 1 to 1000",
            "2000",
        ),
        (
            "server = 3\n",
            "server",
            at(1, 10),
            "a table ([server])",
            "3",
        ),
        (
            "[live]\nname = \"a\"\n",
            "live",
            at(1, 2),
            "[[live]] tables (one per entry)",
            "a table [live]",
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"stdin\"\nrate = 8000\nchannels = 9\n",
            "live[0].channels",
            at(5, 12),
            "an integer from 1 to 8",
            "9",
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"publish\"\ncodec = \"opus\"\n",
            "live[0].codec",
            at(4, 9),
            "l16, pcmu or pcma",
            "\"opus\"",
        ),
        (
            "[[live]]\nname = \"a b\"\nsource = \"publish\"\n",
            "live[0].name",
            at(2, 8),
            "1 to 64 letters, digits, '-', '_' and '.'",
            "\"a b\"",
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"http://x/y\"\n",
            "live[0].source",
            at(3, 10),
            "file:PATH (or a WAV's path), pipe:COMMAND, stdin, publish, rtsp://... or rtsps://...",
            "\"http://x/y\"",
        ),
    ];
    for (text, key, loc, expected, got) in cases {
        match parse(text) {
            Err(FileError::Value {
                key: k,
                at: a,
                expected: e,
                got: g,
            }) => assert_eq!(
                (k.as_str(), a, e.as_str(), g.as_str()),
                (*key, *loc, *expected, *got),
                "{text}"
            ),
            other => panic!("{text}: {other:?}"),
        }
    }
    let e = parse("[limits]\nmax_sessions = \"many\"\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2, column 16: limits.max_sessions: expected a non-negative integer, got \"many\""
    );
}

#[test]
fn invalid_files_say_why() {
    let cases: &[(&str, &str, Location, &str)] = &[
        (
            "[[live]]\nsource = \"publish\"\n",
            "live[0]",
            at(1, 1),
            "missing field `name`",
        ),
        (
            "[[live]]\nname = \"mic\"\nsource = \"pipe:arecord\"\n",
            "live[0] (mic)",
            at(2, 8),
            "a pipe or stdin source needs rate= and channels=",
        ),
        (
            "[[live]]\nname = \"s\"\nsource = \"publish\"\nrate = 8000\n",
            "live[0] (s)",
            at(2, 8),
            "a publish channel declares both rate= and channels=, or neither",
        ),
        (
            "[[live]]\nname = \"a\"\nsource = \"publish\"\n[[live]]\nname = \"a\"\nsource = \"x.wav\"\n",
            "live[1].name",
            at(5, 8),
            "\"a\" is already the name of live[0]",
        ),
        (
            "[server]\nbind = \"1.2.3\"\n",
            "server.bind",
            at(2, 8),
            "invalid IP address syntax: \"1.2.3\"",
        ),
    ];
    for (text, key, loc, message) in cases {
        match parse(text) {
            Err(FileError::Invalid {
                key: k,
                at: a,
                message: m,
            }) => assert_eq!(
                (k.as_str(), a, m.as_str()),
                (*key, *loc, *message),
                "{text}"
            ),
            other => panic!("{text}: {other:?}"),
        }
    }
    for text in ["[server\n", "[server]\nport = 1\nport = 2\n", "a = \"\n"] {
        assert!(
            matches!(parse(text), Err(FileError::Syntax { .. })),
            "{text}"
        );
    }
}

#[test]
fn absent_keys_take_the_defaults() {
    let defaults = format!("{:?}", Config::default());
    for text in ["", "# nothing\n", "[server]\n[limits]\n[http]\n[log]\n"] {
        let e = parse(text).expect(text);
        assert_eq!(e.settings, Settings::default(), "{text:?}");
        assert_eq!(format!("{:?}", e.server), defaults, "{text:?}");
        assert_eq!(e.http.listen, HttpListen::Default(HttpListen::DEFAULT));
        assert_eq!(e.log, LogSettings::default());
    }
    // No file and no flags: exactly the server's own defaults.
    let e = from_cli(&CliOverrides::default()).expect("defaults");
    assert_eq!(format!("{:?}", e.server), defaults);
    // One key set: the others keep their defaults.
    let e = parse("[limits]\nmax_sessions = 5\n").expect("one key");
    assert_eq!(e.server.sessions.max_sessions, 5);
    assert_eq!(e.server.sessions.max_sessions_per_ip, 256);
    assert_eq!(e.server.clip.ptime, Duration::from_millis(20));
}

#[test]
fn values_reach_the_server_config() {
    let e = parse(
        "[server]\nmedia = \"/srv/clips\"\nbind = \"127.0.0.1\"\nport = 0\nrtp_port = 0\n\
         ptime = 40\nmtu = 500\npacer_cpu = 1\npacer_priority = \"nice\"\nallow_publish = true\n\
         session_timeout = 0\n\
         [limits]\nmax_sessions_per_ip = 1\nread_timeout = 3\nmax_head_bytes = 4096\n\
         [http]\nlisten = \"off\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n",
    )
    .expect("valid");
    let c = &e.server;
    assert_eq!(c.media, PathBuf::from("/srv/clips"));
    assert_eq!(
        (c.bind, c.port, c.rtp_port),
        (IpAddr::from([127, 0, 0, 1]), Some(0), 0)
    );
    assert_eq!(c.clip.ptime, Duration::from_millis(40));
    assert_eq!(c.clip.max_payload, 500);
    assert_eq!(
        (c.pacer_cpu, c.pacer_priority),
        (Some(1), PacerPriority::Nice)
    );
    assert!(c.allow_publish);
    assert_eq!(c.session_timeout, Duration::from_secs(1), "0 counts as 1");
    assert_eq!(c.sessions.max_sessions_per_ip, 1);
    assert_eq!(c.read_timeout, Duration::from_secs(3));
    assert_eq!(c.limits.max_head, 4096);
    assert_eq!(e.http.listen, HttpListen::Off);
    assert_eq!(
        (e.log.level, e.log.format),
        (LogLevel::Debug, LogFormat::Json)
    );
    let e = parse("[http]\nlisten = \"127.0.0.1:8080\"\n").expect("valid");
    assert_eq!(
        e.http.listen,
        HttpListen::Explicit(HttpListen::DEFAULT),
        "named in the file, even as the default address: binding it is required"
    );
}

#[test]
fn flags_override_keys() {
    let text = "[server]\nptime = 40\nport = 9000\n[limits]\nmax_sessions_per_ip = 1\n\
                max_sessions = 7\n[http]\nlisten = \"127.0.0.1:9090\"\n[log]\nlevel = \"warn\"\n";
    // (flags, what the merged configuration must show)
    type Check = fn(&Effective) -> bool;
    let cases: &[(&[&str], Check)] = &[
        (&[], |e| {
            e.server.sessions.max_sessions_per_ip == 1
                && e.server.port == Some(9000)
                && e.log.level == LogLevel::Warn
        }),
        (&["--max-sessions-per-ip", "2"], |e| {
            e.server.sessions.max_sessions_per_ip == 2 && e.server.sessions.max_sessions == 7
        }),
        (&["--port", "0", "--ptime", "10"], |e| {
            e.server.port == Some(0) && e.server.clip.ptime == Duration::from_millis(10)
        }),
        (&["--http", "off"], |e| e.http.listen == HttpListen::Off),
        (&["-v"], |e| e.log.level == LogLevel::Debug),
        (&["-vv", "--log-format", "json"], |e| {
            e.log.level == LogLevel::Trace && e.log.format == LogFormat::Json
        }),
        (&["--allow-publish"], |e| e.server.allow_publish),
    ];
    for (args, check) in cases {
        let cli = flags(args);
        let e = merge(file::parse(text).expect("valid"), &cli).expect("merge");
        assert!(check(&e), "{args:?}: {:?}", e.settings);
        // The flag also shows in the keys check-config prints.
        assert_eq!(
            parse(&e.to_toml()).expect("round trip").settings.limits,
            e.settings.limits,
            "{args:?}"
        );
    }
}

#[test]
fn live_flags_add_to_the_files_channels() {
    let text = "[[live]]\nname = \"radio\"\nsource = \"file:a.wav\"\ncodec = \"pcmu\"\n\
                [[live]]\nname = \"studio\"\nsource = \"publish\"\n";
    let names = |e: &Effective| -> Vec<(String, Source)> {
        e.server
            .live
            .iter()
            .map(|l| (l.name.clone(), l.source.clone()))
            .collect()
    };
    let file_only = merge(file::parse(text).expect("valid"), &flags(&[])).expect("merge");
    assert_eq!(
        names(&file_only),
        [
            ("radio".into(), Source::File("a.wav".into())),
            ("studio".into(), Source::Publish)
        ]
    );
    assert_eq!(file_only.server.live[0].codec_name(), Some("pcmu"));
    let cli = flags(&[
        "--live",
        "extra=stdin,rate=8000,channels=1",
        "--live",
        "radio=b.wav",
    ]);
    let e = merge(file::parse(text).expect("valid"), &cli).expect("merge");
    assert_eq!(
        names(&e),
        [
            ("studio".into(), Source::Publish),
            ("extra".into(), Source::Stdin),
            ("radio".into(), Source::File("b.wav".into())),
        ],
        "the flag's radio replaces the file's"
    );
    assert_eq!(
        e.server.live[2].codec, None,
        "nothing of the file's radio stays"
    );
    // What check-config prints reads back as the same channels.
    let again = parse(&e.to_toml()).expect("round trip");
    assert_eq!(again.server.live, e.server.live);
}

#[test]
fn pipe_commands_keep_their_commas() {
    let e = parse(
        "[[live]]\nname = \"mic\"\nsource = \"pipe:sox -r 8000 -c 1 in.wav -t raw -,\"\n\
         rate = 8000\nchannels = 1\nformat = \"s16be\"\n",
    )
    .expect("valid");
    let l = &e.server.live[0];
    assert_eq!(
        l.source,
        Source::Pipe("sox -r 8000 -c 1 in.wav -t raw -,".into())
    );
    assert!(l.big_endian);
}

/// Every flag of `serve` sets its key: all of them given with a value
/// that is not the default changes every `[server]` and `[limits]` key.
#[test]
fn every_flag_has_a_key() {
    let all: &[&str] = &[
        "--media=m2",
        "--bind=127.0.0.1",
        "--port=1",
        "--rtp-port=2",
        "--session-timeout=3",
        "--ptime=4",
        "--fps=5",
        "--mtu=600",
        "--send-ahead-us=7",
        "--send-batch=8",
        "--udp-gso=false",
        "--max-clip-mib=9",
        "--allow-publish",
        "--live-prebuffer-ms=10",
        "--relay-max-delay-ms=77",
        "--relay-spread-us-per-listener=76",
        "--max-publisher-frames-per-sec=78",
        "--max-publish-queue=79",
        "--max-gop-cache-kib=80",
        "--pacer-priority=normal",
        "--pacer-cpu=0",
        "--tunnel=false",
        "--redirect-poll-ms=333",
        "--drain-to=rtsp://e:1",
        "--drain-timeout=32",
        "--max-connections=11",
        "--max-connections-per-ip=12",
        "--max-sessions=13",
        "--max-sessions-per-ip=14",
        "--max-head-bytes=15",
        "--max-headers=16",
        "--max-body-bytes=17",
        "--read-timeout=18",
        "--write-timeout=19",
        "--idle-timeout=20",
        "--max-client-queue=21",
        "--max-client-frames-per-sec=22",
        "--max-published-channels=23",
        "--max-auth-failures=30",
        "--max-unknown-sessions=31",
        "--tunnel-timeout=32",
        "--http=127.0.0.1:1",
        "--http-max-connections=24",
        "--http-max-head-bytes=25",
        "--http-max-headers=26",
        "--http-max-body-bytes=27",
        "--http-read-timeout=28",
        "--http-write-timeout=29",
        "--tls-cert=c.pem",
        "--tls-key=k.pem",
        "--rtsps-port=30",
        "--tls-require",
        "--tls-handshake-timeout=31",
        "--log-format=json",
        "--verbose",
        "--live=a=publish",
    ];
    // The list above is every flag there is.
    let named: Vec<String> = all
        .iter()
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    for arg in Flags::command().get_arguments() {
        if ["help", "version"].contains(&arg.get_id().as_str()) {
            continue;
        }
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => continue,
        };
        assert!(named.contains(&flag), "{flag} is missing from this test");
    }
    let e = from_cli(&flags(all)).expect("every flag");
    let got = toml::Table::try_from(&e.settings).expect("serialize");
    let defaults = toml::Table::try_from(Settings::default()).expect("serialize");
    for section in ["server", "limits", "http", "tls", "log"] {
        let (g, d) = (&got[section], &defaults[section]);
        let keys = g.as_table().map(|t| t.keys().cloned().collect::<Vec<_>>());
        for key in keys.unwrap_or_default() {
            // Who may use the HTTP side has keys only, as [[users]] has.
            if section == "http" && key == "permissions" {
                continue;
            }
            assert_ne!(g.get(&key), d.get(&key), "{section}.{key}: no flag set it");
        }
    }
    assert_eq!(e.server.live.len(), 1);
    // The relay's keys reach the server's configuration.
    assert_eq!(e.server.relay_max_delay, Duration::from_millis(77));
    assert_eq!(
        e.server.relay_spread_per_listener,
        Duration::from_micros(76)
    );
    assert_eq!(e.server.max_publisher_frames_per_sec, 78);
    assert_eq!(e.server.data_queue, 79);
    assert_eq!(e.server.gop_cache_bytes, 80 * 1024);
    assert!(!e.server.udp_gso);
}

/// Each flag's `--help` shows the default its key really has.
#[test]
fn help_shows_the_defaults() {
    let defaults = toml::Table::try_from(Settings::default()).expect("serialize");
    let mut checked = 0;
    for arg in Flags::command().get_arguments() {
        let (Some(long), Some(help)) = (arg.get_long(), arg.get_help()) else {
            continue;
        };
        let help = help.to_string();
        let Some((_, shown)) = help.split_once("[default: ") else {
            continue;
        };
        let shown = shown.trim_end_matches(']');
        let (sections, key): (&[&str], String) = match long {
            "http" => (&["http"], "listen".to_owned()),
            "log-format" => (&["log"], "format".to_owned()),
            l => match (l.strip_prefix("http-"), l.strip_prefix("tls-")) {
                (Some(k), _) => (&["http"], k.replace('-', "_")),
                (_, Some(k)) => (&["tls"], k.replace('-', "_")),
                _ => (&["server", "limits", "tls", "log"], l.replace('-', "_")),
            },
        };
        let value = sections
            .iter()
            .find_map(|s| defaults[*s].get(&key))
            .unwrap_or_else(|| panic!("--{long} has no key"));
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        assert_eq!(shown, value, "--{long}");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} defaults shown");
}

/// The section list of [`file::section`] covers every field of
/// [`Settings`], so no section goes unchecked.
#[test]
fn every_section_has_its_keys() {
    for name in file::fields::<Settings>() {
        let Some(Section::Table(keys) | Section::Tables(keys)) = file::section(name) else {
            panic!("{name} has no keys");
        };
        assert!(!keys.is_empty(), "{name}");
    }
    assert_eq!(file::fields::<LogSettings>(), ["level", "format"]);
}

const EXAMPLE: &str = include_str!("../../rtspd.example.toml");

/// The example with every `#key = value` line (and `#[[live]]`) made live.
fn uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_names_every_key_with_its_default() {
    // As shipped, every key is commented out: the defaults.
    let shipped = parse(EXAMPLE).expect("the example as shipped");
    assert_eq!(shipped.settings, Settings::default());
    let text = uncommented();
    let doc: toml::Table = toml::from_str(&text).expect("uncommented example");
    for name in file::fields::<Settings>() {
        let given: Vec<String> = match (&doc.get(*name), file::section(name)) {
            (Some(toml::Value::Table(t)), Some(Section::Table(_))) => t.keys().cloned().collect(),
            (Some(toml::Value::Array(a)), Some(Section::Tables(_))) => a
                .iter()
                .filter_map(toml::Value::as_table)
                .flat_map(|t| t.keys().cloned())
                .collect(),
            (v, _) => panic!("the example has no {name} section: {v:?}"),
        };
        let Some(Section::Table(keys) | Section::Tables(keys)) = file::section(name) else {
            panic!("{name}");
        };
        for key in keys {
            assert!(
                given.iter().any(|g| g == key),
                "the example lacks {name}.{key}"
            );
        }
    }
    // Uncommented, the values shown are the defaults, and the channels valid.
    let e = parse(&text).expect("uncommented example");
    let mut settings = e.settings.clone();
    settings.live.clear();
    assert_eq!(e.server.auth.policy.users.len(), settings.users.len());
    assert_eq!(e.server.auth.rules.len(), settings.paths.len());
    assert!(!settings.users.is_empty() && !settings.paths.is_empty());
    assert_eq!(e.server.auth.tokens.len(), settings.http.tokens.len());
    assert!(!settings.http.tokens.is_empty());
    settings.users.clear();
    settings.paths.clear();
    settings.http.tokens.clear();
    assert_eq!(
        toml::to_string(&settings).expect("serialize"),
        toml::to_string(&Settings::default()).expect("serialize")
    );
    assert_eq!(e.server.live.len(), 6);
}

/// `--media` takes any path, as before there was a config file; only
/// printing it as TOML needs UTF-8.
#[test]
fn media_flag_need_not_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(b"clips-\xff"));
    let cli = CliOverrides {
        server: cli::ServerFlags {
            media: Some(path.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let e = from_cli(&cli).expect("a non-UTF-8 media folder");
    assert_eq!(e.server.media, path);
    assert!(e.to_toml().starts_with("# cannot write"));
}

/// `text` is refused with [`FileError::Invalid`] naming `key` at `loc`.
fn expect_invalid(text: &str, key: &str, loc: Location, message: &str) {
    match parse(text) {
        Err(FileError::Invalid {
            key: k,
            at: a,
            message: m,
        }) => assert_eq!((k.as_str(), a, m.as_str()), (key, loc, message), "{text}"),
        other => panic!("{text}: {other:?}"),
    }
}

/// `[[users]]` and `[[paths]]` errors name the table, the key and where.
#[test]
fn users_and_paths_say_what_is_wrong() {
    const U: &str = "[[users]]\nname = \"alice\"\nha1_md5 = \"4810f2ccb0902ce17b7daca2a401bd0c\"\n";
    let cases: Vec<(String, &str, Location, &str)> = vec![
        (
            "[[users]]\nname = \"a\"\nha1_md5 = \"abc\"\n".into(),
            "users[0].ha1_md5",
            at(3, 11),
            "expected 32 hex digits (`rtspd passwd` prints it)",
        ),
        (
            "[[users]]\nname = \"a\"\n".into(),
            "users[0].name",
            at(2, 8),
            "\"a\" has neither ha1_md5 nor ha1_sha256",
        ),
        (
            format!("{U}{U}"),
            "users[1].name",
            at(5, 8),
            "\"alice\" is already users[0]",
        ),
        (
            format!("{U}[[paths]]\nmatch = \"/x\"\nread = [\"alcie\"]\n"),
            "paths[0].read",
            at(6, 8),
            "\"alcie\" is not a [[users]] name (or \"anyone\")",
        ),
        (
            "[[paths]]\nmatch = \"/x\"\ndeny_ips = [\"10.0.0.0/40\"]\n".into(),
            "paths[0].deny_ips",
            at(3, 12),
            "`10.0.0.0/40`: the prefix length must be 0 to 32",
        ),
    ];
    for (text, key, loc, message) in &cases {
        expect_invalid(text, key, *loc, message);
    }
    match parse("[[users]]\nname = \"a\"\nha1 = \"x\"\n") {
        Err(FileError::UnknownKey { key, hint, .. }) => {
            assert_eq!(key, "users[0].ha1");
            assert!(
                matches!(hint, Hint::Nearest(_) | Hint::OneOf(_)),
                "{hint:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    match parse("[[paths]]\nmatch = \"/x\"\nread = \"alice\"\n") {
        Err(FileError::Value { key, .. }) => assert_eq!(key, "paths[0].read"),
        other => panic!("{other:?}"),
    }
    // A good file reaches the server's config.
    let e = parse(&format!(
        "[auth]\nrealm = \"r\"\nnonce_lifetime_secs = 5\n{U}[[paths]]\nmatch = \"/private/**\"\nread = [\"alice\"]\nallow_ips = [\"127.0.0.1\"]\n"
    ))
    .expect("valid");
    let a = &e.server.auth;
    assert_eq!(a.policy.realm, "r");
    assert_eq!(a.nonce_lifetime, Duration::from_secs(5));
    assert!(a.policy.users.contains_key("alice"));
    assert_eq!(a.rules.len(), 1);
    assert_eq!(a.rules[0].allow_ips.len(), 1);
    assert_eq!(a.max_failures, 10);
}

/// `[http.permissions]` and `[[http.tokens]]` errors name the key and
/// where; a good file reaches the server's config.
#[test]
fn http_permissions_and_tokens_say_what_is_wrong() {
    const U: &str = "[[users]]\nname = \"alice\"\nha1_md5 = \"4810f2ccb0902ce17b7daca2a401bd0c\"\n";
    const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let token = |name: &str, hash: &str| {
        format!("[[http.tokens]]\nname = \"{name}\"\nsha256 = \"{hash}\"\n")
    };
    let cases: Vec<(String, &str, Location, String)> = vec![
        (
            format!("{U}[http.permissions]\napi = [\"alcie\"]\n"),
            "http.permissions.api",
            at(5, 7),
            "\"alcie\" is not a [[users]] or [[http.tokens]] name (or \"anyone\")".into(),
        ),
        (
            format!("[http]\nlisten = \"off\"\n{}", token("prom", "abc")),
            "http.tokens[0].sha256",
            at(5, 10),
            "expected 64 hex digits, the token's SHA-256 (`rtspd token NAME` prints it)".into(),
        ),
        (
            format!("{U}{}", token("alice", H)),
            "http.tokens[0].name",
            at(5, 8),
            "\"alice\" is the name of users[0]: a token needs a name of its own".into(),
        ),
        (
            format!("{}{}", token("p", H), token("p", H)),
            "http.tokens[1].name",
            at(5, 8),
            "\"p\" is already http.tokens[0]".into(),
        ),
        (
            token("anyone", H),
            "http.tokens[0].name",
            at(2, 8),
            "\"anyone\": 1 to 64 characters, not \"anyone\", without ':' or '\"'".into(),
        ),
    ];
    for (text, key, loc, message) in &cases {
        expect_invalid(text, key, *loc, message);
    }
    let e = parse(&format!(
        "[http.permissions]\napi = [\"alice\"]\nmetrics = [\"alice\", \"prom\"]\n{U}{}",
        token("prom", H)
    ))
    .expect("valid");
    let a = &e.server.auth;
    use crate::proto::auth::rules::Who;
    assert_eq!(a.grants.api, Who::Users(vec!["alice".into()]));
    assert!(a.grants.metrics.admits("prom") && !a.grants.api.admits("prom"));
    assert_eq!(a.grants.status, Who::Anyone);
    assert_eq!(a.tokens.len(), 1);
    assert_eq!(a.tokens[0].name, "prom");
    // Written out (check-config), the token's hash is not shown.
    let printed = e.to_toml();
    assert!(
        !printed.contains(H) && printed.contains(REDACTED),
        "{printed}"
    );
}

#[test]
fn redirect_keys_are_checked() {
    use crate::proto::redirect::{Policy, When};
    let rule = |keys: &str| format!("[[paths]]\nmatch = \"/**\"\n{keys}\n");
    let ok = rule(
        "redirect = [\"rtsp://e1:8554/\", \"rtsps://e2\"]\nredirect_api = [\"http://e1:8080\", \"http://e2:8080\"]\nredirect_policy = \"least_readers\"\nredirect_when = \"full\"\nmax_readers = 3",
    );
    let e = parse(&ok).expect("valid redirect");
    let r = e.server.auth.rules[0].redirect.clone().expect("redirect");
    assert_eq!(r.edges[0].url, "rtsp://e1:8554");
    assert_eq!(r.edges[1].api.as_deref(), Some("http://e2:8080"));
    assert_eq!(r.policy, Policy::LeastReaders);
    assert_eq!(r.when, When::Full { max_readers: 3 });
    for (keys, key) in [
        ("redirect = [\"http://e1\"]", "redirect"),
        ("redirect = [\"rtsp://e1/a\"]", "redirect"),
        ("redirect_api = [\"http://e1\"]", "redirect_api"),
        (
            "redirect = [\"rtsp://e1\"]\nredirect_api = [\"http://e1\", \"http://e2\"]",
            "redirect_api",
        ),
        (
            "redirect = [\"rtsp://e1\"]\nredirect_policy = \"least_readers\"",
            "redirect_policy",
        ),
        (
            "redirect = [\"rtsp://e1\"]\nredirect_when = \"full\"",
            "redirect_when",
        ),
        ("redirect = [\"rtsp://e1\"]\nmax_readers = 2", "max_readers"),
    ] {
        match parse(&rule(keys)) {
            Err(FileError::Invalid { key: k, .. }) => {
                assert_eq!(k, format!("paths[0].{key}"), "{keys}")
            }
            other => panic!("{keys}: {other:?}"),
        }
    }
}
