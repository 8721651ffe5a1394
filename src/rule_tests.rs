//! Tests of the Adagrad, RMSprop, Adadelta, Adamax and NAdam rules against
//! textbook scalar references in f64, and of their invariance to the SIMD
//! level and the thread count.

use crate::element::Element;
use crate::elementwise::{self, ElementwiseRule, MAX_SCALARS, Scalars, Tensor};
use crate::optimizers::{AdadeltaConfig, AdagradConfig, AdamaxConfig, NadamConfig, RmspropConfig};
use crate::pool;
use crate::simd;

const LENGTHS: [usize; 5] = [0, 1, 7, 33, 70_001];
const STEPS: usize = 5;

/// A deterministic pseudo-random sequence with magnitudes from 1e-6 to 1e2 and exact zeros.
fn values<F: Element>(n: usize, seed: u64) -> Vec<F> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            if i % 17 == 0 {
                return F::ZERO;
            }
            let sign = if (state >> 7) & 1 == 0 { 1.0 } else { -1.0 };
            F::from_f64(sign * 10f64.powf(-6.0 + 8.0 * unit))
        })
        .collect()
}

/// The params, slots and scalar state after `STEPS` steps of `rule` over tensors of `LENGTHS`.
struct Run<F> {
    params: Vec<Vec<F>>,
    slots: Vec<Vec<Vec<F>>>,
    scalars: Vec<Scalars>,
}

fn run<F: Element, R: ElementwiseRule>(rule: &R, initial: &[f64], slot_value: f64) -> Run<F> {
    run_with_grad_scale(rule, initial, slot_value, GradScale::None)
}

/// How [`run_with_grad_scale`] scales the gradients.
#[derive(Clone, Copy)]
enum GradScale {
    None,
    /// Passed to the step, which scales as it reads.
    Fused(f64),
    /// Multiplied into the gradients before the step.
    First(f64),
}

fn run_with_grad_scale<F: Element, R: ElementwiseRule>(
    rule: &R,
    initial: &[f64],
    slot_value: f64,
    grad_scale: GradScale,
) -> Run<F> {
    let slot_count = rule.slot_count();
    let mut out = Run {
        params: LENGTHS.iter().enumerate().map(|(i, &n)| values(n, i as u64)).collect(),
        slots: LENGTHS.iter().map(|&n| vec![vec![F::from_f64(slot_value); n]; slot_count]).collect(),
        scalars: vec![[0.0; MAX_SCALARS]; LENGTHS.len()],
    };
    for s in &mut out.scalars {
        s[..initial.len()].copy_from_slice(initial);
    }
    for step in 1..=STEPS {
        let mut grads: Vec<Vec<F>> =
            LENGTHS.iter().enumerate().map(|(i, &n)| values(n, (100 * step + i) as u64)).collect();
        if let GradScale::First(scale) = grad_scale {
            grads.iter_mut().flatten().for_each(|g| *g = *g * F::from_f64(scale));
        }
        let mut tensors: Vec<Tensor<'_, F>> = out
            .params
            .iter_mut()
            .zip(&grads)
            .zip(out.slots.iter_mut())
            .zip(&out.scalars)
            .map(|(((param, grad), slots), scalars)| {
                let mut tensor = Tensor::new(param, grad).with_slots(slots.iter_mut().map(|s| s.as_mut_slice()));
                tensor.scalars = *scalars;
                tensor
            })
            .collect();
        let fused = if let GradScale::Fused(scale) = grad_scale { Some(scale) } else { None };
        elementwise::step_with_grad_scale(rule, &mut tensors, fused).unwrap();
        let advanced: Vec<Scalars> = tensors.iter().map(|t| t.scalars).collect();
        drop(tensors);
        out.scalars = advanced;
    }
    out
}

/// A textbook update of one element: `(θ, g, slots, step count t)`.
type Textbook<'a> = &'a dyn Fn(&mut f64, f64, &mut [f64], f64);

/// Checks the f64 rule against `textbook`, element by element, after `STEPS` steps.
fn check_against_textbook<R: ElementwiseRule>(rule: &R, initial: &[f64], slot_value: f64, textbook: Textbook<'_>) {
    let got = run::<f64, R>(rule, initial, slot_value);
    for (t, &n) in LENGTHS.iter().enumerate() {
        let mut theta: Vec<f64> = values(n, t as u64);
        let mut slots = vec![vec![slot_value; rule.slot_count()]; n];
        for step in 1..=STEPS {
            let grad: Vec<f64> = values(n, (100 * step + t) as u64);
            for i in 0..n {
                textbook(&mut theta[i], grad[i], &mut slots[i], step as f64);
            }
        }
        assert_eq!(got.scalars[t][0], STEPS as f64, "the step count advances");
        let scale = theta.iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        for (i, (&got, &expected)) in got.params[t].iter().zip(&theta).enumerate() {
            let err = (got - expected).abs() / expected.abs().max(1e-3 * scale).max(f64::MIN_POSITIVE);
            assert!(err < 1e-11, "tensor {t}[{i}]: {got} vs {expected} (relative error {err:e})");
        }
    }
}

