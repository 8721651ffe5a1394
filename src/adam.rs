//! Adam and AdamW: one fused pass per tensor, over all tensors of a param group.
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

use crate::element::{Element, nan_max};
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// Hyperparameters of one param group, read fresh at every step.
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

/// One tensor's slices, all of the same length and in the same element order.
pub struct AdamTensor<'a, F> {
    pub param: &'a mut [F],
    pub grad: &'a [F],
    pub exp_avg: &'a mut [F],
    pub exp_avg_sq: &'a mut [F],
    /// Present exactly when `amsgrad` is on.
    pub max_exp_avg_sq: Option<&'a mut [F]>,
    /// The tensor's step count after this step's increment (1 on its first step).
    pub step: f64,
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
struct Coefficients<F> {
    grad_sign: F,
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

impl<F: Element> Coefficients<F> {
    fn new(config: &AdamConfig, step: f64) -> Self {
        let bias_correction1 = 1.0 - config.beta1.powf(step);
        let bias_correction2 = 1.0 - config.beta2.powf(step);
        let lerp_weight = F::from_f64(1.0 - config.beta1);
        Coefficients {
            grad_sign: if config.maximize { -F::ONE } else { F::ONE },
            weight_decay: F::from_f64(config.weight_decay),
            decay_factor: F::from_f64(1.0 - config.lr * config.weight_decay),
            lerp_weight,
            lerp_from_start: lerp_weight.abs() < F::from_f64(0.5),
            beta2: F::from_f64(config.beta2),
            one_minus_beta2: F::from_f64(1.0 - config.beta2),
            neg_step_size: F::from_f64(-(config.lr / bias_correction1)),
            // Python's `bc2 ** 0.5` is C `pow`, not `sqrt`.
            bias_correction2_sqrt: F::from_f64(bias_correction2.powf(0.5)),
            eps: F::from_f64(config.eps),
        }
    }
}

/// How weight decay enters the update; a compile-time parameter of the kernel
/// so the inner loop carries no branch.
const NO_DECAY: u8 = 0;
const COUPLED_DECAY: u8 = 1;
const DECOUPLED_DECAY: u8 = 2;

/// Applies one Adam/AdamW step to every tensor, in place.
///
/// Fails (changing nothing) if a tensor's slices differ in length or the
/// presence of `max_exp_avg_sq` does not match `config.amsgrad`.
pub fn adam_step<F: Element>(tensors: &mut [AdamTensor<'_, F>], config: &AdamConfig) -> Result<(), OptimError> {
    for (index, tensor) in tensors.iter().enumerate() {
        check_lengths(index, tensor, config.amsgrad)?;
    }
    let decay = match (config.weight_decay != 0.0, config.decoupled_weight_decay) {
        (false, _) => NO_DECAY,
        (true, false) => COUPLED_DECAY,
        (true, true) => DECOUPLED_DECAY,
    };
    match (decay, config.amsgrad) {
        (NO_DECAY, false) => run::<F, NO_DECAY, false>(tensors, config),
        (NO_DECAY, true) => run::<F, NO_DECAY, true>(tensors, config),
        (COUPLED_DECAY, false) => run::<F, COUPLED_DECAY, false>(tensors, config),
        (COUPLED_DECAY, true) => run::<F, COUPLED_DECAY, true>(tensors, config),
        (_, false) => run::<F, DECOUPLED_DECAY, false>(tensors, config),
        (_, true) => run::<F, DECOUPLED_DECAY, true>(tensors, config),
    }
    Ok(())
}

fn check_lengths<F>(index: usize, tensor: &AdamTensor<'_, F>, amsgrad: bool) -> Result<(), OptimError> {
    let expected = tensor.param.len();
    let check = |what: &'static str, got: usize| {
        if got == expected { Ok(()) } else { Err(OptimError::LengthMismatch { index, what, expected, got }) }
    };
    check("grad", tensor.grad.len())?;
    check("exp_avg", tensor.exp_avg.len())?;
    check("exp_avg_sq", tensor.exp_avg_sq.len())?;
    match (&tensor.max_exp_avg_sq, amsgrad) {
        (Some(max), true) => check("max_exp_avg_sq", max.len()),
        (None, false) => Ok(()),
        (_, true) => Err(OptimError::InvalidSetting(format!("tensor {index}: amsgrad needs max_exp_avg_sq"))),
        (_, false) => Err(OptimError::InvalidSetting(format!("tensor {index}: max_exp_avg_sq given without amsgrad"))),
    }
}

/// The slices of one tensor, shareable across the threads that each update a piece.
struct SharedTensor<'a, F> {
    param: SharedMut<'a, F>,
    grad: &'a [F],
    exp_avg: SharedMut<'a, F>,
    exp_avg_sq: SharedMut<'a, F>,
    max_exp_avg_sq: Option<SharedMut<'a, F>>,
    coefficients: Coefficients<F>,
}

