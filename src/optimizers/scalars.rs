//! How torch.optim computes the per-tensor scalars of a step, for the rules
//! that need more than Adam's f64 arithmetic.
//!
//! - torch keeps `step` (and ASGD's `eta`/`mu`, NAdam's `mu_product`) as 0-d
//!   float32 tensors even for float64 params, and updates them in float32:
//!   `step += 1` is a float32 addition (it stops growing at 2^24).
//! - Python's `x ** y` is C `pow`. LLVM rewrites `pow(x, 0.5)` with a constant
//!   exponent into `sqrt(x)`, which differs from glibc's `pow` in about 0.09 % of
//!   doubles, so the exponent is hidden from the optimizer.

/// `x` rounded to float32, as a float32 0-d tensor holds it.
#[inline]
pub fn to_float32(x: f64) -> f64 {
    x as f32 as f64
}

/// `step + 1` computed on a float32 0-d tensor holding `step`.
#[inline]
pub fn float32_step(step: f64) -> f64 {
    (step as f32 + 1.0f32) as f64
}

/// Python's `base ** exponent` for floats: C `pow`, never rewritten into `sqrt`.
#[inline]
pub fn python_pow(base: f64, exponent: f64) -> f64 {
    base.powf(std::hint::black_box(exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_stops_at_two_to_the_24() {
        assert_eq!(float32_step(0.0), 1.0);
        assert_eq!(float32_step(16_777_215.0), 16_777_216.0);
        assert_eq!(float32_step(16_777_216.0), 16_777_216.0);
        // A loaded step that float32 cannot hold is rounded first, as torch stores it.
        assert_eq!(float32_step(0.1), (0.1f32 + 1.0f32) as f64);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn half_power_is_glibc_pow_not_sqrt() {
        // glibc's pow and IEEE sqrt round this one differently (Python: x ** 0.5
        // = 0.8295720632035004, math.sqrt(x) = 0.8295720632035005).
        let x = 0.6881898080477126f64;
        assert_eq!(python_pow(x, 0.5), 0.8295720632035004);
        assert_eq!(x.sqrt(), 0.8295720632035005);
    }
}
