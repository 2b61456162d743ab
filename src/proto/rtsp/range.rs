//! The Range header, npt form only (RFC 2326 §3.6, §12.29).
//!
//! ```text
//! npt-range  = ( npt-time "-" [ npt-time ] ) | ( "-" npt-time )
//! npt-time   = "now" | npt-sec | npt-hhmmss
//! npt-sec    = 1*DIGIT [ "." *DIGIT ]
//! npt-hhmmss = npt-hh ":" npt-mm ":" npt-ss [ "." *DIGIT ]
//! ```
//!
//! SMPTE and absolute `clock=` ranges are refused; the server answers 457 to
//! every [`RangeError`]. Times are plain decimals (no sign, exponent, `inf` or
//! `nan`) and are checked finite and at most [`MAX_SECONDS`] before anything
//! converts them, so no float-to-integer or `Duration` arithmetic can
//! overflow (the CVE-2013-4977 class). A trailing `;time=` is ignored.

use std::fmt;
use std::str::FromStr;

use super::parse::digits;

/// Largest npt time accepted (about 31 years).
pub const MAX_SECONDS: f64 = 1e9;

/// Longest Range value accepted.
const MAX_LEN: usize = 128;

/// A start time: `now` (live) or seconds from the start of the presentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NptTime {
    Now,
    /// Always finite, in `0.0..=MAX_SECONDS`.
    Seconds(f64),
}

/// `npt=start-[end]`. An omitted start (`npt=-10`) is 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NptRange {
    pub start: NptTime,
    /// Always finite, in `0.0..=MAX_SECONDS`, and not before a numeric start.
    pub end: Option<f64>,
}

/// Why a Range value was refused (answer 457 Invalid Range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Longer than 128 bytes.
    #[error("Range value too long")]
    TooLong,
    /// A unit other than `npt`: `smpte`, `smpte-25`, `clock`, `bytes`...
    #[error("unsupported Range unit")]
    UnsupportedUnit,
    /// Not `npt=[start]-[end]` with npt times.
    #[error("malformed npt range")]
    Malformed,
    /// A time above [`MAX_SECONDS`].
    #[error("npt time out of range")]
    OutOfRange,
    /// The end is before the start.
    #[error("npt range ends before it starts")]
    EndBeforeStart,
}

impl FromStr for NptRange {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_LEN {
            return Err(RangeError::TooLong);
        }
        let spec = s.split_once(';').map_or(s, |(spec, _time)| spec);
        let (unit, range) = spec.split_once('=').ok_or(RangeError::Malformed)?;
        if !unit.trim().eq_ignore_ascii_case("npt") {
            return Err(RangeError::UnsupportedUnit);
        }
        let (start, end) = range.split_once('-').ok_or(RangeError::Malformed)?;
        let end = match end.trim() {
            "" => None,
            t => Some(npt_time(t)?),
        };
        let start = match start.trim() {
            "" if end.is_some() => NptTime::Seconds(0.0),
            t if t.eq_ignore_ascii_case("now") => NptTime::Now,
            t => NptTime::Seconds(npt_time(t)?),
        };
        match (start, end) {
            (NptTime::Seconds(s), Some(e)) if e < s => Err(RangeError::EndBeforeStart),
            _ => Ok(Self { start, end }),
        }
    }
}

/// An npt-sec or npt-hhmmss time, in seconds.
fn npt_time(t: &str) -> Result<f64, RangeError> {
    let secs = match t.split_once(':') {
        None => decimal(t, MAX_LEN),
        Some((hh, mmss)) => {
            let (mm, ss) = mmss.split_once(':').ok_or(RangeError::Malformed)?;
            let h = digits::<u32>(hh);
            let m = digits::<u8>(mm).filter(|&m| mm.len() <= 2 && m < 60);
            let s = decimal(ss, 2).filter(|&s| s < 60.0);
            h.zip(m)
                .zip(s)
                .map(|((h, m), s)| f64::from(h) * 3600.0 + f64::from(m) * 60.0 + s)
        }
    };
    match secs.ok_or(RangeError::Malformed)? {
        s if s.is_finite() && s <= MAX_SECONDS => Ok(s),
        _ => Err(RangeError::OutOfRange),
    }
}

