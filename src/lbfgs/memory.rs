//! How much memory the L-BFGS core may ask for, and asking for it fallibly.
//!
//! Sizes come from users and from state files (`history_size`, the number of
//! parameters), so every buffer is allocated with `try_reserve`: a request the
//! allocator refuses becomes [`OptimError::OutOfMemory`] (a `MemoryError` in
//! Python) instead of aborting the process.
//!
//! # The largest `history_size`
//! The history grows one pair at a time (see [`History`](super::History)), so a
//! large `history_size` costs nothing until pairs arrive, as in torch. A
//! `history_size` whose *full* history could never be addressed is still a
//! mistake (`2**62` was a typo or a stand-in for infinity): a full history holds
//! `history_size + 1` pairs (one stages the next candidate) of two vectors of
//! `n` elements, plus `ρ_i` and torch's `α_i` per pair. [`max_history_size`] is
//! the largest `history_size` for which that fits in `isize::MAX` bytes, the
//! largest object Rust (and any C allocator) can address on the platform:
//! above it, even computing the size overflows. It accepts every history that
//! could ever be stored, whatever the machine, and refuses only what no machine
//! can hold.

use crate::element::Element;
use crate::error::OptimError;

/// Bytes of one stored pair of `dim`-element vectors of `F`, with its `ρ` and `α`
/// (torch's `al` entry; counted as 8 bytes like a Python reference).
fn bytes_per_pair<F>(dim: usize) -> u128 {
    let item = std::mem::size_of::<F>() as u128;
    2 * dim as u128 * item + item + 8
}

/// The largest `history_size` for `dim` parameters of `F` (see the module docs).
pub fn max_history_size<F>(dim: usize) -> usize {
    let pairs = isize::MAX as u128 / bytes_per_pair::<F>(dim);
    // `history_size + 1` pairs must fit.
    usize::try_from(pairs.saturating_sub(1)).unwrap_or(usize::MAX)
}

/// Refuses a `history_size` that is 0 or larger than [`max_history_size`].
pub fn check_history_size<F>(history_size: usize, dim: usize) -> Result<(), OptimError> {
    if history_size < 1 {
        return Err(OptimError::InvalidSetting(format!("history_size must be at least 1, got {history_size}")));
    }
    let limit = max_history_size::<F>(dim);
    if history_size > limit {
        return Err(OptimError::InvalidSetting(format!(
            "history_size={history_size} is too large: a full history of that many pairs of {dim}-element \
             vectors could never be addressed (at most {limit} for these params)"
        )));
    }
    Ok(())
}

/// A vector of `len` zeros, allocated fallibly.
pub fn try_zeroed<F: Element>(len: usize, what: &'static str) -> Result<Vec<F>, OptimError> {
    let mut values = Vec::new();
    try_grow(&mut values, len, what)?;
    values.resize(len, F::ZERO);
    Ok(values)
}

/// Makes room for `additional` more elements in `values`, fallibly.
pub fn try_grow<T>(values: &mut Vec<T>, additional: usize, what: &'static str) -> Result<(), OptimError> {
    values.try_reserve_exact(additional).map_err(|cause| OptimError::OutOfMemory {
        what,
        bytes: additional.saturating_mul(std::mem::size_of::<T>()),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_admits_every_storable_history_and_refuses_the_rest() {
        // 10 float64: 176 bytes a pair, so about 5e16 pairs.
        assert_eq!(max_history_size::<f64>(10), (isize::MAX as usize) / 176 - 1);
        assert!(check_history_size::<f64>(1 << 40, 10).is_ok());
        assert!(check_history_size::<f64>(1 << 62, 10).is_err());
        assert!(check_history_size::<f64>(0, 10).is_err());
        assert!(check_history_size::<f32>(usize::MAX, 0).is_err());
        assert!(check_history_size::<f32>(2000, 5_000_000).is_ok());
        // So many parameters that not even one pair fits.
        assert_eq!(max_history_size::<f64>(usize::MAX / 4), 0);
    }

    #[test]
    fn impossible_allocations_fail_cleanly() {
        let error = try_zeroed::<f64>(usize::MAX / 4, "a test vector").unwrap_err();
        assert!(matches!(error, OptimError::OutOfMemory { what: "a test vector", .. }), "{error:?}");
        assert!(error.to_string().starts_with("cannot allocate "));
        assert_eq!(try_zeroed::<f32>(3, "x").unwrap(), vec![0.0; 3]);
    }
}
