//! Worker life cycle, the part of the engine thread's loop that starts,
//! retires, times out, buries and replaces workers, and breaks or terminates
//! the pool. Runs on the engine thread, as part of `EventLoop`.
//!
//! ```text
//!  start_workers ──▶ Starting ──Ready──▶ Ready ──task limit / closing──▶ Retiring
//!        ▲                                 │ socket EOF, or killed for its timeout
//!        └─────── replacement ◀── collect_exits ◀── bury_dead_workers (running task lost)
//! ```

use std::os::fd::AsRawFd;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::{Dying, EventLoop, Worker, WorkerState, EXIT_STATUS_GRACE, TERMINATE_GRACE};
use crate::engine::jobs::TaskOutcome;
use crate::engine::outbox::Outbox;
use crate::engine::protocol::{FrameDecoder, Kind, ResultStatus};
use crate::engine::scheduler::{Scheduler, Task, WorkerSlot};
use crate::engine::shared::{Phase, ServiceEvent};
use crate::engine::supervisor::{signal_worker, ExitInfo, OwnChild};

impl EventLoop {
    pub(super) fn live_worker_target(&self) -> usize {
        match self.phase {
            Phase::Running => self.config.processes,
            Phase::Closing if self.scheduler.has_jobs() => self.config.processes,
            _ => 0,
        }
    }

