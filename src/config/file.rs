//! Reading a config file: TOML (via the `toml` crate and serde) into
//! [`Settings`], with errors a person can act on.
//!
//! 1. The document is parsed once with spans ([`DeTable`]).
//! 2. Every key is checked against the keys of its section, which serde
//!    itself reports ([`fields`]), so the list cannot drift from the
//!    structs. An unknown key is reported with its line and column and
//!    the nearest valid key (Damerau-Levenshtein distance, `strsim`), or the
//!    section it belongs in.
//! 3. serde reads the values (`deny_unknown_fields` stays on as a second
//!    guard). A wrong type or value is reported under its key, found by
//!    the error's span, with what the key allows and the text it got.
//! 4. `[[live]]` tables go through [`LiveSpec`]'s own checks, as `--live`
//!    does.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::auth::{AuthSettings, HttpPermissions, PathTable, Step, TokenTable, UserTable};
use super::{
    HttpSettings, LimitSettings, LiveTable, LogSettings, ServerSettings, Settings, TlsSettings,
};
use crate::server::live::{LiveSpec, SpecError};

/// A file's settings and its live channels, checked.
#[derive(Debug, Default)]
pub struct Parsed {
    pub settings: Settings,
    pub live: Vec<LiveSpec>,
}

/// Where in the file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`.
    fn of(text: &str, offset: usize) -> Self {
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What the nearest valid key is, for an unknown one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// A key of this section that is spelled alike.
    Nearest(String),
    /// The key exists, in another section (e.g. `[limits]`).
    Section(String),
    /// Nothing close: the keys there are.
    OneOf(Vec<&'static str>),
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nearest(k) => write!(f, "did you mean `{k}`?"),
            Self::Section(s) => write!(f, "it belongs in {s}"),
            Self::OneOf(keys) => write!(f, "expected one of: {}", keys.join(", ")),
        }
    }
}

/// Why a file cannot be used; every variant says where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: unknown key `{key}`; {hint}")]
    UnknownKey {
        /// The dotted path, e.g. `limits.max_sesions` or `live[1].codek`.
        key: String,
        at: Location,
        hint: Hint,
    },
    #[error("{at}: {key}: expected {expected}, got {got}")]
    Value {
        key: String,
        at: Location,
        expected: String,
        got: String,
    },
    #[error("{at}: {key}: {message}")]
    Invalid {
        key: String,
        at: Location,
        message: String,
    },
}

/// Parses and checks a config file's text.
pub fn parse(text: &str) -> Result<Parsed, FileError> {
    let doc = DeTable::parse(text).map_err(|e| syntax(text, &e))?;
    check_keys(text, doc.get_ref())?;
    let span = doc.span();
    let settings = Settings::deserialize(toml::de::Deserializer::from(doc))
        .map_err(|e| value_error(text, span, &e))?;
    // Parsed again for the spans serde consumed: a cheap second pass.
    let doc = DeTable::parse(text).map_err(|e| syntax(text, &e))?;
    let live = live_specs(text, doc.get_ref(), &settings.live)?;
    super::auth::check(&settings).map_err(|problem| FileError::Invalid {
        key: problem.key(),
        at: Location::of(text, locate(doc.get_ref(), &problem.path)),
        message: problem.message,
    })?;
    Ok(Parsed { settings, live })
}

/// Where the value at `path` starts, or the deepest table on the way
/// to it (a missing key is reported at its table).
fn locate(doc: &DeTable<'_>, path: &[Step]) -> usize {
    let mut at = 0;
    let mut here: Option<&Spanned<DeValue<'_>>> = None;
    for step in path {
        let next = match (step, here.map(Spanned::get_ref)) {
            (Step::Key(k), None) => doc.get(*k),
            (Step::Key(k), Some(DeValue::Table(t))) => t.get(*k),
            (Step::Index(i), Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        at = next.span().start;
        here = Some(next);
    }
    at
}

/// The shape of a top-level key: a table of keys, or an array of them.
#[derive(Debug, Clone, Copy)]
pub enum Section {
    Table(&'static [&'static str]),
    Tables(&'static [&'static str]),
}

/// The keys of each section of [`Settings`], and of the tables nested in
/// one (`http.permissions`). A new section is one arm.
pub fn section(name: &str) -> Option<Section> {
    Some(match name {
        "server" => Section::Table(fields::<ServerSettings>()),
        "limits" => Section::Table(fields::<LimitSettings>()),
        "http" => Section::Table(fields::<HttpSettings>()),
        "tls" => Section::Table(fields::<TlsSettings>()),
        "log" => Section::Table(fields::<LogSettings>()),
        "live" => Section::Tables(fields::<LiveTable>()),
        "auth" => Section::Table(fields::<AuthSettings>()),
        "users" => Section::Tables(fields::<UserTable>()),
        "paths" => Section::Tables(fields::<PathTable>()),
        // Nested in [http].
        "http.permissions" => Section::Table(fields::<HttpPermissions>()),
        "http.tokens" => Section::Tables(fields::<TokenTable>()),
        _ => return None,
    })
}

