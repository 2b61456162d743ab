//! Online password guessing (ROBUSTNESS B8#65): after `max_failures`
//! failed attempts from one IP within `window`, the IP is refused (403,
//! no challenge) for `block`. Sans-IO; the table is bounded by
//! [`MAX_IPS`], dropping entries whose window and block are over first,
//! then refusing to track new addresses (they are still challenged, just
//! not counted) rather than forgetting a blocked one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at once.
pub const MAX_IPS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Record {
    since: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Failed attempts per client address.
#[derive(Debug)]
pub struct Throttle {
    pub max_failures: u32,
    pub window: Duration,
    pub block: Duration,
    by_ip: HashMap<IpAddr, Record>,
}

impl Throttle {
    pub fn new(max_failures: u32, window: Duration, block: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            block,
            by_ip: HashMap::new(),
        }
    }

    /// Whether `ip` is refused at `now`.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip
            .get(&ip)
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a failure; true when it starts a block.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.by_ip.contains_key(&ip) && self.by_ip.len() >= MAX_IPS {
            self.purge(now);
            if self.by_ip.len() >= MAX_IPS {
                return false;
            }
        }
        let r = self.by_ip.entry(ip).or_insert(Record {
            since: now,
            failures: 0,
            blocked_until: None,
        });
        if r.blocked_until.is_some_and(|u| now >= u)
            || now.saturating_duration_since(r.since) > self.window
        {
            *r = Record {
                since: now,
                failures: 0,
                blocked_until: None,
            };
        }
        r.failures += 1;
        if r.failures >= self.max_failures && r.blocked_until.is_none() {
            r.blocked_until = Some(now + self.block);
            return true;
        }
        false
    }

    fn purge(&mut self, now: Instant) {
        let window = self.window;
        self.by_ip.retain(|_, r| match r.blocked_until {
            Some(u) => now < u,
            None => now.saturating_duration_since(r.since) <= window,
        });
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_for_a_minute() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throttle::new(10, 60 * s, 60 * s);
        let ip = IpAddr::from([192, 0, 2, 1]);
        let other = IpAddr::from([192, 0, 2, 2]);
        for i in 0..9 {
            assert!(!t.fail(ip, t0 + i * s));
            assert!(!t.blocked(ip, t0 + i * s));
        }
        assert!(t.fail(ip, t0 + 9 * s), "the tenth starts the block");
        assert!(!t.fail(ip, t0 + 10 * s), "already blocked");
        assert!(t.blocked(ip, t0 + 68 * s));
        assert!(!t.blocked(other, t0 + 10 * s), "per address");
        assert!(!t.blocked(ip, t0 + 69 * s), "over after 60 s");
        // A fresh count after the block.
        assert!(!t.fail(ip, t0 + 70 * s));
        assert!(!t.blocked(ip, t0 + 70 * s));
    }

    #[test]
    fn slow_failures_never_block() {
        let t0 = Instant::now();
        let mut t = Throttle::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let ip = IpAddr::from([192, 0, 2, 1]);
        for i in 0..30 {
            assert!(!t.fail(ip, t0 + Duration::from_secs(7 * i)));
        }
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut t = Throttle::new(2, Duration::from_secs(1), Duration::from_secs(1));
        for i in 0..MAX_IPS as u32 + 10 {
            t.fail(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(t.len(), MAX_IPS);
        // Once their windows are over, new addresses are tracked again.
        t.fail(IpAddr::from([255; 4]), t0 + Duration::from_secs(2));
        assert_eq!(t.len(), 1);
    }
}
