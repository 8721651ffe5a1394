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
//! The whole recursion is one call compiled for the SIMD level (one
//! [`dispatch`]), which keeps the `2k` steps cheap when `n` is small.
//!
//! Long vectors may be split across a [`team`](super::team) of pool threads,
//! each owning a run of the vectors' parts ([`Parts`]) and the slice of `d`
//! they cover (its only `&mut`; the history and `g` are shared as `&`); after
//! every step the members add the parts' dot products in part order, exactly
//! as one thread does (and as the whole-vector kernels of
//! [`vector_ops`](super::vector_ops) do), so the direction is bitwise the same
//! for any thread count.

use super::history::History;
use super::team::{self, Barrier, MAX_MEMBERS};
use super::vector_ops::{MAX_PARTS, Parts, dot, part_axpy_dot, part_axpy_scale_dot, part_neg_dot};
use crate::element::Element;
use crate::simd::dispatch;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Team or not, learned separately for each size of the recursion (by the
/// binary order of magnitude of `n·k`): a team's fixed cost (waking its
/// threads, a barrier per step) pays off only above some size, which depends
/// on the machine and on what else runs on it.
static TEAM_CHOICES: [team::Choice; 64] = [const { team::Choice::new() }; 64];

/// Each team member gets at least this many elements: below it, the barrier
/// after every step costs more than the member saves.
const MIN_ELEMENTS_PER_MEMBER: usize = 4096;
/// A team is considered only from this much work (`n·k`, about 5 ms on one
/// thread): waking threads that went to sleep while the closure ran can take
/// milliseconds (on a virtual machine, the host has to schedule the idle vCPU
/// again), which only a recursion this long pays back.
const MIN_TEAM_WORK: usize = 1 << 22;

fn team_size(n: usize, pairs: usize) -> usize {
    if pairs == 0 || n < 2 * MIN_ELEMENTS_PER_MEMBER || n.saturating_mul(pairs) < MIN_TEAM_WORK {
        return 1;
    }
    team::available_members().min(n / MIN_ELEMENTS_PER_MEMBER).min(Parts::of(n).count).min(MAX_MEMBERS)
}

/// Writes `−H·g` into `d` and returns `gᵀd` (computed in the pass that
/// finishes `d`, bitwise equal to `dot(g, d)`). `alpha` receives the `α_i`
/// (torch's `al`); it must hold at least `history.len()` entries.
pub fn two_loop<F: Element>(g: &[F], history: &History<F>, h_diag: F, alpha: &mut [F], d: &mut [F]) -> F {
    let k = history.len();
    assert!(alpha.len() >= k, "alpha buffer shorter than the history");
    assert!(g.len() == d.len() && g.len() == history.dim(), "two_loop vectors of different lengths");
    let members = team_size(g.len(), k);
    if members == 1 {
        return two_loop_solo(g, history, h_diag, alpha, d);
    }
    let work = g.len() * k;
    let choice = &TEAM_CHOICES[work.ilog2() as usize];
    let start = Instant::now();
    if choice.prefer_team() {
        if let Some(gtd) = two_loop_team(g, history, h_diag, alpha, d, members) {
            choice.record(true, start.elapsed().as_secs_f64() / work as f64);
            return gtd;
        }
    }
    let gtd = two_loop_solo(g, history, h_diag, alpha, d);
    choice.record(false, start.elapsed().as_secs_f64() / work as f64);
    gtd
}

/// One step's update of this member's parts of `d`, whose dot product with a
/// history vector the next step needs.
#[derive(Clone, Copy)]
enum Update<'a, F> {
    /// `d ← −g`, then `z·d`.
    Negate { z: &'a [F] },
    /// `d ← d + α·x`, then `z·d`.
    Axpy { alpha: F, x: &'a [F], z: &'a [F] },
    /// `d ← (d + α·x)·scale`, then `z·d`: the first loop's last update and
    /// `r = q·h` in one pass over `d` (the same two roundings per element).
    AxpyScale { alpha: F, x: &'a [F], scale: F, z: &'a [F] },
}

/// Two rounds of what the members publish after a step: one result per part,
/// and one scalar from the leader (the `α_i` the next step needs). A member may
/// start writing round r + 1 while a slower one still reads round r, never
/// r + 2, because the barrier of round r + 1 waits for every member.
type Exchange = [[AtomicU64; MAX_PARTS + 1]; 2];
/// Where the leader's scalar goes in a round.
const MESSAGE: usize = MAX_PARTS;
/// In a team: the exchange and the barrier.
type Team<'a> = Option<(&'a Exchange, &'a Barrier)>;

/// One member: what it reads (shared as `&`) and what it writes (its own).
///
/// `TEAM` is false on the calling thread alone, which then owns all of `d` and
/// `alpha`; the exchange, the barrier and the offsets compile away there.
struct Member<'a, F, const TEAM: bool> {
    history: &'a History<F>,
    g: &'a [F],
    h_diag: F,
    parts: Parts,
    /// The parts this member computes: all of them when not in a team.
    mine: Range<usize>,
    /// Its elements of `d` (`parts.span(mine)`), an exclusive slice, and the
    /// element where they start.
    d: &'a mut [F],
    offset: usize,
    /// torch's `al`: `Some` for the leader (member 0, or the thread alone),
    /// which records `α_i` and sends it to the others when the second loop
    /// needs it.
    alpha: Option<&'a mut [F]>,
    /// In a team: the round of the exchange this member is on.
    round: usize,
    /// In a team: the `α_i` received at the last barrier, and the one the
    /// leader sends at the next.
    inbox: F,
    outbox: F,
}

