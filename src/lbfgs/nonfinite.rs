//! What a line search does with a trial point whose loss or slope is not finite.
//!
//! Objectives are often undefined outside a domain (`log x` for `x < 0`,
//! overflow far from the data) and return NaN or ±inf there. A line search that
//! feeds such values into its tests and interpolations (torch's `_strong_wolfe`
//! does) extrapolates with NaN and ends wherever the arithmetic lands, e.g. at
//! `x = −6.8e184` with a NaN loss. The policy here, in three functions that any
//! line search can apply to its own bracket:
//!
//! 1. [`is_failed_trial`]: a trial whose loss or directional derivative
//!    `gᵀd` is NaN or ±inf has *failed*. (`gᵀd` is non-finite whenever any
//!    gradient element is, so one test covers the whole gradient.)
//! 2. [`FAILED_LOSS`]: a failed trial enters the search as a point with loss
//!    `+∞`: it violates sufficient decrease, so it closes the bracket from
//!    above and can never become the best point. The point the search returns
//!    is therefore always one with a finite loss and gradient: the origin if
//!    nothing better was found.
//! 3. [`retreat`]: while an end of the bracket is a failed trial, its values
//!    are meaningless for interpolation; the next trial is the midpoint between
//!    it and the best finite point (bisection: each failure halves the step
//!    beyond the last finite point, so a domain boundary is found to within
//!    `2⁻ᵏ` of the overshoot in `k` evaluations). A non-finite interpolated
//!    step (overflow inside the cubic) is replaced the same way
//!    ([`finite_or`]).
//!
//! When every value is finite none of this changes anything: the search takes
//! exactly torch's branches and numbers.

/// The loss a failed trial enters the search with.
pub const FAILED_LOSS: f64 = f64::INFINITY;

/// Whether a trial with loss `f` and slope `gtd` failed (see the module docs).
#[inline]
pub fn is_failed_trial(f: f64, gtd: f64) -> bool {
    !(f.is_finite() && gtd.is_finite())
}

/// The next step length when the bracket's end at `failed_t` is a failed
/// trial and `finite_t` is the best finite point: their midpoint.
#[inline]
pub fn retreat(finite_t: f64, failed_t: f64) -> f64 {
    finite_t + 0.5 * (failed_t - finite_t)
}

/// `t`, or `fallback` if `t` is not a finite step length.
#[inline]
pub fn finite_or(t: f64, fallback: f64) -> f64 {
    if t.is_finite() { t } else { fallback }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_trials_are_those_with_any_non_finite_value() {
        assert!(!is_failed_trial(1.0, -2.0));
        assert!(!is_failed_trial(-1e308, 1e308));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(is_failed_trial(bad, 0.0));
            assert!(is_failed_trial(0.0, bad));
        }
    }

    #[test]
    fn retreat_halves_the_distance_to_the_finite_point() {
        assert_eq!(retreat(0.0, 1.0), 0.5);
        assert_eq!(retreat(2.0, 1.0), 1.5);
        assert_eq!(finite_or(f64::NAN, 3.0), 3.0);
        assert_eq!(finite_or(2.0, 3.0), 2.0);
    }
}
