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
        let eps = F::from_f64(EPS);
        let inv_c = F::ONE / F::from_f64(c as f64);
        for (r, (orow, xrow)) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
            let m = sum(xrow) * inv_c;
            // Σ (x − μ)², written into orow first so that the sum vectorises.
            for (d, &v) in orow.iter_mut().zip(xrow) {
                *d = v - m;
            }
            let var = dot(orow, orow) * inv_c;
            let s = F::ONE / (var + eps).sqrt();
            match bias {
                Some(b) => {
                    for i in 0..c {
                        orow[i] = orow[i] * s * weight[i] + b[i];
                    }
                }
                None => {
                    for i in 0..c {
                        orow[i] = orow[i] * s * weight[i];
                    }
                }
            }
            mu[r] = m;
            rs[r] = s;
        }
    }
}

/// dinp (N, C) += ∂L/∂x; dweight (C) += Σ_n norm·dout; dbias (C) += Σ_n dout.
/// With n̂ = (x − μ)·rstd and g = dout·w: dx = rstd · (g − mean(g) − n̂·mean(g·n̂)).
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
) {
    dinp[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .enumerate()
        .for_each(|(chunk, di)| backward_rows(di, chunk * ROW_CHUNK, dout, inp, weight, mean, rstd, c));
    // Parameter gradients: each task owns a block of channels and sums over all rows in order, so the
    // result does not depend on the thread count.
    match dbias {
        Some(db) => dweight[..c]
            .par_chunks_mut(COL_CHUNK)
            .zip(db[..c].par_chunks_mut(COL_CHUNK))
            .enumerate()
            .for_each(|(ci, (dw, db))| param_columns(ci * COL_CHUNK, dw, Some(db), dout, inp, mean, rstd, n, c)),
        None => dweight[..c]
            .par_chunks_mut(COL_CHUNK)
            .enumerate()
            .for_each(|(ci, dw)| param_columns(ci * COL_CHUNK, dw, None, dout, inp, mean, rstd, n, c)),
    }
}

multiversion! {
    fn backward_rows<F: Real>(di: &mut [F], row0: usize, dout: &[F], inp: &[F], weight: &[F], mean: &[F], rstd: &[F], c: usize) {
        let inv_c = F::ONE / F::from_f64(c as f64);
        for (r, dirow) in di.chunks_exact_mut(c).enumerate() {
            let row = row0 + r;
            let (x, g) = (&inp[row * c..(row + 1) * c], &dout[row * c..(row + 1) * c]);
            let (m, s) = (mean[row], rstd[row]);
            // mean(g·w) and mean(g·w·n̂) = Σ g·w·(x − μ) · rstd / C, with LANES partial sums
            let gw_sum = dot(g, weight);
            let mut gwx = [F::ZERO; super::simd::LANES];
            let chunks = c / super::simd::LANES * super::simd::LANES;
            for i0 in (0..chunks).step_by(super::simd::LANES) {
                for k in 0..super::simd::LANES {
                    let i = i0 + k;
                    gwx[k] += g[i] * weight[i] * (x[i] - m);
                }
            }
            let mut gwx_sum = F::ZERO;
            for i in chunks..c {
                gwx_sum += g[i] * weight[i] * (x[i] - m);
            }
            for v in gwx {
                gwx_sum += v;
            }
            let g_mean = gw_sum * inv_c;
            let gn_mean = gwx_sum * s * inv_c;
            for i in 0..c {
                let norm = (x[i] - m) * s;
                dirow[i] += s * (g[i] * weight[i] - g_mean - norm * gn_mean);
            }
        }
    }
}

multiversion! {
    fn param_columns<F: Real>(c0: usize, dw: &mut [F], db: Option<&mut [F]>, dout: &[F], inp: &[F], mean: &[F], rstd: &[F], n: usize, c: usize) {
        let w = dw.len();
        let mut db = db;
        for row in 0..n {
            let (m, s) = (mean[row], rstd[row]);
            let x = &inp[row * c + c0..row * c + c0 + w];
            let g = &dout[row * c + c0..row * c + c0 + w];
            for j in 0..w {
                dw[j] += (x[j] - m) * s * g[j];
            }
            if let Some(db) = db.as_deref_mut() {
                for j in 0..w {
                    db[j] += g[j];
                }
            }
        }
    }
}
