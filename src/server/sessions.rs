//! The session table: every live session, indexed by id, by RTCP source
//! address (for liveness, RFC 3550 §6.3.5 spirit) and by pacer group.
//!
//! A std `Mutex`, not a tokio one: it is held only for short, synchronous
//! lookups and never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tracing::info;

use super::live::LiveInfo;
use crate::media::Clip;
use crate::metrics::SessionCounters;
use crate::proto::error::Error;
use crate::proto::limit::Limit;
use crate::proto::pacer::GroupId;
use crate::proto::rtcp::ReportBlock;
use crate::proto::sdp::PresentationDescription;
use crate::proto::session::{Dest, Session, State};
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
    /// The RTSP peer that created it.
    pub client: SocketAddr,
    /// When it was created, on the wall clock (for the API) and the
    /// monotonic one (for its duration).
    pub started: (SystemTime, Instant),
    /// What the pacing thread sent it.
    pub counters: Arc<SessionCounters>,
    /// The client's last receiver report.
    pub last_rr: Option<LastReport>,
    /// The user who created it, when its path rule asked for one.
    pub principal: Option<String>,
}

/// A receiver report block (RFC 3550 §6.4.1) as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastReport {
    /// Fraction lost since the previous report, 0 to 1.
    pub fraction_lost: f64,
    pub cumulative_lost: i32,
    /// Interarrival jitter in seconds (the report's timestamp units over the
    /// track's clock rate).
    pub jitter_s: f64,
}

impl Entry {
    /// `udp` or `tcp` (interleaved).
    pub fn transport(&self) -> &'static str {
        if self.session.tracks().any(|(_, t)| t.rtp.udp().is_none()) {
            "tcp"
        } else {
            "udp"
        }
    }

    /// The one INFO line every ended session leaves, with `why` it ended.
    pub fn log_end(&self, why: &str) {
        let rr = self.last_rr;
        info!(
            session = %self.session.id,
            path = %self.session.presentation,
            client = %self.client,
            transport = self.transport(),
            duration_s = format_args!("{:.1}", self.started.1.elapsed().as_secs_f64()),
            packets = self.counters.packets.load(Ordering::Relaxed),
            bytes = self.counters.bytes.load(Ordering::Relaxed),
            rr_fraction_lost = %rr.map_or("none".into(), |r| format!("{:.4}", r.fraction_lost)),
            rr_jitter_ms = %rr.map_or("none".into(), |r| format!("{:.3}", r.jitter_s * 1000.0)),
            reason = why,
            "session ended"
        );
    }
}

/// How many sessions are in each state, and readers per path.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    pub ready: usize,
    pub playing: usize,
    pub recording: usize,
    /// Sessions that play (or are set up to play) each path.
    pub readers: BTreeMap<String, usize>,
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

    /// Track `track`'s RTP clock rate, from its `a=rtpmap`
    /// (`encoding/clock rate[/channels]`, RFC 4566 §6).
    pub fn clock_rate(&self, track: usize) -> Option<u32> {
        let rtpmap = match self {
            Self::Clip(c) => &c.tracks.get(track)?.description.rtpmap,
            Self::Live(l) => &l.description.tracks.get(track)?.rtpmap,
        };
        rtpmap.split('/').nth(1)?.parse().ok().filter(|&r| r > 0)
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Entry>,
    by_rtcp: HashMap<SocketAddr, String>,
    by_group: HashMap<GroupId, String>,
    per_ip: HashMap<IpAddr, usize>,
    /// Sessions streaming interleaved, by connection (UDP sessions are not
    /// here, so thousands of UDP listeners pay nothing for it).
    interleaved: HashMap<u64, Vec<String>>,
    /// Every UDP address a session sends to (RTP and RTCP), so that no two
    /// sessions share one.
    udp_dests: HashMap<SocketAddr, GroupId>,
}

/// The transport indexes of one session: its clients' RTCP source
/// addresses, its UDP destinations, and the connections it streams
/// interleaved on.
struct Indexes<'a> {
    by_rtcp: &'a mut HashMap<SocketAddr, String>,
    udp_dests: &'a mut HashMap<SocketAddr, GroupId>,
    interleaved: &'a mut HashMap<u64, Vec<String>>,
}

