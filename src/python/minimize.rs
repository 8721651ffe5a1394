//! Binding of the L-BFGS-B core (`rustoptim.minimize`): one call runs a whole
//! minimization. The loop of `crate::lbfgsb::run` calls the user's objective
//! (and gradient, or finite differences of the objective) from Rust with the
//! GIL held, so everything between two calls of the objective is Rust.
//!
//! `python/rustoptim/minimize.py` parses and checks the arguments; this layer
//! checks them again where the core relies on them (bounds, sizes), converts
//! what the objective returns and reports the run as a dict.

use super::errors::catch_panics;
use super::gil::with_kernel_lock;
use crate::lbfgsb::finite_diff::{StepRule, forward_steps};
use crate::lbfgsb::{Bounds, Config, Lbfgsb, LbfgsbError, Limits, LineSearchFailure, StopReason, Termination, run};
use numpy::{
    AllowTypeChange, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayLikeDyn, PyArrayMethods, PyReadonlyArray1,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyTuple, PyType};

/// An exception of class `name` from `rustoptim.errors`.
fn rustoptim_error(py: Python<'_>, name: &str, message: String) -> PyErr {
    match py.import("rustoptim.errors").and_then(|m| m.getattr(name)).and_then(|c| Ok(c.cast_into::<PyType>()?)) {
        Ok(class) => PyErr::from_type(class, message),
        Err(import_error) => import_error,
    }
}

impl LbfgsbError {
    fn into_pyerr(self, py: Python<'_>) -> PyErr {
        let message = self.to_string();
        match self {
            LbfgsbError::LengthMismatch { .. } => rustoptim_error(py, "ShapeError", message),
            LbfgsbError::NanBound { .. } | LbfgsbError::EmptyBox { .. } => rustoptim_error(py, "BoundsError", message),
            LbfgsbError::NonFiniteStart { .. } => rustoptim_error(py, "NonFiniteError", message),
            LbfgsbError::InvalidSetting(_) => rustoptim_error(py, "OptionError", message),
            LbfgsbError::Allocation { .. } => PyMemoryError::new_err(message),
        }
    }
}

/// The error type of a run: an exception raised by (or about) user code, or
/// a core error (converted when the run returns).
enum RunError {
    Python(PyErr),
    Core(LbfgsbError),
}

impl From<LbfgsbError> for RunError {
    fn from(error: LbfgsbError) -> Self {
        RunError::Core(error)
    }
}

impl From<PyErr> for RunError {
    fn from(error: PyErr) -> Self {
        RunError::Python(error)
    }
}

/// How the gradient is obtained.
enum Gradient<'py> {
    /// `fun` returns `(f, g)` (`jac=True`).
    WithValue,
    /// A separate callable `jac(x, *args)`.
    Callable(Bound<'py, PyAny>),
    /// Forward differences of `fun` with scipy's step rule.
    Differences(DifferenceSteps),
}

enum DifferenceSteps {
    /// `jac=None`: absolute steps (`eps`, one value or one per variable).
    Absolute(Vec<f64>),
    /// `jac='2-point'`: relative steps (`finite_diff_rel_step`, or the default).
    Relative(Option<Vec<f64>>),
}

impl DifferenceSteps {
    fn rule(&self) -> StepRule<'_> {
        match self {
            DifferenceSteps::Absolute(steps) => StepRule::Absolute(steps),
            DifferenceSteps::Relative(rel) => StepRule::Relative(rel.as_deref()),
        }
    }
}

/// The arrays handed to the user's functions as `x`.
///
/// scipy hands a fresh copy of the point at every call: the function may keep
/// or modify it. An array that nothing but this binding references any more
/// (no name, container, view or buffer export kept by the user: its reference
/// count is 1) cannot be told apart from a fresh copy once refilled, so it is
/// refilled instead of allocating and freeing `n` floats at every call.
struct PointArrays<'py> {
    /// The array handed to the last call.
    last: Option<Bound<'py, PyArray1<f64>>>,
}

