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
//! whole chunks whose boundaries depend only on `n` ([`Parts`]). Part results are
//! added in order. Threads only decide *who* computes a part, never how the sum
//! is grouped, so the result is bitwise the same for every thread count and
//! every SIMD level (products and sums are rounded separately; no contraction
//! into FMA happens in a reduction).
//!
//! A fused kernel (`axpy_dot`, ...) updates a chunk, then reduces the same chunk
//! with the plain reduction's code, so it returns exactly what the update
//! followed by the separate reduction would.
//!
//! The `part_*` kernels compute one part's contribution; the whole-vector
//! kernels and the threaded two-loop recursion ([`super::team`]) are both built
//! from them, which is what makes their results identical.

use crate::element::{Element, nan_max};
use crate::partition::SharedMut;
use crate::pool;
use crate::simd::{SimdLevel, active_level, dispatch};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Elements per reduction chunk.
pub const CHUNK: usize = 512;
/// Interleaved accumulators per chunk: enough independent additions in flight
/// to hide the add latency at every SIMD width, for both `f32` and `f64`.
pub const LANES: usize = 16;
/// A vector is split into at most this many parts.
pub const MAX_PARTS: usize = 64;
/// Below this many elements a single kernel runs on the calling thread. The
/// pool's threads sleep while the closure runs, and waking them for one pass
/// over a vector costs more than it saves up to millions of elements (measured:
/// at 2·10⁵ and 10⁶ elements two threads were slower than one, at 4·10⁶ even).
pub const PARALLEL_MIN: usize = 1 << 22;

/// [`PARALLEL_MIN`], lowered by tests to exercise the threaded path on small vectors.
static PARALLEL_FROM: AtomicUsize = AtomicUsize::new(PARALLEL_MIN);

#[cfg(test)]
pub(crate) fn set_parallel_min(n: usize) {
    PARALLEL_FROM.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// How a vector of `n` elements is cut into parts: `count` runs of `len`
/// elements (the last one shorter), `len` a multiple of [`CHUNK`]. A function
/// of `n` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub n: usize,
    pub len: usize,
    pub count: usize,
}

impl Parts {
    pub fn of(n: usize) -> Self {
        let len = n.div_ceil(MAX_PARTS).div_ceil(CHUNK).max(1) * CHUNK;
        Parts { n, len, count: n.div_ceil(len) }
    }

    /// The elements of part `p`.
    #[inline]
    pub fn range(&self, p: usize) -> Range<usize> {
        p * self.len..self.n.min((p + 1) * self.len)
    }

    /// The elements of parts `parts` (a run of consecutive parts).
    #[inline]
    pub fn span(&self, parts: Range<usize>) -> Range<usize> {
        (parts.start * self.len).min(self.n)..self.n.min(parts.end * self.len)
    }
}

fn use_threads(n: usize) -> bool {
    n >= PARALLEL_FROM.load(Ordering::Relaxed) && pool::num_threads() > 1
}

/// Folds `part(range)` over the parts of `0..n` with `combine`, in order.
/// `part` may write to the elements of its own range (through a
/// [`SharedMut`]): ranges never overlap.
///
/// Closures passed here must be `#[inline(always)]` so they are compiled inside
/// the SIMD level's `#[target_feature]` function (see [`dispatch`]).
#[inline(always)]
fn reduce<A, C, P>(n: usize, identity: A, combine: C, part: P) -> A
where
    A: Copy + Send + Sync,
    C: Fn(A, A) -> A + Sync,
    P: Fn(Range<usize>) -> A + Sync,
{
    let parts = Parts::of(n);
    if parts.count <= 1 || !use_threads(n) {
        return dispatch(
            #[inline(always)]
            || {
                let mut total = identity;
                for p in 0..parts.count {
                    total = combine(total, part(parts.range(p)));
                }
                total
            },
        );
    }
    let mut partials = [identity; MAX_PARTS];
    pool::pool().install(|| {
        partials[..parts.count].par_iter_mut().enumerate().for_each(|(p, slot)| {
            *slot = dispatch(
                #[inline(always)]
                || part(parts.range(p)),
            )
        });
    });
    partials[..parts.count].iter().fold(identity, |total, &partial| combine(total, partial))
}

