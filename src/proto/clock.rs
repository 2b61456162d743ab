//! Media time, RTP timestamps and NTP wallclock (RFC 3550 §5.1, §6.4.1).
//!
//! The server reads the OS clock once at start-up and hands the core a
//! [`WallClock`] anchor; from then on every NTP timestamp is derived from the
//! monotonic `Instant`s the caller passes in, so all tracks of a presentation
//! map onto one NTP timeline (what lip sync needs) and tests control time.

use std::time::{Duration, Instant};

use super::rtcp::NtpTimestamp;

/// Maps monotonic instants to wallclock (NTP) time.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
    origin_unix: Duration,
}

impl WallClock {
    /// `origin_unix` is the Unix time at the instant `origin`.
    pub fn new(origin: Instant, origin_unix: Duration) -> Self {
        Self {
            origin,
            origin_unix,
        }
    }

    /// The instant the clock is anchored at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The NTP timestamp of `at` (instants before the origin clamp to it).
    pub fn ntp(&self, at: Instant) -> NtpTimestamp {
        NtpTimestamp::from_unix(self.origin_unix + at.saturating_duration_since(self.origin))
    }
}

/// Converts seconds of media time into clock ticks, rounding to the nearest
/// tick. `None` for negative, non-finite or absurd values (no float-to-int UB).
pub fn secs_to_ticks(secs: f64, clock_rate: u32) -> Option<u64> {
    let ticks = (secs * f64::from(clock_rate)).round();
    (ticks.is_finite() && (0.0..9.0e15).contains(&ticks)).then_some(ticks as u64)
}

/// Converts clock ticks to seconds of media time.
pub fn ticks_to_secs(ticks: u64, clock_rate: u32) -> f64 {
    ticks as f64 / f64::from(clock_rate.max(1))
}

/// The wallclock span of `ticks` at `clock_rate`, exact to the nanosecond.
pub fn ticks_to_duration(ticks: u64, clock_rate: u32) -> Duration {
    let rate = u64::from(clock_rate.max(1));
    let nanos = u128::from(ticks % rate) * 1_000_000_000 / u128::from(rate);
    Duration::from_secs(ticks / rate) + Duration::from_nanos(nanos as u64)
}

/// The number of whole ticks elapsed in `d` at `clock_rate`.
pub fn duration_to_ticks(d: Duration, clock_rate: u32) -> u64 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions_are_exact() {
        assert_eq!(ticks_to_duration(8000, 8000), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(160, 8000), Duration::from_millis(20));
        assert_eq!(ticks_to_duration(441, 44100), Duration::from_millis(10));
        assert_eq!(
            duration_to_ticks(Duration::from_millis(2500), 48000),
            120_000
        );
        // No drift over ten minutes at 44.1 kHz.
        let ten_min = 600 * 44100;
        assert_eq!(ticks_to_duration(ten_min, 44100), Duration::from_secs(600));
    }

    #[test]
    fn secs_to_ticks_rejects_garbage() {
        assert_eq!(secs_to_ticks(2.5, 8000), Some(20000));
        assert_eq!(secs_to_ticks(-1.0, 8000), None);
        assert_eq!(secs_to_ticks(f64::NAN, 8000), None);
        assert_eq!(secs_to_ticks(f64::INFINITY, 8000), None);
        assert_eq!(secs_to_ticks(1e300, 8000), None);
    }

    #[test]
    fn ntp_follows_the_monotonic_clock() {
        let t0 = Instant::now();
        let clock = WallClock::new(t0, Duration::from_secs(1_700_000_000));
        let a = clock.ntp(t0).to_unix();
        let b = clock.ntp(t0 + Duration::from_millis(1500)).to_unix();
        assert_eq!(b - a, Duration::from_millis(1500));
    }
}
