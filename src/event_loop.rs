//! The engine thread: one `poll` over the wake-up socket, the zygote's control
//! socket and every worker socket. No busy polling: it sleeps until a byte
//! arrives, a socket can take more output, or a socket closes (a worker died).
//! The only timed waits are while collecting the exit status of a worker that
//! just went away.
//!
//! ```text
//!  wake ──▶ drain commands ──▶ scheduler.add_*      worker readable ──▶ frames ──▶ Ready / Result
//!  worker EOF ──▶ bury: running task lost, prefetched requeued ──▶ dying ──exit status──▶ WorkerLost
//!  every turn: retire exhausted workers, start replacements, fill idle workers, flush output
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::engine::{clear_wake, Command, EngineConfig, Phase, ServiceEvent, Shared};
use crate::jobs::{Job, JobId, TaskOutcome};
use crate::outbox::Outbox;
use crate::protocol::{FrameDecoder, Kind, ResultStatus};
use crate::scheduler::{Delivered, Scheduler, Task, WorkerSlot};
use crate::supervisor::{ExitInfo, Launcher, ZygoteEvent};

/// How long to wait for the exit status of a worker whose socket closed.
const EXIT_STATUS_GRACE: Duration = Duration::from_secs(1);
/// How long terminated workers get after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_millis(500);

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
    out: Outbox,
    slot: WorkerSlot,
    state: WorkerState,
    pid: Option<i32>,
    child: Option<Child>,
    dead: bool,
    /// Killed for running past the task timeout.
    timed_out: bool,
}

