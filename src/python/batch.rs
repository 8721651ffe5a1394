//! The batches `_core.step` and `_core.tensor_step` take: one tuple
//! `(group_index, group, params, grads, entries, positions)` per param group,
//! built by the Python optimizer classes. Anything else is refused with one
//! message, since only a change inside the package could produce it.

use super::errors::InputError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

/// One param group's batch, its shape checked.
pub(super) struct Batch<'py> {
    pub group_index: usize,
    pub group: Bound<'py, PyDict>,
    params: Bound<'py, PyList>,
    grads: Bound<'py, PyList>,
    entries: Bound<'py, PyList>,
    /// Each param's position in its group, when some params of the group were skipped.
    positions: Option<Bound<'py, PyList>>,
}

/// One param of a batch: its position in the group (for messages), the
/// `Parameter`, its gradient and its state entry (`None` without state).
pub(super) struct BatchItem<'py> {
    pub position: usize,
    pub param: Bound<'py, PyAny>,
    pub grad: Bound<'py, PyAny>,
    pub entry: Bound<'py, PyAny>,
}

fn malformed() -> InputError {
    InputError::Value("a step batch must be (index, group, params, grads, entries, positions)".into())
}

impl<'py> Batch<'py> {
    /// Reads a batch tuple; its lists must have one entry per param.
    pub fn read(batch: &Bound<'py, PyAny>) -> Result<Self, InputError> {
        let batch = batch.cast::<PyTuple>().map_err(|_| malformed())?;
        if batch.len() != 6 {
            return Err(malformed());
        }
        let item = |i: usize| batch.get_item(i).map_err(|_| malformed());
        let list = |i: usize| item(i)?.cast_into::<PyList>().map_err(|_| malformed());
        let positions = item(5)?;
        let batch = Batch {
            group_index: item(0)?.extract().map_err(|_| malformed())?,
            group: item(1)?.cast_into::<PyDict>().map_err(|_| malformed())?,
            params: list(2)?,
            grads: list(3)?,
            entries: list(4)?,
            positions: if positions.is_none() {
                None
            } else {
                Some(positions.cast_into::<PyList>().map_err(|_| malformed())?)
            },
        };
        let n = batch.len();
        if batch.grads.len() != n || batch.entries.len() != n || batch.positions.as_ref().is_some_and(|p| p.len() != n)
        {
            return Err(malformed());
        }
        Ok(batch)
    }

    /// How many params the batch holds.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// The `i`-th param of the batch.
    pub fn item(&self, i: usize) -> Result<BatchItem<'py>, InputError> {
        let position = match &self.positions {
            Some(list) => list.get_item(i).and_then(|p| p.extract()).map_err(|_| malformed())?,
            None => i,
        };
        Ok(BatchItem {
            position,
            param: self.params.get_item(i).map_err(|_| malformed())?,
            grad: self.grads.get_item(i).map_err(|_| malformed())?,
            entry: self.entries.get_item(i).map_err(|_| malformed())?,
        })
    }
}
