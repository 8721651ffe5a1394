//! The L-BFGS memory: the last `m` curvature pairs `(s_i, y_i)` and `ρ_i = 1/(y_iᵀs_i)`.
//!
//! Memory grows as pairs arrive, as torch's lists do: each pair lives in two
//! vectors of its own, allocated (fallibly) the first time a slot is needed,
//! so a `history_size` of a million costs nothing until a million pairs have
//! been accepted. The slots are used as a ring of at most `m + 1`: the extra
//! slot is where the next pair is computed ([`History::staging`]), because
//! torch only keeps a pair whose `yᵀs > 1e-10` and only knows that once the
//! pair has been computed, so the candidate must not overwrite the oldest pair
//! before it is accepted ([`History::commit`]). Once `m + 1` slots exist,
//! adding and evicting pairs allocates and copies nothing.

use super::memory::{try_grow, try_zeroed};
use crate::element::Element;
use crate::error::OptimError;

/// One slot of the ring: a pair, or room for one.
struct Slot<F> {
    /// `y_i` (torch's `old_dirs` entry).
    dir: Vec<F>,
    /// `s_i` (torch's `old_stps` entry).
    step: Vec<F>,
    /// `ρ_i` (torch's `ro` entry).
    rho: F,
}

pub struct History<F> {
    /// Elements per vector.
    dim: usize,
    /// `m`: how many pairs are kept.
    capacity: usize,
    /// At most `capacity + 1`. While fewer exist the ring has never wrapped
    /// (`head == 0`), so a new slot can be appended without reordering.
    slots: Vec<Slot<F>>,
    /// Slot of the oldest pair.
    head: usize,
    len: usize,
}