impl Worker {
    fn has_output(&self) -> bool {
        !self.out.is_empty()
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
    child: Option<Child>,
    /// The task it was running, to be failed with its exit status.
    lost: Option<Task>,
    /// Died before it was ready (initializer or start-up failure).
    before_ready: bool,
    /// It was told to exit: a clean exit is no news.
    expected: bool,
    /// We killed it (task timeout): its signal is no news either.
    killed_by_us: bool,
    since: Instant,
}

pub struct EventLoop {
    config: EngineConfig,
    launcher: Option<Launcher>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    wake_rx: UnixStream,
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
    published_pids: Vec<i32>,
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
            published_pids: Vec::new(),
        }
    }

    pub fn run(&mut self) {
        self.start_workers();
        self.publish_status();
        while self.phase != Phase::Finished {
            let ready = self.wait_for_events();
            self.drain_commands();
            self.read_zygote();
            for (idx, revents) in ready {
                self.service_worker(idx, revents);
            }
            self.kill_overdue_workers();
            self.bury_dead_workers();
            self.retire_workers();
            self.start_workers();
            self.dispatch();
            self.collect_exits();
            self.advance_phase();
            self.publish_status();
        }
        self.launcher = None; // closes the zygote's control socket: it exits
                              // Stop taking commands, then answer every one already sent (their
                              // tasks are refused): none may be left unread.
        *crate::sync::lock(&self.shared.inbox_closed) = true;
        while let Ok(command) = self.commands.try_recv() {
            self.handle_command(command);
        }
        self.publish_status();
    }

    // ----- waiting -------------------------------------------------------

    /// Polls; returns (worker index, revents) for every worker with events.
    fn wait_for_events(&mut self) -> Vec<(usize, i16)> {
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
        for w in &self.workers {
            let mut events = libc::POLLIN;
            if w.has_output() {
                events |= libc::POLLOUT;
            }
            fds.push(pollfd(w.sock.as_raw_fd(), events));
        }
        let mut timeout_ms: i32 = if !self.dying.is_empty() {
            5
        } else if self.terminate_deadline.is_some() {
            50
        } else {
            -1
        };
        if let Some(deadline) = self.next_task_deadline() {
            let ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32
                + 1;
            timeout_ms = if timeout_ms < 0 {
                ms
            } else {
                timeout_ms.min(ms)
            };
        }
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n <= 0 {
            return Vec::new();
        }
        fds[2..]
            .iter()
            .enumerate()
            .filter(|(_, p)| p.revents != 0)
            .map(|(i, p)| (i, p.revents))
            .collect()
    }

    fn drain_commands(&mut self) {
        let mut sink = [0u8; 256];
        while let Ok(n) = (&self.wake_rx).read(&mut sink) {
            if n == 0 {
                break;
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
                            payload: why.clone().into_bytes(),
                        });
                        notify |= job.wants_service(completed);
                    }
                    if close {
                        let completed = job.close_input();
                        notify |= completed && job.has_callback;
                    }
                    if notify {
                        self.notify_service(job.id);
                    }
                }
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
            payload: why.as_bytes().to_vec(),
        });
        if job.wants_service(completed) {
            self.notify_service(job.id);
        }
    }

    // ----- worker I/O ----------------------------------------------------

    fn service_worker(&mut self, idx: usize, revents: i16) {
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_worker(idx);
        }
        if revents & libc::POLLOUT != 0 {
            self.flush(idx);
        }
    }

    fn read_worker(&mut self, idx: usize) {
        loop {
            let w = &mut self.workers[idx];
            match w.decoder.read_from(&mut w.sock) {
                Ok(0) => {
                    w.dead = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    w.dead = true;
                    break;
                }
            }
        }
        loop {
            let frame = match self.workers[idx].decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    let w = &mut self.workers[idx];
                    let what = format!("{} sent a corrupt frame ({e}); replacing it", w.describe());
                    w.dead = true;
                    self.shared.log(log::Level::Error, what);
                    break;
                }
            };
            match frame.kind {
                Kind::Ready => {
                    let w = &mut self.workers[idx];
                    w.pid = Some(frame.index as i32);
                    if w.state == WorkerState::Starting {
                        w.state = WorkerState::Ready;
                    }
                    self.boot_failures = 0;
                    let msg = format!("worker {} (pid {}) started", w.number, frame.index);
                    self.shared.log(log::Level::Info, msg);
                }
                Kind::Result => {
                    let status = ResultStatus::from_u8(frame.flags)
                        .unwrap_or(ResultStatus::RaisedUnpicklable);
                    let outcome = TaskOutcome {
                        index: frame.index,
                        status,
                        payload: frame.payload,
                    };
                    let w = &mut self.workers[idx];
                    let d = self.scheduler.complete(&mut w.slot, outcome, frame.job);
                    self.after_delivery(frame.job, d);
                }
                Kind::Retiring => {
                    let w = &mut self.workers[idx];
                    // Tasks sent after its last result never started: rerun them.
                    self.scheduler.worker_gone(&mut w.slot, false);
                    w.state = WorkerState::Retiring;
                    let why = String::from_utf8_lossy(&frame.payload);
                    let msg = format!("{} retires: {why}; replacing it", w.describe());
                    self.shared.log(log::Level::Info, msg);
                }
                _ => {} // workers send nothing else
            }
        }
    }

    /// Follow-up of an outcome: callbacks and cache eviction.
    fn after_delivery(&mut self, job: JobId, d: Delivered) {
        if d.notify_service {
            self.notify_service(job);
        }
        if d.job_finished {
            for w in &mut self.workers {
                if w.slot.known_funcs.remove(&job) {
                    w.out.push(Kind::Forget, 0, job, 0, b"");
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
            match w.out.write_to(&mut w.sock) {
                Ok(0) => {
                    w.dead = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
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
        if launcher.control_fd().is_none() {
            return;
        }
        match launcher.zygote_events() {
            Ok(events) => {
                for event in events {
                    match event {
                        ZygoteEvent::Started { number, pid } => {
                            self.zygote_pids.insert(number, pid);
                            if let Some(w) = self.workers.iter_mut().find(|w| w.number == number) {
                                w.pid.get_or_insert(pid);
                            }
                        }
                        ZygoteEvent::Exited { pid, info } => {
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

    // ----- supervision ---------------------------------------------------

    fn live_worker_target(&self) -> usize {
        match self.phase {
            Phase::Running => self.config.processes,
            Phase::Closing if self.scheduler.has_jobs() => self.config.processes,
            _ => 0,
        }
    }

    fn start_workers(&mut self) {
        if self.broken.is_some() {
            return;
        }
        loop {
            let active = self
                .workers
                .iter()
                .filter(|w| w.state != WorkerState::Retiring && !w.dead)
                .count();
            if active >= self.live_worker_target() {
                return;
            }
            let number = self.next_number;
            self.next_number += 1;
            let Some(launcher) = self.launcher.as_mut() else {
                return;
            };
            match launcher.launch(number) {
                Ok(launched) => {
                    let mut out = Outbox::new();
                    if let Some(prepare) = &self.config.prepare {
                        out.push(Kind::Prepare, 0, 0, number, prepare);
                    }
                    if let Some(setup) = &self.config.setup {
                        out.push(Kind::Setup, 0, 0, number, setup);
                    }
                    let pid = launched.child.as_ref().map(|c| c.id() as i32);
                    self.workers.push(Worker {
                        number,
                        sock: launched.sock,
                        decoder: FrameDecoder::new(),
                        out,
                        slot: WorkerSlot::new(self.config.tasks_per_worker),
                        state: WorkerState::Starting,
                        pid,
                        child: launched.child,
                        dead: false,
                        timed_out: false,
                    });
                    let idx = self.workers.len() - 1;
                    self.flush(idx);
                }
                Err(e) => {
                    self.break_pool(format!("could not start a worker process: {e}"));
                    return;
                }
            }
        }
    }

    fn bury_dead_workers(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if !self.workers[i].dead {
                i += 1;
                continue;
            }
            // Results it sent before it went away are still in the socket:
            // take them first, so only the task really running is lost.
            self.read_worker(i);
            let mut w = self.workers.swap_remove(i);
            let was_running = w.state == WorkerState::Ready || w.state == WorkerState::Retiring;
            let mut lost = self.scheduler.worker_gone(&mut w.slot, was_running);
            let pid = w.pid.or_else(|| self.zygote_pids.get(&w.number).copied());
            if w.timed_out {
                if let Some(task) = lost.take() {
                    self.fail_timed_out(task, &w.describe());
                }
            }
            self.dying.push(Dying {
                pid,
                number: w.number,
                child: w.child.take(),
                expected: w.state == WorkerState::Retiring && lost.is_none(),
                before_ready: w.state == WorkerState::Starting,
                killed_by_us: w.timed_out,
                lost,
                since: Instant::now(),
            });
        }
    }

    /// The earliest moment a running task reaches the task timeout.
    fn next_task_deadline(&self) -> Option<Instant> {
        let limit = self.config.task_timeout?;
        self.workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready && !w.timed_out)
            .filter_map(|w| Scheduler::running_since(&w.slot))
            .min()
            .map(|start| start + limit)
    }

    /// Kills (with their process group, so their own children too) the
    /// workers whose task ran past the timeout. Their sockets then close and
    /// `bury_dead_workers` fails the task and replaces the worker.
    fn kill_overdue_workers(&mut self) {
        let Some(limit) = self.config.task_timeout else {
            return;
        };
        let now = Instant::now();
        for w in &mut self.workers {
            if w.timed_out || w.state != WorkerState::Ready {
                continue;
            }
            let overdue =
                Scheduler::running_since(&w.slot).is_some_and(|start| now >= start + limit);
            if !overdue {
                continue;
            }
            if let Some(pid) = w.pid {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            w.timed_out = true;
            let msg = format!(
                "{} ran a task past the {:?} time limit; killed it",
                w.describe(),
                limit
            );
            self.shared.log(log::Level::Warn, msg);
        }
    }

    fn fail_timed_out(&mut self, task: Task, who: &str) {
        let limit = self.config.task_timeout.unwrap_or_default().as_secs_f64();
        let message =
            format!("the task ran past its time limit of {limit} s; {who} running it was killed");
        let d = self.scheduler.deliver(
            task.job,
            TaskOutcome {
                index: task.index,
                status: ResultStatus::TimedOut,
                payload: message.into_bytes(),
            },
        );
        self.after_delivery(task.job, d);
    }

    fn retire_workers(&mut self) {
        let closing_idle = self.phase == Phase::Closing && !self.scheduler.has_jobs();
        for w in &mut self.workers {
            let done =
                w.state == WorkerState::Ready && w.slot.exhausted() && w.slot.inflight.is_empty();
            let stop = closing_idle && w.state != WorkerState::Retiring;
            if done || stop {
                if done {
                    let msg = format!(
                        "worker {} (pid {}) reached its task limit; replacing it",
                        w.number,
                        w.pid.unwrap_or(0)
                    );
                    self.shared.log(log::Level::Info, msg);
                }
                w.out.push(Kind::Exit, 0, 0, 0, b"");
                w.state = WorkerState::Retiring;
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
                self.flush(idx);
            }
        }
    }

    fn collect_exits(&mut self) {
        let mut i = 0;
        while i < self.dying.len() {
            let d = &mut self.dying[i];
            if d.pid.is_none() {
                d.pid = self.zygote_pids.get(&d.number).copied();
            }
            let exit = match d.child.as_mut() {
                Some(child) => match child.try_wait() {
                    Ok(Some(status)) => Some(ExitInfo::from_exit_status(status)),
                    Ok(None) => None,
                    Err(_) => Some(ExitInfo::Unknown),
                },
                None => d.pid.and_then(|pid| self.zygote_exits.remove(&pid)),
            };
            let timed_out = d.since.elapsed() >= EXIT_STATUS_GRACE;
            if exit.is_none() && !timed_out {
                i += 1;
                continue;
            }
            let mut d = self.dying.swap_remove(i);
            if exit.is_none() {
                // Socket closed but the process lingers: make sure it ends.
                if let Some(pid) = d.pid {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                if let Some(child) = d.child.as_mut() {
                    let _ = child.wait();
                }
            }
            self.worker_ended(d, exit.unwrap_or(ExitInfo::Unknown));
        }
    }

    fn worker_ended(&mut self, d: Dying, exit: ExitInfo) {
        let who = match d.pid {
            Some(pid) => format!("worker process {pid}"),
            None => format!("worker #{}", d.number),
        };
        // An exit we asked for, or a kill we made, is no news.
        let unexpected = !(d.killed_by_us || (d.expected && exit == ExitInfo::Code(0)));
        if !unexpected {
            self.shared.log(log::Level::Debug, format!("{who} exited"));
        } else if self.phase != Phase::Terminating {
            self.shared
                .log(log::Level::Warn, format!("{who} {exit}{}", exit.hint()));
        }
        if let Some(task) = d.lost {
            let message = format!("{who} {exit} while running this task{}", exit.hint());
            let d = self.scheduler.deliver(
                task.job,
                TaskOutcome {
                    index: task.index,
                    status: ResultStatus::WorkerLost,
                    payload: message.into_bytes(),
                },
            );
            self.after_delivery(task.job, d);
        }
        if unexpected && matches!(self.phase, Phase::Running | Phase::Closing) {
            self.note_crash(&who, exit);
        }
        if d.before_ready && matches!(self.phase, Phase::Running | Phase::Closing) {
            self.boot_failures += 1;
            if self.boot_failures >= self.config.boot_failure_limit {
                self.break_pool(format!(
                    "{} worker processes in a row died before they were ready (the last one {exit}); \
                     the initializer may be failing",
                    self.boot_failures
                ));
            }
        }
    }

    fn note_crash(&mut self, who: &str, exit: ExitInfo) {
        let now = Instant::now();
        let window = self.config.crash_window;
        self.recent_deaths.push_back(now);
        while self
            .recent_deaths
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.recent_deaths.pop_front();
        }
        if self.recent_deaths.len() as u32 >= self.config.crash_limit {
            self.break_pool(format!(
                "{} worker processes died within {:?} (the last, {who}, {exit}); \
                 stopped replacing them",
                self.recent_deaths.len(),
                window
            ));
        }
    }

    fn break_pool(&mut self, why: String) {
        if self.broken.is_some() {
            return;
        }
        self.shared
            .log(log::Level::Error, format!("pool broken: {why}"));
        self.broken = Some(why.clone());
        let slots = self.workers.iter_mut().map(|w| &mut w.slot);
        let completed = self
            .scheduler
            .fail_everything(slots, ResultStatus::PoolBroken, &why);
        for job in completed {
            self.notify_service(job);
        }
        self.fail_open_jobs(&why);
        self.stop_all_workers(Signal::SIGTERM);
    }

    /// Jobs whose input is still open (a lazy map still reading) would wait
    /// for ever for tasks that will never run: each gets a failure at the
    /// position its input had reached, so the rest cannot go missing
    /// silently, and is closed; tasks still sent are refused with `why`.
    fn fail_open_jobs(&mut self, why: &str) {
        for job in self.scheduler.open_jobs() {
            let still_reading = !job.progress.lock().input_closed;
            if still_reading {
                let next = job.progress.lock().submitted;
                let completed = job.add_local(TaskOutcome {
                    index: next,
                    status: ResultStatus::PoolBroken,
                    payload: format!("{why}; the rest of the input was not read").into_bytes(),
                });
                if job.wants_service(completed) {
                    self.notify_service(job.id);
                }
            }
            let d = self.scheduler.close_job_input(job.id);
            self.after_delivery(job.id, d);
        }
    }

    fn stop_all_workers(&mut self, signal: Signal) {
        for w in &mut self.workers {
            if let Some(pid) = w.pid.or_else(|| self.zygote_pids.get(&w.number).copied()) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            // Idle workers see EOF and exit even if SIGTERM is ignored;
            // shutdown() works however many processes hold the fd.
            let _ = w.sock.shutdown(std::net::Shutdown::Write);
            w.state = WorkerState::Retiring;
            w.slot.inflight.clear();
            w.out.clear();
        }
        self.terminate_deadline = Some(Instant::now() + TERMINATE_GRACE);
    }

    fn terminate(&mut self, kill_now: bool) {
        if matches!(self.phase, Phase::Terminating | Phase::Finished) {
            return;
        }
        self.phase = Phase::Terminating;
        let slots = self.workers.iter_mut().map(|w| &mut w.slot);
        let why = "the pool was terminated before this task finished";
        let completed = self
            .scheduler
            .fail_everything(slots, ResultStatus::PoolBroken, why);
        for job in completed {
            self.notify_service(job);
        }
        self.fail_open_jobs(why);
        self.stop_all_workers(if kill_now {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        });
    }

    fn advance_phase(&mut self) {
        if let Some(deadline) = self.terminate_deadline {
            if Instant::now() >= deadline {
                for w in &self.workers {
                    if let Some(pid) = w.pid {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                // Workers the zygote started whose pid we never learned: the
                // zygote kills its children when its control socket closes.
                if self.workers.iter().any(|w| w.pid.is_none()) {
                    self.launcher = None;
                }
                self.terminate_deadline = Some(Instant::now() + TERMINATE_GRACE);
            }
        }
        let stopping = match self.phase {
            Phase::Closing => !self.scheduler.has_jobs(),
            Phase::Terminating => true,
            Phase::Running => self.broken.is_some() && !self.scheduler.has_jobs(),
            Phase::Finished => false,
        };
        // A broken pool stays Running (and refuses work) until it is closed.
        if stopping
            && self.workers.is_empty()
            && self.dying.is_empty()
            && self.phase != Phase::Running
        {
            self.phase = Phase::Finished;
        }
    }

    fn publish_status(&mut self) {
        let pids: Vec<i32> = self.workers.iter().filter_map(|w| w.pid).collect();
        let phase = self.phase;
        let broken = self.broken.clone();
        let changed = {
            let s = self.shared.status.lock();
            s.phase != phase || s.broken != broken || pids != self.published_pids
        };
        if changed {
            self.published_pids = pids.clone();
            self.shared.status.update(|s| {
                s.phase = phase;
                s.broken = broken;
                s.pids = pids;
            });
        }
    }
}
