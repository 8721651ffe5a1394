//! The length-`n` vector operations of L-BFGS-B, on `f64`.
//!
//! Single dot products, `axpy` and the fused forms of the two-loop recursion
//! are the SIMD kernels of the L-BFGS core (`crate::lbfgs::vector_ops`), whose
//! reductions add in an order fixed by the length alone. Two more live here:
//! [`dots`] computes several dot products in one pass (each vector is read
//! once, not once per product), and [`combine`] adds a linear combination of
//! many vectors block by block (the output stays in L1 while each vector is
//! read once). Both run through [`simd::dispatch`](crate::simd::dispatch), so
//! they are compiled for the CPU's SIMD level; their sums are grouped by the
//! vector length alone (`LANES` interleaved partial sums added pairwise, no
//! fused multiply-add in a reduction). Every result is therefore bitwise the
//! same at every SIMD level and thread count.

use crate::lbfgs::vector_ops;
use crate::simd::dispatch;

pub use vector_ops::{axpy, axpy_dot, axpy_into, dot, neg_dot, neg_into, scale_dot};

/// Interleaved partial sums per dot product.
const LANES: usize = 8;
/// Elements per block of [`combine`] (8 KiB of output: stays in L1).
const BLOCK: usize = 1024;

#[inline(always)]
fn sum_lanes(mut acc: [f64; LANES]) -> f64 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `[a_0·b_0, a_1·b_1, …]` for `K` pairs of equally long vectors, in one pass.
#[inline(always)]
pub fn dots<const K: usize>(pairs: [(&[f64], &[f64]); K]) -> [f64; K] {
    let n = pairs.first().map_or(0, |p| p.0.len());
    for (a, b) in &pairs {
        assert!(a.len() == n && b.len() == n, "dot of vectors of different lengths");
    }
    dispatch(
        #[inline(always)]
        || {
            let mut acc = [[0.0f64; LANES]; K];
            let body = n / LANES * LANES;
            let mut i = 0;
            while i < body {
                for (k, (a, b)) in pairs.iter().enumerate() {
                    let (a, b) = (&a[i..i + LANES], &b[i..i + LANES]);
                    for lane in 0..LANES {
                        acc[k][lane] += a[lane] * b[lane];
                    }
                }
                i += LANES;
            }
            let mut out = [0.0; K];
            for (k, (a, b)) in pairs.iter().enumerate() {
                for (lane, j) in (body..n).enumerate() {
                    acc[k][lane] += a[j] * b[j];
                }
                out[k] = sum_lanes(acc[k]);
            }
            out
        },
    )
}

/// `s ← x − x_old`, `y ← g − g_old` and `[sᵀy, yᵀy]` in one pass: the same
/// values, bit for bit, as [`difference`] twice and then
/// [`dots`]`([(s, y), (y, y)])` (the sums run over the same lanes in the same
/// order), with each input read once.
#[inline]
pub fn pair_and_curvature(s: &mut [f64], y: &mut [f64], [x, x_old]: [&[f64]; 2], [g, g_old]: [&[f64]; 2]) -> [f64; 2] {
    let n = s.len();
    assert!(
        [y.len(), x.len(), x_old.len(), g.len(), g_old.len()].iter().all(|&len| len == n),
        "pair of vectors of different lengths"
    );
    dispatch(
        #[inline(always)]
        || {
            let mut sy = [0.0f64; LANES];
            let mut yy = [0.0f64; LANES];
            let body = n / LANES * LANES;
            let chunks = s[..body]
                .chunks_exact_mut(LANES)
                .zip(y[..body].chunks_exact_mut(LANES))
                .zip(x[..body].chunks_exact(LANES).zip(x_old[..body].chunks_exact(LANES)))
                .zip(g[..body].chunks_exact(LANES).zip(g_old[..body].chunks_exact(LANES)));
            for (((s, y), (x, x_old)), (g, g_old)) in chunks {
                for lane in 0..LANES {
                    s[lane] = x[lane] - x_old[lane];
                    y[lane] = g[lane] - g_old[lane];
                    sy[lane] += s[lane] * y[lane];
                    yy[lane] += y[lane] * y[lane];
                }
            }
            for (lane, j) in (body..n).enumerate() {
                s[j] = x[j] - x_old[j];
                y[j] = g[j] - g_old[j];
                sy[lane] += s[j] * y[j];
                yy[lane] += y[j] * y[j];
            }
            [sum_lanes(sy), sum_lanes(yy)]
        },
    )
}

