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
pub(crate) const LANES: usize = 8;
/// Elements per block of [`dots`] (4 KiB of each vector: several stay in L1).
const DOT_BLOCK: usize = 512;
const _: () = assert!(DOT_BLOCK % LANES == 0, "a block must not move elements to other lanes");
/// Elements per block of [`combine`] (8 KiB of output: stays in L1).
const BLOCK: usize = 1024;

#[inline(always)]
pub(crate) fn sum_lanes(mut acc: [f64; LANES]) -> f64 {
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
///
/// Each product is summed over [`LANES`] interleaved partial sums (element `i`
/// goes to lane `i mod LANES`, added in order of `i`), which are then added
/// pairwise. The vectors are walked [`DOT_BLOCK`] elements at a time, and
/// within a block one product after the other: its partial sums stay in
/// registers, and a vector shared by several products is still in L1 when
/// read again. Blocking does not change which lane an element goes to nor the
/// order of the additions, so the result depends on `n` alone.
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
            let mut start = 0;
            while start < body {
                let end = (start + DOT_BLOCK).min(body);
                for (sums, (a, b)) in acc.iter_mut().zip(&pairs) {
                    *sums = dot_lanes(*sums, &a[start..end], &b[start..end]);
                }
                start = end;
            }
            let mut out = [0.0; K];
            for ((sums, (a, b)), o) in acc.iter_mut().zip(&pairs).zip(&mut out) {
                for (lane, j) in (body..n).enumerate() {
                    sums[lane] += a[j] * b[j];
                }
                *o = sum_lanes(*sums);
            }
            out
        },
    )
}

/// `acc[lane] += a[i]·b[i]` for the elements of `a`, `b` (a multiple of
/// [`LANES`] long), lane `i mod LANES`, in order of `i`.
#[inline(always)]
pub(crate) fn dot_lanes(mut acc: [f64; LANES], a: &[f64], b: &[f64]) -> [f64; LANES] {
    // Index loops, not iterator adapters: those are not always inlined into
    // the SIMD-compiled caller (`dispatch`), and a call per chunk is slow.
    let b = &b[..a.len()];
    let mut i = 0;
    while i + LANES <= a.len() {
        let (a, b) = (&a[i..i + LANES], &b[i..i + LANES]);
        for lane in 0..LANES {
            acc[lane] += a[lane] * b[lane];
        }
        i += LANES;
    }
    acc
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
            let mut i = 0;
            while i < body {
                let chunk = i..i + LANES;
                let (s, y) = (&mut s[chunk.clone()], &mut y[chunk.clone()]);
                let (x, x_old, g, g_old) = (&x[chunk.clone()], &x_old[chunk.clone()], &g[chunk.clone()], &g_old[chunk]);
                for lane in 0..LANES {
                    s[lane] = x[lane] - x_old[lane];
                    y[lane] = g[lane] - g_old[lane];
                    sy[lane] += s[lane] * y[lane];
                    yy[lane] += y[lane] * y[lane];
                }
                i += LANES;
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

    /// The lane sums of [`dots`] without blocks: what the result must be, bit for bit.
    fn lane_dot(a: &[f64], b: &[f64]) -> f64 {
        let mut acc = [0.0; LANES];
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            acc[i % LANES] += x * y;
        }
        sum_lanes(acc)
    }

    #[test]
    fn dots_are_blocked_lane_sums() {
        for n in [0, 5, 511, 512, 513, 1031, 5000] {
            let v = |seed: u64| -> Vec<f64> {
                (0..n as u64).map(|i| ((i * 2654435761 + seed) % 1000) as f64 / 7.0 - 60.0).collect()
            };
            let (a, b, c) = (v(1), v(2), v(3));
            let got = dots([(&a, &b), (&b, &c), (&c, &c)]);
            let want = [lane_dot(&a, &b), lane_dot(&b, &c), lane_dot(&c, &c)];
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "n = {n}");
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
