//! Bindings of gradient clipping: the total norm of many gradients, and
//! scaling or clamping them in place. One call carries every gradient, float32
//! and float64 alike; `None` entries (a Parameter without a gradient) are
//! skipped but keep their position, so errors name the caller's index. Every
//! array is validated before any is written, and large work runs with the GIL
//! released.

use super::arrays::{AliasCheck, FloatArray, Label, ReadArray, WriteArray, shape_string};
use super::errors::{InputError, catch_panics, optim_error};
use super::gil::run_kernel;
use crate::clip::{clamp_in_place, clip_coefficient_for, scale_by_coefficient};
use crate::reduce::{NormOrder, TotalNorm, tensor_norms as tensor_norms_kernel, total_norm as total_norm_kernel};
use numpy::PyUntypedArrayMethods;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// torch's total norm of the gradients: the `norm_type`-norm of their
/// per-tensor norms, float64 if any gradient is. Nothing is written.
#[pyfunction]
fn total_norm<'py>(py: Python<'py>, grads: Bound<'py, PyList>, norm_type: f64) -> PyResult<f64> {
    catch_panics(py, || Ok(read_total_norm(py, &grads, norm_type)?.value()))
}

/// The total norm of the gradients (as `total_norm`) and the coefficient
/// `clip_grad_norm` would scale them by, `min(max_norm / (total + 1e-6), 1)`
/// computed in the total's dtype. Nothing is written.
#[pyfunction]
fn clip_grad_norm_scale<'py>(
    py: Python<'py>,
    grads: Bound<'py, PyList>,
    max_norm: f64,
    norm_type: f64,
) -> PyResult<(f64, f64)> {
    catch_panics(py, || {
        let total = read_total_norm(py, &grads, norm_type)?;
        Ok((total.value(), clip_coefficient_for(max_norm, total).value()))
    })
}

/// The total norm of `grads`, in its dtype, reading them only.
fn read_total_norm<'py>(py: Python<'py>, grads: &Bound<'py, PyList>, norm_type: f64) -> PyResult<TotalNorm> {
    let order = NormOrder::new(norm_type).map_err(|e| optim_error(py, e))?;
    let reads = ReadGrads::new(grads, order).map_err(|e| e.into_pyerr(py))?;
    // SAFETY: the grads are only read by this call.
    let (values32, values64) = unsafe { reads.values() };
    let elements = element_count(&values32, &values64);
    run_kernel(py, elements, || total_norm_kernel(&values32, &values64, reads.f64_first, order))
        .map_err(|e| optim_error(py, e))
}

/// The `norm_type`-norm of each gradient (`None` entries skipped), each
/// computed in its own dtype as `total_norm` computes it, in order. For
/// callers that combine norms themselves (`rustoptim.distributed`).
#[pyfunction]
fn tensor_norms<'py>(py: Python<'py>, grads: Bound<'py, PyList>, norm_type: f64) -> PyResult<Vec<f64>> {
    catch_panics(py, || {
        let order = NormOrder::new(norm_type).map_err(|e| optim_error(py, e))?;
        let reads = ReadGrads::new(&grads, order).map_err(|e| e.into_pyerr(py))?;
        // SAFETY: the grads are only read by this call.
        let (values32, values64) = unsafe { reads.values() };
        let elements = element_count(&values32, &values64);
        let (norms32, norms64) = run_kernel(py, elements, || {
            Ok::<_, crate::OptimError>((tensor_norms_kernel(&values32, order)?, tensor_norms_kernel(&values64, order)?))
        })
        .map_err(|e| optim_error(py, e))?;
        let (mut next32, mut next64) = (norms32.into_iter(), norms64.into_iter());
        Ok(reads
            .is_f64
            .iter()
            .map(|&is_f64| if is_f64 { next64.next() } else { next32.next().map(f64::from) })
            .map(|norm| norm.expect("one norm per gradient"))
            .collect())
    })
}

/// The gradients of a call that only reads them, by dtype.
struct ReadGrads<'py> {
    reads32: Vec<ReadArray<'py, f32>>,
    reads64: Vec<ReadArray<'py, f64>>,
    /// For each gradient (`None` entries skipped), in order: whether it is float64.
    is_f64: Vec<bool>,
    /// Whether torch lists the float64 gradients' norms first (see [`f64_group_first`]).
    f64_first: bool,
}

