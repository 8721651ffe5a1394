//! p-norms of many tensors in one pass, with a result that does not depend on
//! the thread count or the SIMD level.
//!
//! torch's `clip_grad_norm_` takes the p-norm of every gradient, then the p-norm
//! of those per-tensor norms (never one flat norm over all elements):
//!
//! ```text
//! n_i   = ‖g_i‖_p                  in g_i's dtype
//! total = ‖(n_1, …, n_k)‖_p        in the promoted dtype (float64 if any g_i is)
//! ```
//!
//! p = 2: `sqrt(Σ x²)`; p = 1: `Σ |x|`; p = ∞: `max |x|`; p = −∞: `min |x|`;
//! p = 0: the number of non-zero elements (so the total counts the tensors with
//! a non-zero element); any other p: `(Σ |x|^p)^(1/p)`. NaN propagates.
//!
//! **Determinism.** Every tensor is cut into chunks of [`CHUNK_ELEMENTS`]
//! elements. A chunk's partial result is computed by one thread with an order
//! of operations fixed in the code (explicit lanes, not whatever the
//! vectorizer picks), and a tensor's partials are combined in chunk order. How
//! the chunks are spread over threads, and which SIMD level runs them, cannot
//! change a bit of the result. (Up to 8 neighbouring chunks are reduced side
//! by side for speed; each chunk's own order of operations is unchanged.)
//!
//! **torch's rounding.** Within a chunk the operations are torch's own (CPU,
//! measured on torch 2.15), so a tensor of at most [`CHUNK_ELEMENTS`] elements
//! gets torch's norm to the bit for p = 2, 1, 0, ±∞. (On one thread torch
//! keeps one chain of sums over a whole larger tensor; restarting them every
//! chunk rounds differently, and closer to exact.)
//! p = 2 keeps 8 float32 (4 float64) lane sums of `⟦acc + ⟦x·x⟧⟧` over whole
//! blocks, adds the lanes in order, then adds the tail elements one by one:
//! as rounded squares for the first multiple of 4 of a float32 tail and as
//! fused multiply-adds `fma(x, x, s)` for the rest. p = 1 and other p are
//! sequential sums, as in torch (other p: `powf`, within an ulp or two of torch).

use crate::element::{Element, nan_max};
use crate::error::OptimError;
use crate::partition::MIN_ELEMENTS_PER_TASK;
use crate::pool;
use crate::simd;
use rayon::prelude::*;
use std::ops::Range;

/// Elements per chunk: the unit of parallel work and of torch-identical rounding.
/// A multiple of every lane count, so only a tensor's last chunk has a tail.
pub const CHUNK_ELEMENTS: usize = 1 << 15;

/// Which p-norm, with the orders torch computes specially given their own case.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormOrder {
    /// p = 0: the number of non-zero elements.
    Zero,
    One,
    Two,
    /// p = +∞: the largest magnitude.
    Inf,
    /// p = −∞: the smallest magnitude.
    NegInf,
    /// Any other p: `(Σ |x|^p)^(1/p)`.
    Power(f64),
}

impl NormOrder {
    /// The order of `norm_type = p`; NaN is refused.
    pub fn new(p: f64) -> Result<Self, OptimError> {
        Ok(match p {
            _ if p.is_nan() => {
                return Err(OptimError::InvalidSetting("norm_type must be a number, got nan".into()));
            }
            0.0 => NormOrder::Zero,
            1.0 => NormOrder::One,
            2.0 => NormOrder::Two,
            f64::INFINITY => NormOrder::Inf,
            f64::NEG_INFINITY => NormOrder::NegInf,
            _ => NormOrder::Power(p),
        })
    }

    /// Whether the norm of an empty tensor is defined. torch refuses ±∞ and
    /// negative orders there ("the operation does not have an identity").
    pub fn defined_for_empty(self) -> bool {
        match self {
            NormOrder::Inf | NormOrder::NegInf => false,
            NormOrder::Power(p) => p > 0.0,
            NormOrder::Zero | NormOrder::One | NormOrder::Two => true,
        }
    }

