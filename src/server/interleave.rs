//! RTP and RTCP interleaved on RTSP connections (RFC 2326 §10.12): every
//! connection has a bounded queue of frames that the pacing thread fills
//! and the connection's task writes between responses.
//!
//! A connection that does not keep up loses frames (counted), never stalls
//! the pacing thread or any other client; the per-client queue length is
//! `--max-client-queue`.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

/// One frame to write: channel and packet.
pub(crate) type Frame = (u8, Bytes);

/// The queues of the connections that stream interleaved; a connection
/// gets one at its first interleaved SETUP (UDP-only connections, the
/// many, pay nothing).
#[derive(Debug, Default)]
pub(crate) struct Sinks {
    queues: Mutex<HashMap<u64, Sink>>,
}

#[derive(Debug)]
struct Sink {
    tx: mpsc::Sender<Frame>,
    /// Until the connection's task takes it.
    rx: Option<mpsc::Receiver<Frame>>,
}

/// What happened to a batch of frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) queued: usize,
    /// The connection's queue was full.
    pub(crate) dropped: usize,
}

impl Sinks {
    /// Opens the queue of connection `conn`, holding `capacity` frames, if
    /// it has none yet.
    pub(crate) fn open(&self, conn: u64, capacity: usize) {
        self.lock().entry(conn).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            Sink { tx, rx: Some(rx) }
        });
    }

    /// The receiving end of `conn`'s queue, once, for its task.
    pub(crate) fn take_receiver(&self, conn: u64) -> Option<mpsc::Receiver<Frame>> {
        self.lock().get_mut(&conn)?.rx.take()
    }

    pub(crate) fn close(&self, conn: u64) {
        self.lock().remove(&conn);
    }

    /// Queues every `(conn, channel, packet)`; frames for closed connections
    /// are discarded.
    pub(crate) fn deliver<'a>(
        &self,
        frames: impl IntoIterator<Item = (u64, u8, &'a Bytes)>,
    ) -> Delivered {
        let mut d = Delivered::default();
        let queues = self.lock();
        for (conn, channel, data) in frames {
            let Some(q) = queues.get(&conn) else { continue };
            match q.tx.try_send((channel, data.clone())) {
                Ok(()) => d.queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => d.dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sink>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Appends `$`, channel, length and `data` to `out`. Packets over 65535
/// bytes cannot be framed and are skipped (ours are at most the MTU).
pub(crate) fn write_frame(out: &mut Vec<u8>, channel: u8, data: &[u8]) {
    let Ok(len) = u16::try_from(data.len()) else {
        return;
    };
    out.extend_from_slice(&[b'$', channel]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_and_closed_is_skipped() {
        let sinks = Sinks::default();
        assert!(
            sinks.take_receiver(1).is_none(),
            "no queue before it is opened"
        );
        sinks.open(1, 2);
        sinks.open(1, 2);
        let mut rx = sinks.take_receiver(1).unwrap();
        assert!(sinks.take_receiver(1).is_none(), "taken once");
        let p = Bytes::from_static(b"rtp");
        let d = sinks.deliver([(1, 0, &p), (1, 1, &p), (1, 0, &p), (9, 0, &p)]);
        assert_eq!(
            d,
            Delivered {
                queued: 2,
                dropped: 1
            }
        );
        assert_eq!(rx.try_recv().unwrap(), (0, p.clone()));
        sinks.close(1);
        assert_eq!(sinks.deliver([(1, 0, &p)]), Delivered::default());
        let mut out = Vec::new();
        write_frame(&mut out, 3, b"ab");
        assert_eq!(out, b"$\x03\x00\x02ab");
    }
}
