//! The limited-memory BFGS matrix in compact form (Byrd, Nocedal and
//! Schnabel 1994):
//!
//! ```text
//! B = θ·I − W·M·Wᵀ,   W = [Y  θ·S]   (n × 2k),
//! M = [ −D   Lᵀ  ]⁻¹
//!     [  L  θ·SᵀS ]
//! ```
//!
//! where `S = [s_0 … s_{k−1}]`, `Y = [y_0 … y_{k−1}]` are the last `k ≤ m`
//! steps and gradient changes (oldest first), `D = diag(s_iᵀy_i)`, `L` is the
//! strictly lower triangle of `SᵀY` (`L_ij = s_iᵀy_j` for `i > j`) and
//! `θ = yᵀy / sᵀy` of the newest pair.
//!
//! `M` is applied through the factorization
//!
//! ```text
//! M⁻¹ = [  D^½        0 ] [ −D^½   D^−½·Lᵀ ]
//!       [ −L·D^−½     J ] [  0       Jᵀ    ],   J·Jᵀ = T = θ·SᵀS + L·D⁻¹·Lᵀ,
//! ```
//!
//! so `p = M·v` is `p₂ = J⁻ᵀ·J⁻¹·(v₂ + L·D⁻¹·v₁)`, `p₁ = D⁻¹·(Lᵀ·p₂ − v₁)`.
//! Vectors of length `2k` are laid out as `[Y part (k), S part (k)]`.
//!
//! The pairs are stored in ring buffers of `m + 1` slots of `n` values: the
//! slot after the newest pair is where the next pair is computed
//! ([`staging_mut`](LimitedMemory::staging_mut)), so that a pair whose
//! curvature turns out too small has not overwritten the oldest one, and an
//! accepted pair is not copied. The small Gram matrices `SᵀY`, `SᵀS`, `YᵀY`
//! (by position, oldest first) are kept up to date with `O(k·n)` work per new
//! pair, and `J` is refactored (`O(k³)`).

// Index loops read like the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

use super::dense::{NotPositiveDefinite, Square, cholesky, solve_lower, solve_lower_transposed};
use super::error::{LbfgsbError, allocate};
use super::vectors::{axpy, axpy_dot, combine, dot, dots, neg_dot, neg_into, scale_dot};

/// Indices gathered at a time by [`LimitedMemory::restricted_products`].
pub const GATHER_BLOCK: usize = 256;

pub struct LimitedMemory {
    n: usize,
    capacity: usize,
    /// `s` vectors, slot after slot (`(capacity + 1) × n`).
    s: Vec<f64>,
    /// `y` vectors, same slots.
    y: Vec<f64>,
    /// Slot of the oldest pair.
    head: usize,
    len: usize,
    theta: f64,
    /// `(i, j) = s_iᵀ·y_j` by position (0 = oldest).
    sy: Square,
    /// `(i, j) = s_iᵀ·s_j`.
    ss: Square,
    /// `(i, j) = y_iᵀ·y_j`.
    yy: Square,
    /// `J`, the lower Cholesky factor of `T = θ·SᵀS + L·D⁻¹·Lᵀ`.
    j_factor: Square,
    /// `(head, len, θ)` before the last [`reset`](Self::reset), while no pair
    /// was added since: the pairs are still in the buffers.
    before_reset: Option<(usize, usize, f64)>,
    /// Whether the Gram matrices and the factor `J` of the middle matrix are
    /// kept. Without bounds L-BFGS-B needs neither (no Cauchy point once
    /// there are pairs, and its step `−B⁻¹g` is [`two_loop`](Self::two_loop)'s):
    /// only `sᵢᵀyᵢ` (the diagonal of `SᵀY`) and `yᵢᵀyᵢ` are kept then.
    compact: bool,
}

impl LimitedMemory {
    /// An empty memory for pairs of `n`-vectors, with room for `capacity` pairs,
    /// that keeps the compact form (`SᵀY`, `SᵀS`, `YᵀY` and `M`) up to date.
    pub fn try_new(n: usize, capacity: usize) -> Result<Self, LbfgsbError> {
        Self::try_new_with(n, capacity, true)
    }

