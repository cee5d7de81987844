//! Causal self-attention, the fast kernel: per (sequence, head) and block of 64 queries, the block's
//! scores live only in a per-thread scratch, Q·Kᵀ and dY·Vᵀ go through the GEMM crate and the products
//! that the mask makes triangular through `attention_gemm` (keys past the block's last query are never
//! touched, nor the zeros above the diagonal within it), and backward recomputes the probabilities from
//! the saved row log-normalisers instead of storing (B, NH, T, T) of them:
//!
//!   forward:   S = Q Kᵀ/√hs;  p_ij = exp(s_ij − lse_i) for j ≤ i;  Y = P̃ V       (P̃: P after dropout)
//!   backward:  dP̃ = dY Vᵀ;  dV += P̃ᵀ dY;  dS_ij = p_ij (dp_ij − D_i), D_i = Σ_j p_ij dp_ij;
//!              dQ += dS K/√hs;  dK += dSᵀ Q/√hs
//!
//! lse_i = m_i + ln(z_i) is the only per-row state. The variant (`Variant::rule`, see `attention.rs`)
//! enters in three places, side by side below: the row normaliser `normalize_row` (forward), what the
//! backward recomputes from the scores (`recompute`, `weight`) and the row backward (`row_backward`,
//! `rule_backward`):
//!   null logit (quiet: 0, sink: σ_h): z = exp(σ − m) + Σ_j exp(s_ij − m) with m ≥ σ, so lse includes
//!     the null key and p_null,i = exp(σ − lse_i); ∂L/∂σ_h = −Σ_i p_null,i·D_i.
//!   clip (clipped): w = clip((ζ−γ)·p + γ, 0, 1) replaces p as the weight of V (lse stays the softmax's);
//!     backward: dp_ij = (ζ−γ)·dw_ij inside the clip, 0 where it clips, then softmax's backward.
//! With dropout (factor f), the row backward forms e_ij = p_ij·∂L/∂p_ij = p_ij·c_ij·dp̃_ij with
//! c = f (or (ζ−γ)·f inside the clip, 0 outside), D_i = Σ_j e_ij and dS_ij = e_ij − p_ij D_i; without the
//! clip e_ij = p̃_ij dp̃_ij as p·f = p̃.
//! The rules without a softmax (`attention_rows`) keep other per-row state in lse: softpick its stable
//! form's normaliser z_i (m_i = max(0, max_j s_ij) is recomputed from the scores), from which backward
//! recomputes the weights p_ij exactly as the forward made them and w_ij = e^{s_ij − m_i}/z_i, kept
//! signed (sign(s_ij)·w_ij) in the place of p; relu and sigmoid none (lse = 0): their weights come from
//! the scores alone. Their row backward takes softpick's D_i = Σ_j p̃_ij dp̃_ij, multiplies dp̃ by the
//! dropout factor (∂L/∂p = f·∂L/∂p̃), then applies the rule's backward.
//! `attention.rs` holds the reference kernel this one is tested against.

use super::attention::{clip_weight, AttnDropout, RowForm, RowRule, Variant};
use super::attention_gemm::{small_gemm, Tri};
use super::attention_rows::{
    relu_backward, relu_forward, sigmoid_backward, sigmoid_forward, softpick_backward, softpick_forward,
    softpick_recompute,
};
use super::matmul::gemm;
use super::real::{Real, SyncPtr};
use super::simd;
use crate::multiversion;
use rayon::prelude::*;

/// Scratch floats each worker thread needs: three blocks of (up to 64 queries) × T keys, so the scratch
/// grows linearly with the context (T = 8192: 6 MB per thread), not with T².
pub fn scratch_per_thread(t: usize) -> usize {
    3 * BQ.min(t) * t
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

/// (floats per slot, slots) of a scratch buffer, which must have a slot for every thread of the pool.
fn slots_of<F>(scratch: &[F], t: usize) -> (usize, usize) {
    let per = scratch_per_thread(t);
    let slots = scratch.len() / per;
    assert!(slots >= rayon::current_num_threads(), "attention scratch too small for the thread pool");
    (per, slots)
}

/// Query rows per block. A block's queries see keys 0..(end of the block) only, so the products above
/// the diagonal are skipped block by block: 10/16 of the full T×T work at T = 256, and at T ≤ 64 one
/// block as before.
const BQ: usize = 64;

/// The query blocks of a sequence of length t: (first row, end row); keys 0..end are visible.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t).step_by(BQ).map(move |i0| (i0, (i0 + BQ).min(t)))
}

