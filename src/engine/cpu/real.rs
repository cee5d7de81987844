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
    /// exp with FMAs: for `multiversion!` kernels only, where an FMA is one instruction (elsewhere f32's
    /// is a slow software call).
    fn exp_fma(self) -> Self;
    fn sqrt(self) -> Self;
    fn erf(self) -> Self;
    /// (erf(x), exp(−x²)): erf's approximation computes exp(−x²) anyway, and GELU's backward needs it.
    fn erf_and_gauss(self) -> (Self, Self);
    fn max(self, other: Self) -> Self;
    /// self·a + b with one rounding (an FMA instruction where the CPU has one).
    fn mul_add(self, a: Self, b: Self) -> Self;
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
    #[inline(always)]
    fn exp(self) -> Self {
        exp_f32(self)
    }
    #[inline(always)]
    fn exp_fma(self) -> Self {
        exp_f32_with(self, f32::mul_add)
    }
    #[inline]
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    #[inline(always)]
    fn erf(self) -> Self {
        erf_f32(self).0
    }
    #[inline(always)]
    fn erf_and_gauss(self) -> (Self, Self) {
        erf_f32(self)
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f32::max(self, other)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
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
    fn exp_fma(self) -> Self {
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
    fn erf_and_gauss(self) -> (Self, Self) {
        (libm::erf(self), (-self * self).exp())
    }
    #[inline]
    fn max(self, other: Self) -> Self {
        f64::max(self, other)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
}

/// exp for f32 without a libm call, so that loops over slices vectorise: x = n·ln2 + r with |r| ≤ ln2/2,
/// e^r by a degree-6 polynomial, 2^n through the exponent bits. Relative error ≤ 2e-7 (about 2 ulp).
/// Results below f32's normal range flush to 0 (exp(−∞) = 0 exactly), above it saturate to +∞.
/// Plain multiplies and adds (no FMA), so it is as fast outside `multiversion!` kernels as inside.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp_f32_with(x, |a, b, c| a * b + c)
}

/// `exp_f32` with a·b + c computed by `fma`: `f32::mul_add` inside `multiversion!` kernels, where it is
/// one instruction (an exact, slow software call in the baseline build, which therefore rounds the same).
#[inline(always)]
pub fn exp_f32_with(x: f32, fma: impl Fn(f32, f32, f32) -> f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to the nearest integer
    #[allow(clippy::manual_clamp)] // max/min: a NaN input becomes a finite value, clamp would keep it NaN
    let xc = x.max(-87.0).min(88.0);
    let t = fma(xc, LOG2E, ROUND); // n = round(x·log2 e) sits in the low mantissa bits of t
    let n = t - ROUND;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, xc));
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = fma(p, r, c);
    }
    // 2^n from the integer bits of t: (n + 127) << 23, all in integer arithmetic (vectorises).
    let scale = f32::from_bits((t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23);
    let y = p * scale;
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        y
    }
}

/// (erf(x), exp(−x²)) for f32, erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7 in exact arithmetic,
/// ≤ 7e-7 in f32): the formula PyTorch's vectorised CPU `erf` uses, so GELU here rounds the way
/// nanoGPT's does. exp(−x²) is part of the formula; GELU's backward reuses it for the density.
/// The FMAs (`mul_add`) are single instructions in the AVX2 and AVX-512 builds of `multiversion!` kernels
/// (GELU's) and exact software calls in the baseline build, so every build rounds the same way.
#[inline(always)]
pub fn erf_f32(x: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let ax = x.abs();
    let t = recip_f32(P.mul_add(ax.min(16.0), 1.0)); // erf = ±1 in f32 far before |x| = 16
    let poly = A[4].mul_add(t, A[3]).mul_add(t, A[2]).mul_add(t, A[1]).mul_add(t, A[0]) * t;
    let gauss = exp_f32_with(-ax * ax, f32::mul_add);
    let r = (-poly).mul_add(gauss, 1.0);
    (r.copysign(x), gauss)
}

/// 1/y for y in [1, 2^64] without a division (a vector division costs 10–16 cycles): a first guess from
/// the exponent bits (within 12%), then three Newton steps r ← r + r·(1 − y·r), each squaring the error
/// (the residual 1 − y·r taken exactly by an FMA), to within 1 ulp.
#[inline(always)]
fn recip_f32(y: f32) -> f32 {
    let mut r = f32::from_bits(0x7EF3_11C7u32.wrapping_sub(y.to_bits()));
    for _ in 0..3 {
        r = r.mul_add((-y).mul_add(r, 1.0), r);
    }
    r
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_erf_are_accurate() {
        let mut worst_exp: f64 = 0.0;
        let mut worst_erf: f64 = 0.0;
        for i in -200_000..=200_000 {
            let x = i as f32 * 4.35e-4; // [-87, 87]
            let r = (x as f64).exp();
            for e in [exp_f32(x), exp_f32_with(x, f32::mul_add)] {
                worst_exp = worst_exp.max(((e as f64 - r) / r).abs());
            }
            let x = i as f32 * 5e-5; // [-10, 10]
            worst_erf = worst_erf.max((erf_f32(x).0 as f64 - libm::erf(x as f64)).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp:e}");
        assert!(worst_erf < 1e-6, "erf absolute error {worst_erf:e}"); // 1.5e-7 formula + f32 rounding of 1 − poly·exp
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(recip_f32(1.0), 1.0);
        for i in 0..=100_000 {
            let y = 1.0 + i as f32 * 1.6e-4 * (1.0 + i as f32 * 1e-3); // [1, ~1.6e3]
            let rel = ((recip_f32(y) as f64) * (y as f64) - 1.0).abs();
            assert!(rel < 1.2e-7, "1/{y}: relative error {rel:e}");
        }
        assert_eq!(erf_f32(f32::INFINITY).0, 1.0);
        assert_eq!(erf_f32(-1e30).0, -1.0);
        assert!(erf_f32(0.0).0.abs() < 2e-7); // A&S 7.1.26 gives 1 − Σa_k ≈ 1e-9 at 0, plus rounding
    }
}
