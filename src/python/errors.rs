//! The one conversion of the engine's errors into Python exceptions, and
//! the exception class of a stopped engine.

use pyo3::exceptions::{PyEOFError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;

use crate::engine::errors::EngineError;

pyo3::create_exception!(
    _native,
    EngineStopped,
    PyValueError,
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
            EngineError::Disconnected => PyEOFError::new_err(e.to_string()),
        }
    }
}
