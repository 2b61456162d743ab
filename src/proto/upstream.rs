//! The sans-IO part of pulling from an upstream RTSP server (RFC 2326
//! §A.2, the client state machine; issue 13 "Pull sources"): which
//! transport the next attempt asks for (§12.39 Transport, §10.12
//! interleaved), when it starts after a failure (exponential backoff), and
//! when a state change is worth one log line. Also the flood guard that
//! cuts off an upstream sending more packets or bits per second than a
//! channel allows.
//!
//! Everything takes `now`; [`crate::upstream`] is the tokio edge that
//! drives it.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// First wait after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How media is asked for (config `transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportMode {
    /// UDP first; TCP interleaved once a UDP attempt saw no packets.
    #[default]
    Auto,
    Udp,
    Tcp,
}

/// What one attempt asks for in its SETUPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    /// `RTP/AVP;unicast;client_port=...`
    Udp,
    /// `RTP/AVP/TCP;unicast;interleaved=...` (RFC 2326 §10.12).
    Tcp,
}

impl fmt::Display for Lower {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// A `transport` value that is none of `auto`, `udp`, `tcp`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("transport {0:?}: expected auto, udp or tcp")]
pub struct TransportModeError(String);

impl fmt::Display for TransportMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

impl FromStr for TransportMode {
    type Err = TransportModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "udp" => Ok(Self::Udp),
            "tcp" => Ok(Self::Tcp),
            _ => Err(TransportModeError(s.to_owned())),
        }
    }
}

/// Exponential backoff: `min`, `2 min`, `4 min`, ... capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BACKOFF_MIN, BACKOFF_MAX)
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; each call doubles the following
    /// one, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    /// After a success: the next failure waits `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Where the upstream stands, as reported and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The first attempt (or one after a fallback) is running.
    Connecting,
    /// Media arrives.
    Up,
    /// Failed; the next attempt starts at `retry_at`.
    Down {
        retry_at: Instant,
    },
    Stopped,
}

/// Why an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A UDP attempt whose PLAY worked but no packet came in time.
    NoUdpMedia,
    /// Anything else: refused, closed, timed out, flooded.
    Other,
}

/// What the edge does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// When the next attempt starts.
    pub at: Instant,
    /// The upstream was up (or had never been up and this is its first
    /// failure): tell readers `Down` and log once. Later failures of the
    /// same outage are quiet.
    pub announce: bool,
}

/// The reconnect state machine of one upstream.
#[derive(Debug, Clone)]
pub struct Supervisor {
    mode: TransportMode,
    /// `auto` fell back to TCP: it stays there for this upstream's life
    /// (a NAT or firewall that drops UDP does not start passing it).
    fell_back: bool,
    backoff: Backoff,
    state: State,
    /// Whether this outage was announced already.
    announced: bool,
}

impl Supervisor {
    pub fn new(mode: TransportMode, backoff: Backoff) -> Self {
        Self {
            mode,
            fell_back: false,
            backoff,
            state: State::Connecting,
            announced: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The lower transport of the next attempt.
    pub fn lower(&self) -> Lower {
        match self.mode {
            TransportMode::Udp => Lower::Udp,
            TransportMode::Tcp => Lower::Tcp,
            TransportMode::Auto if self.fell_back => Lower::Tcp,
            TransportMode::Auto => Lower::Udp,
        }
    }

    /// The first packet of an attempt arrived. `true` when this is a state
    /// change to log (and to tell readers `Up`).
    pub fn on_media(&mut self) -> bool {
        if self.state == State::Up {
            return false;
        }
        self.state = State::Up;
        self.announced = false;
        self.backoff.reset();
        true
    }

    /// An attempt failed at `now`.
    pub fn on_failure(&mut self, failure: Failure, now: Instant) -> Retry {
        if failure == Failure::NoUdpMedia
            && self.mode == TransportMode::Auto
            && !self.fell_back
            && self.state != State::Up
        {
            // Straight to TCP interleaved: not an outage.
            self.fell_back = true;
            self.state = State::Connecting;
            return Retry {
                at: now,
                announce: false,
            };
        }
        let at = now + self.backoff.next_delay();
        let announce = !self.announced;
        self.announced = true;
        self.state = State::Down { retry_at: at };
        Retry { at, announce }
    }

    pub fn stop(&mut self) {
        self.state = State::Stopped;
    }
}

/// Why the flood guard cut an upstream off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Flood {
    #[error("more than {limit} packets/s")]
    Packets { limit: u32 },
    #[error("more than {limit} bit/s")]
    Bits { limit: u64 },
}

/// Counts packets and bytes over one-second windows against the caps (0
/// means no cap). A window over either cap is a [`Flood`].
#[derive(Debug, Clone)]
pub struct RateGuard {
    max_packets: u32,
    max_bits: u64,
    window_start: Option<Instant>,
    packets: u32,
    bytes: u64,
}

impl RateGuard {
    pub fn new(max_packets_per_sec: u32, max_bits_per_sec: u64) -> Self {
        Self {
            max_packets: max_packets_per_sec,
            max_bits: max_bits_per_sec,
            window_start: None,
            packets: 0,
            bytes: 0,
        }
    }

