//! Chunk scheduling: which task goes to which worker, and what happens to the
//! tasks a worker held when it goes away. Pure bookkeeping, no I/O: the event
//! loop turns its decisions into frames.
//!
//! ```text
//!   submit ──▶ queue (FIFO over all jobs) ──fill()──▶ worker.inflight ──result──▶ deliver()
//!                 ▲                                        │
//!                 └──────── requeue (prefetched, unstarted) ┘ worker lost: the first
//!                                                              in-flight task fails
//! ```
//!
//! A worker runs its tasks in the order it received them, so the first task
//! in its in-flight list is the one it is running.
//!
//! Prefetch (tasks queued on a busy worker) hides the hand-off latency of
//! short tasks and lets one system call carry many frames, but a task queued
//! behind a long one waits even if another worker goes idle. So it is
//! adaptive: a worker holds about `QUEUED_WORK` of tasks by the moving
//! average of recent task times, and only one while tasks are long.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::jobs::{Job, JobId, TaskOutcome};
use crate::engine::outbox::{Outbox, Payload};
use crate::engine::protocol::{CallMode, Kind, ResultStatus};
use crate::engine::stats::Figures;

pub struct Task {
    pub job: JobId,
    pub index: u64,
    pub payload: Payload,
    /// When it was written to a worker (None while queued).
    pub sent_at: Option<Instant>,
}

/// Tasks shorter than this on average are worth prefetching.
pub const PREFETCH_BELOW: Duration = Duration::from_millis(5);
/// How much work (by the average task time) a worker may have queued behind
/// the task it runs: at most about this much is stuck behind a task that
/// turns out long while another worker idles.
pub const QUEUED_WORK: Duration = Duration::from_millis(1);

struct JobEntry {
    job: Arc<Job>,
    mode: CallMode,
    func: Arc<Vec<u8>>,
    /// Tasks of this job queued or in flight.
    outstanding: u64,
    input_closed: bool,
    /// Tasks of this job are cancelled instead of queued.
    cancelled: bool,
}

/// The scheduler's view of one worker.
#[derive(Default)]
pub struct WorkerSlot {
    pub inflight: VecDeque<Task>,
    /// Jobs whose function this worker has cached, with the size of its
    /// pickle.
    pub known_funcs: HashMap<JobId, usize>,
    /// Tasks handed to this worker over its life (for maxtasksperchild).
    pub taken: u64,
    pub task_limit: Option<u64>,
    /// When this worker last reported a result: a queued task's own run
    /// starts then, not when it was sent.
    pub last_done_at: Option<Instant>,
    /// What it did, for `Pool.stats()`.
    pub figures: Figures,
}

impl WorkerSlot {
    pub fn new(task_limit: Option<u64>) -> Self {
        WorkerSlot {
            task_limit,
            ..WorkerSlot::default()
        }
    }

    /// The worker has been given every task it may ever run.
    pub fn exhausted(&self) -> bool {
        self.task_limit.is_some_and(|limit| self.taken >= limit)
    }
}

/// What delivering an outcome changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The job now has every outcome (its handle's waiters were woken).
    pub job_complete: bool,
    /// The job has no tasks left anywhere; workers may drop its function.
    pub job_finished: bool,
    /// The job completed and has callbacks for the service thread to run.
    pub notify_service: bool,
}

fn cancelled(index: u64) -> TaskOutcome {
    TaskOutcome {
        index,
        status: ResultStatus::Cancelled,
        payload: Vec::new().into(),
    }
}

pub struct Scheduler {
    queue: VecDeque<Task>,
    jobs: HashMap<JobId, JobEntry>,
    prefetch: usize,
    /// Moving average of recent task run times (None until measured).
    task_time: Option<Duration>,
}

impl Scheduler {
    pub fn new(prefetch: usize) -> Self {
        Scheduler {
            queue: VecDeque::new(),
            jobs: HashMap::new(),
            prefetch: prefetch.max(1),
            task_time: None,
        }
    }

    pub fn add_job(&mut self, job: Arc<Job>, mode: CallMode, func: Vec<u8>) {
        self.jobs.insert(
            job.id,
            JobEntry {
                job,
                mode,
                func: Arc::new(func),
                outstanding: 0,
                input_closed: false,
                cancelled: false,
            },
        );
    }

    /// Queues a task. A task for an unknown job is answered at once with a
    /// `PoolBroken` outcome by the caller; here it is simply refused.
    pub fn add_task(&mut self, task: Task) -> bool {
        match self.jobs.get_mut(&task.job) {
            Some(entry) if entry.cancelled => {
                entry.outstanding += 1;
                let d = self.deliver(task.job, cancelled(task.index));
                debug_assert!(!d.job_finished, "the input is still open");
                true
            }
            Some(entry) => {
                entry.outstanding += 1;
                self.queue.push_back(task);
                true
            }
            None => false,
        }
    }

