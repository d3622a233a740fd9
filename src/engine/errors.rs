//! The engine's errors (`python::errors` turns them into Python exceptions).
//!
//! Failures of individual tasks are not errors here: they travel as
//! `protocol::ResultStatus` values inside a job's outcomes and become
//! exceptions in `ferropool/_decoding.py`.

use std::fmt;
use std::io;

use crate::engine::protocol::ProtocolError;

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
