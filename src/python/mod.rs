//! The `rustoptim._core` extension module: converts NumPy arrays, validates
//! them, releases the GIL and runs the core kernels. No arithmetic lives here.

mod alias;
mod arrays;
mod bandwidth;
mod errors;
mod gil;
mod group;
mod lbfgs;
mod rules;
mod runtime;
mod site;
mod step;
mod tensor_step;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    step::register(m)?;
    lbfgs::register(m)?;
    bandwidth::register(m)?;
    runtime::register(m)?;
    tensor_step::register(m)?;
    Ok(())
}
