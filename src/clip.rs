//! Gradient clipping: scaling every gradient by one coefficient, and clamping
//! every element, in place, over all tensors of a call at once.
//!
//! torch's `clip_grads_with_norm_` (the second half of `clip_grad_norm_`), with
//! `total` the total norm in its own dtype (see [`crate::reduce::total_norm`]):
//!
//! ```text
//! coef = min(max_norm / (total + 1e-6), 1)     in total's dtype: ⟦⟦1 / ⟦total + 1e-6⟧⟧ · max_norm⟧
//! g    = ⟦g · coef⟧                            coef rounded to g's dtype first, except for a
//!                                              0-d float32 g and a float64 coef: ⟦f64(g) · coef⟧
//! ```
//!
//! (The exception is torch's type promotion: a 0-d gradient times the 0-d
//! coefficient tensor computes in the wider dtype, then rounds back in place.)
//!
//! A total of inf turns finite gradients into zeros and infinite ones into
//! NaN; NaN gives NaN. torch multiplies even by a coefficient of exactly 1 (to
//! spare a GPU a synchronization); here that pass is skipped, as it changes no
//! value, so a step that needs no clipping reads its gradients only once.
//!
//! torch's `clip_grad_value_`: `g = min(max(g, −c), c)`, NaN-propagating in
//! the bound and leaving NaN elements NaN.

use crate::element::Element;
use crate::partition::{SharedMut, for_each_piece};
use crate::reduce::TotalNorm;
use crate::simd::dispatch;

/// `min(max_norm / (total + 1e-6), 1)` with torch's rounding in `F`: Python
/// scalars are rounded to `F`, and `c / tensor` is a reciprocal times `c`.
pub fn clip_coefficient<F: Element>(max_norm: f64, total_norm: F) -> F {
    let coefficient = (F::ONE / (total_norm + F::from_f64(1e-6))) * F::from_f64(max_norm);
    // torch.clamp(max=1.0): NaN stays NaN.
    if coefficient.is_nan() || coefficient <= F::ONE { coefficient } else { F::ONE }
}

/// The coefficient for a total norm, in the total's dtype.
pub fn clip_coefficient_for(max_norm: f64, total_norm: TotalNorm) -> TotalNorm {
    match total_norm {
        TotalNorm::F32(total) => TotalNorm::F32(clip_coefficient(max_norm, total)),
        TotalNorm::F64(total) => TotalNorm::F64(clip_coefficient(max_norm, total)),
    }
}

/// torch's `g.mul_(coef)` for every gradient (see the module docs).
/// `f32_zero_dim[i]` tells whether float32 gradient `i` is 0-d.
pub fn scale_by_coefficient(
    f32_grads: &mut [&mut [f32]],
    f32_zero_dim: &[bool],
    f64_grads: &mut [&mut [f64]],
    coefficient: TotalNorm,
) {
    if coefficient.value() == 1.0 {
        return;
    }
    match coefficient {
        TotalNorm::F32(c) => {
            scale_in_place(f32_grads, c);
            scale_in_place(f64_grads, c as f64);
        }
        TotalNorm::F64(c) => {
            let mut dimensioned = Vec::with_capacity(f32_grads.len());
            for (grad, &zero_dim) in f32_grads.iter_mut().zip(f32_zero_dim) {
                if zero_dim {
                    grad.iter_mut().for_each(|x| *x = (*x as f64 * c) as f32);
                } else {
                    dimensioned.push(&mut **grad);
                }
            }
            scale_in_place(&mut dimensioned, c as f32);
            scale_in_place(f64_grads, c);
        }
    }
}

/// Multiplies every element of every tensor by `factor`, in place.
pub fn scale_in_place<F: Element>(tensors: &mut [&mut [F]], factor: F) {
    for_each_tensor_piece(
        tensors,
        #[inline(always)]
        |piece: &mut [F]| {
            for x in piece {
                *x = *x * factor;
            }
        },
    );
}

/// Clamps every element of every tensor into `[−clip_value, clip_value]`, in place.
///
/// As torch: `clamp_min(−c)` then `clamp_max(c)` with `c` rounded to `F`; a NaN
/// bound makes every element NaN, a NaN element stays NaN, and a negative `c`
/// sets every other element to `c`.
pub fn clamp_in_place<F: Element>(tensors: &mut [&mut [F]], clip_value: f64) {
    let high = F::from_f64(clip_value);
    let low = -high;
    for_each_tensor_piece(
        tensors,
        #[inline(always)]
        |piece: &mut [F]| {
            for x in piece {
                let raised = if *x < low || low.is_nan() { low } else { *x };
                *x = if raised > high || high.is_nan() { high } else { raised };
            }
        },
    );
}

