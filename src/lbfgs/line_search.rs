//! torch's strong-Wolfe line search with cubic interpolation, as a state
//! machine: [`StrongWolfe::start`] and [`StrongWolfe::resume`] return either a
//! step length to evaluate or the accepted point, so the caller (not the search)
//! runs the objective. The Wolfe tests themselves are in [`WolfeConditions`].
//!
//! Every scalar is an `f64`, as the Python floats of torch's `_strong_wolfe`.
//! The comparisons are written exactly as torch writes them.
//!
//! # Non-finite values
//! torch feeds a NaN or infinite loss or slope into its tests and cubic
//! interpolation, and ends wherever that leads. Here a trial with any
//! non-finite value is a failed trial, handled by the policy of
//! [`nonfinite`](super::nonfinite): it enters the bracket with an infinite loss
//! (so it is never accepted), and the next trial bisects towards the best
//! finite point. When every value is finite the search is torch's, branch for
//! branch and bit for bit.
//!
//! # Gradient slots
//! The search needs the gradients of up to three points at once (the origin or
//! the previous point, the bracket ends, the point being evaluated). It does not
//! hold vectors: it names one of [`GRADIENT_SLOTS`] buffers owned by the caller
//! for every evaluation and reports which slot holds the accepted point's
//! gradient. Moving a point from one role to another moves its slot number, never
//! its data.

use super::nonfinite::{FAILED_LOSS, finite_or, is_failed_trial, retreat};

/// Gradient buffers the caller provides.
pub const GRADIENT_SLOTS: usize = 3;

/// The two strong-Wolfe tests along a direction with initial slope `gtd0 < 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WolfeConditions {
    /// Sufficient-decrease constant (torch: 1e-4).
    pub c1: f64,
    /// Curvature constant (torch: 0.9).
    pub c2: f64,
}

impl Default for WolfeConditions {
    fn default() -> Self {
        WolfeConditions { c1: 1e-4, c2: 0.9 }
    }
}

impl WolfeConditions {
    /// The loss at step `t` is above the sufficient-decrease line
    /// `f0 + c1·t·gtd0` (false for a NaN loss, as in torch).
    #[inline]
    pub fn above_armijo_line(&self, f0: f64, gtd0: f64, t: f64, f: f64) -> bool {
        f > f0 + self.c1 * t * gtd0
    }

    /// The slope at the point is flat enough: `|gtd| ≤ −c2·gtd0`.
    #[inline]
    pub fn curvature_holds(&self, gtd0: f64, gtd: f64) -> bool {
        gtd.abs() <= -self.c2 * gtd0
    }
}

/// Python's `max(a, b)`: `a` unless `b > a`.
#[inline]
fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// Python's `min(a, b)`: `a` unless `b < a`.
#[inline]
fn py_min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

/// Minimizer of the cubic through `(x1, f1)` and `(x2, f2)` with slopes `g1`,
/// `g2`, clamped to `bounds` (default: the interval between the points). When
/// the cubic has no minimizer, the middle of the bounds.
pub fn cubic_interpolate(x1: f64, f1: f64, g1: f64, x2: f64, f2: f64, g2: f64, bounds: Option<(f64, f64)>) -> f64 {
    let (lower, upper) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        py_min(py_max(min_pos, lower), upper)
    } else {
        (lower + upper) / 2.0
    }
}

/// An evaluated point on the search line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    t: f64,
    f: f64,
    gtd: f64,
    slot: usize,
}

impl Point {
    /// A trial whose loss or slope was not finite (entered with [`FAILED_LOSS`]).
    fn failed(&self) -> bool {
        self.f == FAILED_LOSS
    }
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Search {
    /// Evaluate the objective and its gradient at `x + t·d`, write the gradient
    /// into buffer `slot`, then call [`StrongWolfe::resume`].
    Evaluate { t: f64, slot: usize },
    /// The search is over.
    Done(Accepted),
}

/// The point a finished search accepted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accepted {
    pub t: f64,
    pub loss: f64,
    /// The gradient buffer holding the gradient at `t` (possibly the origin's).
    pub slot: usize,
    /// Objective evaluations the search made.
    pub evals: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    /// Growing the step until an interval is known to contain a Wolfe point.
    Bracketing,
    /// Shrinking that interval.
    Zoom,
}

