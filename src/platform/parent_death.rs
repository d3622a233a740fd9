//! A worker must not outlive the process that started it (the engine's
//! process, or a forkserver pool's zygote), even when that process is
//! SIGKILLed.
//!
//! ```text
//!  native:    worker: prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills it
//!             when the thread that forked it ends
//!  fallback:  parent: one pipe per process, the lifeline; it alone keeps the
//!             write end (close-on-exec; every fork closes its copy at once,
//!             in a pthread_atfork handler)
//!             worker: the read end, and a thread blocked reading it: EOF
//!             means every write end is closed, so the parent is gone; the
//!             thread SIGKILLs the worker (with its process group if it
//!             leads one)
//! ```
//!
//! The fallback follows the parent *process*, not the thread that forked the
//! worker. A process made by a raw `clone` (no atfork handlers) that neither
//! execs nor exits would keep a write end, and with it the workers, alive.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};

use super::{check, native, Facility};
use crate::engine::sync::lock;

/// How a spawned worker (a fresh interpreter) learns its lifeline's number.
pub const LIFELINE_ENV: &str = "FERROPOOL_LIFELINE_FD";

/// This process's lifeline: (owner pid, read end). A forked child inherits
/// the record, but the pipe is its parent's.
static LIFELINE: Mutex<Option<(u32, RawFd)>> = Mutex::new(None);
/// The write end, for the atfork handler (which may take no lock).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

pub(super) fn probe_pdeathsig() -> io::Result<()> {
    let mut signal: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer, which
    // points at `signal` for the call's duration.
    check(unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut signal as *mut libc::c_int) }).map(drop)
}

/// In the child of every fork: its copy of the write end goes at once, or
/// the parent's death would never show as EOF. Only an atomic swap and
/// `close`: async-signal-safe, as a handler run right after fork must be.
extern "C" fn close_write_end_in_child() {
    let fd = WRITE_END.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: the child's copy of the write end, closed once.
        unsafe { libc::close(fd) };
    }
}

/// In a process about to fork or spawn workers: the read end of its
/// lifeline, for them (made on the first call), or None where the kernel's
/// parent-death signal serves (see `die_with_parent`). Call it before the
/// fork, from the thread that forks or spawns.
pub fn lifeline_for_children() -> io::Result<Option<RawFd>> {
    if native(Facility::Pdeathsig) {
        return Ok(None);
    }
    let me = std::process::id();
    let mut lifeline = lock(&LIFELINE);
    if let Some((owner, read)) = *lifeline {
        if owner == me {
            return Ok(Some(read));
        }
        // Inherited from our parent: its read end may be watched by this
        // process's own watcher thread; it stays open, unused here.
    }
    let mut ends = [-1 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into `ends`.
    check(unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) })?;
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that is async-signal-safe (see it);
        // a failure (ENOMEM) leaves forks holding the write end, which only
        // delays the workers' end until those children exit.
        unsafe { libc::pthread_atfork(None, None, Some(close_write_end_in_child)) };
    });
    WRITE_END.store(ends[1], Ordering::SeqCst);
    *lifeline = Some((me, ends[0]));
    Ok(Some(ends[0]))
}

/// Between fork and exec of a spawned worker: the kernel's parent-death
/// signal, or with `lifeline` (the fallback), that read end kept open
/// across exec (its number goes in `LIFELINE_ENV`). Only `prctl` and
/// `fcntl`: async-signal-safe, as `pre_exec` requires. Errors are ignored
/// as before: a worker that cannot be tied to its parent still works.
pub fn in_spawned_child(lifeline: Option<RawFd>) {
    match lifeline {
        // SAFETY: F_SETFD on a descriptor of this (child) process; it
        // changes this process's descriptor table only.
        Some(fd) => unsafe {
            libc::fcntl(fd, libc::F_SETFD, 0);
        },
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a plain integer.
        None => unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        },
    }
}

/// In a new worker: makes it die when its parent dies. `lifeline`: the read
/// end its parent gave it (fallback); None: the kernel's parent-death signal.
pub fn die_with_parent(lifeline: Option<RawFd>) -> io::Result<()> {
    let Some(fd) = lifeline else {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a plain integer.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        return check(rc).map(drop);
    };
    // Not for the worker's own children (a spawned worker got it without
    // close-on-exec).
    // SAFETY: F_SETFD on a descriptor we were handed; no memory involved.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    std::thread::Builder::new()
        .name("ferropool-lifeline".into())
        .spawn(move || {
            wait_for_eof(fd);
            kill_this_worker();
        })
        .map(drop)
}

/// Blocks until `fd` (a pipe's read end nobody writes) reads EOF.
fn wait_for_eof(fd: RawFd) {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into `byte`, which outlives the call.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 0 {
            return;
        }
        if n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return; // a broken read end tells nothing more: count it as EOF
        }
    }
}

/// What the parent-death signal would do: SIGKILL, for the worker's whole
/// process group where it leads one (a pool with a task timeout), so a
/// task's own children go too.
fn kill_this_worker() {
    // SAFETY: getpid, getpgrp and kill take and return plain integers.
    unsafe {
        let me = libc::getpid();
        if libc::getpgrp() == me {
            libc::kill(-me, libc::SIGKILL);
        }
        libc::kill(me, libc::SIGKILL);
    }
}
