//! The vector kernels of the L-BFGS core: reductions (dot, sum and max of
//! absolute values) and element-wise updates (axpy, scale, negate), plus fused
//! forms that update a vector and reduce it in one pass.
//!
//! # Rounding
//! The element-wise kernels reproduce torch's per-element rounding: `axpy` is
//! `add_(x, alpha=a)`, one fused multiply-add per element; `scale` and `neg` are
//! exact IEEE products and negations.
//!
//! # Deterministic reductions
//! A reduction over `n` elements cuts the vector into [`CHUNK`]-element chunks.
//! Each chunk is summed over [`LANES`] interleaved accumulators, which are then
//! added pairwise. Chunk results are added in order within a *part*: a run of
//! whole chunks whose boundaries depend only on `n` (see [`part_len`]). Part
//! results are added in order. Threads only decide *who* computes a part, never
//! how the sum is grouped, so the result is bitwise the same for every thread
//! count and every SIMD level (products and sums are rounded separately; no
//! contraction into FMA happens in a reduction).
//!
//! A fused kernel (`axpy_dot`, ...) updates a chunk, then reduces the same chunk
//! with the plain reduction's code, so it returns exactly what the update
//! followed by the separate reduction would.

use crate::element::{Element, nan_max};
use crate::partition::SharedMut;
use crate::pool;
use crate::simd::dispatch;
use rayon::prelude::*;
use std::ops::Range;

/// Elements per reduction chunk.
pub const CHUNK: usize = 512;
/// Interleaved accumulators per chunk: enough independent additions in flight
/// to hide the add latency at every SIMD width, for both `f32` and `f64`.
pub const LANES: usize = 16;
/// A vector is split into at most this many parts.
const MAX_PARTS: usize = 64;
/// The smallest part; a part is always a whole number of chunks.
const MIN_PART: usize = 1 << 15;
/// Below this many elements everything runs on the calling thread: waking the
/// pool costs more than streaming the data.
const PARALLEL_MIN: usize = 1 << 17;

/// Length of the parts a vector of `n` elements is reduced in. Depends on `n` only.
#[inline]
pub fn part_len(n: usize) -> usize {
    let even_split = n.div_ceil(MAX_PARTS).div_ceil(CHUNK) * CHUNK;
    even_split.max(MIN_PART)
}

fn use_threads(n: usize) -> bool {
    n >= PARALLEL_MIN && pool::num_threads() > 1
}

/// Folds `chunk(range)` over the chunks of `0..n` with `combine`, in order, as
/// described in the module docs. `chunk` may write to the elements of its own
/// range (through a [`SharedMut`]): ranges never overlap.
#[inline(always)]
fn reduce<A, C, K>(n: usize, identity: A, combine: C, chunk: K) -> A
where
    A: Copy + Send + Sync,
    C: Fn(A, A) -> A + Sync,
    K: Fn(Range<usize>) -> A + Sync,
{
    if n == 0 {
        return identity;
    }
    let part = part_len(n);
    let parts = n.div_ceil(part);
    let reduce_part = |p: usize| -> A {
        let end = n.min((p + 1) * part);
        let mut acc = identity;
        let mut start = p * part;
        while start < end {
            let stop = end.min(start + CHUNK);
            acc = combine(acc, chunk(start..stop));
            start = stop;
        }
        acc
    };
    if parts == 1 || !use_threads(n) {
        return dispatch(|| {
            let mut total = identity;
            for p in 0..parts {
                total = combine(total, reduce_part(p));
            }
            total
        });
    }
    let mut partials = [identity; MAX_PARTS];
    pool::pool().install(|| {
        partials[..parts]
            .par_iter_mut()
            .enumerate()
            .for_each(|(p, slot)| *slot = dispatch(|| reduce_part(p)));
    });
    partials[..parts].iter().fold(identity, |total, &partial| combine(total, partial))
}