    /// The order as torch prints it in messages (`2.0`, `inf`, ...).
    pub fn name(self) -> String {
        match self {
            NormOrder::Zero => "0.0".into(),
            NormOrder::One => "1.0".into(),
            NormOrder::Two => "2.0".into(),
            NormOrder::Inf => "inf".into(),
            NormOrder::NegInf => "-inf".into(),
            NormOrder::Power(p) => format!("{p:?}"),
        }
    }
}

/// What the norms need beyond [`Element`]: torch's lane count and tail rule,
/// and `powf`.
pub trait NormElement: Element {
    /// Lanes of torch's p = 2 sum (one 256-bit vector); the ±inf norms use as
    /// many (their result does not depend on the grouping).
    const LANES: usize;
    /// The first multiple of this many tail elements is added as rounded
    /// squares, the rest with fused multiply-adds (0: all fused).
    const ROUNDED_TAIL_BLOCK: usize;
    const INFINITY: Self;
    fn powf(self, p: Self) -> Self;
}

impl NormElement for f32 {
    const LANES: usize = 8;
    const ROUNDED_TAIL_BLOCK: usize = 4;
    const INFINITY: Self = f32::INFINITY;
    #[inline(always)]
    fn powf(self, p: Self) -> Self {
        f32::powf(self, p)
    }
}

impl NormElement for f64 {
    const LANES: usize = 4;
    const ROUNDED_TAIL_BLOCK: usize = 0;
    const INFINITY: Self = f64::INFINITY;
    #[inline(always)]
    fn powf(self, p: Self) -> Self {
        f64::powf(self, p)
    }
}

/// The running largest magnitude (NaN-propagating); 0 is its identity, as |x| >= 0.
#[inline(always)]
fn largest<F: Element>(m: F, x: F) -> F {
    nan_max(m, x.abs())
}

/// The running smallest magnitude (NaN-propagating); +inf is its identity.
#[inline(always)]
fn smallest<F: Element>(m: F, x: F) -> F {
    nan_min(m, x.abs())
}

/// `min(a, b)` that propagates NaN from either side, like `torch.minimum`.
#[inline(always)]
fn nan_min<F: Element>(a: F, b: F) -> F {
    if b.is_nan() || b < a { b } else { a }
}

/// The p-norm of every tensor, each in its own dtype, in one parallel pass.
///
/// Fails if `order` has no value for an empty tensor and one of `tensors` is empty.
pub fn tensor_norms<F: NormElement>(tensors: &[&[F]], order: NormOrder) -> Result<Vec<F>, OptimError> {
    if !order.defined_for_empty() {
        if let Some(index) = tensors.iter().position(|t| t.is_empty()) {
            return Err(empty_tensor_error(index, order));
        }
    }
    let units = work_units(tensors);
    let partials_of = |unit: &Unit| {
        let values = &tensors[unit.tensor][unit.elements.clone()];
        if runs_vectorized(unit.chunks, order) {
            // The accumulators are 256-bit (8 float32 lanes, as in torch's).
            simd::dispatch_avx2(
                #[inline(always)]
                || unit_partials(values, unit.chunks, order),
            )
        } else {
            unit_partials(values, unit.chunks, order)
        }
    };
    let elements: usize = tensors.iter().map(|t| t.len()).sum();
    let per_unit: Vec<([F; LOCKSTEP_CHUNKS], usize)> =
        if elements < 2 * MIN_ELEMENTS_PER_TASK || pool::num_threads() == 1 {
            units.iter().map(partials_of).collect()
        } else {
            pool::pool().install(|| units.par_iter().map(partials_of).collect())
        };
    // The chunk partials of all tensors, in order.
    let partials: Vec<F> = per_unit.iter().flat_map(|(values, count)| values[..*count].iter().copied()).collect();
    // Each tensor's partials, combined in chunk order.
    let mut norms = Vec::with_capacity(tensors.len());
    let mut next = 0;
    for tensor in tensors {
        let count = tensor.len().div_ceil(CHUNK_ELEMENTS);
        let combined = partials[next..next + count].iter().copied().reduce(|a, b| combine(a, b, order));
        next += count;
        // An empty tensor: the identity of a sum (the orders without one were refused above).
        norms.push(finish(combined.unwrap_or(F::ZERO), order));
    }
    Ok(norms)
}

/// The p-norm of one tensor: [`tensor_norms`] of a single tensor.
pub fn vector_norm<F: NormElement>(values: &[F], order: NormOrder) -> Result<F, OptimError> {
    tensor_norms(&[values], order).map(|norms| norms[0])
}

