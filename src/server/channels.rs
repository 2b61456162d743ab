//! The live channels the server runs, by name: those `--live` configured
//! and those publishers started (RFC 2326 §10.3 ANNOUNCE, §10.11 RECORD),
//! who publishes to each, and where a publisher's packets come from.
//!
//! Handlers consult it under one short lock. The channels themselves live
//! on the pacing thread; the caller tells it what changed with the
//! [`super::pacing::Command`]s these methods' results call for.
//!
//! A `publish` channel without a declared format starts with its first
//! publisher's format and stops once nobody publishes to it and no session
//! refers to it (it then takes the next publisher's format); until a
//! publisher comes it does not exist for listeners (404). One with a
//! declared format, and every other configured channel, runs from server
//! start to the end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::live::{
    self, ChannelParams, ChannelShape, LiveChannel, LiveInfo, LiveSpec, Source, SpecError,
};
use crate::proto::depacketize::StreamFormat;
use crate::proto::error::Error;
use crate::proto::limit::Limit;
use crate::proto::live::{Channel, LiveError};
use crate::proto::packetize::Codec;
use crate::proto::relay::offer::RelayTrack;

/// How often at most one publisher's packets refresh its session.
const TOUCH_EVERY: Duration = Duration::from_secs(1);

/// The registry.
pub struct Channels {
    inner: Mutex<Inner>,
    /// `--allow-publish`: a publisher may start any unconfigured name.
    allow_publish: AtomicBool,
    /// A configured channel takes publishers.
    any_publish_channel: AtomicBool,
}

/// What new channels are built with and what publishers may start; a
/// reload replaces them (running channels keep what they were built with).
#[derive(Debug, Clone)]
pub struct Rules {
    pub params: ChannelParams,
    pub allow_publish: bool,
    /// Channels publishers may start beyond the configured ones.
    pub max_published: usize,
}

struct Inner {
    rules: Rules,
    slots: HashMap<String, Slot>,
    /// RTP source address of a recording UDP publisher.
    udp_routes: HashMap<SocketAddr, Route>,
    /// Publishers' RTCP source addresses.
    udp_rtcp_routes: HashMap<SocketAddr, Route>,
    /// Connection and RTP channel of a recording interleaved publisher.
    tcp_routes: HashMap<(u64, u8), Route>,
    next_epoch: u64,
}

struct Slot {
    /// Named by `--live` (kept when idle).
    configured: bool,
    /// `Some` when publishers feed it.
    publish: Option<PublishRule>,
    info: Option<Arc<LiveInfo>>,
    publisher: Option<Publisher>,
}