impl Indexes<'_> {
    /// Refuses destinations another session (another pacer group) sends
    /// to.
    fn check(&self, group: GroupId, dests: &[Dest]) -> Result<(), Error> {
        let taken = |d: &Dest| {
            d.udp()
                .and_then(|a| self.udp_dests.get(&a))
                .is_some_and(|&g| g != group)
        };
        if dests.iter().any(taken) {
            return Err(Error::PortsInUse);
        }
        Ok(())
    }

    fn add(&mut self, id: &str, e: &Entry) {
        for (_, t) in e.session.tracks() {
            for a in [t.rtp.udp(), t.rtcp.udp()].into_iter().flatten() {
                self.udp_dests.insert(a, e.group);
            }
            if let Some(a) = t.rtcp.udp() {
                self.by_rtcp.insert(a, id.to_owned());
            }
            if let Dest::Interleaved { conn, .. } = t.rtp {
                let ids = self.interleaved.entry(conn).or_default();
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_owned());
                }
            }
        }
    }

    fn remove(&mut self, id: &str, e: &Entry) {
        for (_, t) in e.session.tracks() {
            for a in [t.rtp.udp(), t.rtcp.udp()].into_iter().flatten() {
                if self.udp_dests.get(&a) == Some(&e.group) {
                    self.udp_dests.remove(&a);
                }
            }
            if let Some(a) = t.rtcp.udp() {
                if self.by_rtcp.get(&a).is_some_and(|v| v == id) {
                    self.by_rtcp.remove(&a);
                }
            }
            if let Dest::Interleaved { conn, .. } = t.rtp {
                if let Some(ids) = self.interleaved.get_mut(&conn) {
                    ids.retain(|i| i != id);
                    if ids.is_empty() {
                        self.interleaved.remove(&conn);
                    }
                }
            }
        }
    }
}

impl Inner {
    fn indexes(&mut self) -> (Indexes<'_>, &mut HashMap<String, Entry>) {
        (
            Indexes {
                by_rtcp: &mut self.by_rtcp,
                udp_dests: &mut self.udp_dests,
                interleaved: &mut self.interleaved,
            },
            &mut self.by_id,
        )
    }

    /// The ids of the sessions streaming interleaved on `conn`.
    fn interleaved_ids(&self, conn: u64) -> Vec<String> {
        self.interleaved.get(&conn).cloned().unwrap_or_default()
    }
}

/// Caps on sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
}

pub struct SessionTable {
    inner: Mutex<Inner>,
    /// Replaced by a reload; sessions over a lowered cap stay.
    max_sessions: AtomicUsize,
    max_sessions_per_ip: AtomicUsize,
}

