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
//! Arrays are accessed without rust-numpy's per-array borrow registry (it costs
//! more than a small tensor's update). Instead [`AliasCheck`] looks at the
//! memory of all arrays of the call at once (see `alias.rs`); only after that
//! check are mutable slices created.

pub use super::alias::{Access, AliasCheck};
use super::errors::InputError;
pub use super::site::{Label, Role, Site};
use numpy::ndarray::{ArrayViewD, IxDyn};
use numpy::npyffi::{NPY_ARRAY_WRITEABLE, NPY_TYPES, objects::_PyArray_GET_ITEM_DATA};
use numpy::{Element as NumpyElement, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// The two element types a step can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    Float32,
    Float64,
}

/// The dtype of a parameter: float32 or float64, or a dtype error naming it.
pub fn param_dtype(object: &Bound<'_, PyAny>, site: Site) -> Result<DType, InputError> {
    let array = as_untyped(object, Label::new(Role::Param, site))?;
    // SAFETY: `descr` of a live ndarray is a valid dtype object.
    let descr = unsafe { &(*(*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).descr).fields };
    if descr.byteorder != b'>' as std::ffi::c_char {
        if descr.type_num == type_number::<f32>() {
            return Ok(DType::Float32);
        }
        if descr.type_num == type_number::<f64>() {
            return Ok(DType::Float64);
        }
    }
    Err(InputError::DType(format!(
        "{site} has dtype {}; rustoptim optimizes float32 and float64 arrays",
        array.dtype()
    )))
}

fn as_untyped<'a, 'py>(
    object: &'a Bound<'py, PyAny>,
    label: Label,
) -> Result<&'a Bound<'py, PyUntypedArray>, InputError> {
    object.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = object.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        InputError::DType(format!("{label} is a {type_name}, not a NumPy array"))
    })
}

/// A gradient as a NumPy array: an ndarray as it is, or any other object NumPy
/// can view without a copy (`__array__`, the buffer protocol, DLPack: a jax or
/// torch CPU array). Gradients are only read, so a read-only view is fine.
pub fn grad_as_array<'py>(object: &Bound<'py, PyAny>, label: Label) -> Result<Bound<'py, PyAny>, InputError> {
    if object.cast::<PyUntypedArray>().is_ok() {
        return Ok(object.clone());
    }
    let type_name = object.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let refuse = |why: &str| {
        InputError::DType(format!(
            "{label} is a {type_name}, not a NumPy array{why}; pass a float32/float64 NumPy array \
             (np.asarray(g, dtype=...) makes one)"
        ))
    };
    if object.is_instance_of::<pyo3::types::PyList>()
        || object.is_instance_of::<pyo3::types::PyTuple>()
        || object.is_instance_of::<pyo3::types::PyFloat>()
        || object.is_instance_of::<pyo3::types::PyInt>()
    {
        return Err(refuse(""));
    }
    let py = object.py();
    let numpy = py.import(pyo3::intern!(py, "numpy")).map_err(|_| refuse(""))?;
    let kwargs = pyo3::types::PyDict::new(py);
    // NumPy 2 raises when the view would need a copy; NumPy 1 copies if it must.
    let _ = kwargs.set_item("copy", false);
    match numpy.getattr(pyo3::intern!(py, "asarray")).and_then(|asarray| asarray.call((object,), Some(&kwargs))) {
        Ok(array) if array.cast::<PyUntypedArray>().is_ok() => Ok(array),
        Ok(_) => Err(refuse("")),
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyValueError>(py) => {
            Err(refuse(" NumPy can view without a copy"))
        }
        Err(_) => Err(refuse(" NumPy can view")),
    }
}

