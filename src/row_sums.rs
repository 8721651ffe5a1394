//! Deterministic sums of squares over the rows and columns of a batch of
//! matrices: what Adafactor's factored second moment and the norms of Adafactor
//! and Muon need.
//!
//! A tensor is viewed as a C-ordered batch of matrices ([`Matrices`]): a param
//! of shape `(..., R, C)` is `B = prod(...)` matrices of `R x C`; a vector of
//! `n` elements is one `1 x n` matrix, a 0-d param one `1 x 1` matrix.
//!
//! # Order of the additions (fixed, whatever the thread count or SIMD level)
//! Squares are formed and added in `f64` (a float32 square is exact there), so
//! the sums are more accurate than torch's float32 accumulations.
//! - A row's sum: [`LANES`] accumulators, lane `k` adding the squares of columns
//!   `k, k + LANES, ...` in order; the lanes are then added `0, 1, ..., LANES-1`.
//! - A column's sum: the rows are cut into blocks of [`ROW_BLOCK`] rows (blocks
//!   never span two matrices of the batch); within a block the squares are added
//!   row by row in order, then the block sums are added in block order.
//! - A whole tensor's sum: its row sums added in order (batch, then row).
//!
//! Threads only decide which blocks of rows they compute; how each sum is
//! grouped depends on the shape alone, so results are bitwise the same for any
//! thread count. The NumPy reference of the tests follows the same order.

use crate::element::Element;
use crate::partition::MIN_ELEMENTS_PER_TASK;
use crate::pool;
use crate::simd::dispatch;
use rayon::prelude::*;

/// Interleaved accumulators of a row sum: 16 so that a chunk of float32 fills
/// one AVX-512 register (measured: 2.5x faster Adafactor steps than 8).
pub const LANES: usize = 16;
/// Rows per block of a column sum (and per task of a parallel pass).
pub const ROW_BLOCK: usize = 32;

/// A tensor's elements as a C-ordered batch of `batch` matrices of `rows x cols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matrices {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Matrices {
    /// The view of a tensor of `shape`: matrices over its last two dimensions.
    pub fn of(shape: &[usize]) -> Self {
        match shape {
            [] => Matrices { batch: 1, rows: 1, cols: 1 },
            [n] => Matrices { batch: 1, rows: 1, cols: *n },
            [leading @ .., rows, cols] => Matrices { batch: leading.iter().product(), rows: *rows, cols: *cols },
        }
    }

    pub fn len(&self) -> usize {
        self.batch * self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks of at most [`ROW_BLOCK`] rows per matrix.
    pub fn blocks_per_matrix(&self) -> usize {
        self.rows.div_ceil(ROW_BLOCK)
    }

    /// Every block of rows: `(matrix, first row, row count)`, in order.
    pub fn blocks(&self) -> impl Iterator<Item = RowBlock> + '_ {
        let per_matrix = self.blocks_per_matrix();
        (0..self.batch * per_matrix).map(move |i| {
            let (matrix, block) = (i / per_matrix, i % per_matrix);
            let first = block * ROW_BLOCK;
            RowBlock { matrix, first_row: matrix * self.rows + first, rows: ROW_BLOCK.min(self.rows - first) }
        })
    }

    /// Whether a pass over the elements is worth splitting across threads.
    pub fn parallel(&self) -> bool {
        self.len() >= 2 * MIN_ELEMENTS_PER_TASK && pool::num_threads() > 1 && self.batch * self.blocks_per_matrix() > 1
    }
}

/// A block of consecutive rows of one matrix; `first_row` counts rows across the batch.
#[derive(Clone, Copy, Debug)]
pub struct RowBlock {
    pub matrix: usize,
    pub first_row: usize,
    pub rows: usize,
}

/// The square of `x`, in `f64`.
#[inline(always)]
pub fn wide_square<F: Element>(x: F) -> f64 {
    let x = x.to_f64();
    x * x
}

/// Sum over a row in the order of the module doc: `terms(chunk)` gives the
/// [`LANES`] terms of each whole chunk of the row, `tail(k)` the terms of the
/// `remainder` columns; lane `k` adds the `k`-th term of every chunk, then its
/// tail term, and the lanes are added in order. Written over fixed-size arrays
/// so that the compiler vectorizes the lanes (plain loops: `array::map` and
/// `array::from_fn` are not always inlined).
#[inline(always)]
pub fn lane_sum(
    chunks: usize,
    mut terms: impl FnMut(usize) -> [f64; LANES],
    remainder: usize,
    mut tail: impl FnMut(usize) -> f64,
) -> f64 {
    let mut lanes = [0.0f64; LANES];
    for chunk in 0..chunks {
        let values = terms(chunk);
        for k in 0..LANES {
            lanes[k] += values[k];
        }
    }
    for (k, lane) in lanes.iter_mut().enumerate().take(remainder) {
        *lane += tail(k);
    }
    lanes.iter().fold(0.0, |sum, &lane| sum + lane)
}

