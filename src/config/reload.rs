//! Re-reading the config file while the server runs: what `SIGHUP` and
//! `POST /api/v1/reload` do.
//!
//! The file is read again with the same command-line flags over it
//! ([`super::load`]), so a flag keeps winning over the file. A file that
//! does not parse or validate is refused whole and the running
//! configuration stays; otherwise the server applies the difference
//! ([`crate::server::reload`], the HTTP side included), and the log level
//! changes at once (unless `RUST_LOG` fixed it).

use std::path::PathBuf;
use std::sync::Mutex;

use tracing::{error, info, warn};

use super::{CliOverrides, ConfigError, LogLevel, LogSettings};
use crate::server::reload::{ReloadError, Reloader, Summary};

/// Changes the log level of the running subscriber.
pub type SetLogLevel = Box<dyn Fn(LogLevel) -> Result<(), String> + Send + Sync>;

/// Why a reload was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RefusedReload {
    #[error("no config file was given at start (--config), so there is nothing to re-read")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Apply(#[from] ReloadError),
    #[error("the config reader stopped: {0}")]
    Reader(String),
}

/// The file, the flags over it, and what applies a new version.
pub struct ConfigReload {
    path: Option<PathBuf>,
    overrides: CliOverrides,
    server: Reloader,
    set_log_level: Option<SetLogLevel>,
    /// The log settings in force.
    running: Mutex<LogSettings>,
}

impl ConfigReload {
    /// `set_log_level` is `None` when `RUST_LOG` decides the level.
    pub fn new(
        path: Option<PathBuf>,
        overrides: CliOverrides,
        server: Reloader,
        log: LogSettings,
        set_log_level: Option<SetLogLevel>,
    ) -> Self {
        Self {
            path,
            overrides,
            server,
            set_log_level,
            running: Mutex::new(log),
        }
    }

    /// Reads the file again and applies it; logs the outcome either way.
    pub async fn reload(&self) -> Result<Summary, RefusedReload> {
        let outcome = self.try_reload().await;
        match &outcome {
            Ok(s) => info!(
                applied = s.applied.len(),
                needs_restart = s.needs_restart.len(),
                "reload done"
            ),
            Err(e) => error!(error = %e, "reload refused; the running configuration stays"),
        }
        outcome
    }

    async fn try_reload(&self) -> Result<Summary, RefusedReload> {
        let path = self.path.as_ref().ok_or(RefusedReload::NoFile)?;
        let path = path.clone();
        let overrides = self.overrides.clone();
        // File reads are blocking; the file is small but may be on a slow
        // disk.
        let effective = tokio::task::spawn_blocking(move || super::load(&path, &overrides))
            .await
            .map_err(|e| RefusedReload::Reader(e.to_string()))??;
        let mut summary = self.server.apply(effective.server).await?;
        let log = *self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut new_log = log;
        if effective.log.level != log.level {
            let line = format!(
                "log.level: {} -> {}",
                log.level.as_str(),
                effective.log.level.as_str()
            );
            match &self.set_log_level {
                Some(set) => match set(effective.log.level) {
                    Ok(()) => {
                        summary.applied.push(line);
                        new_log.level = effective.log.level;
                    }
                    Err(e) => warn!(error = %e, "reload: the log level did not change"),
                },
                None => summary
                    .needs_restart
                    .push(format!("{line} (RUST_LOG decides the level)")),
            }
        }
        if effective.log.format != log.format {
            summary
                .needs_restart
                .push(format!("log.format: {:?}", effective.log.format));
        }
        // The server logged its own lines; these are the log's.
        let ours = |l: &&String| l.starts_with("log.");
        for line in summary.applied.iter().filter(ours) {
            info!(change = %line, "reload applied");
        }
        for line in summary.needs_restart.iter().filter(ours) {
            warn!(setting = %line, "reload: this setting needs a restart");
        }
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = new_log;
        Ok(summary)
    }
}
