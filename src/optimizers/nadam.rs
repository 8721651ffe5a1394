//! NAdam as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor with step count `t` (after the increment, counted in
//! float32) and momentum product `P`, in torch.optim's order and rounding
//! (`θ` param, `m` exp_avg, `v` exp_avg_sq, `ψ` momentum_decay):
//!
//! ```text
//! g    = -grad if maximize else grad
//! bc2  = 1 − β2^t                                  (f64, like Python floats)
//! θ    = θ · (1 − lr·wd)                           (decoupled weight decay, wd ≠ 0)
//! g    = g + wd·θ                                  (coupled, wd ≠ 0; one FMA)
//! μ    = β1·(1 − 0.5·0.96^(t·ψ))                   (f64)
//! μ'   = β1·(1 − 0.5·0.96^((t + 1)·ψ))             (f64)
//! P    = P · μ                                     (in float32: μ rounded first)
//! m    = lerp(m, g, 1 − β1)                        (one FMA, torch's two-sided lerp)
//! v    = v·β2 + ((1 − β2)·g)·g                     (rounded product, then one FMA)
//! den  = sqrt(v / bc2) + ε                         (divide first, unlike Adam)
//! θ    = θ + ((−lr·(1 − μ) / (1 − P))·g) / den     (rounded product, rounded quotient)
//! θ    = θ + ((−lr·μ' / (1 − P·μ'))·m) / den       (P·μ' in f64)
//! ```
//!
//! `P` starts at 1 and is stored as the float32 value torch keeps, also when a
//! state dict supplied another value (torch switches to the param's dtype on a
//! load; rustoptim stays in float32).

use super::lerp::Lerp;
use super::scalars::{float32_step, python_pow};
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `exp_avg` and `exp_avg_sq`, and the scalars `step` and
/// `mu_product`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NadamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum_decay: f64,
    pub decoupled_weight_decay: bool,
    pub maximize: bool,
}

impl Default for NadamConfig {
    fn default() -> Self {
        NadamConfig {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
            decoupled_weight_decay: false,
            maximize: false,
        }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct NadamCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    /// `1 − lr·wd` (decoupled decay).
    decay_factor: F,
    exp_avg_lerp: Lerp<F>,
    beta2: F,
    one_minus_beta2: F,
    bias_correction2: F,
    eps: F,
    grad_coefficient: F,
    exp_avg_coefficient: F,
}

/// How weight decay enters the update; a compile-time parameter of the loop.
const NO_DECAY: u8 = 0;
const COUPLED_DECAY: u8 = 1;
const DECOUPLED_DECAY: u8 = 2;

impl ElementwiseRule for NadamConfig {
    type Coefficients<F: Element> = NadamCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut NadamCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        2
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> NadamCoefficients<F> {
        let step = float32_step(scalars[0]);
        scalars[0] = step;
        let bias_correction2 = 1.0 - python_pow(self.beta2, step);
        let mu = self.beta1 * (1.0 - 0.5 * python_pow(0.96, step * self.momentum_decay));
        let mu_next = self.beta1 * (1.0 - 0.5 * python_pow(0.96, (step + 1.0) * self.momentum_decay));
        // torch's `mu_product *= mu` on a float32 0-d tensor.
        let mu_product = f64::from(scalars[1] as f32 * mu as f32);
        scalars[1] = mu_product;
        let mu_product_next = mu_product * mu_next;
        NadamCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            decay_factor: F::from_f64(1.0 - self.lr * self.weight_decay),
            exp_avg_lerp: Lerp::new(1.0 - self.beta1),
            beta2: F::from_f64(self.beta2),
            one_minus_beta2: F::from_f64(1.0 - self.beta2),
            bias_correction2: F::from_f64(bias_correction2),
            eps: F::from_f64(self.eps),
            grad_coefficient: F::from_f64((-self.lr * (1.0 - mu)) / (1.0 - mu_product)),
            exp_avg_coefficient: F::from_f64((-self.lr * mu_next) / (1.0 - mu_product_next)),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &NadamCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [exp_avg, exp_avg_sq]) = split_piece::<F, 2>(piece);
        match (self.weight_decay != 0.0, self.decoupled_weight_decay) {
            (false, _) => update::<F, NO_DECAY>(param, grad, exp_avg, exp_avg_sq, c),
            (true, false) => update::<F, COUPLED_DECAY>(param, grad, exp_avg, exp_avg_sq, c),
            (true, true) => update::<F, DECOUPLED_DECAY>(param, grad, exp_avg, exp_avg_sq, c),
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: u8>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_avg_sq: &mut [F],
    c: &NadamCoefficients<F>,
) {
    let n = param.len();
    let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
    for i in 0..n {
        let mut theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY == DECOUPLED_DECAY {
            theta = theta * c.decay_factor;
        } else if DECAY == COUPLED_DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let m = c.exp_avg_lerp.apply(exp_avg[i], g);
        exp_avg[i] = m;
        let v = (c.one_minus_beta2 * g).mul_add(g, exp_avg_sq[i] * c.beta2);
        exp_avg_sq[i] = v;
        let denom = (v / c.bias_correction2).sqrt() + c.eps;
        theta = theta + (c.grad_coefficient * g) / denom;
        param[i] = theta + (c.exp_avg_coefficient * m) / denom;
    }
}
