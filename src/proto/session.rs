//! The RTSP session state machine (RFC 2326 §A.1): Init → Ready → Playing
//! for a client that plays, Init → Ready → Recording for one that publishes
//! (§A.2; a session's mode is fixed by its first SETUP).
//!
//! ```text
//!            SETUP            PLAY
//!   Init ───────────► Ready ───────► Playing
//!                     ▲  ▲  ◄─────── │  │
//!                     │  │   PAUSE   │  │ end of media
//!                     │  └───────────┼──┘
//!                     └── SETUP ─────┘ (455 while Playing)
//!   TEARDOWN (aggregate) from any state destroys the session.
//! ```
//!
//! A session is bound to the client IP that created it: requests naming it
//! from elsewhere get 454 (cf. CVE-2026-41470). This type decides statuses
//! and transitions only; the server carries out the effects (starting and
//! stopping streams) and owns the clock.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::error::Error;
use super::rtsp::range::{NptRange, NptTime};
use super::rtsp::session_header::SessionHeader;
use super::rtsp::Request;
use super::track_map::TrackMap;

/// RFC 2326 Appendix A server states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Playing,
    Recording,
}

/// Whether a session receives streams or sends them (RFC 2326 §12.39
/// `mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Play,
    Record,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Init => "Init",
            Self::Ready => "Ready",
            Self::Playing => "Playing",
            Self::Recording => "Recording",
        }
    }
}

/// Where one packet stream goes: a client's UDP port, or a channel
/// interleaved on one of the server's RTSP connections (RFC 2326 §10.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    Udp(SocketAddr),
    Interleaved { conn: u64, channel: u8 },
}

impl Dest {
    /// The UDP address, if this is one.
    pub fn udp(&self) -> Option<SocketAddr> {
        match self {
            Self::Udp(a) => Some(*a),
            Self::Interleaved { .. } => None,
        }
    }
}

/// Where one track's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackTransport {
    pub rtp: Dest,
    pub rtcp: Dest,
}

/// Which part of the presentation a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Aggregate,
    Track(usize),
}

/// What a PLAY asks the streams to do, after validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayRequest {
    /// `None`: resume where the session stopped (or at the live edge).
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// The session's run number for this PLAY. The pacer reports the end of
    /// a run with it, so that an end from an earlier run, which may arrive
    /// after this PLAY was accepted, is recognised as stale
    /// ([`Session::ended`]).
    pub run: u32,
}

/// What a TEARDOWN removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teardown {
    /// The whole session is gone.
    All,
    /// Only this track stopped; others continue.
    Track(usize),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub client_ip: IpAddr,
    /// The presentation path all tracks belong to (aggregate control).
    pub presentation: String,
    tracks: TrackMap<TrackTransport>,
    state: State,
    mode: Mode,
    timeout: Duration,
    last_seen: Instant,
    /// Counts PLAYs; see [`PlayRequest::run`].
    run: u32,
}

/// The session a request names in its `Session` header (RFC 2326 §12.37),
/// if any; two Session headers are a bad request, and an unparseable one
/// names no session there is.
pub fn session_id(req: &Request) -> Result<Option<String>, Error> {
    let mut all = req.headers.get_all("Session");
    let Some(v) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(Error::BadRequest("two Session headers"));
    }
    let h: SessionHeader = v.parse().map_err(|_| Error::SessionNotFound)?;
    Ok(Some(h.id))
}

impl Session {
    pub fn new(
        id: String,
        client_ip: IpAddr,
        presentation: String,
        timeout: Duration,
        now: Instant,
    ) -> Self {
        Self {
            id,
            client_ip,
            presentation,
            tracks: TrackMap::default(),
            state: State::Init,
            mode: Mode::Play,
            timeout,
            last_seen: now,
            run: 0,
        }
    }

