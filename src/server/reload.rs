//! Live reload: a new [`Config`] applied to the running server, as
//! `SIGHUP` and `POST /api/v1/reload` ask for.
//!
//! What can change in place does:
//! - live channels are added, removed or rebuilt. A removed channel's
//!   listeners get an RTCP BYE (RFC 3550 §6.6) and lose their sessions, so
//!   their next request gets 454; its source stops. A rebuilt one is a new
//!   channel under the same name, with a new pacing-thread key, so nothing
//!   of the old source can reach it;
//! - limits, timeouts, the media root and the clip options apply to what
//!   comes next: connections accepted, sessions set up, clips opened;
//! - the HTTP side's limits apply to its next connection, and a new
//!   `[http] listen` address is bound before anything changes (a reload
//!   that cannot bind it is refused), then served in place of the old.
//!
//! - `[tls]`: the certificate and key are read again (the same paths
//!   too, for a certificate rotated in place) and checked before anything
//!   changes; new RTSPS handshakes get them, sessions already up keep
//!   theirs. Turning RTSPS on or off needs a restart.
//!
//! Sessions the change does not touch go on without a gap: the pacing
//! thread is told only about the channels that changed. What is bound or
//! started once (addresses, the RTP port pair, the pacing thread's
//! placement and batching) keeps its running value, with a WARN line each
//! saying it needs a restart. A reload that cannot be applied whole (a
//! media folder that does not open, a channel whose WAV does not load) is
//! refused before anything changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;
use tracing::{info, warn};

use super::live::{self, LiveSpec, Source, SpecError};
use super::pacing::Command;
use super::tls::{self, TlsError};
use super::{channels, forget, Config, Shared};
use crate::http;
use crate::media::Catalog;

/// A value many readers take a snapshot of and one writer replaces whole.
pub(crate) struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    pub(crate) fn from_arc(value: Arc<T>) -> Self {
        Self(RwLock::new(value))
    }

    /// The current value (a clone of its `Arc`).
    pub(crate) fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, value: T) {
        self.set_arc(Arc::new(value));
    }

    pub(crate) fn set_arc(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("media folder {path}: {error}")]
    Media { path: String, error: std::io::Error },
    #[error(transparent)]
    Live(#[from] SpecError),
    #[error(
        "live channel {0}: stdin is read by one channel from start; adding it needs a restart"
    )]
    Stdin(String),
    #[error("http.listen: {0}")]
    Http(std::io::Error),
    #[error("a file reader of the reload stopped: {0}")]
    Blocking(String),
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// A redirect to this server itself (RFC 2326 §11.3.3: a loop).
    #[error("{0}")]
    RedirectLoop(String),
}

/// What a reload did, one line per change.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Changes applied, e.g. `live channel radio added`.
    pub applied: Vec<String>,
    /// Settings that changed in the file but keep their running value.
    pub needs_restart: Vec<String>,
}

/// Applies new configurations to a running server; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    shared: Arc<Shared>,
}

/// Whether a setting applies at a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applies {
    Now,
    AtRestart,
}

