//! The box `l ≤ x ≤ u`, with `−∞`/`+∞` for a missing bound, and the
//! operations on it that do not involve the quasi-Newton matrix: projection,
//! the projected gradient and the longest feasible step along a direction.

use super::error::{LbfgsbError, allocate};

/// The bounds of every variable.
#[derive(Clone, Debug)]
pub struct Bounds {
    lower: Vec<f64>,
    upper: Vec<f64>,
    /// Some variable has a finite bound.
    constrained: bool,
    /// Every variable has two finite bounds.
    boxed: bool,
}

impl Bounds {
    /// Checks and keeps the bounds: no NaN, and `lower ≤ upper` with
    /// `lower < +∞` and `upper > −∞` (every variable has a feasible value).
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Result<Self, LbfgsbError> {
        if lower.len() != upper.len() {
            return Err(LbfgsbError::LengthMismatch {
                what: "the upper bounds",
                expected: lower.len(),
                got: upper.len(),
            });
        }
        for (index, (&l, &u)) in lower.iter().zip(&upper).enumerate() {
            if l.is_nan() {
                return Err(LbfgsbError::NanBound { which: "lower", index });
            }
            if u.is_nan() {
                return Err(LbfgsbError::NanBound { which: "upper", index });
            }
            if l > u || l == f64::INFINITY || u == f64::NEG_INFINITY {
                return Err(LbfgsbError::EmptyBox { index, lower: l, upper: u });
            }
        }
        let constrained = lower.iter().zip(&upper).any(|(l, u)| l.is_finite() || u.is_finite());
        let boxed = !lower.is_empty() && lower.iter().zip(&upper).all(|(l, u)| l.is_finite() && u.is_finite());
        Ok(Bounds { lower, upper, constrained, boxed })
    }

    /// No bounds on `n` variables.
    pub fn unbounded(n: usize) -> Result<Self, LbfgsbError> {
        let mut lower = allocate::<f64>("the lower bounds", n)?;
        let mut upper = allocate::<f64>("the upper bounds", n)?;
        lower.fill(f64::NEG_INFINITY);
        upper.fill(f64::INFINITY);
        Bounds::new(lower, upper)
    }

    pub fn len(&self) -> usize {
        self.lower.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lower.is_empty()
    }

    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    /// Some variable has a finite bound.
    pub fn is_constrained(&self) -> bool {
        self.constrained
    }

    /// Every variable has a finite lower and a finite upper bound.
    pub fn is_boxed(&self) -> bool {
        self.boxed
    }

    #[inline(always)]
    pub fn has_lower(&self, i: usize) -> bool {
        self.lower[i] > f64::NEG_INFINITY
    }

    #[inline(always)]
    pub fn has_upper(&self, i: usize) -> bool {
        self.upper[i] < f64::INFINITY
    }

    /// `lower == upper`: the variable never moves.
    #[inline(always)]
    pub fn is_fixed(&self, i: usize) -> bool {
        self.lower[i] == self.upper[i]
    }

    /// `x ← P(x)`, the nearest point of the box.
    pub fn project(&self, x: &mut [f64]) {
        if !self.constrained {
            return;
        }
        for ((xi, &l), &u) in x.iter_mut().zip(&self.lower).zip(&self.upper) {
            *xi = xi.max(l).min(u);
        }
    }

    /// `‖P(x − g) − x‖∞`, the first-order optimality measure: each `g_i`,
    /// except that a component pushing `x_i` out through a bound it sits on
    /// (or into one it is close to) is cut at the distance to that bound.
    /// NaN if `g` holds a NaN.
    pub fn projected_gradient_norm(&self, x: &[f64], g: &[f64]) -> f64 {
        // A step −g moves x_i by at most x_i − u_i ≤ 0 down to … up to x_i − l_i:
        // the projected component is g_i clamped to [x_i − u_i, x_i − l_i].
        // Branch-free passes (they vectorize); NaN is looked for separately
        // because max/min skip it.
        if self.constrained {
            let clamped = |gi: f64, xi: f64, l: f64, u: f64| gi.max(xi - u).min(xi - l);
            max_abs_nan(g, [x, &self.lower, &self.upper], clamped)
        } else {
            max_abs_nan(g, [g, g, g], |gi, _, _, _| gi)
        }
    }

    /// The largest `α ∈ [0, cap]` with `x + α·d` inside the box (`x` inside).
    pub fn max_step(&self, x: &[f64], d: &[f64], cap: f64) -> f64 {
        let mut alpha = cap;
        if !self.constrained {
            return alpha;
        }
        for i in 0..x.len() {
            let di = d[i];
            if di < 0.0 && self.has_lower(i) {
                let room = self.lower[i] - x[i];
                if room >= 0.0 {
                    return 0.0;
                }
                if di * alpha < room {
                    alpha = room / di;
                }
            } else if di > 0.0 && self.has_upper(i) {
                let room = self.upper[i] - x[i];
                if room <= 0.0 {
                    return 0.0;
                }
                if di * alpha > room {
                    alpha = room / di;
                }
            }
        }
        alpha
    }
}

