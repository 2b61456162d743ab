//! Server nonces (RFC 7616 §3.3 and §5.4–§5.5): minted without state as
//! `hex(t) || hex(n) || hex(HMAC-SHA256(secret, t || n || client IP)[..16])`,
//! where `t` is milliseconds since the [`Nonces`] was made, `n` counts the
//! nonces minted (so two challenges to one address in one millisecond,
//! clients behind one NAT say, never share a nonce and its counts), and
//! `secret` is 32 bytes from the OS CSPRNG. Checking one needs no table: the MAC proves the
//! server made it for this IP, `t` says how old it is. After the lifetime
//! (60 s by default) a nonce is stale: the client gets a new challenge
//! with `stale=true`.
//!
//! Replays: for `qop=auth` the highest nonce count (`nc`) accepted per
//! nonce is remembered, and a count not above it is refused. The table is
//! bounded ([`MAX_TRACKED`]); expired entries go first, and when it is
//! still full the oldest goes and every nonce minted no later than it is
//! treated as stale from then on, so eviction can never re-open a replay.
//! Entries are only added for requests whose response verified, so a
//! client without credentials cannot fill it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::digest::to_hex;

/// Nonces whose counts are tracked at once.
pub const MAX_TRACKED: usize = 65_536;

/// RFC 7616 §5.4 leaves the lifetime to the server; 60 s is the issue's.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

const MAC_LEN: usize = 16;
/// `t` and `n` as 16 hex digits each, then the MAC.
const NONCE_LEN: usize = 32 + 2 * MAC_LEN;

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Made by this server for this IP, in its lifetime.
    Fresh,
    /// Made by this server for this IP, but too old (or evicted): a new
    /// challenge with `stale=true`.
    Stale,
    /// Not ours, not for this IP, or malformed.
    Invalid,
}

/// Mints and checks nonces; tracks nonce counts.
pub struct Nonces {
    secret: [u8; 32],
    origin: Instant,
    lifetime: Duration,
    /// Nonce → (highest `nc` accepted, minted at ms).
    counts: HashMap<String, (u32, u64)>,
    /// Nonces minted at or before this (ms) are stale: their counts may
    /// have been evicted.
    floor: Option<u64>,
    /// Nonces minted so far: each nonce's `n`.
    minted: AtomicU64,
}

impl std::fmt::Debug for Nonces {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime", &self.lifetime)
            .field("tracked", &self.counts.len())
            .finish_non_exhaustive()
    }
}

impl Nonces {
    /// `secret` must come from a CSPRNG; `origin` is any instant before
    /// the first `now` passed in.
    pub fn new(secret: [u8; 32], origin: Instant, lifetime: Duration) -> Self {
        Self {
            secret,
            origin,
            lifetime,
            counts: HashMap::new(),
            floor: None,
            minted: AtomicU64::new(0),
        }
    }

    pub fn set_lifetime(&mut self, lifetime: Duration) {
        self.lifetime = lifetime;
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn mac(&self, t: u64, n: u64, ip: IpAddr) -> [u8; MAC_LEN] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(&t.to_be_bytes());
        m.update(&n.to_be_bytes());
        match ip {
            IpAddr::V4(a) => m.update(&a.octets()),
            IpAddr::V6(a) => m.update(&a.octets()),
        }
        let full = m.finalize().into_bytes();
        let mut out = [0; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// A new nonce for a client at `ip`.
    pub fn mint(&self, ip: IpAddr, now: Instant) -> String {
        let t = self.ms(now);
        let n = self.minted.fetch_add(1, Ordering::Relaxed);
        format!("{t:016x}{n:016x}{}", to_hex(&self.mac(t, n, ip)))
    }

    /// The opaque value: fixed for this server's life, derived from the
    /// secret so it reveals nothing.
    pub fn opaque(&self) -> String {
        to_hex(&self.mac(u64::MAX, u64::MAX, IpAddr::from([0, 0, 0, 0]))[..8])
    }

    /// Whether `nonce` is ours, for `ip`, and fresh at `now`.
    pub fn check(&self, nonce: &str, ip: IpAddr, now: Instant) -> NonceCheck {
        let hex = |r: std::ops::Range<usize>| {
            nonce
                .get(r)
                .filter(|_| nonce.len() == NONCE_LEN)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        };
        let (Some(t), Some(n)) = (hex(0..16), hex(16..32)) else {
            return NonceCheck::Invalid;
        };
        let want = to_hex(&self.mac(t, n, ip));
        if !bool::from(want.as_bytes().ct_eq(&nonce.as_bytes()[32..])) {
            return NonceCheck::Invalid;
        }
        let age = self.ms(now).checked_sub(t);
        match age {
            None => NonceCheck::Invalid,
            Some(a) if Duration::from_millis(a) > self.lifetime => NonceCheck::Stale,
            Some(_) if self.floor.is_some_and(|f| t <= f) && !self.counts.contains_key(nonce) => {
                NonceCheck::Stale
            }
            Some(_) => NonceCheck::Fresh,
        }
    }

    /// Records nonce count `nc` for a fresh, verified `nonce`. False when
    /// `nc` is not above the highest one accepted before (a replay).
    pub fn use_count(&mut self, nonce: &str, nc: u32, now: Instant) -> bool {
        if let Some((last, _)) = self.counts.get_mut(nonce) {
            if nc <= *last {
                return false;
            }
            *last = nc;
            return true;
        }
        if self.counts.len() >= MAX_TRACKED {
            self.evict(now);
        }
        let t = nonce
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        self.counts.insert(nonce.to_owned(), (nc, t));
        true
    }

    fn evict(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        let life = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
        self.counts
            .retain(|_, (_, t)| now_ms.saturating_sub(*t) <= life);
        if self.counts.len() >= MAX_TRACKED {
            let oldest = self
                .counts
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, (_, t))| (k.clone(), *t));
            if let Some((k, t)) = oldest {
                self.counts.remove(&k);
                self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            }
        }
    }