/// `object` as an aligned array of `F` (native byte order), or an error naming it.
fn typed<'py, F: NumpyElement>(
    object: &Bound<'py, PyAny>,
    label: Label,
) -> Result<Bound<'py, PyArrayDyn<F>>, InputError> {
    let untyped = as_untyped(object, label)?;
    // SAFETY: `descr` of a live ndarray is a valid dtype object.
    let descr = unsafe { &(*(*_PyArray_GET_ITEM_DATA(untyped.as_array_ptr())).descr).fields };
    // Comparing type numbers is much cheaper than a full dtype equivalence test;
    // the byte-order check keeps big-endian arrays of the same kind out.
    if descr.type_num != type_number::<F>() || descr.byteorder == b'>' as std::ffi::c_char {
        let expected = F::get_dtype(object.py());
        return Err(InputError::DType(format!(
            "{label} has dtype {}, expected {expected} like its param (convert it with .astype(np.{expected}))",
            untyped.dtype()
        )));
    }
    check_aligned(untyped, std::mem::size_of::<F>(), label)?;
    // SAFETY: the object is an ndarray whose dtype is F's, which is all the cast asserts.
    Ok(unsafe { untyped.cast_unchecked::<PyArrayDyn<F>>() }.clone())
}

/// NumPy's type number of `F`, which is only ever `f32` (NPY_FLOAT) or `f64` (NPY_DOUBLE).
fn type_number<F: NumpyElement>() -> std::ffi::c_int {
    if std::mem::size_of::<F>() == 4 { NPY_TYPES::NPY_FLOAT as _ } else { NPY_TYPES::NPY_DOUBLE as _ }
}

/// Refuses an array whose elements do not all sit at multiples of their size:
/// one at an odd byte offset (`np.frombuffer(buf, offset=3)`) or with strides
/// that are not multiples of the item size (a field of a packed structured
/// array). Reading such memory as `&[F]` is undefined behaviour, and pairing
/// its elements by index would read and write the wrong bytes.
fn check_aligned(array: &Bound<'_, PyUntypedArray>, item_size: usize, label: Label) -> Result<(), InputError> {
    // SAFETY: reading the data pointer of a live array.
    let data = unsafe { (*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data } as usize;
    // A contiguous array's strides (of axes longer than 1) are multiples of its item size.
    if data % item_size == 0 && array.is_contiguous() {
        return Ok(());
    }
    if array.is_empty() {
        return Ok(());
    }
    let strides_fit =
        array.shape().iter().zip(array.strides()).all(|(&n, &stride)| n <= 1 || stride.unsigned_abs() % item_size == 0);
    if data % item_size == 0 && strides_fit {
        return Ok(());
    }
    Err(InputError::Layout(format!(
        "{label} is not aligned to its {item_size}-byte elements (data at byte address {data:#x}, strides {:?}), \
         as a field of a packed structured array or a view at an odd byte offset is; \
         rustoptim needs every element at a multiple of its size: use an aligned array \
         (np.ascontiguousarray(x) makes one; for a param, optimize the copy and write it back)",
        array.strides()
    )))
}

fn is_writeable(array: &Bound<'_, PyUntypedArray>) -> bool {
    // SAFETY: `array` is a live ndarray; reading its flags field has no other requirement.
    unsafe { (*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).flags & NPY_ARRAY_WRITEABLE != 0 }
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

    fn holds_for<T: NumpyElement>(self, array: &Bound<'_, PyArrayDyn<T>>) -> bool {
        match self {
            ElementOrder::C => array.is_c_contiguous(),
            ElementOrder::Fortran => array.is_fortran_contiguous(),
        }
    }
}

/// A parameter to be updated in place, with its elements as one slice.
pub struct ParamArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    /// The elements in `order`, when the array is strided and had to be gathered.
    gathered: Option<Vec<F>>,
    pub order: ElementOrder,
    pub site: Site,
}

impl<'py, F: NumpyElement + crate::Element> ParamArray<'py, F> {
    pub fn new(object: &Bound<'py, PyAny>, site: Site, aliases: &mut AliasCheck<'py>) -> Result<Self, InputError> {
        Self::with_orders(object, site, aliases, true)
    }

    /// A param whose elements the kernel visits in C order whatever its layout:
    /// a Fortran-ordered param is gathered and scattered back like a strided
    /// one (for kernels that work on rows and columns).
    pub fn new_c_ordered(
        object: &Bound<'py, PyAny>,
        site: Site,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        Self::with_orders(object, site, aliases, false)
    }

