//! RMSprop (optionally centered, with momentum) as an element-wise rule: one
//! fused pass per tensor.
//!
//! For each tensor, in torch.optim's order and rounding (`θ` param, `v`
//! square_avg, `ḡ` grad_avg, `b` momentum_buffer, `α` alpha, `μ` momentum):
//!
//! ```text
//! g   = -grad if maximize else grad
//! g   = g + wd·θ                      (wd ≠ 0; one FMA)
//! v   = v·α                           (rounded)
//! v   = v + ((1 − α)·g)·g             (rounded product, then one FMA)
//! if centered:
//!     ḡ   = lerp(ḡ, g, 1 − α)         (one FMA, torch's two-sided lerp)
//!     avg = sqrt(v − ḡ·ḡ)             (one FMA)
//! else:
//!     avg = sqrt(v)
//! avg = avg + ε
//! if μ > 0:
//!     b = b·μ + g / avg               (rounded product, rounded quotient, rounded sum)
//!     θ = θ − lr·b                    (one FMA)
//! else:
//!     θ = θ + ((−lr)·g) / avg         (rounded product, rounded quotient)
//! ```
//!
//! The step count is kept (in float32, as torch does) but not used.

use super::lerp::Lerp;
use super::scalars::float32_step;
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. Its tensors
/// carry the slots `square_avg`, then `momentum_buffer` when `momentum > 0`,
/// then `grad_avg` when centered, and the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropConfig {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
}

impl Default for RmspropConfig {
    fn default() -> Self {
        RmspropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
}

impl RmspropConfig {
    fn has_momentum(&self) -> bool {
        self.momentum > 0.0
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct RmspropCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    alpha: F,
    one_minus_alpha: F,
    grad_avg_lerp: Lerp<F>,
    eps: F,
    momentum: F,
    neg_lr: F,
}

impl ElementwiseRule for RmspropConfig {
    type Coefficients<F: Element> = RmspropCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut RmspropCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        1 + usize::from(self.has_momentum()) + usize::from(self.centered)
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> RmspropCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        RmspropCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(self.weight_decay),
            alpha: F::from_f64(self.alpha),
            one_minus_alpha: F::from_f64(1.0 - self.alpha),
            grad_avg_lerp: Lerp::new(1.0 - self.alpha),
            eps: F::from_f64(self.eps),
            momentum: F::from_f64(self.momentum),
            neg_lr: F::from_f64(-self.lr),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &RmspropCoefficients<F>, piece: Piece<'_, F>) {
        macro_rules! with_decay {
            ($momentum:expr, $centered:expr, $param:expr, $grad:expr, $v:expr, $b:expr, $ga:expr) => {
                if self.weight_decay != 0.0 {
                    update::<F, true, $momentum, $centered>($param, $grad, $v, $b, $ga, c)
                } else {
                    update::<F, false, $momentum, $centered>($param, $grad, $v, $b, $ga, c)
                }
            };
        }
        match (self.has_momentum(), self.centered) {
            (false, false) => {
                let (param, grad, [v]) = split_piece::<F, 1>(piece);
                with_decay!(false, false, param, grad, v, &mut [], &mut [])
            }
            (true, false) => {
                let (param, grad, [v, b]) = split_piece::<F, 2>(piece);
                with_decay!(true, false, param, grad, v, b, &mut [])
            }
            (false, true) => {
                let (param, grad, [v, ga]) = split_piece::<F, 2>(piece);
                with_decay!(false, true, param, grad, v, &mut [], ga)
            }
            (true, true) => {
                let (param, grad, [v, b, ga]) = split_piece::<F, 3>(piece);
                with_decay!(true, true, param, grad, v, b, ga)
            }
        }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: bool, const MOMENTUM: bool, const CENTERED: bool>(
    param: &mut [F],
    grad: &[F],
    square_avg: &mut [F],
    momentum_buffer: &mut [F],
    grad_avg: &mut [F],
    c: &RmspropCoefficients<F>,
) {
    let n = param.len();
    let (grad, square_avg) = (&grad[..n], &mut square_avg[..n]);
    // Empty slices stand in for the slots this configuration lacks; never indexed then.
    let momentum_buffer = if MOMENTUM { &mut momentum_buffer[..n] } else { &mut momentum_buffer[..0] };
    let grad_avg = if CENTERED { &mut grad_avg[..n] } else { &mut grad_avg[..0] };
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        let v = (c.one_minus_alpha * g).mul_add(g, square_avg[i] * c.alpha);
        square_avg[i] = v;
        let avg = if CENTERED {
            let ga = c.grad_avg_lerp.apply(grad_avg[i], g);
            grad_avg[i] = ga;
            (-ga).mul_add(ga, v).sqrt()
        } else {
            v.sqrt()
        } + c.eps;
        param[i] = if MOMENTUM {
            let b = momentum_buffer[i] * c.momentum + g / avg;
            momentum_buffer[i] = b;
            c.neg_lr.mul_add(b, theta)
        } else {
            theta + (c.neg_lr * g) / avg
        };
    }
}
