//! The L-BFGS memory: the last `m` curvature pairs `(s_i, y_i)` and `ρ_i = 1/(y_iᵀs_i)`.
//!
//! The pairs live in two flat buffers of `(m + 1) × n` elements allocated once,
//! used as a ring. The extra slot is where the next pair is computed
//! ([`History::staging`]): torch only keeps a pair whose `yᵀs > 1e-10`, and only
//! knows that once the pair has been computed, so the candidate must not
//! overwrite the oldest pair before it is accepted ([`History::commit`]).
//! Nothing is allocated or copied when a pair is added or evicted.

use crate::element::Element;

pub struct History<F> {
    /// Elements per vector.
    dim: usize,
    /// `m`: how many pairs are kept.
    capacity: usize,
    /// `y_i` (torch's `old_dirs`), one vector per slot.
    dirs: Vec<F>,
    /// `s_i` (torch's `old_stps`), one vector per slot.
    steps: Vec<F>,
    /// `ρ_i` (torch's `ro`), one per slot.
    rho: Vec<F>,
    /// Slot of the oldest pair.
    head: usize,
    len: usize,
}

impl<F: Element> History<F> {
    /// An empty memory of `capacity` pairs of `dim`-element vectors.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn new(dim: usize, capacity: usize) -> Self {
        assert!(capacity >= 1, "an L-BFGS history holds at least one pair");
        let slots = capacity + 1;
        History {
            dim,
            capacity,
            dirs: vec![F::ZERO; slots * dim],
            steps: vec![F::ZERO; slots * dim],
            rho: vec![F::ZERO; slots],
            head: 0,
            len: 0,
        }
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

    fn slots(&self) -> usize {
        self.capacity + 1
    }

    /// Slot of pair `i`, counted from the oldest (0) to the newest (`len − 1`).
    #[inline]
    fn slot(&self, i: usize) -> usize {
        debug_assert!(i <= self.len);
        (self.head + i) % self.slots()
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

    /// The spare slot's `(y, s)` buffers, where the next candidate pair is
    /// written. They hold no pair until [`commit`](Self::commit).
    pub fn staging(&mut self) -> (&mut [F], &mut [F]) {
        let range = self.range(self.slot(self.len));
        (&mut self.dirs[range.clone()], &mut self.steps[range])
    }

    /// Accepts the staged pair as the newest, with `ρ = rho`; evicts the oldest
    /// pair if the memory is full.
    pub fn commit(&mut self, rho: F) {
        let slot = self.slot(self.len);
        self.rho[slot] = rho;
        if self.len == self.capacity {
            self.head = (self.head + 1) % self.slots();
        } else {
            self.len += 1;
        }
    }

    /// Appends a copy of a pair (restoring a saved memory).
    pub fn push(&mut self, y: &[F], s: &[F], rho: F) {
        assert!(y.len() == self.dim && s.len() == self.dim, "history vector of the wrong length");
        let (y_slot, s_slot) = self.staging();
        y_slot.copy_from_slice(y);
        s_slot.copy_from_slice(s);
        self.commit(rho);
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Changes how many pairs are kept, keeping the newest ones. This allocates;
    /// it only happens when the optimizer's `history_size` is changed.
    pub fn set_capacity(&mut self, capacity: usize) {
        if capacity == self.capacity {
            return;
        }
        let mut resized = History::new(self.dim, capacity);
        let keep = self.len.min(capacity);
        for i in self.len - keep..self.len {
            resized.push(self.dir(i), self.step(i), self.rho(i));
        }
        *self = resized;
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
            h.push(&y, &s, 10.0 * k as f64);
        }
        assert_eq!(contents(&h), vec![(3.0, -3.0, 30.0), (4.0, -4.0, 40.0), (5.0, -5.0, 50.0)]);
    }

    #[test]
    fn a_staged_pair_that_is_not_committed_changes_nothing() {
        let mut h = History::<f64>::new(2, 2);
        h.push(&[1.0, 1.0], &[2.0, 2.0], 0.5);
        h.push(&[3.0, 3.0], &[4.0, 4.0], 0.25);
        let before = contents(&h);
        let (y, s) = h.staging();
        y.fill(9.0);
        s.fill(9.0);
        assert_eq!(contents(&h), before);
        h.commit(1.0);
        assert_eq!(contents(&h), vec![(3.0, 4.0, 0.25), (9.0, 9.0, 1.0)]);
    }

    #[test]
    fn resizing_keeps_the_newest_pairs() {
        let mut h = History::<f64>::new(1, 4);
        for k in 0..6 {
            h.push(&[k as f64], &[k as f64], k as f64);
        }
        h.set_capacity(2);
        assert_eq!(contents(&h), vec![(4.0, 4.0, 4.0), (5.0, 5.0, 5.0)]);
        h.set_capacity(5);
        h.push(&[6.0], &[6.0], 6.0);
        assert_eq!(contents(&h).len(), 3);
        h.clear();
        assert!(h.is_empty());
    }
}