/// NAdam's `μ` at step `t`, and the momentum product after step `t` as torch
/// keeps it (a float32 product of float32-rounded `μ`s).
fn nadam_mu(c: &NadamConfig, t: f64) -> f64 {
    c.beta1 * (1.0 - 0.5 * 0.96f64.powf(t * c.momentum_decay))
}

fn nadam_mu_product(c: &NadamConfig, t: f64) -> f64 {
    let mut product = 1.0f32;
    for k in 1..=(t as usize) {
        product *= nadam_mu(c, k as f64) as f32;
    }
    f64::from(product)
}

#[test]
fn adagrad_matches_textbook() {
    let configs = [
        AdagradConfig { lr: 0.1, ..AdagradConfig::default() },
        AdagradConfig { lr: 0.1, lr_decay: 0.05, weight_decay: 0.1, maximize: true, ..AdagradConfig::default() },
    ];
    for c in configs {
        let textbook = |theta: &mut f64, grad: f64, s: &mut [f64], t: f64| {
            let mut g = if c.maximize { -grad } else { grad };
            g += c.weight_decay * *theta;
            s[0] += g * g;
            let clr = c.lr / (1.0 + (t - 1.0) * c.lr_decay);
            *theta -= clr * g / (s[0].sqrt() + c.eps);
        };
        check_against_textbook(&c, &[0.0], 0.5, &textbook);
    }
}

#[test]
fn rmsprop_matches_textbook() {
    let base = RmspropConfig { lr: 0.01, alpha: 0.9, ..RmspropConfig::default() };
    for (momentum, centered) in [(0.0, false), (0.9, false), (0.0, true), (0.9, true)] {
        let c = RmspropConfig { momentum, centered, weight_decay: 0.01, ..base };
        let textbook = |theta: &mut f64, grad: f64, s: &mut [f64], _: f64| {
            let g = grad + c.weight_decay * *theta;
            s[0] = c.alpha * s[0] + (1.0 - c.alpha) * g * g;
            let mut avg = s[0];
            if centered {
                let ga = &mut s[s.len() - 1];
                *ga = c.alpha * *ga + (1.0 - c.alpha) * g;
                avg -= *ga * *ga;
            }
            let avg = avg.sqrt() + c.eps;
            if momentum > 0.0 {
                s[1] = momentum * s[1] + g / avg;
                *theta -= c.lr * s[1];
            } else {
                *theta -= c.lr * g / avg;
            }
        };
        check_against_textbook(&c, &[0.0], 0.0, &textbook);
    }
}

#[test]
fn adadelta_matches_textbook() {
    for c in [
        AdadeltaConfig::default(),
        AdadeltaConfig { lr: 0.5, rho: 0.3, weight_decay: 0.1, maximize: true, ..AdadeltaConfig::default() },
    ] {
        let textbook = |theta: &mut f64, grad: f64, s: &mut [f64], _: f64| {
            let mut g = if c.maximize { -grad } else { grad };
            g += c.weight_decay * *theta;
            s[0] = c.rho * s[0] + (1.0 - c.rho) * g * g;
            let delta = (s[1] + c.eps).sqrt() / (s[0] + c.eps).sqrt() * g;
            s[1] = c.rho * s[1] + (1.0 - c.rho) * delta * delta;
            *theta -= c.lr * delta;
        };
        check_against_textbook(&c, &[0.0], 0.0, &textbook);
    }
}

#[test]
fn adamax_matches_textbook() {
    let base = AdamaxConfig { lr: 0.01, ..AdamaxConfig::default() };
    for c in [base, AdamaxConfig { beta1: 0.3, beta2: 0.6, weight_decay: 0.1, maximize: true, ..base }] {
        let textbook = |theta: &mut f64, grad: f64, s: &mut [f64], t: f64| {
            let mut g = if c.maximize { -grad } else { grad };
            g += c.weight_decay * *theta;
            s[0] = c.beta1 * s[0] + (1.0 - c.beta1) * g;
            s[1] = (c.beta2 * s[1]).max(g.abs() + c.eps);
            *theta -= c.lr / (1.0 - c.beta1.powf(t)) * s[0] / s[1];
        };
        check_against_textbook(&c, &[0.0], 0.0, &textbook);
    }
}

