//! The element-wise optimizers, one rule per file (see [`crate::elementwise`]).

pub mod adam;
pub mod sgd;

pub use adam::AdamConfig;
pub use sgd::SgdConfig;

// RAdam, ASGD, Rprop, and the torch scalar arithmetic they share.
pub mod asgd;
pub mod radam;
pub mod rprop;
pub mod scalars;

pub use asgd::AsgdConfig;
pub use radam::RadamConfig;
pub use rprop::RpropConfig;
