//! Thin PyO3 wrappers over the engine: `Engine` (one per pool) and `Job`
//! (one per submitted call). They convert arguments, release the GIL around
//! every wait and hand bytes across; all logic lives in the engine modules.

use std::ffi::OsString;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

use crate::engine::errors::EngineError;
use crate::engine::handle::Engine;
use crate::engine::jobs::{Job, TaskOutcome};
use crate::engine::outbox::{Payload, PayloadBytes};
use crate::engine::protocol::{CallMode, ResultStatus};
use crate::engine::scheduler::Task;
use crate::engine::shared::{Command, EngineConfig, Phase, ServiceEvent};
use crate::engine::supervisor::Launcher;
use crate::python::buffer::{LargePayload, LEND_ABOVE};
use crate::python::payload::EnginePayload;
use crate::python::wait::blocking_wait;

/// A Python `bytes` the engine reads without the GIL.
struct SharedBytes(PyBackedBytes);

impl PayloadBytes for SharedBytes {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// How to start one pool's engine, read from the attributes of the Python
/// object `_launch.EngineSpec` (which holds the defaults): the workers, how
/// they are started (exactly one of `spawn_argv`, `zygote_fd` and
/// `fork_workers`), and the limits.
#[derive(FromPyObject)]
struct EngineSpec {
    processes: usize,
    spawn_argv: Option<Vec<OsString>>,
    inherited_fds: Vec<RawFd>,
    zygote_fd: Option<RawFd>,
    fork_workers: bool,
    first_worker_fds: Vec<RawFd>,
    first_worker_pids: Vec<i32>,
    prepare: Option<Vec<u8>>,
    setup: Option<Vec<u8>>,
    tasks_per_worker: Option<u64>,
    prefetch: usize,
    first_worker_number: u64,
    boot_failure_limit: u32,
    task_timeout: Option<f64>,
    crash_limit: u32,
    crash_window: f64,
}

#[pyclass(module = "ferropool._native", name = "Engine", frozen)]
pub struct PyEngine {
    engine: Engine,
    next_job: AtomicU64,
}

fn dup_fd(fd: RawFd) -> PyResult<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a caller-provided fd returns a fresh fd or -1.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(EngineError::Io(std::io::Error::last_os_error()).into());
    }
    // SAFETY: `new` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "RUN",
        Phase::Closing => "CLOSE",
        Phase::Terminating => "TERMINATE",
        Phase::Finished => "FINISHED",
    }
}

