//! One `LBFGS.step(closure)` of torch, as a state machine that never calls the
//! objective itself.
//!
//! The caller owns the objective (in rustoptim, the user's Python closure) and
//! the parameters. It writes the current parameters into
//! [`Lbfgs::iterate_mut`], calls [`Lbfgs::begin`], and then loops:
//! evaluate the objective at the parameters, write the gradient into
//! [`Lbfgs::gradient_mut`], call [`Lbfgs::resume`] with the loss. `resume`
//! answers [`Request::Evaluate`] (write [`Lbfgs::point`] into the parameters,
//! then evaluate again) or [`Request::Done`] (write [`Lbfgs::point`] into the
//! parameters if [`Lbfgs::params_hold_point`] is false, and stop).
//!
//! The arithmetic, the counters and the stopping rules are those of
//! `torch.optim.LBFGS.step`: `func_evals` and `n_iter` are
//! cumulative, the steepest-descent first step and `t = min(1, 1/‖g‖₁)·lr`
//! happen only on the first iteration ever, a pair enters the history only if
//! `yᵀs > 1e-10`, the line search gets `max_eval − evaluations so far` trials
//! beyond its first and its own `tolerance_change` of 1e-9. Scalars torch keeps
//! as 0-dim tensors (`ys`, `ρ`, `H_diag`, `α`, `β`, `gᵀd`) are computed in the
//! element type; the loss and the line search's scalars are `f64`. With
//! `maximize` (torch 2.15) every loss and the gradient are negated as they
//! arrive: the step maximizes by minimizing `−f`, and `prev_loss` is `−f`.
//!
//! [`Lbfgs::new`] allocates the vectors of one iterate; the history grows as
//! pairs arrive (see [`History`]). Every allocation is fallible
//! ([`OptimError::OutOfMemory`]). Once the history is full an iteration
//! allocates nothing.
//!
//! # Non-finite losses and gradients
//! Where every value is finite the step is torch's, bit for bit. Beyond that:
//! - a step whose first evaluation has a non-finite loss or gradient ends at
//!   once, without moving (there is no finite point to move from);
//! - with the strong-Wolfe search, a trial point with a non-finite loss or
//!   gradient is a failed trial (see [`nonfinite`](super::nonfinite)): the step
//!   is shortened and such a point is never accepted;
//! - with a fixed step, the step length cannot shrink: when the loss or the
//!   gradient at a new iterate is not finite, the step ends at the previous
//!   iterate, as if the move had not been made (the parameters go back there).
//!
//! So a step never leaves the parameters at a point whose loss or gradient it
//! saw to be non-finite, unless the step started there.
//!
//! # Failure
//! If the objective fails, the caller calls [`Lbfgs::abort`] and writes
//! [`Lbfgs::point`] into the parameters if [`Lbfgs::params_hold_point`] is
//! false. The parameters are then the last accepted iterate (never a
//! line-search trial point), and the state is the one a `step` that stopped at
//! that iterate would have left: the next `step` continues from it. A failed
//! allocation ends the step the same way.

use super::history::History;
use super::line_search::{GRADIENT_SLOTS, Search, StrongWolfe, WolfeConditions};
use super::memory::{check_history_size, try_grow, try_zeroed};
use super::two_loop::two_loop;
use super::vector_ops::{
    axpy_into, axpy_into_max_abs, axpy_max_abs, curvature_pair, dot, max_abs, neg_into, scale, sum_abs,
};
use crate::element::Element;
use crate::error::OptimError;

/// A pair enters the history only if `yᵀs` exceeds this (torch's constant).
pub const CURVATURE_THRESHOLD: f64 = 1e-10;
/// The line search's own tolerance on the bracket width (torch does not pass
/// the group's `tolerance_change` to it).
pub const LINE_SEARCH_TOLERANCE_CHANGE: f64 = 1e-9;

/// How a step moves along the search direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearch {
    /// A fixed step `t` (torch's `line_search_fn=None`).
    Fixed,
    /// torch's strong-Wolfe search (`line_search_fn="strong_wolfe"`).
    StrongWolfe,
}

/// The param group's settings, read at every `step` like torch reads `group[...]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LbfgsConfig {
    pub lr: f64,
    pub max_iter: usize,
    pub max_eval: usize,
    pub tolerance_grad: f64,
    pub tolerance_change: f64,
    pub history_size: usize,
    pub line_search: LineSearch,
    /// Maximize the objective (torch 2.15): minimize `−f`.
    pub maximize: bool,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig {
            lr: 1.0,
            max_iter: 20,
            max_eval: 25,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search: LineSearch::Fixed,
            maximize: false,
        }
    }
}

