//! Causal self-attention, the fast kernel: per (sequence, head), the score matrix lives only in a
//! per-thread scratch, products go through the GEMM crate, and backward recomputes the probabilities
//! from the saved row log-normalisers instead of storing (B, NH, T, T) of them:
//!
//!   forward:   S = Q Kᵀ/√hs;  p_ij = exp(s_ij − lse_i) for j ≤ i;  Y = P̃ V       (P̃: P after dropout)
//!   backward:  dP̃ = dY Vᵀ;  dV += P̃ᵀ dY;  dS_ij = p_ij (dp_ij − D_i), D_i = Σ_j p_ij dp_ij;
//!              dQ += dS K/√hs;  dK += dSᵀ Q/√hs
//!
//! lse_i = m_i + ln(z_i) is the only per-row state. The variant enters once, in the normaliser z:
//! softmax z = Σ_j exp(s_ij − m), quiet z = exp(−m) + Σ_j exp(s_ij − m) with m ≥ 0, which is the
//! running max starting at 0 and the running sum starting at exp(−m). With dropout, p·dp = p̃·dp̃
//! elementwise, so D_i = Σ_j p̃_ij dp̃_ij and dS_ij = p̃_ij dp̃_ij − p_ij D_i.
//! `attention.rs` holds the reference kernel this one is tested against.

use super::attention::AttnDropout;
use super::matmul::gemm_raw;
use super::real::{Real, SyncPtr};
use super::simd;
use crate::config::AttentionKind;
use crate::multiversion;
use rayon::prelude::*;

/// Scratch floats each worker thread needs: three T×T matrices.
pub fn scratch_per_thread(t: usize) -> usize {
    3 * t * t
}

/// This worker's scratch slot. Every rayon task runs to completion on one thread before the next task
/// on that thread starts (the GEMMs inside run sequentially), so slots are never shared.
#[inline]
fn slot<F>(scratch: SyncPtr<F>, per: usize, slots: usize) -> &'static mut [F] {
    let i = rayon::current_thread_index().unwrap_or(0);
    assert!(i < slots, "attention scratch has {slots} slots, thread {i}");
    // SAFETY: slot i belongs to worker i alone (see above); the caller holds the buffer for the call.
    unsafe { std::slice::from_raw_parts_mut(scratch.get().add(i * per), per) }
}

/// out (B, T, C) and lse (B, NH, T) from qkv (B, T, 3C).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<F: Real>(
    out: &mut [F],
    lse: &mut [F],
    qkv: &[F],
    kind: AttentionKind,
    dropout: AttnDropout,
    scratch: &mut [F],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let per = scratch_per_thread(t);
    let slots = scratch.len() / per;
    assert!(slots >= rayon::current_num_threads(), "attention scratch too small for the thread pool");
    assert!(out.len() >= b * t * c && lse.len() >= b * nh * t && qkv.len() >= b * t * 3 * c);
    let (out_ptr, sp) = (SyncPtr(out.as_mut_ptr()), SyncPtr(scratch.as_mut_ptr()));
    lse[..b * nh * t].par_chunks_mut(t).enumerate().for_each(|(bh, lse_bh)| {
        let (bi, h) = (bh / nh, bh % nh);
        let s = &mut slot(sp, per, slots)[..t * t];
        let q = qkv[bi * t * 3 * c + h * hs..].as_ptr();
        let (k, v) = unsafe { (q.add(c), q.add(2 * c)) };
        // SAFETY (all GEMMs here): q/k/v rows of sequence bi, head h, stride 3C, T×hs each; s is T×T;
        // task (bi, h) alone writes columns h·hs..(h+1)·hs of out's rows of sequence bi.
        unsafe { gemm_raw(t, t, hs, s.as_mut_ptr(), t, false, (q, 3 * c, 1), (k, 1, 3 * c), scale, false) };
        let key = dropout.map(|(d, site)| (d, d.site(site)));
        for i in 0..t {
            let row = &mut s[i * t..(i + 1) * t];
            lse_bh[i] = normalize_row(kind, &mut row[..=i]);
            if let Some((d, key)) = key {
                for (j, p) in row[..=i].iter_mut().enumerate() {
                    *p *= d.factor::<F>(key, ((bh * t + i) * t + j) as u64);
                }
            }
            row[i + 1..].fill(F::ZERO);
        }
        let y = unsafe { out_ptr.get().add(bi * t * c + h * hs) };
        unsafe { gemm_raw(t, hs, t, y, c, false, (s.as_ptr(), t, 1), (v, 3 * c, 1), F::ONE, false) };
    });
}

