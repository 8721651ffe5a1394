//! Run-time settings: the worker thread count and the SIMD level.

use super::errors::{catch_panics, optim_error};
use crate::{pool, simd};
use pyo3::prelude::*;

/// Sets the number of worker threads used by every kernel (1 to `max_num_threads()`).
#[pyfunction]
fn set_num_threads(py: Python<'_>, num_threads: usize) -> PyResult<()> {
    catch_panics(py, || py.detach(|| pool::set_num_threads(num_threads)).map_err(|e| optim_error(py, e)))
}

/// The number of worker threads kernels split their work across.
#[pyfunction]
fn get_num_threads(py: Python<'_>) -> PyResult<usize> {
    catch_panics(py, || Ok(py.detach(pool::num_threads)))
}

/// The largest thread count `set_num_threads` accepts.
#[pyfunction]
fn max_num_threads(py: Python<'_>) -> PyResult<usize> {
    catch_panics(py, || Ok(pool::max_num_threads()))
}

/// Why `RUSTOPTIM_NUM_THREADS` is ignored, or `None` if it is unset or valid.
#[pyfunction]
fn num_threads_env_problem(py: Python<'_>) -> PyResult<Option<String>> {
    catch_panics(py, || Ok(pool::num_threads_env_problem()))
}

/// The SIMD levels this CPU can run, lowest first.
#[pyfunction]
fn simd_levels(py: Python<'_>) -> PyResult<Vec<&'static str>> {
    catch_panics(py, || Ok(simd::available_levels().into_iter().map(simd::SimdLevel::name).collect()))
}

/// The SIMD level kernels run at now.
#[pyfunction]
fn get_simd_level(py: Python<'_>) -> PyResult<&'static str> {
    catch_panics(py, || Ok(simd::active_level().name()))
}

/// Forces a SIMD level by name, or returns to the detected best level with `None`.
#[pyfunction]
#[pyo3(signature = (level=None))]
fn set_simd_level(py: Python<'_>, level: Option<&str>) -> PyResult<()> {
    catch_panics(py, || {
        let level = level.map(simd::SimdLevel::from_name).transpose().map_err(|e| optim_error(py, e))?;
        simd::set_forced_level(level).map_err(|e| optim_error(py, e))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(max_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads_env_problem, m)?)?;
    m.add_function(wrap_pyfunction!(simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(get_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    Ok(())
}
