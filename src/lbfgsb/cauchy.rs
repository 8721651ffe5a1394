//! The generalized Cauchy point (Byrd, Lu, Nocedal and Zhu 1995, section 4):
//! the first local minimizer of the quadratic model
//!
//! ```text
//! m(x + z) = gᵀz + ½·zᵀ·B·z
//! ```
//!
//! along the projected steepest-descent path `x(t) = P(x − t·g)`. The path is
//! piecewise linear; it bends at the breakpoints `t_i` where variable `i`
//! reaches a bound. On a segment `[t_{j−1}, t_j]` with direction `d` (the
//! components `−g_i` of the variables not yet at a bound) and `z` the move so
//! far, the model's slope and curvature at `t_{j−1} + Δt` are
//!
//! ```text
//! f′ = f1 + Δt·f2,   f1 = gᵀd + dᵀB·z = gᵀd + θ·dᵀz − pᵀM·c,
//!                    f2 = dᵀB·d       = θ·dᵀd − pᵀM·p,
//! ```
//!
//! with `p = Wᵀd` and `c = Wᵀz`. The minimizer is in the segment when
//! `Δt* = −f1/f2 < t_j − t_{j−1}`; otherwise the variable `b` of the next
//! breakpoint is fixed at its bound (`z_b`: its move, `d_b = −g_b` before it is
//! zeroed, `w_b`: row `b` of `W`) and
//!
//! ```text
//! c  ← c + Δt·p
//! f1 ← f1 + Δt·f2 + g_b² + θ·g_b·z_b − g_b·w_bᵀM·c
//! f2 ← f2 − θ·g_b² − 2·g_b·w_bᵀM·p − g_b²·w_bᵀM·w_b
//! p  ← p + g_b·w_b
//! ```
//!
//! Breakpoints are visited in increasing order through a binary heap, so only
//! the ones passed cost more than `O(1)` each. As in L-BFGS-B 3.0 the
//! curvature is kept at least `ε·θ·dᵀd` (rounding can make it vanish).

use super::bounds::Bounds;
use super::compact::LimitedMemory;
use super::error::{LbfgsbError, allocate};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Where a variable stands after the Cauchy point has been found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Status {
    /// No finite bound: always free.
    #[default]
    Unbounded,
    /// Has a bound, not at it at the Cauchy point (moving, or `g_i = 0`).
    Free,
    /// At its lower bound (and the gradient pushes it out, or the path stopped there).
    AtLower,
    /// At its upper bound.
    AtUpper,
    /// `lower == upper`.
    Fixed,
}

impl Status {
    /// Free variables make up the subspace of the subspace minimization.
    #[inline(always)]
    pub fn is_free(self) -> bool {
        matches!(self, Status::Unbounded | Status::Free)
    }
}

/// A point where the projected path bends: variable `index` reaches its bound at `t`.
#[derive(Clone, Copy, Debug)]
struct Breakpoint {
    t: f64,
    index: usize,
}

// Ordered so that `BinaryHeap` (a max-heap) pops the smallest `t` first; ties
// by index, so the order is fully determined.
impl Ord for Breakpoint {
    fn cmp(&self, other: &Self) -> Ordering {
        other.t.total_cmp(&self.t).then_with(|| other.index.cmp(&self.index))
    }
}
impl PartialOrd for Breakpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Breakpoint {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Breakpoint {}

/// The breakpoints in increasing order, sorted lazily: the first is found
/// while they are listed; only if the path goes past it are the rest put in a
/// heap. Often the Cauchy point is before the second breakpoint, and the
/// `O(n)` heap construction is skipped.
enum Breakpoints {
    /// None taken yet; the position of the first (the smallest `t`, ties by
    /// the smallest index: the heap's order).
    Unsorted(Vec<Breakpoint>, usize),
    /// The first one taken; the rest as they were.
    FirstTaken(Vec<Breakpoint>),
    Heap(BinaryHeap<Breakpoint>),
}

impl Breakpoints {
    /// Takes the breakpoints out of `storage` (given back by
    /// [`release`](Self::release)); `first` is the position of the first one
    /// (see [`FirstBreakpoint`]).
    fn new(storage: &mut Vec<Breakpoint>, first: usize) -> Self {
        Breakpoints::Unsorted(std::mem::take(storage), first)
    }

