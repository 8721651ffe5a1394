//! Time per iteration of the L-BFGS-B core alone (no Python), beyond the
//! objective: chained Rosenbrock in Rust, `maxcor` 10, a fixed number of
//! iterations, without bounds and with the box `[-2, 0.9]`. The objective is
//! timed and subtracted; each line is the best of several runs.
//!
//! `cargo run --release --example lbfgsb_overhead`

use rustoptim::lbfgsb::{Bounds, Config, Lbfgsb, LbfgsbError, Limits, run};
use std::time::Instant;

fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
    g.fill(0.0);
    let mut f = 0.0;
    for i in 0..x.len() - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
        g[i] += -400.0 * x[i] * a - 2.0 * b;
        g[i + 1] += 200.0 * a;
    }
    f
}

/// Best overhead per iteration (seconds) over `runs` runs of `iterations`.
fn overhead(n: usize, iterations: usize, runs: usize, bounded: bool) -> f64 {
    let x0: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { -1.2 } else { 1.0 }).collect();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let bounds = if bounded { Bounds::new(vec![-2.0; n], vec![0.9; n]) } else { Bounds::unbounded(n) };
        let config = Config { gtol: 0.0, ftol: 0.0, ..Config::default() };
        let mut solver = Lbfgsb::new(bounds.expect("valid bounds"), config).expect("valid setup");
        let mut objective = 0.0;
        let start = Instant::now();
        let limits = Limits { max_iterations: iterations, max_evaluations: u64::MAX };
        run::<LbfgsbError>(
            &mut solver,
            &x0,
            limits,
            |x, g| {
                let t = Instant::now();
                let f = rosenbrock(x, g);
                objective += t.elapsed().as_secs_f64();
                Ok((f, 1))
            },
            |_| Ok(false),
        )
        .expect("valid start");
        let total = start.elapsed().as_secs_f64();
        best = best.min((total - objective) / solver.iterations().max(1) as f64);
    }
    best
}

fn main() {
    println!("| n | bounds | core time / iteration |");
    println!("|---:|:---|---:|");
    for (n, iterations, runs) in [(100, 200, 50), (10_000, 60, 20)] {
        for bounded in [false, true] {
            let seconds = overhead(n, iterations, runs, bounded);
            let bounds = if bounded { "[-2, 0.9]" } else { "none" };
            println!("| {n} | {bounds} | {:.2} us |", seconds * 1e6);
        }
    }
}
