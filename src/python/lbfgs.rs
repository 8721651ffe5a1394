//! Binding of the L-BFGS core: `LbfgsCore`, one per `rustoptim.LBFGS`, owning
//! the optimizer's numeric state. Python runs the step loop and calls the
//! closure; each call here moves data between the user's arrays (any shape and
//! layout, flattened in C order, torch's `view(-1)`) and the core's flat
//! vectors, then runs the core until it needs the next evaluation.
//!
//! Every array of a call is checked before anything is written: dtype, size,
//! writeability, overlaps, and a layout the core can address element by
//! element (aligned data, strides in whole elements). When a call fails, or
//! Python reports a failed closure through `abort`, the step ends and the
//! params are put back at the last accepted iterate. Every entry point runs
//! through `catch_panics`; sizes from users and files are allocated fallibly
//! (`MemoryError`).

use super::arrays::{Access, AliasCheck};
use super::errors::{InputError, catch_panics, optim_error};
use super::gil::with_kernel_lock;
use crate::element::Element;
use crate::error::OptimError;
use crate::lbfgs::memory::{max_history_size, try_zeroed};
use crate::lbfgs::{Lbfgs, LbfgsConfig, LineSearch, Request, SavedIteration, SavedState};
use numpy::ndarray::ArrayViewD;
use numpy::npyffi::{
    NPY_ARRAY_ALIGNED, NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_F_CONTIGUOUS, NPY_ARRAY_WRITEABLE,
    objects::_PyArray_GET_ITEM_DATA,
};
use numpy::{Element as NumpyElement, PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyType};

/// Above this many elements of work per call (parameters × history), the core
/// runs with the GIL released; below it, releasing costs more than it frees.
const DETACH_MIN_WORK: usize = 1 << 16;

enum Core {
    F32(Lbfgs<f32>),
    F64(Lbfgs<f64>),
}

/// Runs `$body` with `$opt` bound to the typed core (and `$t` to its element
/// type); the `ref` form borrows the core immutably.
macro_rules! with_core {
    (ref $self:expr, $opt:ident => $body:expr) => {
        match &$self.core {
            Core::F32($opt) => $body,
            Core::F64($opt) => $body,
        }
    };
    ($self:expr, $opt:ident, $t:ident => $body:expr) => {
        match &mut $self.core {
            Core::F32($opt) => {
                type $t = f32;
                $body
            }
            Core::F64($opt) => {
                type $t = f64;
                $body
            }
        }
    };
}

/// The numeric state of one L-BFGS optimizer and the machinery of its steps.
#[pyclass(module = "rustoptim._core", name = "LbfgsCore")]
pub struct LbfgsCore {
    core: Core,
}

fn state_error(py: Python<'_>, message: String) -> PyErr {
    match py
        .import("rustoptim.errors")
        .and_then(|m| m.getattr("StateDictError"))
        .and_then(|c| Ok(c.cast_into::<PyType>()?))
    {
        Ok(class) => PyErr::from_type(class, message),
        Err(import_error) => import_error,
    }
}

/// `object` as an array of `F`, or a `DTypeError` naming its role (and index).
fn typed<'py, F: NumpyElement>(
    object: &Bound<'py, PyAny>,
    role: &str,
    index: Option<usize>,
) -> Result<Bound<'py, PyArrayDyn<F>>, InputError> {
    let name = || match index {
        Some(i) => format!("{role} {i}"),
        None => role.to_string(),
    };
    let Ok(untyped) = object.cast::<PyUntypedArray>() else {
        let type_name = object.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        return Err(InputError::DType(format!("{} is a {type_name}, not a NumPy array", name())));
    };
    match untyped.cast::<PyArrayDyn<F>>() {
        Ok(array) => Ok(array.clone()),
        Err(_) => Err(InputError::DType(format!(
            "{} has dtype {}, expected {} (an LBFGS optimizer runs on one dtype)",
            name(),
            untyped.dtype(),
            F::get_dtype(object.py())
        ))),
    }
}

