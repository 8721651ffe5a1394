//! How the step binding reads each element-wise optimizer: its name, its
//! hyperparameters from the param group, and the keys of its state. This is the
//! binding half of an optimizer's declaration; the math is its rule in
//! `src/optimizers/`.

use super::errors::InputError;
use super::group::GroupReader;
use crate::elementwise::ElementwiseRule;
use crate::optimizers::{
    AdadeltaConfig, AdagradConfig, AdamConfig, AdamaxConfig, NadamConfig, RmspropConfig, SgdConfig,
};
use pyo3::intern;

/// An element-wise rule as the binding sees it.
pub trait RuleBinding: ElementwiseRule + Sized {
    /// Scalar state keys, in the rule's scalar order, and each one's value
    /// before a tensor's first step.
    const SCALARS: &'static [(&'static str, f64)];

    /// Reads and checks the group's hyperparameters.
    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError>;

    /// State-array keys, in slot order, under this configuration.
    fn slot_keys(&self) -> &'static [&'static str];

    /// The value a slot starts at when a step creates it.
    fn slot_initial_value(&self, _slot: usize) -> f64 {
        0.0
    }
}

impl RuleBinding for AdamConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let (beta1, beta2) = group.pair(intern!(py, "betas"))?;
        Ok(AdamConfig {
            lr: group.real(intern!(py, "lr"))?,
            beta1,
            beta2,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            amsgrad: group.flag(intern!(py, "amsgrad"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
            decoupled_weight_decay: group.flag(intern!(py, "decoupled_weight_decay"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        if self.amsgrad { &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] } else { &["exp_avg", "exp_avg_sq"] }
    }
}

impl RuleBinding for SgdConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        Ok(SgdConfig {
            lr: group.real(intern!(py, "lr"))?,
            momentum: group.real(intern!(py, "momentum"))?,
            dampening: group.real(intern!(py, "dampening"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            nesterov: group.flag(intern!(py, "nesterov"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        if self.momentum != 0.0 { &["momentum_buffer"] } else { &[] }
    }
}

impl RuleBinding for AdagradConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        Ok(AdagradConfig {
            lr: group.real(intern!(py, "lr"))?,
            lr_decay: group.real(intern!(py, "lr_decay"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            eps: group.real(intern!(py, "eps"))?,
            // torch fills a lazily created `sum` with the constructor's value,
            // whatever the group says.
            initial_accumulator_value: group.constructor_real(intern!(py, "initial_accumulator_value"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["sum"]
    }

    fn slot_initial_value(&self, _slot: usize) -> f64 {
        self.initial_accumulator_value
    }
}

impl RuleBinding for RmspropConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        Ok(RmspropConfig {
            lr: group.real(intern!(py, "lr"))?,
            alpha: group.real(intern!(py, "alpha"))?,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            momentum: group.real(intern!(py, "momentum"))?,
            centered: group.flag(intern!(py, "centered"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        match (self.momentum > 0.0, self.centered) {
            (false, false) => &["square_avg"],
            (true, false) => &["square_avg", "momentum_buffer"],
            (false, true) => &["square_avg", "grad_avg"],
            (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
        }
    }
}

impl RuleBinding for AdadeltaConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        Ok(AdadeltaConfig {
            lr: group.real(intern!(py, "lr"))?,
            rho: group.real(intern!(py, "rho"))?,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["square_avg", "acc_delta"]
    }
}

impl RuleBinding for AdamaxConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let (beta1, beta2) = group.pair(intern!(py, "betas"))?;
        Ok(AdamaxConfig {
            lr: group.real(intern!(py, "lr"))?,
            beta1,
            beta2,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_inf"]
    }
}

impl RuleBinding for NadamConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0), ("mu_product", 1.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let (beta1, beta2) = group.pair(intern!(py, "betas"))?;
        Ok(NadamConfig {
            lr: group.real(intern!(py, "lr"))?,
            beta1,
            beta2,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            momentum_decay: group.real(intern!(py, "momentum_decay"))?,
            decoupled_weight_decay: group.flag(intern!(py, "decoupled_weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }
}

/// Runs `$body` with `$rule` bound to the rule type named `$name`.
macro_rules! with_rule {
    ($name:expr, $rule:ident => $body:expr, $unknown:expr) => {
        match $name {
            "adam" => {
                type $rule = $crate::optimizers::AdamConfig;
                $body
            }
            "sgd" => {
                type $rule = $crate::optimizers::SgdConfig;
                $body
            }
            "adagrad" => {
                type $rule = $crate::optimizers::AdagradConfig;
                $body
            }
            "rmsprop" => {
                type $rule = $crate::optimizers::RmspropConfig;
                $body
            }
            "adadelta" => {
                type $rule = $crate::optimizers::AdadeltaConfig;
                $body
            }
            "adamax" => {
                type $rule = $crate::optimizers::AdamaxConfig;
                $body
            }
            "nadam" => {
                type $rule = $crate::optimizers::NadamConfig;
                $body
            }
            // RAdam, ASGD, Rprop.
            "radam" => {
                type $rule = $crate::optimizers::RadamConfig;
                $body
            }
            "asgd" => {
                type $rule = $crate::optimizers::AsgdConfig;
                $body
            }
            "rprop" => {
                type $rule = $crate::optimizers::RpropConfig;
                $body
            }
            other => $unknown(other),
        }
    };
}
pub(crate) use with_rule;

// ------------------------------------------------------------- RAdam, ASGD, Rprop

impl RuleBinding for crate::optimizers::RadamConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let (beta1, beta2) = group.pair(intern!(py, "betas"))?;
        Ok(crate::optimizers::RadamConfig {
            lr: group.real(intern!(py, "lr"))?,
            beta1,
            beta2,
            eps: group.real(intern!(py, "eps"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
            decoupled_weight_decay: group.flag(intern!(py, "decoupled_weight_decay"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["exp_avg", "exp_avg_sq"]
    }
}

impl RuleBinding for crate::optimizers::AsgdConfig {
    // A new state's `eta` is the group's lr: the rule sets it when it sees a
    // fresh `ax`, so the 0 here is never used.
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0), ("eta", 0.0), ("mu", 1.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        Ok(crate::optimizers::AsgdConfig {
            lr: group.real(intern!(py, "lr"))?,
            lambd: group.real(intern!(py, "lambd"))?,
            alpha: group.real(intern!(py, "alpha"))?,
            t0: group.real(intern!(py, "t0"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["ax"]
    }
}

impl RuleBinding for crate::optimizers::RpropConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let (eta_minus, eta_plus) = group.pair(intern!(py, "etas"))?;
        let (step_size_min, step_size_max) = group.pair(intern!(py, "step_sizes"))?;
        Ok(crate::optimizers::RpropConfig {
            lr: group.real(intern!(py, "lr"))?,
            eta_minus,
            eta_plus,
            step_size_min,
            step_size_max,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self) -> &'static [&'static str] {
        &["prev", "step_size"]
    }

    /// `step_size` starts at the group's lr (torch's `full_like(grad, lr)`).
    fn slot_initial_value(&self, slot: usize) -> f64 {
        if slot == 1 { self.lr } else { 0.0 }
    }
}
