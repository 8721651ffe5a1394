//! The `rustoptim._core` extension module: converts NumPy arrays, validates
//! them, releases the GIL and runs the core kernels. No arithmetic lives here.

mod alias;
mod arrays;
mod average;
mod bandwidth;
mod batch;
mod clip;
mod errors;
mod gil;
mod group;
mod keys;
mod lbfgs;
mod minimize;
mod rules;
mod runtime;
mod site;
mod step;
mod tensor_step;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Cargo.toml's version, the only place it is written; `rustoptim.__version__` is this.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    step::register(m)?;
    lbfgs::register(m)?;
    minimize::register(m)?;
    bandwidth::register(m)?;
    runtime::register(m)?;
    clip::register(m)?;
    average::register(m)?;
    tensor_step::register(m)?;
    Ok(())
}