fn flags<F: NumpyElement>(array: &Bound<'_, PyArrayDyn<F>>) -> std::ffi::c_int {
    // SAFETY: reading the flags of a live array.
    unsafe { (*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags }
}

fn is_writeable<F: NumpyElement>(array: &Bound<'_, PyArrayDyn<F>>) -> bool {
    flags(array) & NPY_ARRAY_WRITEABLE != 0
}

/// Refuses an array whose elements cannot be read or written as `F` one by
/// one: data not aligned for `F`, or a stride that is not a whole number of
/// elements (a field of a packed structured array, `np.frombuffer` at an odd
/// offset). Reading such an array as `F` would be undefined behaviour, and
/// writing it would hit the wrong bytes.
/// `name` is only called to build the error message.
fn check_layout<F: NumpyElement>(
    array: &Bound<'_, PyArrayDyn<F>>,
    name: impl FnOnce() -> String,
) -> Result<(), InputError> {
    let item = std::mem::size_of::<F>() as isize;
    let flags = flags(array);
    let aligned = flags & NPY_ARRAY_ALIGNED != 0;
    // A contiguous array's strides are whole elements by definition (one test
    // of the flags for the usual case); a strided view's are checked.
    let whole = || {
        flags & (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_F_CONTIGUOUS) != 0
            || array.shape().iter().zip(array.strides()).all(|(&len, &stride)| len <= 1 || stride % item == 0)
    };
    if aligned && whole() {
        return Ok(());
    }
    Err(InputError::Layout(format!(
        "{} is not laid out in aligned {item}-byte elements (strides {:?} bytes{}), as happens with a field \
         of a packed structured array or np.frombuffer at an odd offset; pass an aligned copy instead, e.g. \
         np.ascontiguousarray(...) or .copy() (for a param, optimize the copy and write the result back)",
        name(),
        array.strides(),
        if aligned { "" } else { ", data not aligned" },
    )))
}

/// Copies `array` into `out` in C order.
fn gather<F: NumpyElement + Copy>(array: &Bound<'_, PyArrayDyn<F>>, out: &mut [F]) {
    with_kernel_lock(|| {
        // SAFETY: a read-only view of a live array, dropped before anything writes
        // it; no kernel of another call writes it meanwhile (they all hold the
        // kernel lock, held here).
        let view: ArrayViewD<'_, F> = unsafe { array.as_array() };
        match view.as_slice() {
            Some(values) => out.copy_from_slice(values),
            None => out.iter_mut().zip(view.iter()).for_each(|(o, &v)| *o = v),
        }
    })
}

/// Writes `values` into `array` in C order.
fn scatter<F: NumpyElement + Copy>(array: &Bound<'_, PyArrayDyn<F>>, values: &[F]) {
    with_kernel_lock(|| {
        // SAFETY: the params were checked writeable and free of overlaps in `begin`,
        // no other view of this array is alive, and no kernel of another call
        // writes it meanwhile (they all hold the kernel lock, held here).
        let mut view = unsafe { array.as_array_mut() };
        match view.as_slice_mut() {
            Some(out) => out.copy_from_slice(values),
            None => view.iter_mut().zip(values).for_each(|(o, &v)| *o = v),
        }
    })
}

/// The params as typed arrays, checked: dtype, writeable, no overlaps, `dim` elements in all.
fn checked_params<'py, F: NumpyElement>(
    params: &[Bound<'py, PyAny>],
    dim: usize,
) -> Result<Vec<Bound<'py, PyArrayDyn<F>>>, InputError> {
    let mut arrays = Vec::with_capacity(params.len());
    let mut aliases = AliasCheck::with_capacity(params.len(), 0);
    let mut total = 0usize;
    for (i, param) in params.iter().enumerate() {
        let array = typed::<F>(param, "param", Some(i))?;
        check_layout(&array, || format!("param {i}"))?;
        if !is_writeable(&array) {
            return Err(InputError::ReadOnly(format!("param {i} is read-only; rustoptim updates params in place")));
        }
        aliases.add(&array, Access::Write, "param", i);
        total += array.len();
        arrays.push(array);
    }
    if total != dim {
        return Err(InputError::Shape(format!(
            "the params have {total} elements in all, but this optimizer's state is for {dim}"
        )));
    }
    if params.len() > 1 {
        aliases.verify()?;
    }
    Ok(arrays)
}

/// The params `begin` was given, passed again: dtype, size and writeability
/// are re-checked (the closure may have changed a flag), overlaps are not.
fn same_params<'py, F: NumpyElement>(
    params: &[Bound<'py, PyAny>],
    dim: usize,
) -> Result<Vec<Bound<'py, PyArrayDyn<F>>>, InputError> {
    let mut arrays = Vec::with_capacity(params.len());
    let mut total = 0;
    for (i, param) in params.iter().enumerate() {
        let array = typed::<F>(param, "param", Some(i))?;
        check_layout(&array, || format!("param {i}"))?;
        if !is_writeable(&array) {
            return Err(InputError::ReadOnly(format!("param {i} became read-only during the step")));
        }
        total += array.len();
        arrays.push(array);
    }
    if total != dim {
        return Err(InputError::Shape(format!(
            "the params have {total} elements in all, but this optimizer's state is for {dim}"
        )));
    }
    Ok(arrays)
}