impl<'py> PointArrays<'py> {
    /// An array holding a copy of `x` that no one else references.
    fn copy_of(&mut self, py: Python<'py>, x: &[f64]) -> Bound<'py, PyArray1<f64>> {
        if let Some(array) = self.last.take().and_then(|last| reusable(last, x.len())) {
            // SAFETY: `reusable` checked that only `array` (this binding)
            // references it and that it is a writeable, contiguous float64
            // vector of x's length; the GIL is held and no other Rust borrow
            // of its data exists.
            if let Ok(data) = unsafe { array.as_slice_mut() } {
                data.copy_from_slice(x);
                self.last = Some(array.clone());
                return array;
            }
        }
        let array = PyArray1::from_slice(py, x);
        self.last = Some(array.clone());
        array
    }
}

/// `array` if this binding holds its only reference (no weak reference
/// either) and it is still (the
/// function may have changed it) a writeable, C-contiguous float64 vector of
/// `n` elements that owns its data.
fn reusable<'py>(array: Bound<'py, PyArray1<f64>>, n: usize) -> Option<Bound<'py, PyArray1<f64>>> {
    use numpy::npyffi::{
        NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_OWNDATA, NPY_ARRAY_WRITEABLE, objects::_PyArray_GET_ITEM_DATA,
    };
    // SAFETY: reads of a live object's reference count and array header under the GIL.
    let (count, flags, dims, base, weak) = unsafe {
        let header = _PyArray_GET_ITEM_DATA(array.as_array_ptr());
        let fields = &*header;
        (pyo3::ffi::Py_REFCNT(array.as_ptr()), fields.flags, fields.nd, fields.base, fields.weakreflist)
    };
    let required = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_OWNDATA | NPY_ARRAY_WRITEABLE;
    let still_a_vector = array.as_any().cast::<PyArray1<f64>>().is_ok() && dims == 1 && array.len() == n;
    // A weak reference does not count: an array someone holds one to is not reused.
    let unshared = count == 1 && base.is_null() && weak.is_null();
    (unshared && flags & required == required && still_a_vector).then_some(array)
}

/// The user's functions and what the loop needs to call them.
struct Problem<'py> {
    fun: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    gradient: Gradient<'py>,
    points: PointArrays<'py>,
    /// Counters in scipy's sense: objective calls (finite differences
    /// included) and gradient computations.
    nfev: u64,
    njev: u64,
    /// For finite differences: the bounds (steps stay inside them), the step
    /// of each variable, a moving copy of x.
    fd_bounds: Option<Bounds>,
    steps: Vec<f64>,
    shifted: Vec<f64>,
}

