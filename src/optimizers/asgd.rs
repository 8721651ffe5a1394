//! ASGD (averaged SGD) as an element-wise rule: one fused pass per tensor.
//!
//! Each tensor carries the scalars `step`, `eta` (its current learning rate)
//! and `mu` (its averaging weight), float32 values as torch keeps them, and
//! the slot `ax` (the running average of the params). With `η`, `μ` the
//! values stored before the step, in torch.optim's order and rounding:
//!
//! ```text
//! g  = -grad if maximize else grad
//! g  = g + wd·θ                            (wd ≠ 0; one FMA)
//! θ  = θ · (1 − λ·η)                       (the decay term)
//! θ  = θ − η·g                             (one FMA)
//! ax = ax + (θ − ax)·μ                     (μ ≠ 1: averaging has started)
//! ax = θ                                   (μ = 1)
//! then, per tensor (t the new float32 step, lr the group's current lr):
//!     η = f32(lr / (1 + (λ·lr)·t) ** α)
//!     μ = f32(1 / max(1, t − t0))
//! ```
//!
//! A tensor's first step uses `η = f32(lr)` and `μ = 1` (its state is created
//! with the group's lr then), so an lr change reaches `η` one step late, as in
//! torch. `μ` leaves 1 once `t > t0 + 1`, so with an integer `t0`, `ax` copies
//! the param through step `t0 + 2` and is the mean of the params since then.

use super::scalars::{float32_step, python_pow, to_float32};
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AsgdConfig {
    pub lr: f64,
    /// λ, the decay term.
    pub lambd: f64,
    /// α, the power of the learning-rate decay.
    pub alpha: f64,
    /// The step after which averaging starts.
    pub t0: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AsgdConfig {
    fn default() -> Self {
        AsgdConfig { lr: 1e-2, lambd: 1e-4, alpha: 0.75, t0: 1e6, weight_decay: 0.0, maximize: false }
    }
}

/// The scalar state's positions in [`Scalars`].
pub const STEP: usize = 0;
pub const ETA: usize = 1;
pub const MU: usize = 2;

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct AsgdCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    /// `1 − λ·η`.
    decay_factor: F,
    neg_eta: F,
    /// `μ ≠ 1`: `ax` moves towards the param instead of copying it.
    averaging: bool,
    mu: F,
}

impl ElementwiseRule for AsgdConfig {
    type Coefficients<F: Element> = AsgdCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut AsgdCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        1
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, fresh_slots: u8) -> AsgdCoefficients<F> {
        // A new `ax` means new state: torch creates it with `eta = lr`, `mu = 1`.
        // Stored values are float32 in torch (loaded ones too, once used).
        let (step, eta, mu) = if fresh_slots & 1 != 0 {
            (0.0, to_float32(self.lr), 1.0)
        } else {
            (scalars[STEP], to_float32(scalars[ETA]), to_float32(scalars[MU]))
        };
        let coefficients = AsgdCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            decay_factor: F::from_f64(1.0 - self.lambd * eta),
            neg_eta: F::from_f64(-eta),
            averaging: mu != 1.0,
            mu: F::from_f64(mu),
        };
        let step = float32_step(step);
        scalars[STEP] = step;
        scalars[ETA] = to_float32(self.lr / python_pow(1.0 + self.lambd * self.lr * step, self.alpha));
        scalars[MU] = to_float32(1.0 / (step - self.t0).max(1.0));
        coefficients
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &AsgdCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [ax]) = split_piece::<F, 1>(piece);
        match (self.weight_decay != 0.0, c.averaging) {
            (false, false) => update::<F, false, false>(param, grad, ax, c),
            (false, true) => update::<F, false, true>(param, grad, ax, c),
            (true, false) => update::<F, true, false>(param, grad, ax, c),
            (true, true) => update::<F, true, true>(param, grad, ax, c),
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: bool, const AVERAGING: bool>(
    param: &mut [F],
    grad: &[F],
    ax: &mut [F],
    c: &AsgdCoefficients<F>,
) {
    let n = param.len();
    let (grad, ax) = (&grad[..n], &mut ax[..n]);
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let theta = c.neg_eta.mul_add(g, theta * c.decay_factor);
        param[i] = theta;
        ax[i] = if AVERAGING { ax[i] + (theta - ax[i]) * c.mu } else { theta };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::{self, Tensor};

    #[test]
    fn eta_and_mu_follow_torchs_float32_schedule() {
        let config = AsgdConfig { lr: 0.05, lambd: 1e-3, alpha: 0.6, t0: 3.0, ..Default::default() };
        let mut theta = vec![1.0f64, -2.0];
        let mut ax = [0.0f64; 2];
        let grad = [0.5f64, 0.25];
        let mut scalars = [0.0, 0.0, 1.0];
        let mut expected_ax = [0.0f64; 2];
        for t in 1..=7 {
            let fresh = if t == 1 { 1 } else { 0 };
            let (eta, mu) = if t == 1 { (0.05f32 as f64, 1.0) } else { (scalars[ETA], scalars[MU]) };
            let before = theta.clone();
            let mut tensor = Tensor::new(&mut theta, &grad).with_slots([&mut ax[..]]).with_scalars(&scalars);
            tensor.fresh_slots = fresh;
            let mut tensors = [tensor];
            elementwise::step(&config, &mut tensors).unwrap();
            scalars = [tensors[0].scalars[0], tensors[0].scalars[1], tensors[0].scalars[2]];
            let tf = t as f64;
            assert_eq!(scalars[STEP], tf);
            assert_eq!(scalars[ETA], (0.05 / (1.0 + 1e-3 * 0.05 * tf).powf(0.6)) as f32 as f64);
            assert_eq!(scalars[MU], (1.0 / (tf - 3.0).max(1.0)) as f32 as f64);
            for i in 0..2 {
                let expected = (-eta).mul_add(grad[i], before[i] * (1.0 - 1e-3 * eta));
                assert_eq!(theta[i], expected);
                expected_ax[i] = if mu != 1.0 { expected_ax[i] + (expected - expected_ax[i]) * mu } else { expected };
                assert_eq!(ax[i], expected_ax[i]);
            }
            // mu stays 1 (ax copies the param) until t > t0 + 1.
            assert_eq!(mu != 1.0, t > 5);
        }
    }
}