#[test]
fn nadam_matches_textbook() {
    let base = NadamConfig { lr: 0.01, ..NadamConfig::default() };
    let configs = [
        base,
        NadamConfig { weight_decay: 0.1, maximize: true, ..base },
        NadamConfig { weight_decay: 0.1, decoupled_weight_decay: true, momentum_decay: 0.5, ..base },
    ];
    for c in configs {
        let textbook = |theta: &mut f64, grad: f64, s: &mut [f64], t: f64| {
            let mu_product = nadam_mu_product(&c, t);
            let mut g = if c.maximize { -grad } else { grad };
            if c.decoupled_weight_decay {
                *theta *= 1.0 - c.lr * c.weight_decay;
            } else {
                g += c.weight_decay * *theta;
            }
            let (mu, mu_next) = (nadam_mu(&c, t), nadam_mu(&c, t + 1.0));
            s[0] = c.beta1 * s[0] + (1.0 - c.beta1) * g;
            s[1] = c.beta2 * s[1] + (1.0 - c.beta2) * g * g;
            let denom = (s[1] / (1.0 - c.beta2.powf(t))).sqrt() + c.eps;
            *theta -= c.lr * (1.0 - mu) / (1.0 - mu_product) * g / denom;
            *theta -= c.lr * mu_next / (1.0 - mu_product * mu_next) * s[0] / denom;
        };
        check_against_textbook(&c, &[0.0, 1.0], 0.0, &textbook);
    }
}

#[test]
fn nadam_keeps_mu_product_in_float32() {
    let c = NadamConfig::default();
    let got = run::<f64, _>(&c, &[0.0, 1.0], 0.0);
    assert_eq!(got.scalars[2][1], nadam_mu_product(&c, STEPS as f64));
    assert_ne!(got.scalars[2][1], (1..=STEPS).map(|t| nadam_mu(&c, t as f64)).product::<f64>());
}

fn bits<F: Element>(run: &Run<F>) -> Vec<u64> {
    let slots = run.slots.iter().flatten().flatten();
    run.params.iter().flatten().chain(slots).map(|x| x.to_f64().to_bits()).collect()
}

fn check_invariance<R: ElementwiseRule>(rule: &R, initial: &[f64]) {
    simd::set_forced_level(Some(simd::SimdLevel::Baseline)).unwrap();
    pool::set_num_threads(1).unwrap();
    let reference32 = bits(&run::<f32, R>(rule, initial, 0.0));
    let reference64 = bits(&run::<f64, R>(rule, initial, 0.0));
    for level in simd::available_levels() {
        for threads in [1, 2, 3] {
            simd::set_forced_level(Some(level)).unwrap();
            pool::set_num_threads(threads).unwrap();
            assert_eq!(bits(&run::<f32, R>(rule, initial, 0.0)), reference32, "{level:?}, {threads} threads");
            assert_eq!(bits(&run::<f64, R>(rule, initial, 0.0)), reference64, "{level:?}, {threads} threads");
        }
    }
}

#[test]
fn a_grad_scale_equals_scaling_the_grads_first() {
    let bits = |run: &Run<f32>| -> Vec<u32> {
        run.params.iter().chain(run.slots.iter().flatten()).flatten().map(|x| x.to_bits()).collect()
    };
    let rule = RmspropConfig { momentum: 0.9, centered: true, weight_decay: 0.1, ..RmspropConfig::default() };
    for scale in [0.37, -2.5, 1.0, 0.0] {
        let fused = run_with_grad_scale::<f32, _>(&rule, &[0.0], 0.0, GradScale::Fused(scale));
        let first = run_with_grad_scale::<f32, _>(&rule, &[0.0], 0.0, GradScale::First(scale));
        assert!(bits(&fused) == bits(&first), "scale {scale}");
    }
}

#[test]
fn results_are_bitwise_identical_for_every_simd_level_and_thread_count() {
    let _guard = crate::kernel_tests::GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    check_invariance(&AdagradConfig { lr_decay: 0.1, weight_decay: 0.1, ..AdagradConfig::default() }, &[0.0]);
    check_invariance(
        &RmspropConfig { momentum: 0.9, centered: true, weight_decay: 0.1, ..RmspropConfig::default() },
        &[0.0],
    );
    check_invariance(&AdadeltaConfig { weight_decay: 0.1, ..AdadeltaConfig::default() }, &[0.0]);
    check_invariance(&AdamaxConfig { weight_decay: 0.1, ..AdamaxConfig::default() }, &[0.0]);
    check_invariance(
        &NadamConfig { weight_decay: 0.1, decoupled_weight_decay: true, ..NadamConfig::default() },
        &[0.0, 1.0],
    );
    simd::set_forced_level(None).unwrap();
    pool::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
}
