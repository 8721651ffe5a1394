//! Adam and AdamW as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor with step count `t` (after the increment), in torch.optim's
//! order and rounding (`θ` param, `g` grad, `m` exp_avg, `v` exp_avg_sq):
//!
//! ```text
//! g    = -grad if maximize else grad
//! θ    = θ · (1 − lr·wd)                       (AdamW, wd ≠ 0)
//! g    = g + wd·θ                              (Adam,  wd ≠ 0; one FMA)
//! m    = lerp(m, g, 1 − β1)                    (one FMA, torch's two-sided lerp)
//! v    = v·β2 + ((1 − β2)·g)·g                 (rounded product, then one FMA)
//! v̂max = max(v̂max, v)                          (amsgrad; NaN propagates)
//! bc1  = 1 − β1^t,  bc2 = 1 − β2^t             (f64, like Python floats)
//! den  = sqrt(v or v̂max) / sqrt(bc2) + ε
//! θ    = θ + ((−lr / bc1)·m) / den
//! ```
//!
//! The per-tensor scalars are computed in f64 and rounded to the element type
//! where they are used, as torch rounds Python floats.

use super::scalars::python_pow;
use crate::element::{Element, nan_max};
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `exp_avg`, `exp_avg_sq` and, with amsgrad, `max_exp_avg_sq`,
/// and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub amsgrad: bool,
    pub maximize: bool,
    /// AdamW's decay `θ·(1 − lr·wd)` instead of Adam's `g + wd·θ`.
    pub decoupled_weight_decay: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct AdamCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    /// `1 − lr·wd` (AdamW).
    decay_factor: F,
    /// lerp weight `1 − β1`, and the form torch's lerp picks for it.
    lerp_weight: F,
    lerp_from_start: bool,
    beta2: F,
    one_minus_beta2: F,
    neg_step_size: F,
    bias_correction2_sqrt: F,
    eps: F,
}

impl<F: Element> AdamCoefficients<F> {
    fn new(config: &AdamConfig, step: f64) -> Self {
        let bias_correction1 = 1.0 - config.beta1.powf(step);
        let bias_correction2 = 1.0 - config.beta2.powf(step);
        let lerp_weight = F::from_f64(1.0 - config.beta1);
        AdamCoefficients {
            grad_factor: if config.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(config.weight_decay),
            decay_factor: F::from_f64(1.0 - config.lr * config.weight_decay),
            lerp_weight,
            lerp_from_start: lerp_weight.abs() < F::from_f64(0.5),
            beta2: F::from_f64(config.beta2),
            one_minus_beta2: F::from_f64(1.0 - config.beta2),
            neg_step_size: F::from_f64(-(config.lr / bias_correction1)),
            // Python's `bc2 ** 0.5` is C `pow`, not `sqrt` (a literal `powf(0.5)`
            // would be compiled into `sqrt`).
            bias_correction2_sqrt: F::from_f64(python_pow(bias_correction2, 0.5)),
            eps: F::from_f64(config.eps),
        }
    }
}

/// How weight decay enters the update; a compile-time parameter of the loop
/// so it carries no branch.
const NO_DECAY: u8 = 0;
const COUPLED_DECAY: u8 = 1;
const DECOUPLED_DECAY: u8 = 2;

impl ElementwiseRule for AdamConfig {
    type Coefficients<F: Element> = AdamCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut AdamCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        if self.amsgrad { 3 } else { 2 }
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> AdamCoefficients<F> {
        scalars[0] += 1.0;
        AdamCoefficients::new(self, scalars[0])
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &AdamCoefficients<F>, piece: Piece<'_, F>) {
        let decay = match (self.weight_decay != 0.0, self.decoupled_weight_decay) {
            (false, _) => NO_DECAY,
            (true, false) => COUPLED_DECAY,
            (true, true) => DECOUPLED_DECAY,
        };
        // Every choice that is fixed for the piece (decay, amsgrad, the lerp form)
        // is a compile-time parameter of its own loop: a choice left inside the
        // loop is made again for every vector of elements (LLVM does not unswitch
        // loops this large), about 15% more instructions per element.
        macro_rules! run {
            ($amsgrad:literal, $($slices:expr),*) => {
                match (decay, c.lerp_from_start) {
                    (NO_DECAY, true) => update::<F, NO_DECAY, $amsgrad, true>($($slices,)* c),
                    (NO_DECAY, false) => update::<F, NO_DECAY, $amsgrad, false>($($slices,)* c),
                    (COUPLED_DECAY, true) => update::<F, COUPLED_DECAY, $amsgrad, true>($($slices,)* c),
                    (COUPLED_DECAY, false) => update::<F, COUPLED_DECAY, $amsgrad, false>($($slices,)* c),
                    (_, true) => update::<F, DECOUPLED_DECAY, $amsgrad, true>($($slices,)* c),
                    (_, false) => update::<F, DECOUPLED_DECAY, $amsgrad, false>($($slices,)* c),
                }
            };
        }
        if self.amsgrad {
            let (param, grad, [exp_avg, exp_avg_sq, max_exp_avg_sq]) = split_piece::<F, 3>(piece);
            run!(true, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
        } else {
            let (param, grad, [exp_avg, exp_avg_sq]) = split_piece::<F, 2>(piece);
            run!(false, param, grad, exp_avg, exp_avg_sq, &mut [])
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: u8, const AMSGRAD: bool, const LERP_FROM_START: bool>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_avg_sq: &mut [F],
    max_exp_avg_sq: &mut [F],
    c: &AdamCoefficients<F>,
) {
    let n = param.len();
    let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
    // An empty slice stands in when amsgrad is off; it is never indexed then.
    let max_exp_avg_sq = if AMSGRAD { &mut max_exp_avg_sq[..n] } else { &mut max_exp_avg_sq[..0] };
    // The lerp form is fixed per tensor (`LERP_FROM_START` is `c.lerp_from_start`);
    // as a (coefficient, base) pair: w < 0.5: m + w·(g − m);  otherwise g + (w − 1)·(g − m).
    let lerp_coefficient = if LERP_FROM_START { c.lerp_weight } else { c.lerp_weight - F::ONE };
    for i in 0..n {
        let mut theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY == DECOUPLED_DECAY {
            theta = theta * c.decay_factor;
        } else if DECAY == COUPLED_DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let m_old = exp_avg[i];
        let lerp_base = if LERP_FROM_START { m_old } else { g };
        let m = lerp_coefficient.mul_add(g - m_old, lerp_base);
        exp_avg[i] = m;
        let v = (c.one_minus_beta2 * g).mul_add(g, exp_avg_sq[i] * c.beta2);
        exp_avg_sq[i] = v;
        let v_used = if AMSGRAD {
            let v_max = nan_max(max_exp_avg_sq[i], v);
            max_exp_avg_sq[i] = v_max;
            v_max
        } else {
            v
        };
        let denom = v_used.sqrt() / c.bias_correction2_sqrt + c.eps;
        param[i] = theta + (c.neg_step_size * m) / denom;
    }
}
