//! `Engine.stats()`: the engine's figures (engine::stats) as Python dicts,
//! which `ferropool._stats` turns into its dataclasses.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::engine::handle::Engine;
use crate::engine::shared::Command;
use crate::engine::stats::{EngineStats, Figures};
use crate::engine::sync::lock;

/// How long `stats()` waits for the engine thread to answer.
const STATS_WAIT: Duration = Duration::from_secs(10);

/// The figures now, or, once the engine thread has ended, as it left them.
pub fn collect(py: Python<'_>, engine: &Engine) -> EngineStats {
    let (reply, answer) = crossbeam_channel::bounded(1);
    if engine.send(Command::Stats(reply)).is_ok() {
        if let Some(stats) = py.detach(|| answer.recv_timeout(STATS_WAIT).ok()) {
            return stats;
        }
    }
    lock(&engine.shared.final_stats).clone().unwrap_or_default()
}

fn figures<'py>(py: Python<'py>, f: &Figures) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("tasks_done", f.tasks_done)?;
    d.set_item("busy_seconds", f.busy.as_secs_f64())?;
    d.set_item("bytes_sent", f.bytes_sent)?;
    d.set_item("bytes_received", f.bytes_received)?;
    Ok(d)
}

pub fn to_python<'py>(py: Python<'py>, stats: &EngineStats) -> PyResult<Bound<'py, PyDict>> {
    let workers = PyList::empty(py);
    for w in &stats.workers {
        let d = figures(py, &w.figures)?;
        d.set_item("number", w.number)?;
        d.set_item("pid", w.pid)?;
        d.set_item("state", w.state)?;
        d.set_item("age_seconds", w.age.as_secs_f64())?;
        workers.append(d)?;
    }
    let ended = PyList::empty(py);
    for e in &stats.ended {
        let d = figures(py, &e.figures)?;
        d.set_item("number", e.number)?;
        d.set_item("pid", e.pid)?;
        d.set_item("why", &e.why)?;
        d.set_item("unexpected", e.unexpected)?;
        ended.append(d)?;
    }
    let out = PyDict::new(py);
    out.set_item("workers", workers)?;
    out.set_item("ended", ended)?;
    out.set_item("totals", figures(py, &stats.totals)?)?;
    out.set_item("workers_started", stats.workers_started)?;
    out.set_item("workers_ended", stats.workers_ended)?;
    out.set_item("unexpected_deaths", stats.unexpected_deaths)?;
    Ok(out)
}
