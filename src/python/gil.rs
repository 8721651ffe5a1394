//! When a kernel runs with the GIL released.

use crate::partition::MIN_ELEMENTS_PER_TASK;
use pyo3::prelude::*;

/// Runs `kernel` over `elements` elements, releasing the GIL when the work is
/// large enough for other Python threads to gain from it. Releasing and
/// re-acquiring the GIL costs a few hundred nanoseconds, more than a small
/// step's whole update, so small steps keep it.
pub fn run_kernel<T: Send>(py: Python<'_>, elements: usize, kernel: impl FnOnce() -> T + Send) -> T {
    if elements >= MIN_ELEMENTS_PER_TASK { py.detach(kernel) } else { kernel() }
}
