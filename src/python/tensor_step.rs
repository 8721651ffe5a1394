//! The step entry point of the optimizers that update each tensor as a whole
//! (Adafactor, Muon; see `crate::tensorwise`).
//!
//! `_core.tensor_step(rule, batches, state, grad_scale=None)` takes the same
//! batches and `grad_scale` as `_core.step` (`(group_index, group, params, grads,
//! entries, positions)` per param group) and keeps the same all-or-nothing contract:
//!
//! 1. every group's hyperparameters, every array (dtype, shape, layout,
//!    alignment, writeability; state arrays of the shapes the rule gives), every
//!    state entry and memory shared between any two arrays of the whole step are
//!    checked, and the scratch memory is allocated, before anything is written;
//! 2. the kernels run (with the GIL released for large steps);
//! 3. the new scalar state and the state arrays the step created are stored from
//!    Rust, with the GIL held.
//!
//! The kernels work in C order: params of other layouts are gathered into a
//! buffer and written back, and state arrays are C-ordered.

use super::arrays::{AliasCheck, DType, GradArray, ParamArray, Role, Site, StateArray, param_dtype, shape_string};
use super::batch::{Batch, BatchItem};
use super::errors::{InputError, allocation_error, catch_panics};
use super::gil::run_kernel;
use super::group::{GroupReader, finite_real};
use super::rules::{TensorRuleBinding, with_tensor_rule};
use super::step::{scalar, state_entry};
use crate::elementwise::{MAX_SCALARS, MAX_SLOTS, Scalars, empty_slots};
use crate::tensorwise::{self, WholeTensor, Workspace};
use numpy::{Element as NumpyElement, PyArrayDyn};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList};

/// Applies one step of the whole-tensor rule named `rule` to every batch, in place.
#[pyfunction]
#[pyo3(signature = (rule, batches, state, grad_scale=None))]
fn tensor_step<'py>(
    py: Python<'py>,
    rule: &str,
    batches: Bound<'py, PyList>,
    state: Bound<'py, PyDict>,
    grad_scale: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    catch_panics(py, || {
        let grad_scale =
            grad_scale.map(|scale| finite_real("grad_scale", &scale)).transpose().map_err(|e| e.into_pyerr(py))?;
        with_tensor_rule!(rule, R => run_step::<R>(py, &batches, &state, grad_scale),
            |other: &str| Err(InputError::Value(format!("unknown optimizer rule {other:?}")).into_pyerr(py)))
    })
}

/// One tensor of the step, validated and waiting for its kernel.
struct Prepared<'py, F: NumpyElement> {
    param: ParamArray<'py, F>,
    grad: GradArray<'py, F>,
    shape: Vec<usize>,
    slots: Vec<StateArray<'py, F>>,
    /// Slot arrays this step creates, stored into the entry once it succeeds.
    created: Vec<(&'static str, Bound<'py, PyArrayDyn<F>>)>,
    scalars: Scalars,
    /// The param's state dict; None when the step creates it.
    entry: Option<Bound<'py, PyDict>>,
    key: Bound<'py, PyAny>,
}

/// One group's rule and its tensors of each dtype, as the kernels see them.
type GroupWork<'a, R> = (&'a R, Vec<WholeTensor<'a, f32>>, Vec<WholeTensor<'a, f64>>);

/// One param group's config and its validated tensors of each dtype.
struct PreparedBatch<'py, R> {
    rule: R,
    float32: Vec<Prepared<'py, f32>>,
    float64: Vec<Prepared<'py, f64>>,
}

