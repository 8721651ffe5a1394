//! L-BFGS-B as a state machine that never calls the objective itself.
//!
//! The caller owns the objective (in rustoptim, the user's Python function).
//! It calls [`Lbfgsb::start`] and then answers each [`Request`]:
//!
//! - `Evaluate`: evaluate `f` and `∇f` at [`Lbfgsb::point`], write the
//!   gradient into [`Lbfgsb::gradient_mut`], call [`Lbfgsb::evaluated`].
//! - `Ready` (the start point is evaluated) and `Iterate` (a new iterate was
//!   accepted; [`Lbfgsb::x`], [`Lbfgsb::f`] hold it): call
//!   [`Lbfgsb::proceed`], or [`Lbfgsb::stop`] to end the run there.
//! - `Done`: [`Lbfgsb::termination`] says why; `x`, `f`, `gradient` are the result.
//!
//! [`run`] is that loop with scipy's iteration and evaluation limits.
//!
//! # One iteration
//! From the iterate `x` with gradient `g`:
//! 1. the generalized Cauchy point `x_cp` ([`cauchy`](super::cauchy));
//! 2. subspace minimization over the variables free at `x_cp`
//!    ([`subspace`](super::subspace)), giving `z`. Without bounds no variable
//!    is ever held, and steps 1–2 give `z = x − B⁻¹g`: computed directly by
//!    the two-loop recursion ([`LimitedMemory::two_loop`]);
//! 3. a Moré–Thuente line search ([`line_search`](super::line_search)) on
//!    `x + α·d`, `d = z − x`, with `ftol = 1e-3`, `gtol = 0.9`, `xtol = 0.1`,
//!    `α ≤ ` the longest step inside the box. The first step of a run (and
//!    after the memory was dropped) is `α = min(1/‖d‖, 1)` with bounds or
//!    `1/‖d‖` without (1 if every variable has two bounds); later ones `α = 1`;
//! 4. stop if `‖P(x − g) − x‖∞ ≤ gtol` or `(f_old − f) ≤ ftol·max(|f_old|, |f|, 1)`;
//! 5. store `s = x − x_old`, `y = g − g_old` unless `sᵀy ≤ ε·yᵀy` (skipped).
//!
//! Every trial point is clamped to the box, so the objective is never
//! evaluated outside it. A trial with a non-finite value or gradient shortens
//! the step (see the line search) and never becomes an iterate. When the line
//! search fails (no acceptable step within `maxls` trials, or `d` is not a
//! descent direction) the iterate stays where it was, the memory is dropped
//! and the iteration is retried along the projected steepest descent; only
//! if that fails too does the run end. A matrix that lost positive
//! definiteness also drops the memory.
//!
//! All storage is allocated by [`Lbfgsb::new`]; iterations allocate nothing.

use super::bounds::Bounds;
use super::cauchy::{CauchyWork, Status, cauchy_point};
use super::compact::LimitedMemory;
use super::dense::NotPositiveDefinite;
use super::error::{LbfgsbError, allocate};
use super::line_search::{MoreThuente, NotADescentDirection, Outcome, Tolerances};
use super::subspace::{SubspaceWork, subspace_minimize};
use super::vectors::{all_finite, axpy_into, difference, dot, dots, pair_and_curvature};

/// The longest line-search step without bounds (L-BFGS-B's constant).
const UNBOUNDED_MAX_STEP: f64 = 1e10;

/// Settings with scipy's names and defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// `maxcor`: correction pairs kept (`m`).
    pub memory: usize,
    /// `ftol`: stop when `(f_old − f)/max(|f_old|, |f|, 1) ≤ ftol`.
    pub ftol: f64,
    /// `gtol`: stop when `‖P(x − g) − x‖∞ ≤ gtol`.
    pub gtol: f64,
    /// `maxls`: evaluations per line search.
    pub max_line_search: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { memory: 10, ftol: 1e7 * f64::EPSILON, gtol: 1e-5, max_line_search: 20 }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), LbfgsbError> {
        let invalid = |message: String| Err(LbfgsbError::InvalidSetting(message));
        if self.memory < 1 {
            return invalid(format!("maxcor must be at least 1, got {}", self.memory));
        }
        if self.max_line_search < 1 {
            return invalid(format!("maxls must be at least 1, got {}", self.max_line_search));
        }
        if self.ftol.is_nan() || self.ftol < 0.0 {
            return invalid(format!("ftol must be non-negative, got {}", self.ftol));
        }
        if self.gtol.is_nan() {
            return invalid("gtol must not be NaN".to_string());
        }
        Ok(())
    }
}

