//! The Python side of the engine: the PyO3 bindings (`engine`: Engine and
//! Job; `buffer`: large payloads lent to Python without a copy; `payload`:
//! task payloads pickled into engine memory; `packed`: results made only
//! of numbers, packed instead of pickled; `wait`: the one blocking wait;
//! `errors`: the one error conversion), the worker runtime (`worker`), and
//! the process-wide calls below. `register` builds the `_native` module.

pub mod buffer;
pub mod engine;
pub mod errors;
pub mod packed;
pub mod payload;
pub mod stats;
pub mod wait;
pub mod worker;

use pyo3::prelude::*;

use crate::engine::errors::EngineError;
use crate::engine::protocol::{self, CallMode, Kind, ResultStatus};
use crate::engine::shared::{self, Shared};
use crate::engine::{supervisor, sync};
use crate::platform::{self, parent_death};

/// In a process about to fork workers: the read end of its lifeline, to
/// hand to them, where the parent-death fallback is in effect; else None
/// (see `platform::parent_death`).
#[pyfunction]
fn lifeline_for_children() -> PyResult<Option<i32>> {
    Ok(parent_death::lifeline_for_children().map_err(EngineError::Io)?)
}

/// In a new worker: it dies (SIGKILL) when its parent does: through the
/// `lifeline` its parent gave it, else by the kernel's parent-death signal.
#[pyfunction]
#[pyo3(signature = (lifeline=None))]
fn die_with_parent(lifeline: Option<i32>) -> PyResult<()> {
    Ok(parent_death::die_with_parent(lifeline).map_err(EngineError::Io)?)
}

/// Each Linux-only facility and whether this process uses it ("native")
/// or its fallback ("fallback"); see docs/porting.md.
#[pyfunction]
fn platform_features(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    let features = pyo3::types::PyDict::new(py);
    for (facility, choice) in platform::features() {
        features.set_item(facility, choice)?;
    }
    Ok(features)
}

/// MAP_POPULATE where it is used, else 0: for `mmap.mmap(flags=...)`.
#[pyfunction]
fn map_populate_flag() -> i32 {
    platform::memory::populate_flag()
}

/// The engine threads of this process, parked for a fork (see
/// `shared::pause_all`); `resume()` lets them go.
#[pyclass(module = "ferropool._native", name = "PausedEngines", frozen)]
struct PausedEngines {
    engines: std::sync::Mutex<Vec<std::sync::Arc<Shared>>>,
}

#[pymethods]
impl PausedEngines {
    fn resume(&self) {
        let engines = std::mem::take(&mut *sync::lock(&self.engines));
        shared::resume_all(&engines);
    }
}

/// Parks every engine thread of this process until `resume()`: call it
/// right before `os.fork()` so no engine thread is running when the process
/// is copied.
#[pyfunction]
fn pause_engines(py: Python<'_>) -> PausedEngines {
    let engines = py.detach(shared::pause_all);
    PausedEngines {
        engines: std::sync::Mutex::new(engines),
    }
}

/// Hands one engine log line to Python's `logging` (logger "ferropool").
/// Called by a pool's service thread with the GIL held. The `log` crate is
/// forwarded through pyo3-log from the first line logging could show: a line
/// below WARNING while nothing has imported `logging` yet is dropped, as the
/// default configuration (the root logger at WARNING) would drop it, so a
/// short script does not import `logging` for the "worker exited" lines of
/// every close (start-up time). Levels are not cached: logging is often
/// configured after the first pool started, and the service thread logs
/// rarely.
pub(crate) fn log_to_python(py: Python<'_>, level: log::Level, message: &str) {
    static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !INSTALLED.load(std::sync::atomic::Ordering::SeqCst) {
        if level > log::Level::Warn && !logging_imported(py) {
            return;
        }
        // Only service threads get here, each holding the GIL: one installs.
        if !INSTALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let installed = pyo3_log::Logger::new(py, pyo3_log::Caching::Loggers)
                .map(|logger| logger.install().is_ok());
            if let Err(e) = installed {
                eprintln!(
                    "ferropool: cannot forward log lines to Python's logging ({e}): {message}"
                );
                return;
            }
        }
    }
    log::log!(target: "ferropool", level, "{message}");
}