impl Slot {
    /// A channel a publisher started, now with no publisher and no session
    /// referring to it: the next sweep stops it, so a reader is not given
    /// it either (a DESCRIBE answered 200 would meet 404 at its SETUP).
    fn orphaned(&self) -> bool {
        self.publisher.is_none()
            && self.publish.is_some_and(|r| !r.declared)
            && self
                .info
                .as_ref()
                .is_some_and(|i| Arc::strong_count(i) == 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct PublishRule {
    /// What listeners get (`codec=`); `None`: what the publisher sends.
    codec: Option<Codec>,
    /// Rate and channels came from `--live`: the channel always runs.
    declared: bool,
    /// A relay channel keeps its last GOP (`gop_cache`).
    gop_cache: bool,
}

struct Publisher {
    conn: u64,
    /// An audio channel's stream format; `None` for a relay channel.
    format: Option<StreamFormat>,
    /// Its session, once it did SETUP.
    session: Option<String>,
}

struct Route {
    /// Shared, so routing a packet allocates nothing.
    key: Arc<str>,
    /// The channel's track the packets are for.
    track: usize,
    /// RTCP (the publisher's sender reports), not RTP.
    rtcp: bool,
    session: String,
    touched: Instant,
}

/// Where a publisher's packet goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The channel (its pacing-thread key).
    pub key: Arc<str>,
    /// Its track.
    pub track: usize,
    /// The packet is the track's RTCP, not its RTP.
    pub rtcp: bool,
    /// A session to refresh now, at most once per [`TOUCH_EVERY`].
    pub touch: Option<String>,
}

/// What a publisher announces.
#[derive(Debug, Clone)]
pub enum Offer {
    /// One PCM stream, decoded onto an audio channel's timeline.
    Audio(StreamFormat),
    /// Tracks relayed as they come ([`crate::proto::relay`]).
    Relay(Vec<RelayTrack>),
}

/// Whether `offer` fits the running channel `info`: the same kind, and
/// for audio the same rate and channels, for a relay the same formats.
fn fits(info: &LiveInfo, offer: &Offer) -> Result<(), Error> {
    match (&info.relay, offer) {
        (None, Offer::Audio(format)) => {
            if (info.rate, info.channels) != (format.rate, format.channels) {
                return Err(Error::UnsupportedMedia(format!(
                    "the channel runs at {} Hz with {} channels; this stream is {} Hz with {}",
                    info.rate, info.channels, format.rate, format.channels
                )));
            }
            Ok(())
        }
        (Some(r), Offer::Relay(tracks)) => {
            let shape = |t: &RelayTrack| (t.codec, t.payload_type, t.clock_rate, t.rtpmap.clone());
            if r.tracks.iter().map(shape).ne(tracks.iter().map(shape)) {
                return Err(Error::UnsupportedMedia(
                    "the channel relays other tracks; it takes them again once its listeners leave"
                        .into(),
                ));
            }
            Ok(())
        }
        (None, Offer::Relay(_)) => Err(Error::UnsupportedMedia(
            "the channel runs PCM audio; announce one L16, PCMU or PCMA stream".into(),
        )),
        (Some(_), Offer::Audio(_)) => Err(Error::UnsupportedMedia(
            "the channel relays video or compressed audio; announce the same tracks".into(),
        )),
    }
}

/// The result of an ANNOUNCE.
pub struct Announced {
    pub info: Arc<LiveInfo>,
    /// A channel to start on the pacing thread: the first publisher of a
    /// channel whose format was not known.
    pub started: Option<LiveChannel>,
}

/// What a publisher's leaving calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// The channel whose publisher stopped.
    pub stopped: Option<String>,
    /// The publisher's session, to remove with it.
    pub session: Option<String>,
}

/// A configured channel built by a reload, before it is visible.
pub struct Prepared {
    name: String,
    key: String,
    channel: Option<Channel>,
    slot: Slot,
}

impl Prepared {
    /// Its pacing-thread key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The channel for the pacing thread, if its format is known (once).
    pub fn take_channel(&mut self) -> Option<Channel> {
        self.channel.take()
    }
}

/// A configured channel a reload took away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// Its pacing-thread key, if it was running.
    pub key: Option<String>,
    /// The session of the publisher feeding it, to remove with it.
    pub publisher_session: Option<String>,
}

