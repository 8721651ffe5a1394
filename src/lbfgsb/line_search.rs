//! The line search of Moré and Thuente (1994), "Line search algorithms with
//! guaranteed sufficient decrease", ACM TOMS 20(3): MINPACK-2's `dcsrch` and
//! `dcstep`, as a state machine that returns the next step to evaluate.
//!
//! Along a descent direction, with `φ(α)` the objective at step `α` and
//! `φ′(α)` its slope, it looks for a step satisfying the strong Wolfe
//! conditions
//!
//! ```text
//! φ(α) ≤ φ(0) + ftol·α·φ′(0)        (sufficient decrease)
//! |φ′(α)| ≤ gtol·|φ′(0)|            (curvature)
//! ```
//!
//! by keeping an interval `[stx, sty]` (not ordered) that contains such steps:
//! `stx` is the best step so far (least `ψ(α) = φ(α) − φ(0) − ftol·α·φ′(0)`
//! while no step has `ψ ≤ 0` and `φ′ ≥ 0`, then least `φ`), and each trial comes
//! from safeguarded cubic or quadratic interpolation ([`next_step`]).
//!
//! # Non-finite trials
//! MINPACK assumes `φ` is defined everywhere. Here a trial whose value or
//! slope is NaN or infinite ([`MoreThuente::resume_non_finite`]) is treated as
//! a point of infinitely high value: it becomes the far end of the interval
//! and the next trial is halfway back to `stx`, the best finite step. The
//! search thus never accepts a non-finite point and always moves back toward
//! one it has seen.

/// Why a search stopped without satisfying both Wolfe conditions. The last
/// evaluated step is still the one to take (it satisfies sufficient decrease
/// or is the best step found).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The interval could not shrink any more (rounding errors).
    RoundingErrors,
    /// The interval is shorter than `xtol` relative to its end.
    IntervalTooSmall,
    /// The step is at its upper limit and still decreasing.
    StepAtMaximum,
    /// The step is at its lower limit.
    StepAtMinimum,
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Evaluate `φ` and `φ′` at this step and call [`MoreThuente::resume`].
    Evaluate(f64),
    /// Both Wolfe conditions hold at the step just evaluated.
    Converged,
    /// Stop at the step just evaluated (see [`Warning`]).
    Warning(Warning),
    /// Every trial so far was non-finite and halving toward the best finite
    /// step no longer changes the step: there is nowhere left to go.
    Stalled,
}

/// The search was started along a direction that does not descend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotADescentDirection;

/// The search's constants (L-BFGS-B uses `ftol = 1e-3`, `gtol = 0.9`, `xtol = 0.1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub ftol: f64,
    pub gtol: f64,
    pub xtol: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances { ftol: 1e-3, gtol: 0.9, xtol: 0.1 }
    }
}

/// How far an unbracketed trial may extrapolate beyond the last one:
/// `α + [1.1, 4]·(α − stx)`.
const EXTRAPOLATE_MIN: f64 = 1.1;
const EXTRAPOLATE_MAX: f64 = 4.0;
/// A bracketed interval that did not shrink below this fraction of its
/// length two trials ago is bisected instead of interpolated.
const SHRINK: f64 = 0.66;

/// The interval `[stx, sty]` with the value and slope at each end, and the trial.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Interval {
    stx: f64,
    fx: f64,
    gx: f64,
    sty: f64,
    fy: f64,
    gy: f64,
    /// `fy`, `gy` are finite (false after a non-finite trial became `sty`).
    y_finite: bool,
    bracketed: bool,
}

#[derive(Clone, Debug)]
pub struct MoreThuente {
    tol: Tolerances,
    stpmin: f64,
    stpmax: f64,
    f0: f64,
    g0: f64,
    /// `ftol·φ′(0)`, the slope of the sufficient-decrease line.
    gtest: f64,
    /// Stage 2 starts once some step has `ψ ≤ 0` and `φ′ ≥ 0`.
    stage_two: bool,
    interval: Interval,
    /// Limits for the next trial.
    lo: f64,
    hi: f64,
    width: f64,
    width_before: f64,
}