/// Runs an element-wise in-place `update` over every tensor, split across
/// threads as an optimizer step is, compiled for the active SIMD level.
#[inline(always)]
fn for_each_tensor_piece<F: Element>(tensors: &mut [&mut [F]], update: impl Fn(&mut [F]) + Copy + Sync) {
    let lengths: Vec<usize> = tensors.iter().map(|t| t.len()).collect();
    let shared: Vec<SharedMut<'_, F>> = tensors.iter_mut().map(|t| SharedMut::new(t)).collect();
    for_each_piece(&lengths, |index, range| {
        // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
        let piece = unsafe { shared[index].piece(range) };
        dispatch(
            #[inline(always)]
            move || update(piece),
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficient_is_rounded_as_torch_and_clamped_at_one() {
        let total = 5.0f32;
        let expected = (1.0f32 / (5.0f32 + 1e-6f64 as f32)) * 1.0f32;
        assert_eq!(clip_coefficient(1.0, total), expected);
        assert_eq!(clip_coefficient(1e9, total), 1.0);
        assert_eq!(clip_coefficient(1.0, f64::INFINITY), 0.0);
        assert!(clip_coefficient(1.0, f64::NAN).is_nan());
        assert_eq!(clip_coefficient_for(2.0, TotalNorm::F64(4.0)), TotalNorm::F64((1.0 / (4.0 + 1e-6)) * 2.0));
    }

    #[test]
    fn a_coefficient_of_one_changes_nothing() {
        let mut grad = [1.5f32, -0.0, f32::INFINITY];
        scale_by_coefficient(&mut [&mut grad[..]], &[false], &mut [], TotalNorm::F32(1.0));
        assert_eq!(grad.map(f32::to_bits), [1.5f32, -0.0, f32::INFINITY].map(f32::to_bits));
    }

    #[test]
    fn zero_dim_float32_gradients_multiply_in_float64() {
        let mut scalar = [0.1f32];
        let mut vector = [0.1f32, 0.2];
        let mut wide = [0.3f64];
        let c = 0.7000000000000001f64;
        let mut f32s: Vec<&mut [f32]> = vec![&mut scalar, &mut vector];
        let mut f64s: Vec<&mut [f64]> = vec![&mut wide];
        scale_by_coefficient(&mut f32s, &[true, false], &mut f64s, TotalNorm::F64(c));
        assert_eq!(scalar[0], (0.1f32 as f64 * c) as f32);
        assert_eq!(vector, [0.1f32 * c as f32, 0.2f32 * c as f32]);
        assert_eq!(wide[0], 0.3 * c);
    }

    #[test]
    fn clamping_follows_torch_for_nan_zero_and_negative_bounds() {
        let original = [-3.0f32, -0.2, 0.0, 0.7, 5.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        let clamp = |c: f64| {
            let mut x = original;
            clamp_in_place(&mut [&mut x[..]], c);
            x.map(|v| v.to_bits())
        };
        let bits = |x: [f32; 8]| x.map(|v| v.to_bits());
        let nan = f32::NAN;
        assert_eq!(clamp(0.5), bits([-0.5, -0.2, 0.0, 0.5, 0.5, nan, 0.5, -0.5]));
        assert_eq!(clamp(-0.5), bits([-0.5, -0.5, -0.5, -0.5, -0.5, nan, -0.5, -0.5]));
        assert_eq!(clamp(0.0), bits([-0.0, -0.0, 0.0, 0.0, 0.0, nan, 0.0, -0.0]));
        assert!(clamp(f64::NAN).iter().all(|&b| f32::from_bits(b).is_nan()));
        assert_eq!(clamp(f64::INFINITY), bits(original));
    }

    #[test]
    fn scaling_covers_every_element_of_large_and_empty_tensors() {
        let mut big: Vec<f64> = (0..200_003).map(|i| i as f64).collect();
        let mut empty: Vec<f64> = Vec::new();
        let mut one = vec![3.0f64];
        scale_in_place(&mut [&mut big[..], &mut empty[..], &mut one[..]], 0.5);
        assert!(big.iter().enumerate().all(|(i, &v)| v == i as f64 * 0.5));
        assert_eq!(one, [1.5]);
    }
}
