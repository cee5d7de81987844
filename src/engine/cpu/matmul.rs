//! Linear layer: out = inp @ weight^T + bias, with weight stored (OC, C) as in PyTorch.
//! Both directions are three GEMMs through the `gemm` crate; strides express the transposes.

use super::real::{Real, SyncPtr};
use crate::multiversion;
use rayon::prelude::*;

/// dst (m, n) = [dst +] scale · lhs (m, k) @ rhs (k, n), every operand given as (pointer, row stride,
/// column stride), on `threads` rayon threads (Some(0): the whole pool) or, with None, on the calling
/// thread alone (inside kernels that are already parallel, e.g. over attention heads).
///
/// # Safety
/// Every operand must be valid for the given shape and strides, and dst must not alias lhs or rhs.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut F,
    dst_rs: usize,
    accumulate: bool,
    lhs: (*const F, usize, usize),
    rhs: (*const F, usize, usize),
    scale: F,
    threads: Option<usize>,
) {
    if m == 0 || n == 0 {
        return;
    }
    GEMM_DEPTH.with(|d| d.set(d.get() + 1));
    let par = match threads {
        Some(n) => gemm::Parallelism::Rayon(n),
        None => gemm::Parallelism::None,
    };
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        F::ONE,
        scale,
        false,
        false,
        false,
        par,
    );
    GEMM_DEPTH.with(|d| d.set(d.get() - 1));
}

thread_local! {
    // calls of `gemm` under way on this thread (a worker may start another GEMM while it waits)
    static GEMM_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether this thread is inside a call to the GEMM crate. The crate allocates its packing buffers on
/// each call; everything else in a training step allocates nothing, which tests/allocations.rs checks
/// with a counting allocator that uses this to tell the two apart. (A GEMM split over the pool runs
/// parts on other threads, which this does not see: the test runs the sharded, single-threaded GEMMs.)
pub fn in_gemm() -> bool {
    GEMM_DEPTH.with(|d| d.get() > 0)
}

/// out (N, OC) = inp (N, C) @ weight^T (C, OC) + bias (OC). `parallel`: the GEMM uses the whole pool
/// (false inside a shard of the batch, where each worker already has its own rows).
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward<F: Real>(
    out: &mut [F],
    inp: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    n: usize,
    c: usize,
    oc: usize,
    parallel: bool,
) {
    assert!(out.len() >= n * oc && inp.len() >= n * c && weight.len() >= oc * c);
    if let Some(b) = bias {
        assert!(b.len() >= oc);
        out[..n * oc].par_chunks_mut(oc).for_each(|row| row.copy_from_slice(&b[..oc]));
    }
    // weight^T as a (C, OC) view of the (OC, C) buffer: row stride 1, column stride C.
    // SAFETY: slice lengths were checked against these shapes and strides above.
    unsafe {
        gemm(
            n,
            oc,
            c,
            out.as_mut_ptr(),
            oc,
            bias.is_some(),
            (inp.as_ptr(), c, 1),
            (weight.as_ptr(), 1, c),
            F::ONE,
            parallel.then_some(0),
        )
    };
}

/// How a backward GEMM treats the input gradient already in its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dinp {
    /// dinp = dout @ weight: the buffer's old contents are ignored (no zeroing pass first).
    Write,
    /// dinp += dout @ weight: the input also feeds another layer whose gradient is already there.
    Add,
}

