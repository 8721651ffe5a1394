//! A team of pool threads that runs one computation in lockstep.
//!
//! The two-loop recursion is a chain of `2m` dependent steps, each a pass over
//! `n` elements followed by a dot product that the next step needs. Handing each
//! step to the pool separately costs a wake-up per step; a team instead keeps
//! `members` threads of the one pool inside a single computation, each owning a
//! fixed slice of the vectors, and meets at a [`Barrier`] (a spin wait of well
//! under a microsecond) after every step.
//!
//! A team only pays when its threads get cores: on a machine busy with other
//! work, a member that is descheduled holds every other member at the next
//! barrier. [`Choice`] measures both ways of running and keeps to the faster.
//!
//! Each member owns what it writes: [`run`] hands member `i` exclusive
//! (`&mut`) access to `states[i]` and nothing else, so no two threads ever hold
//! mutable access to the same memory; data every member reads is shared as
//! `&`, and values that must travel between members go through atomics
//! published at a [`Barrier`].
//!
//! Only one team runs at a time. While another team is running (another
//! optimizer stepping on another Python thread), [`run`] declines and the caller
//! computes on its own thread; its results are bitwise the same.

use crate::pool;
use std::hint::spin_loop;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

/// Spins before a waiting member starts yielding its core.
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

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

/// The largest team.
pub const MAX_MEMBERS: usize = 64;

/// Runs `work(&mut states[member], member, members, barrier)` for every
/// `member` in `0..members` (`members = states.len()`), each on its own pool
/// thread, all at once; each member has exclusive access to its own state.
/// Returns `false` without running anything if there are fewer than two
/// states, more than [`MAX_MEMBERS`] or than pool threads, or another team is
/// running.
pub fn run<S, W>(states: &mut [S], work: W) -> bool
where
    S: Send,
    W: Fn(&mut S, usize, usize, &Barrier) + Sync,
{
    let members = states.len();
    if !(2..=MAX_MEMBERS).contains(&members) {
        return false;
    }
    let _guard = match TEAM.try_lock() {
        Ok(guard) => guard,
        // A panic in an earlier team leaves nothing inconsistent behind.
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return false,
    };
    let pool = pool::pool();
    if members > pool.current_num_threads() {
        return false;
    }
    // Each state is handed over once, to the member of its index: the mutex
    // only moves the `&mut` to that member's thread (it is never contended).
    let mut handover: [Mutex<Option<&mut S>>; MAX_MEMBERS] = std::array::from_fn(|_| Mutex::new(None));
    for (cell, state) in handover.iter_mut().zip(states.iter_mut()) {
        *cell.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state);
    }
    let barrier = Barrier::new(members);
    // `broadcast` runs the closure once on every thread of the pool, so each
    // member has a thread of its own and every member can wait for the others.
    pool.broadcast(|context| {
        let member = context.index();
        if member >= members {
            return;
        }
        let state = handover[member]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .expect("each member runs once");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(state, member, members, &barrier))) {
            barrier.abandoned.store(true, Ordering::Relaxed);
            resume_unwind(panic);
        }
    });
    true
}

/// Chooses between a team and the calling thread for one kind of work, by the
/// measured time per unit of work of each (an exponential moving average).
///
/// The option not preferred is tried again now and then, for a short burst
/// whose first run is not recorded: a team's first run after a pause pays for
/// waking its threads, and whether later runs do depends on how long the
/// caller works in between, which the burst measures. The pause before the
/// next try doubles each time the option loses and is never shorter than what
/// keeps the tries' cost to about 2% of the time spent. Results never depend
/// on the choice, only speed does.
pub struct Choice {
    /// Seconds per unit of work, as `f64` bits; 0 until measured.
    team: AtomicU64,
    solo: AtomicU64,
    /// Calls until the option not preferred is tried again, and that pause.
    countdown: AtomicU64,
    pause: AtomicU64,
    /// Runs left in the current try (0: not trying), and which option it tries.
    burst: AtomicU64,
    trying_team: AtomicBool,
    /// The next run is a try's first: not recorded.
    skip: AtomicBool,
}

const FIRST_PAUSE: u64 = 16;
const LONGEST_PAUSE: u64 = 1 << 20;
/// Runs per try: one to wake up, two measured.
const BURST: u64 = 3;

impl Choice {
    pub const fn new() -> Self {
        Choice {
            team: AtomicU64::new(0),
            solo: AtomicU64::new(0),
            countdown: AtomicU64::new(FIRST_PAUSE),
            pause: AtomicU64::new(FIRST_PAUSE),
            burst: AtomicU64::new(0),
            trying_team: AtomicBool::new(false),
            skip: AtomicBool::new(false),
        }
    }

    fn load(slot: &AtomicU64) -> f64 {
        f64::from_bits(slot.load(Ordering::Relaxed))
    }

