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
//!  engine: Ready ──▶ memfd (one page, NOT_MAPPED), mapped ──Tally frame + fd──▶ worker: map it, store 0
//!  worker: bytes read, or a job's function loaded: store begun + 1 (the next task is in hand)
//!          a Task frame: begun += 1, store begun, then run it
//!  engine, the worker dead: stored == answered? ─yes─▶ requeue its first task
//!                                               └no──▶ fail it (as always)
//! ```
//!
//! So only a worker that had taken nothing for its next task (it died in
//! the finalizer of the result it had sent, or while it waited) gives that
//! task back: one that dies loading the task's function or reading its
//! arguments fails it, as before, and a task that kills every worker it
//! reaches cannot go round the pool.
//!
//! Where memfds cannot be had, the page is a file in /dev/shm (or the
//! temporary directory), unlinked as soon as it is made.
//!
//! The count is the worker's word: only the exact value "every task it
//! answered, no more" requeues; anything else is read as a task begun, the
//! answer without a tally (as is a worker that never mapped it, which left
//! `NOT_MAPPED` there, and one that broke the protocol).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::engine::outbox::{Payload, PayloadBytes};
use crate::platform::memory::{map_populated, new_memfd_named};

/// Bytes of the count in the frame and the memfd.
const COUNT_BYTES: usize = 8;
/// The count until the worker has mapped it.
const NOT_MAPPED: u64 = u64::MAX;

/// A mapping of a tally's memfd, on either side.
struct CountMap(NonNull<AtomicU64>);

// SAFETY: the mapping is owned by this value alone in its process and is
// only ever accessed through the atomic.
unsafe impl Send for CountMap {}
unsafe impl Sync for CountMap {}

impl CountMap {
    fn map(fd: BorrowedFd<'_>) -> io::Result<CountMap> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        Ok(CountMap(
            map_populated(COUNT_BYTES, prot, fd.as_raw_fd())?.cast(),
        ))
    }

    fn count(&self) -> &AtomicU64 {
        // SAFETY: a page-aligned shared mapping of at least 8 bytes, alive
        // as long as `self`; every process that shares it uses the atomic.
        unsafe { self.0.as_ref() }
    }
}

impl Drop for CountMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping of COUNT_BYTES, unmapped once.
        unsafe { libc::munmap(self.0.as_ptr().cast(), COUNT_BYTES) };
    }
}

/// The engine's side: its mapping of the count.
pub struct Tally(CountMap);

impl Tally {
    /// A new count (`NOT_MAPPED`), and the payload of the frame that hands
    /// its file over (closed here once sent: a pool keeps no descriptor per
    /// worker for it). None where no file could be made (deaths are then
    /// read as without a tally).
    pub fn create() -> Option<(Tally, Payload)> {
        let fd = count_file().ok()?;
        // SAFETY: ftruncate and fcntl on a descriptor we own.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), COUNT_BYTES as libc::off_t) != 0 {
                return None;
            }
            // A memfd keeps its size for good (a file in /dev/shm cannot be
            // sealed; no process but ours has its descriptor once the worker
            // has mapped it, and its name is gone).
            libc::fcntl(
                fd.as_raw_fd(),
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW,
            );
        }
        let map = CountMap::map(fd.as_fd()).ok()?;
        // Workers forked from this process later must not share it.
        // SAFETY: advice on our own new mapping; failure changes nothing.
        unsafe { libc::madvise(map.0.as_ptr().cast(), COUNT_BYTES, libc::MADV_DONTFORK) };
        map.count().store(NOT_MAPPED, Ordering::Release);
        Some((Tally(map), Arc::new(CountFd(fd))))
    }

    /// Tasks the worker says it has begun (or taken up: see the header).
    pub fn begun(&self) -> u64 {
        self.0.count().load(Ordering::Acquire)
    }
}

