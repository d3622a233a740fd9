//! The worker side, running inside each worker interpreter: a loop in Rust
//! that reads frames with the GIL released and calls back into Python only to
//! unpickle, run and pickle.
//!
//! ```text
//!  socket ──read (no GIL)──▶ Func: cache load(payload) by job id
//!                            Task: run(mode, func, payload) ──▶ (status, bytes) ──write (no GIL)──▶ socket
//!                            Forget: drop the cached function     Exit / EOF: return
//! ```

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::EngineError;
use crate::protocol::{self, Frame, Kind, HEADER_LEN};

#[pyclass(module = "ferropool._native", name = "WorkerChannel")]
pub struct WorkerChannel {
    sock: UnixStream,
}

fn read_frame(sock: &mut UnixStream) -> Result<Frame, EngineError> {
    let mut header = [0u8; HEADER_LEN];
    if let Err(e) = sock.read_exact(&mut header) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => EngineError::Disconnected,
            _ => EngineError::Io(e),
        });
    }
    let (kind, flags, job, index, len) = protocol::parse_header(&header)?;
    let mut payload = vec![0u8; len];
    sock.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => EngineError::Disconnected,
        _ => EngineError::Io(e),
    })?;
    Ok(Frame {
        kind,
        flags,
        job,
        index,
        payload,
    })
}

fn write_frame(
    sock: &mut UnixStream,
    kind: Kind,
    flags: u8,
    job: u64,
    index: u64,
    payload: &[u8],
) -> io::Result<()> {
    let header = protocol::header(kind, flags, job, index, payload.len());
    sock.write_all(&header)?;
    sock.write_all(payload)
}

/// Resident set size of this process, from /proc/self/statm.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[pymethods]
impl WorkerChannel {
    /// Takes ownership of `fd`, the worker's end of its socket.
    #[new]
    fn new(fd: i32) -> PyResult<Self> {
        if fd < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err("bad worker fd"));
        }
        // SAFETY: the caller hands over an open socket fd it no longer uses.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        sock.set_nonblocking(false).map_err(EngineError::Io)?;
        Ok(WorkerChannel { sock })
    }

    /// Reads one frame (for the start-up exchange): (kind, flags, job, index, payload).
    fn recv(&mut self, py: Python<'_>) -> PyResult<(u8, u8, u64, u64, Py<PyBytes>)> {
        let sock = &mut self.sock;
        let frame = py.detach(|| read_frame(sock))?;
        Ok((
            frame.kind as u8,
            frame.flags,
            frame.job,
            frame.index,
            PyBytes::new(py, &frame.payload).unbind(),
        ))
    }

    fn send_ready(&mut self, py: Python<'_>, pid: u64) -> PyResult<()> {
        let sock = &mut self.sock;
        py.detach(|| write_frame(sock, Kind::Ready, 0, 0, pid, b""))
            .map_err(|e| EngineError::Io(e).into())
    }

    /// Runs tasks until told to exit or the pool goes away, or, with
    /// `max_rss` (bytes), until this process's resident memory has grown past
    /// it after a task: then it tells the engine and returns.
    /// `load(payload) -> func` unpickles a job's function (its exception is
    /// kept and reported by every task of that job); `run(mode, func,
    /// payload) -> (status, bytes)` runs one task and never raises except to
    /// end the worker (SystemExit and the like).
    #[pyo3(signature = (load, run, load_failed, max_rss=None))]
    fn serve(
        &mut self,
        py: Python<'_>,
        load: Bound<'_, PyAny>,
        run: Bound<'_, PyAny>,
        load_failed: Bound<'_, PyAny>,
        max_rss: Option<u64>,
    ) -> PyResult<()> {
        let mut funcs: HashMap<u64, (u8, Result<Py<PyAny>, PyErr>)> = HashMap::new();
        loop {
            let sock = &mut self.sock;
            let frame = match py.detach(|| read_frame(sock)) {
                Ok(frame) => frame,
                Err(EngineError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match frame.kind {
                Kind::Func => {
                    let payload = PyBytes::new(py, &frame.payload);
                    let func = load.call1((payload,)).map(Bound::unbind);
                    funcs.insert(frame.job, (frame.flags, func));
                }
                Kind::Task => {
                    let outcome = match funcs.get(&frame.job) {
                        Some((mode, Ok(func))) => {
                            let payload = PyBytes::new(py, &frame.payload);
                            run.call1((*mode, func.bind(py), payload))?
                        }
                        Some((_, Err(err))) => {
                            load_failed.call1((err.clone_ref(py).into_value(py),))?
                        }
                        None => load_failed.call1((pyo3::exceptions::PyRuntimeError::new_err(
                            "task for a job whose function never arrived",
                        )
                        .into_value(py),))?,
                    };
                    let (status, data): (u8, Bound<'_, PyBytes>) = outcome.extract()?;
                    let bytes = data.as_bytes();
                    let sock = &mut self.sock;
                    let written = py.detach(|| {
                        write_frame(sock, Kind::Result, status, frame.job, frame.index, bytes)
                    });
                    if written.is_err() {
                        return Ok(()); // the pool is gone
                    }
                    if let (Some(limit), Some(rss)) = (max_rss, resident_bytes()) {
                        if rss > limit {
                            let why = format!("its memory ({rss} bytes resident) is past max_memory_per_child ({limit})");
                            let sock = &mut self.sock;
                            let _ = py.detach(|| {
                                write_frame(sock, Kind::Retiring, 0, 0, 0, why.as_bytes())
                            });
                            return Ok(());
                        }
                    }
                }
                Kind::Forget => {
                    funcs.remove(&frame.job);
                }
                Kind::Exit => return Ok(()),
                _ => {}
            }
        }
    }
}
