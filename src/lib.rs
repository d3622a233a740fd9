//! ferropool's native core: the engine (`engine`, plain Rust) and its
//! Python side (`python`: the bindings and the worker runtime). This file
//! only lists the two and builds the Python module; see each module's
//! header for its part of the data flow.

pub mod engine;
pub mod python;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    python::register(m)
}
