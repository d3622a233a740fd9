//! Where the engine thread sleeps: one `poll` over the wake-up socket, the
//! zygote's control socket, every worker socket and every exit watch that
//! has a descriptor (a pidfd), with a timeout only for what has a deadline.
//!
//! ```text
//!  spin (zero-timeout polls) ──nothing──▶ poll(timeout) ──▶ (worker index, revents)
//!  timeout = min(exit status awaited: 5 ms or the grace left, a task's deadline,
//!                a stalled frame, terminating: 50 ms, next exit check: 100 ms)
//! ```
//!
//! Own children without a pidfd (the `pidfd` fallback, see `platform`) are
//! asked with `waitid(WNOWAIT)` every `EXIT_CHECK_INTERVAL` while any live:
//! their death is then seen within that time even when a task's own child
//! keeps their socket open. The cost: an idle pool wakes 10 times a second,
//! one `waitid` per such worker each time; a socket's EOF is still seen at
//! once.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{EventLoop, WorkerState, EXIT_STATUS_GRACE};
use crate::engine::spin::{SpinSwitch, Spun};

/// How often live own children without a pidfd are asked whether they ended.
const EXIT_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// How often a child whose socket closed is asked for its exit status,
/// where no pidfd says when (the grace period bounds it).
const EXIT_STATUS_POLL_MS: i32 = 5;
/// How often the loop turns while terminated workers are given their grace.
const TERMINATE_POLL_MS: i32 = 50;

/// The engine thread looks for events a while without sleeping before it
/// blocks in `poll`: waking a thread asleep on an idle (virtual) CPU takes
/// tens of microseconds, more than the next event of a busy pool usually
/// takes to come. How long is learnt (see `spin`): nothing on a busy
/// machine, where the spin would only slow the workers down.
static ENGINE_SPIN: SpinSwitch = SpinSwitch::new();

impl EventLoop {
    /// `poll(2)`, but first a short spin of zero-timeout polls and looks at
    /// the command channel (yielding the CPU in between), unless the wait is
    /// already a short timed one. Commands queued while the engine thread is
    /// awake need no wake-up byte (see `Shared::asleep`).
    ///
    /// The spin polls only `fds[i]` for `i` in `hot` (the descriptors where
    /// the next event is expected: see `wait_for_events`): one look at every
    /// socket and pidfd of a 64-worker pool costs microseconds, more than a
    /// short task's round trip. Whatever else happens meanwhile is seen by
    /// the full poll that follows a spin that found nothing.
    fn poll_spinning_first(&self, fds: &mut [libc::pollfd], hot: &[usize], timeout_ms: i32) -> i32 {
        let do_poll = |fds: &mut [libc::pollfd], ms: i32| {
            // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) }
        };
        if !(0..=1).contains(&timeout_ms) {
            let mut spin_fds: Vec<libc::pollfd> = hot.iter().map(|&i| fds[i]).collect();
            let mut n = 0;
            let spun = ENGINE_SPIN.spin(None, || {
                n = do_poll(&mut spin_fds, 0);
                n != 0 || !self.commands.is_empty()
            });
            if spun == Spun::Found {
                for (&i, polled) in hot.iter().zip(&spin_fds) {
                    fds[i].revents = polled.revents;
                }
                return n;
            }
        }
        let asleep = &self.shared.asleep;
        asleep.store(true, Ordering::SeqCst);
        let n = if self.commands.is_empty() {
            do_poll(fds, timeout_ms)
        } else {
            0
        };
        asleep.store(false, Ordering::SeqCst);
        n
    }
}

/// The smaller of two `poll` timeouts (-1: none).
fn min_timeout(a: i32, b: i32) -> i32 {
    match (a < 0, b < 0) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

/// Milliseconds until `deadline`, rounded up (poll's unit).
fn ms_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    i32::try_from(left.as_millis()).unwrap_or(i32::MAX - 1) + 1
}

