//! The small dense linear algebra of L-BFGS-B: Cholesky factors and triangular
//! solves of matrices of order at most `m` (the pairs kept, typically 5–20).
//!
//! Matrices are row-major squares inside a buffer with a fixed row stride
//! `ld` (the capacity), of which the leading `k × k` block is used. At these
//! sizes (≤ 20 × 20 typically) plain loops are as fast as a BLAS call and keep the core
//! free of dependencies; the order of every sum is fixed, so results do not
//! depend on the machine.

// Index loops read like the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

/// A square matrix view: element `(i, j)` is `data[i * ld + j]`.
#[derive(Clone, Debug)]
pub struct Square {
    pub data: Vec<f64>,
    pub ld: usize,
}

impl Square {
    /// A zero matrix with room for `ld × ld` elements, or `None` if that
    /// many elements cannot be allocated.
    pub fn try_zeros(ld: usize) -> Option<Self> {
        Some(Square { data: try_zeroed(ld.checked_mul(ld)?)?, ld })
    }

    #[inline(always)]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.ld + j]
    }

    #[inline(always)]
    pub fn set(&mut self, i: usize, j: usize, value: f64) {
        self.data[i * self.ld + j] = value;
    }
}

/// A zeroed vector of `len` elements, allocated fallibly.
pub fn try_zeroed<T: Copy + Default>(len: usize) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, T::default());
    Some(v)
}

/// The matrix handed to [`cholesky`] is not (numerically) positive definite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPositiveDefinite;

/// Overwrites the lower triangle of the leading `k × k` block of `a` with the
/// Cholesky factor `L` (`A = L·Lᵀ`), reading only the lower triangle of `A`.
/// The strict upper triangle is left as it was.
///
/// Fails if a pivot is not positive and finite (the update that produced the
/// matrix is then discarded by the caller, as L-BFGS-B does).
pub fn cholesky(a: &mut Square, k: usize) -> Result<(), NotPositiveDefinite> {
    for j in 0..k {
        let mut pivot = a.get(j, j);
        for p in 0..j {
            let l = a.get(j, p);
            pivot -= l * l;
        }
        if !(pivot > 0.0 && pivot.is_finite()) {
            return Err(NotPositiveDefinite);
        }
        let diagonal = pivot.sqrt();
        a.set(j, j, diagonal);
        for i in j + 1..k {
            let mut sum = a.get(i, j);
            for p in 0..j {
                sum -= a.get(i, p) * a.get(j, p);
            }
            a.set(i, j, sum / diagonal);
        }
    }
    Ok(())
}

/// Solves `L·x = b` in place (`b` becomes `x`) with the lower-triangular
/// factor in the leading `k × k` block of `l`.
pub fn solve_lower(l: &Square, k: usize, b: &mut [f64]) {
    for i in 0..k {
        let mut sum = b[i];
        for p in 0..i {
            sum -= l.get(i, p) * b[p];
        }
        b[i] = sum / l.get(i, i);
    }
}

/// Solves `L·X = B` in place (`B` becomes `X`) for the leading `k × k`
/// blocks: row by row, so the updates of a row run across all columns at once
/// (independent, vectorizable) instead of one dependent chain per column.
/// Each column gets exactly the operations of [`solve_lower`].
pub fn solve_lower_rows(l: &Square, k: usize, b: &mut Square) {
    for i in 0..k {
        for p in 0..i {
            let factor = l.get(i, p);
            let (done, rest) = b.data.split_at_mut(i * b.ld);
            let (row_p, row_i) = (&done[p * b.ld..p * b.ld + k], &mut rest[..k]);
            for (x, &y) in row_i.iter_mut().zip(row_p) {
                *x -= factor * y;
            }
        }
        let diagonal = l.get(i, i);
        b.data[i * b.ld..i * b.ld + k].iter_mut().for_each(|x| *x /= diagonal);
    }
}

/// Solves `Lᵀ·x = b` in place with the lower-triangular factor `L`.
pub fn solve_lower_transposed(l: &Square, k: usize, b: &mut [f64]) {
    for i in (0..k).rev() {
        let mut sum = b[i];
        for p in i + 1..k {
            sum -= l.get(p, i) * b[p];
        }
        b[i] = sum / l.get(i, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spd(k: usize) -> Square {
        // A = Bᵀ·B + k·I for a fixed B.
        let mut a = Square::try_zeros(k + 2).unwrap();
        for i in 0..k {
            for j in 0..k {
                let mut sum = if i == j { k as f64 } else { 0.0 };
                for p in 0..k {
                    let b = |r: usize, c: usize| ((r * 7 + c * 3) % 5) as f64 - 2.0;
                    sum += b(p, i) * b(p, j);
                }
                a.set(i, j, sum);
            }
        }
        a
    }

    #[test]
    fn cholesky_reproduces_the_matrix_and_solves() {
        for k in 1..8 {
            let a = spd(k);
            let mut l = a.clone();
            cholesky(&mut l, k).unwrap();
            for i in 0..k {
                for j in 0..=i {
                    let mut sum = 0.0;
                    for p in 0..=j {
                        sum += l.get(i, p) * l.get(j, p);
                    }
                    assert!((sum - a.get(i, j)).abs() < 1e-10 * a.get(i, i).abs().max(1.0));
                }
            }
            // A·x = b through the two triangular solves.
            let x: Vec<f64> = (0..k).map(|i| i as f64 - 1.5).collect();
            let mut b: Vec<f64> = (0..k).map(|i| (0..k).map(|j| a.get(i.max(j), i.min(j)) * x[j]).sum()).collect();
            // Several right-hand sides at once, as the columns of a matrix:
            // bitwise what solving each column alone gives.
            let mut rows = Square::try_zeros(k + 2).unwrap();
            for i in 0..k {
                for j in 0..k {
                    rows.set(i, j, ((i * 5 + j * 3) % 7) as f64 - 3.0 + 0.1 * j as f64);
                }
            }
            let columns: Vec<Vec<f64>> = (0..k)
                .map(|j| {
                    let mut column: Vec<f64> = (0..k).map(|i| rows.get(i, j)).collect();
                    solve_lower(&l, k, &mut column);
                    column
                })
                .collect();
            solve_lower_rows(&l, k, &mut rows);
            for i in 0..k {
                for (j, column) in columns.iter().enumerate() {
                    assert_eq!(rows.get(i, j).to_bits(), column[i].to_bits());
                }
            }
            solve_lower(&l, k, &mut b);
            solve_lower_transposed(&l, k, &mut b);
            for i in 0..k {
                assert!((b[i] - x[i]).abs() < 1e-10, "{k} {i} {} {}", b[i], x[i]);
            }
        }
    }

    #[test]
    fn cholesky_refuses_indefinite_and_nan() {
        let mut a = Square::try_zeros(2).unwrap();
        a.set(0, 0, 1.0);
        a.set(1, 0, 2.0);
        a.set(1, 1, 1.0);
        assert_eq!(cholesky(&mut a, 2), Err(NotPositiveDefinite));
        let mut b = Square::try_zeros(1).unwrap();
        b.set(0, 0, f64::NAN);
        assert_eq!(cholesky(&mut b, 1), Err(NotPositiveDefinite));
    }
}