/// torch's `_strong_wolfe` as a resumable search.
#[derive(Clone, Debug)]
pub struct StrongWolfe {
    conditions: WolfeConditions,
    tolerance_change: f64,
    phase: Phase,
    f0: f64,
    gtd0: f64,
    d_norm: f64,
    max_ls: usize,
    origin_slot: usize,
    ls_iter: usize,
    evals: usize,
    /// Step and gradient slot of the evaluation in flight.
    pending_t: f64,
    pending_slot: usize,
    /// Bracketing: the previous point.
    prev: Point,
    bracket: [Point; 2],
    /// 1 when bracketing found a Wolfe point outright.
    bracket_len: usize,
    low: usize,
    high: usize,
    done: bool,
    insufficient_progress: bool,
}

impl Default for StrongWolfe {
    fn default() -> Self {
        StrongWolfe::new(WolfeConditions::default(), 1e-9)
    }
}

const NO_POINT: Point = Point { t: 0.0, f: 0.0, gtd: 0.0, slot: 0 };

impl StrongWolfe {
    /// A search with these conditions; `tolerance_change` stops the zoom once
    /// the bracket moves the point by less than it (torch: 1e-9).
    pub fn new(conditions: WolfeConditions, tolerance_change: f64) -> Self {
        StrongWolfe {
            conditions,
            tolerance_change,
            phase: Phase::Idle,
            f0: 0.0,
            gtd0: 0.0,
            d_norm: 0.0,
            max_ls: 0,
            origin_slot: 0,
            ls_iter: 0,
            evals: 0,
            pending_t: 0.0,
            pending_slot: 0,
            prev: NO_POINT,
            bracket: [NO_POINT; 2],
            bracket_len: 0,
            low: 0,
            high: 1,
            done: false,
            insufficient_progress: false,
        }
    }

    /// Starts a search from the point with loss `f0` and slope `gtd0` (gradient
    /// in buffer `origin_slot`) along a direction whose largest element is
    /// `d_norm`, with first trial step `t`. At most `max_ls` evaluations follow
    /// the first one. Always asks for an evaluation at `t`.
    pub fn start(&mut self, t: f64, f0: f64, gtd0: f64, origin_slot: usize, d_norm: f64, max_ls: usize) -> Search {
        assert!(origin_slot < GRADIENT_SLOTS, "gradient slot out of range");
        self.phase = Phase::Bracketing;
        self.f0 = f0;
        self.gtd0 = gtd0;
        self.d_norm = d_norm;
        self.max_ls = max_ls;
        self.origin_slot = origin_slot;
        self.ls_iter = 0;
        self.evals = 0;
        self.prev = Point { t: 0.0, f: f0, gtd: gtd0, slot: origin_slot };
        self.bracket_len = 0;
        self.done = false;
        self.insufficient_progress = false;
        self.evaluate(t, &[origin_slot])
    }

