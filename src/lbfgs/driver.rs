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
//! element type; the loss and the line search's scalars are `f64`.
//!
//! All buffers are allocated by [`Lbfgs::new`]; an iteration allocates nothing.
//!
//! # Failure
//! If the objective fails, the caller calls [`Lbfgs::abort`] and writes
//! [`Lbfgs::point`] into the parameters if [`Lbfgs::params_hold_point`] is
//! false. The parameters are then the last accepted iterate (never a
//! line-search trial point), and the state is the one a `step` that stopped at
//! that iterate would have left: the next `step` continues from it.

use super::history::History;
use super::line_search::{GRADIENT_SLOTS, Search, StrongWolfe, WolfeConditions};
use super::two_loop::two_loop;
use super::vector_ops::{axpy_into, axpy_max_abs, curvature_pair, dot, max_abs, neg_into, sum_abs};
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
        }
    }
}

impl LbfgsConfig {
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
        if self.tolerance_grad.is_nan() || self.tolerance_grad < 0.0 {
            return invalid(format!("tolerance_grad must be non-negative, got {}", self.tolerance_grad));
        }
        if self.tolerance_change.is_nan() || self.tolerance_change < 0.0 {
            return invalid(format!("tolerance_change must be non-negative, got {}", self.tolerance_change));
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
    /// Fixed step: waiting for the evaluation at the new iterate.
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
    /// torch's `al`: the `α_i` of the last two-loop recursion.
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
    /// A line-search trial point.
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
    /// A fresh optimizer for `n` parameters with room for `history_size` pairs.
    pub fn new(n: usize, history_size: usize) -> Result<Self, OptimError> {
        if history_size < 1 {
            return Err(OptimError::InvalidSetting(format!("history_size must be at least 1, got {history_size}")));
        }
        Ok(Lbfgs {
            n,
            func_evals: 0,
            n_iter: 0,
            has_iterated: false,
            d: vec![F::ZERO; n],
            t: 0.0,
            h_diag: F::ONE,
            prev_slot: 0,
            prev_loss: 0.0,
            history: History::new(n, history_size),
            alpha: vec![F::ZERO; history_size],
            alpha_present: false,
            alpha_written: 0,
            config: LbfgsConfig { history_size, ..LbfgsConfig::default() },
            phase: Phase::Idle,
            x: vec![F::ZERO; n],
            trial: vec![F::ZERO; n],
            grads: vec![F::ZERO; GRADIENT_SLOTS * n],
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
            self.history.set_capacity(config.history_size);
            let mut alpha = vec![F::ZERO; config.history_size];
            let keep = self.alpha_written.min(config.history_size);
            alpha[..keep].copy_from_slice(&self.alpha[..keep]);
            self.alpha = alpha;
            self.alpha_written = keep;
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

    /// Where the caller's parameters must be: the trial point during a line
    /// search, the iterate otherwise. The caller writes it after every
    /// [`Request::Evaluate`].
    pub fn point(&self) -> &[F] {
        if self.phase == Phase::LineSearch { &self.trial } else { &self.x }
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

    /// Continues the step with the loss of the evaluation in flight (its
    /// gradient already written into [`gradient_mut`](Self::gradient_mut)).
    pub fn resume(&mut self, loss: f64) -> Result<Request, OptimError> {
        self.func_evals += 1;
        self.current_evals += 1;
        let request = match self.phase {
            Phase::Idle => {
                self.func_evals -= 1;
                self.current_evals -= 1;
                return Err(OptimError::InvalidSetting("no L-BFGS step is in progress".into()));
            }
            Phase::Initial => {
                self.loss = loss;
                let tolerance_grad = F::from_f64(self.config.tolerance_grad);
                if max_abs(self.grad(self.grad_slot)) <= tolerance_grad { self.finish() } else { self.iterate() }
            }
            Phase::Reevaluate => {
                self.loss = loss;
                let opt_cond = max_abs(self.grad(self.grad_slot)) <= F::from_f64(self.config.tolerance_grad);
                self.after_move(opt_cond)
            }
            Phase::LineSearch => {
                let gtd = dot(self.grad(self.pending_slot), &self.d).to_f64();
                match self.search.resume(loss, gtd) {
                    Search::Evaluate { t, slot } => self.request_trial(t, slot),
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
        };
        Ok(request)
    }

    /// Ends the step in progress after a failed evaluation (see the module docs).
    pub fn abort(&mut self) {
        if self.phase == Phase::LineSearch {
            self.search.cancel();
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
    fn after_move(&mut self, opt_cond: bool) -> Request {
        let c = self.config;
        if self.iter_in_step == c.max_iter
            || self.current_evals >= c.max_eval
            || opt_cond
            || self.step_max <= F::from_f64(c.tolerance_change)
            || (self.loss - self.prev_loss).abs() < c.tolerance_change
        {
            return self.finish();
        }
        self.iterate()
    }

    /// Runs iterations from the top of torch's loop until an evaluation is
    /// needed or the loop ends.
    fn iterate(&mut self) -> Request {
        let c = self.config;
        if self.iter_in_step >= c.max_iter {
            return self.finish();
        }
        self.iter_in_step += 1;
        self.n_iter += 1;
        let first_ever = self.n_iter == 1;
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
            let (y, s) = self.history.staging();
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
            return self.finish();
        }

        match c.line_search {
            LineSearch::StrongWolfe => {
                let d_norm = max_abs(&self.d).to_f64();
                let max_ls = c.max_eval.saturating_sub(self.current_evals);
                match self.search.start(self.t, self.loss, gtd.to_f64(), self.grad_slot, d_norm, max_ls) {
                    Search::Evaluate { t, slot } => self.request_trial(t, slot),
                    Search::Done(_) => {
                        unreachable!("a line search always evaluates its first step")
                    }
                }
            }
            LineSearch::Fixed => {
                self.step_max = axpy_max_abs(F::from_f64(self.t), &self.d, &mut self.x);
                if self.iter_in_step != c.max_iter {
                    self.grad_slot = self.free_slot();
                    self.pending_slot = self.grad_slot;
                    self.phase = Phase::Reevaluate;
                    // The caller writes the new iterate to evaluate it.
                    self.params_hold_x = true;
                    Request::Evaluate
                } else {
                    // torch does not evaluate after the last iteration.
                    self.params_hold_x = false;
                    self.finish()
                }
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

    /// Replaces the whole state. Everything is checked first: on error nothing
    /// changes. The history capacity becomes `history_size`.
    pub fn restore(&mut self, state: &SavedState<F>, history_size: usize) -> Result<(), OptimError> {
        if self.in_step() {
            return Err(OptimError::InvalidSetting("cannot load state during an L-BFGS step".into()));
        }
        if history_size < 1 {
            return Err(OptimError::InvalidSetting(format!("history_size must be at least 1, got {history_size}")));
        }
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

        self.func_evals = state.func_evals;
        self.n_iter = state.n_iter;
        self.history.set_capacity(history_size);
        self.history.clear();
        if self.alpha.len() != history_size {
            self.alpha = vec![F::ZERO; history_size];
        }
        match &state.iterated {
            None => {
                self.has_iterated = false;
                self.alpha_present = false;
                self.alpha_written = 0;
            }
            Some(it) => {
                self.has_iterated = true;
                self.d.copy_from_slice(&it.d);
                self.t = it.t;
                self.h_diag = it.h_diag;
                let prev = self.prev_slot * self.n..(self.prev_slot + 1) * self.n;
                self.grads[prev].copy_from_slice(&it.prev_flat_grad);
                self.prev_loss = it.prev_loss;
                for (y, s, rho) in &it.history {
                    self.history.push(y, s, *rho);
                }
                self.alpha_present = it.alpha.is_some();
                self.alpha_written = it.alpha.as_ref().map_or(0, Vec::len);
                if let Some(alpha) = &it.alpha {
                    self.alpha[..alpha.len()].copy_from_slice(alpha);
                }
            }
        }
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
        b.restore(&saved, 3).unwrap();
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
        assert!(a.restore(&bad, 10).is_err());
        let mut too_long = before.clone();
        too_long.iterated.as_mut().unwrap().history.resize(6, (vec![0.0; 2], vec![0.0; 2], 1.0));
        assert!(a.restore(&too_long, 5).is_err());
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
            LbfgsConfig { tolerance_grad: -1e-3, ..LbfgsConfig::default() },
            LbfgsConfig { tolerance_change: f64::NAN, ..LbfgsConfig::default() },
        ] {
            assert!(opt.begin(&bad).is_err(), "{bad:?}");
        }
        assert!(opt.resume(1.0).is_err());
    }
}