/// What the caller does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Evaluate,
    /// The start point is evaluated: call `proceed` (or `stop`).
    Ready,
    /// A new iterate was accepted: call `proceed` (or `stop`).
    Iterate,
    Done,
}

/// Why a line search (and its retry along steepest descent) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearchFailure {
    /// `gᵀd ≥ 0`: the direction does not descend (rounding, or a wrong gradient).
    NotDescent,
    /// `maxls` trials without an acceptable step.
    TooManyTrials,
    /// Every trial was non-finite down to steps too small to differ.
    NoFiniteStep,
}

/// Why the caller ended the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxIterations,
    MaxEvaluations,
    Callback,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// `‖P(x − g) − x‖∞ ≤ gtol`.
    ProjectedGradient,
    /// The relative reduction of `f` fell to `ftol`.
    RelativeReduction,
    LineSearchFailed(LineSearchFailure),
    /// The objective or its gradient is not finite at the start point.
    NonFiniteStart,
    Stopped(StopReason),
}

impl Termination {
    pub fn converged(self) -> bool {
        matches!(self, Termination::ProjectedGradient | Termination::RelativeReduction)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Created,
    /// Waiting for the evaluation of the start point.
    Initial,
    Ready,
    LineSearch,
    Iterated,
    Done,
}

pub struct Lbfgsb {
    config: Config,
    bounds: Bounds,
    memory: LimitedMemory,
    /// The accepted iterate, its value and gradient.
    x: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    /// The point to evaluate and its gradient; after an iterate is accepted,
    /// the previous iterate and gradient (the buffers are swapped, not copied).
    trial: Vec<f64>,
    trial_g: Vec<f64>,
    /// Cauchy point, then subspace minimizer (empty without bounds, as are
    /// `status`, `free`, `active` and the work of `cauchy` and `subspace`).
    z: Vec<f64>,
    /// Search direction `z − x`.
    d: Vec<f64>,
    status: Vec<Status>,
    free: Vec<usize>,
    active: Vec<usize>,
    cauchy: CauchyWork,
    subspace: SubspaceWork,
    /// The two-loop recursion's `αᵢ` (problems without bounds).
    alpha: Vec<f64>,
    search: Option<MoreThuente>,
    /// The step being evaluated.
    stp: f64,
    trials: usize,
    f_before: f64,
    projected_gradient: f64,
    /// The next line search is the first of the run or follows a memory reset.
    fresh: bool,
    phase: Phase,
    termination: Option<Termination>,
    iterations: usize,
    evaluations: u64,
    restarts: usize,
    skipped_updates: usize,
}

impl Lbfgsb {
    /// A solver for `bounds.len()` variables. All storage is allocated here
    /// (fallibly: an [`LbfgsbError::Allocation`] names what did not fit).
    pub fn new(bounds: Bounds, config: Config) -> Result<Self, LbfgsbError> {
        config.validate()?;
        let n = bounds.len();
        let m = config.memory;
        // The Cauchy point and the subspace minimization only run with bounds
        // (see `search_direction`): without, their storage is left empty, so a
        // run does not pay for touching pages it never uses.
        let n_box = if bounds.is_constrained() { n } else { 0 };
        let mut free = Vec::new();
        let mut active = Vec::new();
        let index_bytes = n_box.saturating_mul(std::mem::size_of::<usize>());
        free.try_reserve_exact(n_box)
            .map_err(|_| LbfgsbError::Allocation { what: "the free set", bytes: index_bytes })?;
        active
            .try_reserve_exact(n_box)
            .map_err(|_| LbfgsbError::Allocation { what: "the active set", bytes: index_bytes })?;
        Ok(Lbfgsb {
            config,
            memory: LimitedMemory::try_new_with(n, m, bounds.is_constrained())?,
            x: allocate("the iterate", n)?,
            f: f64::NAN,
            g: allocate("the gradient", n)?,
            trial: allocate("the trial point", n)?,
            trial_g: allocate("the trial gradient", n)?,
            z: allocate("the subspace point", n_box)?,
            d: allocate("the search direction", n)?,
            status: allocate("the variable status", n_box)?,
            free,
            active,
            cauchy: CauchyWork::try_new(n_box, m)?,
            subspace: SubspaceWork::try_new(n_box, m)?,
            alpha: allocate("the two-loop coefficients", m)?,
            bounds,
            search: None,
            stp: 0.0,
            trials: 0,
            f_before: f64::NAN,
            projected_gradient: f64::NAN,
            fresh: true,
            phase: Phase::Created,
            termination: None,
            iterations: 0,
            evaluations: 0,
            restarts: 0,
            skipped_updates: 0,
        })
    }

