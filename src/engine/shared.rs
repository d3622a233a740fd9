//! What a pool's handle and its engine thread share: the commands, the
//! configuration, the status and service queue the engine publishes, the
//! wake-up socket, and the fork gate over every engine of the process. The
//! handle (`handle`) and the engine thread (`event_loop`) both depend on
//! this module, never on each other.

use std::collections::VecDeque;

use crate::engine::stats::EngineStats;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::engine::jobs::{Job, JobId};
use crate::engine::protocol::CallMode;
use crate::engine::scheduler::Task;
use crate::engine::sync::{lock, Signal};

pub struct EngineConfig {
    pub processes: usize,
    pub tasks_per_worker: Option<u64>,
    /// The most tasks one worker may hold (see `Scheduler::depth`).
    pub prefetch: usize,
    /// Number given to the first worker (names like `ForkPoolWorker-N`).
    pub first_worker_number: u64,
    /// Spawn only: pickled preparation data for `__main__`, sent first.
    pub prepare: Option<Vec<u8>>,
    /// Spawn and forkserver: pickled initializer and initargs.
    pub setup: Option<Vec<u8>>,
    /// Consecutive workers dying before they are ready that break the pool.
    pub boot_failure_limit: u32,
    /// This many unexpected worker deaths within `crash_window` break the
    /// pool instead of respawning for ever.
    pub crash_limit: u32,
    pub crash_window: std::time::Duration,
    /// A task (or chunk) running longer than this has its worker killed.
    pub task_timeout: Option<std::time::Duration>,
}

pub enum Command {
    AddJob {
        job: Arc<Job>,
        mode: CallMode,
        func: Vec<u8>,
    },
    AddTasks {
        job: Arc<Job>,
        tasks: Vec<Task>,
        close: bool,
    },
    /// Cancel the job's tasks not yet sent to a worker (and any added later).
    CancelQueued { job: JobId },
    /// Finish all work, then stop the workers.
    Close,
    /// Stop the workers now (SIGTERM, or SIGKILL if `kill`); unfinished work fails.
    Terminate { kill: bool },
    /// `fork`: the service thread forked worker `number` (pid `None`: the
    /// fork failed; the worker's socket is closed, so it counts as dead).
    WorkerForked { number: u64, pid: Option<i32> },
    /// A copy of the workers' figures (`Pool.stats()`), sent back here.
    Stats(crossbeam_channel::Sender<EngineStats>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Running,
    Closing,
    Terminating,
    Finished,
}

#[derive(Debug)]
pub struct PoolStatus {
    pub phase: Phase,
    /// Why the pool stopped taking work, if it broke.
    pub broken: Option<String>,
    /// Pids of live workers, in worker-number order.
    pub pids: Vec<i32>,
    /// Pids of workers that are ending: out of the pool, their exit status
    /// not known yet.
    pub ending: Vec<i32>,
    /// How the latest workers ended, oldest first: (pid, exit code as
    /// `multiprocessing.Process.exitcode` gives it, -N for signal N); at
    /// most REMEMBERED_EXITS.
    pub exits: VecDeque<(i32, i32)>,
}

/// Worker exits `PoolStatus` remembers (for `Pool._pool` handles that
/// outlive their worker by a replacement or two).
pub const REMEMBERED_EXITS: usize = 256;

impl PoolStatus {
    pub fn remember_exit(&mut self, pid: i32, exitcode: i32) {
        if self.exits.len() >= REMEMBERED_EXITS {
            self.exits.pop_front();
        }
        self.exits.push_back((pid, exitcode));
    }

