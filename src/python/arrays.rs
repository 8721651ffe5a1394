//! Turning the NumPy arrays of a call into slices the kernels can update.
//!
//! Kernels work on contiguous slices whose elements pair up one to one. An
//! array the kernel writes ([`WriteArray`]: a param, an averaged array, a
//! clipped gradient) may be C-ordered, Fortran-ordered or a strided view; its
//! "element order" is the order of its memory when it is contiguous (C or F),
//! and C order for strided views, which are gathered into a buffer and
//! scattered back after the update. An array the kernel only reads
//! ([`ReadArray`]: a gradient, the current weights) may have any layout and is
//! gathered into the order of the array it pairs up with when its own differs.
//! State arrays are created by rustoptim contiguous in their parameter's order,
//! and that is checked, not assumed. Gather buffers are allocated fallibly.
//!
//! Arrays are accessed without rust-numpy's per-array borrow registry (it costs
//! more than a small tensor's update). Instead [`AliasCheck`] looks at the
//! memory of all arrays of the call at once (see `alias.rs`); only after that
//! check are mutable slices created.

pub use super::alias::{Access, AliasCheck};
use super::errors::InputError;
use super::gil::with_kernel_lock;
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

/// A float32 or float64 array, for calls that take both (gradient clipping,
/// weight averaging).
pub enum FloatArray<'py> {
    F32(Bound<'py, PyArrayDyn<f32>>),
    F64(Bound<'py, PyArrayDyn<f64>>),
}

impl<'py> FloatArray<'py> {
    /// `object` as a float32/float64 NumPy array (native byte order, aligned),
    /// or an error naming it as `label`.
    pub fn new(object: &Bound<'py, PyAny>, label: Label) -> Result<Self, InputError> {
        if let Ok(array) = object.cast::<PyArrayDyn<f32>>() {
            check_aligned(array, label)?;
            Ok(FloatArray::F32(array.clone()))
        } else if let Ok(array) = object.cast::<PyArrayDyn<f64>>() {
            check_aligned(array, label)?;
            Ok(FloatArray::F64(array.clone()))
        } else {
            let untyped = as_untyped(object, label)?;
            Err(InputError::DType(format!(
                "{label} has dtype {}; expected float32 or float64 (native byte order)",
                untyped.dtype()
            )))
        }
    }

    pub fn untyped(&self) -> &Bound<'py, PyUntypedArray> {
        match self {
            FloatArray::F32(a) => a.as_untyped(),
            FloatArray::F64(a) => a.as_untyped(),
        }
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
    // SAFETY: the object is an ndarray whose dtype is F's, which is all the cast asserts.
    let array = unsafe { untyped.cast_unchecked::<PyArrayDyn<F>>() };
    check_aligned(array, label)?;
    Ok(array.clone())
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
fn check_aligned<F: NumpyElement>(array: &Bound<'_, PyArrayDyn<F>>, label: Label) -> Result<(), InputError> {
    let item_size = std::mem::size_of::<F>();
    let data = array.data() as usize;
    // A contiguous array's strides are whole elements (one test of the flags
    // for the usual case); an empty array has no element to misplace.
    if data % item_size == 0 && array.is_contiguous() || array.is_empty() {
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

/// The order a kernel visits an array's elements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementOrder {
    C,
    Fortran,
}

impl ElementOrder {
    /// The memory order of a contiguous array (C when it is both); None when strided.
    fn of(array: &Bound<'_, PyUntypedArray>) -> Option<Self> {
        if array.is_c_contiguous() {
            Some(ElementOrder::C)
        } else if array.is_fortran_contiguous() {
            Some(ElementOrder::Fortran)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            ElementOrder::C => "C",
            ElementOrder::Fortran => "Fortran",
        }
    }

    fn holds_for(self, array: &Bound<'_, PyUntypedArray>) -> bool {
        match self {
            ElementOrder::C => array.is_c_contiguous(),
            ElementOrder::Fortran => array.is_fortran_contiguous(),
        }
    }
}

/// An array a kernel updates in place, with its elements as one slice.
pub struct WriteArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    /// The elements in `order`, when the array is strided and had to be gathered.
    gathered: Option<Vec<F>>,
    /// The order of the elements the kernel sees.
    pub order: ElementOrder,
}

impl<'py, F: NumpyElement + Copy> WriteArray<'py, F> {
    /// Checks that the array can be written in place (writeable, no element
    /// sharing memory with another) and records it for the alias check. A
    /// Fortran-ordered array is used in place when `fortran_in_place`, else
    /// gathered into C order like a strided one (for kernels that work on rows
    /// and columns). A read-only array's error is `"{label} is read-only{why}"`.
    pub fn new(
        array: &Bound<'py, PyArrayDyn<F>>,
        label: Label,
        why: &str,
        fortran_in_place: bool,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        let untyped = array.as_untyped();
        if !is_writeable(untyped) {
            return Err(InputError::ReadOnly(format!("{label} is read-only{why}")));
        }
        let order = match ElementOrder::of(untyped) {
            Some(ElementOrder::Fortran) if !fortran_in_place => None,
            order => order,
        };
        check_no_self_overlap(untyped, std::mem::size_of::<F>(), label)?;
        aliases.add_labeled(untyped, std::mem::size_of::<F>(), Access::Write, label);
        let gathered = match order {
            Some(_) => None,
            None => Some(gather(array, ElementOrder::C, label)?),
        };
        Ok(WriteArray { array: array.clone(), gathered, order: order.unwrap_or(ElementOrder::C) })
    }

    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// The elements, in `self.order`.
    ///
    /// # Safety
    /// `AliasCheck::verify` must have passed for every array of the call, and no
    /// other slice of this array may be alive.
    pub unsafe fn values_mut(&mut self) -> &mut [F] {
        match &mut self.gathered {
            Some(values) => values,
            // SAFETY: contiguous and aligned (checked in `new`); exclusive per the contract above.
            None => unsafe { self.array.as_slice_mut() }.expect("contiguous array has a slice"),
        }
    }

    /// Writes the elements of a gathered (strided) array back into it.
    pub fn scatter_back(self) {
        if let Some(values) = &self.gathered {
            let updated = ArrayViewD::from_shape(IxDyn(self.array.shape()), values)
                .expect("gathered buffer has the array's shape");
            // SAFETY: no slice of this array is alive any more (the kernel has
            // returned), and no kernel of another call writes it meanwhile (they all
            // hold the kernel lock, held here).
            with_kernel_lock(|| unsafe { self.array.as_array_mut() }.assign(&updated));
        }
    }
}

/// An array a kernel reads, with its elements as one slice.
pub struct ReadArray<'py, F: NumpyElement> {
    array: Bound<'py, PyArrayDyn<F>>,
    /// The elements in the requested order, when the layout differs from it.
    gathered: Option<Vec<F>>,
}

impl<'py, F: NumpyElement + Copy> ReadArray<'py, F> {
    /// The elements in `order`, or in memory order (C for a strided view) when
    /// `order` is None; recorded for the alias check when `aliases` is given.
    pub fn new(
        array: &Bound<'py, PyArrayDyn<F>>,
        order: Option<ElementOrder>,
        label: Label,
        aliases: Option<&mut AliasCheck<'py>>,
    ) -> Result<Self, InputError> {
        let untyped = array.as_untyped();
        if let Some(aliases) = aliases {
            aliases.add_labeled(untyped, std::mem::size_of::<F>(), Access::Read, label);
        }
        let target = match order {
            Some(order) if order.holds_for(untyped) => None,
            Some(order) => Some(order),
            None if untyped.is_contiguous() => None,
            None => Some(ElementOrder::C),
        };
        let gathered = target.map(|order| gather(array, order, label)).transpose()?;
        Ok(ReadArray { array: array.clone(), gathered })
    }

    /// # Safety
    /// Nothing may write the array while the slice is alive (for arrays of a
    /// call that also writes: `AliasCheck::verify` has passed).
    pub unsafe fn values(&self) -> &[F] {
        match &self.gathered {
            Some(values) => values,
            // SAFETY: contiguous and aligned (checked); no writer per the contract above.
            None => unsafe { self.array.as_slice() }.expect("contiguous array has a slice"),
        }
    }
}

/// A copy of the array's elements in `order`, allocated fallibly.
fn gather<F: NumpyElement + Copy>(
    array: &Bound<'_, PyArrayDyn<F>>,
    order: ElementOrder,
    label: Label,
) -> Result<Vec<F>, InputError> {
    let len = array.len();
    let mut values = Vec::new();
    values.try_reserve_exact(len).map_err(|_| {
        InputError::OutOfMemory(format!(
            "cannot allocate {} bytes for a copy of {label}, which is strided",
            len.saturating_mul(std::mem::size_of::<F>())
        ))
    })?;
    with_kernel_lock(|| {
        // SAFETY: a read-only view of a live array, dropped at once; no kernel of
        // another call writes it meanwhile (they all hold the kernel lock, held here).
        let view = unsafe { array.as_array() };
        match order {
            ElementOrder::C => values.extend(view.iter().copied()),
            // Iterating the transposed view in C order visits the original in Fortran order.
            ElementOrder::Fortran => values.extend(view.t().iter().copied()),
        }
    });
    Ok(values)
}

/// A parameter to be updated in place, with its elements as one slice.
pub struct ParamArray<'py, F: NumpyElement> {
    written: WriteArray<'py, F>,
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
        let written = WriteArray::new(&array, label, "; rustoptim updates params in place", fortran_in_place, aliases)?;
        Ok(ParamArray { written, site })
    }

    /// The order of the elements the kernel sees.
    pub fn order(&self) -> ElementOrder {
        self.written.order
    }

    pub fn shape(&self) -> &[usize] {
        self.written.shape()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// A new state array for this param filled with `value`, contiguous in the
    /// param's element order (what [`StateArray::new`] requires).
    pub fn new_state(&self, value: f64) -> Bound<'py, PyArrayDyn<F>> {
        let state = self.new_state_shaped(self.shape());
        if value != 0.0 {
            // SAFETY: the array was just created; nothing else refers to it.
            unsafe { state.as_array_mut() }.fill(F::from_f64(value));
        }
        state
    }

    /// A new state array of `shape` (not the param's: Adafactor's `row_var`)
    /// filled with zeros, contiguous in the param's element order.
    pub fn new_state_shaped(&self, shape: &[usize]) -> Bound<'py, PyArrayDyn<F>> {
        PyArrayDyn::<F>::zeros(self.written.array.py(), IxDyn(shape), self.order() == ElementOrder::Fortran)
    }

    /// The elements, in `self.order()`.
    ///
    /// # Safety
    /// As [`WriteArray::values_mut`].
    pub unsafe fn values_mut(&mut self) -> &mut [F] {
        // SAFETY: the caller's contract is the one `WriteArray::values_mut` needs.
        unsafe { self.written.values_mut() }
    }

    /// Writes gathered elements back into a strided parameter.
    pub fn scatter_back(self) {
        self.written.scatter_back();
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
        if !param.order().holds_for(array.as_untyped()) {
            return Err(InputError::Layout(format!(
                "{label} is not contiguous in its param's {} order",
                param.order().name()
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
pub struct GradArray<'py, F: NumpyElement>(ReadArray<'py, F>);

impl<'py, F: NumpyElement + crate::Element> GradArray<'py, F> {
    pub fn new(
        object: &Bound<'py, PyAny>,
        param: &ParamArray<'py, F>,
        aliases: &mut AliasCheck<'py>,
    ) -> Result<Self, InputError> {
        let label = Label::new(Role::Grad, param.site);
        let array = typed::<F>(&grad_as_array(object, label)?, label)?;
        check_shape(array.shape(), param.shape(), label)?;
        Ok(GradArray(ReadArray::new(&array, Some(param.order()), label, Some(aliases))?))
    }

    /// # Safety
    /// `AliasCheck::verify` must have passed for every array of the call.
    pub unsafe fn values(&self) -> &[F] {
        // SAFETY: the caller's contract is the one `ReadArray::values` needs.
        unsafe { self.0.values() }
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