/// The `i`-th whole chunk of `values` as an array.
#[inline(always)]
pub fn chunk<T: Copy>(values: &[T], i: usize) -> [T; LANES] {
    let start = i * LANES;
    values[start..start + LANES].try_into().expect("a whole chunk")
}

/// A row's sum of squares, in lane order.
#[inline(always)]
pub fn row_sum_of_squares<F: Element>(row: &[F]) -> f64 {
    let whole = row.len() / LANES;
    let tail = &row[whole * LANES..];
    lane_sum(
        whole,
        #[inline(always)]
        |i| {
            let values = chunk(row, i);
            let mut squares = [0.0; LANES];
            for k in 0..LANES {
                squares[k] = wide_square(values[k]);
            }
            squares
        },
        tail.len(),
        #[inline(always)]
        |k| wide_square(tail[k]),
    )
}

/// The sum of squares of every element, in the order of the module doc.
pub fn sum_of_squares<F: Element>(x: &[F], shape: Matrices) -> f64 {
    let mut rows = vec![0.0f64; shape.batch * shape.rows];
    row_sums_of_squares(x, shape, &mut rows);
    rows.iter().fold(0.0, |sum, &row| sum + row)
}

/// Each row's sum of squares into `out` (one entry per row of the batch).
pub fn row_sums_of_squares<F: Element>(x: &[F], shape: Matrices, out: &mut [f64]) {
    assert_eq!(x.len(), shape.len());
    assert_eq!(out.len(), shape.batch * shape.rows);
    let cols = shape.cols;
    for_each_block(
        shape,
        out,
        1,
        #[inline(always)]
        |block, sums| {
            for (row, sum) in sums.iter_mut().enumerate() {
                let start = (block.first_row + row) * cols;
                *sum = row_sum_of_squares(&x[start..start + cols]);
            }
        },
    );
}

/// Each row's sum of squares into `row_out` (one per row of the batch) and
/// each column's into `col_out` (one per column of each matrix), reading `x`
/// once. `partials` holds one column vector per block of rows.
pub fn row_and_column_sums_of_squares<F: Element>(
    x: &[F],
    shape: Matrices,
    row_out: &mut [f64],
    col_out: &mut [f64],
    partials: &mut [f64],
) {
    let cols = shape.cols;
    let per_matrix = shape.blocks_per_matrix();
    assert_eq!(x.len(), shape.len());
    assert_eq!(row_out.len(), shape.batch * shape.rows);
    assert_eq!(col_out.len(), shape.batch * cols);
    assert_eq!(partials.len(), shape.batch * per_matrix * cols);
    if shape.is_empty() {
        col_out.fill(0.0);
        row_out.fill(0.0);
        return;
    }
    let task = |block: RowBlock, rows: &mut [f64], partial: &mut [f64]| {
        dispatch(
            #[inline(always)]
            || block_sums(x, cols, block, rows, partial),
        )
    };
    let blocks: Vec<RowBlock> = shape.blocks().collect();
    let mut row_slices: Vec<&mut [f64]> = Vec::with_capacity(blocks.len());
    let mut rest = &mut *row_out;
    for block in &blocks {
        let (head, tail) = rest.split_at_mut(block.rows);
        row_slices.push(head);
        rest = tail;
    }
    if shape.parallel() {
        pool::pool().install(|| {
            blocks
                .par_iter()
                .zip(row_slices.into_par_iter())
                .zip(partials.par_chunks_mut(cols))
                .for_each(|((&block, rows), partial)| task(block, rows, partial));
        });
    } else {
        for ((&block, rows), partial) in blocks.iter().zip(row_slices).zip(partials.chunks_mut(cols)) {
            task(block, rows, partial);
        }
    }
    // Block sums are added in block order, per matrix.
    for (matrix, column_sums) in col_out.chunks_mut(cols).enumerate() {
        column_sums.fill(0.0);
        for block in 0..per_matrix {
            let start = (matrix * per_matrix + block) * cols;
            for (sum, &part) in column_sums.iter_mut().zip(&partials[start..start + cols]) {
                *sum += part;
            }
        }
    }
}

