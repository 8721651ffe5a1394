//! Subspace minimization (Byrd, Lu, Nocedal and Zhu 1995, section 5.1, the
//! direct primal method), with the projection of L-BFGS-B 3.0 (Morales and
//! Nocedal 2011).
//!
//! With the variables at a bound at the Cauchy point `x_cp` held there (`A`
//! selects them, `Z` the free ones), the model restricted to the free
//! variables is minimized without bounds:
//!
//! ```text
//! d̂ = −(ZᵀBZ)⁻¹·r̂,   r̂ = Zᵀ(g + B·(x_cp − x)) = Zᵀ(g + θ(x_cp − x) − W·M·c),
//! ```
//!
//! `c = Wᵀ(x_cp − x)` from the Cauchy point. By Sherman–Morrison–Woodbury,
//! with `r = −r̂`:
//!
//! ```text
//! d̂ = (1/θ)·r + (1/θ²)·ZᵀW·K⁻¹·WᵀZ·r,   K = M⁻¹ − (1/θ)·WᵀZZᵀW
//!   = [ −D − YᵀZZᵀY/θ     L_aᵀ − R_zᵀ ]
//!     [  L_a − R_z         θ·SᵀAAᵀS   ]
//! ```
//!
//! where `L_a` is the strict lower triangle of `SᵀAAᵀY` and `R_z` the upper
//! triangle (diagonal included) of `SᵀZZᵀY`. `K` is indefinite; it is
//! factored as `K = 𝓛·E·𝓛ᵀ`, `E = diag(−I, I)`,
//!
//! ```text
//! 𝓛 = [ L₁     0  ]   L₁·L₁ᵀ = D + YᵀZZᵀY/θ,   C = L₁⁻¹·K₁₂,
//!     [ −Cᵀ   L₂  ]   L₂·L₂ᵀ = θ·SᵀAAᵀS + CᵀC.
//! ```
//!
//! The Gram matrices restricted to `Z` or `A` are computed over the smaller
//! of the two sets and obtained for the other as full minus restricted.
//!
//! Projection (3.0): `x̄ = P(x_cp + d̂)` on the free variables. If that point
//! is not a descent point from `x` (`(x̄ − x)ᵀg > 0`), the step backtracks
//! instead to the longest feasible fraction of `d̂` from `x_cp`.

// Index loops read like the matrix formulas they implement.
#![allow(clippy::needless_range_loop)]

use super::bounds::Bounds;
use super::cauchy::Status;
use super::compact::{GATHER_BLOCK, LimitedMemory};
use super::dense::{NotPositiveDefinite, Square, cholesky, solve_lower, solve_lower_rows, solve_lower_transposed};
use super::error::{LbfgsbError, allocate};
use super::reduced_gradient::reduced_gradient;
use super::vectors::LANES;

/// Scratch space of the subspace minimization, allocated once per problem.
pub struct SubspaceWork {
    /// `r` on the free variables, then the Newton step `d̂` (zero elsewhere).
    step: Vec<f64>,
    /// Restricted Gram matrices (`m × m`).
    yy: Square,
    ss: Square,
    sy: Square,
    /// `L₁`, `C`, `L₂` of the factorization of `K` (`m × m` each).
    l1: Square,
    coupling: Square,
    l2: Square,
    /// Vectors of length `2m`.
    wv: Vec<f64>,
    mc: Vec<f64>,
    /// Gathered entries of the pairs for the restricted products.
    gathered: Vec<f64>,
    /// Partial sums of the products with `W` (`2m`).
    lanes: Vec<[f64; LANES]>,
}

