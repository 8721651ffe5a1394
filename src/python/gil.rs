//! When a kernel runs with the GIL released, and how kernels of different calls
//! are kept apart.

use crate::partition::MIN_ELEMENTS_PER_TASK;
use pyo3::prelude::*;
use std::sync::Mutex;

/// Held by every kernel that writes caller memory, for the whole kernel, and by
/// every copy into or out of caller memory made with the GIL held ([`with_kernel_lock`]).
///
/// While one call runs with the GIL released, another Python thread may start a
/// call on the same arrays (the same optimizer stepped from two threads, or two
/// optimizers sharing a param). The alias check of each call cannot see the
/// other call, so kernels of different calls never run at the same time: each
/// one already spreads its work over every core of the pool, so nothing is lost.
static KERNEL_LOCK: Mutex<()> = Mutex::new(());

/// Runs `kernel` over `elements` elements while holding [`KERNEL_LOCK`],
/// releasing the GIL when the work is large enough for other Python threads to
/// gain from it. Releasing and re-acquiring the GIL costs a few hundred
/// nanoseconds, more than a small step's whole update, so small steps keep it.
///
/// A small kernel waits for the lock with the GIL held; that cannot deadlock,
/// because a kernel holding the lock never needs the GIL.
pub fn run_kernel<T: Send>(py: Python<'_>, elements: usize, kernel: impl FnOnce() -> T + Send) -> T {
    let locked = || {
        let _guard = KERNEL_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        kernel()
    };
    if elements >= MIN_ELEMENTS_PER_TASK { py.detach(locked) } else { locked() }
}

/// Runs `copy`, a copy into or out of caller memory done with the GIL held
/// (gathering a strided array, writing it back), while holding [`KERNEL_LOCK`]:
/// a kernel of another call, running with the GIL released, may be writing the
/// same memory, and every such kernel holds the lock. This cannot deadlock: a
/// kernel holding the lock never needs the GIL, and `copy` runs no Python code
/// (nor any kernel: the lock is not re-entrant).
pub fn with_kernel_lock<T>(copy: impl FnOnce() -> T) -> T {
    let _guard = KERNEL_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    copy()
}