    fn with_orders(
        object: &Bound<'py, PyAny>,
        site: Site,
        aliases: &mut AliasCheck<'py>,
        fortran_in_place: bool,
    ) -> Result<Self, InputError> {
        let label = Label::new(Role::Param, site);
        let array = typed::<F>(object, label)?;
        if !is_writeable(array.as_untyped()) {
            return Err(InputError::ReadOnly(format!("{site} is read-only; rustoptim updates params in place")));
        }
        let (order, contiguous) = if array.is_c_contiguous() {
            (ElementOrder::C, true)
        } else if fortran_in_place && array.is_fortran_contiguous() {
            (ElementOrder::Fortran, true)
        } else {
            (ElementOrder::C, false)
        };
        check_no_self_overlap(array.as_untyped(), std::mem::size_of::<F>(), label)?;
        aliases.add_labeled(array.as_untyped(), std::mem::size_of::<F>(), Access::Write, label);
        // SAFETY: read-only view of a live array, dropped before any write.
        let gathered = (!contiguous).then(|| unsafe { array.as_array() }.iter().copied().collect());
        Ok(ParamArray { array, gathered, order, site })
    }

    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// A new state array for this param filled with `value`, contiguous in the
    /// param's element order (what [`StateArray::new`] requires).
    pub fn new_state(&self, value: f64) -> Bound<'py, PyArrayDyn<F>> {
        let state = PyArrayDyn::<F>::zeros(self.array.py(), IxDyn(self.shape()), self.order == ElementOrder::Fortran);
        if value != 0.0 {
            // SAFETY: the array was just created; nothing else refers to it.
            unsafe { state.as_array_mut() }.fill(F::from_f64(value));
        }
        state
    }

    /// A new state array of `shape` (not the param's: Adafactor's `row_var`)
    /// filled with zeros, contiguous in the param's element order.
    pub fn new_state_shaped(&self, shape: &[usize]) -> Bound<'py, PyArrayDyn<F>> {
        PyArrayDyn::<F>::zeros(self.array.py(), IxDyn(shape), self.order == ElementOrder::Fortran)
    }

    /// The elements, in `self.order`.
    ///
    /// # Safety
    /// `AliasCheck::verify` must have passed for every array of the call, and no
    /// other slice of this param may be alive.
    pub unsafe fn values_mut(&mut self) -> &mut [F] {
        match &mut self.gathered {
            Some(values) => values,
            // SAFETY: contiguous (checked in `new`); exclusive per the contract above.
            None => unsafe { self.array.as_slice_mut() }.expect("contiguous array has a slice"),
        }
    }

    /// Writes gathered elements back into a strided parameter.
    pub fn scatter_back(self) {
        if let Some(values) = &self.gathered {
            let updated = ArrayViewD::from_shape(IxDyn(self.array.shape()), values)
                .expect("gathered buffer has the param's shape");
            // SAFETY: no slice of this param is alive any more (the kernel has returned).
            unsafe { self.array.as_array_mut() }.assign(&updated);
        }
    }
}

/// A state array (exp_avg, momentum buffer, ...) updated in place.
pub struct StateArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
}

impl<'py, F: NumpyElement + crate::Element> StateArray<'py, F> {
    pub fn new(
        object: &Bound<'py, PyAny>,
        role: Role,
        param: &ParamArray<'py, F>,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        Self::with_shape(object, role, param, param.shape(), aliases)
    }

