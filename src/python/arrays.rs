//! Turning the NumPy arrays of one step into slices the kernels can update.
//!
//! Kernels work on contiguous slices whose elements pair up one to one. A
//! parameter may be C-ordered, Fortran-ordered or a strided view; its "element
//! order" is the order of its memory when it is contiguous (C or F), and C order
//! for strided views, which are gathered into a buffer and scattered back after
//! the update. Gradients may have any layout and are gathered into the
//! parameter's order when theirs differs. State arrays are created by rustoptim
//! contiguous in their parameter's order, and that is checked, not assumed.
//!
//! Borrowing goes through rust-numpy's borrow checker, which refuses arrays that
//! are read-only or share memory with another array already borrowed for
//! writing in this step: a gradient that is its own parameter, overlapping
//! parameters, or a state array shared between two parameters.

use super::errors::InputError;
use numpy::ndarray::{ArrayViewMutD, IxDyn};
use numpy::{
    BorrowError, Element as NumpyElement, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods,
    PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

/// The two element types a step can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Float32,
    Float64,
}

/// The dtype of the first parameter, which every array of the call must share.
pub fn step_dtype(params: &[Bound<'_, PyAny>]) -> Result<Option<DType>, InputError> {
    let Some(first) = params.first() else {
        return Ok(None);
    };
    let array = as_untyped(first, "param", 0)?;
    let dtype = array.dtype();
    if dtype.is_equiv_to(&numpy::dtype::<f32>(first.py())) {
        Ok(Some(DType::Float32))
    } else if dtype.is_equiv_to(&numpy::dtype::<f64>(first.py())) {
        Ok(Some(DType::Float64))
    } else {
        Err(InputError::DType(format!(
            "param 0 has dtype {dtype}; rustoptim optimizes float32 and float64 arrays"
        )))
    }
}

fn as_untyped<'a, 'py>(
    object: &'a Bound<'py, PyAny>,
    role: &str,
    index: usize,
) -> Result<&'a Bound<'py, PyUntypedArray>, InputError> {
    object.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        InputError::DType(format!(
            "{role} {index} is a {type_name}, not a NumPy array"
        ))
    })
}

/// `object` as an array of `F`, or a dtype error naming it.
fn typed<'py, F: NumpyElement>(
    object: &Bound<'py, PyAny>,
    role: &str,
    index: usize,
) -> Result<Bound<'py, PyArrayDyn<F>>, InputError> {
    let untyped = as_untyped(object, role, index)?;
    untyped.cast::<PyArrayDyn<F>>().cloned().map_err(|_| {
        let expected = numpy::dtype::<F>(object.py());
        let like = if role == "param" {
            "like param 0"
        } else {
            "like its param"
        };
        InputError::DType(format!(
            "{role} {index} has dtype {}, expected {expected} {like}",
            untyped.dtype()
        ))
    })
}

/// The order a parameter's elements are visited in by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementOrder {
    C,
    Fortran,
}

impl ElementOrder {
    fn name(self) -> &'static str {
        match self {
            ElementOrder::C => "C",
            ElementOrder::Fortran => "Fortran",
        }
    }
}

/// A parameter borrowed for writing, with its elements as one slice.
pub struct ParamArray<'py, F: NumpyElement> {
    array: PyReadwriteArrayDyn<'py, F>,
    /// The elements in `order`, when the array is strided and had to be gathered.
    gathered: Option<Vec<F>>,
    pub order: ElementOrder,
    pub shape: Vec<usize>,
}

impl<'py, F: NumpyElement + Copy> ParamArray<'py, F> {
    pub fn borrow(object: &Bound<'py, PyAny>, index: usize) -> Result<Self, InputError> {
        let typed = typed::<F>(object, "param", index)?;
        let shape = typed.shape().to_vec();
        let (order, contiguous) = if typed.is_c_contiguous() {
            (ElementOrder::C, true)
        } else if typed.is_fortran_contiguous() {
            (ElementOrder::Fortran, true)
        } else {
            (ElementOrder::C, false)
        };
        let array = typed
            .try_readwrite()
            .map_err(|e| borrow_error(e, "param", index))?;
        let gathered = (!contiguous).then(|| array.as_array().iter().copied().collect());
        Ok(ParamArray {
            array,
            gathered,
            order,
            shape,
        })
    }

