//! LayerNorm over the last dimension: y = (x − μ) / sqrt(σ² + eps) · w (+ b), population variance.

use super::real::{Real, COL_CHUNK, ROW_CHUNK};
use rayon::prelude::*;

pub const EPS: f64 = 1e-5;

/// out (N, C), mean (N), rstd (N) from inp (N, C), weight (C), bias (C)
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
    let eps = F::from_f64(EPS);
    let inv_c = F::ONE / F::from_f64(c as f64);
    out[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .zip(mean[..n].par_chunks_mut(ROW_CHUNK))
        .zip(rstd[..n].par_chunks_mut(ROW_CHUNK))
        .zip(inp[..n * c].par_chunks(c * ROW_CHUNK))
        .for_each(|(((o, mu), rs), x)| {
            for (r, (orow, xrow)) in o.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
                let mut m = F::ZERO;
                for &v in xrow {
                    m += v;
                }
                m *= inv_c;
                let mut var = F::ZERO;
                for &v in xrow {
                    let d = v - m;
                    var += d * d;
                }
                var *= inv_c;
                let s = F::ONE / (var + eps).sqrt();
                for i in 0..c {
                    let norm = (xrow[i] - m) * s;
                    orow[i] = norm * weight[i] + bias.map_or(F::ZERO, |b| b[i]);
                }
                mu[r] = m;
                rs[r] = s;
            }
        });
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
    let inv_c = F::ONE / F::from_f64(c as f64);
    dinp[..n * c]
        .par_chunks_mut(c * ROW_CHUNK)
        .enumerate()
        .for_each(|(chunk, di)| {
            for (r, dirow) in di.chunks_exact_mut(c).enumerate() {
                let row = chunk * ROW_CHUNK + r;
                let (x, g) = (&inp[row * c..(row + 1) * c], &dout[row * c..(row + 1) * c]);
                let (m, s) = (mean[row], rstd[row]);
                let mut g_mean = F::ZERO;
                let mut gn_mean = F::ZERO;
                for i in 0..c {
                    let gi = g[i] * weight[i];
                    g_mean += gi;
                    gn_mean += gi * (x[i] - m) * s;
                }
                g_mean *= inv_c;
                gn_mean *= inv_c;
                for i in 0..c {
                    let norm = (x[i] - m) * s;
                    dirow[i] += s * (g[i] * weight[i] - g_mean - norm * gn_mean);
                }
            }
        });
    // Parameter gradients: each task owns a block of channels and sums over all rows in order.
    let columns = |ci: usize, dw: &mut [F], mut db: Option<&mut [F]>| {
        let c0 = ci * COL_CHUNK;
        for row in 0..n {
            let (m, s) = (mean[row], rstd[row]);
            let x = &inp[row * c + c0..row * c + c0 + dw.len()];
            let g = &dout[row * c + c0..row * c + c0 + dw.len()];
            for j in 0..dw.len() {
                dw[j] += (x[j] - m) * s * g[j];
            }
            if let Some(db) = db.as_deref_mut() {
                for j in 0..dw.len() {
                    db[j] += g[j];
                }
            }
        }
    };
    match dbias {
        Some(db) => dweight[..c]
            .par_chunks_mut(COL_CHUNK)
            .zip(db[..c].par_chunks_mut(COL_CHUNK))
            .enumerate()
            .for_each(|(ci, (dw, db))| columns(ci, dw, Some(db))),
        None => dweight[..c].par_chunks_mut(COL_CHUNK).enumerate().for_each(|(ci, dw)| columns(ci, dw, None)),
    }
}
