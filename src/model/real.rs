//! The scalar type of the kernels. Training runs in f32; the same kernels in f64 give the
//! finite-difference checks and the comparison with the float64 golden reference.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn sqrt(self) -> Self;
    fn erf(self) -> Self;
    fn max(self, other: Self) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn exp(self) -> Self {
        f32::exp(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline]
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    #[inline]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
}

/// A raw pointer that may cross threads. Used where parallel tasks write disjoint, non-contiguous parts
/// of one buffer (one attention head of one sequence); each use states why the parts are disjoint.
#[derive(Clone, Copy)]
pub struct SyncPtr<F>(pub *mut F);
unsafe impl<F> Send for SyncPtr<F> {}
unsafe impl<F> Sync for SyncPtr<F> {}

impl<F> SyncPtr<F> {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    #[inline]
    pub fn get(self) -> *mut F {
        self.0
    }
}

/// Rows per parallel task for row-wise kernels: large enough to amortise rayon's task overhead.
pub const ROW_CHUNK: usize = 16;
/// Channels per parallel task for column reductions (parameter gradients summed over rows). Each
/// task sums its channels over all rows in order, so the result does not depend on the thread count.
pub const COL_CHUNK: usize = 32;
