//! How the step binding reads each element-wise optimizer: its name, its
//! hyperparameters from the param group, and the keys of its state. This is the
//! binding half of an optimizer's declaration; the math is its rule in
//! `src/optimizers/`.

use super::errors::InputError;
use super::group::GroupReader;
use crate::elementwise::ElementwiseRule;
use crate::optimizers::{
    AdadeltaConfig, AdagradConfig, AdamConfig, AdamaxConfig, AsgdConfig, NadamConfig, RadamConfig, RmspropConfig,
    RpropConfig, SgdConfig,
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

/// Reads a config from a param group: `field: kind "key"` for each
/// hyperparameter, `kind` a [`GroupReader`] method (`real`, `flag`,
/// `constructor_real`), or `first, second: pair "key"` for a pair. Keys are
/// read in the order listed, which is the order their errors are found in.
macro_rules! read_config {
    ($group:expr, $config:ident { $($($field:ident),+ : $kind:ident $key:literal),+ $(,)? }) => {{
        let group = $group;
        let py = group.dict.py();
        $(read_config!(@read group, py, $kind $key => $($field),+);)+
        Ok($config { $($($field),+),+ })
    }};
    (@read $group:ident, $py:ident, pair $key:literal => $first:ident, $second:ident) => {
        let ($first, $second) = $group.pair(intern!($py, $key))?;
    };
    (@read $group:ident, $py:ident, $kind:ident $key:literal => $field:ident) => {
        let $field = $group.$kind(intern!($py, $key))?;
    };
}

/// An element-wise optimizer's binding as a declaration: its scalar state
/// keys with their initial values, its hyperparameters (as [`read_config!`]
/// reads them), its slot keys, and optionally the value a slot starts at.
macro_rules! rule_binding {
    ($config:ident {
        scalars: [$($scalar:expr),* $(,)?],
        hyperparameters: { $($hyperparameters:tt)* },
        slot_keys($this:ident) => $slot_keys:expr,
        $(slot_initial_value($this_again:ident, $slot:ident) => $initial:expr,)?
    }) => {
        impl RuleBinding for $config {
            const SCALARS: &'static [(&'static str, f64)] = &[$($scalar),*];

            fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
                read_config!(group, $config { $($hyperparameters)* })
            }

            fn slot_keys(&self) -> &'static [&'static str] {
                let $this = self;
                $slot_keys
            }

            $(fn slot_initial_value(&self, $slot: usize) -> f64 {
                let $this_again = self;
                $initial
            })?
        }
    };
}

rule_binding!(AdamConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        beta1, beta2: pair "betas",
        lr: real "lr",
        eps: real "eps",
        weight_decay: real "weight_decay",
        amsgrad: flag "amsgrad",
        maximize: flag "maximize",
        decoupled_weight_decay: flag "decoupled_weight_decay",
    },
    slot_keys(config) => {
        if config.amsgrad { &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] } else { &["exp_avg", "exp_avg_sq"] }
    },
});

rule_binding!(SgdConfig {
    scalars: [],
    hyperparameters: {
        lr: real "lr",
        momentum: real "momentum",
        dampening: real "dampening",
        weight_decay: real "weight_decay",
        nesterov: flag "nesterov",
        maximize: flag "maximize",
    },
    slot_keys(config) => if config.momentum != 0.0 { &["momentum_buffer"] } else { &[] },
});

rule_binding!(AdagradConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        lr: real "lr",
        lr_decay: real "lr_decay",
        weight_decay: real "weight_decay",
        eps: real "eps",
        // torch fills a lazily created `sum` with the constructor's value,
        // whatever the group says.
        initial_accumulator_value: constructor_real "initial_accumulator_value",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["sum"],
    slot_initial_value(config, _slot) => config.initial_accumulator_value,
});

rule_binding!(RmspropConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        lr: real "lr",
        alpha: real "alpha",
        eps: real "eps",
        weight_decay: real "weight_decay",
        momentum: real "momentum",
        centered: flag "centered",
        maximize: flag "maximize",
    },
    slot_keys(config) => match (config.momentum > 0.0, config.centered) {
        (false, false) => &["square_avg"],
        (true, false) => &["square_avg", "momentum_buffer"],
        (false, true) => &["square_avg", "grad_avg"],
        (true, true) => &["square_avg", "momentum_buffer", "grad_avg"],
    },
});

rule_binding!(AdadeltaConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        lr: real "lr",
        rho: real "rho",
        eps: real "eps",
        weight_decay: real "weight_decay",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["square_avg", "acc_delta"],
});

rule_binding!(AdamaxConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        beta1, beta2: pair "betas",
        lr: real "lr",
        eps: real "eps",
        weight_decay: real "weight_decay",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["exp_avg", "exp_inf"],
});

rule_binding!(NadamConfig {
    scalars: [("step", 0.0), ("mu_product", 1.0)],
    hyperparameters: {
        beta1, beta2: pair "betas",
        lr: real "lr",
        eps: real "eps",
        weight_decay: real "weight_decay",
        momentum_decay: real "momentum_decay",
        decoupled_weight_decay: flag "decoupled_weight_decay",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["exp_avg", "exp_avg_sq"],
});

rule_binding!(RadamConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        beta1, beta2: pair "betas",
        lr: real "lr",
        eps: real "eps",
        weight_decay: real "weight_decay",
        maximize: flag "maximize",
        decoupled_weight_decay: flag "decoupled_weight_decay",
    },
    slot_keys(_config) => &["exp_avg", "exp_avg_sq"],
});