/// `1*DIGIT [ "." *DIGIT ]` with at most `max_int` integer digits.
fn decimal(s: &str, max_int: usize) -> Option<f64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = (1..=max_int).contains(&int.len())
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

impl fmt::Display for NptRange {
    /// `npt=2.500-`, `npt=2.500-10.000` or `npt=now-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start {
            NptTime::Now => f.write_str("npt=now-")?,
            NptTime::Seconds(s) => write!(f, "npt={s:.3}-")?,
        }
        match self.end {
            Some(e) => write!(f, "{e:.3}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NptTime::{Now, Seconds};
    use RangeError::*;

    #[test]
    fn accepted() {
        for (s, start, end) in [
            ("npt=2.5-", Seconds(2.5), None),
            ("npt=2.5-10", Seconds(2.5), Some(10.0)),
            ("npt=now-", Now, None),
            ("npt=-10", Seconds(0.0), Some(10.0)),
            ("npt = 0.000-", Seconds(0.0), None),
            ("npt=0-", Seconds(0.0), None),
            ("npt=5.-", Seconds(5.0), None),
            ("npt=0:01:02.5-", Seconds(62.5), None),
            ("npt=1:00:00-2:0:0", Seconds(3600.0), Some(7200.0)),
            ("npt=10-10", Seconds(10.0), Some(10.0)),
            ("npt=1000000000-", Seconds(1e9), None),
            ("npt=2.5-;time=19970123T143720Z", Seconds(2.5), None),
            ("npt=now-30", Now, Some(30.0)),
        ] {
            assert_eq!(s.parse(), Ok(NptRange { start, end }), "{s:?}");
        }
    }

    #[test]
    fn refused() {
        let long = format!("npt=0-{}", "1".repeat(MAX_LEN));
        for (s, e) in [
            ("smpte=99:99:99:99.99-", UnsupportedUnit),
            ("smpte-25=10:07:00-", UnsupportedUnit),
            ("clock=99999999T999999Z-", UnsupportedUnit),
            ("clock=19000101T000000Z-", UnsupportedUnit),
            ("bytes=0-100", UnsupportedUnit),
            ("npt=-", Malformed),
            ("npt=-5-", Malformed),
            ("npt=abc", Malformed),
            ("npt=abc-", Malformed),
            ("npt=10", Malformed),
            ("npt", Malformed),
            ("npt=1e309-", Malformed),
            ("npt=inf-", Malformed),
            ("npt=NaN-", Malformed),
            ("npt=+5-", Malformed),
            ("npt=.5-", Malformed),
            ("npt=0:60:00-", Malformed),
            ("npt=0:00:60-", Malformed),
            ("npt=0:000:01-", Malformed),
            ("npt=1:2-", Malformed),
            ("npt=1.5:00:00-", Malformed),
            ("npt=0-now", Malformed),
            ("npt=99999999999999999999999-", OutOfRange),
            ("npt=0-1000000000.001", OutOfRange),
            ("npt=4294967295:00:00-", OutOfRange),
            ("npt=30-10", EndBeforeStart),
            (&long, TooLong),
        ] {
            assert_eq!(s.parse::<NptRange>(), Err(e), "{s:?}");
        }
    }

    #[test]
    fn display_and_round_trip() {
        for (s, shown) in [
            ("npt=2.5-", "npt=2.500-"),
            ("npt=2.5-10", "npt=2.500-10.000"),
            ("npt=now-", "npt=now-"),
            ("npt=-10", "npt=0.000-10.000"),
            ("npt=0:01:02.25-", "npt=62.250-"),
        ] {
            let r: NptRange = s.parse().unwrap();
            assert_eq!(r.to_string(), shown);
            assert_eq!(shown.parse(), Ok(r));
        }
    }
}