/// A file for the count: a memfd, or where memfds cannot be had, a file
/// in /dev/shm (else the temporary directory) unlinked at once. Its name
/// shows in the workers' /proc/PID/maps.
fn count_file() -> io::Result<OwnedFd> {
    new_memfd_named(c"ferropool-tally").or_else(|_| unlinked_temp_file())
}

fn unlinked_temp_file() -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStringExt;
    let mut last = io::Error::other("no directory for a temporary file");
    for dir in [std::path::PathBuf::from("/dev/shm"), std::env::temp_dir()] {
        let mut template = dir
            .join("ferropool-tally-XXXXXX")
            .into_os_string()
            .into_vec();
        template.push(0);
        // SAFETY: a writable NUL-terminated template, as mkostemp requires.
        let raw = unsafe { libc::mkostemp(template.as_mut_ptr().cast(), libc::O_CLOEXEC) };
        if raw < 0 {
            last = io::Error::last_os_error();
            continue;
        }
        // SAFETY: mkostemp returned a new descriptor that nobody else owns;
        // `template` now holds the file's NUL-terminated name.
        let fd = unsafe {
            libc::unlink(template.as_ptr().cast());
            OwnedFd::from_raw_fd(raw)
        };
        return Ok(fd);
    }
    Err(last)
}

/// The count's file on its way to the worker.
struct CountFd(OwnedFd);

impl PayloadBytes for CountFd {
    /// What the frame announces is the count's length; the count itself
    /// is the memfd's.
    fn bytes(&self) -> &[u8] {
        &[0; COUNT_BYTES]
    }

    fn memfd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }
}

/// Whether a dead worker had begun the first task it held: always, unless
/// its tally says it had taken up exactly the tasks it answered.
pub fn began_first_held(stored: Option<u64>, answered: u64) -> bool {
    stored != Some(answered)
}

/// The worker's side: its mapping of the engine's memfd.
pub struct WorkerTally {
    map: CountMap,
    begun: u64,
}

impl WorkerTally {
    /// Maps the memfd the engine sent (its own, trusted by the worker).
    pub fn map(fd: OwnedFd) -> io::Result<WorkerTally> {
        let file = std::fs::File::from(fd);
        if file.metadata()?.len() < COUNT_BYTES as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a tally memfd too short",
            ));
        }
        // The mapping outlives the descriptor (closed with `file`).
        let map = CountMap::map(file.as_fd())?;
        map.count().store(0, Ordering::Release);
        Ok(WorkerTally { map, begun: 0 })
    }

    /// Something for the next task is in hand (bytes read, a job's function
    /// to load): from here on, dying loses that task.
    pub fn taking_next(&self) {
        self.map.count().store(self.begun + 1, Ordering::Release);
    }

    /// Counts one more task begun; called before the task is looked at.
    pub fn begin_task(&mut self) {
        self.begun += 1;
        self.map.count().store(self.begun, Ordering::Release);
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
        assert!(began_first_held(Some(NOT_MAPPED), 0)); // a tally it never mapped
    }

    #[test]
    fn without_memfds_the_count_lives_in_an_unlinked_file() {
        let fd = unlinked_temp_file().expect("a temporary file");
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let link = link.expect("its name").to_string_lossy().into_owned();
        assert!(
            link.contains("ferropool-tally-") && link.ends_with("(deleted)"),
            "{link}"
        );
    }

    #[test]
    fn the_worker_count_reaches_the_engine() {
        let (tally, payload) = Tally::create().expect("a tally");
        let fd = payload.memfd().expect("a memfd").try_clone_to_owned();
        drop(payload); // the engine's copy goes once sent
        assert_eq!(tally.begun(), NOT_MAPPED);
        let mut worker = WorkerTally::map(fd.expect("dup")).expect("map");
        assert_eq!(tally.begun(), 0);
        worker.taking_next();
        assert_eq!(tally.begun(), 1);
        worker.begin_task();
        assert_eq!(tally.begun(), 1);
        worker.begin_task();
        assert_eq!(tally.begun(), 2);
    }
}