impl<'py> ReadGrads<'py> {
    /// Validates every gradient (dtype, layout, and that its norm of `order` is defined).
    fn new(grads: &Bound<'py, PyList>, order: NormOrder) -> Result<Self, InputError> {
        let arrays = float_arrays(grads)?;
        let f64_first = f64_group_first(&arrays);
        let mut reads = ReadGrads { reads32: Vec::new(), reads64: Vec::new(), is_f64: Vec::new(), f64_first };
        for (index, array) in arrays {
            check_norm_defined(&array, index, order)?;
            reads.is_f64.push(matches!(array, FloatArray::F64(_)));
            let label = Label::entry("grad", index);
            match array {
                FloatArray::F32(a) => reads.reads32.push(ReadArray::new(&a, None, label, None)?),
                FloatArray::F64(a) => reads.reads64.push(ReadArray::new(&a, None, label, None)?),
            }
        }
        Ok(reads)
    }

    /// # Safety
    /// Nothing may write the gradients while the slices are alive.
    unsafe fn values(&self) -> (Vec<&[f32]>, Vec<&[f64]>) {
        // SAFETY: per this function's contract.
        unsafe {
            (self.reads32.iter().map(|r| r.values()).collect(), self.reads64.iter().map(|r| r.values()).collect())
        }
    }
}

/// torch's `clip_grad_norm_`: the total norm, then every gradient scaled by
/// `min(max_norm / (total + 1e-6), 1)`, in place. Returns the total norm. With
/// `error_if_nonfinite`, a non-finite total leaves the gradients untouched (the
/// caller raises).
#[pyfunction]
fn clip_grad_norm<'py>(
    py: Python<'py>,
    grads: Bound<'py, PyList>,
    max_norm: f64,
    norm_type: f64,
    error_if_nonfinite: bool,
) -> PyResult<f64> {
    catch_panics(py, || {
        let order = NormOrder::new(norm_type).map_err(|e| optim_error(py, e))?;
        let mut writes = WrittenGrads::new(&grads, Some(order)).map_err(|e| e.into_pyerr(py))?;
        let f64_first = writes.f64_first;
        let total = writes.run(py, |grads| {
            let read32: Vec<&[f32]> = grads.f32s.iter().map(|g| &**g).collect();
            let read64: Vec<&[f64]> = grads.f64s.iter().map(|g| &**g).collect();
            let total = total_norm_kernel(&read32, &read64, f64_first, order)?;
            if error_if_nonfinite && !total.value().is_finite() {
                return Ok(total);
            }
            let coefficient = clip_coefficient_for(max_norm, total);
            scale_by_coefficient(&mut grads.f32s, grads.f32_zero_dim, &mut grads.f64s, coefficient);
            Ok(total)
        })?;
        Ok(total.value())
    })
}

/// torch's `clip_grads_with_norm_`: every gradient scaled by
/// `min(max_norm / (total_norm + 1e-6), 1)`, computed in the dtype torch's total
/// norm of these gradients has (float64 if any is float64, else float32).
#[pyfunction]
fn clip_grads_with_norm<'py>(
    py: Python<'py>,
    grads: Bound<'py, PyList>,
    max_norm: f64,
    total_norm: f64,
) -> PyResult<()> {
    catch_panics(py, || {
        let mut writes = WrittenGrads::new(&grads, None).map_err(|e| e.into_pyerr(py))?;
        let total =
            if writes.grads64.is_empty() { TotalNorm::F32(total_norm as f32) } else { TotalNorm::F64(total_norm) };
        let coefficient = clip_coefficient_for(max_norm, total);
        writes.run(py, |grads| {
            scale_by_coefficient(&mut grads.f32s, grads.f32_zero_dim, &mut grads.f64s, coefficient);
            Ok(())
        })
    })
}

/// torch's `clip_grad_value_`: every element clamped into `[-clip_value, clip_value]`, in place.
#[pyfunction]
fn clip_grad_value<'py>(py: Python<'py>, grads: Bound<'py, PyList>, clip_value: f64) -> PyResult<()> {
    catch_panics(py, || {
        let mut writes = WrittenGrads::new(&grads, None).map_err(|e| e.into_pyerr(py))?;
        writes.run(py, |grads| {
            clamp_in_place(&mut grads.f32s, clip_value);
            clamp_in_place(&mut grads.f64s, clip_value);
            Ok(())
        })
    })
}

/// The gradients of a call that writes them, validated and checked for shared memory.
struct WrittenGrads<'py> {
    grads32: Vec<WriteArray<'py, f32>>,
    grads64: Vec<WriteArray<'py, f64>>,
    /// Whether torch lists the float64 gradients' norms first (see [`f64_group_first`]).
    f64_first: bool,
}

/// The elements of a call's gradients, as the kernels see them.
struct GradSlices<'a> {
    f32s: Vec<&'a mut [f32]>,
    /// Which float32 gradients are 0-d (torch multiplies those differently).
    f32_zero_dim: &'a [bool],
    f64s: Vec<&'a mut [f64]>,
}