rule_binding!(AsgdConfig {
    // A new state's `eta` is the group's lr: the rule sets it when it sees a
    // fresh `ax`, so the 0 here is never used.
    scalars: [("step", 0.0), ("eta", 0.0), ("mu", 1.0)],
    hyperparameters: {
        lr: real "lr",
        lambd: real "lambd",
        alpha: real "alpha",
        t0: real "t0",
        weight_decay: real "weight_decay",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["ax"],
});

rule_binding!(RpropConfig {
    scalars: [("step", 0.0)],
    hyperparameters: {
        eta_minus, eta_plus: pair "etas",
        step_size_min, step_size_max: pair "step_sizes",
        lr: real "lr",
        maximize: flag "maximize",
    },
    slot_keys(_config) => &["prev", "step_size"],
    // `step_size` starts at the group's lr (torch's `full_like(grad, lr)`).
    slot_initial_value(config, slot) => if slot == 1 { config.lr } else { 0.0 },
});

/// Runs `$body` with `$rule` bound to the rule type named `$name`.
macro_rules! with_rule {
    ($name:expr, $rule:ident => $body:expr, $unknown:expr) => {
        with_rule!(@table $name, $rule => $body, $unknown;
            "adam" => AdamConfig,
            "sgd" => SgdConfig,
            "adagrad" => AdagradConfig,
            "rmsprop" => RmspropConfig,
            "adadelta" => AdadeltaConfig,
            "adamax" => AdamaxConfig,
            "nadam" => NadamConfig,
            "radam" => RadamConfig,
            "asgd" => AsgdConfig,
            "rprop" => RpropConfig,
        )
    };
    (@table $name:expr, $rule:ident => $body:expr, $unknown:expr; $($key:literal => $config:ident,)+) => {
        match $name {
            $($key => {
                type $rule = $crate::optimizers::$config;
                $body
            })+
            other => $unknown(other),
        }
    };
}
pub(crate) use with_rule;

// ---------------------------------------------------------------------------
// Whole-tensor optimizers (`_core.tensor_step`): Adafactor and Muon.

use super::arrays::DType;
use crate::optimizers::{AdafactorConfig, LrAdjustment, MuonConfig};
use crate::tensorwise::TensorRule;

/// A whole-tensor rule as the `tensor_step` binding sees it.
pub trait TensorRuleBinding: TensorRule + Sized {
    /// Scalar state keys, in the rule's scalar order, and each one's value
    /// before a tensor's first step.
    const SCALARS: &'static [(&'static str, f64)];

    /// Reads and checks the group's hyperparameters.
    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError>;

    /// State-array keys of a tensor of `shape`, in slot order.
    fn slot_keys(&self, shape: &[usize]) -> &'static [&'static str];

    /// Called with the dtype of the group's first param of the step, before
    /// any tensor is updated.
    fn first_param_dtype(&mut self, _dtype: DType) {}
}

impl TensorRuleBinding for AdafactorConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[("step", 0.0)];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let [eps1, eps2] = group.reals(intern!(py, "eps"), [true, false])?;
        Ok(AdafactorConfig {
            lr: group.real(intern!(py, "lr"))?,
            beta2_decay: group.real(intern!(py, "beta2_decay"))?,
            eps1,
            eps2: eps2.expect("eps[1] is not nullable"),
            d: group.real(intern!(py, "d"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            maximize: group.flag(intern!(py, "maximize"))?,
        })
    }

    fn slot_keys(&self, shape: &[usize]) -> &'static [&'static str] {
        if crate::optimizers::adafactor::is_factored(shape) { &["row_var", "col_var"] } else { &["variance"] }
    }

    /// torch resolves `eps[0] = None` once per group, to the machine epsilon of
    /// the first param's dtype, and uses it for every param of the group.
    fn first_param_dtype(&mut self, dtype: DType) {
        if self.eps1.is_none() {
            self.eps1 = Some(match dtype {
                DType::Float32 => f32::EPSILON as f64,
                DType::Float64 => f64::EPSILON,
            });
        }
    }
}

impl TensorRuleBinding for MuonConfig {
    const SCALARS: &'static [(&'static str, f64)] = &[];

    fn from_group(group: &GroupReader<'_, '_>) -> Result<Self, InputError> {
        let py = group.dict.py();
        let [a, b, c] = group.reals(intern!(py, "ns_coefficients"), [false; 3])?.map(|x| x.expect("not nullable"));
        let adjust_lr =
            match group.choice(intern!(py, "adjust_lr_fn"), &["original", "match_rms_adamw", "spectral_unclamped"])? {
                None | Some(0) => LrAdjustment::Original,
                Some(1) => LrAdjustment::MatchRmsAdamw,
                _ => LrAdjustment::SpectralUnclamped,
            };
        Ok(MuonConfig {
            lr: group.real(intern!(py, "lr"))?,
            weight_decay: group.real(intern!(py, "weight_decay"))?,
            momentum: group.real(intern!(py, "momentum"))?,
            nesterov: group.flag(intern!(py, "nesterov"))?,
            ns_coefficients: [a, b, c],
            eps: group.real(intern!(py, "eps"))?,
            // torch: "Number of steps must be less than 100 for computational efficiency".
            ns_steps: group.integer(intern!(py, "ns_steps"), 0..100)? as usize,
            adjust_lr,
        })
    }

    fn slot_keys(&self, _shape: &[usize]) -> &'static [&'static str] {
        &["momentum_buffer"]
    }
}

/// Runs `$body` with `$rule` bound to the whole-tensor rule type named `$name`.
macro_rules! with_tensor_rule {
    ($name:expr, $rule:ident => $body:expr, $unknown:expr) => {
        match $name {
            "adafactor" => {
                type $rule = $crate::optimizers::AdafactorConfig;
                $body
            }
            "muon" => {
                type $rule = $crate::optimizers::MuonConfig;
                $body
            }
            other => $unknown(other),
        }
    };
}
pub(crate) use with_tensor_rule;
