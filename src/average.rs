//! Weight averaging (torch's `swa_utils`): one in-place update of every
//! averaged tensor from the current weights, over all tensors at once.
//!
//! With `a` the average, `x` the current weight, in the element type with
//! torch's rounding (`⟦·⟧` rounds, `s(c)` is the Python float `c` rounded):
//!
//! ```text
//! Copy              a = x                                  (the first update)
//! Lerp(w)           a = lerp(a, x, s(w))                   get_ema_multi_avg_fn (w = 1 − decay),
//!                                                          get_swa_multi_avg_fn (w = 1 / (n + 1))
//! WeightedSum(d)    a = ⟦⟦s(d)·a⟧ + ⟦s(1 − d)·x⟧⟧          get_ema_avg_fn
//! RunningMean(n)    a = ⟦a + ⟦⟦x − a⟧ / (n + 1)⟧⟧          get_swa_avg_fn, AveragedModel's default on CPU
//! ```
//!
//! `lerp` is torch's two-sided form: `fma(w, x − a, a)` if `|w| < 0.5`,
//! else `fma(w − 1, x − a, x)` (one rounding each, `x − a` rounded).

use crate::element::Element;
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// How the averages are updated (see the module docs for the formulas).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AverageRule {
    Copy,
    Lerp {
        weight: f64,
    },
    WeightedSum {
        decay: f64,
    },
    /// `averaged` is the number of models averaged so far (`n_averaged`).
    RunningMean {
        averaged: u64,
    },
}

/// One averaged tensor and the current weights it is updated from, in the same element order.
pub struct AveragePair<'a, F> {
    pub average: &'a mut [F],
    pub current: &'a [F],
}

/// Per-call constants, rounded to the element type once.
#[derive(Clone, Copy)]
enum Coefficients<F> {
    Copy,
    Lerp { coefficient: F, from_average: bool },
    WeightedSum { decay: F, one_minus_decay: F },
    RunningMean { count: F },
}

impl<F: Element> Coefficients<F> {
    fn new(rule: AverageRule) -> Self {
        match rule {
            AverageRule::Copy => Coefficients::Copy,
            AverageRule::Lerp { weight } => {
                let weight = F::from_f64(weight);
                let from_average = weight.abs() < F::from_f64(0.5);
                let coefficient = if from_average { weight } else { weight - F::ONE };
                Coefficients::Lerp { coefficient, from_average }
            }
            AverageRule::WeightedSum { decay } => {
                Coefficients::WeightedSum { decay: F::from_f64(decay), one_minus_decay: F::from_f64(1.0 - decay) }
            }
            // torch divides by the int64 tensor `n + 1`, converted to F (exactly
            // for n < 2^53, where the f64 step below is exact too).
            AverageRule::RunningMean { averaged } => {
                Coefficients::RunningMean { count: F::from_f64(averaged.saturating_add(1) as f64) }
            }
        }
    }
}

/// Updates every average in place. Fails (changing nothing) if a pair's
/// slices differ in length.
pub fn update_averages<F: Element>(pairs: &mut [AveragePair<'_, F>], rule: AverageRule) -> Result<(), OptimError> {
    for (index, pair) in pairs.iter().enumerate() {
        if pair.current.len() != pair.average.len() {
            return Err(OptimError::LengthMismatch {
                index,
                what: "current",
                expected: pair.average.len(),
                got: pair.current.len(),
            });
        }
    }
    let coefficients = Coefficients::<F>::new(rule);
    let lengths: Vec<usize> = pairs.iter().map(|p| p.average.len()).collect();
    let shared: Vec<(SharedMut<'_, F>, &[F])> =
        pairs.iter_mut().map(|p| (SharedMut::new(&mut *p.average), p.current)).collect();
    for_each_piece(&lengths, |index, range| {
        let (average, current) = &shared[index];
        // SAFETY: `for_each_piece` hands out disjoint ranges of each tensor.
        let average = unsafe { average.piece(range.clone()) };
        let current = &current[range];
        dispatch(
            #[inline(always)]
            move || update(average, current, coefficients),
        );
    });
    Ok(())
}

/// The element-wise update of one piece. Inlined into each SIMD level's copy.
#[inline(always)]
fn update<F: Element>(average: &mut [F], current: &[F], c: Coefficients<F>) {
    let current = &current[..average.len()];
    match c {
        Coefficients::Copy => average.copy_from_slice(current),
        Coefficients::Lerp { coefficient, from_average } => {
            for (a, &x) in average.iter_mut().zip(current) {
                let base = if from_average { *a } else { x };
                *a = coefficient.mul_add(x - *a, base);
            }
        }
        Coefficients::WeightedSum { decay, one_minus_decay } => {
            for (a, &x) in average.iter_mut().zip(current) {
                *a = decay * *a + one_minus_decay * x;
            }
        }
        Coefficients::RunningMean { count } => {
            for (a, &x) in average.iter_mut().zip(current) {
                *a = *a + (x - *a) / count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(rule: AverageRule, average: &[f32], current: &[f32]) -> Vec<f32> {
        let mut average = average.to_vec();
        update_averages(&mut [AveragePair { average: &mut average, current }], rule).unwrap();
        average
    }

    #[test]
    fn every_rule_computes_torchs_formula() {
        let a = [1.0f32, -2.5, 0.1, 7.0];
        let x = [0.3f32, 4.0, -0.2, 7.0];
        assert_eq!(apply(AverageRule::Copy, &a, &x), x);
        // Weight below 0.5: from the average; at or above: from the current value.
        for w in [0.1f64, 0.75] {
            let wf = w as f32;
            let expected: Vec<f32> = a
                .iter()
                .zip(&x)
                .map(|(&a, &x)| if wf < 0.5 { wf.mul_add(x - a, a) } else { (wf - 1.0).mul_add(x - a, x) })
                .collect();
            assert_eq!(apply(AverageRule::Lerp { weight: w }, &a, &x), expected, "w = {w}");
        }
        let d = 0.9f64;
        let expected: Vec<f32> = a.iter().zip(&x).map(|(&a, &x)| d as f32 * a + (1.0 - d) as f32 * x).collect();
        assert_eq!(apply(AverageRule::WeightedSum { decay: d }, &a, &x), expected);
        let expected: Vec<f32> = a.iter().zip(&x).map(|(&a, &x)| a + (x - a) / 4.0).collect();
        assert_eq!(apply(AverageRule::RunningMean { averaged: 3 }, &a, &x), expected);
    }

    #[test]
    fn mismatched_lengths_change_nothing() {
        let mut first = vec![1.0f64; 3];
        let mut second = vec![1.0f64; 3];
        let result = update_averages(
            &mut [
                AveragePair { average: &mut first, current: &[2.0; 3] },
                AveragePair { average: &mut second, current: &[2.0; 2] },
            ],
            AverageRule::Copy,
        );
        assert!(result.is_err());
        assert_eq!(first, [1.0; 3]);
    }
}
