//! Bindings of the Adam/AdamW and SGD kernels: one call per param group carries
//! all its tensors. Every array is validated and borrowed before any is touched,
//! so a call that raises has changed nothing; the update runs with the GIL released.

use super::arrays::{AliasCheck, DType, GradArray, ParamArray, StateArray, check_list_length, step_dtype};
use super::errors::InputError;
use super::gil::run_kernel;
use crate::adam::{AdamConfig, AdamTensor, adam_step as adam_kernel};
use crate::sgd::{MomentumBuffer, SgdConfig, SgdTensor, sgd_step as sgd_kernel};
use numpy::Element as NumpyElement;
use pyo3::prelude::*;

/// Applies one Adam/AdamW step to every param of a group, in place.
#[pyfunction]
#[pyo3(signature = (
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps,
    lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay
))]
#[allow(clippy::too_many_arguments)]
fn adam_step<'py>(
    py: Python<'py>,
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    exp_avgs: Vec<Bound<'py, PyAny>>,
    exp_avg_sqs: Vec<Bound<'py, PyAny>>,
    max_exp_avg_sqs: Option<Vec<Bound<'py, PyAny>>>,
    steps: Vec<f64>,
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
    let result = match step_dtype(&arrays.params) {
        // No tensors: only the list lengths can be wrong.
        Ok(None) => run_adam::<f64>(py, &arrays, &config),
        Ok(Some(DType::Float32)) => run_adam::<f32>(py, &arrays, &config),
        Ok(Some(DType::Float64)) => run_adam::<f64>(py, &arrays, &config),
        Err(e) => Err(e),
    };
    result.map_err(|e| e.into_pyerr(py))
}

struct AdamArrays<'py> {
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    exp_avgs: Vec<Bound<'py, PyAny>>,
    exp_avg_sqs: Vec<Bound<'py, PyAny>>,
    max_exp_avg_sqs: Option<Vec<Bound<'py, PyAny>>>,
    steps: Vec<f64>,
}

fn run_adam<'py, F>(py: Python<'py>, arrays: &AdamArrays<'py>, config: &AdamConfig) -> Result<(), InputError>
where
    F: NumpyElement + crate::Element,
{
    let n = arrays.params.len();
    check_list_length("grads", arrays.grads.len(), n)?;
    check_list_length("exp_avgs", arrays.exp_avgs.len(), n)?;
    check_list_length("exp_avg_sqs", arrays.exp_avg_sqs.len(), n)?;
    check_list_length("steps", arrays.steps.len(), n)?;
    match (&arrays.max_exp_avg_sqs, config.amsgrad) {
        (Some(max), true) => check_list_length("max_exp_avg_sqs", max.len(), n)?,
        (None, false) => {}
        _ => {
            return Err(InputError::Value("max_exp_avg_sqs must be given exactly when amsgrad is on".into()));
        }
    }
    if let Some(step) = arrays.steps.iter().find(|s| !(s.is_finite() && **s >= 1.0)) {
        return Err(InputError::Value(format!("step counts must be finite and at least 1, got {step}")));
    }

    let arrays_per_tensor = if config.amsgrad { 4 } else { 3 };
    let mut aliases = AliasCheck::with_capacity(arrays_per_tensor * n, n);
    let mut params = Vec::with_capacity(n);
    let mut exp_avgs = Vec::with_capacity(n);
    let mut exp_avg_sqs = Vec::with_capacity(n);
    let mut max_exp_avg_sqs = Vec::with_capacity(if config.amsgrad { n } else { 0 });
    let mut grads = Vec::with_capacity(n);
    for i in 0..n {
        let param = ParamArray::<F>::new(&arrays.params[i], i, &mut aliases)?;
        exp_avgs.push(StateArray::new(&arrays.exp_avgs[i], "exp_avg", i, &param, &mut aliases)?);
        exp_avg_sqs.push(StateArray::new(&arrays.exp_avg_sqs[i], "exp_avg_sq", i, &param, &mut aliases)?);
        if let Some(max) = &arrays.max_exp_avg_sqs {
            max_exp_avg_sqs.push(StateArray::new(&max[i], "max_exp_avg_sq", i, &param, &mut aliases)?);
        }
        grads.push(GradArray::new(&arrays.grads[i], i, &param, &mut aliases)?);
        params.push(param);
    }
    aliases.verify()?;

    // SAFETY (all `values`/`values_mut` below): the alias check passed, and each
    // array's slice is taken once.
    let mut max_iter = max_exp_avg_sqs.iter_mut();
    let mut tensors: Vec<AdamTensor<'_, F>> = params
        .iter_mut()
        .zip(&grads)
        .zip(exp_avgs.iter_mut().zip(exp_avg_sqs.iter_mut()))
        .zip(&arrays.steps)
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
    params.into_iter().for_each(ParamArray::scatter_back);
    Ok(())
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
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    momentum_buffers: Option<Vec<Bound<'py, PyAny>>>,
    new_buffers: Vec<bool>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
) -> PyResult<()> {
    let config = SgdConfig { lr, momentum, dampening, weight_decay, nesterov, maximize };
    let arrays = SgdArrays { params, grads, momentum_buffers, new_buffers };
    let result = match step_dtype(&arrays.params) {
        // No tensors: only the list lengths can be wrong.
        Ok(None) => run_sgd::<f64>(py, &arrays, &config),
        Ok(Some(DType::Float32)) => run_sgd::<f32>(py, &arrays, &config),
        Ok(Some(DType::Float64)) => run_sgd::<f64>(py, &arrays, &config),
        Err(e) => Err(e),
    };
    result.map_err(|e| e.into_pyerr(py))
}