impl<F: Element, const TEAM: bool> Member<'_, F, TEAM> {
    /// Applies `update` to part `p` and returns the part's dot product.
    #[inline(always)]
    fn part(&mut self, update: Update<'_, F>, p: usize) -> F {
        let r = self.parts.range(p);
        let d = if TEAM { &mut self.d[r.start - self.offset..r.end - self.offset] } else { &mut self.d[r.clone()] };
        match update {
            Update::Negate { z } => part_neg_dot(d, &self.g[r.clone()], &z[r]),
            Update::Axpy { alpha, x, z } => part_axpy_dot(alpha, &x[r.clone()], d, &z[r]),
            Update::AxpyScale { alpha, x, scale, z } => part_axpy_scale_dot(alpha, &x[r.clone()], d, scale, &z[r]),
        }
    }

    /// Applies `update` to this member's parts and returns the dot product over
    /// the whole vector (parts added in order). In a team, also delivers the
    /// leader's `outbox` to every member's `inbox`.
    #[inline(always)]
    fn step(&mut self, update: Update<'_, F>, team: Team<'_>) -> F {
        let mut total = F::ZERO;
        if !TEAM {
            for p in 0..self.parts.count {
                total = total + self.part(update, p);
            }
            return total;
        }
        let (exchange, barrier) = team.expect("a team member has an exchange");
        let slots = &exchange[self.round % 2];
        self.round += 1;
        for p in self.mine.clone() {
            slots[p].store(self.part(update, p).to_f64().to_bits(), Ordering::Relaxed);
        }
        if self.alpha.is_some() {
            slots[MESSAGE].store(self.outbox.to_f64().to_bits(), Ordering::Relaxed);
        }
        barrier.wait();
        for slot in &slots[..self.parts.count] {
            total = total + F::from_f64(f64::from_bits(slot.load(Ordering::Relaxed)));
        }
        self.inbox = F::from_f64(f64::from_bits(slots[MESSAGE].load(Ordering::Relaxed)));
        total
    }

    /// The whole recursion, as seen by one member; returns `gᵀd`. Every member
    /// computes the same scalars (the same part results, added in the same
    /// order), so only `α_i` of the first loop, needed again in the second, has
    /// to travel: the leader keeps it and sends it one step ahead.
    #[inline(always)]
    fn run(&mut self, team: Team<'_>) -> F {
        let history = self.history;
        let k = history.len();
        let mut s_dot_q = self.step(Update::Negate { z: history.step(k - 1) }, team);
        let mut y_dot_r = F::ZERO;
        for i in (0..k).rev() {
            let a = s_dot_q * history.rho(i);
            if let Some(alpha) = self.alpha.as_deref_mut() {
                alpha[i] = a;
            }
            if i > 0 {
                let update = Update::Axpy { alpha: -a, x: history.dir(i), z: history.step(i - 1) };
                s_dot_q = self.step(update, team);
            } else {
                let update = Update::AxpyScale { alpha: -a, x: history.dir(0), scale: self.h_diag, z: history.dir(0) };
                // α_0 travels with this step.
                self.outbox = a;
                y_dot_r = self.step(update, team);
            }
        }
        for i in 0..k {
            let beta = y_dot_r * history.rho(i);
            // The leader has α_i; the others received it at the last barrier.
            let coefficient = match self.alpha.as_deref() {
                Some(alpha) => alpha[i],
                None => self.inbox,
            } - beta;
            if TEAM {
                if let Some(alpha) = self.alpha.as_deref() {
                    self.outbox = if i + 1 < k { alpha[i + 1] } else { F::ZERO };
                }
            }
            // The last update is followed by `gᵀd` for the caller.
            let z = if i + 1 < k { history.dir(i + 1) } else { self.g };
            y_dot_r = self.step(Update::Axpy { alpha: coefficient, x: history.step(i), z }, team);
        }
        y_dot_r
    }
}

