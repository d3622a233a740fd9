//! Task payloads pickled straight into memory the engine owns.
//!
//! `PayloadWriter` is the file a pickler writes to. Small payloads come out
//! as `bytes`, as before. A payload that grows past `LARGE_FRAME` moves into a
//! recycled buffer (see `buffers`): a multi-megabyte argument (an array, a
//! `bytes`) is copied once, into pages already in place, instead of into a
//! fresh allocation whose every page faults on first write. It comes out as
//! an `EnginePayload`, which `Engine.add_tasks` takes like `bytes`; the
//! buffer goes back to the pool once the task is done with.
//!
//! Only objects exposing `bytes` can be read from Rust under the stable ABI
//! of Python 3.9; other buffers (a `PickleBuffer`, a `bytearray`) are copied
//! by a memoryview slice assignment into a writable view of our memory.

use std::ffi::c_char;
use std::sync::Arc;

use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PySlice};

use crate::buffers;
use crate::protocol::LARGE_FRAME;

/// `PyBUF_WRITE` of the stable ABI's memoryview API.
const PYBUF_WRITE: std::ffi::c_int = 0x200;

/// A large payload's bytes; its buffer is recycled when the last task that
/// shares it is dropped.
pub struct RecycledBytes(Vec<u8>);

impl AsRef<[u8]> for RecycledBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for RecycledBytes {
    fn drop(&mut self) {
        buffers::give_back(std::mem::take(&mut self.0));
    }
}

/// A pickled task payload held by the engine (see the module header).
#[pyclass(module = "ferropool._native", name = "EnginePayload", frozen)]
pub struct EnginePayload {
    pub bytes: Arc<RecycledBytes>,
}

#[pymethods]
impl EnginePayload {
    fn __len__(&self) -> usize {
        self.bytes.0.len()
    }

    /// A copy as `bytes` (for tests and debugging).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.bytes.0)
    }
}

/// Room left after a large write for the rest of the pickle stream.
const TAIL_ROOM: usize = 64 * 1024;

/// A binary file for `pickle.Pickler` (see the module header).
#[pyclass(module = "ferropool._native", name = "PayloadWriter")]
pub struct PayloadWriter {
    buf: Vec<u8>,
}

impl PayloadWriter {
    /// Room for `more` bytes; past `LARGE_FRAME` the bytes move into a
    /// recycled buffer, growing by doubling (by what is needed only, when
    /// doubling is more than memory allows).
    fn reserve(&mut self, more: usize) -> PyResult<()> {
        let needed = self.buf.len().saturating_add(more);
        if needed <= self.buf.capacity() {
            return Ok(());
        }
        if needed < LARGE_FRAME {
            self.buf.reserve(more);
            return Ok(());
        }
        // A write larger than what is held (one big bytes object) leaves
        // room for the few bytes that end the pickle, not for a doubling.
        let target = if needed > 2 * self.buf.len() {
            needed.saturating_add(TAIL_ROOM)
        } else {
            2 * self.buf.len()
        };
        let mut bigger = buffers::try_take(target)
            .or_else(|| buffers::try_take(needed))
            .ok_or_else(|| {
                PyMemoryError::new_err(format!("no memory for a payload of {needed} bytes"))
            })?;
        bigger.truncate(self.buf.len());
        bigger.copy_from_slice(&self.buf);
        self.buf = bigger;
        Ok(())
    }

    /// Copies any buffer-supporting object: a memoryview slice assignment
    /// into a writable view of our spare capacity.
    fn write_buffer(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let flat = match data.call_method0("raw") {
            Ok(raw) => raw, // a PickleBuffer: raw() is flat bytes, C or F order
            Err(_) => {
                let view = unsafe {
                    Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(data.as_ptr()))?
                };
                view.call_method1("cast", ("B",))?
            }
        };
        let n = flat.len()?;
        self.reserve(n)?;
        let len = ffi::Py_ssize_t::try_from(n)
            .map_err(|_| PyValueError::new_err("payload too large for a memoryview"))?;
        // SAFETY: the view covers `n` bytes of spare capacity reserved just
        // above; it is released before `buf` is touched again.
        let dest = unsafe {
            let at = self.buf.as_mut_ptr().add(self.buf.len()) as *mut c_char;
            Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromMemory(at, len, PYBUF_WRITE))?
        };
        let copied = dest.set_item(PySlice::full(py), &flat);
        dest.call_method0("release")?;
        let _ = flat.call_method0("release");
        copied?;
        // SAFETY: the assignment above wrote all `n` bytes (it fails unless
        // the sizes match).
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }
}

#[pymethods]
impl PayloadWriter {
    #[new]
    fn new() -> Self {
        PayloadWriter { buf: Vec::new() }
    }

    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let b = bytes.as_bytes();
            self.reserve(b.len())?;
            self.buf.extend_from_slice(b);
            return Ok(b.len());
        }
        self.write_buffer(py, data)
    }

    /// What was written, as `bytes` when small, else as an `EnginePayload`;
    /// the writer is empty again.
    fn take(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.buf.len() < LARGE_FRAME {
            let out = PyBytes::new(py, &self.buf).into_any().unbind();
            self.buf.clear();
            if self.buf.capacity() > LARGE_FRAME {
                self.buf = Vec::new();
            }
            return Ok(out);
        }
        let bytes = RecycledBytes(std::mem::take(&mut self.buf));
        let payload = EnginePayload {
            bytes: Arc::new(bytes),
        };
        Ok(Bound::new(py, payload)?.into_any().unbind())
    }

    /// Drops what was written (a pickling that failed half way).
    fn clear(&mut self) {
        if self.buf.len() >= LARGE_FRAME {
            buffers::give_back(std::mem::take(&mut self.buf));
        } else {
            self.buf.clear();
        }
    }

    fn __len__(&self) -> usize {
        self.buf.len()
    }
}
