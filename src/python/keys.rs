//! Python strings for the state keys the rules declare (`"step"`, `"exp_avg"`, ...).
//!
//! Looking a `&str` up in a dict makes a new Python string and hashes it at
//! every use; an interned string made once carries its hash. The rules' keys
//! are `&'static str`s, so each one gets its interned string on first use.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use std::sync::Mutex;

/// A key's identity: the address and length of its `&'static str`.
type KeyId = (usize, usize);

/// The interned strings made so far, by key.
type KeyTable = Mutex<Vec<(KeyId, Py<PyString>)>>;
static KEYS: PyOnceLock<KeyTable> = PyOnceLock::new();

/// The interned Python string of a state key.
pub fn key<'py>(py: Python<'py>, name: &'static str) -> Bound<'py, PyString> {
    let id = (name.as_ptr() as usize, name.len());
    let keys = KEYS.get_or_init(py, || Mutex::new(Vec::new()));
    let mut keys = keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, string)) = keys.iter().find(|(known, _)| *known == id) {
        return string.bind(py).clone();
    }
    let string = PyString::intern(py, name);
    keys.push((id, string.clone().unbind()));
    string
}
