//! The multi-tensor driver every element-wise optimizer runs on.
//!
//! An element-wise optimizer (Adam, SGD, RMSprop, ...) updates each element of
//! a param from the same element of its gradient and of a few state arrays
//! ("slots": `exp_avg`, `momentum_buffer`, ...), with constants that are fixed
//! per tensor for one step (bias corrections, the lr, ...). Such an optimizer
//! is an [`ElementwiseRule`]: how a tensor's scalar state advances and what its
//! constants are ([`ElementwiseRule::begin_tensor`]), and the update of a piece
//! of elements ([`ElementwiseRule::update`]). The driver owns everything else:
//!
//! - checking that every tensor's slices have its param's length and that it
//!   carries the slots the rule needs, before anything is written;
//! - the per-tensor constants, computed once per distinct scalar state (the
//!   tensors of a group usually share their step count);
//! - the split of all elements of all tensors into pieces across threads
//!   ([`crate::partition`]), and the run-time SIMD level ([`crate::simd`]).
//!
//! Element-wise updates do not depend on how the elements are split, so the
//! results are bitwise the same for any thread count and SIMD level.
//!
//! A step may also scale every gradient on the fly ([`step_with_grad_scale`]):
//! the rule then sees `⟦g · ⟦s⟧⟧` (both rounded to the element type), exactly
//! what it would see after the gradients were scaled in place by `s` (as
//! gradient clipping does), without writing the gradients or reading them a
//! second time, and at no cost: every rule already multiplies each gradient
//! element by a per-tensor factor (the sign that `maximize` sets), and the
//! scale is folded into it ([`ElementwiseRule::scale_grads`]).

use crate::element::Element;
use crate::error::OptimError;
use crate::partition::{SharedMut, for_each_piece};
use crate::simd::dispatch;

/// The most state arrays one tensor carries (RMSprop's centered momentum: 3).
pub const MAX_SLOTS: usize = 4;
/// The most scalar state values one tensor carries (ASGD: step, eta, mu).
pub const MAX_SCALARS: usize = 4;

/// A tensor's scalar state (step count, NAdam's `mu_product`, ...), in the order
/// its rule declares; unused entries are 0.
pub type Scalars = [f64; MAX_SCALARS];

/// One tensor of a step: its param, gradient and state, all of the same length
/// and in the same element order.
pub struct Tensor<'a, F> {
    pub param: &'a mut [F],
    pub grad: &'a [F],
    /// The rule's slots in order; entries past [`ElementwiseRule::slot_count`] are empty.
    pub slots: [&'a mut [F]; MAX_SLOTS],
    /// Before the step: the scalar state as stored. After it: the advanced state.
    pub scalars: Scalars,
    /// Bit `i` is set when slot `i` was created for this step (it holds its
    /// initial value, and some rules treat a first update specially).
    pub fresh_slots: u8,
}

impl<'a, F> Tensor<'a, F> {
    /// A tensor without state.
    pub fn new(param: &'a mut [F], grad: &'a [F]) -> Self {
        Tensor { param, grad, slots: empty_slots(), scalars: [0.0; MAX_SCALARS], fresh_slots: 0 }
    }

    /// The same tensor with `slots` as its first state arrays.
    pub fn with_slots(mut self, slots: impl IntoIterator<Item = &'a mut [F]>) -> Self {
        for (target, slot) in self.slots.iter_mut().zip(slots) {
            *target = slot;
        }
        self
    }

    /// The same tensor with `scalars` as its first scalar state values.
    pub fn with_scalars(mut self, scalars: &[f64]) -> Self {
        self.scalars[..scalars.len()].copy_from_slice(scalars);
        self
    }
}

/// `MAX_SLOTS` empty slices.
pub fn empty_slots<'a, F>() -> [&'a mut [F]; MAX_SLOTS] {
    [&mut [], &mut [], &mut [], &mut []]
}

/// The part of one tensor a thread updates: equal-length pieces of its param,
/// gradient and slots.
pub struct Piece<'p, F> {
    pub param: &'p mut [F],
    pub grad: &'p [F],
    pub slots: [&'p mut [F]; MAX_SLOTS],
}

/// An element-wise optimizer: its per-tensor constants and its update.
pub trait ElementwiseRule: Sync {
    /// The constants of one tensor for one step, rounded to the element type.
    type Coefficients<F: Element>: Copy + Send + Sync;

    /// How many slots each tensor carries under this configuration.
    fn slot_count(&self) -> usize;

    /// Advances a tensor's scalar state for this step (e.g. `step += 1`) and
    /// returns its constants. Called once per distinct `(scalars, fresh_slots)`.
    fn begin_tensor<F: Element>(&self, scalars: &mut Scalars, fresh_slots: u8) -> Self::Coefficients<F>;

    /// Makes `coefficients` read every gradient element `g` as `⟦g · scale⟧`.
    /// Each rule reads `g` only as `g · f` with a per-tensor factor `f` of ±1
    /// (−1 with `maximize`) and implements this as `f ← f · scale`: since
    /// `±1 · scale` is exact and rounding is symmetric, `⟦g · (±scale)⟧` is
    /// `±⟦g · scale⟧`, bit for bit what scaling the gradient first gives.
    fn scale_grads<F: Element>(coefficients: &mut Self::Coefficients<F>, scale: F);