    /// Starts from `x0` (finite, one entry per variable), projected into the box.
    pub fn start(&mut self, x0: &[f64]) -> Result<Request, LbfgsbError> {
        if x0.len() != self.x.len() {
            return Err(LbfgsbError::LengthMismatch { what: "x0", expected: self.x.len(), got: x0.len() });
        }
        if let Some((index, &value)) = x0.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(LbfgsbError::NonFiniteStart { index, value });
        }
        self.trial.copy_from_slice(x0);
        self.bounds.project(&mut self.trial);
        self.x.copy_from_slice(&self.trial);
        self.memory.reset();
        // `status`, `free` and `active` are set by every `search_direction`.
        self.status.fill(Status::Unbounded);
        self.free.clear();
        self.active.clear();
        self.search = None;
        self.fresh = true;
        self.termination = None;
        self.iterations = 0;
        self.evaluations = 0;
        self.restarts = 0;
        self.skipped_updates = 0;
        self.phase = Phase::Initial;
        Ok(Request::Evaluate)
    }

    /// The point to evaluate (inside the box).
    pub fn point(&self) -> &[f64] {
        &self.trial
    }

    /// Where the gradient at [`point`](Self::point) goes.
    pub fn gradient_mut(&mut self) -> &mut [f64] {
        &mut self.trial_g
    }

    /// The point and the gradient buffer at once (for a caller that computes
    /// the gradient from the point).
    pub fn point_and_gradient_mut(&mut self) -> (&[f64], &mut [f64]) {
        (&self.trial, &mut self.trial_g)
    }

    /// The current iterate, value and gradient (the result once `Done`).
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    pub fn f(&self) -> f64 {
        self.f
    }

    pub fn gradient(&self) -> &[f64] {
        &self.g
    }

    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    pub fn memory(&self) -> &LimitedMemory {
        &self.memory
    }

    /// `‖P(x − g) − x‖∞` at the current iterate.
    pub fn projected_gradient_norm(&self) -> f64 {
        self.projected_gradient
    }

    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// Evaluations of value and gradient so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Times the memory was dropped after a failed line search.
    pub fn restarts(&self) -> usize {
        self.restarts
    }

    pub fn skipped_updates(&self) -> usize {
        self.skipped_updates
    }

    pub fn termination(&self) -> Option<Termination> {
        self.termination
    }

    /// Ends the run at the current iterate (after `Ready` or `Iterate`).
    pub fn stop(&mut self, reason: StopReason) {
        self.finish(Termination::Stopped(reason));
    }

    fn finish(&mut self, termination: Termination) -> Request {
        if matches!(termination, Termination::LineSearchFailed(_)) {
            // The retry along steepest descent did not move x: the pairs
            // dropped for it still describe the curvature at x, and are what
            // the caller sees of the memory (scipy's `hess_inv`).
            self.memory.undo_reset();
        }
        self.termination = Some(termination);
        self.phase = Phase::Done;
        self.search = None;
        Request::Done
    }

    /// Continues with `f` at [`point`](Self::point), whose gradient was
    /// written into [`gradient_mut`](Self::gradient_mut).
    pub fn evaluated(&mut self, f: f64) -> Request {
        match self.phase {
            Phase::Initial => {
                self.evaluations += 1;
                std::mem::swap(&mut self.x, &mut self.trial);
                std::mem::swap(&mut self.g, &mut self.trial_g);
                self.f = f;
                if !f.is_finite() || !all_finite(&self.g) {
                    self.projected_gradient = f64::NAN;
                    return self.finish(Termination::NonFiniteStart);
                }
                self.projected_gradient = self.bounds.projected_gradient_norm(&self.x, &self.g);
                if self.projected_gradient <= self.config.gtol {
                    return self.finish(Termination::ProjectedGradient);
                }
                self.phase = Phase::Ready;
                Request::Ready
            }
            Phase::LineSearch => {
                self.evaluations += 1;
                self.trials += 1;
                let search = self.search.as_mut().expect("a line search is running");
                // A NaN or infinite gradient component makes the slope non-finite
                // (the direction is finite; inf·0 is NaN), so one pass checks both.
                let slope = dot(&self.trial_g, &self.d);
                let outcome = if f.is_finite() && slope.is_finite() {
                    search.resume(self.stp, f, slope)
                } else {
                    search.resume_non_finite(self.stp)
                };
                match outcome {
                    Outcome::Evaluate(next) if self.trials < self.config.max_line_search => {
                        self.stp = next;
                        self.set_trial_point();
                        Request::Evaluate
                    }
                    Outcome::Evaluate(_) => self.line_search_failed(LineSearchFailure::TooManyTrials),
                    Outcome::Stalled => self.line_search_failed(LineSearchFailure::NoFiniteStep),
                    Outcome::Converged | Outcome::Warning(_) => self.accept(f),
                }
            }
            _ => {
                debug_assert!(false, "evaluated() called in phase {:?}", self.phase);
                Request::Done
            }
        }
    }

