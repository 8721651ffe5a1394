//! SGD with momentum, dampening, Nesterov and weight decay: one fused pass per
//! tensor, over all tensors of a param group.
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
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// Hyperparameters of one param group, read fresh at every step.
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

/// The momentum buffer of one tensor, and whether it was just created.
pub struct MomentumBuffer<'a, F> {
    pub values: &'a mut [F],
    /// A new buffer takes the gradient as is (torch's first-step rule).
    pub is_new: bool,
}

/// One tensor's slices, all of the same length and in the same element order.
pub struct SgdTensor<'a, F> {
    pub param: &'a mut [F],
    pub grad: &'a [F],
    /// Present exactly when momentum ≠ 0.
    pub momentum_buffer: Option<MomentumBuffer<'a, F>>,
}

/// Constants of one step, rounded to the element type.
#[derive(Clone, Copy)]
struct Coefficients<F> {
    grad_sign: F,
    weight_decay: F,
    momentum: F,
    one_minus_dampening: F,
    neg_lr: F,
}

impl<F: Element> Coefficients<F> {
    fn new(config: &SgdConfig) -> Self {
        Coefficients {
            grad_sign: if config.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(config.weight_decay),
            momentum: F::from_f64(config.momentum),
            one_minus_dampening: F::from_f64(1.0 - config.dampening),
            neg_lr: F::from_f64(-config.lr),
        }
    }
}

/// What the momentum does to the gradient; a compile-time parameter of the
/// kernel so the inner loop carries no branch.
const NO_MOMENTUM: u8 = 0;
const FIRST_MOMENTUM: u8 = 1;
const MOMENTUM: u8 = 2;

/// Applies one SGD step to every tensor, in place.
///
/// Fails (changing nothing) if a tensor's slices differ in length or the
/// presence of a momentum buffer does not match `config.momentum != 0`.
pub fn sgd_step<F: Element>(tensors: &mut [SgdTensor<'_, F>], config: &SgdConfig) -> Result<(), OptimError> {
    let with_momentum = config.momentum != 0.0;
    for (index, tensor) in tensors.iter().enumerate() {
        let expected = tensor.param.len();
        let mismatch = |what, got| OptimError::LengthMismatch { index, what, expected, got };
        if tensor.grad.len() != expected {
            return Err(mismatch("grad", tensor.grad.len()));
        }
        match (&tensor.momentum_buffer, with_momentum) {
            (Some(buffer), true) if buffer.values.len() != expected => {
                return Err(mismatch("momentum_buffer", buffer.values.len()));
            }
            (Some(_), true) | (None, false) => {}
            (None, true) => {
                return Err(OptimError::InvalidSetting(format!("tensor {index}: momentum needs a momentum buffer")));
            }
            (Some(_), false) => {
                return Err(OptimError::InvalidSetting(format!(
                    "tensor {index}: momentum buffer given with momentum 0"
                )));
            }
        }
    }
    let coefficients = Coefficients::<F>::new(config);
    let decay = config.weight_decay != 0.0;
    let lengths: Vec<usize> = tensors.iter().map(|t| t.param.len()).collect();
    let shared: Vec<SharedTensor<'_, F>> = tensors
        .iter_mut()
        .map(|t| SharedTensor {
            param: SharedMut::new(&mut *t.param),
            grad: t.grad,
            buffer: t.momentum_buffer.as_mut().map(|b| (SharedMut::new(&mut *b.values), b.is_new)),
        })
        .collect();
    for_each_piece(&lengths, |index, range| {
        let t = &shared[index];
        // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
        let param = unsafe { t.param.piece(range.clone()) };
        let grad = &t.grad[range.clone()];
        let c = &coefficients;
        match (&t.buffer, decay, config.nesterov) {
            (None, false, _) => dispatch(
                #[inline(always)]
                || update::<F, NO_MOMENTUM, false, false>(param, grad, &mut [], c),
            ),
            (None, true, _) => dispatch(
                #[inline(always)]
                || update::<F, NO_MOMENTUM, true, false>(param, grad, &mut [], c),
            ),
            (Some((buffer, is_new)), decay, nesterov) => {
                // SAFETY: as above.
                let buffer = unsafe { buffer.piece(range) };
                macro_rules! with_momentum {
                    ($kind:expr) => {
                        match (decay, nesterov) {
                            (false, false) => dispatch(
                                #[inline(always)]
                                || update::<F, $kind, false, false>(param, grad, buffer, c),
                            ),
                            (false, true) => dispatch(
                                #[inline(always)]
                                || update::<F, $kind, false, true>(param, grad, buffer, c),
                            ),
                            (true, false) => dispatch(
                                #[inline(always)]
                                || update::<F, $kind, true, false>(param, grad, buffer, c),
                            ),
                            (true, true) => dispatch(
                                #[inline(always)]
                                || update::<F, $kind, true, true>(param, grad, buffer, c),
                            ),
                        }
                    };
                }
                if *is_new { with_momentum!(FIRST_MOMENTUM) } else { with_momentum!(MOMENTUM) }
            }
        }
    });
    Ok(())
}

/// The slices of one tensor, shareable across the threads that each update a piece.
struct SharedTensor<'a, F> {
    param: SharedMut<'a, F>,
    grad: &'a [F],
    buffer: Option<(SharedMut<'a, F>, bool)>,
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const MOMENTUM_KIND: u8, const DECAY: bool, const NESTEROV: bool>(
    param: &mut [F],
    grad: &[F],
    buffer: &mut [F],
    c: &Coefficients<F>,
) {
    let n = param.len();
    let grad = &grad[..n];
    let buffer = if MOMENTUM_KIND == NO_MOMENTUM { &mut buffer[..0] } else { &mut buffer[..n] };
    for i in 0..n {
        let theta = param[i];
        let mut g = grad[i] * c.grad_sign;
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
