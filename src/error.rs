//! The one error type of the Rust core. The Python bindings map each variant to
//! an exception class in one place (`python/errors.rs`).

use std::collections::TryReserveError;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OptimError {
    /// Two arrays that must have the same number of elements do not.
    #[error("{what} of tensor {index} has {got} elements, expected {expected}")]
    LengthMismatch { index: usize, what: &'static str, expected: usize, got: usize },

    /// Per-tensor argument lists of a multi-tensor call have different lengths.
    #[error("{what} has {got} entries, expected one per tensor ({expected})")]
    ListLengthMismatch { what: &'static str, expected: usize, got: usize },

    /// A setting that cannot be honoured (thread count, SIMD level, ...).
    #[error("{0}")]
    InvalidSetting(String),

    /// An allocation failed: `bytes` bytes for `what` (the binding raises `MemoryError`).
    #[error("cannot allocate {bytes} bytes for {what}")]
    OutOfMemory { what: &'static str, bytes: usize, cause: TryReserveError },
}
