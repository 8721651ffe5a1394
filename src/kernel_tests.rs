//! Tests of the first-order kernels against a textbook scalar reference, and of
//! their invariance to the SIMD level and the thread count.

use crate::element::Element;
use crate::elementwise::{self, Tensor};
use crate::optimizers::{AdamConfig, SgdConfig};
use crate::pool;
use crate::simd::{self, SimdLevel};
use std::sync::Mutex;

/// Tests that change the global SIMD level or pool size must not overlap.
pub(crate) static GLOBAL_SETTINGS: Mutex<()> = Mutex::new(());

/// A deterministic pseudo-random sequence with magnitudes from 1e-9 to 1e3 and exact zeros.
fn values<F: Element>(n: usize, seed: u64) -> Vec<F> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            if i % 17 == 0 {
                return F::ZERO;
            }
            let magnitude = 10f64.powf(-9.0 + 12.0 * unit);
            let sign = if (state >> 7) & 1 == 0 { 1.0 } else { -1.0 };
            F::from_f64(sign * magnitude * (0.5 + unit))
        })
        .collect()
}

/// Adam in textbook form, one element at a time, in f64.
fn reference_adam(
    theta: &mut [f64],
    grad: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    vmax: &mut [f64],
    step: f64,
    c: &AdamConfig,
) {
    for i in 0..theta.len() {
        let mut g = if c.maximize { -grad[i] } else { grad[i] };
        if c.weight_decay != 0.0 {
            if c.decoupled_weight_decay {
                theta[i] *= 1.0 - c.lr * c.weight_decay;
            } else {
                g += c.weight_decay * theta[i];
            }
        }
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
        vmax[i] = vmax[i].max(v[i]);
        let v_used = if c.amsgrad { vmax[i] } else { v[i] };
        let bc1 = 1.0 - c.beta1.powf(step);
        let bc2 = 1.0 - c.beta2.powf(step);
        theta[i] -= c.lr / bc1 * m[i] / (v_used.sqrt() / bc2.sqrt() + c.eps);
    }
}

fn reference_sgd(theta: &mut [f64], grad: &[f64], buf: &mut [f64], first: bool, c: &SgdConfig) {
    for i in 0..theta.len() {
        let mut g = if c.maximize { -grad[i] } else { grad[i] };
        g += c.weight_decay * theta[i];
        if c.momentum != 0.0 {
            buf[i] = if first { g } else { c.momentum * buf[i] + (1.0 - c.dampening) * g };
            g = if c.nesterov { g + c.momentum * buf[i] } else { buf[i] };
        }
        theta[i] -= c.lr * g;
    }
}

const LENGTHS: [usize; 6] = [0, 1, 7, 33, 1000, 70_001];

struct AdamRun<F> {
    params: Vec<Vec<F>>,
    exp_avgs: Vec<Vec<F>>,
    exp_avg_sqs: Vec<Vec<F>>,
    max_exp_avg_sqs: Vec<Vec<F>>,
}

/// Runs `steps` Adam steps over tensors of `LENGTHS`, with fresh gradients each step.
fn run_adam<F: Element>(config: &AdamConfig, steps: usize) -> AdamRun<F> {
    let mut run = AdamRun {
        params: LENGTHS.iter().enumerate().map(|(i, &n)| values(n, i as u64)).collect(),
        exp_avgs: LENGTHS.iter().map(|&n| vec![F::ZERO; n]).collect(),
        exp_avg_sqs: LENGTHS.iter().map(|&n| vec![F::ZERO; n]).collect(),
        max_exp_avg_sqs: LENGTHS.iter().map(|&n| vec![F::ZERO; n]).collect(),
    };
    for step in 1..=steps {
        let grads: Vec<Vec<F>> = LENGTHS.iter().enumerate().map(|(i, &n)| values(n, (100 * step + i) as u64)).collect();
        let mut tensors: Vec<Tensor<'_, F>> = run
            .params
            .iter_mut()
            .zip(&grads)
            .zip(run.exp_avgs.iter_mut().zip(run.exp_avg_sqs.iter_mut()))
            .zip(run.max_exp_avg_sqs.iter_mut())
            .map(|(((param, grad), (exp_avg, exp_avg_sq)), max)| {
                let max = config.amsgrad.then_some(max.as_mut_slice());
                let slots = [exp_avg.as_mut_slice(), exp_avg_sq.as_mut_slice()].into_iter().chain(max);
                Tensor::new(param, grad).with_slots(slots).with_scalars(&[(step - 1) as f64])
            })
            .collect();
        elementwise::step(config, &mut tensors).unwrap();
        assert!(tensors.iter().all(|t| t.scalars[0] == step as f64), "the step count advances");
    }
    run
}

fn adam_configs() -> Vec<AdamConfig> {
    let base = AdamConfig { lr: 0.01, ..AdamConfig::default() };
    vec![
        base,
        AdamConfig { weight_decay: 0.1, amsgrad: true, ..base },
        AdamConfig { weight_decay: 0.1, maximize: true, beta1: 0.5, ..base },
        AdamConfig { weight_decay: 0.5, decoupled_weight_decay: true, amsgrad: true, ..base },
    ]
}

/// `|a − b|` relative to `b`, with the denominator floored at 1e-3 of the
/// tensor's largest magnitude `scale` (elements that cancel to near zero carry
/// the absolute error of their larger operands).
fn relative_error(a: f64, b: f64, scale: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-3 * scale).max(f64::MIN_POSITIVE)
}

fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |acc, v| acc.max(v.abs()))
}

