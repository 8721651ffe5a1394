//! The `rustoptim._core` extension module: converts NumPy arrays, validates
//! them, releases the GIL and runs the core kernels. No arithmetic lives here.

mod alias;
mod arrays;
mod bandwidth;
mod errors;
mod first_order;
mod gil;
mod lbfgs;
mod minimize;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    first_order::register(m)?;
    lbfgs::register(m)?;
    minimize::register(m)?;
    bandwidth::register(m)?;
    runtime::register(m)?;
    Ok(())
}