impl Channels {
    pub fn new(rules: Rules) -> Self {
        Self {
            allow_publish: AtomicBool::new(rules.allow_publish),
            any_publish_channel: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                rules,
                slots: HashMap::new(),
                udp_routes: HashMap::new(),
                udp_rtcp_routes: HashMap::new(),
                tcp_routes: HashMap::new(),
                next_epoch: 0,
            }),
        }
    }

    /// What channels are built with now.
    pub fn params(&self) -> ChannelParams {
        self.lock().rules.params.clone()
    }

    /// Replaces the rules for channels made from now on.
    pub fn set_rules(&self, rules: Rules) {
        self.allow_publish
            .store(rules.allow_publish, Ordering::Relaxed);
        self.lock().rules = rules;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Each method finishes its changes before the guard drops.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a `--live` channel at start (its pacing-thread key is its
    /// name); returns the channel to run now, if its format is known.
    pub fn configure(&self, spec: &LiveSpec, now: Instant) -> Result<Option<Channel>, SpecError> {
        let mut prepared = self.prepare(spec, false, now)?;
        let channel = prepared.channel.take();
        self.commit(prepared)?;
        Ok(channel)
    }

    /// Builds a configured channel for a reload, not yet visible: its key
    /// is new (a name removed or changed earlier may still have packets or
    /// an old source's end on their way to the pacing thread). The caller
    /// hands the channel to the pacing thread first and [`Channels::commit`]s
    /// it after, so that no listener can subscribe before it runs there.
    pub fn prepare_reload(&self, spec: &LiveSpec, now: Instant) -> Result<Prepared, SpecError> {
        self.prepare(spec, true, now)
    }

    /// Makes a prepared channel visible to requests.
    pub fn commit(&self, prepared: Prepared) -> Result<(), SpecError> {
        let mut inner = self.lock();
        if inner.slots.contains_key(&prepared.name) {
            return Err(SpecError::Duplicate(prepared.name));
        }
        if prepared.slot.publish.is_some() {
            self.any_publish_channel.store(true, Ordering::Relaxed);
        }
        inner.slots.insert(prepared.name, prepared.slot);
        Ok(())
    }

    fn prepare(
        &self,
        spec: &LiveSpec,
        fresh_key: bool,
        now: Instant,
    ) -> Result<Prepared, SpecError> {
        let (key, params) = {
            let mut inner = self.lock();
            if inner.slots.contains_key(&spec.name) {
                return Err(SpecError::Duplicate(spec.name.clone()));
            }
            let key = if fresh_key {
                inner.next_epoch += 1;
                format!("{}#{}", spec.name, inner.next_epoch)
            } else {
                spec.name.clone()
            };
            (key, inner.rules.params.clone())
        };
        // A `file:` source's WAV is read here, outside the lock.
        let shape = live::configured_shape(spec, params.max_bytes)?;
        let publish = (spec.source == Source::Publish).then_some(PublishRule {
            codec: spec.codec,
            declared: shape.is_some(),
            gop_cache: spec.gop_cache,
        });
        let (info, channel) = match shape {
            Some(shape) => {
                let (info, channel) = live::make_channel(&params, &spec.name, &key, shape, now)
                    .map_err(|error| SpecError::Channel {
                        name: spec.name.clone(),
                        error,
                    })?;
                (Some(Arc::new(info)), Some(channel))
            }
            None => (None, None),
        };
        Ok(Prepared {
            name: spec.name.clone(),
            key,
            channel,
            slot: Slot {
                configured: true,
                publish,
                info,
                publisher: None,
            },
        })
    }

    /// The channel a first publisher started (its ANNOUNCE's
    /// [`Announced::started`]) now runs on the pacing thread: listeners may
    /// find it. Made visible only after the pacing thread was handed the
    /// channel, so a listener's PLAY cannot reach the thread before it.
    pub fn running(&self, name: &str, info: Arc<LiveInfo>) {
        if let Some(slot) = self.lock().slots.get_mut(name) {
            if slot.info.is_none() {
                slot.info = Some(info);
            }
        }
    }

    /// A fresh pacing-thread key for channel `name` (a pulled channel's,
    /// each time its upstream is opened).
    pub fn new_key(&self, name: &str) -> String {
        let mut inner = self.lock();
        inner.next_epoch += 1;
        format!("{name}#{}", inner.next_epoch)
    }

    /// A pulled channel's upstream (channel `key`) was closed: listeners
    /// no longer find it (until [`Channels::running`] again). Nothing if
    /// the name now runs another channel (a reload rebuilt it).
    pub fn stop_running(&self, name: &str, key: &str) {
        if let Some(slot) = self.lock().slots.get_mut(name) {
            if slot.info.as_ref().is_some_and(|i| i.key == key) {
                slot.info = None;
            }
        }
    }

    /// A reload took configured channel `name` away: it is forgotten at
    /// once (new requests for it get 404), with its publisher's routes.
    pub fn remove(&self, name: &str) -> Option<Removed> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let slot = inner.slots.remove(name)?;
        let publisher_session = slot.publisher.and_then(|p| p.session);
        if let Some(id) = &publisher_session {
            inner.udp_routes.retain(|_, r| &r.session != id);
            inner.udp_rtcp_routes.retain(|_, r| &r.session != id);
            inner.tcp_routes.retain(|_, r| &r.session != id);
        }
        let any = inner
            .slots
            .values()
            .any(|s| s.configured && s.publish.is_some());
        self.any_publish_channel.store(any, Ordering::Relaxed);
        Some(Removed {
            key: slot.info.map(|i| i.key.clone()),
            publisher_session,
        })
    }

    /// Whether any channel takes publishers (a `publish` one, or any with
    /// `--allow-publish`).
    pub fn takes_publishers(&self) -> bool {
        self.allow_publish.load(Ordering::Relaxed)
            || self.any_publish_channel.load(Ordering::Relaxed)
    }

    /// Every channel by name, with its description once it runs (a
    /// channel fed by publishers has none until the first one comes).
    pub fn list(&self) -> Vec<(String, Option<Arc<LiveInfo>>)> {
        let mut all: Vec<_> = self
            .lock()
            .slots
            .iter()
            .map(|(name, slot)| (name.clone(), slot.info.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The running channel `name`, for listeners.
    pub fn get(&self, name: &str) -> Option<Arc<LiveInfo>> {
        let guard = self.lock();
        let slot = guard.slots.get(name)?;
        if slot.orphaned() {
            return None;
        }
        slot.info.clone()
    }

    /// ANNOUNCE of `offer` to `name` from connection `conn`: reserves the
    /// channel for this publisher (403 if it takes none or is unknown
    /// without `--allow-publish`, 455 if another publisher has it, 415 if
    /// the stream does not fit the channel, 503 past the channel limit).
    pub fn announce(
        &self,
        name: &str,
        conn: u64,
        offer: Offer,
        now: Instant,
    ) -> Result<Announced, Error> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if !inner.slots.contains_key(name) {
            if !inner.rules.allow_publish {
                return Err(Error::Forbidden(
                    "no such channel, and publishing new ones is off",
                ));
            }
            if !live::valid_name(name) {
                return Err(Error::Forbidden(
                    "channel names are letters, digits, '-', '_', '.'",
                ));
            }
            let started = inner.slots.values().filter(|s| !s.configured).count();
            if started >= inner.rules.max_published {
                return Err(Error::LimitReached(Limit::MaxPublishedChannels));
            }
            inner.slots.insert(
                name.to_owned(),
                Slot {
                    configured: false,
                    publish: Some(PublishRule {
                        codec: None,
                        declared: false,
                        gop_cache: false,
                    }),
                    info: None,
                    publisher: None,
                },
            );
        }
        let Some(slot) = inner.slots.get_mut(name) else {
            return Err(Error::NotFound);
        };
        let Some(rule) = slot.publish else {
            return Err(Error::Forbidden("this channel has another source"));
        };
        match &slot.publisher {
            Some(p) if p.conn != conn => {
                return Err(Error::InvalidState("the channel already has a publisher"))
            }
            Some(p) if p.session.is_some() => {
                return Err(Error::InvalidState("already publishing on this connection"))
            }
            _ => {}
        }
        let mut started = None;
        let info = match (&slot.info, &offer) {
            (Some(info), offer) => {
                fits(info, offer)?;
                info.clone()
            }
            (None, Offer::Relay(_)) if rule.declared || rule.codec.is_some() => {
                return Err(Error::UnsupportedMedia(
                    "this channel is declared as PCM audio (rate=, channels= or codec=)".into(),
                ))
            }
            (None, offer) => {
                let key = format!("{name}#{}", inner.next_epoch + 1);
                let params = &inner.rules.params;
                let (info, channel) = match offer {
                    Offer::Audio(format) => {
                        let shape = ChannelShape {
                            codec: rule.codec.unwrap_or(format.codec),
                            rate: format.rate,
                            channels: format.channels,
                            clip: None,
                        };
                        let (info, channel) = live::make_channel(params, name, &key, shape, now)
                            .map_err(|e| match e {
                                LiveError::NotNarrowband { .. } => {
                                    Error::UnsupportedMedia(e.to_string())
                                }
                                _ => Error::Internal(e.to_string()),
                            })?;
                        (info, LiveChannel::Audio(channel))
                    }
                    Offer::Relay(tracks) => {
                        let (info, channel) = live::make_relay_channel(
                            params,
                            name,
                            &key,
                            tracks.clone(),
                            rule.gop_cache,
                        );
                        (info, LiveChannel::Relay(channel))
                    }
                };
                inner.next_epoch += 1;
                // Listeners see it once the pacing thread runs it
                // ([`Channels::running`]).
                started = Some(channel);
                Arc::new(info)
            }
        };
        slot.publisher = Some(Publisher {
            conn,
            format: match offer {
                Offer::Audio(f) => Some(f),
                Offer::Relay(_) => None,
            },
            session: None,
        });
        Ok(Announced { info, started })
    }

    /// What connection `conn` announced to `name`, for its SETUP with
    /// `mode=record` (455 without an ANNOUNCE first).
    pub fn announced(
        &self,
        name: &str,
        conn: u64,
    ) -> Result<(Arc<LiveInfo>, Option<StreamFormat>), Error> {
        let inner = self.lock();
        let slot = inner.slots.get(name).ok_or(Error::NotFound)?;
        match (&slot.publisher, &slot.info) {
            (Some(p), Some(info)) if p.conn == conn => Ok((info.clone(), p.format)),
            _ => Err(Error::InvalidState("ANNOUNCE the stream before SETUP")),
        }
    }

    /// The publisher of `name` on `conn` set up `session`.
    pub fn bind_session(&self, name: &str, conn: u64, session: &str) {
        let mut inner = self.lock();
        if let Some(p) = inner
            .slots
            .get_mut(name)
            .and_then(|s| s.publisher.as_mut())
            .filter(|p| p.conn == conn)
        {
            p.session = Some(session.to_owned());
        }
    }

    /// RECORD: packets of each track from `udp` (the publisher's RTP source
    /// address) or on `conn`'s interleaved `channel` now feed `name`, and
    /// its RTCP (from the RTCP address, or on the channel after the RTP
    /// one, RFC 2326 §10.12) gives the track's sender reports.
    /// Returns the channel's key and, for an audio channel, the stream's
    /// format.
    pub fn record(
        &self,
        name: &str,
        session: &str,
        from: &[(usize, RecordFrom)],
        now: Instant,
    ) -> Result<(String, Option<StreamFormat>), Error> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let slot = inner.slots.get(name).ok_or(Error::NotFound)?;
        let (Some(p), Some(info)) = (&slot.publisher, &slot.info) else {
            return Err(Error::InvalidState("the channel has no publisher"));
        };
        if p.session.as_deref() != Some(session) {
            return Err(Error::InvalidState("another session publishes here"));
        }
        let key: Arc<str> = Arc::from(info.key.as_str());
        let result = (info.key.clone(), p.format);
        for &(track, from) in from {
            let route = |rtcp| Route {
                key: key.clone(),
                track,
                rtcp,
                session: session.to_owned(),
                touched: now,
            };
            match from {
                RecordFrom::Udp { rtp, rtcp } => {
                    inner.udp_routes.insert(rtp, route(false));
                    inner.udp_rtcp_routes.insert(rtcp, route(true));
                }
                RecordFrom::Interleaved { conn, channel } => {
                    inner.tcp_routes.insert((conn, channel), route(false));
                    if let Some(odd) = channel.checked_add(1) {
                        inner.tcp_routes.entry((conn, odd)).or_insert(route(true));
                    }
                }
            }
        }
        Ok(result)
    }

    /// Where an RTP datagram from `from` goes, if a publisher sends from
    /// there.
    pub fn udp_packet(&self, from: SocketAddr, now: Instant) -> Option<Delivery> {
        deliver(self.lock().udp_routes.get_mut(&from)?, now)
    }

    /// Where an RTCP datagram from `from` goes, if a publisher's RTCP comes
    /// from there.
    pub fn udp_rtcp_packet(&self, from: SocketAddr, now: Instant) -> Option<Delivery> {
        deliver(self.lock().udp_rtcp_routes.get_mut(&from)?, now)
    }

    /// Where an interleaved frame on `conn`'s `channel` goes, if it is a
    /// publisher's RTP or RTCP.
    pub fn interleaved_packet(&self, conn: u64, channel: u8, now: Instant) -> Option<Delivery> {
        deliver(self.lock().tcp_routes.get_mut(&(conn, channel))?, now)
    }

    /// Session `session` is gone: if it published, its channel's publisher
    /// stopped.
    pub fn release_session(&self, session: &str) -> Vec<Released> {
        self.release(|p| p.session.as_deref() == Some(session))
    }

    /// Connection `conn` closed: publishers on it (announced or recording)
    /// are gone, and their sessions go with them.
    pub fn release_conn(&self, conn: u64) -> Vec<Released> {
        self.release(|p| p.conn == conn)
    }

    fn release(&self, whose: impl Fn(&Publisher) -> bool) -> Vec<Released> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut released = Vec::new();
        for slot in inner.slots.values_mut() {
            if !slot.publisher.as_ref().is_some_and(&whose) {
                continue;
            }
            let session = slot.publisher.take().and_then(|p| p.session);
            if let Some(id) = &session {
                inner.udp_routes.retain(|_, r| &r.session != id);
                inner.udp_rtcp_routes.retain(|_, r| &r.session != id);
                inner.tcp_routes.retain(|_, r| &r.session != id);
            }
            released.push(Released {
                stopped: slot.info.as_ref().map(|i| i.key.clone()),
                session,
            });
        }
        released
    }

    /// Stops channels a publisher started that nobody publishes to and no
    /// session refers to; returns their keys.
    pub fn sweep(&self) -> Vec<String> {
        let mut stopped = Vec::new();
        self.lock().slots.retain(|_, slot| {
            if slot.orphaned() {
                if let Some(info) = slot.info.take() {
                    stopped.push(info.key.clone());
                }
            }
            slot.configured || slot.info.is_some() || slot.publisher.is_some()
        });
        stopped
    }
}