fn write_point<F: NumpyElement + Copy>(arrays: &[Bound<'_, PyArrayDyn<F>>], point: &[F]) {
    let mut offset = 0;
    for array in arrays {
        let len = array.len();
        scatter(array, &point[offset..offset + len]);
        offset += len;
    }
}

/// Copies the grads into `out` (None: zeros), after checking every one of them.
fn gather_grads<'py, F: NumpyElement + Copy + Element>(
    grads: &[Option<Bound<'py, PyAny>>],
    params: &[Bound<'py, PyArrayDyn<F>>],
    out: &mut [F],
) -> Result<(), InputError> {
    if grads.len() != params.len() {
        return Err(InputError::Value(format!(
            "the closure gave {} gradients, expected one per param ({})",
            grads.len(),
            params.len()
        )));
    }
    let mut typed_grads = Vec::with_capacity(grads.len());
    for (i, (grad, param)) in grads.iter().zip(params).enumerate() {
        let Some(grad) = grad else {
            typed_grads.push(None);
            continue;
        };
        let array = typed::<F>(grad, "the grad of param", Some(i))?;
        check_layout(&array, || format!("the grad of param {i}"))?;
        if array.shape() != param.shape() {
            return Err(InputError::Shape(format!(
                "the grad of param {i} has shape {:?}, but its param has shape {:?}",
                array.shape(),
                param.shape()
            )));
        }
        typed_grads.push(Some(array));
    }
    let mut offset = 0;
    for (grad, param) in typed_grads.iter().zip(params) {
        let len = param.len();
        let slot = &mut out[offset..offset + len];
        match grad {
            Some(array) => gather(array, slot),
            None => slot.fill(F::ZERO),
        }
        offset += len;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn parse_config(
    lr: f64,
    max_iter: usize,
    max_eval: usize,
    tolerance_grad: f64,
    tolerance_change: f64,
    history_size: usize,
    line_search_fn: Option<&str>,
    maximize: bool,
) -> Result<LbfgsConfig, InputError> {
    let line_search = match line_search_fn {
        None => LineSearch::Fixed,
        Some("strong_wolfe") => LineSearch::StrongWolfe,
        Some(other) => {
            return Err(InputError::Value(format!(
                "only 'strong_wolfe' is supported as line_search_fn, got {other:?}"
            )));
        }
    };
    Ok(LbfgsConfig { lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search, maximize })
}

impl LbfgsCore {
    /// Elements of work in one `resume`: a pass over the history and a few vectors.
    fn work(&self) -> usize {
        with_core!(ref self, opt => opt.dim().saturating_mul(opt.history().len() + 4))
    }
}

/// Ends the step and puts the params back at the accepted iterate.
fn abandon<F: NumpyElement + Copy + Element>(opt: &mut Lbfgs<F>, params: &[Bound<'_, PyArrayDyn<F>>]) {
    opt.abort();
    if !opt.params_hold_point() {
        write_point(params, opt.point());
    }
}

/// Ends the step and puts back the accepted iterate into every param that
/// can still take it (for when the params themselves failed a check).
fn abandon_loosely<F: NumpyElement + Copy + Element>(opt: &mut Lbfgs<F>, params: &[Bound<'_, PyAny>]) {
    opt.abort();
    if opt.params_hold_point() {
        return;
    }
    let point = opt.point();
    let mut offset = 0;
    for param in params {
        let Ok(array) = typed::<F>(param, "param", None) else {
            return;
        };
        let len = array.len();
        if offset + len > point.len() {
            return;
        }
        if is_writeable(&array) && check_layout(&array, String::new).is_ok() {
            scatter(&array, &point[offset..offset + len]);
        }
        offset += len;
    }
}

#[pymethods]
impl LbfgsCore {
    /// A fresh state for `dim` parameters of `dtype` ("float32" or "float64")
    /// that keeps up to `history_size` curvature pairs. Allocates the iterate's
    /// vectors (`MemoryError` if that fails); the history grows as pairs arrive.
    #[new]
    fn new(py: Python<'_>, dtype: &str, dim: usize, history_size: usize) -> PyResult<Self> {
        catch_panics(py, || {
            let core = match dtype {
                "float32" => Lbfgs::new(dim, history_size).map(Core::F32),
                "float64" => Lbfgs::new(dim, history_size).map(Core::F64),
                other => {
                    return Err(
                        InputError::DType(format!("LBFGS runs on float32 or float64, not {other}")).into_pyerr(py)
                    );
                }
            };
            core.map(|core| LbfgsCore { core }).map_err(|e| optim_error(py, e))
        })
    }

    /// The largest `history_size` for `dim` parameters of `dtype`: a full
    /// history of more pairs could never be addressed (`isize::MAX` bytes).
    #[staticmethod]
    fn max_history_size(py: Python<'_>, dtype: &str, dim: usize) -> PyResult<usize> {
        catch_panics(py, || match dtype {
            "float32" => Ok(max_history_size::<f32>(dim)),
            "float64" => Ok(max_history_size::<f64>(dim)),
            other => Err(InputError::DType(format!("LBFGS runs on float32 or float64, not {other}")).into_pyerr(py)),
        })
    }

    #[getter]
    fn dtype(&self, py: Python<'_>) -> PyResult<&'static str> {
        catch_panics(py, || {
            Ok(match &self.core {
                Core::F32(_) => "float32",
                Core::F64(_) => "float64",
            })
        })
    }

    #[getter]
    fn dim(&self, py: Python<'_>) -> PyResult<usize> {
        catch_panics(py, || Ok(with_core!(ref self, opt => opt.dim())))
    }

    #[getter]
    fn func_evals(&self, py: Python<'_>) -> PyResult<u64> {
        catch_panics(py, || Ok(with_core!(ref self, opt => opt.func_evals())))
    }

    #[getter]
    fn n_iter(&self, py: Python<'_>) -> PyResult<u64> {
        catch_panics(py, || Ok(with_core!(ref self, opt => opt.n_iter())))
    }

    /// Whether a step is in progress (between `begin` and the call that ends it).
    #[getter]
    fn in_step(&self, py: Python<'_>) -> PyResult<bool> {
        catch_panics(py, || Ok(with_core!(ref self, opt => opt.in_step())))
    }

    /// Starts a step at the current values of `params`; the caller evaluates
    /// the closure next and passes the result to `resume`.
    #[pyo3(signature = (params, *, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn, maximize=false))]
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        py: Python<'_>,
        params: Vec<Bound<'_, PyAny>>,
        lr: f64,
        max_iter: usize,
        max_eval: usize,
        tolerance_grad: f64,
        tolerance_change: f64,
        history_size: usize,
        line_search_fn: Option<&str>,
        maximize: bool,
    ) -> PyResult<()> {
        catch_panics(py, || {
            let config = parse_config(
                lr,
                max_iter,
                max_eval,
                tolerance_grad,
                tolerance_change,
                history_size,
                line_search_fn,
                maximize,
            )
            .map_err(|e| e.into_pyerr(py))?;
            with_core!(self, opt, T => {
                let arrays = checked_params::<T>(&params, opt.dim()).map_err(|e| e.into_pyerr(py))?;
                if opt.in_step() {
                    return Err(InputError::Value("an LBFGS step is already in progress".into()).into_pyerr(py));
                }
                let mut offset = 0;
                for array in &arrays {
                    let len = array.len();
                    gather(array, &mut opt.iterate_mut()[offset..offset + len]);
                    offset += len;
                }
                opt.begin(&config).map_err(|e| optim_error(py, e))
            })
        })
    }

    /// Continues the step with the closure's `loss` and `grads` (one per param,
    /// None for a zero gradient). Writes the next point to evaluate into
    /// `params` and returns False, or ends the step (params at the accepted
    /// iterate) and returns True. On error the step is abandoned as by `abort`.
    fn resume(
        &mut self,
        py: Python<'_>,
        loss: f64,
        grads: Vec<Option<Bound<'_, PyAny>>>,
        params: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        catch_panics(py, || {
            let detach = self.work() >= DETACH_MIN_WORK;
            with_core!(self, opt, T => {
                if !opt.in_step() {
                    return Err(InputError::Value("resume without a step in progress".into()).into_pyerr(py));
                }
                let arrays = match same_params::<T>(&params, opt.dim()) {
                    Ok(arrays) => arrays,
                    Err(e) => {
                        abandon_loosely(opt, &params);
                        return Err(e.into_pyerr(py));
                    }
                };
                if let Err(e) = gather_grads(&grads, &arrays, opt.gradient_mut()) {
                    abandon(opt, &arrays);
                    return Err(e.into_pyerr(py));
                }
                let request = if detach { py.detach(|| opt.resume(loss)) } else { opt.resume(loss) };
                match request {
                    Ok(Request::Evaluate) => {
                        write_point(&arrays, opt.point());
                        Ok(false)
                    }
                    Ok(Request::Done) => {
                        if !opt.params_hold_point() {
                            write_point(&arrays, opt.point());
                        }
                        Ok(true)
                    }
                    Err(e) => {
                        abandon(opt, &arrays);
                        Err(optim_error(py, e))
                    }
                }
            })
        })
    }

    /// Ends the step in progress after a failed closure: the params go back to
    /// the last accepted iterate. Does nothing between steps.
    fn abort(&mut self, py: Python<'_>, params: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        catch_panics(py, || {
            match &mut self.core {
                Core::F32(opt) if opt.in_step() => abandon_loosely(opt, &params),
                Core::F64(opt) if opt.in_step() => abandon_loosely(opt, &params),
                _ => {}
            }
            Ok(())
        })
    }

    /// A copy of the state in torch's layout: `func_evals`, `n_iter` and, once
    /// an iteration has run, `d`, `t`, `old_dirs`, `old_stps`, `ro`, `H_diag`,
    /// `prev_flat_grad`, `prev_loss` and (after the first quasi-Newton
    /// iteration) `al`, the `α_i` that have been set (torch pads its list with
    /// None up to `history_size`).
    fn export_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        catch_panics(py, || with_core!(ref self, opt => export(py, opt)))
    }

    /// Replaces the state with `state` (the layout of `export_state`; `d`,
    /// `prev_flat_grad` and the history vectors are 1-D arrays of this core's
    /// dtype and length). Checks everything first: raises `StateDictError`
    /// (`MemoryError` if the state cannot be allocated) and changes nothing if
    /// anything is wrong.
    fn import_state(&mut self, py: Python<'_>, state: &Bound<'_, PyDict>, history_size: usize) -> PyResult<()> {
        catch_panics(py, || {
            with_core!(self, opt, T => {
                let saved = parse_state::<T>(py, state, opt.dim())?;
                opt.restore(saved, history_size).map_err(|e| load_error(py, e))
            })
        })
    }
}

/// A failed load: `MemoryError` for a failed allocation, else `StateDictError`.
fn load_error(py: Python<'_>, error: OptimError) -> PyErr {
    match error {
        OptimError::OutOfMemory { .. } => optim_error(py, error),
        other => state_error(py, other.to_string()),
    }
}

/// A new 1-D array holding `values`. NumPy allocates it, so running out of
/// memory is NumPy's `MemoryError` (rust-numpy's constructors panic instead).
fn new_vector<'py, F: NumpyElement + Copy>(
    numpy: &Bound<'py, PyModule>,
    values: &[F],
) -> PyResult<Bound<'py, PyArray1<F>>> {
    let py = numpy.py();
    let array = numpy.call_method1("empty", (values.len(), F::get_dtype(py)))?.cast_into::<PyArray1<F>>()?;
    // SAFETY: a new contiguous array that nothing else references yet.
    unsafe { array.as_slice_mut() }.expect("a new array is contiguous").copy_from_slice(values);
    Ok(array)
}

fn export<'py, F: NumpyElement + Element>(py: Python<'py>, opt: &Lbfgs<F>) -> PyResult<Bound<'py, PyDict>> {
    let state = PyDict::new(py);
    state.set_item("func_evals", opt.func_evals())?;
    state.set_item("n_iter", opt.n_iter())?;
    let Some(scalars) = opt.scalars() else {
        return Ok(state);
    };
    let numpy = py.import("numpy")?;
    let history = opt.history();
    let k = history.len();
    state.set_item("d", new_vector(&numpy, opt.direction())?)?;
    state.set_item("t", scalars.t)?;
    let dirs = PyList::empty(py);
    let steps = PyList::empty(py);
    let rho = PyList::empty(py);
    for i in 0..k {
        dirs.append(new_vector(&numpy, history.dir(i))?)?;
        steps.append(new_vector(&numpy, history.step(i))?)?;
        rho.append(history.rho(i).to_f64())?;
    }
    state.set_item("old_dirs", dirs)?;
    state.set_item("old_stps", steps)?;
    state.set_item("ro", rho)?;
    state.set_item("H_diag", scalars.h_diag.to_f64())?;
    state.set_item("prev_flat_grad", new_vector(&numpy, opt.prev_flat_grad())?)?;
    state.set_item("prev_loss", scalars.prev_loss)?;
    if let Some(alpha) = opt.alpha() {
        // Only the entries that exist: torch's None padding up to history_size
        // would make the list as long as the setting, however large.
        let al = PyList::empty(py);
        for value in alpha {
            al.append(value.to_f64())?;
        }
        state.set_item("al", al)?;
    }
    Ok(state)
}

