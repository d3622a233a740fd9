//! Results made only of numbers, packed instead of pickled.
//!
//! A map's chunk of results is very often a list of plain ints or floats.
//! Pickling it costs the worker an opcode per item and the parent, whose
//! one thread unpickles every chunk of a map while the workers compute the
//! next ones, a parse per item. Packed, a worker writes 8 bytes per item and
//! the parent makes each number straight from them.
//!
//! ```text
//!  b"q" + n little-endian i64    a list of exact ints, each within 64 bits
//!  b"d" + n little-endian f64    a list of exact floats (bits kept: NaNs, -0.0)
//! ```
//!
//! Anything else (a bool or another int subclass, an int past 64 bits,
//! a mix of ints and floats) is pickled as before: `pack_numbers` says None.
//! The parent checks the form of what it unpacks: a worker's bytes are
//! untrusted, and a malformed payload is an error, never a wrong list.

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyList};

use crate::python::buffer::LargePayload;

const INTS: u8 = b'q';
const FLOATS: u8 = b'd';
const ITEM: usize = 8;

/// The kind byte of what `item` would pack as (exact types only: a bool
/// is an int subclass and must come back a bool).
fn kind_of(item: &Bound<'_, PyAny>) -> Option<u8> {
    if item.is_exact_instance_of::<PyInt>() {
        Some(INTS)
    } else if item.is_exact_instance_of::<PyFloat>() {
        Some(FLOATS)
    } else {
        None
    }
}

/// `list` packed, or None when it is not made only of ints that fit 64
/// bits or only of floats (then it is pickled).
#[pyfunction]
pub fn pack_numbers<'py>(list: &Bound<'py, PyList>) -> Option<Bound<'py, PyBytes>> {
    let py = list.py();
    let kind = kind_of(&list.get_item(0).ok()?)?;
    let n = list.len();
    let mut out = Vec::with_capacity(1 + ITEM * n);
    out.push(kind);
    let int_type = py.get_type::<PyInt>();
    let float_type = py.get_type::<PyFloat>();
    let wanted = if kind == INTS { int_type } else { float_type };
    for i in 0..n {
        // SAFETY: the GIL is held and nothing here runs Python code, so the
        // list cannot change under the loop; `i < len` and the item is
        // borrowed only within this turn.
        let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), i as ffi::Py_ssize_t) };
        if item.is_null() || unsafe { ffi::Py_TYPE(item) } != wanted.as_type_ptr() {
            // SAFETY: clears the IndexError a null item left (none expected).
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        let word = if kind == INTS {
            let mut overflow: std::ffi::c_int = 0;
            // SAFETY: an exact int (checked above), GIL held: no Python code
            // runs, and overflow is reported in `overflow`, not raised.
            let value = unsafe { ffi::PyLong_AsLongLongAndOverflow(item, &mut overflow) };
            if overflow != 0 {
                return None;
            }
            value.to_le_bytes()
        } else {
            // SAFETY: an exact float (checked above), GIL held.
            unsafe { ffi::PyFloat_AsDouble(item) }.to_le_bytes()
        };
        out.extend_from_slice(&word);
    }
    Some(PyBytes::new(py, &out))
}

/// The kind byte and the 8-byte words of a packed result, checked.
fn words(data: &[u8]) -> PyResult<(u8, impl Iterator<Item = [u8; ITEM]> + '_)> {
    let malformed = || {
        PyValueError::new_err(format!(
            "malformed packed result ({} bytes): not a kind byte followed by 8-byte numbers",
            data.len()
        ))
    };
    let (&kind, items) = data.split_first().ok_or_else(malformed)?;
    if items.len() % ITEM != 0 || (kind != INTS && kind != FLOATS) {
        return Err(malformed());
    }
    let words = items.chunks_exact(ITEM).map(|c| {
        let mut word = [0u8; ITEM];
        word.copy_from_slice(c);
        word
    });
    Ok((kind, words))
}

/// One number of a packed result, as a new Python object.
fn number<'py>(py: Python<'py>, kind: u8, word: [u8; ITEM]) -> PyResult<Bound<'py, PyAny>> {
    Ok(if kind == INTS {
        i64::from_le_bytes(word).into_pyobject(py)?.into_any()
    } else {
        f64::from_le_bytes(word).into_pyobject(py)?.into_any()
    })
}

fn unpack<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
    let (kind, words) = words(data)?;
    match kind {
        INTS => PyList::new(py, words.map(i64::from_le_bytes)),
        _ => PyList::new(py, words.map(f64::from_le_bytes)),
    }
}

/// `f(bytes)` over a payload that is `bytes` or a lent `LargePayload`
/// (whose buffer is done with afterwards).
fn with_payload<R>(
    payload: &Bound<'_, PyAny>,
    f: impl FnOnce(&[u8]) -> PyResult<R>,
) -> PyResult<R> {
    if let Ok(bytes) = payload.cast::<PyBytes>() {
        return f(bytes.as_bytes());
    }
    payload.cast::<LargePayload>()?.get().consume(f)?
}

/// The list a packed result holds. ValueError when it is not in the
/// packed form.
#[pyfunction]
pub fn unpack_numbers<'py>(payload: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    with_payload(payload, |data| unpack(payload.py(), data))
}

/// A map's packed chunk straight into its place: the numbers go into
/// `target[start:start + count]` (slots that exist) when the payload holds
/// exactly `count`; returns how many it holds (written only when that is
/// `count`). ValueError when it is not in the packed form.
#[pyfunction]
pub fn unpack_numbers_into(
    payload: &Bound<'_, PyAny>,
    target: &Bound<'_, PyList>,
    start: usize,
    count: usize,
) -> PyResult<usize> {
    let py = payload.py();
    with_payload(payload, |data| {
        let (kind, words) = words(data)?;
        let held = (data.len() - 1) / ITEM;
        if start.saturating_add(count) > target.len() {
            return Err(PyValueError::new_err(format!(
                "no slots {start}..{} in a list of {}",
                start.saturating_add(count),
                target.len()
            )));
        }
        if held != count {
            return Ok(held);
        }
        for (i, word) in words.enumerate() {
            target.set_item(start + i, number(py, kind, word)?)?;
        }
        Ok(held)
    })
}