impl Reloader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.shared.config()
    }

    /// Applies `new`, or changes nothing and says why.
    pub async fn apply(&self, mut new: Config) -> Result<Summary, ReloadError> {
        let shared = &self.shared;
        let mut http_side = shared.reloading.lock().await;
        let old = shared.config();
        let mut summary = Summary::default();
        for ((key, was, applies), (_, now, _)) in settings(&old).into_iter().zip(settings(&new)) {
            if was == now {
                continue;
            }
            match applies {
                Applies::Now => summary.applied.push(format!("{key}: {was} -> {now}")),
                Applies::AtRestart => summary
                    .needs_restart
                    .push(format!("{key}: {now} (running with {was})")),
            }
        }
        keep_restart_settings(&mut new, &old);
        if let Some(e) = super::redirect::self_redirect(
            &new,
            shared.rtsp_addr,
            shared.tls.as_ref().map(|t| t.addr),
        )
        .await
        {
            return Err(ReloadError::RedirectLoop(e));
        }

        // Everything that can fail is checked before anything changes.
        let catalog = if new.media != old.media || new.clip != old.clip {
            let (media, clip) = (new.media.clone(), new.clip);
            let opened = tokio::task::spawn_blocking(move || Catalog::new(&media, clip)).await;
            let catalog = match opened {
                Ok(c) => c,
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
            .map_err(|error| ReloadError::Media {
                path: new.media.display().to_string(),
                error,
            })?;
            Some(catalog)
        } else {
            None
        };
        let http_listener = if new.http.listen.addr() != old.http.listen.addr() {
            Some(
                http::bind(&new.http.listen)
                    .await
                    .map_err(ReloadError::Http)?,
            )
        } else {
            None
        };
        let tls_config = self.check_tls(&mut new, &old, &mut summary)?;
        let diff = LiveDiff::new(&old.live, &new.live);
        for spec in &diff.added {
            if spec.source == Source::Stdin {
                return Err(ReloadError::Stdin(spec.name.clone()));
            }
        }
        // `file:` sources' WAVs are read off the runtime's threads.
        let (specs, max) = (diff.added.clone(), new.clip.max_clip_bytes);
        blocking(move || {
            specs
                .iter()
                .try_for_each(|s| live::configured_shape(s, max).map(drop))
        })
        .await??;

        // Channels: the old ones go first, so a rebuilt one can take its
        // name again.
        let rebuilt = |name: &str| diff.added.iter().any(|s| s.name == name);
        for name in &diff.removed {
            self.remove_channel(name).await;
            if !rebuilt(name) {
                summary.applied.push(format!("live channel {name} removed"));
            }
        }
        shared.channels.set_rules(channels::Rules {
            params: live::ChannelParams {
                ptime: new.clip.ptime,
                max_payload: new.clip.max_payload,
                max_bytes: new.clip.max_clip_bytes,
                prebuffer: new.live_prebuffer,
                relay_max_delay: new.relay_max_delay,
                relay_spread_per_listener: new.relay_spread_per_listener,
                gop_cache_bytes: new.gop_cache_bytes,
                ..shared.channels.params()
            },
            allow_publish: new.allow_publish,
            max_published: new.max_published_channels,
        });
        let now = Instant::now();
        for spec in &diff.added {
            let (registry, owned) = (shared.channels.clone(), spec.clone());
            let prepared = blocking(move || registry.prepare_reload(&owned, now)).await?;
            let mut prepared = match prepared {
                Ok(p) => p,
                Err(e) => {
                    // Checked above; a file changed in between. The rest
                    // still applies, and the running config says so.
                    warn!(channel = %spec.name, error = %e, "reload: live channel not added");
                    summary
                        .applied
                        .push(format!("live channel {} not added: {e}", spec.name));
                    new.live.retain(|l| l.name != spec.name);
                    continue;
                }
            };
            let key = prepared.key().to_owned();
            // The pacing thread has the channel before any request can
            // name it: a SUBSCRIBE is queued after this.
            if let Some(channel) = prepared.take_channel() {
                let _ = shared
                    .pacer
                    .send(Command::AddChannel {
                        key: key.clone(),
                        channel: Box::new(channel.into()),
                    })
                    .await;
            }
            if let Err(e) = shared.channels.commit(prepared) {
                warn!(channel = %spec.name, error = %e, "reload: live channel not added");
                let _ = shared.pacer.send(Command::RemoveChannel { key }).await;
                continue;
            }
            super::pull::Pulls::add(shared, spec);
            match live::spawn_source(spec, &key, &shared.data) {
                Ok(Some(guard)) => {
                    shared.sources().insert(spec.name.clone(), guard);
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(channel = %spec.name, error = %e, "reload: live source not started")
                }
            }
            let verb = if diff.removed.contains(&spec.name) {
                "rebuilt"
            } else {
                "added"
            };
            summary
                .applied
                .push(format!("live channel {} {verb}", spec.name));
        }
        if let (Some(running), Some(config)) = (&shared.tls, tls_config) {
            running.set_config(config);
            summary.applied.push(format!(
                "tls: certificate {} and key {} loaded for new connections",
                new.tls.cert.display(),
                new.tls.key.display()
            ));
        }
        shared.sessions.set_limits(new.sessions);
        shared.refusals.set_values(&new);
        shared.guard.configure(&new.auth);
        http::auth::warn_if_open(&new);
        if let Some(catalog) = catalog {
            shared.catalog.set(catalog);
        }
        shared.config.set(new);
        if let Some(listener) = http_listener {
            match http::start(shared, listener, &mut http_side) {
                Ok(Some(addr)) => info!(%addr, "HTTP side moved"),
                Ok(None) => info!("HTTP side off"),
                Err(e) => warn!(error = %e, "reload: the HTTP side did not start"),
            }
        }
        for line in &summary.applied {
            info!(change = %line, "reload applied");
        }
        for line in &summary.needs_restart {
            warn!(setting = %line, "reload: this setting needs a restart");
        }
        if summary.applied.is_empty() && summary.needs_restart.is_empty() {
            info!("reload: nothing changed");
        }
        Ok(summary)
    }

    /// The certificate and key new RTSPS connections are to get, read and
    /// checked now; `None` when RTSPS does not run (turning it on or off
    /// needs a restart: the running value stays, and the summary says so).
    fn check_tls(
        &self,
        new: &mut Config,
        old: &Config,
        summary: &mut Summary,
    ) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ReloadError> {
        let running = self.shared.tls.is_some();
        if running == new.tls.enabled() {
            return Ok(tls::server_config(&new.tls)?);
        }
        let (now, was) = if running {
            ("off", "on")
        } else {
            ("on", "off")
        };
        summary
            .needs_restart
            .push(format!("tls: RTSPS {now} (running with it {was})"));
        new.tls.cert.clone_from(&old.tls.cert);
        new.tls.key.clone_from(&old.tls.key);
        if !running && new.tls.require {
            return Err(TlsError::RequireWithoutCert.into());
        }
        Ok(None)
    }

    /// Takes channel `name` away: its listeners hear BYE and lose their
    /// sessions, its publisher's session ends, its source stops.
    async fn remove_channel(&self, name: &str) {
        let shared = &self.shared;
        shared.pulls.remove(name);
        let Some(removed) = shared.channels.remove(name) else {
            return;
        };
        drop(shared.sources().remove(name));
        let mut gone = Vec::new();
        if let Some(key) = &removed.key {
            // The channel's BYE goes to every listener at once.
            let _ = shared
                .pacer
                .send(Command::RemoveChannel { key: key.clone() })
                .await;
            gone = shared.sessions.take_live(key);
        }
        if let Some(id) = &removed.publisher_session {
            gone.extend(shared.sessions.remove(id));
        }
        for entry in &gone {
            info!(session = %entry.session.id, channel = %name, "session ended: its channel was removed");
            forget(shared, entry).await;
        }
    }
}

