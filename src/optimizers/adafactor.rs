//! Adafactor (torch 2.15's variant) as a whole-tensor rule.
//!
//! For each tensor with step count `t` (after the increment; float32, as torch
//! keeps it), in torch's order and rounding (`θ` param, `g` grad, `⟦·⟧` rounding
//! to the param's dtype, `n` the element count):
//!
//! ```text
//! g    = -grad if maximize else grad
//! β̂    = t^beta2_decay                         (Python floats; 1 at t = 1)
//! ρ    = min(lr, 1 / t^0.5)                    (`**` is C pow, as in Python)
//! α    = max(eps2, ‖θ‖ / n^0.5) · ρ            (‖θ‖ before the decay, rounded to the dtype)
//! θ    = ⟦θ · (1 − lr·wd)⟧                     (wd ≠ 0; the raw lr)
//! 2+ dimensions (..., R, C), factored over the last two:
//!   row_var = lerp(row_var, ⟦⟦‖g[..., i, :]‖²⟧ / C⟧, β̂)     (torch's lerp: one FMA)
//!   col_var = lerp(col_var, ⟦⟦‖g[..., :, j]‖²⟧ / R⟧, β̂)
//!   V       = ⟦⟦row_var[i] · col_var[j]⟧ / max(⟦Σ_i row_var[i] / R⟧, eps1)⟧
//! 0-d and 1-d:
//!   variance = lerp(variance, ⟦g·g⟧, β̂);  V = variance
//! u    = ⟦⟦1 / ⟦sqrt(max(V, eps1²))⟧⟧ · g⟧
//! den  = max(1, ‖u‖ / (n^0.5 · d))
//! θ    = θ + ⟦−α / den⟧ · u                   (one FMA)
//! ```
//!
//! `eps1 = None` means the machine epsilon of the tensor's dtype; the binding
//! resolves it as torch does, once per group, from the group's first param with a
//! gradient (so a float64 param after a float32 one uses float32's epsilon).
//! Norms and sums are formed in `f64` in the fixed order of [`crate::row_sums`]
//! (torch accumulates float32 tensors in float32), then rounded to the dtype
//! where torch holds them in it. `max`/`min` on Python floats keep their first
//! argument unless the second compares greater/smaller; clamps propagate NaN.
//! An empty param takes the step count and keeps its zero state (torch raises
//! `ZeroDivisionError` for it).

use super::lerp::Lerp;
use super::scalars::{float32_step, python_pow};
use crate::element::{Element, nan_max};
use crate::row_sums::{self, LANES, Matrices, chunk, for_each_block, for_each_block_pair, lane_sum, wide_square};
use crate::simd::dispatch;
use crate::tensorwise::{TensorRule, WholeTensor, Workspace, WorkspaceSize, py_max, py_min};