/// One block of rows: each row's lane sum, and the block's column sums.
#[inline(always)]
fn block_sums<F: Element>(x: &[F], cols: usize, block: RowBlock, rows: &mut [f64], partial: &mut [f64]) {
    partial.fill(0.0);
    let whole = cols / LANES;
    for (row, sum) in rows.iter_mut().enumerate() {
        let start = (block.first_row + row) * cols;
        let values = &x[start..start + cols];
        let (head, tail) = partial.split_at_mut(whole * LANES);
        let mut lanes = [0.0f64; LANES];
        for (chunk, columns) in values.chunks_exact(LANES).zip(head.chunks_exact_mut(LANES)) {
            for k in 0..LANES {
                let square = wide_square(chunk[k]);
                lanes[k] += square;
                columns[k] += square;
            }
        }
        for (k, (&value, column)) in values[whole * LANES..].iter().zip(tail.iter_mut()).enumerate() {
            let square = wide_square(value);
            lanes[k] += square;
            *column += square;
        }
        *sum = lanes.iter().fold(0.0, |s, &lane| s + lane);
    }
}

/// Runs `work(block, the entries of its rows)` for every block of rows, on the
/// pool when the tensor is large. `out` has `per_row` entries per row of the
/// batch (1 for row sums, the column count for the param itself).
pub fn for_each_block<T: Send>(
    shape: Matrices,
    out: &mut [T],
    per_row: usize,
    work: impl Fn(RowBlock, &mut [T]) + Sync,
) {
    for_each_block_pair(
        shape,
        (out, per_row),
        (&mut [] as &mut [()], 0),
        #[inline(always)]
        |block, out, _| work(block, out),
    );
}

/// [`for_each_block`] with two outputs, each with its own entries per row.
pub fn for_each_block_pair<A: Send, B: Send>(
    shape: Matrices,
    (first, first_per_row): (&mut [A], usize),
    (second, second_per_row): (&mut [B], usize),
    work: impl Fn(RowBlock, &mut [A], &mut [B]) + Sync,
) {
    let rows = shape.batch * shape.rows;
    assert_eq!(first.len(), rows * first_per_row);
    assert_eq!(second.len(), rows * second_per_row);
    let blocks: Vec<RowBlock> = shape.blocks().collect();
    let mut slices: Vec<(&mut [A], &mut [B])> = Vec::with_capacity(blocks.len());
    let (mut rest_first, mut rest_second) = (first, second);
    for block in &blocks {
        let (head_first, tail_first) = rest_first.split_at_mut(block.rows * first_per_row);
        let (head_second, tail_second) = rest_second.split_at_mut(block.rows * second_per_row);
        slices.push((head_first, head_second));
        (rest_first, rest_second) = (tail_first, tail_second);
    }
    let run = |block: RowBlock, (a, b): (&mut [A], &mut [B])| {
        dispatch(
            #[inline(always)]
            || work(block, a, b),
        )
    };
    if shape.parallel() {
        pool::pool().install(|| blocks.par_iter().zip(slices.into_par_iter()).for_each(|(&b, s)| run(b, s)));
    } else {
        for (&block, slice) in blocks.iter().zip(slices) {
            run(block, slice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_become_batches_of_matrices() {
        assert_eq!(Matrices::of(&[]), Matrices { batch: 1, rows: 1, cols: 1 });
        assert_eq!(Matrices::of(&[7]), Matrices { batch: 1, rows: 1, cols: 7 });
        assert_eq!(Matrices::of(&[2, 3, 4, 5]), Matrices { batch: 6, rows: 4, cols: 5 });
    }

    #[test]
    fn sums_follow_the_documented_order() {
        let shape = Matrices { batch: 2, rows: 70, cols: 13 };
        let x: Vec<f64> = (0..shape.len()).map(|i| ((i * 37 % 101) as f64 - 50.0) * 1.1e-3).collect();
        let mut rows = vec![0.0; 140];
        let mut cols = vec![0.0; 26];
        let mut partials = vec![0.0; 2 * 3 * 13];
        row_and_column_sums_of_squares(&x, shape, &mut rows, &mut cols, &mut partials);
        for r in 0..140 {
            let mut lanes = [0.0; LANES];
            for c in 0..13 {
                lanes[c % LANES] += x[r * 13 + c] * x[r * 13 + c];
            }
            assert_eq!(rows[r].to_bits(), lanes.iter().fold(0.0, |s, &l| s + l).to_bits());
        }
        for b in 0..2 {
            for c in 0..13 {
                let mut total = 0.0;
                for block in 0..3 {
                    let mut part = 0.0;
                    for r in block * ROW_BLOCK..(70).min((block + 1) * ROW_BLOCK) {
                        let v = x[(b * 70 + r) * 13 + c];
                        part += v * v;
                    }
                    total += part;
                }
                assert_eq!(cols[b * 13 + c].to_bits(), total.to_bits());
            }
        }
        let total = rows.iter().fold(0.0, |s, &r| s + r);
        assert_eq!(sum_of_squares(&x, shape).to_bits(), total.to_bits());
    }
}
