//! The engine thread: one `poll` over the wake-up socket, the zygote's control
//! socket and every worker socket. No busy polling: it sleeps until a byte
//! arrives, a socket can take more output, or a socket closes (a worker died).
//! The only timed waits are for deadlines (see `waiting`): an exit status
//! awaited, a task's time limit, and, where own workers have no pidfd, a
//! look every 100 ms at whether they ended.
//!
//! ```text
//!  wake ──▶ drain commands ──▶ scheduler.add_*      worker readable ──▶ frames ──▶ Ready / Result
//!  worker EOF ──▶ bury: running task lost, prefetched requeued ──▶ dying ──exit status──▶ WorkerLost
//!  every turn: retire exhausted workers, start replacements, fill idle workers, flush output
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::engine::jobs::{Job, JobId, TaskOutcome};
use crate::engine::outbox::Outbox;
use crate::engine::protocol::{FrameDecoder, Kind, ResultStatus};
use crate::engine::scheduler::{Delivered, Scheduler, Task, WorkerSlot};
use crate::engine::shared::{clear_wake, Command, EngineConfig, Phase, ServiceEvent, Shared};
use crate::engine::stats::{Figures, History};
use crate::engine::supervisor::{ExitInfo, Launcher, OwnChild, ZygoteEvent};
use crate::engine::tally::{self, Tally};
use std::os::fd::OwnedFd;

mod figures;
mod lifecycle;
mod reading;
mod waiting;

/// How long to wait for the exit status of a worker whose socket closed.
const EXIT_STATUS_GRACE: Duration = Duration::from_secs(1);
/// How long terminated workers get after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_millis(500);
/// A frame begun and then left without a byte for this long is cut short:
/// the worker breaks the protocol (a worker writes each frame in one go).
const FRAME_STALL: Duration = Duration::from_secs(5);
/// Descriptors a worker may have sent ahead of their frames: a few results
/// read in one go, each with its memfd. More is an attack on the parent's
/// descriptor table.
const MAX_QUEUED_FDS: usize = 64;
/// A finished job's cached function is forgotten with the worker's next
/// frames, unless its pickle is this large or this many wait.
const FORGET_NOW_ABOVE: usize = 64 * 1024;
const MAX_PENDING_FORGETS: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WorkerState {
    /// Launched; running its initializer.
    Starting,
    Ready,
    /// Told to exit (task limit reached, or the pool is closing).
    Retiring,
}

struct Worker {
    number: u64,
    sock: UnixStream,
    decoder: FrameDecoder,
    /// Descriptors that came with its bytes, for its shared-memory frames
    /// in order (see `shm`).
    fds: VecDeque<OwnedFd>,
    out: Outbox,
    /// Finished jobs whose small cached function it may drop: told with its
    /// next frames (see `after_delivery`).
    forgets: Vec<JobId>,
    slot: WorkerSlot,
    state: WorkerState,
    pid: Option<i32>,
    /// Our own child (spawn, fork; not the zygote's): its exit watch sees
    /// its death even while another process holds a copy of its socket (a
    /// task's own child), which would keep that socket from closing.
    child: Option<OwnChild>,
    dead: bool,
    /// Never forked (its fork request was cancelled, or the fork failed).
    unforked: bool,
    /// Killed for running past the task timeout.
    timed_out: bool,
    /// Killed for breaking the protocol: what it sent.
    violation: Option<String>,
    /// When the last byte came from it (a frame left unfinished is timed).
    last_byte_at: Instant,
    started_at: Instant,
    /// The count of tasks it has begun, shared with it once it is ready.
    tally: Option<Tally>,
}

/// What one non-blocking read or write on a worker socket means.
enum Step {
    /// Progress, or interrupted: go on.
    Again,
    /// Nothing more for now.
    Blocked,
    /// End of file or an error: the worker is gone.
    Closed,
}

