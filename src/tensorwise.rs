//! The driver of optimizers whose update of a tensor needs the whole tensor:
//! Adafactor (sums over rows and columns, norms) and Muon (matrix products).
//!
//! Such an optimizer is a [`TensorRule`]: which shapes it accepts, the state
//! arrays ("slots") a tensor of a given shape carries and their shapes (they
//! need not be the param's: Adafactor's `row_var` is `(..., R, 1)`), the scratch
//! memory one tensor's update needs, and the update itself. The driver checks
//! every tensor of the step (shapes, lengths, slots, scratch size) before the
//! first write, then updates the tensors one after the other; each update
//! spreads its own work over the thread pool.
//!
//! Every array is in C order: the binding gathers params of any other layout
//! into a C-ordered buffer and scatters them back after the step.

use crate::element::Element;
use crate::elementwise::{MAX_SLOTS, Scalars};
use crate::error::OptimError;
use std::collections::TryReserveError;

/// One tensor of a step: its param, gradient and state, all in C order.
pub struct WholeTensor<'a, F> {
    pub param: &'a mut [F],
    pub grad: &'a [F],
    pub shape: &'a [usize],
    /// The rule's slots for this shape, in order; entries past
    /// [`TensorRule::slot_count`] are empty.
    pub slots: [&'a mut [F]; MAX_SLOTS],
    /// Before the step: the scalar state as stored. After it: the advanced state.
    pub scalars: Scalars,
}

/// How much scratch memory one tensor's update needs: `values` elements of the
/// param's type and `wide` `f64`s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceSize {
    pub values: usize,
    pub wide: usize,
}

/// Scratch memory shared by the tensors of a step, allocated (fallibly) before
/// the first write so that running out of memory changes nothing.
pub struct Workspace<F> {
    pub values: Vec<F>,
    pub wide: Vec<f64>,
    /// Room for one tensor's scaled gradient, for steps that scale gradients
    /// ([`step_with_grad_scale`]); empty otherwise.
    pub scaled_grad: Vec<F>,
}

impl<F: Element> Workspace<F> {
    /// Room for the largest of `sizes`; on failure, the bytes asked for.
    pub fn try_new(sizes: impl IntoIterator<Item = WorkspaceSize>) -> Result<Self, (usize, TryReserveError)> {
        let (values, wide) = sizes.into_iter().fold((0, 0), |(v, w), s| (s.values.max(v), s.wide.max(w)));
        let mut workspace = Workspace { values: Vec::new(), wide: Vec::new(), scaled_grad: Vec::new() };
        let bytes = values.saturating_mul(std::mem::size_of::<F>()).saturating_add(wide.saturating_mul(8));
        workspace.values.try_reserve_exact(values).map_err(|e| (bytes, e))?;
        workspace.wide.try_reserve_exact(wide).map_err(|e| (bytes, e))?;
        workspace.values.resize(values, F::ZERO);
        workspace.wide.resize(wide, 0.0);
        Ok(workspace)
    }

    /// The same workspace with room for a scaled gradient of `elements`
    /// elements; on failure, the bytes asked for.
    pub fn try_with_scaled_grad(mut self, elements: usize) -> Result<Self, (usize, TryReserveError)> {
        let bytes = elements.saturating_mul(std::mem::size_of::<F>());
        self.scaled_grad.try_reserve_exact(elements).map_err(|e| (bytes, e))?;
        self.scaled_grad.resize(elements, F::ZERO);
        Ok(self)
    }

    fn holds(&self, size: WorkspaceSize) -> bool {
        self.values.len() >= size.values && self.wide.len() >= size.wide
    }
}

/// An optimizer that updates each tensor as a whole.
pub trait TensorRule: Sync {
    /// Refuses a param shape the optimizer cannot update (Muon: not a matrix),
    /// with the reason.
    fn check_shape(&self, _shape: &[usize]) -> Result<(), String> {
        Ok(())
    }

    /// How many slots a tensor of `shape` carries.
    fn slot_count(&self, shape: &[usize]) -> usize;

    /// The shape of slot `slot` of a tensor of `shape`.
    fn slot_shape(&self, slot: usize, shape: &[usize]) -> Vec<usize>;

    /// The scratch memory the update of a tensor of `shape` needs.
    fn workspace(&self, shape: &[usize]) -> WorkspaceSize;

