//! The value types of config keys that are more than a number or a path:
//! integers with their allowed range, and the words some keys take
//! (`port = "auto"`, `pacer_cpu = "none"`, `listen = "off"`). Each says
//! what it allows in the same words a file error and a flag error use.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An unsigned integer key from `MIN` to `MAX`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Int<const MIN: u64, const MAX: u64>(u64);

/// The upper bound of keys that take any non-negative integer: the
/// largest a TOML integer holds.
pub const ANY: u64 = i64::MAX as u64;

impl<const MIN: u64, const MAX: u64> Int<MIN, MAX> {
    /// A built-in value; panics when out of range (a programming error).
    pub const fn of(v: u64) -> Self {
        assert!(MIN <= v && v <= MAX, "a default outside its key's range");
        Self(v)
    }

    /// `v` if it is in range.
    pub const fn new(v: u64) -> Option<Self> {
        if MIN <= v && v <= MAX {
            Some(Self(v))
        } else {
            None
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// As a `usize` (64-bit targets: lossless).
    pub const fn usize(self) -> usize {
        self.0 as usize
    }

    /// What the key allows, e.g. "an integer from 1 to 1000".
    pub fn allowed() -> String {
        match (MIN, MAX) {
            (0, ANY) => "a non-negative integer".into(),
            (1, ANY) => "a positive integer".into(),
            _ => format!("an integer from {MIN} to {MAX}"),
        }
    }
}

impl<const MIN: u64, const MAX: u64> FromStr for Int<MIN, MAX> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse()
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| format!("expected {}", Self::allowed()))
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Int<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Int<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let allowed = Self::allowed();
        let n = d.deserialize_any(IntOrWord {
            word: None,
            allowed: &allowed,
        })?;
        let n = n.ok_or_else(|| de::Error::custom(format!("expected {allowed}")))?;
        Self::new(n).ok_or_else(|| de::Error::invalid_value(Unexpected::Unsigned(n), &&*allowed))
    }
}

/// Reads an integer, or the one word that stands for "none" (`None`).
struct IntOrWord<'a> {
    word: Option<&'static str>,
    allowed: &'a str,
}

impl Visitor<'_> for IntOrWord<'_> {
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.allowed)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match self.word {
            Some(w) if w == v => Ok(None),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// An integer up to `max`, or `word` for none.
fn int_or_word<'de, D: Deserializer<'de>>(
    d: D,
    word: &'static str,
    max: u64,
    allowed: &str,
) -> Result<Option<u64>, D::Error> {
    let n = d.deserialize_any(IntOrWord {
        word: Some(word),
        allowed,
    })?;
    match n {
        Some(n) if n > max => Err(de::Error::invalid_value(Unexpected::Unsigned(n), &allowed)),
        n => Ok(n),
    }
}

/// The RTSP port: `"auto"` tries 554, then 8554; 0 picks a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Port {
    #[default]
    Auto,
    Fixed(u16),
}

impl Port {
    const ALLOWED: &str = "an integer from 0 to 65535, or \"auto\"";

    /// As [`crate::server::Config::port`] takes it.
    pub fn get(self) -> Option<u16> {
        match self {
            Self::Auto => None,
            Self::Fixed(p) => Some(p),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(p) => s.serialize_u16(*p),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = int_or_word(d, "auto", u16::MAX.into(), Self::ALLOWED)?;
        Ok(n.map_or(Self::Auto, |p| Self::Fixed(p as u16)))
    }
}

/// A core of its own for the pacing thread, or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacerCpu {
    #[default]
    None,
    Core(usize),
}

impl PacerCpu {
    const ALLOWED: &str = "a core number, or \"none\"";

    pub fn get(self) -> Option<usize> {
        match self {
            Self::None => None,
            Self::Core(c) => Some(c),
        }
    }
}

impl Serialize for PacerCpu {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::None => s.serialize_str("none"),
            Self::Core(c) => s.serialize_u64(*c as u64),
        }
    }
}

impl<'de> Deserialize<'de> for PacerCpu {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = int_or_word(d, "none", usize::MAX as u64, Self::ALLOWED)?;
        Ok(n.map_or(Self::None, |c| Self::Core(c as usize)))
    }
}

/// Serde for types with `Display` and `FromStr` (an error of which says
/// what is allowed), as a TOML string.
pub(crate) mod as_str {
    use super::*;

    pub(crate) fn serialize<T: fmt::Display, S: Serializer>(
        v: &T,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err: fmt::Display>,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// The HTTP side's address (`[http] listen`, `--http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    /// Neither the file nor a flag named one: [`HttpListen::DEFAULT`]. If
    /// it is taken, the server runs without HTTP (and says so).
    Default(SocketAddr),
    /// Named by the file or a flag: failing to bind it is a startup error.
    Explicit(SocketAddr),
    /// No HTTP side.
    Off,
}

impl HttpListen {
    /// Where the HTTP side listens unless told otherwise.
    pub const DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

    /// The address to bind, if any.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Self::Default(a) | Self::Explicit(a) => Some(a),
            Self::Off => None,
        }
    }
}

impl Default for HttpListen {
    fn default() -> Self {
        Self::Default(Self::DEFAULT)
    }
}

impl fmt::Display for HttpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr() {
            Some(a) => a.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl FromStr for HttpListen {
    type Err = String;

    /// `ADDR:PORT` (explicit) or `off`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Self::Off);
        }
        s.parse()
            .map(Self::Explicit)
            .map_err(|_| "expected ADDR:PORT (e.g. 127.0.0.1:8080) or \"off\"".into())
    }
}

/// The log level when `RUST_LOG` does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// As `tracing`'s filters name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// What `-v` (1) or `-vv` (2 or more) asks for; `None` for no `-v`.
    pub fn from_verbosity(count: u8) -> Option<Self> {
        match count {
            0 => None,
            1 => Some(Self::Debug),
            _ => Some(Self::Trace),
        }
    }
}

/// How log lines are written: text for people, JSON lines for shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_ranges_and_words() {
        assert_eq!("20".parse::<Int<1, 1000>>(), Ok(Int::of(20)));
        for (bad, want) in [
            ("0", "expected an integer from 1 to 1000"),
            ("1001", "expected an integer from 1 to 1000"),
            ("x", "expected an integer from 1 to 1000"),
        ] {
            assert_eq!(bad.parse::<Int<1, 1000>>(), Err(want.into()), "{bad}");
        }
        assert_eq!(Int::<0, ANY>::allowed(), "a non-negative integer");
        assert_eq!(Int::<1, ANY>::allowed(), "a positive integer");
        assert_eq!("off".parse(), Ok(HttpListen::Off));
        assert_eq!(
            "0.0.0.0:81".parse(),
            Ok(HttpListen::Explicit(SocketAddr::from(([0, 0, 0, 0], 81))))
        );
        assert!("8080".parse::<HttpListen>().is_err());
        assert_eq!(HttpListen::default().to_string(), "127.0.0.1:8080");
        assert_eq!(LogLevel::from_verbosity(0), None);
        assert_eq!(LogLevel::from_verbosity(1), Some(LogLevel::Debug));
        assert_eq!(LogLevel::from_verbosity(5), Some(LogLevel::Trace));
    }
}