    /// As [`try_new`](Self::try_new); `compact = false` keeps only the pairs
    /// and their `sᵀy`, `yᵀy`: for problems without bounds, whose step is
    /// [`two_loop`](Self::two_loop)'s. The Gram matrices other than those
    /// diagonals, [`middle_product`](Self::middle_product) and
    /// [`restricted_products`](Self::restricted_products) are then unavailable.
    pub fn try_new_with(n: usize, capacity: usize, compact: bool) -> Result<Self, LbfgsbError> {
        if capacity < 1 {
            return Err(LbfgsbError::InvalidSetting(format!("maxcor must be at least 1, got {capacity}")));
        }
        let pairs = (capacity + 1)
            .checked_mul(n)
            .ok_or(LbfgsbError::Allocation { what: "the correction pairs", bytes: usize::MAX })?;
        let square = || {
            Square::try_zeros(capacity).ok_or(LbfgsbError::Allocation {
                what: "the limited-memory matrices",
                bytes: capacity.saturating_mul(capacity).saturating_mul(8),
            })
        };
        Ok(LimitedMemory {
            n,
            capacity,
            s: allocate("the correction pairs (s)", pairs)?,
            y: allocate("the correction pairs (y)", pairs)?,
            head: 0,
            len: 0,
            theta: 1.0,
            sy: square()?,
            ss: square()?,
            yy: square()?,
            j_factor: square()?,
            before_reset: None,
            compact,
        })
    }

    /// Pairs held (`k`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// `θ`, the scaling of `B₀ = θ·I` (1 while the memory is empty).
    pub fn theta(&self) -> f64 {
        self.theta
    }

    fn slot(&self, position: usize) -> usize {
        (self.head + position) % (self.capacity + 1)
    }

    /// The `s` and `y` of the next pair, to be written by the caller and then
    /// added by [`commit`](Self::commit) (or left, if it is not to be kept).
    /// Writing here ends the possibility to [`undo_reset`](Self::undo_reset).
    pub fn staging_mut(&mut self) -> (&mut [f64], &mut [f64]) {
        self.before_reset = None;
        let range = self.slot(self.len) * self.n..(self.slot(self.len) + 1) * self.n;
        (&mut self.s[range.clone()], &mut self.y[range])
    }

    /// `s` of the pair at `position` (0 = oldest).
    pub fn s(&self, position: usize) -> &[f64] {
        let start = self.slot(position) * self.n;
        &self.s[start..start + self.n]
    }

    /// `y` of the pair at `position` (0 = oldest).
    pub fn y(&self, position: usize) -> &[f64] {
        let start = self.slot(position) * self.n;
        &self.y[start..start + self.n]
    }