/// Runs `f` on tokio's blocking threads (file reads).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReloadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReloadError::Blocking(e.to_string()))
}

/// The live channels that differ between two configurations: a changed
/// one is both removed and added.
struct LiveDiff {
    removed: Vec<String>,
    added: Vec<LiveSpec>,
}

impl LiveDiff {
    fn new(old: &[LiveSpec], new: &[LiveSpec]) -> Self {
        let before: HashMap<&str, &LiveSpec> = old.iter().map(|l| (l.name.as_str(), l)).collect();
        let after: HashMap<&str, &LiveSpec> = new.iter().map(|l| (l.name.as_str(), l)).collect();
        Self {
            removed: old
                .iter()
                .filter(|l| after.get(l.name.as_str()) != Some(l))
                .map(|l| l.name.clone())
                .collect(),
            added: new
                .iter()
                .filter(|l| before.get(l.name.as_str()) != Some(l))
                .cloned()
                .collect(),
        }
    }
}

/// The settings a reload compares, by their config-file key, as shown in
/// the log, and whether a change applies now. Both lists are in the same
/// order for any two configurations.
fn settings(c: &Config) -> Vec<(&'static str, String, Applies)> {
    use Applies::{AtRestart, Now};
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
    vec![
        ("bind", c.bind.to_string(), AtRestart),
        ("port", format!("{:?}", c.port), AtRestart),
        ("rtp_port", c.rtp_port.to_string(), AtRestart),
        (
            "send_ahead_us",
            c.send_ahead.as_micros().to_string(),
            AtRestart,
        ),
        ("send_batch", c.send_batch.to_string(), AtRestart),
        ("udp_gso", c.udp_gso.to_string(), AtRestart),
        (
            "pacer_priority",
            format!("{:?}", c.pacer_priority),
            AtRestart,
        ),
        ("pacer_cpu", format!("{:?}", c.pacer_cpu), AtRestart),
        ("media", c.media.display().to_string(), Now),
        ("session_timeout", secs(c.session_timeout), Now),
        ("ptime", ms(c.clip.ptime), Now),
        ("mtu", c.clip.max_payload.to_string(), Now),
        ("fps", c.clip.fps.to_string(), Now),
        (
            "max_clip_mib",
            (c.clip.max_clip_bytes >> 20).to_string(),
            Now,
        ),
        ("max_connections", c.max_connections.to_string(), Now),
        (
            "max_connections_per_ip",
            c.max_connections_per_ip.to_string(),
            Now,
        ),
        ("max_sessions", c.sessions.max_sessions.to_string(), Now),
        (
            "max_sessions_per_ip",
            c.sessions.max_sessions_per_ip.to_string(),
            Now,
        ),
        ("max_head_bytes", c.limits.max_head.to_string(), Now),
        ("max_headers", c.limits.max_headers.to_string(), Now),
        ("max_body_bytes", c.limits.max_body.to_string(), Now),
        ("read_timeout", secs(c.read_timeout), Now),
        ("write_timeout", secs(c.write_timeout), Now),
        ("idle_timeout", secs(c.idle_timeout), Now),
        ("max_client_queue", c.client_queue.to_string(), Now),
        (
            "max_client_frames_per_sec",
            c.max_client_frames_per_sec.to_string(),
            Now,
        ),
        (
            "max_publisher_frames_per_sec",
            c.max_publisher_frames_per_sec.to_string(),
            Now,
        ),
        ("allow_publish", c.allow_publish.to_string(), Now),
        (
            "max_published_channels",
            c.max_published_channels.to_string(),
            Now,
        ),
        ("live_prebuffer_ms", ms(c.live_prebuffer), Now),
        ("relay_max_delay_ms", ms(c.relay_max_delay), Now),
        (
            "relay_spread_us_per_listener",
            c.relay_spread_per_listener.as_micros().to_string(),
            Now,
        ),
        (
            "max_gop_cache_kib",
            (c.gop_cache_bytes / 1024).to_string(),
            Now,
        ),
        ("max_publish_queue", c.data_queue.to_string(), AtRestart),
        ("http.listen", c.http.listen.to_string(), Now),
        (
            "http.max_connections",
            c.http.max_connections.to_string(),
            Now,
        ),
        (
            "http.max_head_bytes",
            c.http.max_head_bytes.to_string(),
            Now,
        ),
        ("http.max_headers", c.http.max_headers.to_string(), Now),
        (
            "http.max_body_bytes",
            c.http.max_body_bytes.to_string(),
            Now,
        ),
        ("http.read_timeout", secs(c.http.read_timeout), Now),
        ("http.write_timeout", secs(c.http.write_timeout), Now),
        ("http.permissions.api", who(&c.auth.grants.api), Now),
        ("http.permissions.metrics", who(&c.auth.grants.metrics), Now),
        ("http.permissions.status", who(&c.auth.grants.status), Now),
        (
            // Names only: a hash is no business of the log.
            "http.tokens",
            format!(
                "{:?}",
                c.auth.tokens.iter().map(|t| &t.name).collect::<Vec<_>>()
            ),
            Now,
        ),
        ("tls.rtsps_port", format!("{:?}", c.tls.port), AtRestart),
        ("tls.require", c.tls.require.to_string(), Now),
        ("tls.handshake_timeout", secs(c.tls.handshake_timeout), Now),
    ]
}