impl LbfgsConfig {
    /// The checks that do not depend on the parameters. The tolerances may be
    /// any number but NaN: torch accepts negative ones (`tolerance_grad=-inf`
    /// makes every iteration run) and so does rustoptim.
    pub fn validate(&self) -> Result<(), OptimError> {
        let invalid = |message: String| Err(OptimError::InvalidSetting(message));
        if self.lr.is_nan() || self.lr < 0.0 {
            return invalid(format!("Invalid learning rate: {}", self.lr));
        }
        if self.max_iter < 1 {
            return invalid(format!("max_iter must be at least 1, got {}", self.max_iter));
        }
        if self.max_eval < 1 {
            return invalid(format!("max_eval must be at least 1, got {}", self.max_eval));
        }
        if self.history_size < 1 {
            return invalid(format!("history_size must be at least 1, got {}", self.history_size));
        }
        if self.tolerance_grad.is_nan() {
            return invalid("tolerance_grad must not be NaN".into());
        }
        if self.tolerance_change.is_nan() {
            return invalid("tolerance_change must not be NaN".into());
        }
        Ok(())
    }
}

/// What the caller does after [`Lbfgs::resume`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Write [`Lbfgs::point`] into the parameters, evaluate the objective there,
    /// write the gradient into [`Lbfgs::gradient_mut`], call `resume` again.
    Evaluate,
    /// The step is over. Write [`Lbfgs::point`] into the parameters unless
    /// [`Lbfgs::params_hold_point`].
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Between steps.
    Idle,
    /// Waiting for the evaluation at the start of a step.
    Initial,
    /// Fixed step: waiting for the evaluation at the new iterate (in `trial`).
    Reevaluate,
    /// Waiting for a line-search trial.
    LineSearch,
}

/// The part of the state that only exists once an iteration has run (torch's
/// keys `d`, `t`, `H_diag`, `prev_flat_grad`, `prev_loss` and the history).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scalars<F> {
    pub t: f64,
    pub h_diag: F,
    pub prev_loss: f64,
}

/// The L-BFGS optimizer state and the machinery of one step.
pub struct Lbfgs<F> {
    n: usize,
    // torch's persistent state.
    func_evals: u64,
    n_iter: u64,
    /// Whether `d`, `t`, `H_diag`, `prev_flat_grad`, `prev_loss` and the history exist.
    has_iterated: bool,
    d: Vec<F>,
    t: f64,
    h_diag: F,
    /// The gradient buffer holding torch's `prev_flat_grad` (the gradient at
    /// the start of the last iteration): a slot of `grads`, so that keeping it
    /// is a change of index, not a copy.
    prev_slot: usize,
    prev_loss: f64,
    history: History<F>,
    /// torch's `al`: the `α_i` of the last two-loop recursion; grows with the
    /// history (at least `history.len()` entries before each recursion).
    alpha: Vec<F>,
    /// Whether `al` exists (created by the first quasi-Newton iteration) and
    /// how many of its entries have been written.
    alpha_present: bool,
    alpha_written: usize,

    // One step's working state.
    config: LbfgsConfig,
    phase: Phase,
    /// The accepted iterate.
    x: Vec<F>,
    /// A point being evaluated: a line-search trial, or with a fixed step the
    /// next iterate, which replaces `x` once its loss and gradient are finite.
    trial: Vec<F>,
    /// [`GRADIENT_SLOTS`] gradient buffers; `grad_slot` holds the gradient at
    /// `x`. An evaluation never writes `prev_slot` (during a line search it is
    /// the search's origin, which the search only reads).
    grads: Vec<F>,
    grad_slot: usize,
    pending_slot: usize,
    /// `max |d·t|` of the last move, for the stopping test.
    step_max: F,
    loss: f64,
    current_evals: usize,
    iter_in_step: usize,
    search: StrongWolfe,
    /// Whether the caller's parameters equal `x`.
    params_hold_x: bool,
}

impl<F: Element> Lbfgs<F> {
    /// A fresh optimizer for `n` parameters that keeps up to `history_size`
    /// pairs (refused above [`max_history_size`](super::memory::max_history_size)).
    /// Allocates the vectors of one iterate (`6n` elements), fallibly; the
    /// history grows later, as pairs arrive.
    pub fn new(n: usize, history_size: usize) -> Result<Self, OptimError> {
        check_history_size::<F>(history_size, n)?;
        let vector = |what| try_zeroed::<F>(n, what);
        let slots = n.checked_mul(GRADIENT_SLOTS).ok_or_else(|| {
            OptimError::InvalidSetting(format!("{n} parameters are too many to address their gradients"))
        })?;
        Ok(Lbfgs {
            n,
            func_evals: 0,
            n_iter: 0,
            has_iterated: false,
            d: vector("the L-BFGS direction")?,
            t: 0.0,
            h_diag: F::ONE,
            prev_slot: 0,
            prev_loss: 0.0,
            history: History::new(n, history_size),
            alpha: Vec::new(),
            alpha_present: false,
            alpha_written: 0,
            config: LbfgsConfig { history_size, ..LbfgsConfig::default() },
            phase: Phase::Idle,
            x: vector("the L-BFGS iterate")?,
            trial: vector("the L-BFGS trial point")?,
            grads: try_zeroed(slots, "the L-BFGS gradients")?,
            grad_slot: 1,
            pending_slot: 1,
            step_max: F::ZERO,
            loss: 0.0,
            current_evals: 0,
            iter_in_step: 0,
            search: StrongWolfe::new(WolfeConditions::default(), LINE_SEARCH_TOLERANCE_CHANGE),
            params_hold_x: true,
        })
    }

