//! Rprop (resilient backpropagation) as an element-wise rule: one fused pass
//! per tensor.
//!
//! Each tensor carries the slots `prev` (the last gradient used, zero where
//! the sign flipped) and `step_size` (per element, created at the group's lr:
//! torch reads `lr` only then), and the scalar `step`. In torch.optim's order
//! and rounding:
//!
//! ```text
//! g    = -grad if maximize else grad
//! s    = g·prev                                  (rounded: a product that underflows is 0)
//! σ    = η+ if s > 0, η− if s < 0, 1 otherwise   (NaN: 1; an η− that rounds to 0 gives 1)
//! step_size = clamp(step_size·σ, min, max)        (NaN propagates)
//! g    = 0 where σ = η−                           (the sign flipped: no move, forget g)
//! θ    = θ − sign(g)·step_size                    (one FMA; sign(NaN) = 0)
//! prev = g
//! ```
//!
//! `η+`, `η−`, `min` and `max` are rounded to the element type; σ is compared
//! with the rounded `η−`, so the rare `η−` that rounds to 1 also zeroes the
//! elements whose σ is 1, exactly as torch's masks do.

use super::scalars::float32_step;
use crate::element::Element;
use crate::elementwise::{ElementwiseRule, Piece, Scalars, split_piece};

/// Hyperparameters of one param group, read fresh at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RpropConfig {
    /// The initial step size of state created at this step.
    pub lr: f64,
    /// `etas`: the multiplicative decrease and increase factors.
    pub eta_minus: f64,
    pub eta_plus: f64,
    /// `step_sizes`: the bounds of every step size.
    pub step_size_min: f64,
    pub step_size_max: f64,
    pub maximize: bool,
}

impl Default for RpropConfig {
    fn default() -> Self {
        RpropConfig {
            lr: 1e-2,
            eta_minus: 0.5,
            eta_plus: 1.2,
            step_size_min: 1e-6,
            step_size_max: 50.0,
            maximize: false,
        }
    }
}

/// Per-tensor constants, rounded to the element type once per step.
#[derive(Clone, Copy)]
pub struct RpropCoefficients<F> {
    /// −1 with maximize, else 1, times the step's gradient scale
    /// (see [`ElementwiseRule::scale_grads`]).
    grad_factor: F,
    eta_plus: F,
    /// σ where the gradient's sign flipped: η−, or 1 when η− rounds to 0
    /// (torch's later `σ == 0 → 1` mask catches it).
    flipped_factor: F,
    eta_minus: F,
    step_size_min: F,
    step_size_max: F,
}

impl ElementwiseRule for RpropConfig {
    type Coefficients<F: Element> = RpropCoefficients<F>;

    fn scale_grads<F: Element>(c: &mut RpropCoefficients<F>, scale: F) {
        c.grad_factor = c.grad_factor * scale;
    }

    fn slot_count(&self) -> usize {
        2
    }

    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, _fresh_slots: u8) -> RpropCoefficients<F> {
        scalars[0] = float32_step(scalars[0]);
        let eta_minus = F::from_f64(self.eta_minus);
        RpropCoefficients {
            grad_factor: if self.maximize { -F::ONE } else { F::ONE },
            eta_plus: F::from_f64(self.eta_plus),
            flipped_factor: if eta_minus == F::ZERO { F::ONE } else { eta_minus },
            eta_minus,
            step_size_min: F::from_f64(self.step_size_min),
            step_size_max: F::from_f64(self.step_size_max),
        }
    }

    #[inline(always)]
    fn update<F: Element>(&self, c: &RpropCoefficients<F>, piece: Piece<'_, F>) {
        let (param, grad, [prev, step_size]) = split_piece::<F, 2>(piece);
        let n = param.len();
        let grad = &grad[..n];
        for i in 0..n {
            let g = grad[i] * c.grad_factor;
            let product = g * prev[i];
            let factor = if product > F::ZERO {
                c.eta_plus
            } else if product < F::ZERO {
                c.flipped_factor
            } else {
                F::ONE
            };
            // torch's clamp: max with the lower bound, then min with the upper one.
            let mut size = step_size[i] * factor;
            size = if size < c.step_size_min { c.step_size_min } else { size };
            size = if size > c.step_size_max { c.step_size_max } else { size };
            step_size[i] = size;
            let g = if factor == c.eta_minus { F::ZERO } else { g };
            let sign = if g > F::ZERO {
                F::ONE
            } else if g < F::ZERO {
                -F::ONE
            } else {
                F::ZERO
            };
            param[i] = (-sign).mul_add(size, param[i]);
            prev[i] = g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::{self, Tensor};

    fn run(config: &RpropConfig, theta: &mut [f32], grad: &[f32], prev: &mut [f32], size: &mut [f32]) {
        let mut tensors = [Tensor::new(theta, grad).with_slots([prev, size])];
        elementwise::step(config, &mut tensors).unwrap();
    }

    #[test]
    fn step_sizes_grow_shrink_and_sign_flips_pause() {
        let config = RpropConfig { lr: 0.1, ..Default::default() };
        let mut theta = [1.0f32, 1.0, 1.0, 1.0];
        let mut prev = [0.0f32; 4];
        let mut size = [0.1f32; 4];
        run(&config, &mut theta, &[1.0, -1.0, 0.0, f32::NAN], &mut prev, &mut size);
        assert_eq!(theta, [0.9, 1.1, 1.0, 1.0]);
        assert_eq!(size, [0.1; 4]);
        // Same sign: grow by 1.2. Flipped: shrink by 0.5, no move, prev = 0.
        // A NaN in prev gives σ = 1: the element is left alone.
        run(&config, &mut theta, &[2.0, 3.0, 1.0, 1.0], &mut prev, &mut size);
        assert_eq!(size, [0.1f32 * 1.2f32, 0.1f32 * 0.5f32, 0.1, 0.1]);
        assert_eq!(theta, [0.9f32 - 0.1f32 * 1.2f32, 1.1, 0.9, 0.9]);
        assert_eq!(&prev[..3], &[2.0, 0.0, 1.0]);
    }

    #[test]
    fn step_sizes_are_clamped_and_an_eta_minus_that_rounds_to_zero_acts_as_one() {
        let config = RpropConfig { lr: 1.0, eta_minus: 1e-50, step_size_max: 1.1, ..Default::default() };
        let mut theta = [0.0f32, 0.0];
        let mut prev = [1.0f32, 1.0];
        let mut size = [1.0f32, 1.0];
        run(&config, &mut theta, &[1.0, -1.0], &mut prev, &mut size);
        // 1.2 clamped to 1.1; a flip with η− = f32(1e-50) = 0 gets σ = 1 and still moves.
        assert_eq!(size, [1.1, 1.0]);
        assert_eq!(theta, [-1.1, 1.0]);
        assert_eq!(prev, [1.0, -1.0]);
    }
}
