//! Run-time settings: the worker thread count and the SIMD level.

use super::errors::optim_error;
use crate::{pool, simd};
use pyo3::prelude::*;

/// Sets the number of worker threads used by every kernel (at least 1).
#[pyfunction]
fn set_num_threads(py: Python<'_>, num_threads: usize) -> PyResult<()> {
    py.detach(|| pool::set_num_threads(num_threads)).map_err(|e| optim_error(py, e))
}

/// The number of worker threads kernels split their work across.
#[pyfunction]
fn get_num_threads() -> usize {
    pool::num_threads()
}

/// The SIMD levels this CPU can run, lowest first.
#[pyfunction]
fn simd_levels() -> Vec<&'static str> {
    simd::available_levels().into_iter().map(simd::SimdLevel::name).collect()
}

/// The SIMD level kernels run at now.
#[pyfunction]
fn get_simd_level() -> &'static str {
    simd::active_level().name()
}

/// Forces a SIMD level by name, or returns to the detected best level with `None`.
#[pyfunction]
#[pyo3(signature = (level=None))]
fn set_simd_level(py: Python<'_>, level: Option<&str>) -> PyResult<()> {
    let level = level.map(simd::SimdLevel::from_name).transpose().map_err(|e| optim_error(py, e))?;
    simd::set_forced_level(level).map_err(|e| optim_error(py, e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(get_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    Ok(())
}