fn logging_imported(py: Python<'_>) -> bool {
    py.import("sys")
        .and_then(|sys| sys.getattr("modules"))
        .and_then(|modules| modules.contains("logging"))
        .unwrap_or(true)
}

/// Builds the `_native` module: its classes, functions and constants.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::PyEngine>()?;
    m.add_class::<engine::PyJob>()?;
    m.add_class::<buffer::LargePayload>()?;
    m.add_class::<payload::PayloadWriter>()?;
    m.add_class::<payload::EnginePayload>()?;
    m.add_class::<worker::WorkerChannel>()?;
    m.add_function(wrap_pyfunction!(lifeline_for_children, m)?)?;
    m.add_function(wrap_pyfunction!(die_with_parent, m)?)?;
    m.add_function(wrap_pyfunction!(platform_features, m)?)?;
    m.add_function(wrap_pyfunction!(map_populate_flag, m)?)?;
    m.add_function(wrap_pyfunction!(packed::pack_numbers, m)?)?;
    m.add_function(wrap_pyfunction!(packed::unpack_numbers, m)?)?;
    m.add_function(wrap_pyfunction!(packed::unpack_numbers_into, m)?)?;
    m.add_function(wrap_pyfunction!(pause_engines, m)?)?;
    m.add_class::<PausedEngines>()?;
    m.add("EngineStopped", m.py().get_type::<errors::EngineStopped>())?;
    add_constants(m)
}

/// The numbers Python shares with the engine, from here only: the version,
/// the wire's header length, frame kinds and shared-memory bit, the outcome
/// statuses, the call modes and where a spawned worker finds its descriptors
/// (its lifeline's in `LIFELINE_ENV`).
fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("HEADER_LEN", protocol::HEADER_LEN)?;
    m.add("SHARED_PAYLOAD", protocol::SHARED_PAYLOAD)?;
    m.add("SOCKET_BUFFER", supervisor::SOCKET_BUFFER)?;
    let kinds = [
        ("KIND_FUNC", Kind::Func),
        ("KIND_TASK", Kind::Task),
        ("KIND_FORGET", Kind::Forget),
        ("KIND_EXIT", Kind::Exit),
        ("KIND_PREPARE", Kind::Prepare),
        ("KIND_SETUP", Kind::Setup),
        ("KIND_TALLY", Kind::Tally),
        ("KIND_READY", Kind::Ready),
        ("KIND_RESULT", Kind::Result),
        ("KIND_RETIRING", Kind::Retiring),
    ];
    for (name, kind) in kinds {
        m.add(name, kind as u8)?;
    }
    let statuses = [
        ("OK", ResultStatus::Ok),
        ("RAISED", ResultStatus::Raised),
        ("RAISED_UNPICKLABLE", ResultStatus::RaisedUnpicklable),
        ("ENCODING_ERROR", ResultStatus::EncodingError),
        ("WORKER_LOST", ResultStatus::WorkerLost),
        ("POOL_BROKEN", ResultStatus::PoolBroken),
        ("TIMED_OUT", ResultStatus::TimedOut),
        ("LOCAL_ERROR", ResultStatus::LocalError),
        ("CANCELLED", ResultStatus::Cancelled),
        ("OK_OUT_OF_BAND", ResultStatus::OkOutOfBand),
        ("OK_PACKED", ResultStatus::OkPacked),
    ];
    for (name, status) in statuses {
        m.add(name, status as u8)?;
    }
    for (name, mode) in [
        ("APPLY", CallMode::Apply),
        ("MAP", CallMode::Map),
        ("STARMAP", CallMode::Starmap),
    ] {
        m.add(name, mode as u8)?;
    }
    m.add("SPAWN_SOCKET_FD", supervisor::SPAWN_SOCKET_FD)?;
    m.add(
        "SPAWN_FIRST_INHERITED_FD",
        supervisor::SPAWN_FIRST_INHERITED_FD,
    )?;
    m.add("LIFELINE_ENV", parent_death::LIFELINE_ENV)?;
    Ok(())
}
