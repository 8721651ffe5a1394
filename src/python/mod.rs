//! The `rustoptim._core` extension module: converts NumPy arrays, validates
//! them, releases the GIL and runs the core kernels. No arithmetic lives here.

mod alias;
mod arrays;
mod average;
mod bandwidth;
mod clip;
mod errors;
mod first_order;
mod float_arrays;
mod gil;
mod lbfgs;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    first_order::register(m)?;
    lbfgs::register(m)?;
    bandwidth::register(m)?;
    runtime::register(m)?;
    clip::register(m)?;
    average::register(m)?;
    Ok(())
}