/// The norm of the per-tensor norms, in the dtype torch gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TotalNorm {
    F32(f32),
    F64(f64),
}

impl TotalNorm {
    pub fn value(self) -> f64 {
        match self {
            TotalNorm::F32(x) => x as f64,
            TotalNorm::F64(x) => x,
        }
    }
}

/// torch's total norm of float32 and float64 tensors: the norm of the vector
/// of per-tensor norms, float64 if any tensor is. torch lists the per-tensor
/// norms grouped by dtype, each group in the tensors' order, the float64 group
/// first when `f64_group_first`; the order fixes the rounding of the sum.
/// No tensors: 0.0 (float32).
pub fn total_norm(
    f32_tensors: &[&[f32]],
    f64_tensors: &[&[f64]],
    f64_group_first: bool,
    order: NormOrder,
) -> Result<TotalNorm, OptimError> {
    let norms32 = tensor_norms(f32_tensors, order)?;
    let norms64 = tensor_norms(f64_tensors, order)?;
    if f64_tensors.is_empty() {
        return if norms32.is_empty() {
            Ok(TotalNorm::F32(0.0))
        } else {
            vector_norm(&norms32, order).map(TotalNorm::F32)
        };
    }
    let widened = norms32.iter().map(|&n| n as f64);
    let stacked: Vec<f64> = if f64_group_first {
        norms64.iter().copied().chain(widened).collect()
    } else {
        widened.chain(norms64.iter().copied()).collect()
    };
    vector_norm(&stacked, order).map(TotalNorm::F64)
}

fn empty_tensor_error(index: usize, order: NormOrder) -> OptimError {
    OptimError::InvalidSetting(format!(
        "tensor {index} is empty, and its {} norm is undefined (the operation has no identity)",
        order.name()
    ))
}

/// Up to this many neighbouring whole chunks of a tensor are reduced side by
/// side, each with its own accumulators: the same operations in the same order
/// as chunk by chunk, but with several independent chains of additions in
/// flight instead of one (a single chain is bound by the addition's latency).
const LOCKSTEP_CHUNKS: usize = 8;

/// One task of the parallel pass: `chunks` whole chunks (or a tensor's last,
/// partial chunk) of tensor `tensor`, covering `elements`.
struct Unit {
    tensor: usize,
    elements: Range<usize>,
    chunks: usize,
}

/// Every chunk of every tensor, in order, grouped into tasks of 8, 4, 2 or 1 chunks.
fn work_units<F>(tensors: &[&[F]]) -> Vec<Unit> {
    let mut units = Vec::new();
    for (tensor, values) in tensors.iter().enumerate() {
        let mut start = 0;
        while start < values.len() {
            let remaining = values.len() - start;
            let chunks = match remaining / CHUNK_ELEMENTS {
                whole if whole >= LOCKSTEP_CHUNKS => LOCKSTEP_CHUNKS,
                whole if whole >= 4 => 4,
                whole if whole >= 2 => 2,
                _ => 1,
            };
            let len = if chunks == 1 { CHUNK_ELEMENTS.min(remaining) } else { chunks * CHUNK_ELEMENTS };
            units.push(Unit { tensor, elements: start..start + len, chunks });
            start += len;
        }
    }
    units
}

/// Whether a unit runs at the active SIMD level. Sequential sums of several
/// chunks are scalar code either way; compiled for AVX-512, LLVM turns their
/// lockstep loads into gathers, several times slower than the baseline's
/// independent chains.
fn runs_vectorized(chunks: usize, order: NormOrder) -> bool {
    chunks == 1 || !matches!(order, NormOrder::One | NormOrder::Power(_))
}

/// The partial results of a unit's chunks (`chunks` of them, in order).
#[inline(always)]
fn unit_partials<F: NormElement>(values: &[F], chunks: usize, order: NormOrder) -> ([F; LOCKSTEP_CHUNKS], usize) {
    let mut partials = [F::ZERO; LOCKSTEP_CHUNKS];
    match chunks {
        8 => partials.copy_from_slice(&lockstep::<F, 8>(values, order)),
        4 => partials[..4].copy_from_slice(&lockstep::<F, 4>(values, order)),
        2 => partials[..2].copy_from_slice(&lockstep::<F, 2>(values, order)),
        _ => partials[0] = chunk_partial(values, order),
    }
    (partials, chunks)
}

