//! The row rules of the attention variants that are not a softmax (`RowForm::{Relu, Sigmoid, Softpick}`),
//! forward and backward side by side, shared by both attention kernels (`attention.rs`, the reference,
//! and `attention_fused.rs`). A row holds the scaled scores s_j = q·k_j/√hs of one query; `visible` is
//! the number of keys the causal mask leaves it (i + 1 for query i); entries past it (the fused kernel's
//! padding, scores −∞) get weight exactly 0. g = ∂L/∂p on entry to a backward, ∂L/∂s on return.
//!
//!   relu:     p_j = max(s_j, 0) / n,  n = visible = i + 1           ∂L/∂s_j = g_j / n where p_j > 0, else 0
//!   sigmoid:  p_j = σ(s_j) = 1 / (1 + e^{−s_j})                     ∂L/∂s_j = g_j (1 − p_j) p_j
//!   softpick: p_j = max(e^{s_j} − 1, 0) / N,  N = Σ_k |e^{s_k} − 1| + ε
//!             w_j = e^{s_j} / N,  D = Σ_k p_k g_k:                  ∂L/∂s_j = w_j (g_j − D) for s_j > 0,
//!                                                                           w_j D for s_j < 0, 0 at s_j = 0
//!
//! relu (Guo et al. 2024, arXiv 2410.13835; GuoTianYu2000/Active-Dormant-Attention, BBM/model.py:
//! `F.relu(scores) / arange(1, T + 1)` over the query axis) divides by the query's position + 1, not by
//! the row's sum: the weights of a query depend on where it sits in the window. The active set s_j > 0
//! is read from the weights (p_j > 0), the same set unless a positive score so small that s_j / n
//! underflows to 0; the subgradient at s_j = 0 is 0, as PyTorch's ReLU.
//!
//! sigmoid (Gu et al., ICLR 2025; sail-sg/Attention-Sink, `eager_scaled_dot_product_attention` with
//! `sim = "sigmoid"`, `attention_normalize = False`): the plain sigmoid of the scaled score, masked keys
//! 0. Their code adds no bias and no other scale, so neither is there one here.
//!
//! softpick (Zuhri et al. 2025; zaydzuhri/softpick-attention, `naive_softpick_attn.py`): with
//! m = max(0, max_j s_j) the stable form is
//!   p_j = max(e^{s_j−m} − e^{−m}, 0) / z,  z = Σ_k |e^{s_k−m} − e^{−m}| + ε·e^{−m}  (N = e^m·z),
//! the numerator and the denominator of the definition both multiplied by e^{−m} ≤ 1, so nothing
//! overflows and the function is exactly the definition with a constant ε for every row. ε = 1e-8 is the
//! authors' (`softpick(x, dim=-1, eps=1e-8)`). Their stable form differs in two ways, both invisible at
//! ε = 1e-8 unless every |e^{s_k} − 1| is of order ε: m = max_j s_j without the 0 (e^{−m} overflows in
//! f32 for rows whose scores are all below −88) and ε added unscaled after the e^{−m} (an effective
//! ε·e^{m}; their Triton kernel adds 1e-6 the same way). Masked keys are left out of both sums, as
//! their `torch.where(x.isfinite(), |·|, 0)`. The backward is exact: |e^s − 1| has derivative
//! sign(s)·e^s and max(e^s − 1, 0) has e^s where s > 0; at s = 0 exactly both subgradients are taken as 0
//! (the authors' Triton kernel takes w·D there, the derivative from the left). A row whose scores are all
//! ≤ 0 gives all zeros, as softmax1 can (attention to nothing), and then passes no gradient at all: p ≡ 0
//! around it. A row of all-zero scores gives 0/ε = 0, never NaN.
//!
//! Conditioning. w_j = e^{s_j}/N is large where a row's N is small, and the backward scales rounding by
//! it. The extreme is query 0, whose one key gets p = d/(|d| + ε), d = e^{s_00} − 1: 1 for s_00 > 0, 0
//! below, a step of width ε whose gradient peaks at ~1/(4ε) (2.5e7) where |d| = ε. float32 runs are
//! therefore rounding-dominated wherever such rows occur (scores near 0, as at nanoGPT's init).

use super::real::Real;

/// Softpick's ε, the authors' value.
pub const SOFTPICK_EPS: f64 = 1e-8;

/// relu: row ← max(s, 0) / visible over the whole row (padding −∞ gives 0).
#[inline(always)]
pub fn relu_forward<F: Real>(row: &mut [F], visible: usize) {
    let n = F::from_f64(visible as f64);
    for x in row.iter_mut() {
        *x = x.max(F::ZERO) / n;
    }
}

