//! A team of pool threads that runs one computation in lockstep.
//!
//! The two-loop recursion is a chain of `2m` dependent steps, each a pass over
//! `n` elements followed by a dot product that the next step needs. Handing each
//! step to the pool separately costs a wake-up per step; a team instead keeps
//! `members` threads of the one pool inside a single computation, each owning a
//! fixed slice of the vectors, and meets at a [`Barrier`] (a spin wait of well
//! under a microsecond) after every step.
//!
//! Only one team runs at a time. While another team is running (another
//! optimizer stepping on another Python thread), [`run`] declines and the caller
//! computes on its own thread; its results are bitwise the same.

use crate::pool;
use std::hint::spin_loop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

/// Spins before a waiting member starts yielding its core.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

static TEAM: Mutex<()> = Mutex::new(());

/// A reusable barrier for the members of one team.
pub struct Barrier {
    members: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    abandoned: AtomicBool,
}

impl Barrier {
    fn new(members: usize) -> Self {
        Barrier {
            members,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
        }
    }

    /// Waits until every member has arrived. Everything a member wrote before
    /// arriving is visible to every member after it returns.
    ///
    /// # Panics
    /// If another member panicked (so the wait would never end).
    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.members {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.store(generation.wrapping_add(1), Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.abandoned.load(Ordering::Relaxed) {
                panic!("another member of the team panicked");
            }
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// How many members a team may have now: the pool's size.
pub fn available_members() -> usize {
    pool::num_threads()
}

/// Runs `work(member, members, barrier)` for `member` in `0..members`, each on
/// its own pool thread, all at once. Returns `false` without running anything if
/// fewer than two threads are available or another team is running.
pub fn run<W>(members: usize, work: W) -> bool
where
    W: Fn(usize, usize, &Barrier) + Sync,
{
    if members < 2 {
        return false;
    }
    let _guard = match TEAM.try_lock() {
        Ok(guard) => guard,
        // A panic in an earlier team leaves nothing inconsistent behind.
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return false,
    };
    let pool = pool::pool();
    let members = members.min(pool.current_num_threads());
    if members < 2 {
        return false;
    }
    let barrier = Barrier::new(members);
    // `broadcast` runs the closure once on every thread of the pool, so each
    // member has a thread of its own and every member can wait for the others.
    pool.broadcast(|context| {
        let member = context.index();
        if member >= members {
            return;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(member, members, &barrier))) {
            barrier.abandoned.store(true, Ordering::Relaxed);
            resume_unwind(panic);
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn members_meet_at_every_barrier() {
        pool::set_num_threads(3).unwrap();
        let slots: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        let ran = run(3, |member, members, barrier| {
            for round in 1..=200u64 {
                slots[member].store(round, Ordering::Relaxed);
                barrier.wait();
                for slot in &slots[..members] {
                    assert_eq!(slot.load(Ordering::Relaxed), round);
                }
                barrier.wait();
            }
        });
        // Another test's team may hold the lock; then nothing ran.
        if ran {
            assert!(slots.iter().all(|s| s.load(Ordering::Relaxed) == 200));
        }
        assert!(!run(1, |_, _, _| unreachable!()));
    }
}