/// The row operations run over the visible keys 0..=i rounded up to whole vectors (`simd::LANES`), at
/// most the block's width: the keys past the diagonal in that span are given score −∞ (weight 0), so the
/// loops have no scalar tail, which on rows of a few dozen keys costs more than the vector part.
fn padded(visible: usize, width: usize) -> usize {
    visible.next_multiple_of(simd::LANES).min(width)
}

/// out (B, T, C) and lse (B, NH, T) from qkv (B, T, 3C).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<F: Real>(
    out: &mut [F],
    lse: &mut [F],
    qkv: &[F],
    variant: &Variant<F>,
    dropout: AttnDropout,
    scratch: &mut [F],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let (per, slots) = slots_of(scratch, t);
    assert!(out.len() >= b * t * c && lse.len() >= b * nh * t && qkv.len() >= b * t * 3 * c);
    variant.check(nh);
    let (out_ptr, sp) = (SyncPtr(out.as_mut_ptr()), SyncPtr(scratch.as_mut_ptr()));
    lse[..b * nh * t].par_chunks_mut(t).enumerate().for_each(|(bh, lse_bh)| {
        let (bi, h) = (bh / nh, bh % nh);
        let sc = slot(sp, per, slots);
        let q = qkv[bi * t * 3 * c + h * hs..].as_ptr();
        let (k, v) = unsafe { (q.add(c), q.add(2 * c)) };
        let y = unsafe { out_ptr.get().add(bi * t * c + h * hs) };
        let key = dropout.map(|m| m.keyed(nh));
        let rule = variant.rule(h);
        for (i0, i1) in blocks(t) {
            // the block's scores (rows i0..i1, keys 0..i1), row stride i1
            let s = &mut sc[..(i1 - i0) * i1];
            // SAFETY (both products): q/k/v rows of sequence bi, head h, stride 3C; s is (i1 − i0)×i1; task
            // (bi, h) alone writes columns h·hs..(h+1)·hs of out's rows of sequence bi.
            unsafe {
                gemm(
                    i1 - i0,
                    i1,
                    hs,
                    s.as_mut_ptr(),
                    i1,
                    false,
                    (q.add(i0 * 3 * c), 3 * c, 1),
                    (k, 1, 3 * c),
                    scale,
                    None,
                )
            };
            for (r, row) in s.chunks_exact_mut(i1).enumerate() {
                let i = i0 + r;
                let n = padded(i + 1, i1);
                row[i + 1..n].fill(F::NEG_INFINITY);
                lse_bh[i] = normalize_row(rule, i + 1, &mut row[..n]);
                if let Some((d, key, off)) = key {
                    for (j, p) in row[..=i].iter_mut().enumerate() {
                        *p *= d.factor::<F>(key, (((bh + off) * t + i) * t + j) as u64);
                    }
                }
                row[i + 1..].fill(F::ZERO);
            }
            unsafe {
                small_gemm(
                    i1 - i0,
                    hs,
                    i1,
                    y.add(i0 * c),
                    c,
                    false,
                    (s.as_ptr(), i1, 1),
                    (v, 3 * c),
                    F::ONE,
                    Tri::KUpTo(i0),
                )
            };
        }
    });
}

multiversion! {
    /// Scores (already scaled) → attention weights in place over a row of `visible` keys and the padding
    /// past them (scores −∞), by the row rule of the head; returns the row's state: the log-normaliser
    /// lse = m + ln z of the softmax part, softpick's z, 0 for relu and sigmoid.
    fn normalize_row<F: Real>(rule: RowRule<F>, visible: usize, row: &mut [F]) -> F {
        let (null, clip) = (rule.null, rule.clip);
        match rule.form {
            RowForm::Softmax => {}
            RowForm::Relu => {
                relu_forward(row, visible);
                return F::ZERO;
            }
            RowForm::Sigmoid => {
                sigmoid_forward(row);
                return F::ZERO;
            }
            RowForm::Softpick => return softpick_forward(row, visible),
        }
        let mut m = simd::max(row);
        let mut z = F::ZERO;
        if let Some(s) = null {
            m = m.max(s);
            z = (s - m).exp_fma();
        }
        z += simd::map_sum(row, |x| (x - m).exp_fma());
        let inv = F::ONE / z;
        for x in row.iter_mut() {
            *x *= inv;
        }
        if let Some((a, gamma)) = clip {
            for x in row.iter_mut() {
                *x = clip_weight(a, gamma, *x);
            }
        }
        m + F::from_f64(z.to_f64().ln())
    }
}

