//! The memory-bandwidth ceiling an optimizer step is measured against.
//!
//! An optimizer step is memory-bound: Adam reads θ, g, m, v and writes θ, m, v.
//! [`stream_update`] has exactly that access pattern with almost no arithmetic:
//! one fused pass that adds the read-only array to each of the updated arrays,
//! split across threads the same way as the optimizer kernels. Its speed is what
//! the machine's memory allows for that traffic, so benchmarks report a step's
//! time as a fraction of it, measured in the same run.

use crate::element::Element;
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// The most updated arrays per tensor (Adam with amsgrad writes θ, m, v, v̂max).
pub const MAX_UPDATED: usize = 4;

/// One tensor: an array that is only read, and the arrays read and written back.
pub struct StreamTensor<'a, F> {
    pub read: &'a [F],
    pub updated: Vec<&'a mut [F]>,
}

/// `x += read` for every updated array `x` of every tensor, in place, in one
/// pass over the elements. Every tensor must have 1 to [`MAX_UPDATED`] updated arrays.
pub fn stream_update<F: Element>(tensors: &mut [StreamTensor<'_, F>]) -> Result<(), OptimError> {
    for (index, tensor) in tensors.iter().enumerate() {
        let expected = tensor.read.len();
        if !(1..=MAX_UPDATED).contains(&tensor.updated.len()) {
            return Err(OptimError::InvalidSetting(format!(
                "tensor {index} has {} updated arrays; 1 to {MAX_UPDATED} are supported",
                tensor.updated.len()
            )));
        }
        if let Some(bad) = tensor.updated.iter().find(|x| x.len() != expected) {
            return Err(OptimError::LengthMismatch { index, what: "updated array", expected, got: bad.len() });
        }
    }
    let lengths: Vec<usize> = tensors.iter().map(|t| t.read.len()).collect();
    let shared: Vec<(&[F], Vec<SharedMut<'_, F>>)> =
        tensors.iter_mut().map(|t| (t.read, t.updated.iter_mut().map(|x| SharedMut::new(x)).collect())).collect();
    for_each_piece(&lengths, |index, range| {
        let (read, updated) = &shared[index];
        let read = &read[range.clone()];
        // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
        let mut pieces: Vec<&mut [F]> = updated.iter().map(|x| unsafe { x.piece(range.clone()) }).collect();
        match pieces.as_mut_slice() {
            [a] => dispatch(
                #[inline(always)]
                || add_into([a], read),
            ),
            [a, b] => dispatch(
                #[inline(always)]
                || add_into([a, b], read),
            ),
            [a, b, c] => dispatch(
                #[inline(always)]
                || add_into([a, b, c], read),
            ),
            [a, b, c, d] => dispatch(
                #[inline(always)]
                || add_into([a, b, c, d], read),
            ),
            _ => unreachable!("checked above"),
        }
    });
    Ok(())
}

#[inline(always)]
fn add_into<F: Element, const K: usize>(targets: [&mut &mut [F]; K], read: &[F]) {
    let n = read.len();
    let mut targets = targets.map(|t| &mut t[..n]);
    for i in 0..n {
        let r = read[i];
        for target in targets.iter_mut() {
            target[i] = target[i] + r;
        }
    }
}
