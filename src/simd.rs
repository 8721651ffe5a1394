//! Run-time choice of the SIMD instruction set.
//!
//! The wheel is compiled for the baseline CPU of its target (x86-64 with SSE2,
//! or aarch64 with NEON). Kernels are written as plain loops over slices; calling
//! them through [`dispatch`] compiles a copy of the loop inside a function with
//! AVX2+FMA or AVX-512 enabled, which LLVM vectorizes with those instructions.
//! The level is detected once; [`set_forced_level`] overrides it so tests can run
//! every level the machine has and check that they agree bitwise.
//!
//! Every level computes the same IEEE operations in the same order for each
//! element (`mul_add` is a true fused multiply-add on all of them), so the
//! results do not depend on the level.

use crate::error::OptimError;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set level a kernel can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The target's baseline: SSE2 on x86-64, NEON on aarch64.
    Baseline = 1,
    /// AVX2 with FMA (x86-64-v3).
    Avx2 = 2,
    /// AVX-512 F/VL/BW/DQ (x86-64-v4).
    Avx512 = 3,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, OptimError> {
        match name {
            "baseline" => Ok(SimdLevel::Baseline),
            "avx2" => Ok(SimdLevel::Avx2),
            "avx512" => Ok(SimdLevel::Avx512),
            other => Err(OptimError::InvalidSetting(format!(
                "unknown SIMD level {other:?}; expected one of \"baseline\", \"avx2\", \"avx512\""
            ))),
        }
    }

    fn from_u8(x: u8) -> Option<Self> {
        match x {
            1 => Some(SimdLevel::Baseline),
            2 => Some(SimdLevel::Avx2),
            3 => Some(SimdLevel::Avx512),
            _ => None,
        }
    }
}

/// The best level this CPU supports, detected once.
pub fn detected_level() -> SimdLevel {
    static DETECTED: OnceLock<SimdLevel> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> SimdLevel {
    if std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512dq")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
    {
        SimdLevel::Avx512
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> SimdLevel {
    SimdLevel::Baseline
}

/// Every level this CPU can run, lowest first.
pub fn available_levels() -> Vec<SimdLevel> {
    [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|&level| level <= detected_level())
        .collect()
}

/// 0 means "not forced: use the detected level".
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Force a level (`Some`) or go back to the detected one (`None`).
/// A level the CPU does not support is refused.
pub fn set_forced_level(level: Option<SimdLevel>) -> Result<(), OptimError> {
    match level {
        None => FORCED.store(0, Ordering::Relaxed),
        Some(level) if level <= detected_level() => FORCED.store(level as u8, Ordering::Relaxed),
        Some(level) => {
            return Err(OptimError::InvalidSetting(format!(
                "SIMD level {:?} is not supported by this CPU (best: {:?})",
                level.name(),
                detected_level().name()
            )));
        }
    }
    Ok(())
}

/// The level kernels run at now.
#[inline]
pub fn active_level() -> SimdLevel {
    SimdLevel::from_u8(FORCED.load(Ordering::Relaxed)).unwrap_or_else(detected_level)
}

/// Runs `kernel` compiled for the active SIMD level.
///
/// The closure must be marked `#[inline(always)]`, and so must the helpers it
/// calls: only code inlined into the `#[target_feature]` functions below is
/// compiled for their instruction set. A closure left out of line is compiled
/// for the baseline CPU (SSE2, and `mul_add` as a libm call).
#[inline(always)]
pub fn dispatch<R>(kernel: impl FnOnce() -> R) -> R {
    match active_level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active_level` only returns levels the CPU was detected to support.
        SimdLevel::Avx512 => unsafe { x86::run_avx512(kernel) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        SimdLevel::Avx2 => unsafe { x86::run_avx2(kernel) },
        _ => kernel(),
    }
}

/// Runs `kernel` compiled for AVX2 at the AVX2 and AVX-512 levels (else for the
/// baseline), with the closure rules of [`dispatch`]. For kernels that keep
/// 256-bit accumulators: compiled for AVX-512, LLVM packs two of them into one
/// register with extra shuffles, which is slower. Same operations at every level.
#[inline(always)]
pub fn dispatch_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    match active_level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `active_level` only returns levels the CPU was detected to
        // support, and the AVX-512 level is only detected with AVX2 and FMA.
        SimdLevel::Avx2 | SimdLevel::Avx512 => unsafe { x86::run_avx2(kernel) },
        _ => kernel(),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2<R>(kernel: impl FnOnce() -> R) -> R {
        kernel()
    }

    /// # Safety
    /// The CPU must support AVX-512 F/VL/BW/DQ, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) unsafe fn run_avx512<R>(kernel: impl FnOnce() -> R) -> R {
        kernel()
    }
}