/// Runs `work(range)` over pieces covering `0..n` exactly once (element-wise
/// kernels). `work` must be `#[inline(always)]`, as for [`reduce`].
#[inline(always)]
fn for_each_part<W>(n: usize, work: W)
where
    W: Fn(Range<usize>) + Sync,
{
    if n == 0 {
        return;
    }
    if !use_threads(n) {
        dispatch(
            #[inline(always)]
            || work(0..n),
        );
        return;
    }
    let parts = Parts::of(n);
    pool::pool().install(|| {
        (0..parts.count).into_par_iter().for_each(|p| {
            dispatch(
                #[inline(always)]
                || work(parts.range(p)),
            );
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
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f64>() && active_level() >= SimdLevel::Avx2 {
        // SAFETY: `F` is `f64`, so the casts only rename the type; the level is
        // one the CPU was detected to support.
        let r = unsafe {
            wide::dot_chunk_f64(
                std::slice::from_raw_parts(a.as_ptr().cast::<f64>(), a.len()),
                std::slice::from_raw_parts(b.as_ptr().cast::<f64>(), a.len().min(b.len())),
            )
        };
        return F::from_f64(r);
    }
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

/// The `f64` chunk kernels written with AVX2/FMA intrinsics, used at the AVX2
/// and AVX-512 levels. LLVM vectorizes the portable forms' 16 accumulators in
/// 128-bit registers only; here they are four 256-bit registers (lanes 0–3,
/// 4–7, 8–11, 12–15), with the same products, the same additions per lane in
/// the same order, and the same pairwise lane sum. A chunk's tail (fewer than
/// 16 elements, only in a vector's last chunk) runs the portable code on the
/// stored lanes.
#[cfg(target_arch = "x86_64")]
mod wide {
    use super::LANES;
    use crate::element::nan_max;
    use std::arch::x86_64::*;

    const _: () = assert!(LANES == 16, "the wide kernels keep 16 f64 lanes in four registers");

    /// The four lane registers stored in lane order.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn lanes(acc: [__m256d; 4]) -> [f64; LANES] {
        let mut out = [0.0; LANES];
        for (k, v) in acc.into_iter().enumerate() {
            // SAFETY: `out` holds 16 elements, `4k + 4 <= 16`.
            unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * k), v) };
        }
        out
    }

    /// `dot_chunk`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn dot_chunk_f64(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len().min(b.len());
        let body = n / LANES * LANES;
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        // SAFETY (all loads): `i + 16 <= body <= n`.
        let acc = unsafe {
            let mut acc = [_mm256_setzero_pd(); 4];
            let mut i = 0;
            while i < body {
                for (k, lane) in acc.iter_mut().enumerate() {
                    let product = _mm256_mul_pd(_mm256_loadu_pd(pa.add(i + 4 * k)), _mm256_loadu_pd(pb.add(i + 4 * k)));
                    *lane = _mm256_add_pd(*lane, product);
                }
                i += LANES;
            }
            lanes(acc)
        };
        let mut acc = acc;
        for (j, (&x, &y)) in a[body..n].iter().zip(&b[body..n]).enumerate() {
            acc[j] += x * y;
        }
        super::sum_lanes(acc)
    }

    /// `y ← y + α·x` (one FMA per element), then `z·y`, in one pass over the
    /// chunk: each element gets the FMA, then the product and the addition into
    /// its lane of `dot_chunk_f64`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn axpy_dot_chunk_f64(alpha: f64, x: &[f64], y: &mut [f64], z: &[f64]) -> f64 {
        let n = y.len();
        assert!(x.len() == n && z.len() == n, "axpy_dot chunks of different lengths");
        let body = n / LANES * LANES;
        let (px, py, pz) = (x.as_ptr(), y.as_mut_ptr(), z.as_ptr());
        // SAFETY (all accesses): `i + 16 <= body <= n`.
        let acc = unsafe {
            let a = _mm256_set1_pd(alpha);
            let mut acc = [_mm256_setzero_pd(); 4];
            let mut i = 0;
            while i < body {
                for (k, lane) in acc.iter_mut().enumerate() {
                    let at = i + 4 * k;
                    let updated = _mm256_fmadd_pd(a, _mm256_loadu_pd(px.add(at)), _mm256_loadu_pd(py.add(at)));
                    _mm256_storeu_pd(py.add(at), updated);
                    *lane = _mm256_add_pd(*lane, _mm256_mul_pd(_mm256_loadu_pd(pz.add(at)), updated));
                }
                i += LANES;
            }
            lanes(acc)
        };
        let mut acc = acc;
        for (j, ((yi, &xi), &zi)) in y[body..].iter_mut().zip(&x[body..]).zip(&z[body..]).enumerate() {
            *yi = alpha.mul_add(xi, *yi);
            acc[j] += zi * *yi;
        }
        super::sum_lanes(acc)
    }

    /// `max_abs_chunk`: the same lanes, each keeping its largest `|a_i|` (or
    /// `|a_i·scale|`) or its first NaN. `_mm256_max_pd(v, acc)` is
    /// `v > acc ? v : acc` exactly, which keeps a NaN `acc`; the blend then
    /// takes a NaN `v`, as the portable form does.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn max_abs_chunk_f64<const SCALED: bool>(a: &[f64], scale: f64) -> f64 {
        let n = a.len();
        let body = n / LANES * LANES;
        let pa = a.as_ptr();
        // SAFETY (all loads): `i + 16 <= body <= n`.
        let acc = unsafe {
            let s = _mm256_set1_pd(scale);
            let sign = _mm256_set1_pd(-0.0);
            let mut acc = [_mm256_setzero_pd(); 4];
            let mut i = 0;
            while i < body {
                for (k, lane) in acc.iter_mut().enumerate() {
                    let x = _mm256_loadu_pd(pa.add(i + 4 * k));
                    // |v|: the sign bit cleared, as `f64::abs` does.
                    let v = _mm256_andnot_pd(sign, if SCALED { _mm256_mul_pd(x, s) } else { x });
                    let larger = _mm256_max_pd(v, *lane);
                    *lane = _mm256_blendv_pd(larger, v, _mm256_cmp_pd::<_CMP_UNORD_Q>(v, v));
                }
                i += LANES;
            }
            lanes(acc)
        };
        let mut acc = acc;
        for (j, &x) in a[body..].iter().enumerate() {
            let v = if SCALED { (x * scale).abs() } else { x.abs() };
            acc[j] = if v > acc[j] || v.is_nan() { v } else { acc[j] };
        }
        let mut max = 0.0;
        for v in acc {
            max = nan_max(max, v);
        }
        max
    }
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