multiversion! {
    /// Scores (already scaled) → probabilities in place over the visible keys; returns lse = m + ln z.
    fn normalize_row<F: Real>(kind: AttentionKind, row: &mut [F]) -> F {
        let mut m = F::NEG_INFINITY;
        for &x in row.iter() {
            m = m.max(x);
        }
        let mut z = F::ZERO;
        if kind == AttentionKind::Quiet {
            m = m.max(F::ZERO);
            z = (-m).exp();
        }
        for x in row.iter_mut() {
            *x = (*x - m).exp();
        }
        z += simd::sum(row);
        let inv = F::ONE / z;
        for x in row.iter_mut() {
            *x *= inv;
        }
        m + F::from_f64(z.to_f64().ln())
    }
}

multiversion! {
    /// Scores (already scaled) → p = exp(s − lse), in place.
    fn probabilities<F: Real>(row: &mut [F], lse: F) {
        for x in row.iter_mut() {
            *x = (*x - lse).exp();
        }
    }
}

/// dqkv (B, T, 3C) += ∂L/∂qkv from dout (B, T, C), recomputing the probabilities from lse.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Real>(
    dqkv: &mut [F],
    dout: &[F],
    qkv: &[F],
    lse: &[F],
    dropout: AttnDropout,
    scratch: &mut [F],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let per = scratch_per_thread(t);
    let slots = scratch.len() / per;
    assert!(slots >= rayon::current_num_threads(), "attention scratch too small for the thread pool");
    assert!(dqkv.len() >= b * t * 3 * c && dout.len() >= b * t * c && lse.len() >= b * nh * t);
    let (dp, sp) = (SyncPtr(dqkv.as_mut_ptr()), SyncPtr(scratch.as_mut_ptr()));
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (bi, h) = (bh / nh, bh % nh);
        let sc = slot(sp, per, slots);
        let (p, rest) = sc.split_at_mut(t * t);
        let (dpt, pt) = rest.split_at_mut(t * t);
        let q = qkv[bi * t * 3 * c + h * hs..].as_ptr();
        let (k, v) = unsafe { (q.add(c), q.add(2 * c)) };
        let dy = dout[bi * t * c + h * hs..].as_ptr();
        let dq = unsafe { dp.get().add(bi * t * 3 * c + h * hs) };
        let (dk, dv) = unsafe { (dq.add(c), dq.add(2 * c)) };
        let lse_bh = &lse[bh * t..(bh + 1) * t];
        // SAFETY (all GEMMs here): as in forward; task (bi, h) alone writes head h of sequence bi in dqkv.
        unsafe {
            gemm_raw(t, t, hs, p.as_mut_ptr(), t, false, (q, 3 * c, 1), (k, 1, 3 * c), scale, false);
            gemm_raw(t, t, hs, dpt.as_mut_ptr(), t, false, (dy, c, 1), (v, 1, 3 * c), F::ONE, false);
        }
        for i in 0..t {
            let row = &mut p[i * t..(i + 1) * t];
            probabilities(&mut row[..=i], lse_bh[i]);
            row[i + 1..].fill(F::ZERO);
        }
        // P̃ (= P without dropout) for dV, and dS into dpt.
        let pd: &[F] = match dropout {
            None => p,
            Some((d, site)) => {
                let key = d.site(site);
                for i in 0..t {
                    for j in 0..t {
                        let f = if j <= i { d.factor::<F>(key, ((bh * t + i) * t + j) as u64) } else { F::ZERO };
                        pt[i * t + j] = p[i * t + j] * f;
                    }
                }
                pt
            }
        };
        unsafe { gemm_raw(t, hs, t, dv, 3 * c, true, (pd.as_ptr(), 1, t), (dy, c, 1), F::ONE, false) };
        for i in 0..t {
            let (pr, pdr, g) = (&p[i * t..i * t + i + 1], &pd[i * t..i * t + i + 1], &mut dpt[i * t..(i + 1) * t]);
            let dsum = simd::dot(pdr, &g[..=i]);
            for j in 0..=i {
                g[j] = pdr[j] * g[j] - pr[j] * dsum;
            }
            g[i + 1..].fill(F::ZERO);
        }
        unsafe {
            gemm_raw(t, hs, t, dq, 3 * c, true, (dpt.as_ptr(), t, 1), (k, 3 * c, 1), scale, false);
            gemm_raw(t, hs, t, dk, 3 * c, true, (dpt.as_ptr(), 1, t), (q, 3 * c, 1), scale, false);
        }
    });
}