impl<'py> Problem<'py> {
    /// `callable(x, *args)` with a copy of `x` that only the callable sees
    /// (scipy's convention: the user may keep or modify the array).
    fn call(&mut self, callable: &Bound<'py, PyAny>, x: &[f64]) -> PyResult<Bound<'py, PyAny>> {
        let py = callable.py();
        let array = self.points.copy_of(py, x);
        if self.args.is_empty() {
            callable.call1((array,))
        } else {
            let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(self.args.len() + 1);
            items.push(array.into_any());
            items.extend(self.args.iter());
            callable.call1(PyTuple::new(py, items)?)
        }
    }

    /// `f(x)` as a float.
    fn value(&mut self, x: &[f64]) -> PyResult<f64> {
        let result = self.call(&self.fun.clone(), x)?;
        self.nfev += 1;
        scalar(&result, "the objective")
    }

    /// Evaluates `f` and `∇f` at `x` (gradient into `g`); returns `f` and the
    /// objective calls it took.
    fn evaluate(&mut self, x: &[f64], g: &mut [f64]) -> PyResult<(f64, u64)> {
        let before = self.nfev;
        let f = match &self.gradient {
            Gradient::WithValue => {
                let result = self.call(&self.fun.clone(), x)?;
                self.nfev += 1;
                let (value, gradient) = split_pair(&result)?;
                let f = scalar(&value, "the objective")?;
                read_gradient(&gradient, g, "the gradient returned by fun (jac=True)")?;
                f
            }
            Gradient::Callable(jac) => {
                let jac = jac.clone();
                let f = self.value(x)?;
                let gradient = self.call(&jac, x)?;
                read_gradient(&gradient, g, "the gradient returned by jac")?;
                f
            }
            Gradient::Differences(_) => {
                let f = self.value(x)?;
                self.differences(x, f, g)?;
                f
            }
        };
        self.njev += 1;
        Ok((f, self.nfev - before))
    }

    /// Forward differences `g_i = (f(x + h_i·e_i) − f(x)) / h_i`. Skipped
    /// (NaN) where `f(x)` is not finite: the core then shortens the step
    /// without spending `n` more evaluations. Fixed variables get 0.
    fn differences(&mut self, x: &[f64], f: f64, g: &mut [f64]) -> PyResult<()> {
        if !f.is_finite() {
            g.fill(f64::NAN);
            return Ok(());
        }
        let (Gradient::Differences(rule), Some(bounds)) = (&self.gradient, &self.fd_bounds) else {
            unreachable!("finite differences are set up with their bounds")
        };
        forward_steps(x, bounds, rule.rule(), &mut self.steps);
        self.shifted.copy_from_slice(x);
        for i in 0..x.len() {
            let h = self.steps[i];
            if h == 0.0 {
                g[i] = 0.0;
                continue;
            }
            self.shifted[i] = x[i] + h;
            let shifted = std::mem::take(&mut self.shifted);
            let value = self.value(&shifted);
            self.shifted = shifted;
            let f_shifted = value?;
            g[i] = (f_shifted - f) / (self.shifted[i] - x[i]);
            self.shifted[i] = x[i];
        }
        Ok(())
    }
}

/// `(f, g)` from what `fun` returned with `jac=True` (a tuple or any pair).
fn split_pair<'py>(result: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    if let Ok(tuple) = result.cast::<PyTuple>()
        && tuple.len() == 2
    {
        return Ok((tuple.get_item(0)?, tuple.get_item(1)?));
    }
    let py = result.py();
    let bad = || {
        let type_name = result.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        rustoptim_error(
            py,
            "ShapeError",
            format!("with jac=True, fun must return a pair (f, g); it returned a {type_name}"),
        )
    };
    match result.len() {
        Ok(2) => Ok((result.get_item(0).map_err(|_| bad())?, result.get_item(1).map_err(|_| bad())?)),
        _ => Err(bad()),
    }
}

/// A Python number (or a one-element array, as scipy accepts) as `f64`.
fn scalar(value: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    if let Ok(float) = value.cast::<PyFloat>() {
        return Ok(float.value());
    }
    let py = value.py();
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        if array.len() != 1 {
            return Err(rustoptim_error(
                py,
                "ShapeError",
                format!("{what} must return a scalar; it returned an array of shape {}", shape_text(array.shape())),
            ));
        }
        return scalar(&value.call_method0("item")?, what);
    }
    value.extract::<f64>().map_err(|_| {
        let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        rustoptim_error(py, "DTypeError", format!("{what} must return a real number; it returned a {type_name}"))
    })
}