/// Largest `|a_i|`, or `|a_i·scale|` when `SCALED`; NaN if any value is NaN
/// (like torch's `abs().max()`).
#[inline(always)]
fn max_abs_chunk<F: Element, const SCALED: bool>(a: &[F], scale: F) -> F {
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f64>() && active_level() >= SimdLevel::Avx2 {
        // SAFETY: `F` is `f64` (the cast only renames the type); the CPU
        // supports the level.
        let r = unsafe {
            wide::max_abs_chunk_f64::<SCALED>(
                std::slice::from_raw_parts(a.as_ptr().cast::<f64>(), a.len()),
                scale.to_f64(),
            )
        };
        return F::from_f64(r);
    }
    let mut acc = [F::ZERO; LANES];
    let (body, tail) = a.split_at(a.len() / LANES * LANES);
    for xa in body.chunks_exact(LANES) {
        for j in 0..LANES {
            let v = if SCALED { (xa[j] * scale).abs() } else { xa[j].abs() };
            // Keeps a NaN once seen: `v > NaN` is false and `v` is not NaN.
            acc[j] = if v > acc[j] || v.is_nan() { v } else { acc[j] };
        }
    }
    for (j, &x) in tail.iter().enumerate() {
        let v = if SCALED { (x * scale).abs() } else { x.abs() };
        acc[j] = if v > acc[j] || v.is_nan() { v } else { acc[j] };
    }
    let mut max = F::ZERO;
    for v in acc {
        max = nan_max(max, v);
    }
    max
}

#[inline(always)]
fn axpy_piece<F: Element>(alpha: F, x: &[F], y: &mut [F]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = alpha.mul_add(xi, *yi);
    }
}

// One part's contribution. Each takes the part's slices (which start on a
// chunk boundary) and folds its chunks in order.