    fn start_try(&self, team: bool) -> bool {
        self.burst.store(BURST, Ordering::Relaxed);
        self.trying_team.store(team, Ordering::Relaxed);
        self.skip.store(true, Ordering::Relaxed);
        team
    }

    /// Whether the next run should use a team.
    pub fn prefer_team(&self) -> bool {
        if self.burst.load(Ordering::Relaxed) > 0 {
            return self.trying_team.load(Ordering::Relaxed);
        }
        let (team, solo) = (Self::load(&self.team), Self::load(&self.solo));
        if team == 0.0 {
            return self.start_try(true);
        }
        if solo == 0.0 {
            return self.start_try(false);
        }
        let preferred = team <= solo;
        let left = self.countdown.load(Ordering::Relaxed);
        if left > 0 {
            self.countdown.store(left - 1, Ordering::Relaxed);
            return preferred;
        }
        self.start_try(!preferred)
    }

    /// Records how long a run took per unit of work.
    pub fn record(&self, used_team: bool, seconds_per_unit: f64) {
        let burst = self.burst.load(Ordering::Relaxed);
        if burst > 0 {
            self.burst.store(burst - 1, Ordering::Relaxed);
        }
        if self.skip.swap(false, Ordering::Relaxed) {
            return;
        }
        let (mine, other) = if used_team { (&self.team, &self.solo) } else { (&self.solo, &self.team) };
        let old = Self::load(mine);
        // A try's first measured run replaces the option's estimate, which is
        // as old as the previous try.
        let new =
            if old == 0.0 || burst == BURST - 1 { seconds_per_unit } else { 0.75 * old + 0.25 * seconds_per_unit };
        mine.store(new.to_bits(), Ordering::Relaxed);
        let (mine, other) = (new, Self::load(other));
        if burst == 1 && other > 0.0 {
            // A try ended. If the option tried lost, wait longer before the next.
            let pause = if mine > other {
                let ratio = mine / other;
                let affordable = (50.0 * BURST as f64 * ratio) as u64;
                (self.pause.load(Ordering::Relaxed) * 2).max(affordable).min(LONGEST_PAUSE)
            } else {
                FIRST_PAUSE
            };
            self.pause.store(pause, Ordering::Relaxed);
            self.countdown.store(pause, Ordering::Relaxed);
        }
    }
}

impl Default for Choice {
    fn default() -> Self {
        Choice::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Runs `calls` choices on an option pair whose costs are given.
    fn simulate(choice: &Choice, calls: usize, team_cost: f64, solo_cost: f64) -> (usize, f64) {
        let (mut team_runs, mut spent) = (0, 0.0);
        for _ in 0..calls {
            let team = choice.prefer_team();
            let cost = if team { team_cost } else { solo_cost };
            team_runs += team as usize;
            spent += cost;
            choice.record(team, cost);
        }
        (team_runs, spent)
    }

    #[test]
    fn choice_keeps_to_the_faster_option_and_tries_the_other_rarely() {
        let choice = Choice::new();
        // The team is 50 times slower: after the first tries it is left alone,
        // and the tries cost a few percent at most.
        let (team_runs, spent) = simulate(&choice, 20_000, 50.0, 1.0);
        assert!(team_runs < 40, "{team_runs}");
        assert!(spent < 1.15 * 20_000.0, "{spent}");
        // When the team becomes faster, the choice follows within a few tries.
        let (team_runs, _) = simulate(&choice, 200_000, 0.5, 1.0);
        assert!(team_runs > 150_000, "{team_runs}");
        assert!(choice.prefer_team());
    }

    #[test]
    fn a_try_does_not_record_its_first_run() {
        let choice = Choice::new();
        assert!(choice.prefer_team());
        choice.record(true, 1e9); // waking the threads: ignored
        assert!(choice.prefer_team());
        choice.record(true, 2.0);
        assert!(choice.prefer_team());
        choice.record(true, 2.0);
        assert!(!choice.prefer_team()); // now the solo option is tried
        choice.record(false, 1e9);
        choice.record(false, 1.0);
        choice.record(false, 1.0);
        assert!(!choice.prefer_team());
    }

    #[test]
    fn members_meet_at_every_barrier() {
        pool::set_num_threads(3).unwrap();
        let slots: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        let mut owned = [0u64; 3];
        let ran = run(&mut owned, |mine, member, members, barrier| {
            for round in 1..=200u64 {
                slots[member].store(round, Ordering::Relaxed);
                *mine += member as u64;
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
            assert_eq!(owned, [0, 200, 400]);
        }
        assert!(!run(&mut [0u8], |_, _, _, _| unreachable!()));
        assert!(!run(&mut [0u8; MAX_MEMBERS + 1], |_, _, _, _| unreachable!()));
    }
}
