//! Adadelta as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor, in torch.optim's order and rounding (`θ` param, `v`
//! square_avg, `u` acc_delta, `ρ` rho):
//!
//! ```text
//! g   = -grad if maximize else grad
//! g   = g + wd·θ                      (wd ≠ 0; one FMA)
//! v   = v·ρ                           (rounded)
//! v   = v + ((1 − ρ)·g)·g             (rounded product, then one FMA)
//! std = sqrt(v + ε)
//! d   = sqrt(u + ε) / std · g         (u before this step's update; each op rounded)
//! u   = u·ρ                           (rounded)
//! u   = u + ((1 − ρ)·d)·d             (rounded product, then one FMA)
//! θ   = θ − lr·d                      (one FMA)
//! ```
//!
//! The step count is kept (in float32, as torch does) but not used.

use super::scalars::float32_step;
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `square_avg` and `acc_delta`, and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdadeltaConfig {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        AdadeltaConfig { lr: 1.0, rho: 0.9, eps: 1e-6, weight_decay: 0.0, maximize: false }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct AdadeltaCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    rho: F,
    one_minus_rho: F,
    eps: F,
    neg_lr: F,
}

impl ElementwiseRule for AdadeltaConfig {
    type Coefficients<F: Element> = AdadeltaCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut AdadeltaCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        2
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> AdadeltaCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        AdadeltaCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            rho: F::from_f64(self.rho),
            one_minus_rho: F::from_f64(1.0 - self.rho),
            eps: F::from_f64(self.eps),
            neg_lr: F::from_f64(-self.lr),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &AdadeltaCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [square_avg, acc_delta]) = split_piece::<F, 2>(piece);
        if self.weight_decay != 0.0 {
            update::<F, true>(param, grad, square_avg, acc_delta, c);
        } else {
            update::<F, false>(param, grad, square_avg, acc_delta, c);
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: bool>(
    param: &mut [F],
    grad: &[F],
    square_avg: &mut [F],
    acc_delta: &mut [F],
    c: &AdadeltaCoefficients<F>,
) {
    let n = param.len();
    let (grad, square_avg, acc_delta) = (&grad[..n], &mut square_avg[..n], &mut acc_delta[..n]);
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let v = (c.one_minus_rho * g).mul_add(g, square_avg[i] * c.rho);
        square_avg[i] = v;
        let std = (v + c.eps).sqrt();
        let u = acc_delta[i];
        let delta = (u + c.eps).sqrt() / std * g;
        acc_delta[i] = (c.one_minus_rho * delta).mul_add(delta, u * c.rho);
        param[i] = c.neg_lr.mul_add(delta, theta);
    }
}
