//! Bindings of the Adam/AdamW and SGD kernels: one call per param group carries
//! all its tensors, float32 and float64 alike. Every array of the call is
//! validated (and checked for shared memory) before any is touched, so a call
//! that raises has changed nothing; large updates run with the GIL released.

use super::arrays::{AliasCheck, DType, GradArray, ParamArray, StateArray, check_list_length, param_dtype};
use super::errors::InputError;
use super::gil::run_kernel;
use crate::adam::{AdamConfig, AdamTensor, adam_step as adam_kernel};
use crate::sgd::{MomentumBuffer, SgdConfig, SgdTensor, sgd_step as sgd_kernel};
use numpy::Element as NumpyElement;
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Applies one Adam/AdamW step to every param of a group, in place.
#[pyfunction]
#[pyo3(signature = (
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
    lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay
))]
#[allow(clippy::too_many_arguments)]
fn adam_step<'py>(
    py: Python<'py>,
    params: Bound<'py, PyList>,
    grads: Bound<'py, PyList>,
    exp_avgs: Bound<'py, PyList>,
    exp_avg_sqs: Bound<'py, PyList>,
    max_exp_avg_sqs: Option<Bound<'py, PyList>>,
    steps: Bound<'py, PyList>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> PyResult<()> {
    let config = AdamConfig { lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay };
    let arrays = AdamArrays { params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps };
    run_adam(py, &arrays, &config).map_err(|e| e.into_pyerr(py))
}

/// The per-tensor argument lists of one call. They are Python lists, read by
/// index: extracting them into vectors through the iterator protocol costs more
/// than validating the arrays.
struct AdamArrays<'py> {
    params: Bound<'py, PyList>,
    grads: Bound<'py, PyList>,
    exp_avgs: Bound<'py, PyList>,
    exp_avg_sqs: Bound<'py, PyList>,
    max_exp_avg_sqs: Option<Bound<'py, PyList>>,
    steps: Bound<'py, PyList>,
}

fn run_adam(py: Python<'_>, arrays: &AdamArrays<'_>, config: &AdamConfig) -> Result<(), InputError> {
    let n = arrays.params.len();
    check_list_length("grads", arrays.grads.len(), n)?;
    check_list_length("exp_avgs", arrays.exp_avgs.len(), n)?;
    check_list_length("exp_avg_sqs", arrays.exp_avg_sqs.len(), n)?;
    check_list_length("steps", arrays.steps.len(), n)?;
    match (&arrays.max_exp_avg_sqs, config.amsgrad) {
        (Some(max), true) => check_list_length("max_exp_avg_sqs", max.len(), n)?,
        (None, false) => {}
        _ => return Err(InputError::Value("max_exp_avg_sqs must be given exactly when amsgrad is on".into())),
    }
    let written_per_tensor = if config.amsgrad { 4 } else { 3 };
    validate_then_update::<AdamTensors<'_, f32>, AdamTensors<'_, f64>>(
        py,
        &arrays.params,
        arrays,
        config,
        written_per_tensor,
    )
}

/// The tensors of one call that have one dtype, validated and waiting for the kernel.
trait Batch<'py>: Default {
    /// The call's argument lists.
    type Arrays;
    type Config;
    /// Validates tensor `i` of the call and records its arrays for the alias check.
    fn add(&mut self, arrays: &Self::Arrays, i: usize, aliases: &mut AliasCheck<'py>) -> Result<(), InputError>;
    /// Runs the kernel. Call only after the alias check of the whole call passed.
    fn update(self, py: Python<'_>, config: &Self::Config) -> Result<(), InputError>;
}

/// Validates every tensor of a call (float32 ones into `B32`, float64 ones into
/// `B64`) and checks all their arrays for shared memory before either kernel runs,
/// so a call that fails has changed nothing.
fn validate_then_update<'py, B32, B64>(
    py: Python<'py>,
    params: &Bound<'py, PyList>,
    arrays: &B32::Arrays,
    config: &B32::Config,
    written_per_tensor: usize,
) -> Result<(), InputError>
where
    B32: Batch<'py>,
    B64: Batch<'py, Arrays = B32::Arrays, Config = B32::Config>,
{
    let n = params.len();
    let mut aliases = AliasCheck::with_capacity(written_per_tensor * n, n);
    let (mut batch32, mut batch64) = (B32::default(), B64::default());
    for i in 0..n {
        match param_dtype(&item(params, i)?, i)? {
            DType::Float32 => batch32.add(arrays, i, &mut aliases)?,
            DType::Float64 => batch64.add(arrays, i, &mut aliases)?,
        }
    }
    aliases.verify()?;
    batch32.update(py, config)?;
    batch64.update(py, config)
}