    /// Number of parameters (elements of the flat vectors).
    pub fn dim(&self) -> usize {
        self.n
    }

    pub fn func_evals(&self) -> u64 {
        self.func_evals
    }

    pub fn n_iter(&self) -> u64 {
        self.n_iter
    }

    /// Whether a step is in progress.
    pub fn in_step(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// The flat parameters. Before [`begin`](Self::begin), the caller writes the
    /// current parameters here.
    pub fn iterate_mut(&mut self) -> &mut [F] {
        &mut self.x
    }

    /// Starts a step with `config`: the caller has written the parameters into
    /// [`iterate_mut`](Self::iterate_mut) and evaluates the objective there next.
    pub fn begin(&mut self, config: &LbfgsConfig) -> Result<(), OptimError> {
        config.validate()?;
        if self.in_step() {
            return Err(OptimError::InvalidSetting("an L-BFGS step is already in progress".into()));
        }
        if config.history_size != self.history.capacity() {
            // (The current capacity was checked when it was set.)
            check_history_size::<F>(config.history_size, self.n)?;
            self.history.set_capacity(config.history_size)?;
            self.alpha_written = self.alpha_written.min(config.history_size);
            self.alpha.truncate(config.history_size);
        }
        self.config = *config;
        self.phase = Phase::Initial;
        self.current_evals = 0;
        self.iter_in_step = 0;
        self.grad_slot = self.free_slot();
        self.pending_slot = self.grad_slot;
        self.params_hold_x = true;
        Ok(())
    }

    /// Where the caller's parameters must be: the point being evaluated during
    /// a step, the iterate otherwise. The caller writes it after every
    /// [`Request::Evaluate`].
    pub fn point(&self) -> &[F] {
        match self.phase {
            Phase::LineSearch | Phase::Reevaluate => &self.trial,
            Phase::Idle | Phase::Initial => &self.x,
        }
    }

    /// Whether the parameters already equal [`point`](Self::point) once the step
    /// is over (or aborted).
    pub fn params_hold_point(&self) -> bool {
        self.params_hold_x
    }

    /// The buffer for the gradient of the evaluation in flight.
    pub fn gradient_mut(&mut self) -> &mut [F] {
        let slot = self.pending_slot;
        &mut self.grads[slot * self.n..(slot + 1) * self.n]
    }

    /// A gradient slot that does not hold `prev_flat_grad`.
    fn free_slot(&self) -> usize {
        (self.prev_slot + 1) % GRADIENT_SLOTS
    }

    fn grad(&self, slot: usize) -> &[F] {
        &self.grads[slot * self.n..(slot + 1) * self.n]
    }

    /// `max |g|` of the gradient in `slot`, and whether it (with `loss`) is finite.
    fn grad_max(&self, slot: usize, loss: f64) -> (F, bool) {
        let largest = max_abs(self.grad(slot));
        // `max_abs` is NaN if any element is NaN and inf if any is infinite.
        (largest, loss.is_finite() && largest.to_f64().is_finite())
    }

    /// Continues the step with the loss of the evaluation in flight (its
    /// gradient already written into [`gradient_mut`](Self::gradient_mut)).
    pub fn resume(&mut self, loss: f64) -> Result<Request, OptimError> {
        if self.phase == Phase::Idle {
            return Err(OptimError::InvalidSetting("no L-BFGS step is in progress".into()));
        }
        self.func_evals += 1;
        self.current_evals += 1;
        let loss = if self.config.maximize {
            let pending = self.pending_slot * self.n..(self.pending_slot + 1) * self.n;
            scale(&mut self.grads[pending], -F::ONE);
            -loss
        } else {
            loss
        };
        match self.phase {
            Phase::Idle => unreachable!("checked above"),
            Phase::Initial => {
                self.loss = loss;
                let (largest, finite) = self.grad_max(self.grad_slot, loss);
                if !finite || largest <= F::from_f64(self.config.tolerance_grad) {
                    Ok(self.finish())
                } else {
                    self.iterate()
                }
            }
            Phase::Reevaluate => {
                let (largest, finite) = self.grad_max(self.pending_slot, loss);
                if !finite {
                    // Stay at the last finite iterate; the parameters go back there.
                    self.grad_slot = self.prev_slot;
                    self.params_hold_x = false;
                    return Ok(self.finish());
                }
                std::mem::swap(&mut self.x, &mut self.trial);
                self.params_hold_x = true;
                self.phase = Phase::Idle;
                self.loss = loss;
                self.after_move(largest <= F::from_f64(self.config.tolerance_grad))
            }
            Phase::LineSearch => {
                let gtd = dot(self.grad(self.pending_slot), &self.d).to_f64();
                match self.search.resume(loss, gtd) {
                    Search::Evaluate { t, slot } => Ok(self.request_trial(t, slot)),
                    Search::Done(accepted) => {
                        self.loss = accepted.loss;
                        self.grad_slot = accepted.slot;
                        self.t = accepted.t;
                        self.step_max = axpy_max_abs(F::from_f64(self.t), &self.d, &mut self.x);
                        self.params_hold_x = false;
                        self.phase = Phase::Idle;
                        let opt_cond = max_abs(self.grad(self.grad_slot)) <= F::from_f64(self.config.tolerance_grad);
                        self.after_move(opt_cond)
                    }
                }
            }
        }
    }

    /// Ends the step in progress after a failed evaluation (see the module docs).
    pub fn abort(&mut self) {
        match self.phase {
            Phase::LineSearch => self.search.cancel(),
            Phase::Reevaluate => {
                // torch has already moved to the new iterate when it evaluates
                // there: a failed evaluation leaves it (its loss is unknown).
                std::mem::swap(&mut self.x, &mut self.trial);
                self.params_hold_x = true;
            }
            Phase::Idle | Phase::Initial => {}
        }
        self.phase = Phase::Idle;
    }

    fn finish(&mut self) -> Request {
        self.phase = Phase::Idle;
        Request::Done
    }

    fn request_trial(&mut self, t: f64, slot: usize) -> Request {
        axpy_into(&mut self.trial, F::from_f64(t), &self.d, &self.x);
        self.pending_slot = slot;
        self.phase = Phase::LineSearch;
        self.params_hold_x = false;
        Request::Evaluate
    }

    /// The stopping tests after a move, in torch's order.
    fn after_move(&mut self, opt_cond: bool) -> Result<Request, OptimError> {
        let c = self.config;
        if self.iter_in_step == c.max_iter
            || self.current_evals >= c.max_eval
            || opt_cond
            || self.step_max <= F::from_f64(c.tolerance_change)
            || (self.loss - self.prev_loss).abs() < c.tolerance_change
        {
            return Ok(self.finish());
        }
        self.iterate()
    }

    /// Makes room for the pair and the `α` of the coming iteration: the only
    /// allocations of an iteration, until the history is full. Changes nothing
    /// visible, so a failure here ends the step at the current iterate.
    fn reserve_iteration(&mut self) -> Result<(), OptimError> {
        self.history.staging()?;
        let needed = (self.history.len() + 1).min(self.history.capacity());
        if let Some(missing) = needed.checked_sub(self.alpha.len()).filter(|&m| m > 0) {
            try_grow(&mut self.alpha, missing, "the L-BFGS alpha list")?;
            self.alpha.resize(needed, F::ZERO);
        }
        Ok(())
    }

    /// Runs iterations from the top of torch's loop until an evaluation is
    /// needed or the loop ends.
    fn iterate(&mut self) -> Result<Request, OptimError> {
        let c = self.config;
        if self.iter_in_step >= c.max_iter {
            return Ok(self.finish());
        }
        let first_ever = self.n_iter == 0;
        if !first_ever {
            self.reserve_iteration()?;
        }
        self.iter_in_step += 1;
        self.n_iter += 1;
        let n = self.n;
        let g_range = self.grad_slot * n..(self.grad_slot + 1) * n;

        // Direction, and gᵀd.
        let gtd = if first_ever {
            neg_into(&mut self.d, &self.grads[g_range.clone()]);
            self.history.clear();
            self.h_diag = F::ONE;
            dot(&self.grads[g_range.clone()], &self.d)
        } else {
            let g = &self.grads[g_range.clone()];
            let prev = &self.grads[self.prev_slot * n..(self.prev_slot + 1) * n];
            let (y, s) = self.history.staging().expect("reserved by reserve_iteration");
            let (ys, yy) = curvature_pair(y, s, g, prev, &self.d, F::from_f64(self.t));
            if ys > F::from_f64(CURVATURE_THRESHOLD) {
                self.history.commit(F::ONE / ys);
                self.h_diag = ys / yy;
            }
            self.alpha_present = true;
            let gtd = two_loop(g, &self.history, self.h_diag, &mut self.alpha, &mut self.d);
            self.alpha_written = self.alpha_written.max(self.history.len());
            gtd
        };
        // torch's `prev_flat_grad ← g`, `prev_loss ← loss`.
        self.prev_slot = self.grad_slot;
        self.prev_loss = self.loss;
        self.has_iterated = true;

        // Step length.
        self.t = if first_ever {
            // Python's `min(1.0, 1/‖g‖₁)` keeps 1.0 unless the tensor is smaller.
            let inverse = F::ONE / sum_abs(&self.grads[g_range]);
            if inverse < F::ONE { (inverse * F::from_f64(c.lr)).to_f64() } else { c.lr }
        } else {
            c.lr
        };

        if gtd > F::from_f64(-c.tolerance_change) {
            return Ok(self.finish());
        }

        match c.line_search {
            LineSearch::StrongWolfe => {
                let d_norm = max_abs(&self.d).to_f64();
                let max_ls = c.max_eval.saturating_sub(self.current_evals);
                match self.search.start(self.t, self.loss, gtd.to_f64(), self.grad_slot, d_norm, max_ls) {
                    Search::Evaluate { t, slot } => Ok(self.request_trial(t, slot)),
                    Search::Done(_) => {
                        unreachable!("a line search always evaluates its first step")
                    }
                }
            }
            LineSearch::Fixed if self.iter_in_step != c.max_iter => {
                // The new iterate goes into `trial` and replaces `x` once its
                // loss and gradient are known to be finite.
                self.step_max = axpy_into_max_abs(&mut self.trial, F::from_f64(self.t), &self.d, &self.x);
                self.grad_slot = self.free_slot();
                self.pending_slot = self.grad_slot;
                self.phase = Phase::Reevaluate;
                self.params_hold_x = false;
                Ok(Request::Evaluate)
            }
            LineSearch::Fixed => {
                // torch does not evaluate after the last iteration.
                self.step_max = axpy_max_abs(F::from_f64(self.t), &self.d, &mut self.x);
                self.params_hold_x = false;
                Ok(self.finish())
            }
        }
    }
}

/// A copy of the state, in torch's terms (history oldest first).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedState<F> {
    pub func_evals: u64,
    pub n_iter: u64,
    /// Present once an iteration has run.
    pub iterated: Option<SavedIteration<F>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SavedIteration<F> {
    pub d: Vec<F>,
    pub t: f64,
    pub h_diag: F,
    pub prev_flat_grad: Vec<F>,
    pub prev_loss: f64,
    /// `(y_i, s_i, ρ_i)`: torch's `old_dirs[i]`, `old_stps[i]`, `ro[i]`.
    pub history: Vec<(Vec<F>, Vec<F>, F)>,
    /// torch's `al`: `None` before the first quasi-Newton iteration, else the
    /// written entries (the rest of torch's list is `None`).
    pub alpha: Option<Vec<F>>,
}

impl<F: Element> Lbfgs<F> {
    /// A borrowed view of the iteration state, for exporting without an extra copy.
    pub fn scalars(&self) -> Option<Scalars<F>> {
        self.has_iterated.then_some(Scalars { t: self.t, h_diag: self.h_diag, prev_loss: self.prev_loss })
    }