impl SubspaceWork {
    pub fn try_new(n: usize, m: usize) -> Result<Self, LbfgsbError> {
        let square = || {
            Square::try_zeros(m).ok_or(LbfgsbError::Allocation {
                what: "the subspace matrices",
                bytes: m.saturating_mul(m).saturating_mul(8),
            })
        };
        Ok(SubspaceWork {
            step: allocate("the subspace step", n)?,
            yy: square()?,
            ss: square()?,
            sy: square()?,
            l1: square()?,
            coupling: square()?,
            l2: square()?,
            wv: allocate("the subspace work vectors", 2 * m)?,
            mc: allocate("the subspace work vectors", 2 * m)?,
            gathered: allocate("the subspace gather buffer", 2 * m * GATHER_BLOCK)?,
            lanes: allocate("the subspace work vectors", 2 * m)?,
        })
    }
}

/// How the subspace step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `x_cp + d̂` is inside the box.
    Inside,
    /// `P(x_cp + d̂)` was kept (a descent point).
    Projected,
    /// The step was cut back to the box along `d̂`.
    Backtracked,
}

/// Moves the free variables of `z` (the Cauchy point on entry) to the
/// subspace minimizer. `free` and `active` list the variables by status,
/// `c` is `Wᵀ(x_cp − x)` from the Cauchy point.
///
/// Fails if `K` cannot be factored; L-BFGS-B then drops its memory.
#[allow(clippy::too_many_arguments)]
pub fn subspace_minimize(
    x: &[f64],
    g: &[f64],
    bounds: &Bounds,
    memory: &LimitedMemory,
    status: &[Status],
    free: &[usize],
    active: &[usize],
    c: &[f64],
    z: &mut [f64],
    work: &mut SubspaceWork,
) -> Result<Projection, NotPositiveDefinite> {
    let k = memory.len();
    let theta = memory.theta();
    debug_assert!(k > 0 && !free.is_empty());

    // r = −Zᵀ(g + θ(z − x) − W·M·c), stored full length with zeros off Z,
    // and wv = WᵀZ·r = Wᵀr, in one pass over the pairs.
    let mc = &mut work.mc[..2 * k];
    memory.middle_product(&c[..2 * k], mc);
    let (a, b) = mc.split_at_mut(k);
    // W·(M·c) = Y·a + θ·S·b
    b.iter_mut().for_each(|v| *v *= theta);
    let wv = &mut work.wv[..2 * k];
    reduced_gradient(memory, [x, g, z], status, a, b, &mut work.step, wv, &mut work.lanes);

    factor_k(memory, free, active, work)?;

    // wv ← K⁻¹·wv
    let wv = &mut work.wv[..2 * k];
    {
        let (w1, w2) = wv.split_at_mut(k);
        // 𝓛·u = w:  L₁·u₁ = w₁,  L₂·u₂ = w₂ + Cᵀ·u₁.
        solve_lower(&work.l1, k, w1);
        for i in 0..k {
            let mut sum = 0.0;
            for p in 0..k {
                sum += work.coupling.get(p, i) * w1[p];
            }
            w2[i] += sum;
        }
        solve_lower(&work.l2, k, w2);
        // 𝓛ᵀ·v = E·u:  L₂ᵀ·v₂ = u₂,  L₁ᵀ·v₁ = −u₁ + C·v₂.
        solve_lower_transposed(&work.l2, k, w2);
        for i in 0..k {
            let mut sum = 0.0;
            for p in 0..k {
                sum += work.coupling.get(i, p) * w2[p];
            }
            w1[i] = -w1[i] + sum;
        }
        solve_lower_transposed(&work.l1, k, w1);
        // d̂ = (1/θ)·(r + (1/θ)·Y·v₁ + S·v₂)
        w1.iter_mut().for_each(|v| *v /= theta);
    }
    let (v1, v2) = wv.split_at(k);
    memory.add_combination(v1, v2, &mut work.step);
    let step = &mut work.step;
    let inverse_theta = 1.0 / theta;
    for &i in free {
        step[i] *= inverse_theta;
    }

    Ok(project_step(x, g, bounds, status, free, z, step))
}

