//! Large payloads handed to Python without a copy: a `memoryview` over
//! memory Rust owns, lent for the length of one call (an unpickling) and
//! released right after it.
//!
//! A released memoryview can no longer reach the memory, so it may outlive
//! the loan. Only a buffer still exported from it (something kept a view of
//! the view) stops the release; then the memory is leaked rather than freed
//! under that export. Unpickling never keeps such an export.

use std::ffi::c_char;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::engine::jobs::OutcomeBytes;
use crate::engine::sync::lock;

/// `PyBUF_READ` of the stable ABI's memoryview API.
const PYBUF_READ: std::ffi::c_int = 0x100;

/// Payloads at least this large are lent, not copied into a `bytes` (the
/// frame decoder keeps exactly these in buffers of their own).
pub const LEND_ABOVE: usize = crate::engine::protocol::LARGE_FRAME;

/// Calls `f(view)` with a read-only memoryview of `data`, then releases the
/// view. Returns `f`'s result and whether the memory may be freed (false:
/// something still holds a view of it, so it must never be freed). Fails
/// only when no view could be made (`f` was not called; free as usual).
pub fn with_lent_view<'py, R>(
    py: Python<'py>,
    data: &[u8],
    f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<R>,
) -> PyResult<(PyResult<R>, bool)> {
    let len = ffi::Py_ssize_t::try_from(data.len())
        .map_err(|_| PyValueError::new_err("payload too large for a memoryview"))?;
    // SAFETY: the view is read-only (PyBUF_READ) and covers exactly `data`,
    // which stays alive and unmoved until the view is released below (or,
    // if it cannot be released, for ever: see the callers).
    let view = unsafe {
        let ptr = ffi::PyMemoryView_FromMemory(data.as_ptr() as *mut c_char, len, PYBUF_READ);
        Bound::from_owned_ptr_or_err(py, ptr)?
    };
    let result = f(&view);
    let released = view.call_method0("release").is_ok();
    Ok((result, released))
}

/// Keeps `data` alive for ever when a view of it could not be released.
pub fn free_unless_lent(data: Vec<u8>, released: bool) -> Option<Vec<u8>> {
    if released {
        Some(data)
    } else {
        std::mem::forget(data);
        None
    }
}

/// Done with a lent payload: its buffer is recycled (see `buffers`), or kept
/// for ever if a view of it could not be released.
pub fn recycle_unless_lent(data: Vec<u8>, released: bool) {
    if let Some(data) = free_unless_lent(data, released) {
        crate::engine::buffers::give_back(data);
    }
}

/// A large result payload on its way to Python: `load_with(loads)` unpickles
/// it straight from the engine's buffer, or from the worker's shared memory.
#[pyclass(module = "ferropool._native", name = "LargePayload", frozen)]
pub struct LargePayload {
    data: std::sync::Mutex<Option<OutcomeBytes>>,
}

impl LargePayload {
    pub fn new(data: OutcomeBytes) -> Self {
        LargePayload {
            data: std::sync::Mutex::new(Some(data)),
        }
    }

    /// `f(bytes)` from Rust, once only (as `load_with`); the buffer is
    /// recycled afterwards. `f` must not call Python code that could reach
    /// this payload (no Rust lock is held, but the bytes are taken out).
    pub fn consume<R>(&self, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
        let data = lock(&self.data)
            .take()
            .ok_or_else(|| PyValueError::new_err("the payload was read already"))?;
        let out = f(&data);
        if let OutcomeBytes::Heap(data) = data {
            crate::engine::buffers::give_back(data);
        }
        Ok(out)
    }
}

#[pymethods]
impl LargePayload {
    /// `loads(view)` over the payload's bytes, without copying them first.
    /// Once only: the buffer is recycled afterwards.
    fn load_with(&self, py: Python<'_>, loads: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        // Taken out for the call: no Rust lock is held while Python runs.
        let data = lock(&self.data)
            .take()
            .ok_or_else(|| PyValueError::new_err("the payload was read already"))?;
        let (value, released) = match with_lent_view(py, &data, |view| loads.call1((view,))) {
            Ok(outcome) => outcome,
            Err(e) => (Err(e), true),
        };
        match data {
            OutcomeBytes::Heap(data) => recycle_unless_lent(data, released),
            // Unmapped on drop, unless a view of it is still exported.
            OutcomeBytes::Mapped(map) if !released => std::mem::forget(map),
            OutcomeBytes::Mapped(_) => {}
        }
        Ok(value?.unbind())
    }

    /// The payload as `bytes` (a copy).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let slot = lock(&self.data);
        PyBytes::new(py, slot.as_deref().unwrap_or_default())
    }

    fn __len__(&self) -> usize {
        lock(&self.data).as_ref().map_or(0, |d| d.len())
    }
}