fn socket_step(result: io::Result<usize>) -> Step {
    match result {
        Ok(0) => Step::Closed,
        Ok(_) => Step::Again,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::Again,
        Err(_) => Step::Closed,
    }
}

impl Worker {
    fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Queues the Forget frames held back (see `EventLoop::after_delivery`).
    fn push_forgets(&mut self) {
        for job in self.forgets.drain(..) {
            self.out.push(Kind::Forget, 0, job, 0, b"");
        }
    }

    /// Whether it had begun the first task it holds when it went away (see
    /// `tally`): the tasks it answered are those sent and no longer held.
    /// A worker that broke the protocol is not taken at its word. (One that
    /// sent Retiring holds nothing: its tasks went back then.)
    fn began_first_held(&self) -> bool {
        if self.violation.is_some() {
            return true;
        }
        let answered = self.slot.taken - self.slot.inflight.len() as u64;
        tally::began_first_held(self.tally.as_ref().map(|t| t.begun()), answered)
    }

    fn describe(&self) -> String {
        match self.pid {
            Some(pid) => format!("worker process {pid}"),
            None => format!("worker #{}", self.number),
        }
    }
}

/// A worker whose socket closed, waiting for its exit status.
struct Dying {
    pid: Option<i32>,
    number: u64,
    /// Our own child: its exit watch is polled (a pidfd), or asked every
    /// few milliseconds, so its exit status is collected at once.
    child: Option<OwnChild>,
    /// The task it was running, to be failed with its exit status.
    lost: Option<Task>,
    /// Died before it was ready (initializer or start-up failure).
    before_ready: bool,
    /// It was told to exit: a clean exit is no news.
    expected: bool,
    /// We killed it (task timeout): its signal is no news either.
    killed_by_us: bool,
    /// It broke the protocol (and was killed for it): what it sent.
    violation: Option<String>,
    /// It was killed for running past the task timeout.
    timed_out: bool,
    /// What it did (see `Pool.stats()`).
    figures: Figures,
    since: Instant,
}

pub struct EventLoop {
    config: EngineConfig,
    launcher: Option<Launcher>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    wake_rx: UnixStream,
    /// What the last poll said of the wake-up socket and the zygote's
    /// control socket: they are read only then (a read that finds nothing
    /// is a wasted system call on every turn of a busy loop).
    wake_readable: bool,
    zygote_readable: bool,
    scheduler: Scheduler,
    workers: Vec<Worker>,
    dying: Vec<Dying>,
    next_number: u64,
    phase: Phase,
    broken: Option<String>,
    boot_failures: u32,
    /// When recent unexpected worker deaths happened (crash-loop detection).
    recent_deaths: VecDeque<Instant>,
    /// From the zygote: worker number -> pid, and pid -> how it ended.
    zygote_pids: HashMap<u64, i32>,
    zygote_exits: HashMap<i32, ExitInfo>,
    terminate_deadline: Option<Instant>,
    /// When own children without a pidfd were last asked whether they
    /// ended (see `waiting`).
    last_exit_check: Instant,
    published_pids: Vec<i32>,
    /// Workers launched, and those that ended (see `Pool.stats()`).
    workers_started: u64,
    history: History,
}

impl EventLoop {
    pub fn new(
        config: EngineConfig,
        launcher: Launcher,
        shared: Arc<Shared>,
        commands: Receiver<Command>,
        wake_rx: UnixStream,
    ) -> EventLoop {
        let prefetch = config.prefetch;
        let next_number = config.first_worker_number;
        EventLoop {
            config,
            launcher: Some(launcher),
            shared,
            commands,
            wake_rx,
            wake_readable: false,
            zygote_readable: false,
            scheduler: Scheduler::new(prefetch),
            workers: Vec::new(),
            dying: Vec::new(),
            next_number,
            phase: Phase::Running,
            broken: None,
            boot_failures: 0,
            recent_deaths: VecDeque::new(),
            zygote_pids: HashMap::new(),
            zygote_exits: HashMap::new(),
            terminate_deadline: None,
            last_exit_check: Instant::now(),
            published_pids: Vec::new(),
            workers_started: 0,
            history: History::default(),
        }
    }

