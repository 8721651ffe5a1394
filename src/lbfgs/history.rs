//! The L-BFGS memory: the last `m` curvature pairs `(s_i, y_i)` and `ρ_i = 1/(y_iᵀs_i)`.
//!
//! The pairs live in two flat buffers (all `y_i`, all `s_i`), one slot of `n`
//! elements per pair, used as a ring of at most `m + 1` slots: the extra slot
//! is where the next pair is computed ([`History::staging`]), because torch
//! only keeps a pair whose `yᵀs > 1e-10` and only knows that once the pair has
//! been computed, so the candidate must not overwrite the oldest pair before it
//! is accepted ([`History::commit`]).
//!
//! Memory grows as pairs arrive, as torch's lists do: a slot is added (and
//! written) only when a pair needs it, so a `history_size` of a million costs
//! nothing until that many pairs have been accepted. The buffers reserve room
//! geometrically (address space only: untouched pages cost no memory), so
//! growing is amortized and fallible. Once `m + 1` slots exist, adding and
//! evicting pairs allocates and copies nothing. Flat buffers keep each access
//! to a pair one multiplication away from its data, which the two-loop
//! recursion does `3m` times per iteration.

use super::memory::try_grow;
use crate::element::Element;
use crate::error::OptimError;

pub struct History<F> {
    /// Elements per vector.
    dim: usize,
    /// `m`: how many pairs are kept.
    capacity: usize,
    /// Slots that exist: at most `capacity + 1`. While fewer exist the ring has
    /// never wrapped (`head == 0`), so a slot can be appended without reordering.
    slots: usize,
    /// `y_i` (torch's `old_dirs`), `slots · dim` elements.
    dirs: Vec<F>,
    /// `s_i` (torch's `old_stps`), `slots · dim` elements.
    steps: Vec<F>,
    /// `ρ_i` (torch's `ro`), one per slot.
    rho: Vec<F>,
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
        History { dim, capacity, slots: 0, dirs: Vec::new(), steps: Vec::new(), rho: Vec::new(), head: 0, len: 0 }
    }

    /// A memory holding copies of `pairs` (`(y, s, ρ)`, oldest first).
    ///
    /// # Panics
    /// If `capacity` is 0, there are more pairs than `capacity`, or a vector does
    /// not have `dim` elements (callers check these first).
    pub fn from_pairs(dim: usize, capacity: usize, pairs: &[(Vec<F>, Vec<F>, F)]) -> Result<Self, OptimError> {
        assert!(pairs.len() <= capacity, "more pairs than the history holds");
        let mut history = History::new(dim, capacity);
        // Exactly the pairs, plus the slot the next pair is computed in.
        history.reserve_slots((pairs.len() + 1).min(capacity + 1))?;
        for (y, s, rho) in pairs {
            history.push(y, s, *rho)?;
        }
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
        debug_assert!(i <= self.len && i < self.slots && self.head < self.slots);
        // `(head + i) % slots` without a division: both are below `slots`.
        let slot = self.head + i;
        if slot >= self.slots { slot - self.slots } else { slot }
    }

    #[inline]
    fn range(&self, slot: usize) -> std::ops::Range<usize> {
        slot * self.dim..(slot + 1) * self.dim
    }

    /// `y_i`, oldest first.
    #[inline]
    pub fn dir(&self, i: usize) -> &[F] {
        assert!(i < self.len, "history index out of range");
        &self.dirs[self.range(self.slot(i))]
    }

    /// `s_i`, oldest first.
    #[inline]
    pub fn step(&self, i: usize) -> &[F] {
        assert!(i < self.len, "history index out of range");
        &self.steps[self.range(self.slot(i))]
    }

    /// `ρ_i = 1/(y_iᵀs_i)`, oldest first.
    #[inline]
    pub fn rho(&self, i: usize) -> F {
        assert!(i < self.len, "history index out of range");
        self.rho[self.slot(i)]
    }

    /// Makes room (address space) for `slots` slots in all.
    fn reserve_slots(&mut self, slots: usize) -> Result<(), OptimError> {
        let elements = slots
            .checked_mul(self.dim)
            .ok_or(OptimError::InvalidSetting("the L-BFGS history would exceed the address space".into()))?;
        let (dirs, steps, rho) = (self.dirs.len(), self.steps.len(), self.rho.len());
        try_grow(&mut self.dirs, elements.saturating_sub(dirs), "the L-BFGS history (old_dirs)")?;
        try_grow(&mut self.steps, elements.saturating_sub(steps), "the L-BFGS history (old_stps)")?;
        try_grow(&mut self.rho, slots.saturating_sub(rho), "the L-BFGS history (ro)")?;
        Ok(())
    }

    /// The spare slot's `(y, s)` buffers, where the next candidate pair is
    /// written; they hold no pair until [`commit`](Self::commit). Until the
    /// ring is full this adds a slot, which can fail.
    pub fn staging(&mut self) -> Result<(&mut [F], &mut [F]), OptimError> {
        if self.slots == self.len {
            debug_assert!(self.head == 0 && self.len <= self.capacity);
            let elements = (self.slots + 1) * self.dim;
            if self.dirs.capacity() < elements || self.steps.capacity() < elements || self.rho.capacity() == self.slots
            {
                // Double the room, up to the m + 1 slots a full ring needs; if
                // that much address space is refused, room for this slot only.
                let doubled = (2 * self.slots).clamp(self.slots + 1, self.capacity + 1);
                if self.reserve_slots(doubled).is_err() {
                    self.reserve_slots(self.slots + 1)?;
                }
            }
            self.dirs.resize(elements, F::ZERO);
            self.steps.resize(elements, F::ZERO);
            self.rho.push(F::ZERO);
            self.slots += 1;
        }
        let range = self.range(self.slot(self.len));
        Ok((&mut self.dirs[range.clone()], &mut self.steps[range]))
    }

    /// Accepts the staged pair as the newest, with `ρ = rho`; evicts the oldest
    /// pair if the memory is full.
    ///
    /// # Panics
    /// If nothing was staged.
    pub fn commit(&mut self, rho: F) {
        assert!(self.slots > self.len, "commit without a staged pair");
        let slot = self.slot(self.len);
        self.rho[slot] = rho;
        if self.len == self.capacity {
            self.head = if self.head + 1 == self.slots { 0 } else { self.head + 1 };
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
        *self = History::new(self.dim, self.capacity);
    }

    /// Changes how many pairs are kept, keeping the newest ones. The memory
    /// of the pairs dropped is freed: the kept ones are copied into new
    /// buffers, which can fail (then nothing changes).
    pub fn set_capacity(&mut self, capacity: usize) -> Result<(), OptimError> {
        assert!(capacity >= 1, "an L-BFGS history holds at least one pair");
        if capacity == self.capacity {
            return Ok(());
        }
        let keep = self.len.min(capacity);
        let mut resized = History::new(self.dim, capacity);
        resized.reserve_slots((keep + 1).min(capacity + 1))?;
        for i in self.len - keep..self.len {
            resized.push(self.dir(i), self.step(i), self.rho(i))?;
        }
        *self = resized;
        Ok(())
    }

    /// Bytes of the slots that exist (each holding a pair or staging one).
    pub fn allocated_bytes(&self) -> usize {
        self.slots * 2 * self.dim * std::mem::size_of::<F>()
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
        h.set_capacity(2).unwrap();
        assert_eq!(contents(&h), vec![(4.0, 4.0, 4.0), (5.0, 5.0, 5.0)]);
        assert_eq!(h.allocated_bytes(), 2 * 2 * 8);
        h.set_capacity(5).unwrap();
        h.push(&[6.0], &[6.0], 6.0).unwrap();
        h.push(&[7.0], &[7.0], 7.0).unwrap();
        assert_eq!(contents(&h).len(), 4);
        assert_eq!(contents(&h)[0], (4.0, 4.0, 4.0));
        h.clear();
        assert!(h.is_empty());
    }

    #[test]
    fn restored_pairs_continue_the_ring() {
        let pairs = vec![(vec![1.0, 2.0], vec![3.0, 4.0], 0.5), (vec![5.0, 6.0], vec![7.0, 8.0], 0.25)];
        let mut h = History::from_pairs(2, 3, &pairs).unwrap();
        assert_eq!(contents(&h), vec![(1.0, 3.0, 0.5), (5.0, 7.0, 0.25)]);
        h.push(&[9.0, 9.0], &[9.0, 9.0], 1.0).unwrap();
        h.push(&[10.0, 10.0], &[10.0, 10.0], 2.0).unwrap();
        assert_eq!(contents(&h), vec![(5.0, 7.0, 0.25), (9.0, 9.0, 1.0), (10.0, 10.0, 2.0)]);
    }
}
