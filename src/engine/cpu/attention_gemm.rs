//! The triangular products of the fused attention kernel, written out rather than sent to the GEMM
//! crate: weights·V and dS·K (a block of up to 64 queries against the keys up to it), and weightsᵀ·dY and
//! dSᵀ·Q (those keys against the block's queries). The causal mask zeroes part of one operand; only here
//! can a product skip that part row block by row block (`Tri`), nearly half of the work at T = 64, and at
//! these sizes the crate's packing and set-up cost about as much as the arithmetic. (Q·Kᵀ and dY·Vᵀ read
//! K and V across their rows; they stay with the GEMM crate, whose packing does that transpose.)
//!
//!   c (m, n) [+]= α · a (m, k) · b (k, n),   a with any strides, b with rows of n contiguous floats
//!
//! Blocks of 8 rows × 32 columns are accumulated in registers over k, then scaled and stored.

use super::real::Real;
use crate::multiversion;

/// Rows and columns of the register block.
const MR: usize = 8;
const NB: usize = 32;

/// Which part of a product the causal mask leaves: `off` is the first query of the block, so that row r
/// of a query-major operand is query off + r.
#[derive(Clone, Copy, Debug)]
pub enum Tri {
    /// a (r, p) is 0 for keys p > off + r (weights times V or K): k up to the row block's last query.
    KUpTo(usize),
    /// Output row j is a key and a (j, p) = 0 for queries off + p < j (weightsᵀ times dY or Q): k from
    /// the row block's first key.
    KFrom(usize),
}

impl Tri {
    /// (k start, k end) for output rows r0..r1.
    fn limits(self, r0: usize, r1: usize, k: usize) -> (usize, usize) {
        match self {
            Tri::KUpTo(off) => (0, (off + r1).min(k)),
            Tri::KFrom(off) => (r0.saturating_sub(off).min(k), k),
        }
    }
}

/// c (m, n) = [c +] α · a (m, k) · b (k, n) over the part `tri` leaves; a is (pointer, row stride,
/// column stride), b (pointer, row stride) with unit column stride, c has row stride ldc.
///
/// # Safety
/// Every operand must be valid for its shape and strides, and c must not alias a or b.
#[allow(clippy::too_many_arguments)]
pub unsafe fn small_gemm<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut F,
    ldc: usize,
    accumulate: bool,
    a: (*const F, usize, usize),
    b: (*const F, usize),
    alpha: F,
    tri: Tri,
) {
    kernel(m, n, k, c, ldc, accumulate, a.0, a.1, a.2, b.0, b.1, alpha, tri)
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn kernel<F: Real>(m: usize, n: usize, k: usize, c: *mut F, ldc: usize, accumulate: bool, a: *const F, ars: usize, acs: usize, b: *const F, ldb: usize, alpha: F, tri: Tri) {
        let mut r0 = 0;
        while r0 < m {
            let rows = MR.min(m - r0);
            let (klo, khi) = tri.limits(r0, r0 + rows, k);
            let mut j0 = 0;
            // SAFETY (every block): rows r0..r0 + rows < m, columns j0..j0 + width ≤ n, k in klo..khi ≤ k,
            // all inside the operands the caller vouched for.
            while j0 < n {
                let (ap, bp, cp) = unsafe { (a.add(r0 * ars), b.add(j0), c.add(r0 * ldc + j0)) };
                let width = if n - j0 >= NB { NB } else if n - j0 >= 16 { 16 } else { 1 };
                if rows == MR {
                    unsafe {
                        match width {
                            NB => block::<F, MR, NB>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                            16 => block::<F, MR, 16>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                            _ => block::<F, MR, 1>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                        }
                    }
                } else {
                    for r in 0..rows {
                        unsafe {
                            let (ap, cp) = (ap.add(r * ars), cp.add(r * ldc));
                            match width {
                                NB => block::<F, 1, NB>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                                16 => block::<F, 1, 16>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                                _ => block::<F, 1, 1>(klo, khi, ap, ars, acs, bp, ldb, cp, ldc, accumulate, alpha),
                            }
                        }
                    }
                }
                j0 += width;
            }
            r0 += rows;
        }
    }
}

/// One register block: R rows × W columns of c from k = klo..khi, held in `acc` throughout.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block<F: Real, const R: usize, const W: usize>(
    klo: usize,
    khi: usize,
    a: *const F,
    ars: usize,
    acs: usize,
    b: *const F,
    ldb: usize,
    c: *mut F,
    ldc: usize,
    accumulate: bool,
    alpha: F,
) {
    let mut acc = [[F::ZERO; W]; R];
    for p in klo..khi {
        let bp = b.add(p * ldb);
        let bv: [F; W] = std::array::from_fn(|q| *bp.add(q));
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = *a.add(r * ars + p * acs);
            for (x, &y) in accr.iter_mut().zip(&bv) {
                *x = av.mul_add(y, *x);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        let cp = c.add(r * ldc);
        for (q, &x) in accr.iter().enumerate() {
            let v = alpha * x;
            *cp.add(q) = if accumulate { *cp.add(q) + v } else { v };
        }
    }
}
