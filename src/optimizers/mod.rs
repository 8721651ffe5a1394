//! The element-wise optimizers, one rule per file (see [`crate::elementwise`]).

pub mod adam;
pub mod sgd;

pub use adam::AdamConfig;
pub use sgd::SgdConfig;

// Adagrad, RMSprop, Adadelta, Adamax, NAdam, and torch's lerp rounding that three of them share.
pub mod adadelta;
pub mod adagrad;
pub mod adamax;
pub mod lerp;
pub mod nadam;
pub mod rmsprop;

pub use adadelta::AdadeltaConfig;
pub use adagrad::AdagradConfig;
pub use adamax::AdamaxConfig;
pub use nadam::NadamConfig;
pub use rmsprop::RmspropConfig;

// RAdam, ASGD, Rprop, and the torch scalar arithmetic they share.
pub mod asgd;
pub mod radam;
pub mod rprop;
pub mod scalars;

pub use asgd::AsgdConfig;
pub use radam::RadamConfig;
pub use rprop::RpropConfig;
