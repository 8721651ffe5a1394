//! Throughput of the raw kernels (no Python): bytes moved per second for Adam,
//! AdamW and SGD steps over one large tensor and over many small ones.
//!
//! Bytes per element: Adam reads θ, g, m, v and writes θ, m, v (7 arrays);
//! SGD with momentum reads θ, g, b and writes θ, b (5); plain SGD 3.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustoptim::elementwise::{Tensor, step};
use rustoptim::optimizers::{AdamConfig, SgdConfig};
use std::hint::black_box;

struct Workload {
    name: &'static str,
    shapes: Vec<usize>,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload { name: "1x1e6", shapes: vec![1_000_000] },
        Workload { name: "1x1e7", shapes: vec![10_000_000] },
        Workload { name: "1000x1000", shapes: vec![1000; 1000] },
        Workload { name: "1x10", shapes: vec![10] },
    ]
}

fn filled(shapes: &[usize], value: f32) -> Vec<Vec<f32>> {
    shapes.iter().map(|&n| vec![value; n]).collect()
}

fn bench_adam(c: &mut Criterion, decoupled: bool) {
    let label = if decoupled { "adamw" } else { "adam" };
    let mut group = c.benchmark_group(label);
    for workload in workloads() {
        let elements: usize = workload.shapes.iter().sum();
        group.throughput(Throughput::Bytes((elements * 7 * 4) as u64));
        let (mut params, grads) = (filled(&workload.shapes, 1.0), filled(&workload.shapes, 0.5));
        let (mut exp_avgs, mut exp_avg_sqs) = (filled(&workload.shapes, 0.0), filled(&workload.shapes, 0.0));
        let config = AdamConfig { decoupled_weight_decay: decoupled, weight_decay: 0.01, ..AdamConfig::default() };
        group.bench_function(workload.name, |b| {
            b.iter(|| {
                let mut tensors: Vec<Tensor<'_, f32>> = params
                    .iter_mut()
                    .zip(&grads)
                    .zip(exp_avgs.iter_mut().zip(exp_avg_sqs.iter_mut()))
                    .map(|((param, grad), (exp_avg, exp_avg_sq))| {
                        Tensor::new(param, grad)
                            .with_slots([exp_avg.as_mut_slice(), exp_avg_sq.as_mut_slice()])
                            .with_scalars(&[9.0])
                    })
                    .collect();
                step(&config, black_box(&mut tensors)).unwrap();
            })
        });
    }
    group.finish();
}

fn bench_sgd(c: &mut Criterion, momentum: f64) {
    let label = if momentum != 0.0 { "sgd_momentum" } else { "sgd" };
    let arrays = if momentum != 0.0 { 5 } else { 3 };
    let mut group = c.benchmark_group(label);
    for workload in workloads() {
        let elements: usize = workload.shapes.iter().sum();
        group.throughput(Throughput::Bytes((elements * arrays * 4) as u64));
        let (mut params, grads) = (filled(&workload.shapes, 1.0), filled(&workload.shapes, 0.5));
        let mut buffers = filled(&workload.shapes, 0.0);
        let config = SgdConfig { momentum, ..SgdConfig::default() };
        group.bench_function(workload.name, |b| {
            b.iter(|| {
                let mut tensors: Vec<Tensor<'_, f32>> = params
                    .iter_mut()
                    .zip(&grads)
                    .zip(buffers.iter_mut())
                    .map(|((param, grad), buffer)| {
                        let buffer = (momentum != 0.0).then_some(buffer.as_mut_slice());
                        Tensor::new(param, grad).with_slots(buffer)
                    })
                    .collect();
                step(&config, black_box(&mut tensors)).unwrap();
            })
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    bench_adam(c, false);
    bench_adam(c, true);
    bench_sgd(c, 0.9);
    bench_sgd(c, 0.0);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = kernels
}
criterion_main!(benches);
