//! The worker side, running inside each worker interpreter: a loop in Rust
//! that reads frames with the GIL released and calls back into Python only to
//! unpickle, run and pickle.
//!
//! ```text
//!  socket ──read (no GIL)──▶ Func: cache load(payload) by job id
//!                            Task: run(mode, func, payload) ──▶ (status, bytes) ──write at once (no GIL)──▶ socket
//!                            Forget: drop the cached function     Exit / EOF: return
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::engine::errors::EngineError;
use crate::engine::protocol::{self, FrameDecoder, FrameHeader, Kind, ProtocolError, LARGE_FRAME};
use crate::engine::shm::{self, FdReader, ReceivedMap, Sender};
use crate::engine::spin::SpinSwitch;
use crate::engine::tally::WorkerTally;
use crate::python::buffer::{recycle_unless_lent, with_lent_view, LEND_ABOVE};

#[pyclass(module = "ferropool._native", name = "WorkerChannel")]
pub struct WorkerChannel {
    sock: UnixStream,
    decoder: FrameDecoder,
    /// Descriptors that came with the parent's bytes, one per shared-memory
    /// frame, in order.
    fds: VecDeque<OwnedFd>,
    out: Vec<u8>,
    /// The count of tasks begun, shared with the engine (see `tally`).
    tally: Option<WorkerTally>,
}

fn disconnected_or(e: io::Error) -> EngineError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset => EngineError::Disconnected,
        _ => EngineError::Io(e),
    }
}

impl WorkerChannel {
    /// Sends every held-back frame.
    fn flush(&mut self, py: Python<'_>) -> Result<(), EngineError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let (sock, out) = (&mut self.sock, &mut self.out);
        py.detach(|| sock.write_all(out)).map_err(disconnected_or)?;
        self.out.clear();
        Ok(())
    }

    /// The next frame: from what an earlier read already brought in (the
    /// engine sends several tasks at once), or from one read that may bring
    /// several. A large payload comes as its own buffer, to be lent.
    fn next_frame<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Result<(FrameHeader, FramePayload<'py>), EngineError> {
        loop {
            if let Some((header, payload)) = self.decoder.next_frame_ref()? {
                if header.kind == Kind::Tally {
                    // The engine's own file: without it (or unmappable), the
                    // engine reads deaths as it would without a tally. Only
                    // a shared frame has a descriptor to take.
                    let fd = if header.shared {
                        self.fds.pop_front()
                    } else {
                        None
                    };
                    self.tally = fd.and_then(|fd| WorkerTally::map(fd).ok());
                    continue;
                }
                if header.shared {
                    let map = shared_payload(payload, &mut self.fds)
                        .map_err(|why| EngineError::Protocol(ProtocolError::SharedMemory(why)))?;
                    return Ok((header, FramePayload::Mapped(map)));
                }
                if payload.len() < LEND_ABOVE {
                    return Ok((header, FramePayload::Bytes(PyBytes::new(py, payload))));
                }
                return Ok((header, FramePayload::Large(self.decoder.take_handed_out())));
            }
            self.flush(py)?;
            let (sock, decoder, fds) = (&self.sock, &mut self.decoder, &mut self.fds);
            let n = py
                .detach(|| {
                    wait_readable_spinning(sock);
                    decoder.read_from(&mut FdReader { sock, fds })
                })
                .map_err(disconnected_or)?;
            if n == 0 {
                return Err(EngineError::Disconnected);
            }
            if let Some(tally) = &self.tally {
                tally.taking_next();
            }
        }
    }

    /// Sends a frame now; a large payload goes as a sealed memfd (see
    /// `shm`), or where memfds cannot be had, is written from where it is.
    fn send(
        &mut self,
        py: Python<'_>,
        kind: Kind,
        flags: u8,
        job: u64,
        index: u64,
        payload: &[u8],
    ) -> Result<(), EngineError> {
        if payload.len() < 64 * 1024 {
            self.queue(kind, flags, job, index, payload);
            return self.flush(py);
        }
        self.flush(py)?;
        let sock = &mut self.sock;
        py.detach(|| {
            if payload.len() >= LARGE_FRAME {
                if let Some(fd) = sealed_copy(payload) {
                    let frame = protocol::shared_frame(kind, flags, job, index, payload.len());
                    let sent = shm::send_with_fd(sock.as_fd(), &frame, fd.as_fd())?;
                    return sock.write_all(&frame[sent..]);
                }
            }
            let header = protocol::header(kind, flags, job, index, payload.len());
            sock.write_all(&header)?;
            sock.write_all(payload)
        })
        .map_err(disconnected_or)
    }

