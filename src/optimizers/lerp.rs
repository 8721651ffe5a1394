//! torch's `lerp_` rounding, shared by the rules that keep a running average
//! with it (RMSprop's grad_avg, Adamax's and NAdam's exp_avg).

use crate::element::Element;

/// `start.lerp_(end, weight)` as torch rounds it: the weight `w` is rounded to
/// the element type, then `start + w·(end − start)` when `|w| < 0.5`, else
/// `end + (w − 1)·(end − start)`, each a single fused multiply-add.
#[derive(Clone, Copy)]
pub struct Lerp<F> {
    /// `w` or `w − 1`, whichever form torch picks for this weight.
    coefficient: F,
    from_start: bool,
}

impl<F: Element> Lerp<F> {
    pub fn new(weight: f64) -> Self {
        let weight = F::from_f64(weight);
        let from_start = weight.abs() < F::from_f64(0.5);
        Lerp { coefficient: if from_start { weight } else { weight - F::ONE }, from_start }
    }

    #[inline(always)]
    pub fn apply(self, start: F, end: F) -> F {
        let base = if self.from_start { start } else { end };
        self.coefficient.mul_add(end - start, base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lerp_picks_torchs_form() {
        let near: Lerp<f64> = Lerp::new(0.1);
        assert_eq!(near.apply(1.0, 3.0), 0.1f64.mul_add(2.0, 1.0));
        let far: Lerp<f64> = Lerp::new(0.9);
        assert_eq!(far.apply(1.0, 3.0), (0.9f64 - 1.0).mul_add(2.0, 3.0));
    }
}
