//! rustoptim's Rust core: stateless, in-place optimizer kernels on `f32`/`f64`
//! slices. Nothing here knows about Python; the PyO3 bindings live in
//! [`python`] behind the `python` cargo feature, so `cargo test` and
//! `cargo bench` exercise the kernels directly.
//!
//! - [`adam`], [`sgd`]: one fused pass per tensor for Adam/AdamW and SGD,
//!   run over all tensors of a param group at once.
//! - [`lbfgs`]: torch's L-BFGS step as a state machine that asks its caller
//!   for closure evaluations, with a strong-Wolfe line search.
//! - [`lbfgsb`]: L-BFGS-B (bound-constrained, scipy's `minimize` method) as a
//!   state machine that asks its caller for `f` and `∇f`.
//! - [`partition`], [`pool`]: how a step is split across threads.
//! - [`simd`]: run-time choice of AVX2/AVX-512 in a baseline build.
//! - [`bandwidth`]: the memory-traffic ceiling the benchmarks compare against.

pub mod adam;
pub mod bandwidth;
pub mod element;
pub mod error;
pub mod lbfgs;
pub mod lbfgsb;
pub mod partition;
pub mod pool;
pub mod sgd;
pub mod simd;

#[cfg(test)]
mod kernel_tests;

#[cfg(feature = "python")]
mod python;

pub use element::Element;
pub use error::OptimError;
