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

/// The queues of every open connection.
#[derive(Debug, Default)]
pub(crate) struct Sinks {
    queues: Mutex<HashMap<u64, mpsc::Sender<Frame>>>,
}

/// What happened to a batch of frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) queued: usize,
    /// The connection's queue was full.
    pub(crate) dropped: usize,
}

impl Sinks {
    /// Opens the queue of connection `conn`, holding `capacity` frames.
    pub(crate) fn open(&self, conn: u64, capacity: usize) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.lock().insert(conn, tx);
        rx
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
            match q.try_send((channel, data.clone())) {
                Ok(()) => d.queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => d.dropped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        d
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Frame>>> {
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
        let mut rx = sinks.open(1, 2);
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