#[inline(always)]
pub(crate) fn part_dot<F: Element>(a: &[F], b: &[F]) -> F {
    let mut acc = F::ZERO;
    for (ca, cb) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        acc = acc + dot_chunk(ca, cb);
    }
    acc
}

#[inline(always)]
fn part_sum_abs<F: Element>(a: &[F]) -> F {
    let mut acc = F::ZERO;
    for c in a.chunks(CHUNK) {
        acc = acc + sum_abs_chunk(c);
    }
    acc
}

#[inline(always)]
fn part_max_abs<F: Element, const SCALED: bool>(a: &[F], scale: F) -> F {
    let mut acc = F::ZERO;
    for c in a.chunks(CHUNK) {
        acc = nan_max(acc, max_abs_chunk::<F, SCALED>(c, scale));
    }
    acc
}

/// `q ← −g`, then `z·q`.
#[inline(always)]
pub(crate) fn part_neg_dot<F: Element>(q: &mut [F], g: &[F], z: &[F]) -> F {
    let mut acc = F::ZERO;
    for ((cq, cg), cz) in q.chunks_mut(CHUNK).zip(g.chunks(CHUNK)).zip(z.chunks(CHUNK)) {
        for (qi, &gi) in cq.iter_mut().zip(cg) {
            *qi = -gi;
        }
        acc = acc + dot_chunk(cz, cq);
    }
    acc
}

/// `y ← y + α·x`, then `z·y`.
#[inline(always)]
pub(crate) fn part_axpy_dot<F: Element>(alpha: F, x: &[F], y: &mut [F], z: &[F]) -> F {
    let mut acc = F::ZERO;
    #[cfg(target_arch = "x86_64")]
    if std::any::TypeId::of::<F>() == std::any::TypeId::of::<f64>() && active_level() >= SimdLevel::Avx2 {
        let alpha = alpha.to_f64();
        for ((cx, cy), cz) in x.chunks(CHUNK).zip(y.chunks_mut(CHUNK)).zip(z.chunks(CHUNK)) {
            // SAFETY: `F` is `f64` (the casts only rename the type), and the
            // CPU supports the level.
            let r = unsafe {
                wide::axpy_dot_chunk_f64(
                    alpha,
                    std::slice::from_raw_parts(cx.as_ptr().cast::<f64>(), cx.len()),
                    std::slice::from_raw_parts_mut(cy.as_mut_ptr().cast::<f64>(), cy.len()),
                    std::slice::from_raw_parts(cz.as_ptr().cast::<f64>(), cz.len()),
                )
            };
            acc = acc + F::from_f64(r);
        }
        return acc;
    }
    for ((cx, cy), cz) in x.chunks(CHUNK).zip(y.chunks_mut(CHUNK)).zip(z.chunks(CHUNK)) {
        axpy_piece(alpha, cx, cy);
        acc = acc + dot_chunk(cz, cy);
    }
    acc
}

/// `x ← x·α`, then `z·x`.
#[inline(always)]
pub(crate) fn part_scale_dot<F: Element>(x: &mut [F], alpha: F, z: &[F]) -> F {
    let mut acc = F::ZERO;
    for (cx, cz) in x.chunks_mut(CHUNK).zip(z.chunks(CHUNK)) {
        for xi in cx.iter_mut() {
            *xi = *xi * alpha;
        }
        acc = acc + dot_chunk(cz, cx);
    }
    acc
}

/// `y ← (y + α·x)·scale` (an FMA, then a product), then `z·y`.
#[inline(always)]
pub(crate) fn part_axpy_scale_dot<F: Element>(alpha: F, x: &[F], y: &mut [F], scale: F, z: &[F]) -> F {
    let mut acc = F::ZERO;
    for ((cx, cy), cz) in x.chunks(CHUNK).zip(y.chunks_mut(CHUNK)).zip(z.chunks(CHUNK)) {
        for (yi, &xi) in cy.iter_mut().zip(cx) {
            *yi = alpha.mul_add(xi, *yi) * scale;
        }
        acc = acc + dot_chunk(cz, cy);
    }
    acc
}