    /// The same session, for a publisher (SETUP with `mode=record`).
    pub fn recording(mut self) -> Self {
        self.mode = Mode::Record;
        self
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn tracks(&self) -> impl Iterator<Item = (usize, &TrackTransport)> {
        self.tracks.iter()
    }

    /// 454 unless the request comes from the client that owns the session.
    /// A foreign client must not learn the session exists.
    pub fn authorize(&self, peer: IpAddr) -> Result<(), Error> {
        if peer == self.client_ip {
            Ok(())
        } else {
            Err(Error::SessionNotFound)
        }
    }

    /// Any request naming the session, and RTCP from its client, keeps it alive.
    pub fn touch(&mut self, now: Instant) {
        self.last_seen = self.last_seen.max(now);
    }

    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_seen) >= self.timeout
    }

    /// SETUP of `track` of `presentation`. A repeated SETUP of a track
    /// changes its transport (never a second sender); returns whether the
    /// track is new.
    pub fn setup(
        &mut self,
        presentation: &str,
        track: usize,
        transport: TrackTransport,
    ) -> Result<bool, Error> {
        if presentation != self.presentation {
            return Err(Error::InvalidState(
                "session belongs to another presentation",
            ));
        }
        if matches!(self.state, State::Playing | State::Recording) {
            return Err(Error::InvalidState(self.state.name()));
        }
        // One lower transport per session, and never two tracks on one
        // interleaved channel (ROBUSTNESS B4#28, B5#47).
        for (other, t) in self.tracks.iter() {
            if t.rtp.udp().is_some() != transport.rtp.udp().is_some() {
                return Err(Error::UnsupportedTransport(
                    "the session already uses another lower transport".into(),
                ));
            }
            if other == track {
                continue;
            }
            let mine = [transport.rtp, transport.rtcp];
            if mine
                .iter()
                .any(|d| d.udp().is_none() && (*d == t.rtp || *d == t.rtcp))
            {
                return Err(Error::UnsupportedTransport(format!(
                    "interleaved channel already used by track {other}"
                )));
            }
        }
        let new = self.tracks.insert(track, transport).is_none();
        self.state = State::Ready;
        Ok(new)
    }

    /// The `Session` header of a response: the id and the timeout that
    /// clients should keep it alive within.
    pub fn header(&self) -> String {
        SessionHeader {
            id: self.id.clone(),
            timeout: Some(self.timeout.as_secs().clamp(1, 86_400) as u32),
        }
        .to_string()
    }

    /// PLAY. `duration` is `None` for live sources.
    pub fn play(
        &mut self,
        scope: Scope,
        range: Option<&NptRange>,
        duration: Option<f64>,
    ) -> Result<PlayRequest, Error> {
        if self.state == State::Init {
            return Err(Error::InvalidState(self.state.name()));
        }
        if self.mode == Mode::Record {
            return Err(Error::InvalidState("a recording session cannot PLAY"));
        }
        self.check_scope(scope)?;
        let req = match range {
            None => PlayRequest {
                start: None,
                end: None,
                run: 0,
            },
            Some(r) => {
                let start = match r.start {
                    NptTime::Now => None,
                    NptTime::Seconds(s) => Some(s),
                };
                PlayRequest {
                    start,
                    end: r.end,
                    run: 0,
                }
            }
        };
        if let Some(d) = duration {
            if let Some(s) = req.start {
                if s >= d {
                    return Err(Error::InvalidRange(format!(
                        "start {s:.3} is not before the end {d:.3}"
                    )));
                }
            }
        }
        self.state = State::Playing;
        self.run = self.run.wrapping_add(1);
        Ok(PlayRequest {
            end: req.end.map(|e| duration.map_or(e, |d| e.min(d))),
            run: self.run,
            ..req
        })
    }

    /// PAUSE. Returns whether streams were running. PAUSE in Ready is a
    /// harmless no-op (RFC 2326 §10.6 allows it; GStreamer sends PAUSE
    /// before TEARDOWN).
    pub fn pause(&mut self, scope: Scope) -> Result<bool, Error> {
        if self.state == State::Init {
            return Err(Error::InvalidState(self.state.name()));
        }
        self.check_scope(scope)?;
        let was_playing = matches!(self.state, State::Playing | State::Recording);
        self.state = State::Ready;
        Ok(was_playing)
    }

    /// RECORD (RFC 2326 §10.11): a publishing session starts (or resumes)
    /// sending. Returns whether it was already recording.
    pub fn record(&mut self, scope: Scope) -> Result<bool, Error> {
        if self.mode != Mode::Record {
            return Err(Error::InvalidState("the session was set up to play"));
        }
        if self.state == State::Init {
            return Err(Error::InvalidState(self.state.name()));
        }
        self.check_scope(scope)?;
        let was = self.state == State::Recording;
        self.state = State::Recording;
        Ok(was)
    }

    /// The streams of PLAY number `run` ran to their end: back to Ready so
    /// the client may PLAY again. An end reported for an earlier run is
    /// stale (a PLAY that raced the end of the previous run is streaming)
    /// and changes nothing. Returns whether the session went to Ready.
    pub fn ended(&mut self, run: u32) -> bool {
        if self.state == State::Playing && self.run == run {
            self.state = State::Ready;
            return true;
        }
        false
    }

    /// TEARDOWN of the aggregate or of one track.
    pub fn teardown(&mut self, scope: Scope) -> Teardown {
        match scope {
            Scope::Track(t) if self.tracks.len() > 1 && self.tracks.contains(t) => {
                self.tracks.remove(t);
                Teardown::Track(t)
            }
            _ => Teardown::All,
        }
    }

    /// Aggregate control: a track URL is accepted for PLAY/PAUSE only when
    /// it is the session's single track (RFC 2326 §C.1.1; otherwise 460).
    fn check_scope(&self, scope: Scope) -> Result<(), Error> {
        match scope {
            Scope::Aggregate => Ok(()),
            Scope::Track(t) if self.tracks.len() == 1 && self.tracks.contains(t) => Ok(()),
            Scope::Track(_) => Err(Error::OnlyAggregate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tt(port: u16) -> TrackTransport {
        TrackTransport {
            rtp: Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port))),
            rtcp: Dest::Udp(SocketAddr::from(([127, 0, 0, 1], port + 1))),
        }
    }

    fn tcp(channel: u8) -> TrackTransport {
        TrackTransport {
            rtp: Dest::Interleaved { conn: 1, channel },
            rtcp: Dest::Interleaved {
                conn: 1,
                channel: channel + 1,
            },
        }
    }

    #[test]
    fn recording_sessions_record_and_never_play() {
        let now = Instant::now();
        let mut r = session(now).recording();
        assert_eq!(r.mode(), Mode::Record);
        assert!(
            matches!(r.record(Scope::Aggregate), Err(Error::InvalidState(_))),
            "before SETUP"
        );
        r.setup("a.wav", 0, tt(5000)).unwrap();
        assert!(matches!(
            r.play(Scope::Aggregate, None, None),
            Err(Error::InvalidState(_))
        ));
        assert_eq!(r.record(Scope::Aggregate), Ok(false));
        assert_eq!(r.state(), State::Recording);
        assert_eq!(
            r.record(Scope::Track(0)),
            Ok(true),
            "one track: its URL is the aggregate"
        );
        assert!(matches!(
            r.setup("a.wav", 0, tt(5002)),
            Err(Error::InvalidState("Recording"))
        ));
        r.ended(0);
        assert_eq!(
            r.state(),
            State::Recording,
            "only played streams end by themselves"
        );
        assert_eq!(r.pause(Scope::Aggregate), Ok(true));
        assert_eq!(r.state(), State::Ready);
        let mut p = session(now);
        p.setup("a.wav", 0, tt(5000)).unwrap();
        assert!(matches!(
            p.record(Scope::Aggregate),
            Err(Error::InvalidState(_))
        ));
    }

    #[test]
    fn one_lower_transport_and_distinct_channels() {
        let now = Instant::now();
        let mut s = session(now);
        s.setup("a.wav", 0, tcp(0)).unwrap();
        let e = s.setup("a.wav", 1, tt(5000)).unwrap_err();
        assert_eq!(e.status().0, 461, "UDP track in a TCP session");
        let e = s.setup("a.wav", 1, tcp(1)).unwrap_err();
        assert_eq!(e.status().0, 461, "channel 1 is track 0's RTCP");
        s.setup("a.wav", 1, tcp(2)).unwrap();
        // Track 0 may move to other channels on a repeated SETUP.
        s.setup("a.wav", 0, tcp(4)).unwrap();
    }

    fn session(now: Instant) -> Session {
        Session::new(
            "abc".into(),
            [127, 0, 0, 1].into(),
            "a.wav".into(),
            Duration::from_secs(60),
            now,
        )
    }

    fn npt(start: f64, end: Option<f64>) -> NptRange {
        NptRange {
            start: NptTime::Seconds(start),
            end,
        }
    }

    #[test]
    fn lifecycle() {
        let now = Instant::now();
        let mut s = session(now);
        assert_eq!(
            s.play(Scope::Aggregate, None, Some(5.0)),
            Err(Error::InvalidState("Init"))
        );
        assert_eq!(s.pause(Scope::Aggregate), Err(Error::InvalidState("Init")));
        assert_eq!(s.setup("a.wav", 0, tt(5000)), Ok(true));
        assert_eq!(s.state(), State::Ready);
        assert_eq!(
            s.pause(Scope::Aggregate),
            Ok(false),
            "PAUSE in Ready is a no-op"
        );
        let p = s
            .play(Scope::Aggregate, Some(&npt(2.5, Some(9.0))), Some(5.0))
            .unwrap();
        assert_eq!(
            p,
            PlayRequest {
                start: Some(2.5),
                end: Some(5.0),
                run: 1,
            }
        );
        assert_eq!(s.state(), State::Playing);
        assert!(
            s.setup("a.wav", 0, tt(5002)).is_err(),
            "SETUP while playing is 455"
        );
        assert_eq!(s.pause(Scope::Aggregate), Ok(true));
        let again = s.play(Scope::Track(0), None, Some(5.0)).unwrap();
        assert_eq!(again.start, None);
        assert!(!s.ended(again.run - 1), "an earlier run's end is stale");
        assert_eq!(s.state(), State::Playing);
        assert!(s.ended(again.run));
        assert_eq!(s.state(), State::Ready);
        assert_eq!(s.teardown(Scope::Aggregate), Teardown::All);
    }

    #[test]
    fn ranges_beyond_the_end_are_457() {
        let mut s = session(Instant::now());
        s.setup("a.wav", 0, tt(5000)).unwrap();
        for start in [5.0, 3600.0] {
            assert!(matches!(
                s.play(Scope::Aggregate, Some(&npt(start, None)), Some(5.0)),
                Err(Error::InvalidRange(_))
            ));
        }
        assert_eq!(s.state(), State::Ready, "a refused PLAY changes nothing");
        let now_range = NptRange {
            start: NptTime::Now,
            end: None,
        };
        assert_eq!(
            s.play(Scope::Aggregate, Some(&now_range), None)
                .unwrap()
                .start,
            None
        );
    }

    #[test]
    fn setup_rules() {
        let mut s = session(Instant::now());
        assert!(
            s.setup("b.wav", 0, tt(5000)).is_err(),
            "different presentation"
        );
        s.setup("a.wav", 0, tt(5000)).unwrap();
        assert_eq!(
            s.setup("a.wav", 0, tt(5002)),
            Ok(false),
            "repeat SETUP changes transport"
        );
        assert_eq!(s.tracks().count(), 1);
        s.setup("a.wav", 1, tt(5004)).unwrap();
        assert_eq!(
            s.play(Scope::Track(0), None, None),
            Err(Error::OnlyAggregate)
        );
        assert_eq!(s.teardown(Scope::Track(1)), Teardown::Track(1));
        assert_eq!(s.teardown(Scope::Track(0)), Teardown::All);
    }

    #[test]
    fn ownership_and_expiry() {
        let t0 = Instant::now();
        let mut s = session(t0);
        assert_eq!(
            s.authorize([127, 0, 0, 2].into()),
            Err(Error::SessionNotFound)
        );
        assert!(s.authorize([127, 0, 0, 1].into()).is_ok());
        assert!(!s.expired(t0 + Duration::from_secs(59)));
        s.touch(t0 + Duration::from_secs(30));
        assert!(!s.expired(t0 + Duration::from_secs(89)));
        assert!(s.expired(t0 + Duration::from_secs(90)));
    }
}
