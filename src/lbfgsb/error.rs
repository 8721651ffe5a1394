//! What can go wrong when an L-BFGS-B problem is set up. Once a problem is set
//! up, nothing fails: numerical trouble (a non-finite objective, a matrix that
//! lost positive definiteness) is handled by the algorithm and reported in the
//! result's [`Termination`](super::Termination).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum LbfgsbError {
    /// A vector does not have one entry per variable.
    #[error("{what} has {got} entries, expected one per variable ({expected})")]
    LengthMismatch { what: &'static str, expected: usize, got: usize },

    /// A bound is NaN.
    #[error("the {which} bound of variable {index} is NaN")]
    NanBound { which: &'static str, index: usize },

    /// No value satisfies the bounds of a variable (`lower > upper`, a lower
    /// bound of `+inf` or an upper bound of `-inf`).
    #[error("variable {index} has no feasible value: lower bound {lower} > upper bound {upper}")]
    EmptyBox { index: usize, lower: f64, upper: f64 },

    /// The start point holds NaN or an infinity.
    #[error("x0[{index}] is {value}; the start point must be finite")]
    NonFiniteStart { index: usize, value: f64 },

    /// A setting out of its range (`maxcor < 1`, a negative `ftol`, ...).
    #[error("{0}")]
    InvalidSetting(String),

    /// Storage for the problem could not be allocated.
    #[error("cannot allocate {bytes} bytes for {what}")]
    Allocation { what: &'static str, bytes: usize },
}

/// A zeroed `Vec` of `len` elements, or an [`LbfgsbError::Allocation`] naming `what`.
pub(crate) fn allocate<T: Copy + Default>(what: &'static str, len: usize) -> Result<Vec<T>, LbfgsbError> {
    let bytes = len.saturating_mul(std::mem::size_of::<T>());
    super::dense::try_zeroed(len).ok_or(LbfgsbError::Allocation { what, bytes })
}