    /// The pairs `(s, y)`, oldest first (slot after slot, without a division
    /// per pair as [`s`](Self::s) and [`y`](Self::y) need).
    pub fn pairs(&self) -> impl Iterator<Item = (&[f64], &[f64])> + '_ {
        let (n, slots) = (self.n, self.capacity + 1);
        let mut slot = self.head;
        (0..self.len).map(move |_| {
            let range = slot * n..(slot + 1) * n;
            slot = if slot + 1 == slots { 0 } else { slot + 1 };
            (&self.s[range.clone()], &self.y[range])
        })
    }

    /// `s_iᵀ·y_j` by position.
    pub fn sy(&self, i: usize, j: usize) -> f64 {
        self.sy.get(i, j)
    }

    pub fn ss(&self, i: usize, j: usize) -> f64 {
        self.ss.get(i, j)
    }

    pub fn yy(&self, i: usize, j: usize) -> f64 {
        self.yy.get(i, j)
    }

    /// Forgets every pair: `B = I`.
    pub fn reset(&mut self) {
        if self.len > 0 {
            self.before_reset = Some((self.head, self.len, self.theta));
        }
        self.head = 0;
        self.len = 0;
        self.theta = 1.0;
    }

    /// Takes back the last [`reset`](Self::reset) if no pair was added since
    /// (the stored pairs and matrices are untouched until then). Returns
    /// whether there was a reset to undo.
    pub fn undo_reset(&mut self) -> bool {
        match self.before_reset.take() {
            Some((head, len, theta)) if self.len == 0 => {
                self.head = head;
                self.len = len;
                self.theta = theta;
                true
            }
            _ => false,
        }
    }

    /// Adds the pair `(s, y)` with `sᵀy = sy > 0` and `yᵀy = yy`, evicting the
    /// oldest pair when full, and refactors the middle matrix.
    ///
    /// Fails if `T` is not numerically positive definite; the memory must then
    /// be [`reset`](Self::reset) (L-BFGS-B restarts from `B = I`).
    pub fn push(&mut self, s: &[f64], y: &[f64], sy: f64, yy: f64) -> Result<(), NotPositiveDefinite> {
        let (staged_s, staged_y) = self.staging_mut();
        staged_s.copy_from_slice(s);
        staged_y.copy_from_slice(y);
        self.commit(sy, yy)
    }

    /// Adds the pair written into [`staging_mut`](Self::staging_mut), with
    /// `sᵀy = sy > 0` and `yᵀy = yy`, as [`push`](Self::push) does.
    pub fn commit(&mut self, sy: f64, yy: f64) -> Result<(), NotPositiveDefinite> {
        self.before_reset = None;
        if self.len == self.capacity {
            self.head = (self.head + 1) % (self.capacity + 1);
            self.len -= 1;
            for matrix in [&mut self.sy, &mut self.ss, &mut self.yy] {
                for i in 0..self.len {
                    for j in 0..self.len {
                        let moved = matrix.get(i + 1, j + 1);
                        matrix.set(i, j, moved);
                    }
                }
            }
        }
        let newest = self.len;
        self.len += 1;
        self.sy.set(newest, newest, sy);
        self.yy.set(newest, newest, yy);
        self.theta = yy / sy;
        if !self.compact {
            return Ok(());
        }
        // Field borrows (not `self.s(…)`), so the Gram matrices can be written meanwhile.
        let (n, slots, head) = (self.n, self.capacity + 1, self.head);
        let (s_all, y_all) = (self.s.as_slice(), self.y.as_slice());
        let range = |position: usize| {
            let start = (head + position) % slots * n;
            start..start + n
        };
        let (s, y) = (&s_all[range(newest)], &y_all[range(newest)]);
        for j in 0..newest {
            let (sj, yj) = (&s_all[range(j)], &y_all[range(j)]);
            // One pass over the stored pair for all its products with the new one.
            let [s_yj, sj_y, y_yj, s_sj] = dots([(s, yj), (sj, y), (y, yj), (s, sj)]);
            self.sy.set(newest, j, s_yj);
            self.sy.set(j, newest, sj_y);
            self.ss.set(newest, j, s_sj);
            self.ss.set(j, newest, s_sj);
            self.yy.set(newest, j, y_yj);
            self.yy.set(j, newest, y_yj);
        }
        self.ss.set(newest, newest, dot(s, s));
        self.factor_middle()
    }

    /// `d ← −H·g`, `H = B⁻¹` by the two-loop recursion (Nocedal 1980) from
    /// `H₀ = I/θ`:
    ///
    /// ```text
    /// q = −g;  for i = k−1 … 0:  αᵢ = ρᵢ·sᵢᵀq,  q ← q − αᵢ·yᵢ
    /// r = q/θ; for i = 0 … k−1:  βᵢ = ρᵢ·yᵢᵀr,  r ← r + (αᵢ − βᵢ)·sᵢ
    /// ```
    ///
    /// with `ρᵢ = 1/sᵢᵀyᵢ`; `d = r`. `alpha` is scratch of length `k`. Each
    /// update is fused with the next product, so the recursion reads each
    /// pair once per loop.
    pub fn two_loop(&self, g: &[f64], d: &mut [f64], alpha: &mut [f64]) {
        let k = self.len;
        if k == 0 {
            neg_into(d, g);
            return;
        }
        let rho = |i: usize| 1.0 / self.sy.get(i, i);
        let mut product = neg_dot(d, g, self.s(k - 1));
        for i in (0..k).rev() {
            alpha[i] = rho(i) * product;
            if i > 0 {
                product = axpy_dot(-alpha[i], self.y(i), d, self.s(i - 1));
            } else {
                axpy(-alpha[i], self.y(i), d);
            }
        }
        let mut product = scale_dot(d, 1.0 / self.theta, self.y(0));
        for i in 0..k {
            let beta = rho(i) * product;
            if i + 1 < k {
                product = axpy_dot(alpha[i] - beta, self.s(i), d, self.y(i + 1));
            } else {
                axpy(alpha[i] - beta, self.s(i), d);
            }
        }
    }

    /// `T = θ·SᵀS + L·D⁻¹·Lᵀ` into `j_factor`, then its Cholesky factor `J`.
    fn factor_middle(&mut self) -> Result<(), NotPositiveDefinite> {
        let k = self.len;
        for i in 0..k {
            for j in 0..=i {
                // (L·D⁻¹·Lᵀ)_ij = Σ_{p < j} L_ip·L_jp / D_p  (j ≤ i).
                let mut sum = 0.0;
                for p in 0..j {
                    sum += self.sy.get(i, p) * self.sy.get(j, p) / self.sy.get(p, p);
                }
                self.j_factor.set(i, j, self.theta * self.ss.get(i, j) + sum);
            }
        }
        cholesky(&mut self.j_factor, k)
    }

    /// `out ← M·v` for `v`, `out` of length `2k`.
    pub fn middle_product(&self, v: &[f64], out: &mut [f64]) {
        debug_assert!(self.compact || self.len == 0, "the middle matrix is not kept");
        let k = self.len;
        let (v1, v2) = (&v[..k], &v[k..2 * k]);
        let (p1, p2) = out[..2 * k].split_at_mut(k);
        // p₂ = J⁻ᵀ·J⁻¹·(v₂ + L·D⁻¹·v₁)
        for i in 0..k {
            let mut sum = v2[i];
            for p in 0..i {
                sum += self.sy.get(i, p) * v1[p] / self.sy.get(p, p);
            }
            p2[i] = sum;
        }
        solve_lower(&self.j_factor, k, p2);
        solve_lower_transposed(&self.j_factor, k, p2);
        // p₁ = D⁻¹·(Lᵀ·p₂ − v₁)
        for i in 0..k {
            let mut sum = -v1[i];
            for p in i + 1..k {
                sum += self.sy.get(p, i) * p2[p];
            }
            p1[i] = sum / self.sy.get(i, i);
        }
    }

    /// `out ← Wᵀ·v = [Yᵀ·v, θ·Sᵀ·v]` for an `n`-vector `v`.
    pub fn w_transpose_times(&self, v: &[f64], out: &mut [f64]) {
        let k = self.len;
        for j in 0..k {
            let [yv, sv] = dots([(self.y(j), v), (self.s(j), v)]);
            out[j] = yv;
            out[k + j] = self.theta * sv;
        }
    }

    /// `out ← ` row `i` of `W`: `[y_0[i] … y_{k−1}[i], θ·s_0[i] … θ·s_{k−1}[i]]`.
    pub fn w_row(&self, i: usize, out: &mut [f64]) {
        let (k, slots) = (self.len, self.capacity + 1);
        let mut slot = self.head;
        for j in 0..k {
            let at = slot * self.n + i;
            out[j] = self.y[at];
            out[k + j] = self.theta * self.s[at];
            slot = if slot + 1 == slots { 0 } else { slot + 1 };
        }
    }

    /// `out ← out + Y·a + S·b` for `a`, `b` of length `k`.
    pub fn add_combination(&self, a: &[f64], b: &[f64], out: &mut [f64]) {
        let k = self.len;
        combine(
            out,
            2 * k,
            |j| if j % 2 == 0 { a[j / 2] } else { b[j / 2] },
            |j| if j % 2 == 0 { self.y(j / 2) } else { self.s(j / 2) },
        );
    }

    /// The Gram matrices of the pairs restricted to the variables in `indices`:
    /// `yy ← YᵀEEᵀY`, `ss ← SᵀEEᵀS`, `sy ← SᵀEEᵀY` where `E` selects `indices`.
    ///
    /// The selected entries are gathered, [`GATHER_BLOCK`] indices at a time,
    /// into `scratch` (at least `2·m·GATHER_BLOCK` long), whose contiguous rows
    /// then give all the products of a pair of pairs in one fused pass.
    pub fn restricted_products(
        &self,
        indices: &[usize],
        yy: &mut Square,
        ss: &mut Square,
        sy: &mut Square,
        scratch: &mut [f64],
    ) {
        debug_assert!(self.compact || self.len == 0, "the Gram matrices are not kept");
        let k = self.len;
        for matrix in [&mut *yy, &mut *ss, &mut *sy] {
            for i in 0..k {
                matrix.data[i * matrix.ld..i * matrix.ld + k].fill(0.0);
            }
        }
        for block in indices.chunks(GATHER_BLOCK) {
            let b = block.len();
            // Rows 2j and 2j + 1 of the scratch: s_j and y_j at the block's indices.
            for j in 0..k {
                let (sj, yj) = (self.s(j), self.y(j));
                let (s_row, y_row) = scratch[2 * j * b..(2 * j + 2) * b].split_at_mut(b);
                for ((s_out, y_out), &e) in s_row.iter_mut().zip(y_row.iter_mut()).zip(block) {
                    *s_out = sj[e];
                    *y_out = yj[e];
                }
            }
            let row = |r: usize| &scratch[r * b..(r + 1) * b];
            for i in 0..k {
                let (si, yi) = (row(2 * i), row(2 * i + 1));
                for j in 0..=i {
                    let (sj, yj) = (row(2 * j), row(2 * j + 1));
                    let [s_y, y_s, y_y, s_s] = dots([(si, yj), (sj, yi), (yi, yj), (si, sj)]);
                    sy.set(i, j, sy.get(i, j) + s_y);
                    yy.set(i, j, yy.get(i, j) + y_y);
                    ss.set(i, j, ss.get(i, j) + s_s);
                    if j < i {
                        sy.set(j, i, sy.get(j, i) + y_s);
                        yy.set(j, i, yy.get(i, j));
                        ss.set(j, i, ss.get(i, j));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense `B = θI − W·M·Wᵀ` built from the definitions, with `M` inverted
    /// by Gaussian elimination: the reference for the compact products.
    fn dense_b(memory: &LimitedMemory, n: usize) -> Vec<f64> {
        let k = memory.len();
        let theta = memory.theta();
        // M⁻¹ as a dense 2k × 2k matrix.
        let mut minv = vec![0.0; 4 * k * k];
        let at = |i: usize, j: usize| i * 2 * k + j;
        for i in 0..k {
            minv[at(i, i)] = -memory.sy(i, i);
            for j in 0..k {
                if i > j {
                    minv[at(k + i, j)] = memory.sy(i, j);
                    minv[at(j, k + i)] = memory.sy(i, j);
                }
                minv[at(k + i, k + j)] = theta * memory.ss(i, j);
            }
        }
        // Invert by Gauss-Jordan with partial pivoting.
        let size = 2 * k;
        let mut inv = vec![0.0; size * size];
        for i in 0..size {
            inv[i * size + i] = 1.0;
        }
        for c in 0..size {
            let pivot_row = (c..size).max_by(|&a, &b| minv[at(a, c)].abs().total_cmp(&minv[at(b, c)].abs())).unwrap();
            for j in 0..size {
                minv.swap(at(c, j), at(pivot_row, j));
                inv.swap(c * size + j, pivot_row * size + j);
            }
            let p = minv[at(c, c)];
            for j in 0..size {
                minv[at(c, j)] /= p;
                inv[c * size + j] /= p;
            }
            for r in 0..size {
                if r != c {
                    let factor = minv[at(r, c)];
                    for j in 0..size {
                        minv[at(r, j)] -= factor * minv[at(c, j)];
                        inv[r * size + j] -= factor * inv[c * size + j];
                    }
                }
            }
        }
        let mut b = vec![0.0; n * n];
        let mut wi = vec![0.0; size];
        let mut wj = vec![0.0; size];
        for i in 0..n {
            memory.w_row(i, &mut wi);
            for j in 0..n {
                memory.w_row(j, &mut wj);
                let mut sum = 0.0;
                for p in 0..size {
                    for q in 0..size {
                        sum += wi[p] * inv[p * size + q] * wj[q];
                    }
                }
                b[i * n + j] = if i == j { theta } else { 0.0 } - sum;
            }
        }
        b
    }

    /// Dense BFGS matrix by the recursive update from `B₀ = θI`.
    fn bfgs_reference(pairs: &[(Vec<f64>, Vec<f64>)], theta: f64, n: usize) -> Vec<f64> {
        let mut b = vec![0.0; n * n];
        for i in 0..n {
            b[i * n + i] = theta;
        }
        for (s, y) in pairs {
            let bs: Vec<f64> = (0..n).map(|i| (0..n).map(|j| b[i * n + j] * s[j]).sum()).collect();
            let sbs: f64 = s.iter().zip(&bs).map(|(a, c)| a * c).sum();
            let sy: f64 = s.iter().zip(y).map(|(a, c)| a * c).sum();
            for i in 0..n {
                for j in 0..n {
                    b[i * n + j] += -bs[i] * bs[j] / sbs + y[i] * y[j] / sy;
                }
            }
        }
        b
    }

    fn pair(n: usize, seed: usize) -> (Vec<f64>, Vec<f64>) {
        // y = A·s for a fixed positive definite A, so sᵀy > 0.
        let s: Vec<f64> = (0..n).map(|i| (((i + 3 * seed) * 37 % 11) as f64 - 5.0) / 3.0).collect();
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let left = if i > 0 { s[i - 1] } else { 0.0 };
                let right = if i + 1 < n { s[i + 1] } else { 0.0 };
                (3.0 + i as f64 * 0.1) * s[i] - 0.5 * (left + right)
            })
            .collect();
        (s, y)
    }

    #[test]
    fn compact_form_is_the_bfgs_matrix() {
        let n = 6;
        for capacity in [1, 3, 5] {
            let mut memory = LimitedMemory::try_new(n, capacity).unwrap();
            let mut kept: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
            for seed in 0..7 {
                let (s, y) = pair(n, seed);
                let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
                let yy: f64 = y.iter().map(|a| a * a).sum();
                memory.push(&s, &y, sy, yy).unwrap();
                kept.push((s, y));
                if kept.len() > capacity {
                    kept.remove(0);
                }
                let reference = bfgs_reference(&kept, memory.theta(), n);
                let compact = dense_b(&memory, n);
                for (a, b) in compact.iter().zip(&reference) {
                    assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "capacity {capacity} seed {seed}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn two_loop_applies_the_inverse_of_the_compact_matrix() {
        let n = 6;
        for compact in [true, false] {
            let mut memory = LimitedMemory::try_new_with(n, 3, compact).unwrap();
            let mut reference = LimitedMemory::try_new(n, 3).unwrap();
            for seed in 0..5 {
                let (s, y) = pair(n, seed);
                let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
                let yy: f64 = y.iter().map(|a| a * a).sum();
                memory.push(&s, &y, sy, yy).unwrap();
                reference.push(&s, &y, sy, yy).unwrap();
                let b = dense_b(&reference, n);
                let g: Vec<f64> = (0..n).map(|i| i as f64 - 2.5).collect();
                let mut d = vec![0.0; n];
                let mut alpha = vec![0.0; 3];
                memory.two_loop(&g, &mut d, &mut alpha);
                // B·d = −g
                for i in 0..n {
                    let bd: f64 = (0..n).map(|j| b[i * n + j] * d[j]).sum();
                    assert!((bd + g[i]).abs() < 1e-9, "{compact} {seed}: {bd} vs {}", -g[i]);
                }
            }
        }
    }

    #[test]
    fn restricted_products_sum_over_the_indices() {
        let n = 700;
        let mut memory = LimitedMemory::try_new(n, 4).unwrap();
        for seed in 0..3 {
            let (s, y) = pair(n, seed);
            let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
            let yy: f64 = y.iter().map(|a| a * a).sum();
            memory.push(&s, &y, sy, yy).unwrap();
        }
        let k = memory.len();
        // More indices than one gather block, and none.
        for indices in [(0..n).step_by(2).collect::<Vec<_>>(), vec![]] {
            let (mut yy, mut ss, mut sy) =
                (Square::try_zeros(4).unwrap(), Square::try_zeros(4).unwrap(), Square::try_zeros(4).unwrap());
            let mut scratch = vec![0.0; 2 * 4 * GATHER_BLOCK];
            memory.restricted_products(&indices, &mut yy, &mut ss, &mut sy, &mut scratch);
            for i in 0..k {
                for j in 0..k {
                    let sum = |a: &[f64], b: &[f64]| indices.iter().map(|&e| a[e] * b[e]).sum::<f64>();
                    let close = |got: f64, want: f64| (got - want).abs() <= 1e-12 * (1.0 + want.abs());
                    assert!(close(sy.get(i, j), sum(memory.s(i), memory.y(j))));
                    assert!(close(yy.get(i, j), sum(memory.y(i), memory.y(j))));
                    assert!(close(ss.get(i, j), sum(memory.s(i), memory.s(j))));
                }
            }
        }
    }

    #[test]
    fn a_reset_can_be_undone_until_a_pair_is_added() {
        let mut memory = LimitedMemory::try_new(3, 2).unwrap();
        let (s, y) = pair(3, 1);
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|a| a * a).sum();
        memory.push(&s, &y, sy, yy).unwrap();
        let theta = memory.theta();
        memory.reset();
        assert!(memory.is_empty() && memory.theta() == 1.0);
        assert!(memory.undo_reset());
        assert_eq!((memory.len(), memory.theta(), memory.s(0)), (1, theta, &s[..]));
        memory.reset();
        memory.push(&s, &y, sy, yy).unwrap();
        assert!(!memory.undo_reset());
        assert_eq!(memory.len(), 1);
    }

    #[test]
    fn middle_product_inverts_the_middle_matrix() {
        let n = 5;
        let mut memory = LimitedMemory::try_new(n, 4).unwrap();
        for seed in 0..3 {
            let (s, y) = pair(n, seed);
            let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
            let yy: f64 = y.iter().map(|a| a * a).sum();
            memory.push(&s, &y, sy, yy).unwrap();
        }
        let k = memory.len();
        let v: Vec<f64> = (0..2 * k).map(|i| i as f64 - 2.0).collect();
        let mut p = vec![0.0; 2 * k];
        memory.middle_product(&v, &mut p);
        // M⁻¹·p must give v back.
        let theta = memory.theta();
        for i in 0..k {
            let mut top = -memory.sy(i, i) * p[i];
            let mut bottom = 0.0;
            for j in 0..k {
                if j > i {
                    top += memory.sy(j, i) * p[k + j];
                }
                if i > j {
                    bottom += memory.sy(i, j) * p[j];
                }
                bottom += theta * memory.ss(i, j) * p[k + j];
            }
            assert!((top - v[i]).abs() < 1e-10, "{top} {}", v[i]);
            assert!((bottom - v[k + i]).abs() < 1e-10, "{bottom} {}", v[k + i]);
        }
    }
}
