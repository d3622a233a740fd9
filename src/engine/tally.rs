//! How many tasks a worker has begun, kept in a page of shared memory the
//! engine hands each worker when it is ready: when a worker dies, the engine
//! reads it to tell a task the worker had begun (lost with it) from one that
//! was only sent (run by another worker). A task is sent as soon as its
//! worker is free, so a worker that dies between two tasks (killed while
//! idle, or by a finalizer that runs once a result is sent) would otherwise
//! take with it a task that never ran, which the stdlib's shared queue
//! never loses.
//!
//! ```text
//!  engine: Ready ──▶ memfd (one page), mapped ──Tally frame + fd──▶ worker: map it
//!  worker: each Task frame: begun += 1 (a store), then run it
//!  engine, the worker dead: begun == answered? ─yes─▶ requeue its first task
//!                                              └no──▶ fail it (as always)
//! ```
//!
//! The count is the worker's word: only the exact value "every task it
//! answered, no more" requeues; anything else is read as a task begun, the
//! answer without a tally.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::outbox::{Payload, PayloadBytes};
use crate::engine::shm::SharedBuf;
use crate::platform::memory::map_populated;

/// Bytes of the count in the frame and the memfd.
const COUNT_BYTES: usize = 8;

/// The engine's side: the memfd it hands over and its own mapping of it.
pub struct Tally(SharedBuf);

impl Tally {
    /// A new count (zero), as the payload of the frame that hands it over;
    /// None where memfds cannot be had (deaths are then read as today).
    pub fn create() -> Option<Arc<Tally>> {
        Some(Arc::new(Tally(SharedBuf::create(COUNT_BYTES).ok()?)))
    }

    pub fn as_payload(self: &Arc<Self>) -> Payload {
        Arc::clone(self) as Payload
    }

    /// Tasks the worker says it has begun.
    pub fn begun(&self) -> u64 {
        self.0.counter().load(Ordering::Acquire)
    }
}

impl PayloadBytes for Tally {
    /// What the frame announces is the count's length; the count itself
    /// is the memfd's, never read from here.
    fn bytes(&self) -> &[u8] {
        &[0; COUNT_BYTES]
    }

    fn memfd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.fd())
    }
}

/// Whether a dead worker had begun the first task it held: always, unless
/// its tally says it had begun exactly the tasks it answered.
pub fn began_first_held(begun: Option<u64>, answered: u64) -> bool {
    begun != Some(answered)
}

/// The worker's side: its mapping of the engine's memfd.
pub struct WorkerTally {
    count: NonNull<AtomicU64>,
    begun: u64,
}

// SAFETY: the mapping is owned by this value alone in this process (the
// worker's loop), is only accessed through an atomic, and `&self` gives no
// access to it.
unsafe impl Send for WorkerTally {}
unsafe impl Sync for WorkerTally {}

impl WorkerTally {
    /// Maps the memfd the engine sent (its own, trusted by the worker).
    pub fn map(fd: OwnedFd) -> io::Result<WorkerTally> {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::from(fd);
        if file.metadata()?.len() < COUNT_BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a tally memfd too short",
            ));
        }
        let ptr = map_populated(
            COUNT_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            file.as_fd().as_raw_fd(),
        )?;
        // The mapping outlives the descriptor (closed with `file`).
        Ok(WorkerTally {
            count: ptr.cast(),
            begun: 0,
        })
    }

    /// Counts one more task begun; called before the task is looked at.
    pub fn begin_task(&mut self) {
        self.begun += 1;
        // SAFETY: a page-aligned shared mapping of at least 8 bytes, alive
        // until `drop`; other processes touch it only atomically.
        unsafe { self.count.as_ref() }.store(self.begun, Ordering::Release);
    }
}

impl Drop for WorkerTally {
    fn drop(&mut self) {
        // SAFETY: our own mapping of COUNT_BYTES, unmapped once.
        unsafe { libc::munmap(self.count.as_ptr().cast(), COUNT_BYTES) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_answered_everything_it_began_held_an_unbegun_task() {
        assert!(!began_first_held(Some(4), 4));
        assert!(began_first_held(Some(5), 4));
    }

    #[test]
    fn any_other_word_or_none_reads_as_a_task_begun() {
        assert!(began_first_held(None, 0));
        assert!(began_first_held(Some(3), 4)); // fewer than it answered: garbage
        assert!(began_first_held(Some(u64::MAX), 4));
    }

    #[test]
    fn the_worker_count_reaches_the_engine() {
        let Some(tally) = Tally::create() else {
            return; // no memfds here: nothing to share
        };
        let fd = tally.0.fd().try_clone_to_owned().expect("dup");
        let mut worker = WorkerTally::map(fd).expect("map");
        assert_eq!(tally.begun(), 0);
        worker.begin_task();
        worker.begin_task();
        assert_eq!(tally.begun(), 2);
        assert_eq!(tally.bytes().len(), COUNT_BYTES);
    }
}
