//! Pulled channels (issue 13): a `[[live]]` whose source is `rtsp://` or
//! `rtsps://` relays that upstream ([`crate::upstream`]) into a relay
//! channel ([`crate::proto::relay`]), the way a publisher's RECORD feeds
//! one.
//!
//! - One upstream per channel, however many readers.
//! - `on_demand`: opened by the first DESCRIBE or SETUP, which waits up to
//!   `start_timeout` for the upstream's SDP (then 504), and closed
//!   `close_after` after the last reader left. Otherwise opened at start.
//! - An upstream that plays and then sends nothing for `stall_timeout`
//!   (its connection open or not) is an outage: the client drops it and
//!   reconnects ([`crate::upstream`]).
//! - An outage keeps readers (the channel's restamper keeps their SSRC,
//!   sequence and timeline, [`crate::proto::relay::channel::RelayChannel::source_changed`]);
//!   new readers get 503 until the upstream is back.
//! - The upstream's sender reports go to the channel's `source_report`
//!   (lip sync through the relay).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::live::{self, LiveChannel, LiveInfo, LiveSpec, PullOptions, Source};
use super::pacing::Command;
use super::Shared;
use crate::proto::error::Error;
use crate::proto::relay::offer::{relay_tracks, RelayTrack};
use crate::upstream::{Description, Upstream, UpstreamConfig, UpstreamEvent};

/// How often an on-demand channel checks for readers.
const IDLE_CHECK: Duration = Duration::from_millis(200);
/// How long closing waits for the upstream's TEARDOWN.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Where a pulled channel's upstream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not opened (on demand, nobody reading).
    Closed,
    /// Opened; no SDP yet.
    Starting,
    /// The channel runs and media comes.
    Up,
    /// An outage after it was up: the upstream is retried.
    Down,
}

struct Entry {
    url: String,
    opts: PullOptions,
    gop_cache: bool,
    status: Arc<watch::Sender<Status>>,
    /// A task runs the upstream.
    running: bool,
    /// Stops this entry's task (a reload removed the channel).
    cancel: CancellationToken,
}

/// The pulled channels by name.
#[derive(Default)]
pub(crate) struct Pulls {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Pulls {
    /// The pulled channels of `specs`; `cancel` stops them all.
    pub(crate) fn new(specs: &[LiveSpec], cancel: &CancellationToken) -> Self {
        let pulls = Self::default();
        for spec in specs {
            pulls.insert(spec, cancel);
        }
        pulls
    }

    /// Registers `spec` if it is pulled; whether it is.
    fn insert(&self, spec: &LiveSpec, cancel: &CancellationToken) -> bool {
        let Source::Pull(url) = &spec.source else {
            return false;
        };
        let entry = Entry {
            url: url.clone(),
            opts: spec.pull.clone(),
            gop_cache: spec.gop_cache,
            status: Arc::new(watch::Sender::new(Status::Closed)),
            running: false,
            cancel: cancel.child_token(),
        };
        self.lock().insert(spec.name.clone(), entry);
        true
    }

    /// A reload added `spec` (after its channel slot was committed): opens
    /// it now unless it is on demand.
    pub(crate) fn add(shared: &Arc<Shared>, spec: &LiveSpec) {
        if shared.pulls.insert(spec, &shared.cancel) && !spec.pull.on_demand {
            let mut entries = shared.pulls.lock();
            if let Some(e) = entries.get_mut(&spec.name) {
                open(shared, &spec.name, e);
            }
        }
    }