    /// Counts one packet of `len` bytes arriving at `now`.
    pub fn admit(&mut self, len: usize, now: Instant) -> Result<(), Flood> {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            self.window_start = Some(now);
            self.packets = 0;
            self.bytes = 0;
        }
        self.packets = self.packets.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len as u64);
        if self.max_packets > 0 && self.packets > self.max_packets {
            return Err(Flood::Packets {
                limit: self.max_packets,
            });
        }
        if self.max_bits > 0 && self.bytes.saturating_mul(8) > self.max_bits {
            return Err(Flood::Bits {
                limit: self.max_bits,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut odd = Backoff::new(Duration::from_millis(300), Duration::from_millis(100));
        assert_eq!(odd.next_delay(), Duration::from_millis(300));
        assert_eq!(odd.next_delay(), Duration::from_millis(300));
    }

    #[test]
    fn outages_are_announced_once_and_backoff_restarts_after_media() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(TransportMode::Tcp, Backoff::default());
        assert_eq!(s.state(), State::Connecting);
        // Never up: the first failure is announced, the next ones are not.
        let r = s.on_failure(Failure::Other, t0);
        assert_eq!(
            r,
            Retry {
                at: t0 + Duration::from_secs(1),
                announce: true
            }
        );
        let r = s.on_failure(Failure::Other, r.at);
        assert_eq!(
            r,
            Retry {
                at: t0 + Duration::from_secs(3),
                announce: false
            }
        );
        assert_eq!(s.state(), State::Down { retry_at: r.at });
        assert!(s.on_media());
        assert!(!s.on_media(), "Up is told once");
        assert_eq!(s.state(), State::Up);
        // A new outage: announced again, backoff from 1 s again.
        let t1 = t0 + Duration::from_secs(100);
        let r = s.on_failure(Failure::Other, t1);
        assert_eq!(
            r,
            Retry {
                at: t1 + Duration::from_secs(1),
                announce: true
            }
        );
        // No UDP media in TCP mode is an ordinary failure.
        let r = s.on_failure(Failure::NoUdpMedia, t1);
        assert!(!r.announce);
        assert_eq!(r.at, t1 + Duration::from_secs(2));
        assert_eq!(s.lower(), Lower::Tcp);
        s.stop();
        assert_eq!(s.state(), State::Stopped);
    }

    #[test]
    fn auto_falls_back_to_tcp_at_once_and_stays() {
        let t0 = Instant::now();
        let mut s = Supervisor::new(TransportMode::Auto, Backoff::default());
        assert_eq!(s.lower(), Lower::Udp);
        let r = s.on_failure(Failure::NoUdpMedia, t0);
        assert_eq!(
            r,
            Retry {
                at: t0,
                announce: false
            }
        );
        assert_eq!(s.lower(), Lower::Tcp);
        assert_eq!(s.state(), State::Connecting);
        // A second "no UDP media" cannot happen on TCP, but would back off.
        let r = s.on_failure(Failure::NoUdpMedia, t0);
        assert_eq!(
            r,
            Retry {
                at: t0 + Duration::from_secs(1),
                announce: true
            }
        );
        assert!(s.on_media());
        s.on_failure(Failure::Other, t0);
        assert_eq!(s.lower(), Lower::Tcp);
        // UDP only never falls back.
        let mut u = Supervisor::new(TransportMode::Udp, Backoff::default());
        let r = u.on_failure(Failure::NoUdpMedia, t0);
        assert_eq!(r.at, t0 + Duration::from_secs(1));
        assert_eq!(u.lower(), Lower::Udp);
    }

    #[test]
    fn transport_modes_parse() {
        assert_eq!("AUTO".parse(), Ok(TransportMode::Auto));
        assert_eq!("udp".parse(), Ok(TransportMode::Udp));
        assert_eq!("tcp".parse(), Ok(TransportMode::Tcp));
        assert!("sctp".parse::<TransportMode>().is_err());
    }

    #[test]
    fn the_rate_guard_cuts_floods_per_second() {
        let t0 = Instant::now();
        let mut g = RateGuard::new(3, 0);
        for _ in 0..3 {
            g.admit(100, t0).unwrap();
        }
        assert_eq!(g.admit(100, t0), Err(Flood::Packets { limit: 3 }));
        // A new window starts clean.
        let t1 = t0 + Duration::from_secs(1);
        g.admit(100, t1).unwrap();
        let mut b = RateGuard::new(0, 8_000);
        b.admit(999, t0).unwrap();
        b.admit(1, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(
            b.admit(1, t0 + Duration::from_millis(900)),
            Err(Flood::Bits { limit: 8_000 })
        );
        let mut none = RateGuard::new(0, 0);
        for _ in 0..100_000 {
            none.admit(1500, t0).unwrap();
        }
    }
}