    /// Cancels every task of `job` not yet sent to a worker, and any added
    /// later: each gets a `Cancelled` outcome. Tasks already sent still run.
    pub fn cancel_queued(&mut self, job: JobId) -> Delivered {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return Delivered::default();
        };
        entry.cancelled = true;
        let mut indices = Vec::new();
        self.queue.retain(|t| {
            let ours = t.job == job;
            if ours {
                indices.push(t.index);
            }
            !ours
        });
        let mut all = Delivered::default();
        for index in indices {
            let d = self.deliver(job, cancelled(index));
            all.job_complete |= d.job_complete;
            all.job_finished |= d.job_finished;
            all.notify_service |= d.notify_service;
        }
        all
    }

    /// No more tasks for `job`. Returns whether the job is finished.
    pub fn close_job_input(&mut self, job: JobId) -> Delivered {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return Delivered::default();
        };
        entry.input_closed = true;
        let job_complete = entry.job.close_input();
        // Completion is news to whoever follows the job (callbacks, progress,
        // an event loop), as when an outcome completes it.
        let notify_service = job_complete && entry.job.wants_service(true);
        let job_finished = entry.outstanding == 0;
        if job_finished {
            self.jobs.remove(&job);
        }
        Delivered {
            job_complete,
            job_finished,
            notify_service,
        }
    }

    pub fn job_handle(&self, job: JobId) -> Option<Arc<Job>> {
        self.jobs.get(&job).map(|e| Arc::clone(&e.job))
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Whether this worker should get another task now.
    fn wants_task(&self, slot: &WorkerSlot, depth: usize) -> bool {
        slot.inflight.len() < depth && !slot.exhausted()
    }

    /// Hands queued tasks to workers, one at a time in turn so that every idle
    /// worker gets work before any worker gets a prefetched second task.
    /// Frames for each worker are appended to its output buffer.
    pub fn fill<'a>(
        &mut self,
        workers: impl Iterator<Item = (&'a mut WorkerSlot, &'a mut Outbox)>,
    ) {
        let mut workers: Vec<_> = workers.collect();
        let least_held = workers
            .iter()
            .map(|(slot, _)| slot.inflight.len())
            .min()
            .unwrap_or(0);
        for depth in least_held + 1..=self.depth() {
            for (slot, out) in workers.iter_mut() {
                if self.queue.is_empty() {
                    return;
                }
                if self.wants_task(slot, depth) {
                    self.assign_one(slot, out);
                }
            }
        }
    }

    /// When the task this worker is running began: it was sent, or the
    /// worker finished the one before it, whichever came later.
    pub fn running_since(slot: &WorkerSlot) -> Option<Instant> {
        let sent = slot.inflight.front()?.sent_at?;
        Some(match slot.last_done_at {
            Some(done) => sent.max(done),
            None => sent,
        })
    }

    /// How many tasks a worker may hold now: one while task times are
    /// unknown or long, else the running one plus `QUEUED_WORK` of queued
    /// ones (at least one, at most `prefetch` in all).
    pub fn depth(&self) -> usize {
        match self.task_time {
            Some(t) if t < PREFETCH_BELOW => {
                let queued = QUEUED_WORK.as_nanos() / t.as_nanos().max(1);
                let wanted = usize::try_from(queued)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1);
                wanted.max(2).min(self.prefetch)
            }
            _ => 1,
        }
    }

    fn record_task_time(&mut self, slot: &mut WorkerSlot, task: &Task) {
        let now = Instant::now();
        let started = match (task.sent_at, slot.last_done_at) {
            (Some(sent), Some(done)) => sent.max(done),
            (Some(sent), None) => sent,
            (None, _) => return,
        };
        slot.last_done_at = Some(now);
        let sample = now.saturating_duration_since(started);
        slot.figures.busy += sample;
        self.task_time = Some(match self.task_time {
            None => sample,
            Some(avg) => (avg * 4 + sample) / 5,
        });
    }

    fn assign_one(&mut self, slot: &mut WorkerSlot, out: &mut Outbox) {
        let Some(mut task) = self.queue.pop_front() else {
            return;
        };
        if let Some(entry) = self.jobs.get(&task.job) {
            if let std::collections::hash_map::Entry::Vacant(known) =
                slot.known_funcs.entry(task.job)
            {
                known.insert(entry.func.len());
                out.push(Kind::Func, entry.mode as u8, task.job, 0, &entry.func);
                slot.figures.bytes_sent += entry.func.len() as u64;
            }
        }
        out.push_shared(Kind::Task, 0, task.job, task.index, &task.payload);
        slot.figures.bytes_sent += task.payload.bytes().len() as u64;
        task.sent_at = Some(Instant::now());
        slot.taken += 1;
        slot.inflight.push_back(task);
    }

    /// Records the outcome of a task a worker reported.
    pub fn complete(
        &mut self,
        slot: &mut WorkerSlot,
        outcome: TaskOutcome,
        job: JobId,
    ) -> Delivered {
        // The worker answers in order, so this is almost always the front.
        let pos = slot
            .inflight
            .iter()
            .position(|t| t.job == job && t.index == outcome.index);
        if let Some(task) = pos.and_then(|pos| slot.inflight.remove(pos)) {
            self.record_task_time(slot, &task);
            slot.figures.tasks_done += 1;
            slot.figures.bytes_received += outcome.payload.len() as u64;
        }
        self.deliver(job, outcome)
    }

    /// Gives `job` an outcome made by the engine or reported by a worker.
    pub fn deliver(&mut self, job: JobId, outcome: TaskOutcome) -> Delivered {
        let Some(entry) = self.jobs.get_mut(&job) else {
            return Delivered::default();
        };
        entry.outstanding = entry.outstanding.saturating_sub(1);
        let job_complete = entry.job.deliver(outcome);
        let notify_service = entry.job.wants_service(job_complete);
        let job_finished = entry.input_closed && entry.outstanding == 0;
        if job_finished {
            self.jobs.remove(&job);
        }
        Delivered {
            job_complete,
            job_finished,
            notify_service,
        }
    }

    /// A worker went away. The task it was running (if `running_lost`) is
    /// returned so the caller can fail it; the prefetched ones go back to the
    /// front of the queue in their original order.
    pub fn worker_gone(&mut self, slot: &mut WorkerSlot, running_lost: bool) -> Option<Task> {
        let mut tasks = std::mem::take(&mut slot.inflight);
        slot.known_funcs.clear();
        let lost = if running_lost {
            tasks.pop_front()
        } else {
            None
        };
        while let Some(task) = tasks.pop_back() {
            self.queue.push_front(task);
        }
        lost
    }

    /// Fails every queued task (and every task still in the given slots) with
    /// the same status and message; used when the pool breaks or terminates.
    pub fn fail_everything<'a>(
        &mut self,
        slots: impl Iterator<Item = &'a mut WorkerSlot>,
        status: ResultStatus,
        message: &str,
    ) -> Vec<JobId> {
        let mut tasks: Vec<Task> = self.queue.drain(..).collect();
        for slot in slots {
            tasks.extend(slot.inflight.drain(..));
            slot.known_funcs.clear();
        }
        let mut completed = Vec::new();
        for task in tasks {
            let outcome = TaskOutcome {
                index: task.index,
                status,
                payload: message.as_bytes().to_vec().into(),
            };
            if self.deliver(task.job, outcome).notify_service {
                completed.push(task.job);
            }
        }
        completed
    }

    /// Jobs still open for input (their feeders may add more tasks).
    pub fn open_jobs(&self) -> Vec<Arc<Job>> {
        self.jobs.values().map(|e| Arc::clone(&e.job)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::FrameDecoder;

    fn frames(out: &[u8]) -> Vec<(Kind, u64, u64)> {
        let mut dec = FrameDecoder::new();
        dec.feed(out);
        let mut v = Vec::new();
        while let Some(f) = dec.next_frame().expect("frame") {
            v.push((f.kind, f.job, f.index));
        }
        v
    }

    fn setup(tasks: u64) -> (Scheduler, Arc<Job>) {
        let mut s = Scheduler::new(2);
        let job = Job::new(1, false);
        s.add_job(Arc::clone(&job), CallMode::Map, b"func".to_vec());
        for i in 0..tasks {
            job.add_submitted(1);
            assert!(s.add_task(Task {
                job: 1,
                index: i,
                payload: Arc::new(vec![i as u8]),
                sent_at: None,
            }));
        }
        (s, job)
    }

    fn ok(i: u64) -> TaskOutcome {
        TaskOutcome {
            index: i,
            status: ResultStatus::Ok,
            payload: vec![].into(),
        }
    }

    fn with_short_tasks(s: &mut Scheduler) {
        s.task_time = Some(Duration::from_micros(50));
    }

    #[test]
    fn no_prefetch_until_tasks_are_known_to_be_short() {
        let (mut s, _) = setup(4);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(a.0.inflight.len(), 1, "unknown task time: one at a time");
        s.task_time = Some(Duration::from_secs(1));
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(a.0.inflight.len(), 1, "long tasks: one at a time");
        with_short_tasks(&mut s);
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(a.0.inflight.len(), 2);
    }

    #[test]
    fn completing_tasks_measures_their_time() {
        let (mut s, _) = setup(1);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        s.complete(&mut a.0, ok(0), 1);
        assert!(s.task_time.is_some_and(|t| t < Duration::from_secs(1)));
    }

    #[test]
    fn fill_spreads_before_prefetching_and_sends_func_once() {
        let (mut s, _) = setup(5);
        with_short_tasks(&mut s);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        let mut b = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1), (&mut b.0, &mut b.1)].into_iter());
        assert_eq!(
            frames(&a.1.to_bytes()),
            vec![(Kind::Func, 1, 0), (Kind::Task, 1, 0), (Kind::Task, 1, 2)]
        );
        assert_eq!(
            frames(&b.1.to_bytes()),
            vec![(Kind::Func, 1, 0), (Kind::Task, 1, 1), (Kind::Task, 1, 3)]
        );
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn task_limit_is_respected() {
        let (mut s, _) = setup(3);
        let mut a = (WorkerSlot::new(Some(1)), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(a.0.inflight.len(), 1);
        assert!(a.0.exhausted());
        assert_eq!(s.queued(), 2);
    }

    #[test]
    fn lost_worker_fails_running_task_and_requeues_rest_in_order() {
        let (mut s, _) = setup(4);
        with_short_tasks(&mut s);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        let lost = s.worker_gone(&mut a.0, true).expect("running task");
        assert_eq!(lost.index, 0);
        let mut b = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut b.0, &mut b.1)].into_iter());
        let order: Vec<u64> = b.0.inflight.iter().map(|t| t.index).collect();
        assert_eq!(order, vec![1, 2]);
    }

    #[test]
    fn job_finishes_when_closed_and_all_outcomes_in() {
        let (mut s, job) = setup(2);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(s.complete(&mut a.0, ok(0), 1), Delivered::default());
        let d = s.complete(&mut a.0, ok(1), 1);
        assert!(!d.job_finished, "input still open");
        let d = s.close_job_input(1);
        assert!(d.job_complete && d.job_finished);
        assert!(job.progress.lock().ready);
        assert!(!s.has_jobs());
    }

    #[test]
    fn completion_by_closing_the_input_is_news_to_a_followed_job() {
        let (mut s, job) = setup(1);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        s.complete(&mut a.0, ok(0), 1);
        job.announce
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let d = s.close_job_input(1);
        assert!(d.job_complete && d.notify_service);
    }

    #[test]
    fn cancel_queued_cancels_unsent_and_later_tasks_only() {
        let (mut s, job) = setup(3);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        assert_eq!(a.0.inflight.len(), 1, "task 0 was sent");
        let d = s.cancel_queued(1);
        assert!(!d.job_finished, "task 0 still runs and the input is open");
        assert_eq!(s.queued(), 0);
        job.add_submitted(1);
        assert!(s.add_task(Task {
            job: 1,
            index: 3,
            payload: Arc::new(vec![3]),
            sent_at: None,
        }));
        assert_eq!(s.queued(), 0, "a task added later is cancelled too");
        s.close_job_input(1);
        let d = s.complete(&mut a.0, ok(0), 1);
        assert!(d.job_complete && d.job_finished);
        let p = job.progress.lock();
        let statuses: Vec<_> = p.arrived.iter().map(|o| (o.index, o.status)).collect();
        assert_eq!(
            statuses,
            vec![
                (1, ResultStatus::Cancelled),
                (2, ResultStatus::Cancelled),
                (3, ResultStatus::Cancelled),
                (0, ResultStatus::Ok)
            ]
        );
    }

    #[test]
    fn fail_everything_completes_jobs() {
        let (mut s, job) = setup(3);
        s.close_job_input(1);
        let mut a = (WorkerSlot::new(None), Outbox::new());
        s.fill([(&mut a.0, &mut a.1)].into_iter());
        let done = s.fail_everything([&mut a.0].into_iter(), ResultStatus::PoolBroken, "gone");
        assert!(done.is_empty(), "no callbacks to notify");
        let p = job.progress.lock();
        assert!(p.ready);
        assert!(p
            .arrived
            .iter()
            .all(|o| o.status == ResultStatus::PoolBroken));
    }
}