/// `y ← g − g_prev`, `s ← d·t`, then `(y·s, y·y)`.
#[inline(always)]
fn part_curvature_pair<F: Element>(y: &mut [F], s: &mut [F], g: &[F], g_prev: &[F], d: &[F], t: F) -> (F, F) {
    let mut acc = (F::ZERO, F::ZERO);
    let chunks = y
        .chunks_mut(CHUNK)
        .zip(s.chunks_mut(CHUNK))
        .zip(g.chunks(CHUNK).zip(g_prev.chunks(CHUNK)).zip(d.chunks(CHUNK)));
    for ((cy, cs), ((cg, cp), cd)) in chunks {
        for ((yi, &gi), &pi) in cy.iter_mut().zip(cg).zip(cp) {
            *yi = gi - pi;
        }
        for (si, &di) in cs.iter_mut().zip(cd) {
            *si = di * t;
        }
        acc = (acc.0 + dot_chunk(cy, cs), acc.1 + dot_chunk(cy, cy));
    }
    acc
}

/// `Σ a_i·b_i`.
pub fn dot<F: Element>(a: &[F], b: &[F]) -> F {
    assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
    reduce(
        a.len(),
        F::ZERO,
        add,
        #[inline(always)]
        |r| part_dot(&a[r.clone()], &b[r]),
    )
}

/// `Σ |a_i|`.
pub fn sum_abs<F: Element>(a: &[F]) -> F {
    reduce(
        a.len(),
        F::ZERO,
        add,
        #[inline(always)]
        |r| part_sum_abs(&a[r]),
    )
}

/// `max |a_i|` (0 for an empty vector), NaN if any element is NaN.
pub fn max_abs<F: Element>(a: &[F]) -> F {
    reduce(
        a.len(),
        F::ZERO,
        nan_max,
        #[inline(always)]
        |r| part_max_abs::<F, false>(&a[r], F::ONE),
    )
}

/// `max |a_i·s|`, each product rounded first (torch's `a.mul(s).abs().max()`).
pub fn max_abs_scaled<F: Element>(a: &[F], s: F) -> F {
    reduce(
        a.len(),
        F::ZERO,
        nan_max,
        #[inline(always)]
        |r| part_max_abs::<F, true>(&a[r], s),
    )
}

/// `y ← y + α·x`, one fused multiply-add per element.
pub fn axpy<F: Element>(alpha: F, x: &[F], y: &mut [F]) {
    assert_eq!(x.len(), y.len(), "axpy of vectors of different lengths");
    let y = SharedMut::new(y);
    for_each_part(
        x.len(),
        #[inline(always)]
        |r| {
            // SAFETY: `for_each_part` hands out disjoint ranges.
            let y = unsafe { y.piece(r.clone()) };
            axpy_piece(alpha, &x[r], y);
        },
    );
}

/// `y ← y + α·x` (one FMA per element), then returns `max |x_i·α|` (each
/// product rounded, NaN if any is NaN): a move and torch's test of its size.
pub fn axpy_max_abs<F: Element>(alpha: F, x: &[F], y: &mut [F]) -> F {
    assert_eq!(x.len(), y.len(), "axpy_max_abs of vectors of different lengths");
    let n = y.len();
    let y = SharedMut::new(y);
    reduce(
        n,
        F::ZERO,
        nan_max,
        #[inline(always)]
        |r| {
            // SAFETY: disjoint parts.
            let y = unsafe { y.piece(r.clone()) };
            let x = &x[r];
            axpy_piece(alpha, x, y);
            part_max_abs::<F, true>(x, alpha)
        },
    )
}

/// `out ← y + α·x` (one FMA per element, exactly as [`axpy`]), then returns
/// `max |x_i·α|` as [`axpy_max_abs`] does: a move written next to the old point.
pub fn axpy_into_max_abs<F: Element>(out: &mut [F], alpha: F, x: &[F], y: &[F]) -> F {
    assert!(out.len() == x.len() && x.len() == y.len(), "axpy_into_max_abs of vectors of different lengths");
    let n = out.len();
    let out = SharedMut::new(out);
    reduce(
        n,
        F::ZERO,
        nan_max,
        #[inline(always)]
        |r| {
            // SAFETY: disjoint parts.
            let out = unsafe { out.piece(r.clone()) };
            let x = &x[r.clone()];
            for ((o, &xi), &yi) in out.iter_mut().zip(x).zip(&y[r]) {
                *o = alpha.mul_add(xi, yi);
            }
            part_max_abs::<F, true>(x, alpha)
        },
    )
}

