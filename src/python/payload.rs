//! Task payloads pickled straight into memory the engine owns.
//!
//! `PayloadWriter` is the file a pickler writes to. Small payloads come out
//! as `bytes`, as before. A payload that grows past `LARGE_FRAME` moves into a
//! kept memfd (see `shm`; a recycled buffer where memfds cannot be had, see
//! `buffers`): a multi-megabyte argument (an array, a `bytes`) is copied
//! once, into pages already in place, instead of into a fresh allocation
//! whose every page faults on first write, and the worker reads it from
//! there. It comes out as an `EnginePayload`, which `Engine.add_tasks` takes
//! like `bytes`; the memory goes back to the pool once the task is done with.
//!
//! Only objects exposing `bytes` can be read from Rust under the stable ABI
//! of Python 3.9; other buffers (a `PickleBuffer`, a `bytearray`) are copied
//! by a memoryview slice assignment into a writable view of our memory.

use std::ffi::c_char;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PySlice};

use crate::engine::buffers;
use crate::engine::outbox::{Payload, PayloadBytes};
use crate::engine::protocol::LARGE_FRAME;
use crate::engine::shm::{self, SharedBuf};

/// `PyBUF_WRITE` of the stable ABI's memoryview API.
const PYBUF_WRITE: std::ffi::c_int = 0x200;

/// A large payload's bytes in a recycled buffer, given back when the last
/// task that shares it is dropped.
struct RecycledBytes(Vec<u8>);

impl PayloadBytes for RecycledBytes {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for RecycledBytes {
    fn drop(&mut self) {
        buffers::give_back(std::mem::take(&mut self.0));
    }
}

/// A large payload in a kept memfd, sent as that memfd, kept again when the
/// last task that shares it is dropped (its worker has read it by then).
struct KeptShared(Option<SharedBuf>);

impl PayloadBytes for KeptShared {
    fn bytes(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], SharedBuf::as_slice)
    }

    fn memfd(&self) -> Option<BorrowedFd<'_>> {
        self.0.as_ref().map(SharedBuf::fd)
    }
}

impl Drop for KeptShared {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            shm::give_back(buf);
        }
    }
}

/// A pickled task payload held by the engine (see the module header).
#[pyclass(module = "ferropool._native", name = "EnginePayload", frozen)]
pub struct EnginePayload {
    pub payload: Payload,
}

#[pymethods]
impl EnginePayload {
    fn __len__(&self) -> usize {
        self.payload.bytes().len()
    }

    /// A copy as `bytes` (for tests and debugging).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.payload.bytes())
    }

    /// Whether it goes to the worker as shared memory (for tests).
    fn in_shared_memory(&self) -> bool {
        self.payload.memfd().is_some()
    }
}

/// Room left after a large write for the rest of the pickle stream.
const TAIL_ROOM: usize = 64 * 1024;

/// A binary file for `pickle.Pickler` (see the module header).
#[pyclass(module = "ferropool._native", name = "PayloadWriter")]
pub struct PayloadWriter {
    /// What was written while small, or large where memfds cannot be had.
    buf: Vec<u8>,
    /// What was written once large (then `buf` is empty).
    shared: Option<SharedBuf>,
}

/// The size to grow to when `len` bytes are held and `needed` are wanted: a
/// write larger than what is held (one big bytes object) leaves room for
/// the few bytes that end the pickle, not for a doubling.
fn grown(len: usize, needed: usize) -> usize {
    if needed > 2 * len {
        needed.saturating_add(TAIL_ROOM)
    } else {
        2 * len
    }
}

fn no_memory(needed: usize) -> PyErr {
    PyMemoryError::new_err(format!("no memory for a payload of {needed} bytes"))
}

impl PayloadWriter {
    fn len(&self) -> usize {
        self.shared.as_ref().map_or(self.buf.len(), SharedBuf::len)
    }

