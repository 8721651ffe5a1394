//! Forward-difference steps, chosen as `scipy.optimize.minimize` chooses them
//! for L-BFGS-B (`scipy.optimize._numdiff`), so that `jac=None` and
//! `jac='2-point'` evaluate the objective at the same points as scipy.
//!
//! - [`StepRule::Absolute`] (`jac=None`, option `eps`): `h_i = eps_i`.
//! - [`StepRule::Relative`] (`jac='2-point'`): `h_i = √ε·sign(x_i)·max(1, |x_i|)`,
//!   or `rel_i·sign(x_i)·|x_i|` with `finite_diff_rel_step`.
//!
//! A step that does not change `x_i` (`(x_i + h_i) − x_i = 0`) falls back to
//! `√ε·sign(x_i)·max(1, |x_i|)`; `sign(0) = +1`. Then the step is fitted to
//! the bounds: flipped when `x + h` leaves the box but `−h` fits, else cut to
//! the larger distance to a bound. The objective is never evaluated outside
//! the box. A fixed variable (`lower == upper`) gets `h_i = 0`: it has no
//! difference to take (scipy removes such variables before differencing).

use super::bounds::Bounds;

/// `√ε` of `f64`, the relative step of two-point differences.
pub const RELATIVE_STEP: f64 = 1.4901161193847656e-08;

/// How the raw step of each variable is chosen before fitting it to the bounds.
#[derive(Clone, Copy, Debug)]
pub enum StepRule<'a> {
    /// `h_i = steps[i]` (one entry: the same step for every variable).
    Absolute(&'a [f64]),
    /// `h_i = √ε·sign(x_i)·max(1, |x_i|)`, or with `Some(rel)`, `rel_i·sign(x_i)·|x_i|`
    /// (one entry: the same for every variable).
    Relative(Option<&'a [f64]>),
}

fn entry(values: &[f64], i: usize) -> f64 {
    if values.len() == 1 { values[0] } else { values[i] }
}

fn sign(x: f64) -> f64 {
    if x >= 0.0 { 1.0 } else { -1.0 }
}

/// Writes the forward-difference step of every variable at `x` into `h`.
pub fn forward_steps(x: &[f64], bounds: &Bounds, rule: StepRule<'_>, h: &mut [f64]) {
    for i in 0..x.len() {
        let xi = x[i];
        let fallback = RELATIVE_STEP * sign(xi) * xi.abs().max(1.0);
        let raw = match rule {
            StepRule::Absolute(steps) => entry(steps, i),
            StepRule::Relative(None) => fallback,
            StepRule::Relative(Some(rel)) => entry(rel, i) * sign(xi) * xi.abs(),
        };
        let raw = if (xi + raw) - xi == 0.0 { fallback } else { raw };
        h[i] = fit_to_bounds(xi, raw, bounds.lower()[i], bounds.upper()[i]);
    }
}

/// scipy's one-sided adjustment of a step `h` at `x` to `[lower, upper]`.
fn fit_to_bounds(x: f64, h: f64, lower: f64, upper: f64) -> f64 {
    if lower == f64::NEG_INFINITY && upper == f64::INFINITY {
        return h;
    }
    let below = x - lower;
    let above = upper - x;
    let fits = h.abs() <= below.max(above);
    if fits {
        let target = x + h;
        if target < lower || target > upper { -h } else { h }
    } else if above >= below {
        above
    } else {
        -below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn relative_steps_follow_scipy() {
        let bounds = Bounds::unbounded(4).unwrap();
        let x = [0.0, -3.0, 0.5, 1e300];
        let mut h = [0.0; 4];
        forward_steps(&x, &bounds, StepRule::Relative(None), &mut h);
        assert_eq!(h[0], RELATIVE_STEP);
        assert_eq!(h[1], -3.0 * RELATIVE_STEP);
        assert_eq!(h[2], RELATIVE_STEP);
        assert_eq!(h[3], 1e300 * RELATIVE_STEP);
        // A relative step that vanishes at x = 0 falls back.
        forward_steps(&x, &bounds, StepRule::Relative(Some(&[1e-4])), &mut h);
        assert_eq!(h[0], RELATIVE_STEP);
        assert_eq!(h[1], -(1e-4 * 3.0));
    }

    #[test]
    fn absolute_steps_fall_back_when_they_vanish() {
        let bounds = Bounds::unbounded(2).unwrap();
        let mut h = [0.0; 2];
        forward_steps(&[1.0, 1e10], &bounds, StepRule::Absolute(&[1e-8]), &mut h);
        assert_eq!(h[0], 1e-8);
        // 1e10 + 1e-8 == 1e10: the relative step is used instead.
        assert_eq!(h[1], 1e10 * RELATIVE_STEP);
    }

    #[test]
    fn steps_stay_inside_the_bounds() {
        let bounds = Bounds::new(vec![0.0, 0.0, 0.0, 2.0], vec![1.0, 1e-9, INF, 2.0]).unwrap();
        let mut h = [0.0; 4];
        forward_steps(&[1.0, 0.0, 0.0, 2.0], &bounds, StepRule::Absolute(&[1e-8]), &mut h);
        assert_eq!(h[0], -1e-8); // flipped at the upper bound
        assert_eq!(h[1], 1e-9); // cut to the room there is
        assert_eq!(h[2], 1e-8);
        assert_eq!(h[3], 0.0); // fixed
    }
}
