//! Per-job result bookkeeping, shared between the engine thread (which adds
//! results as workers send them) and Python-facing handles (which wait for and
//! take them).
//!
//! ```text
//!  caller: submitted += n ──▶ engine: result arrives ──▶ arrived.push_back
//!                                      │ received == submitted && input closed
//!                                      ▼
//!                    complete ──(no callback)──▶ ready ──▶ get()/wait() return
//!                        └──(callback)──▶ service thread runs it ──▶ ready
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::engine::protocol::ResultStatus;
use crate::engine::shm::ReceivedMap;
use crate::engine::sync::Signal;

pub type JobId = u64;

#[derive(Debug, PartialEq, Eq)]
pub struct TaskOutcome {
    pub index: u64,
    pub status: ResultStatus,
    pub payload: OutcomeBytes,
}

/// An outcome's payload: bytes in this process's memory, or a worker's
/// sealed shared memory, mapped read-only (see `shm`).
pub enum OutcomeBytes {
    Heap(Vec<u8>),
    Mapped(ReceivedMap),
}

impl std::ops::Deref for OutcomeBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            OutcomeBytes::Heap(v) => v,
            OutcomeBytes::Mapped(m) => m.as_slice(),
        }
    }
}

impl From<Vec<u8>> for OutcomeBytes {
    fn from(v: Vec<u8>) -> Self {
        OutcomeBytes::Heap(v)
    }
}

impl PartialEq for OutcomeBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for OutcomeBytes {}

impl std::fmt::Debug for OutcomeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self {
            OutcomeBytes::Heap(_) => "heap",
            OutcomeBytes::Mapped(_) => "shared",
        };
        write!(f, "OutcomeBytes({} bytes, {place})", self.len())
    }
}

#[derive(Default, Debug)]
pub struct JobProgress {
    /// Outcomes not yet taken by the Python side, in arrival order.
    pub arrived: VecDeque<TaskOutcome>,
    /// Tasks handed to the engine so far.
    pub submitted: u64,
    /// Outcomes produced so far (taken or not).
    pub received: u64,
    /// No more tasks will be added to this job.
    pub input_closed: bool,
    /// Every submitted task has an outcome and the input is closed.
    pub complete: bool,
    /// Complete and, where the job has callbacks, the callbacks have run.
    pub ready: bool,
    pub has_callback: bool,
    /// Read-ahead window of a lazy feeder: tasks whose place was freed
    /// (consumed by the caller, or arrived where results are kept anyway).
    pub released: u64,
    pub release_on_arrival: bool,
    /// The job takes no more input (its consumer gave up, or the executor
    /// shut down): its feeder stops reading.
    pub feeding_stopped: bool,
    /// Counts every take of outcomes, and every `settled` report of the
    /// Python side after it settled what it took: a thread waiting for one
    /// task's outcome, which another thread may take, wakes at each change.
    pub changes: u64,
}

impl JobProgress {
    /// Free places in the read-ahead window of `limit` tasks.
    pub fn room(&self, limit: u64) -> u64 {
        limit.saturating_sub(self.submitted.saturating_sub(self.released))
    }

    fn refresh(&mut self) -> bool {
        let was = self.complete;
        self.complete = self.input_closed && self.received >= self.submitted;
        if self.complete && !self.has_callback {
            self.ready = true;
        }
        self.complete && !was
    }

    /// Tasks submitted whose outcome has not arrived yet.
    pub fn in_flight(&self) -> u64 {
        self.submitted.saturating_sub(self.received)
    }
}

pub struct Job {
    pub id: JobId,
    /// Completion goes through the service thread, which runs the callbacks
    /// and then marks the job ready.
    pub has_callback: bool,
    /// Every outcome is announced to the service thread (a stream job: the
    /// executor sends all calls of one function through one job).
    pub notify_each: bool,
    /// When non-zero, each time this many outcomes wait untaken the service
    /// thread hears of it too, and takes them: a map with callbacks over
    /// millions of tasks keeps no backlog here.
    pub notify_batch: u64,
    /// A batch of `notify_batch` outcomes waits untaken (set while the
    /// outcome is recorded, taken by `wants_service`: no second lock).
    batch_due: AtomicBool,
    /// Threads waiting for this job's outcomes to take them themselves (an
    /// executor's caller in `result()`): while there is one, a stream's
    /// outcomes are not announced to the service thread (the waiting thread
    /// hands it what it must settle, see `PyJob::wait_change`).
    pub callers_waiting: AtomicU32,
    /// Set once someone awaits the job from an event loop (asyncio): from
    /// then on every outcome, and the completion, is announced to the
    /// service thread, which wakes the loop.
    pub announce: AtomicBool,
    pub progress: Signal<JobProgress>,
}

