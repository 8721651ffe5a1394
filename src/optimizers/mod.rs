//! The element-wise optimizers, one rule per file (see [`crate::elementwise`]).

pub mod adam;
pub mod sgd;

pub use adam::AdamConfig;
pub use sgd::SgdConfig;