#[test]
fn adam_f64_matches_scalar_reference() {
    for config in adam_configs() {
        let steps = 5;
        let got = run_adam::<f64>(&config, steps);
        for (t, &n) in LENGTHS.iter().enumerate() {
            let mut theta: Vec<f64> = values(n, t as u64);
            let (mut m, mut v, mut vmax) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            for step in 1..=steps {
                let grad: Vec<f64> = values(n, (100 * step + t) as u64);
                reference_adam(&mut theta, &grad, &mut m, &mut v, &mut vmax, step as f64, &config);
            }
            let scale = max_abs(&theta);
            for (i, (&got, &expected)) in got.params[t].iter().zip(&theta).enumerate() {
                let err = relative_error(got, expected, scale);
                assert!(err < 1e-12, "{config:?}: tensor {t}[{i}] {got} vs {expected}");
            }
        }
    }
}

#[test]
fn sgd_f64_matches_scalar_reference() {
    let configs = [
        SgdConfig { lr: 0.1, ..SgdConfig::default() },
        SgdConfig { lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.001, ..SgdConfig::default() },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            maximize: true,
            ..SgdConfig::default()
        },
    ];
    for config in configs {
        for (t, &n) in LENGTHS.iter().enumerate() {
            let mut theta: Vec<f64> = values(n, t as u64);
            let mut expected = theta.clone();
            let (mut buffer, mut expected_buffer) = (vec![0.0; n], vec![0.0; n]);
            for step in 1..=4 {
                let grad: Vec<f64> = values(n, (100 * step + t) as u64);
                let mut tensor = Tensor::new(&mut theta, &grad);
                if config.momentum != 0.0 {
                    tensor = tensor.with_slots([buffer.as_mut_slice()]);
                    tensor.fresh_slots = u8::from(step == 1);
                }
                step_tensors(&config, &mut [tensor]);
                reference_sgd(&mut expected, &grad, &mut expected_buffer, step == 1, &config);
            }
            let scale = max_abs(&expected);
            for i in 0..n {
                assert!(relative_error(theta[i], expected[i], scale) < 1e-13, "{config:?}: tensor {t}[{i}]");
            }
        }
    }
}

fn bits<F: Element>(run: &AdamRun<F>) -> Vec<u64> {
    [&run.params, &run.exp_avgs, &run.exp_avg_sqs, &run.max_exp_avg_sqs]
        .into_iter()
        .flatten()
        .flatten()
        .map(|x| x.to_f64().to_bits())
        .collect()
}

#[test]
fn results_are_bitwise_identical_for_every_simd_level_and_thread_count() {
    let _guard = GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    for config in adam_configs() {
        simd::set_forced_level(Some(SimdLevel::Baseline)).unwrap();
        pool::set_num_threads(1).unwrap();
        let reference32 = bits(&run_adam::<f32>(&config, 3));
        let reference64 = bits(&run_adam::<f64>(&config, 3));
        for level in simd::available_levels() {
            for threads in [1, 2, 3, 8] {
                simd::set_forced_level(Some(level)).unwrap();
                pool::set_num_threads(threads).unwrap();
                assert_eq!(bits(&run_adam::<f32>(&config, 3)), reference32, "{level:?}, {threads} threads");
                assert_eq!(bits(&run_adam::<f64>(&config, 3)), reference64, "{level:?}, {threads} threads");
            }
        }
    }
    simd::set_forced_level(None).unwrap();
    pool::set_num_threads(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
}

#[test]
fn mismatched_lengths_are_rejected_before_any_change() {
    let (mut p0, g0, mut m0, mut v0) = (vec![1.0f32; 4], vec![1.0f32; 4], vec![0.0f32; 4], vec![0.0f32; 4]);
    let (mut p1, g1, mut m1, mut v1) = (vec![1.0f32; 3], vec![1.0f32; 2], vec![0.0f32; 3], vec![0.0f32; 3]);
    let mut tensors = [
        Tensor::new(&mut p0, &g0).with_slots([m0.as_mut_slice(), v0.as_mut_slice()]),
        Tensor::new(&mut p1, &g1).with_slots([m1.as_mut_slice(), v1.as_mut_slice()]),
    ];
    let err = elementwise::step(&AdamConfig::default(), &mut tensors).unwrap_err();
    assert!(err.to_string().contains("grad of tensor 1 has 2 elements, expected 3"), "{err}");
    assert_eq!(tensors[0].scalars[0], 0.0, "no scalar state advanced");
    let _ = tensors;
    assert_eq!(p0, vec![1.0; 4]);
}

#[test]
fn a_missing_slot_is_rejected_before_any_change() {
    let (mut p, g, mut m) = (vec![1.0f64; 4], vec![1.0f64; 4], vec![0.0f64; 4]);
    let mut tensors = [Tensor::new(&mut p, &g).with_slots([m.as_mut_slice()])];
    let err = elementwise::step(&AdamConfig::default(), &mut tensors).unwrap_err();
    assert!(err.to_string().contains("slot 1 of tensor 0 has 0 elements, expected 4"), "{err}");
    let _ = tensors;
    assert_eq!(p, vec![1.0; 4]);
}

#[test]
fn unsupported_simd_level_is_refused() {
    let _guard = GLOBAL_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    if simd::detected_level() < SimdLevel::Avx512 {
        assert!(simd::set_forced_level(Some(SimdLevel::Avx512)).is_err());
    }
    assert!(SimdLevel::from_name("sse9").is_err());
}

fn step_tensors<F: Element>(config: &SgdConfig, tensors: &mut [Tensor<'_, F>]) {
    elementwise::step(config, tensors).unwrap();
}