    /// Room for `more` bytes; past `LARGE_FRAME` the bytes move into shared
    /// memory (or a recycled buffer), growing by doubling (by what is needed
    /// only, when doubling is more than memory allows).
    fn reserve(&mut self, more: usize) -> PyResult<()> {
        let len = self.len();
        let needed = len.saturating_add(more);
        if let Some(shared) = &self.shared {
            if shared.spare() >= more {
                return Ok(());
            }
            let mut bigger = shm::take(grown(len, needed))
                .or_else(|| shm::take(needed))
                .ok_or_else(|| no_memory(needed))?;
            bigger.extend_from_slice(shared.as_slice());
            if let Some(old) = self.shared.replace(bigger) {
                shm::give_back(old);
            }
            return Ok(());
        }
        if needed <= self.buf.capacity() {
            return Ok(());
        }
        if needed < LARGE_FRAME {
            self.buf.reserve(more);
            return Ok(());
        }
        let target = grown(len, needed);
        if let Some(mut shared) = shm::take(target) {
            shared.extend_from_slice(&self.buf);
            self.release_heap();
            self.shared = Some(shared);
            return Ok(());
        }
        let mut bigger = buffers::try_take(target)
            .or_else(|| buffers::try_take(needed))
            .ok_or_else(|| no_memory(needed))?;
        bigger.truncate(len);
        bigger.copy_from_slice(&self.buf);
        self.release_heap();
        self.buf = bigger;
        Ok(())
    }

    /// Drops the heap buffer, recycling a large one.
    fn release_heap(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() >= LARGE_FRAME {
            buffers::give_back(buf);
        }
    }

    fn extend(&mut self, data: &[u8]) -> PyResult<()> {
        self.reserve(data.len())?;
        match &mut self.shared {
            Some(shared) => shared.extend_from_slice(data),
            None => self.buf.extend_from_slice(data),
        }
        Ok(())
    }

    /// Copies any buffer-supporting object: a memoryview slice assignment
    /// into a writable view of our spare room.
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
        let at = match &mut self.shared {
            Some(shared) => shared.spare_ptr(),
            // SAFETY: `len <= capacity`, reserved above.
            None => unsafe { self.buf.as_mut_ptr().add(self.buf.len()) },
        };
        // SAFETY: the view covers `n` bytes of spare room reserved just
        // above; it is released before the writer is touched again.
        let dest = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyMemoryView_FromMemory(at as *mut c_char, len, PYBUF_WRITE),
            )?
        };
        let copied = dest.set_item(PySlice::full(py), &flat);
        dest.call_method0("release")?;
        let _ = flat.call_method0("release");
        copied?;
        // The assignment above wrote all `n` bytes (it fails unless the
        // sizes match).
        match &mut self.shared {
            Some(shared) => shared.commit(n),
            // SAFETY: the `n` bytes after `len` were written just above.
            None => unsafe { self.buf.set_len(self.buf.len() + n) },
        }
        Ok(n)
    }
}

#[pymethods]
impl PayloadWriter {
    #[new]
    fn new() -> Self {
        PayloadWriter {
            buf: Vec::new(),
            shared: None,
        }
    }

    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            let b = bytes.as_bytes();
            self.extend(b)?;
            return Ok(b.len());
        }
        self.write_buffer(py, data)
    }

    /// What was written, as `bytes` when small, else as an `EnginePayload`;
    /// the writer is empty again.
    fn take(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let payload: Payload = if let Some(shared) = self.shared.take() {
            Arc::new(KeptShared(Some(shared)))
        } else if self.buf.len() < LARGE_FRAME {
            let out = PyBytes::new(py, &self.buf).into_any().unbind();
            self.buf.clear();
            if self.buf.capacity() > LARGE_FRAME {
                self.buf = Vec::new();
            }
            return Ok(out);
        } else {
            Arc::new(RecycledBytes(std::mem::take(&mut self.buf)))
        };
        Ok(Bound::new(py, EnginePayload { payload })?
            .into_any()
            .unbind())
    }

    /// Drops what was written (a pickling that failed half way).
    fn clear(&mut self) {
        if let Some(shared) = self.shared.take() {
            shm::give_back(shared);
        }
        if self.buf.len() >= LARGE_FRAME {
            self.release_heap();
        } else {
            self.buf.clear();
        }
    }

    fn __len__(&self) -> usize {
        self.len()
    }
}