/// Hyperparameters of one param group, read fresh at every step. Tensors of
/// 2+ dimensions carry the slots `row_var` and `col_var`, others `variance`;
/// every tensor carries the scalar `step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdafactorConfig {
    pub lr: f64,
    pub beta2_decay: f64,
    /// `eps[0]`; None: the machine epsilon of each tensor's dtype.
    pub eps1: Option<f64>,
    pub eps2: f64,
    pub d: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Default for AdafactorConfig {
    fn default() -> Self {
        AdafactorConfig {
            lr: 1e-2,
            beta2_decay: -0.8,
            eps1: None,
            eps2: 1e-3,
            d: 1.0,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

/// Whether a tensor of this shape keeps a factored second moment.
pub fn is_factored(shape: &[usize]) -> bool {
    shape.len() >= 2
}

/// The second moment estimate `V` a step divides by.
#[derive(Clone, Copy)]
enum Variance<'a, F> {
    /// Row and column factors, and each matrix's clamped mean of `row_var`.
    Factored { row_var: &'a [F], col_var: &'a [F], row_means: &'a [F] },
    /// One value per element (0-d and 1-d params).
    Full(&'a [F]),
}

impl TensorRule for AdafactorConfig {
    fn slot_count(&self, shape: &[usize]) -> usize {
        if is_factored(shape) { 2 } else { 1 }
    }

    fn slot_shape(&self, slot: usize, shape: &[usize]) -> Vec<usize> {
        let mut slot_shape = shape.to_vec();
        if is_factored(shape) {
            // row_var: (..., R, 1); col_var: (..., 1, C).
            let axis = if slot == 0 { shape.len() - 1 } else { shape.len() - 2 };
            slot_shape[axis] = 1;
        }
        slot_shape
    }

    fn workspace(&self, shape: &[usize]) -> WorkspaceSize {
        let m = Matrices::of(shape);
        let row_sums = m.batch * m.rows;
        // The update u (one value per element), then one row mean per matrix.
        if !is_factored(shape) {
            return WorkspaceSize { values: m.len(), wide: row_sums };
        }
        let column_sums = m.batch * m.cols;
        let partials = m.batch * m.blocks_per_matrix() * m.cols;
        // Row sums, column sums and block partials (f64).
        WorkspaceSize { values: m.len() + m.batch, wide: row_sums + column_sums + partials }
    }

    fn update<F: Element>(&self, tensor: &mut WholeTensor<'_, F>, workspace: &mut Workspace<F>) {
        let step = float32_step(tensor.scalars[0]);
        tensor.scalars[0] = step;
        let n = tensor.param.len();
        if n == 0 {
            return;
        }
        let shape = Matrices::of(tensor.shape);
        let beta2_hat = Lerp::<F>::new(python_pow(step, self.beta2_decay));
        let rho = py_min(self.lr, 1.0 / python_pow(step, 0.5));
        let param_norm = rounded_norm::<F>(row_sums::sum_of_squares(tensor.param, shape));
        let sqrt_n = python_pow(n as f64, 0.5);
        let alpha = py_max(self.eps2, param_norm / sqrt_n) * rho;
        let sign = if self.maximize { -F::ONE } else { F::ONE };
        let eps1 = self.eps1.unwrap_or(F::EPSILON);
        let floor = F::from_f64(eps1 * eps1);
        let grad = tensor.grad;

        let (rows_sums, rest) = workspace.wide.split_at_mut(shape.batch * shape.rows);
        let (updates, row_means) = workspace.values.split_at_mut(n);
        let [first, second, ..] = &mut tensor.slots;
        let variance = if is_factored(tensor.shape) {
            let (row_var, col_var) = (&mut **first, &mut **second);
            let (column_sums, rest) = rest.split_at_mut(shape.batch * shape.cols);
            let partials = &mut rest[..shape.batch * shape.blocks_per_matrix() * shape.cols];
            // Squares do not depend on the sign of g.
            row_sums::row_and_column_sums_of_squares(grad, shape, rows_sums, column_sums, partials);
            let (columns, rows) = (F::from_f64(shape.cols as f64), F::from_f64(shape.rows as f64));
            for (var, &sum) in row_var.iter_mut().zip(rows_sums.iter()) {
                *var = beta2_hat.apply(*var, squared_norm::<F>(sum) / columns);
            }
            for (var, &sum) in col_var.iter_mut().zip(column_sums.iter()) {
                *var = beta2_hat.apply(*var, squared_norm::<F>(sum) / rows);
            }
            let eps1 = F::from_f64(eps1);
            let row_means = &mut row_means[..shape.batch];
            for (mean, matrix) in row_means.iter_mut().zip(row_var.chunks(shape.rows)) {
                let sum = matrix.iter().fold(0.0f64, |s, &v| s + v.to_f64());
                *mean = nan_max(F::from_f64(sum) / rows, eps1);
            }
            Variance::Factored { row_var: &*row_var, col_var: &*col_var, row_means: &*row_means }
        } else {
            let variance = &mut **first;
            dispatch(
                #[inline(always)]
                || {
                    for (v, &g) in variance.iter_mut().zip(grad) {
                        *v = beta2_hat.apply(*v, g * g);
                    }
                },
            );
            Variance::Full(&*variance)
        };

        // u into the workspace, and ‖u‖ from the row sums of u².
        let cols = shape.cols;
        let u = UpdateScale { floor, sign };
        for_each_block_pair(
            shape,
            (rows_sums, 1),
            (updates, cols),
            #[inline(always)]
            |block, sums, updates| {
                for (row_in_block, (sum, out)) in sums.iter_mut().zip(updates.chunks_mut(cols)).enumerate() {
                    let row = block.first_row + row_in_block;
                    let g = &grad[row * cols..(row + 1) * cols];
                    *sum = match variance.row(block.matrix, row, cols) {
                        RowVariance::Factored(v) => u.store(&v, g, out),
                        RowVariance::Full(v) => u.store(&v, g, out),
                    };
                }
            },
        );
        let update_norm = rounded_norm::<F>(rows_sums.iter().fold(0.0, |s, &r| s + r));
        let denominator = py_max(1.0, update_norm / (sqrt_n * self.d));
        let step_size = F::from_f64(-alpha / denominator);
        // Multiplying by 1 is exact, so no decay needs no branch.
        let decay = if self.weight_decay != 0.0 { F::from_f64(1.0 - self.lr * self.weight_decay) } else { F::ONE };
        let updates: &[F] = updates;
        for_each_block(
            shape,
            tensor.param,
            cols,
            #[inline(always)]
            |block, params| {
                let start = block.first_row * cols;
                let updates = &updates[start..start + params.len()];
                for (theta, &u) in params.iter_mut().zip(updates) {
                    *theta = step_size.mul_add(u, *theta * decay);
                }
            },
        );
    }
}

/// `u = ⟦⟦1 / ⟦sqrt(max(V, floor))⟧⟧ · g⟧` (g with its maximize sign).
#[derive(Clone, Copy)]
struct UpdateScale<F> {
    floor: F,
    sign: F,
}

impl<F: Element> UpdateScale<F> {
    #[inline(always)]
    fn u(&self, v: F, g: F) -> F {
        (F::ONE / nan_max(v, self.floor).sqrt()) * (g * self.sign)
    }

    /// u along a row into `out`; returns Σ u² in lane order.
    #[inline(always)]
    fn store(&self, v: &impl RowValues<F>, g: &[F], out: &mut [F]) -> f64 {
        let whole = g.len() / LANES;
        let (head, tail_out) = out.split_at_mut(whole * LANES);
        let tail = &g[whole * LANES..];
        let mut chunks = head.chunks_exact_mut(LANES);
        lane_sum(
            whole,
            #[inline(always)]
            |i| {
                let (v, g) = (v.chunk(i), chunk(g, i));
                let out = chunks.next().expect("one output chunk per chunk");
                let mut squares = [0.0; LANES];
                for k in 0..LANES {
                    let u = self.u(v[k], g[k]);
                    out[k] = u;
                    squares[k] = wide_square(u);
                }
                squares
            },
            tail.len(),
            #[inline(always)]
            |k| {
                let u = self.u(v.at(whole * LANES + k), tail[k]);
                tail_out[k] = u;
                wide_square(u)
            },
        )
    }
}

/// The values of `V` along one row.
trait RowValues<F> {
    /// Columns `LANES·i ..` of the `i`-th whole chunk.
    fn chunk(&self, i: usize) -> [F; LANES];
    fn at(&self, column: usize) -> F;
}

/// `V = ⟦⟦r · col_var[j]⟧ / mean⟧` along a row of a factored tensor.
struct FactoredRow<'a, F> {
    r: F,
    mean: F,
    col_var: &'a [F],
}

impl<F: Element> RowValues<F> for FactoredRow<'_, F> {
    #[inline(always)]
    fn chunk(&self, i: usize) -> [F; LANES] {
        let mut values = chunk(self.col_var, i);
        for v in values.iter_mut() {
            *v = (self.r * *v) / self.mean;
        }
        values
    }
    #[inline(always)]
    fn at(&self, column: usize) -> F {
        (self.r * self.col_var[column]) / self.mean
    }
}

/// `V = variance[j]` along a row of an unfactored tensor.
struct FullRow<'a, F>(&'a [F]);

impl<F: Element> RowValues<F> for FullRow<'_, F> {
    #[inline(always)]
    fn chunk(&self, i: usize) -> [F; LANES] {
        chunk(self.0, i)
    }
    #[inline(always)]
    fn at(&self, column: usize) -> F {
        self.0[column]
    }
}