    /// Nonces whose counts are tracked.
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces(t0: Instant) -> Nonces {
        Nonces::new([7; 32], t0, DEFAULT_LIFETIME)
    }

    #[test]
    fn fresh_then_stale_and_bound_to_ip() {
        let t0 = Instant::now();
        let n = nonces(t0);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let nonce = n.mint(ip, t0 + Duration::from_secs(5));
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(
            n.check(&nonce, ip, t0 + Duration::from_secs(65)),
            NonceCheck::Fresh
        );
        assert_eq!(
            n.check(&nonce, ip, t0 + Duration::from_millis(65_001)),
            NonceCheck::Stale
        );
        assert_eq!(
            n.check(
                &nonce,
                IpAddr::from([10, 0, 0, 2]),
                t0 + Duration::from_secs(6)
            ),
            NonceCheck::Invalid
        );
        // Another secret's nonce, a tampered time, junk.
        let other = Nonces::new([8; 32], t0, DEFAULT_LIFETIME).mint(ip, t0);
        assert_eq!(n.check(&other, ip, t0), NonceCheck::Invalid);
        let mut tampered = nonce.clone();
        tampered.replace_range(15..16, "0");
        assert_ne!(tampered, nonce);
        assert_eq!(
            n.check(&tampered, ip, t0 + Duration::from_secs(6)),
            NonceCheck::Invalid
        );
        for junk in ["", "zz", &"g".repeat(NONCE_LEN), "é".repeat(24).as_str()] {
            assert_eq!(n.check(junk, ip, t0), NonceCheck::Invalid, "{junk}");
        }
        // A nonce from the future (a forged time) is not accepted.
        assert_eq!(n.check(&nonce, ip, t0), NonceCheck::Invalid);
    }

    #[test]
    fn counts_must_rise() {
        let t0 = Instant::now();
        let mut n = nonces(t0);
        let ip = IpAddr::from([10, 0, 0, 1]);
        let a = n.mint(ip, t0);
        assert!(n.use_count(&a, 1, t0));
        assert!(!n.use_count(&a, 1, t0), "replay");
        assert!(n.use_count(&a, 3, t0));
        assert!(!n.use_count(&a, 2, t0), "older count");
        assert_eq!(n.tracked(), 1);
    }

    #[test]
    fn bounded_table_evicts_expired_then_oldest_and_stales_it() {
        let t0 = Instant::now();
        let mut n = Nonces::new([1; 32], t0, Duration::from_secs(1));
        let ip = |i: usize| IpAddr::from((i as u32).to_be_bytes());
        for i in 0..MAX_TRACKED {
            let at = t0 + Duration::from_millis(i as u64 % 1000);
            assert!(n.use_count(&n.mint(ip(i), at), 1, at));
        }
        assert_eq!(n.tracked(), MAX_TRACKED);
        // Every entry is expired at 2 s: one more clears them.
        let late = t0 + Duration::from_secs(2);
        let oldest = n.mint(ip(0), late);
        assert!(n.use_count(&oldest, 1, late));
        assert_eq!(n.tracked(), 1);
        // Fill it with unexpired ones; one more evicts the oldest.
        let second = n.mint(ip(1), late + Duration::from_millis(1));
        assert!(n.use_count(&second, 1, late));
        for i in 2..MAX_TRACKED {
            let at = late + Duration::from_millis(2);
            assert!(n.use_count(&n.mint(ip(i), at), 1, at));
        }
        assert_eq!(n.tracked(), MAX_TRACKED);
        let at = late + Duration::from_millis(100);
        let newest = n.mint(ip(0), at);
        assert!(n.use_count(&newest, 1, at));
        assert_eq!(n.tracked(), MAX_TRACKED);
        // The evicted one is stale from now on, never replayable; the
        // others are untouched.
        assert_eq!(n.check(&oldest, ip(0), at), NonceCheck::Stale);
        assert_eq!(n.check(&second, ip(1), at), NonceCheck::Fresh);
        assert!(!n.use_count(&second, 1, at), "still tracked: a replay");
        assert_eq!(n.check(&newest, ip(0), at), NonceCheck::Fresh);
    }

    /// Two challenges to one address in the same millisecond (clients
    /// behind one NAT address) get different nonces, each verifying and
    /// counting on its own.
    #[test]
    fn nonces_minted_together_differ() {
        let t0 = Instant::now();
        let mut n = nonces(t0);
        let ip = IpAddr::from([10, 0, 0, 9]);
        let at = t0 + Duration::from_millis(7);
        let (a, b) = (n.mint(ip, at), n.mint(ip, at));
        assert_ne!(a, b);
        for nonce in [&a, &b] {
            assert_eq!(n.check(nonce, ip, at), NonceCheck::Fresh);
            assert!(n.use_count(nonce, 1, at), "the first count of each");
        }
        assert!(!n.use_count(&a, 1, at), "a replay is still refused");
    }
}