#[pymethods]
impl PyEngine {
    /// Starts the engine thread and the first workers. Exactly one of
    /// `spawn_argv` (spawn a fresh interpreter per worker), `zygote_fd` (ask
    /// a zygote to fork them) and `fork_workers` (the caller forks them: the
    /// first ones already, given by `first_worker_fds`/`_pids`, later ones
    /// when `service_next` asks) is given. Fds passed in are duplicated; the
    /// caller keeps its own.
    /// Starts an engine as `spec` says: an `EngineSpec` of `_launch` (or
    /// any object with its attributes).
    #[new]
    fn new(spec: EngineSpec) -> PyResult<Self> {
        let EngineSpec {
            processes,
            spawn_argv,
            inherited_fds,
            zygote_fd,
            fork_workers,
            first_worker_fds,
            first_worker_pids,
            prepare,
            setup,
            tasks_per_worker,
            prefetch,
            first_worker_number,
            boot_failure_limit,
            task_timeout,
            crash_limit,
            crash_window,
        } = spec;
        if processes == 0 {
            return Err(PyValueError::new_err(
                "Number of processes must be at least 1",
            ));
        }
        if fork_workers && (spawn_argv.is_some() || zygote_fd.is_some()) {
            return Err(PyValueError::new_err(
                "give exactly one of spawn_argv, zygote_fd and fork_workers",
            ));
        }
        let launcher = match (spawn_argv, zygote_fd) {
            (Some(argv), None) => {
                let fds = inherited_fds
                    .into_iter()
                    .map(dup_fd)
                    .collect::<PyResult<Vec<_>>>()?;
                // Workers lead process groups only where a task timeout
                // must reach a task's children (see Launcher::spawn).
                Launcher::spawn(argv, fds, task_timeout.is_some()).map_err(EngineError::Io)?
            }
            (None, Some(fd)) => Launcher::zygote(dup_fd(fd)?).map_err(EngineError::Io)?,
            (None, None) if fork_workers => {
                // The first workers, forked by the caller before this engine
                // started, in number order; any others are asked for.
                if first_worker_pids.len() != first_worker_fds.len() {
                    return Err(PyValueError::new_err(
                        "first_worker_pids must match first_worker_fds",
                    ));
                }
                let started = first_worker_fds
                    .into_iter()
                    .zip(first_worker_pids)
                    .zip(first_worker_number..)
                    .map(|((fd, pid), number)| Ok((number, dup_fd(fd)?, pid)))
                    .collect::<PyResult<Vec<_>>>()?;
                Launcher::caller(started).map_err(EngineError::Io)?
            }
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of spawn_argv, zygote_fd and fork_workers",
                ))
            }
        };
        let config = EngineConfig {
            processes,
            tasks_per_worker,
            prefetch,
            first_worker_number,
            prepare,
            setup,
            boot_failure_limit: boot_failure_limit.max(1),
            crash_limit: crash_limit.max(1),
            crash_window: std::time::Duration::from_secs_f64(crash_window.max(0.0)),
            task_timeout: match task_timeout {
                Some(t) if !(t > 0.0 && t.is_finite()) => {
                    return Err(PyValueError::new_err(format!(
                        "task_timeout must be a positive number of seconds, not {t}"
                    )))
                }
                Some(t) => Some(std::time::Duration::from_secs_f64(t)),
                None => None,
            },
        };
        let engine = Engine::start(config, launcher).map_err(EngineError::Io)?;
        Ok(PyEngine {
            engine,
            next_job: AtomicU64::new(1),
        })
    }

    /// Tells the service thread that `job` has outcomes for it (a thread
    /// that took a stream's outcomes left it futures with done-callbacks).
    fn notify_service(&self, job: &PyJob) {
        let id = job.job.id;
        self.engine
            .shared
            .service
            .update(|q| q.events.push_back(ServiceEvent::JobComplete(id)));
    }

    /// Registers a job: its pickled function and how to call it
    /// (0 apply, 1 map, 2 starmap). `notify_each` announces every outcome to
    /// the service thread, not only the job's completion; `notify_batch`
    /// (non-zero) each time that many outcomes wait untaken.
    #[pyo3(signature = (func, mode, has_callback, notify_each=false, notify_batch=0))]
    fn new_job(
        &self,
        func: Vec<u8>,
        mode: u8,
        has_callback: bool,
        notify_each: bool,
        notify_batch: u64,
    ) -> PyResult<PyJob> {
        let mode = CallMode::from_u8(mode)
            .ok_or_else(|| PyValueError::new_err(format!("bad call mode {mode}")))?;
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let job = Job::with_notify(id, has_callback, notify_each, notify_batch);
        self.send(Command::AddJob {
            job: Arc::clone(&job),
            mode,
            func,
        })?;
        Ok(PyJob { job })
    }

    /// Adds tasks numbered `start`, `start + 1`, … (each a bytes object) to
    /// `job`; `close` says no more will follow.
    fn add_tasks(
        &self,
        job: &PyJob,
        start: u64,
        payloads: &Bound<'_, PyList>,
        close: bool,
    ) -> PyResult<()> {
        let mut tasks = Vec::with_capacity(payloads.len());
        for (i, item) in payloads.iter().enumerate() {
            // No copy: the engine keeps the bytes object itself (immutable),
            // or shares the buffer a large payload was pickled into, and
            // writes from it without the GIL.
            let payload: Payload = match item.cast::<EnginePayload>() {
                Ok(engine_payload) => engine_payload.get().payload.clone(),
                Err(_) => Arc::new(SharedBytes(item.extract::<PyBackedBytes>()?)),
            };
            tasks.push(Task {
                job: job.job.id,
                index: start + i as u64,
                payload,
                sent_at: None,
            });
        }
        job.job.add_submitted(tasks.len() as u64);
        let refused = self.engine.send(Command::AddTasks {
            job: Arc::clone(&job.job),
            tasks,
            close,
        });
        if let Err(Command::AddTasks { job, tasks, close }) = refused {
            // The engine thread has ended: these tasks were counted, so they
            // must get an outcome here, or the job would wait for ever.
            for task in tasks {
                job.deliver(TaskOutcome {
                    index: task.index,
                    status: ResultStatus::PoolBroken,
                    payload: b"the pool stopped before this task was sent"
                        .to_vec()
                        .into(),
                });
            }
            if close {
                job.close_input();
            }
            if job.has_callback {
                job.mark_ready(); // no service thread is left to run callbacks
            }
            return Err(EngineError::Stopped.into());
        }
        Ok(())
    }

    /// Cancels the job's tasks not yet sent to a worker, and any added later
    /// (each gets a `Cancelled` outcome); its feeder stops at its next look.
    fn cancel_queued(&self, job: &PyJob) -> PyResult<()> {
        job.job.progress.update(|p| p.feeding_stopped = true);
        self.send(Command::CancelQueued { job: job.job.id })
            .or(Ok(()))
    }

    fn close(&self) -> PyResult<()> {
        self.send(Command::Close).or(Ok(()))
    }

    /// Stops the workers now: SIGTERM, or SIGKILL with `kill=True`.
    #[pyo3(signature = (kill=false))]
    fn terminate(&self, kill: bool) -> PyResult<()> {
        self.send(Command::Terminate { kill }).or(Ok(()))
    }

    /// Waits for the engine thread to finish (after `close` or `terminate`).
    #[pyo3(signature = (timeout=None))]
    fn wait_finished(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let done = blocking_wait(py, &self.engine.shared.status, timeout, |s| {
            s.phase == Phase::Finished
        })?;
        if done {
            py.detach(|| self.engine.reap_thread());
        }
        Ok(done)
    }

    /// Why the pool broke, or None: a cheap look for every submit.
    fn broken(&self) -> Option<String> {
        self.engine.shared.status.lock().broken.clone()
    }

    /// (phase, broken reason or None, live worker pids).
    fn status(&self) -> (&'static str, Option<String>, Vec<i32>) {
        let s = self.engine.shared.status.lock();
        (phase_name(s.phase), s.broken.clone(), s.pids.clone())
    }

    /// How worker `pid` ended (`multiprocessing.Process.exitcode`), if it
    /// ended recently; None while it runs or once forgotten.
    fn exit_code(&self, pid: i32) -> Option<i32> {
        self.engine.shared.status.lock().exit_code(pid)
    }

    /// Every worker's figures, and the workers that ended (see
    /// `ferropool._stats`), as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let stats = crate::python::stats::collect(py, &self.engine);
        crate::python::stats::to_python(py, &stats)
    }

    /// Whether worker `pid` runs, or has not ended yet (its exit status is
    /// not known), as `multiprocessing.Process.is_alive`.
    fn worker_alive(&self, pid: i32) -> bool {
        let s = self.engine.shared.status.lock();
        s.pids.contains(&pid) || s.ending.contains(&pid)
    }

    /// For the pool's service thread: waits for events, forwards engine log
    /// lines to Python's `logging`, and returns (ids of jobs whose callbacks
    /// are due, workers to fork as (number, socket fd, now the caller's, fd
    /// of the engine's end, to be closed in the new process)).
    /// Returns None once the engine has ended and every event was handed out.
    #[pyo3(signature = (timeout=None))]
    #[allow(clippy::type_complexity)]
    fn service_next(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(Vec<u64>, Vec<(u64, RawFd, RawFd)>)>> {
        let service = &self.engine.shared.service;
        blocking_wait(py, service, timeout, |q| {
            !q.events.is_empty() || q.engine_done
        })?;
        let (events, done) =
            service.update(|q| (q.events.drain(..).collect::<Vec<_>>(), q.engine_done));
        let mut jobs = Vec::new();
        let mut forks = Vec::new();
        for event in events {
            match event {
                ServiceEvent::JobComplete(id) => jobs.push(id),
                // The GIL is held here, so pyo3-log can forward at once.
                ServiceEvent::Log(level, message) => {
                    crate::python::log_to_python(py, level, &message)
                }
                ServiceEvent::ForkWorker(number, fd, engine_end) => {
                    forks.push((number, fd.into_raw_fd(), engine_end))
                }
            }
        }
        if jobs.is_empty() && forks.is_empty() && done {
            return Ok(None);
        }
        Ok(Some((jobs, forks)))
    }

    /// The service thread forked worker `number` (pid None: it could not).
    fn worker_forked(&self, number: u64, pid: Option<i32>) -> PyResult<()> {
        self.send(Command::WorkerForked { number, pid })
    }
}