fn parse_state<F: NumpyElement + Element>(
    py: Python<'_>,
    state: &Bound<'_, PyDict>,
    dim: usize,
) -> PyResult<SavedState<F>> {
    let fail = |message: String| state_error(py, message);
    let item = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> { state.get_item(key) };
    let required = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        item(key)?.ok_or_else(|| fail(format!("missing state key {key:?}")))
    };
    let count = |key: &str| -> PyResult<u64> {
        required(key)?.extract::<u64>().map_err(|_| fail(format!("{key:?} must be a non-negative int")))
    };
    let number = |object: &Bound<'_, PyAny>, what: &str| -> PyResult<f64> {
        object.extract::<f64>().map_err(|_| fail(format!("{what} must be a number")))
    };
    let vector = |object: &Bound<'_, PyAny>, what: &str| -> PyResult<Vec<F>> {
        let array = typed::<F>(object, what, None).map_err(|e| fail(format!("{e:?}")))?;
        if array.ndim() != 1 || array.len() != dim {
            return Err(fail(format!("{what} must be a 1-D array of {dim} elements, got shape {:?}", array.shape())));
        }
        check_layout(&array, || what.to_string()).map_err(|e| e.into_pyerr(py))?;
        let mut values = try_zeroed(dim, "an L-BFGS state vector").map_err(|e| optim_error(py, e))?;
        gather(&array, &mut values);
        Ok(values)
    };
    let list = |key: &str| -> PyResult<Vec<Bound<'_, PyAny>>> {
        let object = required(key)?;
        let list = object.cast::<PyList>().map_err(|_| fail(format!("{key:?} must be a list")))?;
        Ok(list.iter().collect())
    };

    let func_evals = count("func_evals")?;
    let n_iter = count("n_iter")?;
    if item("d")?.is_none() {
        return Ok(SavedState { func_evals, n_iter, iterated: None });
    }
    let dirs = list("old_dirs")?;
    let steps = list("old_stps")?;
    let rho = list("ro")?;
    if dirs.len() != steps.len() || dirs.len() != rho.len() {
        return Err(fail(format!(
            "old_dirs, old_stps and ro must have the same length, got {}, {} and {}",
            dirs.len(),
            steps.len(),
            rho.len()
        )));
    }
    let mut history = Vec::with_capacity(dirs.len());
    for (i, ((y, s), r)) in dirs.iter().zip(&steps).zip(&rho).enumerate() {
        history.push((
            vector(y, &format!("old_dirs[{i}]"))?,
            vector(s, &format!("old_stps[{i}]"))?,
            F::from_f64(number(r, &format!("ro[{i}]"))?),
        ));
    }
    let alpha = match item("al")? {
        None => None,
        Some(al) => {
            let al = al.cast::<PyList>().map_err(|_| fail("\"al\" must be a list".to_string()))?;
            let mut values = Vec::with_capacity(al.len());
            for (i, entry) in al.iter().enumerate() {
                if entry.is_none() {
                    break;
                }
                values.push(F::from_f64(number(&entry, &format!("al[{i}]"))?));
            }
            Some(values)
        }
    };
    Ok(SavedState {
        func_evals,
        n_iter,
        iterated: Some(SavedIteration {
            d: vector(&required("d")?, "d")?,
            t: number(&required("t")?, "t")?,
            h_diag: F::from_f64(number(&required("H_diag")?, "H_diag")?),
            prev_flat_grad: vector(&required("prev_flat_grad")?, "prev_flat_grad")?,
            prev_loss: number(&required("prev_loss")?, "prev_loss")?,
            history,
            alpha,
        }),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LbfgsCore>()?;
    Ok(())
}