    /// A state array whose shape is `shape` rather than its param's.
    pub fn with_shape(
        object: &Bound<'py, PyAny>,
        role: Role,
        param: &ParamArray<'py, F>,
        shape: &[usize],
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        let label = Label::new(role, param.site);
        let array = typed::<F>(object, label)?;
        if shape == param.shape() {
            check_shape(array.shape(), shape, label)?;
        } else if array.shape() != shape {
            return Err(InputError::Shape(format!(
                "{label} has shape {}, expected {} for its param of shape {}",
                shape_string(array.shape()),
                shape_string(shape),
                shape_string(param.shape())
            )));
        }
        if !param.order.holds_for(&array) {
            return Err(InputError::Layout(format!(
                "{label} is not contiguous in its param's {} order",
                param.order.name()
            )));
        }
        if !is_writeable(array.as_untyped()) {
            return Err(InputError::ReadOnly(format!("{label} is read-only")));
        }
        aliases.add_labeled(array.as_untyped(), std::mem::size_of::<F>(), Access::Write, label);
        Ok(StateArray { array })
    }

    /// # Safety
    /// As [`ParamArray::values_mut`].
    pub unsafe fn values_mut(&mut self) -> &mut [F] {
        // SAFETY: contiguous (checked in `new`); exclusive per the contract above.
        unsafe { self.array.as_slice_mut() }.expect("checked contiguous")
    }
}

/// A gradient, read only, with its elements in its parameter's order.
pub struct GradArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    gathered: Option<Vec<F>>,
}

impl<'py, F: NumpyElement + crate::Element> GradArray<'py, F> {
    pub fn new(
        object: &Bound<'py, PyAny>,
        param: &ParamArray<'py, F>,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        let label = Label::new(Role::Grad, param.site);
        let array = typed::<F>(&grad_as_array(object, label)?, label)?;
        check_shape(array.shape(), param.shape(), label)?;
        aliases.add_labeled(array.as_untyped(), std::mem::size_of::<F>(), Access::Read, label);
        // SAFETY: read-only views of a live array, dropped at once.
        let gathered = (!param.order.holds_for(&array)).then(|| match param.order {
            ElementOrder::C => unsafe { array.as_array() }.iter().copied().collect(),
            // Iterating the transposed view in C order visits the original in Fortran order.
            ElementOrder::Fortran => unsafe { array.as_array() }.t().iter().copied().collect(),
        });
        Ok(GradArray { array, gathered })
    }

    /// # Safety
    /// `AliasCheck::verify` must have passed for every array of the call.
    pub unsafe fn values(&self) -> &[F] {
        match &self.gathered {
            Some(values) => values,
            // SAFETY: contiguous in the param's order; nothing writes it (alias check).
            None => unsafe { self.array.as_slice() }.expect("contiguous array has a slice"),
        }
    }
}

fn check_shape(got: &[usize], expected: &[usize], label: Label) -> Result<(), InputError> {
    // Element by element: shapes are a few entries long, shorter than a `memcmp` call.
    if got.len() == expected.len() && got.iter().zip(expected).all(|(a, b)| a == b) {
        Ok(())
    } else {
        Err(InputError::Shape(format!(
            "{label} has shape {}, but its param has shape {}",
            shape_string(got),
            shape_string(expected)
        )))
    }
}

pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// Refuses a written array whose elements overlap each other (a zero stride, or
/// strides that make distinct indices land on the same memory): updating it in
/// place would depend on the order of the writes.
///
/// The test is sufficient, not exact: visiting the axes from the smallest stride
/// up, each stride must step past everything the smaller axes reach. Arrays NumPy
/// allocates, and their slices, transposes and reshapes, always pass it.
fn check_no_self_overlap(array: &Bound<'_, PyUntypedArray>, item_size: usize, label: Label) -> Result<(), InputError> {
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
    // The largest byte offset the axes visited so far reach.
    let mut reach = 0usize;
    for (n, stride) in axes {
        if stride < reach + item_size {
            return Err(InputError::Alias(format!(
                "{label} has elements that share memory with each other (strides {:?}); \
                 it cannot be updated in place",
                array.strides()
            )));
        }
        reach += stride * (n - 1);
    }
    Ok(())
}

/// Checks that a per-tensor list has one entry per param.
pub fn check_list_length(what: &str, got: usize, expected: usize) -> Result<(), InputError> {
    if got == expected {
        Ok(())
    } else {
        Err(InputError::Value(format!("{what} has {got} entries, expected one per param ({expected})")))
    }
}
