//! RAdam (rectified Adam) as an element-wise rule: one fused pass per tensor.
//!
//! For each tensor with step count `t` (a float32 count, after the increment),
//! in torch.optim's order and rounding (`θ` param, `g` grad, `m` exp_avg, `v`
//! exp_avg_sq):
//!
//! ```text
//! g   = -grad if maximize else grad
//! θ   = θ · (1 − lr·wd)                       (decoupled_weight_decay, wd ≠ 0)
//! g   = g + wd·θ                              (otherwise, wd ≠ 0; one FMA)
//! m   = lerp(m, g, 1 − β1)                    (one FMA, torch's two-sided lerp)
//! v   = v·β2 + ((1 − β2)·g)·g                 (rounded product, then one FMA)
//! per tensor, in f64 like Python floats:
//!     bc1 = 1 − β1^t,  bc2 = 1 − β2^t
//!     ρ∞  = 2/(1 − β2) − 1
//!     ρt  = ρ∞ − ((2t)·β2^t)/bc2
//!     r   = (((ρt − 4)(ρt − 2)ρ∞) / ((ρ∞ − 4)(ρ∞ − 2)ρt)) ** 0.5
//! m̂   = m / bc1
//! if ρt > 5:                                  (the variance is tractable)
//!     a = (1 / (sqrt(v) + ε)) · bc2 ** 0.5    (a reciprocal, then a product)
//!     u = ((m̂·lr)·a)·r
//! else:
//!     u = m̂·lr                                 (momentum SGD with bias correction)
//! θ   = θ − u
//! ```
//!
//! Whether the step is rectified, and `r`, are per tensor (they depend on `t`
//! only). Scalars are rounded to the element type where they are used, as
//! torch rounds Python floats; `**` is C `pow` as in Python.

use super::scalars::{float32_step, python_pow};
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `exp_avg`, `exp_avg_sq` and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RadamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
    /// AdamW-style decay `θ·(1 − lr·wd)` instead of `g + wd·θ`.
    pub decoupled_weight_decay: bool,
}

impl Default for RadamConfig {
    fn default() -> Self {
        RadamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
            decoupled_weight_decay: false,
        }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct RadamCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    /// `1 − lr·wd` (decoupled decay).
    decay_factor: F,
    /// lerp weight `1 − β1`, and the form torch's lerp picks for it.
    lerp_weight: F,
    lerp_from_start: bool,
    beta2: F,
    one_minus_beta2: F,
    bias_correction1: F,
    lr: F,
    /// `ρt > 5`: the update uses the adaptive learning rate and `r`.
    rectified: bool,
    eps: F,
    bias_correction2_sqrt: F,
    rectification: F,
}