/// The field names serde accepts for struct `T`, as its derive reports
/// them to a deserializer.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields probed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut out: &'static [&'static str] = &[];
    // The probe always fails once it has the names.
    let _ = T::deserialize(Probe(&mut out));
    out
}

/// Every key of the document is one the structs take.
fn check_keys(text: &str, doc: &DeTable<'_>) -> Result<(), FileError> {
    let top = fields::<Settings>();
    for (key, value) in doc.iter() {
        let name = key.get_ref().as_ref();
        let Some(shape) = section(name) else {
            return Err(unknown(text, key, name, top, None));
        };
        check_section(text, name, shape, key, value)?;
    }
    Ok(())
}

/// The keys of section `name` (`http`, or a nested one such as
/// `http.permissions`), of the shape it must have.
fn check_section(
    text: &str,
    name: &str,
    shape: Section,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> Result<(), FileError> {
    let got = || source_text(text, value.span());
    match (shape, value.get_ref()) {
        (Section::Table(keys), DeValue::Table(t)) => check_table(text, t, name, keys),
        (Section::Tables(keys), DeValue::Array(a)) => {
            for (i, item) in a.iter().enumerate() {
                let path = format!("{name}[{i}]");
                let DeValue::Table(t) = item.get_ref() else {
                    return Err(FileError::Value {
                        key: path,
                        at: Location::of(text, item.span().start),
                        expected: "a table".into(),
                        got: source_text(text, item.span()),
                    });
                };
                check_table(text, t, &path, keys)?;
            }
            Ok(())
        }
        (Section::Table(_), _) => Err(FileError::Value {
            key: name.into(),
            at: Location::of(text, value.span().start),
            expected: format!("a table ([{name}])"),
            got: got(),
        }),
        (Section::Tables(_), _) => Err(FileError::Value {
            key: name.into(),
            at: Location::of(text, key.span().start),
            expected: format!("[[{name}]] tables (one per entry)"),
            got: format!("{} {}", a_or_an(value.get_ref().type_str()), got()),
        }),
    }
}

fn a_or_an(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
}

fn check_table(
    text: &str,
    table: &DeTable<'_>,
    path: &str,
    keys: &'static [&'static str],
) -> Result<(), FileError> {
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        if !keys.contains(&name) {
            return Err(unknown(text, key, name, keys, Some(path)));
        }
        let nested = format!("{path}.{name}");
        if let Some(shape) = section(&nested) {
            check_section(text, &nested, shape, key, value)?;
        }
    }
    Ok(())
}

/// The error for an unknown key `name` where `keys` are valid.
fn unknown(
    text: &str,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    name: &str,
    keys: &'static [&'static str],
    within: Option<&str>,
) -> FileError {
    let full = within.map_or_else(|| name.to_owned(), |p| format!("{p}.{name}"));
    FileError::UnknownKey {
        key: full,
        at: Location::of(text, key.span().start),
        hint: hint(name, keys, within),
    }
}

/// The nearest key to `name`: a close spelling among `keys`, else the
/// section that has it, else the list.
fn hint(name: &str, keys: &'static [&'static str], within: Option<&str>) -> Hint {
    let nearest = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .min();
    // Close enough to be a typo: at most a third of the letters differ.
    if let Some((d, k)) = nearest {
        if d <= (name.chars().count() / 3).max(1) {
            return Hint::Nearest(k.into());
        }
    }
    let home = fields::<Settings>().iter().find(|s| {
        Some(**s) != within.map(|w| w.split('[').next().unwrap_or(w))
            && section(s).is_some_and(|sec| match sec {
                Section::Table(k) | Section::Tables(k) => k.contains(&name),
            })
    });
    match home.and_then(|s| section(s).map(|sec| (s, sec))) {
        Some((s, Section::Table(_))) => Hint::Section(format!("[{s}]")),
        Some((s, Section::Tables(_))) => Hint::Section(format!("[[{s}]]")),
        None => Hint::OneOf(keys.to_vec()),
    }
}

/// The file's text at `span`, one line at most.
fn source_text(text: &str, span: Range<usize>) -> String {
    let s = text.get(span).unwrap_or("").trim();
    match s.split_once('\n') {
        Some((first, _)) => format!("{}...", first.trim_end()),
        None => s.to_owned(),
    }
}