impl MoreThuente {
    /// Starts a search from `φ(0) = f0`, `φ′(0) = g0 < 0`, with steps in
    /// `[stpmin, stpmax]`; the first trial is `stp` (clamped into that range).
    pub fn start(
        tol: Tolerances,
        f0: f64,
        g0: f64,
        stp: f64,
        stpmin: f64,
        stpmax: f64,
    ) -> Result<(Self, f64), NotADescentDirection> {
        if g0.is_nan() || g0 >= 0.0 {
            return Err(NotADescentDirection);
        }
        let stp = stp.max(stpmin).min(stpmax);
        let search = MoreThuente {
            tol,
            stpmin,
            stpmax,
            f0,
            g0,
            gtest: tol.ftol * g0,
            stage_two: false,
            interval: Interval { stx: 0.0, fx: f0, gx: g0, sty: 0.0, fy: f0, gy: g0, y_finite: true, bracketed: false },
            lo: 0.0,
            hi: stp + EXTRAPOLATE_MAX * stp,
            width: stpmax - stpmin,
            width_before: 2.0 * (stpmax - stpmin),
        };
        Ok((search, stp))
    }

    /// The best step so far (`stx`).
    pub fn best_step(&self) -> f64 {
        self.interval.stx
    }

    /// Continues after evaluating `φ(stp) = f`, `φ′(stp) = g` (both finite).
    pub fn resume(&mut self, stp: f64, f: f64, g: f64) -> Outcome {
        let tol = self.tol;
        let ftest = self.f0 + stp * self.gtest;
        if !self.stage_two && f <= ftest && g >= 0.0 {
            self.stage_two = true;
        }
        // Stopping tests, in MINPACK's order (a later one overrides an earlier one).
        let bracketed = self.interval.bracketed;
        let mut stop = None;
        if bracketed && (stp <= self.lo || stp >= self.hi) {
            stop = Some(Outcome::Warning(Warning::RoundingErrors));
        }
        if bracketed && self.hi - self.lo <= tol.xtol * self.hi {
            stop = Some(Outcome::Warning(Warning::IntervalTooSmall));
        }
        if stp == self.stpmax && f <= ftest && g <= self.gtest {
            stop = Some(Outcome::Warning(Warning::StepAtMaximum));
        }
        if stp == self.stpmin && (f > ftest || g >= self.gtest) {
            stop = Some(Outcome::Warning(Warning::StepAtMinimum));
        }
        if f <= ftest && g.abs() <= tol.gtol * (-self.g0) {
            stop = Some(Outcome::Converged);
        }
        if let Some(outcome) = stop {
            return outcome;
        }

        // In stage 1, while the value decreased but not enough, interpolate the
        // auxiliary function ψ (whose slope at stx is negative) instead of φ.
        let mut next = if !self.stage_two && f <= self.interval.fx && f > ftest {
            let gtest = self.gtest;
            let iv = self.interval;
            let mut modified = Interval {
                fx: iv.fx - iv.stx * gtest,
                gx: iv.gx - gtest,
                fy: iv.fy - iv.sty * gtest,
                gy: iv.gy - gtest,
                ..iv
            };
            let next = next_step(&mut modified, stp, f - stp * gtest, g - gtest, self.lo, self.hi);
            self.interval = Interval {
                fx: modified.fx + modified.stx * gtest,
                gx: modified.gx + gtest,
                fy: modified.fy + modified.sty * gtest,
                gy: modified.gy + gtest,
                ..modified
            };
            next
        } else {
            next_step(&mut self.interval, stp, f, g, self.lo, self.hi)
        };

        let iv = self.interval;
        if iv.bracketed {
            // Bisect when two trials did not shrink the interval enough.
            if (iv.sty - iv.stx).abs() >= SHRINK * self.width_before {
                next = iv.stx + 0.5 * (iv.sty - iv.stx);
            }
            self.width_before = self.width;
            self.width = (iv.sty - iv.stx).abs();
        }
        self.set_limits(next);
        self.next_trial(next)
    }

    /// Continues after the evaluation at `stp` gave a non-finite value or
    /// slope: `stp` becomes the far end of the interval and the next trial is
    /// halfway back to the best finite step.
    pub fn resume_non_finite(&mut self, stp: f64) -> Outcome {
        let iv = &mut self.interval;
        iv.sty = stp;
        iv.fy = f64::INFINITY;
        iv.gy = f64::NAN;
        iv.y_finite = false;
        iv.bracketed = true;
        let next = iv.stx + 0.5 * (stp - iv.stx);
        if next == iv.stx || next == stp {
            return Outcome::Stalled;
        }
        self.width_before = self.width;
        self.width = (stp - iv.stx).abs();
        self.lo = iv.stx.min(stp);
        self.hi = iv.stx.max(stp);
        Outcome::Evaluate(next)
    }