/// Where RECORD takes a publisher's packets from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFrom {
    Udp { rtp: SocketAddr, rtcp: SocketAddr },
    Interleaved { conn: u64, channel: u8 },
}

fn deliver(route: &mut Route, now: Instant) -> Option<Delivery> {
    let touch = (now.saturating_duration_since(route.touched) >= TOUCH_EVERY).then(|| {
        route.touched = now;
        route.session.clone()
    });
    Some(Delivery {
        key: route.key.clone(),
        track: route.track,
        rtcp: route.rtcp,
        touch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::clock::WallClock;

    fn params() -> ChannelParams {
        ChannelParams {
            ptime: Duration::from_millis(20),
            max_payload: 1400,
            max_bytes: 1 << 20,
            prebuffer: Duration::from_millis(100),
            relay_max_delay: Duration::from_millis(500),
            relay_spread_per_listener: Duration::ZERO,
            gop_cache_bytes: 1 << 20,
            clock: WallClock::new(Instant::now(), Duration::ZERO),
            cname: "t".into(),
        }
    }

    /// ANNOUNCE as the server handles it: a started channel becomes
    /// visible once the pacing thread would have it.
    fn announce(
        c: &Channels,
        name: &str,
        conn: u64,
        format: StreamFormat,
        now: Instant,
    ) -> Result<Announced, Error> {
        let a = c.announce(name, conn, Offer::Audio(format), now)?;
        if a.started.is_some() {
            c.running(name, a.info.clone());
        }
        Ok(a)
    }

    fn rules(allow_publish: bool, max_published: usize) -> Rules {
        Rules {
            params: params(),
            allow_publish,
            max_published,
        }
    }

    fn l16(rate: u32, channels: u16) -> StreamFormat {
        StreamFormat {
            codec: Codec::L16,
            payload_type: 96,
            rate,
            channels,
        }
    }

    #[test]
    fn configured_publish_channel_takes_one_publisher_at_a_time() {
        let now = Instant::now();
        let c = Channels::new(rules(false, 4));
        assert!(c
            .configure(&"studio=publish".parse().unwrap(), now)
            .unwrap()
            .is_none());
        assert!(
            c.get("studio").is_none(),
            "no format yet: no channel for listeners"
        );
        let a = announce(&c, "studio", 1, l16(44100, 2), now).unwrap();
        assert!(
            a.started.is_some(),
            "the first publisher starts the channel"
        );
        assert_eq!(a.info.key, "studio#1");
        assert_eq!(a.info.description.tracks[0].rtpmap, "L16/44100/2");
        let busy = announce(&c, "studio", 2, l16(44100, 2), now).err().unwrap();
        assert_eq!(busy.status().0, 455);
        assert_eq!(c.announced("studio", 2).err().unwrap().status().0, 455);
        let (info, format) = c.announced("studio", 1).unwrap();
        assert_eq!(
            (info.key.as_str(), format),
            ("studio#1", Some(l16(44100, 2)))
        );
        c.bind_session("studio", 1, "s1");
        let src = SocketAddr::from(([127, 0, 0, 1], 5000));
        let (key, _) = c
            .record(
                "studio",
                "s1",
                &[(
                    0,
                    RecordFrom::Udp {
                        rtp: src,
                        rtcp: src,
                    },
                )],
                now,
            )
            .unwrap();
        assert_eq!(key, "studio#1");
        let d = c.udp_packet(src, now).unwrap();
        assert_eq!((&*d.key, d.touch), ("studio#1", None));
        let later = now + TOUCH_EVERY;
        assert_eq!(
            c.udp_packet(src, later).unwrap().touch.as_deref(),
            Some("s1")
        );
        assert_eq!(
            c.udp_packet(src, later).unwrap().touch,
            None,
            "once per second"
        );
        assert!(c
            .udp_packet(SocketAddr::from(([127, 0, 0, 1], 5002)), now)
            .is_none());

        // A listener holds the channel while the publisher is away.
        let listener = c.get("studio").unwrap();
        drop(info);
        drop(a);
        let r = c.release_session("s1");
        assert_eq!(
            r,
            [Released {
                stopped: Some("studio#1".into()),
                session: Some("s1".into())
            }]
        );
        assert!(c.udp_packet(src, now).is_none(), "its route is gone");
        assert!(c.sweep().is_empty(), "a session still refers to it");
        // The next publisher must fit the running channel; then it resumes it.
        let e = announce(&c, "studio", 3, l16(48000, 2), now).err().unwrap();
        assert_eq!(e.status().0, 415);
        let b = announce(&c, "studio", 3, l16(44100, 2), now).unwrap();
        assert!(b.started.is_none(), "the same channel goes on");
        drop(b);
        assert_eq!(c.release_conn(3)[0].stopped.as_deref(), Some("studio#1"));
        drop(listener);
        assert!(
            c.get("studio").is_none(),
            "no publisher and no listener: not offered to readers before the sweep"
        );
        assert_eq!(c.sweep(), ["studio#1"], "idle: stopped");
        assert!(c.get("studio").is_none());
        let a = announce(&c, "studio", 4, l16(8000, 1), now).unwrap();
        assert_eq!(a.info.key, "studio#2", "a new format starts a new channel");
    }

    #[test]
    fn who_may_publish_where() {
        let now = Instant::now();
        let closed = Channels::new(rules(false, 4));
        assert_eq!(
            announce(&closed, "new", 1, l16(8000, 1), now)
                .err()
                .unwrap()
                .status()
                .0,
            403
        );
        let open = Channels::new(rules(true, 1));
        let f = std::env::temp_dir().join("rtspd-channels-test.wav");
        let mut w = hound::WavWriter::create(
            &f,
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
        )
        .unwrap();
        for i in 0..800 {
            w.write_sample(i as i16).unwrap();
        }
        w.finalize().unwrap();
        let spec: LiveSpec = format!("radio={}", f.display()).parse().unwrap();
        assert!(open.configure(&spec, now).unwrap().is_some());
        let _ = std::fs::remove_file(&f);
        assert_eq!(
            announce(&open, "radio", 1, l16(8000, 1), now)
                .err()
                .unwrap()
                .status()
                .0,
            403
        );
        assert_eq!(
            announce(&open, "a b", 1, l16(8000, 1), now)
                .err()
                .unwrap()
                .status()
                .0,
            403
        );
        let a = announce(&open, "new", 1, l16(8000, 1), now).unwrap();
        assert_eq!(a.info.name, "new");
        assert_eq!(
            announce(&open, "other", 2, l16(8000, 1), now)
                .err()
                .unwrap()
                .status()
                .0,
            503
        );
        // G.711 listeners need 8 kHz mono.
        let fixed = Channels::new(rules(false, 4));
        fixed
            .configure(&"s=publish,codec=pcmu".parse().unwrap(), now)
            .unwrap();
        assert_eq!(
            announce(&fixed, "s", 1, l16(16000, 1), now)
                .err()
                .unwrap()
                .status()
                .0,
            415
        );
        let a = announce(&fixed, "s", 1, l16(8000, 1), now).unwrap();
        assert_eq!(a.info.description.tracks[0].rtpmap, "PCMU/8000");
        // A declared format runs from the start and is kept when idle.
        fixed
            .configure(&"d=publish,rate=8000,channels=1".parse().unwrap(), now)
            .unwrap();
        assert!(fixed.get("d").is_some());
        assert_eq!(
            announce(&fixed, "d", 1, l16(8000, 2), now)
                .err()
                .unwrap()
                .status()
                .0,
            415
        );
        drop(a);
        fixed.release_conn(1);
        assert_eq!(fixed.sweep(), ["s#1"]);
        assert!(fixed.get("d").is_some());
    }

    /// A channel a reload adds is invisible until committed (after the
    /// pacing thread has it), gets a key of its own, and a name in use is
    /// refused at both steps.
    #[test]
    fn a_reloaded_channel_is_visible_only_once_committed() {
        let now = Instant::now();
        let c = Channels::new(rules(false, 4));
        let spec: LiveSpec = "ch=publish,rate=8000,channels=1".parse().unwrap();
        let mut p = c.prepare_reload(&spec, now).unwrap();
        assert!(p.key().starts_with("ch#"), "{}", p.key());
        assert!(p.take_channel().is_some(), "a declared format runs at once");
        assert!(
            c.get("ch").is_none(),
            "visible before the pacing thread has it"
        );
        let again = c.prepare_reload(&spec, now).unwrap();
        assert_ne!(again.key(), p.key(), "two builds share a key");
        let key = p.key().to_owned();
        c.commit(p).unwrap();
        assert_eq!(c.get("ch").map(|i| i.key.clone()), Some(key));
        assert!(matches!(c.commit(again), Err(SpecError::Duplicate(_))));
        assert!(matches!(
            c.prepare_reload(&spec, now),
            Err(SpecError::Duplicate(_))
        ));
    }

    /// The channel a first publisher starts is not found by listeners until
    /// the pacing thread has it (`running`), so a PLAY racing the ANNOUNCE
    /// cannot subscribe to a channel the thread does not know.
    #[test]
    fn a_published_channel_is_found_only_once_running() {
        let now = Instant::now();
        let c = Channels::new(rules(true, 4));
        let a = c
            .announce("new", 1, Offer::Audio(l16(8000, 1)), now)
            .unwrap();
        assert!(a.started.is_some());
        assert!(
            c.get("new").is_none(),
            "found before the pacing thread has it"
        );
        c.running("new", a.info.clone());
        assert_eq!(
            c.get("new").map(|i| i.key.clone()),
            Some(a.info.key.clone())
        );
    }
}
