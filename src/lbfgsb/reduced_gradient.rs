//! The reduced gradient of the subspace minimization and its products with
//! `W`, in one pass over the correction pairs:
//!
//! ```text
//! r = −Zᵀ(g + θ(z − x) − W·M·c)    (zero off the free variables),
//! Wᵀr = [Yᵀr, θ·Sᵀr].
//! ```
//!
//! Computed as two steps (the combination `W·(M·c)`, then the products), each
//! reads all `2k` stored vectors of length `n`; together, [`BLOCK`] elements
//! at a time, the block of each vector is still in cache for the products.
//! The values are bit for bit those of the two steps: every `r_i` is the same
//! sequence of operations ([`combine`](super::vectors::combine)'s fused
//! multiply-adds in the order of the pairs), and every product the same lane
//! sums as [`dots`](super::vectors::dots) (blocks are whole numbers of lanes).

use super::cauchy::Status;
use super::compact::LimitedMemory;
use super::vectors::{LANES, dot_lanes, sum_lanes};
use crate::simd::dispatch;

/// Elements per block: the blocks of the `2m` vectors (`2m · 4 KiB`) stay in L2.
const BLOCK: usize = 512;
const _: () = assert!(BLOCK % LANES == 0, "a block must not move elements to other lanes");

/// `r ← −g − θ(z − x) + Y·a + S·b` on the free variables (0 elsewhere) and
/// `wr ← Wᵀr`. `a`, `b` have length `k`, `wr` length `2k`; `lanes` is scratch
/// of at least `2k` entries.
#[allow(clippy::too_many_arguments)]
pub fn reduced_gradient(
    memory: &LimitedMemory,
    [x, g, z]: [&[f64]; 3],
    status: &[Status],
    a: &[f64],
    b: &[f64],
    r: &mut [f64],
    wr: &mut [f64],
    lanes: &mut [[f64; LANES]],
) {
    let (n, k, theta) = (r.len(), memory.len(), memory.theta());
    assert!(x.len() == n && g.len() == n && z.len() == n && status.len() == n, "vectors of different lengths");
    let (a, b, wr, lanes) = (&a[..k], &b[..k], &mut wr[..2 * k], &mut lanes[..2 * k]);
    lanes.fill([0.0; LANES]);
    let body = n / LANES * LANES;
    dispatch(
        #[inline(always)]
        || {
            let mut start = 0;
            while start < n {
                let end = (start + BLOCK).min(n);
                let block = &mut r[start..end];
                for (i, ri) in (start..end).zip(block.iter_mut()) {
                    *ri = -g[i] - theta * (z[i] - x[i]);
                }
                // W·(M·c) in `combine`'s order: y_0, s_0, y_1, s_1, …
                for ((s, y), (&a, &b)) in memory.pairs().zip(a.iter().zip(b)) {
                    for (coefficient, vector) in [(a, y), (b, s)] {
                        for (ri, &v) in block.iter_mut().zip(&vector[start..end]) {
                            *ri = coefficient.mul_add(v, *ri);
                        }
                    }
                }
                for (ri, s) in block.iter_mut().zip(&status[start..end]) {
                    if !s.is_free() {
                        *ri = 0.0;
                    }
                }
                let whole = start..end.min(body);
                let rb = &r[whole.clone()];
                for (j, (s, y)) in memory.pairs().enumerate() {
                    lanes[j] = dot_lanes(lanes[j], &y[whole.clone()], rb);
                    lanes[k + j] = dot_lanes(lanes[k + j], &s[whole.clone()], rb);
                }
                start = end;
            }
        },
    );
    for (j, (s, y)) in memory.pairs().enumerate() {
        for (lane, i) in (body..n).enumerate() {
            lanes[j][lane] += y[i] * r[i];
            lanes[k + j][lane] += s[i] * r[i];
        }
        wr[j] = sum_lanes(lanes[j]);
        wr[k + j] = theta * sum_lanes(lanes[k + j]);
    }
}