    pub fn run(&mut self) {
        self.start_workers();
        self.publish_status();
        while self.phase != Phase::Finished {
            let ready = self.wait_for_events();
            self.check_exits_without_fd();
            self.shared.park_if_requested();
            self.drain_commands();
            self.read_zygote();
            for (idx, revents) in ready {
                self.service_worker(idx, revents);
            }
            self.kill_overdue_workers();
            self.fail_stalled_frames();
            self.bury_dead_workers();
            // Before retiring: an exit collected here can complete the last
            // job of a closing pool, whose idle workers must then be told to
            // exit in this turn (nothing else may come to wake the loop).
            self.collect_exits();
            self.retire_workers();
            self.start_workers();
            self.dispatch();
            self.advance_phase();
            self.publish_status();
        }
        *crate::engine::sync::lock(&self.shared.final_stats) = Some(self.stats_snapshot());
        self.launcher = None; // closes the zygote's control socket: it exits
                              // Stop taking commands, then answer every one already sent (their
                              // tasks are refused): none may be left unread.
        *crate::engine::sync::lock(&self.shared.inbox_closed) = true;
        while let Ok(command) = self.commands.try_recv() {
            self.handle_command(command);
        }
        self.publish_status();
    }

    fn drain_commands(&mut self) {
        let mut sink = [0u8; 256];
        if self.wake_readable {
            // A full read may have left more behind; a short one emptied it.
            while let Ok(n) = (&self.wake_rx).read(&mut sink) {
                if n < sink.len() {
                    break;
                }
            }
        }
        clear_wake(&self.shared);
        while let Ok(command) = self.commands.try_recv() {
            self.handle_command(command);
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::AddJob { job, mode, func } => {
                if self.accepting() {
                    self.scheduler.add_job(job, mode, func);
                }
            }
            Command::AddTasks { job, tasks, close } => {
                if self.accepting() {
                    for task in tasks {
                        if !self.scheduler.add_task(task) {
                            // Unknown job: it was never registered; should not happen.
                            self.fail_direct(&job, "internal error: task for an unknown job");
                        }
                    }
                    if close {
                        let d = self.scheduler.close_job_input(job.id);
                        self.after_delivery(job.id, d);
                    }
                } else {
                    let why = self.refusal();
                    let mut notify = false;
                    for task in tasks {
                        let completed = job.deliver(TaskOutcome {
                            index: task.index,
                            status: ResultStatus::PoolBroken,
                            payload: why.clone().into_bytes().into(),
                        });
                        notify |= job.wants_service(completed);
                    }
                    if close {
                        let completed = job.close_input();
                        notify |= completed && job.wants_service(true);
                    }
                    if notify {
                        self.notify_service(job.id);
                    }
                }
            }
            Command::WorkerForked { number, pid } => self.worker_forked(number, pid),
            Command::Stats(reply) => {
                // The asker may have given up waiting: nobody to tell.
                let _ = reply.send(self.stats_snapshot());
            }
            Command::CancelQueued { job } => {
                let d = self.scheduler.cancel_queued(job);
                self.after_delivery(job, d);
            }
            Command::Close => {
                if self.phase == Phase::Running {
                    self.phase = Phase::Closing;
                }
            }
            Command::Terminate { kill } => self.terminate(kill),
        }
    }

