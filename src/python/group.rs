//! Reading a param group's hyperparameters at step time.
//!
//! Values are re-read at every step (a scheduler may have changed `lr`), so
//! each is checked here whatever its group's position: a real number is a
//! Python `int`/`float` or a NumPy integer/floating scalar, finite, never a
//! bool, a complex number or an array; a flag is a Python or NumPy bool. Ranges
//! (`lr >= 0`, ...) are checked where groups are made and loaded, as in torch.

use super::errors::InputError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyTuple};

/// One param group's dict and its index in `param_groups`, for messages.
pub struct GroupReader<'a, 'py> {
    pub dict: &'a Bound<'py, PyDict>,
    pub index: usize,
    /// The optimizer's `defaults` (the constructor's arguments), when the
    /// caller passed them: a few torch rules read a constructor value instead
    /// of the group's (Adagrad's lazily created `sum`).
    pub defaults: Option<&'a Bound<'py, PyDict>>,
}

impl<'py> GroupReader<'_, 'py> {
    fn get(&self, key: &Bound<'py, pyo3::types::PyString>) -> Result<Bound<'py, PyAny>, InputError> {
        match self.dict.get_item(key) {
            Ok(Some(value)) => Ok(value),
            _ => {
                Err(InputError::Hyperparameter(format!("param_groups[{}] has no '{}' hyperparameter", self.index, key)))
            }
        }
    }

    fn describe(&self, key: &Bound<'py, pyo3::types::PyString>) -> String {
        format!("param_groups[{}]['{}']", self.index, key)
    }

    /// A finite real number.
    pub fn real(&self, key: &Bound<'py, pyo3::types::PyString>) -> Result<f64, InputError> {
        let value = self.get(key)?;
        real_value(&value).ok_or_else(|| not_real(&self.describe(key), &value))
    }

    /// A finite real number from the optimizer's `defaults`, or from the group
    /// when no defaults were given or they lack `key`.
    pub fn constructor_real(&self, key: &Bound<'py, pyo3::types::PyString>) -> Result<f64, InputError> {
        let Some(value) = self.defaults.and_then(|d| d.get_item(key).ok().flatten()) else {
            return self.real(key);
        };
        real_value(&value).ok_or_else(|| not_real(&format!("defaults['{key}']"), &value))
    }

    /// A bool.
    pub fn flag(&self, key: &Bound<'py, pyo3::types::PyString>) -> Result<bool, InputError> {
        let value = self.get(key)?;
        if let Ok(b) = value.cast::<PyBool>() {
            return Ok(b.is_true());
        }
        if is_numpy_bool(&value) {
            return value.is_truthy().map_err(|_| not_flag(&self.describe(key), &value));
        }
        Err(not_flag(&self.describe(key), &value))
    }

    /// A pair of finite real numbers (`betas`, `etas`, ...), as a tuple or list.
    pub fn pair(&self, key: &Bound<'py, pyo3::types::PyString>) -> Result<(f64, f64), InputError> {
        let value = self.get(key)?;
        let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = value.cast::<PyTuple>() {
            t.iter().collect()
        } else if let Ok(l) = value.cast::<PyList>() {
            l.iter().collect()
        } else {
            Vec::new()
        };
        let wrong = || {
            InputError::Hyperparameter(format!(
                "{} must be a pair of finite real numbers, got {}",
                self.describe(key),
                repr(&value)
            ))
        };
        match items.as_slice() {
            [a, b] => Ok((real_value(a).ok_or_else(wrong)?, real_value(b).ok_or_else(wrong)?)),
            _ => Err(wrong()),
        }
    }

    /// `N` numbers as a tuple or list; entry `i` may be None when `nullable[i]`
    /// (Adafactor's `eps = (None, 1e-3)`, Muon's three `ns_coefficients`).
    pub fn reals<const N: usize>(
        &self,
        key: &Bound<'py, pyo3::types::PyString>,
        nullable: [bool; N],
    ) -> Result<[Option<f64>; N], InputError> {
        let value = self.get(key)?;
        let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = value.cast::<PyTuple>() {
            t.iter().collect()
        } else if let Ok(l) = value.cast::<PyList>() {
            l.iter().collect()
        } else {
            Vec::new()
        };
        let wrong = || {
            let entries: Vec<&str> = nullable
                .iter()
                .map(|&n| if n { "None or a finite real number" } else { "a finite real number" })
                .collect();
            InputError::Hyperparameter(format!(
                "{} must be a sequence of {N} entries ({}), got {}",
                self.describe(key),
                entries.join(", "),
                repr(&value)
            ))
        };
        if items.len() != N {
            return Err(wrong());
        }
        let mut out = [None; N];
        for (i, item) in items.iter().enumerate() {
            if item.is_none() && nullable[i] {
                continue;
            }
            out[i] = Some(real_value(item).ok_or_else(wrong)?);
        }
        Ok(out)
    }

    /// An integer in `range` (a Python or NumPy integer, not a bool).
    pub fn integer(
        &self,
        key: &Bound<'py, pyo3::types::PyString>,
        range: std::ops::Range<i64>,
    ) -> Result<i64, InputError> {
        let value = self.get(key)?;
        let is_integer = !value.is_instance_of::<PyBool>()
            && !is_numpy_bool(&value)
            && (value.is_instance_of::<PyInt>() || is_numpy_integer(&value));
        match value.extract::<i64>() {
            Ok(x) if is_integer && range.contains(&x) => Ok(x),
            _ => Err(InputError::Hyperparameter(format!(
                "{} must be an integer in [{}, {}), got {}",
                self.describe(key),
                range.start,
                range.end,
                repr(&value)
            ))),
        }
    }

    /// None or one of `choices` (Muon's `adjust_lr_fn`); the index of the choice.
    pub fn choice(
        &self,
        key: &Bound<'py, pyo3::types::PyString>,
        choices: &[&str],
    ) -> Result<Option<usize>, InputError> {
        let value = self.get(key)?;
        if value.is_none() {
            return Ok(None);
        }
        let text: Option<String> = value.extract().ok();
        text.and_then(|t| choices.iter().position(|&c| c == t)).map(Some).ok_or_else(|| {
            InputError::Hyperparameter(format!(
                "{} must be None or one of {:?}, got {}",
                self.describe(key),
                choices,
                repr(&value)
            ))
        })
    }
}