    pub fn direction(&self) -> &[F] {
        &self.d
    }

    pub fn prev_flat_grad(&self) -> &[F] {
        self.grad(self.prev_slot)
    }

    pub fn history(&self) -> &History<F> {
        &self.history
    }

    /// torch's `al` (written entries), if it exists.
    pub fn alpha(&self) -> Option<&[F]> {
        self.alpha_present.then(|| &self.alpha[..self.alpha_written])
    }

    /// Current capacity of the history (the last `history_size` used).
    pub fn history_capacity(&self) -> usize {
        self.history.capacity()
    }

    /// An owned copy of the whole state.
    pub fn save(&self) -> SavedState<F> {
        SavedState {
            func_evals: self.func_evals,
            n_iter: self.n_iter,
            iterated: self.scalars().map(|s| SavedIteration {
                d: self.d.clone(),
                t: s.t,
                h_diag: s.h_diag,
                prev_flat_grad: self.prev_flat_grad().to_vec(),
                prev_loss: s.prev_loss,
                history: (0..self.history.len())
                    .map(|i| (self.history.dir(i).to_vec(), self.history.step(i).to_vec(), self.history.rho(i)))
                    .collect(),
                alpha: self.alpha().map(<[F]>::to_vec),
            }),
        }
    }

    /// Replaces the whole state. Everything is checked and allocated first: on
    /// error nothing changes. The history capacity becomes `history_size`.
    pub fn restore(&mut self, state: SavedState<F>, history_size: usize) -> Result<(), OptimError> {
        if self.in_step() {
            return Err(OptimError::InvalidSetting("cannot load state during an L-BFGS step".into()));
        }
        check_history_size::<F>(history_size, self.n)?;
        let n = self.n;
        if let Some(it) = &state.iterated {
            let length = |what: &'static str, got: usize| -> Result<(), OptimError> {
                if got == n { Ok(()) } else { Err(OptimError::LengthMismatch { index: 0, what, expected: n, got }) }
            };
            length("d", it.d.len())?;
            length("prev_flat_grad", it.prev_flat_grad.len())?;
            if it.history.len() > history_size {
                return Err(OptimError::ListLengthMismatch {
                    what: "old_dirs",
                    expected: history_size,
                    got: it.history.len(),
                });
            }
            for (y, s, _) in &it.history {
                length("old_dirs entry", y.len())?;
                length("old_stps entry", s.len())?;
            }
            if let Some(alpha) = &it.alpha {
                if alpha.len() > history_size {
                    return Err(OptimError::ListLengthMismatch {
                        what: "al",
                        expected: history_size,
                        got: alpha.len(),
                    });
                }
            }
        }

