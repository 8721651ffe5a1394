//! Matrix products for Muon's Newton-Schulz iteration.
//!
//! The products run in the `matrixmultiply` crate (pure Rust, with its own
//! run-time choice of AVX2/AVX-512 kernels; chosen by measurement against
//! NumPy's OpenBLAS, see `benches/README.md`). The rows of the output are split
//! across rustoptim's thread pool; each output element is computed by the same
//! kernel with the same order of additions however the rows are split, so the
//! results are bitwise the same for any thread count.

use crate::element::Element;
use crate::pool;
use rayon::prelude::*;
use std::any::TypeId;

/// A matrix in a slice: element `(i, j)` is at `i * row_stride + j * col_stride`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, F> {
    pub values: &'a [F],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a, F> MatRef<'a, F> {
    /// A row-major `rows x cols` matrix.
    pub fn row_major(values: &'a [F], rows: usize, cols: usize) -> Self {
        assert!(values.len() >= rows * cols);
        MatRef { values, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose (a view, nothing is copied).
    pub fn t(self) -> Self {
        MatRef { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn last_index(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride
        }
    }
}

/// Output rows per task are a multiple of this: enough work to be worth a
/// thread, and a multiple of the kernels' tile heights.
const ROWS_PER_TASK: usize = 64;

/// `c ← beta·c + alpha·(a·b)` for a row-major `c` of `a.rows x b.cols`.
/// With `beta == 0`, `c` is not read (it may hold anything).
pub fn gemm<F: Element>(alpha: F, a: MatRef<'_, F>, b: MatRef<'_, F>, beta: F, c: &mut [F]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert_eq!(c.len(), m * n, "output has the wrong size");
    assert!(a.values.len() > a.last_index() || m * k == 0);
    assert!(b.values.len() > b.last_index() || k * n == 0);
    if m == 0 || n == 0 {
        return;
    }
    let run = |first_row: usize, c: &mut [F]| {
        let rows = c.len() / n;
        // SAFETY: the sub-matrix of `a` starts at row `first_row` and spans
        // `rows` rows, inside `a.values` (checked above); `c` is a distinct,
        // exclusively borrowed row-major `rows x n` block; `b` is in bounds.
        unsafe {
            gemm_raw(
                rows,
                k,
                n,
                alpha,
                a.values.as_ptr().add(first_row * a.row_stride),
                a.row_stride,
                a.col_stride,
                b,
                beta,
                c,
                n,
            )
        }
    };
    let tasks = (m / ROWS_PER_TASK).clamp(1, pool::num_threads());
    if tasks == 1 || m * n * k < (1 << 20) {
        run(0, c);
        return;
    }
    // Tasks start at multiples of ROWS_PER_TASK rows: a multiple of every
    // kernel tile height, so each task's tiles are the single-thread tiles
    // (an edge tile rounds differently from a full one).
    let rows_per_task = m.div_ceil(tasks).next_multiple_of(ROWS_PER_TASK);
    pool::pool().install(|| {
        c.par_chunks_mut(rows_per_task * n).enumerate().for_each(|(task, block)| run(task * rows_per_task, block));
    });
}

/// [`gemm`] for a product the caller knows to be symmetric (`a·aᵀ`, or `s·s`
/// for a symmetric `s`), with `c` symmetric too when `beta != 0`: only the
/// blocks of [`ROWS_PER_TASK`] rows from their diagonal block rightwards are
/// computed (about half the work), then the lower triangle is copied from the
/// upper one, so the result is exactly symmetric. The blocks are fixed by the
/// size alone, so the result does not depend on the thread count.
pub fn gemm_symmetric<F: Element>(alpha: F, a: MatRef<'_, F>, b: MatRef<'_, F>, beta: F, c: &mut [F]) {
    let (m, k) = (a.rows, a.cols);
    assert_eq!((b.rows, b.cols), (k, m), "a symmetric product is square");
    assert_eq!(c.len(), m * m, "output has the wrong size");
    assert!(a.values.len() > a.last_index() || m * k == 0);
    assert!(b.values.len() > b.last_index() || k * m == 0);
    if m == 0 {
        return;
    }
    let block_row = |block: usize, rows: &mut [F]| {
        let first = block * ROWS_PER_TASK;
        let height = rows.len() / m;
        let width = m - first;
        // This block's rows, columns `first..`: a `height x width` block of `c`
        // with row stride `m`.
        let b_columns = MatRef { values: &b.values[first * b.col_stride..], cols: width, ..b };
        // SAFETY: rows `first..first + height` of `a` and columns `first..` of
        // `b` are in bounds (checked above); the output block starts at column
        // `first` of `rows` and its last element is the last of `rows`.
        unsafe {
            gemm_raw(
                height,
                k,
                width,
                alpha,
                a.values.as_ptr().add(first * a.row_stride),
                a.row_stride,
                a.col_stride,
                b_columns,
                beta,
                &mut rows[first..],
                m,
            )
        }
    };
    let parallel = m * m * k >= (1 << 21) && pool::num_threads() > 1;
    if parallel {
        pool::pool()
            .install(|| c.par_chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(|(i, rows)| block_row(i, rows)));
    } else {
        c.chunks_mut(ROWS_PER_TASK * m).enumerate().for_each(|(i, rows)| block_row(i, rows));
    }
    for i in 0..m {
        for j in 0..i {
            c[i * m + j] = c[j * m + i];
        }
    }
}

/// # Safety
/// `a` must point to `m x k` elements reachable with its strides, `c` must hold
/// an `m x n` block with rows `c_row_stride` apart, `b` must be a valid `k x n`
/// matrix, and `F` is `f32` or `f64`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<F: Element>(
    m: usize,
    k: usize,
    n: usize,
    alpha: F,
    a: *const F,
    a_row_stride: usize,
    a_col_stride: usize,
    b: MatRef<'_, F>,
    beta: F,
    c: &mut [F],
    c_row_stride: usize,
) {
    debug_assert!(m == 0 || n == 0 || c.len() >= (m - 1) * c_row_stride + n);
    let (rsa, csa) = (a_row_stride as isize, a_col_stride as isize);
    let (rsb, csb) = (b.row_stride as isize, b.col_stride as isize);
    let (rsc, csc) = (c_row_stride as isize, 1);
    // Element is implemented for f32 and f64 only; each branch runs for its own
    // type, so the pointer casts change nothing.
    if TypeId::of::<F>() == TypeId::of::<f32>() {
        // SAFETY: the caller's contract; F is f32 here.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                alpha.to_f64() as f32,
                a.cast(),
                rsa,
                csa,
                b.values.as_ptr().cast(),
                rsb,
                csb,
                beta.to_f64() as f32,
                c.as_mut_ptr().cast(),
                rsc,
                csc,
            )
        }
    } else if TypeId::of::<F>() == TypeId::of::<f64>() {
        // SAFETY: the caller's contract; F is f64 here.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                alpha.to_f64(),
                a.cast(),
                rsa,
                csa,
                b.values.as_ptr().cast(),
                rsb,
                csb,
                beta.to_f64(),
                c.as_mut_ptr().cast(),
                rsc,
                csc,
            )
        }
    } else {
        unreachable!("Element is only implemented for f32 and f64");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_a_naive_loop_and_ignore_the_thread_count() {
        let (m, k, n) = (150, 70, 90);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 31 % 17) as f64 - 8.0) / 7.0).collect();
        let b: Vec<f64> = (0..n * k).map(|i| ((i * 13 % 11) as f64 - 5.0) / 3.0).collect();
        // b is stored as n x k; use its transpose.
        let bt = MatRef::row_major(&b, n, k).t();
        let mut c = vec![1.0; m * n];
        gemm(2.0, MatRef::row_major(&a, m, k), bt, 0.5, &mut c);
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|l| a[i * k + l] * b[j * k + l]).sum();
                assert!((c[i * n + j] - (0.5 + 2.0 * dot)).abs() < 1e-9);
            }
        }
        let _guard = crate::kernel_tests::GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        let big = 300;
        let x: Vec<f32> = (0..big * big).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
        let mut results = Vec::new();
        for threads in [1, 2, 3] {
            crate::pool::set_num_threads(threads).unwrap();
            let mut out = vec![0.0f32; big * big];
            let xm = MatRef::row_major(&x, big, big);
            gemm(1.0, xm, xm.t(), 0.0, &mut out);
            results.push(out);
        }
        // A symmetric product equals the general one to rounding, is exactly
        // symmetric, and does not depend on the thread count.
        let xm = MatRef::row_major(&x[..150 * 300], 150, 300);
        let mut general = vec![0.0f32; 150 * 150];
        gemm(1.0, xm, xm.t(), 0.0, &mut general);
        let mut symmetric_results = Vec::new();
        for threads in [1, 2, 3] {
            crate::pool::set_num_threads(threads).unwrap();
            let mut symmetric = vec![7.0f32; 150 * 150];
            gemm_symmetric(1.0, xm, xm.t(), 0.0, &mut symmetric);
            for i in 0..150 {
                for j in 0..150 {
                    assert_eq!(symmetric[i * 150 + j], symmetric[j * 150 + i]);
                    assert!(
                        (symmetric[i * 150 + j] - general[i * 150 + j]).abs()
                            <= 1e-3 * general[i * 150 + j].abs().max(1.0)
                    );
                }
            }
            symmetric_results.push(symmetric);
        }
        assert!(symmetric_results.windows(2).all(|w| w[0].iter().zip(&w[1]).all(|(p, q)| p.to_bits() == q.to_bits())));
        crate::pool::set_num_threads(2).unwrap();
        assert!(results.windows(2).all(|w| w[0].iter().zip(&w[1]).all(|(p, q)| p.to_bits() == q.to_bits())));
    }
}
