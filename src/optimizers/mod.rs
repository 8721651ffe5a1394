//! The element-wise optimizers, one rule per file (see [`crate::elementwise`]).

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod adamax;
pub mod nadam;
pub mod rmsprop;
pub mod sgd;
pub mod torch_ops;

pub use adadelta::AdadeltaConfig;
pub use adagrad::AdagradConfig;
pub use adam::AdamConfig;
pub use adamax::AdamaxConfig;
pub use nadam::NadamConfig;
pub use rmsprop::RmspropConfig;
pub use sgd::SgdConfig;