        let SavedState { func_evals, n_iter, iterated } = state;
        let Some(it) = iterated else {
            self.func_evals = func_evals;
            self.n_iter = n_iter;
            self.history = History::new(n, history_size);
            self.has_iterated = false;
            self.alpha = Vec::new();
            self.alpha_present = false;
            self.alpha_written = 0;
            return Ok(());
        };
        // The fallible part, before anything changes.
        let history = History::from_pairs(n, history_size, &it.history)?;
        let alpha_present = it.alpha.is_some();
        let alpha = it.alpha.unwrap_or_default();

        self.func_evals = func_evals;
        self.n_iter = n_iter;
        self.history = history;
        self.has_iterated = true;
        self.d.copy_from_slice(&it.d);
        self.t = it.t;
        self.h_diag = it.h_diag;
        let prev = self.prev_slot * n..(self.prev_slot + 1) * n;
        self.grads[prev].copy_from_slice(&it.prev_flat_grad);
        self.prev_loss = it.prev_loss;
        self.alpha_present = alpha_present;
        self.alpha_written = alpha.len();
        self.alpha = alpha;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f(x) = Σ 100(x[i+1] − x[i]²)² + (1 − x[i])².
    fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
        g.fill(0.0);
        let mut f = 0.0;
        for i in 0..x.len() - 1 {
            let a = x[i + 1] - x[i] * x[i];
            let b = 1.0 - x[i];
            f += 100.0 * a * a + b * b;
            g[i] += -400.0 * x[i] * a - 2.0 * b;
            g[i + 1] += 200.0 * a;
        }
        f
    }