/// `max_i |value(g_i, a_i, b_i, c_i)|` (0 for empty vectors), or NaN if some
/// `g_i` is NaN: in lanes, compiled for the SIMD level (`max` by comparison,
/// NaN looked for separately, so the pass vectorizes). A maximum does not
/// depend on the order of the comparisons.
#[inline(always)]
fn max_abs_nan(g: &[f64], [a, b, c]: [&[f64]; 3], value: impl Fn(f64, f64, f64, f64) -> f64) -> f64 {
    const LANES: usize = 8;
    let n = g.len();
    assert!(a.len() == n && b.len() == n && c.len() == n, "vectors of different lengths");
    crate::simd::dispatch(
        #[inline(always)]
        || {
            let mut largest = [0.0f64; LANES];
            let mut nan = [false; LANES];
            let mut fold = |lane: usize, gi: f64, ai: f64, bi: f64, ci: f64| {
                let v = value(gi, ai, bi, ci).abs();
                largest[lane] = if v > largest[lane] { v } else { largest[lane] };
                nan[lane] |= gi.is_nan();
            };
            // Index loops: iterator adapters are not always inlined into
            // the SIMD-compiled closure.
            let body = n / LANES * LANES;
            let mut i = 0;
            while i < body {
                let chunk = i..i + LANES;
                let (g, a, b, c) = (&g[chunk.clone()], &a[chunk.clone()], &b[chunk.clone()], &c[chunk]);
                for lane in 0..LANES {
                    fold(lane, g[lane], a[lane], b[lane], c[lane]);
                }
                i += LANES;
            }
            for (lane, i) in (body..n).enumerate() {
                fold(lane, g[i], a[i], b[i], c[i]);
            }
            if nan.iter().any(|&b| b) { f64::NAN } else { largest.iter().fold(0.0f64, |m, &v| m.max(v)) }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    #[test]
    fn rejects_empty_and_nan_bounds() {
        assert!(matches!(Bounds::new(vec![1.0], vec![0.0]), Err(LbfgsbError::EmptyBox { index: 0, .. })));
        assert!(matches!(Bounds::new(vec![0.0, INF], vec![1.0, INF]), Err(LbfgsbError::EmptyBox { index: 1, .. })));
        assert!(matches!(Bounds::new(vec![-INF], vec![-INF]), Err(LbfgsbError::EmptyBox { .. })));
        assert!(matches!(Bounds::new(vec![f64::NAN], vec![1.0]), Err(LbfgsbError::NanBound { which: "lower", .. })));
        assert!(Bounds::new(vec![1.0], vec![1.0]).unwrap().is_fixed(0));
    }

    #[test]
    fn classifies_the_problem() {
        let b = Bounds::unbounded(3).unwrap();
        assert!(!b.is_constrained() && !b.is_boxed());
        let b = Bounds::new(vec![0.0, -INF], vec![INF, INF]).unwrap();
        assert!(b.is_constrained() && !b.is_boxed());
        let b = Bounds::new(vec![0.0, -1.0], vec![1.0, 1.0]).unwrap();
        assert!(b.is_boxed());
    }

    #[test]
    fn projected_gradient_cuts_at_active_bounds() {
        let b = Bounds::new(vec![0.0, 0.0, -INF], vec![1.0, INF, INF]).unwrap();
        // x0 at its lower bound with g > 0 (pushes out): 0. x1 at 0.5 from its
        // lower bound with g = 2: cut to 0.5. x2 free: |g|.
        let norm = b.projected_gradient_norm(&[0.0, 0.5, 3.0], &[5.0, 2.0, -0.25]);
        assert_eq!(norm, 0.5);
        assert!(b.projected_gradient_norm(&[0.5, 0.5, 0.0], &[0.0, f64::NAN, 0.0]).is_nan());
    }

    #[test]
    fn max_step_stops_at_the_first_bound() {
        let b = Bounds::new(vec![0.0, -INF], vec![2.0, 1.0]).unwrap();
        assert_eq!(b.max_step(&[1.0, 0.0], &[1.0, 0.25], 1e10), 1.0);
        assert_eq!(b.max_step(&[1.0, 0.0], &[-0.5, 0.0], 1e10), 2.0);
        assert_eq!(b.max_step(&[0.0, 0.0], &[-0.5, 0.0], 1e10), 0.0);
        assert_eq!(Bounds::unbounded(2).unwrap().max_step(&[0.0, 0.0], &[1.0, 1.0], 1e10), 1e10);
    }
}
