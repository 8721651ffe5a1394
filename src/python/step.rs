//! The one step entry point of every element-wise optimizer.
//!
//! `_core.step(rule, batches, state, defaults=None, grad_scale=None)` applies one optimizer step
//! to every param group at once. Each batch is `(group_index, group, params,
//! grads, entries, positions)`: a param group's dict, the `Parameter`s that have
//! a gradient, their gradients, their state dicts (`None` for a param without
//! state yet) and, when some params of the group were skipped, each param's
//! position in the group (for messages). `defaults` is the optimizer's
//! `defaults` dict, for the few values torch reads from the constructor rather
//! than from the group. `grad_scale`, a finite real number, scales every
//! gradient as the kernels read it (see [`elementwise::step_with_grad_scale`]).
//!
//! The whole step is all-or-nothing:
//!
//! 1. everything is read and checked first: every group's hyperparameters,
//!    every array (dtype, shape, layout, alignment, writeability), every state
//!    entry, and memory shared between any two arrays of the whole step;
//! 2. the kernels run (with the GIL released for large steps);
//! 3. the new scalar state (step counts, ...) and any state created by the step
//!    are stored into the state dicts, from Rust, with the GIL held: no Python
//!    code runs between the first write and the last, so a KeyboardInterrupt
//!    arrives either before the step or after it.

use super::arrays::{AliasCheck, DType, GradArray, ParamArray, Role, Site, StateArray, param_dtype};
use super::errors::{InputError, catch_panics};
use super::gil::run_kernel;
use super::group::{GroupReader, finite_real};
use super::keys::key as state_key;
use super::rules::{RuleBinding, with_rule};
use crate::elementwise::{self, MAX_SCALARS, MAX_SLOTS, Scalars, Tensor, empty_slots};
use numpy::{Element as NumpyElement, PyArrayDyn};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyTuple};

/// Applies one step of the rule named `rule` to every batch, in place.
#[pyfunction]
#[pyo3(signature = (rule, batches, state, defaults=None, grad_scale=None))]
fn step<'py>(
    py: Python<'py>,
    rule: &str,
    batches: Bound<'py, PyList>,
    state: Bound<'py, PyDict>,
    defaults: Option<Bound<'py, PyDict>>,
    grad_scale: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    catch_panics(py, || {
        let grad_scale =
            grad_scale.map(|scale| finite_real("grad_scale", &scale)).transpose().map_err(|e| e.into_pyerr(py))?;
        with_rule!(rule, R => run_step::<R>(py, &batches, &state, defaults.as_ref(), grad_scale),
            |other: &str| Err(InputError::Value(format!("unknown optimizer rule {other:?}"))))
        .map_err(|e| e.into_pyerr(py))
    })
}

/// One tensor of the step, validated and waiting for its kernel.
struct Prepared<'py, F: NumpyElement> {
    param: ParamArray<'py, F>,
    grad: GradArray<'py, F>,
    slots: [Option<StateArray<'py, F>>; MAX_SLOTS],
    /// Slot arrays this step creates, stored into the entry once it succeeds.
    created: Vec<(usize, Bound<'py, PyArrayDyn<F>>)>,
    scalars: Scalars,
    fresh_slots: u8,
    /// The param's state dict; None when the step creates it.
    entry: Option<Bound<'py, PyDict>>,
    key: Bound<'py, PyAny>,
}

/// One group's rule and its tensors of each dtype, as the kernels see them.
type GroupWork<'a, R> = (&'a R, Vec<Tensor<'a, f32>>, Vec<Tensor<'a, f64>>);

/// One param group's config and its validated tensors of each dtype.
struct PreparedBatch<'py, R> {
    rule: R,
    float32: Vec<Prepared<'py, f32>>,
    float64: Vec<Prepared<'py, f64>>,
}

fn run_step<'py, R: RuleBinding>(
    py: Python<'py>,
    batches: &Bound<'py, PyList>,
    state: &Bound<'py, PyDict>,
    defaults: Option<&Bound<'py, PyDict>>,
    grad_scale: Option<f64>,
) -> Result<(), InputError> {
    let mut aliases = AliasCheck::with_capacity(0, 0);
    let mut prepared: Vec<PreparedBatch<'py, R>> = Vec::with_capacity(batches.len());
    for batch in batches.iter() {
        prepared.push(prepare_batch::<R>(&batch, defaults, &mut aliases)?);
    }
    aliases.verify()?;

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
                elementwise::step_with_grad_scale(*rule, float32, grad_scale)?;
                elementwise::step_with_grad_scale(*rule, float64, grad_scale)?;
            }
            Ok::<(), crate::OptimError>(())
        })?;
        advanced = work
            .iter()
            .map(|(_, float32, float64)| {
                (float32.iter().map(|t| t.scalars).collect(), float64.iter().map(|t| t.scalars).collect())
            })
            .collect();
    }
    // The advanced scalar state goes back to the prepared tensors.
    for (batch, (float32, float64)) in prepared.iter_mut().zip(advanced) {
        batch.float32.iter_mut().zip(float32).for_each(|(p, scalars)| p.scalars = scalars);
        batch.float64.iter_mut().zip(float64).for_each(|(p, scalars)| p.scalars = scalars);
    }
    for batch in prepared {
        let keys = batch.rule.slot_keys();
        for tensor in batch.float32 {
            commit::<R, f32>(py, tensor, keys, state)?;
        }
        for tensor in batch.float64 {
            commit::<R, f64>(py, tensor, keys, state)?;
        }
    }
    Ok(())
}

