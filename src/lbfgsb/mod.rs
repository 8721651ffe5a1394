//! L-BFGS-B 3.0 (Byrd, Lu, Nocedal and Zhu 1995; Morales and Nocedal 2011):
//! limited-memory quasi-Newton minimization of a smooth function subject to
//! bounds `l ≤ x ≤ u`, on `f64`. The algorithm of `scipy.optimize.minimize(
//! method="L-BFGS-B")`, written from the papers, made robust to objectives
//! that are NaN or infinite away from the solution.
//!
//! - [`driver`]: the iteration as a state machine that asks its caller for
//!   `f` and `∇f`, and [`run`], the loop with scipy's limits;
//! - [`compact`]: the BFGS matrix in compact form `B = θI − W·M·Wᵀ`, and
//!   the two-loop recursion for `−B⁻¹g` (problems without bounds);
//! - [`cauchy`]: the generalized Cauchy point along the projected gradient path;
//! - [`subspace`]: minimization over the free variables, with the 3.0 projection;
//!   [`reduced_gradient`]: its first pass over the pairs;
//! - [`line_search`]: Moré–Thuente (MINPACK-2 `dcsrch`/`dcstep`);
//! - [`bounds`]: the box; [`finite_diff`]: scipy's forward-difference steps;
//! - [`dense`]: Cholesky and triangular solves of order ≤ m; [`vectors`]:
//!   the length-`n` kernels (SIMD, sums in a fixed order).

pub mod bounds;
pub mod cauchy;
pub mod compact;
pub mod dense;
pub mod driver;
pub mod error;
pub mod finite_diff;
pub mod line_search;
pub mod reduced_gradient;
pub mod subspace;
pub mod vectors;

pub use bounds::Bounds;
pub use driver::{Config, Lbfgsb, Limits, LineSearchFailure, Request, StopReason, Termination, run};
pub use error::LbfgsbError;

#[cfg(test)]
mod tests;