    /// Updates one piece in place. Runs inside the SIMD dispatch: implement it
    /// `#[inline(always)]`, branching on the configuration once per piece and
    /// then running a branch-free loop.
    fn update<F: Element>(&self, coefficients: &Self::Coefficients<F>, piece: Piece<'_, F>);
}

/// Applies one step of `rule` to every tensor, in place, and advances each
/// tensor's scalar state.
///
/// Fails, changing nothing, if a tensor's grad or slots differ in length from
/// its param or a slot the rule needs is missing.
pub fn step<F: Element, R: ElementwiseRule>(rule: &R, tensors: &mut [Tensor<'_, F>]) -> Result<(), OptimError> {
    step_with_grad_scale(rule, tensors, None)
}

/// [`step`], with every gradient element `g` read as `⟦g · ⟦grad_scale⟧⟧`
/// (rounded to the element type) when `grad_scale` is given. The gradients
/// themselves are not written.
pub fn step_with_grad_scale<F: Element, R: ElementwiseRule>(
    rule: &R,
    tensors: &mut [Tensor<'_, F>],
    grad_scale: Option<f64>,
) -> Result<(), OptimError> {
    // Multiplying by exactly 1 changes no value (not even a NaN's or a zero's sign).
    let grad_scale = grad_scale.map(F::from_f64).filter(|&scale| scale != F::ONE);
    let slot_count = rule.slot_count();
    for (index, tensor) in tensors.iter().enumerate() {
        check_lengths(index, tensor, slot_count)?;
    }
    let lengths: Vec<usize> = tensors.iter().map(|t| t.param.len()).collect();
    let mut last: Option<(Scalars, u8, Scalars, R::Coefficients<F>)> = None;
    let mut shared: Vec<SharedTensor<'_, F, R::Coefficients<F>>> = Vec::with_capacity(tensors.len());
    for tensor in tensors.iter_mut() {
        let key = (tensor.scalars, tensor.fresh_slots);
        let (advanced, coefficients) = match &last {
            Some((scalars, fresh, advanced, c)) if (*scalars, *fresh) == key => (*advanced, *c),
            _ => {
                let mut advanced = tensor.scalars;
                let mut c = rule.begin_tensor::<F>(&mut advanced, tensor.fresh_slots);
                if let Some(scale) = grad_scale {
                    R::scale_grads(&mut c, scale);
                }
                last = Some((tensor.scalars, tensor.fresh_slots, advanced, c));
                (advanced, c)
            }
        };
        tensor.scalars = advanced;
        let mut slots = tensor.slots.iter_mut().map(|s| SharedMut::new(s));
        shared.push(SharedTensor {
            param: SharedMut::new(&mut *tensor.param),
            grad: tensor.grad,
            slots: std::array::from_fn(|_| slots.next().expect("MAX_SLOTS slots")),
            coefficients,
        });
    }
    for_each_piece(&lengths, |index, range| {
        let t = &shared[index];
        // SAFETY: `for_each_piece` hands out pairwise disjoint ranges of each
        // tensor, so the pieces taken here overlap no piece another thread holds;
        // the slices behind each `SharedMut` are distinct arrays (the caller's
        // `&mut` borrows guarantee it).
        let piece = unsafe {
            Piece {
                param: t.param.piece(range.clone()),
                grad: &t.grad[range.clone()],
                slots: std::array::from_fn(|slot| {
                    if slot < slot_count { t.slots[slot].piece(range.clone()) } else { &mut [] }
                }),
            }
        };
        let coefficients = t.coefficients;
        dispatch(
            #[inline(always)]
            move || rule.update(&coefficients, piece),
        );
    });
    Ok(())
}

/// One tensor's slices, shareable across the threads that each update a piece.
struct SharedTensor<'a, F, C> {
    param: SharedMut<'a, F>,
    grad: &'a [F],
    slots: [SharedMut<'a, F>; MAX_SLOTS],
    coefficients: C,
}

const SLOT_NAMES: [&str; MAX_SLOTS] = ["slot 0", "slot 1", "slot 2", "slot 3"];

fn check_lengths<F>(index: usize, tensor: &Tensor<'_, F>, slot_count: usize) -> Result<(), OptimError> {
    let expected = tensor.param.len();
    let check = |what: &'static str, got: usize| {
        if got == expected { Ok(()) } else { Err(OptimError::LengthMismatch { index, what, expected, got }) }
    };
    check("grad", tensor.grad.len())?;
    for (slot, name) in tensor.slots.iter().zip(SLOT_NAMES).take(slot_count) {
        check(name, slot.len())?;
    }
    if let Some(extra) = tensor.slots[slot_count.min(MAX_SLOTS)..].iter().position(|s| !s.is_empty()) {
        return Err(OptimError::InvalidSetting(format!(
            "tensor {index}: slot {} given, but the rule uses {slot_count} slots",
            slot_count + extra
        )));
    }
    Ok(())
}

/// Splits `piece` into its param, grad and first `N` slots, all cut to the
/// param's length so the compiler can drop bounds checks in the loop.
#[inline(always)]
pub fn split_piece<'p, F, const N: usize>(piece: Piece<'p, F>) -> (&'p mut [F], &'p [F], [&'p mut [F]; N]) {
    let n = piece.param.len();
    let mut slots = piece.slots.into_iter();
    let taken: [&'p mut [F]; N] = std::array::from_fn(|_| {
        let slot = slots.next().expect("N <= MAX_SLOTS");
        &mut slot[..n]
    });
    (piece.param, &piece.grad[..n], taken)
}