    fn queue(&mut self, kind: Kind, flags: u8, job: u64, index: u64, payload: &[u8]) {
        protocol::encode_into(&mut self.out, kind, flags, job, index, payload);
    }
}

/// A worker with nothing to do looks for its next frame a while before it
/// sleeps in `read`: the next task of a short-task stream usually comes
/// sooner than a sleeping process on an idle (virtual) CPU can be woken. How
/// long is learnt (see `spin`): nothing on a busy machine.
static WORKER_SPIN: SpinSwitch = SpinSwitch::new();

/// Returns once `sock` has input or the spin is over (see `spin`), yielding the
/// CPU between zero-timeout polls.
fn wait_readable_spinning(sock: &UnixStream) {
    let mut fd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    WORKER_SPIN.spin(None, || unsafe { libc::poll(&mut fd, 1, 0) } != 0);
}

/// `payload` in a new memfd, sealed, for the parent; None where memfds
/// cannot be had (the bytes then go through the socket).
fn sealed_copy(payload: &[u8]) -> Option<OwnedFd> {
    shm::sealed_copy(payload).ok()
}

/// The parent's shared memory a frame announces, mapped read-only.
fn shared_payload(
    frame_payload: &[u8],
    fds: &mut VecDeque<OwnedFd>,
) -> Result<ReceivedMap, String> {
    let len =
        protocol::shared_len(frame_payload).ok_or("a shared-memory frame without a length")?;
    let fd = fds
        .pop_front()
        .ok_or("a shared-memory frame without its descriptor")?;
    shm::map_received(fd, len, Sender::Engine)
}

/// A frame's payload in the worker: small ones are copied into `bytes`,
/// large ones are lent to the call that unpickles them (see `buffer`).
enum FramePayload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Large(Vec<u8>),
    Mapped(ReceivedMap),
}

impl<'py> FramePayload<'py> {
    fn into_bytes(self, py: Python<'py>) -> Bound<'py, PyBytes> {
        match self {
            FramePayload::Bytes(b) => b,
            FramePayload::Large(data) => PyBytes::new(py, &data),
            FramePayload::Mapped(map) => PyBytes::new(py, map.as_slice()),
        }
    }

    /// `f(payload)`, lending a large payload without a copy.
    fn call(
        self,
        py: Python<'py>,
        f: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self {
            FramePayload::Bytes(b) => f(b.as_any()),
            FramePayload::Large(data) => {
                let (result, released) = with_lent_view(py, &data, f)?;
                recycle_unless_lent(data, released);
                result
            }
            FramePayload::Mapped(map) => {
                let (result, released) = with_lent_view(py, map.as_slice(), f)?;
                if !released {
                    std::mem::forget(map); // still viewed: never unmapped
                }
                result
            }
        }
    }
}

/// Resident set size of this process, from /proc/self/statm.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// Worker processes are ours: their allocator keeps (glibc's `mallopt`,
/// see `platform::memory`) freed blocks of up to
/// `KEEP_BLOCKS_BELOW` and up to `KEEP_FREED` bytes of free memory for
/// reuse, instead of handing them back to the kernel at once. Every task with
/// a large argument or result allocates a few large buffers (pickle output,
/// unpickled arrays); fresh memory from the kernel faults in page by page,
/// which costs several times the copying itself (4.4 ms per fresh 8 MiB
/// against 0.4 ms for reused memory, measured).
const KEEP_BLOCKS_BELOW: libc::c_int = 32 << 20;
const KEEP_FREED: libc::c_int = 64 << 20;

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
        crate::platform::memory::keep_freed_memory(KEEP_BLOCKS_BELOW, KEEP_FREED);
        Ok(WorkerChannel {
            sock,
            decoder: FrameDecoder::new(),
            fds: VecDeque::new(),
            out: Vec::new(),
            tally: None,
        })
    }

    /// Reads one frame (for the start-up exchange): (kind, flags, job, index, payload).
    fn recv<'py>(&mut self, py: Python<'py>) -> PyResult<(u8, u8, u64, u64, Bound<'py, PyBytes>)> {
        let (h, payload) = self.next_frame(py)?;
        Ok((
            h.kind as u8,
            h.flags,
            h.job,
            h.index,
            payload.into_bytes(py),
        ))
    }

    fn send_ready(&mut self, py: Python<'_>, pid: u64) -> PyResult<()> {
        self.queue(Kind::Ready, 0, 0, pid, b"");
        Ok(self.flush(py)?)
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
        let result = self.serve_loop(py, &load, &run, &load_failed, max_rss);
        // Whatever ended the loop, results already made still go out.
        let flushed = self.flush(py);
        match result.and(flushed.map_err(PyErr::from)) {
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyEOFError>(py) => Ok(()),
            other => other,
        }
    }
}

