//! The session table: every live session, indexed by id, by RTCP source
//! address (for liveness, RFC 3550 §6.3.5 spirit) and by pacer group.
//!
//! A std `Mutex`, not a tokio one: it is held only for short, synchronous
//! lookups and never across an `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::live::LiveInfo;
use crate::media::Clip;
use crate::proto::error::Error;
use crate::proto::pacer::GroupId;
use crate::proto::sdp::PresentationDescription;
use crate::proto::session::{Dest, Session};
use crate::proto::track_map::TrackMap;

/// A session and what the server attached to it.
#[derive(Debug)]
pub struct Entry {
    pub session: Session,
    pub group: GroupId,
    pub source: Presentation,
    /// The connection that created it.
    pub conn: u64,
    /// The SSRC of each track set up, kept across repeated SETUPs.
    pub ssrcs: TrackMap<u32>,
}

/// What a session plays.
#[derive(Debug, Clone)]
pub enum Presentation {
    Clip(Arc<Clip>),
    Live(Arc<LiveInfo>),
}

impl Presentation {
    pub fn description(&self) -> PresentationDescription {
        match self {
            Self::Clip(c) => c.description(),
            Self::Live(l) => l.description.clone(),
        }
    }

    pub fn track_count(&self) -> usize {
        match self {
            Self::Clip(c) => c.tracks.len(),
            Self::Live(l) => l.description.tracks.len(),
        }
    }

    /// The duration; `None` for live.
    pub fn duration(&self) -> Option<f64> {
        match self {
            Self::Clip(c) => Some(c.duration),
            Self::Live(_) => None,
        }
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    by_rtcp: HashMap<SocketAddr, String>,
    by_group: HashMap<GroupId, String>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Caps on sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
}

pub struct SessionTable {
    inner: Mutex<Inner>,
    limits: SessionLimits,
}

impl SessionTable {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below is completed before the guard drops, so a
        // poisoned lock still holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a session if it fits under the limits (checked under the same
    /// lock, so concurrent SETUPs cannot overshoot them).
    pub fn insert(&self, entry: Entry) -> Result<(), Error> {
        let mut inner = self.lock();
        let ip = entry.session.client_ip;
        if inner.by_id.len() >= self.limits.max_sessions {
            return Err(Error::Unavailable("session limit reached"));
        }
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_sessions_per_ip {
            return Err(Error::Unavailable("per-client session limit reached"));
        }
        let id = entry.session.id.clone();
        *inner.per_ip.entry(ip).or_default() += 1;
        inner.by_group.insert(entry.group, id.clone());
        for a in entry.session.tracks().filter_map(|(_, t)| t.rtcp.udp()) {
            inner.by_rtcp.insert(a, id.clone());
        }
        inner.by_id.insert(id, entry);
        Ok(())
    }

    /// Runs `f` on the session `id` if `peer` owns it, refreshing it first.
    /// A session streaming interleaved on one connection answers only there
    /// (ROBUSTNESS B4#31): elsewhere it does not exist.
    pub fn with<R>(
        &self,
        id: &str,
        peer: IpAddr,
        conn: u64,
        now: Instant,
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Result<R, Error> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let entry = inner.by_id.get_mut(id).ok_or(Error::SessionNotFound)?;
        entry.session.authorize(peer)?;
        if entry.session.tracks().any(|(_, t)| t.rtp.udp().is_none())
            && !interleaved_on(entry, conn)
        {
            return Err(Error::SessionNotFound);
        }
        entry.session.touch(now);
        let r = f(entry);
        // Keep the RTCP index in step with the session's transports.
        for a in entry.session.tracks().filter_map(|(_, t)| t.rtcp.udp()) {
            inner.by_rtcp.insert(a, id.to_owned());
        }
        Ok(r)
    }

    /// Removes a session and its indexes.
    pub fn remove(&self, id: &str) -> Option<Entry> {
        let mut inner = self.lock();
        let entry = inner.by_id.remove(id)?;
        inner.by_rtcp.retain(|_, v| v != id);
        inner.by_group.remove(&entry.group);
        if let Some(n) = inner.per_ip.get_mut(&entry.session.client_ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&entry.session.client_ip);
            }
        }
        Some(entry)
    }

    /// Refreshes session `id` (its publisher's packets keep it alive).
    pub fn touch(&self, id: &str, now: Instant) {
        if let Some(e) = self.lock().by_id.get_mut(id) {
            e.session.touch(now);
        }
    }

    /// RTCP arrived from `from`: refresh the session whose client sends from
    /// there. Returns its id.
    pub fn touch_by_rtcp(&self, from: SocketAddr, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        let id = inner.by_rtcp.get(&from)?.clone();
        inner.by_id.get_mut(&id)?.session.touch(now);
        Some(id)
    }

    /// RTCP arrived interleaved on connection `conn`: refresh the sessions
    /// whose tracks are interleaved there.
    pub fn touch_by_conn(&self, conn: u64, now: Instant) {
        let mut inner = self.lock();
        for e in inner.by_id.values_mut() {
            if interleaved_on(e, conn) {
                e.session.touch(now);
            }
        }
    }

    /// Whether a session streams interleaved on connection `conn`.
    pub fn interleaved_on(&self, conn: u64) -> bool {
        self.lock().by_id.values().any(|e| interleaved_on(e, conn))
    }

    /// Connection `conn` closed: removes the sessions that streamed over it
    /// (their packets have nowhere to go).
    pub fn remove_interleaved_on(&self, conn: u64) -> Vec<Entry> {
        let ids: Vec<String> = {
            let inner = self.lock();
            inner
                .by_id
                .iter()
                .filter(|(_, e)| interleaved_on(e, conn))
                .map(|(id, _)| id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The streams of `group` ran to their end.
    pub fn ended(&self, group: GroupId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(e) = inner
            .by_group
            .get(&group)
            .and_then(|id| inner.by_id.get_mut(id))
        {
            e.session.ended();
        }
    }

    /// Whether connection `conn` created any live session.
    pub fn owned_by_conn(&self, conn: u64) -> bool {
        self.lock().by_id.values().any(|e| e.conn == conn)
    }

    /// Removes and returns every session that timed out.
    pub fn take_expired(&self, now: Instant) -> Vec<Entry> {
        let ids: Vec<String> = {
            let inner = self.lock();
            inner
                .by_id
                .values()
                .filter(|e| e.session.expired(now))
                .map(|e| e.session.id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Removes every session (shutdown).
    pub fn drain(&self) -> Vec<Entry> {
        let ids: Vec<String> = self.lock().by_id.keys().cloned().collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }
}

fn interleaved_on(e: &Entry, conn: u64) -> bool {
    e.session
        .tracks()
        .any(|(_, t)| matches!(t.rtp, Dest::Interleaved { conn: c, .. } if c == conn))
}