impl PyEngine {
    fn send(&self, command: Command) -> PyResult<()> {
        self.engine
            .send(command)
            .map_err(|_| EngineError::Stopped.into())
    }
}

/// The Python-side handle of one job's outcomes.
#[pyclass(module = "ferropool._native", name = "Job", frozen, weakref)]
pub struct PyJob {
    job: Arc<Job>,
}

/// (index, status, payload): `bytes`, or a `LargePayload` for a large result.
type Outcome = (u64, u8, Py<PyAny>);

fn to_python(py: Python<'_>, o: TaskOutcome) -> PyResult<Outcome> {
    let is_value = matches!(
        o.status,
        ResultStatus::Ok | ResultStatus::OkOutOfBand | ResultStatus::OkPacked
    );
    let payload = if is_value && o.payload.len() >= LEND_ABOVE {
        Py::new(py, LargePayload::new(o.payload))?.into_any()
    } else {
        PyBytes::new(py, &o.payload).into_any().unbind()
    };
    Ok((o.index, o.status as u8, payload))
}

#[pymethods]
impl PyJob {
    #[getter]
    fn id(&self) -> u64 {
        self.job.id
    }

    /// Waits until the job is ready; returns whether it is.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        blocking_wait(py, &self.job.progress, timeout, |p| p.ready)
    }

    fn ready(&self) -> bool {
        self.job.progress.lock().ready
    }

    fn complete(&self) -> bool {
        self.job.progress.lock().complete
    }

    fn mark_ready(&self) {
        self.job.mark_ready();
    }

    /// Takes every outcome that has arrived: (index, status, payload).
    fn take(&self, py: Python<'_>) -> PyResult<Vec<Outcome>> {
        self.job
            .take_arrived()
            .into_iter()
            .map(|o| to_python(py, o))
            .collect()
    }

    /// Waits for outcomes and takes every one that has arrived, in arrival
    /// order (at least one). Returns None on timeout; raises StopIteration
    /// once the job is complete and all were taken. One call per batch, not
    /// per outcome: fewer GIL hand-overs while results stream in.
    #[pyo3(signature = (timeout=None))]
    fn next_outcomes(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Vec<Outcome>>> {
        let arrived = blocking_wait(py, &self.job.progress, timeout, |p| {
            !p.arrived.is_empty() || p.complete
        })?;
        if !arrived {
            return Ok(None);
        }
        let batch = self.job.take_arrived();
        if batch.is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        let outcomes = batch.into_iter().map(|o| to_python(py, o));
        Ok(Some(outcomes.collect::<PyResult<Vec<_>>>()?))
    }

    /// For lazy feeders: waits until the job's read-ahead window (at most
    /// `limit` tasks submitted and not yet released, see `release`) has at
    /// least `min_room` free places, and returns how many it has. Returns 0
    /// when the feeder must stop instead: the job was closed by the engine
    /// (the pool broke or was terminated), or the wait timed out.
    #[pyo3(signature = (limit, min_room=1, timeout=None))]
    fn wait_room(
        &self,
        py: Python<'_>,
        limit: u64,
        min_room: u64,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let min_room = min_room.clamp(1, limit.max(1));
        blocking_wait(py, &self.job.progress, timeout, |p| {
            p.room(limit) >= min_room || p.input_closed || p.feeding_stopped
        })?;
        let p = self.job.progress.lock();
        Ok(if p.input_closed || p.feeding_stopped {
            0
        } else {
            p.room(limit)
        })
    }

    /// Its feeder reads no more input (it stops at its next look).
    fn stop_feeding(&self) {
        self.job.progress.update(|p| p.feeding_stopped = true);
    }

    /// Frees `n` places in the read-ahead window (the consumer used them).
    fn release(&self, n: u64) {
        self.job.progress.update(|p| p.released += n);
    }

    /// From now on every arrived outcome frees its place at once (results
    /// kept by the job, as `map_async`'s, or a pool that is closing: `join`
    /// must not wait for a consumer).
    fn release_on_arrival(&self) {
        self.job.progress.update(|p| {
            p.release_on_arrival = true;
            p.released = p.released.max(p.received);
        });
    }

    /// Records that task `index` failed in the parent before it could be sent
    /// (the Python side keeps the exception); it counts as submitted.
    fn add_local_error(&self, index: u64) {
        self.job.add_local(TaskOutcome {
            index,
            status: ResultStatus::LocalError,
            payload: Vec::new().into(),
        });
    }

    /// How many times outcomes were taken, or reported settled (see
    /// `wait_change`).
    fn changes(&self) -> u64 {
        self.job.progress.lock().changes
    }

    /// The Python side has settled what it took (futures set): a thread in
    /// `wait_change` looks again.
    fn settled(&self) {
        self.job.progress.update(|p| p.changes += 1);
    }

    /// Waits until outcomes have arrived, or `changes()` is no longer
    /// `seen` (another thread took or settled some); False on timeout. An
    /// executor's caller waits here for its future, and takes what arrived
    /// itself instead of waiting for the service thread to wake it.
    ///
    /// While a thread waits here, the job's outcomes are not announced to
    /// the service thread: the waiter takes them (it must call
    /// `outcomes_arrived` whenever this returns True, and when it raises).
    /// So that none is left behind, it looks once more after it stopped
    /// counting as a waiter: an outcome recorded after that look is
    /// announced again (SeqCst, as `Job::wants_service`'s load, with the
    /// progress lock between the two).
    #[pyo3(signature = (seen, timeout=None))]
    fn wait_change(&self, py: Python<'_>, seen: u64, timeout: Option<f64>) -> PyResult<bool> {
        use std::sync::atomic::Ordering::SeqCst;
        self.job.callers_waiting.fetch_add(1, SeqCst);
        let waited = blocking_wait(py, &self.job.progress, timeout, |p| {
            !p.arrived.is_empty() || p.changes != seen
        });
        self.job.callers_waiting.fetch_sub(1, SeqCst);
        let arrived = !self.job.progress.lock().arrived.is_empty();
        Ok(waited? || arrived)
    }

    /// Announce every outcome of this job, and its completion, to the
    /// service thread from now on (an event loop awaits it).
    fn announce_outcomes(&self) {
        self.job.announce.store(true, Ordering::SeqCst);
    }

    /// Outcomes produced so far and tasks submitted so far.
    fn counts(&self) -> (u64, u64) {
        let p = self.job.progress.lock();
        (p.received, p.submitted)
    }
}