/// A shape as Python prints it: `(3,)`, `(2, 1)`.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Copies a gradient (any array-like of `out.len()` numbers, 1-D) into `out`.
fn read_gradient(value: &Bound<'_, PyAny>, out: &mut [f64], what: &str) -> PyResult<()> {
    let py = value.py();
    let n = out.len();
    let shape_error = |shape: &[usize]| {
        rustoptim_error(py, "ShapeError", format!("{what} has shape {}, expected ({n},) like x0", shape_text(shape)))
    };
    // Fast path: a float64 vector.
    if let Ok(array) = value.cast::<PyArray1<f64>>() {
        if array.len() != n {
            return Err(shape_error(array.shape()));
        }
        // SAFETY: a read of a live array under the GIL; no Python code runs, this
        // call holds no mutable view of it, and no kernel of another call writes it
        // during the copy (they all hold the kernel lock, held here).
        let copied = with_kernel_lock(|| match unsafe { array.as_slice() } {
            Ok(slice) => {
                out.copy_from_slice(slice);
                true
            }
            Err(_) => false,
        });
        if copied {
            return Ok(());
        }
    }
    if let Ok(array) = value.cast::<PyUntypedArray>()
        && array.dtype().kind() == b'c'
    {
        return Err(rustoptim_error(
            py,
            "DTypeError",
            format!("{what} is complex ({}); it must be real", array.dtype()),
        ));
    }
    let array: PyArrayLikeDyn<'_, f64, AllowTypeChange> = value.extract().map_err(|_| {
        let type_name = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        rustoptim_error(py, "DTypeError", format!("{what} is a {type_name}, not an array of numbers"))
    })?;
    let shape = array.shape().to_vec();
    let fits = (shape.len() == 1 && shape[0] == n) || (shape.is_empty() && n == 1);
    if !fits {
        return Err(shape_error(&shape));
    }
    for (o, v) in out.iter_mut().zip(array.as_array().iter()) {
        *o = *v;
    }
    Ok(())
}

/// Runs L-BFGS-B; see `rustoptim.minimize` for the arguments and the result.
///
/// `gradient` is `"fun"` (`jac=True`), `"jac"` (callable `jac`), `"absolute"`
/// (finite differences with absolute steps `fd_steps`) or `"relative"`
/// (relative steps `fd_steps`, or scipy's default when None).
#[pyfunction]
#[pyo3(signature = (
    fun, x0, lower, upper, args, gradient, jac, fd_steps, callback,
    maxcor, ftol, gtol, maxiter, maxfun, maxls
))]
#[allow(clippy::too_many_arguments)]
fn lbfgsb_minimize<'py>(
    py: Python<'py>,
    fun: Bound<'py, PyAny>,
    x0: PyReadonlyArray1<'py, f64>,
    lower: PyReadonlyArray1<'py, f64>,
    upper: PyReadonlyArray1<'py, f64>,
    args: Bound<'py, PyTuple>,
    gradient: &str,
    jac: Option<Bound<'py, PyAny>>,
    fd_steps: Option<PyReadonlyArray1<'py, f64>>,
    callback: Option<Bound<'py, PyAny>>,
    maxcor: usize,
    ftol: f64,
    gtol: f64,
    maxiter: usize,
    maxfun: u64,
    maxls: usize,
) -> PyResult<Bound<'py, PyDict>> {
    catch_panics(py, || {
        let x0 = x0.as_slice()?.to_vec();
        let n = x0.len();
        let fd_steps = fd_steps.map(|s| s.as_slice().map(<[f64]>::to_vec)).transpose()?;
        if let Some(steps) = &fd_steps
            && steps.len() != 1
            && steps.len() != n
        {
            return Err(rustoptim_error(
                py,
                "ShapeError",
                format!("the finite-difference steps have {} entries, expected 1 or {n}", steps.len()),
            ));
        }
        let gradient = match (gradient, jac) {
            ("fun", _) => Gradient::WithValue,
            ("jac", Some(jac)) => Gradient::Callable(jac),
            ("absolute", _) => Gradient::Differences(DifferenceSteps::Absolute(
                fd_steps.ok_or_else(|| PyValueError::new_err("absolute finite-difference steps are required"))?,
            )),
            ("relative", _) => Gradient::Differences(DifferenceSteps::Relative(fd_steps)),
            (other, _) => return Err(PyValueError::new_err(format!("unknown gradient mode {other:?}"))),
        };
        let bounds =
            Bounds::new(lower.as_slice()?.to_vec(), upper.as_slice()?.to_vec()).map_err(|e| e.into_pyerr(py))?;
        if bounds.len() != n {
            return Err(LbfgsbError::LengthMismatch { what: "bounds", expected: n, got: bounds.len() }.into_pyerr(py));
        }
        let config = Config { memory: maxcor, ftol, gtol, max_line_search: maxls };
        let mut solver = Lbfgsb::new(bounds, config).map_err(|e| e.into_pyerr(py))?;
        let needs_scratch = matches!(gradient, Gradient::Differences(_));
        let scratch = if needs_scratch { n } else { 0 };
        let mut problem = Problem {
            fun,
            args,
            gradient,
            points: PointArrays { last: None },
            nfev: 0,
            njev: 0,
            fd_bounds: if needs_scratch { Some(solver.bounds().clone()) } else { None },
            steps: crate::lbfgsb::error::allocate("the finite-difference steps", scratch)
                .map_err(|e| e.into_pyerr(py))?,
            shifted: crate::lbfgsb::error::allocate("the finite-difference point", scratch)
                .map_err(|e| e.into_pyerr(py))?,
        };
        let limits = Limits { max_iterations: maxiter, max_evaluations: maxfun };
        let outcome = run::<RunError>(
            &mut solver,
            &x0,
            limits,
            |x, g| Ok(problem.evaluate(x, g)?),
            |solver| match &callback {
                Some(callback) => {
                    let stop = callback.call1((PyArray1::from_slice(py, solver.x()), solver.f()))?;
                    Ok(stop.is_truthy()?)
                }
                None => Ok(false),
            },
        );
        match outcome {
            Ok(_) => {}
            Err(RunError::Python(error)) => return Err(error),
            Err(RunError::Core(error)) => return Err(error.into_pyerr(py)),
        }
        report(py, &solver, &problem)
    })
}

