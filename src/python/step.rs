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
use super::batch::Batch;
use super::errors::{InputError, catch_panics};
use super::gil::run_kernel;
use super::group::{GroupReader, finite_real};
use super::keys::key as state_key;
use super::rules::{RuleBinding, with_rule};
use crate::elementwise::{self, MAX_SCALARS, MAX_SLOTS, Scalars, Tensor, empty_slots};
use numpy::{Element as NumpyElement, PyArrayDyn};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

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

/// Applies one step of the rule named `rule` to every param of `groups` (the
/// optimizer's `param_groups`) that has a `.grad`, in place; returns how many
/// params were stepped, or None, having changed nothing, when a group lists a
/// param twice (the caller then steps each occurrence in turn with [`step`]).
///
/// `grads`, when given, replaces `.grad`: a list or tuple with one array per
/// param of the groups in order (`step(grads=...)` when no param is listed
/// twice). Anything else (a None entry, another length or type) returns None
/// and leaves the checks and messages to the caller.
///
/// This is [`step`] with the batches read in Rust: the common `opt.step()` pays
/// no Python list building per param.
#[pyfunction]
#[pyo3(signature = (rule, groups, state, defaults=None, grad_scale=None, grads=None))]
fn step_groups<'py>(
    py: Python<'py>,
    rule: &str,
    groups: Bound<'py, PyList>,
    state: Bound<'py, PyDict>,
    defaults: Option<Bound<'py, PyDict>>,
    grad_scale: Option<Bound<'py, PyAny>>,
    grads: Option<Bound<'py, PyAny>>,
) -> PyResult<Option<usize>> {
    catch_panics(py, || {
        let grad_scale =
            grad_scale.map(|scale| finite_real("grad_scale", &scale)).transpose().map_err(|e| e.into_pyerr(py))?;
        let grads: Option<Vec<Bound<'py, PyAny>>> = match grads {
            None => None,
            Some(grads) => {
                let items: Vec<Bound<'py, PyAny>> = if let Ok(list) = grads.cast::<PyList>() {
                    list.iter().collect()
                } else if let Ok(tuple) = grads.cast::<PyTuple>() {
                    tuple.iter().collect()
                } else {
                    return Ok(None);
                };
                if items.iter().any(|g| g.is_none()) {
                    return Ok(None);
                }
                Some(items)
            }
        };
        with_rule!(rule, R => run_groups::<R>(py, &groups, &state, defaults.as_ref(), grad_scale, grads.as_deref()),
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
    keys: RuleKeys<'py>,
    /// The number of params the batch was made for (at most this many tensors).
    params: usize,
    float32: Vec<Prepared<'py, f32>>,
    float64: Vec<Prepared<'py, f64>>,
    /// Identities of the params without elements, which the alias check does
    /// not see: a group that lists one twice is found by comparing them.
    empty_params: Vec<usize>,
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
    run_prepared(py, prepared, state, grad_scale)
}

fn run_groups<'py, R: RuleBinding>(
    py: Python<'py>,
    groups: &Bound<'py, PyList>,
    state: &Bound<'py, PyDict>,
    defaults: Option<&Bound<'py, PyDict>>,
    grad_scale: Option<f64>,
    grads: Option<&[Bound<'py, PyAny>]>,
) -> Result<Option<usize>, InputError> {
    let mut aliases = AliasCheck::with_capacity(0, 0);
    let mut prepared: Vec<PreparedBatch<'py, R>> = Vec::with_capacity(groups.len());
    let mut stepped = 0;
    // Where the current group's entries start in `grads`.
    let mut offset = 0;
    for (group_index, group) in groups.iter().enumerate() {
        let Ok(group) = group.cast_into::<PyDict>() else { return Ok(None) };
        let batch = prepare_group_params::<R>(group_index, &group, state, defaults, grads, &mut offset, &mut aliases)?;
        let Some(batch) = batch else { return Ok(None) };
        stepped += batch.float32.len() + batch.float64.len();
        prepared.push(batch);
    }
    if grads.is_some_and(|grads| grads.len() != offset) {
        return Ok(None);
    }
    if let Err(error) = aliases.verify() {
        // A param listed twice shares memory with itself: not an error, but
        // torch's "update it twice", which the caller does occurrence by occurrence.
        if let InputError::Alias(_) = error {
            if prepared.iter().any(|batch| batch.lists_a_param_twice()) {
                return Ok(None);
            }
        }
        return Err(error);
    }
    run_prepared(py, prepared, state, grad_scale)?;
    Ok(Some(stepped))
}

/// Runs the kernels of validated batches and stores the new state.
fn run_prepared<'py, R: RuleBinding>(
    py: Python<'py>,
    mut prepared: Vec<PreparedBatch<'py, R>>,
    state: &Bound<'py, PyDict>,
    grad_scale: Option<f64>,
) -> Result<(), InputError> {
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
        for tensor in batch.float32 {
            commit::<R, f32>(py, tensor, &batch.keys, state)?;
        }
        for tensor in batch.float64 {
            commit::<R, f64>(py, tensor, &batch.keys, state)?;
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
    let batch = Batch::read(batch)?;
    let rule = R::from_group(&GroupReader { dict: &batch.group, index: batch.group_index, defaults })?;
    let mut prepared = PreparedBatch::new(batch.group.py(), rule, batch.len());
    for i in 0..batch.len() {
        let item = batch.item(i)?;
        prepared.add(item.param, &item.grad, &item.entry, Site::in_group(batch.group_index, item.position), aliases)?;
    }
    Ok(prepared)
}

/// A param group's batch read from the group itself: every param with a
/// `.grad`, its gradient and its state entry. None when the group's `params` is
/// not a list, or a param without memory (no elements), which the alias check
/// cannot see, is listed twice.
#[allow(clippy::too_many_arguments)]
fn prepare_group_params<'py, R: RuleBinding>(
    group_index: usize,
    group: &Bound<'py, PyDict>,
    state: &Bound<'py, PyDict>,
    defaults: Option<&Bound<'py, PyDict>>,
    grads: Option<&[Bound<'py, PyAny>]>,
    offset: &mut usize,
    aliases: &mut AliasCheck<'py>,
) -> Result<Option<PreparedBatch<'py, R>>, InputError> {
    let py = group.py();
    // Anything but a list (the optimizer keeps lists) goes the general way.
    let Ok(Some(params)) = group.get_item(intern!(py, "params")) else { return Ok(None) };
    let Ok(params) = params.cast_into::<PyList>() else { return Ok(None) };
    let start = *offset;
    *offset += params.len();
    let grads = match grads {
        Some(grads) if grads.len() < *offset => return Ok(None),
        Some(grads) => Some(&grads[start..*offset]),
        None => None,
    };
    let rule = R::from_group(&GroupReader { dict: group, index: group_index, defaults })?;
    let mut prepared = PreparedBatch::new(py, rule, params.len());
    for (position, key) in params.iter().enumerate() {
        let site = Site::in_group(group_index, position);
        let grad = match grads {
            Some(grads) => grads[position].clone(),
            None => key
                .getattr(intern!(py, "grad"))
                .map_err(|_| InputError::DType(format!("{site} is not a rustoptim.Parameter (it has no .grad)")))?,
        };
        if grad.is_none() {
            continue;
        }
        // `dict.get`: the optimizer's `defaultdict` must not grow an entry here.
        let entry = state.get_item(&key).map_err(|e| InputError::Value(format!("state lookup of {site}: {e}")))?;
        let entry = entry.unwrap_or_else(|| py.None().into_bound(py));
        prepared.add(key, &grad, &entry, site, aliases)?;
    }
    if prepared.empty_params.len() > 1 && lists_a_key_twice(&prepared.empty_params) {
        return Ok(None);
    }
    Ok(Some(prepared))
}