fn run_step<'py, R: TensorRuleBinding>(
    py: Python<'py>,
    batches: &Bound<'py, PyList>,
    state: &Bound<'py, PyDict>,
    grad_scale: Option<f64>,
) -> PyResult<()> {
    let mut aliases = AliasCheck::with_capacity(0, 0);
    let mut prepared: Vec<PreparedBatch<'py, R>> = Vec::with_capacity(batches.len());
    for batch in batches.iter() {
        prepared.push(prepare_batch::<R>(&batch, &mut aliases).map_err(|e| e.into_pyerr(py))?);
    }
    aliases.verify().map_err(|e| e.into_pyerr(py))?;
    let scales_grads = grad_scale.is_some();
    let mut workspace32 = workspace_for(&prepared, |b| &b.float32, scales_grads)?;
    let mut workspace64 = workspace_for(&prepared, |b| &b.float64, scales_grads)?;

    let elements: usize = prepared
        .iter()
        .map(|b| {
            b.float32.iter().map(|t| t.param.len()).sum::<usize>()
                + b.float64.iter().map(|t| t.param.len()).sum::<usize>()
        })
        .sum();
    let advanced: Vec<(Vec<Scalars>, Vec<Scalars>)>;
    {
        let mut work: Vec<GroupWork<'_, R>> =
            prepared.iter_mut().map(|b| (&b.rule, tensors(&mut b.float32), tensors(&mut b.float64))).collect();
        run_kernel(py, elements, || {
            for (rule, float32, float64) in work.iter_mut() {
                tensorwise::step_with_grad_scale(*rule, float32, &mut workspace32, grad_scale)?;
                tensorwise::step_with_grad_scale(*rule, float64, &mut workspace64, grad_scale)?;
            }
            Ok::<(), crate::OptimError>(())
        })
        .map_err(|e| InputError::from(e).into_pyerr(py))?;
        advanced = work
            .iter()
            .map(|(_, float32, float64)| {
                (float32.iter().map(|t| t.scalars).collect(), float64.iter().map(|t| t.scalars).collect())
            })
            .collect();
    }
    for (batch, (float32, float64)) in prepared.into_iter().zip(advanced) {
        for (tensor, scalars) in batch.float32.into_iter().zip(float32) {
            commit::<R, f32>(py, tensor, scalars, state).map_err(|e| e.into_pyerr(py))?;
        }
        for (tensor, scalars) in batch.float64.into_iter().zip(float64) {
            commit::<R, f64>(py, tensor, scalars, state).map_err(|e| e.into_pyerr(py))?;
        }
    }
    Ok(())
}

/// Scratch memory for the largest tensor of one dtype (and, when the step
/// scales gradients, for its scaled gradient), or a `MemoryError`.
fn workspace_for<'py, R: TensorRuleBinding, F: NumpyElement + crate::Element>(
    prepared: &[PreparedBatch<'py, R>],
    tensors: for<'b> fn(&'b PreparedBatch<'py, R>) -> &'b Vec<Prepared<'py, F>>,
    scales_grads: bool,
) -> PyResult<Workspace<F>> {
    let sizes = prepared.iter().flat_map(|b| tensors(b).iter().map(|t| b.rule.workspace(&t.shape)));
    let largest = prepared.iter().flat_map(|b| tensors(b).iter().map(|t| t.param.len())).max().unwrap_or(0);
    Workspace::try_new(sizes)
        .and_then(|w| w.try_with_scaled_grad(if scales_grads { largest } else { 0 }))
        .map_err(|(bytes, e)| allocation_error("the scratch memory of an optimizer step", bytes, e))
}

/// The kernel's view of prepared tensors.
fn tensors<'a, F: NumpyElement + crate::Element>(prepared: &'a mut [Prepared<'_, F>]) -> Vec<WholeTensor<'a, F>> {
    prepared
        .iter_mut()
        .map(|p| {
            let mut slots = empty_slots();
            for (target, slot) in slots.iter_mut().zip(p.slots.iter_mut()) {
                // SAFETY: the alias check of the whole step passed, so no two
                // arrays handed out here share memory, and each slice is taken once.
                *target = unsafe { slot.values_mut() };
            }
            // SAFETY: as above, for the param and its gradient.
            let (param, grad) = unsafe { (p.param.values_mut(), p.grad.values()) };
            WholeTensor { param, grad, shape: &p.shape, slots, scalars: p.scalars }
        })
        .collect()
}

fn prepare_batch<'py, R: TensorRuleBinding>(
    batch: &Bound<'py, PyAny>,
    aliases: &mut AliasCheck<'py>,
) -> Result<PreparedBatch<'py, R>, InputError> {
    let batch = Batch::read(batch)?;
    let rule = R::from_group(&GroupReader { dict: &batch.group, index: batch.group_index, defaults: None })?;
    let mut prepared = PreparedBatch { rule, float32: Vec::new(), float64: Vec::new() };
    let py = batch.group.py();
    for i in 0..batch.len() {
        let BatchItem { position, param: key, grad, entry } = batch.item(i)?;
        let site = Site::in_group(batch.group_index, position);
        let data = key
            .getattr(intern!(py, "data"))
            .map_err(|_| InputError::DType(format!("{site} is not a rustoptim.Parameter (it has no .data)")))?;
        let dtype = param_dtype(&data, site)?;
        if i == 0 {
            prepared.rule.first_param_dtype(dtype);
        }
        match dtype {
            DType::Float32 => {
                prepared.float32.push(prepare_tensor(&prepared.rule, key, &data, &grad, &entry, site, aliases)?)
            }
            DType::Float64 => {
                prepared.float64.push(prepare_tensor(&prepared.rule, key, &data, &grad, &entry, site, aliases)?)
            }
        }
    }
    Ok(prepared)
}