impl EventLoop {
    /// Polls; returns (worker index, revents) for every worker with events.
    /// A worker whose pidfd became readable is marked dead.
    pub(super) fn wait_for_events(&mut self) -> Vec<(usize, i16)> {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.workers.len() + 2);
        let pollfd = |fd: RawFd, events: i16| libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        fds.push(pollfd(self.wake_rx.as_raw_fd(), libc::POLLIN));
        let zygote_fd = self
            .launcher
            .as_ref()
            .and_then(|l| l.control_fd())
            .map(|fd| fd.as_raw_fd())
            .unwrap_or(-1);
        fds.push(pollfd(zygote_fd, libc::POLLIN));
        // The spin looks only where the next event is expected: the wake-up
        // and zygote sockets, and the sockets of workers that hold tasks,
        // have output waiting or are starting (an idle worker's death or a
        // stray frame waits for the full poll, at most one spin later).
        let mut hot = vec![0, 1];
        for w in &self.workers {
            let has_output = w.has_output();
            let mut events = libc::POLLIN;
            if has_output {
                events |= libc::POLLOUT;
            }
            if has_output || w.state != WorkerState::Ready || !w.slot.inflight.is_empty() {
                hot.push(fds.len());
            }
            fds.push(pollfd(w.sock.as_raw_fd(), events));
        }
        let mut exit_watch = Vec::new();
        for (idx, w) in self.workers.iter().enumerate() {
            if let Some(fd) = w.child.as_ref().and_then(|c| c.watch().fd()) {
                exit_watch.push(idx);
                fds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
            }
        }
        for d in &self.dying {
            if let Some(fd) = d.child.as_ref().and_then(|c| c.watch().fd()) {
                fds.push(pollfd(fd.as_raw_fd(), libc::POLLIN));
            }
        }
        let mut timeout_ms = self.exit_wait_timeout_ms();
        let deadlines = [
            self.next_task_deadline(),
            self.next_frame_stall(),
            self.next_exit_check(),
        ];
        if let Some(deadline) = deadlines.into_iter().flatten().min() {
            timeout_ms = min_timeout(timeout_ms, ms_until(deadline));
        }
        let n = self.poll_spinning_first(&mut fds, &hot, timeout_ms);
        self.wake_readable = n > 0 && fds[0].revents != 0;
        self.zygote_readable = n > 0 && fds[1].revents != 0;
        if n <= 0 {
            return Vec::new();
        }
        let first_exit = 2 + self.workers.len();
        for (k, idx) in exit_watch.into_iter().enumerate() {
            if fds[first_exit + k].revents != 0 {
                self.workers[idx].dead = true;
            }
        }
        fds[2..2 + self.workers.len()]
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, p)| (i, p.revents))
            .collect()
    }

    /// How long the poll may sleep while exits are awaited: an own child
    /// without a pidfd is asked every few milliseconds; otherwise its pidfd
    /// or the zygote's record wakes us, and only the grace period needs a
    /// timer.
    fn exit_wait_timeout_ms(&self) -> i32 {
        let mut timeout_ms = -1;
        let unwatched =
            |d: &super::Dying| d.child.as_ref().is_some_and(|c| c.watch().fd().is_none());
        if self.dying.iter().any(unwatched) {
            timeout_ms = EXIT_STATUS_POLL_MS;
        } else if let Some(since) = self.dying.iter().map(|d| d.since).min() {
            timeout_ms = ms_until(since + EXIT_STATUS_GRACE);
        }
        if self.terminate_deadline.is_some() {
            timeout_ms = min_timeout(timeout_ms, TERMINATE_POLL_MS);
        }
        timeout_ms
    }

    /// When live own children without a pidfd are next asked whether they
    /// ended; None while there are none (no timer at all).
    fn next_exit_check(&self) -> Option<Instant> {
        let unwatched = self
            .workers
            .iter()
            .any(|w| !w.dead && w.child.as_ref().is_some_and(|c| c.watch().fd().is_none()));
        unwatched.then_some(self.last_exit_check + EXIT_CHECK_INTERVAL)
    }

    /// Marks dead the live own children without a pidfd that have ended
    /// (`waitid(WNOWAIT)`: not reaped here), at most once per
    /// `EXIT_CHECK_INTERVAL`.
    pub(super) fn check_exits_without_fd(&mut self) {
        let Some(due) = self.next_exit_check() else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        self.last_exit_check = now;
        for w in &mut self.workers {
            let Some(child) = &w.child else { continue };
            if !w.dead && child.watch().fd().is_none() && child.watch().has_ended() {
                w.dead = true;
            }
        }
    }
}