impl<F: Element> History<F> {
    /// An empty memory of `capacity` pairs of `dim`-element vectors. Allocates nothing.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn new(dim: usize, capacity: usize) -> Self {
        assert!(capacity >= 1, "an L-BFGS history holds at least one pair");
        History { dim, capacity, slots: Vec::new(), head: 0, len: 0 }
    }

    /// A memory holding `pairs` (`(y, s, ρ)`, oldest first), which it takes
    /// over without copying.
    ///
    /// # Panics
    /// If `capacity` is 0, there are more pairs than `capacity`, or a vector does
    /// not have `dim` elements (callers check these first).
    pub fn from_pairs(dim: usize, capacity: usize, pairs: Vec<(Vec<F>, Vec<F>, F)>) -> Result<Self, OptimError> {
        let mut history = History::new(dim, capacity);
        assert!(pairs.len() <= capacity, "more pairs than the history holds");
        try_grow(&mut history.slots, pairs.len(), "the L-BFGS history")?;
        for (dir, step, rho) in pairs {
            assert!(dir.len() == dim && step.len() == dim, "history vector of the wrong length");
            history.slots.push(Slot { dir, step, rho });
        }
        history.len = history.slots.len();
        Ok(history)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slot of pair `i`, counted from the oldest (0) to the newest (`len − 1`);
    /// `i = len` is the staging slot.
    #[inline]
    fn slot(&self, i: usize) -> usize {
        debug_assert!(i <= self.len && i < self.slots.len() && self.head < self.slots.len().max(1));
        // `(head + i) % slots`, without a division: both are below `slots`.
        let slot = self.head + i;
        if slot >= self.slots.len() { slot - self.slots.len() } else { slot }
    }

    #[inline]
    fn pair(&self, i: usize) -> &Slot<F> {
        assert!(i < self.len, "history index out of range");
        &self.slots[self.slot(i)]
    }

    /// `y_i`, oldest first.
    #[inline]
    pub fn dir(&self, i: usize) -> &[F] {
        &self.pair(i).dir
    }

    /// `s_i`, oldest first.
    #[inline]
    pub fn step(&self, i: usize) -> &[F] {
        &self.pair(i).step
    }

    /// `ρ_i = 1/(y_iᵀs_i)`, oldest first.
    #[inline]
    pub fn rho(&self, i: usize) -> F {
        self.pair(i).rho
    }

    /// The spare slot's `(y, s)` buffers, where the next candidate pair is
    /// written; they hold no pair until [`commit`](Self::commit). The first time
    /// a slot is needed its vectors are allocated; that can fail.
    pub fn staging(&mut self) -> Result<(&mut [F], &mut [F]), OptimError> {
        if self.slots.len() == self.len {
            // Only before the ring is full: the memory grows by one slot.
            debug_assert!(self.head == 0 && self.len <= self.capacity);
            try_grow(&mut self.slots, 1, "the L-BFGS history")?;
            let dir = try_zeroed(self.dim, "an L-BFGS history vector (old_dirs)")?;
            let step = try_zeroed(self.dim, "an L-BFGS history vector (old_stps)")?;
            self.slots.push(Slot { dir, step, rho: F::ZERO });
        }
        let slot = self.slot(self.len);
        let Slot { dir, step, .. } = &mut self.slots[slot];
        Ok((dir, step))
    }

    /// Accepts the staged pair as the newest, with `ρ = rho`; evicts the oldest
    /// pair if the memory is full.
    ///
    /// # Panics
    /// If nothing was staged.
    pub fn commit(&mut self, rho: F) {
        assert!(self.slots.len() > self.len, "commit without a staged pair");
        let slot = self.slot(self.len);
        self.slots[slot].rho = rho;
        if self.len == self.capacity {
            self.head = (self.head + 1) % self.slots.len();
        } else {
            self.len += 1;
        }
    }

    /// Appends a copy of a pair.
    pub fn push(&mut self, y: &[F], s: &[F], rho: F) -> Result<(), OptimError> {
        assert!(y.len() == self.dim && s.len() == self.dim, "history vector of the wrong length");
        let (y_slot, s_slot) = self.staging()?;
        y_slot.copy_from_slice(y);
        s_slot.copy_from_slice(s);
        self.commit(rho);
        Ok(())
    }

    /// Forgets every pair and frees their memory.
    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.head = 0;
        self.len = 0;
    }

    /// Changes how many pairs are kept, keeping the newest ones and freeing the
    /// memory of the others. Allocates nothing.
    pub fn set_capacity(&mut self, capacity: usize) {
        assert!(capacity >= 1, "an L-BFGS history holds at least one pair");
        if capacity == self.capacity {
            return;
        }
        // Oldest pair first, at slot 0, so that the ring may grow again.
        self.slots.rotate_left(self.head);
        self.head = 0;
        let keep = self.len.min(capacity);
        self.slots.drain(..self.len - keep);
        self.len = keep;
        // At most one spare slot stays.
        self.slots.truncate(keep + 1);
        self.capacity = capacity;
    }

    /// Bytes held by the stored vectors (spare slot included).
    pub fn allocated_bytes(&self) -> usize {
        self.slots.len() * 2 * self.dim * std::mem::size_of::<F>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(value: f64, dim: usize) -> (Vec<f64>, Vec<f64>) {
        (vec![value; dim], vec![-value; dim])
    }

    fn contents(h: &History<f64>) -> Vec<(f64, f64, f64)> {
        (0..h.len()).map(|i| (h.dir(i)[0], h.step(i)[0], h.rho(i))).collect()
    }

    #[test]
    fn keeps_the_newest_pairs_oldest_first() {
        let mut h = History::<f64>::new(3, 3);
        for k in 1..=5 {
            let (y, s) = pair(k as f64, 3);
            h.push(&y, &s, 10.0 * k as f64).unwrap();
        }
        assert_eq!(contents(&h), vec![(3.0, -3.0, 30.0), (4.0, -4.0, 40.0), (5.0, -5.0, 50.0)]);
    }

    #[test]
    fn memory_grows_with_the_pairs_stored() {
        let mut h = History::<f64>::new(1000, 1 << 40);
        assert_eq!(h.allocated_bytes(), 0);
        for k in 0..3 {
            h.push(&[k as f64; 1000], &[0.0; 1000], 1.0).unwrap();
            assert_eq!(h.allocated_bytes(), (k + 1) * 2 * 1000 * 8);
        }
        // A full ring of m + 1 slots stops growing.
        let mut h = History::<f64>::new(4, 2);
        for k in 0..10 {
            h.push(&[k as f64; 4], &[0.0; 4], 1.0).unwrap();
        }
        assert_eq!(h.allocated_bytes(), 3 * 2 * 4 * 8);
        h.clear();
        assert_eq!(h.allocated_bytes(), 0);
    }

    #[test]
    fn a_staged_pair_that_is_not_committed_changes_nothing() {
        let mut h = History::<f64>::new(2, 2);
        h.push(&[1.0, 1.0], &[2.0, 2.0], 0.5).unwrap();
        h.push(&[3.0, 3.0], &[4.0, 4.0], 0.25).unwrap();
        let before = contents(&h);
        let (y, s) = h.staging().unwrap();
        y.fill(9.0);
        s.fill(9.0);
        assert_eq!(contents(&h), before);
        h.commit(1.0);
        assert_eq!(contents(&h), vec![(3.0, 4.0, 0.25), (9.0, 9.0, 1.0)]);
    }

    #[test]
    fn resizing_keeps_the_newest_pairs_and_frees_the_rest() {
        let mut h = History::<f64>::new(1, 4);
        for k in 0..6 {
            h.push(&[k as f64], &[k as f64], k as f64).unwrap();
        }
        h.set_capacity(2);
        assert_eq!(contents(&h), vec![(4.0, 4.0, 4.0), (5.0, 5.0, 5.0)]);
        assert_eq!(h.allocated_bytes(), 3 * 2 * 8);
        h.set_capacity(5);
        h.push(&[6.0], &[6.0], 6.0).unwrap();
        h.push(&[7.0], &[7.0], 7.0).unwrap();
        assert_eq!(contents(&h).len(), 4);
        assert_eq!(contents(&h)[0], (4.0, 4.0, 4.0));
        h.clear();
        assert!(h.is_empty());
    }

    #[test]
    fn restored_pairs_are_taken_over() {
        let pairs = vec![(vec![1.0, 2.0], vec![3.0, 4.0], 0.5), (vec![5.0, 6.0], vec![7.0, 8.0], 0.25)];
        let pointer = pairs[0].0.as_ptr();
        let mut h = History::from_pairs(2, 3, pairs).unwrap();
        assert_eq!(h.dir(0).as_ptr(), pointer);
        assert_eq!(contents(&h), vec![(1.0, 3.0, 0.5), (5.0, 7.0, 0.25)]);
        h.push(&[9.0, 9.0], &[9.0, 9.0], 1.0).unwrap();
        h.push(&[10.0, 10.0], &[10.0, 10.0], 2.0).unwrap();
        assert_eq!(contents(&h), vec![(5.0, 7.0, 0.25), (9.0, 9.0, 1.0), (10.0, 10.0, 2.0)]);
    }
}
