//! The L-BFGS two-loop recursion: `d = −H·g` for the inverse-Hessian
//! approximation `H` defined by the history and the initial scaling `H₀ = h·I`.
//!
//! In torch's order and rounding (`k` pairs, oldest first):
//!
//! ```text
//! q = −g
//! for i = k−1 … 0:   α_i = (s_iᵀq)·ρ_i;   q = q − α_i·y_i      (one FMA per element)
//! r = q·h
//! for i = 0 … k−1:   β_i = (y_iᵀr)·ρ_i;   r = r + (α_i − β_i)·s_i
//! d = r
//! ```
//!
//! Each update is fused with the dot product that follows it, so every history
//! vector is read once per loop and `q`/`r` (which is `d` itself) stays in cache.
//!
//! Long vectors are split across a [`team`](super::team) of pool threads, each
//! owning a run of the vectors' parts ([`Parts`]); after every step the members
//! add the parts' dot products in part order, exactly as the single-thread
//! kernels do, so the direction is bitwise the same for any thread count.

use super::history::History;
use super::team;
use super::vector_ops::{
    MAX_PARTS, Parts, axpy, axpy_dot, neg_dot, neg_into, part_axpy, part_axpy_dot, part_neg_dot, part_scale_dot, scale,
    scale_dot,
};
use crate::element::Element;
use crate::partition::SharedMut;
use crate::simd::dispatch;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// Each team member gets at least this many elements: below it, the barrier
/// after every step costs more than the member saves.
const MIN_ELEMENTS_PER_MEMBER: usize = 4096;

fn team_size(n: usize, pairs: usize) -> usize {
    if pairs == 0 || n < 2 * MIN_ELEMENTS_PER_MEMBER {
        return 1;
    }
    team::available_members().min(n / MIN_ELEMENTS_PER_MEMBER).min(Parts::of(n).count)
}

/// Writes `−H·g` into `d`. `alpha` receives the `α_i` (torch's `al`); it must
/// hold at least `history.len()` entries.
pub fn two_loop<F: Element>(g: &[F], history: &History<F>, h_diag: F, alpha: &mut [F], d: &mut [F]) {
    let k = history.len();
    assert!(alpha.len() >= k, "alpha buffer shorter than the history");
    assert!(g.len() == d.len() && g.len() == history.dim(), "two_loop vectors of different lengths");
    if k == 0 {
        neg_into(d, g);
        scale(d, h_diag);
        return;
    }
    let members = team_size(g.len(), k);
    if members > 1 && two_loop_team(g, history, h_diag, alpha, d, members) {
        return;
    }

    let mut s_dot_q = neg_dot(d, g, history.step(k - 1));
    for i in (0..k).rev() {
        alpha[i] = s_dot_q * history.rho(i);
        if i > 0 {
            s_dot_q = axpy_dot(-alpha[i], history.dir(i), d, history.step(i - 1));
        } else {
            axpy(-alpha[i], history.dir(i), d);
        }
    }

    let mut y_dot_r = scale_dot(d, h_diag, history.dir(0));
    for (i, &alpha_i) in alpha[..k].iter().enumerate() {
        let beta = y_dot_r * history.rho(i);
        let coefficient = alpha_i - beta;
        if i + 1 < k {
            y_dot_r = axpy_dot(coefficient, history.step(i), d, history.dir(i + 1));
        } else {
            axpy(coefficient, history.step(i), d);
        }
    }
}