    fn accepting(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Closing) && self.broken.is_none()
    }

    fn refusal(&self) -> String {
        match &self.broken {
            Some(why) => why.clone(),
            None => "the pool was terminated before this task ran".into(),
        }
    }

    fn fail_direct(&mut self, job: &Arc<Job>, why: &str) {
        let completed = job.deliver(TaskOutcome {
            index: 0,
            status: ResultStatus::PoolBroken,
            payload: why.as_bytes().to_vec().into(),
        });
        if job.wants_service(completed) {
            self.notify_service(job.id);
        }
    }

    /// Follow-up of an outcome: callbacks and cache eviction.
    fn after_delivery(&mut self, job: JobId, d: Delivered) {
        if d.notify_service {
            self.notify_service(job);
        }
        if d.job_finished {
            for w in &mut self.workers {
                let Some(func_len) = w.slot.known_funcs.remove(&job) else {
                    continue;
                };
                // A Forget of its own would be one more write, and one more
                // wake-up of the worker, per job: a pool of one `apply` after
                // another pays it on every round trip. A small function's goes
                // with the worker's next frames; a large one (a closure that
                // holds data) is let go now.
                w.forgets.push(job);
                if func_len >= FORGET_NOW_ABOVE || w.forgets.len() >= MAX_PENDING_FORGETS {
                    w.push_forgets();
                }
            }
        }
    }

    fn notify_service(&self, job: JobId) {
        self.shared
            .service
            .update(|q| q.events.push_back(ServiceEvent::JobComplete(job)));
    }

    fn flush(&mut self, idx: usize) {
        let w = &mut self.workers[idx];
        while w.has_output() {
            match socket_step(w.out.write_to(&mut w.sock)) {
                Step::Again => continue,
                Step::Blocked => break,
                Step::Closed => {
                    w.dead = true;
                    break;
                }
            }
        }
    }

    fn read_zygote(&mut self) {
        let Some(launcher) = self.launcher.as_mut() else {
            return;
        };
        if launcher.control_fd().is_none() || !self.zygote_readable {
            return;
        }
        match launcher.zygote_events() {
            Ok(events) => {
                for event in events {
                    match event {
                        // The zygote's report (our own code, not a task's):
                        // where a forkserver worker's pid comes from.
                        ZygoteEvent::Started { number, pid } if pid > 1 => {
                            self.zygote_pids.insert(number, pid);
                            if let Some(w) = self.workers.iter_mut().find(|w| w.number == number) {
                                w.pid = Some(pid);
                            }
                        }
                        ZygoteEvent::Started { .. } => {}
                        ZygoteEvent::Exited { pid, info } => {
                            // The death is news even while the worker's
                            // socket stays open (a task's own child may
                            // hold a copy of it), as a pidfd's is for the
                            // workers forked here.
                            for w in self.workers.iter_mut().filter(|w| w.pid == Some(pid)) {
                                w.dead = true;
                            }
                            self.zygote_exits.insert(pid, info);
                        }
                    }
                }
            }
            Err(_) => {
                self.launcher = None;
                if matches!(self.phase, Phase::Running | Phase::Closing) {
                    self.break_pool(
                        "the helper process that starts workers exited unexpectedly".into(),
                    );
                }
            }
        }
    }

    fn dispatch(&mut self) {
        if self.scheduler.queued() > 0 {
            let ready = self
                .workers
                .iter_mut()
                .filter(|w| w.state == WorkerState::Ready && !w.dead)
                .map(|w| (&mut w.slot, &mut w.out));
            self.scheduler.fill(ready);
        }
        for idx in 0..self.workers.len() {
            if self.workers[idx].has_output() {
                self.workers[idx].push_forgets();
                self.flush(idx);
            }
        }
    }

    fn publish_status(&mut self) {
        let pids: Vec<i32> = self.workers.iter().filter_map(|w| w.pid).collect();
        let ending: Vec<i32> = self.dying.iter().filter_map(|d| d.pid).collect();
        let phase = self.phase;
        let broken = self.broken.clone();
        let changed = {
            let s = self.shared.status.lock();
            s.phase != phase
                || s.broken != broken
                || pids != self.published_pids
                || ending != s.ending
        };
        if changed {
            self.published_pids = pids.clone();
            self.shared.status.update(|s| {
                s.phase = phase;
                s.broken = broken;
                s.pids = pids;
                s.ending = ending;
            });
        }
    }
}
