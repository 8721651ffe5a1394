//! The arrays of a multi-tensor call that is not an optimizer step (gradient
//! clipping, weight averaging): float32/float64 arrays of any layout, seen by
//! the kernels as one slice each.
//!
//! A contiguous array (C or Fortran order) is used in place, its elements in
//! memory order. A strided view is gathered into a buffer in C order (and, when
//! written, scattered back after the kernel), or, when it is read alongside an
//! array it pairs up with, gathered in that array's order. Buffers are
//! allocated fallibly. Arrays are accessed without rust-numpy's borrow
//! registry; callers check the memory of all arrays of the call with
//! [`AliasCheck`] before creating slices, as the optimizer bindings do.

use super::alias::{Access, AliasCheck};
use super::errors::{InputError, allocation_error};
use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::npyffi::{NPY_ARRAY_WRITEABLE, objects::_PyArray_GET_ITEM_DATA};
use numpy::{Element as NumpyElement, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// A float32 or float64 array.
pub enum FloatArray<'py> {
    F32(Bound<'py, PyArrayDyn<f32>>),
    F64(Bound<'py, PyArrayDyn<f64>>),
}

impl<'py> FloatArray<'py> {
    /// `object` as a float32/float64 NumPy array (native byte order, aligned),
    /// or an error naming it as `{role} {index}`.
    pub fn new(object: &Bound<'py, PyAny>, role: &str, index: usize) -> Result<Self, InputError> {
        let array = if let Ok(array) = object.cast::<PyArrayDyn<f32>>() {
            FloatArray::F32(array.clone())
        } else if let Ok(array) = object.cast::<PyArrayDyn<f64>>() {
            FloatArray::F64(array.clone())
        } else if let Ok(array) = object.cast::<PyUntypedArray>() {
            return Err(InputError::DType(format!(
                "{role} {index} has dtype {}; expected float32 or float64 (native byte order)",
                array.dtype()
            )));
        } else {
            let type_name = object.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            return Err(InputError::DType(format!("{role} {index} is a {type_name}, not a NumPy array")));
        };
        if !array.untyped().is_aligned() {
            return Err(InputError::Layout(format!("{role} {index} is not aligned in memory")));
        }
        Ok(array)
    }

    pub fn untyped(&self) -> &Bound<'py, PyUntypedArray> {
        match self {
            FloatArray::F32(a) => a.as_untyped(),
            FloatArray::F64(a) => a.as_untyped(),
        }
    }
}

/// The order a kernel visits an array's elements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    C,
    Fortran,
}

impl Order {
    /// The memory order of a contiguous array (C when it is both); None when strided.
    fn of(array: &Bound<'_, PyUntypedArray>) -> Option<Order> {
        if array.is_c_contiguous() {
            Some(Order::C)
        } else if array.is_fortran_contiguous() {
            Some(Order::Fortran)
        } else {
            None
        }
    }

    fn holds_for(self, array: &Bound<'_, PyUntypedArray>) -> bool {
        match self {
            Order::C => array.is_c_contiguous(),
            Order::Fortran => array.is_fortran_contiguous(),
        }
    }
}

/// An array whose elements a kernel reads.
pub struct ReadArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    gathered: Option<Vec<F>>,
}

impl<'py, F: NumpyElement + Copy> ReadArray<'py, F> {
    /// The elements in `order`, or in memory order (C for a strided view) when `order` is None.
    pub fn new(
        array: &Bound<'py, PyArrayDyn<F>>,
        order: Option<Order>,
        role: &'static str,
        index: usize,
        aliases: Option<&mut AliasCheck<'py>>,
    ) -> PyResult<Self> {
        if let Some(aliases) = aliases {
            aliases.add(array, Access::Read, role, index);
        }
        let untyped = array.as_untyped();
        let target = match (order, Order::of(untyped)) {
            (Some(order), _) if order.holds_for(untyped) => None,
            (None, Some(_)) => None,
            (Some(order), _) => Some(order),
            (None, None) => Some(Order::C),
        };
        let gathered = target.map(|order| gather(array, order, role, index)).transpose()?;
        Ok(ReadArray { array: array.clone(), gathered })
    }

    /// # Safety
    /// Nothing may write the array while the slice is alive (for arrays of a
    /// call that also writes: `AliasCheck::verify` has passed).
    pub unsafe fn values(&self) -> &[F] {
        match &self.gathered {
            Some(values) => values,
            // SAFETY: contiguous and aligned (checked); no writer per the contract above.
            None => unsafe { self.array.as_slice() }.expect("contiguous aligned array has a slice"),
        }
    }
}