/// The validated arrays of a call's tensors of one dtype.
struct AdamTensors<'py, F: NumpyElement> {
    params: Vec<ParamArray<'py, F>>,
    grads: Vec<GradArray<'py, F>>,
    exp_avgs: Vec<StateArray<'py, F>>,
    exp_avg_sqs: Vec<StateArray<'py, F>>,
    max_exp_avg_sqs: Vec<StateArray<'py, F>>,
    steps: Vec<f64>,
}

impl<F: NumpyElement> Default for AdamTensors<'_, F> {
    fn default() -> Self {
        AdamTensors {
            params: Vec::new(),
            grads: Vec::new(),
            exp_avgs: Vec::new(),
            exp_avg_sqs: Vec::new(),
            max_exp_avg_sqs: Vec::new(),
            steps: Vec::new(),
        }
    }
}

impl<'py, F: NumpyElement + crate::Element> Batch<'py> for AdamTensors<'py, F> {
    type Arrays = AdamArrays<'py>;
    type Config = AdamConfig;

    fn add(&mut self, arrays: &AdamArrays<'py>, i: usize, aliases: &mut AliasCheck<'py>) -> Result<(), InputError> {
        let step: f64 = item(&arrays.steps, i)?.extract().map_err(|_| invalid_step(&arrays.steps, i))?;
        if !(step.is_finite() && step >= 1.0) {
            return Err(invalid_step(&arrays.steps, i));
        }
        let param = ParamArray::<F>::new(&item(&arrays.params, i)?, i, aliases)?;
        self.exp_avgs.push(StateArray::new(&item(&arrays.exp_avgs, i)?, "exp_avg", i, &param, aliases)?);
        self.exp_avg_sqs.push(StateArray::new(&item(&arrays.exp_avg_sqs, i)?, "exp_avg_sq", i, &param, aliases)?);
        if let Some(max) = &arrays.max_exp_avg_sqs {
            self.max_exp_avg_sqs.push(StateArray::new(&item(max, i)?, "max_exp_avg_sq", i, &param, aliases)?);
        }
        self.grads.push(GradArray::new(&item(&arrays.grads, i)?, i, &param, aliases)?);
        self.params.push(param);
        self.steps.push(step);
        Ok(())
    }

    fn update(mut self, py: Python<'_>, config: &AdamConfig) -> Result<(), InputError> {
        if self.params.is_empty() {
            return Ok(());
        }
        let mut max_iter = self.max_exp_avg_sqs.iter_mut();
        // SAFETY (all `values`/`values_mut` below): the alias check passed, and
        // each array's slice is taken once.
        let mut tensors: Vec<AdamTensor<'_, F>> = self
            .params
            .iter_mut()
            .zip(&self.grads)
            .zip(self.exp_avgs.iter_mut().zip(self.exp_avg_sqs.iter_mut()))
            .zip(&self.steps)
            .map(|(((param, grad), (exp_avg, exp_avg_sq)), &step)| unsafe {
                AdamTensor {
                    param: param.values_mut(),
                    grad: grad.values(),
                    exp_avg: exp_avg.values_mut(),
                    exp_avg_sq: exp_avg_sq.values_mut(),
                    max_exp_avg_sq: max_iter.next().map(|m| m.values_mut()),
                    step,
                }
            })
            .collect();
        let elements = tensors.iter().map(|t| t.param.len()).sum();
        run_kernel(py, elements, || adam_kernel(&mut tensors, config)).map_err(InputError::from)?;
        drop(tensors);
        self.params.into_iter().for_each(ParamArray::scatter_back);
        Ok(())
    }
}

/// Applies one SGD step to every param of a group, in place.
#[pyfunction]
#[pyo3(signature = (
    params, grads, momentum_buffers, new_buffers,
    lr, momentum, dampening, weight_decay, nesterov, maximize
))]
#[allow(clippy::too_many_arguments)]
fn sgd_step<'py>(
    py: Python<'py>,
    params: Bound<'py, PyList>,
    grads: Bound<'py, PyList>,
    momentum_buffers: Option<Bound<'py, PyList>>,
    new_buffers: Bound<'py, PyList>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
) -> PyResult<()> {
    let config = SgdConfig { lr, momentum, dampening, weight_decay, nesterov, maximize };
    let arrays = SgdArrays { params, grads, momentum_buffers, new_buffers };
    run_sgd(py, &arrays, &config).map_err(|e| e.into_pyerr(py))
}

