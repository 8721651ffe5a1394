//! The floating-point element types the kernels run on (`f32` and `f64`).
//!
//! Every kernel is generic over [`Element`] so one body serves both dtypes. The
//! methods are the few operations whose rounding the torch recipes pin down:
//! `mul_add` is a fused multiply-add (one rounding), everything else rounds after
//! each operation, exactly as IEEE 754 does in `f32`/`f64` arithmetic.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// A floating-point element type a kernel can update in place.
pub trait Element:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + 'static
{
    const ZERO: Self;
    const ONE: Self;
    /// The dtype name NumPy uses (`"float32"`, `"float64"`), for error messages.
    const NAME: &'static str;
    /// The machine epsilon (`numpy.finfo(dtype).eps`), as a double.
    const EPSILON: f64;

    /// A Python double rounded to this type, as torch rounds scalar arguments.
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// `self * a + b` with a single rounding.
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! impl_element {
    ($t:ty, $name:literal) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAME: &'static str = $name;
            const EPSILON: f64 = <$t>::EPSILON as f64;

            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
        }
    };
}

impl_element!(f32, "float32");
impl_element!(f64, "float64");

/// `max(a, b)` that propagates NaN from either side, like `torch.maximum`.
#[inline(always)]
pub fn nan_max<F: Element>(a: F, b: F) -> F {
    // `b > a` is false when `a` is NaN, so a NaN `a` is kept as well.
    if b.is_nan() || b > a { b } else { a }
}