/// A permission's holders as the log shows them.
fn who(w: &crate::proto::auth::rules::Who) -> String {
    use crate::proto::auth::rules::Who;
    match w {
        Who::Anyone => "[\"anyone\"]".into(),
        Who::Users(names) => format!("{names:?}"),
    }
}

/// What was bound or started once keeps its running value.
fn keep_restart_settings(new: &mut Config, old: &Config) {
    new.bind = old.bind;
    new.port = old.port;
    new.rtp_port = old.rtp_port;
    new.send_ahead = old.send_ahead;
    new.send_batch = old.send_batch;
    new.udp_gso = old.udp_gso;
    new.pacer_priority = old.pacer_priority;
    new.pacer_cpu = old.pacer_cpu;
    new.command_queue = old.command_queue;
    new.data_queue = old.data_queue;
    new.http.reload.clone_from(&old.http.reload);
    new.tls.port = old.tls.port;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> LiveSpec {
        s.parse().unwrap()
    }

    #[test]
    fn live_diff_finds_added_removed_and_changed_channels() {
        let old = [
            spec("a=publish"),
            spec("b=publish,codec=pcmu"),
            spec("c=publish"),
        ];
        let new = [
            spec("a=publish"),
            spec("b=publish,codec=pcma"),
            spec("d=publish"),
        ];
        let d = LiveDiff::new(&old, &new);
        assert_eq!(d.removed, ["b", "c"]);
        let added: Vec<&str> = d.added.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(added, ["b", "d"]);
    }

    #[test]
    fn settings_are_compared_by_key_and_restart_ones_are_kept() {
        let old = Config::default();
        let mut new = Config {
            rtp_port: 7000,
            read_timeout: std::time::Duration::from_secs(3),
            ..Config::default()
        };
        new.sessions.max_sessions_per_ip = 4;
        let changed: Vec<(&str, Applies)> = settings(&old)
            .into_iter()
            .zip(settings(&new))
            .filter(|(a, b)| a.1 != b.1)
            .map(|(a, _)| (a.0, a.2))
            .collect();
        assert_eq!(
            changed,
            [
                ("rtp_port", Applies::AtRestart),
                ("max_sessions_per_ip", Applies::Now),
                ("read_timeout", Applies::Now),
            ]
        );
        keep_restart_settings(&mut new, &old);
        assert_eq!(new.rtp_port, old.rtp_port);
        assert_eq!(new.sessions.max_sessions_per_ip, 4);
    }
}
