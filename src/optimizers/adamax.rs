//! Adamax as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor with step count `t` (after the increment, counted in
//! float32), in torch.optim's order and rounding (`θ` param, `m` exp_avg, `u`
//! exp_inf):
//!
//! ```text
//! g   = -grad if maximize else grad
//! g   = g + wd·θ                      (wd ≠ 0; one FMA)
//! m   = lerp(m, g, 1 − β1)            (one FMA, torch's two-sided lerp)
//! u   = max(u·β2, |g| + ε)            (each side rounded; NaN propagates)
//! clr = lr / (1 − β1^t)               (f64, like Python floats)
//! θ   = θ + ((−clr)·m) / u            (rounded product, rounded quotient)
//! ```

use super::lerp::Lerp;
use super::scalars::{float32_step, python_pow};
use crate::element::{Element, nan_max};
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `exp_avg` and `exp_inf`, and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        AdamaxConfig { lr: 2e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, maximize: false }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct AdamaxCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    exp_avg_lerp: Lerp<F>,
    beta2: F,
    eps: F,
    neg_clr: F,
}

impl ElementwiseRule for AdamaxConfig {
    type Coefficients<F: Element> = AdamaxCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut AdamaxCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        2
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> AdamaxCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        let clr = self.lr / (1.0 - python_pow(self.beta1, scalars[0]));
        AdamaxCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            exp_avg_lerp: Lerp::new(1.0 - self.beta1),
            beta2: F::from_f64(self.beta2),
            eps: F::from_f64(self.eps),
            neg_clr: F::from_f64(-clr),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &AdamaxCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [exp_avg, exp_inf]) = split_piece::<F, 2>(piece);
        if self.weight_decay != 0.0 {
            update::<F, true>(param, grad, exp_avg, exp_inf, c);
        } else {
            update::<F, false>(param, grad, exp_avg, exp_inf, c);
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: bool>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_inf: &mut [F],
    c: &AdamaxCoefficients<F>,
) {
    let n = param.len();
    let (grad, exp_avg, exp_inf) = (&grad[..n], &mut exp_avg[..n], &mut exp_inf[..n]);
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let m = c.exp_avg_lerp.apply(exp_avg[i], g);
        exp_avg[i] = m;
        let u = nan_max(exp_inf[i] * c.beta2, g.abs() + c.eps);
        exp_inf[i] = u;
        param[i] = theta + (c.neg_clr * m) / u;
    }
}