struct SgdArrays<'py> {
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    momentum_buffers: Option<Vec<Bound<'py, PyAny>>>,
    new_buffers: Vec<bool>,
}

fn run_sgd<'py, F>(py: Python<'py>, arrays: &SgdArrays<'py>, config: &SgdConfig) -> Result<(), InputError>
where
    F: NumpyElement + crate::Element,
{
    let n = arrays.params.len();
    check_list_length("grads", arrays.grads.len(), n)?;
    match (&arrays.momentum_buffers, config.momentum != 0.0) {
        (Some(buffers), true) => {
            check_list_length("momentum_buffers", buffers.len(), n)?;
            check_list_length("new_buffers", arrays.new_buffers.len(), n)?;
        }
        (None, false) => {}
        _ => {
            return Err(InputError::Value("momentum_buffers must be given exactly when momentum is not 0".into()));
        }
    }

    let mut aliases = AliasCheck::with_capacity(2 * n, n);
    let mut params = Vec::with_capacity(n);
    let mut buffers = Vec::with_capacity(n);
    let mut grads = Vec::with_capacity(n);
    for i in 0..n {
        let param = ParamArray::<F>::new(&arrays.params[i], i, &mut aliases)?;
        if let Some(list) = &arrays.momentum_buffers {
            buffers.push(StateArray::new(&list[i], "momentum_buffer", i, &param, &mut aliases)?);
        }
        grads.push(GradArray::new(&arrays.grads[i], i, &param, &mut aliases)?);
        params.push(param);
    }
    aliases.verify()?;

    // SAFETY (all `values`/`values_mut` below): the alias check passed, and each
    // array's slice is taken once.
    let mut buffer_iter = buffers.iter_mut().zip(&arrays.new_buffers);
    let mut tensors: Vec<SgdTensor<'_, F>> = params
        .iter_mut()
        .zip(&grads)
        .map(|(param, grad)| unsafe {
            SgdTensor {
                param: param.values_mut(),
                grad: grad.values(),
                momentum_buffer: buffer_iter
                    .next()
                    .map(|(buffer, &is_new)| MomentumBuffer { values: buffer.values_mut(), is_new }),
            }
        })
        .collect();
    let elements = tensors.iter().map(|t| t.param.len()).sum();
    run_kernel(py, elements, || sgd_kernel(&mut tensors, config)).map_err(InputError::from)?;
    drop(tensors);
    params.into_iter().for_each(ParamArray::scatter_back);
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(adam_step, m)?)?;
    m.add_function(wrap_pyfunction!(sgd_step, m)?)?;
    Ok(())
}