/// The per-tensor argument lists of one call (see [`AdamArrays`]).
struct SgdArrays<'py> {
    params: Bound<'py, PyList>,
    grads: Bound<'py, PyList>,
    momentum_buffers: Option<Bound<'py, PyList>>,
    new_buffers: Bound<'py, PyList>,
}

fn run_sgd(py: Python<'_>, arrays: &SgdArrays<'_>, config: &SgdConfig) -> Result<(), InputError> {
    let n = arrays.params.len();
    check_list_length("grads", arrays.grads.len(), n)?;
    match (&arrays.momentum_buffers, config.momentum != 0.0) {
        (Some(buffers), true) => {
            check_list_length("momentum_buffers", buffers.len(), n)?;
            check_list_length("new_buffers", arrays.new_buffers.len(), n)?;
        }
        (None, false) => {}
        _ => return Err(InputError::Value("momentum_buffers must be given exactly when momentum is not 0".into())),
    }
    validate_then_update::<SgdTensors<'_, f32>, SgdTensors<'_, f64>>(py, &arrays.params, arrays, config, 2)
}

/// The validated arrays of a call's tensors of one dtype.
struct SgdTensors<'py, F: NumpyElement> {
    params: Vec<ParamArray<'py, F>>,
    grads: Vec<GradArray<'py, F>>,
    buffers: Vec<(StateArray<'py, F>, bool)>,
}

impl<F: NumpyElement> Default for SgdTensors<'_, F> {
    fn default() -> Self {
        SgdTensors { params: Vec::new(), grads: Vec::new(), buffers: Vec::new() }
    }
}

impl<'py, F: NumpyElement + crate::Element> Batch<'py> for SgdTensors<'py, F> {
    type Arrays = SgdArrays<'py>;
    type Config = SgdConfig;

    fn add(&mut self, arrays: &SgdArrays<'py>, i: usize, aliases: &mut AliasCheck<'py>) -> Result<(), InputError> {
        let param = ParamArray::<F>::new(&item(&arrays.params, i)?, i, aliases)?;
        if let Some(list) = &arrays.momentum_buffers {
            let buffer = StateArray::new(&item(list, i)?, "momentum_buffer", i, &param, aliases)?;
            let is_new: bool = item(&arrays.new_buffers, i)?
                .extract()
                .map_err(|_| InputError::Value(format!("new_buffers[{i}] must be a bool")))?;
            self.buffers.push((buffer, is_new));
        }
        self.grads.push(GradArray::new(&item(&arrays.grads, i)?, i, &param, aliases)?);
        self.params.push(param);
        Ok(())
    }

    fn update(mut self, py: Python<'_>, config: &SgdConfig) -> Result<(), InputError> {
        if self.params.is_empty() {
            return Ok(());
        }
        let mut buffer_iter = self.buffers.iter_mut();
        // SAFETY (all `values`/`values_mut` below): the alias check passed, and
        // each array's slice is taken once.
        let mut tensors: Vec<SgdTensor<'_, F>> = self
            .params
            .iter_mut()
            .zip(&self.grads)
            .map(|(param, grad)| unsafe {
                SgdTensor {
                    param: param.values_mut(),
                    grad: grad.values(),
                    momentum_buffer: buffer_iter
                        .next()
                        .map(|(buffer, is_new)| MomentumBuffer { values: buffer.values_mut(), is_new: *is_new }),
                }
            })
            .collect();
        let elements = tensors.iter().map(|t| t.param.len()).sum();
        run_kernel(py, elements, || sgd_kernel(&mut tensors, config)).map_err(InputError::from)?;
        drop(tensors);
        self.params.into_iter().for_each(ParamArray::scatter_back);
        Ok(())
    }
}

/// Entry `i` of a per-tensor list whose length was checked.
fn item<'py>(list: &Bound<'py, PyList>, i: usize) -> Result<Bound<'py, PyAny>, InputError> {
    list.get_item(i).map_err(|e| InputError::Value(format!("cannot read entry {i} of a tensor list: {e}")))
}

fn invalid_step(steps: &Bound<'_, PyList>, i: usize) -> InputError {
    let value = steps.get_item(i).map(|v| v.to_string()).unwrap_or_default();
    InputError::Value(format!("step counts must be finite numbers of at least 1, got {value} for tensor {i}"))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(adam_step, m)?)?;
    m.add_function(wrap_pyfunction!(sgd_step, m)?)?;
    Ok(())
}