impl WorkerChannel {
    /// Sends a task's outcome, `(status, bytes, ...)`. The items after the
    /// bytes are the task's arguments and result, which the caller drops
    /// only after this: freeing a large result (a map chunk's list) must not
    /// delay its delivery. The stdlib's worker also lets go of them only
    /// once the result is on its way.
    fn send_outcome(
        &mut self,
        py: Python<'_>,
        header: &FrameHeader,
        outcome: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let outcome = outcome.cast::<PyTuple>()?;
        let status: u8 = outcome.get_item(0)?.extract()?;
        let data = outcome.get_item(1)?;
        let data = data.cast::<PyBytes>()?;
        // Every result goes out at once, never batched: if this process
        // dies during its next task, the engine must know exactly which
        // tasks finished (the running one is the first it has no result for).
        self.send(
            py,
            Kind::Result,
            status,
            header.job,
            header.index,
            data.as_bytes(),
        )?;
        Ok(())
    }

    fn serve_loop(
        &mut self,
        py: Python<'_>,
        load: &Bound<'_, PyAny>,
        run: &Bound<'_, PyAny>,
        load_failed: &Bound<'_, PyAny>,
        max_rss: Option<u64>,
    ) -> PyResult<()> {
        let mut funcs: HashMap<u64, (u8, Result<Py<PyAny>, PyErr>)> = HashMap::new();
        loop {
            let (header, payload) = self.next_frame(py)?;
            match header.kind {
                Kind::Func => {
                    if let Some(tally) = &self.tally {
                        tally.taking_next(); // its task comes next
                    }
                    let func = load.call1((payload.into_bytes(py),)).map(Bound::unbind);
                    funcs.insert(header.job, (header.flags, func));
                }
                Kind::Task => {
                    if let Some(tally) = &mut self.tally {
                        tally.begin_task();
                    }
                    match funcs.get(&header.job) {
                        Some((mode, Ok(func))) => {
                            // Sent from inside the call: the task's arguments
                            // and result (held by the outcome) are freed after
                            // the send, and a lent payload is released after
                            // them (see `Self::send_outcome`).
                            payload.call(py, |p| {
                                let outcome = run.call1((*mode, func.bind(py), p))?;
                                self.send_outcome(py, &header, &outcome)?;
                                drop(outcome);
                                Ok(py.None().into_bound(py))
                            })?;
                        }
                        Some((_, Err(err))) => {
                            let outcome = load_failed.call1((err.clone_ref(py).into_value(py),))?;
                            self.send_outcome(py, &header, &outcome)?;
                        }
                        None => {
                            let outcome =
                                load_failed.call1((pyo3::exceptions::PyRuntimeError::new_err(
                                    "task for a job whose function never arrived",
                                )
                                .into_value(py),))?;
                            self.send_outcome(py, &header, &outcome)?;
                        }
                    }
                    if let Some(limit) = max_rss {
                        if let Some(rss) = resident_bytes().filter(|rss| *rss > limit) {
                            let why = format!(
                                "its memory ({rss} bytes resident) is past max_memory_per_child ({limit})"
                            );
                            self.queue(Kind::Retiring, 0, 0, 0, why.as_bytes());
                            return Ok(());
                        }
                    }
                }
                Kind::Forget => {
                    funcs.remove(&header.job);
                }
                Kind::Exit => return Ok(()),
                _ => {}
            }
        }
    }
}
