//! `rtspd load --publish CLIP`: the tester publishes a clip to the URL
//! itself (ANNOUNCE, SETUP with `mode=record`, RECORD; RFC 2326 §10.11,
//! §10.4, §10.11) over TCP interleaved, and its listeners read the same
//! URL, so one clock sees each packet leave the publisher and arrive at
//! every listener: the delay a relay adds, measured on loopback.
//!
//! The clip is cut and paced by the server's own packetizer and pacer
//! ([`crate::proto::pacer`]), looped, with sender reports (the relay maps
//! them onto its timeline). Each RTP packet's send time goes into a
//! [`SendLog`] under its track and a key of its payload; a listener's copy
//! carries the same payload (a relay forwards payloads unchanged) under
//! the relay's own SSRC, sequence and timestamps. A payload key alone can
//! repeat (a steady tone encodes to identical AAC frames), so each
//! listener's track learns the relay's timestamp offset from a payload
//! sent once only ([`DelayProbe`]), and from then on a copy is matched to
//! the publisher's packet of the same payload key and timestamp.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::auth::ClientAuth;
use super::conn::{connect, Conn};
use super::session::setup_reply;
use super::LoadError;
use crate::media::catalog::Catalog;
use crate::media::clip::{Clip, ClipOptions};
use crate::proto::clock::WallClock;
use crate::proto::measure::{micros_histogram, record_micros};
use crate::proto::pacer::{Event, Pacer, TrackConfig};
use crate::proto::sdp::{describe, PresentationDescription};
use crate::proto::session::{Dest, PlayRequest};

/// How long a send time is kept for listeners to match.
const KEEP: Duration = Duration::from_secs(10);
/// The publisher's one pacer group.
const GROUP: u64 = 1;
/// Longest the publishing thread sleeps (it also watches for the stop).
const MAX_SLEEP: Duration = Duration::from_millis(5);