/// Runs `work(range)` over pieces covering `0..n` exactly once (element-wise kernels).
#[inline(always)]
fn for_each_part<W>(n: usize, work: W)
where
    W: Fn(Range<usize>) + Sync,
{
    if n == 0 {
        return;
    }
    if !use_threads(n) {
        dispatch(|| work(0..n));
        return;
    }
    let part = part_len(n);
    let parts = n.div_ceil(part);
    pool::pool().install(|| {
        (0..parts).into_par_iter().for_each(|p| {
            let range = p * part..n.min((p + 1) * part);
            dispatch(|| work(range));
        });
    });
}

#[inline(always)]
fn add<F: Element>(a: F, b: F) -> F {
    a + b
}

#[inline(always)]
fn sum_lanes<F: Element>(mut acc: [F; LANES]) -> F {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] = acc[j] + acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

#[inline(always)]
fn dot_chunk<F: Element>(a: &[F], b: &[F]) -> F {
    let mut acc = [F::ZERO; LANES];
    let (a_body, a_tail) = a.split_at(a.len() / LANES * LANES);
    let (b_body, b_tail) = b.split_at(a_body.len());
    for (xa, xb) in a_body.chunks_exact(LANES).zip(b_body.chunks_exact(LANES)) {
        for j in 0..LANES {
            acc[j] = acc[j] + xa[j] * xb[j];
        }
    }
    for (j, (&x, &y)) in a_tail.iter().zip(b_tail).enumerate() {
        acc[j] = acc[j] + x * y;
    }
    sum_lanes(acc)
}

#[inline(always)]
fn sum_abs_chunk<F: Element>(a: &[F]) -> F {
    let mut acc = [F::ZERO; LANES];
    let (body, tail) = a.split_at(a.len() / LANES * LANES);
    for xa in body.chunks_exact(LANES) {
        for j in 0..LANES {
            acc[j] = acc[j] + xa[j].abs();
        }
    }
    for (j, &x) in tail.iter().enumerate() {
        acc[j] = acc[j] + x.abs();
    }
    sum_lanes(acc)
}

/// Largest `|a_i · scale|`; NaN if any product is NaN (like `abs().max()`).
#[inline(always)]
fn max_abs_chunk<F: Element>(a: &[F], scale: Option<F>) -> F {
    let mut acc = [F::ZERO; LANES];
    let value = |x: F| match scale {
        Some(s) => (x * s).abs(),
        None => x.abs(),
    };
    let (body, tail) = a.split_at(a.len() / LANES * LANES);
    for xa in body.chunks_exact(LANES) {
        for j in 0..LANES {
            let v = value(xa[j]);
            // Keeps a NaN once seen: `v > NaN` is false and `v` is not NaN.
            acc[j] = if v > acc[j] || v.is_nan() { v } else { acc[j] };
        }
    }
    for (j, &x) in tail.iter().enumerate() {
        let v = value(x);
        acc[j] = if v > acc[j] || v.is_nan() { v } else { acc[j] };
    }
    acc.iter().fold(F::ZERO, |m, &v| nan_max(m, v))
}

/// `Σ a_i·b_i`.
pub fn dot<F: Element>(a: &[F], b: &[F]) -> F {
    assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
    reduce(a.len(), F::ZERO, add, |r| dot_chunk(&a[r.clone()], &b[r]))
}

/// `Σ |a_i|`.
pub fn sum_abs<F: Element>(a: &[F]) -> F {
    reduce(a.len(), F::ZERO, add, |r| sum_abs_chunk(&a[r]))
}

/// `max |a_i|` (0 for an empty vector), NaN if any element is NaN.
pub fn max_abs<F: Element>(a: &[F]) -> F {
    reduce(a.len(), F::ZERO, nan_max, |r| max_abs_chunk(&a[r], None))
}

/// `max |a_i·s|`, each product rounded first (torch's `a.mul(s).abs().max()`).
pub fn max_abs_scaled<F: Element>(a: &[F], s: F) -> F {
    reduce(a.len(), F::ZERO, nan_max, |r| max_abs_chunk(&a[r], Some(s)))
}

