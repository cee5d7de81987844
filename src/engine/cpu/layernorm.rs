//! LayerNorm over the last dimension: y = (x − μ) / sqrt(σ² + eps) · w (+ b), population variance.

use super::real::{Real, COL_CHUNK, ROW_CHUNK};
use super::simd::{dot, sum};
use crate::multiversion;
use rayon::prelude::*;

pub const EPS: f64 = 1e-5;

/// out (N, C), mean (N), rstd (N) from inp (N, C), weight (C), bias (C)
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward<F: Real>(
    out: &mut [F],
    mean: &mut [F],
    rstd: &mut [F],
    inp: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    n: usize,
    c: usize,
) {
    out[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .zip(mean[..n].par_chunks_mut(ROW_CHUNK))
        .zip(rstd[..n].par_chunks_mut(ROW_CHUNK))
        .zip(inp[..n * c].par_chunks(c * ROW_CHUNK))
        .for_each(|(((o, mu), rs), x)| forward_rows(o, mu, rs, x, weight, bias, c));
}

multiversion! {
    fn forward_rows<F: Real>(o: &mut [F], mu: &mut [F], rs: &mut [F], x: &[F], weight: &[F], bias: Option<&[F]>, c: usize) {
        for (r, (orow, xrow)) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
            (mu[r], rs[r]) = layernorm_row(orow, xrow, weight, bias);
        }
    }
}

/// The residual add fused with the LayerNorm that reads it: res (N, C) = a + b, then out, mean, rstd as
/// `layernorm_forward` of res, row by row while the row is in cache (the same values, bitwise).
#[allow(clippy::too_many_arguments)]
pub fn residual_layernorm_forward<F: Real>(
    res: &mut [F],
    out: &mut [F],
    mean: &mut [F],
    rstd: &mut [F],
    a: &[F],
    b: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    n: usize,
    c: usize,
) {
    res[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .zip(out[..n * c].par_chunks_mut(c * ROW_CHUNK))
        .zip(mean[..n].par_chunks_mut(ROW_CHUNK))
        .zip(rstd[..n].par_chunks_mut(ROW_CHUNK))
        .zip(a[..n * c].par_chunks(c * ROW_CHUNK).zip(b[..n * c].par_chunks(c * ROW_CHUNK)))
        .for_each(|((((r, o), mu), rs), (a, b))| residual_rows(r, o, mu, rs, a, b, weight, bias, c));
}

multiversion! {
    fn residual_rows<F: Real>(res: &mut [F], o: &mut [F], mu: &mut [F], rs: &mut [F], a: &[F], b: &[F], weight: &[F], bias: Option<&[F]>, c: usize) {
        for (r, ((rrow, orow), (arow, brow))) in res.chunks_exact_mut(c).zip(o.chunks_exact_mut(c)).zip(a.chunks_exact(c).zip(b.chunks_exact(c))).enumerate() {
            for ((x, &p), &q) in rrow.iter_mut().zip(arow).zip(brow) {
                *x = p + q;
            }
            (mu[r], rs[r]) = layernorm_row(orow, rrow, weight, bias);
        }
    }
}

/// One row of the forward: out = LayerNorm(x); returns (mean, rstd).
#[inline(always)]
fn layernorm_row<F: Real>(out: &mut [F], x: &[F], weight: &[F], bias: Option<&[F]>) -> (F, F) {
    let inv_c = F::ONE / F::from_f64(out.len() as f64);
    let m = sum(x) * inv_c;
    // Σ (x − μ)², written into out first so that the sum vectorises.
    for (d, &v) in out.iter_mut().zip(x) {
        *d = v - m;
    }
    let var = dot(out, out) * inv_c;
    let s = F::ONE / (var + F::from_f64(EPS)).sqrt();
    normalize(out, x, m, s, weight, bias);
    (m, s)
}

/// out (N, C) = the forward's output again, from inp and the saved mean and rstd (bitwise the same: the
/// same operations in the same order), so that backward need not keep LayerNorm outputs.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_recompute<F: Real>(
    out: &mut [F],
    inp: &[F],
    mean: &[F],
    rstd: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    n: usize,
    c: usize,
) {
    out[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .zip(mean[..n].par_chunks(ROW_CHUNK))
        .zip(rstd[..n].par_chunks(ROW_CHUNK))
        .zip(inp[..n * c].par_chunks(c * ROW_CHUNK))
        .for_each(|(((o, mu), rs), x)| recompute_rows(o, mu, rs, x, weight, bias, c));
}

multiversion! {
    fn recompute_rows<F: Real>(o: &mut [F], mu: &[F], rs: &[F], x: &[F], weight: &[F], bias: Option<&[F]>, c: usize) {
        for (r, (orow, xrow)) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
            normalize(orow, xrow, mu[r], rs[r], weight, bias);
        }
    }
}

