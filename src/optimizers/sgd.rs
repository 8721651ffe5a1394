//! SGD with momentum, dampening, Nesterov and weight decay as an element-wise
//! rule: one fused pass per tensor.
//!
//! For each tensor, in torch.optim's order and rounding (`θ` param, `b` the
//! momentum buffer, `μ` momentum, `τ` dampening):
//!
//! ```text
//! g = -grad if maximize else grad
//! g = g + wd·θ                      (wd ≠ 0; one FMA)
//! if μ ≠ 0:
//!     b = g                         (first step: a copy, no dampening)
//!     b = b·μ + (1 − τ)·g           (later steps; rounded product, then one FMA)
//!     g = g + μ·b if nesterov else b
//! θ = θ − lr·g                      (one FMA)
//! ```

use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step. With momentum,
/// its tensors carry the slot `momentum_buffer`; there is no scalar state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false, maximize: false }
    }
}

/// Constants of one step, rounded to the element type.
#[derive(Clone, Copy)]
pub struct SgdCoefficients<F> {
    /// A new momentum buffer takes the gradient as is (torch's first-step rule).
    new_buffer: bool,
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    weight_decay: F,
    momentum: F,
    one_minus_dampening: F,
    neg_lr: F,
}

impl<F: Element> SgdCoefficients<F> {
    fn new(config: &SgdConfig, new_buffer: bool) -> Self {
        SgdCoefficients {
            new_buffer,
            grad_factor: if config.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(config.weight_decay),
            momentum: F::from_f64(config.momentum),
            one_minus_dampening: F::from_f64(1.0 - config.dampening),
            neg_lr: F::from_f64(-config.lr),
        }
    }
}

/// What the momentum does to the gradient; a compile-time parameter of the
/// loop so it carries no branch.
const NO_MOMENTUM: u8 = 0;
const FIRST_MOMENTUM: u8 = 1;
const MOMENTUM: u8 = 2;

impl ElementwiseRule for SgdConfig {
    type Coefficients<F: Element> = SgdCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut SgdCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        usize::from(self.momentum != 0.0)
    }

    fn begin_tensor<F: Element>(&self, _scalars: &mut Scalars, fresh_slots: u8) -> SgdCoefficients<F> {
        SgdCoefficients::new(self, fresh_slots & 1 != 0)
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &SgdCoefficients<F>, piece: Piece<'_, F>) {
        let decay = self.weight_decay != 0.0;
        if self.momentum == 0.0 {
            let (param, grad, []) = split_piece::<F, 0>(piece);
            return match decay {
                false => update::<F, NO_MOMENTUM, false, false>(param, grad, &mut [], c),
                true => update::<F, NO_MOMENTUM, true, false>(param, grad, &mut [], c),
            };
        }
        let (param, grad, [buffer]) = split_piece::<F, 1>(piece);
        macro_rules! with_momentum {
            ($kind:expr) => {
                match (decay, self.nesterov) {
                    (false, false) => update::<F, $kind, false, false>(param, grad, buffer, c),
                    (false, true) => update::<F, $kind, false, true>(param, grad, buffer, c),
                    (true, false) => update::<F, $kind, true, false>(param, grad, buffer, c),
                    (true, true) => update::<F, $kind, true, true>(param, grad, buffer, c),
                }
            };
        }
        if c.new_buffer { with_momentum!(FIRST_MOMENTUM) } else { with_momentum!(MOMENTUM) }
    }
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const MOMENTUM_KIND: u8, const DECAY: bool, const NESTEROV: bool>(
    param: &mut [F],
    grad: &[F],
    buffer: &mut [F],
    c: &SgdCoefficients<F>,
) {
    let n = param.len();
    let grad = &grad[..n];
    let buffer = if MOMENTUM_KIND == NO_MOMENTUM { &mut buffer[..0] } else { &mut buffer[..n] };
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_factor;
        if DECAY {
            g = c.weight_decay.mul_add(theta, g);
        }
        if MOMENTUM_KIND != NO_MOMENTUM {
            let b = if MOMENTUM_KIND == FIRST_MOMENTUM {
                g
            } else {
                c.one_minus_dampening.mul_add(g, buffer[i] * c.momentum)
            };
            buffer[i] = b;
            g = if NESTEROV { c.momentum.mul_add(b, g) } else { b };
        }
        param[i] = c.neg_lr.mul_add(g, theta);
    }
}