/// `y ← y + α·x`, one fused multiply-add per element.
pub fn axpy<F: Element>(alpha: F, x: &[F], y: &mut [F]) {
    assert_eq!(x.len(), y.len(), "axpy of vectors of different lengths");
    let y = SharedMut::new(y);
    for_each_part(x.len(), |r| {
        // SAFETY: `for_each_part` hands out disjoint ranges.
        let y = unsafe { y.piece(r.clone()) };
        axpy_piece(alpha, &x[r], y);
    });
}

/// `out ← y + α·x` (a trial point `x + t·d` without touching `x`).
pub fn axpy_into<F: Element>(out: &mut [F], alpha: F, x: &[F], y: &[F]) {
    assert!(out.len() == x.len() && x.len() == y.len(), "axpy_into of vectors of different lengths");
    let out = SharedMut::new(out);
    for_each_part(x.len(), |r| {
        // SAFETY: disjoint ranges.
        let out = unsafe { out.piece(r.clone()) };
        for ((o, &xi), &yi) in out.iter_mut().zip(&x[r.clone()]).zip(&y[r]) {
            *o = alpha.mul_add(xi, yi);
        }
    });
}

/// `out ← −x`.
pub fn neg_into<F: Element>(out: &mut [F], x: &[F]) {
    assert_eq!(out.len(), x.len(), "neg_into of vectors of different lengths");
    let out = SharedMut::new(out);
    for_each_part(x.len(), |r| {
        // SAFETY: disjoint ranges.
        let out = unsafe { out.piece(r.clone()) };
        for (o, &xi) in out.iter_mut().zip(&x[r]) {
            *o = -xi;
        }
    });
}

/// `x ← x·α`.
pub fn scale<F: Element>(x: &mut [F], alpha: F) {
    let n = x.len();
    let x = SharedMut::new(x);
    for_each_part(n, |r| {
        // SAFETY: disjoint ranges.
        for xi in unsafe { x.piece(r) } {
            *xi = *xi * alpha;
        }
    });
}

#[inline(always)]
fn axpy_piece<F: Element>(alpha: F, x: &[F], y: &mut [F]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = alpha.mul_add(xi, *yi);
    }
}

/// `q ← −g`, then returns `z·q`.
pub fn neg_dot<F: Element>(q: &mut [F], g: &[F], z: &[F]) -> F {
    assert!(q.len() == g.len() && g.len() == z.len(), "neg_dot of vectors of different lengths");
    let n = q.len();
    let q = SharedMut::new(q);
    reduce(n, F::ZERO, add, |r| {
        // SAFETY: `reduce` hands out disjoint chunks.
        let q = unsafe { q.piece(r.clone()) };
        for (qi, &gi) in q.iter_mut().zip(&g[r.clone()]) {
            *qi = -gi;
        }
        dot_chunk(&z[r], q)
    })
}

/// `y ← y + α·x` (one FMA per element), then returns `z·y`.
pub fn axpy_dot<F: Element>(alpha: F, x: &[F], y: &mut [F], z: &[F]) -> F {
    assert!(x.len() == y.len() && y.len() == z.len(), "axpy_dot of vectors of different lengths");
    let n = y.len();
    let y = SharedMut::new(y);
    reduce(n, F::ZERO, add, |r| {
        // SAFETY: disjoint chunks.
        let y = unsafe { y.piece(r.clone()) };
        axpy_piece(alpha, &x[r.clone()], y);
        dot_chunk(&z[r], y)
    })
}

/// `x ← x·α`, then returns `z·x`.
pub fn scale_dot<F: Element>(x: &mut [F], alpha: F, z: &[F]) -> F {
    assert_eq!(x.len(), z.len(), "scale_dot of vectors of different lengths");
    let n = x.len();
    let x = SharedMut::new(x);
    reduce(n, F::ZERO, add, |r| {
        // SAFETY: disjoint chunks.
        let x = unsafe { x.piece(r.clone()) };
        for xi in x.iter_mut() {
            *xi = *xi * alpha;
        }
        dot_chunk(&z[r], x)
    })
}