    /// The exit code of worker `pid`, if it ended recently.
    pub fn exit_code(&self, pid: i32) -> Option<i32> {
        self.exits
            .iter()
            .rev()
            .find(|(p, _)| *p == pid)
            .map(|(_, code)| *code)
    }
}

pub enum ServiceEvent {
    /// A job with callbacks has all its outcomes.
    JobComplete(JobId),
    Log(log::Level, String),
    /// `fork`: fork worker `number` on this socket (the worker's end); the
    /// fd number of the engine's end, for the new process to close.
    ForkWorker(u64, std::os::fd::OwnedFd, std::os::fd::RawFd),
}

#[derive(Default)]
pub struct ServiceQueue {
    pub events: VecDeque<ServiceEvent>,
    /// The engine thread has ended; nothing more will be queued.
    pub engine_done: bool,
}

/// State shared by the engine thread and its handles.
pub struct Shared {
    pub status: Signal<PoolStatus>,
    pub service: Signal<ServiceQueue>,
    wake_pending: AtomicBool,
    /// The engine thread is (about to be) blocked in `poll`: only then does a
    /// command need the wake-up byte. Set before its last look at the
    /// command channel, read after a command is queued (both SeqCst), so a
    /// command is either seen by that look or followed by the byte.
    pub(crate) asleep: AtomicBool,
    /// Set (under this lock) when the engine thread stops reading commands;
    /// senders check it under the same lock, so no command is ever left
    /// unread in the channel.
    pub inbox_closed: Mutex<bool>,
    /// The figures as they were when the engine thread ended.
    pub final_stats: Mutex<Option<EngineStats>>,
    /// The fork gate: the engine thread parks here, holding no lock, while
    /// the process forks (see `pause_all`).
    pub pause: Signal<PauseState>,
    waker: UnixStream,
}

#[derive(Default)]
pub struct PauseState {
    pub requested: bool,
    pub parked: bool,
    /// The engine thread has ended: nobody to wait for.
    pub gone: bool,
}

/// Every live engine of this process, for the fork gate.
static ENGINES: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Parks every engine thread of the process (each waits on a condition
/// variable, holding no lock) and returns them; `resume_all` lets them go.
/// The Python side calls it around `os.fork()`, so no process is ever forked
/// while an engine thread is doing anything.
pub fn pause_all() -> Vec<Arc<Shared>> {
    let engines: Vec<Arc<Shared>> = {
        let mut all = lock(&ENGINES);
        all.retain(|w| w.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for e in &engines {
        e.pause.update(|p| p.requested = true);
        e.wake();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for e in &engines {
        e.pause.wait_until(deadline, |p| p.parked || p.gone);
    }
    engines
}

pub fn resume_all(engines: &[Arc<Shared>]) {
    for e in engines {
        e.pause.update(|p| p.requested = false);
    }
}

impl Shared {
    /// A new engine's shared state, registered for the fork gate; `waker`
    /// is the handle's end of the wake-up socket.
    pub fn new(waker: UnixStream) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            status: Signal::new(PoolStatus {
                phase: Phase::Running,
                broken: None,
                pids: Vec::new(),
                ending: Vec::new(),
                exits: VecDeque::new(),
            }),
            service: Signal::new(ServiceQueue::default()),
            wake_pending: AtomicBool::new(false),
            asleep: AtomicBool::new(false),
            inbox_closed: Mutex::new(false),
            final_stats: Mutex::new(None),
            pause: Signal::new(PauseState::default()),
            waker,
        });
        lock(&ENGINES).push(Arc::downgrade(&shared));
        shared
    }

    pub(crate) fn wake(&self) {
        // Coalesce wake-ups: one byte in the socket is enough.
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = (&self.waker).write(&[1]);
        }
    }

    /// Engine thread: if a fork is coming, wait here until it is done.
    pub fn park_if_requested(&self) {
        if !self.pause.lock().requested {
            return;
        }
        self.pause.update(|p| p.parked = true);
        while !self
            .pause
            .wait_for(Duration::from_secs(1), |p| !p.requested)
        {}
        self.pause.update(|p| p.parked = false);
    }

    pub fn log(&self, level: log::Level, message: String) {
        self.service
            .update(|q| q.events.push_back(ServiceEvent::Log(level, message)));
    }
}

pub(crate) fn clear_wake(shared: &Shared) {
    shared.wake_pending.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_exits_are_bounded_and_the_latest_wins() {
        let mut status = PoolStatus {
            phase: Phase::Running,
            broken: None,
            pids: Vec::new(),
            ending: Vec::new(),
            exits: VecDeque::new(),
        };
        for pid in 0..(REMEMBERED_EXITS as i32 + 10) {
            status.remember_exit(pid, pid % 7);
        }
        assert_eq!(status.exits.len(), REMEMBERED_EXITS);
        assert_eq!(status.exit_code(3), None); // forgotten
        assert_eq!(status.exit_code(20), Some(20 % 7));
        status.remember_exit(20, -9); // a pid used again
        assert_eq!(status.exit_code(20), Some(-9));
    }
}