/// dinp (N, C) = or += dout (N, OC) @ weight (OC, C)   (see `Dinp`)
/// dweight (OC, C) += dout^T (OC, N) @ inp (N, C)
/// dbias (OC) += Σ_n dout (N, OC)
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<F: Real>(
    dinp: &mut [F],
    dinp_mode: Dinp,
    dweight: &mut [F],
    dbias: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    weight: &[F],
    n: usize,
    c: usize,
    oc: usize,
    parallel: bool,
) {
    assert!(dinp.len() >= n * c && dweight.len() >= oc * c && dout.len() >= n * oc && inp.len() >= n * c);
    // The two products are independent: run them side by side, each on half of the pool, which keeps
    // every core busy even when one GEMM alone is too small to split well. Not `parallel`: each on the
    // thread that runs it (an idle worker may still take one).
    let half = parallel.then_some((rayon::current_num_threads() / 2).max(1));
    let (dinp_ptr, dw_ptr) = (SyncPtr(dinp.as_mut_ptr()), SyncPtr(dweight.as_mut_ptr()));
    rayon::join(
        // SAFETY: shapes checked above; dinp and dweight are distinct buffers.
        || unsafe {
            gemm(
                n,
                c,
                oc,
                dinp_ptr.get(),
                c,
                dinp_mode == Dinp::Add,
                (dout.as_ptr(), oc, 1),
                (weight.as_ptr(), c, 1),
                F::ONE,
                half,
            )
        },
        // SAFETY: as above; inp is a live slice of N×C.
        || unsafe { weight_grads(dw_ptr.get(), dbias, dout, inp.as_ptr(), n, c, oc, half) },
    );
}

/// dweight (OC, C) += dout^T (OC, N) @ inp (N, C);  dbias (OC) += Σ_n dout (N, OC).
///
/// # Safety
/// dweight must hold OC×C and inp N×C valid floats, and dweight must not alias dout or inp.
#[allow(clippy::too_many_arguments)]
unsafe fn weight_grads<F: Real>(
    dweight: *mut F,
    dbias: Option<&mut [F]>,
    dout: &[F],
    inp: *const F,
    n: usize,
    c: usize,
    oc: usize,
    threads: Option<usize>,
) {
    gemm(oc, c, n, dweight, c, true, (dout.as_ptr(), 1, oc), (inp, c, 1), F::ONE, threads);
    if let Some(db) = dbias {
        column_sum_into(&mut db[..oc], &dout[..n * oc], oc);
    }
}

/// `matmul_backward` for an input that is not needed afterwards: dweight and dbias first (they read
/// the input), then dinp = dout @ weight written over the input's buffer, which saves a buffer of the
/// input's size. The two GEMMs run one after the other, each on the whole pool when `parallel`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward_over_input<F: Real>(
    inp_then_dinp: &mut [F],
    dweight: &mut [F],
    dbias: Option<&mut [F]>,
    dout: &[F],
    weight: &[F],
    n: usize,
    c: usize,
    oc: usize,
    parallel: bool,
) {
    assert!(inp_then_dinp.len() >= n * c && dweight.len() >= oc * c && dout.len() >= n * oc && weight.len() >= oc * c);
    let threads = parallel.then_some(0);
    let buf = inp_then_dinp.as_mut_ptr();
    // SAFETY: shapes checked above; the weight gradient only reads buf, the GEMM after it only writes it.
    unsafe { weight_grads(dweight.as_mut_ptr(), dbias, dout, buf, n, c, oc, threads) };
    unsafe { gemm(n, c, oc, buf, c, false, (dout.as_ptr(), oc, 1), (weight.as_ptr(), c, 1), F::ONE, threads) };
}

/// acc (W) += Σ_rows m (rows, W), in row order for every column: deterministic for any thread count.
/// Tasks take 256 columns each and stream through the rows, adding whole row pieces (vectorised).
pub fn column_sum_into<F: Real>(acc: &mut [F], m: &[F], w: usize) {
    const COLS: usize = 256;
    acc.par_chunks_mut(COLS).enumerate().for_each(|(ci, a)| column_sum_block(a, m, w, ci * COLS));
}

multiversion! {
    fn column_sum_block<F: Real>(a: &mut [F], m: &[F], w: usize, c0: usize) {
        let len = a.len();
        for row in m.chunks_exact(w) {
            for (x, &y) in a.iter_mut().zip(&row[c0..c0 + len]) {
                *x += y;
            }
        }
    }
}
