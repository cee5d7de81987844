//! Causal multi-head self-attention, the reference kernel (llm.c style: the probabilities are stored).
//!
//! qkv (B, T, 3C) holds q = [0, C), k = [C, 2C), v = [2C, 3C); head h uses channels h·hs..(h+1)·hs.
//! s_ij = q_i·k_j / √hs for j ≤ i (causal), p_i = normalize(s_i), y_i = Σ_j p_ij v_j.
//!
//! `normalize` is the one call site of the attention variant:
//!   softmax:  m = max_j s_j,          p_j = exp(s_j − m) / Σ_k exp(s_k − m)
//!   quiet:    m = max(0, max_j s_j),  p_j = exp(s_j − m) / (exp(−m) + Σ_k exp(s_k − m))
//! softmax1 is softmax with one extra key of score 0 and value 0. Both have the same backward:
//!   ∂L/∂s_j = p_j (g_j − Σ_k g_k p_k),  g = ∂L/∂p.
//! Under softmax1 a wrong mask gives zeros rather than NaN, so the tests check the mask directly.

use super::dropout::Dropout;
use super::real::{Real, SyncPtr};
use crate::config::AttentionKind;
use rayon::prelude::*;

/// Scores → probabilities, in place, over the visible keys of one row. Masked keys may be given as −∞
/// (they get exactly 0). A fully masked quiet row gives zeros; a fully masked softmax row is undefined.
pub fn normalize<F: Real>(kind: AttentionKind, row: &mut [F]) {
    let mut m = row.iter().fold(F::NEG_INFINITY, |a, &b| a.max(b));
    let mut sum = F::ZERO;
    if kind == AttentionKind::Quiet {
        m = m.max(F::ZERO);
        sum = (-m).exp();
    }
    for x in row.iter_mut() {
        *x = (*x - m).exp();
        sum += *x;
    }
    let inv = F::ONE / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
}

/// ∂L/∂s from p and g = ∂L/∂p, in place over g. Identical for softmax and softmax1.
pub fn normalize_backward<F: Real>(p: &[F], g: &mut [F]) {
    let mut dot = F::ZERO;
    for (&pj, &gj) in p.iter().zip(g.iter()) {
        dot += pj * gj;
    }
    for (gj, &pj) in g.iter_mut().zip(p) {
        *gj = pj * (*gj - dot);
    }
}

#[inline]
fn dot<F: Real>(a: &[F], b: &[F]) -> F {
    let mut s = F::ZERO;
    for (&x, &y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// Dropout on the attention weights of one layer: the pass's dropout and this layer's site key.
pub type AttnDropout<'a> = Option<(&'a Dropout, u64)>;

/// out (B, T, C), att (B, NH, T, T) probabilities before dropout, from qkv (B, T, 3C)
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<F: Real>(
    out: &mut [F],
    att: &mut [F],
    qkv: &[F],
    kind: AttentionKind,
    dropout: AttnDropout,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let out_ptr = SyncPtr(out.as_mut_ptr());
    assert!(out.len() >= b * t * c && att.len() >= b * nh * t * t && qkv.len() >= b * t * 3 * c);
    att[..b * nh * t * t].par_chunks_mut(t * t).enumerate().for_each(|(bh, att_bh)| {
        let (bi, h) = (bh / nh, bh % nh);
        let key = dropout.map(|(d, site)| (d, d.site(site)));
        for i in 0..t {
            let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
            let row = &mut att_bh[i * t..(i + 1) * t];
            for j in 0..=i {
                let k = &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs];
                row[j] = dot(q, k) * scale;
            }
            normalize(kind, &mut row[..=i]);
            row[i + 1..].fill(F::ZERO);
            // SAFETY: task (bi, h) alone writes channels h·hs..(h+1)·hs of the rows of sequence bi.
            let y = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add((bi * t + i) * c + h * hs), hs) };
            y.fill(F::ZERO);
            for j in 0..=i {
                let mut pj = row[j];
                if let Some((d, key)) = key {
                    pj *= d.factor::<F>(key, ((bh * t + i) * t + j) as u64);
                }
                let v = &qkv[(bi * t + j) * 3 * c + 2 * c + h * hs..][..hs];
                for (yv, &vv) in y.iter_mut().zip(v) {
                    *yv += pj * vv;
                }
            }
        }
    });
}

/// dqkv (B, T, 3C) += ∂L/∂qkv from dout (B, T, C). `scratch` (B, NH, T) holds one row of ∂L/∂p per head.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Real>(
    dqkv: &mut [F],
    scratch: &mut [F],
    dout: &[F],
    qkv: &[F],
    att: &[F],
    dropout: AttnDropout,
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let dqkv_ptr = SyncPtr(dqkv.as_mut_ptr());
    assert!(dqkv.len() >= b * t * 3 * c && scratch.len() >= b * nh * t && att.len() >= b * nh * t * t);
    scratch[..b * nh * t].par_chunks_mut(t).enumerate().for_each(|(bh, g)| {
        let (bi, h) = (bh / nh, bh % nh);
        let key = dropout.map(|(d, site)| (d, d.site(site)));
        // SAFETY: task (bi, h) alone touches channels h·hs..(h+1)·hs of q, k and v in sequence bi.
        let dslice = |row: usize, part: usize| unsafe {
            std::slice::from_raw_parts_mut(dqkv_ptr.get().add((bi * t + row) * 3 * c + part * c + h * hs), hs)
        };
        for i in 0..t {
            let p = &att[(bh * t + i) * t..][..=i];
            let dy = &dout[(bi * t + i) * c + h * hs..][..hs];
            for j in 0..=i {
                let f = key.map_or(F::ONE, |(d, key)| d.factor::<F>(key, ((bh * t + i) * t + j) as u64));
                let v = &qkv[(bi * t + j) * 3 * c + 2 * c + h * hs..][..hs];
                g[j] = dot(dy, v) * f;
                let pf = p[j] * f;
                for (dv, &d) in dslice(j, 2).iter_mut().zip(dy) {
                    *dv += pf * d;
                }
            }
            normalize_backward(p, &mut g[..=i]);
            let q = &qkv[(bi * t + i) * 3 * c + h * hs..][..hs];
            let dq = dslice(i, 0);
            for j in 0..=i {
                let ds = g[j] * scale;
                let k = &qkv[(bi * t + j) * 3 * c + c + h * hs..][..hs];
                for (dqv, &kv) in dq.iter_mut().zip(k) {
                    *dqv += ds * kv;
                }
                for (dkv, &qv) in dslice(j, 1).iter_mut().zip(q) {
                    *dkv += ds * qv;
                }
            }
        }
    });
}