impl<F: Element> RadamCoefficients<F> {
    fn new(config: &RadamConfig, step: f64) -> Self {
        let (beta1, beta2) = (config.beta1, config.beta2);
        let bias_correction1 = 1.0 - python_pow(beta1, step);
        let bias_correction2 = 1.0 - python_pow(beta2, step);
        let rho_inf = 2.0 / (1.0 - beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * step * python_pow(beta2, step) / bias_correction2;
        let rectified = rho_t > 5.0;
        let rectification = if rectified {
            python_pow((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t), 0.5)
        } else {
            0.0
        };
        let lerp_weight = F::from_f64(1.0 - beta1);
        RadamCoefficients {
            grad_factor: if config.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(config.weight_decay),
            decay_factor: F::from_f64(1.0 - config.lr * config.weight_decay),
            lerp_weight,
            lerp_from_start: lerp_weight.abs() < F::from_f64(0.5),
            beta2: F::from_f64(beta2),
            one_minus_beta2: F::from_f64(1.0 - beta2),
            bias_correction1: F::from_f64(bias_correction1),
            lr: F::from_f64(config.lr),
            rectified,
            eps: F::from_f64(config.eps),
            bias_correction2_sqrt: F::from_f64(python_pow(bias_correction2, 0.5)),
            rectification: F::from_f64(rectification),
        }
    }
}

/// How weight decay enters the update; a compile-time parameter of the loop
/// so it carries no branch.
const NO_DECAY: u8 = 0;
const COUPLED_DECAY: u8 = 1;
const DECOUPLED_DECAY: u8 = 2;

impl ElementwiseRule for RadamConfig {
    type Coefficients<F: Element> = RadamCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut RadamCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        2
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> RadamCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        RadamCoefficients::new(self, scalars[0])
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &RadamCoefficients<F>, piece: Piece<'_, F>) {
        let decay = match (self.weight_decay != 0.0, self.decoupled_weight_decay) {
            (false, _) => NO_DECAY,
            (true, false) => COUPLED_DECAY,
            (true, true) => DECOUPLED_DECAY,
        };
        let (param, grad, [exp_avg, exp_avg_sq]) = split_piece::<F, 2>(piece);
        match (decay, c.rectified) {
            (NO_DECAY, false) => update::<F, NO_DECAY, false>(param, grad, exp_avg, exp_avg_sq, c),
            (NO_DECAY, true) => update::<F, NO_DECAY, true>(param, grad, exp_avg, exp_avg_sq, c),
            (COUPLED_DECAY, false) => update::<F, COUPLED_DECAY, false>(param, grad, exp_avg, exp_avg_sq, c),
            (COUPLED_DECAY, true) => update::<F, COUPLED_DECAY, true>(param, grad, exp_avg, exp_avg_sq, c),
            (_, false) => update::<F, DECOUPLED_DECAY, false>(param, grad, exp_avg, exp_avg_sq, c),
            (_, true) => update::<F, DECOUPLED_DECAY, true>(param, grad, exp_avg, exp_avg_sq, c),
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: u8, const RECTIFIED: bool>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_avg_sq: &mut [F],
    c: &RadamCoefficients<F>,
) {
    let n = param.len();
    let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
    // The lerp form is fixed per tensor; resolve it to a (coefficient, base) pair:
    // w < 0.5: m + w·(g − m);  otherwise g + (w − 1)·(g − m).
    let lerp_coefficient = if c.lerp_from_start { c.lerp_weight } else { c.lerp_weight - F::ONE };
    for i in 0..n {
        let mut theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY == DECOUPLED_DECAY {
            theta = theta * c.decay_factor;
        } else if DECAY == COUPLED_DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let m_old = exp_avg[i];
        let lerp_base = if c.lerp_from_start { m_old } else { g };
        let m = lerp_coefficient.mul_add(g - m_old, lerp_base);
        exp_avg[i] = m;
        let v = (c.one_minus_beta2 * g).mul_add(g, exp_avg_sq[i] * c.beta2);
        exp_avg_sq[i] = v;
        let mut u = (m / c.bias_correction1) * c.lr;
        if RECTIFIED {
            let adaptive_lr = (F::ONE / (v.sqrt() + c.eps)) * c.bias_correction2_sqrt;
            u = (u * adaptive_lr) * c.rectification;
        }
        param[i] = theta - u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::{self, Tensor};

    /// RAdam as the paper writes it, one element at a time, in f64.
    fn reference(theta: &mut [f64], grad: &[f64], m: &mut [f64], v: &mut [f64], t: f64, c: &RadamConfig) {
        let rho_inf = 2.0 / (1.0 - c.beta2) - 1.0;
        let rho_t = rho_inf - 2.0 * t * c.beta2.powf(t) / (1.0 - c.beta2.powf(t));
        for i in 0..theta.len() {
            let mut g = if c.maximize { -grad[i] } else { grad[i] };
            if c.decoupled_weight_decay {
                theta[i] *= 1.0 - c.lr * c.weight_decay;
            } else {
                g += c.weight_decay * theta[i];
            }
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
            let m_hat = m[i] / (1.0 - c.beta1.powf(t));
            theta[i] -= if rho_t > 5.0 {
                let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)).sqrt();
                let l = (1.0 - c.beta2.powf(t)).sqrt() / (v[i].sqrt() + c.eps);
                c.lr * m_hat * l * r
            } else {
                c.lr * m_hat
            };
        }
    }

    #[test]
    fn f64_matches_the_textbook_form_through_both_branches() {
        let n = 37;
        let grads: Vec<Vec<f64>> =
            (0..12).map(|t| (0..n).map(|i| ((i * 7 + t * 3) % 11) as f64 - 5.0 + 0.1 * t as f64).collect()).collect();
        for (maximize, decoupled, weight_decay) in [(false, false, 0.0), (true, false, 0.1), (false, true, 0.1)] {
            let config = RadamConfig {
                lr: 0.01,
                beta2: 0.9,
                weight_decay,
                maximize,
                decoupled_weight_decay: decoupled,
                ..Default::default()
            };
            let init: Vec<f64> = (0..n).map(|i| (i as f64 - 18.0) / 7.0).collect();
            let (mut theta, mut m, mut v) = (init.clone(), vec![0.0; n], vec![0.0; n]);
            let (mut ref_theta, mut ref_m, mut ref_v) = (init, vec![0.0; n], vec![0.0; n]);
            let mut scalars = [0.0];
            // β2 = 0.9: ρ∞ = 19, steps 1-5 are unrectified, later ones rectified.
            for (t, grad) in grads.iter().enumerate() {
                let mut tensors =
                    [Tensor::new(&mut theta, grad).with_slots([&mut m[..], &mut v[..]]).with_scalars(&scalars)];
                elementwise::step(&config, &mut tensors).unwrap();
                scalars[0] = tensors[0].scalars[0];
                assert_eq!(scalars[0], (t + 1) as f64);
                reference(&mut ref_theta, grad, &mut ref_m, &mut ref_v, (t + 1) as f64, &config);
                for (a, b) in theta.iter().zip(&ref_theta) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "step {t}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn rectification_starts_when_rho_t_exceeds_five() {
        let config = RadamConfig::default();
        let rectified: Vec<bool> =
            (1..=7).map(|t| RadamCoefficients::<f64>::new(&config, t as f64).rectified).collect();
        // torch with the default betas: steps 1-5 unrectified, from step 6 on rectified.
        assert_eq!(rectified, [false, false, false, false, false, true, true]);
    }
}