/// relu: g ← g / visible where p > 0, else 0.
#[inline(always)]
pub fn relu_backward<F: Real>(p: &[F], g: &mut [F], visible: usize) {
    let n = F::from_f64(visible as f64);
    for (gj, &pj) in g.iter_mut().zip(p) {
        *gj = if pj > F::ZERO { *gj / n } else { F::ZERO };
    }
}

/// sigmoid: row ← σ(s) (padding −∞ gives 0).
#[inline(always)]
pub fn sigmoid_forward<F: Real>(row: &mut [F]) {
    for x in row.iter_mut() {
        *x = F::ONE / (F::ONE + (-*x).exp());
    }
}

/// sigmoid: g ← g (1 − p) p.
#[inline(always)]
pub fn sigmoid_backward<F: Real>(p: &[F], g: &mut [F]) {
    for (gj, &pj) in g.iter_mut().zip(p) {
        *gj = *gj * (F::ONE - pj) * pj;
    }
}

/// |x|
#[inline(always)]
fn abs<F: Real>(x: F) -> F {
    x.max(-x)
}

/// softpick's (m, e^{−m}, z) over the visible scores, m = max(0, max_j s_j),
/// z = Σ_j |e^{s_j−m} − e^{−m}| + ε·e^{−m}: the forward's arithmetic, so the same bits.
#[inline(always)]
fn softpick_norm<F: Real>(scores: &[F]) -> (F, F, F) {
    let m = scores.iter().fold(F::ZERO, |a, &b| a.max(b));
    let e0 = (-m).exp();
    let z = scores.iter().fold(F::from_f64(SOFTPICK_EPS) * e0, |z, &s| z + abs((s - m).exp() - e0));
    (m, e0, z)
}

/// softpick: the first `visible` entries of row ← p (the rest ← 0); returns z, the stable form's
/// normaliser (N = e^m·z; the fused kernel's per-row state, m being recomputed from the scores).
#[inline(always)]
pub fn softpick_forward<F: Real>(row: &mut [F], visible: usize) -> F {
    let (vis, rest) = row.split_at_mut(visible);
    let (m, e0, z) = softpick_norm(vis);
    let inv = F::ONE / z;
    for x in vis.iter_mut() {
        *x = ((*x - m).exp() - e0).max(F::ZERO) * inv;
    }
    rest.fill(F::ZERO);
    z
}

/// softpick: z of a row of visible scores, as `softpick_forward` returns it.
#[inline(always)]
pub fn softpick_z<F: Real>(scores: &[F]) -> F {
    softpick_norm(scores).2
}

/// softpick, from a row's scores and its z (`softpick_forward`), m recomputed from the visible scores:
/// row ← the signed w_j = sign(s_j)·e^{s_j−m}/z (0 at s_j = 0), and, when given, `weights` ← p_j =
/// max(e^{s_j−m} − e^{−m}, 0)/z, the forward's bits; both 0 past `visible`.
#[inline(always)]
pub fn softpick_recompute<F: Real>(row: &mut [F], weights: Option<&mut [F]>, visible: usize, z: F) {
    let m = row[..visible].iter().fold(F::ZERO, |a, &b| a.max(b));
    let (e0, inv) = ((-m).exp(), F::ONE / z);
    if let Some(p) = weights {
        for (pj, &s) in p[..visible].iter_mut().zip(&row[..visible]) {
            *pj = ((s - m).exp() - e0).max(F::ZERO) * inv;
        }
        p[visible..].fill(F::ZERO);
    }
    for x in row[..visible].iter_mut() {
        let w = (*x - m).exp() * inv;
        *x = if *x > F::ZERO {
            w
        } else if *x < F::ZERO {
            -w
        } else {
            F::ZERO
        };
    }
    row[visible..].fill(F::ZERO);
}

/// softpick: g ← ∂L/∂s from g = ∂L/∂p, the signed w of the row (`softpick_recompute`) and D = Σ_k p_k g_k:
/// max(w_j, 0)·g_j − w_j·D, i.e. w_j (g_j − D) for s_j > 0, |w_j| D for s_j < 0, 0 at s_j = 0.
#[inline(always)]
pub fn softpick_backward<F: Real>(signed_w: &[F], d: F, g: &mut [F]) {
    for (gj, &w) in g.iter_mut().zip(signed_w) {
        *gj = w.max(F::ZERO) * *gj - w * d;
    }
}