impl Job {
    pub fn new(id: JobId, has_callback: bool) -> Arc<Job> {
        Self::with_notify(id, has_callback, false, 0)
    }

    pub fn with_notify(
        id: JobId,
        has_callback: bool,
        notify_each: bool,
        notify_batch: u64,
    ) -> Arc<Job> {
        Arc::new(Job {
            id,
            has_callback,
            notify_each,
            notify_batch,
            batch_due: AtomicBool::new(false),
            callers_waiting: AtomicU32::new(0),
            announce: AtomicBool::new(false),
            progress: Signal::new(JobProgress {
                has_callback,
                ..JobProgress::default()
            }),
        })
    }

    /// Whether the service thread must hear of an outcome that did (or did
    /// not) complete the job.
    pub fn wants_service(&self, completed: bool) -> bool {
        // SeqCst, as the waiter's decrement: see PyJob::wait_change.
        if self.announce.load(Ordering::SeqCst) {
            return true;
        }
        let caller_takes = self.callers_waiting.load(Ordering::SeqCst) > 0;
        if (self.notify_each && (completed || !caller_takes)) || (completed && self.has_callback) {
            return true;
        }
        self.batch_due.swap(false, Ordering::Relaxed)
    }

    /// Records an outcome. Returns true when this made the job complete.
    pub fn deliver(&self, outcome: TaskOutcome) -> bool {
        self.progress.update(|p| self.record(p, outcome))
    }

    /// Counts one task that never reaches a worker and records its outcome.
    pub fn add_local(&self, outcome: TaskOutcome) -> bool {
        self.progress.update(|p| {
            p.submitted += 1;
            self.record(p, outcome)
        })
    }

    fn record(&self, p: &mut JobProgress, outcome: TaskOutcome) -> bool {
        p.arrived.push_back(outcome);
        p.received += 1;
        if p.release_on_arrival {
            p.released += 1;
        }
        if self.notify_batch > 0 && p.arrived.len() as u64 % self.notify_batch == 0 {
            self.batch_due.store(true, Ordering::Relaxed);
        }
        p.refresh()
    }

    pub fn add_submitted(&self, n: u64) {
        self.progress.update(|p| {
            p.submitted += n;
            p.complete = false;
        });
    }

    /// Returns true when this made the job complete.
    pub fn close_input(&self) -> bool {
        self.progress.update(|p| {
            p.input_closed = true;
            p.refresh()
        })
    }

    pub fn mark_ready(&self) {
        self.progress.update(|p| p.ready = true);
    }

    pub fn take_arrived(&self) -> Vec<TaskOutcome> {
        self.progress.update(|p| {
            p.changes += 1;
            p.arrived.drain(..).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(i: u64) -> TaskOutcome {
        TaskOutcome {
            index: i,
            status: ResultStatus::Ok,
            payload: vec![i as u8].into(),
        }
    }

    #[test]
    fn completes_only_after_input_closed_and_all_delivered() {
        let job = Job::new(1, false);
        job.add_submitted(2);
        assert!(!job.deliver(ok(0)));
        assert!(!job.deliver(ok(1)));
        assert!(job.close_input());
        let p = job.progress.lock();
        assert!(p.complete && p.ready);
        assert_eq!(p.arrived.len(), 2);
    }

    #[test]
    fn callback_jobs_wait_for_mark_ready() {
        let job = Job::new(2, true);
        job.add_submitted(1);
        job.close_input();
        assert!(job.deliver(ok(0)));
        assert!(!job.progress.lock().ready);
        job.mark_ready();
        assert!(job.progress.lock().ready);
        assert_eq!(job.take_arrived(), vec![ok(0)]);
    }

    #[test]
    fn a_batch_job_asks_for_service_each_batch() {
        let job = Job::with_notify(4, true, false, 3);
        job.add_submitted(7);
        let asked: Vec<bool> = (0..7)
            .map(|i| {
                let completed = job.deliver(ok(i));
                job.wants_service(completed)
            })
            .collect();
        assert_eq!(asked, [false, false, true, false, false, true, false]);
        assert_eq!(job.take_arrived().len(), 6 + 1);
        assert!(job.close_input());
        assert!(job.wants_service(true), "completion is always news");
    }

    #[test]
    fn an_awaited_job_announces_every_outcome() {
        let job = Job::new(5, false);
        job.add_submitted(3);
        assert!(!job.wants_service(job.deliver(ok(0))));
        job.announce.store(true, Ordering::SeqCst);
        assert!(job.wants_service(job.deliver(ok(1))));
        assert!(job.wants_service(job.deliver(ok(2))));
    }

    #[test]
    fn empty_job_completes_on_close() {
        let job = Job::new(3, false);
        assert!(job.close_input());
        assert!(job.progress.lock().ready);
    }
}