impl SessionTable {
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_sessions: AtomicUsize::new(limits.max_sessions),
            max_sessions_per_ip: AtomicUsize::new(limits.max_sessions_per_ip),
        }
    }

    /// New caps, for sessions set up from now on.
    pub fn set_limits(&self, limits: SessionLimits) {
        self.max_sessions
            .store(limits.max_sessions, Ordering::Relaxed);
        self.max_sessions_per_ip
            .store(limits.max_sessions_per_ip, Ordering::Relaxed);
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

    /// Adds a session if it fits under the limits and sends to no address
    /// another session sends to (both checked under the same lock, so
    /// concurrent SETUPs cannot overshoot or collide).
    pub fn insert(&self, entry: Entry) -> Result<(), Error> {
        let mut inner = self.lock();
        let dests: Vec<Dest> = entry
            .session
            .tracks()
            .flat_map(|(_, t)| [t.rtp, t.rtcp])
            .collect();
        inner.indexes().0.check(entry.group, &dests)?;
        let ip = entry.session.client_ip;
        if inner.by_id.len() >= self.max_sessions.load(Ordering::Relaxed) {
            return Err(Error::LimitReached(Limit::MaxSessions));
        }
        if inner.per_ip.get(&ip).copied().unwrap_or(0)
            >= self.max_sessions_per_ip.load(Ordering::Relaxed)
        {
            return Err(Error::LimitReached(Limit::MaxSessionsPerIp));
        }
        let id = entry.session.id.clone();
        *inner.per_ip.entry(ip).or_default() += 1;
        inner.by_group.insert(entry.group, id.clone());
        inner.indexes().0.add(&id, &entry);
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
        self.with_dests(id, peer, conn, now, &[], f)
    }

    /// [`SessionTable::with`] for a repeated SETUP that will send to
    /// `dests`: refused with [`Error::PortsInUse`] before `f` runs when
    /// another session sends to one of them.
    pub fn with_dests<R>(
        &self,
        id: &str,
        peer: IpAddr,
        conn: u64,
        now: Instant,
        dests: &[Dest],
        f: impl FnOnce(&mut Entry) -> R,
    ) -> Result<R, Error> {
        let mut inner = self.lock();
        let (mut indexes, by_id) = inner.indexes();
        let entry = by_id.get_mut(id).ok_or(Error::SessionNotFound)?;
        entry.session.authorize(peer)?;
        if entry.session.tracks().any(|(_, t)| t.rtp.udp().is_none())
            && !interleaved_on(entry, conn)
        {
            return Err(Error::SessionNotFound);
        }
        indexes.check(entry.group, dests)?;
        entry.session.touch(now);
        // Keep the indexes in step with the session's transports (a repeated
        // SETUP may move a track; the old address must not stay behind).
        indexes.remove(id, entry);
        let r = f(entry);
        indexes.add(id, entry);
        Ok(r)
    }

    /// Who owns session `id` and what it is, for access control; `None`
    /// when there is no such session (the method answers 454).
    pub fn owner(&self, id: &str) -> Option<crate::server::auth::SessionOwner> {
        let inner = self.lock();
        inner
            .by_id
            .get(id)
            .map(|e| crate::server::auth::SessionOwner {
                path: e.session.presentation.clone(),
                principal: e.principal.clone(),
                recording: e.session.mode() == crate::proto::session::Mode::Record,
            })
    }

    /// Removes a session and its indexes.
    pub fn remove(&self, id: &str) -> Option<Entry> {
        let mut inner = self.lock();
        let entry = inner.by_id.remove(id)?;
        inner.indexes().0.remove(id, &entry);
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

    /// A receiver report block arrived from `from`: it becomes the last
    /// report of the session whose client sends from there. Returns the
    /// jitter in seconds, on the clock of the track whose SSRC it reports
    /// on (the session's first track when the SSRC is none of them).
    pub fn receiver_report(&self, from: SocketAddr, r: &ReportBlock) -> Option<f64> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let e = inner.by_id.get_mut(inner.by_rtcp.get(&from)?)?;
        let track = e
            .ssrcs
            .iter()
            .find(|(_, &s)| s == r.ssrc)
            .map(|(t, _)| t)
            .or_else(|| e.session.tracks().next().map(|(t, _)| t))?;
        let jitter_s = f64::from(r.jitter) / f64::from(e.source.clock_rate(track)?);
        e.last_rr = Some(LastReport {
            fraction_lost: f64::from(r.fraction_lost) / 256.0,
            cumulative_lost: r.cumulative_lost,
            jitter_s,
        });
        Some(jitter_s)
    }

    /// Sessions by state, and readers by path.
    pub fn census(&self) -> Census {
        let inner = self.lock();
        let mut c = Census::default();
        for e in inner.by_id.values() {
            match e.session.state() {
                State::Recording => c.recording += 1,
                State::Playing => c.playing += 1,
                State::Ready => c.ready += 1,
                State::Init => {}
            }
            if !matches!(e.session.state(), State::Recording) {
                *c.readers.entry(e.session.presentation.clone()).or_default() += 1;
            }
        }
        c
    }

    /// The total, and `f` of at most `limit` sessions from `offset` on,
    /// oldest first.
    pub fn page<R>(&self, offset: usize, limit: usize, f: impl Fn(&Entry) -> R) -> (usize, Vec<R>) {
        let inner = self.lock();
        let mut keys: Vec<(Instant, &str)> = inner
            .by_id
            .values()
            .map(|e| (e.started.1, e.session.id.as_str()))
            .collect();
        keys.sort_unstable();
        let page = keys
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|(_, id)| inner.by_id.get(*id).map(&f))
            .collect();
        (keys.len(), page)
    }

    /// RTCP arrived interleaved on connection `conn`: refresh the sessions
    /// whose tracks are interleaved there.
    pub fn touch_by_conn(&self, conn: u64, now: Instant) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        for id in inner.interleaved.get(&conn).into_iter().flatten() {
            if let Some(e) = inner.by_id.get_mut(id) {
                e.session.touch(now);
            }
        }
    }

    /// Whether a session streams interleaved on connection `conn`.
    pub fn interleaved_on(&self, conn: u64) -> bool {
        self.lock().interleaved.contains_key(&conn)
    }

    /// Connection `conn` closed: removes the sessions that streamed over it
    /// (their packets have nowhere to go).
    pub fn remove_interleaved_on(&self, conn: u64) -> Vec<Entry> {
        let ids = self.lock().interleaved_ids(conn);
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// The streams of `group` ran to the end of PLAY number `run`; an end
    /// of an earlier run is stale and ignored ([`Session::ended`]).
    pub fn ended(&self, group: GroupId, run: u32) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(e) = inner
            .by_group
            .get(&group)
            .and_then(|id| inner.by_id.get_mut(id))
        {
            e.session.ended(run);
        }
    }

    /// Whether connection `conn` created any live session.
    /// Id and path of every reading (not recording) session created on
    /// connection `conn`.
    pub fn readers_on(&self, conn: u64) -> Vec<(String, String)> {
        self.lock()
            .by_id
            .values()
            .filter(|e| e.conn == conn && !matches!(e.session.state(), State::Recording))
            .map(|e| (e.session.id.clone(), e.session.presentation.clone()))
            .collect()
    }

    pub fn owned_by_conn(&self, conn: u64) -> bool {
        self.lock().by_id.values().any(|e| e.conn == conn)
    }

    /// Removes and returns every session that timed out.
    pub fn take_expired(&self, now: Instant) -> Vec<Entry> {
        self.take_where(|e| e.session.expired(now))
    }

    /// Removes and returns every session of the live channel whose
    /// pacing-thread key is `key` (a reload took the channel away).
    pub fn take_live(&self, key: &str) -> Vec<Entry> {
        self.take_where(|e| matches!(&e.source, Presentation::Live(l) if l.key == key))
    }

    fn take_where(&self, which: impl Fn(&Entry) -> bool) -> Vec<Entry> {
        let ids: Vec<String> = {
            let inner = self.lock();
            inner
                .by_id
                .values()
                .filter(|e| which(e))
                .map(|e| e.session.id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }
}

fn interleaved_on(e: &Entry, conn: u64) -> bool {
    e.session
        .tracks()
        .any(|(_, t)| matches!(t.rtp, Dest::Interleaved { conn: c, .. } if c == conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Clip;
    use crate::proto::session::TrackTransport;
    use std::time::Duration;

    fn entry(id: &str, group: GroupId, conn: u64, rtp: Dest, rtcp: Dest) -> Entry {
        let now = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut session = Session::new(id.into(), ip, "c.wav".into(), Duration::from_secs(60), now);
        session
            .setup("c.wav", 0, TrackTransport { rtp, rtcp })
            .unwrap();
        Entry {
            session,
            group,
            source: Presentation::Clip(Arc::new(Clip {
                path: "c.wav".into(),
                duration: 1.0,
                tracks: Vec::new(),
            })),
            conn,
            ssrcs: TrackMap::default(),
            client: SocketAddr::from((ip, 1)),
            started: (SystemTime::now(), now),
            counters: Arc::default(),
            last_rr: None,
            principal: None,
        }
    }

    #[test]
    fn transport_indexes_follow_setups_and_removals() {
        let table = SessionTable::new(SessionLimits {
            max_sessions: 10,
            max_sessions_per_ip: 10,
        });
        let tcp = |channel| Dest::Interleaved { conn: 7, channel };
        let udp = |port: u16| Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port)));
        table.insert(entry("a", 1, 7, tcp(0), tcp(1))).unwrap();
        table
            .insert(entry("b", 2, 7, udp(5000), udp(5001)))
            .unwrap();
        assert!(table.interleaved_on(7));
        assert!(!table.interleaved_on(8));
        let now = Instant::now();
        assert_eq!(
            table
                .touch_by_rtcp(udp(5001).udp().unwrap(), now)
                .as_deref(),
            Some("b")
        );
        // A repeated SETUP moves b's track: the old RTCP address is gone.
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        table
            .with("b", ip, 7, now, |e| {
                e.session.setup(
                    "c.wav",
                    0,
                    TrackTransport {
                        rtp: udp(6000),
                        rtcp: udp(6001),
                    },
                )
            })
            .unwrap()
            .unwrap();
        assert_eq!(table.touch_by_rtcp(udp(5001).udp().unwrap(), now), None);
        assert!(table.touch_by_rtcp(udp(6001).udp().unwrap(), now).is_some());
        // Closing connection 7 removes the interleaved session only.
        let gone: Vec<String> = table
            .remove_interleaved_on(7)
            .into_iter()
            .map(|e| e.session.id)
            .collect();
        assert_eq!(gone, ["a"]);
        assert!(!table.interleaved_on(7));
        assert_eq!(table.len(), 1);
        assert!(table.remove("b").is_some());
        assert_eq!(table.touch_by_rtcp(udp(6001).udp().unwrap(), now), None);
    }

    #[test]
    fn two_sessions_never_share_a_udp_destination() {
        let table = SessionTable::new(SessionLimits {
            max_sessions: 10,
            max_sessions_per_ip: 10,
        });
        let udp = |port: u16| Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port)));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        table
            .insert(entry("a", 1, 7, udp(5000), udp(5001)))
            .unwrap();
        let taken = table.insert(entry("b", 2, 8, udp(5000), udp(5001)));
        assert_eq!(taken, Err(Error::PortsInUse));
        let crossed = table.insert(entry("b", 2, 8, udp(4000), udp(5000)));
        assert_eq!(crossed, Err(Error::PortsInUse), "RTCP onto a's RTP");
        table
            .insert(entry("b", 2, 8, udp(6000), udp(6001)))
            .unwrap();
        // b may not move onto a's ports; a may SETUP its own again.
        let moved = table.with_dests("b", ip, 8, now, &[udp(5000), udp(5001)], |_| ());
        assert_eq!(moved, Err(Error::PortsInUse));
        let same = table.with_dests("a", ip, 7, now, &[udp(5000), udp(5001)], |_| ());
        assert_eq!(same, Ok(()));
        // Once a is gone its ports are free.
        assert!(table.remove("a").is_some());
        table
            .with_dests("b", ip, 8, now, &[udp(5000), udp(5001)], |_| ())
            .unwrap();
    }
}
