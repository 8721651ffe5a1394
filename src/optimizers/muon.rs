//! Muon (torch 2.15) as a whole-tensor rule: momentum, then the update
//! orthogonalized by a Newton-Schulz iteration.
//!
//! For each matrix param of shape `(A, B)` (`θ` param, `g` grad, `m` the
//! momentum buffer, `μ` momentum, `⟦·⟧` rounding to the param's dtype):
//!
//! ```text
//! m  = lerp(m, g, 1 − μ)                     (torch's lerp: one FMA; an EMA, not μm + g)
//! U  = lerp(g, m, μ) if nesterov else m
//! X  = U, transposed if A > B                (so X is wide: rows ≤ columns)
//! X  = ⟦X / max(‖X‖_F, eps)⟧
//! repeat ns_steps (a, b, c = ns_coefficients):
//!     S = X·Xᵀ
//!     X = a·X + (b·S + c·S·S)·X
//! O  = X, transposed back if A > B
//! θ  = ⟦θ · (1 − lr·wd)⟧                     (the unadjusted lr)
//! θ  = θ + ⟦−lr·r⟧ · O                       (one FMA)
//! r  = sqrt(max(1, A/B))        adjust_lr_fn None or "original"
//!      0.2·sqrt(max(A, B))      "match_rms_adamw"
//!      sqrt(A/B)                "spectral_unclamped"
//! ```
//!
//! torch runs the Newton-Schulz iteration in bfloat16 (each product accumulated
//! in float32, rounded to bfloat16). Here it runs in the param's own dtype
//! (float32 or float64), more accurately than torch: the update lands within a
//! few percent of torch's (relative Frobenius norm), the spread bfloat16 itself
//! has. Everything outside the iteration follows torch's rounding.

use super::lerp::Lerp;
use crate::element::{Element, nan_max};
use crate::matmul::{MatRef, gemm, gemm_symmetric};
use crate::partition::{SharedMut, for_each_piece};
use crate::row_sums::{self, Matrices};
use crate::simd::dispatch;
use crate::tensorwise::{TensorRule, WholeTensor, Workspace, WorkspaceSize};

/// How the lr is scaled by the matrix's shape `(A, B)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrAdjustment {
    /// `sqrt(max(1, A/B))` (Keller Jordan's; `adjust_lr_fn=None` or `"original"`).
    Original,
    /// `0.2·sqrt(max(A, B))` (Moonshot's `"match_rms_adamw"`).
    MatchRmsAdamw,
    /// `sqrt(A/B)` (Bernstein's `"spectral_unclamped"`).
    SpectralUnclamped,
}

impl LrAdjustment {
    /// The ratio for a matrix of `rows x cols`, as torch computes it in Python floats.
    pub fn ratio(self, rows: usize, cols: usize) -> f64 {
        let (a, b) = (rows as f64, cols as f64);
        match self {
            LrAdjustment::Original => (a / b).max(1.0).sqrt(),
            LrAdjustment::MatchRmsAdamw => 0.2 * a.max(b).sqrt(),
            LrAdjustment::SpectralUnclamped => (a / b).sqrt(),
        }
    }
}

/// Hyperparameters of one param group, read fresh at every step. Each matrix
/// carries the slot `momentum_buffer` and no scalar state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_coefficients: [f64; 3],
    pub eps: f64,
    pub ns_steps: usize,
    pub adjust_lr: LrAdjustment,
}

impl Default for MuonConfig {
    fn default() -> Self {
        MuonConfig {
            lr: 1e-3,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_coefficients: [3.4445, -4.7750, 2.0315],
            eps: 1e-7,
            ns_steps: 5,
            adjust_lr: LrAdjustment::Original,
        }
    }
}

/// `(short side, long side)` of a matrix.
fn sides(shape: &[usize]) -> (usize, usize) {
    let (rows, cols) = (shape[0], shape[1]);
    (rows.min(cols), rows.max(cols))
}

impl TensorRule for MuonConfig {
    fn check_shape(&self, shape: &[usize]) -> Result<(), String> {
        if shape.len() == 2 { Ok(()) } else { Err("Muon only supports 2D parameters".into()) }
    }

    fn slot_count(&self, _shape: &[usize]) -> usize {
        1
    }

    fn slot_shape(&self, _slot: usize, shape: &[usize]) -> Vec<usize> {
        shape.to_vec()
    }

    fn workspace(&self, shape: &[usize]) -> WorkspaceSize {
        // Two m x n iterates and two m x m products.
        let (m, n) = sides(shape);
        WorkspaceSize { values: 2 * m * n + 2 * m * m, wide: 0 }
    }

