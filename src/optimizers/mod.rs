//! The element-wise optimizers, one rule per file (see [`crate::elementwise`]).

pub mod adam;
pub mod sgd;

pub use adam::AdamConfig;
pub use sgd::SgdConfig;

pub mod adafactor;
pub mod muon;

pub use adafactor::AdafactorConfig;
pub use muon::{LrAdjustment, MuonConfig};