/// `out ← y + α·x` (a trial point `x + t·d` without touching `x`).
pub fn axpy_into<F: Element>(out: &mut [F], alpha: F, x: &[F], y: &[F]) {
    assert!(out.len() == x.len() && x.len() == y.len(), "axpy_into of vectors of different lengths");
    let out = SharedMut::new(out);
    for_each_part(
        x.len(),
        #[inline(always)]
        |r| {
            // SAFETY: disjoint ranges.
            let out = unsafe { out.piece(r.clone()) };
            for ((o, &xi), &yi) in out.iter_mut().zip(&x[r.clone()]).zip(&y[r]) {
                *o = alpha.mul_add(xi, yi);
            }
        },
    );
}

/// `out ← −x`.
pub fn neg_into<F: Element>(out: &mut [F], x: &[F]) {
    assert_eq!(out.len(), x.len(), "neg_into of vectors of different lengths");
    let out = SharedMut::new(out);
    for_each_part(
        x.len(),
        #[inline(always)]
        |r| {
            // SAFETY: disjoint ranges.
            let out = unsafe { out.piece(r.clone()) };
            for (o, &xi) in out.iter_mut().zip(&x[r]) {
                *o = -xi;
            }
        },
    );
}

/// `x ← x·α`.
pub fn scale<F: Element>(x: &mut [F], alpha: F) {
    let n = x.len();
    let x = SharedMut::new(x);
    for_each_part(
        n,
        #[inline(always)]
        |r| {
            // SAFETY: disjoint ranges.
            for xi in unsafe { x.piece(r) } {
                *xi = *xi * alpha;
            }
        },
    );
}

/// `q ← −g`, then returns `z·q`.
pub fn neg_dot<F: Element>(q: &mut [F], g: &[F], z: &[F]) -> F {
    assert!(q.len() == g.len() && g.len() == z.len(), "neg_dot of vectors of different lengths");
    let n = q.len();
    let q = SharedMut::new(q);
    reduce(
        n,
        F::ZERO,
        add,
        #[inline(always)]
        |r| {
            // SAFETY: `reduce` hands out disjoint parts.
            let q = unsafe { q.piece(r.clone()) };
            part_neg_dot(q, &g[r.clone()], &z[r])
        },
    )
}

/// `y ← y + α·x` (one FMA per element), then returns `z·y`.
pub fn axpy_dot<F: Element>(alpha: F, x: &[F], y: &mut [F], z: &[F]) -> F {
    assert!(x.len() == y.len() && y.len() == z.len(), "axpy_dot of vectors of different lengths");
    let n = y.len();
    let y = SharedMut::new(y);
    reduce(
        n,
        F::ZERO,
        add,
        #[inline(always)]
        |r| {
            // SAFETY: disjoint parts.
            let y = unsafe { y.piece(r.clone()) };
            part_axpy_dot(alpha, &x[r.clone()], y, &z[r])
        },
    )
}

