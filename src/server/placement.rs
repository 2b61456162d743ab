//! Where the pacing thread runs, so that the control plane (SETUPs,
//! receiver reports, keepalives) never makes it late: its scheduling
//! priority, and optionally a core of its own.
//!
//! - Priority: `SCHED_FIFO` where the process may have it (root or
//!   `CAP_SYS_NICE`, an `rtprio` limit), else nice −10, else the default;
//!   one log line says which it got and why. The thread sleeps between
//!   deadlines, and the kernel's real-time throttling
//!   (`sched_rt_runtime_us`) still leaves the rest of its core 5% should it
//!   ever spin.
//! - Cores: with `--pacer-cpu N`, the pacing thread runs on core N only and
//!   every other thread of the process (tokio workers, blocking threads,
//!   source readers) on the other cores.

use std::io;
use std::str::FromStr;

use tracing::{info, warn};

/// How the pacing thread asks the scheduler for precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacerPriority {
    /// Real-time if permitted, else nice −10, else the default.
    #[default]
    Auto,
    /// Real-time (`SCHED_FIFO`); a WARN line if refused, then as `Auto`.
    Realtime,
    /// nice −10 only.
    Nice,
    /// The default priority.
    Normal,
}

impl FromStr for PacerPriority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "realtime" => Ok(Self::Realtime),
            "nice" => Ok(Self::Nice),
            "normal" => Ok(Self::Normal),
            _ => Err(format!("{s:?}: expected auto, realtime, nice or normal")),
        }
    }
}

impl std::fmt::Display for PacerPriority {
    /// As `--pacer-priority` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Realtime => "realtime",
            Self::Nice => "nice",
            Self::Normal => "normal",
        })
    }
}

/// The `SCHED_FIFO` priority asked for: low among real-time threads, so
/// that the kernel's own (and audio servers') stay above it.
const FIFO_PRIORITY: i32 = 10;

/// Puts the calling thread in `SCHED_FIFO` at [`FIFO_PRIORITY`], where
/// permitted (root, `CAP_SYS_NICE` or an rtprio limit).
pub fn realtime() -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: FIFO_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Applies `want` to the calling thread and logs what it got.
pub fn raise_priority(want: PacerPriority) {
    if matches!(want, PacerPriority::Auto | PacerPriority::Realtime) {
        let got = realtime();
        if got.is_ok() {
            info!(
                policy = "SCHED_FIFO",
                priority = FIFO_PRIORITY,
                "pacing thread runs at real-time priority"
            );
            return;
        }
        let e = got.err().unwrap_or_else(io::Error::last_os_error);
        if want == PacerPriority::Realtime {
            warn!(error = %e, "real-time priority refused for the pacing thread (needs root, CAP_SYS_NICE or an rtprio limit); trying nice -10");
        } else {
            info!(error = %e, "no real-time priority for the pacing thread (needs root, CAP_SYS_NICE or an rtprio limit); trying nice -10");
        }
    }
    if want == PacerPriority::Normal {
        info!("pacing thread runs at the default priority");
        return;
    }
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the
    // calling thread's nice value on Linux; it has no memory effects.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0 {
        info!("pacing thread runs at nice -10");
    } else {
        let e = io::Error::last_os_error();
        warn!(error = %e, "pacing thread keeps the default priority: under load the control plane may make it late (give the process CAP_SYS_NICE, or use --pacer-cpu)");
    }
}

/// The cores this process may run on.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the kernel writes at
    // most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the size is the set's.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads within the set for indices below its size.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Restricts the calling thread to `cpus`.
pub fn pin_to(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = 8 * size_of::<libc::cpu_set_t>();
    for &c in cpus.iter().filter(|&&c| c < max) {
        // SAFETY: `c` is below the set's size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; the set is initialised.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// For `--pacer-cpu N`: the cores everything but the pacing thread keeps.
/// An error when N is not a core this process may use, or is its only one.
pub fn control_cpus(pacer: usize) -> Result<Vec<usize>, String> {
    let allowed = allowed_cpus().map_err(|e| format!("reading the CPU affinity: {e}"))?;
    if !allowed.contains(&pacer) {
        return Err(format!(
            "--pacer-cpu {pacer}: not a core this process may use ({allowed:?})"
        ));
    }
    let rest: Vec<usize> = allowed.into_iter().filter(|&c| c != pacer).collect();
    if rest.is_empty() {
        return Err(format!(
            "--pacer-cpu {pacer}: it is the only core this process may use"
        ));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse() {
        assert_eq!("auto".parse(), Ok(PacerPriority::Auto));
        assert_eq!("realtime".parse(), Ok(PacerPriority::Realtime));
        assert_eq!("nice".parse(), Ok(PacerPriority::Nice));
        assert_eq!("normal".parse(), Ok(PacerPriority::Normal));
        assert!("fast".parse::<PacerPriority>().is_err());
    }

    #[test]
    fn pinning_a_thread_and_the_control_cores() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let first = allowed[0];
        std::thread::spawn(move || {
            pin_to(&[first]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
        match control_cpus(first) {
            Ok(rest) => assert!(!rest.contains(&first) && rest.len() == allowed.len() - 1),
            Err(e) => assert_eq!(allowed.len(), 1, "{e}"),
        }
        assert!(control_cpus(100_000).is_err());
    }
}
