//! Refusing steps whose arrays share memory.
//!
//! A step writes params and state arrays in place while reading gradients. If a
//! written array shares memory with any other array of the call (a gradient
//! that is its own param, overlapping params, a state array shared by two
//! params), the result would depend on the order of the writes, and the
//! mutable slices handed to the kernels would alias. [`AliasCheck`] collects
//! the byte range of every array of the call and refuses any overlap that
//! involves a written array.
//!
//! Ranges that overlap are confirmed with `numpy.shares_memory` unless both
//! arrays are contiguous, so interleaved strided views of one buffer (such as
//! `x[0::2]` and `x[1::2]`) are accepted.
//!
//! An optimizer writes the same params and state arrays at every step, so the
//! sorted, pairwise-disjoint ranges of the written arrays are remembered: when
//! a call writes exactly the same ranges as a recent one, only the gradients
//! (new arrays at every step) are checked against them.

use super::errors::InputError;
use super::site::{Label, Role, Site};
use numpy::npyffi::objects::_PyArray_GET_ITEM_DATA;
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The bytes one array spans in memory, `[start, end)`, and which array it is.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Range {
    start: usize,
    end: usize,
    /// Index into `AliasCheck::arrays`.
    array: u32,
}

/// What an error message and the exact overlap test need to know of an array.
struct ArrayInfo<'py> {
    array: Bound<'py, PyUntypedArray>,
    contiguous: bool,
    label: Label,
}

/// Written ranges sorted by start and known to be pairwise disjoint, with the
/// order they were added in (the cache key).
struct VerifiedWrites {
    in_call_order: Vec<(usize, usize)>,
    sorted: Vec<(usize, usize)>,
}

/// The write sets of the last few verified calls (a few optimizers or groups
/// stepping in turn).
static RECENT: Mutex<Vec<Arc<VerifiedWrites>>> = Mutex::new(Vec::new());
const RECENT_CAPACITY: usize = 8;

/// Collects the arrays of one call; [`verify`](AliasCheck::verify) refuses overlaps.
pub struct AliasCheck<'py> {
    written: Vec<Range>,
    read: Vec<Range>,
    arrays: Vec<ArrayInfo<'py>>,
}

impl<'py> AliasCheck<'py> {
    pub fn with_capacity(written: usize, read: usize) -> Self {
        AliasCheck {
            written: Vec::with_capacity(written),
            read: Vec::with_capacity(read),
            arrays: Vec::with_capacity(written + read),
        }
    }

    /// Records an array of the call, named `role` `index` in error messages.
    pub fn add<F: numpy::Element>(
        &mut self,
        array: &Bound<'py, PyArrayDyn<F>>,
        access: Access,
        role: &'static str,
        index: usize,
    ) {
        let role = if role == "param" { Role::Param } else { Role::Other(role) };
        self.add_labeled(array.as_untyped(), std::mem::size_of::<F>(), access, Label { role, site: Site::flat(index) });
    }

    /// Records an array of the call with the label its error messages use.
    pub fn add_labeled(&mut self, array: &Bound<'py, PyUntypedArray>, item_size: usize, access: Access, label: Label) {
        let Some((start, end)) = byte_range(array, item_size) else {
            return;
        };
        let range = Range { start, end, array: self.arrays.len() as u32 };
        self.arrays.push(ArrayInfo { array: array.clone(), contiguous: array.is_contiguous(), label });
        match access {
            Access::Write => self.written.push(range),
            Access::Read => self.read.push(range),
        }
    }

    pub fn verify(mut self) -> Result<(), InputError> {
        if let Some(known) = recent_match(&self.written) {
            // The written arrays are disjoint; a read range touching any of them
            // must still be looked at (with its array known, for the message).
            return self.check_reads_against(&known.sorted);
        }
        let in_call_order: Vec<(usize, usize)> = self.written.iter().map(|r| (r.start, r.end)).collect();
        self.written.sort_unstable_by_key(|r| r.start);
        let mut all_disjoint = true;
        let mut furthest = 0usize;
        for i in 0..self.written.len() {
            let range = self.written[i];
            if range.start < furthest {
                all_disjoint = false;
                for earlier in &self.written[..i] {
                    if earlier.end > range.start && self.shares_memory(earlier, &range) {
                        return Err(self.alias_error(earlier, &range));
                    }
                }
            }
            furthest = furthest.max(range.end);
        }
        self.check_reads_in_full()?;
        if all_disjoint {
            let sorted = self.written.iter().map(|r| (r.start, r.end)).collect();
            remember(VerifiedWrites { in_call_order, sorted });
        }
        Ok(())
    }