    /// Continues after `Ready` or `Iterate`.
    pub fn proceed(&mut self) -> Request {
        match self.phase {
            Phase::Ready => self.begin_iteration(),
            Phase::Iterated => {
                if self.projected_gradient <= self.config.gtol {
                    return self.finish(Termination::ProjectedGradient);
                }
                let scale = self.f_before.abs().max(self.f.abs()).max(1.0);
                if self.f_before - self.f <= self.config.ftol * scale {
                    return self.finish(Termination::RelativeReduction);
                }
                self.update_memory();
                self.fresh = false;
                self.begin_iteration()
            }
            Phase::Done => Request::Done,
            phase => {
                debug_assert!(false, "proceed() called in phase {phase:?}");
                Request::Done
            }
        }
    }

    /// Takes the trial point as the new iterate.
    fn accept(&mut self, f: f64) -> Request {
        self.iterations += 1;
        self.search = None;
        std::mem::swap(&mut self.x, &mut self.trial);
        std::mem::swap(&mut self.g, &mut self.trial_g);
        self.f_before = self.f;
        self.f = f;
        self.projected_gradient = self.bounds.projected_gradient_norm(&self.x, &self.g);
        self.phase = Phase::Iterated;
        Request::Iterate
    }

    /// Adds `s = x − x_old`, `y = g − g_old` to the memory unless the
    /// curvature `sᵀy` is not safely positive (`sᵀy ≤ ε·yᵀy`).
    fn update_memory(&mut self) {
        // After `accept`, `trial` and `trial_g` hold the previous iterate.
        // The pair is computed in the memory's staging slot: kept by `commit`
        // without a copy, or left there to be overwritten.
        let (s, y) = self.memory.staging_mut();
        let [sy, yy] = pair_and_curvature(s, y, [&self.x, &self.trial], [&self.g, &self.trial_g]);
        if sy.is_nan() || sy <= f64::EPSILON * yy {
            self.skipped_updates += 1;
            return;
        }
        if self.memory.commit(sy, yy).is_err() {
            self.memory.reset();
        }
    }

    /// Computes the search direction from the current iterate and starts the
    /// line search along it.
    fn begin_iteration(&mut self) -> Request {
        loop {
            if self.search_direction().is_err() {
                // The compact matrices lost positive definiteness.
                self.memory.reset();
                continue;
            }
            match self.start_line_search() {
                Ok(()) => {
                    self.phase = Phase::LineSearch;
                    return Request::Evaluate;
                }
                Err(NotADescentDirection) => {
                    if self.memory.is_empty() {
                        return self.finish(Termination::LineSearchFailed(LineSearchFailure::NotDescent));
                    }
                    self.drop_memory();
                }
            }
        }
    }

    /// `d ← z − x` with `z` the subspace minimizer from the Cauchy point.
    fn search_direction(&mut self) -> Result<(), NotPositiveDefinite> {
        if !self.bounds.is_constrained() {
            // Without bounds no variable is ever held at a bound: the Cauchy
            // point only shortens −g/θ, and the subspace step from it is the
            // whole quasi-Newton step −B⁻¹g, which the two-loop recursion
            // gives without forming the compact matrices.
            self.memory.two_loop(&self.g, &mut self.d, &mut self.alpha);
            return Ok(());
        }
        cauchy_point(&self.x, &self.g, &self.bounds, &self.memory, &mut self.status, &mut self.z, &mut self.cauchy);
        self.free.clear();
        self.active.clear();
        for (i, s) in self.status.iter().enumerate() {
            if s.is_free() { self.free.push(i) } else { self.active.push(i) }
        }
        if !self.memory.is_empty() && !self.free.is_empty() {
            subspace_minimize(
                &self.x,
                &self.g,
                &self.bounds,
                &self.memory,
                &self.status,
                &self.free,
                &self.active,
                &self.cauchy.c,
                &mut self.z,
                &mut self.subspace,
            )?;
        }
        difference(&mut self.d, &self.z, &self.x);
        Ok(())
    }