fn run<F: Element, const DECAY: u8, const AMSGRAD: bool>(tensors: &mut [AdamTensor<'_, F>], config: &AdamConfig) {
    let lengths: Vec<usize> = tensors.iter().map(|t| t.param.len()).collect();
    // Tensors of a group usually share their step count; the bias corrections
    // (three `pow` calls) are then computed once, not once per tensor.
    let mut last: Option<(f64, Coefficients<F>)> = None;
    let mut coefficients_for = |step: f64| match last {
        Some((last_step, c)) if last_step == step => c,
        _ => {
            let c = Coefficients::new(config, step);
            last = Some((step, c));
            c
        }
    };
    let shared: Vec<SharedTensor<'_, F>> = tensors
        .iter_mut()
        .map(|t| SharedTensor {
            coefficients: coefficients_for(t.step),
            param: SharedMut::new(&mut *t.param),
            grad: t.grad,
            exp_avg: SharedMut::new(&mut *t.exp_avg),
            exp_avg_sq: SharedMut::new(&mut *t.exp_avg_sq),
            max_exp_avg_sq: t.max_exp_avg_sq.as_deref_mut().map(SharedMut::new),
        })
        .collect();
    for_each_piece(&lengths, |index, range| {
        let t = &shared[index];
        // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
        let (param, exp_avg, exp_avg_sq) = unsafe {
            (t.param.piece(range.clone()), t.exp_avg.piece(range.clone()), t.exp_avg_sq.piece(range.clone()))
        };
        let max_exp_avg_sq = t.max_exp_avg_sq.as_ref().map(|m| unsafe { m.piece(range.clone()) });
        let grad = &t.grad[range];
        let c = t.coefficients;
        dispatch(
            #[inline(always)]
            move || update::<F, DECAY, AMSGRAD>(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, &c),
        );
    });
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element, const DECAY: u8, const AMSGRAD: bool>(
    param: &mut [F],
    grad: &[F],
    exp_avg: &mut [F],
    exp_avg_sq: &mut [F],
    max_exp_avg_sq: Option<&mut [F]>,
    c: &Coefficients<F>,
) {
    let n = param.len();
    let (grad, exp_avg, exp_avg_sq) = (&grad[..n], &mut exp_avg[..n], &mut exp_avg_sq[..n]);
    // An empty slice stands in when amsgrad is off; it is never indexed then.
    let mut no_max: [F; 0] = [];
    let max_exp_avg_sq = match max_exp_avg_sq {
        Some(m) if AMSGRAD => &mut m[..n],
        _ => &mut no_max[..],
    };
    // The lerp form is fixed per tensor; resolve it to a (coefficient, base) pair:
    // w < 0.5: m + w·(g − m);  otherwise g + (w − 1)·(g − m).
    let lerp_coefficient = if c.lerp_from_start { c.lerp_weight } else { c.lerp_weight - F::ONE };
    for i in 0..n {
        let mut theta = param[i];
        let mut g = grad[i] * c.grad_sign;
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