    fn update<F: Element>(&self, tensor: &mut WholeTensor<'_, F>, workspace: &mut Workspace<F>) {
        let (rows, cols) = (tensor.shape[0], tensor.shape[1]);
        let (m, n) = sides(tensor.shape);
        let transposed = rows > cols;
        let (x, rest) = workspace.values.split_at_mut(m * n);
        let (next, rest) = rest.split_at_mut(m * n);
        let (gram, rest) = rest.split_at_mut(m * m);
        let polynomial = &mut rest[..m * m];

        // Momentum, and the iteration's input in the wide orientation.
        let buffer = &mut *tensor.slots[0];
        momentum_and_input(self, tensor.grad, buffer, x, (rows, cols), transposed);
        if m == 0 {
            return;
        }
        let norm = F::from_f64(row_sums::sum_of_squares(x, Matrices { batch: 1, rows: m, cols: n }).sqrt());
        let norm = nan_max(norm, F::from_f64(self.eps));
        for value in x.iter_mut() {
            *value = *value / norm;
        }

        let [a, b, c] = self.ns_coefficients.map(F::from_f64);
        let (mut x, mut next) = (x, next);
        for _ in 0..self.ns_steps {
            // X·Xᵀ and S·S are symmetric: half the products of a general multiply.
            let xm = MatRef::row_major(x, m, n);
            gemm_symmetric(F::ONE, xm, xm.t(), F::ZERO, gram);
            polynomial.copy_from_slice(gram);
            let g = MatRef::row_major(gram, m, m);
            gemm_symmetric(c, g, g, b, polynomial);
            next.copy_from_slice(x);
            gemm(F::ONE, MatRef::row_major(polynomial, m, m), MatRef::row_major(x, m, n), a, next);
            std::mem::swap(&mut x, &mut next);
        }

        let decay = F::from_f64(1.0 - self.lr * self.weight_decay);
        let step_size = F::from_f64(-(self.lr * self.adjust_lr.ratio(rows, cols)));
        let orthogonal: &[F] = x;
        let param = SharedMut::new(&mut *tensor.param);
        for_each_piece(&[rows * cols], |_, range| {
            // SAFETY: `for_each_piece` hands out disjoint ranges of the one tensor.
            let theta = unsafe { param.piece(range.clone()) };
            dispatch(
                #[inline(always)]
                || {
                    if !transposed {
                        for (theta, &o) in theta.iter_mut().zip(&orthogonal[range.clone()]) {
                            *theta = step_size.mul_add(o, *theta * decay);
                        }
                        return;
                    }
                    // Element (r, c) of the param is element (c, r) of the iterate.
                    let (mut r, mut c) = (range.start / cols, range.start % cols);
                    for theta in theta.iter_mut() {
                        *theta = step_size.mul_add(orthogonal[c * rows + r], *theta * decay);
                        c += 1;
                        if c == cols {
                            (r, c) = (r + 1, 0);
                        }
                    }
                },
            )
        });
    }
}

/// `m = lerp(m, g, 1 − μ)` in place, and the iteration's input (`lerp(g, m, μ)`
/// with Nesterov, else `m`) into `x`, transposed when the matrix is tall.
fn momentum_and_input<F: Element>(
    config: &MuonConfig,
    grad: &[F],
    buffer: &mut [F],
    x: &mut [F],
    (rows, cols): (usize, usize),
    transposed: bool,
) {
    let to_grad = Lerp::<F>::new(1.0 - config.momentum);
    let to_buffer = Lerp::<F>::new(config.momentum);
    let nesterov = config.nesterov;
    let input = move |g: F, m: &mut F| {
        let updated = to_grad.apply(*m, g);
        *m = updated;
        if nesterov { to_buffer.apply(g, updated) } else { updated }
    };
    if transposed {
        // Written transposed: one pass on the calling thread (cheap next to the products).
        for (offset, (&g, m)) in grad.iter().zip(buffer.iter_mut()).enumerate() {
            x[(offset % cols) * rows + offset / cols] = input(g, m);
        }
        return;
    }
    let (shared_buffer, shared_x) = (SharedMut::new(buffer), SharedMut::new(x));
    for_each_piece(&[grad.len()], |_, range| {
        // SAFETY: `for_each_piece` hands out disjoint ranges; the buffer and `x`
        // are distinct slices, each piece taken once per range.
        let (buffer, x) = unsafe { (shared_buffer.piece(range.clone()), shared_x.piece(range.clone())) };
        let grad = &grad[range];
        dispatch(
            #[inline(always)]
            || {
                for ((&g, m), out) in grad.iter().zip(buffer.iter_mut()).zip(x.iter_mut()) {
                    *out = input(g, m);
                }
            },
        )
    });
}