/// The recursion on a team of `members` threads; `false` if no team was available.
fn two_loop_team<F: Element>(
    g: &[F],
    history: &History<F>,
    h_diag: F,
    alpha: &mut [F],
    d: &mut [F],
    members: usize,
) -> bool {
    let parts = Parts::of(g.len());
    // Two rounds of per-part results, used alternately: a member may start
    // writing round r + 1 while a slower one still reads round r, never r + 2.
    let partials: [[AtomicU64; MAX_PARTS]; 2] = [const { [const { AtomicU64::new(0) }; MAX_PARTS] }; 2];
    let d = SharedMut::new(d);
    let alpha = SharedMut::new(alpha);
    team::run(members, |member, members, barrier| {
        let mine = member * parts.count / members..(member + 1) * parts.count / members;
        let mut round = 0usize;
        // Computes `part_value` on this member's parts, meets the others, and
        // returns the sum of all parts in part order.
        let mut step = |part_value: &dyn Fn(Range<usize>) -> F| -> F {
            let slots = &partials[round % 2];
            for p in mine.clone() {
                let value = part_value(parts.range(p));
                slots[p].store(value.to_f64().to_bits(), Ordering::Relaxed);
            }
            barrier.wait();
            round += 1;
            slots[..parts.count]
                .iter()
                .fold(F::ZERO, |total, slot| total + F::from_f64(f64::from_bits(slot.load(Ordering::Relaxed))))
        };
        // SAFETY (every `piece` below): members touch only their own parts of
        // `d`; `alpha` is written by member 0 alone and read by the others only
        // after a barrier that follows the write.
        let own = |r: Range<usize>| unsafe { d.piece(r) };
        let k = history.len();
        let mut s_dot_q = step(&|r| {
            dispatch(
                #[inline(always)]
                || part_neg_dot(own(r.clone()), &g[r.clone()], &history.step(k - 1)[r]),
            )
        });
        for i in (0..k).rev() {
            let a = s_dot_q * history.rho(i);
            if member == 0 {
                unsafe { alpha.piece(i..i + 1)[0] = a };
            }
            if i > 0 {
                s_dot_q = step(&|r| {
                    dispatch(
                        #[inline(always)]
                        || part_axpy_dot(-a, &history.dir(i)[r.clone()], own(r.clone()), &history.step(i - 1)[r]),
                    )
                });
            } else {
                let r = parts.span(mine.clone());
                dispatch(
                    #[inline(always)]
                    || part_axpy(-a, &history.dir(0)[r.clone()], own(r)),
                );
            }
        }
        let mut y_dot_r = step(&|r| {
            dispatch(
                #[inline(always)]
                || part_scale_dot(own(r.clone()), h_diag, &history.dir(0)[r]),
            )
        });
        for i in 0..k {
            let beta = y_dot_r * history.rho(i);
            let coefficient = unsafe { alpha.piece(i..i + 1)[0] } - beta;
            if i + 1 < k {
                y_dot_r = step(&|r| {
                    dispatch(
                        #[inline(always)]
                        || {
                            part_axpy_dot(
                                coefficient,
                                &history.step(i)[r.clone()],
                                own(r.clone()),
                                &history.dir(i + 1)[r],
                            )
                        },
                    )
                });
            } else {
                let r = parts.span(mine.clone());
                dispatch(
                    #[inline(always)]
                    || part_axpy(coefficient, &history.step(i)[r.clone()], own(r)),
                );
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbfgs::vector_ops::dot;

    /// The recursion exactly as torch writes it, one operation at a time.
    fn unfused<F: Element>(g: &[F], h: &History<F>, h_diag: F) -> Vec<F> {
        let k = h.len();
        let mut al = vec![F::ZERO; k];
        let mut q: Vec<F> = g.iter().map(|&x| -x).collect();
        for i in (0..k).rev() {
            al[i] = dot(h.step(i), &q) * h.rho(i);
            axpy(-al[i], h.dir(i), &mut q);
        }
        let mut r: Vec<F> = q.iter().map(|&x| x * h_diag).collect();
        for (i, &al_i) in al.iter().enumerate() {
            let be = dot(h.dir(i), &r) * h.rho(i);
            axpy(al_i - be, h.step(i), &mut r);
        }
        r
    }

    #[test]
    fn a_team_gives_bitwise_the_single_thread_direction() {
        let n = 50_003;
        let h = filled_history(n, 9, 9);
        let g: Vec<f64> = (0..n).map(|i| (i as f64 * 0.011).cos()).collect();
        let mut expected = vec![0.0; n];
        let mut al = vec![0.0; 9];
        crate::pool::set_num_threads(1).unwrap();
        two_loop(&g, &h, 0.9, &mut al, &mut expected);
        assert_eq!(expected, unfused(&g, &h, 0.9));
        for threads in [2, 3, 4] {
            crate::pool::set_num_threads(threads).unwrap();
            for members in 2..=threads {
                let mut d = vec![0.0; n];
                let mut al_team = vec![0.0; 9];
                if two_loop_team(&g, &h, 0.9, &mut al_team, &mut d, members) {
                    assert_eq!(d, expected, "{members} members");
                    assert_eq!(al_team, al);
                }
            }
        }
    }

    fn filled_history(n: usize, pairs: usize, capacity: usize) -> History<f64> {
        let mut h = History::new(n, capacity);
        for k in 0..pairs {
            let s: Vec<f64> = (0..n).map(|i| ((i * 7 + k * 3) % 11) as f64 * 0.1 - 0.5).collect();
            // y = A s for a diagonal positive A, so yᵀs > 0.
            let y: Vec<f64> = s.iter().enumerate().map(|(i, v)| v * (1.0 + (i % 5) as f64)).collect();
            let rho = 1.0 / dot(&y, &s);
            h.push(&y, &s, rho);
        }
        h
    }

    #[test]
    fn matches_the_unfused_recursion_bitwise() {
        for (n, pairs, capacity) in [(1, 0, 3), (5, 2, 3), (37, 7, 5), (2000, 12, 10)] {
            let h = filled_history(n, pairs, capacity);
            let g: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let mut d = vec![0.0; n];
            let mut al = vec![0.0; capacity];
            two_loop(&g, &h, 0.7, &mut al, &mut d);
            assert_eq!(d, unfused(&g, &h, 0.7), "n = {n}");
        }
    }

    /// BFGS satisfies the secant equation for the newest pair: `H·y = s`, so
    /// `g = y` must give `d = −s`.
    #[test]
    fn satisfies_the_secant_equation_of_the_newest_pair() {
        let n = 6;
        let h = filled_history(n, 4, 4);
        let (y, s) = (h.dir(3).to_vec(), h.step(3).to_vec());
        let mut d = vec![0.0; n];
        let mut al = vec![0.0; 4];
        two_loop(&y, &h, 0.3, &mut al, &mut d);
        for i in 0..n {
            assert!((d[i] + s[i]).abs() < 1e-12, "{d:?} vs {s:?}");
        }
    }
}