/// One row of `V`, in either form.
enum RowVariance<'a, F> {
    Factored(FactoredRow<'a, F>),
    Full(FullRow<'a, F>),
}

impl<'a, F: Element> Variance<'a, F> {
    /// Row `row` (counted across the batch) of matrix `matrix`.
    #[inline(always)]
    fn row(&self, matrix: usize, row: usize, cols: usize) -> RowVariance<'a, F> {
        match *self {
            Variance::Factored { row_var, col_var, row_means } => RowVariance::Factored(FactoredRow {
                r: row_var[row],
                mean: row_means[matrix],
                col_var: &col_var[matrix * cols..(matrix + 1) * cols],
            }),
            Variance::Full(variance) => RowVariance::Full(FullRow(&variance[row * cols..(row + 1) * cols])),
        }
    }
}

/// `‖x‖` from a sum of squares, rounded to the dtype as torch's norm is, as a Python float.
fn rounded_norm<F: Element>(sum_of_squares: f64) -> f64 {
    F::from_f64(sum_of_squares.sqrt()).to_f64()
}

/// torch's `vector_norm(...).square_()`: the norm rounded to the dtype, then squared in it.
fn squared_norm<F: Element>(sum_of_squares: f64) -> F {
    let norm = F::from_f64(sum_of_squares.sqrt());
    norm * norm
}