impl<'py> WrittenGrads<'py> {
    /// Validates every gradient (dtype, writeability, layout, and, when a norm
    /// of `order` follows, that it is defined), then checks that no two share memory.
    fn new(grads: &Bound<'py, PyList>, order: Option<NormOrder>) -> Result<Self, InputError> {
        let arrays = float_arrays(grads)?;
        let f64_first = f64_group_first(&arrays);
        let mut aliases = AliasCheck::with_capacity(arrays.len(), 0);
        let (mut grads32, mut grads64) = (Vec::new(), Vec::new());
        for (index, array) in arrays {
            if let Some(order) = order {
                check_norm_defined(&array, index, order)?;
            }
            let (label, why) = (Label::entry("grad", index), "; it is updated in place");
            match array {
                FloatArray::F32(a) => grads32.push(WriteArray::new(&a, label, why, true, &mut aliases)?),
                FloatArray::F64(a) => grads64.push(WriteArray::new(&a, label, why, true, &mut aliases)?),
            }
        }
        aliases.verify()?;
        Ok(WrittenGrads { grads32, grads64, f64_first })
    }

    /// Runs `kernel` on the gradients' elements (GIL released when large), then
    /// writes gathered strided gradients back.
    fn run<T: Send>(
        &mut self,
        py: Python<'_>,
        kernel: impl FnOnce(&mut GradSlices<'_>) -> Result<T, crate::OptimError> + Send,
    ) -> PyResult<T> {
        let f32_zero_dim: Vec<bool> = self.grads32.iter().map(|g| g.shape().is_empty()).collect();
        let result = {
            // SAFETY: the alias check passed in `new`, and each array's slice is taken once.
            let f32s: Vec<&mut [f32]> = self.grads32.iter_mut().map(|g| unsafe { g.values_mut() }).collect();
            // SAFETY: as for the float32 gradients.
            let f64s: Vec<&mut [f64]> = self.grads64.iter_mut().map(|g| unsafe { g.values_mut() }).collect();
            let elements = f32s.iter().map(|v| v.len()).sum::<usize>() + f64s.iter().map(|v| v.len()).sum::<usize>();
            let mut slices = GradSlices { f32s, f32_zero_dim: &f32_zero_dim, f64s };
            run_kernel(py, elements, || kernel(&mut slices))
        };
        let result = result.map_err(|e| optim_error(py, e))?;
        std::mem::take(&mut self.grads32).into_iter().for_each(WriteArray::scatter_back);
        std::mem::take(&mut self.grads64).into_iter().for_each(WriteArray::scatter_back);
        Ok(result)
    }
}

/// Whether torch lists the norms of the float64 gradients before those of the
/// float32 ones. torch groups tensors by dtype in a hash map whose iteration
/// order (measured, torch 2.15 on Linux) is the reverse of first appearance:
/// float64 first exactly when the first gradient is float32. The order fixes
/// the rounding of the total norm.
fn f64_group_first(arrays: &[(usize, FloatArray<'_>)]) -> bool {
    matches!(arrays.first(), Some((_, FloatArray::F32(_))))
}

/// The arrays of a gradient list with their positions, `None` entries skipped.
fn float_arrays<'py>(grads: &Bound<'py, PyList>) -> Result<Vec<(usize, FloatArray<'py>)>, InputError> {
    let mut arrays = Vec::with_capacity(grads.len());
    for (index, object) in grads.iter().enumerate() {
        if !object.is_none() {
            arrays.push((index, FloatArray::new(&object, Label::entry("grad", index))?));
        }
    }
    Ok(arrays)
}

/// torch refuses the ±inf and negative-order norms of an empty tensor.
fn check_norm_defined(array: &FloatArray<'_>, index: usize, order: NormOrder) -> Result<(), InputError> {
    let shape = array.untyped().shape();
    if order.defined_for_empty() || !shape.contains(&0) {
        return Ok(());
    }
    Err(InputError::Shape(format!(
        "grad {index} is empty (shape {}), and its {} norm is undefined \
         (the operation has no identity; torch refuses it too)",
        shape_string(shape),
        order.name()
    )))
}

fn element_count(values32: &[&[f32]], values64: &[&[f64]]) -> usize {
    values32.iter().map(|v| v.len()).sum::<usize>() + values64.iter().map(|v| v.len()).sum::<usize>()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(total_norm, m)?)?;
    m.add_function(wrap_pyfunction!(tensor_norms, m)?)?;
    m.add_function(wrap_pyfunction!(clip_grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(clip_grad_norm_scale, m)?)?;
    m.add_function(wrap_pyfunction!(clip_grads_with_norm, m)?)?;
    m.add_function(wrap_pyfunction!(clip_grad_value, m)?)?;
    Ok(())
}
