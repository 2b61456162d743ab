//! The bounded queues into the pacing thread: many senders (connection
//! tasks, publishers, pipe readers), one receiver (the pacing loop), built
//! on a mutex and condition variables.
//!
//! Why not `std::sync::mpsc`: its receiver (crossbeam's algorithm) spins,
//! yielding, while a sender that has claimed a slot finishes writing it.
//! The pacing thread runs at `SCHED_FIFO` where permitted, and yielding
//! never lets a normal-priority thread on the same core run: if a tokio
//! worker is preempted between claiming and filling a slot, the pacing
//! thread spins until the kernel's real-time throttling stops it (0.95 s
//! of every second by default), and every stream stalls for up to a
//! second. That happened when the whole server shared one core with
//! 1,000 listeners (docs/PERFORMANCE.md). Here a receiver that finds the
//! lock taken sleeps on it after a short spin, so the holder runs and
//! lets go.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
    /// The receiver waits on `readable`: a sender must wake it.
    receiver_waiting: bool,
    /// Senders waiting on `writable` for room.
    senders_waiting: usize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    readable: Condvar,
    writable: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing that holds the lock can panic midway (queue operations
        // only), so a poisoned lock's state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Creates a queue that holds at most `capacity` items (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
            receiver_waiting: false,
            senders_waiting: 0,
        }),
        capacity: capacity.max(1),
        readable: Condvar::new(),
        writable: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Why an item was not queued; it comes back.
#[derive(Debug)]
pub enum TrySendError<T> {
    Full(T),
    Disconnected(T),
}

/// Why nothing was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    Timeout,
    /// Every sender is gone and the queue is empty.
    Disconnected,
}

/// The sending end; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or its receiver is gone.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let s = self.shared.lock();
        if !s.receiver {
            return Err(TrySendError::Disconnected(item));
        }
        if s.items.len() >= self.shared.capacity {
            return Err(TrySendError::Full(item));
        }
        self.push(s, item);
        Ok(())
    }

    /// Queues `item` under the lock `s` and wakes a waiting receiver.
    fn push(&self, mut s: MutexGuard<'_, State<T>>, item: T) {
        s.items.push_back(item);
        let wake = s.receiver_waiting;
        drop(s);
        if wake {
            self.shared.readable.notify_one();
        }
    }

    /// Queues `item`, waiting while the queue is full (for plain threads,
    /// never the async runtime); gives it back if the receiver is gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut s = self.shared.lock();
        loop {
            if !s.receiver {
                return Err(item);
            }
            if s.items.len() < self.shared.capacity {
                break;
            }
            s.senders_waiting += 1;
            s = self
                .shared
                .writable
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
            s.senders_waiting -= 1;
        }
        self.push(s, item);
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.senders -= 1;
        let last = s.senders == 0;
        drop(s);
        if last {
            self.shared.readable.notify_all();
        }
    }
}

/// The receiving end (the pacing thread's).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The oldest item, if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let mut s = self.shared.lock();
        let item = s.items.pop_front();
        let wake = item.is_some() && s.senders_waiting > 0;
        drop(s);
        if wake {
            self.shared.writable.notify_one();
        }
        item
    }

    /// The oldest item, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                let wake = s.senders_waiting > 0;
                drop(s);
                if wake {
                    self.shared.writable.notify_one();
                }
                return Ok(item);
            }
            if s.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvTimeoutError::Timeout);
            }
            s.receiver_waiting = true;
            s = self
                .shared
                .readable
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            s.receiver_waiting = false;
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.receiver = false;
        drop(s);
        self.shared.writable.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_with_both_ends_going_away() {
        let (tx, rx) = channel(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv_timeout(Duration::ZERO), Ok(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        let tx2 = tx.clone();
        drop(tx);
        tx2.try_send(4).unwrap();
        drop(tx2);
        // What was queued is still received, then the end shows.
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)), Ok(4));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        );

        let (tx, rx) = channel::<u8>(1);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
        assert_eq!(tx.send(2), Err(2));
    }

    #[test]
    fn a_waiting_receiver_wakes_for_an_item_and_a_blocked_sender_for_room() {
        let (tx, rx) = channel(1);
        let t0 = Instant::now();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(1).unwrap();
            // The queue is full until the receiver takes 1.
            tx.send(2).unwrap();
            tx.send(3).unwrap();
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "woken, not timed out"
        );
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(3));
        sender.join().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