/// Whether some object appears twice among `keys` (Python identity).
fn lists_a_key_twice(keys: &[usize]) -> bool {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|pair| pair[0] == pair[1])
}

/// The Python strings of a rule's state keys, made once per batch rather than
/// looked up for every param.
struct RuleKeys<'py> {
    scalars: Vec<Bound<'py, PyString>>,
    slots: Vec<Bound<'py, PyString>>,
}

impl<'py> RuleKeys<'py> {
    fn new<R: RuleBinding>(py: Python<'py>, rule: &R) -> Self {
        RuleKeys {
            scalars: R::SCALARS.iter().map(|&(name, _)| state_key(py, name)).collect(),
            slots: rule.slot_keys().iter().map(|&name| state_key(py, name)).collect(),
        }
    }
}

impl<'py, R: RuleBinding> PreparedBatch<'py, R> {
    /// An empty batch for a group of `params` params, most of which usually
    /// share one dtype: room for all of them in each list is made on its first
    /// push, so the lists of large structs are never copied while growing.
    fn new(py: Python<'py>, rule: R, params: usize) -> Self {
        let keys = RuleKeys::new(py, &rule);
        PreparedBatch { rule, keys, params, float32: Vec::new(), float64: Vec::new(), empty_params: Vec::new() }
    }