    type Objective<'a> = dyn FnMut(&[f64], &mut [f64]) -> Option<f64> + 'a;

    /// Runs one step the way the binding does; returns (first loss, calls).
    fn step(
        opt: &mut Lbfgs<f64>,
        params: &mut [f64],
        config: &LbfgsConfig,
        objective: &mut Objective<'_>,
    ) -> Result<(f64, usize), ()> {
        opt.iterate_mut().copy_from_slice(params);
        opt.begin(config).unwrap();
        let mut calls = 0;
        let mut first = None;
        loop {
            calls += 1;
            let mut g = vec![0.0; params.len()];
            let Some(loss) = objective(params, &mut g) else {
                opt.abort();
                if !opt.params_hold_point() {
                    params.copy_from_slice(opt.point());
                }
                return Err(());
            };
            first.get_or_insert(loss);
            opt.gradient_mut().copy_from_slice(&g);
            match opt.resume(loss).unwrap() {
                Request::Evaluate => params.copy_from_slice(opt.point()),
                Request::Done => {
                    if !opt.params_hold_point() {
                        params.copy_from_slice(opt.point());
                    }
                    return Ok((first.unwrap(), calls));
                }
            }
        }
    }

    fn config(line_search: LineSearch) -> LbfgsConfig {
        LbfgsConfig { line_search, history_size: 10, max_iter: 100, max_eval: 125, ..LbfgsConfig::default() }
    }

    #[test]
    fn minimizes_rosenbrock_with_either_line_search() {
        for line_search in [LineSearch::Fixed, LineSearch::StrongWolfe] {
            let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
            let mut x = vec![-1.2, 1.0];
            let cfg =
                LbfgsConfig { lr: if line_search == LineSearch::Fixed { 0.2 } else { 1.0 }, ..config(line_search) };
            let mut total_calls = 0;
            for _ in 0..20 {
                total_calls += step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap().1;
            }
            assert!((x[0] - 1.0).abs() < 1e-4 && (x[1] - 1.0).abs() < 1e-4, "{line_search:?}: {x:?}");
            assert_eq!(opt.func_evals(), total_calls as u64);
        }
    }

    #[test]
    fn counts_follow_torch_for_a_fixed_step() {
        // Without a line search a step makes max_iter − 1 re-evaluations plus the
        // first one, and does not evaluate after its last iteration.
        let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
        let mut x = vec![-1.2, 1.0];
        let cfg = LbfgsConfig { lr: 0.01, max_iter: 5, max_eval: 6, ..config(LineSearch::Fixed) };
        let (loss, calls) = step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        assert_eq!(loss, rosenbrock(&[-1.2, 1.0], &mut [0.0; 2]));
        assert_eq!((calls, opt.func_evals(), opt.n_iter()), (5, 5, 5));
    }

    #[test]
    fn the_line_search_never_exceeds_max_eval() {
        let mut opt = Lbfgs::<f64>::new(10, 5).unwrap();
        let mut x = vec![-1.0; 10];
        let cfg = LbfgsConfig { max_iter: 25, max_eval: 31, ..config(LineSearch::StrongWolfe) };
        let (_, calls) = step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        assert!(calls <= 31);
        assert_eq!(opt.func_evals(), calls as u64);
    }

