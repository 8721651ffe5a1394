//! rustoptim's Rust core: stateless, in-place optimizer kernels on `f32`/`f64`
//! slices. Nothing here knows about Python; the PyO3 bindings live in
//! [`python`] behind the `python` cargo feature, so `cargo test` and
//! `cargo bench` exercise the kernels directly.
//!
//! - [`elementwise`]: the multi-tensor driver of every element-wise optimizer
//!   (checks, per-tensor constants, the split across threads, SIMD dispatch);
//!   [`optimizers`]: the rules it runs, one file per optimizer.
//! - [`lbfgs`]: torch's L-BFGS step as a state machine that asks its caller
//!   for closure evaluations, with a strong-Wolfe line search.
//! - [`lbfgsb`]: L-BFGS-B (bound-constrained, scipy's `minimize` method) as a
//!   state machine that asks its caller for `f` and `∇f`.
//! - [`partition`], [`pool`]: how a step is split across threads.
//! - [`reduce`], [`clip`]: multi-tensor norms (deterministic for any thread
//!   count) and in-place gradient scaling/clamping for gradient clipping.
//! - [`average`]: EMA/SWA weight averaging, one in-place pass over all tensors.
//! - [`simd`]: run-time choice of AVX2/AVX-512 in a baseline build.
//! - [`bandwidth`]: the memory-traffic ceiling the benchmarks compare against.

pub mod average;
pub mod bandwidth;
pub mod clip;
pub mod element;
pub mod elementwise;
pub mod error;
pub mod lbfgs;
pub mod lbfgsb;
pub mod optimizers;
pub mod partition;
pub mod pool;
pub mod reduce;
pub mod simd;

#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod rule_tests;

#[cfg(feature = "python")]
mod python;

pub use element::Element;
pub use error::OptimError;
