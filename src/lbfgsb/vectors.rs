//! The length-`n` vector operations of L-BFGS-B, on `f64`.
//!
//! Dot products and `axpy` are the SIMD kernels of the L-BFGS core
//! (`crate::lbfgs::vector_ops`), whose reductions add in an order fixed by the
//! length alone, so results are bitwise the same on every machine and SIMD
//! level. The rest are single passes the compiler vectorizes.

use crate::lbfgs::vector_ops;

/// `Σ a_i·b_i`.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    vector_ops::dot(a, b)
}

/// `y ← y + α·x` (one fused multiply-add per element).
#[inline]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    vector_ops::axpy(alpha, x, y)
}

/// `out ← a − b`.
#[inline]
pub fn difference(out: &mut [f64], a: &[f64], b: &[f64]) {
    for ((o, &ai), &bi) in out.iter_mut().zip(a).zip(b) {
        *o = ai - bi;
    }
}

/// `out ← scale·a`.
#[inline]
pub fn scaled(out: &mut [f64], scale: f64, a: &[f64]) {
    for (o, &ai) in out.iter_mut().zip(a) {
        *o = scale * ai;
    }
}

/// Whether every element is finite.
#[inline]
pub fn all_finite(a: &[f64]) -> bool {
    // A non-short-circuiting fold, so the pass vectorizes.
    a.iter().fold(true, |acc, x| acc & x.is_finite())
}
