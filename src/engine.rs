//! The engine's public face: what Python-facing code holds to talk to the
//! engine thread of one pool.
//!
//! ```text
//!  caller threads ──Command──▶ crossbeam channel ──┐   wake byte
//!                 ──────────────────────────────────┼──▶ socket ──▶ engine thread (event_loop)
//!  waiters ◀── Job signals (results) ◀──────────────┘                     │
//!  service thread ◀── ServiceEvent (job ready for callbacks, log lines) ◀─┘
//! ```
//!
//! Nothing here needs the GIL; the PyO3 wrappers release it around waits.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::event_loop::EventLoop;
use crate::jobs::{Job, JobId};
use crate::protocol::CallMode;
use crate::scheduler::Task;
use crate::supervisor::Launcher;
use crate::sync::{lock, Signal};

pub struct EngineConfig {
    pub processes: usize,
    pub tasks_per_worker: Option<u64>,
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
    /// Finish all work, then stop the workers.
    Close,
    /// Stop the workers now (SIGTERM, or SIGKILL if `kill`); unfinished work fails.
    Terminate { kill: bool },
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
}

pub enum ServiceEvent {
    /// A job with callbacks has all its outcomes.
    JobComplete(JobId),
    Log(log::Level, String),
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
    /// Set (under this lock) when the engine thread stops reading commands;
    /// senders check it under the same lock, so no command is ever left
    /// unread in the channel.
    pub inbox_closed: Mutex<bool>,
}

impl Shared {
    pub fn log(&self, level: log::Level, message: String) {
        self.service
            .update(|q| q.events.push_back(ServiceEvent::Log(level, message)));
    }
}

pub struct Engine {
    pub shared: Arc<Shared>,
    inbox: Sender<Command>,
    waker: UnixStream,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    pub fn start(config: EngineConfig, launcher: Launcher) -> io::Result<Engine> {
        let shared = Arc::new(Shared {
            status: Signal::new(PoolStatus {
                phase: Phase::Running,
                broken: None,
                pids: Vec::new(),
            }),
            service: Signal::new(ServiceQueue::default()),
            wake_pending: AtomicBool::new(false),
            inbox_closed: Mutex::new(false),
        });
        let (inbox, commands): (Sender<Command>, Receiver<Command>) = unbounded();
        let (waker, wake_rx) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let mut event_loop =
            EventLoop::new(config, launcher, Arc::clone(&shared), commands, wake_rx);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ferropool-engine".into())
            .spawn(move || {
                // A panic must surface as a broken pool, never as a hang.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| event_loop.run()));
                if outcome.is_err() {
                    thread_shared.status.update(|s| {
                        s.broken
                            .get_or_insert_with(|| "the pool's engine thread panicked".into());
                        s.phase = Phase::Finished;
                    });
                }
                thread_shared.service.update(|q| q.engine_done = true);
            })?;
        Ok(Engine {
            shared,
            inbox,
            waker,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sends a command and wakes the engine thread. Fails only once the
    /// engine thread has ended.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        let closed = lock(&self.shared.inbox_closed);
        if *closed {
            return Err(command);
        }
        self.inbox.send(command).map_err(|e| e.into_inner())?;
        drop(closed);
        // Coalesce wake-ups: one byte in the socket is enough.
        if !self.shared.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = (&self.waker).write(&[1]);
        }
        Ok(())
    }

    pub fn phase(&self) -> Phase {
        self.shared.status.lock().phase
    }

    /// Joins the engine thread once it has finished (call after waiting for
    /// `Phase::Finished`).
    pub fn reap_thread(&self) {
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

pub(crate) fn clear_wake(shared: &Shared) {
    shared.wake_pending.store(false, Ordering::Release);
}