/// [`chunk_partial`] of `K` whole chunks, computed side by side.
#[inline(always)]
fn lockstep<F: NormElement, const K: usize>(values: &[F], order: NormOrder) -> [F; K] {
    let chunks: [&[F]; K] = std::array::from_fn(|c| &values[c * CHUNK_ELEMENTS..(c + 1) * CHUNK_ELEMENTS]);
    let add = |a: F, b: F| a + b;
    match order {
        NormOrder::Two if F::LANES == 8 => lanes_lockstep::<F, K, 8>(chunks, F::ZERO, |s, x| s + x * x, add),
        NormOrder::Two => lanes_lockstep::<F, K, 4>(chunks, F::ZERO, |s, x| s + x * x, add),
        NormOrder::Inf if F::LANES == 8 => lanes_lockstep::<F, K, 8>(chunks, F::ZERO, largest, nan_max),
        NormOrder::Inf => lanes_lockstep::<F, K, 4>(chunks, F::ZERO, largest, nan_max),
        NormOrder::NegInf if F::LANES == 8 => lanes_lockstep::<F, K, 8>(chunks, F::INFINITY, smallest, nan_min),
        NormOrder::NegInf => lanes_lockstep::<F, K, 4>(chunks, F::INFINITY, smallest, nan_min),
        NormOrder::One => sequential_lockstep(chunks, |x| x.abs()),
        NormOrder::Power(p) => {
            let p = F::from_f64(p);
            sequential_lockstep(chunks, |x| x.abs().powf(p))
        }
        NormOrder::Zero => std::array::from_fn(|c| chunk_partial(chunks[c], order)),
    }
}

/// For each whole chunk, `L` lane accumulators (element `i` to lane `i % L`)
/// merged in order: [`fold_lanes`] (and, for p = 2, the lane part of
/// [`sum_of_squares`], which is all of it for a whole chunk).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `c` and `j` index chunks and lanes together
fn lanes_lockstep<F: Element, const K: usize, const L: usize>(
    chunks: [&[F]; K],
    init: F,
    step: impl Fn(F, F) -> F,
    merge: impl Fn(F, F) -> F,
) -> [F; K] {
    // Plain index loops: iterator adaptors in the hot loop are left out of
    // line (and so out of the SIMD level's copy) by builds without LTO.
    let mut lanes = [[init; L]; K];
    let mut start = 0;
    while start < CHUNK_ELEMENTS {
        for c in 0..K {
            let block = &chunks[c][start..start + L];
            for j in 0..L {
                lanes[c][j] = step(lanes[c][j], block[j]);
            }
        }
        start += L;
    }
    lanes.map(|accumulators| accumulators.into_iter().reduce(&merge).unwrap_or(init))
}

/// For each whole chunk, the sequential sum of `term(x)` from 0.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `i` walks the chunks in lockstep
fn sequential_lockstep<F: Element, const K: usize>(chunks: [&[F]; K], term: impl Fn(F) -> F) -> [F; K] {
    let mut sums = [F::ZERO; K];
    for i in 0..CHUNK_ELEMENTS {
        for c in 0..K {
            sums[c] = sums[c] + term(chunks[c][i]);
        }
    }
    sums
}

/// A chunk's partial result, in the order of operations described in the module docs.
#[inline(always)]
fn chunk_partial<F: NormElement>(values: &[F], order: NormOrder) -> F {
    match order {
        NormOrder::Two => {
            if F::LANES == 8 {
                sum_of_squares::<F, 8>(values)
            } else {
                sum_of_squares::<F, 4>(values)
            }
        }
        NormOrder::One => values.iter().fold(F::ZERO, |sum, &x| sum + x.abs()),
        NormOrder::Zero => F::from_f64(values.iter().filter(|&&x| x != F::ZERO).count() as f64),
        NormOrder::Inf if F::LANES == 8 => fold_lanes::<F, 8>(values, F::ZERO, largest, nan_max),
        NormOrder::Inf => fold_lanes::<F, 4>(values, F::ZERO, largest, nan_max),
        NormOrder::NegInf if F::LANES == 8 => fold_lanes::<F, 8>(values, F::INFINITY, smallest, nan_min),
        NormOrder::NegInf => fold_lanes::<F, 4>(values, F::INFINITY, smallest, nan_min),
        NormOrder::Power(p) => {
            let p = F::from_f64(p);
            values.iter().fold(F::ZERO, |sum, &x| sum + x.abs().powf(p))
        }
    }
}