    /// Validates one param with its gradient and state entry (None: no state yet).
    fn add(
        &mut self,
        key: Bound<'py, PyAny>,
        grad: &Bound<'py, PyAny>,
        entry: &Bound<'py, PyAny>,
        site: Site,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<(), InputError> {
        let py = key.py();
        let identity = key.as_ptr() as usize;
        let data = key
            .getattr(intern!(py, "data"))
            .map_err(|_| InputError::DType(format!("{site} is not a rustoptim.Parameter (it has no .data)")))?;
        let len = match param_dtype(&data, site)? {
            DType::Float32 => {
                let tensor = prepare_tensor(&self.rule, &self.keys, key, &data, grad, entry, site, aliases)?;
                let len = tensor.param.len();
                if self.float32.capacity() == 0 {
                    self.float32.reserve_exact(self.params);
                }
                self.float32.push(tensor);
                len
            }
            DType::Float64 => {
                let tensor = prepare_tensor(&self.rule, &self.keys, key, &data, grad, entry, site, aliases)?;
                let len = tensor.param.len();
                if self.float64.capacity() == 0 {
                    self.float64.reserve_exact(self.params);
                }
                self.float64.push(tensor);
                len
            }
        };
        if len == 0 {
            self.empty_params.push(identity);
        }
        Ok(())
    }

    /// Whether a param object appears twice in the batch.
    fn lists_a_param_twice(&self) -> bool {
        let keys: Vec<usize> = self
            .float32
            .iter()
            .map(|t| t.key.as_ptr() as usize)
            .chain(self.float64.iter().map(|t| t.key.as_ptr() as usize))
            .collect();
        lists_a_key_twice(&keys)
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare_tensor<'py, R: RuleBinding, F: NumpyElement + crate::Element>(
    rule: &R,
    keys: &RuleKeys<'py>,
    key: Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    entry: &Bound<'py, PyAny>,
    site: Site,
    aliases: &mut AliasCheck<'py>,
) -> Result<Prepared<'py, F>, InputError> {
    let param = ParamArray::<F>::new(data, site, aliases)?;
    let grad = GradArray::<F>::new(grad, &param, aliases)?;
    let entry = state_entry(entry, site)?;
    // An empty dict (made by reading `opt.state[p]`) is filled like a new entry.
    let existing = entry.as_ref().filter(|d| !d.is_empty());

    let mut scalars = [0.0; MAX_SCALARS];
    for (k, &(name, initial)) in R::SCALARS.iter().enumerate() {
        scalars[k] = match existing {
            None => initial,
            Some(dict) => scalar_at(dict, &keys.scalars[k], name, site)?,
        };
    }
    let mut slots: [Option<StateArray<'py, F>>; MAX_SLOTS] = Default::default();
    let mut created = Vec::new();
    let mut fresh_slots = 0u8;
    for (slot, &name) in rule.slot_keys().iter().enumerate() {
        let stored = match existing {
            Some(dict) => dict.get_item(&keys.slots[slot]).ok().flatten(),
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
    scalar_at(entry, &state_key(entry.py(), name), name, site)
}

/// A param's state entry as the optimizer passed it: None (no state yet) or a dict.
pub(super) fn state_entry<'py>(
    entry: &Bound<'py, PyAny>,
    site: Site,
) -> Result<Option<Bound<'py, PyDict>>, InputError> {
    if entry.is_none() {
        return Ok(None);
    }
    let dict = entry
        .cast::<PyDict>()
        .map_err(|_| InputError::Value(format!("the state of {site} must be a dict, got {}", type_name(entry))))?;
    Ok(Some(dict.clone()))
}

/// [`scalar`] with the key's Python string made by the caller.
fn scalar_at(entry: &Bound<'_, PyDict>, key: &Bound<'_, PyString>, name: &str, site: Site) -> Result<f64, InputError> {
    let value = entry.get_item(key).ok().flatten().ok_or_else(|| {
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
    keys: &RuleKeys<'py>,
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
    for (k, key) in keys.scalars.iter().enumerate() {
        entry.set_item(key, PyFloat::new(py, tensor.scalars[k])).map_err(set_failed)?;
    }
    for (slot, array) in tensor.created {
        entry.set_item(&keys.slots[slot], array).map_err(set_failed)?;
    }
    if is_new {
        state.set_item(tensor.key, entry).map_err(set_failed)?;
    }
    Ok(())
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
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
    m.add_function(wrap_pyfunction!(step_groups, m)?)?;
    m.add_function(wrap_pyfunction!(state_keys, m)?)
}
