//! End-to-end runs of the L-BFGS-B driver on small problems.

use super::*;

const INF: f64 = f64::INFINITY;

/// The error type of the runs here: only a bad setup can fail.
#[derive(Debug)]
#[allow(dead_code)]
struct Failed(LbfgsbError);
impl From<LbfgsbError> for Failed {
    fn from(e: LbfgsbError) -> Self {
        Failed(e)
    }
}

/// Runs to the end; returns the solver and the evaluations used.
fn solve(
    lower: Vec<f64>,
    upper: Vec<f64>,
    x0: &[f64],
    config: Config,
    objective: impl Fn(&[f64], &mut [f64]) -> f64,
) -> (Lbfgsb, u64) {
    let bounds = Bounds::new(lower, upper).unwrap();
    let mut solver = Lbfgsb::new(bounds, config).unwrap();
    let used =
        run::<Failed>(&mut solver, x0, Limits::default(), |x, g| Ok((objective(x, g), 1)), |_| Ok(false)).unwrap();
    (solver, used)
}

fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
    let n = x.len();
    g.fill(0.0);
    let mut f = 0.0;
    for i in 0..n - 1 {
        let a = x[i + 1] - x[i] * x[i];
        let b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
        g[i] += -400.0 * x[i] * a - 2.0 * b;
        g[i + 1] += 200.0 * a;
    }
    f
}

#[test]
fn unconstrained_rosenbrock_converges() {
    let n = 10;
    let x0: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { -1.2 } else { 1.0 }).collect();
    let config = Config { gtol: 1e-8, ftol: 0.0, ..Config::default() };
    let (solver, used) = solve(vec![-INF; n], vec![INF; n], &x0, config, rosenbrock);
    assert_eq!(solver.termination(), Some(Termination::ProjectedGradient));
    assert!(solver.f() < 1e-14, "{}", solver.f());
    assert!(solver.x().iter().all(|&v| (v - 1.0).abs() < 1e-6));
    assert_eq!(used, solver.evaluations());
    assert!(used < 200, "{used}");
}

#[test]
fn bounded_rosenbrock_stops_on_the_bound() {
    // With x_i ≤ 0.5 the minimizer sits on the bound for some variables.
    let n = 4;
    let config = Config { gtol: 1e-10, ftol: 0.0, ..Config::default() };
    let (solver, _) = solve(vec![-INF; n], vec![0.5; n], &[-1.2, 1.0, -1.2, 1.0], config, rosenbrock);
    assert!(solver.termination().unwrap().converged(), "{:?}", solver.termination());
    assert!(solver.x().iter().all(|&v| v <= 0.5));
    assert!(solver.projected_gradient_norm() <= 1e-10);
}

#[test]
fn start_outside_the_box_is_projected_and_never_left() {
    let n = 3;
    let (lower, upper) = (vec![1.0, -2.0, 0.0], vec![2.0, -1.0, 0.0]);
    let bounds = Bounds::new(lower.clone(), upper.clone()).unwrap();
    let mut solver = Lbfgsb::new(bounds, Config::default()).unwrap();
    let mut first = None;
    run::<Failed>(
        &mut solver,
        &[10.0, 10.0, 10.0],
        Limits::default(),
        |x, g| {
            first.get_or_insert_with(|| x.to_vec());
            for i in 0..n {
                assert!(x[i] >= lower[i] && x[i] <= upper[i], "{x:?}");
                g[i] = 2.0 * x[i];
            }
            Ok((x.iter().map(|v| v * v).sum(), 1))
        },
        |_| Ok(false),
    )
    .unwrap();
    assert_eq!(first.unwrap(), vec![2.0, -1.0, 0.0]);
    assert_eq!(solver.x(), &[1.0, -1.0, 0.0]);
    assert_eq!(solver.termination(), Some(Termination::ProjectedGradient));
}

/// f(x) = Σ x_i − 2·log x_i, NaN for x < 0: the quasi-Newton steps overshoot
/// into the NaN region; the run still reaches x = 2.
#[test]
fn survives_an_objective_that_is_nan_outside_its_domain() {
    let n = 5;
    let x0: Vec<f64> = (0..n).map(|i| 100.0 + i as f64).collect();
    let config = Config { gtol: 1e-8, ..Config::default() };
    let (solver, _) = solve(vec![-INF; n], vec![INF; n], &x0, config, |x, g| {
        let mut f = 0.0;
        for i in 0..x.len() {
            f += x[i] - 2.0 * x[i].ln();
            g[i] = 1.0 - 2.0 / x[i];
        }
        f
    });
    assert!(solver.termination().unwrap().converged(), "{:?}", solver.termination());
    for &v in solver.x() {
        assert!((v - 2.0).abs() < 1e-5, "{:?}", solver.x());
    }
}

#[test]
fn nan_at_the_start_ends_the_run() {
    let (solver, used) = solve(vec![-INF], vec![INF], &[1.0], Config::default(), |_, g| {
        g[0] = 0.0;
        f64::NAN
    });
    assert_eq!(solver.termination(), Some(Termination::NonFiniteStart));
    assert_eq!(used, 1);
}

#[test]
fn a_wrong_gradient_ends_in_a_line_search_failure() {
    // The "gradient" points uphill: no descent is possible along −g.
    let (solver, _) = solve(vec![-INF; 2], vec![INF; 2], &[1.0, 1.0], Config::default(), |x, g| {
        g[0] = -2.0 * x[0];
        g[1] = -2.0 * x[1];
        x[0] * x[0] + x[1] * x[1]
    });
    assert!(matches!(solver.termination(), Some(Termination::LineSearchFailed(_))), "{:?}", solver.termination());
    assert_eq!(solver.x(), &[1.0, 1.0]);
}

#[test]
fn max_iterations_zero_evaluates_the_start_only() {
    let bounds = Bounds::unbounded(2).unwrap();
    let mut solver = Lbfgsb::new(bounds, Config::default()).unwrap();
    let used = run::<Failed>(
        &mut solver,
        &[-1.2, 1.0],
        Limits { max_iterations: 0, max_evaluations: 100 },
        |x, g| Ok((rosenbrock(x, g), 1)),
        |_| Ok(false),
    )
    .unwrap();
    assert_eq!(used, 1);
    assert_eq!(solver.termination(), Some(Termination::Stopped(StopReason::MaxIterations)));
}

#[test]
fn rejects_bad_setups() {
    assert!(matches!(
        Lbfgsb::new(Bounds::unbounded(2).unwrap(), Config { memory: 0, ..Config::default() }),
        Err(LbfgsbError::InvalidSetting(_))
    ));
    let mut solver = Lbfgsb::new(Bounds::unbounded(2).unwrap(), Config::default()).unwrap();
    assert!(matches!(solver.start(&[1.0]), Err(LbfgsbError::LengthMismatch { .. })));
    assert!(matches!(solver.start(&[1.0, f64::NAN]), Err(LbfgsbError::NonFiniteStart { index: 1, .. })));
}