/// torch's p = 2 sum: `L` lane sums over whole blocks, lanes added in order,
/// then the tail (see the module docs).
#[inline(always)]
fn sum_of_squares<F: NormElement, const L: usize>(values: &[F]) -> F {
    let whole = values.len() - values.len() % L;
    let mut lanes = [F::ZERO; L];
    for block in values[..whole].chunks_exact(L) {
        for j in 0..L {
            lanes[j] = lanes[j] + block[j] * block[j];
        }
    }
    let mut sum = F::ZERO;
    for lane in lanes {
        sum = sum + lane;
    }
    let tail = &values[whole..];
    let rounded = tail.len().checked_div(F::ROUNDED_TAIL_BLOCK).map_or(0, |blocks| blocks * F::ROUNDED_TAIL_BLOCK);
    for &x in &tail[..rounded] {
        sum = sum + x * x;
    }
    for &x in &tail[rounded..] {
        sum = x.mul_add(x, sum);
    }
    sum
}

/// A fold with `L` independent accumulators (element `i` goes to lane `i % L`),
/// the lanes then merged in order. The order is fixed in the code, so every
/// SIMD level computes the same thing.
#[inline(always)]
fn fold_lanes<F: Element, const L: usize>(
    values: &[F],
    init: F,
    step: impl Fn(F, F) -> F,
    merge: impl Fn(F, F) -> F,
) -> F {
    let mut lanes = [init; L];
    let mut blocks = values.chunks_exact(L);
    for block in &mut blocks {
        for j in 0..L {
            lanes[j] = step(lanes[j], block[j]);
        }
    }
    for (j, &x) in blocks.remainder().iter().enumerate() {
        lanes[j] = step(lanes[j], x);
    }
    lanes.into_iter().reduce(merge).unwrap_or(init)
}

/// Combines the partial results of two consecutive chunks of one tensor.
#[inline(always)]
fn combine<F: NormElement>(a: F, b: F, order: NormOrder) -> F {
    match order {
        NormOrder::Inf => nan_max(a, b),
        NormOrder::NegInf => nan_min(a, b),
        _ => a + b,
    }
}

