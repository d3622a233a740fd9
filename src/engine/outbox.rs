//! A worker's pending output: frames waiting to be written to its socket.
//!
//! Small frames are copied into a shared inline buffer; a large payload is
//! referenced, not copied (it stays in the Python `bytes` the caller pickled),
//! and goes out with `writev` next to its header. A payload pickled into
//! shared memory goes as its memfd, sent with a frame that gives its length
//! (see `shm`).
//!
//! ```text
//!  [hdr task 1 | payload 1 | hdr task 2 ] [payload 2: 8 MiB, shared] [hdr+len task 3] [hdr task 4 ...]
//!   inline                                  Shared                    WithFd (+ memfd)  inline
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::engine::protocol::{self, Kind};

/// A task payload's bytes, wherever they are kept.
pub trait PayloadBytes: Send + Sync {
    fn bytes(&self) -> &[u8];
    /// The memfd holding exactly `bytes()` from offset 0, if it is in shared
    /// memory: then the memfd is sent instead of the bytes.
    fn memfd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl PayloadBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// Bytes handed to the engine: a Python `bytes` object, a plain vector, or
/// a payload pickled into memory the engine owns.
pub type Payload = Arc<dyn PayloadBytes>;

/// Where an outbox writes: a socket, which can also pass a descriptor.
pub trait FrameSink: Write {
    /// Writes from `bytes` with `fd` attached to the first byte sent.
    fn write_with_fd(&mut self, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize>;
}

impl FrameSink for UnixStream {
    fn write_with_fd(&mut self, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
        use std::os::fd::AsFd;
        crate::engine::shm::send_with_fd(self.as_fd(), bytes, fd)
    }
}

/// Payloads at least this large are written from where they are.
const SHARE_ABOVE: usize = 64 * 1024;
/// Most slices one `writev` takes.
const MAX_SLICES: usize = 64;

enum Chunk {
    Inline(Vec<u8>),
    Shared(Payload),
    /// A shared-memory frame (its bytes) and the payload whose memfd goes
    /// with its first byte.
    WithFd(Vec<u8>, Payload),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Inline(v) | Chunk::WithFd(v, _) => v,
            Chunk::Shared(p) => p.bytes(),
        }
    }
}

#[derive(Default)]
pub struct Outbox {
    chunks: VecDeque<Chunk>,
    /// Bytes of the first chunk already written.
    written: usize,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.written = 0;
    }

    fn inline_tail(&mut self) -> &mut Vec<u8> {
        if !matches!(self.chunks.back(), Some(Chunk::Inline(_))) {
            self.chunks.push_back(Chunk::Inline(Vec::new()));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Inline(v)) => v,
            _ => unreachable!("an inline chunk was just pushed"),
        }
    }

    /// Queues a frame, copying its payload.
    pub fn push(&mut self, kind: Kind, flags: u8, job: u64, index: u64, payload: &[u8]) {
        protocol::encode_into(self.inline_tail(), kind, flags, job, index, payload);
    }

    /// Queues a frame whose payload is shared: large ones are not copied.
    pub fn push_shared(&mut self, kind: Kind, flags: u8, job: u64, index: u64, payload: &Payload) {
        let bytes = payload.bytes();
        if payload.memfd().is_some() {
            let frame = protocol::shared_frame(kind, flags, job, index, bytes.len());
            self.chunks
                .push_back(Chunk::WithFd(frame, Arc::clone(payload)));
            return;
        }
        if bytes.len() < SHARE_ABOVE {
            self.push(kind, flags, job, index, bytes);
            return;
        }
        let header = protocol::header(kind, flags, job, index, bytes.len());
        self.inline_tail().extend_from_slice(&header);
        self.chunks.push_back(Chunk::Shared(Arc::clone(payload)));
    }

    /// Writes as much as the socket takes (one `writev`, or one `sendmsg`
    /// for a frame that passes a memfd). Returns the bytes written; `Ok(0)`
    /// only when nothing was pending.
    pub fn write_to<W: FrameSink>(&mut self, w: &mut W) -> io::Result<usize> {
        if let Some(Chunk::WithFd(frame, payload)) = self.chunks.front() {
            if self.written == 0 {
                if let Some(fd) = payload.memfd() {
                    let n = w.write_with_fd(frame, fd)?;
                    self.advance(n);
                    return Ok(n);
                }
            }
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(MAX_SLICES.min(self.chunks.len()));
        for (i, chunk) in self.chunks.iter().take(MAX_SLICES).enumerate() {
            // A memfd goes with its frame's first byte, in a call of its own.
            if i > 0 && matches!(chunk, Chunk::WithFd(..)) {
                break;
            }
            let bytes = chunk.bytes();
            slices.push(IoSlice::new(if i == 0 {
                &bytes[self.written..]
            } else {
                bytes
            }));
        }
        if slices.is_empty() {
            return Ok(0);
        }
        let n = w.write_vectored(&slices)?;
        self.advance(n);
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                return;
            };
            let left = front.bytes().len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.written = 0;
        }
        // A zero-length chunk at the front (an empty inline tail) is done too.
        while matches!(self.chunks.front(), Some(c) if c.bytes().len() == self.written) {
            self.chunks.pop_front();
            self.written = 0;
        }
    }

    /// Everything pending, as one byte string (for tests).
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (i, c) in self.chunks.iter().enumerate() {
            let b = c.bytes();
            v.extend_from_slice(if i == 0 { &b[self.written..] } else { b });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::FrameDecoder;

    /// A writer that takes at most `limit` bytes per call.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl FrameSink for Trickle {
        fn write_with_fd(&mut self, bytes: &[u8], _fd: BorrowedFd<'_>) -> io::Result<usize> {
            self.write(bytes)
        }
    }

    #[test]
    fn shared_and_inline_frames_arrive_whole_and_in_order() {
        let big: Payload = Arc::new(vec![7u8; 200_000]);
        let small: Payload = Arc::new(vec![1u8; 10]);
        let mut out = Outbox::new();
        out.push(Kind::Func, 1, 5, 0, b"f");
        out.push_shared(Kind::Task, 0, 5, 0, &big);
        out.push_shared(Kind::Task, 0, 5, 1, &small);
        assert_eq!(out.chunks.len(), 3, "inline, shared, inline");
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 4099,
        };
        while out.write_to(&mut sink).expect("write") > 0 {}
        assert!(out.is_empty());
        let mut dec = FrameDecoder::new();
        dec.feed(&sink.got);
        let frames: Vec<_> = std::iter::from_fn(|| dec.next_frame().expect("frame")).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].payload.len(), 200_000);
        assert_eq!(frames[2].payload, vec![1u8; 10]);
    }
}