/// The value of a finite real-number object, or None.
/// A step argument that must be a finite real number (`grad_scale`), or a
/// `HyperparameterError` naming it.
pub(super) fn finite_real(what: &str, value: &Bound<'_, PyAny>) -> Result<f64, InputError> {
    real_value(value).ok_or_else(|| not_real(what, value))
}

fn real_value(value: &Bound<'_, PyAny>) -> Option<f64> {
    let x = if value.is_exact_instance_of::<PyFloat>() {
        value.cast::<PyFloat>().ok()?.value()
    } else if value.is_instance_of::<PyBool>() {
        return None;
    } else if value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>() {
        // float subclasses (np.float64) and ints; an int too large for a double fails.
        value.extract::<f64>().ok()?
    } else if is_numpy_real_scalar(value) {
        value.extract::<f64>().ok()?
    } else {
        return None;
    };
    x.is_finite().then_some(x)
}

/// A NumPy integer or floating scalar (not a bool, complex number or array).
fn is_numpy_real_scalar(value: &Bound<'_, PyAny>) -> bool {
    let py = value.py();
    let Ok(numpy) = py.import(intern!(py, "numpy")) else { return false };
    let is = |name: &Bound<'_, pyo3::types::PyString>| {
        numpy.getattr(name).and_then(|class| value.is_instance(&class)).unwrap_or(false)
    };
    is(intern!(py, "floating")) || is(intern!(py, "integer"))
}

fn is_numpy_bool(value: &Bound<'_, PyAny>) -> bool {
    let py = value.py();
    py.import(intern!(py, "numpy"))
        .and_then(|numpy| numpy.getattr(intern!(py, "bool_")))
        .and_then(|class| value.is_instance(&class))
        .unwrap_or(false)
}

fn repr(value: &Bound<'_, PyAny>) -> String {
    value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
}

fn not_real(what: &str, value: &Bound<'_, PyAny>) -> InputError {
    InputError::Hyperparameter(format!("{what} must be a finite real number, got {}", repr(value)))
}

fn not_flag(what: &str, value: &Bound<'_, PyAny>) -> InputError {
    InputError::Hyperparameter(format!("{what} must be a bool, got {}", repr(value)))
}

fn is_numpy_integer(value: &Bound<'_, PyAny>) -> bool {
    let py = value.py();
    py.import(intern!(py, "numpy"))
        .and_then(|numpy| numpy.getattr(intern!(py, "integer")))
        .and_then(|class| value.is_instance(&class))
        .unwrap_or(false)
}
