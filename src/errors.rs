//! The engine's errors and their one conversion to Python exceptions.
//!
//! Failures of individual tasks are not errors here: they travel as
//! `protocol::ResultStatus` values inside a job's outcomes and become
//! exceptions in `ferropool/_outcomes.py`.

use std::fmt;
use std::io;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::PyErr;

use crate::protocol::ProtocolError;

#[derive(Debug)]
pub enum EngineError {
    /// A system call failed (starting the engine, a socket, a process).
    Io(io::Error),
    /// The engine thread has ended; the pool takes no more work.
    Stopped,
    /// The parent sent bytes that are not a frame (worker side).
    Protocol(ProtocolError),
    /// The parent closed the worker's socket (worker side).
    Disconnected,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Io(e) => write!(f, "{e}"),
            EngineError::Stopped => write!(f, "Pool not running"),
            EngineError::Protocol(e) => write!(f, "corrupt message from the pool: {e}"),
            EngineError::Disconnected => write!(f, "the pool closed its connection to this worker"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<io::Error> for EngineError {
    fn from(e: io::Error) -> Self {
        EngineError::Io(e)
    }
}

impl From<ProtocolError> for EngineError {
    fn from(e: ProtocolError) -> Self {
        EngineError::Protocol(e)
    }
}

pyo3::create_exception!(
    _native,
    EngineStopped,
    pyo3::exceptions::PyValueError,
    "The engine has stopped and takes no more work. A `Pool` shows it as \
     ValueError(\"Pool not running\") (this class is one), an executor as its \
     RuntimeError."
);

impl From<EngineError> for PyErr {
    fn from(e: EngineError) -> PyErr {
        match e {
            EngineError::Io(io) => PyOSError::new_err(io.to_string()),
            EngineError::Stopped => EngineStopped::new_err("Pool not running"),
            EngineError::Protocol(_) => PyRuntimeError::new_err(e.to_string()),
            EngineError::Disconnected => pyo3::exceptions::PyEOFError::new_err(e.to_string()),
        }
    }
}