/// Factors `K` for the free set (see the module documentation) into
/// `work.l1`, `work.coupling`, `work.l2`.
fn factor_k(
    memory: &LimitedMemory,
    free: &[usize],
    active: &[usize],
    work: &mut SubspaceWork,
) -> Result<(), NotPositiveDefinite> {
    let k = memory.len();
    let theta = memory.theta();
    // Restricted products over the smaller set; the other set's by difference.
    // After this block: yy = YᵀZZᵀY, ss = SᵀAAᵀS, sy = SᵀAAᵀY.
    let (yy, ss, sy) = (&mut work.yy, &mut work.ss, &mut work.sy);
    if active.len() <= free.len() {
        memory.restricted_products(active, yy, ss, sy, &mut work.gathered);
        for i in 0..k {
            for j in 0..k {
                yy.set(i, j, memory.yy(i, j) - yy.get(i, j));
            }
        }
    } else {
        memory.restricted_products(free, yy, ss, sy, &mut work.gathered);
        for i in 0..k {
            for j in 0..k {
                ss.set(i, j, memory.ss(i, j) - ss.get(i, j));
                sy.set(i, j, memory.sy(i, j) - sy.get(i, j));
            }
        }
    }
    // L₁·L₁ᵀ = D + YᵀZZᵀY/θ
    let l1 = &mut work.l1;
    for i in 0..k {
        for j in 0..=i {
            let diagonal = if i == j { memory.sy(i, i) } else { 0.0 };
            l1.set(i, j, diagonal + yy.get(i, j) / theta);
        }
    }
    cholesky(l1, k)?;
    // K₂₁ = L_a − R_z: (i, j) = (SᵀAAᵀY)_ij for i > j, −(SᵀZZᵀY)_ij for i ≤ j,
    // with SᵀZZᵀY = SᵀY − SᵀAAᵀY. C = L₁⁻¹·K₁₂ with K₁₂ = K₂₁ᵀ.
    let coupling = &mut work.coupling;
    for i in 0..k {
        for j in 0..k {
            // K₁₂[i][j] = K₂₁[j][i]
            let value = if j > i { sy.get(j, i) } else { -(memory.sy(j, i) - sy.get(j, i)) };
            coupling.set(i, j, value);
        }
    }
    solve_lower_rows(l1, k, coupling);
    // L₂·L₂ᵀ = θ·SᵀAAᵀS + CᵀC
    let l2 = &mut work.l2;
    for i in 0..k {
        for j in 0..=i {
            let mut sum = theta * ss.get(i, j);
            for p in 0..k {
                sum += coupling.get(p, i) * coupling.get(p, j);
            }
            l2.set(i, j, sum);
        }
    }
    cholesky(l2, k)
}