/// The kernel's view of prepared tensors.
fn tensors<'a, F: NumpyElement + crate::Element>(prepared: &'a mut [Prepared<'_, F>]) -> Vec<Tensor<'a, F>> {
    prepared
        .iter_mut()
        .map(|p| {
            let mut slots = empty_slots();
            for (target, slot) in slots.iter_mut().zip(p.slots.iter_mut()) {
                if let Some(slot) = slot {
                    // SAFETY: the alias check of the whole step passed, so no two
                    // arrays handed out here share memory, and each slot's slice
                    // is taken once.
                    *target = unsafe { slot.values_mut() };
                }
            }
            let fresh_slots = p.fresh_slots;
            let scalars = p.scalars;
            // SAFETY: as above, for the param and its gradient.
            let (param, grad) = unsafe { (p.param.values_mut(), p.grad.values()) };
            let mut tensor = Tensor::new(param, grad);
            tensor.slots = slots;
            tensor.scalars = scalars;
            tensor.fresh_slots = fresh_slots;
            tensor
        })
        .collect()
}

fn prepare_batch<'py, R: RuleBinding>(
    batch: &Bound<'py, PyAny>,
    defaults: Option<&Bound<'py, PyDict>>,
    aliases: &mut AliasCheck<'py>,
) -> Result<PreparedBatch<'py, R>, InputError> {
    let malformed =
        || InputError::Value("a step batch must be (index, group, params, grads, entries, positions)".into());
    let batch = batch.cast::<PyTuple>().map_err(|_| malformed())?;
    if batch.len() != 6 {
        return Err(malformed());
    }
    let item = |i: usize| batch.get_item(i).map_err(|_| malformed());
    let group_index: usize = item(0)?.extract().map_err(|_| malformed())?;
    let group = item(1)?;
    let group = group.cast::<PyDict>().map_err(|_| malformed())?;
    let params = item(2)?;
    let params = params.cast::<PyList>().map_err(|_| malformed())?;
    let grads = item(3)?;
    let grads = grads.cast::<PyList>().map_err(|_| malformed())?;
    let entries = item(4)?;
    let entries = entries.cast::<PyList>().map_err(|_| malformed())?;
    let positions = item(5)?;
    let positions =
        if positions.is_none() { None } else { Some(positions.cast_into::<PyList>().map_err(|_| malformed())?) };
    let n = params.len();
    if grads.len() != n || entries.len() != n || positions.as_ref().is_some_and(|p| p.len() != n) {
        return Err(malformed());
    }

    let rule = R::from_group(&GroupReader { dict: group, index: group_index, defaults })?;
    let mut prepared = PreparedBatch { rule, float32: Vec::new(), float64: Vec::new() };
    let py = batch.py();
    for i in 0..n {
        let position = match &positions {
            Some(list) => list.get_item(i).and_then(|p| p.extract()).map_err(|_| malformed())?,
            None => i,
        };
        let site = Site::in_group(group_index, position);
        let key = params.get_item(i).map_err(|_| malformed())?;
        let data = key
            .getattr(intern!(py, "data"))
            .map_err(|_| InputError::DType(format!("{site} is not a rustoptim.Parameter (it has no .data)")))?;
        let grad = grads.get_item(i).map_err(|_| malformed())?;
        let entry = entries.get_item(i).map_err(|_| malformed())?;
        match param_dtype(&data, site)? {
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

fn prepare_tensor<'py, R: RuleBinding, F: NumpyElement + crate::Element>(
    rule: &R,
    key: Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    entry: &Bound<'py, PyAny>,
    site: Site,
    aliases: &mut AliasCheck<'py>,
) -> Result<Prepared<'py, F>, InputError> {
    let param = ParamArray::<F>::new(data, site, aliases)?;
    let grad = GradArray::<F>::new(grad, &param, aliases)?;
    let entry = if entry.is_none() {
        None
    } else {
        let dict = entry
            .cast::<PyDict>()
            .map_err(|_| InputError::Value(format!("the state of {site} must be a dict, got {}", type_name(entry))))?;
        // An empty dict (made by reading `opt.state[p]`) is filled like a new entry.
        Some(dict.clone())
    };
    let existing = entry.as_ref().filter(|d| !d.is_empty());

    let mut scalars = [0.0; MAX_SCALARS];
    for (k, &(name, initial)) in R::SCALARS.iter().enumerate() {
        scalars[k] = match existing {
            None => initial,
            Some(dict) => scalar(dict, name, site)?,
        };
    }
    let mut slots: [Option<StateArray<'py, F>>; MAX_SLOTS] = Default::default();
    let mut created = Vec::new();
    let mut fresh_slots = 0u8;
    for (slot, &name) in rule.slot_keys().iter().enumerate() {
        let stored = match existing {
            Some(dict) => dict.get_item(state_key(dict.py(), name)).ok().flatten(),
            None => None,
        };
        let array = match stored {
            Some(array) => array,
            None => {
                let array = param.new_state(rule.slot_initial_value(slot));
                created.push((slot, array.clone()));
                fresh_slots |= 1 << slot;
                array.into_any()
            }
        };
        slots[slot] = Some(StateArray::new(&array, Role::State(name), &param, aliases)?);
    }
    Ok(Prepared { param, grad, slots, created, scalars, fresh_slots, entry, key })
}

/// A scalar state value (step count, ...) stored in a state dict.
pub(super) fn scalar(entry: &Bound<'_, PyDict>, name: &'static str, site: Site) -> Result<f64, InputError> {
    let value = entry.get_item(state_key(entry.py(), name)).ok().flatten().ok_or_else(|| {
        InputError::Value(format!("the state of {site} has no {name:?} (it holds other state: was it edited?)"))
    })?;
    if let Ok(f) = value.cast_exact::<PyFloat>() {
        let x = f.value();
        if x.is_finite() && x >= 0.0 {
            return Ok(x);
        }
    } else if let Ok(x) = value.extract::<f64>() {
        if x.is_finite() && x >= 0.0 && !value.is_instance_of::<pyo3::types::PyBool>() {
            return Ok(x);
        }
    }
    Err(InputError::Value(format!(
        "state {name:?} of {site} must be a finite non-negative number, got {}",
        value.repr().map(|r| r.to_string()).unwrap_or_default()
    )))
}

/// Stores a tensor's new scalar state and created state arrays into its entry,
/// creating the entry (in `state`, keyed by the param) when it had none.
fn commit<'py, R: RuleBinding, F: NumpyElement + crate::Element>(
    py: Python<'py>,
    tensor: Prepared<'py, F>,
    keys: &[&'static str],
    state: &Bound<'py, PyDict>,
) -> Result<(), InputError> {
    tensor.param.scatter_back();
    let set_failed = |e: PyErr| InputError::Value(format!("cannot store optimizer state: {e}"));
    if tensor.entry.is_none() && R::SCALARS.is_empty() && tensor.created.is_empty() {
        // Nothing to keep (SGD without momentum): the param gets no state entry.
        return Ok(());
    }
    let (entry, is_new) = match tensor.entry {
        Some(entry) => (entry, false),
        None => (PyDict::new(py), true),
    };
    for (k, &(name, _)) in R::SCALARS.iter().enumerate() {
        entry.set_item(state_key(py, name), PyFloat::new(py, tensor.scalars[k])).map_err(set_failed)?;
    }
    for (slot, array) in tensor.created {
        entry.set_item(state_key(py, keys[slot]), array).map_err(set_failed)?;
    }
    if is_new {
        state.set_item(tensor.key, entry).map_err(set_failed)?;
    }
    Ok(())
}

pub(super) fn type_name(object: &Bound<'_, PyAny>) -> String {
    object.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// The state keys of the rule named `rule` under `group`'s configuration:
/// `(scalar keys, state-array keys)`, in the order the state dicts hold them.
#[pyfunction]
#[pyo3(signature = (rule, group, group_index=0))]
fn state_keys<'py>(
    py: Python<'py>,
    rule: &str,
    group: Bound<'py, PyDict>,
    group_index: usize,
) -> PyResult<(Vec<&'static str>, Vec<&'static str>)> {
    catch_panics(py, || {
        with_rule!(rule, R => {
            let config = R::from_group(&GroupReader { dict: &group, index: group_index, defaults: None }).map_err(|e| e.into_pyerr(py))?;
            Ok((R::SCALARS.iter().map(|&(name, _)| name).collect(), config.slot_keys().to_vec()))
        }, |other: &str| Err(InputError::Value(format!("unknown optimizer rule {other:?}")).into_pyerr(py)))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(step, m)?)?;
    m.add_function(wrap_pyfunction!(state_keys, m)?)
}