    pub(super) fn start_workers(&mut self) {
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
                    let pid = launched.child.as_ref().map(OwnChild::pid);
                    if let Some(fd) = launched.fork_request {
                        let engine_end = launched.sock.as_raw_fd();
                        let event = ServiceEvent::ForkWorker(number, fd, engine_end);
                        self.shared.service.update(|q| q.events.push_back(event));
                    }
                    self.workers.push(Worker {
                        number,
                        sock: launched.sock,
                        decoder: FrameDecoder::new(),
                        fds: std::collections::VecDeque::new(),
                        out,
                        forgets: Vec::new(),
                        slot: WorkerSlot::new(self.config.tasks_per_worker),
                        state: WorkerState::Starting,
                        pid,
                        child: launched.child,
                        dead: false,
                        unforked: false,
                        timed_out: false,
                        violation: None,
                        last_byte_at: Instant::now(),
                        started_at: Instant::now(),
                        tally: None,
                    });
                    self.workers_started += 1;
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

    /// Takes back the fork requests the service thread has not picked up
    /// yet: those workers are never started.
    fn cancel_unforked_workers(&mut self) {
        let mut cancelled = Vec::new();
        self.shared.service.update(|q| {
            q.events.retain(|e| match e {
                ServiceEvent::ForkWorker(number, _, _) => {
                    cancelled.push(*number);
                    false
                }
                _ => true,
            })
        });
        for w in &mut self.workers {
            if cancelled.contains(&w.number) {
                w.unforked = true;
                w.dead = true;
            }
        }
    }

    /// The service thread reports the pid of a worker it forked for us.
    pub(super) fn worker_forked(&mut self, number: u64, pid: Option<i32>) {
        let Some(pid) = pid else {
            // Not forked (the fork failed, or the pool was stopping): the
            // worker never existed. Failed forks count as failed starts.
            // (Workers are only marked here: indices into them are in use.)
            for w in &mut self.workers {
                if w.number == number {
                    w.unforked = true;
                    w.dead = true;
                }
            }
            self.dying.retain(|d| d.number != number);
            if self.broken.is_none() && self.phase == Phase::Running {
                self.boot_failures += 1;
                if self.boot_failures >= self.config.boot_failure_limit {
                    self.break_pool(format!(
                        "{} worker processes in a row could not be started (fork failed)",
                        self.boot_failures
                    ));
                }
            }
            return;
        };
        let stopping = self.broken.is_some() || self.phase == Phase::Terminating;
        if let Some(w) = self.workers.iter_mut().find(|w| w.number == number) {
            w.pid = Some(pid);
            w.child = Some(OwnChild::forked(pid));
            if stopping {
                // Forked while the pool was being stopped: it missed that.
                signal_worker(pid, w.child.as_ref(), Signal::SIGTERM);
            }
        } else if let Some(d) = self.dying.iter_mut().find(|d| d.number == number) {
            d.pid = Some(pid);
            d.child = Some(OwnChild::forked(pid));
        } else {
            // Already given up on (the pool is gone): make sure it ends.
            let mut child = OwnChild::forked(pid);
            signal_worker(pid, Some(&child), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    pub(super) fn bury_dead_workers(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            if !self.workers[i].dead {
                i += 1;
                continue;
            }
            if self.workers[i].unforked {
                let mut w = self.workers.swap_remove(i);
                self.scheduler.worker_gone(&mut w.slot, false);
                continue;
            }
            // Results it sent before it went away are still in the socket:
            // take them first, so only the task really running is lost.
            self.read_worker(i);
            let mut w = self.workers.swap_remove(i);
            let was_running = (w.state == WorkerState::Ready || w.state == WorkerState::Retiring)
                && w.began_first_held();
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
                killed_by_us: w.timed_out || w.violation.is_some(),
                violation: w.violation.take(),
                timed_out: w.timed_out,
                figures: w.slot.figures,
                lost,
                since: Instant::now(),
            });
        }
    }

    /// The earliest moment a running task reaches the task timeout.
    pub(super) fn next_task_deadline(&self) -> Option<Instant> {
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
    pub(super) fn kill_overdue_workers(&mut self) {
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
                signal_worker(pid, w.child.as_ref(), Signal::SIGKILL);
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

    pub(super) fn fail_timed_out(&mut self, task: Task, who: &str) {
        let limit = self.config.task_timeout.unwrap_or_default().as_secs_f64();
        let message =
            format!("the task ran past its time limit of {limit} s; {who} running it was killed");
        self.fail_task(&task, ResultStatus::TimedOut, message);
    }

    /// Fails a task the engine took back from its worker with `message`.
    fn fail_task(&mut self, task: &Task, status: ResultStatus, message: String) {
        let outcome = TaskOutcome {
            index: task.index,
            status,
            payload: message.into_bytes().into(),
        };
        let d = self.scheduler.deliver(task.job, outcome);
        self.after_delivery(task.job, d);
    }

    pub(super) fn retire_workers(&mut self) {
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

    pub(super) fn collect_exits(&mut self) {
        let mut i = 0;
        while i < self.dying.len() {
            let d = &mut self.dying[i];
            if d.pid.is_none() {
                d.pid = self.zygote_pids.get(&d.number).copied();
            }
            let exit = match d.child.as_mut() {
                Some(child) => child.try_wait(),
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
                    signal_worker(pid, d.child.as_ref(), Signal::SIGKILL);
                }
                if let Some(child) = d.child.as_mut() {
                    let _ = child.wait();
                }
            }
            self.worker_ended(d, exit.unwrap_or(ExitInfo::Unknown));
        }
    }

    pub(super) fn worker_ended(&mut self, d: Dying, exit: ExitInfo) {
        let who = match d.pid {
            Some(pid) => format!("worker process {pid}"),
            None => format!("worker #{}", d.number),
        };
        if let (Some(pid), Some(code)) = (d.pid, exit.exitcode()) {
            self.shared.status.update(|s| s.remember_exit(pid, code));
        }
        // An exit we asked for, or a kill we made, is no news.
        let unexpected = !(d.killed_by_us || (d.expected && exit == ExitInfo::Code(0)));
        self.record_end(&d, exit, unexpected);
        if !unexpected {
            self.shared.log(log::Level::Debug, format!("{who} exited"));
        } else if self.phase != Phase::Terminating {
            self.shared
                .log(log::Level::Warn, format!("{who} {exit}{}", exit.hint()));
        }
        if let Some(task) = d.lost {
            let message = match &d.violation {
                Some(why) => format!(
                    "{who} broke the protocol while running this task: it sent {why}; \
                     it was killed and replaced"
                ),
                None => format!("{who} {exit} while running this task{}", exit.hint()),
            };
            self.fail_task(&task, ResultStatus::WorkerLost, message);
        }
        if unexpected && matches!(self.phase, Phase::Running | Phase::Closing) {
            self.note_crash(&who, exit);
        }
        if d.before_ready && matches!(self.phase, Phase::Running | Phase::Closing) {
            self.boot_failures += 1;
            if self.boot_failures >= self.config.boot_failure_limit {
                self.break_pool(format!(
                    "{} worker processes in a row died before they were ready (the last one {exit}); \
                     the initializer may be failing, or (spawn, forkserver) the main module \
                     starts a pool when a worker imports it: put that code under \
                     `if __name__ == \"__main__\":` (the workers' stderr says which)",
                    self.boot_failures
                ));
            }
        }
    }

    pub(super) fn note_crash(&mut self, who: &str, exit: ExitInfo) {
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

    pub(super) fn break_pool(&mut self, why: String) {
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
    pub(super) fn fail_open_jobs(&mut self, why: &str) {
        for job in self.scheduler.open_jobs() {
            let still_reading = !job.progress.lock().input_closed;
            if still_reading {
                let next = job.progress.lock().submitted;
                let completed = job.add_local(TaskOutcome {
                    index: next,
                    status: ResultStatus::PoolBroken,
                    payload: format!("{why}; the rest of the input was not read")
                        .into_bytes()
                        .into(),
                });
                if job.wants_service(completed) {
                    self.notify_service(job.id);
                }
            }
            let d = self.scheduler.close_job_input(job.id);
            self.after_delivery(job.id, d);
        }
    }

    pub(super) fn stop_all_workers(&mut self, signal: Signal) {
        self.cancel_unforked_workers();
        for w in &mut self.workers {
            if let Some(pid) = w.pid.or_else(|| self.zygote_pids.get(&w.number).copied()) {
                // Its process group too, where it leads one (pools with a
                // task timeout): a task's own children would stay behind.
                signal_worker(pid, w.child.as_ref(), signal);
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

    pub(super) fn terminate(&mut self, kill_now: bool) {
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

    pub(super) fn advance_phase(&mut self) {
        if let Some(deadline) = self.terminate_deadline {
            if Instant::now() >= deadline {
                for w in &self.workers {
                    if let Some(pid) = w.pid {
                        signal_worker(pid, w.child.as_ref(), Signal::SIGKILL);
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
}
