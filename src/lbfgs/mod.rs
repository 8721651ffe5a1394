//! L-BFGS, as torch.optim.LBFGS computes it, on flat `f32`/`f64` vectors.
//!
//! - [`driver`]: one `step(closure)` as a state machine that asks its caller to
//!   evaluate the objective and resumes with the loss and gradient.
//! - [`line_search`]: the strong-Wolfe search with cubic interpolation, also a
//!   state machine, with the Wolfe conditions kept apart from the search.
//! - [`nonfinite`]: what a line search does with a NaN or infinite loss or
//!   slope (a policy any line search can apply to its bracket).
//! - [`two_loop`]: the two-loop recursion `d = −H·g`.
//! - [`history`]: the curvature pairs, in ring storage that grows as pairs
//!   arrive; [`memory`]: fallible allocation and the largest `history_size`.
//! - [`vector_ops`]: the SIMD kernels, with reductions whose result does not
//!   depend on the thread count; [`team`]: threads in lockstep for the
//!   two-loop recursion on long vectors.

pub mod driver;
pub mod history;
pub mod line_search;
pub mod memory;
pub mod nonfinite;
pub mod team;
pub mod two_loop;
pub mod vector_ops;

pub use driver::{Lbfgs, LbfgsConfig, LineSearch, Request, SavedIteration, SavedState};
pub use history::History;
pub use line_search::{StrongWolfe, WolfeConditions};