/// `z ← ` the subspace point from the Cauchy point `z` and the Newton step
/// on the free variables, projected or backtracked into the box (3.0).
fn project_step(
    x: &[f64],
    g: &[f64],
    bounds: &Bounds,
    status: &[Status],
    free: &[usize],
    z: &mut [f64],
    step: &[f64],
) -> Projection {
    let lower = bounds.lower();
    let upper = bounds.upper();
    // Try the projection P(x_cp + d̂); keep the Cauchy values in `step`'s
    // place is not possible (step is needed), so test first, then write.
    let mut hits_bound = false;
    for &i in free {
        if status[i] == Status::Unbounded {
            continue;
        }
        let target = z[i] + step[i];
        if target <= lower[i] || target >= upper[i] {
            hits_bound = true;
            break;
        }
    }
    if !hits_bound {
        for &i in free {
            z[i] += step[i];
        }
        return Projection::Inside;
    }
    // Directional derivative of the projected point from x.
    let mut slope = 0.0;
    for i in 0..x.len() {
        let zi = if status[i].is_free() { (z[i] + step[i]).max(lower[i]).min(upper[i]) } else { z[i] };
        slope += (zi - x[i]) * g[i];
    }
    if slope <= 0.0 {
        for &i in free {
            z[i] = (z[i] + step[i]).max(lower[i]).min(upper[i]);
        }
        return Projection::Projected;
    }
    // Backtrack: the largest α ≤ 1 with z + α·d̂ in the box; the variable that
    // blocks is put exactly on its bound.
    let mut alpha = 1.0f64;
    let mut blocking = None;
    for &i in free {
        let si = step[i];
        let limit = if si < 0.0 && lower[i] > f64::NEG_INFINITY {
            let room = lower[i] - z[i];
            if room >= 0.0 { 0.0 } else { room / si }
        } else if si > 0.0 && upper[i] < f64::INFINITY {
            let room = upper[i] - z[i];
            if room <= 0.0 { 0.0 } else { room / si }
        } else {
            continue;
        };
        if limit < alpha {
            alpha = limit;
            blocking = Some(i);
        }
    }
    for &i in free {
        z[i] += alpha * step[i];
    }
    if let Some(b) = blocking {
        z[b] = if step[b] > 0.0 { upper[b] } else { lower[b] };
    }
    bounds.project(z);
    Projection::Backtracked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbfgsb::cauchy::{CauchyWork, cauchy_point};

    const INF: f64 = f64::INFINITY;

    /// Dense B of the memory (via products with unit rows of W).
    fn dense_b(memory: &LimitedMemory, n: usize) -> Vec<Vec<f64>> {
        let k = memory.len();
        let mut b = vec![vec![0.0; n]; n];
        let (mut wi, mut wj, mut mwj) = (vec![0.0; 2 * k], vec![0.0; 2 * k], vec![0.0; 2 * k]);
        for i in 0..n {
            for j in 0..n {
                memory.w_row(i, &mut wi);
                memory.w_row(j, &mut wj);
                memory.middle_product(&wj, &mut mwj);
                let wmw: f64 = wi.iter().zip(&mwj).map(|(a, c)| a * c).sum();
                b[i][j] = if i == j { memory.theta() } else { 0.0 } - wmw;
            }
        }
        b
    }

    /// Solves the dense system `a·x = rhs` by Gaussian elimination.
    fn solve(mut a: Vec<Vec<f64>>, mut rhs: Vec<f64>) -> Vec<f64> {
        let n = rhs.len();
        for c in 0..n {
            let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap();
            a.swap(c, p);
            rhs.swap(c, p);
            for r in c + 1..n {
                let f = a[r][c] / a[c][c];
                for j in c..n {
                    a[r][j] -= f * a[c][j];
                }
                rhs[r] -= f * rhs[c];
            }
        }
        let mut x = vec![0.0; n];
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| a[i][j] * x[j]).sum();
            x[i] = (rhs[i] - s) / a[i][i];
        }
        x
    }

    fn memory_with_pairs(n: usize) -> LimitedMemory {
        let mut memory = LimitedMemory::try_new(n, 4).unwrap();
        for seed in 0..3 {
            let s: Vec<f64> = (0..n).map(|i| (((i + 5 * seed) * 29 % 13) as f64 - 6.0) / 4.0).collect();
            let y: Vec<f64> = (0..n)
                .map(|i| {
                    let left = if i > 0 { s[i - 1] } else { 0.0 };
                    (2.0 + 0.3 * i as f64) * s[i] + 0.4 * left + if i + 1 < n { 0.4 * s[i + 1] } else { 0.0 }
                })
                .collect();
            let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
            let yy: f64 = y.iter().map(|a| a * a).sum();
            memory.push(&s, &y, sy, yy).unwrap();
        }
        memory
    }

    /// The subspace Newton point equals the dense solve of the reduced model,
    /// for free sets smaller and larger than the active set.
    #[test]
    fn newton_step_solves_the_reduced_model() {
        let n = 7;
        let memory = memory_with_pairs(n);
        let b = dense_b(&memory, n);
        for (lower, upper) in [
            (vec![0.9; 7], vec![INF; 7]), // many variables hit the bound
            (vec![-INF, -INF, -INF, -INF, -INF, 0.95, 0.9], vec![INF; 7]), // few
        ] {
            let bounds = Bounds::new(lower, upper).unwrap();
            let x = vec![1.0; n];
            let g = vec![0.5, -0.3, 0.7, -0.2, 0.4, 0.6, 0.1];
            let mut status = vec![Status::Unbounded; n];
            let mut z = vec![0.0; n];
            let mut cauchy = CauchyWork::try_new(n, 4).unwrap();
            cauchy_point(&x, &g, &bounds, &memory, &mut status, &mut z, &mut cauchy);
            let free: Vec<usize> = (0..n).filter(|&i| status[i].is_free()).collect();
            let active: Vec<usize> = (0..n).filter(|&i| !status[i].is_free()).collect();
            assert!(!free.is_empty() && !active.is_empty(), "{status:?}");
            let xcp = z.clone();

            // Dense: minimize gᵀ(y − x) + ½(y − x)ᵀB(y − x) over y with y_A = xcp_A.
            let reduced_b: Vec<Vec<f64>> = free.iter().map(|&i| free.iter().map(|&j| b[i][j]).collect()).collect();
            let rhs: Vec<f64> =
                free.iter().map(|&i| -(g[i] + (0..n).map(|j| b[i][j] * (xcp[j] - x[j])).sum::<f64>())).collect();
            let newton = solve(reduced_b, rhs);

            let mut work = SubspaceWork::try_new(n, 4).unwrap();
            let c = cauchy.c.clone();
            let mut unprojected = z.clone();
            // Compute the step without projection by using a box-free copy of the bounds
            // for the projection but the real active set.
            let open = Bounds::unbounded(n).unwrap();
            let open_status: Vec<Status> =
                status.iter().map(|s| if s.is_free() { Status::Unbounded } else { *s }).collect();
            subspace_minimize(&x, &g, &open, &memory, &open_status, &free, &active, &c, &mut unprojected, &mut work)
                .unwrap();
            for (f, &i) in free.iter().enumerate() {
                let expected = xcp[i] + newton[f];
                assert!((unprojected[i] - expected).abs() < 1e-9, "{i}: {} vs {expected}", unprojected[i]);
            }
            for &i in &active {
                assert_eq!(unprojected[i], xcp[i]);
            }
            // With the real bounds the point stays in the box.
            subspace_minimize(&x, &g, &bounds, &memory, &status, &free, &active, &c, &mut z, &mut work).unwrap();
            for i in 0..n {
                assert!(z[i] >= bounds.lower()[i] && z[i] <= bounds.upper()[i]);
            }
        }
    }

    #[test]
    fn projection_backtracks_when_the_projected_point_ascends() {
        // One free variable at x = 0.5 in [0, 1], gradient pushing down (g > 0)
        // but a Newton step pushing up past the bound: the projected point
        // (1.0) ascends, so the step is cut back.
        let bounds = Bounds::new(vec![0.0, -INF], vec![1.0, INF]).unwrap();
        let x = [0.5, 0.0];
        let g = [1.0, 0.0];
        let status = [Status::Free, Status::Unbounded];
        let mut z = [0.5, 0.0];
        let step = [2.0, 1.0];
        let outcome = project_step(&x, &g, &bounds, &status, &[0, 1], &mut z, &step);
        assert_eq!(outcome, Projection::Backtracked);
        // α = 0.25 (variable 0 reaches 1.0 exactly).
        assert_eq!(z, [1.0, 0.25]);
        // The same step with a gradient that makes the projection a descent point.
        let mut z = [0.5, 0.0];
        let outcome = project_step(&x, &[-1.0, 0.0], &bounds, &status, &[0, 1], &mut z, &step);
        assert_eq!(outcome, Projection::Projected);
        assert_eq!(z, [1.0, 1.0]);
    }
}