/// An array a kernel updates in place.
pub struct WriteArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    gathered: Option<Vec<F>>,
    /// The order of the elements the kernel sees.
    pub order: Order,
}

impl<'py, F: NumpyElement + Copy> WriteArray<'py, F> {
    /// Checks that the array can be written in place and records it for the alias check.
    pub fn new(
        array: &Bound<'py, PyArrayDyn<F>>,
        role: &'static str,
        index: usize,
        aliases: &mut AliasCheck<'py>,
    ) -> PyResult<Self> {
        let py = array.py();
        let untyped = array.as_untyped();
        if !is_writeable(untyped) {
            return Err(
                InputError::ReadOnly(format!("{role} {index} is read-only; it is updated in place")).into_pyerr(py)
            );
        }
        check_no_self_overlap(untyped, std::mem::size_of::<F>(), role, index).map_err(|e| e.into_pyerr(py))?;
        aliases.add(array, Access::Write, role, index);
        let (order, gathered) = match Order::of(untyped) {
            Some(order) => (order, None),
            None => (Order::C, Some(gather(array, Order::C, role, index)?)),
        };
        Ok(WriteArray { array: array.clone(), gathered, order })
    }

    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// # Safety
    /// `AliasCheck::verify` must have passed for every array of the call, and
    /// no other slice of this array may be alive.
    pub unsafe fn values_mut(&mut self) -> &mut [F] {
        match &mut self.gathered {
            Some(values) => values,
            // SAFETY: contiguous and aligned (checked); exclusive per the contract above.
            None => unsafe { self.array.as_slice_mut() }.expect("contiguous aligned array has a slice"),
        }
    }

    /// Writes the elements of a gathered (strided) array back into it.
    pub fn scatter_back(self) {
        if let Some(values) = &self.gathered {
            let updated = ArrayViewD::from_shape(IxDyn(self.array.shape()), values)
                .expect("gathered buffer has the array's shape");
            // SAFETY: no slice of this array is alive any more (the kernel has returned).
            unsafe { self.array.as_array_mut() }.assign(&updated);
        }
    }
}

/// A copy of the array's elements in `order`, allocated fallibly.
fn gather<F: NumpyElement + Copy>(
    array: &Bound<'_, PyArrayDyn<F>>,
    order: Order,
    role: &str,
    index: usize,
) -> PyResult<Vec<F>> {
    let len = array.len();
    let mut values = Vec::new();
    values.try_reserve_exact(len).map_err(|e| {
        allocation_error(&format!("a copy of strided {role} {index}"), len.saturating_mul(std::mem::size_of::<F>()), e)
    })?;
    // SAFETY: a read-only view of a live array, dropped at once; nothing writes
    // it while the GIL is held here.
    let view = unsafe { array.as_array() };
    match order {
        Order::C => values.extend(view.iter().copied()),
        // Iterating the transposed view in C order visits the original in Fortran order.
        Order::Fortran => values.extend(view.t().iter().copied()),
    }
    Ok(values)
}

/// A shape as NumPy prints it: `(3,)`, `(2, 5)`, `()`.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

fn is_writeable(array: &Bound<'_, PyUntypedArray>) -> bool {
    // SAFETY: `array` is a live ndarray; reading its flags field has no other requirement.
    unsafe { (*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags & NPY_ARRAY_WRITEABLE != 0 }
}

/// Refuses a written array whose elements overlap each other (a zero stride,
/// or strides that make distinct indices land on the same memory).
///
/// Sufficient, not exact: visiting the axes from the smallest stride up, each
/// stride must step past everything the smaller axes reach. Arrays NumPy
/// allocates, and their slices, transposes and reshapes, always pass.
fn check_no_self_overlap(
    array: &Bound<'_, PyUntypedArray>,
    item_size: usize,
    role: &str,
    index: usize,
) -> Result<(), InputError> {
    if array.is_contiguous() {
        return Ok(());
    }
    let mut axes: Vec<(usize, usize)> = array
        .shape()
        .iter()
        .zip(array.strides())
        .filter(|(n, _)| **n > 1)
        .map(|(&n, &s)| (n, s.unsigned_abs()))
        .collect();
    axes.sort_unstable_by_key(|&(_, stride)| stride);
    let mut reach = 0usize;
    for (n, stride) in axes {
        if stride < reach + item_size {
            return Err(InputError::Alias(format!(
                "{role} {index} has elements that share memory with each other (strides {:?}); \
                 it cannot be updated in place",
                array.strides()
            )));
        }
        reach += stride * (n - 1);
    }
    Ok(())
}
