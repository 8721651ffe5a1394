//! Binding of the bandwidth-ceiling kernel used by the benchmarks.

use super::arrays::{AliasCheck, DType, GradArray, ParamArray, Role, Site, StateArray, param_dtype};
use super::errors::{InputError, catch_panics};
use super::gil::run_kernel;
use crate::bandwidth::{StreamTensor, stream_update as stream_kernel};
use numpy::Element as NumpyElement;
use pyo3::prelude::*;

/// `x += reads[i]` for every `x` in `updates[i]`, for every tensor `i`: an
/// optimizer step's memory traffic without its arithmetic. All arrays of a
/// tensor must be contiguous with the same shape and dtype.
#[pyfunction]
fn stream_update<'py>(
    py: Python<'py>,
    reads: Vec<Bound<'py, PyAny>>,
    updates: Vec<Vec<Bound<'py, PyAny>>>,
) -> PyResult<()> {
    catch_panics(py, || {
        // The first tensor's dtype is every tensor's (the benchmarks use one dtype).
        let result = match reads.first().map(|read| param_dtype(read, Site::flat(0))).transpose() {
            Ok(None) => return Ok(()),
            Ok(Some(DType::Float32)) => run::<f32>(py, &reads, &updates),
            Ok(Some(DType::Float64)) => run::<f64>(py, &reads, &updates),
            Err(e) => Err(e),
        };
        result.map_err(|e| e.into_pyerr(py))
    })
}

fn run<'py, F>(
    py: Python<'py>,
    reads: &[Bound<'py, PyAny>],
    updates: &[Vec<Bound<'py, PyAny>>],
) -> Result<(), InputError>
where
    F: NumpyElement + crate::Element,
{
    super::arrays::check_list_length("updates", updates.len(), reads.len())?;
    // The first updated array of each tensor plays the param (it fixes shape and order).
    let mut aliases = AliasCheck::with_capacity(4 * reads.len(), reads.len());
    let mut firsts = Vec::with_capacity(reads.len());
    let mut rests = Vec::with_capacity(reads.len());
    let mut read_arrays = Vec::with_capacity(reads.len());
    for (i, (arrays, read)) in updates.iter().zip(reads).enumerate() {
        let Some(first) = arrays.first() else {
            return Err(InputError::Value(format!("updates[{i}] is empty")));
        };
        let first = ParamArray::<F>::new(first, Site::flat(i), &mut aliases)?;
        let rest = arrays[1..]
            .iter()
            .map(|a| StateArray::new(a, Role::Other("updated array"), &first, &mut aliases))
            .collect::<Result<Vec<_>, _>>()?;
        read_arrays.push(GradArray::new(read, &first, &mut aliases)?);
        firsts.push(first);
        rests.push(rest);
    }
    aliases.verify()?;
    let mut tensors: Vec<StreamTensor<'_, F>> = firsts
        .iter_mut()
        .zip(rests.iter_mut())
        .zip(&read_arrays)
        .map(|((first, rest), read)| {
            // SAFETY: the alias check passed, and each array's slice is taken once.
            unsafe {
                let mut updated = vec![first.values_mut()];
                updated.extend(rest.iter_mut().map(|a| a.values_mut()));
                StreamTensor { read: read.values(), updated }
            }
        })
        .collect();
    let elements = tensors.iter().map(|t| t.read.len()).sum();
    run_kernel(py, elements, || stream_kernel(&mut tensors)).map_err(InputError::from)?;
    drop(tensors);
    firsts.into_iter().for_each(ParamArray::scatter_back);
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(stream_update, m)?)
}