    /// Whether a search is in progress.
    pub fn is_active(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Abandons the search in progress (the objective failed).
    pub fn cancel(&mut self) {
        self.phase = Phase::Idle;
    }

    /// The step length of the evaluation in flight.
    pub fn pending_t(&self) -> f64 {
        self.pending_t
    }

    /// The gradient slot of the evaluation in flight.
    pub fn pending_slot(&self) -> usize {
        self.pending_slot
    }

    /// Continues with the loss `f` and slope `gtd` (gradient·direction) of the
    /// point requested last, whose gradient is now in the requested slot. A
    /// non-finite `f` or `gtd` makes the point a failed trial.
    ///
    /// # Panics
    /// If no search is in progress.
    pub fn resume(&mut self, f: f64, gtd: f64) -> Search {
        self.evals += 1;
        let (f, gtd) = if is_failed_trial(f, gtd) { (FAILED_LOSS, f64::NAN) } else { (f, gtd) };
        let new = Point { t: self.pending_t, f, gtd, slot: self.pending_slot };
        match self.phase {
            Phase::Bracketing => self.bracketing_step(new),
            Phase::Zoom => {
                self.zoom_update(new);
                self.zoom_step()
            }
            Phase::Idle => panic!("StrongWolfe::resume without a search in progress"),
        }
    }

    fn evaluate(&mut self, t: f64, busy: &[usize]) -> Search {
        let slot =
            (0..GRADIENT_SLOTS).find(|slot| !busy.contains(slot)).expect("three gradient slots always leave one free");
        self.pending_t = t;
        self.pending_slot = slot;
        Search::Evaluate { t, slot }
    }

    fn bracketing_step(&mut self, new: Point) -> Search {
        let (c, f0, gtd0) = (self.conditions, self.f0, self.gtd0);
        if self.ls_iter < self.max_ls {
            if c.above_armijo_line(f0, gtd0, new.t, new.f) || (self.ls_iter > 1 && new.f >= self.prev.f) {
                return self.begin_zoom([self.prev, new], false);
            }
            if c.curvature_holds(gtd0, new.gtd) {
                self.bracket = [new, new];
                self.bracket_len = 1;
                return self.begin_zoom([new, new], true);
            }
            if new.gtd >= 0.0 {
                return self.begin_zoom([self.prev, new], false);
            }
            // Extrapolate: the minimum lies beyond `new`.
            let min_step = new.t + 0.01 * (new.t - self.prev.t);
            let max_step = new.t * 10.0;
            let t = cubic_interpolate(
                self.prev.t,
                self.prev.f,
                self.prev.gtd,
                new.t,
                new.f,
                new.gtd,
                Some((min_step, max_step)),
            );
            // Only an overflow inside the cubic gets here with a non-finite t.
            let t = finite_or(t, min_step);
            self.prev = new;
            self.ls_iter += 1;
            return self.evaluate(t, &[self.origin_slot, new.slot]);
        }
        // Out of evaluations: fall back to [0, t]; the zoom loop will not run.
        let origin = Point { t: 0.0, f: f0, gtd: f64::NAN, slot: self.origin_slot };
        self.begin_zoom([origin, new], false)
    }

    fn begin_zoom(&mut self, bracket: [Point; 2], done: bool) -> Search {
        self.phase = Phase::Zoom;
        self.bracket = bracket;
        if !done {
            self.bracket_len = 2;
        }
        self.done = done;
        self.insufficient_progress = false;
        self.sort_bracket();
        self.zoom_step()
    }

    fn sort_bracket(&mut self) {
        let last = self.bracket_len.max(1) - 1;
        (self.low, self.high) = if self.bracket[0].f <= self.bracket[last].f { (0, 1) } else { (1, 0) };
    }

    fn zoom_step(&mut self) -> Search {
        if self.done || self.ls_iter >= self.max_ls {
            return self.finish();
        }
        let [b0, b1] = self.bracket;
        if (b1.t - b0.t).abs() * self.d_norm < self.tolerance_change {
            return self.finish();
        }
        if b0.failed() || b1.failed() {
            // Nothing to interpolate: back off towards the finite end.
            let (finite, failed) = if b1.failed() { (b0, b1) } else { (b1, b0) };
            self.insufficient_progress = false;
            self.ls_iter += 1;
            return self.evaluate(retreat(finite.t, failed.t), &[b0.slot, b1.slot]);
        }
        let t = cubic_interpolate(b0.t, b0.f, b0.gtd, b1.t, b1.f, b1.gtd, None);
        let mut t = finite_or(t, 0.5 * (b0.t + b1.t));

        // Keep the trial away from the ends: near an end twice in a row (or
        // outside the bracket), move it to 10% of the width inside the nearer end.
        let (top, bottom) = (py_max(b0.t, b1.t), py_min(b0.t, b1.t));
        let eps = 0.1 * (top - bottom);
        if py_min(top - t, t - bottom) < eps {
            if self.insufficient_progress || t >= top || t <= bottom {
                t = if (t - top).abs() < (t - bottom).abs() { top - eps } else { bottom + eps };
                self.insufficient_progress = false;
            } else {
                self.insufficient_progress = true;
            }
        } else {
            self.insufficient_progress = false;
        }
        self.ls_iter += 1;
        self.evaluate(t, &[b0.slot, b1.slot])
    }

    fn zoom_update(&mut self, new: Point) {
        let c = self.conditions;
        let (low, high) = (self.low, self.high);
        if c.above_armijo_line(self.f0, self.gtd0, new.t, new.f) || new.f >= self.bracket[low].f {
            self.bracket[high] = new;
            self.sort_bracket();
        } else {
            if c.curvature_holds(self.gtd0, new.gtd) {
                self.done = true;
            } else if new.gtd * (self.bracket[high].t - self.bracket[low].t) >= 0.0 {
                self.bracket[high] = self.bracket[low];
            }
            self.bracket[low] = new;
        }
    }

    fn finish(&mut self) -> Search {
        self.phase = Phase::Idle;
        let best = self.bracket[self.low];
        Search::Done(Accepted { t: best.t, loss: best.f, slot: best.slot, evals: self.evals })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search on a 1-D function `phi(t)` with derivative `dphi(t)`,
    /// checking that the search never names a slot that holds a live gradient.
    fn run(phi: impl Fn(f64) -> f64, dphi: impl Fn(f64) -> f64, t0: f64, max_ls: usize) -> (Accepted, Vec<f64>) {
        let mut search = StrongWolfe::default();
        // What each slot holds: the t whose slope was written there.
        let mut slots = [f64::NAN; GRADIENT_SLOTS];
        slots[1] = 0.0;
        let mut trials = Vec::new();
        let mut next = search.start(t0, phi(0.0), dphi(0.0), 1, 1.0, max_ls);
        loop {
            match next {
                Search::Evaluate { t, slot } => {
                    trials.push(t);
                    slots[slot] = t;
                    next = search.resume(phi(t), dphi(t));
                }
                Search::Done(accepted) => {
                    assert_eq!(slots[accepted.slot], accepted.t, "slot does not hold the accepted point");
                    return (accepted, trials);
                }
            }
        }
    }

    #[test]
    fn cubic_interpolation_finds_the_minimum_of_a_cubic() {
        // f(x) = x³ − 3x has its local minimum at 1.
        let f = |x: f64| x * x * x - 3.0 * x;
        let g = |x: f64| 3.0 * x * x - 3.0;
        let x = cubic_interpolate(0.0, f(0.0), g(0.0), 2.0, f(2.0), g(2.0), None);
        assert!((x - 1.0).abs() < 1e-12);
        // Clamped to the bounds, and the midpoint when there is no minimizer.
        assert_eq!(cubic_interpolate(0.0, f(0.0), g(0.0), 2.0, f(2.0), g(2.0), Some((1.5, 3.0))), 1.5);
        assert_eq!(cubic_interpolate(0.0, 0.0, 2.0, 1.0, 4.0 / 3.0, 2.0, Some((2.0, 4.0))), 3.0);
    }

    #[test]
    fn accepts_the_first_step_when_it_is_already_a_wolfe_point() {
        // phi(t) = (t − 1)²: slope 0 at t = 1.
        let (accepted, trials) = run(|t| (t - 1.0) * (t - 1.0), |t| 2.0 * (t - 1.0), 1.0, 25);
        assert_eq!(trials, vec![1.0]);
        assert_eq!(accepted, Accepted { t: 1.0, loss: 0.0, slot: accepted.slot, evals: 1 });
    }

    #[test]
    fn extrapolates_then_zooms_to_a_strong_wolfe_point() {
        // Minimum at t = 30; the first trial is far too short.
        let phi = |t: f64| (t - 30.0).powi(2) + 0.1 * (t / 7.0).sin();
        let dphi = |t: f64| 2.0 * (t - 30.0) + 0.1 / 7.0 * (t / 7.0).cos();
        let (accepted, trials) = run(phi, dphi, 0.5, 25);
        assert!(trials.len() >= 2 && accepted.t > 0.5);
        let c = WolfeConditions::default();
        assert!(!c.above_armijo_line(phi(0.0), dphi(0.0), accepted.t, accepted.loss));
        assert!(c.curvature_holds(dphi(0.0), dphi(accepted.t)));
        assert_eq!(accepted.evals, trials.len());
    }

    #[test]
    fn zooms_into_a_bracket_after_overshooting() {
        let phi = |t: f64| (t - 0.3).powi(2) * (1.0 + t * t);
        let dphi = |t: f64| 2.0 * (t - 0.3) * (1.0 + t * t) + (t - 0.3).powi(2) * 2.0 * t;
        let (accepted, _) = run(phi, dphi, 5.0, 25);
        let c = WolfeConditions::default();
        assert!(accepted.t > 0.0 && accepted.t < 1.0);
        assert!(c.curvature_holds(dphi(0.0), dphi(accepted.t)));
    }

    #[test]
    fn respects_the_evaluation_budget() {
        let phi = |t: f64| -t; // never satisfies curvature, always decreasing
        let dphi = |_t: f64| -1.0;
        for max_ls in [0, 1, 3] {
            let (accepted, trials) = run(phi, dphi, 1.0, max_ls);
            assert_eq!(trials.len(), max_ls + 1);
            assert_eq!(accepted.evals, max_ls + 1);
            // [0, t] bracket: the lower loss wins, here the last trial.
            assert_eq!(accepted.t, *trials.last().unwrap());
        }
        // With no budget and a worse trial, the origin (t = 0, its own slot) wins.
        let (accepted, _) = run(|t| t, |_| -1.0, 1.0, 0);
        assert_eq!((accepted.t, accepted.slot), (0.0, 1));
    }

    #[test]
    fn a_failed_trial_is_never_accepted_and_shortens_the_step() {
        // Undefined beyond t = 2 (like log of a negative number); minimum at 1.5.
        let phi = |t: f64| if t > 2.0 { f64::NAN } else { (t - 1.5).powi(2) };
        let dphi = |t: f64| if t > 2.0 { f64::NAN } else { 2.0 * (t - 1.5) };
        for t0 in [10.0, 1e6, 2.5] {
            let (accepted, trials) = run(phi, dphi, t0, 25);
            assert!(accepted.loss.is_finite() && accepted.t > 0.0 && accepted.t <= 2.0, "{t0}: {accepted:?}");
            let c = WolfeConditions::default();
            assert!(!c.above_armijo_line(phi(0.0), dphi(0.0), accepted.t, accepted.loss));
            assert!(c.curvature_holds(dphi(0.0), dphi(accepted.t)), "{t0}: {accepted:?} {trials:?}");
            // Each failure halves the distance from the best finite point.
            assert_eq!(trials[1], retreat(0.0, t0));
        }
        // An infinite loss and an infinite slope fail the same way.
        let (accepted, _) = run(|t| if t > 2.0 { f64::INFINITY } else { (t - 1.5).powi(2) }, dphi, 10.0, 25);
        assert!(accepted.t > 0.0 && accepted.t <= 2.0);
        let (accepted, _) = run(phi, |t| if t > 2.0 { f64::NEG_INFINITY } else { 2.0 * (t - 1.5) }, 10.0, 25);
        assert!(accepted.t > 0.0 && accepted.t <= 2.0);
    }

    #[test]
    fn when_every_trial_fails_the_origin_is_kept() {
        let (accepted, trials) = run(|t| if t > 0.0 { f64::NAN } else { 1.0 }, |_| -1.0, 1.0, 25);
        assert_eq!((accepted.t, accepted.loss, accepted.slot), (0.0, 1.0, 1));
        assert_eq!(trials.len(), 26);
        // Also when the budget ends right after the first (failed) trial.
        let (accepted, trials) = run(|t| if t > 0.5 { f64::NAN } else { -t }, |_| -1.0, 1.0, 0);
        assert_eq!((accepted.t, trials.len()), (0.0, 1));
    }

    #[test]
    fn extrapolation_stops_at_a_failed_trial() {
        // Decreasing up to t = 40, undefined beyond: the search grows the step,
        // overshoots into NaN, then settles between the last finite trial and it.
        let phi = |t: f64| if t > 40.0 { f64::NAN } else { (t - 30.0).powi(2) };
        let dphi = |t: f64| if t > 40.0 { f64::NAN } else { 2.0 * (t - 30.0) };
        let (accepted, _) = run(phi, dphi, 0.5, 25);
        assert!(accepted.loss.is_finite() && accepted.t > 0.5 && accepted.t <= 40.0, "{accepted:?}");
    }
}
