//! The one rayon thread pool every parallel kernel runs on.
//!
//! Its size comes from `RUSTOPTIM_NUM_THREADS` (default: all cores) and can be
//! changed at run time with [`set_num_threads`]. A forked child process starts
//! with a fresh pool: the parent's worker threads do not exist in the child, so
//! the pool handle inherited from the parent is dropped unused (see `forget_after_fork`).

use crate::error::OptimError;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Once, RwLock};

/// Environment variable that sets the number of worker threads.
pub const NUM_THREADS_ENV: &str = "RUSTOPTIM_NUM_THREADS";

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

fn default_num_threads() -> usize {
    std::env::var(NUM_THREADS_ENV)
        .ok()
        .and_then(|value| value.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn build(num_threads: usize) -> Result<Arc<ThreadPool>, OptimError> {
    register_fork_handler();
    ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .thread_name(|i| format!("rustoptim-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| OptimError::InvalidSetting(format!("cannot start {num_threads} threads: {e}")))
}

/// The pool, created on first use.
pub fn pool() -> Arc<ThreadPool> {
    if let Some(pool) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return Arc::clone(pool);
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        // A pool of the default size can only fail to start if the OS refuses
        // threads; fall back to one thread rather than fail every step.
        let pool = build(default_num_threads()).or_else(|_| build(1));
        *slot = Some(pool.expect("cannot start even one worker thread"));
    }
    Arc::clone(slot.as_ref().expect("pool was just created"))
}

/// The number of worker threads kernels split their work across.
pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Replaces the pool with one of `num_threads` threads (at least 1).
pub fn set_num_threads(num_threads: usize) -> Result<(), OptimError> {
    if num_threads == 0 {
        return Err(OptimError::InvalidSetting("the number of threads must be at least 1".into()));
    }
    let new_pool = build(num_threads)?;
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = Some(new_pool);
    Ok(())
}

fn register_fork_handler() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registering a handler has no preconditions; the handler itself
        // only touches our own static.
        unsafe {
            libc::pthread_atfork(None, None, Some(forget_after_fork));
        }
    });
}

/// In a forked child the pool's threads are gone; forget the handle (dropping it
/// would try to talk to threads that do not exist) so the next use builds a new pool.
extern "C" fn forget_after_fork() {
    if let Ok(mut slot) = POOL.try_write() {
        if let Some(pool) = slot.take() {
            std::mem::forget(pool);
        }
    }
}