/// `out ← out + Σ_j c_j·v_j` over the vectors `vector(0) … vector(count − 1)`
/// (one fused multiply-add per term, terms added in order of `j`).
#[inline]
pub fn combine<'a>(
    out: &mut [f64],
    count: usize,
    coefficient: impl Fn(usize) -> f64,
    vector: impl Fn(usize) -> &'a [f64],
) {
    let n = out.len();
    for j in 0..count {
        assert_eq!(vector(j).len(), n, "combination of vectors of different lengths");
    }
    dispatch(
        #[inline(always)]
        || {
            let mut start = 0;
            while start < n {
                let end = (start + BLOCK).min(n);
                let block = &mut out[start..end];
                for j in 0..count {
                    let c = coefficient(j);
                    for (o, &v) in block.iter_mut().zip(&vector(j)[start..end]) {
                        *o = c.mul_add(v, *o);
                    }
                }
                start = end;
            }
        },
    )
}

/// `out ← a − b`.
#[inline]
pub fn difference(out: &mut [f64], a: &[f64], b: &[f64]) {
    for ((o, &ai), &bi) in out.iter_mut().zip(a).zip(b) {
        *o = ai - bi;
    }
}

/// Whether every element is finite.
#[inline]
pub fn all_finite(a: &[f64]) -> bool {
    // A non-short-circuiting fold, so the pass vectorizes.
    a.iter().fold(true, |acc, x| acc & x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_plain_sums_and_each_other() {
        for n in [0, 1, 7, 8, 9, 100, 1031] {
            let a: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let b: Vec<f64> = (0..n).map(|i| ((i * 104729) % 17) as f64 * 0.25).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let [ab, aa, bb] = dots([(&a, &b), (&a, &a), (&b, &b)]);
            assert_eq!(ab, plain); // integers and quarters: exact
            assert_eq!(dots([(&a, &b)])[0], ab);
            assert_eq!(aa, a.iter().map(|x| x * x).sum::<f64>());
            assert_eq!(bb, b.iter().map(|x| x * x).sum::<f64>());
        }
    }

    #[test]
    fn pair_and_curvature_is_difference_then_dots() {
        for n in [0, 1, 7, 8, 9, 100, 1031] {
            let v =
                |seed: usize| -> Vec<f64> { (0..n).map(|i| ((i * 7919 + seed) % 13) as f64 * 0.37 - 2.1).collect() };
            let (x, x_old, g, g_old) = (v(1), v(2), v(3), v(4));
            let (mut s, mut y) = (vec![0.0; n], vec![0.0; n]);
            let fused = pair_and_curvature(&mut s, &mut y, [&x, &x_old], [&g, &g_old]);
            let (mut s2, mut y2) = (vec![0.0; n], vec![0.0; n]);
            difference(&mut s2, &x, &x_old);
            difference(&mut y2, &g, &g_old);
            assert_eq!((s.clone(), y.clone()), (s2.clone(), y2.clone()));
            let separate = dots([(&s2, &y2), (&y2, &y2)]);
            assert_eq!(fused.map(f64::to_bits), separate.map(f64::to_bits));
        }
    }

    #[test]
    fn combine_adds_in_order() {
        let n = 2500;
        let vs: Vec<Vec<f64>> = (0..3).map(|j| (0..n).map(|i| (i + j) as f64).collect()).collect();
        let mut out = vec![1.0; n];
        combine(&mut out, 3, |j| j as f64 + 1.0, |j| &vs[j]);
        for (i, &v) in out.iter().enumerate() {
            assert_eq!(v, 1.0 + (i as f64) + 2.0 * (i + 1) as f64 + 3.0 * (i + 2) as f64);
        }
    }
}