/// One output row: y = (x − μ)·rstd·w (+ b), the same operations for the forward and its recompute.
/// (Zipped slices rather than indices, so that no bounds check stops the loop vectorising.)
#[inline(always)]
fn normalize<F: Real>(out: &mut [F], x: &[F], m: F, s: F, weight: &[F], bias: Option<&[F]>) {
    let c = out.len();
    match bias {
        Some(b) => {
            for (((o, &x), &w), &bi) in out.iter_mut().zip(&x[..c]).zip(&weight[..c]).zip(&b[..c]) {
                *o = (x - m) * s * w + bi;
            }
        }
        None => {
            for ((o, &x), &w) in out.iter_mut().zip(&x[..c]).zip(&weight[..c]) {
                *o = (x - m) * s * w;
            }
        }
    }
}

/// Rows per block of partial parameter gradients. Fixed, so the summation order (and the result) does
/// not depend on the thread count.
const PARTIAL_ROWS: usize = 64;

/// dinp (N, C) += ∂L/∂x; dweight (C) += Σ_n n̂·dout; dbias (C) += Σ_n dout.
/// With n̂ = (x − μ)·rstd and g = dout·w: dx = rstd · (g − mean(g) − n̂·mean(g·n̂)).
/// `scratch` holds per-block partial sums of dweight and dbias; it grows on first use and is reused.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<F: Real>(
    dinp: &mut [F],
    dweight: &mut [F],
    dbias: Option<&mut [F]>,
    dout: &[F],
    inp: &[F],
    weight: &[F],
    mean: &[F],
    rstd: &[F],
    n: usize,
    c: usize,
    scratch: &mut Vec<F>,
) {
    let blocks = n.div_ceil(PARTIAL_ROWS);
    if scratch.len() < blocks * 2 * c {
        scratch.resize(blocks * 2 * c, F::ZERO);
    }
    dinp[..n * c]
        .par_chunks_mut(c * PARTIAL_ROWS)
        .zip(scratch[..blocks * 2 * c].par_chunks_mut(2 * c))
        .enumerate()
        .for_each(|(blk, (di, part))| backward_rows(di, part, blk * PARTIAL_ROWS, dout, inp, weight, mean, rstd, c));
    // Sum the blocks' partials in block order, in parallel over channels.
    let partials = &scratch[..blocks * 2 * c];
    let reduce = |off: usize, acc: &mut [F]| {
        acc.par_chunks_mut(COL_CHUNK).enumerate().for_each(|(ci, a)| {
            for blk in 0..blocks {
                let p = &partials[blk * 2 * c + off + ci * COL_CHUNK..][..a.len()];
                for (x, &y) in a.iter_mut().zip(p) {
                    *x += y;
                }
            }
        })
    };
    reduce(0, &mut dweight[..c]);
    if let Some(db) = dbias {
        reduce(c, &mut db[..c]);
    }
}

multiversion! {
    fn backward_rows<F: Real>(di: &mut [F], part: &mut [F], row0: usize, dout: &[F], inp: &[F], weight: &[F], mean: &[F], rstd: &[F], c: usize) {
        let inv_c = F::ONE / F::from_f64(c as f64);
        const L: usize = super::simd::LANES;
        let weight = &weight[..c];
        let (pw, pb) = part.split_at_mut(c);
        let pb = &mut pb[..c];
        pw.fill(F::ZERO);
        pb.fill(F::ZERO);
        for (r, dirow) in di.chunks_exact_mut(c).enumerate() {
            let row = row0 + r;
            let (x, g) = (&inp[row * c..(row + 1) * c], &dout[row * c..(row + 1) * c]);
            let (m, s) = (mean[row], rstd[row]);
            // mean(g·w) and mean(g·w·n̂) = Σ g·w·(x − μ) · rstd / C, with L partial sums
            let gw_sum = dot(g, weight);
            let mut gwx = [F::ZERO; L];
            let (gc, wc, xc) = (g.chunks_exact(L), weight.chunks_exact(L), x.chunks_exact(L));
            let (gr, wr, xr) = (gc.remainder(), wc.remainder(), xc.remainder());
            for ((gk, wk), xk) in gc.zip(wc).zip(xc) {
                for k in 0..L {
                    gwx[k] += gk[k] * wk[k] * (xk[k] - m);
                }
            }
            let mut gwx_sum = F::ZERO;
            for ((&gi, &wi), &xi) in gr.iter().zip(wr).zip(xr) {
                gwx_sum += gi * wi * (xi - m);
            }
            for v in gwx {
                gwx_sum += v;
            }
            let g_mean = gw_sum * inv_c;
            let gn_mean = gwx_sum * s * inv_c;
            for (((((d, &xi), &gi), &wi), pwi), pbi) in dirow.iter_mut().zip(x).zip(g).zip(weight).zip(pw.iter_mut()).zip(pb.iter_mut()) {
                let norm = (xi - m) * s;
                *d += s * (gi * wi - g_mean - norm * gn_mean);
                *pwi += norm * gi;
                *pbi += gi;
            }
        }
    }
}