/// The 64-bit FNV-1a of a payload's length, first 32 and last 16 bytes:
/// enough to tell compressed media apart, cheap at a million packets a
/// second.
fn key(payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let head = &payload[..payload.len().min(32)];
    let tail = &payload[payload.len().saturating_sub(16)..];
    for b in (payload.len() as u64)
        .to_le_bytes()
        .iter()
        .chain(head)
        .chain(tail)
    {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Send times of the publisher's packets, and the delays listeners saw.
#[derive(Debug)]
pub struct SendLog {
    inner: Mutex<LogInner>,
    pub sent: AtomicU64,
}

#[derive(Debug)]
struct LogInner {
    /// (track, payload key) to each (publisher timestamp, send time).
    sent: HashMap<(usize, u64), Vec<(u32, Instant)>>,
    /// In send order, to forget what is older than [`KEEP`].
    order: VecDeque<(Instant, usize, u64)>,
    delays: Histogram<u64>,
    matched: u64,
    unmatched: u64,
    cached: u64,
}

/// What one listener's track knows of the relay's numbering: its
/// timestamps are the publisher's plus `offset`. A copy of a packet sent
/// before `since` (the listener's SETUP) came from a GOP cache, not
/// through the relay as it happened: it is counted, not timed.
#[derive(Debug, Clone, Copy)]
pub struct DelayProbe {
    offset: Option<u32>,
    since: Instant,
}

impl DelayProbe {
    pub fn new(since: Instant) -> Self {
        Self {
            offset: None,
            since,
        }
    }
}

/// The delays measured: listener arrival − publisher send.
#[derive(Debug, Clone)]
pub struct Delays {
    pub histogram: Histogram<u64>,
    pub matched: u64,
    pub unmatched: u64,
    /// Matched copies of packets sent before the listener set up.
    pub cached: u64,
    pub sent: u64,
}

impl Default for SendLog {
    fn default() -> Self {
        Self {
            inner: Mutex::new(LogInner {
                sent: HashMap::new(),
                order: VecDeque::new(),
                delays: micros_histogram(),
                matched: 0,
                unmatched: 0,
                cached: 0,
            }),
            sent: AtomicU64::new(0),
        }
    }
}

impl SendLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The publisher sent `payload` of `track` stamped `ts` at `at`.
    fn record(&self, track: usize, payload: &[u8], ts: u32, at: Instant) {
        let k = key(payload);
        let mut g = self.lock();
        while let Some(&(t, tr, old)) = g.order.front() {
            if at.saturating_duration_since(t) < KEEP {
                break;
            }
            g.order.pop_front();
            if let Some(v) = g.sent.get_mut(&(tr, old)) {
                v.retain(|(_, s)| at.saturating_duration_since(*s) < KEEP);
                if v.is_empty() {
                    g.sent.remove(&(tr, old));
                }
            }
        }
        g.sent.entry((track, k)).or_default().push((ts, at));
        g.order.push_back((at, track, k));
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// A listener got `datagram` (RTP) of `track` at `at`.
    pub fn observe(&self, track: usize, datagram: &[u8], at: Instant, probe: &mut DelayProbe) {
        let Ok(rtp) = rtp_rs::RtpReader::new(datagram) else {
            return;
        };
        let (k, ts) = (key(rtp.payload()), rtp.timestamp());
        let mut g = self.lock();
        let found = match (g.sent.get(&(track, k)), probe.offset) {
            (Some(v), Some(off)) => v
                .iter()
                .find(|(pts, _)| pts.wrapping_add(off) == ts)
                .map(|(_, s)| *s),
            // Unique so far: it fixes the offset.
            (Some(v), None) if v.len() == 1 => {
                probe.offset = Some(ts.wrapping_sub(v[0].0));
                Some(v[0].1)
            }
            _ => None,
        };
        match found {
            Some(sent) if sent < probe.since => g.cached += 1,
            Some(sent) => {
                g.matched += 1;
                record_micros(&mut g.delays, at.saturating_duration_since(sent));
            }
            None => g.unmatched += 1,
        }
    }

    pub fn delays(&self) -> Delays {
        let g = self.lock();
        Delays {
            histogram: g.delays.clone(),
            matched: g.matched,
            unmatched: g.unmatched,
            cached: g.cached,
            sent: self.sent.load(Ordering::Relaxed),
        }
    }
}

/// A publisher running on its own thread until `stop`.
pub struct Publisher {
    pub log: Arc<SendLog>,
    thread: JoinHandle<()>,
}

impl Publisher {
    /// Waits for the publishing thread (after `stop` fired).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Opens `clip` (a file the server could serve: WAV, MP4, ...).
fn open_clip(clip: &Path) -> Result<Arc<Clip>, LoadError> {
    let bad = |e: String| LoadError::Options(format!("--publish {}: {e}", clip.display()));
    let dir = clip.parent().filter(|d| !d.as_os_str().is_empty());
    let name = clip
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("not a file name".into()))?;
    let catalog = Catalog::new(dir.unwrap_or(Path::new(".")), ClipOptions::default())
        .map_err(|e| bad(e.to_string()))?;
    catalog.open(name).map_err(|e| bad(e.to_string()))
}

/// Publishes `clip` to `url` (no userinfo; `auth` answers challenges) and
/// keeps sending it, looped, on a thread of its own until `stop` fires.
/// Returns once the server took the RECORD.
pub(super) async fn start(
    url: &Url,
    server: SocketAddr,
    auth: ClientAuth,
    clip: &Path,
    stop: CancellationToken,
) -> Result<Publisher, LoadError> {
    let clip = open_clip(clip)?;
    let mut desc: PresentationDescription = clip.description();
    desc.duration = None;
    for (i, t) in desc.tracks.iter_mut().enumerate() {
        t.control = format!("trackID={i}");
    }
    let sdp = describe(&desc, server.ip(), 1);
    let mut conn = Conn::new(connect(server, None).await?, auth);
    let mut ignore = |_: u8, _: Bytes| {};
    let base = url.as_str().trim_end_matches('/').to_owned();
    conn.request_with_body(
        "ANNOUNCE",
        &base,
        &[("Content-Type", "application/sdp")],
        sdp.as_bytes(),
        &mut ignore,
    )
    .await?;
    for i in 0..desc.tracks.len() {
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{};mode=record",
            2 * i,
            2 * i + 1
        );
        let reply = conn
            .request(
                "SETUP",
                &format!("{base}/trackID={i}"),
                &[("Transport", &transport)],
                &mut ignore,
            )
            .await?;
        let (session, _) = setup_reply(&reply).map_err(LoadError::Protocol)?;
        conn.session = Some(session.id);
    }
    conn.request("RECORD", &base, &[("Range", "npt=0-")], &mut ignore)
        .await?;
    let stream = conn
        .into_stream()
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| LoadError::Connect(e.kind()))?;
    let now = Instant::now();
    let mut pacer = Pacer::new(
        WallClock::new(now, wall_now()),
        "rtspd-load@publisher".into(),
    );
    for (i, t) in clip.tracks.iter().enumerate() {
        let channel = (2 * i) as u8;
        pacer.add_track(
            GROUP,
            i,
            TrackConfig {
                packetizer: t.packetizer.clone(),
                ssrc: 0x5eed_0000 + i as u32,
                payload_type: t.description.payload_type,
                first_seq: 1000,
                first_rtptime: 90_000,
                rtp_dest: Dest::Interleaved { conn: 0, channel },
                rtcp_dest: Dest::Interleaved {
                    conn: 0,
                    channel: channel + 1,
                },
            },
        );
    }
    let play = |run| PlayRequest {
        start: Some(0.0),
        end: None,
        run,
    };
    let info = pacer
        .play(GROUP, play(0), now)
        .map_err(|e| LoadError::Protocol(e.to_string()))?;
    // Each loop of the clip starts when the last one's media ends.
    let length = Duration::try_from_secs_f64(info.end - info.start).unwrap_or_default();
    let runs = Runs { start: now, length };
    let log = Arc::new(SendLog::default());
    let l = log.clone();
    let thread = std::thread::Builder::new()
        .name("load-publisher".into())
        .spawn(move || pump(pacer, runs, stream, &l, &stop, play))
        .map_err(|e| LoadError::Connect(e.kind()))?;
    Ok(Publisher { log, thread })
}

fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// When the clip's current loop started, and how long one lasts.
struct Runs {
    start: Instant,
    length: Duration,
}

/// Sends every packet as it falls due, looping the clip, until `stop` or
/// a write fails; what the server sends back (receiver reports) is read
/// and dropped.
fn pump(
    mut pacer: Pacer,
    mut runs: Runs,
    mut stream: std::net::TcpStream,
    log: &SendLog,
    stop: &CancellationToken,
    play: impl Fn(u32) -> PlayRequest,
) {
    if let Ok(mut r) = stream.try_clone() {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
    // Like a camera's encoder, the publisher keeps its clock: the
    // receiving thread and the sessions' tasks on the same cores must not
    // delay its packets (which every listener would see as jitter).
    if let Err(e) = crate::server::placement::realtime() {
        tracing::debug!(error = %e, "publisher keeps the default priority");
    }
    let mut run = 0;
    let mut frames = Vec::new();
    let mut sent = Vec::new();
    while !stop.is_cancelled() {
        let now = Instant::now();
        while let Some(t) = pacer.poll_transmit(now) {
            let Dest::Interleaved { channel, .. } = t.dest else {
                continue;
            };
            let Ok(len) = u16::try_from(t.data.len()) else {
                continue;
            };
            frames.extend_from_slice(&[b'$', channel]);
            frames.extend_from_slice(&len.to_be_bytes());
            frames.extend_from_slice(&t.data);
            if !t.rtcp {
                sent.push((usize::from(channel / 2), t.data));
            }
        }
        if !frames.is_empty() {
            let at = Instant::now();
            for (track, data) in sent.drain(..) {
                if let Ok(rtp) = rtp_rs::RtpReader::new(&data) {
                    log.record(track, rtp.payload(), rtp.timestamp(), at);
                }
            }
            if stream.write_all(&frames).is_err() {
                break;
            }
            frames.clear();
        }
        while let Some(Event::Ended { .. }) = pacer.poll_event() {
            run += 1;
            // The next loop starts where this one's media ends (its last
            // frame's duration after its last packet went), not at once:
            // its timestamps continue from there, and starting early
            // would show as a step in every listener's jitter. After a
            // stall of the publisher itself, it starts now.
            let now = Instant::now();
            let at = runs.start + runs.length;
            runs.start = if at + MAX_SLEEP < now { now } else { at };
            if pacer.play(GROUP, play(run), runs.start).is_err() {
                return;
            }
        }
        let wait = pacer
            .poll_timeout()
            .map_or(MAX_SLEEP, |d| d.saturating_duration_since(Instant::now()))
            .min(MAX_SLEEP);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ts: u32, payload: &[u8]) -> Vec<u8> {
        crate::proto::rtp::Header {
            ssrc: 9,
            payload_type: 96,
            seq: 1,
            timestamp: ts,
            marker: false,
        }
        .encode(payload)
        .to_vec()
    }

    #[test]
    fn copies_are_matched_by_payload_and_the_learnt_timestamp_offset() {
        let log = SendLog::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Two identical payloads (a steady tone) and a unique one.
        log.record(1, &[7; 100], 1000, ms(0));
        log.record(1, &[7; 100], 2000, ms(20));
        log.record(1, &[8; 100], 3000, ms(40));
        let mut probe = DelayProbe::new(t0);
        // A repeated payload cannot fix the offset yet.
        log.observe(1, &rtp(501_000, &[7; 100]), ms(3), &mut probe);
        assert!(probe.offset.is_none());
        log.observe(1, &rtp(503_000, &[8; 100]), ms(43), &mut probe);
        assert_eq!(probe.offset, Some(500_000));
        log.observe(1, &rtp(502_000, &[7; 100]), ms(25), &mut probe);
        // Another track's payload is not this one's.
        log.observe(0, &rtp(503_000, &[8; 100]), ms(44), &mut probe);
        let d = log.delays();
        assert_eq!((d.matched, d.unmatched, d.cached, d.sent), (2, 2, 0, 3));
        assert_eq!(
            d.histogram.max() / 1000,
            5,
            "25 ms arrival of the 20 ms send"
        );
        assert_eq!(d.histogram.min() / 1000, 3);
        // A listener that set up after the 20 ms send got that packet from
        // a cache.
        let mut late = DelayProbe::new(ms(30));
        log.observe(1, &rtp(503_000, &[8; 100]), ms(50), &mut late);
        log.observe(1, &rtp(502_000, &[7; 100]), ms(50), &mut late);
        let d = log.delays();
        assert_eq!((d.matched, d.cached), (3, 1));
    }

    #[test]
    fn send_times_older_than_keep_are_forgotten() {
        let log = SendLog::default();
        let t0 = Instant::now();
        log.record(0, &[1; 10], 0, t0);
        log.record(0, &[2; 10], 1, t0 + KEEP + Duration::from_millis(1));
        assert_eq!(log.lock().sent.len(), 1);
        assert_eq!(log.lock().order.len(), 1);
    }
}
