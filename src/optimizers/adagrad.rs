//! Adagrad as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor with step count `t` (after the increment, counted in
//! float32), in torch.optim's order and rounding (`θ` param, `s` sum):
//!
//! ```text
//! g   = -grad if maximize else grad
//! g   = g + wd·θ                          (wd ≠ 0; one FMA)
//! clr = lr / (1 + (t − 1)·lr_decay)       (f64, like Python floats)
//! s   = s + g·g                           (one FMA)
//! std = sqrt(s) + ε
//! θ   = θ + ((−clr)·g) / std              (rounded product, rounded quotient)
//! ```
//!
//! `s` starts at `initial_accumulator_value` (the Python class creates it with
//! the optimizer; a step creates it for params that have none yet).

use super::scalars::float32_step;
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slot `sum` and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub eps: f64,
    /// The value a new `sum` starts at (torch takes the constructor's, not the group's).
    pub initial_accumulator_value: f64,
    pub maximize: bool,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            initial_accumulator_value: 0.0,
            maximize: false,
        }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct AdagradCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    neg_clr: F,
    eps: F,
}

impl ElementwiseRule for AdagradConfig {
    type Coefficients<F: Element> = AdagradCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut AdagradCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        1
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> AdagradCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        let clr = self.lr / (1.0 + (scalars[0] - 1.0) * self.lr_decay);
        AdagradCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            neg_clr: F::from_f64(-clr),
            eps: F::from_f64(self.eps),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &AdagradCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [sum]) = split_piece::<F, 1>(piece);
        if self.weight_decay != 0.0 {
            update::<F, true>(param, grad, sum, c);
        } else {
            update::<F, false>(param, grad, sum, c);
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: bool>(param: &mut [F], grad: &[F], sum: &mut [F], c: &AdagradCoefficients<F>) {
    let n = param.len();
    let (grad, sum) = (&grad[..n], &mut sum[..n]);
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let s = g.mul_add(g, sum[i]);
        sum[i] = s;
        let std = s.sqrt() + c.eps;
        param[i] = theta + (c.neg_clr * g) / std;
    }
}