/// The curvature pair of one L-BFGS iteration in one pass:
/// `y ← g − g_prev`, `s ← d·t`; returns `(y·s, y·y)`.
pub fn curvature_pair<F: Element>(y: &mut [F], s: &mut [F], g: &[F], g_prev: &[F], d: &[F], t: F) -> (F, F) {
    let n = g.len();
    assert!(
        y.len() == n && s.len() == n && g_prev.len() == n && d.len() == n,
        "curvature_pair of vectors of different lengths"
    );
    let (y, s) = (SharedMut::new(y), SharedMut::new(s));
    reduce(
        n,
        (F::ZERO, F::ZERO),
        |a: (F, F), b: (F, F)| (a.0 + b.0, a.1 + b.1),
        |r| {
            // SAFETY: disjoint chunks.
            let (y, s) = unsafe { (y.piece(r.clone()), s.piece(r.clone())) };
            for ((yi, &gi), &pi) in y.iter_mut().zip(&g[r.clone()]).zip(&g_prev[r.clone()]) {
                *yi = gi - pi;
            }
            for (si, &di) in s.iter_mut().zip(&d[r]) {
                *si = di * t;
            }
            (dot_chunk(y, s), dot_chunk(y, y))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{available_levels, set_forced_level};

    /// A deterministic pseudo-random vector with magnitudes over many decades.
    pub(crate) fn wild<F: Element>(n: usize, seed: u64) -> Vec<F> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let unit = ((state >> 11) as f64) / ((1u64 << 53) as f64) - 0.5;
                let exponent = ((state >> 3) % 9) as i32 - 4;
                F::from_f64(unit * 10f64.powi(exponent))
            })
            .collect()
    }

    /// The documented grouping, written out sequentially.
    fn reference_dot(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len();
        let part = part_len(n);
        let mut total = 0.0;
        for p in 0..n.div_ceil(part) {
            let mut acc_part = 0.0;
            for c in (p * part..n.min((p + 1) * part)).step_by(CHUNK) {
                let end = n.min((p + 1) * part).min(c + CHUNK);
                let mut lanes = [0.0f64; LANES];
                for i in c..end {
                    lanes[(i - c) % LANES] += a[i] * b[i];
                }
                let mut w = LANES / 2;
                while w > 0 {
                    for j in 0..w {
                        lanes[j] += lanes[j + w];
                    }
                    w /= 2;
                }
                acc_part += lanes[0];
            }
            total += acc_part;
        }
        total
    }

    #[test]
    fn dot_follows_the_documented_grouping() {
        for n in [0, 1, 15, 16, 17, 511, 512, 513, 5000, 70_001, 300_007] {
            let (a, b) = (wild::<f64>(n, 1), wild::<f64>(n, 2));
            assert_eq!(dot(&a, &b).to_bits(), reference_dot(&a, &b).to_bits(), "n = {n}");
        }
    }

    #[test]
    fn reductions_are_accurate() {
        let n = 10_001;
        let (a, b) = (wild::<f64>(n, 3), wild::<f64>(n, 4));
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - exact).abs() <= 1e-12 * a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f64>());
        let sum: f64 = a.iter().map(|x| x.abs()).sum();
        assert!((sum_abs(&a) - sum).abs() <= 1e-12 * sum);
        let max = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert_eq!(max_abs(&a), max);
        let scaled = a.iter().fold(0.0f64, |m, x| m.max((x * 0.3).abs()));
        assert_eq!(max_abs_scaled(&a, 0.3), scaled);
        assert_eq!(max_abs::<f64>(&[]), 0.0);
        assert_eq!(dot::<f32>(&[], &[]), 0.0);
    }

    #[test]
    fn max_abs_propagates_nan() {
        for n in [3, 40, 2000] {
            let mut a = wild::<f32>(n, 5);
            a[n / 2] = f32::NAN;
            assert!(max_abs(&a).is_nan());
            assert!(max_abs_scaled(&a, 2.0).is_nan());
            let mut b = wild::<f64>(n, 6);
            b[0] = f64::NAN;
            assert!(max_abs(&b).is_nan());
        }
    }

    #[test]
    fn fused_kernels_equal_their_two_pass_forms() {
        for n in [1, 33, 1024, 9_999] {
            let (x, z, g) = (wild::<f32>(n, 7), wild::<f32>(n, 8), wild::<f32>(n, 9));
            let mut y1 = wild::<f32>(n, 10);
            let mut y2 = y1.clone();
            let fused = axpy_dot(0.37, &x, &mut y1, &z);
            axpy(0.37, &x, &mut y2);
            assert_eq!(y1, y2);
            assert_eq!(fused.to_bits(), dot(&z, &y2).to_bits());

            let mut q = vec![0.0f32; n];
            let fused = neg_dot(&mut q, &g, &z);
            let mut q2 = vec![0.0f32; n];
            neg_into(&mut q2, &g);
            assert_eq!(q, q2);
            assert_eq!(fused.to_bits(), dot(&z, &q2).to_bits());

            let fused = scale_dot(&mut q, 1.7, &z);
            scale(&mut q2, 1.7);
            assert_eq!(q, q2);
            assert_eq!(fused.to_bits(), dot(&z, &q2).to_bits());

            let (mut y, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
            let (ys, yy) = curvature_pair(&mut y, &mut s, &g, &x, &z, 0.25);
            let y2: Vec<f32> = g.iter().zip(&x).map(|(a, b)| a - b).collect();
            let s2: Vec<f32> = z.iter().map(|d| d * 0.25).collect();
            assert_eq!((y.clone(), s.clone()), (y2.clone(), s2.clone()));
            assert_eq!((ys.to_bits(), yy.to_bits()), (dot(&y2, &s2).to_bits(), dot(&y2, &y2).to_bits()));
        }
    }

    #[test]
    fn axpy_is_one_fma_per_element() {
        let (x, y) = (wild::<f32>(100, 11), wild::<f32>(100, 12));
        let mut out = vec![0.0f32; 100];
        axpy_into(&mut out, 0.1, &x, &y);
        let mut y2 = y.clone();
        axpy(0.1, &x, &mut y2);
        for i in 0..100 {
            assert_eq!(out[i].to_bits(), 0.1f32.mul_add(x[i], y[i]).to_bits());
            assert_eq!(y2[i].to_bits(), out[i].to_bits());
        }
    }

    /// Every SIMD level and thread count gives bitwise the same results,
    /// including sizes that take the parallel path.
    #[test]
    fn results_do_not_depend_on_simd_level_or_threads() {
        let n = 3 * PARALLEL_MIN + 123;
        let (a, b) = (wild::<f64>(n, 13), wild::<f64>(n, 14));
        let (af, bf) = (wild::<f32>(n, 15), wild::<f32>(n, 16));
        let run = || {
            let mut y = b.clone();
            let fused = axpy_dot(-0.3, &a, &mut y, &b);
            (
                dot(&a, &b).to_bits(),
                dot(&af, &bf).to_bits(),
                sum_abs(&af).to_bits(),
                max_abs(&a).to_bits(),
                fused.to_bits(),
                y.iter().map(|v| v.to_bits()).fold(0u64, |h, v| h.rotate_left(5) ^ v),
            )
        };
        let expected = run();
        for level in available_levels() {
            set_forced_level(Some(level)).unwrap();
            for threads in [1, 2, 3] {
                pool::set_num_threads(threads).unwrap();
                assert_eq!(run(), expected, "level {level:?}, {threads} threads");
            }
        }
        set_forced_level(None).unwrap();
        pool::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
        assert_eq!(reference_dot(&a, &b).to_bits(), expected.0);
    }
}