fn prepare_tensor<'py, R: TensorRuleBinding, F: NumpyElement + crate::Element>(
    rule: &R,
    key: Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    entry: &Bound<'py, PyAny>,
    site: Site,
    aliases: &mut AliasCheck<'py>,
) -> Result<Prepared<'py, F>, InputError> {
    let param = ParamArray::<F>::new_c_ordered(data, site, aliases)?;
    let shape = param.shape().to_vec();
    rule.check_shape(&shape)
        .map_err(|reason| InputError::Shape(format!("{site} has shape {}; {reason}", shape_string(&shape))))?;
    let grad = GradArray::<F>::new(grad, &param, aliases)?;
    let entry = state_entry(entry, site)?;
    // An empty dict (made by reading `opt.state[p]`) is filled like a new entry.
    let existing = entry.as_ref().filter(|d| !d.is_empty());

    let mut scalars = [0.0; MAX_SCALARS];
    for (k, &(name, initial)) in R::SCALARS.iter().enumerate() {
        scalars[k] = match existing {
            None => initial,
            Some(dict) => scalar(dict, name, site)?,
        };
    }
    let keys = rule.slot_keys(&shape);
    debug_assert!(keys.len() <= MAX_SLOTS);
    let mut slots = Vec::with_capacity(keys.len());
    let mut created = Vec::new();
    for (slot, &name) in keys.iter().enumerate() {
        let slot_shape = rule.slot_shape(slot, &shape);
        let stored = existing.and_then(|dict| dict.get_item(name).ok().flatten());
        let array = match stored {
            Some(array) => array,
            None => {
                let array = param.new_state_shaped(&slot_shape);
                created.push((name, array.clone()));
                array.into_any()
            }
        };
        slots.push(StateArray::with_shape(&array, Role::State(name), &param, &slot_shape, aliases)?);
    }
    Ok(Prepared { param, grad, shape, slots, created, scalars, entry, key })
}

/// Stores a tensor's new scalar state and created state arrays into its entry,
/// creating the entry (in `state`, keyed by the param) when it had none.
fn commit<'py, R: TensorRuleBinding, F: NumpyElement + crate::Element>(
    py: Python<'py>,
    tensor: Prepared<'py, F>,
    scalars: Scalars,
    state: &Bound<'py, PyDict>,
) -> Result<(), InputError> {
    tensor.param.scatter_back();
    let set_failed = |e: PyErr| InputError::Value(format!("cannot store optimizer state: {e}"));
    let (entry, is_new) = match tensor.entry {
        Some(entry) => (entry, false),
        None => (PyDict::new(py), true),
    };
    for (k, &(name, _)) in R::SCALARS.iter().enumerate() {
        entry.set_item(name, PyFloat::new(py, scalars[k])).map_err(set_failed)?;
    }
    for (name, array) in tensor.created {
        entry.set_item(name, array).map_err(set_failed)?;
    }
    if is_new {
        state.set_item(tensor.key, entry).map_err(set_failed)?;
    }
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tensor_step, m)?)
}