    /// Each read range against disjoint sorted written ranges: only the last
    /// written range that starts before the read one ends can overlap it.
    fn check_reads_against(&self, sorted: &[(usize, usize)]) -> Result<(), InputError> {
        for read in &self.read {
            let candidates = sorted.partition_point(|&(start, _)| start < read.end);
            if candidates > 0 && sorted[candidates - 1].1 > read.start {
                // Rare: find which written array it is and decide exactly.
                return self.check_reads_in_full();
            }
        }
        Ok(())
    }

    /// Each read range against the written ranges, which are sorted by start
    /// but may overlap each other (interleaved strided views).
    fn check_reads_in_full(&self) -> Result<(), InputError> {
        let mut written = self.written.clone();
        written.sort_unstable_by_key(|r| r.start);
        let mut reach = Vec::with_capacity(written.len());
        let mut furthest = 0usize;
        for range in &written {
            furthest = furthest.max(range.end);
            reach.push(furthest);
        }
        for read in &self.read {
            let candidates = written.partition_point(|w| w.start < read.end);
            for j in (0..candidates).rev() {
                if reach[j] <= read.start {
                    break;
                }
                if written[j].end > read.start && self.shares_memory(&written[j], read) {
                    return Err(self.alias_error(&written[j], read));
                }
            }
        }
        Ok(())
    }

    /// Whether two arrays whose ranges overlap really share an element.
    fn shares_memory(&self, a: &Range, b: &Range) -> bool {
        let (a, b) = (&self.arrays[a.array as usize], &self.arrays[b.array as usize]);
        if a.contiguous && b.contiguous {
            return true;
        }
        let result = a
            .array
            .py()
            .import("numpy")
            .and_then(|numpy| numpy.getattr("shares_memory"))
            .and_then(|f| f.call1((&a.array, &b.array)))
            .and_then(|r| r.is_truthy());
        // If NumPy cannot decide, treat the arrays as overlapping.
        result.unwrap_or(true)
    }

    fn alias_error(&self, a: &Range, b: &Range) -> InputError {
        let (a, b) = (&self.arrays[a.array as usize], &self.arrays[b.array as usize]);
        let (first, second) = if a.label.sort_key() <= b.label.sort_key() { (a, b) } else { (b, a) };
        InputError::Alias(format!(
            "{} and {} share memory; every array a step writes must have memory of its own",
            first.label, second.label
        ))
    }
}

fn recent_match(written: &[Range]) -> Option<Arc<VerifiedWrites>> {
    let recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let same = |known: &VerifiedWrites| {
        known.in_call_order.len() == written.len()
            && known.in_call_order.iter().zip(written).all(|(&(start, end), r)| start == r.start && end == r.end)
    };
    recent.iter().find(|known| same(known)).cloned()
}

fn remember(verified: VerifiedWrites) {
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() == RECENT_CAPACITY {
        recent.remove(0);
    }
    recent.push(Arc::new(verified));
}

/// `[lowest byte, one past the highest byte)` an array touches; None when empty.
fn byte_range(array: &Bound<'_, PyUntypedArray>, item_size: usize) -> Option<(usize, usize)> {
    let shape = array.shape();
    if shape.contains(&0) {
        return None;
    }
    // SAFETY: reading the data pointer of a live array.
    let data = unsafe { (*_PyArray_GET_ITEM_DATA(array.as_array_ptr())).data } as isize;
    if array.is_contiguous() {
        // `len` consecutive items from `data`.
        let len: usize = shape.iter().product();
        return Some((data as usize, data as usize + len * item_size));
    }
    let (mut low, mut high) = (data, data);
    for (&n, &stride) in shape.iter().zip(array.strides()) {
        let span = (n as isize - 1) * stride;
        if span < 0 {
            low += span;
        } else {
            high += span;
        }
    }
    Some((low as usize, high as usize + item_size))
}