/// A serde error, named by the key whose value its span covers.
fn value_error(text: &str, root: Range<usize>, e: &toml::de::Error) -> FileError {
    let span = e.span().unwrap_or(root);
    let doc = DeTable::parse(text).ok();
    let key = doc
        .as_ref()
        .and_then(|d| key_at(d.get_ref(), &span, ""))
        .unwrap_or_else(|| "(document)".into());
    let at = Location::of(text, span.start);
    let message = e.message().trim();
    match message.split_once("expected ") {
        Some((_, expected)) => FileError::Value {
            key,
            at,
            expected: expected.to_owned(),
            got: source_text(text, span),
        },
        // A missing field's span is its whole table: nothing to quote.
        None if message.starts_with("missing field") => FileError::Invalid {
            key,
            at,
            message: message.to_owned(),
        },
        None => FileError::Invalid {
            key,
            at,
            message: format!("{message}: {}", source_text(text, span)),
        },
    }
}

/// The dotted path of the innermost value whose span holds `span`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        value_at(v, span, path)
    })
}

fn value_at(v: &Spanned<DeValue<'_>>, span: &Range<usize>, path: String) -> Option<String> {
    // A `[section]` table's own span is its header only, so look inside
    // containers whatever their span.
    let inner = match v.get_ref() {
        DeValue::Table(t) => key_at(t, span, &path),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, item)| value_at(item, span, format!("{path}[{i}]"))),
        _ => None,
    };
    let vs = v.span();
    inner.or_else(|| (vs.start <= span.start && span.end <= vs.end).then_some(path))
}

/// The `[[live]]` tables as channels, through [`LiveSpec`]'s checks; a
/// name used twice is an error.
fn live_specs(
    text: &str,
    doc: &DeTable<'_>,
    tables: &[LiveTable],
) -> Result<Vec<LiveSpec>, FileError> {
    let items = doc
        .get("live")
        .and_then(|v| v.get_ref().as_array())
        .map(|a| a.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut specs: Vec<LiveSpec> = Vec::with_capacity(tables.len());
    for (i, table) in tables.iter().enumerate() {
        let item = items.get(i).and_then(|v| v.get_ref().as_table());
        // Where key `k` of this table is (the table itself if absent).
        let at = |k: &str| {
            let start = item
                .and_then(|t| t.get(k))
                .or_else(|| items.get(i).copied())
                .map_or(0, |v| v.span().start);
            Location::of(text, start)
        };
        let path = |k: &str| format!("live[{i}].{k}");
        let mut spec = LiveSpec::new(&table.name, &table.source).map_err(|e| match e {
            SpecError::Name(_) => FileError::Value {
                key: path("name"),
                at: at("name"),
                expected: "1 to 64 letters, digits, '-', '_' and '.'".into(),
                got: format!("{:?}", table.name),
            },
            _ => FileError::Value {
                key: path("source"),
                at: at("source"),
                expected: "file:PATH (or a WAV's path), pipe:COMMAND, stdin, publish, rtsp://... or rtsps://...".into(),
                got: format!("{:?}", table.source),
            },
        })?;
        let keys = [
            ("codec", table.codec.clone()),
            ("rate", table.rate.map(|v| v.to_string())),
            ("channels", table.channels.map(|v| v.to_string())),
            ("format", table.format.clone()),
            ("gop_cache", table.gop_cache.map(|v| v.to_string())),
            ("transport", table.transport.clone()),
            ("on_demand", table.on_demand.map(|v| v.to_string())),
            ("close_after", table.close_after.map(|v| v.to_string())),
            ("start_timeout", table.start_timeout.map(|v| v.to_string())),
            ("max_sdp", table.max_sdp.map(|v| v.to_string())),
            (
                "max_packet_rate",
                table.max_packet_rate.map(|v| v.to_string()),
            ),
            ("max_bitrate", table.max_bitrate.map(|v| v.to_string())),
            ("stall_timeout", table.stall_timeout.map(|v| v.to_string())),
            (
                "ca_file",
                table.ca_file.as_ref().map(|p| p.display().to_string()),
            ),
        ];
        for (k, v) in keys {
            let Some(v) = v else { continue };
            spec.set(k, &v).map_err(|allowed| FileError::Value {
                key: path(k),
                at: at(k),
                expected: allowed,
                got: item
                    .and_then(|t| t.get(k))
                    .map_or(v.clone(), |s| source_text(text, s.span())),
            })?;
        }
        spec.check().map_err(|e| FileError::Invalid {
            key: format!("live[{i}] ({})", table.name),
            at: at("name"),
            message: match e {
                SpecError::Key { kv, .. } => kv,
                e => e.to_string(),
            },
        })?;
        if let Some(first) = specs.iter().position(|s| s.name == spec.name) {
            return Err(FileError::Invalid {
                key: path("name"),
                at: at("name"),
                message: format!("{:?} is already the name of live[{first}]", spec.name),
            });
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// A syntax error from the TOML parser.
fn syntax(text: &str, e: &toml::de::Error) -> FileError {
    FileError::Syntax {
        at: Location::of(text, e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_owned(),
    }
}
