//! Issue 10: once a connection's read buffer exists, reading more of a
//! request allocates nothing, however the request is split. Drives
//! `server::input::Input` (the buffer and request parser a connection uses)
//! with one byte per read, under a global allocator that counts the
//! allocations made by this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use rtspd::proto::rtsp::{Limits, Parsed};
use rtspd::server::input::{Input, READ_CHUNK, READ_MIN_ROOM};
use tokio::io::{AsyncRead, ReadBuf};

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is passed on unchanged to the system allocator; the
// counter is a const-initialised thread local, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A socket that has one byte ready per read.
struct OneBytePerRead<'a>(&'a [u8]);

impl AsyncRead for OneBytePerRead<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((&first, rest)) = self.0.split_first() {
            buf.put_slice(&[first]);
            self.0 = rest;
        }
        Poll::Ready(Ok(()))
    }
}

/// A valid OPTIONS head of exactly `size` bytes: padding header lines of
/// 2,000 bytes at most (under the line cap).
fn padded_head(size: usize, cseq: u32) -> Vec<u8> {
    let mut head = format!("OPTIONS * RTSP/1.0\r\nCSeq: {cseq}\r\n").into_bytes();
    let mut i = 0;
    while size - head.len() > 2 {
        let name = format!("X-Pad-{i}: ");
        let room = size - head.len() - 2 - name.len() - 2;
        head.extend(name.as_bytes());
        head.resize(head.len() + room.min(2000 - name.len()), b'p');
        head.extend(b"\r\n");
        i += 1;
    }
    head.extend(b"\r\n");
    assert_eq!(head.len(), size);
    head
}

/// Reads `head` into `input` one byte per read, parsing after each read as
/// the connection does. Returns the allocations made by the first read
/// (the buffer), by the reads after it but the last, and by the last (which
/// completes the request and builds it).
fn trickle(input: &mut Input, head: &[u8]) -> (u64, u64, u64) {
    let mut socket = OneBytePerRead(head);
    let mut cx = Context::from_waker(Waker::noop());
    let mut read_one = |input: &mut Input| {
        let polled = input.poll_read_from(&mut cx, Pin::new(&mut socket));
        assert!(matches!(polled, Poll::Ready(Ok(1))), "{polled:?}");
        input.next_message()
    };
    let start = allocations();
    assert_eq!(read_one(input), Ok(Parsed::Incomplete));
    let first = allocations() - start;
    let start = allocations();
    for n in 2..head.len() {
        assert_eq!(read_one(input), Ok(Parsed::Incomplete), "read {n}");
    }
    let middle = allocations() - start;
    let start = allocations();
    let last = read_one(input);
    let completing = allocations() - start;
    assert!(
        matches!(&last, Ok(Parsed::Request { consumed, .. }) if *consumed == head.len()),
        "{last:?}"
    );
    assert!(input.is_empty());
    (first, middle, completing)
}

#[test]
fn one_byte_reads_allocate_nothing_once_the_buffer_exists() {
    let mut input = Input::new(Limits::default());
    // Heads that fit the first reserve with room to spare: not a single
    // allocation between the first read and the one completing the request,
    // on two requests in a row on one connection.
    let fits = READ_CHUNK - READ_MIN_ROOM;
    for (cseq, size) in [(1, 512), (2, 2048), (3, fits), (4, 512)] {
        let head = padded_head(size, cseq);
        let (first, middle, _) = trickle(&mut input, &head);
        assert_eq!(
            first, 1,
            "{size}-byte head: the first read reserves the buffer"
        );
        assert_eq!(
            middle,
            0,
            "{size}-byte head: allocations over {} reads",
            size - 2
        );
        // Between requests the connection holds no buffer.
        input.release_if_empty();
        assert_eq!(input.capacity(), 0);
    }
}

#[test]
fn the_buffer_grows_by_doubling_not_per_read() {
    // Larger heads outgrow the first reserve: the buffer doubles, so 16 KiB
    // read one byte at a time cost three more allocations in all.
    for (size, growths) in [(8192, 2), (16384, 3)] {
        let mut input = Input::new(Limits::default());
        let head = padded_head(size, 1);
        let (first, middle, _) = trickle(&mut input, &head);
        assert_eq!((first, middle), (1, growths), "{size}-byte head");
    }
}