/// The run as a dict: `x`, `fun`, `jac`, `nit`, `nfev`, `njev`, `termination`
/// (a short name) and `detail`, the correction pairs `s` and `y` (oldest
/// first, `k × n`) and `theta`, and `restarts`.
fn report<'py>(py: Python<'py>, solver: &Lbfgsb, problem: &Problem<'py>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("x", PyArray1::from_slice(py, solver.x()))?;
    out.set_item("fun", solver.f())?;
    out.set_item("jac", PyArray1::from_slice(py, solver.gradient()))?;
    out.set_item("nit", solver.iterations())?;
    out.set_item("nfev", problem.nfev)?;
    out.set_item("njev", problem.njev)?;
    out.set_item("restarts", solver.restarts())?;
    let termination = solver.termination().expect("a finished run has a termination");
    let (name, detail) = match termination {
        Termination::ProjectedGradient => ("gtol", ""),
        Termination::RelativeReduction => ("ftol", ""),
        Termination::Stopped(StopReason::MaxIterations) => ("maxiter", ""),
        Termination::Stopped(StopReason::MaxEvaluations) => ("maxfun", ""),
        Termination::Stopped(StopReason::Callback) => ("callback", ""),
        Termination::NonFiniteStart => ("abnormal", "the objective or its gradient is not finite at the start point"),
        Termination::LineSearchFailed(failure) => (
            "abnormal",
            match failure {
                LineSearchFailure::NotDescent => {
                    "the search direction is not a descent direction, even along steepest descent \
                     (is the gradient right?)"
                }
                LineSearchFailure::TooManyTrials => {
                    "the line search found no acceptable step within maxls evaluations, even along steepest descent"
                }
                LineSearchFailure::NoFiniteStep => {
                    "the objective or its gradient was not finite at every trial step, even along steepest descent"
                }
            },
        ),
    };
    out.set_item("termination", name)?;
    out.set_item("detail", detail)?;
    let memory = solver.memory();
    let (k, n) = (memory.len(), solver.x().len());
    let s = PyArray2::<f64>::zeros(py, [k, n], false);
    let y = PyArray2::<f64>::zeros(py, [k, n], false);
    {
        // SAFETY: freshly created arrays that nothing else references yet.
        let (s_out, y_out) = unsafe { (s.as_slice_mut()?, y.as_slice_mut()?) };
        for i in 0..k {
            s_out[i * n..(i + 1) * n].copy_from_slice(memory.s(i));
            y_out[i * n..(i + 1) * n].copy_from_slice(memory.y(i));
        }
    }
    out.set_item("s", s)?;
    out.set_item("y", y)?;
    out.set_item("theta", memory.theta())?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lbfgsb_minimize, m)?)?;
    Ok(())
}