    fn pop(&mut self) -> Option<Breakpoint> {
        match self {
            Breakpoints::Unsorted(list, first) => {
                if list.is_empty() {
                    return None;
                }
                let next = list.swap_remove(*first);
                *self = Breakpoints::FirstTaken(std::mem::take(list));
                Some(next)
            }
            Breakpoints::FirstTaken(list) => {
                let mut heap = BinaryHeap::from(std::mem::take(list));
                let next = heap.pop();
                *self = Breakpoints::Heap(heap);
                next
            }
            Breakpoints::Heap(heap) => heap.pop(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Breakpoints::Unsorted(list, _) | Breakpoints::FirstTaken(list) => list.is_empty(),
            Breakpoints::Heap(heap) => heap.is_empty(),
        }
    }

    /// Puts the (emptied) storage back for the next call.
    fn release(self, storage: &mut Vec<Breakpoint>) {
        let mut list = match self {
            Breakpoints::Unsorted(list, _) | Breakpoints::FirstTaken(list) => list,
            Breakpoints::Heap(heap) => heap.into_vec(),
        };
        list.clear();
        *storage = list;
    }
}

/// The position of the heap's first breakpoint (the smallest `t`, ties by the
/// smallest index), followed while the breakpoints are pushed in order of
/// their index (never NaN), so that no second scan is needed.
#[derive(Default)]
struct FirstBreakpoint {
    position: usize,
    t: f64,
}

impl FirstBreakpoint {
    /// Pushes `breakpoint` onto `list`, keeping track of the first.
    #[inline(always)]
    fn push(&mut self, list: &mut Vec<Breakpoint>, breakpoint: Breakpoint) {
        if list.is_empty() || breakpoint.t < self.t {
            self.position = list.len();
            self.t = breakpoint.t;
        }
        list.push(breakpoint);
    }
}

/// The Cauchy point's scratch space, allocated once per problem.
pub struct CauchyWork {
    /// The path's direction on the current segment.
    d: Vec<f64>,
    breakpoints: Vec<Breakpoint>,
    /// `p = Wᵀd`, `v = M·(…)`, row `b` of `W` (each of length `2m`).
    p: Vec<f64>,
    v: Vec<f64>,
    w_b: Vec<f64>,
    /// `c = Wᵀ(x_cp − x)`, which the subspace minimization needs.
    pub c: Vec<f64>,
    /// Segments explored in the last call (at least 1 when the path moves).
    pub segments: usize,
}

impl CauchyWork {
    pub fn try_new(n: usize, m: usize) -> Result<Self, LbfgsbError> {
        let mut breakpoints = Vec::new();
        breakpoints.try_reserve_exact(n).map_err(|_| LbfgsbError::Allocation {
            what: "the Cauchy breakpoints",
            bytes: n.saturating_mul(std::mem::size_of::<Breakpoint>()),
        })?;
        Ok(CauchyWork {
            d: allocate("the Cauchy direction", n)?,
            breakpoints,
            p: allocate("the Cauchy work vectors", 2 * m)?,
            v: allocate("the Cauchy work vectors", 2 * m)?,
            w_b: allocate("the Cauchy work vectors", 2 * m)?,
            c: allocate("the Cauchy work vectors", 2 * m)?,
            segments: 0,
        })
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Computes the generalized Cauchy point `xcp` from `x` (inside the box) with
/// gradient `g`, sets `status` of every variable at it, and leaves
/// `c = Wᵀ(xcp − x)` in `work.c`.
pub fn cauchy_point(
    x: &[f64],
    g: &[f64],
    bounds: &Bounds,
    memory: &LimitedMemory,
    status: &mut [Status],
    xcp: &mut [f64],
    work: &mut CauchyWork,
) {
    let n = x.len();
    let k = memory.len();
    let theta = memory.theta();
    let CauchyWork { d, breakpoints, p, v, w_b, c, segments } = work;
    let (p, v, w_b, c) = (&mut p[..2 * k], &mut v[..2 * k], &mut w_b[..2 * k], &mut c[..2 * k]);
    c.fill(0.0);
    xcp.copy_from_slice(x);
    *segments = 0;

    // Classify the variables, build d = −g on the moving ones and the breakpoints.
    breakpoints.clear();
    let mut first = FirstBreakpoint::default();
    let mut d_squared = 0.0;
    // Whether every moving variable stops at a bound somewhere on the path.
    let mut bounded_path = true;
    for i in 0..n {
        let gi = g[i];
        let moving = if bounds.is_fixed(i) {
            status[i] = Status::Fixed;
            false
        } else if !bounds.has_lower(i) && !bounds.has_upper(i) {
            status[i] = Status::Unbounded;
            gi != 0.0
        } else {
            let at_lower = bounds.has_lower(i) && x[i] <= bounds.lower()[i];
            let at_upper = bounds.has_upper(i) && x[i] >= bounds.upper()[i];
            status[i] = if at_lower && gi >= 0.0 {
                Status::AtLower
            } else if at_upper && gi <= 0.0 {
                Status::AtUpper
            } else {
                Status::Free
            };
            status[i] == Status::Free && gi != 0.0
        };
        if !moving {
            d[i] = 0.0;
            continue;
        }
        d[i] = -gi;
        d_squared += gi * gi;
        if gi > 0.0 && bounds.has_lower(i) {
            first.push(breakpoints, Breakpoint { t: (x[i] - bounds.lower()[i]) / gi, index: i });
        } else if gi < 0.0 && bounds.has_upper(i) {
            first.push(breakpoints, Breakpoint { t: (x[i] - bounds.upper()[i]) / gi, index: i });
        } else {
            bounded_path = false;
        }
    }
    if d_squared == 0.0 {
        // Nothing moves: x is the Cauchy point.
        return;
    }

    // Slope and curvature at t = 0: f1 = gᵀd = −dᵀd, f2 = θ·dᵀd − pᵀM·p.
    memory.w_transpose_times(d, p);
    let mut f1 = -d_squared;
    let curvature_floor = f64::EPSILON * theta * d_squared;
    let mut f2 = theta * d_squared;
    if k > 0 {
        memory.middle_product(p, v);
        f2 -= dot(v, p);
    }
    f2 = f2.max(curvature_floor);
    let mut step_in_segment = -f1 / f2;
    let mut t_start = 0.0;
    let mut t_total = 0.0;
    *segments = 1;

    let mut queue = Breakpoints::new(breakpoints, first.position);
    while let Some(Breakpoint { t: t_break, index: b }) = queue.pop() {
        let length = t_break - t_start;
        if step_in_segment < length {
            break;
        }
        // Move to the breakpoint and fix variable b at its bound.
        t_total += length;
        let d_b = d[b];
        d[b] = 0.0;
        let bound = if d_b > 0.0 {
            status[b] = Status::AtUpper;
            bounds.upper()[b]
        } else {
            status[b] = Status::AtLower;
            bounds.lower()[b]
        };
        let z_b = bound - x[b];
        xcp[b] = bound;
        *segments += 1;

        // g_b = −d_b in the update formulas of the module documentation.
        let d_b2 = d_b * d_b;
        f1 += length * f2 + d_b2 - theta * d_b * z_b;
        f2 -= theta * d_b2;
        if k > 0 {
            for (ci, &pi) in c.iter_mut().zip(p.iter()) {
                *ci += length * pi;
            }
            memory.w_row(b, w_b);
            memory.middle_product(w_b, v);
            let (wmc, wmp, wmw) = (dot(c, v), dot(p, v), dot(w_b, v));
            for (pi, &wi) in p.iter_mut().zip(w_b.iter()) {
                *pi -= d_b * wi;
            }
            f1 += d_b * wmc;
            f2 += 2.0 * d_b * wmp - d_b2 * wmw;
        }
        f2 = f2.max(curvature_floor);
        t_start = t_break;
        step_in_segment = if queue.is_empty() && bounded_path { 0.0 } else { -f1 / f2 };
    }
    queue.release(breakpoints);

    let step = step_in_segment.max(0.0);
    t_total += step;
    for i in 0..n {
        if d[i] != 0.0 {
            xcp[i] = x[i] + t_total * d[i];
        }
    }
    for (ci, &pi) in c.iter_mut().zip(p.iter()) {
        *ci += step * pi;
    }
    // Rounding must not leave the box.
    bounds.project(xcp);
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn run(x: &[f64], g: &[f64], bounds: &Bounds, memory: &LimitedMemory) -> (Vec<f64>, Vec<Status>, Vec<f64>) {
        let n = x.len();
        let mut work = CauchyWork::try_new(n, memory.capacity()).unwrap();
        let mut status = vec![Status::Unbounded; n];
        let mut xcp = vec![0.0; n];
        cauchy_point(x, g, bounds, memory, &mut status, &mut xcp, &mut work);
        let c = work.c[..2 * memory.len()].to_vec();
        (xcp, status, c)
    }

    /// The model m(t) = gᵀz + ½θ·zᵀz along the projected path, by brute force.
    fn brute_force_path_minimum(x: &[f64], g: &[f64], bounds: &Bounds, theta: f64) -> Vec<f64> {
        let point = |t: f64| -> Vec<f64> {
            (0..x.len()).map(|i| (x[i] - t * g[i]).max(bounds.lower()[i]).min(bounds.upper()[i])).collect()
        };
        let model = |z: &[f64]| -> f64 {
            (0..x.len()).map(|i| g[i] * (z[i] - x[i]) + 0.5 * theta * (z[i] - x[i]).powi(2)).sum()
        };
        // The first local minimizer: walk forward in small steps until the model rises.
        let mut t = 0.0;
        let dt = 1e-5;
        let mut best = model(&point(0.0));
        loop {
            let next = model(&point(t + dt));
            if next > best - 1e-15 || t > 100.0 {
                return point(t);
            }
            best = next;
            t += dt;
        }
    }

    #[test]
    fn unconstrained_with_identity_is_the_steepest_descent_minimizer() {
        let memory = LimitedMemory::try_new(2, 3).unwrap();
        let bounds = Bounds::unbounded(2).unwrap();
        let (xcp, status, _) = run(&[1.0, 2.0], &[0.5, -1.0], &bounds, &memory);
        // min gᵀz + ½zᵀz at z = −g.
        assert_eq!(xcp, vec![0.5, 3.0]);
        assert!(status.iter().all(|s| *s == Status::Unbounded));
    }

    #[test]
    fn matches_brute_force_on_boxes_with_theta_i() {
        let memory = LimitedMemory::try_new(4, 3).unwrap();
        type Case<'a> = (&'a [f64], &'a [f64], &'a [f64], &'a [f64]);
        let cases: &[Case] = &[
            // x, g, lower, upper
            (&[0.5, 0.5, 0.5, 0.5], &[1.0, -2.0, 0.25, 3.0], &[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0, 1.0, 1.0]),
            (&[0.0, 0.9, 0.2, 0.5], &[1.0, -0.05, 0.1, -0.3], &[0.0, -1.0, -INF, 0.0], &[1.0, 1.0, INF, INF]),
            (&[0.2, 0.3, 0.1, 0.0], &[0.1, 0.2, 0.3, 0.4], &[0.0, 0.0, 0.0, 0.0], &[INF, INF, INF, INF]),
        ];
        for (x, g, lower, upper) in cases {
            let bounds = Bounds::new(lower.to_vec(), upper.to_vec()).unwrap();
            let (xcp, status, _) = run(x, g, &bounds, &memory);
            let expected = brute_force_path_minimum(x, g, &bounds, 1.0);
            for i in 0..4 {
                assert!((xcp[i] - expected[i]).abs() < 1e-4, "{x:?} {g:?}: {xcp:?} vs {expected:?}");
                let at_bound = xcp[i] == lower[i] || xcp[i] == upper[i];
                assert_eq!(at_bound, !status[i].is_free(), "{x:?}: variable {i} {status:?}");
            }
        }
    }

    #[test]
    fn active_bound_with_outward_gradient_does_not_move() {
        let memory = LimitedMemory::try_new(2, 3).unwrap();
        let bounds = Bounds::new(vec![0.0, 0.0], vec![1.0, 1.0]).unwrap();
        let (xcp, status, _) = run(&[0.0, 1.0], &[2.0, -2.0], &bounds, &memory);
        assert_eq!(xcp, vec![0.0, 1.0]);
        assert_eq!(status, vec![Status::AtLower, Status::AtUpper]);
    }

    #[test]
    fn with_curvature_pairs_minimizes_the_model_along_the_path() {
        // B from two pairs; compare the model along the path by brute force on the dense B.
        let n = 3;
        let mut memory = LimitedMemory::try_new(n, 5).unwrap();
        let a = [[4.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 2.0]];
        for s in [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3]] {
            let y: Vec<f64> = (0..n).map(|i| (0..n).map(|j| a[i][j] * s[j]).sum()).collect();
            let sy: f64 = s.iter().zip(&y).map(|(p, q)| p * q).sum();
            let yy: f64 = y.iter().map(|q| q * q).sum();
            memory.push(&s, &y, sy, yy).unwrap();
        }
        let bounds = Bounds::new(vec![-1.0, 0.0, -INF], vec![1.0, 0.6, INF]).unwrap();
        let x = [0.5, 0.2, 0.0];
        let g = [3.0, -2.0, 1.0];
        let (xcp, _, c) = run(&x, &g, &bounds, &memory);

        // Dense B = θI − W M Wᵀ via products with unit vectors.
        let k = memory.len();
        let mut b = [[0.0; 3]; 3];
        let mut wi = vec![0.0; 2 * k];
        let mut mwj = vec![0.0; 2 * k];
        let mut wj = vec![0.0; 2 * k];
        for (i, row) in b.iter_mut().enumerate() {
            for (j, entry) in row.iter_mut().enumerate() {
                memory.w_row(i, &mut wi);
                memory.w_row(j, &mut wj);
                memory.middle_product(&wj, &mut mwj);
                *entry = if i == j { memory.theta() } else { 0.0 } - dot(&wi, &mwj);
            }
        }
        let path = |t: f64| -> Vec<f64> {
            (0..n).map(|i| (x[i] - t * g[i]).max(bounds.lower()[i]).min(bounds.upper()[i])).collect()
        };
        let model = |p: &[f64]| -> f64 {
            let z: Vec<f64> = (0..n).map(|i| p[i] - x[i]).collect();
            let bz: Vec<f64> = (0..n).map(|i| dot(&b[i], &z)).collect();
            dot(&g, &z) + 0.5 * dot(&z, &bz)
        };
        let mut t = 0.0;
        let mut best = model(&path(0.0));
        while model(&path(t + 1e-6)) < best {
            best = model(&path(t + 1e-6));
            t += 1e-6;
        }
        let expected = path(t);
        for i in 0..n {
            assert!((xcp[i] - expected[i]).abs() < 1e-4, "{xcp:?} vs {expected:?}");
        }
        // c = Wᵀ(xcp − x).
        let z: Vec<f64> = (0..n).map(|i| xcp[i] - x[i]).collect();
        let mut wz = vec![0.0; 2 * k];
        memory.w_transpose_times(&z, &mut wz);
        for (a, b) in c.iter().zip(&wz) {
            assert!((a - b).abs() < 1e-12, "{c:?} vs {wz:?}");
        }
    }
}
