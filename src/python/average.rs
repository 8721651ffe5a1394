//! Binding of the weight-averaging kernel (`swa_utils.AveragedModel` and its
//! built-in averaging functions): one call updates every averaged array from
//! the current weights, float32 and float64 alike. Every array is validated
//! (dtype, shape, writeability, shared memory) before any is written.

use super::arrays::{AliasCheck, FloatArray, Label, ReadArray, WriteArray, shape_string};
use super::errors::{InputError, catch_panics, optim_error};
use super::gil::run_kernel;
use crate::average::{AveragePair, AverageRule, update_averages as update_kernel};
use numpy::{Element as NumpyElement, PyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

/// Updates `averages[i]` in place from `currents[i]` by `rule`: `"copy"`,
/// `"lerp"` (torch's lerp with `weight`), `"weighted_sum"` (`decay·a + (1 − decay)·x`
/// with `decay = weight`) or `"running_mean"` (`a + (x − a) / (n_averaged + 1)`).
#[pyfunction]
#[pyo3(signature = (averages, currents, rule, weight=0.0, n_averaged=0))]
fn update_averages<'py>(
    py: Python<'py>,
    averages: Bound<'py, PyList>,
    currents: Bound<'py, PyList>,
    rule: &str,
    weight: f64,
    n_averaged: u64,
) -> PyResult<()> {
    catch_panics(py, || {
        let rule = match rule {
            "copy" => AverageRule::Copy,
            "lerp" => AverageRule::Lerp { weight },
            "weighted_sum" => AverageRule::WeightedSum { decay: weight },
            "running_mean" => AverageRule::RunningMean { averaged: n_averaged },
            other => {
                return Err(InputError::Value(format!(
                    "unknown averaging rule {other:?}; expected \"copy\", \"lerp\", \"weighted_sum\" or \"running_mean\""
                ))
                .into_pyerr(py));
            }
        };
        let (pairs32, pairs64) = checked_pairs(&averages, &currents).map_err(|e| e.into_pyerr(py))?;
        run(py, pairs32, rule)?;
        run(py, pairs64, rule)
    })
}

/// Every (average, current) pair, validated (dtypes, shapes, writeability) and
/// checked for shared memory, by dtype.
fn checked_pairs<'py>(
    averages: &Bound<'py, PyList>,
    currents: &Bound<'py, PyList>,
) -> Result<(Pairs<'py, f32>, Pairs<'py, f64>), InputError> {
    if currents.len() != averages.len() {
        return Err(InputError::Value(format!(
            "got {} current arrays for {} averaged arrays; pass one per averaged array, in order",
            currents.len(),
            averages.len()
        )));
    }
    let mut aliases = AliasCheck::with_capacity(averages.len(), averages.len());
    let (mut pairs32, mut pairs64) = (Vec::new(), Vec::new());
    for (index, (average, current)) in averages.iter().zip(currents.iter()).enumerate() {
        let average = FloatArray::new(&average, Label::entry("average", index))?;
        let current = FloatArray::new(&current, Label::entry("current", index))?;
        match (average, current) {
            (FloatArray::F32(a), FloatArray::F32(c)) => pairs32.push(pair(&a, &c, index, &mut aliases)?),
            (FloatArray::F64(a), FloatArray::F64(c)) => pairs64.push(pair(&a, &c, index, &mut aliases)?),
            (average, current) => {
                return Err(InputError::DType(format!(
                    "current {index} has dtype {}, but its average has dtype {}",
                    current.untyped().dtype(),
                    average.untyped().dtype()
                )));
            }
        }
    }
    aliases.verify()?;
    Ok((pairs32, pairs64))
}

/// A validated (average, current) pair, the current read in the average's element order.
type Pair<'py, F> = (WriteArray<'py, F>, ReadArray<'py, F>);
type Pairs<'py, F> = Vec<Pair<'py, F>>;

fn pair<'py, F: NumpyElement + Copy>(
    average: &Bound<'py, PyArrayDyn<F>>,
    current: &Bound<'py, PyArrayDyn<F>>,
    index: usize,
    aliases: &mut AliasCheck<'py>,
) -> Result<Pair<'py, F>, InputError> {
    let average = WriteArray::new(average, Label::entry("average", index), "; it is updated in place", true, aliases)?;
    if current.shape() != average.shape() {
        return Err(InputError::Shape(format!(
            "current {index} has shape {}, but its average has shape {}",
            shape_string(current.shape()),
            shape_string(average.shape())
        )));
    }
    let current = ReadArray::new(current, Some(average.order), Label::entry("current", index), Some(aliases))?;
    Ok((average, current))
}

fn run<F: NumpyElement + crate::Element>(py: Python<'_>, mut pairs: Pairs<'_, F>, rule: AverageRule) -> PyResult<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let elements = pairs.iter().map(|(average, _)| average.len()).sum();
    {
        let mut slices: Vec<AveragePair<'_, F>> = pairs
            .iter_mut()
            .map(|(average, current)| {
                // SAFETY: the alias check of the whole call passed, and each array's slice is taken once.
                unsafe { AveragePair { average: average.values_mut(), current: current.values() } }
            })
            .collect();
        run_kernel(py, elements, || update_kernel(&mut slices, rule)).map_err(|e| optim_error(py, e))?;
    }
    pairs.into_iter().for_each(|(average, _)| average.scatter_back());
    Ok(())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(update_averages, m)?)?;
    Ok(())
}