    #[test]
    fn an_optimal_start_returns_after_one_evaluation() {
        let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
        let mut x = vec![1.0, 1.0];
        let (_, calls) =
            step(&mut opt, &mut x, &config(LineSearch::Fixed), &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        assert_eq!((calls, opt.func_evals(), opt.n_iter()), (1, 1, 0));
        assert!(opt.save().iterated.is_none());
    }

    #[test]
    fn a_failed_evaluation_leaves_the_last_accepted_iterate() {
        for line_search in [LineSearch::Fixed, LineSearch::StrongWolfe] {
            let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
            let mut x = vec![-1.2, 1.0];
            let cfg = config(line_search);
            let mut accepted = Vec::new();
            // Record every point the objective sees; fail on the 7th call.
            let mut seen = Vec::new();
            let result = step(&mut opt, &mut x, &cfg, &mut |x, g| {
                seen.push(x.to_vec());
                if seen.len() == 7 { None } else { Some(rosenbrock(x, g)) }
            });
            assert!(result.is_err());
            // Continuing from the state gives a working optimizer.
            accepted.push(x.clone());
            let (loss, _) = step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
            let mut g = [0.0; 2];
            assert_eq!(loss, rosenbrock(&accepted[0], &mut g));
            if line_search == LineSearch::Fixed {
                // Each evaluation is at an accepted iterate: the failed one too.
                assert_eq!(accepted[0], seen[6]);
            } else {
                // Never a trial point: the state's iterate is where the objective
                // was evaluated at the start of an iteration.
                assert!(seen[..6].contains(&accepted[0]));
            }
        }
    }

    #[test]
    fn a_saved_state_continues_identically() {
        let cfg = config(LineSearch::StrongWolfe);
        let mut a = Lbfgs::<f64>::new(6, 3).unwrap();
        let mut xa = vec![-1.0, 1.5, -0.5, 0.2, 1.0, -1.0];
        let cfg = LbfgsConfig { max_iter: 4, history_size: 3, ..cfg };
        step(&mut a, &mut xa, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        let saved = a.save();
        assert_eq!(saved.iterated.as_ref().unwrap().history.len(), 3);
        let mut b = Lbfgs::<f64>::new(6, 7).unwrap();
        b.restore(saved.clone(), 3).unwrap();
        let mut xb = xa.clone();
        for _ in 0..3 {
            step(&mut a, &mut xa, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
            step(&mut b, &mut xb, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
            assert_eq!(xa, xb);
        }
        assert_eq!(a.save(), b.save());
    }

    #[test]
    fn a_bad_state_changes_nothing() {
        let mut a = Lbfgs::<f64>::new(2, 5).unwrap();
        let mut x = vec![-1.2, 1.0];
        step(&mut a, &mut x, &config(LineSearch::Fixed), &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        let before = a.save();
        let mut bad = before.clone();
        bad.iterated.as_mut().unwrap().history.push((vec![0.0; 3], vec![0.0; 2], 1.0));
        assert!(a.restore(bad, 10).is_err());
        let mut too_long = before.clone();
        too_long.iterated.as_mut().unwrap().history.resize(6, (vec![0.0; 2], vec![0.0; 2], 1.0));
        assert!(a.restore(too_long, 5).is_err());
        assert_eq!(a.save(), before);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        assert!(Lbfgs::<f32>::new(3, 0).is_err());
        let mut opt = Lbfgs::<f32>::new(3, 2).unwrap();
        for bad in [
            LbfgsConfig { lr: -1.0, ..LbfgsConfig::default() },
            LbfgsConfig { lr: f64::NAN, ..LbfgsConfig::default() },
            LbfgsConfig { max_iter: 0, ..LbfgsConfig::default() },
            LbfgsConfig { max_eval: 0, ..LbfgsConfig::default() },
            LbfgsConfig { history_size: 0, ..LbfgsConfig::default() },
            LbfgsConfig { tolerance_grad: f64::NAN, ..LbfgsConfig::default() },
            LbfgsConfig { history_size: 1 << 62, ..LbfgsConfig::default() },
            LbfgsConfig { tolerance_change: f64::NAN, ..LbfgsConfig::default() },
        ] {
            assert!(opt.begin(&bad).is_err(), "{bad:?}");
        }
        assert!(opt.resume(1.0).is_err());
    }

    /// f(x) = Σ x − 2·ln x: minimum at x = 2, NaN for x < 0.
    fn log_barrier(x: &[f64], g: &mut [f64]) -> f64 {
        for (gi, &xi) in g.iter_mut().zip(x) {
            *gi = 1.0 - 2.0 / xi;
        }
        x.iter().map(|&xi| xi - 2.0 * xi.ln()).sum()
    }

    #[test]
    fn strong_wolfe_steps_back_from_nan_and_reaches_the_minimum() {
        // torch (and rustoptim before) left x = −6.8e184 with a NaN loss here.
        let mut opt = Lbfgs::<f64>::new(1, 100).unwrap();
        let mut x = vec![30.0];
        let cfg = LbfgsConfig { line_search: LineSearch::StrongWolfe, ..LbfgsConfig::default() };
        for _ in 0..5 {
            let seen = std::cell::RefCell::new(Vec::new());
            step(&mut opt, &mut x, &cfg, &mut |x, g| {
                let loss = log_barrier(x, g);
                seen.borrow_mut().push(loss);
                Some(loss)
            })
            .unwrap();
            assert!(log_barrier(&x, &mut [0.0]).is_finite(), "{x:?}");
        }
        // To within what tolerance_change = 1e-9 on the loss allows (f'' = 1/2).
        assert!((x[0] - 2.0).abs() < 1e-4, "{x:?}");
        // Several variables, from far away.
        let mut opt = Lbfgs::<f64>::new(5, 10).unwrap();
        let mut x = vec![100.0, 90.0, 80.0, 70.0, 60.0];
        for _ in 0..10 {
            step(&mut opt, &mut x, &cfg, &mut |x, g| Some(log_barrier(x, g))).unwrap();
        }
        assert!(x.iter().all(|&xi| (xi - 2.0).abs() < 1e-4), "{x:?}");
    }

    #[test]
    fn a_fixed_step_stops_at_the_last_finite_iterate() {
        let mut opt = Lbfgs::<f64>::new(1, 10).unwrap();
        let mut x = vec![30.0];
        // Steepest descent first (t = 1/|g|), then lr = 100 jumps to x < 0.
        let cfg = LbfgsConfig { lr: 100.0, ..LbfgsConfig::default() };
        let mut seen = Vec::new();
        step(&mut opt, &mut x, &cfg, &mut |x, g| {
            seen.push(x[0]);
            Some(log_barrier(x, g))
        })
        .unwrap();
        let last = *seen.last().unwrap();
        assert!(last < 0.0, "{seen:?}");
        assert_eq!(x[0], seen[seen.len() - 2]);
        assert!(x[0] > 0.0);
        // The next step starts at that iterate and stops there again.
        let before = x.clone();
        step(&mut opt, &mut x, &cfg, &mut |x, g| Some(log_barrier(x, g))).unwrap();
        assert_eq!(x, before);
    }

    #[test]
    fn a_non_finite_start_does_not_move() {
        for bad in [f64::NAN, f64::INFINITY] {
            for line_search in [LineSearch::Fixed, LineSearch::StrongWolfe] {
                let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
                let mut x = vec![-1.2, 1.0];
                let (_, calls) = step(&mut opt, &mut x, &config(line_search), &mut |x, g| {
                    rosenbrock(x, g);
                    g[1] = bad;
                    Some(1.0)
                })
                .unwrap();
                assert_eq!((calls, opt.n_iter(), x.clone()), (1, 0, vec![-1.2, 1.0]));
                let (_, calls) = step(&mut opt, &mut x, &config(line_search), &mut |_, g| {
                    g.fill(1.0);
                    Some(bad)
                })
                .unwrap();
                assert_eq!((calls, opt.n_iter(), x.clone()), (1, 0, vec![-1.2, 1.0]));
            }
        }
    }

    #[test]
    fn maximize_is_minimizing_the_negated_objective() {
        for line_search in [LineSearch::Fixed, LineSearch::StrongWolfe] {
            let lr = if line_search == LineSearch::Fixed { 0.05 } else { 1.0 };
            let cfg = LbfgsConfig { lr, ..config(line_search) };
            let (mut a, mut b) = (Lbfgs::<f64>::new(4, 10).unwrap(), Lbfgs::<f64>::new(4, 10).unwrap());
            let (mut xa, mut xb) = (vec![-1.2, 1.0, 0.5, -0.3], vec![-1.2, 1.0, 0.5, -0.3]);
            let maximize = LbfgsConfig { maximize: true, ..cfg };
            for _ in 0..3 {
                step(&mut a, &mut xa, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
                let (first, _) = step(&mut b, &mut xb, &maximize, &mut |x, g| {
                    let f = rosenbrock(x, g);
                    g.iter_mut().for_each(|gi| *gi = -*gi);
                    Some(-f)
                })
                .unwrap();
                assert!(first <= 0.0);
                assert_eq!(xa, xb);
            }
            assert_eq!(a.save(), b.save());
        }
    }

    #[test]
    fn negative_tolerances_run_every_iteration() {
        let cfg = LbfgsConfig {
            lr: 0.01,
            max_iter: 7,
            max_eval: 100,
            tolerance_grad: f64::NEG_INFINITY,
            tolerance_change: f64::NEG_INFINITY,
            ..config(LineSearch::Fixed)
        };
        let mut opt = Lbfgs::<f64>::new(2, 10).unwrap();
        // Even at the minimum, where the gradient is 0.
        let mut x = vec![1.0, 1.0];
        step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        assert_eq!(opt.n_iter(), 7);
        let cfg = LbfgsConfig { tolerance_grad: -1.0, tolerance_change: -1e-3, ..cfg };
        step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        assert_eq!(opt.n_iter(), 14);
    }

    #[test]
    fn a_huge_history_size_costs_only_the_pairs_stored() {
        let mut opt = Lbfgs::<f64>::new(10, 1 << 40).unwrap();
        let mut x = vec![-1.0; 10];
        let cfg = LbfgsConfig { history_size: 1 << 40, ..config(LineSearch::StrongWolfe) };
        step(&mut opt, &mut x, &cfg, &mut |x, g| Some(rosenbrock(x, g))).unwrap();
        let pairs = opt.history().len();
        assert!(pairs > 5);
        assert!(opt.history().allocated_bytes() <= (pairs + 1) * 2 * 10 * 8);
        assert_eq!(opt.alpha().unwrap().len(), pairs);
        // Beyond what could ever be addressed: refused, at creation and at a step.
        assert!(Lbfgs::<f64>::new(10, 1 << 62).is_err());
        let bad = LbfgsConfig { history_size: 1 << 62, ..cfg };
        assert!(matches!(opt.begin(&bad), Err(OptimError::InvalidSetting(_))));
        assert!(matches!(opt.restore(opt.save(), 1 << 62), Err(OptimError::InvalidSetting(_))));
    }

    #[test]
    fn an_impossible_allocation_is_an_error() {
        let error = Lbfgs::<f64>::new(1 << 56, 1).err().expect("2^59 bytes cannot be allocated");
        assert!(matches!(error, OptimError::OutOfMemory { .. }), "{error:?}");
    }
}
