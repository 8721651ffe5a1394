//! The one rayon thread pool every parallel kernel runs on.
//!
//! Its size comes from `RUSTOPTIM_NUM_THREADS` (default: all cores) and can be
//! changed at run time with [`set_num_threads`], up to [`max_num_threads`]. A
//! forked child process starts with a fresh pool: the parent's worker threads do
//! not exist in the child, so the pool handle inherited from the parent is
//! dropped unused (see `forget_after_fork`).

use crate::error::OptimError;
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Once, RwLock};

/// Environment variable that sets the number of worker threads.
pub const NUM_THREADS_ENV: &str = "RUSTOPTIM_NUM_THREADS";

/// The largest pool on a machine with at most this many cores.
///
/// A step is cut into one piece per thread, so threads beyond the core count
/// only add start-up time and contention: 1024 threads take about 3 s to start
/// on 2 cores, 5000 took 13-25 s, and 20,000 never finished. 1024 is above the
/// hardware thread count of today's largest two-socket servers, and a machine
/// with more cores than that may always use all of them (see [`max_num_threads`]).
/// A fixed number, rather than a multiple of the core count, makes a setting
/// that works on one machine work on every machine.
pub const THREAD_LIMIT: usize = 1024;

static POOL: RwLock<Option<Arc<ThreadPool>>> = RwLock::new(None);

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads a pool may have: [`THREAD_LIMIT`], or the number of
/// cores if that is larger.
pub fn max_num_threads() -> usize {
    THREAD_LIMIT.max(available_cores())
}

/// What the value of `RUSTOPTIM_NUM_THREADS` asks for: `Ok(None)` if it is unset
/// or blank (use all cores), `Ok(Some(n))` for a thread count in `1..=max`, and
/// `Err(why)` for anything else, which is then ignored in favour of all cores.
pub fn parse_num_threads_env(value: Option<&str>, max: usize) -> Result<Option<usize>, String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.parse::<u128>() {
        Ok(n) if (1..=max as u128).contains(&n) => Ok(Some(n as usize)),
        _ => Err(format!("{NUM_THREADS_ENV}={value:?} is not a whole number from 1 to {max}")),
    }
}

fn env_num_threads() -> Result<Option<usize>, String> {
    match std::env::var(NUM_THREADS_ENV) {
        Ok(value) => parse_num_threads_env(Some(&value), max_num_threads()),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{NUM_THREADS_ENV} is not valid Unicode, so not a whole number from 1 to {}",
            max_num_threads()
        )),
    }
}

/// Why `RUSTOPTIM_NUM_THREADS` is being ignored, if it is (the Python package
/// turns this into a warning at import), naming the thread count used instead.
pub fn num_threads_env_problem() -> Option<String> {
    env_num_threads().err().map(|why| format!("{why}; using all {} cores instead", available_cores()))
}

fn default_num_threads() -> usize {
    env_num_threads().ok().flatten().unwrap_or_else(available_cores)
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

/// Replaces the pool with one of `num_threads` threads, from 1 to [`max_num_threads`].
/// Out-of-range counts are refused at once, before any thread is started.
pub fn set_num_threads(num_threads: usize) -> Result<(), OptimError> {
    if num_threads == 0 {
        return Err(OptimError::InvalidSetting("the number of threads must be at least 1".into()));
    }
    let max = max_num_threads();
    if num_threads > max {
        return Err(OptimError::InvalidSetting(format!(
            "the number of threads must be at most {max} (1024, or the number of cores if larger), got {num_threads}"
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_out_of_range_are_refused_before_starting_threads() {
        let too_many = max_num_threads() + 1;
        for n in [0, too_many, 20_000.max(too_many), usize::MAX] {
            let started = std::time::Instant::now();
            assert!(matches!(set_num_threads(n), Err(OptimError::InvalidSetting(_))), "{n}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{n} took {:?}", started.elapsed());
        }
        assert!(max_num_threads() >= THREAD_LIMIT.max(available_cores()));
    }

    #[test]
    fn environment_values() {
        assert_eq!(parse_num_threads_env(None, 1024), Ok(None));
        assert_eq!(parse_num_threads_env(Some("  "), 1024), Ok(None));
        assert_eq!(parse_num_threads_env(Some(" 7 "), 1024), Ok(Some(7)));
        assert_eq!(parse_num_threads_env(Some("1024"), 1024), Ok(Some(1024)));
        for bad in [
            "0",
            "-3",
            "1025",
            "20000",
            "9223372036854775808",
            "1e3",
            "abc",
            "4 threads",
            "99999999999999999999999999999999999999999",
        ] {
            let message = parse_num_threads_env(Some(bad), 1024).unwrap_err();
            assert!(message.contains("not a whole number from 1 to 1024"), "{bad}: {message}");
        }
    }
}