    /// The elements, in `self.order`.
    pub fn values_mut(&mut self) -> &mut [F] {
        match &mut self.gathered {
            Some(values) => values,
            None => self
                .array
                .as_slice_mut()
                .expect("contiguous array has a slice"),
        }
    }

    /// Writes gathered elements back into a strided parameter.
    pub fn scatter_back(mut self) {
        if let Some(values) = self.gathered.take() {
            let updated = numpy::ndarray::ArrayViewD::from_shape(IxDyn(&self.shape), &values)
                .expect("gathered buffer has the param's shape");
            let mut target: ArrayViewMutD<'_, F> = self.array.as_array_mut();
            target.assign(&updated);
        }
    }
}

/// A state array (exp_avg, momentum buffer, ...) borrowed for writing.
pub struct StateArray<'py, F: NumpyElement> {
    array: PyReadwriteArrayDyn<'py, F>,
}

impl<'py, F: NumpyElement> StateArray<'py, F> {
    pub fn borrow(
        object: &Bound<'py, PyAny>,
        role: &str,
        index: usize,
        param: &ParamArray<'py, F>,
    ) -> Result<Self, InputError>
    where
        F: Copy,
    {
        let typed = typed::<F>(object, role, index)?;
        check_shape(typed.shape(), &param.shape, role, index)?;
        let in_order = match param.order {
            ElementOrder::C => typed.is_c_contiguous(),
            ElementOrder::Fortran => typed.is_fortran_contiguous(),
        };
        if !in_order {
            return Err(InputError::Layout(format!(
                "{role} of tensor {index} is not contiguous in its param's {} order",
                param.order.name()
            )));
        }
        let array = typed
            .try_readwrite()
            .map_err(|e| borrow_error(e, role, index))?;
        Ok(StateArray { array })
    }

    pub fn values_mut(&mut self) -> &mut [F] {
        self.array.as_slice_mut().expect("checked contiguous")
    }
}

/// A gradient borrowed for reading, with its elements in its parameter's order.
pub struct GradArray<'py, F: NumpyElement> {
    array: PyReadonlyArrayDyn<'py, F>,
    gathered: Option<Vec<F>>,
}

impl<'py, F: NumpyElement + Copy> GradArray<'py, F> {
    pub fn borrow(
        object: &Bound<'py, PyAny>,
        index: usize,
        param: &ParamArray<'py, F>,
    ) -> Result<Self, InputError> {
        let typed = typed::<F>(object, "grad", index)?;
        check_shape(typed.shape(), &param.shape, "grad", index)?;
        let in_order = match param.order {
            ElementOrder::C => typed.is_c_contiguous(),
            ElementOrder::Fortran => typed.is_fortran_contiguous(),
        };
        let array = typed
            .try_readonly()
            .map_err(|e| borrow_error(e, "grad", index))?;
        let gathered = (!in_order).then(|| match param.order {
            ElementOrder::C => array.as_array().iter().copied().collect(),
            // Iterating the transposed view in C order visits the original in Fortran order.
            ElementOrder::Fortran => array.as_array().t().iter().copied().collect(),
        });
        Ok(GradArray { array, gathered })
    }

    pub fn values(&self) -> &[F] {
        match &self.gathered {
            Some(values) => values,
            None => self.array.as_slice().expect("contiguous array has a slice"),
        }
    }
}

fn check_shape(
    got: &[usize],
    expected: &[usize],
    role: &str,
    index: usize,
) -> Result<(), InputError> {
    if got == expected {
        Ok(())
    } else {
        Err(InputError::Shape(format!(
            "{role} of tensor {index} has shape {}, but its param has shape {}",
            shape_string(got),
            shape_string(expected)
        )))
    }
}

fn shape_string(shape: &[usize]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn borrow_error(error: BorrowError, role: &str, index: usize) -> InputError {
    match error {
        BorrowError::NotWriteable => InputError::ReadOnly(format!(
            "{role} {index} is read-only; rustoptim updates params and state in place"
        )),
        _ => InputError::Alias(format!(
            "{role} {index} shares memory with another array of this step (a grad that is its param, overlapping params, or shared state)"
        )),
    }
}

/// Checks that a per-tensor list has one entry per param.
pub fn check_list_length(what: &str, got: usize, expected: usize) -> Result<(), InputError> {
    if got == expected {
        Ok(())
    } else {
        Err(InputError::Value(format!(
            "{what} has {got} entries, expected one per param ({expected})"
        )))
    }
}
