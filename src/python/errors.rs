//! The one place where failures become Python exceptions.
//!
//! The exception classes are defined in Python (`rustoptim/errors.py`) so that
//! Python code and the extension raise the same classes; each derives from
//! `ValueError` or `TypeError`.

use crate::error::OptimError;
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::collections::TryReserveError;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A rejected input, named after the `rustoptim.errors` class it raises.
#[derive(Debug)]
pub enum InputError {
    Shape(String),
    DType(String),
    ReadOnly(String),
    Alias(String),
    Layout(String),
    /// A param group's hyperparameter is missing, not a finite number or not a bool.
    Hyperparameter(String),
    Value(String),
    /// A buffer the call needs (a copy of a strided array) cannot be allocated.
    OutOfMemory(String),
}

impl InputError {
    fn class_name(&self) -> &'static str {
        match self {
            InputError::Shape(_) => "ShapeError",
            InputError::DType(_) => "DTypeError",
            InputError::ReadOnly(_) => "ReadOnlyError",
            InputError::Alias(_) => "AliasError",
            InputError::Layout(_) => "LayoutError",
            InputError::Hyperparameter(_) => "HyperparameterError",
            InputError::Value(_) => "ValueError",
            InputError::OutOfMemory(_) => "MemoryError",
        }
    }

    fn message(self) -> String {
        match self {
            InputError::Shape(m)
            | InputError::DType(m)
            | InputError::ReadOnly(m)
            | InputError::Alias(m)
            | InputError::Layout(m)
            | InputError::Hyperparameter(m)
            | InputError::Value(m)
            | InputError::OutOfMemory(m) => m,
        }
    }

    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let class_name = self.class_name();
        let message = self.message();
        match class_name {
            "ValueError" => return PyValueError::new_err(message),
            "MemoryError" => return PyMemoryError::new_err(message),
            _ => {}
        }
        match error_class(py, class_name) {
            Ok(class) => PyErr::from_type(class, message),
            Err(import_error) => import_error,
        }
    }
}

fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    Ok(py.import("rustoptim.errors")?.getattr(name)?.cast_into::<PyType>()?)
}

impl From<OptimError> for InputError {
    fn from(error: OptimError) -> Self {
        InputError::Value(error.to_string())
    }
}

/// Converts a core error to a Python exception: `MemoryError` for a failed
/// allocation, `ValueError` for everything else.
pub fn optim_error(py: Python<'_>, error: OptimError) -> PyErr {
    match error {
        OptimError::OutOfMemory { what, bytes, cause } => allocation_error(what, bytes, cause),
        other => InputError::from(other).into_pyerr(py),
    }
}

/// Runs the body of a Python entry point and turns a Rust panic inside it into
/// `rustoptim.errors.InternalError`, so no `PanicException` (a `BaseException`
/// that `except Exception` misses) ever reaches the caller. Every
/// `#[pyfunction]`/`#[pymethods]` entry point that can reach core code runs
/// through this. A panic is a bug in rustoptim; the message says so.
pub fn catch_panics<T>(py: Python<'_>, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    // AssertUnwindSafe: on a panic the entry point returns an error and drops
    // everything the body borrowed; nothing half-updated is observed afterwards
    // except the caller's arrays, which every entry point validates before its
    // first write so that a panic can only come from a bug, not from input.
    let payload = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => return result,
        Err(payload) => payload,
    };
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let message = format!("internal error in rustoptim (please report it): {what}");
    Err(match error_class(py, "InternalError") {
        Ok(class) => PyErr::from_type(class, message),
        Err(import_error) => import_error,
    })
}

/// A `MemoryError` that says what could not be allocated and how large it was.
pub fn allocation_error(what: &str, bytes: usize, _cause: TryReserveError) -> PyErr {
    PyMemoryError::new_err(format!("cannot allocate {bytes} bytes for {what}"))
}