multiversion! {
    /// One row of the backward, in place over g (dp̃ in, dS out), by the row rule of the head: p the
    /// recomputed softmax, pd the weights after clip and dropout, `factor(j)` the dropout factor of key j.
    /// Returns D_i = Σ_j p_ij ∂L/∂p_ij.
    fn row_backward<F: Real>(clip: Option<(F, F)>, p: &[F], pd: &[F], g: &mut [F], factor: &dyn Fn(usize) -> F) -> F {
        let n = g.len();
        let (p, pd) = (&p[..n], &pd[..n]);
        let d = match clip {
            None => {
                let d = simd::dot(pd, g);
                for ((gj, &pdj), &pj) in g.iter_mut().zip(pd).zip(p) {
                    *gj = pdj * *gj - pj * d;
                }
                return d;
            }
            Some((a, gamma)) => {
                for (j, (gj, &pj)) in g.iter_mut().zip(p).enumerate() {
                    let w = a * pj + gamma;
                    *gj = if w > F::ZERO && w < F::ONE { a * factor(j) * *gj * pj } else { F::ZERO };
                }
                simd::sum(g)
            }
        };
        for (gj, &pj) in g.iter_mut().zip(p) {
            *gj -= pj * d;
        }
        d
    }
}

multiversion! {
    /// A row of `visible` keys and padding (scores −∞, already scaled) → what the row backward reads, in
    /// place: the softmax p = exp(s − lse) (before the clip), the weights of relu and sigmoid, softpick's
    /// signed w = sign(s)·e^{s−m}/z, and then its weights into `weights` (the row's part of P̃'s buffer).
    fn recompute<F: Real>(form: RowForm, visible: usize, row: &mut [F], lse: F, weights: &mut [F]) {
        match form {
            RowForm::Softmax => {
                for x in row.iter_mut() {
                    *x = (*x - lse).exp_fma();
                }
            }
            RowForm::Relu => relu_forward(row, visible),
            RowForm::Sigmoid => sigmoid_forward(row),
            RowForm::Softpick => softpick_recompute(row, Some(weights), visible, lse),
        }
    }
}

multiversion! {
    /// The row backward of the rules without a softmax, in place over g = ∂L/∂p (dropout already
    /// applied) → ∂L/∂s, from what `recompute` left in u; d = D_i (softpick).
    fn rule_backward<F: Real>(form: RowForm, visible: usize, u: &[F], d: F, g: &mut [F]) {
        let u = &u[..g.len()];
        match form {
            RowForm::Softmax => unreachable!("softmax rows go through row_backward"),
            RowForm::Relu => relu_backward(u, g, visible),
            RowForm::Sigmoid => sigmoid_backward(u, g),
            RowForm::Softpick => softpick_backward(u, d, g),
        }
    }
}

