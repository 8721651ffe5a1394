//! Once the history is full, the L-BFGS iteration allocates nothing: the
//! iterate's buffers are allocated when the optimizer is created, and the
//! history grows only until it holds `history_size` pairs. A counting allocator
//! watches whole `step`s (both line search settings, history full and wrapping
//! around). Run with `cargo test --test lbfgs_no_alloc`.

use rustoptim::lbfgs::{Lbfgs, LbfgsConfig, LineSearch, Request};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Chained Rosenbrock.
fn objective(x: &[f64], g: &mut [f64]) -> f64 {
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

fn step(opt: &mut Lbfgs<f64>, x: &mut [f64], g: &mut [f64], config: &LbfgsConfig) {
    opt.iterate_mut().copy_from_slice(x);
    opt.begin(config).unwrap();
    loop {
        let loss = objective(x, g);
        opt.gradient_mut().copy_from_slice(g);
        match opt.resume(loss).unwrap() {
            Request::Evaluate => x.copy_from_slice(opt.point()),
            Request::Done => {
                if !opt.params_hold_point() {
                    x.copy_from_slice(opt.point());
                }
                return;
            }
        }
    }
}

#[test]
fn steps_allocate_nothing() {
    let n = 3000;
    for line_search in [LineSearch::Fixed, LineSearch::StrongWolfe] {
        let config = LbfgsConfig {
            lr: if line_search == LineSearch::Fixed { 1e-3 } else { 1.0 },
            max_iter: 10,
            max_eval: 15,
            tolerance_grad: 0.0,
            tolerance_change: 0.0,
            history_size: 4,
            line_search,
            maximize: false,
        };
        let mut opt = Lbfgs::<f64>::new(n, 4).unwrap();
        let mut x: Vec<f64> = (0..n).map(|i| if i % 2 == 0 { -1.2 } else { 1.0 }).collect();
        let mut g = vec![0.0; n];
        // Fill the history first.
        step(&mut opt, &mut x, &mut g, &config);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        WATCHING.with(|w| w.set(true));
        for _ in 0..5 {
            step(&mut opt, &mut x, &mut g, &config);
        }
        WATCHING.with(|w| w.set(false));
        assert!(opt.n_iter() > 10, "{line_search:?}: the run stopped early");
        assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "{line_search:?}");
    }
}