    fn set_limits(&mut self, next: f64) {
        let iv = &self.interval;
        if iv.bracketed {
            self.lo = iv.stx.min(iv.sty);
            self.hi = iv.stx.max(iv.sty);
        } else {
            self.lo = next + EXTRAPOLATE_MIN * (next - iv.stx);
            self.hi = next + EXTRAPOLATE_MAX * (next - iv.stx);
        }
    }

    fn next_trial(&self, next: f64) -> Outcome {
        let mut stp = next.max(self.stpmin).min(self.stpmax);
        // If no further progress is possible, the last trial is the best step.
        if self.interval.bracketed && (stp <= self.lo || stp >= self.hi || self.hi - self.lo <= self.tol.xtol * self.hi)
        {
            stp = self.interval.stx;
        }
        Outcome::Evaluate(stp)
    }
}

/// MINPACK-2's `dcstep`: from the interval and a new trial `(stp, fp, dp)`,
/// computes the next trial step (safeguarded to `[stpmin, stpmax]` when not
/// bracketed) and updates the interval. `stx`'s slope must point toward
/// `stp` (`gx·(stp − stx) < 0`).
fn next_step(iv: &mut Interval, stp: f64, fp: f64, dp: f64, stpmin: f64, stpmax: f64) -> f64 {
    let (stx, fx, dx) = (iv.stx, iv.fx, iv.gx);
    let sgnd = dp * (dx / dx.abs());

    // The minimizer of the cubic interpolating (stx, fx, dx) and (stp, fp, dp),
    // as stx + r·(stp − stx) — or, from stp, toward stx. `gamma_sign`: the
    // root whose step points the right way.
    let theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp;
    let s = theta.abs().max(dx.abs()).max(dp.abs());

    let next = if fp > fx {
        // Case 1: a higher value, the minimum is bracketed. Take the cubic step
        // if it is closer to stx than the quadratic one, else their average.
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
        if stp < stx {
            gamma = -gamma;
        }
        let p = (gamma - dx) + theta;
        let q = ((gamma - dx) + gamma) + dp;
        let cubic = stx + (p / q) * (stp - stx);
        let quadratic = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx);
        iv.bracketed = true;
        if (cubic - stx).abs() < (quadratic - stx).abs() { cubic } else { cubic + (quadratic - cubic) / 2.0 }
    } else if sgnd < 0.0 {
        // Case 2: a lower value and slopes of opposite sign: bracketed. Take
        // the cubic step if it is farther from stp than the secant step.
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).sqrt();
        if stp > stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = ((gamma - dp) + gamma) + dx;
        let cubic = stp + (p / q) * (stx - stp);
        let secant = stp + (dp / (dp - dx)) * (stx - stp);
        iv.bracketed = true;
        if (cubic - stp).abs() > (secant - stp).abs() { cubic } else { secant }
    } else if dp.abs() < dx.abs() {
        // Case 3: a lower value, slopes of the same sign, the slope's magnitude
        // decreases. The cubic step is used only if the cubic tends to
        // infinity in the direction of the step or its minimum is beyond stp.
        let mut gamma = s * ((theta / s).powi(2) - (dx / s) * (dp / s)).max(0.0).sqrt();
        if stp > stx {
            gamma = -gamma;
        }
        let p = (gamma - dp) + theta;
        let q = (gamma + (dx - dp)) + gamma;
        let r = p / q;
        let cubic = if r < 0.0 && gamma != 0.0 {
            stp + r * (stx - stp)
        } else if stp > stx {
            stpmax
        } else {
            stpmin
        };
        let secant = stp + (dp / (dp - dx)) * (stx - stp);
        if iv.bracketed {
            // Closer to stp of the two, and at most 0.66 of the way to sty.
            let step = if (cubic - stp).abs() < (secant - stp).abs() { cubic } else { secant };
            let limit = stp + SHRINK * (iv.sty - stp);
            if stp > stx { step.min(limit) } else { step.max(limit) }
        } else {
            let step = if (cubic - stp).abs() > (secant - stp).abs() { cubic } else { secant };
            step.min(stpmax).max(stpmin)
        }
    } else {
        // Case 4: a lower value, slopes of the same sign, the slope's magnitude
        // does not decrease. Bracketed: the cubic between stp and sty
        // (bisection if sty's values are not finite). Otherwise a limit.
        if iv.bracketed {
            if iv.y_finite {
                let (sty, fy, dy) = (iv.sty, iv.fy, iv.gy);
                let theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp;
                let s = theta.abs().max(dy.abs()).max(dp.abs());
                let mut gamma = s * ((theta / s).powi(2) - (dy / s) * (dp / s)).sqrt();
                if stp > sty {
                    gamma = -gamma;
                }
                let p = (gamma - dp) + theta;
                let q = ((gamma - dp) + gamma) + dy;
                stp + (p / q) * (sty - stp)
            } else {
                stp + 0.5 * (iv.sty - stp)
            }
        } else if stp > stx {
            stpmax
        } else {
            stpmin
        }
    };

    // Update the interval: stx stays the best step.
    if fp > fx {
        iv.sty = stp;
        iv.fy = fp;
        iv.gy = dp;
        iv.y_finite = true;
    } else {
        if sgnd < 0.0 {
            iv.sty = stx;
            iv.fy = fx;
            iv.gy = dx;
            iv.y_finite = true;
        }
        iv.stx = stp;
        iv.fx = fp;
        iv.gx = dp;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search on φ from φ(0), returns (step, φ′(step), evaluations, outcome).
    fn search(phi: impl Fn(f64) -> (f64, f64), stp0: f64, ftol: f64, gtol: f64) -> (f64, f64, usize, Outcome) {
        let (f0, g0) = phi(0.0);
        let tol = Tolerances { ftol, gtol, xtol: 1e-10 };
        let (mut ls, mut stp) = MoreThuente::start(tol, f0, g0, stp0, 0.0, 1e10).unwrap();
        let mut evaluations = 0;
        loop {
            let (f, g) = phi(stp);
            evaluations += 1;
            match ls.resume(stp, f, g) {
                Outcome::Evaluate(next) => stp = next,
                outcome => return (stp, g, evaluations, outcome),
            }
            assert!(evaluations < 100, "no convergence");
        }
    }

    fn phi1(a: f64) -> (f64, f64) {
        let b = 2.0;
        (-a / (a * a + b), (a * a - b) / (a * a + b).powi(2))
    }

    fn phi2(a: f64) -> (f64, f64) {
        let b = 0.004;
        ((a + b).powi(5) - 2.0 * (a + b).powi(4), 5.0 * (a + b).powi(4) - 8.0 * (a + b).powi(3))
    }

    fn phi3(a: f64) -> (f64, f64) {
        let (b, l) = (0.01, 39.0);
        let pi = std::f64::consts::PI;
        let (f0, g0) = if a <= 1.0 - b {
            (1.0 - a, -1.0)
        } else if a >= 1.0 + b {
            (a - 1.0, 1.0)
        } else {
            ((a - 1.0).powi(2) / (2.0 * b) + b / 2.0, (a - 1.0) / b)
        };
        let c = 2.0 * (1.0 - b) / (l * pi);
        (f0 + c * (l * pi * a / 2.0).sin(), g0 + (1.0 - b) * (l * pi * a / 2.0).cos())
    }

    fn yanai(b1: f64, b2: f64) -> impl Fn(f64) -> (f64, f64) {
        let gamma = |b: f64| (1.0 + b * b).sqrt() - b;
        move |a: f64| {
            let (g1, g2) = (gamma(b1), gamma(b2));
            let r1 = ((1.0 - a).powi(2) + b2 * b2).sqrt();
            let r2 = (a * a + b1 * b1).sqrt();
            (g1 * r1 + g2 * r2, -g1 * (1.0 - a) / r1 + g2 * a / r2)
        }
    }

    /// Tables 1–6 of Moré and Thuente (1994): for initial steps 1e-3, 1e-1,
    /// 1e1, 1e3, the number of evaluations and the final step (to the
    /// paper's two digits). Every search ends with both Wolfe conditions.
    #[test]
    fn more_thuente_paper_tables() {
        type Phi = Box<dyn Fn(f64) -> (f64, f64)>;
        // φ, ftol, gtol, and per initial step: (evaluations, final step).
        type Case = (Phi, f64, f64, [(usize, f64); 4]);
        let cases: Vec<Case> = vec![
            (Box::new(phi1), 1e-3, 1e-1, [(6, 1.4), (3, 1.4), (1, 10.0), (4, 37.0)]),
            (Box::new(phi2), 1e-1, 1e-1, [(12, 1.6), (8, 1.6), (8, 1.6), (11, 1.6)]),
            (Box::new(phi3), 1e-1, 1e-1, [(12, 1.0), (12, 1.0), (10, 1.0), (13, 1.0)]),
            (Box::new(yanai(1e-3, 1e-3)), 1e-3, 1e-3, [(4, 0.085), (1, 0.1), (3, 0.35), (4, 0.83)]),
            (Box::new(yanai(1e-2, 1e-3)), 1e-3, 1e-3, [(6, 0.075), (3, 0.078), (7, 0.073), (8, 0.076)]),
            (Box::new(yanai(1e-3, 1e-2)), 1e-3, 1e-3, [(13, 0.93), (11, 0.93), (8, 0.92), (11, 0.92)]),
        ];
        for (number, (phi, ftol, gtol, expected)) in cases.iter().enumerate() {
            for (stp0, (evaluations, step)) in [1e-3, 1e-1, 1e1, 1e3].into_iter().zip(expected) {
                let (stp, g, count, outcome) = search(phi, stp0, *ftol, *gtol);
                let (f0, g0) = phi(0.0);
                assert_eq!(outcome, Outcome::Converged, "function {} from {stp0}", number + 1);
                assert!(phi(stp).0 <= f0 + ftol * stp * g0);
                assert!(g.abs() <= gtol * g0.abs());
                assert_eq!(count, *evaluations, "function {} from {stp0}: step {stp}", number + 1);
                let digits = 10f64.powf(step.abs().log10().floor() - 1.0);
                assert!(
                    (stp - step).abs() <= digits * 0.51 + 1e-12,
                    "function {} from {stp0}: {stp} vs {step}",
                    number + 1
                );
            }
        }
    }

    #[test]
    fn refuses_an_ascent_direction() {
        assert_eq!(
            MoreThuente::start(Tolerances::default(), 0.0, 0.0, 1.0, 0.0, 10.0).unwrap_err(),
            NotADescentDirection
        );
        assert!(MoreThuente::start(Tolerances::default(), 0.0, f64::NAN, 1.0, 0.0, 10.0).is_err());
    }

    /// φ(α) = α − 2·log(1 + α·…) style: a function that is NaN beyond a point.
    /// The search halves back to finite values and converges there.
    #[test]
    fn non_finite_trials_shorten_the_step() {
        // φ(α) = (α − 1)² on α < 3, NaN beyond; first trial 100.
        let phi = |a: f64| if a < 3.0 { ((a - 1.0).powi(2), 2.0 * (a - 1.0)) } else { (f64::NAN, f64::NAN) };
        let (f0, g0) = phi(0.0);
        let (mut ls, mut stp) = MoreThuente::start(Tolerances::default(), f0, g0, 100.0, 0.0, 1e10).unwrap();
        let mut trials = Vec::new();
        let outcome = loop {
            trials.push(stp);
            let (f, g) = phi(stp);
            let outcome = if f.is_finite() && g.is_finite() { ls.resume(stp, f, g) } else { ls.resume_non_finite(stp) };
            match outcome {
                Outcome::Evaluate(next) => stp = next,
                other => break other,
            }
            assert!(trials.len() < 30);
        };
        assert_eq!(outcome, Outcome::Converged, "{trials:?}");
        assert!(stp < 3.0 && (stp - 1.0).abs() < 0.9, "{trials:?}");
        // Every trial after a non-finite one is below it.
        for w in trials.windows(2) {
            if w[0] >= 3.0 {
                assert!(w[1] < w[0]);
            }
        }
    }

    #[test]
    fn stalls_when_nothing_is_finite() {
        let (mut ls, mut stp) = MoreThuente::start(Tolerances::default(), 1.0, -1.0, 1.0, 0.0, 1e10).unwrap();
        for _ in 0..2000 {
            match ls.resume_non_finite(stp) {
                Outcome::Evaluate(next) => {
                    assert!(next < stp && next > 0.0);
                    stp = next;
                }
                Outcome::Stalled => return,
                other => panic!("{other:?}"),
            }
        }
        panic!("never stalled");
    }
}