/// `x ← x·α`, then returns `z·x`.
pub fn scale_dot<F: Element>(x: &mut [F], alpha: F, z: &[F]) -> F {
    assert_eq!(x.len(), z.len(), "scale_dot of vectors of different lengths");
    let n = x.len();
    let x = SharedMut::new(x);
    reduce(
        n,
        F::ZERO,
        add,
        #[inline(always)]
        |r| {
            // SAFETY: disjoint parts.
            let x = unsafe { x.piece(r.clone()) };
            part_scale_dot(x, alpha, &z[r])
        },
    )
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
        #[inline(always)]
        |a: (F, F), b: (F, F)| (a.0 + b.0, a.1 + b.1),
        #[inline(always)]
        |r| {
            // SAFETY: disjoint parts.
            let (y, s) = unsafe { (y.piece(r.clone()), s.piece(r.clone())) };
            part_curvature_pair(y, s, &g[r.clone()], &g_prev[r.clone()], &d[r], t)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{SimdLevel, available_levels, set_forced_level};

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
        let part = Parts::of(n).len;
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
    fn parts_depend_on_n_only_and_cover_the_vector() {
        for n in [0, 1, 511, 512, 513, 10_000, 32_768, 1_000_003] {
            let parts = Parts::of(n);
            assert_eq!(parts.len % CHUNK, 0);
            assert!(parts.count <= MAX_PARTS);
            assert_eq!(parts.span(0..parts.count), 0..n);
            let covered: usize = (0..parts.count).map(|p| parts.range(p).len()).sum();
            assert_eq!(covered, n);
        }
        assert_eq!(Parts::of(10_000).count, 20);
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
    fn axpy_max_abs_moves_and_measures_the_move() {
        let (x, y) = (wild::<f64>(3000, 17), wild::<f64>(3000, 18));
        let mut moved = y.clone();
        let largest = axpy_max_abs(0.3, &x, &mut moved);
        let mut expected = y.clone();
        axpy(0.3, &x, &mut expected);
        assert_eq!(moved, expected);
        assert_eq!(largest, max_abs_scaled(&x, 0.3));
    }

    #[test]
    fn axpy_into_max_abs_is_axpy_max_abs_into_another_buffer() {
        for n in [0, 5, 3000] {
            let (x, y) = (wild::<f32>(n, 21), wild::<f32>(n, 22));
            let mut moved = y.clone();
            let largest = axpy_max_abs(0.7, &x, &mut moved);
            let mut out = vec![0.0f32; n];
            assert_eq!(axpy_into_max_abs(&mut out, 0.7, &x, &y).to_bits(), largest.to_bits());
            assert_eq!(out, moved);
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

    /// The levels agree bitwise on every tail length, on signed zeros (a sum
    /// that stays −0 must not become +0) and on NaN (for a maximum, the first
    /// one a lane sees).
    #[test]
    fn levels_agree_on_tails_and_special_values() {
        for n in [1, 7, 8, 9, 15, 16, 17, 31, 511, 512, 513, 1037] {
            let mut a = wild::<f64>(n, 20);
            let mut b = wild::<f64>(n, 21);
            let zeros_a = vec![-0.0f64; n];
            let zeros_b = vec![0.0f64; n];
            a[n / 2] = -0.0;
            b[n - 1] = -b[n - 1];
            let mut with_nan = a.clone();
            with_nan[n - 1] = f64::from_bits(0x7ff8_0000_0000_0042);
            // A sum of two NaNs may keep either payload, at any level.
            let one_nan = with_nan.clone();
            if n > 3 {
                with_nan[1] = f64::from_bits(0xfff8_0000_0000_0017);
            }
            let run = || {
                let mut y = b.clone();
                let mut q = vec![0.0; n];
                let mut r = a.clone();
                (
                    dot(&a, &b).to_bits(),
                    dot(&zeros_a, &zeros_b).to_bits(),
                    dot(&one_nan, &b).to_bits(),
                    axpy_dot(-0.7, &a, &mut y, &b).to_bits(),
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    neg_dot(&mut q, &a, &b).to_bits(),
                    part_axpy_scale_dot(0.3, &b, &mut r, 1.9, &a).to_bits(),
                    r.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    max_abs(&a).to_bits(),
                    max_abs(&with_nan).to_bits(),
                    max_abs_scaled(&with_nan, -3.0).to_bits(),
                    max_abs_scaled(&a, 1e300).to_bits(),
                )
            };
            set_forced_level(Some(SimdLevel::Baseline)).unwrap();
            let expected = run();
            for level in available_levels() {
                set_forced_level(Some(level)).unwrap();
                assert_eq!(run(), expected, "n = {n}, level {level:?}");
            }
            set_forced_level(None).unwrap();
            let mut r = a.clone();
            let fused = part_axpy_scale_dot(0.3, &b, &mut r, 1.9, &a);
            let mut r2 = a.clone();
            axpy(0.3, &b, &mut r2);
            scale(&mut r2, 1.9);
            assert_eq!(r, r2);
            assert_eq!(fused.to_bits(), dot(&a, &r2).to_bits());
        }
    }

    /// Every SIMD level and thread count gives bitwise the same results,
    /// including sizes that take the parallel path.
    #[test]
    fn results_do_not_depend_on_simd_level_or_threads() {
        set_parallel_min(1 << 14);
        let n = 3 * (1 << 14) + 123;
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
        set_parallel_min(PARALLEL_MIN);
        assert_eq!(reference_dot(&a, &b).to_bits(), expected.0);
    }
}
