//! The memory-bandwidth ceiling an optimizer step is measured against.
//!
//! An optimizer step is memory-bound: Adam reads θ, g, m, v and writes θ, m, v.
//! [`stream_update`] has exactly that access pattern with almost no arithmetic
//! (each updated array gets the read-only one added to it), split across threads
//! the same way as the optimizer kernels, so its speed is what the machine's
//! memory allows for that traffic. Benchmarks report a step's time as a fraction
//! of it, measured in the same run.

use crate::element::Element;
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// Elements per block: 16 KiB of `f64`, so a block of every array stays in L1/L2.
const BLOCK: usize = 2048;

/// One tensor: an array that is only read, and the arrays read and written back.
pub struct StreamTensor<'a, F> {
    pub read: &'a [F],
    pub updated: Vec<&'a mut [F]>,
}

/// `x += read` for every updated array `x` of every tensor, in place.
pub fn stream_update<F: Element>(tensors: &mut [StreamTensor<'_, F>]) -> Result<(), OptimError> {
    for (index, tensor) in tensors.iter().enumerate() {
        let expected = tensor.read.len();
        if let Some(bad) = tensor.updated.iter().find(|x| x.len() != expected) {
            return Err(OptimError::LengthMismatch { index, what: "updated array", expected, got: bad.len() });
        }
    }
    let lengths: Vec<usize> = tensors.iter().map(|t| t.read.len()).collect();
    let shared: Vec<(&[F], Vec<SharedMut<'_, F>>)> = tensors
        .iter_mut()
        .map(|t| (t.read, t.updated.iter_mut().map(|x| SharedMut::new(&mut **x)).collect()))
        .collect();
    for_each_piece(&lengths, |index, range| {
        let (read, updated) = &shared[index];
        // Walk the piece in cache-sized blocks so the read-only array comes from
        // memory once, as a fused optimizer pass reads its gradient once.
        for start in range.clone().step_by(BLOCK) {
            let block = start..(start + BLOCK).min(range.end);
            let read = &read[block.clone()];
            for target in updated {
                // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
                let target = unsafe { target.piece(block.clone()) };
                dispatch(
                    #[inline(always)]
                    || add_into(target, read),
                );
            }
        }
    });
    Ok(())
}

#[inline(always)]
fn add_into<F: Element>(target: &mut [F], read: &[F]) {
    for (x, &r) in target.iter_mut().zip(read) {
        *x = *x + r;
    }
}