/// A tensor's norm from its combined partial results.
fn finish<F: NormElement>(sum: F, order: NormOrder) -> F {
    match order {
        NormOrder::Two => sum.sqrt(),
        // torch: pow(acc, 1/p) with 1/p computed in the element type.
        NormOrder::Power(p) => sum.powf(F::ONE / F::from_f64(p)),
        _ => sum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{self, SimdLevel};

    const SCALES: [f64; 7] = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0];

    /// Deterministic values spanning six decades, computed in `F` (the torch
    /// numbers below were recorded from the same formula in NumPy).
    fn values<F: NormElement>(n: usize, seed: u64) -> Vec<F> {
        (0..n as u64)
            .map(|i| {
                let k = (i.wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f64;
                let x = F::from_f64(k) / F::from_f64(1000.0) - F::ONE;
                x * F::from_f64(SCALES[(i % 7) as usize])
            })
            .collect()
    }

    fn all_orders() -> Vec<NormOrder> {
        [2.0, 1.0, f64::INFINITY, f64::NEG_INFINITY, 0.0, 3.0, 0.5, -1.5]
            .into_iter()
            .map(|p| NormOrder::new(p).unwrap())
            .collect()
    }

    #[test]
    fn norms_match_torch_bitwise() {
        // torch 2.15 `vector_norm(x, p)` for p = 2, 1, inf, 0 on one thread.
        let f32_cases: [(usize, [u32; 4]); 6] = [
            (1, [0x3a82278d, 0x3a82278d, 0x3a82278d, 0x3f800000]),
            (5, [0x3fe4734b, 0x4016eba6, 0x3fd5c28f, 0x40a00000]),
            (13, [0x43868f5c, 0x43c7e4d7, 0x43760003, 0x41500000]),
            (37, [0x44983f09, 0x451f3c35, 0x44584000, 0x42140000]),
            (1003, [0x45d911b7, 0x479b8e06, 0x44700001, 0x447a8000]),
            (32768, [0x471b2753, 0x4a1ecbff, 0x447a0000, 0x46ffe000]),
        ];
        let f64_cases: [(usize, [u64; 4]); 6] = [
            (1, [0x3f5044f1a1986b9c, 0x3f5044f1a1986b9c, 0x3f5044f1a1986b9c, 0x3ff0000000000000]),
            (5, [0x3ffc8e6967acaf08, 0x4002dd74d594f26c, 0x3ffab851eb851eba, 0x4014000000000000]),
            (13, [0x4070d1eb4fde4156, 0x4078fc9ab5c39bcb, 0x406ec00000000000, 0x402a000000000000]),
            (37, [0x409307e115c4017c, 0x40a3e786d0d4994b, 0x408b080000000000, 0x4042800000000000]),
            (1003, [0x40bb2236e4822d6f, 0x40f371c11f53825b, 0x408e000000000000, 0x408f500000000000]),
            (32768, [0x40e364eb679ba2a5, 0x4143d9aada93d100, 0x408f400000000000, 0x40dffc0000000000]),
        ];
        let orders = [NormOrder::Two, NormOrder::One, NormOrder::Inf, NormOrder::Zero];
        for (n, expected) in f32_cases {
            let x = values::<f32>(n, 7);
            for (order, bits) in orders.iter().zip(expected) {
                assert_eq!(vector_norm(&x, *order).unwrap().to_bits(), bits, "f32 n={n} {order:?}");
            }
        }
        for (n, expected) in f64_cases {
            let x = values::<f64>(n, 7);
            for (order, bits) in orders.iter().zip(expected) {
                assert_eq!(vector_norm(&x, *order).unwrap().to_bits(), bits, "f64 n={n} {order:?}");
            }
        }
    }

    #[test]
    fn chunks_reduced_side_by_side_equal_chunk_by_chunk() {
        // 8 + 4 + 2 + 1 whole chunks and a partial one: every grouping.
        let n = 15 * CHUNK_ELEMENTS + 5;
        fn check<F: NormElement>(x: &[F]) {
            let chunks: Vec<&[F]> = x.chunks(CHUNK_ELEMENTS).collect();
            for order in all_orders() {
                let by_chunk: Vec<F> = chunks.iter().map(|c| chunk_partial(c, order)).collect();
                let combined = by_chunk.into_iter().reduce(|a, b| combine(a, b, order)).unwrap();
                let expected = finish(combined, order).to_f64().to_bits();
                assert_eq!(vector_norm(x, order).unwrap().to_f64().to_bits(), expected, "{order:?}");
            }
        }
        check(&values::<f32>(n, 5));
        check(&values::<f64>(n, 6));
    }

    #[test]
    fn a_large_tensor_combines_its_chunks_in_order() {
        let n = 3 * CHUNK_ELEMENTS + 13;
        let x = values::<f32>(n, 3);
        let chunks: Vec<&[f32]> = x.chunks(CHUNK_ELEMENTS).collect();
        // p = 1 and p = 0: the chunk sums, added left to right.
        for order in [NormOrder::One, NormOrder::Zero] {
            let parts = tensor_norms(&chunks, order).unwrap();
            let expected = ((parts[0] + parts[1]) + parts[2]) + parts[3];
            assert_eq!(vector_norm(&x, order).unwrap().to_bits(), expected.to_bits(), "{order:?}");
        }
        // p = 2: the chunks' sums of squares, added left to right, then the root.
        let sums: Vec<f32> = chunks.iter().map(|c| chunk_partial(c, NormOrder::Two)).collect();
        let expected = (((sums[0] + sums[1]) + sums[2]) + sums[3]).sqrt();
        assert_eq!(vector_norm(&x, NormOrder::Two).unwrap().to_bits(), expected.to_bits());
        // And close to the exact value.
        let exact = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        assert!((expected as f64 - exact).abs() < 1e-5 * exact);
    }

    fn run_all<F: NormElement>(tensors: &[Vec<F>]) -> Vec<u64> {
        let slices: Vec<&[F]> = tensors.iter().map(|t| t.as_slice()).collect();
        let mut bits = Vec::new();
        for order in all_orders() {
            let usable: Vec<&[F]> =
                slices.iter().copied().filter(|t| order.defined_for_empty() || !t.is_empty()).collect();
            for norm in tensor_norms(&usable, order).unwrap() {
                bits.push(norm.to_f64().to_bits());
            }
        }
        bits
    }

    #[test]
    fn norms_are_bitwise_identical_for_every_thread_count_and_simd_level() {
        let sizes = [0, 1, 3, 100_003, 3 * CHUNK_ELEMENTS + 5, 9 * CHUNK_ELEMENTS + 3, 7];
        let t32: Vec<Vec<f32>> = sizes.iter().map(|&n| values(n, n as u64)).collect();
        let t64: Vec<Vec<f64>> = sizes.iter().map(|&n| values(n, n as u64 + 1)).collect();
        simd::set_forced_level(Some(SimdLevel::Baseline)).unwrap();
        pool::set_num_threads(1).unwrap();
        let (expected32, expected64) = (run_all(&t32), run_all(&t64));
        for level in simd::available_levels() {
            for threads in [1, 2, 3, 5] {
                simd::set_forced_level(Some(level)).unwrap();
                pool::set_num_threads(threads).unwrap();
                assert_eq!(run_all(&t32), expected32, "{level:?} {threads} threads");
                assert_eq!(run_all(&t64), expected64, "{level:?} {threads} threads");
            }
        }
        simd::set_forced_level(None).unwrap();
        pool::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
    }

    #[test]
    fn special_values_and_empty_tensors() {
        let x = [3.0f64, -4.0, 0.0];
        assert_eq!(vector_norm(&x, NormOrder::Two).unwrap(), 5.0);
        assert_eq!(vector_norm(&x, NormOrder::Zero).unwrap(), 2.0);
        assert_eq!(vector_norm(&x, NormOrder::NegInf).unwrap(), 0.0);
        assert_eq!(vector_norm(&[-2.0f32], NormOrder::Power(3.0)).unwrap(), 2.0);
        let with_nan = [1.0f32, f32::NAN, 5.0];
        for order in all_orders().into_iter().filter(|o| *o != NormOrder::Zero) {
            assert!(vector_norm(&with_nan, order).unwrap().is_nan(), "{order:?}");
        }
        assert_eq!(vector_norm(&with_nan, NormOrder::Zero).unwrap(), 3.0);
        let empty: [f64; 0] = [];
        for order in all_orders() {
            let result = vector_norm(&empty, order);
            if order.defined_for_empty() {
                assert_eq!(result.unwrap(), 0.0, "{order:?}");
            } else {
                assert!(result.is_err(), "{order:?}");
            }
        }
        assert!(NormOrder::new(f64::NAN).is_err());
    }

    #[test]
    fn the_total_stacks_the_norms_group_by_group() {
        let a = values::<f32>(11, 1);
        let b = values::<f64>(6, 2);
        let c = values::<f32>(40, 3);
        let (na, nb, nc) = (
            vector_norm(&a, NormOrder::Two).unwrap() as f64,
            vector_norm(&b, NormOrder::Two).unwrap(),
            vector_norm(&c, NormOrder::Two).unwrap() as f64,
        );
        let total = |first64| total_norm(&[&a, &c], &[&b], first64, NormOrder::Two).unwrap();
        assert_eq!(total(true), TotalNorm::F64(vector_norm(&[nb, na, nc], NormOrder::Two).unwrap()));
        assert_eq!(total(false), TotalNorm::F64(vector_norm(&[na, nc, nb], NormOrder::Two).unwrap()));
        let only32 = total_norm(&[&a, &c], &[], false, NormOrder::One).unwrap();
        assert_eq!(
            only32,
            TotalNorm::F32(vector_norm(&a, NormOrder::One).unwrap() + vector_norm(&c, NormOrder::One).unwrap())
        );
        assert_eq!(total_norm(&[], &[], false, NormOrder::Inf).unwrap(), TotalNorm::F32(0.0));
        // p = 0 counts the tensors with a non-zero element.
        let zeros = [0.0f32; 4];
        assert_eq!(total_norm(&[&a, &zeros], &[&b], false, NormOrder::Zero).unwrap(), TotalNorm::F64(2.0));
    }
}