/// dqkv (B, T, 3C) += ∂L/∂qkv from dout (B, T, C), recomputing the probabilities from lse; `dnull`
/// (B, NH), when given, is *set* to each (sequence, head)'s ∂L/∂σ_h (the caller sums over sequences).
/// Block by block of queries as in forward: dV and dK of keys 0..i1 gather every block's part in order.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<F: Real>(
    dqkv: &mut [F],
    dnull: Option<&mut [F]>,
    dout: &[F],
    qkv: &[F],
    lse: &[F],
    variant: &Variant<F>,
    dropout: AttnDropout,
    scratch: &mut [F],
    b: usize,
    t: usize,
    c: usize,
    nh: usize,
) {
    let hs = c / nh;
    let scale = F::from_f64(1.0 / (hs as f64).sqrt());
    let (per, slots) = slots_of(scratch, t);
    assert!(dqkv.len() >= b * t * 3 * c && dout.len() >= b * t * c && lse.len() >= b * nh * t);
    variant.check(nh);
    let dnull_ptr = dnull.map(|d| {
        assert!(d.len() >= b * nh);
        SyncPtr(d.as_mut_ptr())
    });
    let (dp, sp) = (SyncPtr(dqkv.as_mut_ptr()), SyncPtr(scratch.as_mut_ptr()));
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (bi, h) = (bh / nh, bh % nh);
        let rule = variant.rule(h);
        let sc = slot(sp, per, slots);
        let (p, rest) = sc.split_at_mut(BQ.min(t) * t);
        let (dpt, pt) = rest.split_at_mut(BQ.min(t) * t);
        let q = qkv[bi * t * 3 * c + h * hs..].as_ptr();
        let (k, v) = unsafe { (q.add(c), q.add(2 * c)) };
        let dy = dout[bi * t * c + h * hs..].as_ptr();
        let dq = unsafe { dp.get().add(bi * t * 3 * c + h * hs) };
        let (dk, dv) = unsafe { (dq.add(c), dq.add(2 * c)) };
        let lse_bh = &lse[bh * t..(bh + 1) * t];
        let key = dropout.map(|m| m.keyed(nh));
        let factor = |i: usize, j: usize| {
            key.map_or(F::ONE, |(d, key, off)| d.factor::<F>(key, (((bh + off) * t + i) * t + j) as u64))
        };
        let mut dnull_bh = F::ZERO;
        for (i0, i1) in blocks(t) {
            let n = (i1 - i0) * i1; // the block's (rows i0..i1) × (keys 0..i1), row stride i1
            let (p, dpt, pt) = (&mut p[..n], &mut dpt[..n], &mut pt[..n]);
            let (qb, dyb) = unsafe { (q.add(i0 * 3 * c), dy.add(i0 * c)) };
            // SAFETY (all products here): as in forward; task (bi, h) alone writes head h of sequence bi in
            // dqkv, and dq only in the block's rows.
            unsafe {
                gemm(i1 - i0, i1, hs, p.as_mut_ptr(), i1, false, (qb, 3 * c, 1), (k, 1, 3 * c), scale, None);
                gemm(i1 - i0, i1, hs, dpt.as_mut_ptr(), i1, false, (dyb, c, 1), (v, 1, 3 * c), F::ONE, None);
            }
            for (r, (row, wrow)) in p.chunks_exact_mut(i1).zip(pt.chunks_exact_mut(i1)).enumerate() {
                let i = i0 + r;
                let n = padded(i + 1, i1);
                row[i + 1..n].fill(F::NEG_INFINITY);
                recompute(rule.form, i + 1, &mut row[..n], lse_bh[i], &mut wrow[..n]);
                row[n..].fill(F::ZERO);
            }
            // The weights of V: P̃ = clip(P) or softpick's P (in pt already), ⊙ dropout (= P without the
            // clip, softpick or dropout), for dV; then dS into dpt.
            let pd: &[F] = if key.is_none() && rule.clip.is_none() && rule.form != RowForm::Softpick {
                p
            } else {
                for r in 0..i1 - i0 {
                    let i = i0 + r;
                    for j in 0..i1 {
                        let u = p[r * i1 + j];
                        let w = match (rule.form, rule.clip) {
                            (RowForm::Softmax, Some((a, gamma))) => clip_weight(a, gamma, u),
                            (RowForm::Softpick, _) => pt[r * i1 + j],
                            _ => u,
                        };
                        pt[r * i1 + j] = if j <= i { w * factor(i, j) } else { F::ZERO };
                    }
                }
                pt
            };
            unsafe {
                small_gemm(i1, hs, i1 - i0, dv, 3 * c, true, (pd.as_ptr(), 1, i1), (dyb, c), F::ONE, Tri::KFrom(i0))
            };
            for r in 0..i1 - i0 {
                let i = i0 + r;
                let n = padded(i + 1, i1); // p and pd are 0 past the diagonal, so dS is too
                let (pr, pdr, g) = (&p[r * i1..r * i1 + n], &pd[r * i1..r * i1 + n], &mut dpt[r * i1..(r + 1) * i1]);
                let d = if rule.form == RowForm::Softmax {
                    row_backward(rule.clip, pr, pdr, &mut g[..n], &|j| factor(i, j))
                } else {
                    let d = if rule.form == RowForm::Softpick { simd::dot(pdr, &g[..n]) } else { F::ZERO };
                    if key.is_some() {
                        g[..=i].iter_mut().enumerate().for_each(|(j, gj)| *gj *= factor(i, j));
                    }
                    rule_backward(rule.form, i + 1, pr, d, &mut g[..n]);
                    F::ZERO
                };
                g[i + 1..].fill(F::ZERO);
                if let Some(s) = rule.null {
                    dnull_bh -= (s - lse_bh[i]).exp() * d;
                }
            }
            unsafe {
                small_gemm(
                    i1 - i0,
                    hs,
                    i1,
                    dq.add(i0 * 3 * c),
                    3 * c,
                    true,
                    (dpt.as_ptr(), i1, 1),
                    (k, 3 * c),
                    scale,
                    Tri::KUpTo(i0),
                );
                small_gemm(i1, hs, i1 - i0, dk, 3 * c, true, (dpt.as_ptr(), 1, i1), (qb, 3 * c), scale, Tri::KFrom(i0));
            }
        }
        if let Some(d) = dnull_ptr {
            // SAFETY: task bh alone writes element bh.
            unsafe { *d.get().add(bh) = dnull_bh };
        }
    });
}