    /// Updates one tensor in place and advances its scalar state. Its lengths
    /// and the workspace size have been checked.
    fn update<F: Element>(&self, tensor: &mut WholeTensor<'_, F>, workspace: &mut Workspace<F>);
}

/// Applies one step of `rule` to every tensor, in place.
///
/// Fails, changing nothing, if a tensor's shape is refused, its grad or slots
/// do not have the lengths their shapes give, or `workspace` is too small.
pub fn step<F: Element, R: TensorRule>(
    rule: &R,
    tensors: &mut [WholeTensor<'_, F>],
    workspace: &mut Workspace<F>,
) -> Result<(), OptimError> {
    step_with_grad_scale(rule, tensors, workspace, None)
}

/// [`step`], with each gradient element `g` read as `⟦g · ⟦grad_scale⟧⟧`
/// (rounded to the element type) when `grad_scale` is given: each gradient is
/// scaled into `workspace.scaled_grad` just before its tensor's update, so the
/// gradients themselves are not written.
pub fn step_with_grad_scale<F: Element, R: TensorRule>(
    rule: &R,
    tensors: &mut [WholeTensor<'_, F>],
    workspace: &mut Workspace<F>,
    grad_scale: Option<f64>,
) -> Result<(), OptimError> {
    // Multiplying by exactly 1 changes no value (not even a NaN's or a zero's sign).
    let grad_scale = grad_scale.map(F::from_f64).filter(|&scale| scale != F::ONE);
    for (index, tensor) in tensors.iter().enumerate() {
        check_tensor(rule, index, tensor)?;
        let room_for_grad = grad_scale.is_none() || workspace.scaled_grad.len() >= tensor.grad.len();
        if !workspace.holds(rule.workspace(tensor.shape)) || !room_for_grad {
            return Err(OptimError::InvalidSetting(format!("tensor {index}: the workspace is too small")));
        }
    }
    let Some(scale) = grad_scale else {
        for tensor in tensors.iter_mut() {
            rule.update(tensor, workspace);
        }
        return Ok(());
    };
    // Taken out so that the rule can borrow the rest of the workspace.
    let mut scaled_grad = std::mem::take(&mut workspace.scaled_grad);
    for tensor in tensors.iter_mut() {
        let scaled = &mut scaled_grad[..tensor.grad.len()];
        for (s, &g) in scaled.iter_mut().zip(tensor.grad) {
            *s = g * scale;
        }
        let mut scaled_tensor = WholeTensor {
            param: &mut *tensor.param,
            grad: scaled,
            shape: tensor.shape,
            slots: tensor.slots.each_mut().map(|slot| &mut **slot),
            scalars: tensor.scalars,
        };
        rule.update(&mut scaled_tensor, workspace);
        tensor.scalars = scaled_tensor.scalars;
    }
    workspace.scaled_grad = scaled_grad;
    Ok(())
}

fn check_tensor<F, R: TensorRule>(rule: &R, index: usize, tensor: &WholeTensor<'_, F>) -> Result<(), OptimError> {
    rule.check_shape(tensor.shape).map_err(|reason| OptimError::InvalidSetting(format!("tensor {index}: {reason}")))?;
    let expected: usize = tensor.shape.iter().product();
    let check = |what: &'static str, got: usize, expected: usize| {
        if got == expected { Ok(()) } else { Err(OptimError::LengthMismatch { index, what, expected, got }) }
    };
    check("param", tensor.param.len(), expected)?;
    check("grad", tensor.grad.len(), expected)?;
    let slot_count = rule.slot_count(tensor.shape);
    for (slot, values) in tensor.slots.iter().enumerate() {
        let expected = if slot < slot_count { rule.slot_shape(slot, tensor.shape).iter().product() } else { 0 };
        check("a slot", values.len(), expected)?;
    }
    Ok(())
}

/// Python's `max(a, b)`: `b` only if `b > a` (so a NaN `b` loses, a NaN `a` wins).
pub fn py_max(a: f64, b: f64) -> f64 {
    if b > a { b } else { a }
}

/// Python's `min(a, b)`: `b` only if `b < a`.
pub fn py_min(a: f64, b: f64) -> f64 {
    if b < a { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimizers::{AdafactorConfig, MuonConfig};

    #[test]
    fn bad_tensors_are_refused_before_any_write() {
        let rule = AdafactorConfig::default();
        let (mut p0, g0, mut r0, mut c0) = (vec![1.0f64; 6], vec![0.5; 6], vec![0.0; 2], vec![0.0; 3]);
        let (mut p1, g1, mut v1) = (vec![1.0f64; 4], vec![0.5; 4], vec![0.0; 3]);
        let mut workspace = Workspace::<f64>::try_new([rule.workspace(&[2, 3]), rule.workspace(&[4])]).unwrap();
        let mut slots0 = crate::elementwise::empty_slots();
        (slots0[0], slots0[1]) = (&mut r0[..], &mut c0[..]);
        let mut slots1 = crate::elementwise::empty_slots();
        slots1[0] = &mut v1[..]; // one element short
        let mut tensors = [
            WholeTensor { param: &mut p0, grad: &g0, shape: &[2, 3], slots: slots0, scalars: [0.0; 4] },
            WholeTensor { param: &mut p1, grad: &g1, shape: &[4], slots: slots1, scalars: [0.0; 4] },
        ];
        let error = step(&rule, &mut tensors, &mut workspace).unwrap_err();
        assert_eq!(error, OptimError::LengthMismatch { index: 1, what: "a slot", expected: 4, got: 3 });
        assert!(p0.iter().all(|&x| x == 1.0) && r0.iter().all(|&x| x == 0.0));

        let muon = MuonConfig::default();
        let (mut p, g, mut m) = (vec![1.0f32; 4], vec![0.5f32; 4], vec![0.0f32; 4]);
        let mut slots = crate::elementwise::empty_slots();
        slots[0] = &mut m[..];
        let mut tensors = [WholeTensor { param: &mut p, grad: &g, shape: &[4], slots, scalars: [0.0; 4] }];
        let mut workspace = Workspace::<f32>::try_new([WorkspaceSize::default()]).unwrap();
        let error = step(&muon, &mut tensors, &mut workspace).unwrap_err();
        assert!(matches!(error, OptimError::InvalidSetting(ref m) if m.contains("2D")), "{error:?}");
        assert_eq!(py_max(1.0, f64::NAN), 1.0);
        assert!(py_max(f64::NAN, 1.0).is_nan());
    }
}