    /// A reload removed channel `name`: its upstream is closed.
    pub(crate) fn remove(&self, name: &str) {
        if let Some(e) = self.lock().remove(name) {
            e.cancel.cancel();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens every pulled channel that is not on demand.
    pub(crate) fn start_all(shared: &Arc<Shared>) {
        let mut entries = shared.pulls.lock();
        for (name, e) in entries.iter_mut() {
            if !e.opts.on_demand {
                open(shared, name, e);
            }
        }
    }

    /// Before a reader's DESCRIBE or SETUP of channel `name`: nothing for
    /// other channels; for a pulled one, opens its upstream if closed and
    /// waits up to `start_timeout` for it (504 after), or 503 during an
    /// outage.
    pub(crate) async fn ensure(shared: &Arc<Shared>, name: &str) -> Result<(), Error> {
        let (mut rx, timeout) = {
            let mut entries = shared.pulls.lock();
            let Some(e) = entries.get_mut(name) else {
                return Ok(());
            };
            if !e.running {
                open(shared, name, e);
            }
            (e.status.subscribe(), e.opts.start_timeout)
        };
        let deadline = Instant::now() + timeout;
        loop {
            match *rx.borrow_and_update() {
                Status::Up => return Ok(()),
                Status::Down => return Err(Error::UpstreamDown),
                Status::Closed | Status::Starting => {}
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Unavailable("shutting down")),
                Err(_) => {
                    info!(channel = %name, ?timeout, "upstream gave no SDP within start_timeout");
                    return Err(Error::UpstreamTimeout);
                }
            }
        }
    }
}

/// Starts the task of `e` (the caller holds the registry's lock).
fn open(shared: &Arc<Shared>, name: &str, e: &mut Entry) {
    e.running = true;
    e.status.send_replace(Status::Starting);
    let mut cfg = UpstreamConfig::new(e.url.clone());
    cfg.transport = e.opts.transport;
    let bind = shared.config().bind;
    cfg.source_ip = (!bind.is_unspecified()).then_some(bind);
    cfg.max_sdp = e.opts.max_sdp;
    cfg.max_packets_per_sec = e.opts.max_packet_rate;
    cfg.max_bitrate = e.opts.max_bitrate;
    cfg.stall_timeout = e.opts.stall_timeout;
    cfg.tls = e.opts.tls.clone();
    let task = PullTask {
        shared: shared.clone(),
        name: name.to_owned(),
        on_demand: e.opts.on_demand.then_some(e.opts.close_after),
        gop_cache: e.gop_cache,
        status: e.status.clone(),
        cancel: e.cancel.clone(),
        channel: None,
    };
    let span = tracing::info_span!(parent: None, "pull", channel = %name);
    shared.tracker.spawn(task.run(cfg).instrument(span));
}

/// The relay channel an upstream feeds.
struct Running {
    info: Arc<LiveInfo>,
    key: Arc<str>,
    tracks: Vec<RelayTrack>,
    /// Upstream track `i` is the channel's track `map[i]` (`None`: not
    /// relayed).
    map: Vec<Option<usize>>,
}

struct PullTask {
    shared: Arc<Shared>,
    name: String,
    /// `Some(close_after)` when on demand.
    on_demand: Option<Duration>,
    gop_cache: bool,
    status: Arc<watch::Sender<Status>>,
    /// The entry's: server shutdown or a reload removing the channel.
    cancel: CancellationToken,
    channel: Option<Running>,
}

impl PullTask {
    async fn run(mut self, cfg: UpstreamConfig) {
        let upstream = match Upstream::new(cfg) {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "cannot pull this source");
                self.finish().await;
                return;
            }
        };
        info!(url = %upstream.url(), "opening upstream");
        let cancel = self.cancel.child_token();
        let (handle, mut events) = upstream.spawn(cancel.clone());
        let mut idle_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(IDLE_CHECK);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => break,
                },
                _ = tick.tick() => {
                    let Some(close_after) = self.on_demand else { continue };
                    if !self.idle() {
                        idle_since = None;
                        continue;
                    }
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= close_after && self.close_if_idle() {
                        info!(?close_after, "no reader left: closing the upstream");
                        break;
                    }
                }
                _ = self.cancel.cancelled() => break,
            }
        }
        cancel.cancel();
        // The client sends TEARDOWN within its own bound.
        let _ = tokio::time::timeout(CLOSE_WAIT, handle).await;
        self.finish().await;
    }

    /// Nobody reads or waits.
    fn idle(&self) -> bool {
        // The registry's slot and this task hold the channel's info; a
        // session or a request in progress holds another.
        let readers = self
            .channel
            .as_ref()
            .map_or(0, |c| Arc::strong_count(&c.info).saturating_sub(2));
        readers == 0 && self.status.receiver_count() == 0
    }

    /// Marks the entry closed if still idle, under the registry's lock (a
    /// reader arriving now opens a new upstream).
    fn close_if_idle(&self) -> bool {
        let mut entries = self.shared.pulls.lock();
        if !self.idle() {
            return false;
        }
        if let Some(e) = entries.get_mut(&self.name) {
            e.running = false;
            e.status.send_replace(Status::Closed);
        }
        true
    }

    /// The channel goes (listeners no longer find it) and the entry may be
    /// opened again.
    async fn finish(&mut self) {
        if let Some(c) = self.channel.take() {
            let key = c.key.to_string();
            self.shared.channels.stop_running(&self.name, &key);
            let _ = self.shared.pacer.send(Command::RemoveChannel { key }).await;
        }
        let mut entries = self.shared.pulls.lock();
        if let Some(e) = entries.get_mut(&self.name) {
            if Arc::ptr_eq(&e.status, &self.status) {
                e.running = false;
                e.status.send_replace(Status::Closed);
            }
        }
    }

    async fn on_event(&mut self, ev: UpstreamEvent) {
        let shared = &self.shared;
        match ev {
            UpstreamEvent::Described(desc) => self.described(desc).await,
            UpstreamEvent::Up { transport } => debug!(%transport, "media flows"),
            UpstreamEvent::Rtp { track, packet } => {
                // Not RTP version 2, or another payload type than the
                // track's: the channel rejects and counts it (RFC 3550 §5.1).
                if let Some((key, t)) = self.route(track) {
                    let _ = shared.data.publish(key, t, packet);
                }
            }
            UpstreamEvent::Rtcp { track, packet } => {
                if let Some((key, t)) = self.route(track) {
                    let _ = shared.data.publish_rtcp(key, t, &packet);
                }
            }
            UpstreamEvent::Down { reason } => {
                if let Some(c) = &mut self.channel {
                    debug!(%reason, "readers wait for the upstream");
                    let key = c.key.to_string();
                    let _ = shared.pacer.send(Command::StopPublisher { key }).await;
                    self.status.send_replace(Status::Down);
                }
            }
        }
    }

    fn route(&self, track: usize) -> Option<(Arc<str>, usize)> {
        let c = self.channel.as_ref()?;
        Some((c.key.clone(), (*c.map.get(track)?)?))
    }

    /// The upstream played (first time, or after a reconnect).
    async fn described(&mut self, desc: Description) {
        let offered: Vec<_> = desc.tracks.iter().map(|t| t.offered.clone()).collect();
        let (tracks, skipped) = match relay_tracks(&offered) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "the upstream offers nothing to relay");
                return;
            }
        };
        for s in &skipped {
            info!(track = %s, "upstream track not relayed: unsupported format");
        }
        let mut next = 0;
        let map: Vec<Option<usize>> = offered
            .iter()
            .map(|t| {
                relay_tracks(std::slice::from_ref(t)).ok().map(|_| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        let shared = &self.shared;
        let shape = |t: &RelayTrack| (t.codec, t.payload_type, t.clock_rate);
        if let Some(c) = self
            .channel
            .take_if(|c| c.tracks.iter().map(shape).ne(tracks.iter().map(shape)))
        {
            // Other tracks than its readers set up: what they have would not
            // decode it. Their channel ends (a BYE each, their sessions
            // end), and a new one starts for readers to come.
            warn!(channel = %c.key, "the upstream came back with other tracks: its readers' channel ends, a new one starts");
            let key = c.key.to_string();
            shared.channels.stop_running(&self.name, &key);
            let _ = shared
                .pacer
                .send(Command::RemoveChannel { key: key.clone() })
                .await;
            for entry in shared.sessions.take_live(&key) {
                info!(session = %entry.session.id, "session ended: the upstream changed its tracks");
                super::forget(shared, &entry).await;
            }
        }
        match &mut self.channel {
            Some(c) => {
                c.map = map;
                let key = c.key.to_string();
                let _ = shared
                    .pacer
                    .send(Command::StartPublisher { key, format: None })
                    .await;
                info!("upstream back; readers go on");
            }
            None => {
                let key = shared.channels.new_key(&self.name);
                let params = shared.channels.params();
                let (info, channel) = live::make_relay_channel(
                    &params,
                    &self.name,
                    &key,
                    tracks.clone(),
                    self.gop_cache,
                );
                let info = Arc::new(info);
                let added = shared
                    .pacer
                    .send(Command::AddChannel {
                        key: key.clone(),
                        channel: Box::new(LiveChannel::Relay(channel)),
                    })
                    .await;
                if added.is_err() {
                    return;
                }
                let _ = shared
                    .pacer
                    .send(Command::StartPublisher {
                        key: key.clone(),
                        format: None,
                    })
                    .await;
                shared.channels.running(&self.name, info.clone());
                info!(
                    tracks = %tracks.iter().map(|t| t.rtpmap.as_str()).collect::<Vec<_>>().join(", "),
                    sdp_bytes = desc.sdp.len(),
                    "pulled channel running"
                );
                self.channel = Some(Running {
                    info,
                    key: Arc::from(key.as_str()),
                    tracks,
                    map,
                });
            }
        }
        self.status.send_replace(Status::Up);
    }
}
