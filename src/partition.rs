//! Splitting a multi-tensor step across threads.
//!
//! An optimizer step over a param group touches many tensors of very different
//! sizes. Rather than one task per tensor (which leaves threads idle when one
//! tensor dominates, and pays per-task overhead when there are thousands of tiny
//! ones), the elements of all tensors are viewed as one concatenated range that
//! is cut into equal contiguous pieces, one per thread. Steps below
//! [`MIN_ELEMENTS_PER_TASK`] elements per thread run on the calling thread: waking
//! a worker costs microseconds, more than the update itself.
//!
//! Element-wise kernels give the same result whatever the split, so results do
//! not depend on the thread count.

use crate::pool;
use rayon::prelude::*;
use std::marker::PhantomData;
use std::ops::Range;

/// Below this many elements per thread, the step runs on the calling thread.
pub const MIN_ELEMENTS_PER_TASK: usize = 1 << 15;

/// Piece boundaries are rounded to this many elements (a 64-byte cache line of
/// `f32`), so two threads never write the same cache line of one tensor.
const BOUNDARY_ALIGNMENT: usize = 16;

/// Calls `work(tensor_index, element_range)` for pieces that together cover every
/// element of every tensor exactly once. `lengths[i]` is the element count of tensor `i`.
pub fn for_each_piece<W>(lengths: &[usize], work: W)
where
    W: Fn(usize, Range<usize>) + Sync,
{
    let total: usize = lengths.iter().sum();
    let threads = pool::num_threads();
    let tasks = (total / MIN_ELEMENTS_PER_TASK).clamp(1, threads);
    if tasks == 1 {
        for (index, &len) in lengths.iter().enumerate() {
            if len > 0 {
                work(index, 0..len);
            }
        }
        return;
    }
    let starts: Vec<usize> = lengths
        .iter()
        .scan(0usize, |offset, &len| {
            let start = *offset;
            *offset += len;
            Some(start)
        })
        .collect();
    let boundary = |task: usize| -> usize {
        if task == tasks { total } else { (total / tasks * task) / BOUNDARY_ALIGNMENT * BOUNDARY_ALIGNMENT }
    };
    pool::pool().install(|| {
        (0..tasks).into_par_iter().for_each(|task| {
            run_range(lengths, &starts, boundary(task)..boundary(task + 1), &work);
        });
    });
}

/// Runs `work` on the parts of each tensor that fall inside `global` (a range of
/// the concatenated elements).
fn run_range<W>(lengths: &[usize], starts: &[usize], global: Range<usize>, work: &W)
where
    W: Fn(usize, Range<usize>),
{
    // The first tensor that ends after `global.start`.
    let first = starts.partition_point(|&start| start <= global.start).saturating_sub(1);
    for index in first..lengths.len() {
        let start = starts[index];
        if start >= global.end {
            break;
        }
        let lo = global.start.max(start) - start;
        let hi = global.end.min(start + lengths[index]) - start;
        if lo < hi {
            work(index, lo..hi);
        }
    }
}

/// A mutable slice that several threads may write to, each through a disjoint
/// range. It exists because `for_each_piece` hands out sub-ranges of the same
/// tensor to different threads, which `&mut [T]` cannot express.
pub struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: a `SharedMut` is an exclusive borrow of the slice, which may move to
// another thread when its elements can (`T: Send`).
unsafe impl<T: Send> Send for SharedMut<'_, T> {}
// SAFETY: through a shared `SharedMut`, elements are only reached by `piece`,
// whose contract requires the ranges of live pieces to be disjoint, so no two
// threads reach the same element; each thread gets `&mut T`, which needs `T: Send`.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub fn new(slice: &'a mut [T]) -> Self {
        SharedMut { ptr: slice.as_mut_ptr(), len: slice.len(), _borrow: PhantomData }
    }

    /// The elements in `range`.
    ///
    /// # Safety
    /// No two live results of `piece` on the same `SharedMut` may overlap.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub unsafe fn piece(&self, range: Range<usize>) -> &mut [T] {
        assert!(range.start <= range.end && range.end <= self.len, "piece out of bounds");
        // SAFETY: in bounds (checked above); disjointness is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.end - range.start) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn pieces_cover_every_element_once() {
        let lengths = [0usize, 5, 1 << 17, 3, 0, 1 << 16, 7];
        let seen = Mutex::new(lengths.iter().map(|&n| vec![0u8; n]).collect::<Vec<_>>());
        for_each_piece(&lengths, |index, range| {
            let mut seen = seen.lock().unwrap();
            for i in range {
                seen[index][i] += 1;
            }
        });
        for counts in seen.into_inner().unwrap() {
            assert!(counts.iter().all(|&c| c == 1));
        }
    }
}