/// The recursion on the calling thread.
fn two_loop_solo<F: Element>(g: &[F], history: &History<F>, h_diag: F, alpha: &mut [F], d: &mut [F]) -> F {
    if history.is_empty() {
        // q = −g, r = q·h.
        for (di, &gi) in d.iter_mut().zip(g) {
            *di = -gi * h_diag;
        }
        return dot(g, d);
    }
    let parts = Parts::of(g.len());
    let mut member = Member::<F, false> {
        history,
        g,
        h_diag,
        parts,
        mine: 0..parts.count,
        d,
        offset: 0,
        alpha: Some(alpha),
        round: 0,
        inbox: F::ZERO,
        outbox: F::ZERO,
    };
    dispatch(
        #[inline(always)]
        || member.run(None),
    )
}

/// The recursion on a team of `members` threads; `None` if no team was available.
fn two_loop_team<F: Element>(
    g: &[F],
    history: &History<F>,
    h_diag: F,
    alpha: &mut [F],
    d: &mut [F],
    members: usize,
) -> Option<F> {
    let parts = Parts::of(g.len());
    if members < 2 || members > parts.count.min(MAX_MEMBERS) {
        return None;
    }
    let exchange: Exchange = [const { [const { AtomicU64::new(0) }; MAX_PARTS + 1] }; 2];
    // Cut `d` into one exclusive slice per member: member m computes parts
    // `m·count/members .. (m+1)·count/members`, consecutive runs of elements.
    // Each member's state, `gᵀd` included, is its own.
    let mut team: [Option<(Member<'_, F, true>, F)>; MAX_MEMBERS] = std::array::from_fn(|_| None);
    let mut rest = d;
    let mut alpha = Some(alpha);
    for (index, slot) in team.iter_mut().take(members).enumerate() {
        let mine = index * parts.count / members..(index + 1) * parts.count / members;
        let span = parts.span(mine.clone());
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(span.len());
        rest = tail;
        let member = Member {
            history,
            g,
            h_diag,
            parts,
            mine,
            d: chunk,
            offset: span.start,
            alpha: alpha.take(),
            round: 0,
            inbox: F::ZERO,
            outbox: F::ZERO,
        };
        *slot = Some((member, F::ZERO));
    }
    debug_assert!(rest.is_empty());
    let ran = team::run(&mut team[..members], |state, _index, _members, barrier| {
        let (member, gtd) = state.as_mut().expect("every member was set up");
        *gtd = dispatch(
            #[inline(always)]
            || member.run(Some((&exchange, barrier))),
        );
    });
    ran.then(|| team[0].as_ref().expect("the leader").1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lbfgs::vector_ops::axpy;

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
                if let Some(gtd) = two_loop_team(&g, &h, 0.9, &mut al_team, &mut d, members) {
                    assert_eq!(d, expected, "{members} members");
                    assert_eq!(al_team, al);
                    assert_eq!(gtd.to_bits(), dot(&g, &expected).to_bits());
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
            h.push(&y, &s, rho).unwrap();
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
            let gtd = two_loop(&g, &h, 0.7, &mut al, &mut d);
            assert_eq!(d, unfused(&g, &h, 0.7), "n = {n}");
            assert_eq!(gtd.to_bits(), dot(&g, &d).to_bits());
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