    fn start_line_search(&mut self) -> Result<(), NotADescentDirection> {
        let [d_squared, slope] = dots([(&self.d, &self.d), (&self.g, &self.d)]);
        let d_norm = d_squared.sqrt();
        let max_step = if !self.bounds.is_constrained() {
            UNBOUNDED_MAX_STEP
        } else if self.fresh {
            // d ends at the Cauchy point computed with B = I: go no further.
            1.0
        } else {
            self.bounds.max_step(&self.x, &self.d, UNBOUNDED_MAX_STEP)
        };
        let first = if self.fresh && !self.bounds.is_boxed() { (1.0 / d_norm).min(max_step) } else { 1.0 };
        let (search, stp) = MoreThuente::start(Tolerances::default(), self.f, slope, first, 0.0, max_step)?;
        self.search = Some(search);
        self.stp = stp;
        self.trials = 0;
        self.set_trial_point();
        Ok(())
    }

    /// `trial ← P(x + stp·d)` (exactly `z` at `stp = 1` with bounds).
    fn set_trial_point(&mut self) {
        if self.stp == 1.0 && self.bounds.is_constrained() {
            self.trial.copy_from_slice(&self.z);
        } else {
            axpy_into(&mut self.trial, self.stp, &self.d, &self.x);
        }
        self.bounds.project(&mut self.trial);
    }

    /// The iterate is still the last accepted one (line-search trials never
    /// overwrite it). Retry along steepest descent with an empty memory, or
    /// give up if the memory was already empty.
    fn line_search_failed(&mut self, failure: LineSearchFailure) -> Request {
        self.search = None;
        if self.memory.is_empty() {
            return self.finish(Termination::LineSearchFailed(failure));
        }
        self.drop_memory();
        self.begin_iteration()
    }

    fn drop_memory(&mut self) {
        self.memory.reset();
        self.restarts += 1;
        self.fresh = true;
    }
}

/// scipy's limits on a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `maxiter`: stop once this many iterations are done (0: evaluate the
    /// start point only).
    pub max_iterations: usize,
    /// `maxfun`: stop after an iteration that brought the evaluation count
    /// above this (scipy's rule: checked once per iteration, so a run may
    /// exceed it by one iteration's evaluations).
    pub max_evaluations: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_iterations: 15000, max_evaluations: 15000 }
    }
}

/// Runs `solver` from `x0` to the end. `evaluate(x, g)` returns `f(x)` after
/// writing `∇f(x)` into `g`, and how many objective evaluations that took
/// (1, or more with finite differences); `on_iterate` sees every new
/// iterate and returns `true` to stop. An error from either (or a bad `x0`)
/// ends the run at once and is returned. On success returns the objective
/// evaluations used; the result is in `solver`.
pub fn run<E: From<LbfgsbError>>(
    solver: &mut Lbfgsb,
    x0: &[f64],
    limits: Limits,
    mut evaluate: impl FnMut(&[f64], &mut [f64]) -> Result<(f64, u64), E>,
    mut on_iterate: impl FnMut(&Lbfgsb) -> Result<bool, E>,
) -> Result<u64, E> {
    let mut request = solver.start(x0)?;
    let mut used = 0u64;
    loop {
        request = match request {
            Request::Evaluate => {
                let (point, gradient) = solver.point_and_gradient_mut();
                let (f, count) = evaluate(point, gradient)?;
                used += count;
                solver.evaluated(f)
            }
            Request::Ready => {
                if limits.max_iterations == 0 {
                    solver.stop(StopReason::MaxIterations);
                    Request::Done
                } else {
                    solver.proceed()
                }
            }
            Request::Iterate => {
                if on_iterate(solver)? {
                    solver.stop(StopReason::Callback);
                    Request::Done
                } else if solver.iterations() >= limits.max_iterations {
                    solver.stop(StopReason::MaxIterations);
                    Request::Done
                } else if used > limits.max_evaluations {
                    solver.stop(StopReason::MaxEvaluations);
                    Request::Done
                } else {
                    solver.proceed()
                }
            }
            Request::Done => return Ok(used),
        };
    }
}
