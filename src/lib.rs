//! ferropool's native core: the engine (`engine`, plain Rust), its
//! Python side (`python`: the bindings and the worker runtime), and
//! `platform`, where every Linux-only call lives with its fallback. This
//! file only lists the three and builds the Python module; see each module's
//! header for its part of the data flow.

pub mod engine;
pub mod platform;
pub mod python;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    python::register(m)
}
